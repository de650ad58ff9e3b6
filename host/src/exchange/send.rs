//! `W.exchange`: writes the records a window stage reads to its exchange topic, by key (see
//! [`super`]). A batch is written, then flushed, before `write` returns: its source offsets are
//! committed only once its records are in the topic.

use super::{partition_of, Exchange, Tag};
use crate::kafka::{self, Deliveries, Reporter, TopicSender};
use crate::record::Batch;
use crate::sinks::file::write_jsonl;
use crate::topology::{BuildContext, BuildError, Built, Output, Sink, StageConfig, StageError};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a batch may take to reach the exchange topic before the run stops with an error (its
/// offsets stay uncommitted, so a restart sends it again).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long to serve delivery reports while librdkafka's queue is full, before trying again.
const WAIT: Duration = Duration::from_millis(10);

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
    producer: Option<BaseProducer<Deliveries>>,
}

impl Send {
    fn label(&self) -> String {
        format!("stage `{}.exchange`", self.exchange.stage)
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
            // Each batch is flushed before `write` returns: waiting to fill a request only adds to that.
            .set("linger.ms", "0")
            // A delivery report per record is an event to serve per record; failures are what counts.
            .set("delivery.report.only.error", "true")
            .set("allow.auto.create.topics", "false");
        let context = Deliveries::new(Arc::new(Reporter::new(self.label())));
        let producer: BaseProducer<Deliveries> =
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

    fn write(&mut self, batch: &Batch, _: &mut Output) -> Result<(), StageError> {
        if batch.len == 0 {
            return Ok(());
        }
        let producer = self.producer.as_ref().expect("opened");
        let topic = self.exchange.topic();
        let n = self.exchange.spec.partitions;
        let mut lines = Vec::with_capacity(batch.len * 128);
        write_jsonl(batch, &mut lines);
        // Per source partition, the last offset and event time sent: the markers.
        let mut last: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
        let mut index = 0u32;
        let fail = |e: KafkaError| {
            StageError::with(format!("cannot write to the exchange topic `{topic}`"), e)
        };
        // Opened per batch (a lookup of the producer's topic): it borrows the producer.
        let sender =
            TopicSender::new(producer, &topic).map_err(|e| StageError::with(self.label(), e))?;
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
            let tag = Tag::Record {
                partition: origin.partition,
                offset: origin.offset,
                index,
            };
            let ts = batch.time[row];
            let tag = tag.encode();
            sender
                .send_waiting(
                    partition_of(&key, n),
                    Some(tag.as_bytes()),
                    Some(line),
                    ts,
                    WAIT,
                )
                .map_err(fail)?;
            let e = last.entry(origin.partition).or_insert((origin.offset, ts));
            *e = (e.0.max(origin.offset), ts);
        }
        for (&partition, &(offset, ts)) in &last {
            let tag = Tag::Marker { partition, offset }.encode();
            for r in 0..n {
                sender
                    .send_waiting(r, Some(tag.as_bytes()), None, ts, WAIT)
                    .map_err(fail)?;
            }
        }
        kafka::flush(producer, FLUSH_TIMEOUT).map_err(fail)?;
        if let Some((failed, first)) = producer.context().take_failures() {
            return Err(StageError::msg(format!(
                "{failed} records were not delivered to the exchange topic `{topic}` ({first}); their offsets stay uncommitted, so a restart sends them again"
            )));
        }
        Ok(())
    }

    fn finish(&mut self, _: &mut Output) -> Result<(), StageError> {
        if let Some(p) = &self.producer {
            kafka::flush(p, FLUSH_TIMEOUT).map_err(|e| {
                StageError::with(
                    format!(
                        "cannot write to the exchange topic `{}`",
                        self.exchange.topic()
                    ),
                    e,
                )
            })?;
        }
        self.exchange.finish_input();
        Ok(())
    }
}
