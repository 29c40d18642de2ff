//! A partition as the broker serves it: the log plus the replication state
//! around it: its role (leader or follower, and the leader epoch, both from
//! the metadata image), the replication state machine of that role
//! ([`crate::replication`]) and the high watermark and log end offset that
//! consumers, followers and `acks=all` requests wait on.
//!
//! Locks are taken in this order: `role`, `producers`, `log`; `replica`
//! after `role`, and `log` may be taken under `replica`, never the reverse.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use protocol::batch::{batches, BatchHeader};
use protocol::ErrorCode;

use crate::ids::{BrokerId, LeaderEpoch, PartitionEpoch};
use crate::lease::Lease;
use crate::metadata::PartitionRegistration;
use crate::producer_state::{BatchIdentity, ProducerStateTable, Verdict};
use crate::replication::follower::{
    self, FetchAnswer, FetchPosition, FollowerConfig, FollowerState,
};
use crate::replication::leader::{self, LeaderConfig, LeaderState, ProduceId, Refusal};
use crate::storage::{AppendInfo, DoomedSegment, LogConfig, PartitionLog, ReadInfo, StorageError};

/// DeleteRecords' offset that means "up to the high watermark".
pub const DELETE_TO_HIGH_WATERMARK: i64 = -1;
/// Bytes read at a time while replaying the log into producer state.
const REPLAY_READ_BYTES: usize = 4 << 20;
/// Producer-state snapshots kept per partition (older ones are deleted).
const SNAPSHOTS_KEPT: usize = 2;
const SNAPSHOT_SUFFIX: &str = ".snapshot";

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("producer sequence check failed: {code}")]
    Sequence { code: ErrorCode },
    #[error("an idempotent record set must hold exactly one batch, not {batches}")]
    MultipleIdempotentBatches { batches: usize },
    #[error("this broker does not lead the partition (leader {leader})")]
    NotLeader { leader: BrokerId },
    #[error(
        "this broker's controller session may have expired: it may no longer lead the partition"
    )]
    LeaseLapsed,
}

/// The outcome of an accepted append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    New(AppendInfo),
    /// A retried idempotent batch already in the log: its original offsets.
    Duplicate {
        base_offset: i64,
        log_start_offset: i64,
    },
}

/// Whose view a read takes: consumers stop at the high watermark, replicas at the log end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBound {
    HighWatermark,
    LogEnd,
}

/// Who leads a partition and in which epoch, as the metadata image says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub leader: BrokerId,
    pub leader_epoch: LeaderEpoch,
    /// This broker is the leader.
    pub leads: bool,
}

/// The replication settings of a partition (Kafka's names in [`LeaderConfig`]
/// and [`FollowerConfig`]).
#[derive(Debug, Clone, Copy)]
pub struct ReplicationConfig {
    pub leader: LeaderConfig,
    pub follower: FollowerConfig,
}

/// An ISR change the leader asks the controller for (Kafka's AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    pub isr: Vec<BrokerId>,
}

/// The replication state machine of the role this broker has.
enum Replica {
    /// Before the first role is taken.
    Idle,
    Leader {
        state: LeaderState,
        leader_epoch: LeaderEpoch,
        /// `acks=all` requests waiting for the high watermark.
        waiting: HashMap<ProduceId, oneshot::Sender<ErrorCode>>,
        next_produce_id: ProduceId,
    },
    Follower(FollowerState),
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub topic_id: Uuid,
    /// This broker's id.
    me: BrokerId,
    /// Read-locked across a leader's (or follower's) append, so that no
    /// batch is appended in a role this broker no longer has.
    role: RwLock<Role>,
    replica: Mutex<Replica>,
    log: Arc<Mutex<PartitionLog>>,
    /// Idempotent producers' recent sequences. Locked before `log` whenever both are held.
    producers: Mutex<ProducerStateTable>,
    /// Offsets below this are committed (replicated to the whole ISR).
    high_watermark: watch::Sender<i64>,
    /// The log end offset, which followers' long-polls wait on.
    log_end: watch::Sender<i64>,
    /// Where ISR proposals go (to the controller).
    proposals: mpsc::Sender<IsrProposal>,
    /// The broker's lease on its leaderships: no append once it lapsed.
    lease: Arc<Lease>,
}

impl Partition {
    /// A partition over `log` whose high watermark was `high_watermark` when
    /// last checkpointed; it serves nothing until it is given a role
    /// ([`Partition::apply_registration`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topic: String,
        index: i32,
        topic_id: Uuid,
        me: BrokerId,
        role: Role,
        log: Arc<Mutex<PartitionLog>>,
        high_watermark: i64,
        proposals: mpsc::Sender<IsrProposal>,
        lease: Arc<Lease>,
    ) -> Partition {
        let (log_end_offset, producers) = {
            let log = lock(&log);
            (log.log_end_offset(), load_producer_state(&log))
        };
        let (high_watermark, _) = watch::channel(high_watermark.clamp(0, log_end_offset));
        let (log_end, _) = watch::channel(log_end_offset);
        Partition {
            topic,
            index,
            topic_id,
            me,
            role: RwLock::new(Role {
                leads: false,
                ..role
            }),
            replica: Mutex::new(Replica::Idle),
            log,
            producers: Mutex::new(producers),
            high_watermark,
            log_end,
            proposals,
            lease,
        }
    }

    fn replica(&self) -> MutexGuard<'_, Replica> {
        self.replica.lock().expect("replica lock")
    }

    /// Takes the role and ISR a metadata registration gives: becomes leader
    /// or follower when the leader or its epoch changed, or passes a
    /// committed ISR change to the leader's state machine.
    pub fn apply_registration(
        &self,
        registration: &PartitionRegistration,
        config: &ReplicationConfig,
        now_ms: i64,
    ) {
        let role = Role {
            leader: registration.leader,
            leader_epoch: registration.leader_epoch,
            leads: registration.leader == self.me,
        };
        let mut current = self.role.write().expect("role lock");
        assert!(
            role.leader_epoch >= current.leader_epoch,
            "leader epoch of {}-{} moves back from {} to {}",
            self.topic,
            self.index,
            current.leader_epoch,
            role.leader_epoch
        );
        let mut replica = self.replica();
        let same_term = *current == role;
        match &mut *replica {
            Replica::Leader { state, .. } if same_term && role.leads => {
                state.set_min_insync_replicas(config.leader.min_insync_replicas);
                let commands = state.handle(leader::Event::IsrCommitted {
                    isr: registration.isr.clone(),
                    replicas: registration.replicas.clone(),
                    partition_epoch: registration.partition_epoch,
                    now_ms,
                });
                self.execute_leader(&mut replica, commands);
                return;
            }
            Replica::Follower(_) if same_term && !role.leads => return,
            _ => {}
        }
        if *current != role {
            tracing::info!(topic = %self.topic, partition = self.index, leader = %role.leader, leader_epoch = %role.leader_epoch, leads = role.leads, "partition role changed");
        }
        *current = role;
        // Whatever waited on the previous role is answered now.
        if let Replica::Leader { state, .. } = &mut *replica {
            let commands = state.handle(leader::Event::Resigned);
            self.execute_leader(&mut replica, commands);
        }
        let (log_end_offset, last_epoch) = {
            let mut log = self.log();
            let log_end_offset = log.log_end_offset();
            if role.leads {
                // Kafka's makeLeader: the new epoch starts at the log end, so a
                // deposed leader's later batches are found diverging.
                if let Err(e) = log.assign_epoch_start(role.leader_epoch.0, log_end_offset) {
                    tracing::error!(topic = %self.topic, partition = self.index, error = %e, "cannot record the new leader epoch");
                }
            }
            (log_end_offset, log.latest_epoch())
        };
        let high_watermark = self.high_watermark().min(log_end_offset);
        if role.leads {
            let mut state = LeaderState::new(
                config.leader,
                self.me,
                registration,
                log_end_offset,
                high_watermark,
                now_ms,
            );
            // An ISR of this broker alone commits its whole log at once.
            let commands = state.handle(leader::Event::Appended { log_end_offset });
            *replica = Replica::Leader {
                state,
                leader_epoch: role.leader_epoch,
                waiting: HashMap::new(),
                next_produce_id: 0,
            };
            self.execute_leader(&mut replica, commands);
        } else {
            *replica = Replica::Follower(FollowerState::new(
                config.follower,
                role.leader,
                role.leader_epoch,
                log_end_offset,
                last_epoch,
                high_watermark,
            ));
        }
    }

    /// Carries out what the leader's state machine decided.
    fn execute_leader(&self, replica: &mut Replica, commands: Vec<leader::Command>) {
        let Replica::Leader {
            state,
            waiting,
            leader_epoch,
            ..
        } = replica
        else {
            return;
        };
        for command in commands {
            match command {
                leader::Command::AdvanceHighWatermark { offset } => {
                    self.advance_high_watermark(offset);
                }
                leader::Command::Complete { id, error } => {
                    if let Some(answer) = waiting.remove(&id) {
                        let _ = answer.send(error);
                    }
                }
                leader::Command::ProposeIsr {
                    isr,
                    partition_epoch,
                } => {
                    let proposal = IsrProposal {
                        topic: self.topic.clone(),
                        topic_id: self.topic_id,
                        partition: self.index,
                        leader_epoch: *leader_epoch,
                        partition_epoch,
                        isr,
                    };
                    tracing::info!(topic = %self.topic, partition = self.index, isr = ?proposal.isr, %partition_epoch, "proposing an ISR change");
                    if self.proposals.try_send(proposal).is_err() {
                        // The proposer is saturated or gone: propose again later.
                        state.handle(leader::Event::IsrRefused);
                    }
                }
            }
        }
    }

    /// Feeds the leader's state machine, if this broker leads.
    fn leader_event(&self, event: leader::Event) {
        let mut replica = self.replica();
        if let Replica::Leader { state, .. } = &mut *replica {
            let commands = state.handle(event);
            self.execute_leader(&mut replica, commands);
        }
    }

    /// Whether an `acks=all` request may be appended now.
    pub fn check_acks_all(&self) -> Result<(), Refusal> {
        match &*self.replica() {
            Replica::Leader { state, .. } => state.check_acks_all(),
            _ => Ok(()),
        }
    }

    /// Parks an `acks=all` request until the high watermark passes
    /// `last_offset`; the answer is its error code (NONE once replicated).
    pub fn wait_for_replication(
        &self,
        last_offset: i64,
        deadline_ms: i64,
    ) -> oneshot::Receiver<ErrorCode> {
        let (tx, rx) = oneshot::channel();
        let mut replica = self.replica();
        let Replica::Leader {
            state,
            waiting,
            next_produce_id,
            ..
        } = &mut *replica
        else {
            let _ = tx.send(ErrorCode::NOT_LEADER_OR_FOLLOWER);
            return rx;
        };
        let id = *next_produce_id;
        *next_produce_id += 1;
        waiting.insert(id, tx);
        let commands = state.handle(leader::Event::Park {
            id,
            last_offset,
            deadline_ms,
        });
        self.execute_leader(&mut replica, commands);
        rx
    }

    /// A follower fetched from `fetch_offset`: it holds everything below.
    pub fn follower_fetched(&self, replica: BrokerId, fetch_offset: i64, now_ms: i64) {
        self.leader_event(leader::Event::FollowerFetch {
            replica,
            fetch_offset,
            now_ms,
        });
    }

    /// Time passed: lagging followers leave the ISR, expired waits are answered.
    pub fn tick(&self, now_ms: i64) {
        self.leader_event(leader::Event::Tick { now_ms });
    }

    /// The controller refused (or never got) this partition's ISR proposal.
    pub fn isr_refused(&self) {
        self.leader_event(leader::Event::IsrRefused);
    }

    /// The ISR as the leader's state machine has it (committed), if this broker leads.
    pub fn isr(&self) -> Option<Vec<BrokerId>> {
        match &*self.replica() {
            Replica::Leader { state, .. } => Some(state.isr()),
            _ => None,
        }
    }

    /// KIP-320, on the leader: whether a follower whose last batch is of
    /// `last_fetched_epoch` and whose log ends at `fetch_offset` diverges
    /// from this log; if so, the epoch and end offset to truncate to.
    pub fn diverging_epoch(
        &self,
        last_fetched_epoch: i32,
        fetch_offset: i64,
    ) -> Option<(i32, i64)> {
        if last_fetched_epoch < 0 {
            return None;
        }
        match self.log().end_offset_for_epoch(last_fetched_epoch) {
            Some((epoch, end_offset))
                if epoch < last_fetched_epoch || end_offset < fetch_offset =>
            {
                Some((epoch, end_offset))
            }
            // Consistent, or this log keeps no epochs to compare with.
            Some(_) | None => None,
        }
    }

    /// KIP-101 OffsetForLeaderEpoch: `(epoch, end offset)` of `leader_epoch` in this log.
    pub fn end_offset_for_epoch(&self, leader_epoch: i32) -> Option<(i32, i64)> {
        self.log().end_offset_for_epoch(leader_epoch)
    }

    /// Where a follower fetches next and from which leader, if it follows.
    pub fn fetch_position(&self, now_ms: i64) -> Option<(BrokerId, FetchPosition)> {
        match &*self.replica() {
            Replica::Follower(state) => state
                .fetch_position(now_ms)
                .map(|position| (state.leader(), position)),
            _ => None,
        }
    }

    /// The leader this broker follows, if it follows.
    pub fn following(&self) -> Option<BrokerId> {
        match &*self.replica() {
            Replica::Follower(state) if !state.leader().is_none() => Some(state.leader()),
            _ => None,
        }
    }

    /// As a follower: applies the leader's answer to a fetch made at
    /// `position` (appends, truncates, moves the high watermark).
    pub fn apply_fetch(&self, position: &FetchPosition, answer: FetchAnswer, now_ms: i64) {
        let role = self.role.read().expect("role lock");
        if role.leads || role.leader_epoch != position.current_leader_epoch {
            // The role changed while the fetch was out: its answer is stale.
            return;
        }
        let local_epoch_end = answer
            .diverging_epoch
            .and_then(|(epoch, _)| self.log().end_offset_for_epoch(epoch));
        let leader_log_start_offset =
            (answer.error == ErrorCode::NONE).then_some(answer.log_start_offset);
        let mut commands = self.follower_event(follower::Event::Fetched {
            answer,
            local_epoch_end,
            now_ms,
        });
        // A command's outcome is fed back, which may give more commands.
        for _ in 0..4 {
            if commands.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for command in commands {
                next.extend(self.execute_follower(command, now_ms));
            }
            commands = next;
        }
        if let Some(offset) = leader_log_start_offset {
            self.follow_log_start_offset(offset);
        }
        drop(role);
    }

    fn follower_event(&self, event: follower::Event) -> Vec<follower::Command> {
        match &mut *self.replica() {
            Replica::Follower(state) => state.handle(event),
            _ => Vec::new(),
        }
    }

    /// Carries out one command of the follower's state machine; returns what
    /// the machine decides on hearing the outcome. Called under the role lock.
    fn execute_follower(&self, command: follower::Command, now_ms: i64) -> Vec<follower::Command> {
        let changed = match command {
            follower::Command::UpdateHighWatermark { offset } => {
                self.high_watermark.send_replace(offset);
                return Vec::new();
            }
            follower::Command::Append { records } => {
                let mut producers = self.producers.lock().expect("producer state lock");
                let mut log = self.log();
                match log.append_as_follower(&records) {
                    Ok(_) => {
                        for batch in batches(&records) {
                            if let Ok(header) = BatchHeader::new(&batch) {
                                producers.replay(&header);
                            }
                        }
                        Ok((log.log_end_offset(), log.latest_epoch()))
                    }
                    Err(e) => Err(e),
                }
            }
            follower::Command::Truncate { offset } => {
                let mut producers = self.producers.lock().expect("producer state lock");
                let mut log = self.log();
                tracing::info!(topic = %self.topic, partition = self.index, offset, log_end_offset = log.log_end_offset(), "truncating a diverging log");
                log.truncate_to(offset).map(|()| {
                    producers.truncate_to(offset);
                    (log.log_end_offset(), log.latest_epoch())
                })
            }
            follower::Command::TruncateFullyAndStartAt { offset } => {
                let mut producers = self.producers.lock().expect("producer state lock");
                let mut log = self.log();
                tracing::info!(topic = %self.topic, partition = self.index, offset, "restarting the log at the leader's log start");
                log.truncate_fully_and_start_at(offset).map(|()| {
                    *producers = ProducerStateTable::default();
                    (log.log_end_offset(), log.latest_epoch())
                })
            }
        };
        match changed {
            Ok((log_end_offset, last_epoch)) => {
                self.log_end.send_replace(log_end_offset);
                self.follower_event(follower::Event::LogChanged {
                    log_end_offset,
                    last_epoch,
                })
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "cannot apply what the leader sent");
                self.follower_event(follower::Event::AppendFailed { now_ms })
            }
        }
    }

    fn log(&self) -> MutexGuard<'_, PartitionLog> {
        lock(&self.log)
    }

    pub fn role(&self) -> Role {
        *self.role.read().expect("role lock")
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.role().leader_epoch
    }

    pub fn is_leader(&self) -> bool {
        self.role().leads
    }

    /// Appends validated batches as leader: checks idempotent producers'
    /// sequences, appends, and advances the high watermark, waking consumers.
    pub fn append_as_leader(&self, records: &Bytes, now_ms: i64) -> Result<Appended, AppendError> {
        let role = self.role.read().expect("role lock");
        if !role.leads {
            return Err(AppendError::NotLeader {
                leader: role.leader,
            });
        }
        if !self.lease.holds() {
            return Err(AppendError::LeaseLapsed);
        }
        let mut producers = self.producers.lock().expect("producer state lock");
        let identity = idempotent_identity(records)?;
        if let Some(identity) = &identity {
            match producers.check(identity) {
                Ok(Verdict::Append) => {}
                Ok(Verdict::Duplicate { base_offset, .. }) => {
                    return Ok(Appended::Duplicate {
                        base_offset,
                        log_start_offset: self.log().log_start_offset(),
                    });
                }
                Err(e) => return Err(AppendError::Sequence { code: e.code }),
            }
        }
        let (info, log_end_offset) = {
            let mut log = self.log();
            let segments_before = log.segment_count();
            let info = log.append(records, role.leader_epoch.0, now_ms)?;
            if log.segment_count() > segments_before {
                // The batch opened a new segment: snapshot the state as of its start,
                // so recovery replays at most one segment.
                write_snapshot(&log, &producers, info.base_offset);
            }
            (info, log.log_end_offset())
        };
        if let Some(identity) = &identity {
            producers.record(identity, info.base_offset, info.last_offset);
        }
        drop(producers);
        assert!(
            info.last_offset < log_end_offset,
            "appended offsets must lie below the log end offset"
        );
        // Concurrent appends report out of order: the watch keeps the largest.
        self.log_end.send_if_modified(|end| {
            let grew = log_end_offset > *end;
            *end = (*end).max(log_end_offset);
            grew
        });
        // Still under the role lock: the event reaches the state machine of
        // the epoch the batch was appended in.
        self.leader_event(leader::Event::Appended { log_end_offset });
        drop(role);
        Ok(Appended::New(info))
    }

    /// Writes a producer-state snapshot at the log end, so the next start replays nothing.
    pub fn snapshot_producer_state(&self) {
        let producers = self.producers.lock().expect("producer state lock");
        let log = self.log();
        write_snapshot(&log, &producers, log.log_end_offset());
    }

    fn advance_high_watermark(&self, offset: i64) {
        self.high_watermark.send_if_modified(|hw| {
            if offset > *hw {
                *hw = offset;
                true
            } else {
                false
            }
        });
    }

    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        bound: ReadBound,
        min_one_batch: bool,
    ) -> Result<ReadInfo, StorageError> {
        let log = self.log();
        let max_offset = match bound {
            ReadBound::HighWatermark => *self.high_watermark.borrow(),
            ReadBound::LogEnd => log.log_end_offset(),
        };
        log.read(offset, max_bytes, max_offset, min_one_batch)
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// A receiver that sees every high watermark change, for consumers' long-polls.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// A receiver that sees every log end offset change, for followers' long-polls.
    pub fn watch_log_end(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log().log_start_offset()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log().log_end_offset()
    }

    /// The bytes of batches in the log's segments.
    pub fn size_bytes(&self) -> u64 {
        self.log().size_bytes()
    }

    /// DeleteRecords on the leader: moves the log start offset up to
    /// `offset` (`-1`: the high watermark) and answers the new log start
    /// offset (Kafka's low watermark). Only committed records may be
    /// deleted: an offset past the high watermark is out of range. A
    /// compact-only log refuses (`POLICY_VIOLATION`, as Kafka). Followers
    /// follow the leader's log start offset through their fetches.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, ErrorCode> {
        let role = self.role.read().expect("role lock");
        if !role.leads {
            return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER);
        }
        let high_watermark = self.high_watermark();
        let offset = match offset {
            DELETE_TO_HIGH_WATERMARK => high_watermark,
            offset if offset < 0 || offset > high_watermark => {
                return Err(ErrorCode::OFFSET_OUT_OF_RANGE)
            }
            offset => offset,
        };
        let mut log = self.log();
        if !log.config().cleanup_policy.delete {
            // Kafka: a compact-only topic's records are removed by the cleaner alone.
            return Err(ErrorCode::POLICY_VIOLATION);
        }
        match log.set_log_start_offset(offset) {
            Ok(()) => {}
            Err(StorageError::OffsetOutOfRange { .. }) => {
                return Err(ErrorCode::OFFSET_OUT_OF_RANGE)
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "cannot delete records");
                return Err(ErrorCode::KAFKA_STORAGE_ERROR);
            }
        }
        let log_start_offset = log.log_start_offset();
        assert!(
            log_start_offset >= offset,
            "the log start offset reaches the deleted offset"
        );
        let doomed = log.take_doomed();
        drop(log);
        drop(role);
        unlink_off_the_runtime(doomed);
        Ok(log_start_offset)
    }

    /// As a follower: moves the log start offset up to the leader's, never
    /// past this replica's high watermark (as Kafka's follower does).
    fn follow_log_start_offset(&self, leader_log_start_offset: i64) {
        let high_watermark = self.high_watermark();
        let mut log = self.log();
        let target = leader_log_start_offset.min(high_watermark);
        if target <= log.log_start_offset() || log.is_offline() {
            return;
        }
        if let Err(e) = log.set_log_start_offset(target) {
            tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "cannot follow the leader's log start offset");
        }
        let doomed = log.take_doomed();
        drop(log);
        unlink_off_the_runtime(doomed);
    }

    /// Applies changed topic config overrides to the log.
    pub fn set_log_config(&self, config: LogConfig) -> Result<(), StorageError> {
        self.log().set_config(config)
    }

    pub fn is_offline(&self) -> bool {
        self.log().is_offline()
    }

    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Option<(i64, i64)> {
        self.log().offset_for_timestamp(timestamp_ms)
    }

    pub fn max_timestamp_and_offset(&self) -> Option<(i64, i64)> {
        self.log().max_timestamp_and_offset()
    }
}

/// The producer identity of an idempotent record set, which must be a single batch.
fn idempotent_identity(records: &Bytes) -> Result<Option<BatchIdentity>, AppendError> {
    let mut count = 0;
    let mut identity = None;
    for batch in batches(records) {
        count += 1;
        if let Ok(header) = BatchHeader::new(&batch) {
            identity = identity.or(BatchIdentity::of(&header));
        }
    }
    if identity.is_some() && count > 1 {
        return Err(AppendError::MultipleIdempotentBatches { batches: count });
    }
    Ok(identity)
}

fn snapshot_path(log: &PartitionLog, offset: i64) -> std::path::PathBuf {
    log.dir().join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

/// Snapshot files of a partition, by offset, oldest first.
fn snapshots(log: &PartitionLog) -> Vec<(i64, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(log.dir()) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let offset = name.strip_suffix(SNAPSHOT_SUFFIX)?.parse::<i64>().ok()?;
            Some((offset, entry.path()))
        })
        .collect();
    found.sort();
    found
}

/// Best effort: a missing snapshot only costs a longer replay at the next start.
fn write_snapshot(log: &PartitionLog, producers: &ProducerStateTable, offset: i64) {
    if let Err(e) =
        crate::fsutil::write_atomically(&snapshot_path(log, offset), &producers.encode())
    {
        tracing::warn!(dir = %log.dir().display(), error = %e, "cannot write producer-state snapshot");
        return;
    }
    let all = snapshots(log);
    for (old, path) in all.iter().take(all.len().saturating_sub(SNAPSHOTS_KEPT)) {
        if *old < offset {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Loads the newest usable snapshot and replays the log after it.
fn load_producer_state(log: &PartitionLog) -> ProducerStateTable {
    let log_end_offset = log.log_end_offset();
    let log_start_offset = log.log_start_offset();
    let mut table = ProducerStateTable::default();
    let mut from = log_start_offset;
    for (offset, path) in snapshots(log).into_iter().rev() {
        if offset > log_end_offset {
            // Written for data that recovery has since truncated away.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if let Some(loaded) = std::fs::read(&path)
            .ok()
            .and_then(|b| ProducerStateTable::decode(&b))
        {
            table = loaded;
            from = offset.max(log_start_offset);
            break;
        }
        tracing::warn!(path = %path.display(), "ignoring damaged producer-state snapshot");
    }
    let mut offset = from;
    let mut replayed = 0usize;
    while offset < log_end_offset {
        let read = match log.read(offset, REPLAY_READ_BYTES, log_end_offset, true) {
            Ok(read) if !read.records.is_empty() => read,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(dir = %log.dir().display(), error = %e, "producer-state replay stopped early");
                break;
            }
        };
        for batch in batches(&read.records) {
            let Ok(header) = BatchHeader::new(&batch) else {
                break;
            };
            if header.last_offset() >= offset {
                table.replay(&header);
                replayed += 1;
            }
            offset = offset.max(header.last_offset() + 1);
        }
    }
    if replayed > 0 {
        tracing::debug!(dir = %log.dir().display(), from, replayed, "rebuilt producer state from the log");
    }
    table
}

/// A poisoned lock means a panic while the log was being changed; the
/// in-memory state may be half-updated, so serving it further is unsafe.
fn lock(log: &Mutex<PartitionLog>) -> MutexGuard<'_, PartitionLog> {
    log.lock()
        .expect("partition log lock poisoned by an earlier panic")
}

/// Unlinks the files of segments a log let go of (see
/// `PartitionLog::take_doomed`), after its lock, and on a blocking thread
/// when called from the runtime: unlinking a large cached file takes the
/// kernel up to a second under load, and a follower applying its leader's
/// log start offset does it from a fetch on a runtime worker; with both
/// workers in `unlink`, the whole broker stopped, and every `acks=all`
/// write waiting for it.
fn unlink_off_the_runtime(doomed: Vec<DoomedSegment>) {
    if doomed.is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(doomed));
        }
        Err(_) => drop(doomed),
    }
}
