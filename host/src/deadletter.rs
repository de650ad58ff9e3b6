//! The dead-letter output: every record a stage could not process, with the stage and the reason, so
//! nothing is lost silently and a fixed record can be replayed.

use crate::outfile::{self, OutputMode};
use crate::record::Batch;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A shared, append-only JSON Lines file. Cloning shares the file.
#[derive(Clone)]
pub struct DeadLetters {
    path: PathBuf,
    out: Arc<Mutex<BufWriter<File>>>,
    /// Dead letters per stage and kind of reason, for the run summary.
    counts: Arc<Mutex<HashMap<String, HashMap<String, u64>>>>,
}

/// The kind of a reason: its text up to the first `:` (`late`, `plugin failed`, `invalid capture line`),
/// so reasons that differ only in their details count together.
fn kind(reason: &str) -> &str {
    let kind = reason.split(':').next().unwrap_or(reason);
    match kind.char_indices().nth(80) {
        Some((i, _)) => &kind[..i],
        None => kind,
    }
}

impl DeadLetters {
    /// Opens the file: afresh, or after what earlier runs wrote (see [`outfile::open`]). Returns the
    /// bytes of a torn last line that had to be removed.
    pub fn create(path: &Path, mode: OutputMode) -> io::Result<(Self, u64)> {
        let (file, torn) = outfile::open(path, mode)?;
        let dead = DeadLetters {
            path: path.to_path_buf(),
            out: Arc::new(Mutex::new(BufWriter::new(file))),
            counts: Arc::default(),
        };
        Ok((dead, torn))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A stage's most frequent kinds of reason so far, most frequent first, at most `n`.
    pub fn top_reasons(&self, stage: &str, n: usize) -> Vec<(String, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut top: Vec<(String, u64)> = counts
            .get(stage)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(n);
        top
    }

    /// Every (stage, kind of reason, count) so far, sorted, for the metrics.
    pub fn counts(&self) -> Vec<(String, String, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(String, String, u64)> = counts
            .iter()
            .flat_map(|(stage, m)| m.iter().map(|(k, v)| (stage.clone(), k.clone(), *v)))
            .collect();
        all.sort();
        all
    }

    fn count(&self, stage: &str, reason: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let stage = match counts.get_mut(stage) {
            Some(m) => m,
            None => counts.entry(stage.to_string()).or_default(),
        };
        match stage.get_mut(kind(reason)) {
            Some(n) => *n += 1,
            None => drop(stage.insert(kind(reason).to_string(), 1)),
        }
    }

    /// A decoded record: written with its fields, partition and offset.
    pub fn record(&self, stage: &str, reason: &str, batch: &Batch, row: usize) {
        self.count(stage, reason);
        let origin = batch.origin[row];
        self.write(serde_json::json!({
            "stage": stage,
            "reason": reason,
            "partition": origin.partition,
            "offset": origin.offset,
            "timestamp": batch.time[row],
            "record": batch.row_json(row),
        }));
    }

    /// An input line that could not be decoded: written as it was read.
    pub fn line(&self, stage: &str, reason: &str, line: &str, location: serde_json::Value) {
        self.count(stage, reason);
        self.write(
            serde_json::json!({ "stage": stage, "reason": reason, "at": location, "line": line }),
        );
    }

    /// A result that was lost (no input record or line to keep): where it was and why.
    pub fn lost(&self, stage: &str, reason: &str, location: serde_json::Value) {
        self.count(stage, reason);
        self.write(serde_json::json!({ "stage": stage, "reason": reason, "at": location }));
    }

    fn write(&self, entry: serde_json::Value) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A failed write surfaces at `flush`, which the run checks before it reports success.
        let _ = serde_json::to_writer(&mut *out, &entry);
        let _ = out.write_all(b"\n");
    }

    pub fn flush(&self) -> io::Result<()> {
        self.out.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }

    /// Writes what is buffered and waits until the disk has it: a source calls this before it commits
    /// offsets, so that a record whose offset is committed is never a dead letter lost with the process.
    pub fn sync(&self) -> io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.flush()?;
        out.get_ref().sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_count_by_kind() {
        let dir = std::env::temp_dir().join(format!("tributary-dead-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (dead, _) = DeadLetters::create(&dir.join("d.jsonl"), OutputMode::Truncate).unwrap();
        for ms in [10, 20, 30] {
            dead.line(
                "w",
                &format!("late: event time is {ms} ms behind"),
                "x",
                serde_json::Value::Null,
            );
        }
        dead.line(
            "w",
            "missing key field `genre`",
            "x",
            serde_json::Value::Null,
        );
        dead.line("other", "late: 1", "x", serde_json::Value::Null);
        assert_eq!(
            dead.top_reasons("w", 5),
            [
                ("late".to_string(), 3),
                ("missing key field `genre`".to_string(), 1)
            ]
        );
        assert_eq!(dead.top_reasons("w", 1).len(), 1);
        assert!(dead.top_reasons("none", 3).is_empty());
        assert_eq!(
            dead.counts(),
            [
                ("other".to_string(), "late".to_string(), 1),
                ("w".to_string(), "late".to_string(), 3),
                ("w".to_string(), "missing key field `genre`".to_string(), 1),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
