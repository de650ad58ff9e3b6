//! Which consumed offsets are done, and so may be committed.
//!
//! Each batch the source hands on covers, per partition, a run of consumed offsets that follows the
//! previous batch's run. A batch is done once every stage has let go of its [`Ack`](crate::record::Ack)
//! (sinks after writing, windows after emitting the results the records went into). Batches finish out of
//! order (a window keeps old records while newer ones pass straight to a sink), so the commit point of a
//! partition is the end of its longest prefix of done batches: Kafka keeps one offset per partition, and
//! committing past a batch that is not done would lose it on a restart.
//!
//! Runs are kept in consumption order, not by offset arithmetic: offsets may have gaps (compaction,
//! transaction markers), and the next offset to read after a batch is its last offset plus one.

use crate::topology::StopFlag;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Commit bookkeeping per partition (slot), in the order partitions were assigned.
#[derive(Debug, Default)]
pub struct Tracker {
    parts: Vec<Part>,
    /// The slot each partition is read in now (group members only: slots change with rebalances).
    slots: std::collections::HashMap<(String, i32), usize>,
    next_batch: u64,
    open: usize,
}

#[derive(Debug, Default)]
struct Part {
    /// Given to another member of the consumer group (`mode = "group"`): its offsets are that
    /// member's to commit from then on, so none is taken here.
    revoked: bool,
    /// Batches holding offsets of this partition, oldest first: (batch, last offset, done).
    runs: VecDeque<(u64, i64, bool)>,
    /// The next offset to read after the done prefix (the offset to commit), once there is one.
    commit: Option<i64>,
    /// What was last handed to [`Tracker::take_commits`].
    taken: Option<i64>,
}

impl Tracker {
    pub fn new(partitions: usize) -> Self {
        Tracker {
            parts: (0..partitions).map(|_| Part::default()).collect(),
            slots: Default::default(),
            next_batch: 0,
            open: 0,
        }
    }

    /// A partition assigned after the start; returns its slot.
    pub fn add_partition(&mut self) -> usize {
        self.parts.push(Part::default());
        self.parts.len() - 1
    }

    /// Registers a batch holding, per partition, the consumed offsets after the previous batch's up to
    /// and including `last`. Returns the batch's number.
    pub fn open(&mut self, runs: &[(usize, i64)]) -> u64 {
        let batch = self.next_batch;
        self.next_batch += 1;
        self.open += 1;
        for &(slot, last) in runs {
            self.parts[slot].runs.push_back((batch, last, false));
        }
        batch
    }

    /// The batch's records are handled: its runs may be committed once the runs before them are.
    pub fn done(&mut self, batch: u64, slots: &[usize]) {
        for &slot in slots {
            let part = &mut self.parts[slot];
            if let Ok(i) = part.runs.binary_search_by_key(&batch, |r| r.0) {
                part.runs[i].2 = true;
            }
            while let Some(&(_, last, true)) = part.runs.front() {
                part.commit = Some(last + 1);
                part.runs.pop_front();
            }
        }
        self.open = self.open.saturating_sub(1);
    }

    /// The batch was dropped without being handled (a stop, a failed stage): its runs stay uncommitted,
    /// and so does everything after them.
    pub fn abandon(&mut self, _batch: u64) {
        self.open = self.open.saturating_sub(1);
    }

    /// Batches handed on and not yet done or abandoned.
    pub fn open_batches(&self) -> usize {
        self.open
    }

    /// (slot, offset to commit) for every partition that has a commit point.
    pub fn commit_points(&self) -> Vec<(usize, i64)> {
        self.parts
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.revoked)
            .filter_map(|(slot, p)| p.commit.map(|c| (slot, c)))
            .collect()
    }

    /// Partition `partition` of `topic` is read in `slot` from now on.
    pub fn name(&mut self, slot: usize, topic: &str, partition: i32) {
        self.slots.insert((topic.to_string(), partition), slot);
    }

    /// The slot partition `partition` of `topic` is read in now, if it is.
    pub fn slot_of(&self, topic: &str, partition: i32) -> Option<usize> {
        self.slots.get(&(topic.to_string(), partition)).copied()
    }

    /// Whether a batch handed on still holds records of partition `slot`.
    pub fn in_flight(&self, slot: usize) -> bool {
        !self.parts[slot].runs.is_empty()
    }

    /// Partition `slot` went to another member of the group: returns its last commit point, and takes
    /// none from it again (a batch of it still in flight is that member's to read again).
    pub fn revoke(&mut self, slot: usize) -> Option<i64> {
        self.slots.retain(|_, s| *s != slot);
        let part = &mut self.parts[slot];
        part.revoked = true;
        part.commit
    }

    /// (slot, offset to commit) for every partition whose commit point moved since the last call.
    pub fn take_commits(&mut self) -> Vec<(usize, i64)> {
        let mut moved = Vec::new();
        for (slot, part) in self.parts.iter_mut().enumerate() {
            if part.revoked {
                continue;
            }
            if let Some(commit) = part.commit.filter(|c| Some(*c) != part.taken) {
                part.taken = Some(commit);
                moved.push((slot, commit));
            }
        }
        moved
    }
}

/// A tracker shared between the source and the [`BatchDone`] tokens in flight.
pub struct Shared {
    tracker: Mutex<Tracker>,
    changed: Condvar,
    stop: StopFlag,
}

impl Shared {
    pub fn new(partitions: usize, stop: StopFlag) -> Arc<Self> {
        Arc::new(Shared {
            tracker: Mutex::new(Tracker::new(partitions)),
            changed: Condvar::new(),
            stop,
        })
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no batch in flight holds records of `slots`, the run is stopped, or `timeout`
    /// passes; `true` when none does.
    pub fn wait_done(&self, slots: &[usize], timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut t = self.lock();
        loop {
            if !slots.iter().any(|&s| t.in_flight(s)) {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || self.stop.is_stopped() {
                return false;
            }
            t = self
                .changed
                .wait_timeout(t, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until every batch is done or abandoned, or the run is stopped.
    pub fn wait_idle(&self) {
        let mut t = self.lock();
        while t.open_batches() > 0 && !self.stop.is_stopped() {
            t = self
                .changed
                .wait_timeout(t, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// What a batch's [`Ack`](crate::record::Ack) wraps: dropping the last clone marks the batch done.
///
/// A drop during a stop (Ctrl-C, SIGTERM, a failed stage) or a panic does not count: then it comes from a
/// stage discarding state (open windows), not from a sink having written, so those records stay
/// uncommitted and a restart reads them again.
pub struct BatchDone {
    pub shared: Arc<Shared>,
    pub batch: u64,
    pub slots: Vec<usize>,
}

impl Drop for BatchDone {
    fn drop(&mut self) {
        let handled = !self.shared.stop.is_stopped() && !std::thread::panicking();
        let mut t = self.shared.lock();
        if handled {
            t.done(self.batch, &self.slots);
        } else {
            t.abandon(self.batch);
        }
        drop(t);
        self.shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Ack;

    #[test]
    fn commits_the_done_prefix_per_partition() {
        let mut t = Tracker::new(2);
        let b0 = t.open(&[(0, 9), (1, 4)]);
        let b1 = t.open(&[(0, 19)]);
        let b2 = t.open(&[(0, 29), (1, 14)]);
        assert_eq!(t.open_batches(), 3);
        // b1 is done first: partition 0 still waits for b0.
        t.done(b1, &[0]);
        assert_eq!(t.take_commits(), []);
        t.done(b0, &[0, 1]);
        assert_eq!(t.take_commits(), [(0, 20), (1, 5)]);
        assert_eq!(t.take_commits(), [], "nothing moved since");
        t.done(b2, &[0, 1]);
        assert_eq!(t.take_commits(), [(0, 30), (1, 15)]);
        assert_eq!(t.open_batches(), 0);
    }

    #[test]
    fn a_revoked_partition_is_no_longer_committed() {
        let mut t = Tracker::new(2);
        let b0 = t.open(&[(0, 9), (1, 4)]);
        let b1 = t.open(&[(0, 19)]);
        t.done(b0, &[0, 1]);
        assert!(t.in_flight(0) && !t.in_flight(1));
        assert_eq!(t.revoke(0), Some(10), "the last commit point goes with it");
        t.done(b1, &[0]);
        assert_eq!(
            t.take_commits(),
            [(1, 5)],
            "partition 0 is another member's now"
        );
        assert_eq!(t.commit_points(), [(1, 5)]);
    }

    #[test]
    fn offsets_with_gaps_commit_after_the_last_one_read() {
        let mut t = Tracker::new(1);
        // Offsets 0..=3, then 7 and 8 (4..=6 were compacted away).
        let b0 = t.open(&[(0, 3)]);
        let b1 = t.open(&[(0, 8)]);
        t.done(b1, &[0]);
        t.done(b0, &[0]);
        assert_eq!(t.take_commits(), [(0, 9)]);
    }

    #[test]
    fn an_abandoned_batch_holds_back_its_partition() {
        let mut t = Tracker::new(2);
        let b0 = t.open(&[(0, 4)]);
        let b1 = t.open(&[(0, 9), (1, 9)]);
        let b2 = t.open(&[(0, 14)]);
        t.abandon(b1);
        t.done(b0, &[0]);
        t.done(b2, &[0]);
        assert_eq!(t.take_commits(), [(0, 5)]);
        assert_eq!(t.open_batches(), 0);
    }

    #[test]
    fn acks_mark_done_when_the_last_clone_drops_unless_stopped() {
        let stop = StopFlag::default();
        let shared = Shared::new(1, stop.clone());
        let token = |last| {
            let batch = shared.lock().open(&[(0, last)]);
            Ack::new(BatchDone {
                shared: shared.clone(),
                batch,
                slots: vec![0],
            })
        };
        let a = token(9);
        let held = a.clone();
        drop(a);
        assert_eq!(
            shared.lock().take_commits(),
            [],
            "a window still holds the batch"
        );
        drop(held);
        assert_eq!(shared.lock().take_commits(), [(0, 10)]);
        let b = token(19);
        stop.stop();
        drop(b);
        assert_eq!(
            shared.lock().take_commits(),
            [],
            "dropped by a stop: not done"
        );
        shared.wait_idle();
        assert_eq!(shared.lock().open_batches(), 0);
    }
}
