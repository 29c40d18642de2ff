//! A fault-injecting TCP proxy between Kafka clients and a broker.
//!
//! Requests pass through untouched (counted per API key); responses are read
//! frame by frame (size prefix, body) so that whole responses can be delayed,
//! swallowed, or cut in the middle. Faults come on command ([`Proxy::inject`],
//! [`Proxy::drop_connections`], [`Proxy::pause_responses`]) or from a seeded
//! random schedule ([`Proxy::start_chaos`]) that decides for every response
//! whether it meets a fault.
//!
//! Brokers advertise their own address in Metadata, so to keep a client's
//! traffic on the proxy: [`Proxy::bind`] first to learn the port, start the
//! broker with `--advertised-listener <proxy addr>`, then [`Proxy::forward_to`]
//! the broker's real address.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Bound on one request or response frame the proxy will buffer (the broker's own
/// frame bound is the real limit; this only keeps a corrupt size from
/// making the proxy allocate without limit).
pub const PROXY_FRAME_BYTES_MAX: usize = 128 * 1024 * 1024;
/// Bound on commanded faults waiting for a response to hit.
pub const PENDING_FAULTS_MAX: usize = 1024;

/// What can happen to a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection instead of forwarding the response.
    DropConnection,
    /// Hold the response (and so everything behind it on its connection)
    /// for this long, then forward it.
    DelayResponse(Duration),
    /// Swallow the response; the connection stays open, so the client sees
    /// the next response where it expected this one.
    DropResponse,
    /// Forward the size prefix and half the body, then close the connection.
    CutResponse,
}

/// A seeded random fault schedule: each response meets a fault with
/// probability `fault_probability`, the kind drawn uniformly, delays up to
/// `delay_max`.
#[derive(Debug, Clone, Copy)]
pub struct ChaosSchedule {
    pub seed: u64,
    pub fault_probability: f64,
    pub delay_max: Duration,
}

/// SplitMix64: a tiny seeded generator, so a schedule is a function of its seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct State {
    /// Where to forward; `None` until [`Proxy::forward_to`].
    upstream: watch::Sender<Option<String>>,
    pending: Mutex<VecDeque<Fault>>,
    chaos: Mutex<Option<(ChaosSchedule, SplitMix64)>>,
    /// Bumped to close every open connection.
    generation: watch::Sender<u64>,
    /// While true, responses are held back.
    paused: watch::Sender<bool>,
    faults_injected: AtomicUsize,
    connections_accepted: AtomicUsize,
    /// Whole request frames passed to the broker, by API key.
    requests_forwarded: Mutex<HashMap<i16, usize>>,
    log: Mutex<Vec<String>>,
}

impl State {
    /// The fault for the next response, if any: a commanded one first,
    /// else the random schedule's draw.
    fn next_fault(&self) -> Option<Fault> {
        if let Some(fault) = self.pending.lock().unwrap().pop_front() {
            return Some(fault);
        }
        let mut chaos = self.chaos.lock().unwrap();
        let (schedule, rng) = chaos.as_mut()?;
        if rng.next_f64() >= schedule.fault_probability {
            return None;
        }
        Some(match rng.next_u64() % 4 {
            0 => Fault::DropConnection,
            1 => Fault::DropResponse,
            2 => Fault::CutResponse,
            _ => {
                let max_ms = schedule.delay_max.as_millis().max(1) as u64;
                Fault::DelayResponse(Duration::from_millis(1 + rng.next_u64() % max_ms))
            }
        })
    }

    fn record(&self, fault: Fault) {
        let n = self.faults_injected.fetch_add(1, Ordering::SeqCst) + 1;
        self.log
            .lock()
            .unwrap()
            .push(format!("fault {n}: {fault:?}"));
    }
}

/// The proxy. Dropping it stops accepting; open connections close with it.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.state.generation.send_modify(|g| *g += 1);
    }
}

impl Proxy {
    /// Binds 127.0.0.1:0 and accepts connections; each is forwarded once
    /// [`Proxy::forward_to`] has named the upstream (until then, held).
    pub async fn bind() -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            upstream: watch::channel(None).0,
            pending: Mutex::new(VecDeque::new()),
            chaos: Mutex::new(None),
            generation: watch::channel(0).0,
            paused: watch::channel(false).0,
            faults_injected: AtomicUsize::new(0),
            connections_accepted: AtomicUsize::new(0),
            requests_forwarded: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
        });
        let accept_task = tokio::spawn(accept_loop(listener, state.clone()));
        Ok(Proxy {
            addr,
            state,
            accept_task,
        })
    }

    /// `127.0.0.1:<port>`: what clients (and the broker's advertised listener) use.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Starts forwarding new connections to `upstream`.
    pub fn forward_to(&self, upstream: &str) {
        self.state.upstream.send_replace(Some(upstream.to_string()));
    }

    /// Queues a fault for the next response to pass through.
    pub fn inject(&self, fault: Fault) {
        let mut pending = self.state.pending.lock().unwrap();
        assert!(pending.len() < PENDING_FAULTS_MAX, "too many faults queued");
        pending.push_back(fault);
    }

    /// Closes every open connection now (counts as one fault).
    pub fn drop_connections(&self) {
        self.state.record(Fault::DropConnection);
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Holds every response until [`Proxy::resume_responses`].
    pub fn pause_responses(&self) {
        self.state.paused.send_replace(true);
    }

    pub fn resume_responses(&self) {
        self.state.paused.send_replace(false);
    }

    /// Starts the random schedule (replacing any running one).
    pub fn start_chaos(&self, schedule: ChaosSchedule) {
        *self.state.chaos.lock().unwrap() = Some((schedule, SplitMix64::new(schedule.seed)));
    }

    /// Stops the random schedule; commanded faults still apply.
    pub fn stop_chaos(&self) {
        *self.state.chaos.lock().unwrap() = None;
    }

    /// Faults that actually happened (commanded or random).
    pub fn faults_injected(&self) -> usize {
        self.state.faults_injected.load(Ordering::SeqCst)
    }

    /// Requests with this API key passed to the broker whole, on all
    /// connections: an absolute count, so a test need not race a snapshot.
    pub fn requests_forwarded(&self, api_key: i16) -> usize {
        let counts = self.state.requests_forwarded.lock().unwrap();
        counts.get(&api_key).copied().unwrap_or(0)
    }

    pub fn connections_accepted(&self) -> usize {
        self.state.connections_accepted.load(Ordering::SeqCst)
    }

    /// One line per fault, in the order they happened.
    pub fn fault_log(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        state.connections_accepted.fetch_add(1, Ordering::SeqCst);
        let state = state.clone();
        tokio::spawn(async move {
            let _ = serve(client, state).await;
        });
    }
}

/// Forwards one client connection until either side closes or a fault ends it.
async fn serve(client: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let mut generation = state.generation.subscribe();
    // Wait for an upstream to be named (a client may connect before the broker is up).
    let mut upstream = state.upstream.subscribe();
    let upstream = tokio::select! {
        _ = generation.changed() => return Ok(()),
        named = upstream.wait_for(Option::is_some) => match named {
            Ok(named) => named.clone().expect("waited for Some"),
            Err(_) => return Ok(()),
        },
    };
    let broker = TcpStream::connect(&upstream).await?;
    let _ = client.set_nodelay(true);
    let _ = broker.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut broker_read, mut broker_write) = broker.into_split();
    let requests = forward_requests(&mut client_read, &mut broker_write, &state);
    let responses = forward_responses(&mut broker_read, &mut client_write, &state);
    tokio::select! {
        _ = requests => {}
        _ = responses => {}
        _ = generation.changed() => {}
    }
    // Dropping the halves closes both sockets.
    Ok(())
}

/// The next frame on `socket`: its size prefix and its body. `None` when the
/// socket closes or fails, or the size is past [`PROXY_FRAME_BYTES_MAX`].
async fn read_frame(socket: &mut tokio::net::tcp::OwnedReadHalf) -> Option<([u8; 4], Vec<u8>)> {
    let mut size = [0u8; 4];
    socket.read_exact(&mut size).await.ok()?;
    let length = u32::from_be_bytes(size) as usize;
    if length > PROXY_FRAME_BYTES_MAX {
        return None;
    }
    let mut body = vec![0u8; length];
    socket.read_exact(&mut body).await.ok()?;
    Some((size, body))
}

/// Copies request frames to the broker, counting them by API key. Returns
/// when either side closes.
async fn forward_requests(
    client: &mut tokio::net::tcp::OwnedReadHalf,
    broker: &mut tokio::net::tcp::OwnedWriteHalf,
    state: &State,
) {
    while let Some((size, body)) = read_frame(client).await {
        if broker.write_all(&size).await.is_err() || broker.write_all(&body).await.is_err() {
            return;
        }
        // A frame too short for an API key goes through uncounted.
        if let [high, low, ..] = body[..] {
            *state
                .requests_forwarded
                .lock()
                .unwrap()
                .entry(i16::from_be_bytes([high, low]))
                .or_insert(0) += 1;
        }
    }
}

/// Copies response frames to the client, applying faults. Returns when the
/// connection is to be closed.
async fn forward_responses(
    broker: &mut tokio::net::tcp::OwnedReadHalf,
    client: &mut tokio::net::tcp::OwnedWriteHalf,
    state: &State,
) {
    let mut paused = state.paused.subscribe();
    while let Some((size, body)) = read_frame(broker).await {
        // Held responses stay in order behind the pause.
        while *paused.borrow_and_update() {
            if paused.changed().await.is_err() {
                return;
            }
        }
        match state.next_fault() {
            None => {}
            Some(fault @ Fault::DropConnection) => {
                state.record(fault);
                return;
            }
            Some(fault @ Fault::DropResponse) => {
                state.record(fault);
                continue;
            }
            Some(fault @ Fault::CutResponse) => {
                state.record(fault);
                let _ = client.write_all(&size).await;
                let _ = client.write_all(&body[..body.len() / 2]).await;
                return;
            }
            Some(fault @ Fault::DelayResponse(delay)) => {
                state.record(fault);
                tokio::time::sleep(delay).await;
            }
        }
        if client.write_all(&size).await.is_err() || client.write_all(&body).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_a_function_of_its_seed() {
        // Same seed, same draws; the floats stay in [0, 1).
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            let f = a.next_f64();
            b.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
    }

    #[tokio::test]
    async fn commanded_faults_hit_responses_in_order() {
        // A dropped response vanishes and a cut one closes the connection after half a frame.
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                socket.write_all(&buf[..n]).await.unwrap();
            }
        });
        let proxy = Proxy::bind().await.unwrap();
        proxy.forward_to(&echo_addr);
        proxy.inject(Fault::DropResponse);
        proxy.inject(Fault::CutResponse);
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        let frame = |byte: u8| {
            let mut f = 4u32.to_be_bytes().to_vec();
            f.extend_from_slice(&[byte; 4]);
            f
        };
        client.write_all(&frame(1)).await.unwrap();
        client.write_all(&frame(2)).await.unwrap();
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        // Frame 1 was dropped; frame 2 was cut after its size and 2 body bytes.
        assert_eq!(received, [0, 0, 0, 4, 2, 2]);
        assert_eq!(proxy.faults_injected(), 2);
    }
}
