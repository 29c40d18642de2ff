//! What a producer reports about itself ([`crate::Producer::metrics`]):
//! buffer use, requests in flight, retries. Counters are updated by the
//! sender task with relaxed atomics and read without a lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A snapshot of a producer's state, from [`crate::Producer::metrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerMetrics {
    /// Bytes of `buffer_memory` held by records accepted and not yet
    /// reported on (and by sends reserving room right now).
    pub buffer_used_bytes: usize,
    /// `buffer_memory`: the bound on `buffer_used_bytes`.
    pub buffer_memory_bytes: usize,
    /// Produce requests sent and not yet answered, over every broker.
    pub in_flight_requests: usize,
    /// Batches sent again after a retriable error, since the producer
    /// started.
    pub retries: u64,
    /// Batches that failed for good (rejected, retries or delivery
    /// timeout used up), since the producer started.
    pub batches_failed: u64,
}

/// The counters behind [`ProducerMetrics`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub in_flight_requests: AtomicUsize,
    pub retries: AtomicU64,
    pub batches_failed: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
