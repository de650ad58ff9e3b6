//! `type = "replay"`: reads a recorded capture, as fast as possible or paced by its timestamps.

use super::capture::{decode_payload, parse_line};
use crate::record::{BatchBuilder, Interner, Origin};
use crate::topology::{BuildContext, BuildError, Built, Output, Source, StageConfig, StageError};
use serde::Deserialize;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use toml::Spanned;

/// Replays a capture file (JSON Lines, one Kafka record a line; see the README).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// The capture file, relative to the pipeline file.
    pub path: Spanned<PathBuf>,
    /// Pacing by record timestamps: `0` (the default) replays as fast as possible, `1.0` in real time,
    /// `10.0` ten times faster than recorded.
    pub speed: Option<Spanned<f64>>,
    /// Records per batch handed downstream (default 1024). Larger batches amortise plugin calls.
    #[serde(default = "default_batch_size")]
    pub batch_size: Spanned<usize>,
}

fn default_batch_size() -> Spanned<usize> {
    Spanned::new(0..0, 1024)
}

impl StageConfig for ReplayConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Built, BuildError> {
        let path = ctx.path(self.path.get_ref());
        if !path.is_file() {
            return Err(BuildError::new(
                Some(self.path.span()),
                format!(
                    "capture file `{}` not found; check `path` (relative to the pipeline file)",
                    path.display()
                ),
            ));
        }
        let speed = self.speed.as_ref().map_or(0.0, |s| *s.get_ref());
        if !(speed.is_finite() && speed >= 0.0) {
            let span = self.speed.as_ref().map(|s| s.span());
            return Err(BuildError::new(
                span,
                "`speed` must be 0 (as fast as possible) or a positive number",
            ));
        }
        let batch_size = *self.batch_size.get_ref();
        if batch_size == 0 || batch_size > 1 << 20 {
            return Err(BuildError::new(
                Some(self.batch_size.span()),
                "`batch_size` must be between 1 and 1048576",
            ));
        }
        Ok(Built::Source(Box::new(Replay {
            path,
            speed,
            batch_size,
        })))
    }
}

pub struct Replay {
    path: PathBuf,
    speed: f64,
    batch_size: usize,
}

impl Source for Replay {
    fn run(&mut self, out: &mut Output) -> Result<(), StageError> {
        let file = std::fs::File::open(&self.path).map_err(|e| {
            StageError::with(format!("cannot open capture `{}`", self.path.display()), e)
        })?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut builder = BatchBuilder::default();
        let mut interner = Interner::default();
        let started = Instant::now();
        let mut first_ts: Option<i64> = None;
        // Lines are read as bytes: one that is not UTF-8 is dead-lettered, not the end of the replay.
        let mut bytes = Vec::with_capacity(1024);
        let mut n = 0;
        loop {
            if out.stopping() {
                break;
            }
            bytes.clear();
            let read = reader.read_until(b'\n', &mut bytes).map_err(|e| {
                StageError::with(format!("cannot read capture `{}`", self.path.display()), e)
            })?;
            if read == 0 {
                break;
            }
            n += 1;
            let location =
                || serde_json::json!({ "file": self.path.display().to_string(), "line": n });
            let line = match std::str::from_utf8(&bytes) {
                Ok(line) => line,
                Err(_) => {
                    out.stats
                        .records_in
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let shown = String::from_utf8_lossy(&bytes);
                    out.dead_line(
                        shown.trim_end(),
                        location(),
                        "line is not valid UTF-8 (shown with U+FFFD for the bytes that are not)",
                    );
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let line = line.trim_end_matches(['\n', '\r']);
            out.stats
                .records_in
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let capture = match parse_line(line) {
                Ok(c) => c,
                Err(reason) => {
                    out.dead_line(line, location(), &reason);
                    continue;
                }
            };
            let fields = match decode_payload(&capture.value, &mut interner) {
                Ok(f) => f,
                Err(reason) => {
                    out.dead_line(line, location(), &reason);
                    continue;
                }
            };
            if self.speed > 0.0 {
                let first = *first_ts.get_or_insert(capture.timestamp);
                let due = Duration::from_secs_f64(
                    (capture.timestamp - first).max(0) as f64 / 1000.0 / self.speed,
                );
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    // Hand over what is ready before sleeping, so downstream sees records on time.
                    if !builder.is_empty() && !out.emit(builder.take()) {
                        return Ok(());
                    }
                    out.sleep(wait);
                }
            }
            builder.push(
                capture.timestamp,
                Origin {
                    partition: capture.partition,
                    offset: capture.offset,
                },
                fields,
            );
            if builder.len() >= self.batch_size && !out.emit(builder.take()) {
                return Ok(());
            }
        }
        out.emit(builder.take());
        Ok(())
    }
}
