//! A connection to another node of the cluster that speaks Kafka requests:
//! one request at a time, each answer checked against its correlation id.
//! The controller channel and the replica fetchers are built on it; either
//! drops the connection after any failure and makes a new one.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use protocol::messages::ApiKey;
use protocol::{Decodable, Encodable};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

#[derive(Debug, thiserror::Error)]
#[error("{addr}: {reason}")]
pub struct PeerError {
    pub addr: SocketAddr,
    pub reason: String,
}

pub struct PeerConnection {
    addr: SocketAddr,
    client_id: &'static str,
    reader: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    writer: OwnedWriteHalf,
    next_correlation_id: i32,
}

impl PeerConnection {
    /// Connects to `addr`; answers larger than `response_bytes_max` end the connection.
    pub async fn connect(
        addr: SocketAddr,
        client_id: &'static str,
        response_bytes_max: usize,
        timeout: Duration,
    ) -> Result<PeerConnection, PeerError> {
        let failed = |reason: String| PeerError { addr, reason };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| failed(format!("no connection within {timeout:?}")))?
            .map_err(|e| failed(format!("connect: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        Ok(PeerConnection {
            addr,
            client_id,
            reader: FramedRead::new(read, protocol::frame::frame_codec(response_bytes_max)),
            writer: write,
            next_correlation_id: 0,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `request` and waits up to `timeout` for its answer. After an
    /// error the connection is in an unknown state: drop it.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let addr = self.addr;
        let failed = |reason: String| PeerError { addr, reason };
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = protocol::header::encode_request(
            api,
            version,
            correlation_id,
            Some(self.client_id),
            request,
        )
        .map_err(|e| failed(e.to_string()))?;
        let exchange = async {
            self.writer
                .write_all(&frame)
                .await
                .map_err(|e| failed(format!("write: {e}")))?;
            let response: Bytes = match self.reader.next().await {
                Some(Ok(frame)) => frame.freeze(),
                Some(Err(e)) => return Err(failed(format!("read: {e}"))),
                None => return Err(failed("closed by the peer".to_string())),
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
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(failed(format!("no answer within {timeout:?}"))),
        }
    }
}
