//! `type = "kafka"`: reads every partition of one or more topics, decodes records exactly as `replay`
//! decodes capture lines, and commits offsets that are durable downstream. With `start = "committed"`
//! the pipeline takes checkpoints (see [`crate::checkpoint`]): the source hands on barriers, seeks to a
//! restored checkpoint's offsets, and commits each complete checkpoint's offsets. Otherwise it commits
//! once every sink downstream holds the results (at least once), with the window stages' watermarks in
//! the metadata (see `resume`). A run ends on a stop signal, after `idle_timeout` without records once
//! every partition is read to its end, or after `max_records`. With `fallback`, a capture is replayed
//! when no broker answers at start.

mod commits;
mod config;
mod member;
mod offsets;
mod resume;

pub use config::{Fallback, KafkaConfig, Mode, Start};

/// How often the topics are checked for partitions added while running.
const DISCOVERY_INTERVAL: StdDuration = StdDuration::from_secs(5);
/// A partition that holds the others back this long without being at its end gets a warning.
const HOLD_WARNING: StdDuration = StdDuration::from_secs(15);

use super::capture::{CaptureLine, Decoder};
use super::pool::{DeadLine, Decoded, Pool, Until};
use crate::kafka::reader::{self, Assignment, KafkaConsumer, Polled, Reader};
use crate::kafka::{self, ConsumerReporter, Reporter};
use crate::record::{Ack, BatchBuilder, Origin};
use crate::topology::{Output, Progress, Source, StageError};
use commits::positions_from_json;
use offsets::{BatchDone, Shared};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

struct FallbackSource {
    path: PathBuf,
    timeout: StdDuration,
    source: Box<dyn Source>,
}

pub struct KafkaSource {
    stage: String,
    brokers: String,
    topics: Vec<String>,
    group_id: String,
    mode: Mode,
    start: Start,
    properties: Vec<(String, String)>,
    batch_size: usize,
    linger: StdDuration,
    idle_partition: StdDuration,
    commit_interval: StdDuration,
    idle_timeout: Option<StdDuration>,
    max_records: Option<u64>,
    fallback: Option<FallbackSource>,
    /// The watermarks outgrew the commit metadata once already: warn once, not at every commit.
    said_metadata_too_long: AtomicBool,
}

/// One partition to read.
struct Slot {
    topic: String,
    partition: i32,
}

/// How finding the partitions ended.
enum Found {
    Partitions(Vec<Slot>),
    /// No broker answered within the fallback's timeout.
    Unreachable,
    /// Stopped, or the topics never appeared within `idle_timeout`: no input.
    Nothing,
}

/// A record as fetched, waiting to be decoded with its batch.
struct Raw {
    topic: Arc<str>,
    partition: i32,
    record: Polled,
}

/// Decodes a batch's records, as `replay` decodes capture lines; the ones that cannot be are
/// dead-lettered in the capture format, so a fixed record can be replayed.
fn decode(
    raw: Vec<Raw>,
    acks: Vec<Ack>,
    decoder: &mut Decoder,
    builder: &mut BatchBuilder,
) -> Decoded {
    let mut dead = Vec::new();
    for Raw {
        topic,
        partition,
        record,
    } in raw
    {
        let origin = Origin {
            partition,
            offset: record.offset,
        };
        let decoded = match (record.timestamp, record.value.as_deref()) {
            (None, _) => Err("record has no timestamp".to_string()),
            (_, None) => Err("record has no value".to_string()),
            (Some(ts), Some(bytes)) => match std::str::from_utf8(bytes) {
                Ok(text) => decoder.payload(text, ts, origin, builder),
                Err(_) => Err("record value is not UTF-8".to_string()),
            },
        };
        if let Err(reason) = decoded {
            let line = CaptureLine {
                topic: Cow::Borrowed(&topic),
                partition,
                offset: record.offset,
                timestamp: record.timestamp.unwrap_or(-1),
                key: record.key.as_deref().map(String::from_utf8_lossy),
                value: record
                    .value
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default(),
            };
            dead.push(DeadLine {
                text: serde_json::to_string(&line).expect("a capture line serialises"),
                at: serde_json::json!({ "topic": &*topic, "partition": partition, "offset": record.offset }),
                reason,
            });
        }
    }
    let mut batch = builder.take();
    batch.acks = acks;
    Decoded {
        batch,
        // Counted when read.
        records: 0,
        dead,
        spare: Vec::new(),
    }
}

/// The batch being built and the offsets it covers.
struct Pending {
    raw: Vec<Raw>,
    /// Topic per slot, shared by its records.
    topics: Vec<Arc<str>>,
    /// Last offset consumed into this batch, per slot (dead-lettered records included).
    last: Vec<Option<i64>>,
    since: Option<Instant>,
    /// Per slot, the offset after the last record handed on (or where reading started, when known):
    /// the source's position in a checkpoint.
    next: Vec<Option<i64>>,
}

impl KafkaSource {
    fn label(&self) -> String {
        format!("stage `{}`", self.stage)
    }

    fn consumer(&self, reporter: Arc<Reporter>) -> Result<KafkaConsumer, StageError> {
        // Where a committed offset no longer exists (retention), start at the oldest record left;
        // a group member also where the group has none, unless it starts at the latest.
        let reset = match (self.mode, self.start) {
            (Mode::Group, Start::Latest) => "latest",
            _ => "earliest",
        };
        let mut config =
            kafka::member_config(&self.brokers, &self.properties, &self.group_id, reset);
        let group = (self.mode == Mode::Group).then(|| {
            // Only the partitions that change hands stop for a rebalance.
            if !self
                .properties
                .iter()
                .any(|(k, _)| k == "partition.assignment.strategy")
            {
                config.set("partition.assignment.strategy", "cooperative-sticky");
            }
            Arc::new(kafka::group::Membership::default())
        });
        config
            .create_with_context(ConsumerReporter(reporter, group))
            .map_err(|e| {
                StageError::with("cannot create the kafka consumer; check `properties`", e)
            })
    }

    /// Asks the brokers for the topics' partitions: until they answer (or the fallback's time is up) and
    /// until every topic exists (or `idle_timeout` passes).
    fn find_partitions(
        &self,
        consumer: &KafkaConsumer,
        reporter: &Reporter,
        out: &Output,
    ) -> Found {
        let started = Instant::now();
        let (mut said_unreachable, mut said_missing, mut said_security) = (false, false, false);
        loop {
            if out.stopping() {
                return Found::Nothing;
            }
            // With a fallback, ask a second at a time, so the client's error events are read as they
            // come: a TLS or SASL mismatch is known within the first attempts.
            let timeout = match &self.fallback {
                Some(fb) => fb
                    .timeout
                    .saturating_sub(started.elapsed())
                    .clamp(StdDuration::from_millis(100), StdDuration::from_secs(1)),
                None => StdDuration::from_secs(5),
            };
            match kafka::topic_partitions(consumer.client(), &self.topics, timeout) {
                Err(e) => {
                    // Serve the client's error events, which say why connecting failed (TLS, SASL).
                    for _ in 0..64 {
                        if consumer.poll(StdDuration::ZERO).is_none() {
                            break;
                        }
                    }
                    if let Some(fb) = &self.fallback {
                        // A broker that answers in another protocol will not start to agree: fall
                        // back now, saying why, rather than after `connect_timeout`.
                        if started.elapsed() >= fb.timeout || reporter.security_problem().is_some()
                        {
                            return Found::Unreachable;
                        }
                    } else if let (false, Some(why)) = (said_security, reporter.security_problem())
                    {
                        eprintln!("warning: {}: cannot connect to kafka at `{}`: {why}; check `security.protocol` and the `ssl.*` / `sasl.*` properties; retrying", self.label(), self.brokers);
                        said_security = true;
                    } else if !said_unreachable && !said_security && !reporter.is_down() {
                        eprintln!("warning: {}: no kafka broker answers at `{}` yet ({e}); waiting for one", self.label(), self.brokers);
                        said_unreachable = true;
                    }
                    out.sleep(StdDuration::from_millis(200));
                }
                Ok(found) => {
                    reporter.alive();
                    let missing: Vec<&str> = self
                        .topics
                        .iter()
                        .zip(&found)
                        .filter(|(_, p)| p.is_none())
                        .map(|(t, _)| t.as_str())
                        .collect();
                    if missing.is_empty() {
                        let slots = self
                            .topics
                            .iter()
                            .zip(found)
                            .flat_map(|(t, ps)| {
                                ps.unwrap_or_default().into_iter().map(|p| Slot {
                                    topic: t.clone(),
                                    partition: p,
                                })
                            })
                            .collect();
                        return Found::Partitions(slots);
                    }
                    let names = missing
                        .iter()
                        .map(|t| format!("`{t}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    if !said_missing {
                        eprintln!(
                            "warning: {}: topic {names} not found at `{}`; waiting for it to be created (load a capture with `tributary produce --partitions N`)",
                            self.label(),
                            self.brokers
                        );
                        said_missing = true;
                    }
                    if let Some(idle) = self.idle_timeout {
                        if started.elapsed() >= idle {
                            eprintln!("warning: {}: still no topic {names} after `idle_timeout`; ending the input", self.label());
                            return Found::Nothing;
                        }
                    }
                    out.sleep(StdDuration::from_secs(1));
                }
            }
        }
    }

    /// Assigns every partition at its start offset: a restored checkpoint's position, else the group's
    /// committed offset (with `start = "committed"`), else `start`. Returns the start offsets that are
    /// known numbers, per slot; `None` when stopped meanwhile.
    fn assign(
        &self,
        reader: &mut Reader,
        slots: &[Slot],
        out: &Output,
    ) -> Result<Option<Vec<Option<i64>>>, StageError> {
        let mut all = TopicPartitionList::new();
        for s in slots {
            all.add_partition(&s.topic, s.partition);
        }
        // Short attempts, so a stop while the broker is slow to answer is not held up; a warning only
        // once it has not answered for 10 s.
        let asked = Instant::now();
        let committed = loop {
            if self.start != Start::Committed {
                break None;
            }
            if out.stopping() {
                return Ok(None);
            }
            match reader
                .consumer()
                .committed_offsets(all.clone(), StdDuration::from_secs(1))
            {
                Ok(c) => break Some(c),
                Err(e) if asked.elapsed() >= StdDuration::from_secs(10) => {
                    eprintln!("warning: {}: cannot read the committed offsets of group `{}` ({e}); retrying", self.label(), self.group_id);
                    out.sleep(StdDuration::from_secs(1));
                }
                Err(_) => out.sleep(StdDuration::from_millis(100)),
            }
        };
        let checkpoints = out.checkpoints();
        let restored = checkpoints
            .restored_position(&self.stage)
            .map(|p| positions_from_json(&p))
            .transpose()
            .map_err(StageError::msg)?;
        match (&restored, &committed) {
            (Some(_), _) => {}
            // Offsets committed with a checkpoint rely on its window state: resuming without it would
            // lose the records of the windows that were open then.
            (None, Some(c)) if checkpoints.enabled() => {
                if let Some(id) = c
                    .elements()
                    .iter()
                    .filter_map(|e| resume::checkpoint(e.metadata()))
                    .max()
                {
                    return Err(StageError::msg(format!(
                        "group `{}` committed its offsets with checkpoint {id}, which is not in the checkpoint directory (`[checkpoint] dir`); put that directory back to resume with its window state, or start afresh with a new `group_id`",
                        self.group_id
                    )));
                }
                self.restore(c, out.progress());
            }
            (None, Some(c)) => self.restore(c, out.progress()),
            (None, None) => {}
        }
        let mut starts = Vec::with_capacity(slots.len());
        let assignment = slots
            .iter()
            .map(|s| {
                let at = |p: &Option<Vec<(String, i32, i64)>>| {
                    p.as_ref()?
                        .iter()
                        .find(|(t, n, _)| *t == s.topic && *n == s.partition)
                        .map(|e| e.2)
                };
                let start = match (self.start, at(&restored)) {
                    (_, Some(n)) => Offset::Offset(n),
                    (Start::Earliest, None) => Offset::Beginning,
                    (Start::Latest, None) => Offset::End,
                    (Start::Committed, None) => match committed
                        .as_ref()
                        .and_then(|c| c.find_partition(&s.topic, s.partition))
                        .map(|e| e.offset())
                    {
                        Some(Offset::Offset(n)) if n >= 0 => Offset::Offset(n),
                        _ => Offset::Beginning,
                    },
                };
                starts.push(match start {
                    Offset::Offset(n) => Some(n),
                    _ => None,
                });
                Assignment {
                    topic: s.topic.clone(),
                    partition: s.partition,
                    start,
                }
            })
            .collect();
        reader
            .assign(assignment)
            .map_err(|e| StageError::with("cannot assign the topics' partitions", e))?;
        Ok(Some(starts))
    }

    /// Reads until the end of input (`true`) or a stop (`false`).
    #[allow(clippy::too_many_arguments)]
    fn consume(
        &self,
        reader: &mut Reader,
        shared: &Arc<Shared>,
        reporter: &Reporter,
        out: &mut Output,
        pool: &mut Pool,
        pending: &mut Pending,
        committed: &mut u64,
        mut member: Option<&mut member::Member>,
    ) -> Result<bool, StageError> {
        let checkpoints = out.checkpoints().clone();
        let mut consumed: u64 = 0;
        let mut last_commit = Instant::now();
        let mut last_probe = Instant::now();
        let mut last_discovery = Instant::now();
        let mut last_lag = Instant::now();
        // The idle_timeout clock: the last record, or the end of the last outage.
        let mut quiet_since = Instant::now();
        let mut warned_hold = false;
        loop {
            if out.stopping() {
                return Ok(false);
            }
            self.checkpoint_work(reader, pending, out, pool, committed, reporter);
            let now = Instant::now();
            let mut wait = StdDuration::from_millis(100);
            if let Some(d) = reader.next_deadline(now) {
                wait = wait.min(d);
            }
            if let Some(since) = pending.since {
                wait = wait.min((since + self.linger).saturating_duration_since(now));
            }
            if !pool.is_idle() {
                // A batch is being decoded: come back for it soon, not after a quiet poll.
                wait = wait.min(StdDuration::from_millis(1));
            }
            if member.is_some() && !pool.deliver(out, Until::Done) {
                // A partition taken away in the poll below waits for its records downstream; none
                // may be left behind this thread (see `member`).
                return Ok(true);
            }
            reader.fill(wait);
            if let Some(m) = member.as_deref_mut() {
                m.apply(reader, shared, pending);
            }
            if !pool.deliver(out, Until::Ready) {
                return Ok(true);
            }
            let now = Instant::now();
            while let Some((slot, record)) = reader.pop(now) {
                self.take(reader, slot, record, pending, out);
                consumed += 1;
                if pending.raw.len() >= self.batch_size {
                    if !self.emit(pending, shared, out, pool) {
                        return Ok(true);
                    }
                    // A busy source may stay in this loop for the whole input.
                    self.checkpoint_work(reader, pending, out, pool, committed, reporter);
                }
                if self.max_records.is_some_and(|m| consumed >= m) {
                    self.emit(pending, shared, out, pool);
                    return Ok(true);
                }
            }
            if pending.since.is_some_and(|s| s.elapsed() >= self.linger)
                && !self.emit(pending, shared, out, pool)
            {
                return Ok(true);
            }
            if !checkpoints.enabled() && last_commit.elapsed() >= self.commit_interval {
                last_commit = Instant::now();
                self.commit(reader, shared, out, CommitMode::Async, false, reporter);
            }
            if reporter.is_down() && last_probe.elapsed() >= StdDuration::from_secs(2) {
                // librdkafka reports no reconnection; ask for metadata to learn whether a broker is back.
                last_probe = Instant::now();
                if reader
                    .consumer()
                    .fetch_metadata(Some(&self.topics[0]), StdDuration::from_secs(1))
                    .is_ok()
                {
                    reporter.alive();
                }
            }
            if last_lag.elapsed() >= StdDuration::from_secs(1) {
                // For the metrics and the progress line; a local read of what fetches said.
                last_lag = Instant::now();
                for (topic, partition, lag) in reader.lags() {
                    out.stats.set_partition_lag(topic, partition, lag);
                }
            }
            // A group finds new partitions itself, and gives them to a member.
            if member.is_none()
                && !reporter.is_down()
                && last_discovery.elapsed() >= DISCOVERY_INTERVAL
            {
                last_discovery = Instant::now();
                self.discover(reader, shared, pending);
            }
            match reader.holding(Instant::now()) {
                Some((slot, held, false)) if held >= HOLD_WARNING && !reporter.is_down() => {
                    if !warned_hold {
                        eprintln!(
                            "warning: {}: {} has delivered nothing for {} s and is not known to be read to its end; the other partitions' records wait for it",
                            self.label(),
                            reader.describe(slot),
                            held.as_secs()
                        );
                        warned_hold = true;
                    }
                }
                Some(_) => {}
                None => warned_hold = false,
            }
            if let Some(idle) = self.idle_timeout {
                // Idle means idle while connected: an outage is not the end of the input.
                if reporter.is_down() {
                    quiet_since = Instant::now();
                }
                quiet_since = quiet_since.max(reader.last_record());
                if reader.all_at_end() && quiet_since.elapsed() >= idle {
                    // The end of the input: what waits for idle partitions goes out now, in order.
                    while let Some((slot, record)) = reader.pop_any() {
                        self.take(reader, slot, record, pending, out);
                        if pending.raw.len() >= self.batch_size
                            && !self.emit(pending, shared, out, pool)
                        {
                            return Ok(true);
                        }
                    }
                    if member.is_none() || !pending.raw.is_empty() {
                        self.emit(pending, shared, out, pool);
                    }
                    let Some(m) = member.as_deref_mut() else {
                        return Ok(true);
                    };
                    // A member ends with the group: its own partitions are handled and committed, and
                    // every other one is committed to its end by whoever holds it. Until then it stays,
                    // to take over the partitions of a member that leaves.
                    if !pool.deliver(out, Until::Done) {
                        return Ok(true);
                    }
                    shared.wait_idle();
                    self.commit(reader, shared, out, CommitMode::Sync, false, reporter);
                    if m.group_done(reader) {
                        return Ok(true);
                    }
                }
            }
        }
    }

    /// Starts reading partitions added to the topics since the start, from their beginning.
    fn discover(&self, reader: &mut Reader, shared: &Shared, pending: &mut Pending) {
        // A short timeout: this runs between polls. What fails now is tried again next time.
        let Ok(added) = reader.discover(&self.topics, StdDuration::from_millis(500)) else {
            return;
        };
        for slot in added {
            let new = shared.lock().add_partition();
            debug_assert_eq!(new, slot);
            pending.last.push(None);
            pending.next.push(None);
            eprintln!(
                "tributary: {}: {} was added; reading it from its beginning",
                self.label(),
                reader.describe(slot)
            );
        }
    }

    /// Adds one record to the pending batch; it is decoded with its batch, on the decode threads.
    fn take(
        &self,
        reader: &Reader,
        slot: usize,
        record: Polled,
        pending: &mut Pending,
        out: &Output,
    ) {
        out.stats.records_in.fetch_add(1, Ordering::Relaxed);
        pending.last[slot] = Some(record.offset);
        pending.since.get_or_insert_with(Instant::now);
        while pending.topics.len() <= slot {
            pending
                .topics
                .push(reader.slot(pending.topics.len()).0.into());
        }
        pending.raw.push(Raw {
            topic: pending.topics[slot].clone(),
            partition: reader.slot(slot).1,
            record,
        });
    }

    /// Hands the pending batch to the decode threads with one token for its offsets, and hands on what
    /// they have decoded, in order. `false` if nobody listens any more.
    fn emit(
        &self,
        pending: &mut Pending,
        shared: &Arc<Shared>,
        out: &mut Output,
        pool: &mut Pool,
    ) -> bool {
        pending.since = None;
        let runs: Vec<(usize, i64)> = pending
            .last
            .iter_mut()
            .enumerate()
            .filter_map(|(slot, last)| last.take().map(|l| (slot, l)))
            .collect();
        for &(slot, last) in &runs {
            pending.next[slot] = Some(last + 1);
        }
        let raw = std::mem::take(&mut pending.raw);
        let acks = if runs.is_empty() {
            Vec::new()
        } else {
            let id = shared.lock().open(&runs);
            let slots = runs.iter().map(|(s, _)| *s).collect();
            vec![Ack::new(BatchDone {
                shared: shared.clone(),
                batch: id,
                slots,
            })]
        };
        // An empty batch (all dead-lettered) is dropped once handed on, which marks its offsets done.
        pool.submit(move |decoder, builder| decode(raw, acks, decoder, builder));
        pool.deliver(out, Until::Room)
    }
}

impl Source for KafkaSource {
    fn run(&mut self, out: &mut Output) -> Result<(), StageError> {
        let r = self.read(out);
        // A source that stopped or failed before it decided resumes nothing.
        out.checkpoints().abandon(&self.stage);
        r
    }
}

impl KafkaSource {
    fn read(&mut self, out: &mut Output) -> Result<(), StageError> {
        let reporter = Arc::new(Reporter::new(self.label()));
        // With a fallback, the connection attempt is reported by one line below, not error by error.
        reporter.set_quiet(self.fallback.is_some());
        let consumer = self.consumer(reporter.clone())?;
        let slots = match self.find_partitions(&consumer, &reporter, out) {
            Found::Partitions(slots) => slots,
            Found::Nothing => return Ok(()),
            Found::Unreachable => {
                drop(consumer);
                let fb = self
                    .fallback
                    .as_mut()
                    .expect("only a fallback gives up on connecting");
                match reporter.security_problem() {
                    Some(why) => eprintln!(
                        "warning: {}: cannot connect to kafka at `{}` within {:?}: {why}; check `security.protocol` and the `ssl.*` / `sasl.*` properties; replaying the capture `{}` instead",
                        format_args!("stage `{}`", self.stage),
                        self.brokers,
                        fb.timeout,
                        fb.path.display()
                    ),
                    None => eprintln!(
                        "warning: {}: no kafka broker answered at `{}` within {:?}; replaying the capture `{}` instead",
                        format_args!("stage `{}`", self.stage),
                        self.brokers,
                        fb.timeout,
                        fb.path.display()
                    ),
                }
                out.checkpoints().begin(
                    &self.stage,
                    Err(format!(
                        "stage `{}` replays the capture `{}` from its start",
                        self.stage,
                        fb.path.display()
                    )),
                );
                return fb.source.run(out);
            }
        };
        reporter.set_quiet(false);
        let topics = self
            .topics
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if self.mode == Mode::Group {
            eprintln!(
                "tributary: {} joins group `{}` at `{}` to share the {} partitions of {topics} with its other members (a partition the group has no commit for starts at `{}`)",
                self.label(),
                self.group_id,
                self.brokers,
                slots.len(),
                match self.start {
                    Start::Latest => "latest",
                    _ => "earliest",
                }
            );
        } else {
            eprintln!(
                "tributary: {} reads {topics} from kafka at `{}` ({} partitions, group `{}`, start `{}`)",
                self.label(),
                self.brokers,
                slots.len(),
                self.group_id,
                self.start.as_str()
            );
        }
        let mut reader = Reader::new(consumer, reporter.clone(), self.idle_partition);
        let mut member = None;
        let starts = if self.mode == Mode::Group {
            let mut all = TopicPartitionList::new();
            for s in &slots {
                all.add_partition(&s.topic, s.partition);
            }
            reader
                .subscribe(&self.topics)
                .map_err(|e| StageError::with("cannot join the consumer group", e))?;
            member = Some(member::Member::new(
                self.label(),
                self.group_id.clone(),
                all,
            ));
            Vec::new()
        } else {
            match self.assign(&mut reader, &slots, out)? {
                Some(starts) => starts,
                None => return Ok(()),
            }
        };
        let checkpoints = out.checkpoints().clone();
        checkpoints.begin(&self.stage, Ok(()));
        let mut pending = Pending {
            raw: Vec::with_capacity(self.batch_size),
            topics: Vec::new(),
            last: vec![None; reader.partitions()],
            since: None,
            next: starts,
        };
        // The newest checkpoint whose offsets were committed.
        let mut committed = checkpoints.restored_id().unwrap_or(0);
        let shared = Shared::new(reader.partitions(), out.stop_flag());
        if let (Some(m), Some(group)) = (&member, &reader.consumer().context().1) {
            group.set_on_revoke(m.on_revoke(shared.clone()));
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ended = std::thread::scope(|scope| {
            let mut pool = Pool::start(scope, threads, "decode");
            let ended = self.consume(
                &mut reader,
                &shared,
                &reporter,
                out,
                &mut pool,
                &mut pending,
                &mut committed,
                member.as_mut(),
            );
            // Whatever ended the reading, what was read goes on, in order.
            pool.deliver(out, Until::Done);
            ended
        });
        if let Some(waits) = reader::describe_waits(&reader) {
            out.stats.set_note(waits);
        }
        let ended = ended?;
        if checkpoints.enabled() {
            return self.last_checkpoint(ended, &reader, &pending, out, committed, &reporter);
        }
        if ended {
            // End of input: downstream flushes its windows and writes them; then their offsets are done.
            out.close();
            shared.wait_idle();
        }
        if !self.commit(&reader, &shared, out, CommitMode::Sync, true, &reporter) {
            eprintln!(
                "warning: {}: the last offsets could not be committed; a run with `start = \"committed\"` reads those records again",
                self.label()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Pipeline;
    use std::path::Path;

    fn parse(source: &str) -> Result<(), String> {
        let text = format!(
            "{source}\n[stages.out]\ntype = \"file\"\ninputs = [\"events\"]\npath = \"x.jsonl\"\n"
        );
        Pipeline::parse(Path::new("p.toml"), text)
            .map(|_| ())
            .map_err(|d| d.to_string())
    }

    #[test]
    fn fallback_is_a_path_or_a_table() {
        let base = "[stages.events]\ntype = \"kafka\"\nbrokers = \"b:9092\"\ntopics = [\"t\"]\ngroup_id = \"g\"\n";
        parse(&format!("{base}fallback = \"c.jsonl\"")).unwrap();
        parse(&format!(
            "{base}fallback = {{ replay = \"c.jsonl\", connect_timeout = \"2s\" }}"
        ))
        .unwrap();
        let e = parse(&format!(
            "{base}fallback = {{ replay = \"c.jsonl\", timeout = \"2s\" }}"
        ))
        .unwrap_err();
        assert!(e.contains("unknown field `timeout`"), "{e}");
        parse(&format!("{base}idle_partition = \"0s\"")).unwrap();
        let e = parse(&format!("{base}idle_partition = 5")).unwrap_err();
        assert!(e.contains("idle_partition"), "{e}");
        let e = parse(&format!("{base}start = \"beginning\"")).unwrap_err();
        assert!(e.contains("unknown variant `beginning`"), "{e}");
        let e =
            parse("[stages.events]\ntype = \"kafka\"\nbrokers = \"b:9092\"\ntopics = [\"t\"]\n")
                .unwrap_err();
        assert!(e.contains("missing field `group_id`"), "{e}");
    }
}
