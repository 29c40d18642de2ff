//! The controller listener: accepts connections (bounded), reads Kafka
//! frames, serves the quorum's RPCs and hands every other frame to the
//! application's [`FrameHandler`]. Requests on one connection are answered
//! in order, one at a time. A malformed frame closes its connection with a
//! log line.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use openraft::Raft;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::quorum::types::TypeConfig;
use crate::quorum::wire::{self, WireError, FRAME_BYTES_MAX};
use crate::quorum::FrameHandler;

/// Bound on the controller listener's open connections.
pub const CONNECTIONS_MAX: usize = 256;

/// Accepts connections until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    handler: Option<FrameHandler>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%error, "controller listener accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let raft = raft.clone();
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(reason) = serve_connection(socket, raft, handler, shutdown).await {
                tracing::warn!(%peer, %reason, "controller connection closed");
            }
            drop(permit);
        });
    }
}

/// Serves one connection until it closes, breaks or sends a bad frame.
async fn serve_connection(
    socket: TcpStream,
    raft: Raft<TypeConfig>,
    handler: Option<FrameHandler>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let (read, mut write) = socket.into_split();
    let mut frames = FramedRead::new(read, protocol::frame::frame_codec(FRAME_BYTES_MAX));
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            frame = frames.next() => match frame {
                None => return Ok(()),
                Some(Err(error)) => return Err(format!("bad frame: {error}")),
                Some(Ok(frame)) => frame.freeze(),
            },
        };
        let Some(prefix) = protocol::header::HeaderPrefix::peek(&frame) else {
            return Err(format!("frame of {} bytes has no header", frame.len()));
        };
        let response = if wire::is_raft_api_key(prefix.api_key) {
            Some(
                serve_raft(&raft, frame)
                    .await
                    .map_err(|e| format!("api key {}: {e}", prefix.api_key))?,
            )
        } else if let Some(handler) = &handler {
            handler(frame).await
        } else {
            return Err(format!(
                "api key {} is not served on the controller listener",
                prefix.api_key
            ));
        };
        if let Some(response) = response {
            write
                .write_all(&response)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
    }
}

/// Decodes one Raft RPC, hands it to openraft, and encodes the answer.
async fn serve_raft(raft: &Raft<TypeConfig>, mut frame: Bytes) -> Result<Bytes, WireError> {
    let header = wire::decode_request_header(&mut frame)?;
    let correlation_id = header.correlation_id;
    match header.api_key {
        wire::API_KEY_APPEND_ENTRIES => {
            let request = wire::decode_body(&frame)?;
            wire::encode_response(correlation_id, &raft.append_entries(request).await)
        }
        wire::API_KEY_VOTE => {
            let request = wire::decode_body(&frame)?;
            wire::encode_response(correlation_id, &raft.vote(request).await)
        }
        wire::API_KEY_INSTALL_SNAPSHOT => {
            let request = wire::decode_body(&frame)?;
            wire::encode_response(correlation_id, &raft.install_snapshot(request).await)
        }
        api_key => unreachable!("decode_request_header accepts only raft keys, not {api_key}"),
    }
}
