//! `tributary record`: writes what a topic holds (from the beginning of each partition, then live) as a
//! capture that `replay` and `produce` read, in timestamp order across partitions.

use super::reader::{Assignment, Polled, Reader};
use super::{consumer_config, topic_partitions, ConsumerReporter, Error, Reporter};
use crate::sources::capture::CaptureLine;
use crate::topology::StopFlag;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Offset;
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
    /// How long a partition read to its end may hold the others back (the `kafka` source's
    /// `idle_partition`).
    pub idle_partition: Duration,
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

pub fn record(opts: &RecordOptions<'_>, stop: &StopFlag) -> Result<RecordReport, Error> {
    super::check_properties(opts.properties)?;
    let started = Instant::now();
    let reporter = Arc::new(Reporter::new("record"));
    let mut config = consumer_config(opts.brokers, opts.properties);
    // librdkafka wants a group even for assigned partitions; a capture commits nothing to it.
    config
        .set("group.id", "tributary-record")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer<ConsumerReporter> = config
        .create_with_context(ConsumerReporter::new(reporter.clone()))
        .map_err(Error::Client)?;
    let timeout = Duration::from_secs(10);
    let partitions =
        match topic_partitions(consumer.client(), &[opts.topic.to_string()], timeout) {
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
    let mut reader = Reader::new(consumer, reporter, opts.idle_partition);
    let assignment = partitions
        .iter()
        .map(|&partition| Assignment {
            topic: opts.topic.to_string(),
            partition,
            start: Offset::Beginning,
        })
        .collect();
    reader.assign(assignment).map_err(|e| Error::Kafka {
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
    let mut out = CaptureWriter {
        out: BufWriter::new(file),
        line: Vec::with_capacity(512),
        topic: opts.topic,
    };
    let write_err = |e| Error::Write {
        path: opts.out.to_path_buf(),
        source: e,
    };
    let mut report = RecordReport {
        records: 0,
        partitions: partitions.len(),
        skipped: 0,
    };
    let mut last_flush = Instant::now();
    let mut last_discovery = Instant::now();
    let topics = [opts.topic.to_string()];
    let done = |report: &RecordReport| {
        stop.is_stopped()
            || opts.max_records.is_some_and(|m| report.records >= m)
            || opts.duration.is_some_and(|d| started.elapsed() >= d)
    };
    while !done(&report) {
        let wait = reader
            .next_deadline(Instant::now())
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        reader.fill(wait);
        let now = Instant::now();
        while !done(&report) {
            let Some((slot, held)) = reader.pop(now) else {
                break;
            };
            out.write(reader.slot(slot).1, held, &mut report)
                .map_err(write_err)?;
        }
        if last_flush.elapsed() >= Duration::from_secs(1) {
            out.out.flush().map_err(write_err)?;
            last_flush = Instant::now();
        }
        if last_discovery.elapsed() >= Duration::from_secs(5) {
            last_discovery = Instant::now();
            if let Ok(added) = reader.discover(&topics, Duration::from_millis(500)) {
                report.partitions += added.len();
            }
        }
    }
    // Stopped by a signal or the duration: what was read goes into the capture too, in order.
    if opts.max_records.is_none() {
        while let Some((slot, held)) = reader.pop_any() {
            out.write(reader.slot(slot).1, held, &mut report)
                .map_err(write_err)?;
        }
    }
    out.out.flush().map_err(write_err)?;
    Ok(report)
}

struct CaptureWriter<'a> {
    out: BufWriter<std::fs::File>,
    line: Vec<u8>,
    topic: &'a str,
}

impl CaptureWriter<'_> {
    /// Writes one record as a capture line; one without a timestamp or value is only counted.
    fn write(
        &mut self,
        partition: i32,
        held: Polled,
        report: &mut RecordReport,
    ) -> std::io::Result<()> {
        let (Some(timestamp), Some(value)) = (held.timestamp, held.value.as_deref()) else {
            report.skipped += 1;
            return Ok(());
        };
        self.line.clear();
        let capture = CaptureLine {
            topic: Cow::Borrowed(self.topic),
            partition,
            offset: held.offset,
            timestamp,
            key: held.key.as_deref().map(String::from_utf8_lossy),
            value: String::from_utf8_lossy(value),
        };
        serde_json::to_writer(&mut self.line, &capture).expect("a capture line serialises");
        self.line.push(b'\n');
        report.records += 1;
        self.out.write_all(&self.line)
    }
}
