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

pub struct ControllerChannel {
    voters: BTreeMap<i32, SocketAddr>,
    /// The open connection and the voter it goes to.
    connection: tokio::sync::Mutex<Option<(i32, PeerConnection)>>,
}

impl ControllerChannel {
    pub fn new(voters: BTreeMap<i32, SocketAddr>) -> ControllerChannel {
        ControllerChannel {
            voters,
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// Sends `request` to voter `node`'s controller listener and waits for the answer.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &self,
        node: i32,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, ChannelError> {
        let addr = *self
            .voters
            .get(&node)
            .ok_or(ChannelError::UnknownNode(node))?;
        let failed = |reason: String| ChannelError::Failed { node, addr, reason };
        let mut connection = self.connection.lock().await;
        let deadline = tokio::time::Instant::now() + CONTROLLER_REQUEST_TIMEOUT;
        if connection.as_ref().is_none_or(|(to, _)| *to != node) {
            let opened = PeerConnection::connect(
                addr,
                CLIENT_ID,
                RESPONSE_BYTES_MAX,
                CONTROLLER_REQUEST_TIMEOUT,
            )
            .await
            .map_err(|e| failed(e.reason))?;
            *connection = Some((node, opened));
        }
        let (_, open) = connection.as_mut().expect("connected above");
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let result = open.call(api, version, request, left).await;
        if result.is_err() {
            *connection = None;
        }
        result.map_err(|e| failed(e.reason))
    }
}
