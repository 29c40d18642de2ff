//! The group coordinator as a member sees it: finding it (FindCoordinator
//! through any broker), a connection of its own, calls to it that notice
//! when it moved, and the [`Group`] state the consumer and the heartbeat
//! task share.
//!
//! The coordinator gets a connection of its own, apart from the cluster's
//! connection to the same broker: a JoinGroup may be parked for a whole
//! rebalance, and responses on a connection come back in request order, so
//! on a shared connection it would hold up fetches.
//!
//! The heartbeat task never changes the assignment: it records what it
//! learned in [`GroupState`] (rebalance needed, membership lost, a fatal
//! error) and wakes `poll`, which acts on it, calling the rebalance listener
//! where the application can see it. The protocol rounds themselves are in
//! `membership` (join, heartbeat, leave) and `offsets` (commit, fetch).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::protocol::Request;
use protocol::messages::{ApiKey, FindCoordinatorRequest};
use protocol::{ErrorCode, StrBytes};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::cluster::Cluster;
use crate::connection::{Connection, ConnectionConfig, ConnectionError};
use crate::consumer::codes;
use crate::consumer::config::ConsumerConfig;
use crate::consumer::error::{GroupError, RetriableError};

/// FindCoordinator versions we speak (Kafka 4.1's range, as the broker's).
pub const FIND_COORDINATOR_VERSIONS: (i16, i16) = (0, 6);

/// Where the member stands in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not in a generation: never joined, left, or lost its membership.
    Unjoined,
    /// A JoinGroup/SyncGroup round is under way.
    Joining,
    /// In a generation with an assignment; heartbeats run.
    Stable,
}

struct CoordinatorLink {
    node_id: i32,
    connection: Arc<Connection>,
}

/// The part of the group state the heartbeat task and `poll` share.
pub struct GroupState {
    coordinator: Option<CoordinatorLink>,
    pub member_id: String,
    pub generation_id: i32,
    pub phase: Phase,
    /// Why the group must be rejoined (the heartbeat saw a rebalance, the
    /// leader saw the partition count change, a cooperative revocation).
    pub rejoin_needed: Option<String>,
    /// Why the member lost its generation (session expired, fenced by a
    /// newer generation, left for exceeding `max_poll_interval`); `poll`
    /// reports the partitions as lost and rejoins.
    pub membership_lost: Option<String>,
    /// A failure no retry fixes; the next `poll` returns it.
    pub fatal: Option<GroupError>,
    /// When the application last called `poll`.
    pub last_poll: Instant,
}

/// The identity a request to the coordinator carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl Member {
    /// The identity of a consumer outside any generation (`assign` with a
    /// group id): the coordinator takes its commits while the group is empty.
    pub fn standalone() -> Member {
        Member {
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// A group call that did not get an answer to act on.
#[derive(Debug, Clone)]
pub enum CallError {
    /// Network trouble, or the coordinator moving or loading: try again.
    Retriable(RetriableError),
    Fatal(GroupError),
}

/// One consumer's membership of one group.
pub struct Group {
    pub group_id: String,
    pub config: Arc<ConsumerConfig>,
    pub cluster: Arc<Cluster>,
    state: Mutex<GroupState>,
    /// Serialises coordinator lookups, so the heartbeat task and `poll` do
    /// not both open a connection.
    discovering: tokio::sync::Mutex<()>,
    /// Wakes `poll` when the heartbeat task recorded something for it.
    pub events: Notify,
    /// Stops the heartbeat task (close, drop).
    pub stop: CancellationToken,
    /// Test support: a panic for the heartbeat task to raise.
    pub injected_heartbeat_panic: Mutex<Option<String>>,
}

impl Group {
    pub fn new(group_id: String, config: Arc<ConsumerConfig>, cluster: Arc<Cluster>) -> Group {
        Group {
            group_id,
            config,
            cluster,
            state: Mutex::new(GroupState {
                coordinator: None,
                member_id: String::new(),
                generation_id: -1,
                phase: Phase::Unjoined,
                rejoin_needed: None,
                membership_lost: None,
                fatal: None,
                last_poll: Instant::now(),
            }),
            discovering: tokio::sync::Mutex::new(()),
            events: Notify::new(),
            stop: CancellationToken::new(),
            injected_heartbeat_panic: Mutex::new(None),
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().expect("group state lock")
    }

    /// The identity for commits: the current generation, or standalone.
    pub fn member(&self) -> Member {
        let state = self.state();
        Member {
            generation_id: state.generation_id,
            member_id: state.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
        }
    }

    pub(super) fn backoff(&self) -> Backoff {
        Backoff::new(self.config.retry_backoff, self.config.retry_backoff_max)
    }

    pub(super) fn group_id_str(&self) -> StrBytes {
        StrBytes::from_string(self.group_id.clone())
    }

    pub(super) fn rejected(&self, api: &'static str, code: ErrorCode) -> GroupError {
        GroupError::Rejected {
            group: self.group_id.clone(),
            api,
            code,
        }
    }

    /// The connection to the coordinator, looked up and opened if needed
    /// (one attempt; callers retry).
    pub async fn coordinator(&self) -> Result<Arc<Connection>, CallError> {
        if let Some(connection) = self.open_coordinator() {
            return Ok(connection);
        }
        let _guard = self.discovering.lock().await;
        if let Some(connection) = self.open_coordinator() {
            return Ok(connection);
        }
        let (node_id, addr) = self.find_coordinator().await?;
        let mut connection_config: ConnectionConfig = self.cluster.config().connection.clone();
        connection_config.request_timeout = connection_config
            .request_timeout
            .max(self.config.max_poll_interval + super::membership::JOIN_GROUP_TIMEOUT_MARGIN);
        let connection = Connection::connect(&addr, &connection_config)
            .await
            .map_err(|e| CallError::Retriable(RetriableError::Connection(e)))?;
        let connection = Arc::new(connection);
        tracing::debug!(group = %self.group_id, node_id, %addr, "found the group coordinator");
        self.state().coordinator = Some(CoordinatorLink {
            node_id,
            connection: connection.clone(),
        });
        Ok(connection)
    }

    fn open_coordinator(&self) -> Option<Arc<Connection>> {
        let state = self.state();
        state
            .coordinator
            .as_ref()
            .filter(|c| !c.connection.is_closed())
            .map(|c| c.connection.clone())
    }

    /// The coordinator's node id, if one is known.
    pub fn coordinator_node(&self) -> Option<i32> {
        self.state().coordinator.as_ref().map(|c| c.node_id)
    }

    /// Forgets the coordinator (closing its connection), so the next call
    /// looks it up again. Only if it is still `connection` (when given): a
    /// late failure of an old connection must not drop a new one.
    pub fn coordinator_unknown(&self, connection: Option<&Arc<Connection>>, reason: &str) {
        let dropped = {
            let mut state = self.state();
            let matches = match (&state.coordinator, connection) {
                (Some(link), Some(c)) => Arc::ptr_eq(&link.connection, c),
                (Some(_), None) => true,
                (None, _) => false,
            };
            if matches {
                state.coordinator.take()
            } else {
                None
            }
        };
        if let Some(link) = dropped {
            tracing::debug!(group = %self.group_id, node_id = link.node_id, reason, "group coordinator unknown");
            link.connection.close(reason);
        }
    }

    /// FindCoordinator through any broker that answers.
    async fn find_coordinator(&self) -> Result<(i32, String), CallError> {
        let metadata = self.cluster.metadata();
        let mut brokers: Vec<_> = metadata.brokers.values().collect();
        brokers.sort_by_key(|b| b.node_id);
        let mut addresses: Vec<String> = brokers.iter().map(|b| b.addr()).collect();
        for addr in &self.cluster.config().bootstrap_servers {
            if !addresses.contains(addr) {
                addresses.push(addr.clone());
            }
        }
        let mut last_error = RetriableError::NoCoordinator;
        for addr in addresses {
            let connection = match self.cluster.connection_to(&addr).await {
                Ok(connection) => connection,
                Err(e) => {
                    last_error = RetriableError::Connection(e);
                    continue;
                }
            };
            let Some(version) =
                connection.version_within::<FindCoordinatorRequest>(FIND_COORDINATOR_VERSIONS)
            else {
                return Err(CallError::Fatal(
                    self.unsupported::<FindCoordinatorRequest>(
                        &connection,
                        FIND_COORDINATOR_VERSIONS,
                    ),
                ));
            };
            let mut request = FindCoordinatorRequest::default().with_key_type(0);
            if version >= 4 {
                request = request.with_coordinator_keys(vec![self.group_id_str()]);
            } else {
                request = request.with_key(self.group_id_str());
            }
            let give_up = Instant::now() + self.config.request_timeout;
            let response = match connection
                .call_version(&request, version, Some(give_up))
                .await
            {
                Ok(response) => response,
                Err(e) => {
                    last_error = RetriableError::Connection(e);
                    continue;
                }
            };
            let (code, node_id, host, port) = if version >= 4 {
                match response.coordinators.first() {
                    Some(c) => (
                        ErrorCode(c.error_code),
                        c.node_id.0,
                        c.host.to_string(),
                        c.port,
                    ),
                    None => {
                        last_error = RetriableError::NoCoordinator;
                        continue;
                    }
                }
            } else {
                (
                    ErrorCode(response.error_code),
                    response.node_id.0,
                    response.host.to_string(),
                    response.port,
                )
            };
            if code == codes::GROUP_AUTHORIZATION_FAILED {
                return Err(CallError::Fatal(self.rejected("FindCoordinator", code)));
            }
            if !code.is_ok() {
                return Err(CallError::Retriable(RetriableError::Code {
                    api: "FindCoordinator",
                    code,
                }));
            }
            return Ok((node_id, format!("{host}:{port}")));
        }
        Err(CallError::Retriable(last_error))
    }

    pub(super) fn unsupported<R: Request>(
        &self,
        connection: &Connection,
        ours: (i16, i16),
    ) -> GroupError {
        let api = ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions);
        GroupError::Unsupported {
            group: self.group_id.clone(),
            error: ConnectionError::UnsupportedVersion {
                addr: connection.addr().to_string(),
                api,
                ours,
                broker: connection.api_versions().broker_range(api),
            },
        }
    }

    /// Sends one request to the coordinator and waits at most `timeout`.
    pub(super) async fn call<R: Request>(
        &self,
        versions: (i16, i16),
        build: impl FnOnce(i16) -> R,
        timeout: Duration,
    ) -> Result<R::Response, CallError> {
        let connection = self.coordinator().await?;
        let Some(version) = connection.version_within::<R>(versions) else {
            return Err(CallError::Fatal(
                self.unsupported::<R>(&connection, versions),
            ));
        };
        let request = build(version);
        match connection
            .call_version(&request, version, Some(Instant::now() + timeout))
            .await
        {
            Ok(response) => Ok(response),
            Err(e) => {
                // Whatever went wrong, this connection's answers can no
                // longer be trusted to line up: start over with a new one.
                self.coordinator_unknown(Some(&connection), &e.to_string());
                if e.is_retriable() {
                    Err(CallError::Retriable(RetriableError::Connection(e)))
                } else {
                    Err(CallError::Fatal(GroupError::Unsupported {
                        group: self.group_id.clone(),
                        error: e,
                    }))
                }
            }
        }
    }

    /// Records that the member lost its generation, if it still has the one
    /// `member` names (a late answer for an older generation changes nothing).
    pub fn lose_membership(&self, member: &Member, code: ErrorCode, reason: &str) {
        {
            let mut state = self.state();
            // A join round under way handles its own errors; an answer for
            // another generation is stale.
            if state.phase != Phase::Stable
                || state.generation_id != member.generation_id
                || state.member_id != member.member_id
            {
                return;
            }
            if code == codes::UNKNOWN_MEMBER_ID {
                state.member_id.clear();
            }
            state.generation_id = -1;
            state.phase = Phase::Unjoined;
            state.membership_lost = Some(format!("{reason} ({code})"));
        }
        self.events.notify_one();
    }

    pub(super) fn request_rejoin(&self, member: &Member, reason: &str) {
        {
            let mut state = self.state();
            if state.generation_id != member.generation_id || state.phase != Phase::Stable {
                return;
            }
            state
                .rejoin_needed
                .get_or_insert_with(|| reason.to_string());
        }
        self.events.notify_one();
    }

    pub(super) fn fail(&self, error: GroupError) {
        self.state().fatal.get_or_insert(error);
        self.events.notify_one();
    }
}
