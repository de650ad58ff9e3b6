//! Taking a partition's records many at a time.
//!
//! The rdkafka crate serves one message per `poll`, and each call reads the clock twice (its own
//! deadline and librdkafka's poll-interval bookkeeping); on this kind of VM a clock read is costly, and
//! `perf` put those reads at a fifth of the reading thread. `rd_kafka_consume_callback_queue` serves
//! what waits in a partition's queue in one call and one clock read, at most
//! `consume.callback.max.messages` (see [`super::CONSUMER_DEFAULTS`]) a call.
//!
//! Not `rd_kafka_consume_batch_queue`: librdkafka 2.12 moves a partition's application position past
//! an end-of-partition event it returns that way (to the end offset + 1), and a rebalance pauses and
//! resumes partitions from that position, so the record at the end offset, produced after the event,
//! was skipped (seen as one lost record in a group test). The callback API moves the position for
//! records only, as `poll` does.

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use std::ffi::{c_void, CStr};
use std::ptr::NonNull;

/// What a partition's queue held, one message at a time.
pub enum Taken<'a> {
    Record {
        offset: i64,
        timestamp: Option<i64>,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
    },
    /// The partition is read to its end (`enable.partition.eof`).
    End,
    /// A consume error for the partition; the client's context reports errors as they happen.
    Error,
}

/// A handle on one partition's queue: a second reference to the queue that the crate's
/// `split_partition_queue` took from the consumer's (that handle keeps the queue split off and holds
/// its wake-up callback; this one reads). Dropping it only drops the reference.
pub struct BatchQueue(NonNull<rd::rd_kafka_queue_t>);

// librdkafka's queues are locked inside; the handle is a counted reference.
unsafe impl Send for BatchQueue {}

impl BatchQueue {
    /// The queue of `partition` of `topic`, or `None` if librdkafka has none.
    pub fn new<C: ClientContext>(client: &Client<C>, topic: &CStr, partition: i32) -> Option<Self> {
        // SAFETY: the client pointer is live for the call; librdkafka returns a new reference (or
        // NULL), released in `drop`.
        let q = unsafe {
            rd::rd_kafka_queue_get_partition(client.native_ptr(), topic.as_ptr(), partition)
        };
        NonNull::new(q).map(BatchQueue)
    }

    /// Serves what waits in the queue, without waiting, handing each message to `f` in queue order.
    /// Returns how many messages it served.
    pub fn take(&mut self, mut f: impl FnMut(Taken<'_>)) -> usize {
        let mut f: &mut dyn FnMut(Taken<'_>) = &mut f;
        // SAFETY: `opaque` points to `f`, which outlives the call; librdkafka calls `serve` on this
        // thread only, during the call.
        let n = unsafe {
            rd::rd_kafka_consume_callback_queue(
                self.0.as_ptr(),
                0,
                Some(serve),
                (&mut f as *mut &mut dyn FnMut(Taken<'_>)).cast::<c_void>(),
            )
        };
        usize::try_from(n).unwrap_or(0)
    }
}

/// One message, for the closure `opaque` points to. librdkafka destroys the message after.
unsafe extern "C" fn serve(m: *mut rd::rd_kafka_message_t, opaque: *mut c_void) {
    // SAFETY: see `take`: `opaque` is the closure, `m` a valid message for the call.
    let (f, msg) = unsafe { (&mut *opaque.cast::<&mut dyn FnMut(Taken<'_>)>(), &*m) };
    let taken = match msg.err {
        rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {
            let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
            // SAFETY: a valid message; `kind` is written.
            let ts = unsafe { rd::rd_kafka_message_timestamp(m, &mut kind) };
            let available = kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
            // SAFETY: key and payload are null or hold their lengths in bytes while `m` lives.
            let (key, value) = unsafe {
                (
                    bytes(msg.key.cast(), msg.key_len),
                    bytes(msg.payload.cast(), msg.len),
                )
            };
            Taken::Record {
                offset: msg.offset,
                timestamp: available.then_some(ts),
                key,
                value,
            }
        }
        rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => Taken::End,
        _ => Taken::Error,
    };
    f(taken);
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        // SAFETY: the reference from `new`, released once.
        unsafe { rd::rd_kafka_queue_destroy(self.0.as_ptr()) }
    }
}

/// A message's key or payload: `None` for a null pointer (no key, a tombstone), as the crate's
/// `Message::key`/`payload` have it.
///
/// # Safety
/// `ptr` must be null or point to `len` readable bytes for the returned lifetime.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr, len) })
}
