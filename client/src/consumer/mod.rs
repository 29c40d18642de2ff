//! The consumer: [`Consumer::subscribe`] in a group (partitions assigned by
//! the group's leader, rebalanced as members come and go) or
//! [`Consumer::assign`] without one; [`Consumer::poll`] returns records,
//! commits go to the group coordinator.
//!
//! - [`config`]: [`ConsumerConfig`] and [`AutoOffsetReset`].
//! - [`record`]: [`ConsumerRecord`], [`ConsumerRecords`], [`TopicPartition`],
//!   [`OffsetAndMetadata`].
//! - [`listener`]: [`RebalanceListener`], called from `poll` on rebalances.
//! - [`assignor`]: range, round-robin and cooperative-sticky assignment.
//! - [`codec`]: Kafka's consumer protocol (subscription and assignment bytes).
//! - [`decode`]: record batches to records (lz4, zstd, control batches,
//!   compacted batches).
//! - [`error`]: one error enum per operation.
//! - `coordinator`: finding the group coordinator and talking to it; the
//!   group state shared with the heartbeat task.
//! - `membership`: JoinGroup/SyncGroup (and the leader's assignment),
//!   heartbeats, LeaveGroup.
//! - `offsets`: OffsetCommit and OffsetFetch.
//! - `fetcher`: one fetch in flight per broker, decoding off the caller's
//!   task, a bounded buffer of fetched records.
//! - `state`: positions, pauses and pending resets per assigned partition.
//! - `undelivered`: records collected but not yet handed out (what keeps
//!   `poll` cancel-safe).
//! - `stream`: [`RecordStream`], the records as a `futures::Stream`.
//! - `commit_lane`: the queue every commit goes through, in order.
//! - `list_offsets`: log start and end offsets for resets.
//!
//! # Threading
//!
//! A `Consumer` can be shared between tasks (`Arc<Consumer>`): `poll` and
//! the stream drive the fetch and group state (`Inner`) under a lock,
//! while commits, `store_offset` and the accessors read what `poll` last
//! published (`Shared`, `View`) and never wait for it. Calls that change
//! what the consumer reads (`subscribe`, `seek`, `pause`, ...) take `&self`
//! too: applied at once when no `poll` runs, else queued (`control`) for
//! the `poll` in progress, which applies them before it next collects or
//! hands out records. Behind it run a heartbeat
//! task (while in a group), the commit lane (`commit_lane`: every commit,
//! in order), one fetch task per broker with a fetch in flight, and short
//! lookups (committed offsets, ListOffsets, metadata). None of them touch
//! the assignment: `poll` applies what they found, and calls the
//! rebalance listener, on the polling task.
//!
//! # Cancel safety
//!
//! Every public async method may be dropped at any await point without
//! losing a record: a position moves past a record only once the record is
//! handed to the caller (records collected by a dropped `poll` wait in the
//! consumer for the next call), and a commit never covers a record not
//! handed out. What a dropped call may leave undone is said in each
//! method's `# Cancel safety` section.

pub mod assignor;
pub mod codec;
pub mod config;
pub mod decode;
pub mod error;
pub mod listener;
pub mod record;

mod codes;
mod commit_lane;
mod control;
mod coordinator;
mod fetcher;
pub(crate) mod list_offsets;
mod membership;
mod offsets;
mod state;
mod stream;
mod undelivered;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::time::Duration;

use futures::FutureExt;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::cluster::{Cluster, ClusterConfig};
use crate::connection::ConnectionConfig;

pub use assignor::{AssignmentStrategy, RebalanceProtocol};
pub use commit_lane::{CommitFuture, COMMITS_QUEUED_MAX};
pub use config::{AutoOffsetReset, ConsumerConfig};
pub use control::CONTROLS_QUEUED_MAX;
pub use decode::RecordError;
pub use error::{
    AssignmentError, CommitError, ConsumerConnectError, GroupError, OffsetFetchError, PollError,
    RetriableError, StoreError, SubscribeError,
};
pub use fetcher::{FETCH_BUFFER_BYTES_MAX, FETCH_VERSIONS};
pub use listener::{RebalanceContext, RebalanceListener};
pub use record::{
    ConsumerRecord, ConsumerRecords, Header, OffsetAndMetadata, TimestampType, TopicPartition,
};
pub use stream::{RecordStream, STREAM_POLL_TIMEOUT};

use commit_lane::{Attempts, CommitLane};
use control::{Control, Controls};
use coordinator::{Group, Member, Phase};
use fetcher::Fetcher;
use list_offsets::ListedOffset;
use membership::{JoinFailure, JoinPlan, Joined};
use state::{AssignmentState, OffsetReset};
use undelivered::Undelivered;

type JoinFuture = Pin<Box<dyn Future<Output = Result<Joined, JoinFailure>> + Send>>;

/// How the consumer gets its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    None,
    Subscribed(BTreeSet<String>),
    Assigned,
}

/// What a background lookup found.
enum Background {
    Committed {
        result: Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, OffsetFetchError>,
    },
    Listed {
        results: BTreeMap<TopicPartition, (OffsetReset, ListedOffset)>,
    },
    Metadata {
        result: Result<(), String>,
    },
}

/// What ended a wait in `poll`.
enum Woken {
    Other,
    Background(Result<Background, tokio::task::JoinError>),
    Joined(Result<Joined, JoinFailure>),
}

/// A Kafka consumer. See the module docs and `docs/client.md`.
///
/// `Consumer` is `Send + Sync`, and every method but `close` takes `&self`:
/// share it (`Arc<Consumer>`) to drive it from worker tasks while one task
/// polls. `poll` and the [`stream`](Self::stream) hold the consumer's fetch
/// state while they run (concurrent polls take turns); commits,
/// `store_offset` and the read-only accessors never wait for them. The
/// calls that change what the consumer reads (`subscribe`, `seek`,
/// `pause`, ...) take effect at once when no `poll` runs; while one does,
/// it applies them, in the order they were made, before it next collects
/// or hands out records (records it had collected before are then fetched
/// again from the new positions). `assign` and `unsubscribe` wait for the
/// `poll` in progress, which returns early for them.
pub struct Consumer {
    inner: tokio::sync::Mutex<Inner>,
    shared: Arc<Shared>,
}

/// What the calls on `&self` read and write without waiting for `poll`.
struct Shared {
    config: Arc<ConsumerConfig>,
    group: Option<Arc<Group>>,
    /// Every commit goes through it, in order (with a group).
    lane: Option<CommitLane>,
    view: std::sync::Mutex<View>,
    /// Changes made while `poll` held the fetch state, for it to apply.
    controls: Controls,
}

/// What `poll` last published of its state: the assignment, what a commit
/// covers, and the offsets the application stored.
#[derive(Debug, Default)]
struct View {
    /// How the consumer gets its partitions, as `poll` sees it.
    mode: ViewMode,
    partitions: BTreeMap<TopicPartition, PartitionView>,
    /// Offsets stored with `store_offset` (manual offset store), for
    /// assigned partitions only.
    stored: BTreeMap<TopicPartition, OffsetAndMetadata>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum ViewMode {
    #[default]
    None,
    Subscribed(Vec<String>),
    Assigned,
}

#[derive(Debug, Default, Clone)]
struct PartitionView {
    /// The offset after the last record handed out (what a commit of the
    /// positions stores), once known.
    delivered: Option<OffsetAndMetadata>,
    high_watermark: Option<i64>,
    paused: bool,
}

/// The consumer's fetch and group state, driven by `poll` under the
/// consumer's lock.
struct Inner {
    shared: Arc<Shared>,
    config: Arc<ConsumerConfig>,
    cluster: Arc<Cluster>,
    group: Option<Arc<Group>>,
    mode: Mode,
    assignment: AssignmentState,
    fetcher: Fetcher,
    listener: Option<Box<dyn RebalanceListener>>,
    /// The join round under way, driven across `poll` calls.
    join: Option<JoinFuture>,
    join_result: Option<Result<Joined, JoinFailure>>,
    /// As group leader: the partition counts of the last assignment.
    leader_partition_counts: Option<BTreeMap<String, i32>>,
    background: JoinSet<Background>,
    committed_lookup_in_flight: bool,
    list_offsets_in_flight: bool,
    metadata_refresh_in_flight: bool,
    /// When the metadata is due for its periodic refresh.
    next_metadata_refresh: Instant,
    /// No metadata request before this (backoff between attempts).
    metadata_retry_at: Instant,
    next_auto_commit: Instant,
    auto_commit_in_flight: Option<CommitFuture>,
    /// The heartbeat task (with a group), watched by `poll`: it is spawned,
    /// and a panic would otherwise end the heartbeats unnoticed.
    heartbeat: Option<JoinHandle<()>>,
    /// Records collected but not yet handed to the application.
    undelivered: Undelivered,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let view = self.shared.view();
        f.debug_struct("Consumer")
            .field("bootstrap_servers", &self.shared.config.bootstrap_servers)
            .field("group_id", &self.shared.config.group_id)
            .field("mode", &view.mode)
            .field("assignment", &view.partitions.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What a consumer reports about itself ([`Consumer::metrics`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerMetrics {
    /// Every assigned partition.
    pub partitions: BTreeMap<TopicPartition, PartitionMetrics>,
}

impl ConsumerMetrics {
    /// The sum of the partitions' known lags.
    pub fn total_lag(&self) -> i64 {
        self.partitions.values().filter_map(|p| p.lag).sum()
    }
}

/// One assigned partition in [`ConsumerMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionMetrics {
    /// The offset of the next record `poll` hands out, once known.
    pub position: Option<i64>,
    /// The high watermark in the last fetch response.
    pub high_watermark: Option<i64>,
    /// `high_watermark - position` (never below 0), once both are known.
    pub lag: Option<i64>,
    /// Whether the application paused the partition.
    pub paused: bool,
}

/// Records between a position and a high watermark; a position past the
/// high watermark (it moved on since the fetch) is no lag.
fn lag(position: i64, high_watermark: i64) -> i64 {
    (high_watermark - position).max(0)
}

/// Bound on the LeaveGroup a dropped consumer sends (see `Drop for Consumer`).
pub const LEAVE_ON_DROP_TIMEOUT: Duration = Duration::from_secs(5);

impl Drop for Consumer {
    /// Stops the heartbeat task (fetch and lookup tasks end with their
    /// JoinSets) and, for a dynamic member still in its group, leaves the
    /// group: a LeaveGroup sent from a task of its own, bounded by
    /// [`LEAVE_ON_DROP_TIMEOUT`], when dropped inside a Tokio runtime. Best
    /// effort: nothing is committed and no listener is called (that is
    /// what `close` is for); if the LeaveGroup is not sent, the coordinator
    /// drops the member after `session_timeout`.
    fn drop(&mut self) {
        let Some(group) = &self.shared.group else {
            return;
        };
        group.stop.cancel();
        let subscribed = matches!(self.shared.view().mode, ViewMode::Subscribed(_));
        if !subscribed || self.shared.config.group_instance_id.is_some() {
            return;
        }
        let member = {
            let mut state = group.state();
            let member = Member {
                generation_id: state.generation_id,
                member_id: std::mem::take(&mut state.member_id),
                group_instance_id: None,
            };
            state.phase = Phase::Unjoined;
            state.generation_id = -1;
            member
        };
        if member.member_id.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(group = %group.group_id, "consumer dropped outside a runtime; the coordinator drops it after the session timeout");
            return;
        };
        let group = group.clone();
        runtime.spawn(async move {
            let leave = membership::leave(&group, &member, "the consumer was dropped");
            match tokio::time::timeout(LEAVE_ON_DROP_TIMEOUT, leave).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(group = %group.group_id, ?error, "LeaveGroup of a dropped consumer failed")
                }
                Err(_) => {
                    tracing::debug!(group = %group.group_id, "LeaveGroup of a dropped consumer not answered in time")
                }
            }
            group.coordinator_unknown(None, "consumer dropped");
        });
    }
}

impl Shared {
    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().expect("consumer view lock")
    }

    /// What a commit of the consumer's offsets covers now: the positions
    /// handed out, or the stored offsets (manual offset store).
    fn offsets_to_commit(&self) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        let view = self.view();
        if self.config.enable_auto_offset_store {
            view.partitions
                .iter()
                .filter_map(|(tp, p)| p.delivered.clone().map(|d| (tp.clone(), d)))
                .collect()
        } else {
            view.stored.clone()
        }
    }

    /// The identity commits carry: the generation for a subscribed
    /// consumer, none for an assigned one.
    fn commit_member(&self, group: &Group) -> Result<Member, CommitError> {
        let subscribed = matches!(self.view().mode, ViewMode::Subscribed(_));
        commit_member(group, subscribed)
    }

    /// Queues a commit on the lane (with a group).
    fn queue_commit(
        &self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        attempts: Attempts,
    ) -> CommitFuture {
        let (Some(group), Some(lane)) = (&self.group, &self.lane) else {
            return CommitFuture::ready(Err(CommitError::NoGroupId));
        };
        if offsets.is_empty() {
            return CommitFuture::ready(Ok(()));
        }
        match self.commit_member(group) {
            Ok(member) => lane.queue(offsets, member, attempts),
            Err(error) => CommitFuture::ready(Err(error)),
        }
    }
}

/// The identity commits carry: the generation for a subscribed consumer
/// (an error while it has none), none for an assigned one.
fn commit_member(group: &Group, subscribed: bool) -> Result<Member, CommitError> {
    if !subscribed {
        return Ok(Member::standalone());
    }
    let member = group.member();
    if member.generation_id < 0 || member.member_id.is_empty() {
        return Err(CommitError::Rebalanced {
            group: group.group_id.clone(),
            code: codes::REBALANCE_IN_PROGRESS,
        });
    }
    Ok(member)
}

impl Consumer {
    /// Reaches the cluster and, with a `group_id`, starts the heartbeat task
    /// (it heartbeats once the consumer has joined).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropped, no consumer exists yet, and the connections
    /// opened so far close.
    pub async fn connect(config: ConsumerConfig) -> Result<Consumer, ConsumerConnectError> {
        config.validate()?;
        let config = Arc::new(config);
        let cluster = Arc::new(
            Cluster::connect(ClusterConfig {
                bootstrap_servers: config.bootstrap_servers.clone(),
                connection: ConnectionConfig {
                    client_id: config.client_id.clone(),
                    connect_timeout: config.connect_timeout,
                    request_timeout: config.request_timeout,
                    frame_bytes_max: protocol::frame::FRAME_BYTES_MAX_DEFAULT,
                    in_flight_requests_max: crate::connection::IN_FLIGHT_REQUESTS_MAX_DEFAULT,
                },
                allow_auto_topic_creation: config.allow_auto_create_topics,
            })
            .await?,
        );
        let group = config
            .group_id
            .clone()
            .map(|group_id| Arc::new(Group::new(group_id, config.clone(), cluster.clone())));
        let heartbeat = group
            .as_ref()
            .map(|group| tokio::spawn(membership::heartbeat_loop(group.clone())));
        let shared = Arc::new(Shared {
            config: config.clone(),
            lane: group.clone().map(CommitLane::start),
            group: group.clone(),
            view: std::sync::Mutex::new(View::default()),
            controls: Controls::default(),
        });
        let now = Instant::now();
        let inner = Inner {
            shared: shared.clone(),
            fetcher: Fetcher::new(cluster.clone(), config.clone()),
            config: config.clone(),
            cluster,
            group,
            mode: Mode::None,
            assignment: AssignmentState::default(),
            listener: None,
            join: None,
            join_result: None,
            leader_partition_counts: None,
            background: JoinSet::new(),
            committed_lookup_in_flight: false,
            list_offsets_in_flight: false,
            metadata_refresh_in_flight: false,
            next_metadata_refresh: now,
            metadata_retry_at: now,
            next_auto_commit: now + config.auto_commit_interval,
            auto_commit_in_flight: None,
            heartbeat,
            undelivered: Undelivered::default(),
        };
        Ok(Consumer {
            inner: tokio::sync::Mutex::new(inner),
            shared,
        })
    }
}

impl Consumer {
    /// The consumer's settings.
    pub fn config(&self) -> &ConsumerConfig {
        &self.shared.config
    }

    /// Subscribes to `topics` in the consumer's group. The next `poll` joins
    /// the group (or rejoins it, if the topics changed). Replaces an
    /// assignment made with `assign`.
    ///
    /// Not async: takes effect at once, or, while another task's `poll`
    /// runs, before that `poll` next collects records (see
    /// [`Consumer`]).
    pub fn subscribe<S: AsRef<str>>(&self, topics: &[S]) -> Result<(), SubscribeError> {
        self.subscribe_topics(topics, None)
    }

    /// `subscribe` with a listener for rebalances (replacing any earlier one).
    ///
    /// Not async: takes effect as `subscribe` does.
    pub fn subscribe_with_listener<S: AsRef<str>>(
        &self,
        topics: &[S],
        listener: impl RebalanceListener + 'static,
    ) -> Result<(), SubscribeError> {
        self.subscribe_topics(topics, Some(Box::new(listener)))
    }

    fn subscribe_topics<S: AsRef<str>>(
        &self,
        topics: &[S],
        listener: Option<Box<dyn RebalanceListener>>,
    ) -> Result<(), SubscribeError> {
        if self.shared.group.is_none() {
            return Err(SubscribeError::NoGroupId);
        }
        let topics: Vec<String> = topics.iter().map(|t| t.as_ref().to_string()).collect();
        if topics.iter().any(String::is_empty) {
            return Err(SubscribeError::EmptyTopicName);
        }
        self.control(Control::Subscribe { topics, listener })
            .map_err(|queued_max| SubscribeError::TooManyQueued { queued_max })
    }

    /// Applies `control` now if no `poll` holds the fetch state, else
    /// queues it for that `poll` (`Err` with the bound when the queue is
    /// full). The caller checked it against what `poll` last published.
    fn control(&self, control: Control) -> Result<(), usize> {
        match self.inner.try_lock() {
            Ok(mut inner) => {
                inner.apply_controls();
                inner.apply_control(control);
                inner.publish();
                Ok(())
            }
            Err(_) => {
                self.shared.controls.queue(control)?;
                // The `poll` may have returned between the two: then apply
                // it now rather than at the next `poll`.
                if let Ok(mut inner) = self.inner.try_lock() {
                    inner.apply_controls();
                }
                Ok(())
            }
        }
    }

    /// The fetch state, once no `poll` holds it: a `poll` waiting for
    /// fetches returns early for this. Cancel-safe: dropped while waiting,
    /// nothing changed.
    async fn fetch_state(&self) -> tokio::sync::MutexGuard<'_, Inner> {
        if let Ok(inner) = self.inner.try_lock() {
            return inner;
        }
        let _wanted = self.shared.controls.want_fetch_state();
        self.inner.lock().await
    }

    /// Takes exactly these partitions, without group membership. With a
    /// `group_id`, they start at their committed offsets (and commits go to
    /// that group); otherwise by `auto_offset_reset`. Leaves the group if
    /// the consumer was subscribed. A `poll` in progress on another task
    /// returns (early, with what it has) to let it through.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe. Dropped while waiting for a `poll` in progress to
    /// return, nothing changed. The new assignment is in place, and the
    /// revocation commit (with auto-commit) queued, before the next await;
    /// only LeaveGroup remains then, sent from a task of its own whether or
    /// not this is awaited, so the partitions' next owners get them at
    /// once.
    pub async fn assign(&self, partitions: &[TopicPartition]) -> Result<(), SubscribeError> {
        if partitions.iter().any(|tp| tp.topic.is_empty()) {
            return Err(SubscribeError::EmptyTopicName);
        }
        let mut inner = self.fetch_state().await;
        inner.apply_controls();
        let result = inner.assign(partitions).await;
        inner.publish();
        result
    }

    /// Leaves the group (after committing, with auto-commit, and the
    /// listener's revocation callback) or drops the manual assignment. A
    /// `poll` in progress on another task returns early to let it through.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe. Dropped while waiting for a `poll` in progress to
    /// return, nothing changed. The consumer is unsubscribed, and the
    /// revocation commit queued, before the next await; only LeaveGroup
    /// remains then, sent whether or not this is awaited (as for
    /// [`assign`](Self::assign)).
    pub async fn unsubscribe(&self) {
        let mut inner = self.fetch_state().await;
        inner.apply_controls();
        inner.unsubscribe().await;
        inner.publish();
    }

    /// The partitions assigned to this consumer, as `poll` last saw them.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.shared.view().partitions.keys().cloned().collect()
    }

    /// The subscribed topics (empty when not subscribed).
    pub fn subscription(&self) -> Vec<String> {
        match &self.shared.view().mode {
            ViewMode::Subscribed(topics) => topics.clone(),
            _ => Vec::new(),
        }
    }

    /// The group generation and member id, while the consumer is in one.
    pub fn group_generation(&self) -> Option<(i32, String)> {
        let group = self.shared.group.as_ref()?;
        let state = group.state();
        (state.phase == Phase::Stable).then(|| (state.generation_id, state.member_id.clone()))
    }

    /// The offset of the next record `poll` returns for `partition`, once
    /// known (after the committed offset or reset was looked up): the
    /// offset after the last record handed out, which is what a commit of
    /// the positions stores.
    pub fn position(&self, partition: &TopicPartition) -> Option<i64> {
        self.shared
            .view()
            .partitions
            .get(partition)
            .and_then(|p| p.delivered.as_ref())
            .map(|offset| offset.offset)
    }

    /// How far `partition`'s position is behind its high watermark (the
    /// records committed to the log and not yet handed out), once both are
    /// known.
    pub fn lag(&self, partition: &TopicPartition) -> Option<i64> {
        let view = self.shared.view();
        let state = view.partitions.get(partition)?;
        Some(lag(state.delivered.as_ref()?.offset, state.high_watermark?))
    }

    /// Per assigned partition: position, high watermark and lag, as `poll`
    /// last published them.
    pub fn metrics(&self) -> ConsumerMetrics {
        let view = self.shared.view();
        let partitions = view
            .partitions
            .iter()
            .map(|(tp, state)| {
                let position = state.delivered.as_ref().map(|o| o.offset);
                let metrics = PartitionMetrics {
                    position,
                    high_watermark: state.high_watermark,
                    lag: position.zip(state.high_watermark).map(|(p, h)| lag(p, h)),
                    paused: state.paused,
                };
                (tp.clone(), metrics)
            })
            .collect();
        ConsumerMetrics { partitions }
    }

    /// The high watermark of `partition` in the last fetch response.
    pub fn high_watermark(&self, partition: &TopicPartition) -> Option<i64> {
        self.shared
            .view()
            .partitions
            .get(partition)
            .and_then(|p| p.high_watermark)
    }

    /// Moves the position of an assigned partition: the next `poll` returns
    /// records from `offset` (records buffered from elsewhere are dropped).
    ///
    /// Not async: takes effect at once, or, while another task's `poll`
    /// runs, before that `poll` next collects or hands out records (see
    /// [`Consumer`]); a partition the consumer lost by then is left alone.
    pub fn seek(&self, partition: &TopicPartition, offset: i64) -> Result<(), AssignmentError> {
        self.check_assigned(std::slice::from_ref(partition))?;
        self.assignment_control(Control::Seek {
            partition: partition.clone(),
            offset,
        })
    }

    /// Moves the positions to the log start offset.
    ///
    /// Not async: takes effect as [`seek`](Self::seek) does.
    pub fn seek_to_beginning(&self, partitions: &[TopicPartition]) -> Result<(), AssignmentError> {
        self.check_assigned(partitions)?;
        self.assignment_control(Control::SeekTo {
            partitions: partitions.to_vec(),
            reset: OffsetReset::Earliest,
        })
    }

    /// Moves the positions to the log end offset.
    ///
    /// Not async: takes effect as [`seek`](Self::seek) does.
    pub fn seek_to_end(&self, partitions: &[TopicPartition]) -> Result<(), AssignmentError> {
        self.check_assigned(partitions)?;
        self.assignment_control(Control::SeekTo {
            partitions: partitions.to_vec(),
            reset: OffsetReset::Latest,
        })
    }

    /// Stops returning (and fetching) records of these partitions until
    /// `resume`; their records already fetched are kept for then. Pausing
    /// does not give partitions up, and survives a rebalance only for
    /// partitions the member keeps.
    ///
    /// Not async: takes effect as [`seek`](Self::seek) does, so a `poll`
    /// in progress hands out no record of these partitions after this
    /// returns.
    pub fn pause(&self, partitions: &[TopicPartition]) -> Result<(), AssignmentError> {
        self.check_assigned(partitions)?;
        self.assignment_control(Control::SetPaused {
            partitions: partitions.to_vec(),
            paused: true,
        })
    }

    /// Returns records of these paused partitions again.
    ///
    /// Not async: takes effect as [`seek`](Self::seek) does.
    pub fn resume(&self, partitions: &[TopicPartition]) -> Result<(), AssignmentError> {
        self.check_assigned(partitions)?;
        self.assignment_control(Control::SetPaused {
            partitions: partitions.to_vec(),
            paused: false,
        })
    }

    /// `NotAssigned` for the first of `partitions` that `poll` has not
    /// published as assigned.
    fn check_assigned(&self, partitions: &[TopicPartition]) -> Result<(), AssignmentError> {
        let view = self.shared.view();
        match partitions
            .iter()
            .find(|tp| !view.partitions.contains_key(*tp))
        {
            Some(tp) => Err(AssignmentError::NotAssigned {
                topic: tp.topic.clone(),
                partition: tp.partition,
            }),
            None => Ok(()),
        }
    }

    fn assignment_control(&self, control: Control) -> Result<(), AssignmentError> {
        self.control(control)
            .map_err(|queued_max| AssignmentError::TooManyQueued { queued_max })
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.shared
            .view()
            .partitions
            .iter()
            .filter(|(_, p)| p.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Returns the records fetched since the last call, at most
    /// `max_poll_records`, waiting up to `timeout` for some to arrive. It
    /// also does the group work: joining and rejoining (calling the
    /// rebalance listener), looking up committed offsets for new
    /// partitions, and auto-committing.
    ///
    /// Records are handed out in offset order per partition, and the
    /// partition's position moves past them: a commit of the positions
    /// (`commit_sync`, or auto-commit) covers exactly what `poll` returned.
    /// Before returning, the next fetches are sent, so data arrives while
    /// the application processes this batch.
    ///
    /// `poll` takes `&self`, so other tasks may commit or store offsets
    /// while it runs; two concurrent polls take turns.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: `poll` may lose a `select!` (to a timer, to Ctrl-C)
    /// without losing records. A position moves past a record only when
    /// the record is handed out; records `poll` had already collected when
    /// it was dropped are kept and returned, first, by the next `poll` (or
    /// the [`stream`](Self::stream)), and until then neither a commit nor
    /// [`position`](Self::position) counts them. Dropped during group work,
    /// what `poll` leaves undone is picked up by the next `poll`: a join
    /// round goes on, and the commit before a revocation is queued before
    /// the first await, so it is sent either way.
    pub async fn poll(&self, timeout: Duration) -> Result<ConsumerRecords, PollError> {
        let mut inner = self.inner.lock().await;
        let result = inner.poll(timeout).await;
        inner.publish();
        result
    }

    /// Hands out the records as a [`futures::Stream`], one at a time: the
    /// everyday way to consume. The stream never ends; it yields a
    /// [`PollError`] where `poll` would return one, and goes on after it.
    /// It does what `poll` does (group work, auto-commit) in rounds of at
    /// most [`STREAM_POLL_TIMEOUT`].
    ///
    /// The stream borrows the consumer shared, so commits may be made
    /// while it runs: a commit of the positions covers exactly the records
    /// the stream yielded.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as `poll`: dropping `stream.next()`, or the stream,
    /// loses no record; records collected but not yielded wait in the
    /// consumer for the next `next()` or `poll`.
    pub fn stream(&self) -> RecordStream<'_> {
        RecordStream::new(self)
    }

    /// Stores `offset` (the offset of the *next* record to read) as what
    /// the next commit of `partition` covers, with `enable_auto_offset_store`
    /// off. Commits of the consumer's offsets (`commit_sync`,
    /// `commit_async`, auto-commit, before a revocation, on close) then
    /// commit the stored offsets only: store after processing a record,
    /// and a restart or a rebalance resumes after the last record stored,
    /// never after one merely handed out. Stored offsets of partitions the
    /// consumer loses are dropped.
    pub fn store_offset(
        &self,
        partition: &TopicPartition,
        offset: OffsetAndMetadata,
    ) -> Result<(), StoreError> {
        if self.shared.config.enable_auto_offset_store {
            return Err(StoreError::AutoStoreEnabled);
        }
        let mut view = self.shared.view();
        if !view.partitions.contains_key(partition) {
            return Err(StoreError::NotAssigned {
                topic: partition.topic.clone(),
                partition: partition.partition,
            });
        }
        view.stored.insert(partition.clone(), offset);
        Ok(())
    }

    /// [`store_offset`](Self::store_offset) of the offset after `record`:
    /// the record is processed.
    pub fn store_record(&self, record: &ConsumerRecord) -> Result<(), StoreError> {
        let mut offset = OffsetAndMetadata::new(record.offset + 1);
        offset.leader_epoch = record.leader_epoch;
        self.store_offset(
            &TopicPartition::new(&*record.topic, record.partition),
            offset,
        )
    }

    /// Commits the consumer's offsets (the positions of what `poll`
    /// returned, or the stored offsets with `enable_auto_offset_store` off)
    /// and waits for the answer, retrying retriable errors up to
    /// `default_api_timeout`. Callable from any task while another polls.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the commit is queued before the first await, and sent
    /// whether or not this is awaited; it covers only records handed out
    /// when it was made, and commits reach the coordinator in the order
    /// they were made, so it cannot overwrite a newer one.
    pub async fn commit_sync(&self) -> Result<(), CommitError> {
        let offsets = self.shared.offsets_to_commit();
        self.commit_offsets_sync(offsets).await
    }

    /// Commits the given offsets (each the offset of the *next* record to
    /// read) and waits for the answer.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`commit_sync`](Self::commit_sync).
    pub async fn commit_offsets_sync(
        &self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<(), CommitError> {
        let attempts = Attempts::RetryFor(self.shared.config.default_api_timeout);
        self.shared.queue_commit(offsets, attempts).await
    }

    /// Queues a commit of the consumer's offsets (as
    /// [`commit_sync`](Self::commit_sync) would) and returns at once, with
    /// a future of its outcome (one attempt, no retries). It never waits:
    /// the commit is in line when this returns, and is sent whether or not
    /// the [`CommitFuture`] is awaited. Commits, sync or async, reach the
    /// coordinator in the order they were made.
    ///
    /// # Cancel safety
    ///
    /// Not async, so there is nothing to cancel but the [`CommitFuture`]:
    /// dropping it, polled or not, drops only the outcome; the commit is
    /// sent.
    pub fn commit_async(&self) -> CommitFuture {
        let offsets = self.shared.offsets_to_commit();
        self.commit_offsets_async(offsets)
    }

    /// `commit_async` of the given offsets.
    ///
    /// # Cancel safety
    ///
    /// As [`commit_async`](Self::commit_async).
    pub fn commit_offsets_async(
        &self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> CommitFuture {
        self.shared.queue_commit(offsets, Attempts::Once)
    }

    /// The committed offsets of `partitions` in the consumer's group (`None`
    /// where nothing is committed).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, OffsetFetchError> {
        let Some(group) = self.shared.group.clone() else {
            return Err(OffsetFetchError::NoGroupId);
        };
        offsets::fetch_committed(&group, partitions, self.shared.config.default_api_timeout).await
    }

    /// Closes the consumer: with auto-commit, commits the consumer's
    /// offsets; calls the listener's revocation callback; leaves the group
    /// (dynamic members); stops the background tasks and closes the
    /// connections. Returns the outcome of the final commit.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in that nothing is lost: dropped, the consumer is
    /// dropped with it. The final commit (with auto-commit) is queued
    /// before the first await and sent whether or not this is awaited;
    /// dropped before that, it is not made, and the records since the last
    /// commit are delivered again to the partitions' next owner. The
    /// member leaves its group either way: from a task of its own once
    /// `close` got that far, else as a dropped consumer does (see
    /// [`LEAVE_ON_DROP_TIMEOUT`]).
    pub async fn close(mut self) -> Result<(), CommitError> {
        self.inner.get_mut().close().await
    }

    /// Test support, not for applications: the next `count` fetch tasks
    /// panic with `message`, to check what a panicking fetch task does.
    #[doc(hidden)]
    pub fn inject_fetch_task_panics(&mut self, count: u32, message: &str) {
        self.inner.get_mut().fetcher.inject_panics(count, message);
    }

    /// Test support, not for applications: the heartbeat task panics with
    /// `message` when it next wakes.
    #[doc(hidden)]
    pub fn inject_heartbeat_panic(&mut self, message: &str) {
        if let Some(group) = &self.shared.group {
            *group
                .injected_heartbeat_panic
                .lock()
                .expect("injected panic lock") = Some(message.to_string());
        }
    }
}

impl Inner {
    /// Subscribes to `topics` in the consumer's group. The next `poll` joins
    /// the group (or rejoins it, if the topics changed). Replaces an
    /// assignment made with `assign`.
    fn subscribe<S: AsRef<str>>(&mut self, topics: &[S]) -> Result<(), SubscribeError> {
        let Some(group) = self.group.clone() else {
            return Err(SubscribeError::NoGroupId);
        };
        let topics: BTreeSet<String> = topics.iter().map(|t| t.as_ref().to_string()).collect();
        if topics.iter().any(String::is_empty) {
            return Err(SubscribeError::EmptyTopicName);
        }
        self.rewind_undelivered();
        if self.mode == Mode::Assigned {
            self.assignment.clear();
            self.fetcher.clear_buffer();
        }
        if self.mode != Mode::Subscribed(topics.clone()) {
            // Also while a join round is under way: it carries the old
            // topics, so another round follows it.
            group.state().rejoin_needed = Some("the subscription changed".into());
        }
        self.mode = Mode::Subscribed(topics);
        self.next_metadata_refresh = Instant::now();
        Ok(())
    }

    /// Applies the changes queued while a `poll` held the fetch state, in
    /// the order they were made. Called by every holder of the fetch state
    /// before it collects or hands out records.
    fn apply_controls(&mut self) {
        let controls = self.shared.controls.take();
        if controls.is_empty() {
            return;
        }
        for control in controls {
            self.apply_control(control);
        }
        self.publish();
    }

    /// Applies one change. The caller checked it against what `poll` last
    /// published; a partition lost since is left alone.
    fn apply_control(&mut self, control: Control) {
        tracing::trace!(?control, "applying a consumer control");
        let result = match control {
            Control::Subscribe { topics, listener } => {
                let result = self.subscribe(&topics).map_err(|e| e.to_string());
                if result.is_ok() && listener.is_some() {
                    self.listener = listener;
                }
                result
            }
            Control::Seek { partition, offset } => {
                self.seek(&partition, offset).map_err(|e| e.to_string())
            }
            Control::SeekTo { partitions, reset } => {
                self.seek_to(&partitions, reset).map_err(|e| e.to_string())
            }
            Control::SetPaused { partitions, paused } => self
                .set_paused(&partitions, paused)
                .map_err(|e| e.to_string()),
        };
        if let Err(reason) = result {
            tracing::debug!(%reason, "a consumer control no longer applies");
        }
    }

    /// Takes exactly these partitions, without group membership. With a
    /// `group_id`, they start at their committed offsets (and commits go to
    /// that group); otherwise by `auto_offset_reset`. Leaves the group if
    /// the consumer was subscribed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe. The new assignment is in place, and the revocation
    /// commit (with auto-commit) queued, before the first await; only the
    /// requests of leaving a group remain then, and they run on a task of
    /// their own (`LeaveRequests::send`), sent whether or not this is
    /// awaited.
    async fn assign(&mut self, partitions: &[TopicPartition]) -> Result<(), SubscribeError> {
        if partitions.iter().any(|tp| tp.topic.is_empty()) {
            return Err(SubscribeError::EmptyTopicName);
        }
        self.rewind_undelivered();
        let leaving = if matches!(self.mode, Mode::Subscribed(_)) {
            let leaving = self.begin_leave("the consumer unsubscribed", true);
            self.assignment.clear();
            self.fetcher.clear_buffer();
            self.mode = Mode::None;
            leaving
        } else {
            None
        };
        let keep: BTreeSet<&TopicPartition> = partitions.iter().collect();
        let dropped: Vec<TopicPartition> = self
            .assignment
            .partitions()
            .into_iter()
            .filter(|tp| !keep.contains(tp))
            .collect();
        self.assignment.remove(&dropped);
        let committed = self.group.is_some();
        self.assignment
            .add(partitions, committed, self.reset_policy());
        self.mode = if partitions.is_empty() {
            Mode::None
        } else {
            Mode::Assigned
        };
        self.next_metadata_refresh = Instant::now();
        if let Some(leaving) = leaving {
            self.publish();
            leaving.send().await;
        }
        Ok(())
    }

    /// Leaves the group (after committing, with auto-commit, and the
    /// listener's revocation callback) or drops the manual assignment.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe. The consumer is unsubscribed before the first await;
    /// only the revocation commit and the LeaveGroup remain then, sent
    /// whether or not this is awaited (as for [`assign`](Self::assign)).
    async fn unsubscribe(&mut self) {
        self.rewind_undelivered();
        let leaving = if matches!(self.mode, Mode::Subscribed(_)) {
            self.begin_leave("the consumer unsubscribed", true)
        } else {
            None
        };
        self.assignment.clear();
        self.fetcher.clear_buffer();
        self.mode = Mode::None;
        if let Some(leaving) = leaving {
            self.publish();
            leaving.send().await;
        }
    }

    /// What a commit of `partitions` covers before they are given up: their
    /// delivered positions, or their stored offsets (manual offset store).
    fn offsets_to_commit_of(
        &self,
        partitions: &[TopicPartition],
    ) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        if self.config.enable_auto_offset_store {
            self.assignment.positions_of(partitions)
        } else {
            let view = self.shared.view();
            partitions
                .iter()
                .filter_map(|tp| view.stored.get(tp).map(|o| (tp.clone(), o.clone())))
                .collect()
        }
    }

    /// Puts every partition with records collected but not handed out back
    /// before them, and drops those records (they are fetched again): for
    /// calls that change positions or the assignment.
    fn rewind_undelivered(&mut self) {
        for (tp, delivered) in self.undelivered.rewind() {
            if let Some(state) = self.assignment.get_mut(&tp) {
                state.position = Some(delivered);
            }
        }
    }

    /// Moves the position of an assigned partition: the next `poll` returns
    /// records from `offset` (records buffered from elsewhere are dropped).
    fn seek(&mut self, partition: &TopicPartition, offset: i64) -> Result<(), AssignmentError> {
        self.assigned_mut(partition)?;
        self.rewind_undelivered();
        self.assigned_mut(partition)?.seek(offset);
        Ok(())
    }

    fn seek_to(
        &mut self,
        partitions: &[TopicPartition],
        reset: OffsetReset,
    ) -> Result<(), AssignmentError> {
        for tp in partitions {
            self.assigned_mut(tp)?;
        }
        self.rewind_undelivered();
        for tp in partitions {
            let state = self.assigned_mut(tp)?;
            state.awaiting_committed = false;
            state.reset = Some(reset);
            state.retry_at = None;
        }
        Ok(())
    }

    fn set_paused(
        &mut self,
        partitions: &[TopicPartition],
        paused: bool,
    ) -> Result<(), AssignmentError> {
        for tp in partitions {
            self.assigned_mut(tp)?;
        }
        self.rewind_undelivered();
        for tp in partitions {
            self.assigned_mut(tp)?.paused = paused;
        }
        Ok(())
    }

    fn assigned_mut(
        &mut self,
        partition: &TopicPartition,
    ) -> Result<&mut state::PartitionState, AssignmentError> {
        self.assignment
            .get_mut(partition)
            .ok_or_else(|| AssignmentError::NotAssigned {
                topic: partition.topic.clone(),
                partition: partition.partition,
            })
    }

    fn reset_policy(&self) -> Option<OffsetReset> {
        match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => Some(OffsetReset::Earliest),
            AutoOffsetReset::Latest => Some(OffsetReset::Latest),
            AutoOffsetReset::None => None,
        }
    }

    /// Returns the records fetched since the last call, at most
    /// `max_poll_records`, waiting up to `timeout` for some to arrive. It
    /// also does the group work: joining and rejoining (calling the
    /// rebalance listener), looking up committed offsets for new
    /// partitions, and auto-committing.
    ///
    /// Records are handed out in offset order per partition, and the
    /// partition's position moves past them: a commit of the positions
    /// (`commit_sync`, or auto-commit) covers exactly what `poll` returned.
    /// Before returning, the next fetches are sent, so data arrives while
    /// the application processes this batch.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: `poll` may lose a `select!` (to a timer, to Ctrl-C)
    /// without losing records. A position moves past a record only when
    /// the record is handed out; records `poll` had already collected when
    /// it was dropped are kept and returned, first, by the next `poll` (or
    /// the [`stream`](Self::stream)), and until then neither a commit nor
    /// [`position`](Self::position) counts them. Dropped during group work,
    /// what `poll` leaves undone is picked up by the next `poll`: a join
    /// round goes on, and a commit before a revocation may not be sent,
    /// so the records since the last commit are delivered again to the
    /// partitions' next owner.
    async fn poll(&mut self, timeout: Duration) -> Result<ConsumerRecords, PollError> {
        self.apply_controls();
        if self.undelivered.is_empty() {
            self.fill(timeout).await?;
        }
        // A change made on another task while `fill` ran (a seek, a pause)
        // takes effect before records are handed out: it puts back what
        // `fill` collected, and this poll then returns nothing.
        self.apply_controls();
        let records = self.undelivered.take_all();
        self.publish();
        Ok(ConsumerRecords::from_vec(records))
    }

    /// Hands out the oldest record collected and not yet handed out.
    fn pop_record(&mut self) -> Option<ConsumerRecord> {
        self.apply_controls();
        let record = self.undelivered.pop()?;
        let tp = TopicPartition::new(&*record.topic, record.partition);
        let delivered = self.delivered_position(&tp);
        if let Some(view) = self.shared.view().partitions.get_mut(&tp) {
            view.delivered = delivered;
        }
        Some(record)
    }

    /// The delivered position of one partition: the offset after its last
    /// record handed out (its position, unless records wait undelivered).
    fn delivered_position(&self, tp: &TopicPartition) -> Option<OffsetAndMetadata> {
        if let Some(delivered) = self.undelivered.position_of(tp) {
            let mut offset = OffsetAndMetadata::new(delivered.offset);
            offset.leader_epoch = delivered.leader_epoch;
            return Some(offset);
        }
        self.assignment.get(tp).and_then(|s| s.position).map(|p| {
            let mut offset = OffsetAndMetadata::new(p.offset);
            offset.leader_epoch = p.leader_epoch;
            offset
        })
    }

    /// Publishes what the calls on `&self` read: the assignment, the
    /// delivered positions, pauses and high watermarks. Called after every
    /// change to them and before every await of `poll`, so a commit made
    /// from another task covers what was handed out when it was made, and
    /// only partitions this consumer still owns.
    fn publish(&self) {
        let mode = match &self.mode {
            Mode::None => ViewMode::None,
            Mode::Subscribed(topics) => ViewMode::Subscribed(topics.iter().cloned().collect()),
            Mode::Assigned => ViewMode::Assigned,
        };
        let partitions: BTreeMap<TopicPartition, PartitionView> = self
            .assignment
            .iter()
            .map(|(tp, state)| {
                let view = PartitionView {
                    delivered: self.delivered_position(tp),
                    high_watermark: state.high_watermark,
                    paused: state.paused,
                };
                (tp.clone(), view)
            })
            .collect();
        let mut view = self.shared.view();
        view.stored.retain(|tp, _| partitions.contains_key(tp));
        view.partitions = partitions;
        view.mode = mode;
    }

    /// Starts the heartbeat task again if it ended (a panic: it only ends
    /// by itself when the consumer is closed or dropped); returns why it
    /// ended, for `poll` to report once.
    fn restart_dead_heartbeat(&mut self) -> Option<String> {
        if !self
            .heartbeat
            .as_ref()
            .is_some_and(|heartbeat| heartbeat.is_finished())
        {
            return None;
        }
        let dead = self.heartbeat.take().expect("checked above");
        let group = self.group.clone().expect("a heartbeat task has a group");
        self.heartbeat = Some(tokio::spawn(membership::heartbeat_loop(group)));
        match dead.now_or_never() {
            Some(Err(error)) => Some(crate::join_error_reason("heartbeat task", error)),
            _ => None,
        }
    }

    /// The body of `poll`: waits up to `timeout` until records are
    /// collected into `undelivered` (none when it times out), doing the
    /// group work meanwhile. Positions move past the records collected;
    /// they count as handed out only once taken from `undelivered`.
    async fn fill(&mut self, timeout: Duration) -> Result<(), PollError> {
        assert!(
            self.undelivered.is_empty(),
            "records are collected only once the last ones were handed out"
        );
        self.apply_controls();
        if self.mode == Mode::None {
            return Err(PollError::NotSubscribed);
        }
        let deadline = Instant::now() + timeout;
        self.fetcher.drain_finished(&mut self.assignment);
        while let Some(done) = self.background.try_join_next() {
            self.background_done(done)?;
        }
        loop {
            if let Some(reason) = self.restart_dead_heartbeat() {
                tracing::error!(%reason, "consumer heartbeat task died; started again");
                return Err(PollError::HeartbeatTaskFailed { reason });
            }
            if let Some(failure) = self.fetcher.take_task_failure() {
                return Err(PollError::FetchTaskFailed {
                    broker_id: failure.broker_id,
                    reason: failure.reason,
                });
            }
            if let Some(group) = &self.group {
                // Waiting inside poll counts as polling (max_poll_interval).
                group.state().last_poll = Instant::now();
            }
            self.apply_controls();
            self.publish();
            self.maybe_auto_commit().await;
            if matches!(self.mode, Mode::Subscribed(_)) {
                self.drive_group().await?;
            }
            self.start_background_work();
            if let Some(tp) = self.partition_without_position() {
                return Err(PollError::NoOffset {
                    topic: tp.topic,
                    partition: tp.partition,
                });
            }
            let mut before = Vec::new();
            let records = self.fetcher.collect(
                &mut self.assignment,
                self.config.max_poll_records,
                self.config.auto_offset_reset,
                &mut before,
            )?;
            self.fetcher
                .send_fetches(&self.assignment, &self.cluster.metadata());
            if !records.is_empty() {
                // Kept in the consumer, not on this future's stack: if the
                // future is dropped at the yield below, the next call hands
                // them out.
                self.undelivered.keep(records, before);
                self.publish();
                // Let the fetches just sent reach the socket, and responses
                // that arrived be read, before the application takes the
                // records: on a single-threaded runtime nothing else runs
                // until the application next awaits, which for a busy
                // consumer is the poll that finds the buffer empty, and the
                // broker would sit idle while these records are processed.
                crate::yield_if_single_threaded().await;
                return Ok(());
            }
            let now = Instant::now();
            // Another task waits for the fetch state (`assign`,
            // `unsubscribe`): give it up rather than wait for fetches.
            if now >= deadline || self.shared.controls.fetch_state_wanted() {
                return Ok(());
            }
            self.publish();
            match self.wait(self.wake_at(deadline)).await {
                Woken::Other => {}
                Woken::Background(done) => self.background_done(done)?,
                Woken::Joined(result) => self.join_result = Some(result),
            }
        }
    }

    /// A partition with no position and nothing that would give it one:
    /// no committed offset and no reset policy.
    fn partition_without_position(&self) -> Option<TopicPartition> {
        self.assignment
            .iter()
            .find(|(_, s)| s.position.is_none() && !s.awaiting_committed && s.reset.is_none())
            .map(|(tp, _)| tp.clone())
    }

    /// The earliest time something needs `poll`'s attention besides the
    /// events it waits on: the deadline, the next auto-commit, the end of a
    /// backoff.
    fn wake_at(&self, deadline: Instant) -> Instant {
        let mut wake = deadline;
        if self.config.auto_commit() {
            wake = wake.min(self.next_auto_commit);
        }
        let now = Instant::now();
        // A long poll with nothing to wake it still counts as polling: come
        // round the loop well within max_poll_interval.
        wake = wake.min(now + self.config.max_poll_interval / 2);
        // Only backoffs still running: one that has passed either let its
        // partition be fetched already or waits on something else.
        for (_, state) in self.assignment.iter() {
            if let Some(at) = state.retry_at.filter(|at| *at > now) {
                wake = wake.min(at);
            }
        }
        if self.fetcher.metadata_refresh_needed
            && !self.metadata_refresh_in_flight
            && self.metadata_retry_at > now
        {
            wake = wake.min(self.metadata_retry_at);
        }
        wake.max(now)
    }

    async fn wait(&mut self, wake_at: Instant) -> Woken {
        let Inner {
            shared,
            fetcher,
            assignment,
            group,
            join,
            background,
            ..
        } = self;
        let group_event = async {
            match group {
                Some(group) => group.events.notified().await,
                None => std::future::pending().await,
            }
        };
        let join_done = async {
            match join.as_mut() {
                Some(join) => join.await,
                None => std::future::pending().await,
            }
        };
        let background_done = async {
            match background.join_next().await {
                Some(done) => done,
                None => std::future::pending().await,
            }
        };
        let woken = tokio::select! {
            _ = fetcher.wait_for_fetch(assignment) => Woken::Other,
            result = join_done => Woken::Joined(result),
            done = background_done => Woken::Background(done),
            _ = group_event => Woken::Other,
            _ = tokio::time::sleep_until(wake_at) => Woken::Other,
            // A change queued, or a call waiting for the fetch state.
            _ = shared.controls.woken.notified() => Woken::Other,
        };
        if matches!(woken, Woken::Joined(_)) {
            self.join = None;
        }
        woken
    }

    fn background_done(
        &mut self,
        done: Result<Background, tokio::task::JoinError>,
    ) -> Result<(), PollError> {
        match done {
            Ok(outcome) => self.background_outcome(outcome),
            Err(e) => {
                // Which lookup it was is unknown: let each start again. The
                // failure is a bug (a panic); reported, not retried silently
                // for as long as it repeats.
                tracing::error!(error = %e, "consumer background task failed");
                self.committed_lookup_in_flight = false;
                self.list_offsets_in_flight = false;
                self.metadata_refresh_in_flight = false;
                Err(PollError::LookupTaskFailed {
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Applies what a lookup found to the partitions still waiting for it.
    fn background_outcome(&mut self, outcome: Background) -> Result<(), PollError> {
        match outcome {
            Background::Metadata { result } => {
                self.metadata_refresh_in_flight = false;
                match result {
                    Ok(()) => {
                        self.fetcher.metadata_refresh_needed = false;
                        self.next_metadata_refresh = Instant::now() + self.config.metadata_max_age;
                        self.check_partition_counts();
                    }
                    Err(reason) => tracing::debug!(%reason, "metadata refresh failed"),
                }
                Ok(())
            }
            Background::Committed { result } => {
                self.committed_lookup_in_flight = false;
                let committed = match result {
                    Ok(committed) => committed,
                    Err(OffsetFetchError::Timeout { waited, last_error }) => {
                        tracing::debug!(?waited, %last_error, "committed offsets not read yet; retrying");
                        let retry_at = Instant::now() + self.config.retry_backoff;
                        for (_, state) in self.assignment.iter_mut() {
                            if state.awaiting_committed {
                                state.retry_at = Some(retry_at);
                            }
                        }
                        return Ok(());
                    }
                    Err(error) => return Err(PollError::Committed(error)),
                };
                let reset = self.reset_policy();
                for (tp, offset) in committed {
                    let Some(state) = self.assignment.get_mut(&tp) else {
                        continue;
                    };
                    if !state.awaiting_committed {
                        continue;
                    }
                    state.awaiting_committed = false;
                    match offset {
                        Some(offset) => {
                            state.position = Some(state::Position {
                                offset: offset.offset,
                                leader_epoch: offset.leader_epoch,
                            });
                        }
                        // Without a reset policy the partition stays without
                        // a position, which `poll` reports until a seek.
                        None => state.reset = reset,
                    }
                }
                Ok(())
            }
            Background::Listed { results } => {
                self.list_offsets_in_flight = false;
                let retry_at = Instant::now() + self.config.retry_backoff;
                for (tp, (reset, result)) in results {
                    let Some(state) = self.assignment.get_mut(&tp) else {
                        continue;
                    };
                    if state.reset != Some(reset) {
                        continue;
                    }
                    match result {
                        Ok((offset, leader_epoch)) => {
                            state.reset = None;
                            state.position = Some(state::Position {
                                offset,
                                leader_epoch,
                            });
                        }
                        Err(code) if codes::needs_metadata_refresh(code) || code.is_retriable() => {
                            self.fetcher.metadata_refresh_needed = true;
                            state.retry_at = Some(retry_at);
                        }
                        Err(code) => {
                            state.retry_at = Some(retry_at);
                            return Err(PollError::ListOffsets {
                                topic: tp.topic,
                                partition: tp.partition,
                                policy: match reset {
                                    OffsetReset::Earliest => "earliest",
                                    OffsetReset::Latest => "latest",
                                },
                                code,
                            });
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Starts the lookups the partitions need (committed offsets, resets)
    /// and a metadata refresh when one is due; each runs in the background
    /// and is applied by `poll` when it ends.
    fn start_background_work(&mut self) {
        let now = Instant::now();
        let refresh_due = self.fetcher.metadata_refresh_needed || now >= self.next_metadata_refresh;
        if refresh_due && !self.metadata_refresh_in_flight && now >= self.metadata_retry_at {
            let mut topics: BTreeSet<String> = self
                .assignment
                .iter()
                .map(|(tp, _)| tp.topic.clone())
                .collect();
            if let Mode::Subscribed(subscribed) = &self.mode {
                topics.extend(subscribed.iter().cloned());
            }
            if topics.is_empty() {
                self.fetcher.metadata_refresh_needed = false;
            } else {
                self.metadata_refresh_in_flight = true;
                self.metadata_retry_at = now + self.config.retry_backoff;
                let cluster = self.cluster.clone();
                let topics: Vec<String> = topics.into_iter().collect();
                self.background.spawn(async move {
                    Background::Metadata {
                        result: cluster
                            .refresh_metadata(&topics)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                    }
                });
            }
        }
        if !self.committed_lookup_in_flight {
            if let Some(group) = self.group.clone() {
                let awaiting: Vec<TopicPartition> = self
                    .assignment
                    .iter()
                    .filter(|(_, s)| s.awaiting_committed && s.retry_at.is_none_or(|at| at <= now))
                    .map(|(tp, _)| tp.clone())
                    .collect();
                if !awaiting.is_empty() {
                    self.committed_lookup_in_flight = true;
                    let timeout = self.config.default_api_timeout;
                    self.background.spawn(async move {
                        Background::Committed {
                            result: offsets::fetch_committed(&group, &awaiting, timeout).await,
                        }
                    });
                }
            }
        }
        if !self.list_offsets_in_flight {
            let resets: Vec<(TopicPartition, OffsetReset)> = self
                .assignment
                .iter()
                .filter(|(_, s)| s.retry_at.is_none_or(|at| at <= now))
                .filter_map(|(tp, s)| s.reset.map(|reset| (tp.clone(), reset)))
                .collect();
            if !resets.is_empty() {
                self.list_offsets_in_flight = true;
                let cluster = self.cluster.clone();
                let give_up_at = now + self.config.request_timeout;
                self.background.spawn(async move {
                    let metadata = cluster.metadata();
                    let listed =
                        list_offsets::list_offsets(&cluster, &metadata, &resets, give_up_at).await;
                    let resets: BTreeMap<TopicPartition, OffsetReset> =
                        resets.into_iter().collect();
                    Background::Listed {
                        results: listed
                            .into_iter()
                            .map(|(tp, result)| {
                                let reset = resets[&tp];
                                (tp, (reset, result))
                            })
                            .collect(),
                    }
                });
            }
        }
    }

    /// As leader: a subscribed topic whose partition count changed since
    /// the last assignment calls for a new one.
    fn check_partition_counts(&mut self) {
        let (Some(counts), Some(group), Mode::Subscribed(topics)) =
            (&self.leader_partition_counts, &self.group, &self.mode)
        else {
            return;
        };
        let metadata = self.cluster.metadata();
        let changed = topics.iter().find(|topic| {
            let now = metadata.partition_count(topic);
            now.is_some() && now != counts.get(*topic).copied()
        });
        if let Some(topic) = changed {
            let mut state = group.state();
            if state.phase == Phase::Stable {
                tracing::info!(%topic, "partition count changed; rebalancing");
                state.rejoin_needed = Some(format!("the partition count of {topic} changed"));
            }
        }
    }

    /// Acts on what the heartbeat task recorded and on a finished join
    /// round, and starts a new round when one is needed.
    async fn drive_group(&mut self) -> Result<(), PollError> {
        let group = self
            .group
            .clone()
            .expect("subscribed consumers have a group");
        let (fatal, lost) = {
            let mut state = group.state();
            (state.fatal.take(), state.membership_lost.take())
        };
        if let Some(error) = fatal {
            return Err(PollError::Group(error));
        }
        if let Some(reason) = lost {
            let owned = self.assignment.partitions();
            tracing::warn!(group = %group.group_id, %reason, partitions = owned.len(), "lost the group membership; partitions lost");
            self.lose_partitions(owned);
        }
        if self.join_result.is_none() {
            if let Some(join) = self.join.as_mut() {
                if let Some(result) = join.now_or_never() {
                    self.join = None;
                    self.join_result = Some(result);
                }
            }
        }
        if let Some(result) = self.join_result.take() {
            self.join_completed(&group, result).await?;
        }
        let needs_join = {
            let state = group.state();
            state.phase == Phase::Unjoined || state.rejoin_needed.is_some()
        };
        if needs_join && self.join.is_none() {
            self.start_join(&group).await;
        }
        Ok(())
    }

    async fn start_join(&mut self, group: &Arc<Group>) {
        let Mode::Subscribed(topics) = &self.mode else {
            return;
        };
        let topics: Vec<String> = topics.iter().cloned().collect();
        let reason = group.state().rejoin_needed.take();
        tracing::debug!(group = %group.group_id, reason = reason.as_deref().unwrap_or("joining"), "starting a join round");
        let cooperative = self.config.rebalance_protocol() == RebalanceProtocol::Cooperative;
        let mut commit = BTreeMap::new();
        if !cooperative && !self.assignment.is_empty() {
            // Eager: give up every partition before rejoining.
            let owned = self.assignment.partitions();
            commit = self.revoke(&owned, true);
            self.assignment.clear();
            self.fetcher.clear_buffer();
        }
        let mut owned: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        if cooperative {
            for tp in self.assignment.partitions() {
                owned.entry(tp.topic).or_default().push(tp.partition);
            }
        }
        let owned_generation = {
            let mut state = group.state();
            state.phase = Phase::Joining;
            if owned.is_empty() {
                -1
            } else {
                state.generation_id
            }
        };
        let plan = JoinPlan {
            topics,
            owned,
            owned_generation,
        };
        self.join = Some(Box::pin(membership::join(group.clone(), plan)));
        // The JoinGroup goes out when `poll` next waits, behind this commit
        // on the coordinator connection: the next owners start from it.
        self.commit_for_rebalance(group, commit).await;
    }

    async fn join_completed(
        &mut self,
        group: &Arc<Group>,
        result: Result<Joined, JoinFailure>,
    ) -> Result<(), PollError> {
        let joined = match result {
            Ok(joined) => joined,
            Err(JoinFailure::Fatal(error)) => {
                group.state().phase = Phase::Unjoined;
                return Err(PollError::Group(error));
            }
            Err(JoinFailure::MembershipLost { code }) => {
                group.state().phase = Phase::Unjoined;
                let owned = self.assignment.partitions();
                tracing::warn!(group = %group.group_id, %code, "membership lost while rejoining; partitions lost");
                self.lose_partitions(owned);
                return Ok(());
            }
        };
        {
            let mut state = group.state();
            state.generation_id = joined.generation_id;
            state.member_id = joined.member_id.clone();
            state.phase = Phase::Stable;
        }
        // The heartbeat task may have heartbeated while we were away; the
        // session is fresh after SyncGroup either way.
        self.leader_partition_counts = joined.partition_counts.clone();
        let assigned: BTreeSet<TopicPartition> = joined
            .assignment
            .partitions
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions
                    .iter()
                    .map(move |p| TopicPartition::new(topic.clone(), *p))
            })
            .collect();
        let owned: BTreeSet<TopicPartition> = self.assignment.partitions().into_iter().collect();
        let revoked: Vec<TopicPartition> = owned.difference(&assigned).cloned().collect();
        let added: Vec<TopicPartition> = assigned.difference(&owned).cloned().collect();
        let mut commit = BTreeMap::new();
        if !revoked.is_empty() {
            // Cooperative: give up only what moves, then rejoin so the
            // leader can hand it to its new owner.
            commit = self.revoke(&revoked, true);
            self.assignment.remove(&revoked);
            group.state().rejoin_needed = Some(format!("{} partition(s) revoked", revoked.len()));
        }
        self.assignment.add(&added, true, None);
        assert_eq!(
            self.assignment.partitions().len(),
            assigned.len(),
            "the assignment after a rebalance is exactly what the leader assigned"
        );
        tracing::info!(
            group = %group.group_id,
            generation = joined.generation_id,
            protocol = joined.strategy.name(),
            assigned = assigned.len(),
            added = added.len(),
            revoked = revoked.len(),
            "rebalance complete"
        );
        let queued = self
            .call_listener(|listener, context| listener.on_partitions_assigned(context, &added));
        commit.extend(queued);
        // Every state change is made; only the commits remain (the rejoin
        // that hands the revoked partitions on waits for them).
        self.commit_for_rebalance(group, commit).await;
        Ok(())
    }

    /// Calls the listener for partitions about to be given up and returns
    /// what must be committed before they go: their positions (with
    /// auto-commit), overridden by whatever the listener queued. Changes
    /// nothing itself; the caller removes the partitions.
    fn revoke(
        &mut self,
        partitions: &[TopicPartition],
        auto_commit: bool,
    ) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        if partitions.is_empty() {
            return BTreeMap::new();
        }
        let mut commit = if auto_commit && self.config.auto_commit() {
            self.offsets_to_commit_of(partitions)
        } else {
            BTreeMap::new()
        };
        let queued = self
            .call_listener(|listener, context| listener.on_partitions_revoked(context, partitions));
        commit.extend(queued);
        commit
    }

    /// Commits what a rebalance step needs committed, and waits for it. A
    /// failure is logged: those records will be delivered again.
    async fn commit_for_rebalance(
        &mut self,
        group: &Arc<Group>,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) {
        if offsets.is_empty() {
            return;
        }
        self.publish();
        let member = self.commit_member(group).unwrap_or_else(|_| group.member());
        if let Err(error) = self
            .queue_commit(
                offsets,
                member,
                Attempts::RetryFor(self.config.default_api_timeout),
            )
            .await
        {
            tracing::warn!(group = %group.group_id, %error, "commit during a rebalance failed; the records since the last commit will be delivered again");
        }
    }

    /// Drops partitions the member no longer owns (no commit is possible).
    fn lose_partitions(&mut self, partitions: Vec<TopicPartition>) {
        if !partitions.is_empty() {
            if let Some(mut listener) = self.listener.take() {
                let mut context = RebalanceContext::new(&mut self.assignment);
                listener.on_partitions_lost(&mut context, &partitions);
                if context.commit.is_some() {
                    tracing::debug!("dropping a commit queued while partitions were lost");
                }
                self.listener = Some(listener);
            }
        }
        self.assignment.remove(&partitions);
        self.fetcher.clear_buffer();
    }

    /// Calls the listener with a context on the assignment; returns the
    /// commit it queued (empty if none).
    fn call_listener(
        &mut self,
        call: impl FnOnce(&mut Box<dyn RebalanceListener>, &mut RebalanceContext<'_>),
    ) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        let Some(mut listener) = self.listener.take() else {
            return BTreeMap::new();
        };
        let queued = {
            let mut context = RebalanceContext::new(&mut self.assignment);
            call(&mut listener, &mut context);
            context.commit
        };
        self.listener = Some(listener);
        queued.unwrap_or_default()
    }

    /// Gives up the group membership: the revocation callback (when in a
    /// generation), then the consumer's and the group's state say it left.
    /// Returns the requests that remain: the commit, and LeaveGroup
    /// (dynamic members only: a static member keeps its place for its
    /// session timeout). Synchronous, so that a caller dropped while the
    /// requests are under way leaves the consumer in a state it can go on
    /// from.
    fn begin_leave(&mut self, reason: &str, auto_commit: bool) -> Option<LeaveRequests> {
        let group = self.group.clone()?;
        self.join = None;
        self.join_result = None;
        let phase = group.state().phase;
        let owned = self.assignment.partitions();
        let commit_member = self
            .commit_member(&group)
            .unwrap_or_else(|_| group.member());
        let mut commit = BTreeMap::new();
        if phase == Phase::Stable {
            commit = self.revoke(&owned, auto_commit);
            self.assignment.clear();
            self.fetcher.clear_buffer();
        } else if !owned.is_empty() {
            self.lose_partitions(owned);
        }
        let member = group.member();
        let leave = self
            .config
            .group_instance_id
            .is_none()
            .then(|| (member, reason.to_string()));
        {
            let mut state = group.state();
            state.phase = Phase::Unjoined;
            state.generation_id = -1;
            state.member_id.clear();
            state.rejoin_needed = None;
            state.membership_lost = None;
        }
        let commit = self.queue_commit(
            commit,
            commit_member,
            Attempts::RetryFor(self.config.default_api_timeout),
        );
        Some(LeaveRequests {
            group,
            commit,
            leave,
        })
    }

    /// The identity commits carry (see the free `commit_member`).
    fn commit_member(&self, group: &Group) -> Result<Member, CommitError> {
        commit_member(group, matches!(self.mode, Mode::Subscribed(_)))
    }

    /// Queues a commit on the lane; the consumer has a group.
    fn queue_commit(
        &self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        member: Member,
        attempts: Attempts,
    ) -> CommitFuture {
        match &self.shared.lane {
            Some(lane) => lane.queue(offsets, member, attempts),
            None => CommitFuture::ready(Err(CommitError::NoGroupId)),
        }
    }

    /// Auto-commit: the positions (what `poll` returned) every
    /// `auto_commit_interval`, sent without waiting for the answer. Skipped
    /// while a rebalance runs, while the last one is unanswered, or while
    /// the coordinator is being looked up (so auto-commits never overtake
    /// or reorder other commits).
    async fn maybe_auto_commit(&mut self) {
        let now = Instant::now();
        if !self.config.auto_commit() || now < self.next_auto_commit {
            return;
        }
        let Some(group) = self.group.clone() else {
            return;
        };
        self.next_auto_commit = now + self.config.auto_commit_interval;
        if let Some(previous) = self.auto_commit_in_flight.as_mut() {
            match previous.now_or_never() {
                None => return,
                Some(Err(error)) => {
                    tracing::warn!(group = %group.group_id, %error, "auto-commit failed")
                }
                Some(Ok(())) => {}
            }
            self.auto_commit_in_flight = None;
        }
        if matches!(self.mode, Mode::Subscribed(_)) && group.state().phase != Phase::Stable {
            return;
        }
        let offsets = self.shared.offsets_to_commit();
        if offsets.is_empty() {
            return;
        }
        let Ok(member) = self.commit_member(&group) else {
            return;
        };
        if group.coordinator_node().is_none() {
            // Look the coordinator up in the background; commit next round.
            self.next_auto_commit = now + self.config.retry_backoff;
            let group = group.clone();
            tokio::spawn(async move {
                let _ = group.coordinator().await;
            });
            return;
        }
        self.auto_commit_in_flight = Some(self.queue_commit(offsets, member, Attempts::Once));
    }

    /// The body of `Consumer::close`.
    async fn close(&mut self) -> Result<(), CommitError> {
        self.rewind_undelivered();
        self.publish();
        let mut result = Ok(());
        if let Some(group) = self.group.clone() {
            if self.config.auto_commit() {
                let offsets = self.shared.offsets_to_commit();
                let committable = match &self.mode {
                    Mode::Subscribed(_) => group.state().phase == Phase::Stable,
                    Mode::Assigned => true,
                    Mode::None => false,
                };
                if committable && !offsets.is_empty() {
                    result = match self.commit_member(&group) {
                        Ok(member) => {
                            self.queue_commit(
                                offsets,
                                member,
                                Attempts::RetryFor(self.config.default_api_timeout),
                            )
                            .await
                        }
                        Err(error) => Err(error),
                    };
                }
            }
            if matches!(self.mode, Mode::Subscribed(_)) {
                // The final commit is done: no second one while leaving.
                if let Some(leaving) = self.begin_leave("the consumer is being closed", false) {
                    leaving.send().await;
                }
            }
            group.stop.cancel();
            group.coordinator_unknown(None, "consumer closed");
        }
        self.background.abort_all();
        self.cluster.close();
        result
    }
}

/// What leaving a group still has to send once the consumer's state says
/// it left (see `Inner::begin_leave`).
struct LeaveRequests {
    group: Arc<Group>,
    /// The revocation commit, already queued on the commit lane.
    commit: CommitFuture,
    /// The member to take out of the group, and why; `None` for a static
    /// member.
    leave: Option<(Member, String)>,
}

impl LeaveRequests {
    /// Sends them from a task of their own and waits for it. The task does
    /// not depend on the caller: when the caller is dropped (a cancelled
    /// `assign`, `unsubscribe` or `close`) it still commits and leaves, so
    /// the partitions' next owners get them at once rather than after
    /// `session_timeout`. Bounded: the commit by `default_api_timeout`,
    /// LeaveGroup by the request timeout.
    async fn send(self) {
        let group_id = self.group.group_id.clone();
        if let Err(error) = tokio::spawn(self.send_in_order()).await {
            tracing::error!(group = %group_id, %error, "the task leaving the group failed");
        }
    }

    /// Waits for the commit (queued before any revocation), then sends
    /// LeaveGroup. Failures are logged: the records since the last commit
    /// are delivered again, and a member that did not leave is dropped
    /// after its session timeout.
    async fn send_in_order(self) {
        let LeaveRequests {
            group,
            commit,
            leave,
        } = self;
        if let Err(error) = commit.await {
            tracing::warn!(group = %group.group_id, %error, "commit while leaving the group failed; the records since the last commit will be delivered again");
        }
        if let Some((member, reason)) = leave {
            if let Err(error) = membership::leave(&group, &member, &reason).await {
                tracing::debug!(group = %group.group_id, ?error, "LeaveGroup failed");
            }
        }
    }
}
