//! Reads assigned partitions in timestamp order: the reading half shared by the `kafka` source and
//! `tributary record`.
//!
//! Each partition's records come through a queue of their own (librdkafka's partition queues), so the
//! reader knows for certain which partition reached its end (an end event on the shared queue names the
//! partition number but not the topic), and takes records only from partitions whose turn it is: a
//! partition far ahead of the others waits in librdkafka's prefetch, bounded by its queue limits, not in
//! this process. The records go through an [`Interleaver`], which hands them on in timestamp order (see
//! there for the rule); the reader also learns from each fetch's high watermark that a partition is read
//! to its end, stops the idle clocks while no broker answers, and finds partitions added to a topic.

use super::batch::{BatchQueue, Taken};
use super::group::Change;
use super::interleave::{Interleaver, Waits};
use super::{ConsumerReporter, Reporter};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub type KafkaConsumer = BaseConsumer<ConsumerReporter>;

/// Records taken per partition ahead of the merge; more wait in librdkafka's prefetch.
const PARTITION_BUFFER: usize = 4096;

/// A record as polled, kept until the merge hands it on.
pub struct Polled {
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// One partition being read.
struct Slot {
    topic: String,
    /// The topic name for librdkafka's C API, made once (it is asked on every poll loop).
    topic_c: std::ffi::CString,
    partition: i32,
    /// What records are read through; `None` once the partition went to another member of the
    /// group. Declared before `queue`, so it is dropped first.
    batch: Option<BatchQueue>,
    /// Keeps the partition's queue split off from the consumer's, and wakes the reader; `None` with
    /// `batch`.
    queue: Option<PartitionQueue<ConsumerReporter>>,
    /// The offset after the last record read, once one was.
    next: Option<i64>,
}

/// A partition to read, and where to begin.
pub struct Assignment {
    pub topic: String,
    pub partition: i32,
    pub start: Offset,
}

pub struct Reader {
    consumer: Arc<KafkaConsumer>,
    reporter: Arc<Reporter>,
    slots: Vec<Slot>,
    index: HashMap<(String, i32), usize>,
    merge: Interleaver<Polled>,
    last_record: Instant,
    /// Records of one take, before the merge gets them (kept to reuse its room).
    records: Vec<Polled>,
}

impl Reader {
    /// A reader on `consumer`, whose context reports to `reporter`. `idle_partition`: see
    /// [`Interleaver`].
    pub fn new(
        mut consumer: KafkaConsumer,
        reporter: Arc<Reporter>,
        idle_partition: Duration,
    ) -> Self {
        let me = std::thread::current();
        consumer.set_nonempty_callback(move || me.unpark());
        let consumer = Arc::new(consumer);
        if let Some(group) = &consumer.context().1 {
            group.set_consumer(Arc::downgrade(&consumer));
        }
        Reader {
            consumer,
            reporter,
            slots: Vec::new(),
            index: HashMap::new(),
            merge: Interleaver::new(0, idle_partition, Instant::now()),
            last_record: Instant::now(),
            records: Vec::new(),
        }
    }

    pub fn consumer(&self) -> &KafkaConsumer {
        &self.consumer
    }

    /// Partitions assigned so far; slot numbers count from 0 in the order they were assigned.
    pub fn partitions(&self) -> usize {
        self.slots.len()
    }

    /// The topic and partition number of a slot.
    pub fn slot(&self, slot: usize) -> (&str, i32) {
        let s = &self.slots[slot];
        (&s.topic, s.partition)
    }

    /// Adds partitions to what is read, each from its start offset. Returns their slots.
    pub fn assign(&mut self, parts: Vec<Assignment>) -> KafkaResult<Vec<usize>> {
        let mut tpl = TopicPartitionList::new();
        let mut added = Vec::new();
        for a in parts {
            if self.index.contains_key(&(a.topic.clone(), a.partition)) {
                continue;
            }
            // Split before assigning: the partition's records never reach the shared queue.
            let Some(queue) = self.consumer.split_partition_queue(&a.topic, a.partition) else {
                return Err(KafkaError::Subscription(format!(
                    "cannot read partition {} of `{}` on its own queue",
                    a.partition, a.topic
                )));
            };
            tpl.add_partition_offset(&a.topic, a.partition, a.start)?;
            added.push(self.add_slot(a.topic, a.partition, queue)?);
        }
        if tpl.count() > 0 {
            // Manual assignment has no rebalance protocol, so partitions can be added one by one
            // without restarting the ones being read.
            self.consumer.incremental_assign(&tpl)?;
        }
        Ok(added)
    }

    fn add_slot(
        &mut self,
        topic: String,
        partition: i32,
        mut queue: PartitionQueue<ConsumerReporter>,
    ) -> KafkaResult<usize> {
        let me = std::thread::current();
        queue.set_nonempty_callback(move || me.unpark());
        let topic_c = std::ffi::CString::new(topic.as_str()).map_err(|_| {
            KafkaError::Subscription(format!("topic name `{topic}` holds a NUL byte"))
        })?;
        let batch =
            BatchQueue::new(self.consumer.client(), &topic_c, partition).ok_or_else(|| {
                KafkaError::Subscription(format!(
                    "cannot read partition {partition} of `{topic}` on its own queue"
                ))
            })?;
        let slot = self.slots.len();
        self.index.insert((topic.clone(), partition), slot);
        self.slots.push(Slot {
            topic_c,
            topic,
            partition,
            batch: Some(batch),
            queue: Some(queue),
            next: None,
        });
        let merge_slot = self.merge.add_partition(Instant::now());
        debug_assert_eq!(merge_slot, slot);
        Ok(slot)
    }

    /// Joins the consumer group that shares the topics' partitions; what it assigns arrives as
    /// [`Change`]s (see [`super::group`]).
    pub fn subscribe(&self, topics: &[String]) -> KafkaResult<()> {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&topics)
    }

    /// What rebalances changed since the last call (group members only).
    pub fn take_changes(&self) -> Vec<Change> {
        self.consumer
            .context()
            .1
            .as_ref()
            .map(|g| g.take_changes())
            .unwrap_or_default()
    }

    /// Partitions the group gave this member: each gets a new slot (a slot is never reused, so a
    /// batch of an earlier turn still in flight cannot be mistaken for this one's). Returns the slots.
    pub fn adopt(
        &mut self,
        parts: Vec<(String, i32, Option<PartitionQueue<ConsumerReporter>>)>,
    ) -> Vec<usize> {
        let mut added = Vec::new();
        for (topic, partition, queue) in parts {
            let Some(queue) = queue else { continue };
            match self.add_slot(topic, partition, queue) {
                Ok(slot) => added.push(slot),
                Err(e) => eprintln!("warning: kafka: {e}"),
            }
        }
        added
    }

    /// Partitions taken from this member: their records not handed on are dropped (their next owner
    /// reads them). Returns (slot, records dropped) for each that was read here.
    pub fn release(&mut self, parts: &[(String, i32)]) -> Vec<(usize, usize)> {
        let mut released = Vec::new();
        for (topic, partition) in parts {
            let Some(slot) = self.index.remove(&(topic.clone(), *partition)) else {
                continue;
            };
            self.slots[slot].batch = None;
            self.slots[slot].queue = None;
            released.push((slot, self.merge.remove(slot)));
        }
        released
    }

    /// The slot a partition is read in now, if it is.
    pub fn slot_of(&self, topic: &str, partition: i32) -> Option<usize> {
        self.index.get(&(topic.to_string(), partition)).copied()
    }

    /// The partitions read now, by topic and number.
    pub fn owned(&self) -> Vec<(&str, i32)> {
        let mut owned: Vec<(&str, i32)> = self
            .slots
            .iter()
            .filter(|s| s.queue.is_some())
            .map(|s| (s.topic.as_str(), s.partition))
            .collect();
        owned.sort_unstable();
        owned
    }

    /// Partitions read here that are at their end with no record read (the group's commit was at
    /// their end, or reading began at the latest record): (topic, partition, end offset).
    pub fn unread_at_end(&self) -> Vec<(String, i32, i64)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(slot, s)| {
                s.queue.is_some() && s.next.is_none() && self.merge.is_at_end(*slot)
            })
            .filter_map(|(_, s)| {
                let high = cached_high_watermark(&self.consumer, &s.topic_c, s.partition)?;
                Some((s.topic.clone(), s.partition, high))
            })
            .collect()
    }

    /// Finds partitions the topics gained since they were assigned and reads them from their
    /// beginning (every record in a new partition is new). Returns their slots.
    pub fn discover(&mut self, topics: &[String], timeout: Duration) -> KafkaResult<Vec<usize>> {
        let found = super::topic_partitions(self.consumer.client(), topics, timeout)?;
        let mut new = Vec::new();
        for (topic, partitions) in topics.iter().zip(found) {
            for p in partitions.unwrap_or_default() {
                if !self.index.contains_key(&(topic.clone(), p)) {
                    new.push(Assignment {
                        topic: topic.clone(),
                        partition: p,
                        start: Offset::Beginning,
                    });
                }
            }
        }
        if new.is_empty() {
            return Ok(Vec::new());
        }
        self.assign(new)
    }

    /// Serves the client's events and takes what has arrived for the partitions whose buffer has room;
    /// when nothing has, waits up to `wait` for something to arrive. Returns the records taken.
    pub fn fill(&mut self, wait: Duration) -> usize {
        let mut taken = 0;
        let mut ends = 0;
        // Errors and commit results; records come through the partition queues.
        for _ in 0..64 {
            let event = match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => Ok((m.topic().to_string(), m.partition(), polled(&m))),
                Some(Err(e)) => Err(e),
            };
            // A record here came before its partition was split: take it all the same. Errors were
            // reported by the client context, which sees every error event first.
            if let Ok((topic, partition, record)) = event {
                if let Some(&slot) = self.index.get(&(topic, partition)) {
                    self.take(slot, record, Instant::now());
                    taken += 1;
                }
            }
        }
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            let mut records = std::mem::take(&mut self.records);
            while self.merge.queued(slot) < PARTITION_BUFFER {
                let Some(batch) = &mut self.slots[slot].batch else {
                    break;
                };
                // How many records came before the last end event: the end is told to the merge in
                // its place among them, as it came.
                let mut end: Option<usize> = None;
                let n = batch.take(|m| match m {
                    Taken::Record {
                        offset,
                        timestamp,
                        key,
                        value,
                    } => records.push(Polled {
                        offset,
                        timestamp,
                        key: key.map(<[u8]>::to_vec),
                        value: value.map(<[u8]>::to_vec),
                    }),
                    Taken::End => end = Some(records.len()),
                    Taken::Error => {}
                });
                let count = records.len();
                taken += count;
                for (i, record) in records.drain(..).enumerate() {
                    if end == Some(i) {
                        self.merge.reached_end(slot, now);
                    }
                    self.take(slot, record, now);
                }
                if let Some(at) = end {
                    self.reporter.alive();
                    if at == count {
                        self.merge.reached_end(slot, now);
                    }
                    ends += 1;
                }
                if n == 0 {
                    break;
                }
            }
            self.records = records;
            if self.check_end(slot) {
                ends += 1;
            }
        }
        if self.reporter.is_down() {
            self.merge.hold_clocks(now);
        }
        if taken == 0 && ends == 0 && !wait.is_zero() {
            // Woken early by any queue that receives something.
            std::thread::park_timeout(wait);
        }
        taken
    }

    /// `now`: when the fill that took it began (one clock read per fill, not per record).
    fn take(&mut self, slot: usize, record: Polled, now: Instant) {
        self.reporter.alive();
        self.slots[slot].next = Some(record.offset + 1);
        self.last_record = now;
        // Records without a timestamp sort first; they are dead-lettered anyway.
        let ts = record.timestamp.unwrap_or(i64::MIN);
        self.merge.push(slot, ts, record, now);
    }

    /// A partition whose every record is taken is at its end once its latest fetch said nothing more
    /// is there (its high watermark), which is known before the end event of the fetch after.
    fn check_end(&mut self, slot: usize) -> bool {
        if self.merge.queued(slot) > 0 || self.merge.is_at_end(slot) {
            return false;
        }
        let s = &self.slots[slot];
        let Some(next) = s.next else { return false };
        match cached_high_watermark(&self.consumer, &s.topic_c, s.partition) {
            Some(high) if next >= high => {
                self.merge.reached_end(slot, Instant::now());
                true
            }
            _ => false,
        }
    }

    /// The next record in timestamp order, when no partition can still deliver an older one.
    pub fn pop(&mut self, now: Instant) -> Option<(usize, Polled)> {
        self.merge.pop(now)
    }

    /// The next record in timestamp order, whatever the partitions (the end of the input).
    pub fn pop_any(&mut self) -> Option<(usize, Polled)> {
        self.merge.pop_any()
    }

    /// Per partition, the records the broker holds past those read: the high watermark its latest
    /// fetch carried (no request is sent) minus the next offset to read. Partitions not fetched yet,
    /// or with no record read yet, are left out.
    pub fn lags(&self) -> Vec<(&str, i32, i64)> {
        self.slots
            .iter()
            .filter(|s| s.queue.is_some())
            .filter_map(|s| {
                let next = s.next?;
                let high = cached_high_watermark(&self.consumer, &s.topic_c, s.partition)?;
                Some((s.topic.as_str(), s.partition, (high - next).max(0)))
            })
            .collect()
    }

    /// Records taken and not yet handed on.
    pub fn buffered(&self) -> usize {
        self.merge.len()
    }

    /// Every partition is read to its end.
    pub fn all_at_end(&self) -> bool {
        self.merge.all_at_end()
    }

    /// When the last record was taken.
    pub fn last_record(&self) -> Instant {
        self.last_record
    }

    /// How long until a waiting record may go out because a partition turned idle.
    pub fn next_deadline(&self, now: Instant) -> Option<Duration> {
        self.merge.next_deadline(now)
    }

    /// The partition the oldest record waits for, and for how long, with whether that partition is
    /// at its end (waiting to turn idle) rather than still being read.
    pub fn holding(&self, now: Instant) -> Option<(usize, Duration, bool)> {
        self.merge
            .holding(now)
            .map(|(slot, d)| (slot, d, self.merge.is_at_end(slot)))
    }

    pub fn waits(&self) -> Waits {
        self.merge.waits()
    }

    /// "partition 2 of `topic`".
    pub fn describe(&self, slot: usize) -> String {
        let (topic, partition) = self.slot(slot);
        format!("partition {partition} of `{topic}`")
    }
}

/// The high watermark the latest fetch response for a partition carried (no request is sent), if one
/// came. The rdkafka crate offers only the querying kind.
fn cached_high_watermark(
    consumer: &KafkaConsumer,
    topic: &std::ffi::CStr,
    partition: i32,
) -> Option<i64> {
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; librdkafka only reads `topic` and
    // writes the two offsets, under its own lock.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

fn polled(m: &BorrowedMessage<'_>) -> Polled {
    Polled {
        offset: m.offset(),
        timestamp: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
    }
}

/// One line for the run summary: how long records waited for slow partitions.
pub fn describe_waits(reader: &Reader) -> Option<String> {
    let w = reader.waits();
    if w.holds == 0 {
        return None;
    }
    let longest_for = w
        .longest_for
        .map(|s| format!(", for {}", reader.describe(s)))
        .unwrap_or_default();
    Some(format!(
        "records waited {} in all for slower partitions ({} waits; longest {}{longest_for})",
        seconds(w.total),
        w.holds,
        seconds(w.longest)
    ))
}

fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
