//! Merges the partitions of the topics being read into one stream in timestamp order.
//!
//! Kafka orders records within a partition only; a consumer receives partitions in fetch-sized runs,
//! so a window downstream would see event time jump back and forth by whole fetches, and records
//! behind its watermark would be late. Instead each partition gets a queue, and the record with the
//! smallest timestamp among the queue heads is handed on once every other partition either has a head
//! (so nothing older can come from it before its head) or was read to its end after that record arrived
//! (an older end mark says nothing about records produced since). A partition that is neither (its next
//! fetch is on the way, or nothing new came to it) is waited for at most `wait`; after
//! that, order is best effort and the window's `max_delay` absorbs what remains. The same records then
//! come out in the same order as from a capture sorted by time, which is what `record` writes and what
//! `replay` reads, so live runs and replays agree exactly (even in floating-point sums).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Per-partition queues, merged by timestamp.
pub struct Interleaver<T> {
    queues: Vec<VecDeque<(i64, Instant, T)>>,
    /// When each partition was last read to its end; cleared by its next record.
    at_end: Vec<Option<Instant>>,
    wait: Duration,
    /// Beyond this many buffered records the oldest head goes out without waiting.
    cap: usize,
    len: usize,
}

impl<T> Interleaver<T> {
    /// `partitions` queues, numbered from 0 (a consumer's partitions in a fixed order).
    pub fn new(partitions: usize, wait: Duration, cap: usize) -> Self {
        Interleaver {
            queues: (0..partitions).map(|_| VecDeque::new()).collect(),
            at_end: vec![None; partitions],
            wait,
            cap: cap.max(1),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A record read from partition `slot`, with its timestamp.
    pub fn push(&mut self, slot: usize, ts: i64, item: T, now: Instant) {
        self.at_end[slot] = None;
        self.queues[slot].push_back((ts, now, item));
        self.len += 1;
    }

    /// Partition `slot` has been read to its end (until its next record arrives).
    pub fn reached_end(&mut self, slot: usize, now: Instant) {
        self.at_end[slot] = Some(now);
    }

    /// Every partition has been read to its end and nothing is buffered.
    pub fn drained(&self) -> bool {
        self.len == 0 && self.at_end.iter().all(Option::is_some)
    }

    /// The next record in timestamp order, if it may be handed on at `now`.
    pub fn pop(&mut self, now: Instant) -> Option<(usize, T)> {
        let (slot, arrived) = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.front().map(|(ts, at, _)| (*ts, i, *at)))
            .min_by_key(|(ts, i, _)| (*ts, *i))
            .map(|(_, i, at)| (i, at))?;
        let others_known = self
            .queues
            .iter()
            .zip(&self.at_end)
            .all(|(q, end)| !q.is_empty() || end.is_some_and(|e| e >= arrived));
        if !(others_known || self.len > self.cap || now.duration_since(arrived) >= self.wait) {
            return None;
        }
        self.len -= 1;
        self.queues[slot]
            .pop_front()
            .map(|(_, _, item)| (slot, item))
    }

    /// Every buffered record, in timestamp order regardless of missing partitions (end of input).
    pub fn pop_any(&mut self) -> Option<(usize, T)> {
        let far = Instant::now() + self.wait + Duration::from_secs(1);
        self.pop(far)
    }

    /// How long until the oldest waiting head may go out anyway (for poll timeouts).
    pub fn next_deadline(&self, now: Instant) -> Option<Duration> {
        self.queues
            .iter()
            .filter_map(|q| {
                q.front()
                    .map(|(_, at, _)| (*at + self.wait).saturating_duration_since(now))
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(i: &mut Interleaver<&'static str>, now: Instant) -> Vec<&'static str> {
        std::iter::from_fn(|| i.pop(now).map(|(_, x)| x)).collect()
    }

    #[test]
    fn merges_by_timestamp_once_every_partition_is_known() {
        let t = Instant::now();
        let mut i = Interleaver::new(3, Duration::from_secs(10), 100);
        i.push(0, 10, "a10", t);
        i.push(0, 40, "a40", t);
        i.push(1, 20, "b20", t);
        // Partition 2 has said nothing: wait for it.
        assert_eq!(drain(&mut i, t), Vec::<&str>::new());
        i.push(2, 5, "c5", t);
        // c5; then partition 2 is empty again and not at its end, so a10 waits for it.
        assert_eq!(drain(&mut i, t), ["c5"]);
        i.reached_end(2, t);
        assert_eq!(drain(&mut i, t), ["a10", "b20"]);
        // Partition 1 is empty and not at its end: a40 waits.
        assert_eq!(drain(&mut i, t), Vec::<&str>::new());
        i.reached_end(1, t);
        assert_eq!(drain(&mut i, t), ["a40"]);
        assert!(!i.drained());
        i.reached_end(0, t);
        assert!(i.drained());
    }

    #[test]
    fn a_silent_partition_is_waited_for_at_most_wait() {
        let t = Instant::now();
        let mut i = Interleaver::new(2, Duration::from_millis(100), 100);
        i.push(0, 10, "a10", t);
        assert_eq!(
            drain(&mut i, t + Duration::from_millis(99)),
            Vec::<&str>::new()
        );
        assert_eq!(i.next_deadline(t), Some(Duration::from_millis(100)));
        assert_eq!(drain(&mut i, t + Duration::from_millis(100)), ["a10"]);
    }

    #[test]
    fn a_full_buffer_releases_and_ties_go_by_partition() {
        let t = Instant::now();
        let mut i = Interleaver::new(2, Duration::from_secs(10), 2);
        i.push(1, 7, "b7", t);
        i.push(1, 8, "b8", t);
        assert_eq!(drain(&mut i, t), Vec::<&str>::new());
        i.push(1, 9, "b9", t);
        assert_eq!(drain(&mut i, t), ["b7"]);
        i.push(0, 8, "a8", t);
        // Equal timestamps: the lower partition first; then partition 0 is empty, so b8 waits.
        assert_eq!(drain(&mut i, t), ["a8"]);
        assert_eq!(i.pop_any(), Some((1, "b8")));
    }

    #[test]
    fn an_end_mark_older_than_the_record_is_not_trusted() {
        let t = Instant::now();
        let later = t + Duration::from_millis(5);
        let mut i = Interleaver::new(2, Duration::from_millis(100), 100);
        i.reached_end(1, t);
        // a7 arrived after partition 1's end mark: partition 1 may have new records on the way.
        i.push(0, 7, "a7", later);
        assert_eq!(drain(&mut i, later), Vec::<&str>::new());
        i.push(1, 6, "b6", later);
        assert_eq!(drain(&mut i, later), ["b6"]);
        i.reached_end(1, later);
        assert_eq!(drain(&mut i, later), ["a7"]);
    }

    #[test]
    fn a_new_record_clears_the_end_mark() {
        let t = Instant::now();
        let mut i = Interleaver::new(2, Duration::from_secs(10), 100);
        i.reached_end(0, t);
        i.reached_end(1, t);
        i.push(1, 3, "b3", t);
        assert_eq!(drain(&mut i, t), ["b3"]);
        i.push(0, 4, "a4", t);
        // Partition 1 lost its end mark with b3, so a4 waits for it.
        assert_eq!(drain(&mut i, t), Vec::<&str>::new());
    }
}
