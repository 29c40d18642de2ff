//! A broker's connection to the active controller: Kafka requests
//! (BrokerRegistration, BrokerHeartbeat, CreateTopics, ...) sent to the
//! controller listener of the quorum's leader, one at a time, with a
//! timeout on each and a fresh connection after any failure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use protocol::messages::ApiKey;
use protocol::{Decodable, Encodable};

use crate::peer::PeerConnection;

/// Bound on one request to the controller, connect included.
pub const CONTROLLER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a controller's response frame.
const RESPONSE_BYTES_MAX: usize = 16 << 20;
const CLIENT_ID: &str = "broker-to-controller";

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("no controller address is known for node {0}")]
    UnknownNode(i32),
    #[error("controller {node} at {addr}: {reason}")]
    Failed {
        node: i32,
        addr: SocketAddr,
        reason: String,
    },
}

type Slot = std::sync::Arc<tokio::sync::Mutex<Option<PeerConnection>>>;

pub struct ControllerChannel {
    voters: BTreeMap<i32, SocketAddr>,
    /// One connection per voter, each used by one request at a time: a
    /// voter that stops answering (paused, cut off) holds up only the
    /// requests sent to it, not those sent to the voter that took over.
    connections: std::sync::Mutex<BTreeMap<i32, Slot>>,
}

impl ControllerChannel {
    pub fn new(voters: BTreeMap<i32, SocketAddr>) -> ControllerChannel {
        ControllerChannel {
            voters,
            connections: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Sends `request` to voter `node`'s controller listener and waits for
    /// the answer, at most [`CONTROLLER_REQUEST_TIMEOUT`].
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &self,
        node: i32,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, ChannelError> {
        self.call_within(node, api, version, request, CONTROLLER_REQUEST_TIMEOUT)
            .await
    }

    /// [`ControllerChannel::call`] bounded by `timeout`, the connect and the
    /// wait behind an earlier request to the same voter included.
    pub async fn call_within<Req: Encodable, Resp: Decodable>(
        &self,
        node: i32,
        api: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, ChannelError> {
        let addr = *self
            .voters
            .get(&node)
            .ok_or(ChannelError::UnknownNode(node))?;
        let failed = |reason: String| ChannelError::Failed { node, addr, reason };
        let slot = self
            .connections
            .lock()
            .expect("connections lock")
            .entry(node)
            .or_default()
            .clone();
        let exchange = async {
            let mut connection = slot.lock().await;
            if connection.is_none() {
                let opened = PeerConnection::connect(addr, CLIENT_ID, RESPONSE_BYTES_MAX, timeout)
                    .await
                    .map_err(|e| failed(e.reason))?;
                *connection = Some(opened);
            }
            let open = connection.as_mut().expect("connected above");
            let result = open.call(api, version, request, timeout).await;
            if result.is_err() {
                *connection = None;
            }
            result.map_err(|e| failed(e.reason))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                // Given up mid-request: the connection is in an unknown state.
                if let Ok(mut connection) = slot.try_lock() {
                    *connection = None;
                }
                Err(failed(format!("no answer within {timeout:?}")))
            }
        }
    }
}
