//! The sender task: drains sendable batches into Produce requests, one
//! request per leader at a time per pass, and turns responses into delivery
//! reports, retries, metadata refreshes and epoch bumps.
//!
//! Ordering per partition: the sender puts requests to one broker on its
//! connection in the order they were drained (itself, or when the connection
//! is not open or has no room, through one task at a time per broker), so
//! batches of a partition reach the broker in sequence order, and it takes
//! their outcomes in that same order. Without idempotence
//! a partition has up to `max_in_flight_requests_per_connection` batches in
//! flight, as in Kafka, so a retry can be overtaken unless that is 1. With
//! idempotence up to five are in flight; a batch that must
//! be retried goes back to the front of its queue in sequence order and is
//! sent again only once nothing of its partition is in flight, so the broker
//! sees the sequences in order again (those sent after it come back
//! OUT_OF_ORDER_SEQUENCE_NUMBER and are retried behind it). While a retry is
//! in flight nothing new of its partition is sent, so the broker, which
//! remembers the last five batches per producer and partition, still knows
//! the retried batch if it had already written it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use futures::FutureExt;

use protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use protocol::messages::produce_response::PartitionProduceResponse;
use protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use protocol::{ErrorCode, StrBytes};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use crate::backoff::Backoff;
use crate::cluster::{Cluster, ClusterError};
use crate::connection::{Connection, ConnectionError, PendingResponse, RequestSlot};
use crate::error::{AttemptError, ProduceError};
use crate::metadata::Metadata;
use crate::producer::accumulator::{Accumulator, PartitionQueue};
use crate::producer::batch::{BatchOutcome, ProducerBatch};
use crate::producer::config::{Acks, ProducerConfig};
use crate::producer::idempotence::{
    init_producer_id, sequence_verdict, InitProducerIdError, ProducerIdentity, SequenceVerdict,
};
use crate::producer::metrics::Counters;
use crate::producer::supervisor::SenderExit;

/// The Produce versions this client speaks (3 is the oldest Kafka 4 serves;
/// 13 addresses topics by id).
pub const PRODUCE_VERSIONS: (i16, i16) = (3, 13);
/// The first Produce version that names topics by id instead of by name.
const PRODUCE_TOPIC_ID_VERSION_MIN: i16 = 13;
/// Batches of one partition an idempotent producer keeps in flight at most:
/// the broker deduplicates against the last five per producer and partition.
pub const IN_FLIGHT_BATCHES_PER_PARTITION_IDEMPOTENT: usize = 5;
/// Bound on events from the tasks the sender spawned. At most one per broker
/// (a request waiting for its connection) plus one metadata refresh and one
/// InitProducerId are outstanding, so this is never the limit in practice.
const EVENT_QUEUE_BOUND: usize = 1024;

/// State shared by the producer handles and the sender task.
pub(crate) struct Shared {
    pub config: ProducerConfig,
    pub cluster: Arc<Cluster>,
    pub accumulator: Mutex<Accumulator>,
    /// One permit per byte of `buffer_memory`.
    pub memory: Arc<Semaphore>,
    /// Poked by `send` (new or full batch) and `flush`.
    pub wake_sender: Notify,
    /// Poked after every batch report, for `flush`.
    pub batch_completed: Notify,
    /// The current producer id and epoch; `None` when not idempotent.
    pub identity: Mutex<Option<ProducerIdentity>>,
    /// Why the sender task stopped, once it has (the accumulator's).
    pub exit: Arc<SenderExit>,
    /// Test support: a panic for the sender task to raise.
    pub injected_panic: Mutex<Option<String>>,
    /// What `Producer::metrics` reports.
    pub counters: Counters,
}

impl Shared {
    /// Gives a batch its outcome: it is reported on (and its memory given
    /// back) by [`Shared::report_finished`] once the accumulator lock is let
    /// go. Every batch ends here exactly once.
    fn complete(&self, accumulator: &mut Accumulator, batch: ProducerBatch, outcome: BatchOutcome) {
        accumulator.finished.push((batch, outcome));
    }

    /// Reports on every finished batch, without the accumulator lock held
    /// while record callbacks run, then marks them complete for `flush`.
    pub(crate) fn report_finished(&self) {
        let finished =
            std::mem::take(&mut self.accumulator.lock().expect("accumulator lock").finished);
        if finished.is_empty() {
            return;
        }
        let _reporting = ReportingGuard::enter();
        let mut ids = Vec::with_capacity(finished.len());
        for (batch, outcome) in finished {
            ids.push(batch.id);
            self.memory.add_permits(batch.memory_bytes);
            match outcome {
                Ok((base_offset, log_append_time)) => batch.succeed(base_offset, log_append_time),
                Err(error) => {
                    Counters::add(&self.counters.batches_failed);
                    tracing::warn!(topic = %batch.topic, partition = batch.partition, records = batch.record_count(), %error, "batch failed");
                    batch.fail(error)
                }
            }
        }
        let mut accumulator = self.accumulator.lock().expect("accumulator lock");
        for id in ids {
            accumulator.mark_complete(id);
        }
        drop(accumulator);
        self.batch_completed.notify_waiters();
    }
}

thread_local! {
    /// Set while this thread runs delivery reports (callbacks may send).
    static IN_DELIVERY_REPORT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the current thread is running delivery reports.
pub(crate) fn in_delivery_report() -> bool {
    IN_DELIVERY_REPORT.with(std::cell::Cell::get)
}

/// Marks the thread as running delivery reports until dropped (also when a
/// callback panics).
struct ReportingGuard {
    was: bool,
}

impl ReportingGuard {
    fn enter() -> ReportingGuard {
        ReportingGuard {
            was: IN_DELIVERY_REPORT.with(|flag| flag.replace(true)),
        }
    }
}

impl Drop for ReportingGuard {
    fn drop(&mut self) {
        IN_DELIVERY_REPORT.with(|flag| flag.set(self.was));
    }
}

/// One Produce request for a broker, as the sender drained it.
struct ProduceJob {
    batches: Vec<ProducerBatch>,
    /// The earliest delivery deadline among the batches: no point waiting longer.
    give_up_at: Instant,
}

enum Event {
    /// A request that could not go on its connection at once (none open, or
    /// no room) is on it now, or failed to get there.
    Submitted {
        broker_id: i32,
        job: ProduceJob,
        result: Result<(PendingResponse, i16), ClusterError>,
    },
    MetadataRefreshed(Result<(), ClusterError>),
    ProducerIdObtained(Result<ProducerIdentity, InitProducerIdError>),
}

pub(crate) struct Sender {
    shared: Arc<Shared>,
    idempotent: bool,
    identity: Option<ProducerIdentity>,
    /// Set when some partition's sequence can no longer be trusted.
    bump_needed: bool,
    bump_in_progress: bool,
    bump_attempts: u32,
    bump_retry_at: Option<Instant>,
    in_flight_by_broker: HashMap<i32, usize>,
    in_flight_requests: usize,
    lanes: HashMap<i32, Lane>,
    events_tx: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
    metadata_wanted: bool,
    metadata_in_progress: bool,
    metadata_last_refresh: Option<Instant>,
    backoff: Backoff,
    rng: StdRng,
    /// Rotates where each drain pass starts, so no partition is always last.
    drain_start: usize,
    closing: bool,
}

impl Sender {
    pub fn new(shared: Arc<Shared>, identity: Option<ProducerIdentity>) -> Self {
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE_BOUND);
        let backoff = Backoff::new(shared.config.retry_backoff, shared.config.retry_backoff_max);
        Sender {
            idempotent: identity.is_some(),
            identity,
            shared,
            bump_needed: false,
            bump_in_progress: false,
            bump_attempts: 0,
            bump_retry_at: None,
            in_flight_by_broker: HashMap::new(),
            in_flight_requests: 0,
            lanes: HashMap::new(),
            events_tx,
            events_rx,
            metadata_wanted: false,
            metadata_in_progress: false,
            metadata_last_refresh: None,
            backoff,
            rng: StdRng::from_entropy(),
            drain_start: 0,
            closing: false,
        }
    }

    /// Runs until the producer is gone and every batch has been reported on.
    pub async fn run(mut self, mut producer_gone: watch::Receiver<()>) {
        loop {
            let now = Instant::now();
            let mut wakeup = self.expire(now);
            self.maybe_bump_epoch(now, &mut wakeup);
            self.dispatch(now, &mut wakeup);
            self.maybe_refresh_metadata(now, &mut wakeup);
            // After the next requests are on their way: callbacks do not delay them.
            self.shared.report_finished();
            if self.closing
                && self.in_flight_requests == 0
                && self
                    .shared
                    .accumulator
                    .lock()
                    .expect("accumulator lock")
                    .is_empty()
            {
                break;
            }
            let sleep_until = wakeup.map(tokio::time::Instant::from_std);
            let awaiting_responses = self.lanes.values().any(|l| !l.sent.is_empty());
            tokio::select! {
                first = next_response(&mut self.lanes), if awaiting_responses => {
                    // Every response already in, of every broker, before the
                    // next pass: one busy broker does not keep another's
                    // waiting behind it.
                    let mut ready = Some(first);
                    while let Some((broker_id, sent, response)) = ready {
                        let outcome = produce_outcome(broker_id, sent.version, response);
                        self.handle_produced(broker_id, sent.batches, outcome);
                        ready = next_response(&mut self.lanes).now_or_never();
                    }
                }
                Some(event) = self.events_rx.recv() => self.handle(event),
                _ = self.shared.wake_sender.notified() => {}
                _ = tokio::time::sleep_until(sleep_until.unwrap_or_else(tokio::time::Instant::now)), if sleep_until.is_some() => {}
                _ = producer_gone.changed(), if !self.closing => {
                    self.closing = true;
                    self.shared.accumulator.lock().expect("accumulator lock").closing = true;
                }
            }
        }
        tracing::debug!("producer sender stopped");
    }

    /// Fails queued batches whose delivery timeout passed; returns the next
    /// deadline among the rest.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        let delivery_timeout = self.shared.config.delivery_timeout;
        let mut accumulator = self.shared.accumulator.lock().expect("accumulator lock");
        let injected = self
            .shared
            .injected_panic
            .lock()
            .expect("injected panic lock")
            .take();
        if let Some(message) = injected {
            // With the accumulator lock held, the worst place to die: the
            // lock is poisoned, and the supervisor must still sweep it.
            panic!("{message}");
        }
        let mut expired = Vec::new();
        let mut next = None;
        for queues in accumulator.topics.values_mut() {
            for queue in &mut queues.partitions {
                // Queues are in creation order (retries are the oldest), so
                // the expired batches are a prefix.
                while queue
                    .batches
                    .front()
                    .is_some_and(|b| now >= b.deadline(delivery_timeout))
                {
                    expired.push(queue.batches.pop_front().expect("front exists"));
                }
                if let Some(front) = queue.batches.front() {
                    next = earliest(next, front.deadline(delivery_timeout));
                }
            }
        }
        for mut batch in expired {
            batch.closed = true;
            if batch.has_sequence() {
                // What the broker has of this sequence is unknown now.
                self.bump_needed = true;
            }
            let error = ProduceError::DeliveryTimeout {
                topic: batch.topic.to_string(),
                partition: batch.partition,
                delivery_timeout,
                attempts: batch.attempts,
                last_error: batch.last_error.clone(),
            };
            self.shared.complete(&mut accumulator, batch, Err(error));
        }
        next
    }

    fn maybe_bump_epoch(&mut self, now: Instant, wakeup: &mut Option<Instant>) {
        if !self.idempotent
            || !self.bump_needed
            || self.bump_in_progress
            || self.in_flight_requests > 0
        {
            return;
        }
        if let Some(retry_at) = self.bump_retry_at.filter(|t| *t > now) {
            *wakeup = earliest(*wakeup, retry_at);
            return;
        }
        self.bump_in_progress = true;
        let cluster = self.shared.cluster.clone();
        let current = self.identity;
        let events = self.events_tx.clone();
        tracing::info!(
            ?current,
            "bumping the producer epoch to reset sequence numbers"
        );
        tokio::spawn(async move {
            let result = init_producer_id(&cluster, current).await;
            let _ = events.send(Event::ProducerIdObtained(result)).await;
        });
    }

    /// Drains sendable batches into requests while leaders have in-flight room.
    fn dispatch(&mut self, now: Instant, wakeup: &mut Option<Instant>) {
        if self.idempotent && (self.bump_needed || self.bump_in_progress) {
            return;
        }
        loop {
            let jobs = self.drain_pass(now, wakeup);
            if jobs.is_empty() {
                return;
            }
            for (broker_id, job) in jobs {
                *self.in_flight_by_broker.entry(broker_id).or_default() += 1;
                self.in_flight_requests += 1;
                self.shared
                    .counters
                    .in_flight_requests
                    .store(self.in_flight_requests, Ordering::Relaxed);
                self.submit(broker_id, job);
            }
        }
    }

    /// Puts a request on its broker's connection from this task when the
    /// connection is open and has room, which is the common case: no other
    /// task stands between the sender and the connection's writer. Otherwise
    /// a task of its own connects or waits for room, and the broker's lane
    /// takes no other request until it is done, so requests still reach the
    /// connection in drain order.
    fn submit(&mut self, broker_id: i32, job: ProduceJob) {
        let connection = self.shared.cluster.open_broker_connection(broker_id);
        let sent = match connection {
            None => Ok(None),
            Some(connection) => try_submit_produce(&self.shared, &connection, &job.batches),
        };
        match sent {
            Ok(Some((pending, version))) => self.sent(broker_id, job, pending, version),
            Err(error) => self.handle_produced(broker_id, job.batches, Err(error)),
            Ok(None) => {
                self.lanes.entry(broker_id).or_default().submitting = true;
                let shared = self.shared.clone();
                let events = self.events_tx.clone();
                tokio::spawn(async move {
                    let result = submit_produce(broker_id, &shared, &job.batches).await;
                    let _ = events
                        .send(Event::Submitted {
                            broker_id,
                            job,
                            result,
                        })
                        .await;
                });
            }
        }
    }

    /// Records a request that is on its connection, to take its outcome in turn.
    fn sent(&mut self, broker_id: i32, job: ProduceJob, pending: PendingResponse, version: i16) {
        let response = Box::pin(pending.wait(Some(tokio::time::Instant::from_std(job.give_up_at))));
        self.lanes
            .entry(broker_id)
            .or_default()
            .sent
            .push_back(SentRequest {
                batches: job.batches,
                version,
                response,
            });
    }

    /// One pass over the partitions: at most one batch per partition and one
    /// request per leader.
    fn drain_pass(&mut self, now: Instant, wakeup: &mut Option<Instant>) -> Vec<(i32, ProduceJob)> {
        let config = &self.shared.config;
        let metadata = self.shared.cluster.metadata();
        let mut accumulator = self.shared.accumulator.lock().expect("accumulator lock");
        let mut partitions: Vec<(Arc<str>, usize)> = Vec::new();
        for (topic, queues) in &accumulator.topics {
            for index in 0..queues.partitions.len() {
                if !queues.partitions[index].batches.is_empty() {
                    partitions.push((topic.clone(), index));
                }
            }
        }
        if partitions.is_empty() {
            return Vec::new();
        }
        partitions.sort();
        self.drain_start = self.drain_start.wrapping_add(1);
        let start = self.drain_start % partitions.len();
        partitions.rotate_left(start);

        let mut requests: HashMap<i32, (Vec<ProducerBatch>, usize)> = HashMap::new();
        for (topic, index) in partitions {
            let sendable_at = {
                let queue = &accumulator.topics[&topic].partitions[index];
                let front = queue.batches.front().expect("non-empty queue");
                accumulator.sendable_at(front, config.linger)
            };
            if sendable_at > now {
                *wakeup = earliest(*wakeup, sendable_at);
                continue;
            }
            let Some(leader) = metadata.leader(&topic, index as i32).map(|b| b.node_id) else {
                self.metadata_wanted = true;
                continue;
            };
            if !requests.contains_key(&leader)
                && (self.in_flight_by_broker.get(&leader).copied().unwrap_or(0)
                    >= config.max_in_flight_requests_per_connection
                    || self.lanes.get(&leader).is_some_and(|l| l.submitting))
            {
                continue;
            }
            let queue = &mut accumulator
                .topics
                .get_mut(&topic)
                .expect("topic")
                .partitions[index];
            if !self.partition_may_send(queue) {
                continue;
            }
            let request_bytes = requests.get(&leader).map_or(0, |r| r.1);
            let front = queue.batches.front().expect("non-empty queue");
            if request_bytes > 0 && request_bytes + front.size_bytes() > config.max_request_size {
                continue;
            }
            let mut batch = queue.batches.pop_front().expect("non-empty queue");
            if !batch.closed {
                // Drained open (linger passed): this is how big batches get.
                queue.last_shape = batch.shape();
            }
            // The sequence comes first, so sealing builds the batch with it.
            let sequenced = match self.identity.filter(|_| !batch.has_sequence()) {
                Some(identity) => {
                    batch.assign_sequence(identity, queue.next_position);
                    queue.next_position += i64::from(batch.record_count());
                    true
                }
                None => false,
            };
            if let Err(e) = batch.seal(config.compression) {
                if sequenced {
                    // Nothing was sequenced after it: give the numbers back.
                    queue.next_position -= i64::from(batch.record_count());
                }
                let error = ProduceError::Compression {
                    topic: topic.to_string(),
                    partition: index as i32,
                    reason: e.to_string(),
                };
                self.shared.complete(&mut accumulator, batch, Err(error));
                continue;
            }
            let queue = &mut accumulator
                .topics
                .get_mut(&topic)
                .expect("topic")
                .partitions[index];
            if batch.attempts > 0 {
                queue.retries_in_flight += 1;
            }
            batch.attempts += 1;
            batch.retry_at = None;
            queue.in_flight += 1;
            let request = requests.entry(leader).or_default();
            request.1 += batch.size_bytes();
            request.0.push(batch);
        }
        drop(accumulator);
        let delivery_timeout = config.delivery_timeout;
        requests
            .into_iter()
            .map(|(leader, (batches, _))| {
                let give_up_at = batches
                    .iter()
                    .map(|b| b.deadline(delivery_timeout))
                    .min()
                    .expect("a request has batches");
                (
                    leader,
                    ProduceJob {
                        batches,
                        give_up_at,
                    },
                )
            })
            .collect()
    }

    /// The per-partition in-flight rules that keep order across retries.
    fn partition_may_send(&self, queue: &PartitionQueue) -> bool {
        let front = queue.batches.front().expect("non-empty queue");
        if self.idempotent {
            if front.has_sequence() && queue.in_flight > 0 {
                // A retry goes out only once everything sent before it has
                // come back, so the broker sees its sequences in order.
                return false;
            }
            if queue.retries_in_flight > 0 {
                // Nothing new goes out while a retry is unresolved: the
                // broker deduplicates against its last five batches only,
                // so batches appended behind a retry could push the retried
                // batch out of its memory and turn the next retry into an
                // OUT_OF_ORDER_SEQUENCE_NUMBER that never resolves.
                return false;
            }
            queue.in_flight < IN_FLIGHT_BATCHES_PER_PARTITION_IDEMPOTENT
        } else {
            // As in Kafka, up to `max_in_flight_requests_per_connection`
            // batches of a partition are in flight, so a retried batch may
            // land behind later ones; 1 keeps the order strict. A retry still
            // goes out alone, and nothing new while it is unresolved, so a
            // partition that keeps failing does not pile up reordered batches.
            if front.attempts > 0 && queue.in_flight > 0 {
                return false;
            }
            if queue.retries_in_flight > 0 {
                return false;
            }
            queue.in_flight < self.shared.config.max_in_flight_requests_per_connection
        }
    }

    fn maybe_refresh_metadata(&mut self, now: Instant, wakeup: &mut Option<Instant>) {
        let config = &self.shared.config;
        let metadata = self.shared.cluster.metadata();
        let stale = now.saturating_duration_since(metadata.updated_at) >= config.metadata_max_age;
        if !(self.metadata_wanted || stale) || self.metadata_in_progress {
            return;
        }
        if let Some(last) = self.metadata_last_refresh {
            let allowed_at = last + config.retry_backoff;
            if allowed_at > now {
                *wakeup = earliest(*wakeup, allowed_at);
                return;
            }
        }
        self.metadata_in_progress = true;
        let topics = self.topics_of_interest(&metadata);
        let cluster = self.shared.cluster.clone();
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let result = cluster.refresh_metadata(&topics).await.map(|_| ());
            let _ = events.send(Event::MetadataRefreshed(result)).await;
        });
    }

    fn topics_of_interest(&self, metadata: &Metadata) -> Vec<String> {
        let accumulator = self.shared.accumulator.lock().expect("accumulator lock");
        let mut topics: Vec<String> = metadata.topics.keys().cloned().collect();
        for topic in accumulator.topics.keys() {
            if !metadata.topics.contains_key(&**topic) {
                topics.push(topic.to_string());
            }
        }
        topics.sort();
        topics
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Submitted {
                broker_id,
                job,
                result,
            } => {
                self.lanes.entry(broker_id).or_default().submitting = false;
                match result {
                    Ok((pending, version)) => self.sent(broker_id, job, pending, version),
                    Err(error) => self.handle_produced(broker_id, job.batches, Err(error)),
                }
            }
            Event::MetadataRefreshed(result) => {
                self.metadata_in_progress = false;
                self.metadata_last_refresh = Some(Instant::now());
                match result {
                    Ok(()) => self.metadata_wanted = false,
                    Err(e) => tracing::debug!(error = %e, "metadata refresh failed"),
                }
            }
            Event::ProducerIdObtained(result) => self.handle_producer_id(result),
        }
    }

    fn handle_producer_id(&mut self, result: Result<ProducerIdentity, InitProducerIdError>) {
        self.bump_in_progress = false;
        let identity = match result {
            Ok(identity) => identity,
            Err(error) => {
                self.bump_attempts += 1;
                let delay = self.backoff.delay(self.bump_attempts, &mut self.rng);
                self.bump_retry_at = Some(Instant::now() + delay);
                tracing::warn!(%error, ?delay, "epoch bump failed; retrying");
                return;
            }
        };
        assert_eq!(
            self.in_flight_requests, 0,
            "epoch bumps happen with nothing in flight"
        );
        tracing::info!(?identity, "new producer epoch; sequences restart at 0");
        self.identity = Some(identity);
        *self.shared.identity.lock().expect("identity lock") = Some(identity);
        self.bump_needed = false;
        self.bump_attempts = 0;
        self.bump_retry_at = None;
        let mut accumulator = self.shared.accumulator.lock().expect("accumulator lock");
        for queues in accumulator.topics.values_mut() {
            for queue in &mut queues.partitions {
                assert_eq!(queue.in_flight, 0, "no batch is in flight during a bump");
                queue.next_position = 0;
                queue.acked_positions = 0;
                // Batches waiting for a retry are at the front in order;
                // they keep that order under the new epoch.
                for batch in queue.batches.iter_mut().filter(|b| b.has_sequence()) {
                    batch.assign_sequence(identity, queue.next_position);
                    queue.next_position += i64::from(batch.record_count());
                }
            }
        }
    }

    fn handle_produced(
        &mut self,
        broker_id: i32,
        batches: Vec<ProducerBatch>,
        outcome: Result<Option<ProduceResponse>, ClusterError>,
    ) {
        let in_flight = self.in_flight_by_broker.entry(broker_id).or_default();
        assert!(
            *in_flight > 0 && self.in_flight_requests > 0,
            "a completed request was in flight"
        );
        *in_flight -= 1;
        self.in_flight_requests -= 1;
        self.shared
            .counters
            .in_flight_requests
            .store(self.in_flight_requests, Ordering::Relaxed);
        let now = Instant::now();
        let shared = self.shared.clone();
        let mut accumulator = shared.accumulator.lock().expect("accumulator lock");
        match outcome {
            Err(error) => {
                if error.is_retriable() {
                    // The leader may have moved; Java refreshes on disconnect too.
                    self.metadata_wanted = true;
                }
                for batch in batches {
                    finish_flight(&mut accumulator, &batch);
                    if error.is_retriable() {
                        self.retry_or_fail(
                            &mut accumulator,
                            batch,
                            AttemptError::Network(Box::new(error.clone())),
                            now,
                        );
                    } else {
                        let error = match &error {
                            ClusterError::Connection(e) => e.clone(),
                            other => ConnectionError::Disconnected {
                                addr: format!("broker {broker_id}"),
                                reason: other.to_string(),
                            },
                        };
                        if batch.has_sequence() {
                            self.bump_needed = true;
                        }
                        let error = ProduceError::Connection {
                            topic: batch.topic.to_string(),
                            partition: batch.partition,
                            attempts: batch.attempts,
                            error,
                        };
                        shared.complete(&mut accumulator, batch, Err(error));
                    }
                }
            }
            Ok(None) => {
                for batch in batches {
                    finish_flight(&mut accumulator, &batch);
                    shared.complete(&mut accumulator, batch, Ok((None, None)));
                }
            }
            Ok(Some(response)) => {
                let metadata = shared.cluster.metadata();
                for batch in batches {
                    finish_flight(&mut accumulator, &batch);
                    match find_partition(&response, &metadata, &batch) {
                        Some(partition) => {
                            self.handle_partition(&mut accumulator, batch, partition, now)
                        }
                        None => {
                            self.retry_or_fail(
                                &mut accumulator,
                                batch,
                                AttemptError::MissingPartition,
                                now,
                            );
                        }
                    }
                }
            }
        }
    }

    fn handle_partition(
        &mut self,
        accumulator: &mut Accumulator,
        batch: ProducerBatch,
        response: &PartitionProduceResponse,
        now: Instant,
    ) {
        let code = ErrorCode(response.error_code);
        let describe = || AttemptError::Broker {
            code,
            message: response.error_message.as_ref().map(|m| m.to_string()),
        };
        if code.is_ok() || code == ErrorCode::DUPLICATE_SEQUENCE_NUMBER {
            if batch.has_sequence() {
                // Acknowledgements may come back out of order across
                // connections; what is known written only grows.
                let queue = queue_of(accumulator, &batch);
                queue.acked_positions = queue.acked_positions.max(batch.sequence_end());
            }
            // DUPLICATE_SEQUENCE_NUMBER: the broker has the batch but no
            // longer knows where; the write happened, its offset is unknown.
            let base_offset =
                (code.is_ok() && response.base_offset >= 0).then_some(response.base_offset);
            let log_append_time =
                (response.log_append_time_ms >= 0).then_some(response.log_append_time_ms);
            self.shared
                .complete(accumulator, batch, Ok((base_offset, log_append_time)));
            return;
        }
        if batch.has_sequence()
            && (code == ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER
                || code == ErrorCode::UNKNOWN_PRODUCER_ID)
        {
            let acked_positions = queue_of(accumulator, &batch).acked_positions;
            let verdict = sequence_verdict(batch.sequence_position, acked_positions);
            if verdict == SequenceVerdict::BumpEpochAndRetry {
                tracing::warn!(topic = %batch.topic, partition = batch.partition, base_sequence = batch.base_sequence, acked_positions, %code, "broker state diverged from ours; bumping the epoch");
                self.bump_needed = true;
            }
            self.retry_or_fail(accumulator, batch, describe(), now);
            return;
        }
        if code.is_retriable() {
            if is_stale_metadata(code) {
                self.metadata_wanted = true;
            }
            self.retry_or_fail(accumulator, batch, describe(), now);
            return;
        }
        if batch.has_sequence() {
            // The batch was not written, but later sequences were handed out
            // after it: the partition needs fresh numbering.
            self.bump_needed = true;
        }
        let error = ProduceError::Rejected {
            topic: batch.topic.to_string(),
            partition: batch.partition,
            code,
            message: response.error_message.as_ref().map(|m| m.to_string()),
            attempts: batch.attempts,
        };
        self.shared.complete(accumulator, batch, Err(error));
    }

    /// Puts a batch back for another attempt, or fails it when its retries or
    /// its delivery timeout are used up.
    fn retry_or_fail(
        &mut self,
        accumulator: &mut Accumulator,
        mut batch: ProducerBatch,
        error: AttemptError,
        now: Instant,
    ) {
        let config = &self.shared.config;
        let failure = if now >= batch.deadline(config.delivery_timeout) {
            Some(ProduceError::DeliveryTimeout {
                topic: batch.topic.to_string(),
                partition: batch.partition,
                delivery_timeout: config.delivery_timeout,
                attempts: batch.attempts,
                last_error: Some(error.clone()),
            })
        } else if batch.attempts > config.retries {
            Some(ProduceError::RetriesExhausted {
                topic: batch.topic.to_string(),
                partition: batch.partition,
                attempts: batch.attempts,
                last_error: error.clone(),
            })
        } else {
            None
        };
        if let Some(failure) = failure {
            if batch.has_sequence() {
                self.bump_needed = true;
            }
            self.shared.complete(accumulator, batch, Err(failure));
            return;
        }
        let delay = self.backoff.delay(batch.attempts, &mut self.rng);
        Counters::add(&self.shared.counters.retries);
        tracing::debug!(topic = %batch.topic, partition = batch.partition, attempts = batch.attempts, ?delay, %error, "retrying batch");
        batch.retry_at = Some(now + delay);
        batch.last_error = Some(error);
        queue_of(accumulator, &batch).reinsert_for_retry(batch);
    }
}

fn earliest(current: Option<Instant>, candidate: Instant) -> Option<Instant> {
    Some(current.map_or(candidate, |c| c.min(candidate)))
}

/// Takes a batch whose request completed off its partition's in-flight counts.
fn finish_flight(accumulator: &mut Accumulator, batch: &ProducerBatch) {
    let queue = queue_of(accumulator, batch);
    assert!(queue.in_flight > 0, "a completed batch was in flight");
    queue.in_flight -= 1;
    if batch.attempts > 1 {
        assert!(queue.retries_in_flight > 0, "a completed retry was counted");
        queue.retries_in_flight -= 1;
    }
}

fn queue_of<'a>(accumulator: &'a mut Accumulator, batch: &ProducerBatch) -> &'a mut PartitionQueue {
    &mut accumulator
        .topics
        .get_mut(&batch.topic)
        .expect("a batch's topic has queues")
        .partitions[batch.partition as usize]
}

/// Errors that mean our metadata is out of date (Java's InvalidMetadataException family).
fn is_stale_metadata(code: ErrorCode) -> bool {
    matches!(code.code(), 3 | 5 | 6 | 56 | 74 | 76 | 100 | 103)
}

fn find_partition<'a>(
    response: &'a ProduceResponse,
    metadata: &Metadata,
    batch: &ProducerBatch,
) -> Option<&'a PartitionProduceResponse> {
    let topic_id = metadata.topic(&batch.topic).map(|t| t.topic_id);
    response
        .responses
        .iter()
        .filter(|t| {
            t.name.0.as_str() == &*batch.topic
                || (!t.topic_id.is_nil() && Some(t.topic_id) == topic_id)
        })
        .flat_map(|t| t.partition_responses.iter())
        .find(|p| p.index == batch.partition)
}

/// One broker's requests, in the order they went on its connection.
#[derive(Default)]
struct Lane {
    /// A request is on its way to the connection in a task of its own
    /// (connecting, or waiting for room): nothing else goes to this broker
    /// until it is there.
    submitting: bool,
    /// Requests on the connection, oldest first. Their outcomes are taken in
    /// this order: if a later batch's success were handled before an earlier
    /// batch's failure, the sender could send new batches past the earlier
    /// one, and the broker could forget it (it deduplicates against the last
    /// five batches only) before its retry. Responses on one connection
    /// arrive in order anyway, so waiting in order costs nothing.
    sent: VecDeque<SentRequest>,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Option<Bytes>, ConnectionError>> + Send>>;

struct SentRequest {
    batches: Vec<ProducerBatch>,
    version: i16,
    /// The response frame (`None` for `acks=0`, once written).
    response: ResponseFuture,
}

/// The next outcome of the oldest request of some broker.
async fn next_response(
    lanes: &mut HashMap<i32, Lane>,
) -> (i32, SentRequest, Result<Option<Bytes>, ConnectionError>) {
    std::future::poll_fn(|cx| {
        for (broker_id, lane) in lanes.iter_mut() {
            let Some(oldest) = lane.sent.front_mut() else {
                continue;
            };
            if let Poll::Ready(response) = oldest.response.as_mut().poll(cx) {
                let sent = lane.sent.pop_front().expect("the oldest is there");
                return Poll::Ready((*broker_id, sent, response));
            }
        }
        Poll::Pending
    })
    .await
}

/// A Produce request's outcome: the decoded response, `None` for `acks=0`.
fn produce_outcome(
    broker_id: i32,
    version: i16,
    response: Result<Option<Bytes>, ConnectionError>,
) -> Result<Option<ProduceResponse>, ClusterError> {
    match response {
        Ok(None) => Ok(None),
        Ok(Some(frame)) => {
            protocol::header::decode_response::<ProduceResponse>(ApiKey::Produce, version, frame)
                .map(|(_, response)| Some(response))
                .map_err(|e| {
                    ClusterError::Connection(ConnectionError::Decode {
                        addr: format!("broker {broker_id}"),
                        api: ApiKey::Produce,
                        version,
                        reason: e.to_string(),
                    })
                })
        }
        Err(e) => Err(ClusterError::Connection(e)),
    }
}

/// Puts a Produce request on `connection` if it has room now; `Ok(None)` if not.
fn try_submit_produce(
    shared: &Shared,
    connection: &Connection,
    batches: &[ProducerBatch],
) -> Result<Option<(PendingResponse, i16)>, ClusterError> {
    match connection.try_reserve()? {
        Some(slot) => send_produce(shared, connection, slot, batches).map(Some),
        None => Ok(None),
    }
}

/// Puts a Produce request on the broker's connection, connecting first if
/// needed and waiting for room.
async fn submit_produce(
    broker_id: i32,
    shared: &Shared,
    batches: &[ProducerBatch],
) -> Result<(PendingResponse, i16), ClusterError> {
    let connection = shared.cluster.broker_connection(broker_id).await?;
    let slot = connection.reserve().await?;
    send_produce(shared, &connection, slot, batches)
}

/// Builds the Produce request for `batches` into the room `slot` holds on
/// `connection`; returns it with its version.
fn send_produce(
    shared: &Shared,
    connection: &Connection,
    slot: RequestSlot<'_>,
    batches: &[ProducerBatch],
) -> Result<(PendingResponse, i16), ClusterError> {
    let (request, record_sets, version) = produce_request(shared, connection, batches)?;
    let expect_response = shared.config.acks != Acks::None;
    let pending = slot.send(
        ApiKey::Produce,
        version,
        &request,
        expect_response,
        &record_sets,
    )?;
    Ok((pending, version))
}

/// The Produce request for `batches` in the version `connection` speaks, and
/// the record sets that go to the socket from their own memory.
fn produce_request(
    shared: &Shared,
    connection: &Connection,
    batches: &[ProducerBatch],
) -> Result<(ProduceRequest, Vec<Bytes>, i16), ClusterError> {
    let metadata = shared.cluster.metadata();
    let topic_ids: HashMap<&str, uuid::Uuid> = batches
        .iter()
        .map(|b| {
            let id = metadata
                .topic(&b.topic)
                .map(|t| t.topic_id)
                .unwrap_or_default();
            (&*b.topic, id)
        })
        .collect();
    let ours = if topic_ids.values().any(|id| id.is_nil()) {
        (PRODUCE_VERSIONS.0, PRODUCE_TOPIC_ID_VERSION_MIN - 1)
    } else {
        PRODUCE_VERSIONS
    };
    let version = connection
        .version_within::<ProduceRequest>(ours)
        .ok_or_else(|| ConnectionError::UnsupportedVersion {
            addr: connection.addr().to_string(),
            api: ApiKey::Produce,
            ours,
            broker: connection.api_versions().broker_range(ApiKey::Produce),
        })?;
    let config = &shared.config;
    let mut topics: Vec<TopicProduceData> = Vec::new();
    let mut record_sets = Vec::with_capacity(batches.len());
    for batch in batches {
        let records = batch.encode();
        record_sets.push(records.clone());
        let data = PartitionProduceData::default()
            .with_index(batch.partition)
            .with_records(Some(records));
        match topics
            .iter_mut()
            .find(|t| t.name.0.as_str() == &*batch.topic)
        {
            Some(topic) => topic.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(batch.topic.to_string())))
                    .with_topic_id(topic_ids[&*batch.topic])
                    .with_partition_data(vec![data]),
            ),
        }
    }
    let request = ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(config.acks.wire_value())
        .with_timeout_ms(config.request_timeout.as_millis().min(i32::MAX as u128) as i32)
        .with_topic_data(topics);
    Ok((request, record_sets, version))
}
