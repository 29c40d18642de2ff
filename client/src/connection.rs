//! One TCP connection to one broker.
//!
//! Requests go out with a fresh correlation id and may be pipelined: a writer
//! task puts frames on the socket in the order they were submitted, a reader
//! task matches each response frame to the oldest outstanding request (Kafka
//! answers in request order on a connection) and checks the correlation id.
//! On connect the connection asks ApiVersions and keeps, per API, the highest
//! version both sides speak (`min(our max, broker max)`).
//!
//! A connection that fails in any way (I/O error, a response out of order, a
//! request that timed out) closes itself and fails every outstanding request
//! with the same [`ConnectionError`]; callers open a new one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kafka_protocol::protocol::Request;
use protocol::header::{decode_response, encode_request_chunks};
use protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use protocol::{Encodable, ErrorCode, StrBytes};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Requests submitted to a connection and not yet written to its socket.
/// A full queue makes submitters wait, which bounds memory per connection.
pub const OUTGOING_QUEUE_BOUND: usize = 64;

/// Default bound on requests awaiting their response on one connection;
/// `send_request` waits for room beyond it.
pub const IN_FLIGHT_REQUESTS_MAX_DEFAULT: usize = 64;

/// The ApiVersions version we ask with first; a broker that does not know it
/// answers with version 0 and its own table (KIP-511), and we ask again.
const API_VERSIONS_VERSION_MAX: i16 = 3;

/// Settings of a connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Sent in every request header.
    pub client_id: String,
    /// Bound on establishing the TCP connection and the ApiVersions exchange.
    pub connect_timeout: Duration,
    /// Bound on waiting for one response; when it passes, the connection is
    /// closed (the response stream can no longer be trusted to line up).
    pub request_timeout: Duration,
    /// Bound on one response frame.
    pub frame_bytes_max: usize,
    /// Bound on requests sent and not yet answered (pipelining depth).
    pub in_flight_requests_max: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            client_id: "rust-client".to_string(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            frame_bytes_max: protocol::frame::FRAME_BYTES_MAX_DEFAULT,
            in_flight_requests_max: IN_FLIGHT_REQUESTS_MAX_DEFAULT,
        }
    }
}

/// Why a request on a connection failed. Cloneable, because one broken
/// connection fails every request outstanding on it with the same error.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The broker's `host:port`.
        addr: String,
        /// What went wrong, in words.
        reason: String,
    },
    /// Connecting (with ApiVersions) took longer than its bound.
    #[error("connecting to {addr} took longer than {timeout:?}")]
    ConnectTimeout {
        /// The broker's `host:port`.
        addr: String,
        /// The bound that passed (`connect_timeout`).
        timeout: Duration,
    },
    /// The connection closed with the request outstanding.
    #[error("connection to {addr} is closed: {reason}")]
    Disconnected {
        /// The broker's `host:port`.
        addr: String,
        /// What went wrong, in words.
        reason: String,
    },
    /// No response came within the request's bound.
    #[error("no response to {api:?} v{version} from {addr} within {timeout:?}")]
    RequestTimeout {
        /// The broker's `host:port`.
        addr: String,
        /// The request's API.
        api: ApiKey,
        /// The request's version.
        version: i16,
        /// How long the response was waited for.
        timeout: Duration,
    },
    /// The broker serves no version of the API that this client speaks.
    #[error("{addr} does not serve {api:?} in a version we speak ({ours:?}; broker: {broker:?})")]
    UnsupportedVersion {
        /// The broker's `host:port`.
        addr: String,
        /// The request's API.
        api: ApiKey,
        /// The versions this client speaks (lowest, highest).
        ours: (i16, i16),
        /// The versions the broker speaks, if it serves the API at all.
        broker: Option<(i16, i16)>,
    },
    /// The broker refused ApiVersions.
    #[error("ApiVersions to {addr} failed with {code}")]
    ApiVersions {
        /// The broker's `host:port`.
        addr: String,
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
    },
    /// The request could not be encoded at the negotiated version.
    #[error("cannot encode {api:?} v{version}: {reason}")]
    Encode {
        /// The request's API.
        api: ApiKey,
        /// The request's version.
        version: i16,
        /// What went wrong, in words.
        reason: String,
    },
    /// The response could not be decoded.
    #[error("cannot decode {api:?} v{version} response from {addr}: {reason}")]
    Decode {
        /// The broker's `host:port`.
        addr: String,
        /// The request's API.
        api: ApiKey,
        /// The request's version.
        version: i16,
        /// What went wrong, in words.
        reason: String,
    },
}

impl ConnectionError {
    /// Whether sending the request again (on a new connection) may succeed:
    /// true for network trouble and timeouts, false for version and codec errors.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ConnectionError::Connect { .. }
                | ConnectionError::ConnectTimeout { .. }
                | ConnectionError::Disconnected { .. }
                | ConnectionError::RequestTimeout { .. }
        )
    }
}

/// The API versions a connection negotiated: per API key, the highest version
/// that both we and the broker speak.
#[derive(Debug, Clone, Default)]
pub struct ApiVersions {
    broker: HashMap<i16, (i16, i16)>,
}

impl ApiVersions {
    /// The versions a broker's ApiVersions response lists.
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        ApiVersions {
            broker: response
                .api_keys
                .iter()
                .map(|api| (api.api_key, (api.min_version, api.max_version)))
                .collect(),
        }
    }

    /// The broker's range for an API, if it serves it at all.
    pub fn broker_range(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.broker.get(&(api as i16)).copied()
    }

    /// Whether the broker serves `api` in any version.
    pub fn supports(&self, api: ApiKey) -> bool {
        self.broker.contains_key(&(api as i16))
    }

    /// `min(ours.max, broker.max)`, if that is within both ranges.
    pub fn negotiate(&self, api: ApiKey, ours: (i16, i16)) -> Option<i16> {
        let (broker_min, broker_max) = self.broker_range(api)?;
        let version = ours.1.min(broker_max);
        (version >= ours.0 && version >= broker_min).then_some(version)
    }
}

/// A request waiting for its response.
struct Pending {
    correlation_id: i32,
    reply: oneshot::Sender<Result<Bytes, ConnectionError>>,
}

/// State shared by the handle and the two tasks.
struct Shared {
    addr: String,
    /// Outstanding requests in the order their frames were written.
    pending: Mutex<PendingState>,
    closed: CancellationToken,
}

struct PendingState {
    requests: VecDeque<Pending>,
    /// Set once, when the connection breaks.
    failure: Option<ConnectionError>,
}

impl Shared {
    /// Closes the connection for `reason`, failing everything outstanding.
    /// Only the first reason counts.
    fn fail(&self, reason: impl Into<String>) {
        let error = ConnectionError::Disconnected {
            addr: self.addr.clone(),
            reason: reason.into(),
        };
        let (error, drained): (ConnectionError, Vec<Pending>) = {
            let mut state = self.pending.lock().expect("pending lock");
            let error = state.failure.get_or_insert(error).clone();
            (error, state.requests.drain(..).collect())
        };
        self.closed.cancel();
        for pending in drained {
            let _ = pending.reply.send(Err(error.clone()));
        }
    }

    fn failure(&self) -> Option<ConnectionError> {
        self.pending.lock().expect("pending lock").failure.clone()
    }
}

/// A frame for the writer task, in pieces (record sets by reference).
struct Outgoing {
    frame: Vec<Bytes>,
    correlation_id: i32,
    /// `None` for requests without a response (Produce with `acks=0`).
    reply: Option<oneshot::Sender<Result<Bytes, ConnectionError>>>,
    /// Told once the frame is on the socket (or could not be written).
    written: Option<oneshot::Sender<Result<(), ConnectionError>>>,
}

/// A connection to one broker. Cheap to share behind an `Arc`; every method
/// takes `&self`, and concurrent requests are pipelined.
pub struct Connection {
    shared: Arc<Shared>,
    outgoing: mpsc::Sender<Outgoing>,
    next_correlation_id: AtomicI32,
    /// One permit per request that may await its response.
    in_flight: Arc<Semaphore>,
    versions: ApiVersions,
    config: ConnectionConfig,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.shared.addr)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The tasks end with the handle; outstanding callers hold no handle
        // of their own, so nothing waits on a dropped connection.
        self.shared.closed.cancel();
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`) and negotiates API versions.
    pub async fn connect(
        addr: &str,
        config: &ConnectionConfig,
    ) -> Result<Connection, ConnectionError> {
        let timeout = config.connect_timeout;
        let connecting = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| ConnectionError::Connect {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?;
            // Small requests (acks, metadata) should not wait for Nagle.
            let _ = stream.set_nodelay(true);
            let mut connection = Connection::start(addr, stream, config.clone());
            connection.versions = connection.negotiate_versions().await?;
            Ok(connection)
        };
        tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| ConnectionError::ConnectTimeout {
                addr: addr.to_string(),
                timeout,
            })?
    }

    fn start(addr: &str, stream: TcpStream, config: ConnectionConfig) -> Connection {
        let (read_half, write_half) = stream.into_split();
        let shared = Arc::new(Shared {
            addr: addr.to_string(),
            pending: Mutex::new(PendingState {
                requests: VecDeque::new(),
                failure: None,
            }),
            closed: CancellationToken::new(),
        });
        let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE_BOUND);
        tokio::spawn(write_loop(shared.clone(), write_half, outgoing_rx));
        tokio::spawn(read_loop(shared.clone(), read_half, config.frame_bytes_max));
        Connection {
            shared,
            outgoing,
            next_correlation_id: AtomicI32::new(1),
            in_flight: Arc::new(Semaphore::new(config.in_flight_requests_max.max(1))),
            versions: ApiVersions::default(),
            config,
        }
    }

    async fn negotiate_versions(&self) -> Result<ApiVersions, ConnectionError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("rust-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = API_VERSIONS_VERSION_MAX;
        loop {
            let response: ApiVersionsResponse = self.call_version(&request, version, None).await?;
            let code = ErrorCode(response.error_code);
            if code == ErrorCode::UNSUPPORTED_VERSION && version > 0 {
                // The broker answered with version 0 and its own range; ask
                // again with the highest version it speaks.
                let broker_max = ApiVersions::from_response(&response)
                    .broker_range(ApiKey::ApiVersions)
                    .map(|(_, max)| max)
                    .unwrap_or(0);
                version = broker_max.min(version - 1);
                continue;
            }
            if !code.is_ok() {
                return Err(ConnectionError::ApiVersions {
                    addr: self.shared.addr.clone(),
                    code,
                });
            }
            return Ok(ApiVersions::from_response(&response));
        }
    }

    /// The broker's `host:port`.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// The versions negotiated on connect.
    pub fn api_versions(&self) -> &ApiVersions {
        &self.versions
    }

    /// True once the connection broke or was closed; it never reopens.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Closes the connection, failing every outstanding request.
    pub fn close(&self, reason: &str) {
        self.shared.fail(reason);
    }

    /// The version to use for request type `R`: the highest both sides speak.
    pub fn version_for<R: Request>(&self) -> Result<i16, ConnectionError> {
        let api = api_key::<R>()?;
        let ours = (R::VERSIONS.min, R::VERSIONS.max);
        self.version_within::<R>(ours)
            .ok_or_else(|| ConnectionError::UnsupportedVersion {
                addr: self.shared.addr.clone(),
                api,
                ours,
                broker: self.versions.broker_range(api),
            })
    }

    /// The highest version within `ours` that the broker also speaks.
    pub fn version_within<R: Request>(&self, ours: (i16, i16)) -> Option<i16> {
        let api = api_key::<R>().ok()?;
        self.versions.negotiate(api, ours)
    }

    /// Sends `request` at the negotiated version and waits for its response,
    /// at most the configured request timeout.
    pub async fn call<R: Request>(&self, request: &R) -> Result<R::Response, ConnectionError> {
        let version = self.version_for::<R>()?;
        self.call_version(request, version, None).await
    }

    /// Sends `request` at `version` and waits for the response until the
    /// request timeout passes (then the connection closes) or until
    /// `give_up_at`, whichever is first. Giving up early leaves the connection
    /// open; the late response is discarded when it arrives.
    pub async fn call_version<R: Request>(
        &self,
        request: &R,
        version: i16,
        give_up_at: Option<Instant>,
    ) -> Result<R::Response, ConnectionError> {
        let api = api_key::<R>()?;
        let frame = self.call_raw(api, version, request, give_up_at).await?;
        let (correlation_id, response) = decode_response::<R::Response>(api, version, frame)
            .map_err(|e| ConnectionError::Decode {
                addr: self.shared.addr.clone(),
                api,
                version,
                reason: e.to_string(),
            })?;
        debug_assert!(correlation_id >= 0);
        Ok(response)
    }

    /// Sends an encodable request and returns the raw response frame (header
    /// included). For callers that pick the message type at run time.
    pub async fn call_raw<B: Encodable>(
        &self,
        api: ApiKey,
        version: i16,
        body: &B,
        give_up_at: Option<Instant>,
    ) -> Result<Bytes, ConnectionError> {
        let pending = self.send_request(api, version, body, true).await?;
        let frame = pending.wait(give_up_at).await?;
        Ok(frame.expect("a request with a response yields a frame"))
    }

    /// Sends a request that has no response (Produce with `acks=0`) and
    /// returns once its bytes are written to the socket.
    pub async fn send_without_response<B: Encodable>(
        &self,
        api: ApiKey,
        version: i16,
        body: &B,
    ) -> Result<(), ConnectionError> {
        let pending = self.send_request(api, version, body, false).await?;
        pending.wait(None).await.map(|_| ())
    }

    /// Queues a request for the socket and returns without waiting for the
    /// answer. Requests queued one after another by one task go out, and are
    /// answered, in that order: the way to pipeline requests whose order
    /// matters (produce requests of one partition).
    pub async fn send_request<B: Encodable>(
        &self,
        api: ApiKey,
        version: i16,
        body: &B,
        expect_response: bool,
    ) -> Result<PendingResponse, ConnectionError> {
        self.send_request_zero_copy(api, version, body, expect_response, &[])
            .await
    }

    /// [`send_request`](Self::send_request) with the large byte fields of
    /// `body` listed in `zero_copy` (the record sets of a Produce request),
    /// which then go to the socket from their own memory instead of being
    /// copied into the frame.
    pub async fn send_request_zero_copy<B: Encodable>(
        &self,
        api: ApiKey,
        version: i16,
        body: &B,
        expect_response: bool,
        zero_copy: &[Bytes],
    ) -> Result<PendingResponse, ConnectionError> {
        self.reserve()
            .await?
            .send(api, version, body, expect_response, zero_copy)
    }

    /// Waits for room for one more request: a place under the in-flight
    /// bound and in the write queue.
    pub async fn reserve(&self) -> Result<RequestSlot<'_>, ConnectionError> {
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.disconnected("connection closed"))?;
        if let Some(failure) = self.shared.failure() {
            return Err(failure);
        }
        let queued = self
            .outgoing
            .reserve()
            .await
            .map_err(|_| self.disconnected("connection tasks ended"))?;
        Ok(RequestSlot {
            connection: self,
            permit,
            queued,
        })
    }

    /// [`reserve`](Self::reserve) without waiting: `Ok(None)` when the
    /// connection has no room for another request right now.
    pub fn try_reserve(&self) -> Result<Option<RequestSlot<'_>>, ConnectionError> {
        let permit = match self.in_flight.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => return Ok(None),
            Err(TryAcquireError::Closed) => return Err(self.disconnected("connection closed")),
        };
        if let Some(failure) = self.shared.failure() {
            return Err(failure);
        }
        let queued = match self.outgoing.try_reserve() {
            Ok(queued) => queued,
            Err(mpsc::error::TrySendError::Full(())) => return Ok(None),
            Err(mpsc::error::TrySendError::Closed(())) => {
                return Err(self.disconnected("connection tasks ended"))
            }
        };
        Ok(Some(RequestSlot {
            connection: self,
            permit,
            queued,
        }))
    }

    fn pending(
        &self,
        api: ApiKey,
        version: i16,
        waiting: Waiting,
        permit: OwnedSemaphorePermit,
    ) -> PendingResponse {
        PendingResponse {
            shared: self.shared.clone(),
            api,
            version,
            submitted_at: Instant::now(),
            request_timeout: self.config.request_timeout,
            waiting,
            _in_flight: permit,
        }
    }

    fn next_correlation_id(&self) -> i32 {
        // Correlation ids stay non-negative; wrapping past i32::MAX restarts at 0.
        self.next_correlation_id.fetch_add(1, Ordering::Relaxed) & i32::MAX
    }

    fn encode<B: Encodable>(
        &self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        body: &B,
        zero_copy: &[Bytes],
    ) -> Result<Vec<Bytes>, ConnectionError> {
        encode_request_chunks(
            api,
            version,
            correlation_id,
            Some(&self.config.client_id),
            body,
            zero_copy,
        )
        .map_err(|e| ConnectionError::Encode {
            api,
            version,
            reason: e.to_string(),
        })
    }

    fn disconnected(&self, reason: &str) -> ConnectionError {
        self.shared
            .failure()
            .unwrap_or(ConnectionError::Disconnected {
                addr: self.shared.addr.clone(),
                reason: reason.to_string(),
            })
    }
}

/// Room for one request on a connection, from [`Connection::reserve`]: a
/// place under its in-flight bound and in its write queue. Dropping it
/// gives both back.
pub struct RequestSlot<'a> {
    connection: &'a Connection,
    permit: OwnedSemaphorePermit,
    queued: mpsc::Permit<'a, Outgoing>,
}

impl RequestSlot<'_> {
    /// Encodes the request into the slot's place in the write queue; see
    /// [`Connection::send_request_zero_copy`].
    pub fn send<B: Encodable>(
        self,
        api: ApiKey,
        version: i16,
        body: &B,
        expect_response: bool,
        zero_copy: &[Bytes],
    ) -> Result<PendingResponse, ConnectionError> {
        let connection = self.connection;
        let correlation_id = connection.next_correlation_id();
        let frame = connection.encode(api, version, correlation_id, body, zero_copy)?;
        let (waiting, outgoing) = outgoing(frame, correlation_id, expect_response);
        self.queued.send(outgoing);
        Ok(connection.pending(api, version, waiting, self.permit))
    }
}

/// The queue entry for a request frame, and what its sender waits on: the
/// response, or for a request without one, the end of its write.
fn outgoing(frame: Vec<Bytes>, correlation_id: i32, expect_response: bool) -> (Waiting, Outgoing) {
    if expect_response {
        let (reply, reply_rx) = oneshot::channel();
        (
            Waiting::Response(reply_rx),
            Outgoing {
                frame,
                correlation_id,
                reply: Some(reply),
                written: None,
            },
        )
    } else {
        let (written, written_rx) = oneshot::channel();
        (
            Waiting::Written(written_rx),
            Outgoing {
                frame,
                correlation_id,
                reply: None,
                written: Some(written),
            },
        )
    }
}

enum Waiting {
    Response(oneshot::Receiver<Result<Bytes, ConnectionError>>),
    Written(oneshot::Receiver<Result<(), ConnectionError>>),
}

/// A request on its way: queued, written, or waiting for its response.
pub struct PendingResponse {
    shared: Arc<Shared>,
    api: ApiKey,
    version: i16,
    submitted_at: Instant,
    request_timeout: Duration,
    waiting: Waiting,
    /// Released when the response (or the failure) is in.
    _in_flight: OwnedSemaphorePermit,
}

impl PendingResponse {
    /// Waits for the response frame (`None` for a request without a
    /// response, once it is written). Waits at most the request timeout
    /// from submission (after which the connection is closed, since later
    /// frames can no longer be matched with confidence), or until
    /// `give_up_at`, whichever comes first. Giving up early leaves the
    /// connection open and discards the late response.
    pub async fn wait(self, give_up_at: Option<Instant>) -> Result<Option<Bytes>, ConnectionError> {
        let request_deadline = self.submitted_at + self.request_timeout;
        let deadline = give_up_at.map_or(request_deadline, |d| d.min(request_deadline));
        let gone = || {
            self.shared
                .failure()
                .unwrap_or(ConnectionError::Disconnected {
                    addr: self.shared.addr.clone(),
                    reason: "connection tasks ended".to_string(),
                })
        };
        let outcome = match self.waiting {
            Waiting::Response(receiver) => tokio::time::timeout_at(deadline, receiver)
                .await
                .map(|r| r.unwrap_or_else(|_| Err(gone())).map(Some)),
            Waiting::Written(receiver) => tokio::time::timeout_at(deadline, receiver)
                .await
                .map(|r| r.unwrap_or_else(|_| Err(gone())).map(|()| None)),
        };
        match outcome {
            Ok(result) => result,
            Err(_) => {
                let timed_out = ConnectionError::RequestTimeout {
                    addr: self.shared.addr.clone(),
                    api: self.api,
                    version: self.version,
                    timeout: self.submitted_at.elapsed(),
                };
                if deadline == request_deadline {
                    self.shared.fail(timed_out.to_string());
                }
                Err(timed_out)
            }
        }
    }
}

fn api_key<R: Request>() -> Result<ApiKey, ConnectionError> {
    ApiKey::try_from(R::KEY).map_err(|_| ConnectionError::Encode {
        api: ApiKey::ApiVersions,
        version: 0,
        reason: format!("unknown api key {}", R::KEY),
    })
}

/// Writes frames in submission order, registering each request that expects
/// a response before its bytes leave, so the reader can never see a response
/// to a request it does not know yet.
async fn write_loop(
    shared: Arc<Shared>,
    mut socket: OwnedWriteHalf,
    mut outgoing: mpsc::Receiver<Outgoing>,
) {
    loop {
        let next = tokio::select! {
            _ = shared.closed.cancelled() => break,
            next = outgoing.recv() => next,
        };
        let Some(message) = next else { break };
        if let Some(reply) = message.reply {
            let mut state = shared.pending.lock().expect("pending lock");
            if let Some(failure) = state.failure.clone() {
                drop(state);
                let _ = reply.send(Err(failure));
                continue;
            }
            state.requests.push_back(Pending {
                correlation_id: message.correlation_id,
                reply,
            });
        }
        let result = tokio::select! {
            _ = shared.closed.cancelled() => Err(std::io::Error::other("connection closed")),
            result = protocol::frame::write_all_chunks(&mut socket, &message.frame) => result,
        };
        match result {
            Ok(()) => {
                if let Some(written) = message.written {
                    let _ = written.send(Ok(()));
                }
            }
            Err(e) => {
                shared.fail(format!("write failed: {e}"));
                if let Some(written) = message.written {
                    let _ = written.send(Err(shared.failure().expect("failure recorded")));
                }
                break;
            }
        }
    }
    // Fail whatever was still queued behind the break.
    outgoing.close();
    let failure = shared.failure().unwrap_or(ConnectionError::Disconnected {
        addr: shared.addr.clone(),
        reason: "connection closed".to_string(),
    });
    while let Ok(message) = outgoing.try_recv() {
        if let Some(reply) = message.reply {
            let _ = reply.send(Err(failure.clone()));
        }
        if let Some(written) = message.written {
            let _ = written.send(Err(failure.clone()));
        }
    }
    let _ = socket.shutdown().await;
}

/// Reads response frames and hands each to the oldest outstanding request.
async fn read_loop(shared: Arc<Shared>, socket: OwnedReadHalf, frame_bytes_max: usize) {
    let mut frames = FramedRead::new(socket, protocol::frame::frame_codec(frame_bytes_max));
    loop {
        let next = tokio::select! {
            _ = shared.closed.cancelled() => break,
            next = frames.next() => next,
        };
        let frame = match next {
            None => {
                shared.fail("closed by the broker");
                break;
            }
            Some(Err(e)) => {
                shared.fail(format!("read failed: {e}"));
                break;
            }
            Some(Ok(frame)) => frame.freeze(),
        };
        if frame.len() < 4 {
            shared.fail(format!(
                "response frame of {} bytes has no correlation id",
                frame.len()
            ));
            break;
        }
        let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let pending = shared
            .pending
            .lock()
            .expect("pending lock")
            .requests
            .pop_front();
        match pending {
            Some(pending) if pending.correlation_id == correlation_id => {
                // The caller may have given up waiting; then the frame is dropped.
                let _ = pending.reply.send(Ok(frame));
            }
            Some(pending) => {
                let reason = format!(
                    "response with correlation id {correlation_id} arrived while {} was expected",
                    pending.correlation_id
                );
                shared
                    .pending
                    .lock()
                    .expect("pending lock")
                    .requests
                    .push_front(pending);
                shared.fail(reason);
                break;
            }
            None => {
                shared.fail(format!(
                    "unexpected response with correlation id {correlation_id}"
                ));
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::messages::api_versions_response::ApiVersion;

    fn table(entries: &[(i16, i16, i16)]) -> ApiVersions {
        let response = ApiVersionsResponse::default().with_api_keys(
            entries
                .iter()
                .map(|&(key, min, max)| {
                    ApiVersion::default()
                        .with_api_key(key)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        );
        ApiVersions::from_response(&response)
    }

    #[test]
    fn negotiation_picks_the_lower_of_the_two_maxima() {
        // min(our max, broker max) per API, and nothing when the ranges do not meet.
        let versions = table(&[(0, 3, 13), (3, 0, 9), (22, 5, 6)]);
        assert_eq!(versions.negotiate(ApiKey::Produce, (3, 12)), Some(12));
        assert_eq!(versions.negotiate(ApiKey::Metadata, (0, 12)), Some(9));
        assert_eq!(versions.negotiate(ApiKey::InitProducerId, (0, 4)), None);
        assert_eq!(versions.negotiate(ApiKey::Fetch, (0, 12)), None);
        assert!(versions.supports(ApiKey::InitProducerId));
        assert!(!versions.supports(ApiKey::Fetch));
    }

    /// A tiny broker stand-in: answers ApiVersions, then echoes requests back
    /// as responses carrying their correlation id, optionally out of order.
    async fn fake_broker(swap_second_and_third: bool) -> String {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut held: Option<Vec<u8>> = None;
            let mut count = 0;
            loop {
                let mut size = [0u8; 4];
                if socket.read_exact(&mut size).await.is_err() {
                    return;
                }
                let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
                socket.read_exact(&mut body).await.unwrap();
                let api_key = i16::from_be_bytes([body[0], body[1]]);
                let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                let response = if api_key == ApiKey::ApiVersions as i16 {
                    let versions = ApiVersionsResponse::default().with_api_keys(vec![
                        ApiVersion::default()
                            .with_api_key(18)
                            .with_min_version(0)
                            .with_max_version(3),
                        ApiVersion::default()
                            .with_api_key(3)
                            .with_min_version(0)
                            .with_max_version(12),
                    ]);
                    let version = i16::from_be_bytes([body[2], body[3]]);
                    protocol::header::encode_response(
                        ApiKey::ApiVersions,
                        version,
                        correlation_id,
                        &versions,
                    )
                    .unwrap()
                    .to_vec()
                } else {
                    // Metadata v0: header (correlation id) + empty brokers + empty topics.
                    let mut frame = Vec::new();
                    frame.extend_from_slice(&12u32.to_be_bytes());
                    frame.extend_from_slice(&correlation_id.to_be_bytes());
                    frame.extend_from_slice(&0i32.to_be_bytes());
                    frame.extend_from_slice(&0i32.to_be_bytes());
                    frame
                };
                if api_key != ApiKey::ApiVersions as i16 {
                    count += 1;
                }
                if swap_second_and_third && count == 2 {
                    held = Some(response);
                    continue;
                }
                socket.write_all(&response).await.unwrap();
                if let Some(held) = held.take() {
                    socket.write_all(&held).await.unwrap();
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn pipelined_requests_each_get_their_own_response() {
        // Ten concurrent requests on one connection all complete, matched by correlation id.
        let addr = fake_broker(false).await;
        let connection = Arc::new(
            Connection::connect(&addr, &ConnectionConfig::default())
                .await
                .unwrap(),
        );
        assert_eq!(
            connection.version_within::<protocol::messages::MetadataRequest>((0, 0)),
            Some(0)
        );
        let calls = (0..10).map(|_| {
            let connection = connection.clone();
            async move {
                connection
                    .call_version(&protocol::messages::MetadataRequest::default(), 0, None)
                    .await
            }
        });
        for result in futures::future::join_all(calls).await {
            let response = result.unwrap();
            assert!(response.brokers.is_empty());
        }
        assert!(!connection.is_closed());
    }

    #[tokio::test]
    async fn a_request_that_finds_no_room_is_not_sent_and_goes_out_once_there_is() {
        // try_send stops at the in-flight bound without sending; a finished
        // request makes room again.
        let addr = fake_broker(false).await;
        let config = ConnectionConfig {
            in_flight_requests_max: 2,
            ..ConnectionConfig::default()
        };
        let connection = Connection::connect(&addr, &config).await.unwrap();
        let request = protocol::messages::MetadataRequest::default();
        let try_send = || {
            connection
                .try_reserve()
                .unwrap()
                .map(|slot| slot.send(ApiKey::Metadata, 0, &request, true, &[]))
                .transpose()
        };
        let first = try_send().unwrap().expect("room for the first");
        let second = try_send().unwrap().expect("room for the second");
        assert!(try_send().unwrap().is_none(), "no room for a third");
        assert!(first.wait(None).await.unwrap().is_some());
        let third = try_send()
            .unwrap()
            .expect("room once the first is answered");
        assert!(second.wait(None).await.unwrap().is_some());
        assert!(third.wait(None).await.unwrap().is_some());
        assert!(!connection.is_closed());
    }

    #[tokio::test]
    async fn response_out_of_order_closes_the_connection_and_fails_every_request() {
        // A response whose correlation id is not the oldest outstanding one is a broken stream.
        let addr = fake_broker(true).await;
        let connection = Arc::new(
            Connection::connect(&addr, &ConnectionConfig::default())
                .await
                .unwrap(),
        );
        let request = protocol::messages::MetadataRequest::default();
        connection.call_version(&request, 0, None).await.unwrap();
        let (second, third) = tokio::join!(
            connection.call_version(&request, 0, None),
            connection.call_version(&request, 0, None)
        );
        assert!(
            matches!(second, Err(ConnectionError::Disconnected { .. })),
            "{second:?}"
        );
        assert!(
            matches!(third, Err(ConnectionError::Disconnected { .. })),
            "{third:?}"
        );
        assert!(connection.is_closed());
        let after = connection.call_version(&request, 0, None).await;
        assert!(after.unwrap_err().is_retriable());
    }

    #[tokio::test]
    async fn connection_refused_is_a_retriable_connect_error() {
        // Nothing listening: a typed, retriable error rather than a hang.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let error = Connection::connect(&addr, &ConnectionConfig::default())
            .await
            .unwrap_err();
        assert!(
            matches!(error, ConnectionError::Connect { .. }),
            "{error:?}"
        );
        assert!(error.is_retriable());
    }
}
