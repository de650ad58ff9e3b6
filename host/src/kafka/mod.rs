//! Talking to Kafka through librdkafka (the `rdkafka` crate, no async runtime): client settings, error
//! reporting, topic metadata, timestamp-ordered reading, and the `produce` and `record` commands. The
//! pipeline stage built on it is `sources::kafka`.
//!
//! Security: this build links the system OpenSSL, so `security.protocol` may be `PLAINTEXT`, `SSL`,
//! `SASL_PLAINTEXT` or `SASL_SSL`, with `sasl.mechanism` `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or
//! `OAUTHBEARER` (with a static or unsecured token; no OIDC token fetching). `GSSAPI` (Kerberos) is not
//! built: it needs Cyrus SASL.

pub mod batch;
pub mod group;
pub mod interleave;
pub mod produce;
pub mod reader;
pub mod record;
mod topic;

pub use topic::TopicSender;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// What can go wrong talking to Kafka, worded for the person running the command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("client property `{key}`: {reason}")]
    Property { key: String, reason: String },
    #[error("client property `{key}` is managed by tributary ({why}); remove it")]
    Reserved { key: String, why: &'static str },
    #[error("client property `{0}` must be written `KEY=VALUE`")]
    PropertySyntax(String),
    #[error("cannot create the kafka client")]
    Client(#[source] KafkaError),
    #[error("no kafka broker answered at `{brokers}` within {timeout:?}; check the address and that a broker is running")]
    Unreachable { brokers: String, timeout: Duration },
    #[error("topic `{topic}` not found at `{brokers}`; create it, e.g. with `tributary produce --partitions N`")]
    NoTopic { topic: String, brokers: String },
    #[error("cannot create topic `{topic}`: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{}`", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{failed} of {sent} records were not delivered to topic `{topic}` (first error: {first})"
    )]
    Delivery {
        topic: String,
        failed: u64,
        sent: u64,
        first: String,
    },
    #[error("{what}")]
    Kafka { what: String, source: KafkaError },
}

/// Properties tributary sets itself, and why a user may not.
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set `brokers`"),
    ("metadata.broker.list", "set `brokers`"),
    ("group.id", "set `group_id`"),
    (
        "enable.auto.commit",
        "offsets are committed once the sinks hold the results",
    ),
    (
        "enable.auto.offset.store",
        "offsets are committed once the sinks hold the results",
    ),
    (
        "enable.partition.eof",
        "tributary needs it to know when a partition is read to its end",
    ),
];

/// Checks user properties: none reserved, every name and value known to librdkafka.
pub fn check_properties(properties: &[(String, String)]) -> Result<(), Error> {
    for (key, _) in properties {
        if let Some((_, why)) = RESERVED.iter().find(|(k, _)| k == key) {
            return Err(Error::Reserved {
                key: key.clone(),
                why,
            });
        }
    }
    let mut config = ClientConfig::new();
    for (key, value) in properties {
        config.set(key, value);
        if let Err(e) = config.create_native_config() {
            let reason = match e {
                KafkaError::ClientConfig(_, desc, _, _) => desc,
                other => other.to_string(),
            };
            return Err(Error::Property {
                key: key.clone(),
                reason: lowercase_first(&reason),
            });
        }
    }
    Ok(())
}

/// Parses `KEY=VALUE` command-line properties.
pub fn parse_properties(args: &[String]) -> Result<Vec<(String, String)>, Error> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(Error::PropertySyntax(a.clone())),
        })
        .collect()
}

/// A client config with the brokers and the user's properties. librdkafka's own log lines are dropped:
/// errors reach the [`Reporter`] instead, one line per problem.
pub fn client_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set_log_level(RDKafkaLogLevel::Emerg);
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

/// Consumer settings whose librdkafka defaults do not suit a reader that merges partitions, applied
/// unless `properties` sets them. Each partition has its own prefetch queue (see `reader`), and the
/// merge drains them unevenly: one far ahead fills its queue while another is read.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    // librdkafka 2.x waits a whole second before fetching again for a partition whose queue was full,
    // which stalled reading for most of a run; fetching again at once costs a timer check.
    ("fetch.queue.backoff.ms", "1"),
    // Per partition with partition queues (100,000 records and 64 MiB by default). Measured on a 200k
    // record, 3-partition topic: the same read time, peak RSS 37 MB instead of 101 MB.
    ("queued.min.messages", "5000"),
    ("queued.max.messages.kbytes", "4096"),
    // Messages served per call of `batch::BatchQueue::take`; the reader asks again while its buffer
    // for the partition has room.
    ("consume.callback.max.messages", "1024"),
    // A fetch request names only the partitions whose local queue has room (see above). When those
    // are all at their end, the broker holds the request for up to `fetch.wait.max.ms` (500 ms by
    // default), and a partition left out of it gets nothing until the answer: the source, which merges
    // partitions by event time, waited that long for it. Measured, 1M records from 3 partitions read to
    // a blackhole: 1.0-1.2 s with waits of 500 ms in about half the runs, 0.6-0.75 s with 50. An idle
    // consumer asks each broker up to 20 times a second instead of twice.
    ("fetch.wait.max.ms", "50"),
];

/// A consumer config: [`client_config`] plus [`CONSUMER_DEFAULTS`] where the user set nothing else.
pub fn consumer_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    with_defaults(
        client_config(brokers, properties),
        CONSUMER_DEFAULTS,
        properties,
    )
}

/// Producer settings whose librdkafka defaults slow a producer's start, applied unless `properties`
/// sets them.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    // Once the bootstrap connection has given the cluster's brokers, librdkafka connects to one of them
    // at most once per `reconnect.backoff.ms / 2` (11 ms at least): 50 ms by default, spent at every
    // start before the first record can go. A broker that stays down is still retried less and less
    // often, the backoff doubling up to `reconnect.backoff.max.ms` (10 s).
    ("reconnect.backoff.ms", "20"),
];

/// A producer config: [`client_config`] plus [`PRODUCER_DEFAULTS`] where the user set nothing else.
pub fn producer_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    with_defaults(
        client_config(brokers, properties),
        PRODUCER_DEFAULTS,
        properties,
    )
}

fn with_defaults(
    mut config: ClientConfig,
    defaults: &[(&str, &str)],
    properties: &[(String, String)],
) -> ClientConfig {
    for (key, value) in defaults {
        if !properties.iter().any(|(k, _)| k == key) {
            config.set(*key, *value);
        }
    }
    config
}

/// [`consumer_config`] for a member of group `group_id` that commits by hand where handling ended
/// (never automatically: a record is committed once its batch is done downstream), told when it
/// reaches the end of a partition (how a finished input is recognised), and starting at `reset`
/// (`earliest` or `latest`) where the group has no committed offset or it no longer exists.
pub fn member_config(
    brokers: &str,
    properties: &[(String, String)],
    group_id: &str,
    reset: &str,
) -> ClientConfig {
    let mut config = consumer_config(brokers, properties);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", reset);
    config
}

/// Reports client errors as single lines on standard error: a lost broker once per outage (librdkafka
/// retries with backoff on its own), any other error once a minute at most.
pub struct Reporter {
    label: String,
    state: Mutex<ReporterState>,
    /// Mirrors `state.down`, so [`Reporter::alive`] costs one load per record.
    down: AtomicBool,
}

#[derive(Default)]
struct ReporterState {
    quiet: bool,
    down: bool,
    last: HashMap<String, Instant>,
    /// What the latest connection that failed on TLS or SASL said (kept even while quiet), until a
    /// broker answers.
    security: Option<String>,
}

impl Reporter {
    pub fn new(label: impl Into<String>) -> Self {
        Reporter {
            label: label.into(),
            state: Mutex::default(),
            down: AtomicBool::new(false),
        }
    }

    /// While quiet, nothing is printed (a probe whose outcome the caller reports itself).
    pub fn set_quiet(&self, quiet: bool) {
        self.lock().quiet = quiet;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReporterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn error(&self, error: &KafkaError, reason: &str) {
        let text = if reason.is_empty() {
            error.to_string()
        } else {
            reason.to_string()
        };
        let mut st = self.lock();
        if is_security(&text) {
            st.security = Some(text.clone());
        }
        if is_transport(error) {
            if !st.down && !st.quiet {
                eprintln!(
                    "warning: {}: cannot reach kafka ({text}); retrying with backoff, work resumes where it stopped",
                    self.label
                );
            }
            st.down = true;
            self.down.store(true, Ordering::Relaxed);
            return;
        }
        if st.quiet {
            return;
        }
        let now = Instant::now();
        let key = error.to_string();
        if st
            .last
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(60))
        {
            return;
        }
        st.last.insert(key, now);
        eprintln!("warning: {}: kafka: {text}", self.label);
    }

    /// Something came back from a broker: if contact had been lost, say it is back.
    pub fn alive(&self) {
        if !self.down.load(Ordering::Relaxed) {
            return;
        }
        let mut st = self.lock();
        st.security = None;
        self.down.store(false, Ordering::Relaxed);
        if st.down {
            st.down = false;
            if !st.quiet {
                eprintln!("{}: reconnected to kafka", self.label);
            }
        }
    }

    /// Why connections fail, when it is the security settings rather than an absent broker: a TLS or
    /// SASL handshake that failed, or a broker that answers in another protocol. `None` otherwise.
    pub fn security_problem(&self) -> Option<String> {
        self.lock().security.clone()
    }

    /// Whether contact with the brokers is currently lost.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}

/// Whether an error text is about TLS or SASL: a broker answers, but not as configured.
fn is_security(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    [
        "ssl",
        "tls",
        "sasl",
        "handshake",
        "authentication",
        "security.protocol",
    ]
    .iter()
    .any(|w| r.contains(w))
}

/// Errors that mean "no broker is reachable right now", which librdkafka retries by itself.
fn is_transport(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::BrokerNotAvailable
        )
    )
}

/// The consumer context of the Kafka source and `record`: errors and failed commits go to a [`Reporter`];
/// a member of a group that shares the work also handles rebalances (see [`group`]).
pub struct ConsumerReporter(pub Arc<Reporter>, pub Option<Arc<group::Membership>>);

impl ConsumerReporter {
    pub fn new(reporter: Arc<Reporter>) -> Self {
        ConsumerReporter(reporter, None)
    }
}

impl ClientContext for ConsumerReporter {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}

    /// Every error event passes here first (the consumer's poll then returns it too): report it once,
    /// here. Reaching the end of a partition is news, not an error.
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            self.0.error(&error, reason);
        }
    }
}

impl ConsumerContext for ConsumerReporter {
    fn pre_rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let Some(group) = &self.1 {
            group.pre_rebalance(consumer, rebalance);
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        match result {
            Ok(()) => self.0.alive(),
            Err(e) => self.0.error(
                &e,
                &format!("committing offsets failed: {e}; retrying at the next commit"),
            ),
        }
    }
}

/// The partitions of each topic, in the order given; `None` for a topic the cluster does not have.
/// An error means no broker answered within `timeout`.
pub fn topic_partitions<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<Option<Vec<i32>>>, KafkaError> {
    let deadline = Instant::now() + timeout;
    let mut found = Vec::with_capacity(topics.len());
    for topic in topics {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let metadata = client.fetch_metadata(Some(topic), left)?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| {
                let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                ids.sort_unstable();
                ids
            });
        found.push(partitions);
    }
    Ok(found)
}

/// Asks for `topic`'s metadata until a broker learned from metadata answers (best effort, within
/// `timeout`), so that an idempotent producer gets its producer id at once.
///
/// librdkafka 2.12 asks for the id whenever a metadata answer arrives, but only of a broker that is up
/// and known by its id; the bootstrap connection, which gives the first answer, does not count. Until
/// another answer comes, the ask waits for its 500 ms retry timer, and so does every record: `produce`
/// of 1,000 records took 160-700 ms against 15 ms for `kcat -P` (librdkafka 2.0). An answer from a
/// learned broker sets the ask off at once.
pub fn hasten_producer_id<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match client.fetch_metadata(Some(topic), left) {
            Ok(m) if m.orig_broker_id() >= 0 => return,
            Ok(_) => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => return,
        }
    }
}

/// A topic the cluster could not create, and why.
#[derive(Debug)]
pub struct TopicError {
    pub topic: String,
    pub reason: String,
}

/// Creates `topics` (an admin client with the user's `properties`); for each, whether it was created
/// now (`false`: it existed already, which is not an error).
pub fn create_topics(
    brokers: &str,
    properties: &[(String, String)],
    topics: &[NewTopic<'_>],
) -> Result<Vec<bool>, TopicError> {
    let fail = |topic: &str, reason: String| TopicError {
        topic: topic.to_string(),
        reason,
    };
    let first = topics.first().map_or("", |t| t.name);
    let mut config = client_config(brokers, properties);
    config.set("log_level", "0");
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| fail(first, format!("cannot create a kafka admin client: {e}")))?;
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(30)));
    let results =
        block_on(admin.create_topics(topics, &options)).map_err(|e| fail(first, e.to_string()))?;
    if results.len() != topics.len() {
        return Err(fail(first, "the broker sent no result".into()));
    }
    results
        .into_iter()
        .map(|r| match r {
            Ok(_) => Ok(true),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => Ok(false),
            Err((topic, code)) => Err(fail(&topic, code.to_string())),
        })
        .collect()
}

/// A producer context that counts delivery failures (reported by librdkafka after the fact) and
/// sends client errors to a [`Reporter`].
pub struct Deliveries {
    reporter: Arc<Reporter>,
    failed: std::sync::atomic::AtomicU64,
    first: Mutex<Option<String>>,
}

impl Deliveries {
    pub fn new(reporter: Arc<Reporter>) -> Self {
        Deliveries {
            reporter,
            failed: Default::default(),
            first: Mutex::new(None),
        }
    }

    /// How many deliveries failed since the last call, with the first failure's reason.
    pub fn take_failures(&self) -> Option<(u64, String)> {
        let failed = self.failed.swap(0, Ordering::Relaxed);
        let first = self
            .first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        (failed > 0).then_some((failed, first))
    }
}

impl ClientContext for Deliveries {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}
    fn error(&self, error: KafkaError, reason: &str) {
        self.reporter.error(&error, reason);
    }
}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.reporter.alive(),
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// A partition by topic and number.
pub type TopicPartition = (String, i32);

/// Per partition of `all`, whether the consumer's group is done with it: committed at its end, or
/// holding no record where nothing was committed.
pub fn done_partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    all: &TopicPartitionList,
    timeout: Duration,
) -> Result<Vec<(TopicPartition, bool)>, KafkaError> {
    Ok(partition_ends(consumer, all, timeout)?
        .into_iter()
        .map(|(part, _, done)| (part, done))
        .collect())
}

/// Per partition of `all`: its end offset, if the broker gave it, and whether the consumer's group is
/// done with it (see [`done_partitions`]). The commits are asked for first, so a partition found
/// done had every record below that end handled. Asks for every end offset at once (one
/// `fetch_watermarks` per partition took half a second each here).
pub fn partition_ends<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    all: &TopicPartitionList,
    timeout: Duration,
) -> Result<Vec<(TopicPartition, Option<i64>, bool)>, KafkaError> {
    let committed = consumer.committed_offsets(all.clone(), timeout)?;
    let parts: Vec<(String, i32, Option<i64>)> = committed
        .elements()
        .iter()
        .map(|e| {
            let c = match e.offset() {
                rdkafka::Offset::Offset(n) if n >= 0 => Some(n),
                _ => None,
            };
            (e.topic().to_string(), e.partition(), c)
        })
        .collect();
    let ask = |at: rdkafka::Offset| -> Result<HashMap<(String, i32), i64>, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, p, _) in &parts {
            tpl.add_partition_offset(topic, *p, at)?;
        }
        let found = consumer.offsets_for_times(tpl, timeout)?;
        Ok(found
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                rdkafka::Offset::Offset(n) => Some(((e.topic().to_string(), e.partition()), n)),
                _ => None,
            })
            .collect())
    };
    let ends = ask(rdkafka::Offset::End)?;
    let starts = if parts.iter().any(|p| p.2.is_none()) {
        ask(rdkafka::Offset::Beginning)?
    } else {
        HashMap::new()
    };
    Ok(parts
        .into_iter()
        .map(|(topic, p, committed)| {
            let key = (topic, p);
            let end = ends.get(&key).copied();
            let done = match (end, committed) {
                (None, _) => false,
                (Some(end), Some(c)) => c >= end,
                (Some(end), None) => starts.get(&key).is_some_and(|&s| s >= end),
            };
            (key, end, done)
        })
        .collect())
}

/// Waits until every message sent is delivered (or failed), then serves the delivery reports.
///
/// `BaseProducer::flush` waits in polls of 100 ms that a delivery report does not cut short (each
/// flush of a few records took 100 ms), and its `poll` spins on the clock for the last millisecond of
/// a timeout; librdkafka's own flush, in the delivery-report-event mode the rdkafka crate uses, waits
/// on the count of messages in flight. That count keeps a delivered message until its report is
/// served here, so each wait lasts its whole timeout: 1 ms (10 ms made `produce` of 1,000 records
/// spend 30 ms in flushing).
pub fn flush<C: rdkafka::producer::ProducerContext>(
    producer: &rdkafka::producer::BaseProducer<C>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    use rdkafka::producer::Producer;
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: the client pointer is valid while `producer` lives.
        unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), 1) };
        // Delivery reports count as in flight until served: a failure (or, without
        // `delivery.report.only.error`, every record) reaches the context here.
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
    }
}

/// Runs a future to completion on this thread (the admin API returns futures; there is no runtime).
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_checked_by_librdkafka() {
        let ok = [
            ("security.protocol".to_string(), "SASL_SSL".to_string()),
            ("sasl.mechanism".into(), "PLAIN".into()),
        ];
        check_properties(&ok).unwrap();
        let unknown = [("no.such.property".to_string(), "1".to_string())];
        let e = check_properties(&unknown).unwrap_err().to_string();
        assert!(e.starts_with("client property `no.such.property`: "), "{e}");
        let reserved = [("group.id".to_string(), "g".to_string())];
        assert!(check_properties(&reserved)
            .unwrap_err()
            .to_string()
            .contains("set `group_id`"));
        assert!(
            parse_properties(&["a=b=c".into()]).unwrap() == [("a".to_string(), "b=c".to_string())]
        );
        assert!(parse_properties(&["nope".into()]).is_err());
    }

    #[test]
    fn scram_and_ssl_are_built_in() {
        let features = [
            ("security.protocol".to_string(), "SASL_SSL".to_string()),
            ("sasl.mechanism".into(), "SCRAM-SHA-512".into()),
        ];
        check_properties(&features).unwrap();
    }
}
