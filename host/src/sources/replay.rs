//! `type = "replay"`: reads a recorded capture, as fast as possible or paced by its timestamps.
//!
//! As fast as possible, the reading thread cuts the file into chunks of `batch_size` lines and
//! `decode_threads` threads decode chunks side by side; batches are handed on in file order (by chunk
//! number), so the records, and every result downstream, are those of a one-thread replay.

use super::capture::Decoder;
use super::lines::{chunk_lines, Lines};
use super::pool::{hand_on, DeadLine, Decoded, Pool, Until};
use crate::record::BatchBuilder;
use crate::topology::{BuildContext, BuildError, Built, Output, Source, StageConfig, StageError};
use serde::Deserialize;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
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
    /// Records per batch handed downstream (default 4096). Larger batches amortise the per-batch costs
    /// of every stage (plugin calls, window fires, sink writes) and take more memory: on the bundled
    /// job, 4,096 rather than 1,024 took 12% less CPU for 41 rather than 26 MiB peak RSS (8,192 was
    /// slower, and took 61 MiB; see BENCHMARKS.md).
    #[serde(default = "default_batch_size")]
    pub batch_size: Spanned<usize>,
    /// Threads that decode lines when replaying as fast as possible (default: one per CPU core). Batches
    /// keep the file's order whatever the number.
    pub decode_threads: Option<Spanned<usize>>,
}

fn default_batch_size() -> Spanned<usize> {
    Spanned::new(0..0, 4096)
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
        let decode_threads = match &self.decode_threads {
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Some(n) if (1..=64).contains(n.get_ref()) => *n.get_ref(),
            Some(n) => {
                return Err(BuildError::new(
                    Some(n.span()),
                    "`decode_threads` must be between 1 and 64",
                ))
            }
        };
        Ok(Built::Source(Box::new(Replay {
            path,
            speed,
            batch_size,
            decode_threads,
        })))
    }
}

pub struct Replay {
    path: PathBuf,
    speed: f64,
    batch_size: usize,
    decode_threads: usize,
}

/// Lines of the capture, whole, with the number of the first.
struct Chunk {
    first_line: u64,
    bytes: Vec<u8>,
    /// Where each line's `\n` is: found once, by the reading thread as it counts lines.
    ends: Vec<usize>,
}

impl Chunk {
    /// Lines whose ends are not known yet.
    fn new(first_line: u64, bytes: Vec<u8>) -> Self {
        let ends = memchr::memchr_iter(b'\n', &bytes).collect();
        Chunk {
            first_line,
            bytes,
            ends,
        }
    }
}

/// Decodes a chunk's lines; lines that are blank are skipped, lines that cannot be decoded are set aside.
fn decode(file: &str, chunk: Chunk, decoder: &mut Decoder, builder: &mut BatchBuilder) -> Decoded {
    let mut dead = Vec::new();
    let mut records = 0;
    for (i, line) in chunk_lines(&chunk.bytes, &chunk.ends) {
        let line_no = chunk.first_line + i as u64;
        // Lines are read as bytes: one that is not UTF-8 is dead-lettered, not the end of the replay.
        let line = match line {
            Ok(line) => line,
            Err(bytes) => {
                records += 1;
                let shown = String::from_utf8_lossy(bytes);
                dead.push(DeadLine {
                    at: serde_json::json!({ "file": file, "line": line_no }),
                    text: shown.trim_end().to_string(),
                    reason:
                        "line is not valid UTF-8 (shown with U+FFFD for the bytes that are not)"
                            .into(),
                });
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let line = line.trim_end_matches('\r');
        records += 1;
        if let Err(reason) = decoder.line(line, builder) {
            dead.push(DeadLine {
                at: serde_json::json!({ "file": file, "line": line_no }),
                text: line.to_string(),
                reason,
            });
        }
    }
    let mut spare = chunk.bytes;
    spare.clear();
    Decoded {
        batch: builder.take(),
        records,
        dead,
        spare,
    }
}

impl Replay {
    fn read_error(&self, e: std::io::Error) -> StageError {
        StageError::with(format!("cannot read capture `{}`", self.path.display()), e)
    }

    /// Reads up to `lines` whole lines into `bytes`; how many were read.
    fn read_chunk(
        &self,
        reader: &mut impl BufRead,
        bytes: &mut Vec<u8>,
        lines: usize,
    ) -> Result<u64, StageError> {
        let mut n = 0;
        while n < lines as u64 {
            let read = reader
                .read_until(b'\n', bytes)
                .map_err(|e| self.read_error(e))?;
            if read == 0 {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    fn open(&self) -> Result<std::io::BufReader<std::fs::File>, StageError> {
        let file = std::fs::File::open(&self.path).map_err(|e| {
            StageError::with(format!("cannot open capture `{}`", self.path.display()), e)
        })?;
        Ok(std::io::BufReader::with_capacity(1 << 20, file))
    }

    /// As fast as possible: chunks decoded on `decode_threads` threads, handed on in order.
    fn run_parallel(&self, out: &mut Output) -> Result<(), StageError> {
        let mut lines = Lines::new(self.open()?.into_inner());
        let file: Arc<str> = self.path.display().to_string().into();
        std::thread::scope(|scope| {
            let mut pool = Pool::start(scope, self.decode_threads, "decode");
            let mut line = 1;
            let result = loop {
                if out.stopping() {
                    break Ok(());
                }
                let (bytes, ends, n) = match lines.next(self.batch_size, pool.spare()) {
                    Ok(read) => read,
                    Err(e) => break Err(self.read_error(e)),
                };
                if n == 0 {
                    break Ok(());
                }
                out.stats
                    .bytes_read
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let chunk = Chunk {
                    first_line: line,
                    bytes,
                    ends,
                };
                line += n;
                let file = file.clone();
                pool.submit(move |decoder, builder| decode(&file, chunk, decoder, builder));
                if !pool.deliver(out, Until::Room) {
                    return Ok(());
                }
            };
            pool.deliver(out, Until::Done);
            result
        })
    }

    /// Paced by the records' timestamps: one line at a time, each handed on when it is due.
    fn run_paced(&self, out: &mut Output) -> Result<(), StageError> {
        let mut reader = self.open()?;
        let mut decoder = Decoder::default();
        let (mut one, mut builder) = (BatchBuilder::default(), BatchBuilder::default());
        let started = Instant::now();
        let mut first_ts: Option<i64> = None;
        let mut line = 1;
        let file = self.path.display().to_string();
        let batch = |builder: &mut BatchBuilder| Decoded {
            batch: builder.take(),
            ..Decoded::default()
        };
        while !out.stopping() {
            let mut bytes = Vec::new();
            if self.read_chunk(&mut reader, &mut bytes, 1)? == 0 {
                break;
            }
            out.stats
                .bytes_read
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            let chunk = Chunk::new(line, bytes);
            line += 1;
            let mut record = decode(&file, chunk, &mut decoder, &mut one);
            let decoded = std::mem::take(&mut record.batch);
            // Its count and dead letters now; the record itself when it is due.
            hand_on(record, out);
            let Some(&ts) = decoded.time.first() else {
                continue;
            };
            let first = *first_ts.get_or_insert(ts);
            let due = Duration::from_secs_f64((ts - first).max(0) as f64 / 1000.0 / self.speed);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                // Hand over what is ready before sleeping, so downstream sees records on time.
                if !builder.is_empty() && !hand_on(batch(&mut builder), out) {
                    return Ok(());
                }
                out.sleep(wait);
            }
            let fields = decoded.columns.iter().map(|c| (c.name.clone(), c.value(0)));
            builder.push(ts, decoded.origin[0], fields.collect::<Vec<_>>());
            if builder.len() >= self.batch_size && !hand_on(batch(&mut builder), out) {
                return Ok(());
            }
        }
        hand_on(batch(&mut builder), out);
        Ok(())
    }
}

impl Source for Replay {
    fn run(&mut self, out: &mut Output) -> Result<(), StageError> {
        // The progress line's percentage and ETA: bytes read out of the file's size.
        if let Ok(meta) = std::fs::metadata(&self.path) {
            out.stats.bytes_total.store(meta.len(), Ordering::Relaxed);
        }
        if self.speed > 0.0 {
            self.run_paced(out)
        } else {
            self.run_parallel(out)
        }
    }
}
