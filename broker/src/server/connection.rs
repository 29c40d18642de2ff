//! One client connection: frames in, responses out in request order.
//!
//! Each request's synchronous part (decode, validate, append or read) runs
//! here, in arrival order, so pipelined produce requests append in the order
//! they were sent. What must wait (long-poll fetches, `acks=all`) continues as
//! a future; at most `in_flight_requests_max` of them are pending before we
//! stop reading, and responses are written strictly in request order.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::stream::FuturesOrdered;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::FramedRead;

use crate::server::dispatch::{dispatch, Reply};
use crate::Broker;

pub struct Connection {
    socket: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
}

impl Connection {
    pub fn new(
        socket: TcpStream,
        peer: SocketAddr,
        broker: Arc<Broker>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Connection {
            socket,
            peer,
            broker,
            shutdown,
        }
    }

    pub async fn run(self) {
        let Connection {
            socket,
            peer,
            broker,
            mut shutdown,
        } = self;
        let (read_half, write_half) = socket.into_split();
        let codec = protocol::frame::frame_codec(broker.config.frame_bytes_max);
        let mut frames = FramedRead::new(read_half, codec);
        let mut writer = tokio_util::codec::FramedWrite::new(write_half, RawBytes);
        let mut pending = FuturesOrdered::new();
        let in_flight_max = broker.config.in_flight_requests_max;
        let mut reading = true;
        loop {
            let can_read = reading && pending.len() < in_flight_max && !*shutdown.borrow();
            tokio::select! {
                frame = frames.next(), if can_read => match frame {
                    Some(Ok(frame)) => match dispatch(&broker, peer, frame.freeze()) {
                        Ok(reply) => pending.push_back(reply.into_future()),
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "closing connection: bad request");
                            reading = false;
                        }
                    },
                    Some(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                        reading = false;
                    }
                    None => reading = false,
                },
                Some(response) = pending.next(), if !pending.is_empty() => {
                    if let Some(bytes) = response {
                        if let Err(e) = writer.send(bytes).await {
                            tracing::debug!(%peer, error = %e, "write failed; closing");
                            return;
                        }
                    }
                }
                _ = shutdown.changed(), if !*shutdown.borrow() => {}
                else => break,
            }
            if !reading && pending.is_empty() {
                break;
            }
            if *shutdown.borrow() && pending.is_empty() {
                break;
            }
        }
        let _ = writer.flush().await;
        let _ = writer.into_inner().shutdown().await;
        tracing::debug!(%peer, "connection closed");
    }
}

impl Reply {
    fn into_future(self) -> futures::future::BoxFuture<'static, Option<bytes::Bytes>> {
        match self {
            Reply::Now(bytes) => Box::pin(futures::future::ready(Some(bytes))),
            Reply::Later(future) => Box::pin(async move { Some(future.await) }),
            Reply::Nothing => Box::pin(futures::future::ready(None)),
        }
    }
}

/// Writes already-framed response bytes as they are.
struct RawBytes;

impl tokio_util::codec::Encoder<bytes::Bytes> for RawBytes {
    type Error = std::io::Error;
    fn encode(&mut self, item: bytes::Bytes, dst: &mut bytes::BytesMut) -> std::io::Result<()> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}
