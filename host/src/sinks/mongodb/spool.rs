//! The mongodb sink's spool: documents that could not be written yet, kept in order on local disk.
//!
//! One document a line, in MongoDB's canonical Extended JSON (types survive the round trip, and
//! `mongoimport` reads the file). Appends are fsync'ed before they count as handled. Lines are read
//! from a position that advances as they reach the server; once every line is written the file is
//! truncated. A spool left with lines in it is drained at the next start, from the position kept in
//! `<file>.pos` (written after each batch, not synced: a stale or lost position only means a few
//! documents are upserted again, which leaves them as they are), so a run killed while draining a large
//! spool does not start it over.

use bson::{Bson, Document};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A spool file went wrong.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot {action} the spool file `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the spool file `{path}` is in use by another tributary run; give each run its own `spool` directory")]
    Locked { path: PathBuf },
    #[error(
        "line {line} of the spool file `{path}` is not a document ({reason}); fix or move the file"
    )]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// An ordered, durable queue of documents in one file, locked for one run at a time.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    /// Byte offset of the first line not yet written to the server.
    read_at: u64,
    /// Byte length of the file (everything up to here is whole lines).
    len: u64,
    /// Lines from `read_at` to the end.
    pending: usize,
    /// Where `read_at` is kept between runs.
    pos_path: PathBuf,
    /// `pending`, for the stage thread to show in the metrics while this spool lives on the writer's.
    depth: Arc<AtomicI64>,
}

/// The position file of a spool file.
fn pos_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pos");
    PathBuf::from(p)
}

impl Spool {
    /// Opens (or creates) the spool file and its directory, takes its lock, and checks every line. A
    /// torn last line (a crash during an append, before it was fsync'ed and counted) is cut off.
    pub fn open(path: &Path) -> Result<Spool, SpoolError> {
        let io = |action: &'static str| {
            move |source| SpoolError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
        }
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io("open"))?;
        // SAFETY: `flock` on a descriptor we own; the lock is released when the file is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Err(SpoolError::Locked {
                    path: path.to_path_buf(),
                });
            }
            return Err(io("lock")(err));
        }
        if !existed {
            sync_dir(path).map_err(io("create"))?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read"))?;
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < bytes.len() {
            file.set_len(whole as u64).map_err(io("repair"))?;
            file.sync_data().map_err(io("repair"))?;
        }
        // A kept position counts only if it falls on a line boundary of what the file holds.
        let read_at = std::fs::read_to_string(pos_path(path))
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok())
            .filter(|&p| p <= whole && (p == 0 || bytes[p - 1] == b'\n'))
            .unwrap_or(0);
        let mut pending = 0;
        for (n, line) in bytes[..whole].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            parse_line(line).map_err(|reason| SpoolError::Corrupt {
                path: path.to_path_buf(),
                line: n + 1,
                reason,
            })?;
        }
        for line in bytes[read_at..whole].split(|&b| b == b'\n') {
            if !line.is_empty() {
                pending += 1;
            }
        }
        let spool = Spool {
            path: path.to_path_buf(),
            file,
            read_at: read_at as u64,
            len: whole as u64,
            pending,
            pos_path: pos_path(path),
            depth: Arc::new(AtomicI64::new(pending as i64)),
        };
        // A position that did not count must not count later, once the file has grown past it.
        spool.keep_position();
        Ok(spool)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Documents spooled and not yet written to the server.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// The number of documents waiting, kept up to date as the spool changes (see `pending`).
    pub fn depth(&self) -> Arc<AtomicI64> {
        self.depth.clone()
    }

    fn io(&self, action: &'static str) -> impl Fn(io::Error) -> SpoolError + '_ {
        move |source| SpoolError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }

    /// Appends documents in order and fsyncs; when this returns `Ok` they survive a crash.
    pub fn append<'a>(
        &mut self,
        docs: impl IntoIterator<Item = &'a Document>,
    ) -> Result<usize, SpoolError> {
        let mut text = Vec::new();
        let mut n = 0;
        for doc in docs {
            let json = Bson::Document(doc.clone()).into_canonical_extjson();
            serde_json::to_writer(&mut text, &json).expect("JSON values serialise");
            text.push(b'\n');
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        let written = self
            .file
            .write_all(&text)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Cut off whatever part made it, so the file stays whole lines that were all counted.
            let _ = self.file.set_len(self.len);
            return Err(self.io("append to")(e));
        }
        self.len += text.len() as u64;
        self.pending += n;
        self.depth.store(self.pending as i64, Ordering::Relaxed);
        Ok(n)
    }

    /// Up to `max` documents from the read position, each with the offset just past its line (hand it
    /// to [`Spool::consumed`] once the document is written).
    pub fn peek(&mut self, max: usize) -> Result<Vec<(Document, u64)>, SpoolError> {
        let mut reader = BufReader::new(&self.file);
        reader
            .seek(SeekFrom::Start(self.read_at))
            .map_err(self.io("read"))?;
        let mut out = Vec::new();
        let mut offset = self.read_at;
        let mut line = Vec::new();
        while out.len() < max && offset < self.len {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| SpoolError::Io {
                    action: "read",
                    path: self.path.clone(),
                    source: e,
                })?;
            if n == 0 {
                break;
            }
            offset += n as u64;
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if text.is_empty() {
                continue;
            }
            let doc = parse_line(text).map_err(|reason| SpoolError::Corrupt {
                path: self.path.clone(),
                line: 0,
                reason,
            })?;
            out.push((doc, offset));
        }
        Ok(out)
    }

    /// Marks the `n` documents before byte `offset` as written to the server.
    pub fn consumed(&mut self, offset: u64, n: usize) {
        debug_assert!(offset >= self.read_at && offset <= self.len && n <= self.pending);
        self.read_at = offset;
        self.pending -= n;
        self.depth.store(self.pending as i64, Ordering::Relaxed);
        self.keep_position();
    }

    /// Best effort (see the module doc): a position that is not written is only a few more upserts.
    fn keep_position(&self) {
        if self.read_at == 0 {
            let _ = std::fs::remove_file(&self.pos_path);
        } else {
            let _ = std::fs::write(&self.pos_path, format!("{}\n", self.read_at));
        }
    }

    /// Once every document is written: empties the file, so it does not grow forever.
    pub fn clear_if_drained(&mut self) -> Result<(), SpoolError> {
        if self.pending > 0 || self.len == 0 {
            return Ok(());
        }
        // The position goes first: a crash in between leaves the file whole and read from the start.
        let _ = std::fs::remove_file(&self.pos_path);
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_data())
            .map_err(self.io("truncate"))?;
        self.read_at = 0;
        self.len = 0;
        self.keep_position();
        Ok(())
    }

    /// Drops the lines already written, so the file holds exactly what is left (at shutdown). The
    /// rest is copied to a new file that replaces this one atomically.
    pub fn compact(&mut self) -> Result<(), SpoolError> {
        if self.read_at == 0 {
            return Ok(());
        }
        if self.pending == 0 {
            return self.clear_if_drained();
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        // As in `clear_if_drained`: the old position must never apply to the compacted file.
        let _ = std::fs::remove_file(&self.pos_path);
        let copy = || -> io::Result<File> {
            let mut rest = Vec::new();
            let mut reader = &self.file;
            reader.seek(SeekFrom::Start(self.read_at))?;
            reader.read_to_end(&mut rest)?;
            // Append mode, like the original: reads seek the shared position, appends must not care.
            let mut out = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .truncate(false)
                .open(&tmp)?;
            // The lock belongs to a descriptor: take it on the new file before it replaces the old one.
            // SAFETY: as in `open`.
            unsafe { libc::flock(out.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            out.set_len(0)?;
            out.write_all(&rest)?;
            out.sync_data()?;
            std::fs::rename(&tmp, &self.path)?;
            sync_dir(&self.path)?;
            Ok(out)
        };
        let file = copy().map_err(self.io("compact"))?;
        self.len -= self.read_at;
        self.read_at = 0;
        self.file = file;
        self.keep_position();
        Ok(())
    }
}

/// One spool line back into a document.
fn parse_line(line: &[u8]) -> Result<Document, String> {
    let json: serde_json::Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    match Bson::try_from(json).map_err(|e| e.to_string())? {
        Bson::Document(d) => Ok(d),
        other => Err(format!("found {:?}", other.element_type())),
    }
}

/// Makes a new or renamed directory entry durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, DateTime};

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tributary-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn sample(i: i64) -> Document {
        doc! {
            "window_start": DateTime::from_millis(1_717_243_200_000 + i * 60_000),
            "window_end": DateTime::from_millis(1_717_243_260_000 + i * 60_000),
            "genre": "Jazz/Big Band",
            "avg": 1_936_000_000.5 + i as f64,
            "count": i,
            "ok": true,
            "none": Bson::Null,
            "nested": { "a": [1_i64, 2.5, "x"] },
        }
    }

    #[test]
    fn round_trip_keeps_order_and_types() {
        let path = dir("round-trip").join("sink.jsonl");
        let mut spool = Spool::open(&path).unwrap();
        assert_eq!(spool.pending(), 0);
        // The depth the metrics show follows `pending`.
        let depth = spool.depth();
        let docs: Vec<Document> = (0..5).map(sample).collect();
        spool.append(&docs[..3]).unwrap();
        spool.append(&docs[3..]).unwrap();
        assert_eq!(spool.pending(), 5);
        assert_eq!(depth.load(Ordering::Relaxed), 5);
        let got = spool.peek(2).unwrap();
        assert_eq!(
            got.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
            docs[..2]
        );
        // Types survive: int64 stays int64 (not int32), doubles stay doubles, dates stay dates.
        assert!(matches!(got[0].0.get("count"), Some(Bson::Int64(0))));
        assert!(matches!(
            got[0].0.get("window_start"),
            Some(Bson::DateTime(_))
        ));
        spool.consumed(got[1].1, 2);
        assert_eq!(spool.pending(), 3);
        assert_eq!(depth.load(Ordering::Relaxed), 3);
        drop(spool);

        // Reopened (as after a crash): it goes on after the two written documents.
        let mut spool = Spool::open(&path).unwrap();
        assert_eq!(spool.pending(), 3);
        assert_eq!(spool.depth().load(Ordering::Relaxed), 3);
        let rest = spool.peek(100).unwrap();
        assert_eq!(
            rest.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
            docs[2..]
        );
        drop(spool);

        // A position that is not on a line boundary of the file is not trusted: all five again.
        std::fs::write(pos_path(&path), "7\n").unwrap();
        let mut spool = Spool::open(&path).unwrap();
        assert_eq!(spool.pending(), 5);
        let all = spool.peek(100).unwrap();
        assert_eq!(all.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(), docs);
        assert!(!pos_path(&path).exists(), "the bad position is gone");
        spool.consumed(all[1].1, 2);
        spool.compact().unwrap();
        drop(spool);
        let mut spool = Spool::open(&path).unwrap();
        assert_eq!(spool.pending(), 3);
        let rest = spool.peek(100).unwrap();
        assert_eq!(
            rest.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
            docs[2..]
        );
        spool.consumed(rest.last().unwrap().1, 3);
        spool.clear_if_drained().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn torn_last_line_is_cut_and_garbage_is_refused() {
        let path = dir("torn").join("sink.jsonl");
        let mut spool = Spool::open(&path).unwrap();
        spool.append([&sample(1)]).unwrap();
        drop(spool);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"window_start\":{\"$date\"").unwrap();
        drop(f);
        let spool = Spool::open(&path).unwrap();
        assert_eq!(spool.pending(), 1);
        drop(spool);
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("}\n"));

        std::fs::write(&path, "not json\n").unwrap();
        let err = Spool::open(&path).unwrap_err().to_string();
        assert!(err.contains("line 1 of the spool file"), "{err}");
    }

    #[test]
    fn one_run_at_a_time() {
        let path = dir("lock").join("sink.jsonl");
        let _first = Spool::open(&path).unwrap();
        let err = Spool::open(&path).unwrap_err();
        assert!(matches!(err, SpoolError::Locked { .. }), "{err}");
    }
}
