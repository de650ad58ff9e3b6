//! `tributary produce`: loads a capture into a topic, keeping each record's key and timestamp, and its
//! partition when the topic has that partition (otherwise the key picks one, as Java clients do).

use super::{producer_config, Deliveries, Error, TopicSender};
use crate::sources::capture::Decoder;
use crate::sources::lines::{chunk_lines, Lines};
use crate::topology::StopFlag;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::producer::{BaseProducer, Producer};
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to produce, and where.
pub struct ProduceOptions<'a> {
    pub brokers: &'a str,
    pub topic: &'a str,
    pub file: &'a Path,
    /// Pacing by record timestamps: `0` as fast as possible, `1.0` real time, `10.0` ten times faster.
    pub speed: f64,
    /// Create the topic with this many partitions (if it does not exist yet).
    pub partitions: Option<i32>,
    pub properties: &'a [(String, String)],
}

/// What a `produce` did.
#[derive(Debug)]
pub struct ProduceReport {
    pub records: u64,
    /// Records placed by key hash because the topic lacks their captured partition.
    pub by_key: u64,
    /// Capture lines that could not be read (reported on standard error, not produced).
    pub skipped: u64,
    pub partitions: usize,
    pub created: bool,
}

pub fn produce(opts: &ProduceOptions<'_>, stop: &StopFlag) -> Result<ProduceReport, Error> {
    super::check_properties(opts.properties)?;
    let file = std::fs::File::open(opts.file).map_err(|e| Error::Read {
        path: opts.file.to_path_buf(),
        source: e,
    })?;
    let reporter = Arc::new(super::Reporter::new("produce"));
    let context = Deliveries::new(reporter);
    let mut config = producer_config(opts.brokers, opts.properties);
    // Idempotence keeps each partition in file order through retries, so offsets follow the capture.
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        // The Java clients' key hash, so keys land where other producers would put them.
        .set("partitioner", "murmur2_random")
        // A missing topic is an error to report (or `--partitions` creates it), not one to create quietly.
        .set("allow.auto.create.topics", "false");
    let producer: BaseProducer<Deliveries> =
        config.create_with_context(context).map_err(Error::Client)?;

    let mut created = false;
    if let Some(n) = opts.partitions {
        created = create_topic(opts, n)?;
    }
    // One thread reads and decodes the capture while this one produces: each alone keeps a core busy.
    let report = std::thread::scope(|scope| -> Result<ProduceReport, Error> {
        // Made here, so that an early return drops the receiver and the reader, blocked on a full
        // channel, stops.
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Result<Chunk, Error>>(4);
        let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Chunk>();
        // Reading starts while the topic's metadata and the producer id are fetched.
        std::thread::Builder::new()
            .name("produce-read".into())
            .spawn_scoped(scope, || {
                read_chunks(file, opts.file, stop, full_tx, empty_rx)
            })
            .expect("spawning a thread");
        let partitions = wait_for_partitions(&producer, opts)?;
        super::hasten_producer_id(producer.client(), opts.topic, Duration::from_secs(1));
        let mut report = ProduceReport {
            records: 0,
            by_key: 0,
            skipped: 0,
            partitions,
            created,
        };
        let sender = TopicSender::new(&producer, opts.topic)?;
        let started = Instant::now();
        let mut first_ts: Option<i64> = None;
        for chunk in full_rx {
            let chunk = chunk?;
            for (line, reason) in &chunk.skipped {
                report.skipped += 1;
                if report.skipped <= 10 {
                    eprintln!(
                        "warning: {}:{line}: {reason}; line skipped",
                        opts.file.display()
                    );
                }
            }
            for r in &chunk.records {
                if stop.is_stopped() {
                    break;
                }
                if opts.speed > 0.0 {
                    let first = *first_ts.get_or_insert(r.timestamp);
                    let due = Duration::from_secs_f64(
                        (r.timestamp - first).max(0) as f64 / 1000.0 / opts.speed,
                    );
                    if let Some(mut wait) = due.checked_sub(started.elapsed()) {
                        // Deliver what is queued before sleeping, so consumers see records on time.
                        producer.poll(Duration::ZERO);
                        while !wait.is_zero() && !stop.is_stopped() {
                            let step = wait.min(Duration::from_millis(50));
                            producer.poll(step);
                            wait = wait.saturating_sub(step);
                        }
                    }
                }
                let partition = if r.partition >= 0 && (r.partition as usize) < partitions {
                    r.partition
                } else {
                    report.by_key += 1;
                    // Placed by the partitioner (`murmur2_random`, by key).
                    UNASSIGNED
                };
                let key = r.key.clone().map(|k| &chunk.bytes[k]);
                let value = &chunk.bytes[r.value.clone()];
                sender
                    .send_waiting(partition, key, Some(value), r.timestamp, WAIT)
                    .map_err(|source| Error::Kafka {
                        what: format!("cannot produce to topic `{}`", opts.topic),
                        source,
                    })?;
                report.records += 1;
                // Serves delivery reports; every record would cost a call per record for nothing.
                if report.records.is_multiple_of(512) {
                    producer.poll(Duration::ZERO);
                }
            }
            // The reader stops at its next chunk once `stop` is set, or when this end is gone.
            let _ = empty_tx.send(chunk);
        }
        Ok(report)
    })?;
    super::flush(&producer, Duration::from_secs(60)).map_err(|e| Error::Kafka {
        what: format!(
            "not every record reached topic `{}` within 60s; is the broker up?",
            opts.topic
        ),
        source: e,
    })?;
    if let Some((failed, first)) = producer.context().take_failures() {
        return Err(Error::Delivery {
            topic: opts.topic.to_string(),
            failed,
            sent: report.records,
            first,
        });
    }
    Ok(report)
}

/// librdkafka's partition number for "let the partitioner choose".
const UNASSIGNED: i32 = -1;

/// How long to serve delivery reports while librdkafka's queue is full, before trying again.
const WAIT: Duration = Duration::from_millis(1);

/// Capture lines read and decoded, for the producing thread.
#[derive(Default)]
struct Chunk {
    /// The records' keys and values, back to back.
    bytes: Vec<u8>,
    records: Vec<Decoded>,
    /// Lines that could not be read: line number and why.
    skipped: Vec<(u64, String)>,
}

struct Decoded {
    timestamp: i64,
    partition: i32,
    key: Option<Range<usize>>,
    value: Range<usize>,
}

/// Lines per chunk: enough to make the hand-over cheap, few enough to keep both threads busy.
const CHUNK: usize = 1024;

/// Reads `file` and sends its records a chunk at a time, reusing the chunks that come back, until the
/// end of the file, `stop`, or the receiver is gone.
fn read_chunks(
    file: std::fs::File,
    path: &Path,
    stop: &StopFlag,
    full: SyncSender<Result<Chunk, Error>>,
    empty: Receiver<Chunk>,
) {
    let mut lines = Lines::new(file);
    let mut raw = Vec::new();
    let mut decoder = Decoder::default();
    let mut first_line = 1;
    while !stop.is_stopped() {
        let (bytes, ends, n) = match lines.next(CHUNK, std::mem::take(&mut raw)) {
            Ok(read) => read,
            Err(e) => {
                let _ = full.send(Err(Error::Read {
                    path: path.to_path_buf(),
                    source: e,
                }));
                return;
            }
        };
        if n == 0 {
            return;
        }
        let mut chunk = empty.try_recv().unwrap_or_default();
        chunk.bytes.clear();
        chunk.records.clear();
        chunk.skipped.clear();
        for (i, line) in chunk_lines(&bytes, &ends) {
            // Read as bytes, so that a line that is not UTF-8 is skipped like any unreadable line.
            let decoded = line
                .map_err(|_| "line is not valid UTF-8".to_string())
                .map(|l| l.trim_end_matches('\r'));
            if decoded.as_ref().is_ok_and(|l| l.trim().is_empty()) {
                continue;
            }
            match decoded.and_then(|l| decoder.record(l)) {
                Ok(r) => {
                    let key = r.key.map(|k| {
                        let at = chunk.bytes.len();
                        chunk.bytes.extend_from_slice(k.as_bytes());
                        at..chunk.bytes.len()
                    });
                    let at = chunk.bytes.len();
                    chunk.bytes.extend_from_slice(r.value.as_bytes());
                    chunk.records.push(Decoded {
                        timestamp: r.timestamp,
                        partition: r.partition,
                        key,
                        value: at..chunk.bytes.len(),
                    });
                }
                Err(reason) => chunk.skipped.push((first_line + i as u64, reason)),
            }
        }
        first_line += n;
        raw = bytes;
        if full.send(Ok(chunk)).is_err() {
            return;
        }
    }
}

/// Creates the topic; `false` if it already existed (then it is used as it is).
fn create_topic(opts: &ProduceOptions<'_>, partitions: i32) -> Result<bool, Error> {
    if partitions < 1 {
        return Err(Error::CreateTopic {
            topic: opts.topic.into(),
            reason: "`--partitions` must be at least 1".into(),
        });
    }
    // Replication -1: the broker's default replication factor. Captures carry their original (old)
    // timestamps, which time-based retention measures: with the default 7 days, the broker would
    // delete a 2024 capture at its next retention check. Topics made here keep their records.
    let topic = NewTopic::new(opts.topic, partitions, TopicReplication::Fixed(-1))
        .set("retention.ms", "-1");
    let created = super::create_topics(opts.brokers, opts.properties, &[topic]).map_err(|e| {
        Error::CreateTopic {
            topic: e.topic,
            reason: e.reason,
        }
    })?;
    Ok(created[0])
}

/// The topic's partition count, once its metadata shows it (a new topic takes a moment).
fn wait_for_partitions(
    producer: &BaseProducer<Deliveries>,
    opts: &ProduceOptions<'_>,
) -> Result<usize, Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match super::topic_partitions(producer.client(), &[opts.topic.to_string()], left) {
            Ok(found) => {
                if let Some(Some(ps)) = found.first() {
                    return Ok(ps.len());
                }
                if opts.partitions.is_none() {
                    return Err(Error::NoTopic {
                        topic: opts.topic.into(),
                        brokers: opts.brokers.into(),
                    });
                }
            }
            Err(_) if Instant::now() >= deadline => {
                return Err(Error::Unreachable {
                    brokers: opts.brokers.into(),
                    timeout: Duration::from_secs(30),
                })
            }
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(Error::NoTopic {
                topic: opts.topic.into(),
                brokers: opts.brokers.into(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
