//! Membership of a consumer group that shares the work (`mode = "group"` of the `kafka` source).
//!
//! Kafka's group protocol decides which member reads which partition; librdkafka tells each member in
//! a rebalance callback, which runs inside the member's poll. With the cooperative protocol
//! (`cooperative-sticky`) a rebalance only moves the partitions that change hands, and the others are
//! read on meanwhile. Two things must happen inside the callback, before librdkafka goes on:
//! - a partition given to this member gets its own queue (split off before it is assigned, as
//!   [`super::reader`] reads each partition from its own queue);
//! - a partition taken away has its handled records committed, so the next owner starts right after
//!   them: no record is read twice or skipped. Records of it that were read but not handed on are
//!   dropped; the next owner reads them.
//!
//! Everything else (slots, the merge, logging) is the reader's and the source's business, on their own
//! thread, from the [`Change`]s queued here.

use super::reader::KafkaConsumer;
use super::ConsumerReporter;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, Rebalance};
use std::sync::{Mutex, OnceLock, Weak};

/// What a rebalance changed for this member, in the order it happened.
pub enum Change {
    /// Partitions given to this member, each with its queue split off (unless the membership reads
    /// them all from the consumer's own queue).
    Assigned(Vec<(String, i32, Option<PartitionQueue<ConsumerReporter>>)>),
    /// Partitions taken away. `lost`: the group gave them away without asking this member (it was
    /// thought gone: no poll within `max.poll.interval.ms`, or no heartbeat within
    /// `session.timeout.ms`), so their offsets were not committed here.
    Revoked {
        parts: Vec<(String, i32)>,
        lost: bool,
    },
}

/// Called in the rebalance callback with the partitions being taken away, before they are: commits
/// what was handled of them.
pub type OnRevoke = Box<dyn FnMut(&KafkaConsumer, &[(String, i32)]) + Send>;

/// Shared by a member's consumer context and the thread that reads.
#[derive(Default)]
pub struct Membership {
    /// Read every partition from the consumer's queue: no queue is split off.
    shared_queue: bool,
    /// The consumer, to split partition queues in the callback (which only gets a plain reference).
    consumer: OnceLock<Weak<KafkaConsumer>>,
    changes: Mutex<Vec<Change>>,
    on_revoke: Mutex<Option<OnRevoke>>,
}

impl Membership {
    /// A membership whose records all come through the consumer's own queue.
    pub fn shared_queue() -> Self {
        Membership {
            shared_queue: true,
            ..Default::default()
        }
    }

    /// The consumer this membership belongs to; set once, right after it is made.
    pub fn set_consumer(&self, consumer: Weak<KafkaConsumer>) {
        let _ = self.consumer.set(consumer);
    }

    pub fn set_on_revoke(&self, f: OnRevoke) {
        *self.on_revoke.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// The changes since the last call, oldest first.
    pub fn take_changes(&self) -> Vec<Change> {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn push(&self, change: Change) {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(change);
    }

    /// The rebalance callback's work before librdkafka changes the assignment.
    pub(super) fn pre_rebalance(
        &self,
        consumer: &BaseConsumer<ConsumerReporter>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Assign(tpl) if self.shared_queue => {
                let parts = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition(), None))
                    .collect();
                self.push(Change::Assigned(parts));
            }
            Rebalance::Assign(tpl) => {
                let Some(owner) = self.consumer.get().and_then(Weak::upgrade) else {
                    return;
                };
                let mut parts = Vec::new();
                for e in tpl.elements() {
                    match owner.split_partition_queue(e.topic(), e.partition()) {
                        Some(q) => parts.push((e.topic().to_string(), e.partition(), Some(q))),
                        None => eprintln!(
                            "warning: kafka: cannot read partition {} of `{}` on its own queue; it is not read",
                            e.partition(),
                            e.topic()
                        ),
                    }
                }
                self.push(Change::Assigned(parts));
            }
            Rebalance::Revoke(tpl) => {
                let parts: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                let lost = consumer.assignment_lost();
                if !lost {
                    let mut hook = self.on_revoke.lock().unwrap_or_else(|p| p.into_inner());
                    if let (Some(f), Some(owner)) =
                        (hook.as_mut(), self.consumer.get().and_then(Weak::upgrade))
                    {
                        f(&owner, &parts);
                    }
                }
                self.push(Change::Revoked { parts, lost });
            }
            Rebalance::Error(e) => {
                eprintln!(
                    "warning: kafka: a consumer group rebalance failed: {e}; the group tries again"
                )
            }
        }
    }
}
