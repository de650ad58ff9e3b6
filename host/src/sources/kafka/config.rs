//! The `kafka` source's settings in `pipeline.toml`, checked and built into a [`KafkaSource`].

use super::super::replay::ReplayConfig;
use super::{FallbackSource, KafkaSource};
use crate::config::Duration;
use crate::kafka;
use crate::topology::{BuildContext, BuildError, Built, StageConfig};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration as StdDuration;
use toml::Spanned;

/// Reads Kafka topics through a consumer group (see the README for the at-least-once guarantee).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers as `host:port`, comma-separated, like `"127.0.0.1:9092"`.
    pub brokers: Spanned<String>,
    /// The topics to read, like `["music_streaming_events"]`; every partition of each is read.
    pub topics: Spanned<Vec<String>>,
    /// The consumer group under which offsets are committed; `start = "committed"` resumes from them.
    /// With `mode = "all"` one tributary process reads all partitions: the group records progress, it
    /// does not share work. With `mode = "group"` the group's members share the partitions.
    pub group_id: Spanned<String>,
    /// `"all"` (the default): this process reads every partition of the topics. `"group"`: every
    /// process started with this `group_id` joins the consumer group, and Kafka shares the partitions
    /// among them (`cooperative-sticky`: a process that joins or leaves moves only the partitions that
    /// change hands; the others are read on). Each partition is read from the group's committed
    /// offset, and `start` only says where to begin in a partition the group has none for. A partition
    /// taken from a process is committed up to what it handled, so its next owner neither skips nor
    /// repeats a record; a process that is killed leaves its last commit, and the next owner reads
    /// again what it handled since (at least once). With `idle_timeout`, a process ends once its
    /// partitions are idle and every partition of the topics, whoever read it, is committed to its
    /// end. Window stages downstream get their records by key through an exchange topic, so each key
    /// is aggregated by one process (see `exchange_partitions` and the README). Not with `fallback`.
    pub mode: Option<Spanned<Mode>>,
    /// Group mode with window stages downstream: the records of each window stage go to the process
    /// that owns their key through a topic of this many partitions (default 6), named
    /// `<group_id>.<stage>.exchange`. Window state moves between processes one such partition at a
    /// time, so at most this many processes share a window stage's work.
    pub exchange_partitions: Option<Spanned<u32>>,
    /// Where reading begins in each partition: `earliest` (the default: everything the topic holds),
    /// `latest` (only records that arrive from now on) or `committed` (after the group's last commit,
    /// from the beginning where the group has none).
    #[serde(default)]
    pub start: Start,
    /// librdkafka client properties, passed through as they are, e.g.
    /// `{ "security.protocol" = "SASL_SSL", "sasl.mechanism" = "SCRAM-SHA-512", "sasl.username" = "…" }`.
    /// TLS and SASL `PLAIN`, `SCRAM-SHA-256/512` and `OAUTHBEARER` are built in; `GSSAPI` is not.
    pub properties: Option<Spanned<toml::Table>>,
    /// Records per batch handed downstream (default 1024: smaller than `replay`'s, since a live source
    /// hands a batch on after `linger` anyway, and a consumer holds fetched messages besides).
    #[serde(default = "default_batch_size")]
    pub batch_size: Spanned<usize>,
    /// The longest a record waits for its batch to fill before the batch is handed on. Default
    /// `100ms`. (Waiting for other partitions is `idle_partition`'s business: linger never hands a
    /// record on ahead of an older one.)
    pub linger: Option<Spanned<Duration>>,
    /// Partitions are merged in timestamp order: a record is handed on only once every other
    /// partition has a later record waiting or is idle. A partition read to its end is idle after it
    /// has had nothing new for this long (default `5s`); until then it holds the others back, because
    /// records produced to it later may be older than theirs. A record it delivers after that is late
    /// if a window's watermark has passed it by more than the window allows. `"0s"`: a partition at its
    /// end never holds the others back (lower latency; order only as good as the producers'). A
    /// partition that still has records to read always holds the others back, and no clock runs while
    /// the brokers are unreachable. In `mode = "group"`, window stages wait the same way for the
    /// partitions other members read (see the README's *Group mode*).
    pub idle_partition: Option<Spanned<Duration>>,
    /// Without checkpoints (a source that does not resume), how often offsets of handled records are
    /// committed. Default `5s`; they are also committed when the run ends or is stopped. With
    /// checkpoints, offsets are committed with each checkpoint (`[checkpoint] interval`).
    pub commit_interval: Option<Spanned<Duration>>,
    /// End the input once every partition has been read to its end and no record came for this long,
    /// like `"10s"`: windows then flush as at the end of a replay. Default: read until stopped.
    pub idle_timeout: Option<Spanned<Duration>>,
    /// End the input after this many records. Default: no limit.
    pub max_records: Option<Spanned<u64>>,
    /// A capture to replay instead when no broker answers at start: `"capture.jsonl"`, or
    /// `{ replay = "capture.jsonl", connect_timeout = "5s" }`.
    pub fallback: Option<Spanned<Fallback>>,
}

/// How partitions are shared; see [`KafkaConfig::mode`].
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// This process reads every partition.
    #[default]
    All,
    /// The consumer group shares the partitions among its members.
    Group,
}

/// Where reading begins; see [`KafkaConfig::start`].
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// Everything each partition holds.
    #[default]
    Earliest,
    /// Only records that arrive after the start.
    Latest,
    /// After the group's last commit, or from the beginning where it has none.
    Committed,
}

impl Start {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Start::Earliest => "earliest",
            Start::Latest => "latest",
            Start::Committed => "committed",
        }
    }
}

/// The `fallback` table; a plain string is its `replay`.
#[derive(Debug)]
pub struct Fallback {
    /// The capture (JSON Lines, as `replay` reads) to replay, relative to the pipeline file.
    pub replay: PathBuf,
    /// How long to wait at start for a broker to answer before replaying instead. Default `5s`.
    pub connect_timeout: Option<Duration>,
}

impl<'de> Deserialize<'de> for Fallback {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fallback;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a capture path, or a table like `{ replay = \"capture.jsonl\", connect_timeout = \"5s\" }`")
            }
            fn visit_str<E: de::Error>(self, path: &str) -> Result<Fallback, E> {
                Ok(Fallback {
                    replay: path.into(),
                    connect_timeout: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Fallback, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Table {
                    replay: PathBuf,
                    connect_timeout: Option<Duration>,
                }
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Fallback {
                    replay: t.replay,
                    connect_timeout: t.connect_timeout,
                })
            }
        }
        d.deserialize_any(V)
    }
}

fn default_batch_size() -> Spanned<usize> {
    Spanned::new(0..0, 1024)
}

const DEFAULT_LINGER_MS: i64 = 100;
const DEFAULT_EXCHANGE_PARTITIONS: i32 = 6;
const DEFAULT_COMMIT_INTERVAL_MS: i64 = 5_000;
const DEFAULT_CONNECT_TIMEOUT_MS: i64 = 5_000;
const DEFAULT_IDLE_PARTITION_MS: i64 = 5_000;

impl KafkaConfig {
    fn mode(&self) -> Mode {
        self.mode.as_ref().map_or(Mode::All, |m| *m.get_ref())
    }

    /// Group mode's limits for now: each process holds only its partitions' records, so a window
    /// downstream would compute partial results, and a fallback would replay everything everywhere.
    fn check_group(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        if let Some(fb) = &self.fallback {
            return Err(BuildError::new(
                Some(fb.span()),
                "`fallback` replays the whole capture in every process of the group; remove it with `mode = \"group\"`",
            ));
        }
        // Window stages downstream were given an exchange (see `crate::exchange::rewrite`) unless the
        // source reads several topics: records of two topics share partition numbers.
        if let Some(s) = ctx
            .pipeline
            .downstream(ctx.stage)
            .into_iter()
            .find(|s| s.type_name == "window")
        {
            return Err(BuildError::new(
                Some(self.topics.span()),
                format!(
                    "window stage `{}` reads this source, and in group mode a window stage's records are exchanged by source partition and offset, which needs one topic; read one topic here (a source per topic), or use `mode = \"all\"`",
                    s.name
                ),
            ));
        }
        Ok(())
    }
}

impl StageConfig for KafkaConfig {
    /// A member of a group always resumes from the group's commits.
    fn resumes(&self) -> bool {
        self.start == Start::Committed || self.mode() == Mode::Group
    }

    /// Checkpoints are a cut of one process; a group member's partitions move between processes.
    fn checkpoints(&self) -> bool {
        self.start == Start::Committed && self.mode() == Mode::All
    }

    fn group(&self) -> Option<crate::exchange::GroupSpec> {
        if self.mode() != Mode::Group || self.topics.get_ref().len() != 1 {
            return None;
        }
        let properties = self
            .properties
            .as_ref()
            .map(|t| {
                t.get_ref()
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            toml::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(crate::exchange::GroupSpec {
            brokers: self.brokers.get_ref().trim().to_string(),
            properties,
            group_id: self.group_id.get_ref().clone(),
            partitions: self
                .exchange_partitions
                .as_ref()
                .map_or(DEFAULT_EXCHANGE_PARTITIONS, |p| *p.get_ref() as i32),
            topic: self.topics.get_ref()[0].clone(),
            idle_partition: self.idle_partition.as_ref().map_or(
                StdDuration::from_millis(DEFAULT_IDLE_PARTITION_MS as u64),
                |d| StdDuration::from_millis(d.get_ref().millis().max(0) as u64),
            ),
        })
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Built, BuildError> {
        let err = |span: std::ops::Range<usize>, m: String| BuildError::new(Some(span), m);
        if self.brokers.get_ref().trim().is_empty() {
            return Err(err(
                self.brokers.span(),
                "`brokers` is empty; list them like `\"127.0.0.1:9092\"`".into(),
            ));
        }
        let topics = self.topics.get_ref();
        if topics.is_empty() || topics.iter().any(|t| t.trim().is_empty()) {
            return Err(err(
                self.topics.span(),
                "`topics` must name at least one topic, and no empty one".into(),
            ));
        }
        if self.group_id.get_ref().trim().is_empty() {
            return Err(err(
                self.group_id.span(),
                "`group_id` is empty; name the consumer group".into(),
            ));
        }
        if self.mode() == Mode::Group {
            self.check_group(ctx)?;
        }
        if let Some(p) = &self.exchange_partitions {
            if *p.get_ref() == 0 || *p.get_ref() > 1024 {
                return Err(err(
                    p.span(),
                    "`exchange_partitions` must be between 1 and 1024".into(),
                ));
            }
        }
        let mut properties = Vec::new();
        if let Some(table) = &self.properties {
            for (key, value) in table.get_ref() {
                let value = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => value.to_string(),
                    other => {
                        return Err(err(
                            table.span(),
                            format!("`properties.{key}` is {}; client properties are strings, numbers or booleans", other.type_str()),
                        ))
                    }
                };
                properties.push((key.clone(), value));
            }
            kafka::check_properties(&properties)
                .map_err(|e| err(table.span(), format!("`properties`: {e}")))?;
        }
        let batch_size = *self.batch_size.get_ref();
        if batch_size == 0 || batch_size > 1 << 20 {
            return Err(err(
                self.batch_size.span(),
                "`batch_size` must be between 1 and 1048576".into(),
            ));
        }
        let positive =
            |d: &Option<Spanned<Duration>>, name: &str, default: i64, zero_ok: bool| match d {
                Some(d) if d.get_ref().millis() > 0 || (zero_ok && d.get_ref().millis() == 0) => {
                    Ok(StdDuration::from_millis(d.get_ref().millis() as u64))
                }
                Some(d) => Err(err(d.span(), format!("`{name}` must be longer than 0"))),
                None => Ok(StdDuration::from_millis(default as u64)),
            };
        let linger = positive(&self.linger, "linger", DEFAULT_LINGER_MS, true)?;
        let idle_partition = positive(
            &self.idle_partition,
            "idle_partition",
            DEFAULT_IDLE_PARTITION_MS,
            true,
        )?;
        let commit_interval = positive(
            &self.commit_interval,
            "commit_interval",
            DEFAULT_COMMIT_INTERVAL_MS,
            false,
        )?;
        let idle_timeout = match &self.idle_timeout {
            Some(_) => Some(positive(&self.idle_timeout, "idle_timeout", 0, false)?),
            None => None,
        };
        let max_records = match &self.max_records {
            Some(m) if *m.get_ref() == 0 => {
                return Err(err(
                    m.span(),
                    "`max_records` must be at least 1; remove it to read without limit".into(),
                ))
            }
            m => m.as_ref().map(|m| *m.get_ref()),
        };
        let fallback = match &self.fallback {
            None => None,
            Some(fb) => {
                let f = fb.get_ref();
                let timeout = f
                    .connect_timeout
                    .map_or(DEFAULT_CONNECT_TIMEOUT_MS, |d| d.millis());
                if timeout <= 0 {
                    return Err(err(
                        fb.span(),
                        "`fallback.connect_timeout` must be longer than 0".into(),
                    ));
                }
                // The replay source checks the capture and does the replaying: one implementation.
                let replay = ReplayConfig {
                    path: Spanned::new(fb.span(), f.replay.clone()),
                    speed: None,
                    batch_size: Spanned::new(self.batch_size.span(), batch_size),
                    decode_threads: None,
                };
                let Built::Source(source) = replay
                    .build(ctx)
                    .map_err(|e| BuildError::new(e.span, format!("`fallback`: {}", e.message)))?
                else {
                    unreachable!("replay builds a source")
                };
                Some(FallbackSource {
                    path: f.replay.clone(),
                    timeout: StdDuration::from_millis(timeout as u64),
                    source,
                })
            }
        };
        Ok(Built::Source(Box::new(KafkaSource {
            stage: ctx.stage.to_string(),
            brokers: self.brokers.get_ref().trim().to_string(),
            topics: topics.clone(),
            group_id: self.group_id.get_ref().clone(),
            mode: self.mode(),
            start: self.start,
            properties,
            batch_size,
            linger,
            idle_partition,
            commit_interval,
            idle_timeout,
            max_records,
            fallback,
            said_metadata_too_long: AtomicBool::new(false),
        })))
    }
}
