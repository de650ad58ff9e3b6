//! The `kafka` source as a member of a consumer group that shares the partitions (`mode = "group"`):
//! what it does when the group gives it partitions or takes them away, and when it may end.
//!
//! A partition taken away is committed up to what this member handled, inside the rebalance callback
//! (see [`crate::kafka::group`]): the source hands every decoded batch on before it polls, so what it
//! waits for there is downstream, not behind itself. Records read but not yet handed on are dropped;
//! the next owner reads them from that commit.

use super::offsets::Shared;
use super::Pending;
use crate::kafka::group::{Change, OnRevoke};
use crate::kafka::reader::Reader;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a partition being taken away waits for its records in flight to be handled (written by
/// the sinks) before it is committed without them; its next owner then reads those again.
const REVOKE_WAIT: Duration = Duration::from_secs(10);
/// How often a member whose partitions are all idle asks whether the whole group is done.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

pub(super) struct Member {
    label: String,
    group_id: String,
    /// Every partition of the topics, whoever reads it: the group is done when all are committed to
    /// their end.
    all: TopicPartitionList,
    last_check: Option<Instant>,
    said_waiting: bool,
}

/// "partitions 0, 3 of `t`", per topic.
pub(super) fn describe<'a>(parts: impl IntoIterator<Item = (&'a str, i32)>) -> String {
    let mut by_topic: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, p) in parts {
        match by_topic.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, ps)) => ps.push(p),
            None => by_topic.push((topic, vec![p])),
        }
    }
    if by_topic.is_empty() {
        return "no partition".to_string();
    }
    by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            let list = ps.iter().map(i32::to_string).collect::<Vec<_>>().join(", ");
            let word = if ps.len() == 1 {
                "partition"
            } else {
                "partitions"
            };
            format!("{word} {list} of `{t}`")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Member {
    pub fn new(label: String, group_id: String, all: TopicPartitionList) -> Self {
        Member {
            label,
            group_id,
            all,
            last_check: None,
            said_waiting: false,
        }
    }

    /// The rebalance callback's part: wait for the records in flight of the partitions being taken,
    /// then commit them where this member's handling of them ends.
    pub fn on_revoke(&self, shared: Arc<Shared>) -> OnRevoke {
        let label = self.label.clone();
        let group_id = self.group_id.clone();
        Box::new(move |consumer, parts| {
            let slots: Vec<(usize, &str, i32)> = {
                let t = shared.lock();
                parts
                    .iter()
                    .filter_map(|(topic, p)| t.slot_of(topic, *p).map(|s| (s, topic.as_str(), *p)))
                    .collect()
            };
            if slots.is_empty() {
                return;
            }
            let ids: Vec<usize> = slots.iter().map(|s| s.0).collect();
            if !shared.wait_done(&ids, REVOKE_WAIT) {
                eprintln!(
                    "warning: {label}: records of {} were still being handled after {} s when the group took them; their next owner reads them again",
                    describe(slots.iter().map(|s| (s.1, s.2))),
                    REVOKE_WAIT.as_secs()
                );
            }
            let mut tpl = TopicPartitionList::new();
            {
                let mut t = shared.lock();
                for &(slot, topic, p) in &slots {
                    if let Some(next) = t.revoke(slot) {
                        let _ = tpl.add_partition_offset(topic, p, Offset::Offset(next));
                    }
                }
            }
            if tpl.count() > 0 {
                if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                    eprintln!(
                        "warning: {label}: committing {} for group `{group_id}` as they move to another member failed ({e}); their next owner reads again what was handled since the last commit",
                        describe(slots.iter().map(|s| (s.1, s.2)))
                    );
                }
            }
        })
    }

    /// Applies what rebalances changed: new partitions get slots, partitions taken away are dropped
    /// with their records not yet handed on. One line each.
    pub fn apply(&mut self, reader: &mut Reader, shared: &Shared, pending: &mut Pending) {
        for change in reader.take_changes() {
            match change {
                Change::Assigned(parts) => {
                    if parts.is_empty() {
                        continue;
                    }
                    let names: Vec<(String, i32)> =
                        parts.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
                    let slots = reader.adopt(parts);
                    let mut t = shared.lock();
                    for slot in slots {
                        let s = t.add_partition();
                        debug_assert_eq!(s, slot);
                        let (topic, p) = reader.slot(slot);
                        t.name(slot, topic, p);
                        pending.last.push(None);
                        pending.next.push(None);
                    }
                    drop(t);
                    eprintln!(
                        "tributary: {}: group `{}` assigned {}; now reading {}",
                        self.label,
                        self.group_id,
                        describe(names.iter().map(|(t, p)| (t.as_str(), *p))),
                        describe(reader.owned())
                    );
                    self.said_waiting = false;
                }
                Change::Revoked { parts, lost } => {
                    let released = reader.release(&parts);
                    let mut dropped = 0;
                    {
                        let mut t = shared.lock();
                        for &(slot, n) in &released {
                            t.revoke(slot);
                            pending.last[slot] = None;
                            dropped += n;
                        }
                    }
                    let before = pending.raw.len();
                    pending.raw.retain(|r| {
                        !parts
                            .iter()
                            .any(|(t, p)| **t == *r.topic && *p == r.partition)
                    });
                    dropped += before - pending.raw.len();
                    if pending.raw.is_empty() {
                        pending.since = None;
                    }
                    if released.is_empty() {
                        continue;
                    }
                    let what = describe(parts.iter().map(|(t, p)| (t.as_str(), *p)));
                    let how = if lost {
                        "took back".to_string()
                    } else {
                        "moved".to_string()
                    };
                    let after = if lost {
                        format!("this process was thought gone, so what it handled of them since its last commit is read again by their next owner ({dropped} records read here were dropped)")
                    } else {
                        format!("committed up to what was handled; {dropped} records read but not yet handed on are left to their next owner")
                    };
                    eprintln!(
                        "tributary: {}: group `{}` {how} {what} ({after}); now reading {}",
                        self.label,
                        self.group_id,
                        describe(reader.owned())
                    );
                }
            }
        }
    }

    /// Whether every partition of the topics, whoever read it, is committed to its end: then this
    /// member may end. Asked at most once a second; `false` until then. Partitions this member reads
    /// that are at their end with nothing read (a group that skips to the latest records) are
    /// committed at their end first, so they count as done.
    pub fn group_done(&mut self, reader: &Reader) -> bool {
        if self
            .last_check
            .is_some_and(|t| t.elapsed() < CHECK_INTERVAL)
        {
            return false;
        }
        self.last_check = Some(Instant::now());
        let consumer = reader.consumer();
        let unread = reader.unread_at_end();
        if !unread.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (topic, p, high) in &unread {
                let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*high));
            }
            if consumer.commit(&tpl, CommitMode::Sync).is_err() {
                return false;
            }
        }
        let Ok(done) = crate::kafka::done_partitions(consumer, &self.all, Duration::from_secs(2))
        else {
            return false;
        };
        let left: Vec<(String, i32)> = done
            .into_iter()
            .filter(|(_, d)| !d)
            .map(|(part, _)| part)
            .collect();
        if left.is_empty() {
            return true;
        }
        if !self.said_waiting {
            eprintln!(
                "tributary: {}: its partitions are read; waiting for {} of group `{}` to be read to their end by the member that holds them (or by this one, should the group move them here)",
                self.label,
                describe(left.iter().map(|(t, p)| (t.as_str(), *p))),
                self.group_id
            );
            self.said_waiting = true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_described_per_topic_in_order() {
        assert_eq!(describe([("t", 3), ("t", 0)]), "partitions 0, 3 of `t`");
        assert_eq!(
            describe([("a", 1), ("b", 0), ("a", 0)]),
            "partitions 0, 1 of `a`; partition 0 of `b`"
        );
        assert_eq!(describe(std::iter::empty()), "no partition");
    }
}
