//! A broker's connection to the active controller: Kafka requests
//! (BrokerRegistration, BrokerHeartbeat, CreateTopics, ...) sent to the
//! controller listener of the quorum's leader, one at a time, with a
//! timeout on each and a fresh connection after any failure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use protocol::messages::ApiKey;
use protocol::{Decodable, Encodable};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

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

struct Connection {
    node: i32,
    reader: FramedRead<tokio::net::tcp::OwnedReadHalf, LengthDelimitedCodec>,
    writer: OwnedWriteHalf,
}

pub struct ControllerChannel {
    voters: BTreeMap<i32, SocketAddr>,
    connection: tokio::sync::Mutex<Option<Connection>>,
    next_correlation_id: std::sync::atomic::AtomicI32,
}

impl ControllerChannel {
    pub fn new(voters: BTreeMap<i32, SocketAddr>) -> ControllerChannel {
        ControllerChannel {
            voters,
            connection: tokio::sync::Mutex::new(None),
            next_correlation_id: std::sync::atomic::AtomicI32::new(0),
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
        let correlation_id = self
            .next_correlation_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let frame = protocol::header::encode_request(
            api,
            version,
            correlation_id,
            Some(CLIENT_ID),
            request,
        )
        .map_err(|e| failed(e.to_string()))?;
        let exchange = async {
            if connection.as_ref().is_none_or(|c| c.node != node) {
                let stream = TcpStream::connect(addr)
                    .await
                    .map_err(|e| failed(format!("connect: {e}")))?;
                let _ = stream.set_nodelay(true);
                let (read, write) = stream.into_split();
                *connection = Some(Connection {
                    node,
                    reader: FramedRead::new(read, protocol::frame::frame_codec(RESPONSE_BYTES_MAX)),
                    writer: write,
                });
            }
            let open = connection.as_mut().expect("connected above");
            open.writer
                .write_all(&frame)
                .await
                .map_err(|e| failed(format!("write: {e}")))?;
            let response: Bytes = match open.reader.next().await {
                Some(Ok(frame)) => frame.freeze(),
                Some(Err(e)) => return Err(failed(format!("read: {e}"))),
                None => return Err(failed("closed by the controller".to_string())),
            };
            let (answered, body) =
                protocol::header::decode_response::<Resp>(api, version, response)
                    .map_err(|e| failed(e.to_string()))?;
            if answered != correlation_id {
                return Err(failed(format!(
                    "answer to request {answered}, not {correlation_id}"
                )));
            }
            Ok(body)
        };
        let result = match tokio::time::timeout(CONTROLLER_REQUEST_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(failed(format!(
                "no answer within {CONTROLLER_REQUEST_TIMEOUT:?}"
            ))),
        };
        if result.is_err() {
            *connection = None;
        }
        result
    }
}
