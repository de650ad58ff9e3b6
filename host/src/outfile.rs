//! Files tributary writes output to (the `file` sink, the dead-letter file): started afresh, or appended
//! to when a run resumes where an earlier one stopped, so a restart does not erase what that run wrote.

use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// `mode` of an output file.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutputMode {
    /// Keep what the file holds and write after it.
    Append,
    /// Empty the file at start.
    Truncate,
}

impl OutputMode {
    /// The default: append when a source resumes from committed offsets (what it wrote before is part of
    /// the results), truncate otherwise (a run computes everything again).
    pub fn default_for(resumes: bool) -> Self {
        if resumes {
            OutputMode::Append
        } else {
            OutputMode::Truncate
        }
    }
}

/// An output file opened for writing, with its directory created. In append mode a last line without
/// its newline (a crash cut it short) is removed first; its length in bytes is returned with the file.
pub fn open(path: &Path, mode: OutputMode) -> io::Result<(File, u64)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match mode {
        OutputMode::Truncate => Ok((File::create(path)?, 0)),
        OutputMode::Append => {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(path)?;
            let len = file.metadata()?.len();
            let keep = complete_lines(&mut file, len)?;
            if keep < len {
                file.set_len(keep)?;
            }
            file.seek(SeekFrom::Start(keep))?;
            Ok((file, len - keep))
        }
    }
}

/// The length of the file up to and including its last newline.
fn complete_lines(file: &mut File, len: u64) -> io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn append_keeps_complete_lines_and_drops_a_torn_one() {
        let dir = std::env::temp_dir().join(format!("tributary-outfile-{}", std::process::id()));
        let path = dir.join("sub/out.jsonl");
        let (mut f, torn) = open(&path, OutputMode::Append).unwrap();
        assert_eq!(torn, 0);
        f.write_all(b"{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        drop(f);
        let (mut f, torn) = open(&path, OutputMode::Append).unwrap();
        assert_eq!(torn, 5);
        f.write_all(b"{\"a\":3}\n").unwrap();
        drop(f);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
        // A file that is one torn line becomes empty.
        std::fs::write(&path, "no newline at all").unwrap();
        let (_, torn) = open(&path, OutputMode::Append).unwrap();
        assert_eq!((torn, std::fs::read(&path).unwrap().len()), (17, 0));
        // Truncate starts afresh.
        std::fs::write(&path, "x\n").unwrap();
        open(&path, OutputMode::Truncate).unwrap();
        assert!(std::fs::read(&path).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_default_appends_only_when_resuming() {
        assert_eq!(OutputMode::default_for(true), OutputMode::Append);
        assert_eq!(OutputMode::default_for(false), OutputMode::Truncate);
    }
}
