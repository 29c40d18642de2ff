//! The client side of the quorum's RPCs: one persistent TCP connection per
//! peer, shared by every openraft client of that peer.
//!
//! A connection carries one request at a time (a lock serialises them), so a
//! response always answers the request just written. Any failure (connect,
//! write, read, timeout, a response that does not match) drops the
//! connection; the next call reconnects, no sooner than a backoff that
//! doubles from [`RECONNECT_BACKOFF_MIN`] to [`RECONNECT_BACKOFF_MAX`] while
//! connecting keeps failing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use crate::quorum::types::{NodeId, TypeConfig};
use crate::quorum::wire::{self, FRAME_BYTES_MAX};

/// First wait before reconnecting to a peer that refused a connection.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest wait between connection attempts to a peer.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Bound on any one RPC, whatever openraft's own deadline.
pub const RPC_TIMEOUT_MAX: Duration = Duration::from_secs(10);
/// How long openraft's replication to an unreachable peer waits between tries.
pub const REPLICATION_BACKOFF: Duration = Duration::from_millis(200);

/// Why an RPC did not get an answer.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// Could not connect, or is inside the reconnect backoff.
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke or answered garbage.
    #[error("connection to {addr} failed: {reason}")]
    Broken { addr: String, reason: String },
}

struct Connection {
    reader: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    writer: OwnedWriteHalf,
}

/// What one peer's lock guards.
struct PeerState {
    connection: Option<Connection>,
    /// Set while a request is out: a call cancelled mid-way (its timeout
    /// fired) leaves it set, and the next call then drops the connection
    /// rather than read the stale answer.
    in_flight: bool,
    next_correlation_id: i32,
    backoff: Duration,
    retry_at: Option<Instant>,
}

/// One peer's connection.
pub struct Peer {
    addr: String,
    client_id: String,
    state: tokio::sync::Mutex<PeerState>,
    /// When this peer last answered an AppendEntries (ms since the epoch; 0: never).
    last_append_response_ms: AtomicI64,
}

impl Peer {
    fn new(node_id: NodeId, addr: String) -> Peer {
        Peer {
            addr,
            client_id: format!("quorum-{node_id}"),
            state: tokio::sync::Mutex::new(PeerState {
                connection: None,
                in_flight: false,
                next_correlation_id: 0,
                backoff: RECONNECT_BACKOFF_MIN,
                retry_at: None,
            }),
            last_append_response_ms: AtomicI64::new(0),
        }
    }

    /// Sends one request and waits for its response, within `timeout`.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        api_key: i16,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let timeout = timeout.min(RPC_TIMEOUT_MAX);
        match tokio::time::timeout(timeout, self.call_inner(api_key, request)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout(timeout)),
        }
    }

    async fn call_inner<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        api_key: i16,
        request: &Req,
    ) -> Result<Resp, CallError> {
        let mut state = self.state.lock().await;
        if state.in_flight {
            state.connection = None;
            state.in_flight = false;
        }
        if state.connection.is_none() {
            if let Some(retry_at) = state.retry_at {
                if Instant::now() < retry_at {
                    return Err(CallError::Unreachable {
                        addr: self.addr.clone(),
                        reason: "backing off after a failed connect".to_string(),
                    });
                }
            }
            match TcpStream::connect(&self.addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let (read, write) = stream.into_split();
                    state.connection = Some(Connection {
                        reader: FramedRead::new(
                            read,
                            protocol::frame::frame_codec(FRAME_BYTES_MAX),
                        ),
                        writer: write,
                    });
                    state.backoff = RECONNECT_BACKOFF_MIN;
                    state.retry_at = None;
                }
                Err(error) => {
                    state.retry_at = Some(Instant::now() + state.backoff);
                    state.backoff = (state.backoff * 2).min(RECONNECT_BACKOFF_MAX);
                    return Err(CallError::Unreachable {
                        addr: self.addr.clone(),
                        reason: error.to_string(),
                    });
                }
            }
        }
        let correlation_id = state.next_correlation_id;
        state.next_correlation_id = state.next_correlation_id.wrapping_add(1);
        let broken = |reason: String| CallError::Broken {
            addr: self.addr.clone(),
            reason,
        };
        let frame = wire::encode_request(api_key, correlation_id, &self.client_id, request)
            .map_err(|e| broken(e.to_string()))?;
        state.in_flight = true;
        let connection = state.connection.as_mut().expect("connected above");
        let result = async {
            connection
                .writer
                .write_all(&frame)
                .await
                .map_err(|e| broken(format!("write: {e}")))?;
            let response = match connection.reader.next().await {
                Some(Ok(response)) => response.freeze(),
                Some(Err(e)) => return Err(broken(format!("read: {e}"))),
                None => return Err(broken("closed by the peer".to_string())),
            };
            let (answered, body) =
                wire::decode_response::<Resp>(response).map_err(|e| broken(e.to_string()))?;
            if answered != correlation_id {
                return Err(broken(format!(
                    "answer to request {answered}, not {correlation_id}"
                )));
            }
            Ok(body)
        }
        .await;
        state.in_flight = false;
        if result.is_err() {
            state.connection = None;
        }
        result
    }
}

/// Every peer's connection, by node id; shared by all openraft clients.
#[derive(Default)]
pub struct Peers {
    by_node: Mutex<HashMap<NodeId, Arc<Peer>>>,
}

impl Peers {
    /// The connection to `node_id` at `addr`, replaced if the address changed.
    fn get(&self, local: NodeId, node_id: NodeId, addr: &str) -> Arc<Peer> {
        let mut peers = self.by_node.lock().unwrap_or_else(PoisonError::into_inner);
        let peer = peers
            .entry(node_id)
            .or_insert_with(|| Arc::new(Peer::new(local, addr.to_string())));
        if peer.addr != addr {
            *peer = Arc::new(Peer::new(local, addr.to_string()));
        }
        peer.clone()
    }

    /// Drops the connection to a node that left the membership; openraft's
    /// clients of it, if any still run, keep theirs until they end.
    pub fn forget(&self, node_id: NodeId) {
        self.by_node
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&node_id);
    }

    /// When `node_id` last answered an AppendEntries, ms since the epoch.
    pub fn last_append_response_ms(&self, node_id: NodeId) -> Option<i64> {
        let peers = self.by_node.lock().unwrap_or_else(PoisonError::into_inner);
        let ms = peers
            .get(&node_id)?
            .last_append_response_ms
            .load(Ordering::Relaxed);
        (ms > 0).then_some(ms)
    }
}

/// Creates openraft's clients, all over [`Peers`].
pub struct NetworkFactory {
    pub local: NodeId,
    pub peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            local: self.local,
            target,
            peer: self.peers.get(self.local, target, &node.addr),
        }
    }
}

/// One openraft client of one peer.
pub struct PeerClient {
    local: NodeId,
    target: NodeId,
    peer: Arc<Peer>,
}

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerClient {
    async fn rpc<Req, Resp, E>(
        &self,
        action: RPCTypes,
        api_key: i16,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        let answer: Result<Result<Resp, RaftError<NodeId, E>>, CallError> =
            self.peer.call(api_key, request, timeout).await;
        match answer {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(error @ CallError::Unreachable { .. }) => {
                Err(RPCError::Unreachable(Unreachable::new(&error)))
            }
            Err(CallError::Timeout(timeout)) => Err(RPCError::Timeout(Timeout {
                action,
                id: self.local,
                target: self.target,
                timeout,
            })),
            Err(error @ CallError::Broken { .. }) => {
                Err(RPCError::Network(NetworkError::new(&error)))
            }
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        let response = self
            .rpc(
                RPCTypes::AppendEntries,
                wire::API_KEY_APPEND_ENTRIES,
                &rpc,
                &option,
            )
            .await?;
        self.peer
            .last_append_response_ms
            .store(crate::now_ms(), Ordering::Relaxed);
        Ok(response)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        self.rpc(
            RPCTypes::InstallSnapshot,
            wire::API_KEY_INSTALL_SNAPSHOT,
            &rpc,
            &option,
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        self.rpc(RPCTypes::Vote, wire::API_KEY_VOTE, &rpc, &option)
            .await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(REPLICATION_BACKOFF))
    }
}
