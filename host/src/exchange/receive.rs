//! `W` in group mode: reads the exchange partitions the group gives this process, and runs the window
//! stage's logic over each one apart (see [`super`] for the design).

use super::{bundle, Exchange, Tag};
use crate::kafka::group::{Change, Membership};
use crate::kafka::reader::KafkaConsumer;
use crate::kafka::{self, ConsumerReporter, Reporter};
use crate::record::{BatchBuilder, Origin};
use crate::sources::capture::Decoder;
use crate::topology::{
    BuildContext, BuildError, Built, Operator, Output, Source, StageConfig, StageError,
};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often each exchange partition's state goes to the changelog (and its offset is committed): the
/// most a new owner reads again.
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(5);
/// How often the source group's progress is asked for: a source partition read to its end holds no
/// record back.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Records folded per batch handed to the window.
const BATCH: usize = 1024;
/// Records taken per poll round before folding (at least one message).
const POLL_BATCH: usize = 4096;
/// Commit metadata of an exchange partition whose windows were all emitted at the end of input.
const FINISHED: &str = "finished";
const STATE_VERSION: u64 = 1;

/// The window stage's own config, moved here by [`super::rewrite`].
#[derive(Debug)]
pub struct ReceiveConfig {
    pub window: Box<dyn StageConfig>,
    pub exchange: Arc<Exchange>,
}

impl StageConfig for ReceiveConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Built, BuildError> {
        let mut spare = Vec::new();
        for _ in 0..self.exchange.spec.partitions {
            match self.window.build(ctx)? {
                Built::Operator(op) => spare.push(op),
                _ => unreachable!("a window stage builds an operator"),
            }
        }
        Ok(Built::Source(Box::new(Receive {
            exchange: self.exchange.clone(),
            spare,
            parts: BTreeMap::new(),
            sources: 0,
            status: SourceStatus::default(),
            quiet: Vec::new(),
        })))
    }

    fn output_key(&self) -> Option<Vec<String>> {
        self.window.output_key()
    }
}

/// Creates the exchange topic and its changelog (compacted) if they do not exist yet.
pub fn create_topics(exchange: &Exchange) -> Result<(), String> {
    let spec = &exchange.spec;
    let (exchange_topic, changelog) = (exchange.topic(), exchange.changelog());
    let topics = [
        NewTopic::new(
            &exchange_topic,
            spec.partitions,
            TopicReplication::Fixed(-1),
        )
        .set("retention.ms", "-1"),
        NewTopic::new(&changelog, spec.partitions, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact"),
    ];
    kafka::create_topics(&spec.brokers, &spec.properties, &topics).map_err(|e| {
        format!(
            "cannot create topic `{}` for the exchange of `{}`: {}",
            e.topic, exchange.stage, e.reason
        )
    })?;
    Ok(())
}

/// What the source's group said when last asked (see [`Receive::source_status`]).
#[derive(Default)]
struct SourceStatus {
    /// Per source partition: its end offset when asked. Its records below it were in the topic then.
    ends: Vec<i64>,
    /// Per source partition: committed at its end, and that end unchanged for the source's
    /// `idle_partition`: idle, as a partition at its end is in one process's merge.
    idle: Vec<bool>,
}

impl SourceStatus {
    /// Whether source partition `q`, with nothing waiting here, lets a record of source partition `p`
    /// at `offset` go. Only if `q` is idle, and only a record that was in the topic when that was
    /// asked: a record produced after it may have been produced after newer, older-stamped records
    /// of `q` too, which may not have reached the exchange yet.
    fn lets_go(&self, q: usize, p: usize, offset: i64) -> bool {
        self.idle.get(q).copied().unwrap_or(false) && self.ends.get(p).is_some_and(|&e| offset < e)
    }
}

/// Since when a source partition found `done` at `end` has been so, given what was found before: the
/// clock starts again whenever its end moved, since records came.
fn quiet(
    before: Option<(i64, Instant)>,
    end: i64,
    done: bool,
    now: Instant,
) -> Option<(i64, Instant)> {
    match before {
        _ if !done => None,
        Some((at, since)) if at == end => Some((at, since)),
        _ => Some((end, now)),
    }
}

/// A record waiting for its turn.
struct Rec {
    ts: i64,
    /// Its offset in the exchange partition: the oldest one waiting is where a restart reads again.
    at: i64,
    offset: i64,
    index: u32,
    /// The record: `range` of the message it came in (a bundle's records share it).
    text: Arc<str>,
    range: std::ops::Range<usize>,
}

/// A message's text, once per message; a record that is not UTF-8 keeps what it can, and fails to
/// decode (dead-lettered) rather than stopping the stage.
fn utf8(bytes: &[u8]) -> Arc<str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Arc::from(text),
        Err(_) => Arc::from(String::from_utf8_lossy(bytes).as_ref()),
    }
}

/// One exchange partition this process owns.
struct Part {
    op: Box<dyn Operator>,
    /// Per source partition: records waiting, in their order.
    queues: Vec<VecDeque<Rec>>,
    /// Per source partition: the event time its next record is not older than (from markers).
    floor: Vec<i64>,
    /// Per source partition: the last record taken (offset, index); anything not after it is a
    /// record read again, skipped.
    seen: Vec<Option<(i64, u32)>>,
    /// Per source partition: the last record folded into the window.
    folded: Vec<Option<(i64, u32)>>,
    /// The next exchange offset to read.
    next: i64,
    /// The end of this exchange partition when the source's group was last asked how far it is: until
    /// it is read that far, what the group said may speak of records still on their way here (a source
    /// partition is committed once its records are in the exchange topic, not once they are read).
    status_end: i64,
    builder: BatchBuilder,
    decoder: Decoder,
    last_snapshot: Instant,
    /// Every window was emitted at the end of input.
    finished: bool,
    skipped: u64,
}

impl Part {
    fn new(op: Box<dyn Operator>, sources: usize) -> Self {
        let now = Instant::now();
        Part {
            op,
            queues: (0..sources).map(|_| VecDeque::new()).collect(),
            floor: vec![i64::MIN; sources],
            seen: vec![None; sources],
            folded: vec![None; sources],
            next: 0,
            status_end: i64::MAX,
            builder: BatchBuilder::default(),
            decoder: Decoder::default(),
            last_snapshot: now,
            finished: false,
            skipped: 0,
        }
    }

    /// Takes one message of the exchange partition, at offset `at`: a record waits for its turn
    /// (`true`), unless it was taken before (read again after a rebalance or a crash: skipped); a
    /// marker raises its source partition's floor. Messages of unknown source partitions are ignored.
    fn take(&mut self, tag: Tag, ts: i64, at: i64, payload: &[u8]) -> bool {
        let text = utf8(payload);
        let range = 0..text.len();
        self.take_text(tag, ts, at, &text, range)
    }

    /// [`Part::take`] of the record at `range` of `text`.
    fn take_text(
        &mut self,
        tag: Tag,
        ts: i64,
        at: i64,
        text: &Arc<str>,
        range: std::ops::Range<usize>,
    ) -> bool {
        match tag {
            Tag::Record {
                partition,
                offset,
                index,
            } if (partition as usize) < self.queues.len() => {
                let p = partition as usize;
                if self.seen[p].is_some_and(|s| s >= (offset, index)) {
                    self.skipped += 1;
                    return false;
                }
                self.seen[p] = Some((offset, index));
                self.queues[p].push_back(Rec {
                    ts,
                    at,
                    offset,
                    index,
                    text: text.clone(),
                    range,
                });
                true
            }
            Tag::Marker { partition, .. } if (partition as usize) < self.floor.len() => {
                let p = partition as usize;
                self.floor[p] = self.floor[p].max(ts);
                false
            }
            _ => false,
        }
    }

    /// Takes the records of a bundle (see [`bundle`]) at exchange offset `at`, as [`Part::take`] takes
    /// single ones. Returns how many wait for their turn; a line that is not a record goes to `bad`.
    fn take_bundle(
        &mut self,
        partition: i32,
        at: i64,
        value: &[u8],
        mut bad: impl FnMut(&str),
    ) -> u64 {
        let text = utf8(value);
        let base = text.as_ptr() as usize;
        let mut taken = 0;
        for entry in bundle::entries(text.as_bytes()) {
            match entry {
                Ok(e) => {
                    let tag = Tag::Record {
                        partition,
                        offset: e.offset,
                        index: e.index,
                    };
                    let start = e.record.as_ptr() as usize - base;
                    let range = start..start + e.record.len();
                    taken += u64::from(self.take_text(tag, e.time, at, &text, range));
                }
                Err(line) => bad(&String::from_utf8_lossy(line)),
            }
        }
        taken
    }

    /// Where a new owner reads again: the oldest record still waiting, else the next to read.
    fn restart_offset(&self) -> i64 {
        self.queues
            .iter()
            .filter_map(|q| q.iter().map(|r| r.at).min())
            .min()
            .unwrap_or(self.next)
    }

    /// The next record in (event time, source partition) order, if no source partition can still
    /// send an older one; any, with `all` (the end of input). A source partition that is idle (see
    /// [`SourceStatus::lets_go`]) holds back nothing that was in the topic when it was found idle; one
    /// that is not holds records back however long it is silent: its reader may have died, and the
    /// member that takes it over sends its records late but in order.
    fn pop(&mut self, status: &SourceStatus, all: bool) -> Option<(usize, Rec)> {
        let (ts, p) = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(p, q)| q.front().map(|r| (r.ts, p)))
            .min()?;
        if !all {
            let offset = self.queues[p][0].offset;
            let read_up = self.next >= self.status_end;
            for q in 0..self.queues.len() {
                if q == p || !self.queues[q].is_empty() {
                    continue;
                }
                let floor = self.floor[q];
                let later = floor > ts || (floor == ts && q > p);
                let idle = read_up && status.lets_go(q, p, offset);
                if !later && !idle {
                    return None;
                }
            }
        }
        self.queues[p].pop_front().map(|r| (p, r))
    }

    /// Folds what may go in, in order, into the window, batch by batch.
    fn drain(
        &mut self,
        out: &mut Output,
        status: &SourceStatus,
        all: bool,
    ) -> Result<(), StageError> {
        while let Some((p, rec)) = self.pop(status, all) {
            let text = &rec.text[rec.range.clone()];
            let origin = Origin {
                partition: p as i32,
                offset: rec.offset,
            };
            if let Err(reason) = self
                .decoder
                .payload(text, rec.ts, origin, &mut self.builder)
            {
                out.dead_line(
                    text,
                    json!({ "partition": p, "offset": rec.offset }),
                    &format!("exchanged record cannot be read: {reason}"),
                );
            }
            self.folded[p] = Some((rec.offset, rec.index));
            if self.builder.len() >= BATCH {
                self.flush(out)?;
            }
        }
        self.flush(out)
    }

    fn flush(&mut self, out: &mut Output) -> Result<(), StageError> {
        if self.builder.is_empty() {
            return Ok(());
        }
        let batch = self.builder.take();
        self.op.process(Arc::new(batch), out)
    }

    fn state(&mut self, out: &mut Output) -> Result<serde_json::Value, StageError> {
        let windows = self.op.checkpoint(out)?;
        Ok(json!({
            "v": STATE_VERSION,
            "windows": windows,
            "folded": self.folded.iter().map(|f| f.map(|(o, i)| json!([o, i]))).collect::<Vec<_>>(),
            "floor": self.floor,
            "offset": self.restart_offset(),
            "finished": self.finished,
        }))
    }

    fn load(&mut self, state: &serde_json::Value) -> Result<i64, String> {
        if state["v"].as_u64() != Some(STATE_VERSION) {
            return Err("unknown version".into());
        }
        if let Some(w) = state.get("windows").filter(|w| !w.is_null()) {
            self.op.restore(w.clone()).map_err(|e| e.to_string())?;
        }
        let folded = state["folded"].as_array().ok_or("no folded offsets")?;
        for (p, f) in folded.iter().enumerate().take(self.folded.len()) {
            self.folded[p] = f
                .as_array()
                .and_then(|a| Some((a.first()?.as_i64()?, a.get(1)?.as_u64()? as u32)));
            self.seen[p] = self.folded[p];
        }
        if let Some(floor) = state["floor"].as_array() {
            for (p, f) in floor.iter().enumerate().take(self.floor.len()) {
                self.floor[p] = f.as_i64().unwrap_or(i64::MIN);
            }
        }
        self.finished = state["finished"].as_bool().unwrap_or(false);
        let offset = state["offset"].as_i64().ok_or("no offset")?;
        self.next = offset;
        Ok(offset)
    }
}

struct Receive {
    exchange: Arc<Exchange>,
    /// Window instances not serving a partition now, each as good as new.
    spare: Vec<Box<dyn Operator>>,
    parts: BTreeMap<i32, Part>,
    /// Partitions of the source topic.
    sources: usize,
    /// What the source's group said when last asked.
    status: SourceStatus,
    /// Per source partition: the end it was last found committed at, and since when.
    quiet: Vec<Option<(i64, Instant)>>,
}

impl Receive {
    fn label(&self) -> String {
        format!("stage `{}`", self.exchange.stage)
    }

    fn consumer(&self, reporter: Arc<Reporter>) -> Result<Arc<KafkaConsumer>, StageError> {
        let spec = &self.exchange.spec;
        let mut config = kafka::member_config(
            &spec.brokers,
            &spec.properties,
            &self.exchange.group(),
            "earliest",
        );
        // Whatever the source's group uses: the merge and snapshots rely on keeping the partitions
        // that do not move.
        config.set("partition.assignment.strategy", "cooperative-sticky");
        let consumer: KafkaConsumer = config
            .create_with_context(ConsumerReporter(
                reporter,
                Some(Arc::new(Membership::shared_queue())),
            ))
            .map_err(|e| StageError::with("cannot create the exchange consumer", e))?;
        Ok(Arc::new(consumer))
    }

    /// A topic's partition count, once its metadata shows at least `least` (a topic just created
    /// takes a moment; subscribing before would leave it unread until librdkafka's next refresh).
    fn partitions(
        consumer: &KafkaConsumer,
        topic: &str,
        least: usize,
        out: &Output,
    ) -> Option<usize> {
        let topic = [topic.to_string()];
        while !out.stopping() {
            if let Ok(found) =
                kafka::topic_partitions(consumer.client(), &topic, Duration::from_secs(2))
            {
                if let Some(Some(ps)) = found.into_iter().next() {
                    let n = ps.iter().map(|&p| p as usize + 1).max().unwrap_or(0);
                    if n >= least {
                        return Some(n);
                    }
                }
            }
            out.sleep(Duration::from_millis(200));
        }
        None
    }

    /// The newest snapshot of exchange partition `r` in the changelog, if any.
    fn snapshot(&self, r: i32) -> Result<Option<serde_json::Value>, String> {
        let spec = &self.exchange.spec;
        let mut config = kafka::consumer_config(&spec.brokers, &spec.properties);
        config
            .set(
                "group.id",
                format!("{}.changelog-reader", self.exchange.group()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| format!("cannot read the changelog: {e}"))?;
        let topic = self.exchange.changelog();
        // A changelog just created has no leader for a moment.
        let asked = Instant::now();
        let (low, high) = loop {
            match consumer.fetch_watermarks(&topic, r, Duration::from_secs(5)) {
                Ok(w) => break w,
                Err(e) if asked.elapsed() >= Duration::from_secs(30) => {
                    return Err(format!("cannot read the changelog `{topic}`: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        if high <= low {
            return Ok(None);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, r, Offset::Beginning)
            .map_err(|e| e.to_string())?;
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        let key = r.to_string();
        let mut newest = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if Instant::now() > deadline {
                return Err(format!("reading the changelog `{topic}` took over 30 s"));
            }
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    if m.key() == Some(key.as_bytes()) {
                        newest = m.payload().map(<[u8]>::to_vec);
                    }
                    if m.offset() + 1 >= high {
                        break;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(format!("cannot read the changelog `{topic}`: {e}")),
                None => {}
            }
        }
        newest
            .map(|b| serde_json::from_slice(&b).map_err(|e| format!("a snapshot is not JSON: {e}")))
            .transpose()
    }

    fn adopt(&mut self, r: i32) -> Result<String, StageError> {
        let op = self.spare.pop().ok_or_else(|| {
            StageError::msg(format!(
                "exchange partition {r} is not one of the {} this stage was built for",
                self.exchange.spec.partitions
            ))
        })?;
        let mut part = Part::new(op, self.sources);
        let said = match self.snapshot(r).map_err(StageError::msg)? {
            Some(state) => {
                let at = part.load(&state).map_err(|e| {
                    StageError::msg(format!(
                        "the snapshot of exchange partition {r} in `{}` cannot be loaded ({e}); delete that topic and the group's offsets to start over",
                        self.exchange.changelog()
                    ))
                })?;
                if part.finished {
                    format!("{r} (finished)")
                } else {
                    format!("{r} (from its snapshot at offset {at})")
                }
            }
            None => r.to_string(),
        };
        self.parts.insert(r, part);
        Ok(said)
    }

    fn release(&mut self, r: i32) -> Result<(), StageError> {
        if let Some(mut part) = self.parts.remove(&r) {
            part.op.reset()?;
            self.spare.push(part.op);
        }
        Ok(())
    }

    /// Writes exchange partition `r`'s state to the changelog, then commits where it reads again.
    fn save(
        &mut self,
        r: i32,
        producer: &BaseProducer,
        consumer: &KafkaConsumer,
        out: &mut Output,
    ) -> Result<(), StageError> {
        let Some(part) = self.parts.get_mut(&r) else {
            return Ok(());
        };
        let state = part.state(out)?;
        let (offset, finished) = (part.restart_offset(), part.finished);
        part.last_snapshot = Instant::now();
        let topic = self.exchange.changelog();
        let key = r.to_string();
        let payload = state.to_string();
        let fail = |e: KafkaError| {
            StageError::with(format!("cannot write the window state to `{topic}`"), e)
        };
        producer
            .send(
                BaseRecord::to(&topic)
                    .partition(r)
                    .key(&key)
                    .payload(&payload),
            )
            .map_err(|(e, _)| fail(e))?;
        kafka::flush(producer, Duration::from_secs(30)).map_err(fail)?;
        let mut tpl = TopicPartitionList::new();
        let mut e = tpl.add_partition(&self.exchange.topic(), r);
        e.set_offset(Offset::Offset(offset)).map_err(fail)?;
        if finished {
            e.set_metadata(FINISHED);
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            // The snapshot stands; a new owner reads a little more again.
            eprintln!(
                "warning: {}: committing exchange partition {r} failed ({e})",
                self.label()
            );
        }
        Ok(())
    }

    /// Asks the source's group how far it is (which source partitions are committed to their end, and
    /// where each ends), then where each exchange partition held here ends. A partition stays idle
    /// while it is found at the same end; if the group does not answer, none is (as one process's
    /// merge stops its idle clocks while no broker answers).
    fn source_status(&mut self, status: &BaseConsumer) {
        let topic = &self.exchange.spec.topic;
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.sources {
            tpl.add_partition(topic, p as i32);
        }
        let now = Instant::now();
        let found = kafka::partition_ends(status, &tpl, Duration::from_secs(2));
        let idle_after = self.exchange.spec.idle_partition;
        self.status.ends.iter_mut().for_each(|e| *e = i64::MIN);
        self.status.idle.iter_mut().for_each(|i| *i = false);
        let Ok(found) = found else {
            self.quiet.iter_mut().for_each(|q| *q = None);
            return;
        };
        for ((_, p), end, done) in found {
            let p = p as usize;
            let Some(slot) = self.quiet.get_mut(p) else {
                continue;
            };
            let Some(end) = end else {
                *slot = None;
                continue;
            };
            self.status.ends[p] = end;
            *slot = quiet(*slot, end, done, now);
            self.status.idle[p] =
                slot.is_some_and(|(_, since)| now.saturating_duration_since(since) >= idle_after);
        }
        // Asked after the source's group: the records it spoke of are below these ends.
        let mut tpl = TopicPartitionList::new();
        let exchange = self.exchange.topic();
        for &r in self.parts.keys() {
            let _ = tpl.add_partition_offset(&exchange, r, Offset::End);
        }
        let ends = status.offsets_for_times(tpl, Duration::from_secs(2));
        for part in self.parts.values_mut() {
            part.status_end = i64::MAX;
        }
        for e in ends.iter().flat_map(|t| t.elements()) {
            if let (Some(part), Offset::Offset(end)) =
                (self.parts.get_mut(&e.partition()), e.offset())
            {
                part.status_end = end;
            }
        }
    }

    /// Applies what rebalances changed: a partition given to this member loads its snapshot; one
    /// taken away is snapshotted as it stands, for its next owner, and dropped. (The next owner may
    /// load the snapshot before that one lands: then it reads more again from an older one, and
    /// counts each record once all the same. One taken back without asking is not snapshotted: its
    /// next owner may be ahead.)
    fn apply_changes(
        &mut self,
        consumer: &KafkaConsumer,
        producer: &BaseProducer,
        out: &mut Output,
        ends: &mut BTreeMap<i32, i64>,
    ) -> Result<(), StageError> {
        for change in consumer
            .context()
            .1
            .as_ref()
            .expect("a member")
            .take_changes()
        {
            match change {
                Change::Assigned(parts) if parts.is_empty() => {}
                Change::Assigned(parts) => {
                    let mut said = Vec::new();
                    for (_, r, _) in parts {
                        said.push(self.adopt(r)?);
                        ends.remove(&r);
                    }
                    eprintln!(
                        "tributary: {}: group `{}` assigned exchange partitions {}; now holding {:?}",
                        self.label(),
                        self.exchange.group(),
                        said.join(", "),
                        self.parts.keys().collect::<Vec<_>>()
                    );
                }
                Change::Revoked { parts, lost } => {
                    for (_, r, ..) in &parts {
                        if !lost {
                            if let Err(e) = self.save(*r, producer, consumer, out) {
                                eprintln!(
                                    "warning: {}: exchange partition {r} moves without a last snapshot ({e}); its next owner reads again from the one before",
                                    self.label()
                                );
                            }
                        }
                        self.release(*r)?;
                        ends.remove(r);
                    }
                    let list: Vec<i32> = parts.iter().map(|p| p.1).collect();
                    let how = if lost {
                        "took back (this process was thought gone; their next owner loads their latest snapshot)"
                    } else {
                        "moved (snapshotted for their next owner)"
                    };
                    eprintln!(
                        "tributary: {}: group `{}` {how} exchange partitions {list:?}; now holding {:?}",
                        self.label(),
                        self.exchange.group(),
                        self.parts.keys().collect::<Vec<_>>()
                    );
                }
            }
        }
        Ok(())
    }

    /// Whether every exchange partition, whoever owns it, emitted its windows at the end of input.
    fn all_finished(&self, consumer: &KafkaConsumer) -> bool {
        let mut tpl = TopicPartitionList::new();
        for r in 0..self.exchange.spec.partitions {
            tpl.add_partition(&self.exchange.topic(), r);
        }
        match consumer.committed_offsets(tpl, Duration::from_secs(5)) {
            Ok(c) => c.elements().iter().all(|e| e.metadata() == FINISHED),
            Err(_) => false,
        }
    }
}

impl Source for Receive {
    fn run(&mut self, out: &mut Output) -> Result<(), StageError> {
        // Before any window here sees a batch (see `Progress::exclude`).
        out.progress().exclude(out.stage());
        create_topics(&self.exchange).map_err(StageError::msg)?;
        let reporter = Arc::new(Reporter::new(self.label()));
        let consumer = self.consumer(reporter)?;
        let Some(sources) = Self::partitions(&consumer, &self.exchange.spec.topic, 1, out) else {
            return Ok(());
        };
        let topic = self.exchange.topic();
        let n = self.exchange.spec.partitions as usize;
        if Self::partitions(&consumer, &topic, n, out).is_none()
            || Self::partitions(&consumer, &self.exchange.changelog(), n, out).is_none()
        {
            return Ok(());
        }
        self.sources = sources;
        self.status = SourceStatus {
            ends: vec![i64::MIN; sources],
            idle: vec![false; sources],
        };
        self.quiet = vec![None; sources];
        // Asks the source's group for its commits; never joins it.
        let status: BaseConsumer =
            kafka::consumer_config(&self.exchange.spec.brokers, &self.exchange.spec.properties)
                .set("group.id", &self.exchange.spec.group_id)
                .set("enable.auto.commit", "false")
                .create()
                .map_err(|e| StageError::with("cannot create a kafka client", e))?;
        let mut last_status: Option<Instant> = None;
        let spec = &self.exchange.spec;
        let producer: BaseProducer = kafka::client_config(&spec.brokers, &spec.properties)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("delivery.report.only.error", "true")
            .create()
            .map_err(|e| StageError::with("cannot create the changelog producer", e))?;
        consumer
            .subscribe(&[&topic])
            .map_err(|e| StageError::with("cannot join the exchange group", e))?;
        eprintln!(
            "tributary: {} joins group `{}` to share the {} partitions of the exchange topic `{topic}` by key",
            self.label(),
            self.exchange.group(),
            self.exchange.spec.partitions
        );
        // After the input ended: per owned partition, the end offset it must be read to.
        let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
        let mut said_waiting = false;
        let mut last_check = Instant::now();
        loop {
            if out.stopping() {
                return Ok(());
            }
            // Up to POLL_BATCH records, then fold: the window gets batches, not single records.
            let mut wait = Duration::from_millis(100);
            let mut polled = 0;
            while polled < POLL_BATCH {
                let message = consumer.poll(wait);
                wait = Duration::ZERO;
                polled += 1;
                self.apply_changes(&consumer, &producer, out, &mut ends)?;
                let m = match message {
                    Some(Ok(m)) => m,
                    Some(Err(_)) => continue,
                    None => break,
                };
                let Some(part) = self.parts.get_mut(&m.partition()) else {
                    continue;
                };
                part.next = m.offset() + 1;
                let ts = m.timestamp().to_millis().unwrap_or(i64::MIN);
                let Some(tag) = m.key().and_then(Tag::decode) else {
                    continue;
                };
                let payload = m.payload().unwrap_or_default();
                let taken = match tag {
                    Tag::Bundle { partition } => {
                        let at = m.offset();
                        part.take_bundle(partition, at, payload, |line| {
                            out.dead_line(
                                line,
                                json!({ "partition": partition, "exchange_offset": at }),
                                "exchanged record cannot be read: not `offset index time record`",
                            )
                        })
                    }
                    _ => u64::from(part.take(tag, ts, m.offset(), payload)),
                };
                out.stats.records_in.fetch_add(taken, Ordering::Relaxed);
                polled += taken as usize;
            }
            if last_status.is_none_or(|t| t.elapsed() >= STATUS_INTERVAL) {
                last_status = Some(Instant::now());
                self.source_status(&status);
            }
            // Fold what may go in.
            let rs: Vec<i32> = self.parts.keys().copied().collect();
            for r in &rs {
                let part = self.parts.get_mut(r).expect("listed");
                if !part.finished {
                    part.drain(out, &self.status, false)?;
                }
                if part.last_snapshot.elapsed() >= SNAPSHOT_INTERVAL {
                    self.save(*r, &producer, &consumer, out)?;
                }
            }
            if !self.exchange.input_done() || last_check.elapsed() < Duration::from_millis(500) {
                continue;
            }
            last_check = Instant::now();
            // The group's input is all in the exchange topic: read each partition held to its end,
            // then emit its windows.
            for r in &rs {
                if self.parts[r].finished {
                    continue;
                }
                if !ends.contains_key(r) {
                    match consumer.fetch_watermarks(&topic, *r, Duration::from_secs(5)) {
                        Ok((_, high)) => {
                            ends.insert(*r, high);
                        }
                        Err(_) => continue,
                    }
                }
                let part = self.parts.get_mut(r).expect("listed");
                if part.next < ends[r] {
                    continue;
                }
                part.drain(out, &self.status, true)?;
                part.op.finish(out)?;
                part.finished = true;
                if part.skipped > 0 {
                    eprintln!(
                        "tributary: stage `{}`: exchange partition {r}: {} records read again were skipped (already counted)",
                        self.exchange.stage,
                        part.skipped
                    );
                }
                self.save(*r, &producer, &consumer, out)?;
            }
            if self.parts.values().all(|p| p.finished) {
                if self.all_finished(&consumer) {
                    return Ok(());
                }
                if !said_waiting {
                    let mine = if self.parts.is_empty() {
                        "holds no exchange partition"
                    } else {
                        "emitted the windows of its exchange partitions"
                    };
                    eprintln!(
                        "tributary: {}: {mine}; waiting for the other members to emit theirs (the partitions of a member that died come to one that is left)",
                        self.label()
                    );
                    said_waiting = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Batch;

    /// A window stand-in: keeps what it is given, in order, and saves it as its state.
    #[derive(Default)]
    struct Keep(Vec<(i64, i32, i64)>);

    impl Operator for Keep {
        fn process(&mut self, batch: Arc<Batch>, _: &mut Output) -> Result<(), StageError> {
            for row in 0..batch.len {
                let o = batch.origin[row];
                self.0.push((batch.time[row], o.partition, o.offset));
            }
            Ok(())
        }
        fn finish(&mut self, _: &mut Output) -> Result<(), StageError> {
            Ok(())
        }
    }

    fn record(partition: i32, offset: i64) -> Tag {
        Tag::Record {
            partition,
            offset,
            index: 0,
        }
    }

    fn order(part: &mut Part, status: &SourceStatus, all: bool) -> Vec<(i64, usize, i64)> {
        std::iter::from_fn(|| part.pop(status, all).map(|(p, r)| (r.ts, p, r.offset))).collect()
    }

    /// What the source's group says: `idle` partitions, and where each partition ends.
    fn said(idle: &[bool], ends: &[i64]) -> SourceStatus {
        SourceStatus {
            ends: ends.to_vec(),
            idle: idle.to_vec(),
        }
    }

    #[test]
    fn records_go_in_event_time_order_once_no_source_partition_can_send_an_older_one() {
        let mut part = Part::new(Box::new(Keep::default()), 3);
        let not_done = said(&[false; 3], &[2, 1, 7]);
        part.take(record(0, 0), 10, 0, b"{}");
        part.take(record(1, 0), 5, 1, b"{}");
        part.take(record(0, 1), 20, 2, b"{}");
        // Partition 2 has said nothing: it may still send something older.
        assert_eq!(order(&mut part, &not_done, false), []);
        // Its marker: nothing older than 12 comes from it.
        part.take(
            Tag::Marker {
                partition: 2,
                offset: 7,
            },
            12,
            3,
            b"",
        );
        assert_eq!(order(&mut part, &not_done, false), [(5, 1, 0)]);
        // Partition 1 may still send something at 5 to 10, until its marker says otherwise.
        part.take(
            Tag::Marker {
                partition: 1,
                offset: 0,
            },
            20,
            4,
            b"",
        );
        assert_eq!(order(&mut part, &not_done, false), [(10, 0, 0)]);
        assert_eq!(
            order(&mut part, &not_done, false),
            [],
            "partition 2 at 12 holds 20"
        );
        // Partition 2 is idle, but the source's group was asked before this partition was read as far
        // as the exchange topic went then: what it said may speak of records not read here yet.
        let idle = said(&[false, false, true], &[2, 1, 8]);
        part.next = 5;
        part.status_end = 6;
        assert_eq!(order(&mut part, &idle, false), []);
        // Read that far: partition 2 holds back nothing that was in the source topic when asked.
        part.next = 6;
        assert_eq!(
            order(&mut part, &said(&[false, false, true], &[1, 1, 8]), false),
            [],
            "partition 0's offset 1 came after the group was asked"
        );
        assert_eq!(order(&mut part, &idle, false), [(20, 0, 1)]);
        assert!(part.queues.iter().all(VecDeque::is_empty));
    }

    #[test]
    fn a_partition_is_quiet_from_when_it_was_first_found_done_at_the_same_end() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(quiet(None, 5, true, t0), Some((5, t0)));
        assert_eq!(quiet(Some((5, t0)), 5, true, t1), Some((5, t0)));
        // Records came and were handled between two askings: the clock starts again.
        assert_eq!(quiet(Some((5, t0)), 9, true, t1), Some((9, t1)));
        assert_eq!(quiet(Some((5, t0)), 9, false, t1), None);
    }

    #[test]
    fn a_tie_goes_to_the_lower_source_partition_as_in_one_process() {
        let mut part = Part::new(Box::new(Keep::default()), 2);
        part.take(record(1, 0), 10, 0, b"{}");
        // Partition 0 may still send a record at 10, which goes first.
        part.take(
            Tag::Marker {
                partition: 0,
                offset: 3,
            },
            10,
            1,
            b"",
        );
        let quiet = SourceStatus::default();
        assert_eq!(order(&mut part, &quiet, false), []);
        part.take(record(0, 4), 10, 2, b"{}");
        assert_eq!(order(&mut part, &quiet, false), [(10, 0, 4)]);
        assert_eq!(
            order(&mut part, &quiet, true),
            [(10, 1, 0)],
            "at the end, all go"
        );
    }

    #[test]
    fn records_read_again_are_skipped_and_a_snapshot_restarts_where_nothing_is_lost() {
        let mut part = Part::new(Box::new(Keep::default()), 2);
        assert!(part.take(record(0, 0), 10, 100, b"{\"x\":1}"));
        assert!(part.take(record(1, 0), 11, 101, b"{\"x\":2}"));
        assert!(part.take(record(0, 1), 30, 102, b"{\"x\":3}"));
        part.next = 103;
        // A member that took partition 0 over sends it again from its last commit.
        assert!(!part.take(record(0, 0), 10, 103, b"{\"x\":1}"));
        assert!(!part.take(record(0, 1), 30, 104, b"{\"x\":3}"));
        assert_eq!(part.skipped, 2);
        part.next = 105;
        // Partition 0 is idle: only partition 1 can hold records back, and it holds 30.
        part.status_end = 105;
        let done = said(&[true, false], &[2, 1]);
        assert_eq!(order(&mut part, &done, false), [(10, 0, 0), (11, 1, 0)]);
        part.folded = vec![Some((0, 0)), Some((0, 0))];
        // A snapshot now reads again from the oldest record waiting (exchange offset 102).
        assert_eq!(part.restart_offset(), 102);
        let state = json!({
            "v": STATE_VERSION,
            "windows": null,
            "folded": [[0, 0], [0, 0]],
            "floor": part.floor,
            "offset": part.restart_offset(),
            "finished": false,
        });
        let mut next = Part::new(Box::new(Keep::default()), 2);
        assert_eq!(next.load(&state), Ok(102));
        // Reading again from 102: the waiting record is taken, the copy sent again skipped.
        assert!(next.take(record(0, 1), 30, 102, b"{}"));
        assert!(!next.take(record(0, 0), 10, 103, b"{}"));
        assert!(!next.take(record(0, 1), 30, 104, b"{}"));
        assert_eq!(
            order(&mut next, &SourceStatus::default(), true),
            [(30, 0, 1)]
        );
    }

    #[test]
    fn a_bundle_goes_in_as_its_records_would_one_by_one() {
        let mut part = Part::new(Box::new(Keep::default()), 2);
        let mut b = Vec::new();
        bundle::push(&mut b, 7, 0, 30, br#"{"x":1}"#);
        bundle::push(&mut b, 7, 1, 30, br#"{"x":2}"#);
        b.extend_from_slice(b"not a record\n");
        bundle::push(&mut b, 9, 0, 40, br#"{"x":3}"#);
        let mut bad = Vec::new();
        assert_eq!(part.take_bundle(1, 100, &b, |l| bad.push(l.to_string())), 3);
        assert_eq!(bad, ["not a record"]);
        // The same bundle read again (a rebalance): every record is skipped.
        assert_eq!(part.take_bundle(1, 101, &b, |_| {}), 0);
        assert_eq!(part.skipped, 3);
        // A snapshot reads the bundle again: its records share its offset.
        assert_eq!(part.restart_offset(), 100);
        let got: Vec<_> = std::iter::from_fn(|| part.pop(&SourceStatus::default(), true))
            .map(|(p, r)| (p, r.offset, r.index, r.ts, r.text[r.range].to_string()))
            .collect();
        assert_eq!(
            got,
            [
                (1, 7, 0, 30, r#"{"x":1}"#.to_string()),
                (1, 7, 1, 30, r#"{"x":2}"#.to_string()),
                (1, 9, 0, 40, r#"{"x":3}"#.to_string()),
            ]
        );
    }
}
