//! The metadata quorum: a replicated log of opaque payloads, held by a quorum
//! of controller voters with Raft (openraft 0.9.25), and copied to
//! broker-only nodes as Raft learners. It knows nothing of metadata records:
//! the application's [`StateMachine`] gives payloads their meaning.
//!
//! - [`log_store`]: the Raft log as a [`PartitionLog`](crate::storage::PartitionLog)
//!   in `<data_dir>/__cluster_metadata-0` (one batch per entry, offset = index,
//!   leader epoch = term), and the `quorum-state` file with the vote.
//! - [`state_machine`]: the application's state machine under openraft, and
//!   the `<index>-<term>.snapshot` files.
//! - [`wire`], [`network`], [`listener`]: openraft's RPCs in Kafka frames with
//!   private API keys, the client side (one connection per peer) and the
//!   controller listener (which hands other frames to the application).
//! - [`types`]: the openraft type configuration.
//!
//! Bootstrap: with the voters fixed by configuration, only the lowest voter
//! id initializes the cluster, and only on a pristine log; the others wait to
//! be contacted. A restart never initializes. A one-voter quorum elects
//! itself at once and needs no network at all.
//!
//! Tasks: openraft runs its core, its state machine worker and one
//! replication task per peer on the caller's tokio runtime; this module adds
//! the listener (a task per connection) and one metrics watcher. Disk work
//! (appends with their fsync, truncations, snapshot files) runs on tokio's
//! blocking pool. [`StateMachine::apply`] is called on openraft's state
//! machine task, so it should be quick.
//!
//! `docs/controller.md` ("The metadata quorum") gives the reasons.

pub mod listener;
pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, ServerState, SnapshotPolicy};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::quorum::log_store::{LogShared, LogStore};
use crate::quorum::network::{NetworkFactory, Peers};
use crate::quorum::state_machine::{QuorumStateMachine, SmShared};
use crate::quorum::types::{NodeId, Payload, TypeConfig};
use crate::storage::FileLayer;

pub use crate::quorum::wire::{ENTRY_PAYLOAD_BYTES_MAX, FRAME_BYTES_MAX};

/// The metadata log's directory name under the data dir, as in KRaft.
pub const METADATA_LOG_DIR_NAME: &str = "__cluster_metadata-0";
/// The metadata log's name as DescribeQuorum reports it (Kafka's).
pub const METADATA_TOPIC_NAME: &str = "__cluster_metadata";
/// Default election timeout range: a follower that hears nothing from a
/// leader for a random time in it stands for election.
pub const ELECTION_TIMEOUT_MS_DEFAULT: (u64, u64) = (500, 1000);
/// Default interval of the leader's heartbeats.
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 100;
/// Default number of applied entries after which a snapshot is built (and
/// the log purged below it).
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 10_000;
/// Default size of the metadata log's segments: small, so a purge after a
/// snapshot can delete whole segments soon.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 8 << 20;
/// How long one snapshot chunk may take to be received and stored.
pub const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 5_000;

/// An application handler for the frames on the controller listener that
/// are not the quorum's own: it gets the request frame without its size
/// prefix (header and body), and returns a whole response frame, size prefix
/// included, or `None` to answer nothing.
pub type FrameHandler = Arc<dyn Fn(Bytes) -> BoxFuture<'static, Option<Bytes>> + Send + Sync>;

/// How to run this node's part of the quorum.
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    /// This process's node id.
    pub node_id: i32,
    /// The voters: id and controller address (`--controller-voters
    /// ID@HOST:PORT,...`). This node is a voter if its id is listed, else a
    /// learner that a leader must add with [`Quorum::add_learner`].
    pub voters: BTreeMap<i32, SocketAddr>,
    /// Where this node's controller listener binds. Voters of a quorum of
    /// more than one need one; so do learners, which the leader contacts.
    pub listen: Option<SocketAddr>,
    /// The metadata log's directory, `<data_dir>/__cluster_metadata-0`.
    pub dir: PathBuf,
    /// Election timeout range in ms (min, max).
    pub election_timeout_ms: (u64, u64),
    /// The leader's heartbeat interval in ms.
    pub heartbeat_interval_ms: u64,
    /// Build a snapshot after this many applied entries, then purge the log below it.
    pub snapshot_every_entries: u64,
    /// Size of the metadata log's segments.
    pub segment_bytes_max: u64,
}

impl QuorumConfig {
    /// A configuration with the default timeouts and sizes.
    pub fn new(
        node_id: i32,
        voters: BTreeMap<i32, SocketAddr>,
        listen: Option<SocketAddr>,
        dir: PathBuf,
    ) -> QuorumConfig {
        QuorumConfig {
            node_id,
            voters,
            listen,
            dir,
            election_timeout_ms: ELECTION_TIMEOUT_MS_DEFAULT,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS_DEFAULT,
            snapshot_every_entries: SNAPSHOT_EVERY_ENTRIES_DEFAULT,
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
        }
    }

    /// Parses `--controller-voters`: `ID@HOST:PORT,...`, each host resolved
    /// now (an IP address, or a name that resolves to at least one).
    pub fn parse_voters(text: &str) -> Result<BTreeMap<i32, SocketAddr>, String> {
        let mut voters = BTreeMap::new();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (id, address) = item
                .split_once('@')
                .ok_or_else(|| format!("voter {item:?} is not ID@HOST:PORT"))?;
            let id: i32 = id
                .parse()
                .map_err(|e| format!("voter {item:?} has a bad id: {e}"))?;
            if id < 0 {
                return Err(format!("voter {item:?} has a negative id"));
            }
            let address = std::net::ToSocketAddrs::to_socket_addrs(address)
                .map_err(|e| format!("voter {item:?}: {e}"))?
                .next()
                .ok_or_else(|| format!("voter {item:?} resolves to no address"))?;
            if voters.insert(id, address).is_some() {
                return Err(format!("voter {id} is listed twice"));
            }
        }
        if voters.is_empty() {
            return Err("no voters listed".to_string());
        }
        Ok(voters)
    }

    pub fn is_voter(&self) -> bool {
        self.voters.contains_key(&self.node_id)
    }

    fn validate(&self) -> Result<(), String> {
        if self.node_id < 0 || self.voters.keys().any(|&id| id < 0) {
            return Err("node ids must not be negative".to_string());
        }
        if self.voters.is_empty() {
            return Err("there must be at least one voter".to_string());
        }
        let (min, max) = self.election_timeout_ms;
        if min == 0 || min >= max {
            return Err(format!("election timeout range {min}..{max} is empty"));
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= min {
            return Err(format!(
                "heartbeat interval {} must be positive and below the election timeout {min}",
                self.heartbeat_interval_ms
            ));
        }
        if self.snapshot_every_entries == 0 {
            return Err("snapshot_every_entries must be positive".to_string());
        }
        Ok(())
    }

    fn raft_config(&self) -> Result<openraft::Config, String> {
        openraft::Config {
            cluster_name: METADATA_LOG_DIR_NAME.to_string(),
            election_timeout_min: self.election_timeout_ms.0,
            election_timeout_max: self.election_timeout_ms.1,
            heartbeat_interval: self.heartbeat_interval_ms,
            install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
            max_payload_entries: wire::APPEND_ENTRIES_MAX,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            snapshot_max_chunk_size: wire::SNAPSHOT_CHUNK_BYTES,
            // The snapshot replaces the log below it: nothing is kept.
            max_in_snapshot_log_to_keep: 0,
            // Learners never stand for election.
            enable_elect: self.is_voter(),
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| e.to_string())
    }
}

/// The application's state machine (the metadata image's applier).
///
/// Only application payloads are passed: blank entries (a new leader's
/// first) and membership changes are Raft's own and never reach it, so the
/// indexes it sees may skip.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies a committed payload. Called in log order, once per entry,
    /// from one task.
    fn apply(&self, index: u64, payload: &[u8]);
    /// The state and the index of the last payload applied to it (0 if none).
    /// Not called concurrently with `apply`.
    fn snapshot(&self) -> (u64, Vec<u8>);
    /// Replaces the state with a snapshot's (taken at `index` or a later
    /// blank or membership entry): at start from the newest snapshot file,
    /// and when the leader sends one.
    fn restore(&self, index: u64, snapshot: &[u8]);
}

#[derive(Debug, Error)]
pub enum QuorumError {
    /// This node cannot take the request; `leader` is the leader if known.
    #[error("this node is not the quorum leader (leader: {leader:?})")]
    NotLeader { leader: Option<i32> },
    #[error("invalid quorum configuration: {reason}")]
    InvalidConfig { reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata log storage failed: {reason}")]
    Storage { reason: String },
    #[error("payload of {size} bytes exceeds the limit of {limit}")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("membership change refused: {reason}")]
    Membership { reason: String },
    /// The quorum is shut down, or openraft stopped on a fatal error.
    #[error("the quorum is stopped: {reason}")]
    Stopped { reason: String },
}

/// One voter's or learner's replication state, as the leader knows it
/// (Kafka's DescribeQuorum `ReplicaState`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaDescription {
    pub node_id: i32,
    /// The offset after its last entry known to match the leader's log.
    pub log_end_offset: Option<i64>,
    /// When it last answered the leader (ms since the epoch).
    pub last_fetch_timestamp_ms: Option<i64>,
    /// When it was last seen holding the whole of the leader's log.
    pub last_caught_up_timestamp_ms: Option<i64>,
}

/// Enough to answer Kafka's DescribeQuorum. Replica progress is known only
/// on the leader; elsewhere only this node's own entry has a log end offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumDescription {
    pub leader: Option<i32>,
    /// The Raft term, which is the leader epoch.
    pub leader_epoch: u64,
    /// The offset after the last entry committed and applied on this node.
    pub high_watermark: i64,
    pub voters: Vec<ReplicaDescription>,
    /// Kafka calls them observers.
    pub learners: Vec<ReplicaDescription>,
}

struct QuorumInner {
    node_id: i32,
    raft: Raft<TypeConfig>,
    /// Read for the high watermark: exact as soon as an entry is applied,
    /// where openraft's metrics follow a little later.
    state_machine: Arc<SmShared>,
    peers: Arc<Peers>,
    leader: watch::Receiver<Option<i32>>,
    /// When each peer was last seen caught up (ms since the epoch).
    caught_up_ms: Arc<Mutex<HashMap<NodeId, i64>>>,
    stop: CancellationToken,
    /// Set to stop without closing the log (a simulated crash, in tests).
    #[cfg(test)]
    crashed: Arc<AtomicBool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A running node of the metadata quorum. Cheap to clone.
#[derive(Clone)]
pub struct Quorum {
    inner: Arc<QuorumInner>,
}

fn to_node_id(id: i32) -> NodeId {
    assert!(id >= 0, "node ids are validated as non-negative");
    id as NodeId
}

fn to_kafka_id(id: NodeId) -> i32 {
    i32::try_from(id).expect("node ids come from i32 ids")
}

fn storage_error(error: impl std::fmt::Display) -> QuorumError {
    QuorumError::Storage {
        reason: error.to_string(),
    }
}

fn stopped(error: impl std::fmt::Display) -> QuorumError {
    QuorumError::Stopped {
        reason: error.to_string(),
    }
}

impl Quorum {
    /// Opens the log in `config.dir`, binds `config.listen` if set, starts
    /// openraft, and bootstraps a pristine cluster if this node is the lowest
    /// voter. Returns before a leader is known. Everything stops when
    /// `shutdown` is cancelled or [`Quorum::shutdown`] is called.
    pub async fn start(
        config: QuorumConfig,
        state_machine: Arc<dyn StateMachine>,
        frame_handler: Option<FrameHandler>,
        shutdown: CancellationToken,
    ) -> Result<Quorum, QuorumError> {
        let listener = match config.listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| QuorumError::Listen { addr, source })?,
            ),
            None => None,
        };
        Quorum::start_on(config, listener, state_machine, frame_handler, shutdown).await
    }

    /// [`Quorum::start`] on a listener already bound (`config.listen` is
    /// then ignored), for callers that bind port 0 first.
    pub async fn start_on(
        config: QuorumConfig,
        listener: Option<TcpListener>,
        state_machine: Arc<dyn StateMachine>,
        frame_handler: Option<FrameHandler>,
        shutdown: CancellationToken,
    ) -> Result<Quorum, QuorumError> {
        let files = FileLayer::real();
        Quorum::start_with_files(
            config,
            listener,
            state_machine,
            frame_handler,
            shutdown,
            files,
        )
        .await
    }

    /// [`Quorum::start_on`] with every file of the quorum going through
    /// `files` (fault injection in tests).
    pub(crate) async fn start_with_files(
        config: QuorumConfig,
        listener: Option<TcpListener>,
        state_machine: Arc<dyn StateMachine>,
        frame_handler: Option<FrameHandler>,
        shutdown: CancellationToken,
        files: FileLayer,
    ) -> Result<Quorum, QuorumError> {
        config
            .validate()
            .map_err(|reason| QuorumError::InvalidConfig { reason })?;
        // Only a lone voter is never contacted by another node.
        if listener.is_none() && !(config.is_voter() && config.voters.len() == 1) {
            return Err(QuorumError::InvalidConfig {
                reason: "a learner, or a voter among several, needs a controller listener"
                    .to_string(),
            });
        }
        let raft_config = config
            .raft_config()
            .map_err(|reason| QuorumError::InvalidConfig { reason })?;
        let node_id = to_node_id(config.node_id);
        let (dir, segment_bytes_max) = (config.dir.clone(), config.segment_bytes_max);
        let (log, sm) = tokio::task::spawn_blocking(move || {
            let log = LogShared::open(&dir, segment_bytes_max, files.clone())?;
            let sm = SmShared::open(&dir, state_machine, files)?;
            Ok::<_, String>((log, sm))
        })
        .await
        .map_err(storage_error)?
        .map_err(storage_error)?;
        let peers = Arc::new(Peers::default());
        let raft = Raft::new(
            node_id,
            Arc::new(raft_config),
            NetworkFactory {
                local: node_id,
                peers: peers.clone(),
            },
            LogStore::new(log.clone()),
            QuorumStateMachine::new(sm.clone()),
        )
        .await
        .map_err(stopped)?;
        let stop = shutdown.child_token();
        let mut tasks = Vec::new();
        if let Some(listener) = listener {
            tasks.push(tokio::spawn(listener::serve(
                listener,
                raft.clone(),
                frame_handler,
                stop.clone(),
            )));
        }
        if let Err(error) = bootstrap(&config, &raft).await {
            // Nothing is left running behind a failed start.
            stop.cancel();
            let _ = raft.shutdown().await;
            for task in tasks {
                let _ = task.await;
            }
            log.close();
            return Err(error);
        }
        let (leader_tx, leader_rx) = watch::channel(None);
        let caught_up_ms = Arc::new(Mutex::new(HashMap::new()));
        tasks.push(tokio::spawn(watch_metrics(
            raft.clone(),
            leader_tx,
            caught_up_ms.clone(),
            Duration::from_millis(config.heartbeat_interval_ms),
            config.election_timeout_ms,
            stop.clone(),
        )));
        // Stops openraft and closes the log once asked to, whichever way.
        let stopping_raft = raft.clone();
        let stopping = stop.clone();
        let crashed = Arc::new(AtomicBool::new(false));
        let crashing = crashed.clone();
        tasks.push(tokio::spawn(async move {
            stopping.cancelled().await;
            if let Err(error) = stopping_raft.shutdown().await {
                tracing::warn!(%error, "openraft did not stop cleanly");
            }
            if !crashing.load(Ordering::Acquire) {
                let _ = tokio::task::spawn_blocking(move || log.close()).await;
            }
        }));
        tracing::info!(node_id, voters = ?config.voters, dir = %config.dir.display(),
            voter = config.is_voter(), "metadata quorum started");
        Ok(Quorum {
            inner: Arc::new(QuorumInner {
                node_id: config.node_id,
                raft,
                state_machine: sm,
                peers,
                leader: leader_rx,
                caught_up_ms,
                stop,
                #[cfg(test)]
                crashed,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// Appends a payload; returns its index once it is committed and applied
    /// to this node's state machine.
    pub async fn propose(&self, payload: Vec<u8>) -> Result<u64, QuorumError> {
        if payload.len() > ENTRY_PAYLOAD_BYTES_MAX {
            return Err(QuorumError::PayloadTooLarge {
                size: payload.len(),
                limit: ENTRY_PAYLOAD_BYTES_MAX,
            });
        }
        match self.inner.raft.client_write(Payload(payload)).await {
            Ok(response) => Ok(response.log_id.index),
            Err(error) => Err(client_write_error(error)),
        }
    }

    /// The leader's id, if this node knows one.
    pub fn leader(&self) -> Option<i32> {
        *self.inner.leader.borrow()
    }

    /// The leader's id, updated as it changes.
    pub fn watch_leader(&self) -> watch::Receiver<Option<i32>> {
        self.inner.leader.clone()
    }

    pub fn is_leader(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        metrics.state == ServerState::Leader
            && metrics.current_leader == Some(to_node_id(self.inner.node_id))
    }

    pub fn node_id(&self) -> i32 {
        self.inner.node_id
    }

    /// The leader, its epoch, the high watermark, and each voter's and
    /// learner's progress as far as this node knows it.
    pub fn describe(&self) -> QuorumDescription {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let now = crate::now_ms();
        let local = to_node_id(self.inner.node_id);
        let leading = metrics.state == ServerState::Leader;
        let caught_up = self
            .inner
            .caught_up_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let replica = |id: NodeId| {
            if id == local {
                return ReplicaDescription {
                    node_id: to_kafka_id(id),
                    log_end_offset: metrics.last_log_index.map(|index| index as i64 + 1),
                    last_fetch_timestamp_ms: leading.then_some(now),
                    last_caught_up_timestamp_ms: leading.then_some(now),
                };
            }
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|replication| replication.get(&id).cloned())
                .flatten();
            ReplicaDescription {
                node_id: to_kafka_id(id),
                log_end_offset: matched.map(|log_id| log_id.index as i64 + 1),
                last_fetch_timestamp_ms: leading
                    .then(|| self.inner.peers.last_append_response_ms(id))
                    .flatten(),
                last_caught_up_timestamp_ms: leading.then(|| caught_up.get(&id).copied()).flatten(),
            }
        };
        let membership = metrics.membership_config.membership();
        QuorumDescription {
            leader: metrics.current_leader.map(to_kafka_id),
            leader_epoch: metrics.current_term,
            high_watermark: self
                .inner
                .state_machine
                .last_applied_index()
                .map_or(0, |index| index as i64 + 1),
            voters: membership.voter_ids().map(replica).collect(),
            learners: membership.learner_ids().map(replica).collect(),
        }
    }

    /// Adds a broker-only node as a learner (leader only): the leader then
    /// replicates the log, or a snapshot, to `addr`. Returns once the change
    /// is committed, not once the learner has caught up.
    pub async fn add_learner(&self, node_id: i32, addr: SocketAddr) -> Result<(), QuorumError> {
        if node_id < 0 {
            return Err(QuorumError::InvalidConfig {
                reason: format!("node id {node_id} is negative"),
            });
        }
        let node = BasicNode::new(addr.to_string());
        self.inner
            .raft
            .add_learner(to_node_id(node_id), node, false)
            .await
            .map(|_| ())
            .map_err(client_write_error)
    }

    /// Removes a learner (leader only); a voter cannot be removed this way.
    pub async fn remove_learner(&self, node_id: i32) -> Result<(), QuorumError> {
        if node_id < 0 {
            return Err(QuorumError::InvalidConfig {
                reason: format!("node id {node_id} is negative"),
            });
        }
        let change = ChangeMembers::RemoveNodes(BTreeSet::from([to_node_id(node_id)]));
        self.inner
            .raft
            .change_membership(change, false)
            .await
            .map_err(client_write_error)?;
        self.inner.peers.forget(to_node_id(node_id));
        self.inner
            .caught_up_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&to_node_id(node_id));
        Ok(())
    }

    /// Stops openraft, the listener and the watcher, and closes the log.
    pub async fn shutdown(self) {
        self.inner.stop.cancel();
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Stops like a crash: openraft and the tasks end, and the log is left
    /// as it is, without the flush and trims of a close.
    #[cfg(test)]
    pub(crate) async fn crash(self) {
        self.inner.crashed.store(true, Ordering::Release);
        self.shutdown().await;
    }

    /// openraft's handle, for tests and diagnostics.
    #[cfg(test)]
    pub(crate) fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }
}

fn client_write_error(
    error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
) -> QuorumError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => QuorumError::NotLeader {
            leader: forward.leader_id.map(to_kafka_id),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
            QuorumError::Membership {
                reason: error.to_string(),
            }
        }
        RaftError::Fatal(fatal) => stopped(fatal),
    }
}

/// Initializes a pristine cluster, on the lowest voter only, so that exactly
/// one initialization happens; the others learn the membership from it. On
/// a restart the log (or the vote) is there and nothing is initialized. A
/// one-voter quorum that restarts stands for election at once rather than
/// after an election timeout.
async fn bootstrap(config: &QuorumConfig, raft: &Raft<TypeConfig>) -> Result<(), QuorumError> {
    let lowest = *config
        .voters
        .keys()
        .next()
        .expect("validated: voters exist");
    if config.node_id != lowest {
        return Ok(());
    }
    if raft.is_initialized().await.map_err(stopped)? {
        if config.voters.len() == 1 {
            raft.trigger().elect().await.map_err(stopped)?;
        }
        return Ok(());
    }
    let members: BTreeMap<NodeId, BasicNode> = config
        .voters
        .iter()
        .map(|(&id, addr)| (to_node_id(id), BasicNode::new(addr.to_string())))
        .collect();
    tracing::info!(?members, "initializing the metadata quorum");
    match raft.initialize(members).await {
        Ok(()) => Ok(()),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(error) => Err(QuorumError::InvalidConfig {
            reason: error.to_string(),
        }),
    }
}

/// A random duration in `[min_ms, max_ms)`, fresh at each call.
fn random_timeout(min_ms: u64, max_ms: u64) -> Duration {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    Duration::from_millis(min_ms + random % (max_ms - min_ms).max(1))
}

/// Breaks split votes that openraft 0.9 would repeat: it draws each node's
/// election timeout once, at start, and checks it only on its ticks, so two
/// voters whose timeouts and ticks happen to line up can both stand for
/// election in every round and split the vote each time (seen as a 15 s
/// stall, about one failover in 25, in the failover test). A voter that has
/// known no leader for a random time in the election timeout range, drawn
/// afresh each time, stands for election itself; the rounds then drift apart.
struct SplitVoteBreaker {
    election_timeout_ms: (u64, u64),
    leaderless_since: Option<tokio::time::Instant>,
    patience: Duration,
}

impl SplitVoteBreaker {
    fn new(election_timeout_ms: (u64, u64)) -> SplitVoteBreaker {
        SplitVoteBreaker {
            election_timeout_ms,
            leaderless_since: None,
            patience: random_timeout(election_timeout_ms.0, election_timeout_ms.1),
        }
    }

    /// Whether to stand for election now, given whether this node is a
    /// voter that knows no leader.
    fn should_elect(&mut self, leaderless_voter: bool) -> bool {
        if !leaderless_voter {
            self.leaderless_since = None;
            return false;
        }
        let now = tokio::time::Instant::now();
        let since = *self.leaderless_since.get_or_insert(now);
        if now.duration_since(since) < self.patience {
            return false;
        }
        self.leaderless_since = Some(now);
        let (min, max) = self.election_timeout_ms;
        self.patience = random_timeout(min, max);
        true
    }
}

/// Publishes the leader's id as it changes, notes when each peer is caught
/// up with the leader's log, and breaks repeated split votes (see
/// [`SplitVoteBreaker`]); checked on every metrics change and every
/// heartbeat interval.
async fn watch_metrics(
    raft: Raft<TypeConfig>,
    leader_tx: watch::Sender<Option<i32>>,
    caught_up_ms: Arc<Mutex<HashMap<NodeId, i64>>>,
    interval: Duration,
    election_timeout_ms: (u64, u64),
    stop: CancellationToken,
) {
    let mut metrics = raft.metrics();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut breaker = SplitVoteBreaker::new(election_timeout_ms);
    loop {
        let (leader, caught_up, leaderless_voter) = {
            let metrics = metrics.borrow_and_update();
            let caught_up: Vec<NodeId> = match (&metrics.replication, metrics.last_log_index) {
                (Some(replication), Some(last_index)) => replication
                    .iter()
                    .filter(|(_, matched)| matched.is_some_and(|m| m.index >= last_index))
                    .map(|(&id, _)| id)
                    .collect(),
                _ => Vec::new(),
            };
            let voter = metrics
                .membership_config
                .membership()
                .voter_ids()
                .any(|id| id == metrics.id);
            let leaderless_voter = voter
                && metrics.current_leader.is_none()
                && metrics.state != ServerState::Leader
                && metrics.running_state.is_ok();
            (
                metrics.current_leader.map(to_kafka_id),
                caught_up,
                leaderless_voter,
            )
        };
        leader_tx.send_if_modified(|current| {
            let changed = *current != leader;
            *current = leader;
            changed
        });
        if !caught_up.is_empty() {
            let now = crate::now_ms();
            let mut times = caught_up_ms.lock().unwrap_or_else(PoisonError::into_inner);
            for id in caught_up {
                times.insert(id, now);
            }
        }
        if breaker.should_elect(leaderless_voter) {
            tracing::info!("no leader for an election timeout: standing for election");
            if raft.trigger().elect().await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
    }
}
