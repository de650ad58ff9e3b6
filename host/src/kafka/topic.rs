//! Producing to one topic through librdkafka's handle for it, shared by `produce` and the exchange.

use super::Error;
use rdkafka::bindings as rdsys;
use rdkafka::client::Client;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::IntoOpaque;
use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::time::Duration;

/// A producer whose events (delivery reports) can be served while its queue is full.
pub trait Serve {
    type Context: ProducerContext;
    fn client(&self) -> &Client<Self::Context>;
    fn serve(&self, wait: Duration);
}

impl<C: ProducerContext> Serve for BaseProducer<C> {
    type Context = C;
    fn client(&self) -> &Client<C> {
        Producer::client(self)
    }
    fn serve(&self, wait: Duration) {
        self.poll(wait);
    }
}

impl<C: ProducerContext + 'static> Serve for ThreadedProducer<C> {
    type Context = C;
    fn client(&self) -> &Client<C> {
        Producer::client(self)
    }
    fn serve(&self, wait: Duration) {
        self.poll(wait);
    }
}

/// Sends records to one topic through librdkafka's handle for it. `BaseProducer::send` names the topic
/// in each record, so each record made a `CString` of the name and librdkafka looked the topic up by
/// it under a lock.
pub struct TopicSender<'p, P: Serve> {
    producer: &'p P,
    topic: NonNull<rdsys::rd_kafka_topic_t>,
}

impl<'p, P: Serve> TopicSender<'p, P> {
    pub fn new(producer: &'p P, topic: &str) -> Result<Self, Error> {
        let fail = |source| Error::Kafka {
            what: format!("cannot open topic `{topic}` for producing"),
            source,
        };
        let name = CString::new(topic).map_err(|e| fail(e.into()))?;
        // SAFETY: the client pointer is valid while `producer` lives, and the handle does not outlive
        // it (`Drop` below); a null config takes the producer's topic defaults.
        let handle = unsafe {
            rdsys::rd_kafka_topic_new(
                producer.client().native_ptr(),
                name.as_ptr(),
                std::ptr::null_mut(),
            )
        };
        let Some(topic) = NonNull::new(handle) else {
            // SAFETY: reads librdkafka's thread-local last error, set by the failed call above.
            let code = unsafe { rdsys::rd_kafka_last_error() };
            return Err(fail(KafkaError::MessageProduction(code.into())));
        };
        Ok(TopicSender { producer, topic })
    }

    /// Queues a copy of one record (a `None` value is a null one); while librdkafka's queue is full,
    /// serves delivery reports for up to `wait` at a time, which frees room in it, and tries again.
    pub fn send_waiting(
        &self,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        wait: Duration,
    ) -> Result<(), KafkaError> {
        self.send_raw(partition, key, value, timestamp, std::ptr::null_mut(), wait)
    }

    /// [`TopicSender::send_waiting`] with a value the context's delivery report gets back.
    pub fn send_waiting_with(
        &self,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        opaque: <P::Context as ProducerContext>::DeliveryOpaque,
        wait: Duration,
    ) -> Result<(), KafkaError> {
        let ptr = opaque.into_ptr();
        let sent = self.send_raw(partition, key, value, timestamp, ptr, wait);
        if sent.is_err() {
            // SAFETY: librdkafka took no record, so it keeps no pointer: the value is ours again.
            drop(unsafe { <P::Context as ProducerContext>::DeliveryOpaque::from_ptr(ptr) });
        }
        sent
    }

    fn send_raw(
        &self,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        opaque: *mut c_void,
        wait: Duration,
    ) -> Result<(), KafkaError> {
        loop {
            match self.send(partition, key, value, timestamp, opaque) {
                RDKafkaErrorCode::NoError => return Ok(()),
                RDKafkaErrorCode::QueueFull => self.producer.serve(wait),
                e => return Err(KafkaError::MessageProduction(e)),
            }
        }
    }

    /// Queues a copy of one record, as `BaseProducer::send` does (no headers).
    fn send(
        &self,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        opaque: *mut c_void,
    ) -> RDKafkaErrorCode {
        use rdsys::rd_kafka_vtype_t::*;
        let parts = |b: Option<&[u8]>| b.map_or((std::ptr::null(), 0), |b| (b.as_ptr(), b.len()));
        let ((key_ptr, key_len), (value_ptr, value_len)) = (parts(key), parts(value));
        // SAFETY: every argument has the type librdkafka reads for its tag (`rd_kafka_producev`'s
        // contract); the key and value are copied (`F_COPY`) before the call returns, and a null
        // pointer with length 0 is a null key or value.
        let err = unsafe {
            rdsys::rd_kafka_producev(
                self.producer.client().native_ptr(),
                RD_KAFKA_VTYPE_RKT,
                self.topic.as_ptr(),
                RD_KAFKA_VTYPE_PARTITION,
                partition,
                RD_KAFKA_VTYPE_MSGFLAGS,
                rdsys::RD_KAFKA_MSG_F_COPY as std::ffi::c_int,
                RD_KAFKA_VTYPE_VALUE,
                value_ptr as *mut std::ffi::c_void,
                value_len,
                RD_KAFKA_VTYPE_KEY,
                key_ptr as *mut std::ffi::c_void,
                key_len,
                RD_KAFKA_VTYPE_TIMESTAMP,
                timestamp,
                RD_KAFKA_VTYPE_OPAQUE,
                opaque,
                RD_KAFKA_VTYPE_END,
            )
        };
        err.into()
    }
}

impl<P: Serve> Drop for TopicSender<'_, P> {
    fn drop(&mut self) {
        // SAFETY: made by `rd_kafka_topic_new` and destroyed once; records queued through it keep
        // their own reference to the topic.
        unsafe { rdsys::rd_kafka_topic_destroy(self.topic.as_ptr()) };
    }
}
