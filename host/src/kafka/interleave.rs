//! Merges the partitions being read into one stream in timestamp order.
//!
//! Kafka orders records within a partition only, and a consumer receives partitions in fetch-sized runs
//! that arrive when they arrive: a window downstream that took records as they came would see event time
//! jump back and forth, and its watermark would run past the records of a partition whose fetch is late.
//! So each partition gets a queue, and the record with the smallest timestamp among the queue heads is
//! handed on only when no other partition can still deliver an older one: every other partition has a
//! record waiting, or is *idle*. This is the rule of Flink's per-partition watermarks and of Kafka
//! Streams' partition groups; here the merge itself is the watermark, so a window downstream sees the
//! minimum over the partitions that are not idle.
//!
//! - A partition that still has records to read (its next fetch is on the way, its broker is away, it
//!   was just assigned) holds the merge for as long as that takes. Waiting longer costs latency; handing
//!   records on would cost correctness.
//! - A partition read to its end (as of its latest fetch) holds the merge until it has had nothing new
//!   for `idle_after`: records produced to it later may be older than the other partitions' (a partition
//!   loaded after the others). After that it is idle and the others go on; a record it delivers later is
//!   merged from then on, and is late downstream if it is behind the window's watermark by more than
//!   the window allows. With `idle_after` zero, a partition at its end never holds the merge (Kafka
//!   Streams' default: lower latency, order only as good as the producers').
//! - While no broker answers, the idle clocks stand still ([`Interleaver::hold_clocks`]): an outage
//!   makes no partition idle.
//!
//! With every record read before its partition goes idle, the records come out in the same order as from
//! a capture sorted by time (ties by partition), which is what `record` writes and `replay` reads, so
//! live runs and replays agree exactly, floating-point sums included.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Per-partition queues, merged by timestamp.
pub struct Interleaver<T> {
    parts: Vec<Part<T>>,
    idle_after: Duration,
    len: usize,
    /// The hold in progress: since when the oldest record has waited, and for which partition.
    hold: Option<(Instant, usize)>,
    waits: Waits,
}

struct Part<T> {
    queue: VecDeque<(i64, T)>,
    /// Read to its end as of its latest fetch, with nothing read since.
    at_end: bool,
    /// No longer read (given to another member of a consumer group): holds nothing back.
    gone: bool,
    /// Since when the partition has had nothing new: its last record, or when it was found at its end.
    quiet_since: Instant,
}

/// How long records waited for slow partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Waits {
    /// Times the oldest record had to wait for another partition.
    pub holds: u64,
    /// All those waits together (wall time during which the merge handed nothing on).
    pub total: Duration,
    /// The longest single wait, and the partition (slot) that ended it.
    pub longest: Duration,
    pub longest_for: Option<usize>,
}

impl<T> Interleaver<T> {
    /// `partitions` queues, numbered from 0 (a consumer's partitions in a fixed order). A partition is
    /// not known to be at its end until [`Interleaver::reached_end`] says so.
    pub fn new(partitions: usize, idle_after: Duration, now: Instant) -> Self {
        let mut merge = Interleaver {
            parts: Vec::new(),
            idle_after,
            len: 0,
            hold: None,
            waits: Waits::default(),
        };
        for _ in 0..partitions {
            merge.add_partition(now);
        }
        merge
    }

    /// A partition assigned after the start (a topic grew): the next slot number.
    pub fn add_partition(&mut self, now: Instant) -> usize {
        self.parts.push(Part {
            queue: VecDeque::new(),
            at_end: false,
            gone: false,
            quiet_since: now,
        });
        self.parts.len() - 1
    }

    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records waiting from partition `slot`.
    pub fn queued(&self, slot: usize) -> usize {
        self.parts[slot].queue.len()
    }

    /// A record read from partition `slot`, with its timestamp.
    pub fn push(&mut self, slot: usize, ts: i64, item: T, now: Instant) {
        let part = &mut self.parts[slot];
        part.at_end = false;
        part.quiet_since = now;
        part.queue.push_back((ts, item));
        self.len += 1;
    }

    /// Partition `slot` has been read to its end (until its next record arrives).
    pub fn reached_end(&mut self, slot: usize, now: Instant) {
        let part = &mut self.parts[slot];
        if !part.at_end {
            part.at_end = true;
            part.quiet_since = now;
        }
    }

    pub fn is_at_end(&self, slot: usize) -> bool {
        self.parts[slot].at_end
    }

    /// Partition `slot` is no longer read: its waiting records are dropped (returned, so their
    /// number is known) and it holds nothing back from then on.
    pub fn remove(&mut self, slot: usize) -> usize {
        let part = &mut self.parts[slot];
        let dropped = part.queue.len();
        part.queue.clear();
        part.gone = true;
        part.at_end = true;
        self.len -= dropped;
        if self.hold.is_some_and(|(_, by)| by == slot) {
            self.hold = None;
        }
        dropped
    }

    /// Every partition has been read to its end (what is read may still be waiting here).
    pub fn all_at_end(&self) -> bool {
        self.parts.iter().all(|p| p.at_end)
    }

    /// No broker answers: restart the idle clocks, so that an outage makes no partition idle.
    pub fn hold_clocks(&mut self, now: Instant) {
        for part in &mut self.parts {
            part.quiet_since = now;
        }
    }

    /// Whether partition `slot` could still deliver a record older than every record waiting.
    fn holds(&self, slot: usize, now: Instant) -> bool {
        let part = &self.parts[slot];
        part.queue.is_empty()
            && !part.gone
            && !(part.at_end && now.saturating_duration_since(part.quiet_since) >= self.idle_after)
    }

    /// A partition holding back the oldest record at `now`, if any record waits.
    pub fn held_by(&self, now: Instant) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        (0..self.parts.len()).find(|&p| self.holds(p, now))
    }

    /// The next record in timestamp order, if no partition can still deliver an older one at `now`.
    pub fn pop(&mut self, now: Instant) -> Option<(usize, T)> {
        if self.len == 0 {
            return None;
        }
        if let Some(by) = self.held_by(now) {
            let since = self.hold.map_or(now, |(since, _)| since);
            self.hold = Some((since, by));
            return None;
        }
        self.end_hold(now);
        self.pop_head()
    }

    /// Every waiting record in timestamp order, whatever the partitions (the end of the input). A hold
    /// this ends is not counted in [`Waits`]: those records waited for the input to end, which says
    /// nothing about slow partitions.
    pub fn pop_any(&mut self) -> Option<(usize, T)> {
        self.hold = None;
        self.pop_head()
    }

    fn pop_head(&mut self) -> Option<(usize, T)> {
        let slot = self
            .parts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.queue.front().map(|(ts, _)| (*ts, i)))
            .min()?
            .1;
        self.len -= 1;
        self.parts[slot]
            .queue
            .pop_front()
            .map(|(_, item)| (slot, item))
    }

    fn end_hold(&mut self, now: Instant) {
        if let Some((since, by)) = self.hold.take() {
            let waited = now.saturating_duration_since(since);
            self.waits.holds += 1;
            self.waits.total += waited;
            if waited > self.waits.longest || self.waits.longest_for.is_none() {
                self.waits.longest = waited;
                self.waits.longest_for = Some(by);
            }
        }
    }

    /// The hold in progress: for which partition, and for how long.
    pub fn holding(&self, now: Instant) -> Option<(usize, Duration)> {
        self.hold
            .map(|(since, by)| (by, now.saturating_duration_since(since)))
    }

    /// How long records have waited for slow partitions so far.
    pub fn waits(&self) -> Waits {
        self.waits
    }

    /// How long until a partition at its end turns idle and may free the oldest record (for poll
    /// timeouts); `None` when nothing waits for that.
    pub fn next_deadline(&self, now: Instant) -> Option<Duration> {
        if self.len == 0 {
            return None;
        }
        self.parts
            .iter()
            .filter(|p| p.queue.is_empty() && p.at_end && !p.gone)
            .map(|p| (p.quiet_since + self.idle_after).saturating_duration_since(now))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(i: &mut Interleaver<&'static str>, now: Instant) -> Vec<&'static str> {
        std::iter::from_fn(|| i.pop(now).map(|(_, x)| x)).collect()
    }

    const IDLE: Duration = Duration::from_secs(5);

    #[test]
    fn a_removed_partition_drops_its_records_and_holds_nothing_back() {
        let t = Instant::now();
        let mut i = Interleaver::new(3, IDLE, t);
        i.push(0, 10, "a10", t);
        i.push(1, 5, "b5", t);
        assert_eq!(drain(&mut i, t), [""; 0], "partition 2 holds the merge");
        // It goes to another consumer: it holds nothing back any more.
        assert_eq!(i.remove(2), 0);
        assert_eq!(drain(&mut i, t), ["b5"]);
        i.push(1, 20, "b20", t);
        assert_eq!(i.remove(1), 1, "its waiting record is dropped");
        assert_eq!(drain(&mut i, t), ["a10"]);
        assert!(!i.all_at_end(), "partition 0 is still read");
        i.reached_end(0, t);
        assert!(i.all_at_end());
        assert_eq!(i.len(), 0);
    }

    #[test]
    fn merges_by_timestamp_once_every_partition_has_a_record() {
        let t = Instant::now();
        let mut i = Interleaver::new(3, IDLE, t);
        i.push(0, 10, "a10", t);
        i.push(0, 40, "a40", t);
        i.push(1, 20, "b20", t);
        // Partition 2 has said nothing: wait for it, however long.
        assert_eq!(drain(&mut i, t + Duration::from_secs(3600)), [""; 0]);
        i.push(2, 5, "c5", t);
        // c5 goes; then partition 2 is empty again and may still deliver something older than a10.
        assert_eq!(drain(&mut i, t), ["c5"]);
        i.push(2, 30, "c30", t);
        assert_eq!(drain(&mut i, t), ["a10", "b20"]);
        // Partition 1 is empty: a40 and c30 wait for it.
        assert_eq!(drain(&mut i, t), [""; 0]);
        i.push(1, 50, "b50", t);
        assert_eq!(drain(&mut i, t), ["c30"]);
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn a_partition_at_its_end_holds_the_merge_until_it_is_idle() {
        let t = Instant::now();
        let mut i = Interleaver::new(2, IDLE, t);
        i.push(0, 10, "a10", t);
        i.reached_end(1, t + Duration::from_secs(1));
        assert_eq!(drain(&mut i, t + Duration::from_secs(5)), [""; 0]);
        assert_eq!(
            i.next_deadline(t + Duration::from_secs(5)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(i.held_by(t + Duration::from_secs(5)), Some(1));
        assert_eq!(drain(&mut i, t + Duration::from_secs(6)), ["a10"]);
        // Idle partitions do not hold: a20 goes at once.
        i.push(0, 20, "a20", t + Duration::from_secs(7));
        assert_eq!(drain(&mut i, t + Duration::from_secs(7)), ["a20"]);
        // A record wakes the partition up again.
        i.push(1, 15, "b15", t + Duration::from_secs(8));
        i.push(0, 30, "a30", t + Duration::from_secs(8));
        assert_eq!(drain(&mut i, t + Duration::from_secs(8)), ["b15"]);
        assert_eq!(drain(&mut i, t + Duration::from_secs(9)), [""; 0]);
    }

    #[test]
    fn with_idle_after_zero_a_partition_at_its_end_never_holds() {
        let t = Instant::now();
        let mut i = Interleaver::new(2, Duration::ZERO, t);
        i.push(0, 10, "a10", t);
        assert_eq!(drain(&mut i, t), [""; 0], "partition 1 may have records");
        i.reached_end(1, t);
        assert_eq!(drain(&mut i, t), ["a10"]);
    }

    #[test]
    fn an_outage_stops_the_idle_clocks() {
        let t = Instant::now();
        let mut i = Interleaver::new(2, IDLE, t);
        i.reached_end(1, t);
        i.push(0, 10, "a10", t);
        // The broker went away at 4 s and came back at 20 s.
        for s in 4..=20 {
            i.hold_clocks(t + Duration::from_secs(s));
        }
        assert_eq!(drain(&mut i, t + Duration::from_secs(24)), [""; 0]);
        assert_eq!(drain(&mut i, t + Duration::from_secs(25)), ["a10"]);
    }

    #[test]
    fn ties_go_by_partition_and_the_end_of_input_drains_in_order() {
        let t = Instant::now();
        let mut i = Interleaver::new(3, IDLE, t);
        i.push(1, 8, "b8", t);
        i.push(1, 9, "b9", t);
        i.push(0, 8, "a8", t);
        i.push(0, 12, "a12", t);
        assert_eq!(drain(&mut i, t), [""; 0]);
        let rest: Vec<_> = std::iter::from_fn(|| i.pop_any().map(|(_, x)| x)).collect();
        assert_eq!(rest, ["a8", "b8", "b9", "a12"]);
        assert!(i.is_empty());
        assert_eq!(
            i.waits(),
            Waits::default(),
            "waiting for the end is no wait"
        );
    }

    #[test]
    fn added_partitions_hold_the_merge_until_read() {
        let t = Instant::now();
        let mut i = Interleaver::new(1, IDLE, t);
        i.push(0, 10, "a10", t);
        assert_eq!(drain(&mut i, t), ["a10"]);
        assert_eq!(i.add_partition(t), 1);
        i.push(0, 20, "a20", t);
        assert_eq!(drain(&mut i, t + Duration::from_secs(60)), [""; 0]);
        i.push(1, 15, "b15", t);
        assert_eq!(drain(&mut i, t), ["b15"]);
    }

    #[test]
    fn waits_are_measured_per_hold() {
        let t = Instant::now();
        let mut i = Interleaver::new(2, IDLE, t);
        i.push(0, 10, "a10", t);
        assert_eq!(drain(&mut i, t), [""; 0]);
        assert_eq!(
            i.holding(t + Duration::from_millis(300)),
            Some((1, Duration::from_millis(300)))
        );
        i.push(1, 11, "b11", t + Duration::from_millis(300));
        assert_eq!(drain(&mut i, t + Duration::from_millis(300)), ["a10"]);
        i.push(0, 12, "a12", t + Duration::from_millis(400));
        assert_eq!(drain(&mut i, t + Duration::from_millis(400)), ["b11"]);
        i.push(1, 13, "b13", t + Duration::from_millis(500));
        assert_eq!(drain(&mut i, t + Duration::from_millis(500)), ["a12"]);
        let w = i.waits();
        // a10 waited 300 ms for partition 1, b11 100 ms for partition 0, a12 100 ms for partition 1.
        assert_eq!(w.holds, 3);
        assert_eq!(w.total, Duration::from_millis(500));
        assert_eq!(
            (w.longest, w.longest_for),
            (Duration::from_millis(300), Some(1))
        );
    }
}
