//! `W.exchange`: writes the records a window stage reads to its exchange topic, by key (see
//! [`super`]). A batch's source offsets are committed only once its records are in the topic: the
//! batch's acks (see `record::Ack`) are held until the delivery report of its last message.
//!
//! Waiting for each batch before taking the next (a flush per `write`) cost a round trip to the broker
//! per batch: measured on 1M records from 6 partitions through the default shape's two window stages,
//! one process in group mode, 3 alternated runs, 5.1 s instead of 3.3 s (4.8 and 3.6 s of CPU).

use super::{bundle, partition_of, Exchange, Tag};
use crate::kafka::{self, Reporter, TopicSender};
use crate::record::{Ack, Batch};
use crate::sinks::file::write_jsonl;
use crate::topology::{
    BuildContext, BuildError, Built, Output, Sink, StageConfig, StageError, StopFlag,
};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a batch may take to reach the exchange topic before the run stops with an error (its
/// offsets stay uncommitted, so a restart sends it again).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long to serve delivery reports while librdkafka's queue is full, before trying again.
const WAIT: Duration = Duration::from_millis(10);

/// Batches on their way at once; `write` waits for the oldest beyond that, which bounds the memory
/// librdkafka's queue holds when the brokers are slower than the input.
const MAX_IN_FLIGHT: usize = 16;

#[derive(Debug)]
pub struct SendConfig {
    pub exchange: Arc<Exchange>,
}

impl StageConfig for SendConfig {
    fn build(&self, _: &BuildContext<'_>) -> Result<Built, BuildError> {
        Ok(Built::Sink(Box::new(Send {
            exchange: self.exchange.clone(),
            producer: None,
        })))
    }
}

struct Send {
    exchange: Arc<Exchange>,
    producer: Option<ThreadedProducer<Batches>>,
}

impl Send {
    fn label(&self) -> String {
        format!("stage `{}.exchange`", self.exchange.stage)
    }

    /// Waits until at most `most` batches are on their way, or a delivery failed, then reports the
    /// failure, if any.
    fn wait(&self, most: usize) -> Result<(), StageError> {
        let producer = self.producer.as_ref().expect("opened");
        let topic = self.exchange.topic();
        if !producer.context().wait(most, FLUSH_TIMEOUT) {
            return Err(StageError::msg(format!(
                "records were not delivered to the exchange topic `{topic}` within {}s; their offsets stay uncommitted, so a restart sends them again",
                FLUSH_TIMEOUT.as_secs()
            )));
        }
        if let Some((failed, first)) = producer.context().failures() {
            // The run stops: what is still queued or on its way would only fail in its turn, up to
            // `message.timeout.ms` after it was queued, and the failure is reported once it has.
            producer.purge(PurgeConfig::default().queue().inflight());
            return Err(StageError::msg(format!(
                "{failed} records were not delivered to the exchange topic `{topic}` ({first}); their offsets stay uncommitted, so a restart sends them again"
            )));
        }
        Ok(())
    }
}

/// A batch on its way to the exchange topic: its acks, held until its last message is delivered.
struct InFlight {
    /// Messages not yet reported delivered, plus one while `write` still sends.
    left: AtomicUsize,
    acks: Mutex<Vec<Ack>>,
    /// The run's: a failed batch stops it.
    stop: StopFlag,
}

impl InFlight {
    /// One message (or the sending itself) is done; after the last, the batch is.
    fn done_one(&self, context: &Batches) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            drop(std::mem::take(
                &mut *self.acks.lock().unwrap_or_else(|p| p.into_inner()),
            ));
            let mut n = context.batches.lock().unwrap_or_else(|p| p.into_inner());
            *n -= 1;
            context.changed.notify_all();
        }
    }

    /// The batch will never count as done: the run stops before its acks go, so that they count as
    /// abandoned (uncommitted: a restart reads the batch again) and nothing waits for them. (Held
    /// forever instead, they kept a rebalance waiting for a commit that could not come.)
    fn fail(&self) {
        self.stop.stop();
        drop(std::mem::take(
            &mut *self.acks.lock().unwrap_or_else(|p| p.into_inner()),
        ));
    }
}

/// The exchange producer's context: releases batches as their messages are delivered, and remembers
/// failures for the stage to report.
struct Batches {
    reporter: Arc<Reporter>,
    /// Batches on their way.
    batches: Mutex<usize>,
    changed: Condvar,
    failed: Mutex<Option<(u64, String)>>,
}

impl Batches {
    /// Waits until at most `most` batches are on their way or a delivery failed (which ends the run:
    /// nothing after it needs waiting for); false if neither came within `timeout`.
    fn wait(&self, most: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut n = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        // A failure notifies `changed` too (`failed`).
        while *n > most && self.failures().is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = self
                .changed
                .wait_timeout(n, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// A message of `batch` was not delivered.
    fn failed(&self, batch: &InFlight, error: &KafkaError) {
        // Before `done_one`, so that the batch's acks never count as done.
        batch.fail();
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        let (n, _) = failed.get_or_insert_with(|| (0, error.to_string()));
        *n += 1;
        drop(failed);
        // Ends `wait` at once, not when the batch's last message is reported. Under its lock, so
        // that a `wait` between its check and its sleep cannot miss it.
        let _batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        self.changed.notify_all();
    }

    fn failures(&self) -> Option<(u64, String)> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ClientContext for Batches {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}
    fn error(&self, error: KafkaError, reason: &str) {
        self.reporter.error(&error, reason);
    }
}

impl ProducerContext for Batches {
    type DeliveryOpaque = Arc<InFlight>;
    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<InFlight>) {
        match result {
            Ok(_) => self.reporter.alive(),
            Err((e, _)) => self.failed(&batch, e),
        }
        batch.done_one(self);
    }
}

impl Sink for Send {
    fn open(&mut self) -> Result<(), StageError> {
        let spec = &self.exchange.spec;
        let topic = self.exchange.topic();
        super::receive::create_topics(&self.exchange).map_err(StageError::msg)?;
        let mut config = kafka::producer_config(&spec.brokers, &spec.properties);
        // Idempotence keeps each partition in send order through retries: markers stay behind the
        // records they speak for.
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // A batch is on its way at once: waiting to fill a request only holds its acks longer.
            .set("linger.ms", "0")
            .set("allow.auto.create.topics", "false");
        let context = Batches {
            reporter: Arc::new(Reporter::new(self.label())),
            batches: Mutex::new(0),
            changed: Condvar::new(),
            failed: Mutex::new(None),
        };
        let producer: ThreadedProducer<Batches> =
            config.create_with_context(context).map_err(|e| {
                StageError::with(
                    format!("cannot create the producer for the exchange topic `{topic}`"),
                    e,
                )
            })?;
        // Records queued before the producer has its id wait for it (see the function).
        kafka::hasten_producer_id(producer.client(), &topic, Duration::from_secs(1));
        self.producer = Some(producer);
        Ok(())
    }

    fn write(&mut self, batch: &Batch, out: &mut Output) -> Result<(), StageError> {
        if batch.len == 0 {
            return Ok(());
        }
        self.wait(MAX_IN_FLIGHT - 1)?;
        let producer = self.producer.as_ref().expect("opened");
        let topic = self.exchange.topic();
        let n = self.exchange.spec.partitions;
        let mut lines = Vec::with_capacity(batch.len * 128);
        write_jsonl(batch, &mut lines);
        // Per source partition, the last offset and event time sent: the markers.
        let mut last: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
        let mut index = 0u32;
        // Opened per batch (a lookup of the producer's topic): it borrows the producer.
        let sender =
            TopicSender::new(producer, &topic).map_err(|e| StageError::with(self.label(), e))?;
        let flight = Arc::new(InFlight {
            left: AtomicUsize::new(1),
            acks: Mutex::new(batch.acks.clone()),
            stop: out.stop_flag(),
        });
        *producer
            .context()
            .batches
            .lock()
            .unwrap_or_else(|p| p.into_inner()) += 1;
        let send = |r: i32, tag: Tag, value: Option<&[u8]>, ts: i64| {
            flight.left.fetch_add(1, Ordering::AcqRel);
            let tag = tag.encode();
            sender
                .send_waiting_with(r, Some(tag.as_bytes()), value, ts, flight.clone(), WAIT)
                .map_err(|e| {
                    // Not sent: the batch never counts as done, and the run stops.
                    flight.fail();
                    StageError::with(format!("cannot write to the exchange topic `{topic}`"), e)
                })
        };
        // Per (exchange partition, source partition): the bundle being filled, and the event time of
        // its last record (the message's timestamp).
        let mut bundles: BTreeMap<(i32, i32), (Vec<u8>, i64)> = BTreeMap::new();
        for (row, line) in lines
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let origin = batch.origin[row];
            // Rows a transform made of one record share its origin; the index tells them apart.
            index = match row {
                0 => 0,
                _ if batch.origin[row - 1] == origin => index + 1,
                _ => 0,
            };
            let key = match &self.exchange.key {
                Some(k) => batch.value(k, row),
                None => crate::record::Value::Null,
            };
            let ts = batch.time[row];
            let r = partition_of(&key, n);
            let p = origin.partition;
            let (bundle, last_ts) = bundles
                .entry((r, p))
                .or_insert_with(|| (Vec::with_capacity(4096), ts));
            if !bundle.is_empty() && bundle.len() + line.len() > bundle::MAX_BYTES {
                send(r, Tag::Bundle { partition: p }, Some(bundle), *last_ts)?;
                bundle.clear();
            }
            bundle::push(bundle, origin.offset, index, ts, line);
            *last_ts = ts;
            let e = last.entry(p).or_insert((origin.offset, ts));
            *e = (e.0.max(origin.offset), ts);
        }
        for (&(r, p), (bundle, ts)) in &bundles {
            send(r, Tag::Bundle { partition: p }, Some(bundle), *ts)?;
        }
        for (&partition, &(offset, ts)) in &last {
            for r in 0..n {
                send(r, Tag::Marker { partition, offset }, None, ts)?;
            }
        }
        flight.done_one(producer.context());
        Ok(())
    }

    fn checkpoint(&mut self, _: &mut Output) -> Result<Option<serde_json::Value>, StageError> {
        self.wait(0)?;
        Ok(None)
    }

    fn finish(&mut self, _: &mut Output) -> Result<(), StageError> {
        if self.producer.is_some() {
            self.wait(0)?;
        }
        self.exchange.finish_input();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;
    use std::sync::atomic::AtomicBool;

    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn batches() -> Batches {
        Batches {
            reporter: Arc::new(Reporter::new("stage `w.exchange`".to_string())),
            batches: Mutex::new(1),
            changed: Condvar::new(),
            failed: Mutex::new(None),
        }
    }

    /// A batch of two messages, while `write` still sends; and whether its ack was let go.
    fn in_flight() -> (Arc<InFlight>, Arc<AtomicBool>) {
        let released = Arc::new(AtomicBool::new(false));
        let flight = Arc::new(InFlight {
            left: AtomicUsize::new(3),
            acks: Mutex::new(vec![Ack::new(Flag(released.clone()))]),
            stop: StopFlag::default(),
        });
        (flight, released)
    }

    #[test]
    fn a_batch_is_done_once_its_last_message_is_delivered_and_sending_ended() {
        let context = batches();
        let (flight, released) = in_flight();
        flight.done_one(&context);
        flight.done_one(&context);
        assert!(!released.load(Ordering::SeqCst), "write still sends");
        assert!(!context.wait(0, Duration::from_millis(10)));
        flight.done_one(&context);
        assert!(released.load(Ordering::SeqCst));
        assert!(context.wait(0, Duration::ZERO));
    }

    #[test]
    fn a_failed_batch_stops_the_run_before_its_acks_go() {
        let context = batches();
        let (flight, released) = in_flight();
        assert!(!flight.stop.is_stopped());
        flight.fail();
        // Dropped while the run is stopped, the source counts them abandoned, not done.
        assert!(flight.stop.is_stopped() && released.load(Ordering::SeqCst));
        for _ in 0..3 {
            flight.done_one(&context);
        }
        // It no longer holds `write` up: the failure is what the stage reports.
        assert!(context.wait(0, Duration::ZERO));
    }

    #[test]
    fn a_failed_delivery_ends_the_wait_for_the_batches_still_on_their_way() {
        let context = Arc::new(batches());
        *context.batches.lock().unwrap() = 3;
        assert!(!context.wait(0, Duration::from_millis(10)));
        let (flight, _) = in_flight();
        let reporter = {
            let context = context.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
                context.failed(&flight, &timed_out);
            })
        };
        // Three batches still count as on their way (each of the others' messages would fail in its
        // turn): the wait ends with the first failure, not after up to `message.timeout.ms`.
        assert!(context.wait(0, Duration::from_secs(10)));
        assert_eq!(*context.batches.lock().unwrap(), 3);
        assert!(context.failures().is_some_and(|(n, _)| n == 1));
        reporter.join().unwrap();
    }
}
