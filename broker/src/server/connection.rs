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
use futures::{FutureExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::FramedRead;

use crate::server::dispatch::{dispatch, Reply};
use crate::Broker;

/// Bounds on the free room in the read buffer before each receive: four
/// times the last request's size, so that one receive takes a whole
/// request, or several pipelined ones, rather than a first read of a few
/// KiB and a second for the rest; small for connections that send small
/// requests.
const READ_AHEAD_BYTES_MIN: usize = 8 * 1024;
const READ_AHEAD_BYTES_MAX: usize = 256 * 1024;

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
        let (read_half, mut write_half) = socket.into_split();
        let codec = protocol::frame::frame_codec(broker.config.frame_bytes_max);
        let mut frames = FramedRead::new(read_half, codec);
        // Ready responses as the chunks they were encoded in: record sets
        // stay slices of the segment mappings, never copied here.
        let mut ready: Vec<bytes::Bytes> = Vec::new();
        let mut pending = FuturesOrdered::new();
        let in_flight_max = broker.config.in_flight_requests_max;
        let mut reading = true;
        let mut read_ahead = READ_AHEAD_BYTES_MIN;
        loop {
            let can_read = reading && pending.len() < in_flight_max && !*shutdown.borrow();
            if can_read {
                frames.read_buffer_mut().reserve(read_ahead);
            }
            tokio::select! {
                // Responses first: a client that keeps a few requests in
                // flight gets each slot back as soon as its response is
                // ready, not after every request already in the socket has
                // been handled, so its next request overlaps our work on the
                // ones before it. Kafka, too, answers a request before it
                // reads the connection's next one.
                biased;
                Some(response) = pending.next(), if !pending.is_empty() => {
                    // Take this response and every following one that is already
                    // done, then write them together: pipelined responses, and
                    // the pieces of one (a Fetch response's record sets lie
                    // between its encoded parts), share vectored writes.
                    let mut next = Some(response);
                    while let Some(response) = next.take() {
                        if let Some(chunks) = response {
                            ready.extend(chunks);
                        }
                        if !pending.is_empty() {
                            next = pending.next().now_or_never().flatten();
                        }
                    }
                    let written = protocol::frame::write_all_chunks(&mut write_half, &ready).await;
                    ready.clear();
                    if let Err(e) = written {
                        tracing::debug!(%peer, error = %e, "write failed; closing");
                        return;
                    }
                }
                frame = frames.next(), if can_read => match frame {
                    Some(Ok(frame)) => {
                        read_ahead = frame
                            .len()
                            .saturating_mul(4)
                            .clamp(READ_AHEAD_BYTES_MIN, READ_AHEAD_BYTES_MAX);
                        match dispatch(&broker, peer, frame.freeze()) {
                            Ok(reply) => pending.push_back(reply.into_future()),
                            Err(e) => {
                                tracing::warn!(%peer, error = %e, "closing connection: bad request");
                                reading = false;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                        reading = false;
                    }
                    None => reading = false,
                },
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
        let _ = write_half.shutdown().await;
        tracing::debug!(%peer, "connection closed");
    }
}

type Chunks = Vec<bytes::Bytes>;

impl Reply {
    pub(crate) fn into_future(self) -> futures::future::BoxFuture<'static, Option<Chunks>> {
        match self {
            Reply::Now(bytes) => Box::pin(futures::future::ready(Some(vec![bytes]))),
            Reply::Chunks(chunks) => Box::pin(futures::future::ready(Some(chunks))),
            Reply::Later(future) => Box::pin(async move { Some(vec![future.await]) }),
            Reply::LaterChunks(future) => Box::pin(async move { Some(future.await) }),
            Reply::Nothing => Box::pin(futures::future::ready(None)),
        }
    }
}
