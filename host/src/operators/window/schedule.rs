//! When panes come due: at their window's end (to be emitted) or at end + allowed lateness (to be
//! dropped). Entries are (time, window start, key).
//!
//! Fixed windows (tumbling, hopping, global) share their end among every key's pane of one window, and
//! their ends arrive nearly in order, so they are kept in buckets, one per time, in a deque sorted by
//! time: a new pane is a push onto the last bucket (or a binary search for an older one), and a
//! watermark that passes a window drains its whole bucket. An ordered set would pay a tree insert and a
//! tree pop per pane, which was a fifth of a 1-minute window's time. Sessions keep an ordered set: a
//! session's end moves with every record that extends it, so single entries must be found and removed.

use super::keys::KeyId;
use std::collections::{BTreeSet, VecDeque};

/// An entry: (time, window start, key).
pub type Entry = (i64, i64, KeyId);

/// Panes by the time they come due.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// One bucket per time, sorted by time (fixed windows).
    Buckets(VecDeque<Bucket>),
    /// One entry per pane (session windows).
    Ordered(BTreeSet<Entry>),
}

/// The panes due at one time.
#[derive(Clone, Debug)]
pub struct Bucket {
    at: i64,
    panes: Vec<(i64, KeyId)>,
    /// `panes` is sorted from the largest (start, key) down, for [`Schedule::pop_first`].
    sorted: bool,
}

impl Schedule {
    /// For fixed windows.
    pub fn buckets() -> Self {
        Schedule::Buckets(VecDeque::new())
    }

    /// For session windows.
    pub fn ordered() -> Self {
        Schedule::Ordered(BTreeSet::new())
    }

    /// Forgets every pane (a stage that starts over).
    pub fn clear(&mut self) {
        match self {
            Schedule::Buckets(buckets) => buckets.clear(),
            Schedule::Ordered(set) => set.clear(),
        }
    }

    /// Adds a pane due at `at`. A pane is added at most once per time until it leaves.
    pub fn insert(&mut self, at: i64, start: i64, key: KeyId) {
        match self {
            Schedule::Ordered(set) => {
                set.insert((at, start, key));
            }
            Schedule::Buckets(buckets) => {
                // Nearly always the last bucket or a new one after it.
                let i = match buckets.back() {
                    Some(b) if b.at == at => buckets.len() - 1,
                    Some(b) if b.at > at => match buckets.binary_search_by_key(&at, |b| b.at) {
                        Ok(i) => i,
                        Err(i) => {
                            buckets.insert(i, Bucket::new(at, 0));
                            i
                        }
                    },
                    _ => {
                        // Sized like the newest window so far: consecutive windows hold about as
                        // many keys, and growing each bucket by doubling showed in profiles.
                        let room = buckets.back().map_or(0, |b| b.panes.len());
                        buckets.push_back(Bucket::new(at, room));
                        buckets.len() - 1
                    }
                };
                let b = &mut buckets[i];
                b.panes.push((start, key));
                b.sorted = false;
            }
        }
    }

    /// Removes a pane's entry, if it is there. With buckets this searches the pane's bucket; fixed
    /// windows need it only in cases that do not happen (see `Windows::fire`).
    pub fn remove(&mut self, at: i64, start: i64, key: KeyId) {
        match self {
            Schedule::Ordered(set) => {
                set.remove(&(at, start, key));
            }
            Schedule::Buckets(buckets) => {
                let Ok(i) = buckets.binary_search_by_key(&at, |b| b.at) else {
                    return;
                };
                let b = &mut buckets[i];
                if let Some(j) = b.panes.iter().position(|p| *p == (start, key)) {
                    // `remove`, not `swap_remove`, keeps a sorted bucket sorted.
                    b.panes.remove(j);
                }
                if b.panes.is_empty() {
                    buckets.remove(i);
                }
            }
        }
    }

    /// Moves every entry due at or before `t` to `out`, by time; within one time in no fixed order.
    pub fn drain_until(&mut self, t: i64, out: &mut Vec<Entry>) {
        match self {
            Schedule::Ordered(set) => {
                while let Some(first) = set.first() {
                    if first.0 > t {
                        break;
                    }
                    out.push(set.pop_first().expect("there is a first"));
                }
            }
            Schedule::Buckets(buckets) => {
                while buckets.front().is_some_and(|b| b.at <= t) {
                    let b = buckets.pop_front().expect("there is a front");
                    out.extend(b.panes.into_iter().map(|(s, k)| (b.at, s, k)));
                }
            }
        }
    }

    /// Takes the smallest entry: by time, then start, then key id.
    pub fn pop_first(&mut self) -> Option<Entry> {
        match self {
            Schedule::Ordered(set) => set.pop_first(),
            Schedule::Buckets(buckets) => {
                let b = buckets.front_mut()?;
                if !b.sorted {
                    b.panes.sort_unstable_by(|x, y| y.cmp(x));
                    b.sorted = true;
                }
                let (start, key) = b.panes.pop().expect("buckets are never empty");
                let at = b.at;
                if b.panes.is_empty() {
                    buckets.pop_front();
                }
                Some((at, start, key))
            }
        }
    }

    /// Entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        match self {
            Schedule::Ordered(set) => set.len(),
            Schedule::Buckets(buckets) => buckets.iter().map(|b| b.panes.len()).sum(),
        }
    }
}

impl Bucket {
    fn new(at: i64, room: usize) -> Self {
        Bucket {
            at,
            panes: Vec::with_capacity(room),
            sorted: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries inserted out of order, with repeated times.
    const ENTRIES: [Entry; 8] = [
        (120, 60, 3),
        (120, 60, 1),
        (180, 120, 2),
        (60, 0, 7),
        (120, 60, 2),
        (240, 180, 1),
        (60, 0, 1),
        (180, 60, 0),
    ];

    fn both() -> [Schedule; 2] {
        [Schedule::buckets(), Schedule::ordered()]
    }

    fn sorted(mut v: Vec<Entry>) -> Vec<Entry> {
        v.sort();
        v
    }

    #[test]
    fn drain_until_takes_every_entry_due_by_time_and_leaves_the_rest() {
        for mut s in both() {
            for (at, start, key) in ENTRIES {
                s.insert(at, start, key);
            }
            let mut out = Vec::new();
            s.drain_until(59, &mut out);
            assert!(out.is_empty());
            s.drain_until(120, &mut out);
            // Times ascend; within one time the order is free.
            assert!(out.windows(2).all(|w| w[0].0 <= w[1].0), "{out:?}");
            assert_eq!(
                sorted(out.clone()),
                [
                    (60, 0, 1),
                    (60, 0, 7),
                    (120, 60, 1),
                    (120, 60, 2),
                    (120, 60, 3)
                ]
            );
            assert_eq!(s.len(), 3);
            out.clear();
            s.drain_until(i64::MAX, &mut out);
            assert_eq!(sorted(out), [(180, 60, 0), (180, 120, 2), (240, 180, 1)]);
            assert_eq!(s.len(), 0);
        }
    }

    #[test]
    fn pop_first_gives_the_order_of_an_ordered_set() {
        for mut s in both() {
            for (at, start, key) in ENTRIES {
                s.insert(at, start, key);
            }
            let mut popped = vec![s.pop_first().unwrap()];
            // An insert into a bucket already sorted for popping.
            s.insert(60, 0, 0);
            s.insert(60, 0, 9);
            while let Some(e) = s.pop_first() {
                popped.push(e);
            }
            let mut want = ENTRIES.to_vec();
            want.extend([(60, 0, 0), (60, 0, 9)]);
            want.sort();
            // The first pop came before (60, 0, 0) was there.
            want.swap(0, 1);
            assert_eq!(popped, want);
        }
    }

    #[test]
    fn remove_takes_out_one_entry() {
        for mut s in both() {
            for (at, start, key) in ENTRIES {
                s.insert(at, start, key);
            }
            s.remove(120, 60, 1);
            s.remove(240, 180, 1); // its bucket goes
            s.remove(240, 180, 1); // not there: nothing happens
            s.remove(999, 0, 0);
            assert_eq!(s.len(), ENTRIES.len() - 2);
            let mut out = Vec::new();
            s.drain_until(i64::MAX, &mut out);
            let mut want = ENTRIES.to_vec();
            want.retain(|e| *e != (120, 60, 1) && *e != (240, 180, 1));
            assert_eq!(sorted(out), sorted(want));
        }
    }

    #[test]
    fn buckets_stay_sorted_by_time_whatever_the_insertion_order() {
        let mut s = Schedule::buckets();
        for at in [50, 10, 30, 30, 70, 20, 10, 60] {
            s.insert(at, 0, 0);
        }
        let Schedule::Buckets(b) = &s else {
            unreachable!()
        };
        let times: Vec<i64> = b.iter().map(|b| b.at).collect();
        assert_eq!(times, [10, 20, 30, 50, 60, 70]);
        assert_eq!(s.len(), 8);
    }
}
