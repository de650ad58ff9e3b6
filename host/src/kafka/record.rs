//! `tributary record`: writes what a topic holds (from the beginning of each partition, then live) as a
//! capture that `replay` and `produce` read, in timestamp order across partitions.

use super::interleave::Interleaver;
use super::{client_config, topic_partitions, ConsumerReporter, Error, Reporter};
use crate::sources::capture::CaptureLine;
use crate::topology::StopFlag;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to record, and when to stop (besides Ctrl-C).
pub struct RecordOptions<'a> {
    pub brokers: &'a str,
    pub topic: &'a str,
    pub out: &'a Path,
    pub max_records: Option<u64>,
    pub duration: Option<Duration>,
    pub properties: &'a [(String, String)],
}

/// What a `record` did.
#[derive(Debug)]
pub struct RecordReport {
    pub records: u64,
    pub partitions: usize,
    /// Records without a value (tombstones) or timestamp, which a capture cannot hold.
    pub skipped: u64,
}

struct Held {
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
}

pub fn record(opts: &RecordOptions<'_>, stop: &StopFlag) -> Result<RecordReport, Error> {
    super::check_properties(opts.properties)?;
    let started = Instant::now();
    let reporter = Arc::new(Reporter::new("record"));
    let mut config = client_config(opts.brokers, opts.properties);
    // librdkafka wants a group even for assigned partitions; a capture commits nothing to it.
    config
        .set("group.id", "tributary-record")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer<ConsumerReporter> = config
        .create_with_context(ConsumerReporter(reporter.clone()))
        .map_err(Error::Client)?;
    let timeout = Duration::from_secs(10);
    let partitions = match topic_partitions(&consumer, &[opts.topic.to_string()], timeout) {
        Ok(found) => found.into_iter().next().flatten(),
        Err(_) => {
            return Err(Error::Unreachable {
                brokers: opts.brokers.into(),
                timeout,
            })
        }
    }
    .ok_or_else(|| Error::NoTopic {
        topic: opts.topic.into(),
        brokers: opts.brokers.into(),
    })?;
    let mut assignment = TopicPartitionList::new();
    for p in &partitions {
        assignment
            .add_partition_offset(opts.topic, *p, Offset::Beginning)
            .map_err(|e| Error::Kafka {
                what: "cannot build the partition assignment".into(),
                source: e,
            })?;
    }
    consumer.assign(&assignment).map_err(|e| Error::Kafka {
        what: "cannot assign the topic's partitions".into(),
        source: e,
    })?;

    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::Write {
            path: opts.out.to_path_buf(),
            source: e,
        })?;
    }
    let file = std::fs::File::create(opts.out).map_err(|e| Error::Write {
        path: opts.out.to_path_buf(),
        source: e,
    })?;
    let mut out = BufWriter::new(file);
    let write_err = |e| Error::Write {
        path: opts.out.to_path_buf(),
        source: e,
    };
    let slot_of = |p: i32| partitions.binary_search(&p).ok();
    let mut merge: Interleaver<Held> =
        Interleaver::new(partitions.len(), Duration::from_millis(200), 1 << 16);
    let mut report = RecordReport {
        records: 0,
        partitions: partitions.len(),
        skipped: 0,
    };
    let mut line = Vec::with_capacity(512);
    let mut last_flush = Instant::now();
    let done = |report: &RecordReport| {
        stop.is_stopped()
            || opts.max_records.is_some_and(|m| report.records >= m)
            || opts.duration.is_some_and(|d| started.elapsed() >= d)
    };
    while !done(&report) {
        let mut timeout = merge
            .next_deadline(Instant::now())
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        for _ in 0..4096 {
            let Some(polled) = consumer.poll(timeout.max(Duration::from_millis(1))) else {
                break;
            };
            timeout = Duration::ZERO;
            match polled {
                Ok(m) => {
                    reporter.alive();
                    let Some(slot) = slot_of(m.partition()) else {
                        continue;
                    };
                    match (m.timestamp().to_millis(), m.payload()) {
                        (Some(ts), Some(value)) => {
                            let held = Held {
                                offset: m.offset(),
                                timestamp: ts,
                                key: m.key().map(<[u8]>::to_vec),
                                value: value.to_vec(),
                            };
                            merge.push(slot, ts, held, Instant::now());
                        }
                        _ => report.skipped += 1,
                    }
                }
                Err(KafkaError::PartitionEOF(p)) => {
                    if let Some(slot) = slot_of(p) {
                        merge.reached_end(slot, Instant::now());
                    }
                }
                // Already reported by the client context, which sees every error event first.
                Err(_) => {}
            }
        }
        let now = Instant::now();
        while !done(&report) {
            let Some((slot, held)) = merge.pop(now) else {
                break;
            };
            line.clear();
            let capture = CaptureLine {
                topic: Cow::Borrowed(opts.topic),
                partition: partitions[slot],
                offset: held.offset,
                timestamp: held.timestamp,
                key: held.key.as_deref().map(String::from_utf8_lossy),
                value: String::from_utf8_lossy(&held.value),
            };
            serde_json::to_writer(&mut line, &capture).expect("a capture line serialises");
            line.push(b'\n');
            out.write_all(&line).map_err(write_err)?;
            report.records += 1;
        }
        if last_flush.elapsed() >= Duration::from_secs(1) {
            out.flush().map_err(write_err)?;
            last_flush = Instant::now();
        }
    }
    out.flush().map_err(write_err)?;
    Ok(report)
}
