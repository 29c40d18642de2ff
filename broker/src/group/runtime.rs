//! The thin runtime around the coordinator state machines: one
//! [`Coordinator`] per `__consumer_offsets` partition (a "shard"), each
//! behind its own lock.
//!
//! - `__consumer_offsets` is asked of the controller on first use (as Kafka
//!   does); a shard per partition is installed when the topic appears in the
//!   metadata, and loaded at startup in the background; a partition still loading
//!   answers `ErrorCode::COORDINATOR_LOAD_IN_PROGRESS`. Loading and unloading are per
//!   partition ([`GroupCoordinator::become_leader`],
//!   [`GroupCoordinator::resign`]), ready for leadership moves.
//! - Feeds each request to its group's shard and performs the commands: a
//!   reply goes to the request's channel; an append becomes one record batch
//!   appended to the partition, its outcome fed back before the lock is released,
//!   so records reach the log in the order the state machine made them.
//! - A timer task sends `Tick` at the earliest deadline of any shard and runs
//!   the offset-retention pass every `offsets.retention.check.interval.ms`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use protocol::batch::{batches, decode_records, BatchBuilder, BatchHeader, Record};
use protocol::ErrorCode;
use tokio::sync::{oneshot, Notify};

use crate::errors::KafkaErrorCode;
use crate::group::coordinator::{
    Command, Coordinator, Event, MemberIds, OffsetsRecord, RecordValue,
};
use crate::group::load::{LoadError, Loader};
use crate::group::messages::*;
use crate::group::records;
use crate::group::{partition_for, GroupConfig, OFFSETS_TOPIC};
use crate::partition::{AppendError, Partition, ReadBound};
use crate::storage::StorageError;
use crate::Broker;

/// Bytes read at a time while loading a partition.
const LOAD_READ_BYTES: usize = 4 << 20;
/// How long the timer task sleeps when no deadline is set (it is woken earlier on any change).
const IDLE_WAKE_INTERVAL: Duration = Duration::from_secs(60);

/// How a waiting request is answered.
pub type Replier = oneshot::Sender<Response>;

/// A response now, or one to wait for (a JoinGroup in a rebalance, a
/// SyncGroup waiting for the leader).
pub enum Pending {
    Ready(Response),
    Waiting(oneshot::Receiver<Response>),
}

enum ShardState {
    Loading,
    Active(Box<Coordinator<Replier>>),
    /// Loading failed (logged); the partition's groups are unavailable.
    Failed,
    /// Another broker leads this partition (once replication exists).
    NotLeader,
}

impl ShardState {
    /// The error a request gets when the shard cannot serve it.
    fn unavailable(&self) -> ErrorCode {
        match self {
            ShardState::Loading => ErrorCode::COORDINATOR_LOAD_IN_PROGRESS,
            ShardState::Active(_) => ErrorCode::NONE,
            ShardState::Failed => ErrorCode::COORDINATOR_NOT_AVAILABLE,
            ShardState::NotLeader => ErrorCode::NOT_COORDINATOR,
        }
    }
}

struct Shard {
    index: i32,
    /// The partition's log when this broker hosts it; a shard without one
    /// stays `NotLeader` (another broker coordinates its groups).
    partition: Option<Arc<Partition>>,
    state: Mutex<ShardState>,
    /// A load is under way: another one (startup's and a leadership
    /// change's may meet) returns at once instead of loading twice.
    loading: std::sync::atomic::AtomicBool,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, ShardState> {
        self.state
            .lock()
            .expect("coordinator shard lock poisoned by an earlier panic")
    }
}

#[derive(Debug, thiserror::Error)]
enum LoadPartitionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("batch at offset {offset}: {reason}")]
    Batch { offset: i64, reason: String },
    #[error(transparent)]
    Records(#[from] LoadError),
}

pub struct GroupCoordinator {
    config: GroupConfig,
    /// One per partition of `__consumer_offsets`, once the topic exists.
    shards: OnceLock<Vec<Arc<Shard>>>,
    /// Woken when a shard's earliest deadline moved earlier.
    deadlines_changed: Notify,
    /// Largest batch the coordinator appends (the broker's `message.max.bytes`).
    batch_bytes_max: usize,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig, batch_bytes_max: usize) -> Self {
        GroupCoordinator {
            config,
            shards: OnceLock::new(),
            deadlines_changed: Notify::new(),
            batch_bytes_max,
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Starts the coordinator of a running broker: loads the partitions of
    /// `__consumer_offsets` still loading, in the background, and starts the timer task.
    pub fn start(broker: &Arc<Broker>) -> tokio::task::JoinHandle<()> {
        let groups = &broker.groups;
        if let Some(shards) = groups.shards.get() {
            if shards.len() as i32 != groups.config.offsets_topic_partitions {
                tracing::warn!(
                    existing = shards.len(),
                    configured = groups.config.offsets_topic_partitions,
                    "{OFFSETS_TOPIC} keeps its existing partition count; offsets.topic.num.partitions applies only when it is created"
                );
            }
            for shard in shards
                .iter()
                .filter(|s| matches!(*s.lock(), ShardState::Loading))
            {
                let broker = broker.clone();
                let shard = shard.clone();
                tokio::task::spawn_blocking(move || broker.groups.load(&shard));
            }
        }
        tokio::spawn(drive_deadlines(broker.clone()))
    }

    /// The offsets topic now exists with `count` partitions, of which
    /// `local` are hosted here: one shard per partition, `Loading` where this
    /// broker leads, `NotLeader` elsewhere (those groups are coordinated by
    /// the partition's leader). An empty partition (a topic created just now)
    /// is loaded at once, so the request that asked for the topic is
    /// served; others load in the background once the broker starts.
    pub fn offsets_topic_created(&self, count: usize, local: &[Arc<Partition>]) {
        let shards: Vec<Arc<Shard>> = (0..count as i32)
            .map(|index| {
                let partition = local.iter().find(|p| p.index == index).cloned();
                let state = match &partition {
                    Some(p) if p.is_leader() => ShardState::Loading,
                    _ => ShardState::NotLeader,
                };
                Arc::new(Shard {
                    index,
                    partition,
                    state: Mutex::new(state),
                    loading: std::sync::atomic::AtomicBool::new(false),
                })
            })
            .collect();
        let installed = self.shards.set(shards.clone()).is_ok();
        assert!(installed, "the offsets topic's shards are installed once");
        for shard in shards {
            let fresh = shard
                .partition
                .as_ref()
                .is_some_and(|p| p.is_leader() && p.log_end_offset() == p.log_start_offset());
            if fresh {
                self.load(&shard);
            }
        }
    }

    /// The `__consumer_offsets` partition that coordinates `group_id`, once the topic exists.
    pub fn partition_of(&self, group_id: &str) -> Option<i32> {
        let shards = self.shards.get()?;
        Some(partition_for(group_id, shards.len() as i32))
    }

    /// Whether `__consumer_offsets` exists (its shards are installed).
    pub fn has_offsets_topic(&self) -> bool {
        self.shards.get().is_some()
    }

    /// What `__consumer_offsets` is created with, when `live_brokers` are
    /// alive. Its records must outlive any time-based deletion, so it asks
    /// for `cleanup.policy=compact` (the latest record per key is all the
    /// coordinator needs).
    pub fn offsets_topic(&self, live_brokers: usize) -> crate::controller::NewTopic {
        let live = i16::try_from(live_brokers).unwrap_or(i16::MAX).max(1);
        crate::controller::NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: self.config.offsets_topic_partitions,
            replication_factor: self.config.offsets_topic_replication_factor.min(live),
            assignments: Vec::new(),
            configs: BTreeMap::from([
                ("cleanup.policy".to_string(), "compact".to_string()),
                (
                    "segment.bytes".to_string(),
                    self.config.offsets_topic_segment_bytes.to_string(),
                ),
            ]),
        }
    }

    /// `group_id`'s shard; `None` while `__consumer_offsets` does not exist.
    fn shard_for(&self, group_id: &str) -> Result<Option<Arc<Shard>>, ErrorCode> {
        let Some(shards) = self.shards.get() else {
            return Ok(None);
        };
        let index = partition_for(group_id, shards.len() as i32);
        Ok(Some(shards[index as usize].clone()))
    }

    /// The `__consumer_offsets` partition of `group_id` if this broker can
    /// coordinate it now (FindCoordinator), creating the topic on first use.
    pub fn coordinator_status(&self, group_id: &str) -> Result<i32, ErrorCode> {
        let shard = self
            .shard_for(group_id)?
            .ok_or(ErrorCode::COORDINATOR_NOT_AVAILABLE)?;
        let state = shard.lock();
        match &*state {
            ShardState::Active(_) => Ok(shard.index),
            other => Err(other.unavailable()),
        }
    }

    /// Loads (or reloads) one partition: the shard answers
    /// `ErrorCode::COORDINATOR_LOAD_IN_PROGRESS` meanwhile. Blocking; called at
    /// startup and when this broker becomes the partition's leader.
    fn load(&self, shard: &Shard) {
        use std::sync::atomic::Ordering;
        if shard.loading.swap(true, Ordering::AcqRel) {
            return;
        }
        self.load_once(shard);
        shard.loading.store(false, Ordering::Release);
    }

    fn load_once(&self, shard: &Shard) {
        {
            let mut state = shard.lock();
            if let ShardState::Active(_) = &*state {
                return;
            }
            *state = ShardState::Loading;
        }
        let Some(partition) = &shard.partition else {
            *shard.lock() = ShardState::NotLeader;
            return;
        };
        let started = std::time::Instant::now();
        let now_ms = crate::now_ms();
        let result = load_partition(partition, &self.config, now_ms);
        let mut state = shard.lock();
        match result {
            Ok((coordinator, loader_counts)) => {
                if coordinator.group_count() > 0 || loader_counts > 0 {
                    tracing::info!(
                        partition = shard.index,
                        groups = coordinator.group_count(),
                        records = loader_counts,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "loaded groups and offsets from {OFFSETS_TOPIC}"
                    );
                }
                *state = ShardState::Active(Box::new(coordinator));
            }
            Err(e) => {
                tracing::error!(partition = shard.index, error = %e, "cannot load {OFFSETS_TOPIC}; its groups are unavailable");
                *state = ShardState::Failed;
            }
        }
        drop(state);
        self.deadlines_changed.notify_one();
    }

    /// This broker became the leader of offsets partition `index`: load its groups.
    pub fn become_leader(&self, index: i32) {
        if let Some(shard) = self.shards.get().and_then(|s| s.get(index as usize)) {
            self.load(shard);
        }
    }

    /// This broker leads offsets partition `index` from now on and its groups
    /// are about to load ([`GroupCoordinator::become_leader`], off the caller's
    /// thread): until they are, requests get `COORDINATOR_LOAD_IN_PROGRESS`,
    /// not `NOT_COORDINATOR`.
    pub fn loading(&self, index: i32) {
        if let Some(shard) = self.shards.get().and_then(|s| s.get(index as usize)) {
            let mut state = shard.lock();
            if !matches!(*state, ShardState::Active(_)) {
                *state = ShardState::Loading;
            }
        }
    }

    /// This broker is no longer the leader of offsets partition `index`:
    /// drop its groups, answering waiting requests `ErrorCode::NOT_COORDINATOR`.
    pub fn resign(&self, index: i32) {
        let Some(shard) = self.shards.get().and_then(|s| s.get(index as usize)) else {
            return;
        };
        let previous = std::mem::replace(&mut *shard.lock(), ShardState::NotLeader);
        if let ShardState::Active(coordinator) = previous {
            for command in coordinator.unload() {
                if let Command::Reply { to, response } = command {
                    let _ = to.send(response);
                }
            }
        }
    }

    /// Feeds one event to `group_id`'s shard and performs the commands.
    fn submit(
        &self,
        group_id: &str,
        event: impl FnOnce(Replier) -> Event<Replier>,
    ) -> Result<Pending, ErrorCode> {
        let shard = self
            .shard_for(group_id)?
            .ok_or(ErrorCode::COORDINATOR_NOT_AVAILABLE)?;
        let (reply, mut answer) = oneshot::channel();
        self.with_active(&shard, |coordinator, now_ms| {
            coordinator.handle(event(reply), now_ms)
        })?;
        match answer.try_recv() {
            Ok(response) => Ok(Pending::Ready(response)),
            Err(oneshot::error::TryRecvError::Empty) => Ok(Pending::Waiting(answer)),
            Err(oneshot::error::TryRecvError::Closed) => {
                tracing::error!(
                    group = group_id,
                    "the coordinator dropped a request without answering it"
                );
                Err(ErrorCode::UNKNOWN_SERVER_ERROR)
            }
        }
    }

    /// Runs `step` on the shard's state machine if it is active, performs
    /// the commands it returns, and wakes the timer task if a deadline moved earlier.
    fn with_active(
        &self,
        shard: &Shard,
        step: impl FnOnce(&mut Coordinator<Replier>, i64) -> Vec<Command<Replier>>,
    ) -> Result<(), ErrorCode> {
        let mut state = shard.lock();
        let ShardState::Active(coordinator) = &mut *state else {
            return Err(state.unavailable());
        };
        let now_ms = crate::now_ms();
        let before = coordinator.next_deadline();
        let commands = step(coordinator, now_ms);
        self.perform(shard, coordinator, commands, now_ms);
        let after = coordinator.next_deadline();
        drop(state);
        if after.is_some_and(|a| before.is_none_or(|b| a < b)) {
            self.deadlines_changed.notify_one();
        }
        Ok(())
    }

    fn perform(
        &self,
        shard: &Shard,
        coordinator: &mut Coordinator<Replier>,
        commands: Vec<Command<Replier>>,
        now_ms: i64,
    ) {
        let mut queue = VecDeque::from(commands);
        // Where the log ended after this step's last append: an offset commit
        // or an assignment answered after it waits until the ISR has it.
        let mut appended_to = None;
        while let Some(command) = queue.pop_front() {
            match command {
                Command::Reply { to, response } => match (appended_to, &shard.partition) {
                    (Some(end), Some(partition)) if waits_for_replication(&response) => {
                        reply_once_replicated(
                            partition.clone(),
                            end,
                            to,
                            response,
                            Duration::from_millis(self.config.offsets_commit_timeout_ms),
                        );
                    }
                    // A closed channel means the client went away; nothing to do.
                    _ => {
                        let _ = to.send(response);
                    }
                },
                Command::Append {
                    write,
                    records,
                    timestamp_ms,
                } => {
                    let result = self.append(shard, &records, timestamp_ms);
                    if result.is_ok() {
                        appended_to = shard.partition.as_ref().map(|p| p.log_end_offset());
                    }
                    queue.extend(
                        coordinator.handle(Event::AppendCompleted { write, result }, now_ms),
                    );
                }
            }
        }
        assert_eq!(
            coordinator.writes_in_flight(),
            0,
            "appends complete before the shard lock is released"
        );
    }

    /// Appends the records as one uncompressed batch to the shard's partition.
    fn append(
        &self,
        shard: &Shard,
        records: &[OffsetsRecord],
        timestamp_ms: i64,
    ) -> Result<(), ErrorCode> {
        let mut builder = BatchBuilder::new();
        for record in records {
            builder.push(&Record {
                key: Some(records::encode_key(&record.key)),
                value: record.value.as_ref().map(|value| match value {
                    RecordValue::OffsetCommit(v) => records::encode_offset_commit_value(v),
                    RecordValue::GroupMetadata(v) => records::encode_group_metadata_value(v),
                }),
                headers: Vec::new(),
                timestamp: timestamp_ms,
            });
        }
        if builder.size_bytes() > self.batch_bytes_max {
            tracing::warn!(
                partition = shard.index,
                bytes = builder.size_bytes(),
                max = self.batch_bytes_max,
                "coordinator batch exceeds message.max.bytes"
            );
            return Err(ErrorCode::MESSAGE_TOO_LARGE);
        }
        let Some(partition) = &shard.partition else {
            return Err(ErrorCode::NOT_COORDINATOR);
        };
        // Group writes are acks=all writes: below min.insync.replicas they
        // are refused, with the retriable code Kafka's coordinator gives.
        if partition.check_acks_all().is_err() {
            tracing::warn!(
                partition = shard.index,
                "{OFFSETS_TOPIC} has too few in-sync replicas for a group write"
            );
            return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        match partition.append_as_leader(&builder.build(), timestamp_ms) {
            Ok(_) => Ok(()),
            // Retriable: the client finds the coordinator again.
            Err(AppendError::NotLeader { .. } | AppendError::LeaseLapsed) => {
                Err(ErrorCode::NOT_COORDINATOR)
            }
            Err(AppendError::Storage(e)) => {
                tracing::error!(partition = shard.index, error = %e, "cannot append to {OFFSETS_TOPIC}");
                Err(e.error_code())
            }
            Err(e) => {
                tracing::error!(partition = shard.index, error = %e, "cannot append to {OFFSETS_TOPIC}");
                Err(ErrorCode::UNKNOWN_SERVER_ERROR)
            }
        }
    }

    // ---- requests -------------------------------------------------------------

    pub fn join_group(&self, request: JoinGroup) -> Result<Pending, ErrorCode> {
        let group_id = request.group_id.clone();
        self.submit(&group_id, |reply| Event::JoinGroup { reply, request })
    }

    pub fn sync_group(&self, request: SyncGroup) -> Result<Pending, ErrorCode> {
        let group_id = request.group_id.clone();
        self.submit(&group_id, |reply| Event::SyncGroup { reply, request })
    }

    pub fn heartbeat(&self, request: Heartbeat) -> Result<Pending, ErrorCode> {
        let group_id = request.group_id.clone();
        self.submit(&group_id, |reply| Event::Heartbeat { reply, request })
    }

    pub fn leave_group(&self, request: LeaveGroup) -> Result<Pending, ErrorCode> {
        let group_id = request.group_id.clone();
        self.submit(&group_id, |reply| Event::LeaveGroup { reply, request })
    }

    pub fn offset_commit(&self, request: OffsetCommit) -> Result<Pending, ErrorCode> {
        let group_id = request.group_id.clone();
        self.submit(&group_id, |reply| Event::OffsetCommit { reply, request })
    }

    pub fn delete_group(&self, group_id: String) -> Result<Pending, ErrorCode> {
        let key = group_id.clone();
        self.submit(&key, |reply| Event::DeleteGroup { reply, group_id })
    }

    pub fn offset_delete(&self, request: OffsetDelete) -> Result<Pending, ErrorCode> {
        let group_id = request.group_id.clone();
        self.submit(&group_id, |reply| Event::OffsetDelete { reply, request })
    }

    /// Reads from `group_id`'s shard without changing it; `None` for a group
    /// whose offsets topic does not exist yet (so nothing is known about it).
    fn read<T>(
        &self,
        group_id: &str,
        read: impl FnOnce(&Coordinator<Replier>) -> T,
    ) -> Result<Option<T>, ErrorCode> {
        let Some(shard) = self.shard_for(group_id)? else {
            return Ok(None);
        };
        let state = shard.lock();
        match &*state {
            ShardState::Active(coordinator) => Ok(Some(read(coordinator))),
            other => Err(other.unavailable()),
        }
    }

    pub fn fetch_offsets(
        &self,
        group_id: &str,
        wanted: Option<&[(String, Vec<i32>)]>,
    ) -> Result<FetchedOffsets, ErrorCode> {
        let empty = Coordinator::<Replier>::new(self.config.clone(), MemberIds::Random);
        Ok(
            match self.read(group_id, |c| c.fetch_offsets(group_id, wanted))? {
                Some(fetched) => fetched,
                None => empty.fetch_offsets(group_id, wanted),
            },
        )
    }

    pub fn describe_group(&self, group_id: &str) -> Result<Option<GroupDescription>, ErrorCode> {
        Ok(self
            .read(group_id, |c| c.describe_group(group_id))?
            .flatten())
    }

    /// Every group of every loaded partition; the error says some partition
    /// could not be listed (still loading, failed).
    pub fn list_groups(&self) -> (ErrorCode, Vec<ListedGroup>) {
        let mut error = ErrorCode::NONE;
        let mut groups = Vec::new();
        for shard in self.shards.get().map(Vec::as_slice).unwrap_or_default() {
            let state = shard.lock();
            match &*state {
                ShardState::Active(coordinator) => groups.extend(coordinator.list_groups()),
                ShardState::NotLeader => {}
                other => error = other.unavailable(),
            }
        }
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        (error, groups)
    }

    // ---- time -----------------------------------------------------------------

    fn next_deadline(&self) -> Option<i64> {
        self.shards
            .get()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|shard| match &*shard.lock() {
                ShardState::Active(coordinator) => coordinator.next_deadline(),
                _ => None,
            })
            .min()
    }

    /// Fires due deadlines in every shard.
    fn tick(&self) {
        for shard in self.shards.get().map(Vec::as_slice).unwrap_or_default() {
            let _ = self.with_active(shard, |coordinator, now_ms| {
                coordinator.handle(Event::Tick, now_ms)
            });
        }
    }

    /// Forgets every group's committed offsets of `topic`, which was just deleted.
    pub fn topic_deleted(&self, topic: &str) {
        for shard in self.shards.get().map(Vec::as_slice).unwrap_or_default() {
            let _ = self.with_active(shard, |coordinator, now_ms| {
                coordinator.handle(
                    Event::TopicDeleted {
                        topic: topic.to_string(),
                    },
                    now_ms,
                )
            });
        }
    }

    /// The offset-retention pass over every shard.
    fn expire_offsets(&self) {
        for shard in self.shards.get().map(Vec::as_slice).unwrap_or_default() {
            let _ = self.with_active(shard, |coordinator, now_ms| {
                coordinator.handle(Event::ExpireOffsets, now_ms)
            });
        }
    }
}

/// Reads a partition from its log start to its end and rebuilds its groups.
fn load_partition(
    partition: &Partition,
    config: &GroupConfig,
    now_ms: i64,
) -> Result<(Coordinator<Replier>, usize), LoadPartitionError> {
    let mut loader = Loader::default();
    let end = partition.log_end_offset();
    let mut offset = partition.log_start_offset();
    while offset < end {
        let read = partition.read(offset, LOAD_READ_BYTES, ReadBound::LogEnd, true)?;
        if read.records.is_empty() {
            break;
        }
        let before = offset;
        for batch in batches(&read.records) {
            let header = BatchHeader::new(&batch).map_err(|e| LoadPartitionError::Batch {
                offset,
                reason: e.to_string(),
            })?;
            let last_offset = header.last_offset();
            if last_offset < offset {
                continue;
            }
            if !header.is_control() {
                let decoded = decode_records(&batch).map_err(|e| LoadPartitionError::Batch {
                    offset: header.base_offset(),
                    reason: e.to_string(),
                })?;
                for record in decoded.iter().filter(|r| r.offset >= offset) {
                    loader.replay(
                        record.offset,
                        record.key.as_deref(),
                        record.value.as_deref(),
                    )?;
                }
            }
            offset = last_offset + 1;
        }
        if offset == before {
            // The read returned bytes but no whole batch: the log is damaged here.
            return Err(LoadPartitionError::Batch {
                offset,
                reason: "no complete batch where one should start".to_string(),
            });
        }
    }
    let replayed = loader.replayed;
    if loader.skipped > 0 {
        tracing::info!(
            partition = partition.index,
            skipped = loader.skipped,
            "skipped records of unknown types"
        );
    }
    Ok((
        loader.finish(config.clone(), MemberIds::Random, now_ms)?,
        replayed,
    ))
}

/// The timer task: ticks shards at their deadlines and runs offset expiry.
async fn drive_deadlines(broker: Arc<Broker>) {
    let groups = &broker.groups;
    let mut expiry = tokio::time::interval(Duration::from_millis(
        groups.config.offsets_retention_check_interval_ms.max(1),
    ));
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wait = match groups.next_deadline() {
            Some(at_ms) => {
                Duration::from_millis(at_ms.saturating_sub(crate::now_ms()).max(0) as u64)
            }
            None => IDLE_WAKE_INTERVAL,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                let broker = broker.clone();
                let _ = tokio::task::spawn_blocking(move || broker.groups.tick()).await;
            }
            _ = groups.deadlines_changed.notified() => {}
            _ = expiry.tick() => {
                let broker = broker.clone();
                let _ = tokio::task::spawn_blocking(move || broker.groups.expire_offsets()).await;
            }
            _ = broker.shutdown.cancelled() => return,
        }
    }
}

/// Whether a response acknowledges a write to `__consumer_offsets` that a
/// client relies on (a commit, a group's assignment): it is sent only once
/// the ISR has the write.
fn waits_for_replication(response: &Response) -> bool {
    matches!(response, Response::OffsetCommit(_) | Response::SyncGroup(_))
}

/// `response` with `error` for everything it answers.
fn failed_response(response: Response, error: ErrorCode) -> Response {
    match response {
        Response::OffsetCommit(result) => Response::OffsetCommit(OffsetCommitResult {
            partitions: result
                .partitions
                .into_iter()
                .map(|(partition, _)| (partition, error))
                .collect(),
        }),
        Response::SyncGroup(_) => Response::SyncGroup(SyncGroupResult::error(error)),
        other => other,
    }
}

/// Sends `response` once `partition`'s high watermark reaches `end` (the
/// write it acknowledges is on every in-sync replica), or, after `timeout`,
/// `COORDINATOR_NOT_AVAILABLE`, which clients retry (Kafka's answer when a
/// group write is not replicated in time).
fn reply_once_replicated(
    partition: Arc<Partition>,
    end: i64,
    to: Replier,
    response: Response,
    timeout: Duration,
) {
    if partition.high_watermark() >= end {
        let _ = to.send(response);
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // Outside a runtime nothing can wait; the write is in the leader's log.
        let _ = to.send(response);
        return;
    };
    runtime.spawn(async move {
        let mut high_watermark = partition.watch_high_watermark();
        let replicated =
            tokio::time::timeout(timeout, high_watermark.wait_for(|hw| *hw >= end)).await;
        let response = match replicated {
            Ok(Ok(_)) => response,
            _ => {
                tracing::warn!(topic = %partition.topic, partition = partition.index, end, "a group write was not replicated in time");
                failed_response(response, ErrorCode::COORDINATOR_NOT_AVAILABLE)
            }
        };
        let _ = to.send(response);
    });
}
