//! Checkpoint files: one per checkpoint, written whole to a temporary name, synced, then renamed into
//! place, so a crash leaves either the new checkpoint or none. Each file starts with a header line that
//! carries the body's length and checksum: a file damaged after it was written (a torn copy, a bad disk)
//! is detected, reported, and the previous checkpoint is used.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How many complete checkpoints are kept: the newest, and one to fall back on when it is damaged.
const KEEP: usize = 2;
const MAGIC: &str = "tributary-checkpoint";
const VERSION: u32 = 1;

/// One consistent cut of a run: where each source was, and the state every stage held there.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    pub id: u64,
    /// When it was taken, in milliseconds since the epoch (for people reading the directory).
    pub taken_at: i64,
    /// Per stage: a source's position, a window's state, a sink's output length. Stages without state
    /// (transforms, the console) are absent.
    pub stages: BTreeMap<String, serde_json::Value>,
}

/// A checkpoint directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

/// What went wrong reading or writing checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write the checkpoint directory `{}`: {source}", dir.display())]
    Write {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the checkpoint directory `{}`: {source}", dir.display())]
    Read {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Milliseconds since the epoch, for `taken_at`.
pub(super) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// FNV-1a, 64 bits: stable across versions and platforms, enough to detect damage (not an attacker).
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Store {
    pub fn new(dir: PathBuf) -> Self {
        Store { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, id: u64) -> PathBuf {
        self.dir.join(format!("checkpoint-{id:020}.json"))
    }

    /// A stage's part of the start of a run that has no checkpoint yet (see [`Store::write_initial`]).
    fn initial_file(&self, stage: &str) -> PathBuf {
        self.dir.join(format!("initial-{stage}.json"))
    }

    /// Writes a checkpoint durably and removes all but the newest [`KEEP`], and the initial parts,
    /// which it supersedes.
    pub fn write(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        let err = |source| StoreError::Write {
            dir: self.dir.clone(),
            source,
        };
        self.write_file(cp, &self.file(cp.id)).map_err(err)?;
        let mut ids = self.ids().map_err(err)?;
        ids.sort_unstable_by(|a, b| b.cmp(a));
        for old in ids.into_iter().skip(KEEP) {
            let _ = std::fs::remove_file(self.file(old));
        }
        for entry in std::fs::read_dir(&self.dir).map_err(err)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with("initial-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Records where a stage's output stood when a run with checkpoints started without one (a file's
    /// length), unless an earlier attempt recorded it already: a run killed before its first
    /// checkpoint is started again from the same input, and what it wrote must be cut away, like
    /// what a run writes after its last checkpoint. Returns the part recorded by an earlier attempt,
    /// to restore, or `None` when `part` is now the record.
    pub fn write_initial(
        &self,
        stage: &str,
        part: serde_json::Value,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let path = self.initial_file(stage);
        if let Ok(bytes) = std::fs::read(&path) {
            if let Ok(mut earlier) = parse(&bytes) {
                if let Some(part) = earlier.stages.remove(stage) {
                    return Ok(Some(part));
                }
            }
            // A damaged record is from a crash while it was written, before any output: replace it.
        }
        let cp = Checkpoint {
            id: 0,
            taken_at: now_millis(),
            stages: BTreeMap::from([(stage.to_string(), part)]),
        };
        self.write_file(&cp, &path)
            .map_err(|source| StoreError::Write {
                dir: self.dir.clone(),
                source,
            })?;
        Ok(None)
    }

    /// Writes `cp` to `path` whole or not at all: to a temporary file, synced, renamed into place.
    fn write_file(&self, cp: &Checkpoint, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let body = serde_json::to_vec(cp).expect("checkpoints serialise");
        let header = format!(
            "{MAGIC} v{VERSION} {} {:016x}\n",
            body.len(),
            checksum(&body)
        );
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(header.as_bytes())
            .and_then(|()| f.write_all(&body))
            .and_then(|()| f.sync_all())?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename is durable once the directory is.
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all())
    }

    /// Ids of the checkpoint files in the directory, in no particular order.
    fn ids(&self) -> std::io::Result<Vec<u64>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_prefix("checkpoint-")
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse().ok())
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// The newest checkpoint that reads back whole, and a warning for each newer one that does not.
    pub fn latest(&self) -> Result<(Option<Checkpoint>, Vec<String>), StoreError> {
        let err = |source| StoreError::Read {
            dir: self.dir.clone(),
            source,
        };
        let mut ids = self.ids().map_err(err)?;
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let mut warnings = Vec::new();
        for id in ids {
            let path = self.file(id);
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| parse(&b))
            {
                Ok(cp) => return Ok((Some(cp), warnings)),
                Err(why) => warnings.push(format!(
                    "checkpoint `{}` is damaged ({why}); using the one before it",
                    path.display()
                )),
            }
        }
        Ok((None, warnings))
    }
}

/// Reads a checkpoint file's bytes, checking header, length and checksum.
fn parse(bytes: &[u8]) -> Result<Checkpoint, String> {
    let nl = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| "header is not text")?;
    let body = &bytes[nl + 1..];
    let parts: Vec<&str> = header.split(' ').collect();
    let [magic, version, len, sum] = parts[..] else {
        return Err("not a tributary checkpoint".into());
    };
    if magic != MAGIC {
        return Err("not a tributary checkpoint".into());
    }
    if version != format!("v{VERSION}") {
        return Err(format!(
            "version {version}; this tributary reads v{VERSION}"
        ));
    }
    if len.parse::<usize>().ok() != Some(body.len()) {
        return Err(format!("{} bytes of {len}", body.len()));
    }
    if u64::from_str_radix(sum, 16).ok() != Some(checksum(body)) {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tributary-cp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn cp(id: u64) -> Checkpoint {
        Checkpoint {
            id,
            taken_at: 1,
            stages: BTreeMap::from([("w".into(), serde_json::json!({ "id": id }))]),
        }
    }

    #[test]
    fn keeps_the_newest_two_and_reads_the_newest() {
        let d = dir("keep");
        let s = Store::new(d.clone());
        assert_eq!(s.latest().unwrap().0, None, "no directory: no checkpoint");
        for id in 1..=4 {
            s.write(&cp(id)).unwrap();
        }
        let mut ids = s.ids().unwrap();
        ids.sort();
        assert_eq!(ids, [3, 4]);
        let (latest, warnings) = s.latest().unwrap();
        assert_eq!(latest, Some(cp(4)));
        assert!(warnings.is_empty());
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_damaged_checkpoint_falls_back_to_the_previous_one() {
        let d = dir("torn");
        let s = Store::new(d.clone());
        s.write(&cp(1)).unwrap();
        s.write(&cp(2)).unwrap();
        // Cut the newest short, as a torn copy would be.
        let newest = s.file(2);
        let bytes = std::fs::read(&newest).unwrap();
        std::fs::write(&newest, &bytes[..bytes.len() - 3]).unwrap();
        let (latest, warnings) = s.latest().unwrap();
        assert_eq!(latest, Some(cp(1)));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("is damaged"), "{warnings:?}");
        // One flipped byte with the length intact: the checksum catches it.
        let mut bytes = std::fs::read(s.file(1)).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(s.file(1), &bytes).unwrap();
        let (latest, warnings) = s.latest().unwrap();
        assert_eq!(latest, None);
        assert!(warnings[1].contains("checksum mismatch"), "{warnings:?}");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn the_first_attempt_records_where_output_starts_until_a_checkpoint_supersedes_it() {
        let d = dir("initial");
        let s = Store::new(d.clone());
        let at = |len: u64| serde_json::json!({ "path": "out.jsonl", "len": len });
        assert_eq!(
            s.write_initial("file", at(10)).unwrap(),
            None,
            "first attempt records"
        );
        // Attempts killed before the first checkpoint go back to the first attempt's start.
        assert_eq!(s.write_initial("file", at(99)).unwrap(), Some(at(10)));
        assert_eq!(
            s.write_initial("other", at(5)).unwrap(),
            None,
            "one record per stage"
        );
        assert_eq!(
            s.latest().unwrap().0,
            None,
            "initial records are not checkpoints"
        );
        s.write(&cp(1)).unwrap();
        // The checkpoint holds the lengths now; a later fresh start records anew.
        assert_eq!(s.write_initial("file", at(42)).unwrap(), None);
        assert_eq!(s.write_initial("file", at(43)).unwrap(), Some(at(42)));
        // A torn record (a crash while writing it, before any output) is replaced.
        let path = s.initial_file("file");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        assert_eq!(s.write_initial("file", at(7)).unwrap(), None);
        assert_eq!(s.write_initial("file", at(8)).unwrap(), Some(at(7)));
        let _ = std::fs::remove_dir_all(d);
    }
}
