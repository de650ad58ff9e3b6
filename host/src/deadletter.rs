//! The dead-letter output: every record a stage could not process, with the stage and the reason, so
//! nothing is lost silently and a fixed record can be replayed.

use crate::outfile::{self, OutputMode};
use crate::record::Batch;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A shared, append-only JSON Lines file. Cloning shares the file.
#[derive(Clone)]
pub struct DeadLetters {
    path: PathBuf,
    out: Arc<Mutex<BufWriter<File>>>,
}

impl DeadLetters {
    /// Opens the file: afresh, or after what earlier runs wrote (see [`outfile::open`]). Returns the
    /// bytes of a torn last line that had to be removed.
    pub fn create(path: &Path, mode: OutputMode) -> io::Result<(Self, u64)> {
        let (file, torn) = outfile::open(path, mode)?;
        let dead = DeadLetters {
            path: path.to_path_buf(),
            out: Arc::new(Mutex::new(BufWriter::new(file))),
        };
        Ok((dead, torn))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A decoded record: written with its fields, partition and offset.
    pub fn record(&self, stage: &str, reason: &str, batch: &Batch, row: usize) {
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
        self.write(
            serde_json::json!({ "stage": stage, "reason": reason, "at": location, "line": line }),
        );
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
