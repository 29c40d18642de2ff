//! The producer: [`Producer::send`] puts a record in its partition's batch
//! and returns a [`DeliveryFuture`]; a background sender task sends batches
//! to partition leaders and resolves the futures.
//!
//! - [`config`]: [`ProducerConfig`] and [`Acks`].
//! - [`record`]: [`ProducerRecord`], [`RecordMetadata`], [`DeliveryFuture`].
//! - [`partitioner`]: murmur2 (Java-compatible) and sticky partitioning.
//! - `accumulator`, `batch`: per-partition batch queues and batch encoding.
//! - `sender`: requests, responses, retries, ordering.
//! - [`idempotence`]: producer id, epoch, sequence decisions.

pub mod config;
pub mod idempotence;
pub mod partitioner;
pub mod record;

mod accumulator;
mod batch;
mod metrics;
mod sender;
mod supervisor;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use protocol::batch::Record;
use protocol::ErrorCode;
use tokio::sync::{watch, Notify, Semaphore, TryAcquireError};

use crate::backoff::Backoff;
use crate::cluster::{Cluster, ClusterConfig};
use crate::connection::ConnectionConfig;
use crate::error::{ConnectError, ProduceError, SendError};

pub use config::{Acks, ProducerConfig};
pub use idempotence::ProducerIdentity;
pub use metrics::ProducerMetrics;
pub use record::{DeliveryFuture, ProducerRecord, RecordMetadata};
pub use sender::{IN_FLIGHT_BATCHES_PER_PARTITION_IDEMPOTENT, PRODUCE_VERSIONS};

use accumulator::Accumulator;
pub use batch::DeliveryCallback;
use batch::{Delivery, Report};
use sender::{Sender, Shared};

/// A Kafka producer. Cheap to clone; clones share one sender task, buffer and
/// set of connections. When the last clone is dropped, the sender still sends
/// everything already accepted (each record's future resolves), then stops.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    /// Dropped with the last producer clone, which tells the sender to
    /// finish what is queued and stop.
    _alive: watch::Sender<()>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field(
                "bootstrap_servers",
                &self.handle.shared.config.bootstrap_servers,
            )
            .field("identity", &self.identity())
            .finish()
    }
}

impl Producer {
    /// Reaches the cluster, sets up idempotence (InitProducerId) when enabled
    /// and the broker supports it, and starts the sender task.
    pub async fn connect(config: ProducerConfig) -> Result<Producer, ConnectError> {
        config.validate()?;
        let cluster = Arc::new(
            Cluster::connect(ClusterConfig {
                bootstrap_servers: config.bootstrap_servers.clone(),
                connection: ConnectionConfig {
                    client_id: config.client_id.clone(),
                    connect_timeout: config.connect_timeout,
                    request_timeout: config.request_timeout,
                    frame_bytes_max: protocol::frame::FRAME_BYTES_MAX_DEFAULT,
                    // The sender keeps at most this many produce requests per
                    // broker in flight; metadata requests need a little room beside them.
                    in_flight_requests_max: config.max_in_flight_requests_per_connection + 2,
                },
                allow_auto_topic_creation: true,
            })
            .await?,
        );
        let identity = if config.enable_idempotence {
            initial_identity(&cluster, &config).await?
        } else {
            None
        };
        let accumulator = Accumulator::new(config.batch_size);
        let shared = Arc::new(Shared {
            exit: accumulator.exit.clone(),
            accumulator: Mutex::new(accumulator),
            memory: Arc::new(Semaphore::new(config.buffer_memory)),
            wake_sender: Notify::new(),
            batch_completed: Notify::new(),
            identity: Mutex::new(identity),
            injected_panic: Mutex::new(None),
            counters: metrics::Counters::default(),
            cluster,
            config,
        });
        let (alive, producer_gone) = watch::channel(());
        let sender = Sender::new(shared.clone(), identity).run(producer_gone);
        tokio::spawn(supervisor::supervise(shared.clone(), sender));
        Ok(Producer {
            handle: Arc::new(Handle {
                shared,
                _alive: alive,
            }),
        })
    }

    /// The producer id and epoch in use, or `None` when the producer is not
    /// idempotent (switched off, or the broker lacks InitProducerId).
    pub fn identity(&self) -> Option<ProducerIdentity> {
        *self
            .handle
            .shared
            .identity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The producer's settings.
    pub fn config(&self) -> &ProducerConfig {
        &self.handle.shared.config
    }

    /// Buffer use, requests in flight and retries, as of now.
    pub fn metrics(&self) -> ProducerMetrics {
        let shared = &self.handle.shared;
        let buffer_memory_bytes = shared.config.buffer_memory;
        let available = shared.memory.available_permits().min(buffer_memory_bytes);
        ProducerMetrics {
            buffer_used_bytes: buffer_memory_bytes - available,
            buffer_memory_bytes,
            in_flight_requests: shared
                .counters
                .in_flight_requests
                .load(std::sync::atomic::Ordering::Relaxed),
            retries: metrics::Counters::read(&shared.counters.retries),
            batches_failed: metrics::Counters::read(&shared.counters.batches_failed),
        }
    }

    /// Test support, not for applications: makes the sender task panic
    /// with `message`, to check what its death does to the producer.
    #[doc(hidden)]
    pub fn inject_sender_panic(&self, message: &str) {
        let shared = &self.handle.shared;
        *shared.injected_panic.lock().expect("injected panic lock") = Some(message.to_string());
        shared.wake_sender.notify_one();
    }

    /// `SendError::SenderStopped` once the sender task died.
    fn check_sender(&self) -> Result<(), SendError> {
        match self.handle.shared.exit.reason() {
            Some(reason) => Err(SendError::SenderStopped { reason }),
            None => Ok(()),
        }
    }

    /// Queues `record` for sending and returns the future of its delivery
    /// report. Waits (at most `max_block`) for the topic's metadata and for
    /// room in `buffer_memory`; a record refused here was not queued.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, SendError> {
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let (delivery, receiver) = Delivery::channel(timestamp);
        self.enqueue(record, delivery).await?;
        Ok(DeliveryFuture { receiver })
    }

    /// Like [`send`](Self::send), but the delivery report goes to `callback`
    /// instead of a future: the cheaper way to send many records. The
    /// callback runs exactly once, on the producer's sender task (keep it
    /// short); a record refused here was not queued and its callback never runs.
    pub async fn send_with_callback<F>(
        &self,
        record: ProducerRecord,
        callback: F,
    ) -> Result<(), SendError>
    where
        F: FnOnce(Result<RecordMetadata, ProduceError>) + Send + Sync + 'static,
    {
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let delivery = Delivery {
            report: Report::Callback(Box::new(callback)),
            timestamp,
        };
        self.enqueue(record, delivery).await
    }

    async fn enqueue(&self, record: ProducerRecord, delivery: Delivery) -> Result<(), SendError> {
        self.check_sender()?;
        let shared = &self.handle.shared;
        let config = &shared.config;
        let record_bytes = record.size_bytes_max();
        for (limit_bytes, setting) in [
            (config.max_request_size, "max_request_size"),
            (config.buffer_memory, "buffer_memory"),
        ] {
            if record_bytes > limit_bytes {
                return Err(SendError::RecordTooLarge {
                    size_bytes: record_bytes,
                    limit_bytes,
                    setting,
                });
            }
        }
        // The clock is read only when something has to wait: `max_block`
        // counts from the first wait.
        let mut started = None;
        let known_count = shared.cluster.metadata().partition_count(&record.topic);
        let partition_count = match known_count {
            Some(count) => count,
            None => {
                let started = *started.get_or_insert_with(Instant::now);
                self.partition_count(&record.topic, started + config.max_block)
                    .await?
            }
        };
        if let Some(partition) = record.partition {
            if !(0..partition_count).contains(&partition) {
                return Err(SendError::UnknownPartition {
                    topic: record.topic,
                    partition,
                    partition_count,
                });
            }
        }
        let permits = u32::try_from(record_bytes).expect("bounded by max_request_size");
        match shared.memory.try_acquire_many(permits) {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::Closed) => {
                self.check_sender()?;
                return Err(SendError::Closed);
            }
            Err(TryAcquireError::NoPermits) => {
                let started = *started.get_or_insert_with(Instant::now);
                // Wait for a slice of the buffer, not just this record's
                // bytes: a sender that keeps the buffer full would otherwise
                // be woken for every batch that completes, and sleep again
                // one batch later. What it does not need goes straight back.
                let wanted = permits.max(refill_bytes(config.buffer_memory));
                let acquire = shared.memory.acquire_many(wanted);
                match tokio::time::timeout_at((started + config.max_block).into(), acquire).await {
                    Ok(Ok(permit)) => {
                        permit.forget();
                        shared.memory.add_permits((wanted - permits) as usize);
                    }
                    Ok(Err(_)) => {
                        self.check_sender()?;
                        return Err(SendError::Closed);
                    }
                    Err(_) => {
                        return Err(SendError::BufferExhausted {
                            needed_bytes: record_bytes,
                            buffer_memory_bytes: config.buffer_memory,
                            waited: started.elapsed(),
                        })
                    }
                }
            }
        }
        let ProducerRecord {
            topic,
            partition,
            key,
            value,
            headers,
            ..
        } = record;
        let partition = match (partition, &key) {
            (Some(partition), _) => Some(partition),
            (None, Some(key)) => Some(partitioner::partition_for_key(key, partition_count)),
            (None, None) => None,
        };
        let wire_record = Record {
            key,
            value,
            headers,
            timestamp: delivery.timestamp,
        };
        let appended = {
            let mut accumulator = lock_accumulator(&shared.accumulator);
            if accumulator.sender_stopped {
                // The sender died since the check above and failed what was
                // queued; nothing would ever report on this record.
                drop(accumulator);
                shared.memory.add_permits(permits as usize);
                let reason = shared.exit.reason().unwrap_or_default();
                return Err(SendError::SenderStopped { reason });
            }
            accumulator.append(
                &topic,
                partition_count,
                partition,
                &wire_record,
                record_bytes,
                delivery,
                Instant::now,
            )
        };
        if appended.wake_sender {
            shared.wake_sender.notify_one();
            // A batch was filled (or opened, starting its linger): let the
            // sender run. On a single-threaded runtime it otherwise waits
            // until the application awaits something that is not ready,
            // which a loop of sends with buffer room to spare never does:
            // every batch would sit in the buffer until `flush`. Not from a
            // delivery callback: that runs on the sender itself, which
            // cannot run again until the callback returns.
            if !sender::in_delivery_report() {
                crate::yield_if_single_threaded().await;
            }
        }
        Ok(())
    }

    /// Sends every batch now (ignoring `linger`) and waits until every record
    /// accepted before the call has its delivery report. Failures are
    /// reported through the records' futures, not here.
    pub async fn flush(&self) {
        let shared = &self.handle.shared;
        let target = {
            let mut accumulator = lock_accumulator(&shared.accumulator);
            accumulator.flushes_in_progress += 1;
            accumulator.newest_batch_id()
        };
        let _flushing = FlushGuard { shared };
        shared.wake_sender.notify_one();
        loop {
            let completed = shared.batch_completed.notified();
            tokio::pin!(completed);
            completed.as_mut().enable();
            if lock_accumulator(&shared.accumulator).complete_up_to(target) {
                return;
            }
            completed.await;
        }
    }

    /// Flushes, then lets this handle go; once every clone is gone the
    /// sender task stops.
    pub async fn close(self) {
        self.flush().await;
    }

    /// The partition count of `topic`, fetching its metadata if needed (and
    /// creating the topic, where the broker auto-creates topics); waits at
    /// most `max_block`.
    pub async fn partitions_for(&self, topic: &str) -> Result<i32, SendError> {
        let deadline = Instant::now() + self.handle.shared.config.max_block;
        self.partition_count(topic, deadline).await
    }

    async fn partition_count(&self, topic: &str, deadline: Instant) -> Result<i32, SendError> {
        let cluster = &self.handle.shared.cluster;
        if let Some(count) = cluster.metadata().partition_count(topic) {
            return Ok(count);
        }
        let config = &self.handle.shared.config;
        let started = Instant::now();
        let backoff = Backoff::new(config.retry_backoff, config.retry_backoff_max);
        let unavailable = |reason: String| SendError::MetadataUnavailable {
            topic: topic.to_string(),
            waited: started.elapsed(),
            reason,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut topics: Vec<String> = cluster.metadata().topics.keys().cloned().collect();
            if !topics.iter().any(|t| t == topic) {
                topics.push(topic.to_string());
            }
            let reason =
                match tokio::time::timeout_at(deadline.into(), cluster.refresh_metadata(&topics))
                    .await
                {
                    Err(_) => return Err(unavailable("metadata request timed out".to_string())),
                    Ok(Err(error)) => error.to_string(),
                    Ok(Ok(metadata)) => {
                        if let Some(count) = metadata.partition_count(topic) {
                            return Ok(count);
                        }
                        match metadata.topic(topic) {
                            Some(t) if !t.error.is_ok() && !t.error.is_retriable() => {
                                return Err(unavailable(format!("broker answered {}", t.error)));
                            }
                            Some(t) if !t.error.is_ok() => format!("broker answered {}", t.error),
                            Some(_) => "no partitions yet".to_string(),
                            None => {
                                format!("broker answered {}", ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
                            }
                        }
                    }
                };
            let delay = backoff.delay(attempt, &mut rand::thread_rng());
            if Instant::now() + delay >= deadline {
                tokio::time::sleep_until(deadline.into()).await;
                return Err(unavailable(reason));
            }
            tracing::debug!(topic, %reason, ?delay, "waiting for topic metadata");
            tokio::time::sleep(delay).await;
        }
    }
}

/// Ends a flush's override of `linger`, however the flush ends.
struct FlushGuard<'a> {
    shared: &'a Shared,
}

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        let mut accumulator = lock_accumulator(&self.shared.accumulator);
        assert!(accumulator.flushes_in_progress > 0, "flush count balanced");
        accumulator.flushes_in_progress -= 1;
    }
}

/// InitProducerId at start-up, retried within `max_block`; `None` (with a
/// warning) when no broker serves it.
async fn initial_identity(
    cluster: &Cluster,
    config: &ProducerConfig,
) -> Result<Option<ProducerIdentity>, ConnectError> {
    if !idempotence::broker_supports_idempotence(cluster).await? {
        tracing::warn!(
            "the broker does not serve InitProducerId (api key 22): idempotence is off, so retries may write a batch twice"
        );
        return Ok(None);
    }
    let deadline = Instant::now() + config.max_block;
    let backoff = Backoff::new(config.retry_backoff, config.retry_backoff_max);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match idempotence::init_producer_id(cluster, None).await {
            Ok(identity) => {
                tracing::debug!(?identity, "idempotent producer");
                return Ok(Some(identity));
            }
            Err(error) if error.is_retriable() && Instant::now() < deadline => {
                let delay = backoff.delay(attempt, &mut rand::thread_rng());
                tracing::debug!(%error, ?delay, "InitProducerId failed; retrying");
                tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
            }
            Err(idempotence::InitProducerIdError::Broker { code }) => {
                return Err(ConnectError::InitProducerId { code });
            }
            Err(idempotence::InitProducerIdError::Cluster(error)) => return Err(error.into()),
            Err(idempotence::InitProducerIdError::Connection(error)) => {
                return Err(ConnectError::Cluster(error.into()));
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Locks the accumulator for `send` and `flush`. Should the sender task
/// die holding the lock, its supervisor sweeps what it left (see
/// `supervisor`); until then `send` and `flush` go on rather than panic in
/// the application's task on the poisoned lock.
fn lock_accumulator(accumulator: &Mutex<Accumulator>) -> MutexGuard<'_, Accumulator> {
    accumulator.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bytes a sender that found the buffer full waits to be free before it
/// goes on: a sixteenth of the buffer.
fn refill_bytes(buffer_memory: usize) -> u32 {
    u32::try_from(buffer_memory / 16).unwrap_or(u32::MAX)
}
