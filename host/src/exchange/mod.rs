//! Window stages in a consumer group (`mode = "group"` on the `kafka` source): the records of each
//! window stage are exchanged by key through a Kafka topic, so that every key is aggregated by exactly
//! one process, with the same result as a single process reading every partition.
//!
//! # Why records, not partial aggregates
//! The topic is not partitioned by the window key (the music topic is keyed by track), so a process
//! reads records of every key. Two shapes fix that: partial aggregates per process merged by the key's
//! owner (Flink's local/global aggregation), or the records themselves sent to the key's owner (Kafka
//! Streams' repartition topics). Partials travel less, but merging them adds floating-point numbers in
//! another order than one process does, so results would differ in their last digits; and a partial
//! mixes records of several source partitions, so after a crash the records read again could not be
//! told from those already counted. Records carry their source partition and offset: the owner folds
//! each exactly once, in the order one process would. So the exchange carries records.
//!
//! # The flow, per window stage `W`
//! ```text
//! kafka (group) → transforms → W.exchange ──▶ topic <group_id>.W.exchange ──▶ W → sinks
//!  (this process's partitions)  (by hash of the key)  (N partitions)   (this process's exchange partitions)
//! ```
//! - `W.exchange` (see [`send`]) writes each record to exchange partition `hash(key) % N`, with its
//!   source partition, offset and event time; a batch's records of one source partition for one
//!   exchange partition go in one message, a [`bundle`]. After each batch it writes a *marker* per
//!   source partition to every exchange partition: "records of source partition p up to offset o are
//!   sent; the next is not older than t". A batch's offsets are committed once its records are in the
//!   exchange topic.
//! - `W` (see [`receive`]) is a member of the group `<group_id>.W`, which shares the exchange
//!   partitions. For each one it holds a window instance of its own and merges what arrives by event
//!   time, ties by source partition, as one process merges the source partitions: a record waits until
//!   every other source partition has a later record waiting, a marker saying it has nothing older, or
//!   is idle (committed at its end for the source's `idle_partition`; see `receive::SourceStatus`).
//!   A record whose (source partition, offset) was already folded is skipped: that is how records read
//!   again after a crash or a rebalance count once.
//! - State moves with exchange partitions: every 5 s, and when one moves away, its window state, the
//!   source offsets folded, and the exchange offset to read again from go to the compacted topic
//!   `<group_id>.W.changelog` (keyed by partition), and that offset is committed. A new owner (after a
//!   rebalance, or a member killed) loads the newest snapshot and reads on from its offset; results
//!   emitted after the snapshot are emitted again, equal.
//! - The input ends when the group's source is done (every source partition committed to its end, see
//!   `sources::kafka`): then each member reads its exchange partitions to their end, emits its windows,
//!   and commits them with a "finished" mark; it leaves once every exchange partition is finished, so
//!   the partitions of a member that died are taken over before the group ends.

pub mod bundle;
pub mod receive;
pub mod send;

use crate::config::{Pipeline, Stage};
use crate::record::Value;
use crate::topology::registry::Role;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What a group-mode kafka source tells the window stages downstream of it.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub brokers: String,
    pub properties: Vec<(String, String)>,
    pub group_id: String,
    /// Partitions of each exchange topic.
    pub partitions: i32,
    /// The source's topic (group mode with window stages reads one).
    pub topic: String,
    /// The source's `idle_partition`: how long a source partition read to its end must stay there
    /// before it stops holding back the other partitions' records in the exchange windows too.
    pub idle_partition: std::time::Duration,
}

/// One window stage's exchange, shared by its sending and its receiving half.
#[derive(Debug)]
pub struct Exchange {
    pub stage: String,
    pub spec: GroupSpec,
    /// The window's key field; `None`: one key, so one exchange partition gets every record.
    pub key: Option<String>,
    /// Set when the sending half has had all its input: the group's source is done.
    input_done: AtomicBool,
}

impl Exchange {
    pub fn topic(&self) -> String {
        format!("{}.{}.exchange", self.spec.group_id, self.stage)
    }

    pub fn changelog(&self) -> String {
        format!("{}.{}.changelog", self.spec.group_id, self.stage)
    }

    pub fn group(&self) -> String {
        format!("{}.{}", self.spec.group_id, self.stage)
    }

    pub fn finish_input(&self) {
        self.input_done.store(true, Ordering::Release);
    }

    pub fn input_done(&self) -> bool {
        self.input_done.load(Ordering::Acquire)
    }
}

/// The exchange partition of a key: FNV-1a of its JSON text, the same in every process.
pub fn partition_of(key: &Value, partitions: i32) -> i32 {
    let text = key.to_json().to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % partitions as u64) as i32
}

/// The key of an exchange message: a bundle of records of a source partition (see [`bundle`]), a
/// marker (source partition, offset of its last record sent), or a single record (source partition,
/// offset, index among the rows a transform made of that record), as earlier versions wrote them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    Bundle {
        partition: i32,
    },
    Record {
        partition: i32,
        offset: i64,
        index: u32,
    },
    Marker {
        partition: i32,
        offset: i64,
    },
}

impl Tag {
    pub fn encode(&self) -> String {
        match *self {
            Tag::Bundle { partition } => format!("b:{partition}"),
            Tag::Record {
                partition,
                offset,
                index,
            } => format!("r:{partition}:{offset}:{index}"),
            Tag::Marker { partition, offset } => format!("m:{partition}:{offset}"),
        }
    }

    pub fn decode(key: &[u8]) -> Option<Tag> {
        let text = std::str::from_utf8(key).ok()?;
        let mut parts = text.split(':');
        let kind = parts.next()?;
        let partition = parts.next()?.parse().ok()?;
        if kind == "b" {
            return parts.next().is_none().then_some(Tag::Bundle { partition });
        }
        let offset = parts.next()?.parse().ok()?;
        let tag = match kind {
            "r" => Tag::Record {
                partition,
                offset,
                index: parts.next()?.parse().ok()?,
            },
            "m" => Tag::Marker { partition, offset },
            _ => return None,
        };
        parts.next().is_none().then_some(tag)
    }
}

/// In group mode, each window stage downstream of the group's source becomes two stages: its sending
/// half `W.exchange` (a sink, reading what `W` read) and `W` itself, now a source reading the exchange.
/// Stages downstream of `W` are unchanged.
pub fn rewrite(pipeline: &mut Pipeline) {
    let groups: Vec<(String, GroupSpec)> = pipeline
        .stages
        .iter()
        .filter_map(|s| s.config.group().map(|g| (s.name.clone(), g)))
        .collect();
    if groups.is_empty() {
        return;
    }
    let mut i = 0;
    while i < pipeline.stages.len() {
        let Some(spec) = upstream_group(pipeline, i, &groups) else {
            i += 1;
            continue;
        };
        let Some(key) = pipeline.stages[i].config.exchange_key() else {
            i += 1;
            continue;
        };
        let stage = &mut pipeline.stages[i];
        let exchange = Arc::new(Exchange {
            stage: stage.name.clone(),
            spec,
            key,
            input_done: AtomicBool::new(false),
        });
        let window = std::mem::replace(&mut stage.config, Box::new(Moved));
        let sender = Stage {
            name: format!("{}.exchange", stage.name),
            name_span: stage.name_span.clone(),
            type_name: "exchange".to_string(),
            role: Role::Sink,
            inputs: std::mem::take(&mut stage.inputs),
            config: Box::new(send::SendConfig {
                exchange: exchange.clone(),
            }),
        };
        stage.role = Role::Source;
        stage.config = Box::new(receive::ReceiveConfig { window, exchange });
        pipeline.stages.insert(i, sender);
        i += 2;
    }
}

/// What a stage's config is while it is being moved.
#[derive(Debug)]
struct Moved;

impl crate::topology::StageConfig for Moved {
    fn build(
        &self,
        _: &crate::topology::BuildContext<'_>,
    ) -> Result<crate::topology::Built, crate::topology::BuildError> {
        unreachable!("replaced at once")
    }
}

/// The group spec of a group-mode source upstream of stage `i`, if one is.
fn upstream_group(
    pipeline: &Pipeline,
    i: usize,
    groups: &[(String, GroupSpec)],
) -> Option<GroupSpec> {
    pipeline
        .upstream(&pipeline.stages[i].name)
        .into_iter()
        .find_map(|s| groups.iter().find(|(n, _)| *n == s.name))
        .map(|(_, g)| g.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_reject_anything_else() {
        for tag in [
            Tag::Bundle { partition: 5 },
            Tag::Record {
                partition: 3,
                offset: 17,
                index: 0,
            },
            Tag::Marker {
                partition: 0,
                offset: -1,
            },
        ] {
            assert_eq!(Tag::decode(tag.encode().as_bytes()), Some(tag));
        }
        for bad in [
            "",
            "r:1:2",
            "m:1",
            "x:1:2",
            "r:1:2:3:4",
            "m:a:2",
            "b:",
            "b:1:2",
            "b:x",
        ] {
            assert_eq!(Tag::decode(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_key_has_one_partition_in_every_process() {
        let rock = Value::Str("Rock".into());
        assert_eq!(partition_of(&rock, 6), partition_of(&rock, 6));
        let spread: std::collections::BTreeSet<i32> = (0..100)
            .map(|i| partition_of(&Value::Str(format!("genre {i}").into()), 6))
            .collect();
        assert_eq!(spread.len(), 6, "keys spread over every partition");
        assert_ne!(
            partition_of(&Value::Int(1), 1000),
            partition_of(&Value::Str("1".into()), 1000),
            "a key keeps its type"
        );
    }
}
