//! librdkafka's batch consume call, `rd_kafka_consume_batch_queue`, which
//! rust-rdkafka does not wrap. `BaseConsumer::poll` costs, per message, a
//! queue poll that turns the message into an event, an `Arc` around that
//! event and a timeout computation; at a few hundred nanoseconds a message
//! that is most of what a 100-byte consumer spends, so loadgen measured the
//! wrapper rather than the broker. One batch call hands out up to
//! `batch_max` messages already parsed by librdkafka's broker threads, as
//! kcat and `rdkafka_performance -B` do.

use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaErrorCode;

/// The consumer queue of a `BaseConsumer` (with a `group.id`, every fetched
/// message and consumer error lands there), read a batch at a time.
pub struct BatchQueue<'a, C: ConsumerContext> {
    /// Keeps the client, which owns the queue, alive while the queue is used.
    _consumer: &'a BaseConsumer<C>,
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// Room for one batch of message pointers, filled by librdkafka.
    messages: Vec<*mut rdsys::rd_kafka_message_t>,
}

impl<'a, C: ConsumerContext> BatchQueue<'a, C> {
    /// The consumer queue of `consumer`, which must have a `group.id` (without
    /// one, messages go to per-partition queues this does not read).
    pub fn new(consumer: &'a BaseConsumer<C>, batch_max: usize) -> Option<Self> {
        assert!(batch_max > 0, "a batch holds at least one message");
        // SAFETY: the client pointer is valid while `consumer` lives; the
        // returned queue holds its own reference, released in `drop`.
        let queue = unsafe { rdsys::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        Some(BatchQueue {
            _consumer: consumer,
            queue: NonNull::new(queue)?,
            messages: vec![std::ptr::null_mut(); batch_max],
        })
    }

    /// Waits up to `timeout` for messages and hands each of the batch to
    /// `each`: its payload, or the consumer error it carries. Returns how
    /// many were handed out.
    ///
    /// librdkafka's batch call waits for a full batch (or the timeout), which
    /// would add up to `timeout` to every message's latency at low rates. So
    /// the batch takes what is already queued; only when nothing is, it
    /// waits for the first message, then takes what came with it.
    pub fn consume(
        &mut self,
        timeout: Duration,
        mut each: impl FnMut(Result<&[u8], RDKafkaErrorCode>),
    ) -> usize {
        let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let mut got = self.fill(0, self.messages.len(), 0);
        if got == 0 {
            got = self.fill(0, 1, timeout_ms);
            if got > 0 {
                got += self.fill(got, self.messages.len(), 0);
            }
        }
        for &message in &self.messages[..got] {
            // SAFETY: `fill` stored `got` valid messages; each is read, then
            // destroyed exactly once, and no reference to it outlives `each`.
            unsafe {
                let m = &*message;
                if m.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    let payload = if m.payload.is_null() {
                        &[][..]
                    } else {
                        std::slice::from_raw_parts(m.payload as *const u8, m.len)
                    };
                    each(Ok(payload));
                } else {
                    each(Err(RDKafkaErrorCode::from(m.err)));
                }
                rdsys::rd_kafka_message_destroy(message);
            }
        }
        got
    }

    /// Lets librdkafka store up to `end - from` messages from index `from`,
    /// waiting up to `timeout_ms` for them; returns how many it stored.
    fn fill(&mut self, from: usize, end: usize, timeout_ms: i32) -> usize {
        assert!(
            from < end && end <= self.messages.len(),
            "{from}..{end} is not a slot range"
        );
        let room = &mut self.messages[from..end];
        // SAFETY: `room` has space for `room.len()` pointers, which librdkafka
        // fills with messages we own until `consume` destroys them.
        let got = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout_ms,
                room.as_mut_ptr(),
                room.len(),
            )
        };
        // -1 is an invalid-argument error; with a valid queue it does not happen.
        usize::try_from(got).unwrap_or(0).min(room.len())
    }
}

impl<C: ConsumerContext> Drop for BatchQueue<'_, C> {
    fn drop(&mut self) {
        // SAFETY: the reference taken in `new`, released once; the client is
        // still alive (`_consumer` borrows it).
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) }
    }
}
