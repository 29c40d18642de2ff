//! Fetching: at most one Fetch in flight per broker, sent for every
//! fetchable partition that broker leads; responses decoded into records on
//! a background task (so decoding overlaps the application's processing),
//! then buffered until `poll` hands them out.
//!
//! `poll` sends the next round of fetches before it returns records, and on
//! a single-threaded runtime yields to it once, so the next batch of data is
//! on its way while the application works there too (where a fetch
//! task spawned and not yet run would otherwise wait for the poll that finds
//! the buffer empty, leaving the broker idle meanwhile). A
//! partition is fetched ahead of `poll`: while `poll` reads one response,
//! the partition's next data, from where that response ends, is fetched
//! (at most [`PARTITION_FETCHES_BUFFERED_MAX`] responses per partition,
//! counting the one in flight). Without that, a single partition would
//! alternate between fetching and reading, and several partitions would
//! split into small fetches of the partitions just read out.
//!
//! A broker gets no fetch while one of its partitions has all the responses
//! it may hold: that fetch would go without the partition and, if the
//! others have no new data, wait `fetch_max_wait` on the broker, holding
//! back the partition's next fetch behind it. Instead the fetch goes out
//! once `poll` has read a response of that partition, with the partition.
//!
//! The buffer is bounded: no fetch goes out while [`FETCH_BUFFER_BYTES_MAX`]
//! bytes of fetched record sets wait to be returned.
//!
//! Buffered data is only handed out if it still fits the partition's state:
//! still assigned, and fetched at the current position (a `seek` or a
//! reassignment since makes it stale, and it is dropped).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use protocol::{ErrorCode, StrBytes};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::cluster::Cluster;
use crate::consumer::codes;
use crate::consumer::config::{AutoOffsetReset, ConsumerConfig};
use crate::consumer::decode::{FetchedRecords, RecordError};
use crate::consumer::error::PollError;
use crate::consumer::record::{ConsumerRecord, TopicPartition};
use crate::consumer::state::{AssignmentState, OffsetReset, Position};
use crate::metadata::Metadata;

/// Fetch versions we speak. From 13 topics go by id; we use those only when
/// the metadata has an id for every topic in the request.
pub const FETCH_VERSIONS: (i16, i16) = (4, 18);
/// The newest Fetch version that names topics.
const FETCH_VERSION_BY_NAME_MAX: i16 = 12;

/// Bound on fetched record bytes waiting in the consumer to be returned by
/// `poll`. No fetch is sent while it is reached; a response may overshoot it
/// by at most one `fetch_max_bytes` per broker.
pub const FETCH_BUFFER_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Fetch responses one partition may hold, buffered or in flight: the one
/// `poll` reads and the next, fetched meanwhile.
pub const PARTITION_FETCHES_BUFFERED_MAX: usize = 2;

/// What one partition of one fetch response left for `poll`.
#[derive(Debug)]
pub struct CompletedFetch {
    pub tp: TopicPartition,
    pub topic: Arc<str>,
    /// The position this data continues from; it is stale once the
    /// partition's position differs.
    pub fetch_offset: i64,
    /// Checked and decompressed batches, read into records as `poll` hands
    /// them out; `None` for a partition that answered with an error.
    pub records: Option<FetchedRecords>,
    pub error: Option<FetchFailure>,
    /// Bytes held (fetched record set and decompressed sections), for the
    /// buffer bound.
    pub bytes: usize,
    pub high_watermark: i64,
}

impl CompletedFetch {
    /// Where the partition's next fetch starts once these records are read;
    /// `None` when they end in an error, which must be reported first.
    fn resume_offset(&self) -> Option<i64> {
        if self.error.is_some() {
            return None;
        }
        match &self.records {
            Some(records) => records.resume_offset(),
            None => Some(self.fetch_offset),
        }
    }
}

/// A partition's buffered responses, oldest first, as `send_fetches` sees them.
struct BufferedFetches {
    count: usize,
    /// The position the oldest continues from.
    head_offset: i64,
    /// Where the newest ends, if it ends without an error.
    resume_offset: Option<i64>,
}

/// Each buffered partition's responses, in the order `poll` reads them.
fn buffered_fetches(
    completed: &VecDeque<CompletedFetch>,
) -> HashMap<&TopicPartition, BufferedFetches> {
    let mut out: HashMap<&TopicPartition, BufferedFetches> = HashMap::new();
    for fetch in completed {
        let b = out.entry(&fetch.tp).or_insert(BufferedFetches {
            count: 0,
            head_offset: fetch.fetch_offset,
            resume_offset: None,
        });
        b.count += 1;
        b.resume_offset = fetch.resume_offset();
    }
    out
}

/// Why a partition is or is not in the next fetch.
enum NextFetch {
    /// Fetch it from this offset.
    At(i64),
    /// It holds [`PARTITION_FETCHES_BUFFERED_MAX`] responses.
    Full,
    /// Its buffered data must be handed out or dropped first (an error to
    /// report, or data made stale by a `seek`).
    Held,
}

/// Why a partition's fetch gave no (more) records.
#[derive(Debug, Clone)]
pub enum FetchFailure {
    Code(ErrorCode),
    Record(RecordError),
}

/// One partition to fetch, as the request needs it.
#[derive(Debug, Clone)]
struct FetchTarget {
    tp: TopicPartition,
    topic: Arc<str>,
    topic_id: Uuid,
    offset: i64,
    leader_epoch: i32,
}

/// A fetch's settings, copied into its task.
#[derive(Debug, Clone, Copy)]
struct FetchSettings {
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
    partition_max_bytes: i32,
    check_crcs: bool,
}

/// What a fetch task reports (its partitions are in `Fetcher::task_targets`).
struct FetchOutcome {
    result: Result<Vec<CompletedFetch>, String>,
}

/// A fetch task that ended without an outcome (it panicked, or was
/// cancelled): a bug, which `poll` reports.
#[derive(Debug, Clone)]
pub struct FetchTaskFailure {
    pub broker_id: i32,
    pub reason: String,
}

pub struct Fetcher {
    cluster: Arc<Cluster>,
    config: Arc<ConsumerConfig>,
    in_flight: JoinSet<FetchOutcome>,
    /// Which broker each fetch task is fetching from, and which partitions.
    task_targets: HashMap<tokio::task::Id, (i32, Vec<TopicPartition>)>,
    nodes_in_flight: HashSet<i32>,
    partitions_in_flight: HashSet<TopicPartition>,
    completed: VecDeque<CompletedFetch>,
    buffered_bytes: usize,
    /// Set by errors that a new leader or leader epoch fixes.
    pub metadata_refresh_needed: bool,
    /// Rotates the partition order of requests, so that a partition whose
    /// data does not fit after the others' is first next time.
    rotation: usize,
    /// A fetch task that failed since `poll` last looked.
    task_failure: Option<FetchTaskFailure>,
    /// Test support: how many of the next fetch tasks panic, and with what.
    injected_panics: Option<(u32, String)>,
}

impl Fetcher {
    pub fn new(cluster: Arc<Cluster>, config: Arc<ConsumerConfig>) -> Fetcher {
        Fetcher {
            cluster,
            config,
            in_flight: JoinSet::new(),
            task_targets: HashMap::new(),
            nodes_in_flight: HashSet::new(),
            partitions_in_flight: HashSet::new(),
            completed: VecDeque::new(),
            buffered_bytes: 0,
            metadata_refresh_needed: false,
            rotation: 0,
            task_failure: None,
            injected_panics: None,
        }
    }

    /// Test support: the next `count` fetch tasks panic with `message`.
    pub fn inject_panics(&mut self, count: u32, message: &str) {
        self.injected_panics = (count > 0).then(|| (count, message.to_string()));
    }

    /// The failure of a fetch task since the last call, if one failed.
    pub fn take_task_failure(&mut self) -> Option<FetchTaskFailure> {
        self.task_failure.take()
    }

    /// Drops everything buffered (after the assignment was replaced).
    pub fn clear_buffer(&mut self) {
        self.completed.clear();
        self.buffered_bytes = 0;
    }

    /// Sends a fetch to every broker that leads a fetchable partition and
    /// has no fetch in flight, unless one of its partitions is full (see
    /// the module docs).
    pub fn send_fetches(&mut self, assignment: &AssignmentState, metadata: &Metadata) {
        if self.buffered_bytes >= FETCH_BUFFER_BYTES_MAX {
            return;
        }
        let now = Instant::now();
        let buffered = buffered_fetches(&self.completed);
        let mut by_node: BTreeMap<i32, Vec<FetchTarget>> = BTreeMap::new();
        let mut deferred: HashSet<i32> = HashSet::new();
        for (tp, state) in assignment.iter() {
            if !state.fetchable(now) || self.partitions_in_flight.contains(tp) {
                continue;
            }
            let position = state
                .position
                .expect("fetchable partitions have a position");
            let next = match buffered.get(tp) {
                None => NextFetch::At(position.offset),
                Some(b) if b.head_offset != position.offset => NextFetch::Held,
                Some(b) if b.count >= PARTITION_FETCHES_BUFFERED_MAX => NextFetch::Full,
                Some(b) => b.resume_offset.map_or(NextFetch::Held, NextFetch::At),
            };
            if matches!(next, NextFetch::Held) {
                continue;
            }
            let Some(topic) = metadata.topic(&tp.topic) else {
                self.metadata_refresh_needed = true;
                continue;
            };
            let Some(partition) = usize::try_from(tp.partition)
                .ok()
                .and_then(|i| topic.partitions.get(i))
            else {
                self.metadata_refresh_needed = true;
                continue;
            };
            let Some(leader) = partition
                .leader_id
                .filter(|id| metadata.brokers.contains_key(id))
            else {
                self.metadata_refresh_needed = true;
                continue;
            };
            if self.nodes_in_flight.contains(&leader) {
                continue;
            }
            let NextFetch::At(offset) = next else {
                deferred.insert(leader);
                continue;
            };
            by_node.entry(leader).or_default().push(FetchTarget {
                tp: tp.clone(),
                topic: state.topic.clone(),
                topic_id: topic.topic_id,
                offset,
                leader_epoch: partition.leader_epoch,
            });
        }
        by_node.retain(|node_id, _| !deferred.contains(node_id));
        let settings = FetchSettings {
            max_wait_ms: self.config.fetch_max_wait.as_millis().min(i32::MAX as u128) as i32,
            min_bytes: self.config.fetch_min_bytes,
            max_bytes: self.config.fetch_max_bytes,
            partition_max_bytes: self.config.max_partition_fetch_bytes,
            check_crcs: self.config.check_crcs,
        };
        for (node_id, mut targets) in by_node {
            self.rotation = self.rotation.wrapping_add(1);
            let shift = self.rotation % targets.len();
            targets.rotate_left(shift);
            for target in &targets {
                self.partitions_in_flight.insert(target.tp.clone());
            }
            self.nodes_in_flight.insert(node_id);
            let cluster = self.cluster.clone();
            let partitions: Vec<TopicPartition> = targets.iter().map(|t| t.tp.clone()).collect();
            let injected_panic = self.injected_panics.as_mut().map(|(count, message)| {
                *count -= 1;
                message.clone()
            });
            if self
                .injected_panics
                .as_ref()
                .is_some_and(|(count, _)| *count == 0)
            {
                self.injected_panics = None;
            }
            let handle = self.in_flight.spawn(async move {
                if let Some(message) = injected_panic {
                    panic!("{message}");
                }
                fetch_from(cluster, node_id, targets, settings).await
            });
            self.task_targets.insert(handle.id(), (node_id, partitions));
        }
    }

    /// Waits for the next fetch to finish and buffers its data. Pending
    /// forever when nothing is in flight (for use in `select!`).
    pub async fn wait_for_fetch(&mut self, assignment: &mut AssignmentState) {
        let Some(joined) = self.in_flight.join_next_with_id().await else {
            return std::future::pending().await;
        };
        self.fetch_finished(joined, assignment);
    }

    /// Buffers the data of every fetch that finished since the last look,
    /// without waiting.
    pub fn drain_finished(&mut self, assignment: &mut AssignmentState) {
        while let Some(joined) = self.in_flight.try_join_next_with_id() {
            self.fetch_finished(joined, assignment);
        }
    }

    fn fetch_finished(
        &mut self,
        joined: Result<(tokio::task::Id, FetchOutcome), tokio::task::JoinError>,
        assignment: &mut AssignmentState,
    ) {
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, Ok(outcome)),
            Err(e) => (e.id(), Err(e)),
        };
        let (node_id, partitions) = self
            .task_targets
            .remove(&id)
            .expect("every fetch task is listed");
        self.nodes_in_flight.remove(&node_id);
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                // Nothing was fetched, so no position moved: the partitions
                // are fetched again after a backoff. The failure is a bug
                // (a panic); `poll` reports it rather than returning nothing
                // for as long as it repeats.
                let reason = crate::join_error_reason("fetch task", error);
                tracing::error!(broker_id = node_id, %reason, "fetch task failed");
                let retry_at = Instant::now() + self.config.retry_backoff;
                for tp in &partitions {
                    self.partitions_in_flight.remove(tp);
                    if let Some(state) = assignment.get_mut(tp) {
                        state.retry_at = Some(retry_at);
                    }
                }
                self.task_failure = Some(FetchTaskFailure {
                    broker_id: node_id,
                    reason,
                });
                return;
            }
        };
        for tp in &partitions {
            self.partitions_in_flight.remove(tp);
        }
        match outcome.result {
            Ok(completed) => {
                for fetch in completed {
                    self.buffered_bytes += fetch.bytes;
                    self.completed.push_back(fetch);
                }
            }
            Err(reason) => {
                tracing::debug!(%reason, partitions = partitions.len(), "fetch failed; backing off");
                self.metadata_refresh_needed = true;
                let retry_at = Instant::now() + self.config.retry_backoff;
                for tp in &partitions {
                    if let Some(state) = assignment.get_mut(tp) {
                        state.retry_at = Some(retry_at);
                    }
                }
            }
        }
    }

    fn remove_completed(&mut self, index: usize) {
        if let Some(fetch) = self.completed.remove(index) {
            assert!(
                self.buffered_bytes >= fetch.bytes,
                "buffered bytes {} below a buffered fetch's {}",
                self.buffered_bytes,
                fetch.bytes
            );
            self.buffered_bytes -= fetch.bytes;
        }
    }

    /// Takes up to `max` buffered records, moving positions past them, and
    /// notes in `before` where each partition that gave records stood
    /// before them (the records are handed out later; see `undelivered`).
    /// An error (out of range without a reset policy, an undecodable batch)
    /// is returned once the records before it have been taken.
    pub fn collect(
        &mut self,
        assignment: &mut AssignmentState,
        max: usize,
        reset_policy: AutoOffsetReset,
        before: &mut Vec<(TopicPartition, Position)>,
    ) -> Result<Vec<ConsumerRecord>, PollError> {
        let mut out: Vec<ConsumerRecord> = Vec::new();
        let mut index = 0;
        while index < self.completed.len() && out.len() < max {
            let fetch = &mut self.completed[index];
            let Some(state) = assignment.get_mut(&fetch.tp) else {
                self.remove_completed(index);
                continue;
            };
            if state.paused {
                index += 1;
                continue;
            }
            if state.position.map(|p| p.offset) != Some(fetch.fetch_offset) {
                self.remove_completed(index);
                continue;
            }
            if fetch.high_watermark >= 0 {
                state.high_watermark = Some(fetch.high_watermark);
            }
            if let Some(records) = fetch.records.as_mut() {
                let want = max - out.len();
                out.reserve(want.min(records.remaining_records()));
                let got = records.read_into(
                    &fetch.topic,
                    fetch.tp.partition,
                    fetch.fetch_offset,
                    want,
                    &mut out,
                );
                if got > 0 {
                    let previous = state.position.expect("matched above");
                    if !before.iter().any(|(tp, _)| *tp == fetch.tp) {
                        before.push((fetch.tp.clone(), previous));
                    }
                    let last = out.last().expect("read at least one record");
                    // Positions only move forward, and only past returned records.
                    assert!(
                        last.offset >= fetch.fetch_offset,
                        "{}: returned offset {} below the position {}",
                        fetch.tp,
                        last.offset,
                        fetch.fetch_offset
                    );
                    let position = Position {
                        offset: last.offset.saturating_add(1),
                        leader_epoch: last.leader_epoch,
                    };
                    state.position = Some(position);
                    fetch.fetch_offset = position.offset;
                }
                if !records.is_exhausted() {
                    // `out` is full; the rest waits for the next poll.
                    break;
                }
                // Every record is out: move past what followed them
                // (control batches, compacted gaps), up to a failure.
                let position = state.position.expect("matched above");
                if records.next_offset > position.offset {
                    state.position = Some(Position {
                        offset: records.next_offset,
                        leader_epoch: position.leader_epoch,
                    });
                    fetch.fetch_offset = records.next_offset;
                }
                if let Some((_, error)) = records.error.take() {
                    fetch.error = Some(FetchFailure::Record(error));
                }
                fetch.records = None;
            }
            let Some(failure) = fetch.error.clone() else {
                self.remove_completed(index);
                continue;
            };
            if !out.is_empty() {
                // Hand out what came before the error; report it next time.
                break;
            }
            let tp = fetch.tp.clone();
            let offset = fetch.fetch_offset;
            self.remove_completed(index);
            match failure {
                FetchFailure::Record(error) => {
                    return Err(PollError::Record {
                        topic: tp.topic,
                        partition: tp.partition,
                        offset,
                        error,
                    })
                }
                FetchFailure::Code(code) if code == ErrorCode::OFFSET_OUT_OF_RANGE => {
                    match reset_policy {
                        AutoOffsetReset::None => {
                            return Err(PollError::OffsetOutOfRange {
                                topic: tp.topic,
                                partition: tp.partition,
                                offset,
                            })
                        }
                        AutoOffsetReset::Earliest | AutoOffsetReset::Latest => {
                            tracing::info!(partition = %tp, offset, policy = ?reset_policy, "fetch offset out of range; resetting");
                            state.reset = Some(if reset_policy == AutoOffsetReset::Earliest {
                                OffsetReset::Earliest
                            } else {
                                OffsetReset::Latest
                            });
                        }
                    }
                }
                FetchFailure::Code(code)
                    if codes::needs_metadata_refresh(code) || code.is_retriable() =>
                {
                    tracing::debug!(partition = %tp, %code, "fetch error; refreshing metadata and retrying");
                    self.metadata_refresh_needed = true;
                    state.retry_at = Some(Instant::now() + self.config.retry_backoff);
                }
                FetchFailure::Code(code) => {
                    return Err(PollError::Fetch {
                        topic: tp.topic,
                        partition: tp.partition,
                        code,
                    })
                }
            }
        }
        Ok(out)
    }
}

/// One fetch: send, wait, decode every partition into records.
async fn fetch_from(
    cluster: Arc<Cluster>,
    node_id: i32,
    targets: Vec<FetchTarget>,
    settings: FetchSettings,
) -> FetchOutcome {
    let result = fetch_and_decode(&cluster, node_id, &targets, settings).await;
    FetchOutcome { result }
}

async fn fetch_and_decode(
    cluster: &Cluster,
    node_id: i32,
    targets: &[FetchTarget],
    settings: FetchSettings,
) -> Result<Vec<CompletedFetch>, String> {
    let connection = cluster
        .broker_connection(node_id)
        .await
        .map_err(|e| e.to_string())?;
    let by_id = targets.iter().all(|t| !t.topic_id.is_nil());
    let newest = if by_id {
        FETCH_VERSIONS.1
    } else {
        FETCH_VERSION_BY_NAME_MAX
    };
    let version = connection
        .version_within::<FetchRequest>((FETCH_VERSIONS.0, newest))
        .ok_or_else(|| {
            format!(
                "{} serves no Fetch version in {:?}",
                connection.addr(),
                (FETCH_VERSIONS.0, newest)
            )
        })?;
    let by_id = by_id && version >= 13;
    // Topics in the order their first partition appears (the rotation).
    let mut topics: Vec<FetchTopic> = Vec::new();
    let mut slots: HashMap<&str, usize> = HashMap::new();
    for target in targets {
        let slot = *slots.entry(&target.tp.topic).or_insert_with(|| {
            topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(target.tp.topic.clone())))
                    .with_topic_id(target.topic_id),
            );
            topics.len() - 1
        });
        topics[slot].partitions.push(
            FetchPartition::default()
                .with_partition(target.tp.partition)
                .with_fetch_offset(target.offset)
                .with_current_leader_epoch(target.leader_epoch)
                .with_partition_max_bytes(settings.partition_max_bytes),
        );
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(settings.max_wait_ms)
        .with_min_bytes(settings.min_bytes)
        .with_max_bytes(settings.max_bytes)
        .with_isolation_level(0)
        // No fetch session (the broker keeps none): a full fetch every time.
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics);
    let pending = connection
        .send_request(ApiKey::Fetch, version, &request, true)
        .await
        .map_err(|e| e.to_string())?;
    let frame = pending
        .wait(None)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no response frame")?;
    let (_, response): (i32, FetchResponse) =
        protocol::header::decode_response(ApiKey::Fetch, version, frame)
            .map_err(|e| format!("cannot decode Fetch v{version}: {e}"))?;
    let top_level = ErrorCode(response.error_code);
    let wanted: HashMap<(&str, i32), &FetchTarget> = targets
        .iter()
        .map(|t| ((t.tp.topic.as_str(), t.tp.partition), t))
        .collect();
    let names_by_id: HashMap<Uuid, &str> = targets
        .iter()
        .map(|t| (t.topic_id, t.tp.topic.as_str()))
        .collect();
    let mut completed = Vec::with_capacity(targets.len());
    if !top_level.is_ok() {
        for target in targets {
            completed.push(failed(target, FetchFailure::Code(top_level)));
        }
        return Ok(completed);
    }
    for topic in response.responses {
        let name: &str = if by_id {
            match names_by_id.get(&topic.topic_id) {
                Some(name) => name,
                None => continue,
            }
        } else {
            topic.topic.0.as_str()
        };
        for partition in topic.partitions {
            let Some(target) = wanted.get(&(name, partition.partition_index)) else {
                continue;
            };
            let code = ErrorCode(partition.error_code);
            if !code.is_ok() {
                completed.push(failed(target, FetchFailure::Code(code)));
                continue;
            }
            let record_set = partition.records.unwrap_or_default();
            let records = FetchedRecords::prepare(target.offset, &record_set, settings.check_crcs);
            completed.push(CompletedFetch {
                tp: target.tp.clone(),
                topic: target.topic.clone(),
                fetch_offset: target.offset,
                bytes: record_set.len() + records.decompressed_bytes,
                records: Some(records),
                error: None,
                high_watermark: partition.high_watermark,
            });
        }
    }
    Ok(completed)
}

fn failed(target: &FetchTarget, failure: FetchFailure) -> CompletedFetch {
    CompletedFetch {
        tp: target.tp.clone(),
        topic: target.topic.clone(),
        fetch_offset: target.offset,
        records: None,
        error: Some(failure),
        bytes: 0,
        high_watermark: -1,
    }
}
