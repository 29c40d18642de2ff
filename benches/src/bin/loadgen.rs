//! `loadgen`: produce, consume and end-to-end load against any Kafka-compatible
//! broker, with our client (default) or librdkafka (`--client rdkafka`), an
//! open-loop target rate, hdrhistogram latency percentiles, a live progress
//! line, `--json` results and an `--plot` SVG. `loadgen baseline` measures
//! the machine without a broker for comparison.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use benches::baseline;
use benches::report::{write_json, write_plot, Progress, Summary};
use benches::stats::{Percentiles, Stats};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::sync::Mutex;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for Kafka-compatible brokers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce messages and report acknowledgement latency.
    Produce(ProduceArgs),
    /// Consume messages from the beginning of the topic.
    Consume(ConsumeArgs),
    /// Produce and consume at once; latency from the record's send time to its consumption.
    EndToEnd(EndToEndArgs),
    /// Measure the machine without a broker: raw disk, loopback into a file, file over loopback.
    Baseline(BaselineArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum ClientKind {
    /// This project's Rust client.
    Ours,
    /// librdkafka through the rdkafka crate.
    Rdkafka,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum AcksArg {
    #[value(name = "0")]
    None,
    #[value(name = "1")]
    Leader,
    #[value(name = "all")]
    All,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum CompressionArg {
    None,
    Lz4,
    Zstd,
}

#[derive(Args, Clone)]
struct Common {
    /// Bootstrap brokers, comma-separated.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, default_value = "loadgen")]
    topic: String,
    /// Partitions of the topic (created if missing).
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Replicas of each partition when the topic is created.
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Message value size in bytes (at least 8: the send time is stored in the first 8).
    #[arg(long, default_value_t = 1024)]
    message_size: usize,
    /// Stop after this many messages in total...
    #[arg(long)]
    count: Option<u64>,
    /// ...or after this many seconds (default 10 when --count is not given).
    #[arg(long)]
    duration: Option<f64>,
    #[arg(long, value_enum, default_value = "ours")]
    client: ClientKind,
    /// Write the figures as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw throughput and latency percentiles over time as SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ProducerArgs {
    /// Concurrent producers (each its own client instance).
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Target messages/s over all producers (open loop: latency counts from the
    /// scheduled send time, so a stall is not hidden). Unlimited when absent.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, value_enum, default_value = "1")]
    acks: AcksArg,
    #[arg(long, value_enum, default_value = "none")]
    compression: CompressionArg,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    #[arg(long, default_value_t = 65536)]
    batch_size: usize,
    /// Idempotence (our client and librdkafka); needs acks=all.
    #[arg(long)]
    idempotence: bool,
    /// Produce requests in flight per broker connection (ours:
    /// `max_in_flight_requests_per_connection`, default 5 as in Kafka;
    /// librdkafka: `max.in.flight`, default 1000000, or 5 with idempotence).
    /// Each client's default when absent.
    #[arg(long)]
    max_in_flight: Option<usize>,
}

#[derive(Args, Clone)]
struct ProduceArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    producer: ProducerArgs,
}

#[derive(Args, Clone)]
struct ConsumeArgs {
    #[command(flatten)]
    common: Common,
    /// Concurrent consumers; partitions are split among them.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    #[command(flatten)]
    fetch: FetchArgs,
}

#[derive(Args, Clone, Copy, Debug)]
struct FetchArgs {
    /// Bound on one fetch response (`fetch.max.bytes`, both clients); each
    /// client's default (50 MiB) when absent. On loopback, responses of 1-2
    /// MiB stay in the CPU caches: librdkafka then spends about half the CPU
    /// per record with 8 partitions.
    #[arg(long)]
    fetch_max_bytes: Option<i32>,
}

impl FetchArgs {
    /// The bound as the results name it.
    fn setting(&self) -> String {
        self.fetch_max_bytes
            .map_or("client default".into(), |b| b.to_string())
    }
}

#[derive(Args, Clone)]
struct EndToEndArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    producer: ProducerArgs,
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    #[command(flatten)]
    fetch: FetchArgs,
}

#[derive(Args, Clone)]
struct BaselineArgs {
    /// Directory on the disk to measure (the broker's data dir's disk).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Bytes moved by each baseline, in MiB.
    #[arg(long, default_value_t = 1024)]
    megabytes: u64,
    /// Write size of the loopback-to-file sender (a produce batch).
    #[arg(long, default_value_t = 65536)]
    chunk_bytes: usize,
    /// Seconds of the core-stall probe (a clock-reading thread on each core).
    #[arg(long, default_value_t = 5.0)]
    stall_seconds: f64,
    #[arg(long)]
    json: Option<PathBuf>,
}

/// How often the progress line is refreshed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// A consumer that sees nothing new for this long stops (consume mode).
const CONSUME_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_DURATION_S: f64 = 10.0;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Produce(args) => runtime.block_on(produce_command(args)),
        Command::Consume(args) => runtime.block_on(consume_command(args)),
        Command::EndToEnd(args) => runtime.block_on(end_to_end_command(args)),
        Command::Baseline(args) => baseline_command(args),
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Payloads of `size` bytes whose first 8 hold the send time in ns since the
/// epoch, cut from a shared buffer so that a message costs no allocation.
struct Payloads {
    size: usize,
    arena: bytes::BytesMut,
    filler: Bytes,
}

/// Bytes of payload buffer allocated at once.
const PAYLOAD_ARENA_BYTES: usize = 1 << 20;

impl Payloads {
    fn new(size: usize) -> Self {
        Payloads {
            size: size.max(8),
            arena: bytes::BytesMut::new(),
            filler: Bytes::from(vec![b'm'; size]),
        }
    }

    /// The next value, carrying `sent_nanos` (wall clock) in its first 8 bytes.
    fn next(&mut self, sent_nanos: u64) -> Bytes {
        if self.arena.capacity() < self.size {
            self.arena = bytes::BytesMut::with_capacity(PAYLOAD_ARENA_BYTES.max(self.size));
        }
        self.arena.extend_from_slice(&sent_nanos.to_be_bytes());
        self.arena.extend_from_slice(&self.filler[..self.size - 8]);
        self.arena.split().freeze()
    }
}

/// How long ago, at `wall_nanos` (wall clock), a stamped value (see
/// [`Payloads`]) was sent; `None` for a value too short to carry a stamp.
fn since_stamp(value: &[u8], wall_nanos: u64) -> Option<Duration> {
    let stamp: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(Duration::from_nanos(
        wall_nanos.saturating_sub(u64::from_be_bytes(stamp)),
    ))
}

/// When the run ends: after a message count or a duration.
#[derive(Clone, Copy)]
struct Limit {
    count: Option<u64>,
    duration: Option<Duration>,
}

impl Limit {
    fn of(common: &Common) -> Limit {
        match (common.count, common.duration) {
            (Some(count), duration) => Limit {
                count: Some(count),
                duration: duration.map(Duration::from_secs_f64),
            },
            (None, duration) => Limit {
                count: None,
                duration: Some(Duration::from_secs_f64(
                    duration.unwrap_or(DEFAULT_DURATION_S),
                )),
            },
        }
    }

    fn remaining(&self, elapsed: Duration, done: u64, rate: f64) -> Option<Duration> {
        let by_time = self.duration.map(|d| d.saturating_sub(elapsed));
        let by_count = self
            .count
            .filter(|_| rate > 0.0)
            .map(|c| Duration::from_secs_f64(c.saturating_sub(done) as f64 / rate));
        match (by_time, by_count) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn settings(common: &Common, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("brokers", common.brokers.clone()),
        ("topic", common.topic.clone()),
        ("partitions", common.partitions.to_string()),
        ("replication_factor", common.replication_factor.to_string()),
        ("message_size", common.message_size.to_string()),
        ("client", format!("{:?}", common.client).to_lowercase()),
    ];
    out.extend_from_slice(extra);
    out
}

fn producer_settings(p: &ProducerArgs) -> Vec<(&'static str, String)> {
    vec![
        ("producers", p.producers.to_string()),
        ("rate", p.rate.map_or("unlimited".into(), |r| r.to_string())),
        ("acks", format!("{:?}", p.acks).to_lowercase()),
        ("compression", format!("{:?}", p.compression).to_lowercase()),
        ("linger_ms", p.linger_ms.to_string()),
        ("batch_size", p.batch_size.to_string()),
        ("idempotence", p.idempotence.to_string()),
        (
            "max_in_flight",
            p.max_in_flight
                .map_or("client default".into(), |n| n.to_string()),
        ),
    ]
}

/// Creates the topic with our admin client; one that exists already is fine.
async fn ensure_topic(common: &Common) -> anyhow::Result<()> {
    use client::admin::NewTopic;
    use client::{Admin, AdminConfig, AdminError, ErrorCode};
    const CREATE_TOPIC_TIMEOUT: Duration = Duration::from_secs(30);
    let admin = Admin::connect(AdminConfig::new(&common.brokers)).await?;
    let topic = NewTopic::new(
        &common.topic,
        common.partitions,
        i16::try_from(common.replication_factor)?,
    );
    let created = admin.create_topic(topic, CREATE_TOPIC_TIMEOUT).await;
    admin.close();
    match created {
        Ok(_) => Ok(()),
        Err(AdminError::Topic { code, .. }) if code == ErrorCode::TOPIC_ALREADY_EXISTS => Ok(()),
        Err(error) => bail!("cannot create topic {}: {error}", common.topic),
    }
}

/// Shared state of the running producers: what they recorded, and the clock.
struct Run {
    stats: Mutex<Stats>,
    started: Instant,
    limit: Limit,
}

fn spawn_progress(name: &'static str, run: Arc<Run>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let progress = Progress::default();
        let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
        tick.tick().await;
        let mut last_messages = 0u64;
        let mut last_bytes = 0u64;
        loop {
            tick.tick().await;
            let stats = run.stats.lock().expect("stats lock");
            let rate = (stats.messages - last_messages) as f64 / PROGRESS_INTERVAL.as_secs_f64();
            let mb = (stats.bytes - last_bytes) as f64 / 1e6 / PROGRESS_INTERVAL.as_secs_f64();
            last_messages = stats.messages;
            last_bytes = stats.bytes;
            let second = run.started.elapsed().as_secs() as usize;
            let p99 = stats
                .timeline
                .get(second.saturating_sub(1))
                .and_then(|b| Percentiles::of(&b.latency))
                .map(|p| p.p99);
            let elapsed = run.started.elapsed();
            progress.update(
                name,
                elapsed,
                rate,
                mb,
                p99,
                run.limit.remaining(elapsed, stats.messages, rate),
            );
        }
    })
}

/// Records one delivery report: its latency from the scheduled send time.
fn record_delivery(run: &Run, scheduled: Instant, bytes: u64, delivered: bool) {
    let now = Instant::now();
    let mut stats = run.stats.lock().expect("stats lock");
    if delivered {
        stats.record(now, bytes, Some(now - scheduled));
    } else {
        stats.errors += 1;
    }
}

/// What librdkafka hands back with each delivery report.
struct RdkafkaDelivery {
    scheduled: Instant,
    bytes: u64,
    run: Arc<Run>,
}

/// Takes librdkafka's delivery reports (its `dr_msg_cb`) on the producer's
/// polling thread, as `rdkafka_performance` does: no future per message.
struct RdkafkaReports;

impl rdkafka::ClientContext for RdkafkaReports {}

impl rdkafka::producer::ProducerContext for RdkafkaReports {
    type DeliveryOpaque = Box<RdkafkaDelivery>;

    fn delivery(
        &self,
        result: &rdkafka::message::DeliveryResult<'_>,
        delivery: Self::DeliveryOpaque,
    ) {
        record_delivery(
            &delivery.run,
            delivery.scheduled,
            delivery.bytes,
            result.is_ok(),
        );
    }
}

enum AnyProducer {
    Ours(client::Producer),
    Rdkafka(rdkafka::producer::ThreadedProducer<RdkafkaReports>),
}

async fn make_producer(common: &Common, p: &ProducerArgs) -> anyhow::Result<AnyProducer> {
    Ok(match common.client {
        ClientKind::Ours => {
            let mut config = client::ProducerConfig::new(&common.brokers);
            config.acks = match p.acks {
                AcksArg::None => client::Acks::None,
                AcksArg::Leader => client::Acks::Leader,
                AcksArg::All => client::Acks::All,
            };
            config.enable_idempotence = p.idempotence;
            config.compression = match p.compression {
                CompressionArg::None => client::Compression::None,
                CompressionArg::Lz4 => client::Compression::Lz4,
                CompressionArg::Zstd => client::Compression::Zstd,
            };
            config.linger = Duration::from_millis(p.linger_ms);
            config.batch_size = p.batch_size;
            config.buffer_memory = buffer_bytes(p);
            if let Some(n) = p.max_in_flight {
                config.max_in_flight_requests_per_connection = n;
            }
            let producer = client::Producer::connect(config)
                .await
                .context("connecting our producer")?;
            // Metadata before the clock starts, as librdkafka's below.
            producer
                .partitions_for(&common.topic)
                .await
                .context("fetching the topic's metadata")?;
            AnyProducer::Ours(producer)
        }
        ClientKind::Rdkafka => {
            let topic = common.topic.clone();
            let mut config = rdkafka::ClientConfig::new();
            if let Some(n) = p.max_in_flight {
                config.set("max.in.flight", n.to_string());
            }
            let producer: rdkafka::producer::ThreadedProducer<RdkafkaReports> = config
                .set("bootstrap.servers", &common.brokers)
                .set(
                    "acks",
                    match p.acks {
                        AcksArg::None => "0",
                        AcksArg::Leader => "1",
                        AcksArg::All => "all",
                    },
                )
                .set("enable.idempotence", p.idempotence.to_string())
                .set(
                    "compression.type",
                    format!("{:?}", p.compression).to_lowercase(),
                )
                .set("linger.ms", p.linger_ms.to_string())
                .set("batch.size", p.batch_size.to_string())
                // The same buffer as our client's, so closed-loop latencies compare.
                .set("queue.buffering.max.messages", "1000000")
                .set(
                    "queue.buffering.max.kbytes",
                    (buffer_bytes(p) / 1024).to_string(),
                )
                .create_with_context(RdkafkaReports)?;
            // Metadata before the clock starts, so the first sends do not wait for it.
            let producer = tokio::task::spawn_blocking(move || {
                use rdkafka::producer::Producer as _;
                let topic = topic;
                producer
                    .client()
                    .fetch_metadata(Some(&topic), Duration::from_secs(30))
                    .map(|_| producer)
            })
            .await?
            .context("fetching the topic's metadata")?;
            AnyProducer::Rdkafka(producer)
        }
    })
}

/// Bytes a producer may buffer: 32 MiB (our client's default), or 64
/// batches if that is more. Both clients get the same.
fn buffer_bytes(p: &ProducerArgs) -> usize {
    (32 << 20).max(p.batch_size * 64)
}

/// One producer's loop: sends until the limit, scheduling sends at the target
/// rate if any. Delivery reports go to callbacks that record their latency.
async fn producer_loop(
    producer: AnyProducer,
    common: Common,
    rate_per_producer: Option<f64>,
    quota: Option<u64>,
    run: Arc<Run>,
) -> anyhow::Result<()> {
    let mut payloads = Payloads::new(common.message_size);
    let interval = rate_per_producer.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut sent = 0u64;
    // The wall clock at the start, so each send time is read off one clock.
    let started_nanos = now_nanos().saturating_sub(run.started.elapsed().as_nanos() as u64);
    loop {
        if quota.is_some_and(|q| sent >= q) {
            break;
        }
        let scheduled = match interval {
            Some(interval) => run.started + interval.mul_f64(sent as f64),
            None => Instant::now(),
        };
        let since_start = scheduled - run.started;
        if run.limit.duration.is_some_and(|d| since_start >= d) {
            break;
        }
        if interval.is_some() {
            // A blocking sleep: this loop runs on a thread of its own.
            let ahead = scheduled.saturating_duration_since(Instant::now());
            if !ahead.is_zero() {
                std::thread::sleep(ahead);
            }
        }
        let value = payloads.next(started_nanos + since_start.as_nanos() as u64);
        let bytes = value.len() as u64;
        match &producer {
            AnyProducer::Ours(p) => {
                let record = client::ProducerRecord::new(common.topic.as_str()).with_value(value);
                let reports = run.clone();
                let report = move |result: Result<_, _>| {
                    record_delivery(&reports, scheduled, bytes, result.is_ok())
                };
                if let Err(e) = p.send_with_callback(record, report).await {
                    eprintln!("send failed: {e}");
                    run.stats.lock().expect("stats lock").errors += 1;
                }
            }
            AnyProducer::Rdkafka(p) => {
                let mut delivery = Box::new(RdkafkaDelivery {
                    scheduled,
                    bytes,
                    run: run.clone(),
                });
                loop {
                    let record = rdkafka::producer::BaseRecord::<(), [u8], _>::with_opaque_to(
                        &common.topic,
                        delivery,
                    )
                    .payload(&value);
                    match p.send(record) {
                        Ok(()) => break,
                        Err((
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull,
                            ),
                            record,
                        )) => {
                            delivery = record.delivery_opaque;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err((e, _)) => bail!("rdkafka send failed: {e}"),
                    }
                }
            }
        }
        sent += 1;
    }
    match producer {
        AnyProducer::Ours(p) => p.flush().await,
        AnyProducer::Rdkafka(p) => {
            use rdkafka::producer::Producer as _;
            tokio::task::spawn_blocking(move || p.flush(Duration::from_secs(60))).await??;
        }
    }
    Ok(())
}

/// Runs the producers to the limit; returns their stats and elapsed time.
async fn run_producers(
    common: &Common,
    p: &ProducerArgs,
    name: &'static str,
) -> anyhow::Result<(Stats, Duration)> {
    let limit = Limit::of(common);
    let mut producers = Vec::new();
    for _ in 0..p.producers.max(1) {
        producers.push(make_producer(common, p).await?);
    }
    let started = Instant::now();
    let run = Arc::new(Run {
        stats: Mutex::new(Stats::new(started)),
        started,
        limit,
    });
    let progress = spawn_progress(name, run.clone());
    let n = producers.len() as u64;
    let mut tasks = Vec::new();
    for (i, producer) in producers.into_iter().enumerate() {
        let quota = limit.count.map(|c| c / n + u64::from((i as u64) < c % n));
        let rate = p.rate.map(|r| r / n as f64);
        // Each producer loop has a thread of its own, so pacing can sleep
        // with the OS's precision (tens of microseconds) instead of the
        // runtime timer's millisecond, which would release messages in
        // bursts and add up to a millisecond to their measured latency.
        let handle = tokio::runtime::Handle::current();
        let loop_ = producer_loop(producer, common.clone(), rate, quota, run.clone());
        let (done, finished) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("producer-{i}"))
            .spawn(move || {
                let _ = done.send(handle.block_on(loop_));
            })?;
        tasks.push(finished);
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    progress.abort();
    Progress::default().finish();
    let stats = std::mem::replace(
        &mut *run.stats.lock().expect("stats lock"),
        Stats::new(started),
    );
    Ok((stats, elapsed))
}

async fn produce_command(args: ProduceArgs) -> anyhow::Result<()> {
    check_message_size(&args.common)?;
    ensure_topic(&args.common).await?;
    let (stats, elapsed) = run_producers(&args.common, &args.producer, "produce").await?;
    let summary = Summary::of("produce", &stats, elapsed);
    summary.print();
    let mut settings = settings(&args.common, &producer_settings(&args.producer));
    settings.push(("mode", "produce".into()));
    finish(&args.common, &settings, &[summary], &[("produce", &stats)])
}

fn check_message_size(common: &Common) -> anyhow::Result<()> {
    if common.message_size < 8 {
        bail!("--message-size must be at least 8 (the send time takes 8 bytes)");
    }
    Ok(())
}

fn finish(
    common: &Common,
    settings: &[(&str, String)],
    summaries: &[Summary],
    series: &[(&str, &Stats)],
) -> anyhow::Result<()> {
    if let Some(path) = &common.json {
        write_json(path, settings, summaries)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &common.plot {
        let title = settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        write_plot(path, &title, series).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Where consumers start: the beginning of the log, or given offsets per partition.
#[derive(Clone)]
enum Start {
    Beginning,
    At(Arc<std::collections::HashMap<i32, i64>>),
}

impl Start {
    fn is_beginning(&self) -> bool {
        matches!(self, Start::Beginning)
    }
}

/// The log end offset of every partition of the topic, asked of the broker
/// before producing so that consumers start exactly there.
fn end_offsets(common: &Common) -> anyhow::Result<std::collections::HashMap<i32, i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &common.brokers)
        .create()?;
    (0..common.partitions)
        .map(|p| {
            let (_, high) = consumer.fetch_watermarks(&common.topic, p, Duration::from_secs(30))?;
            Ok((p, high))
        })
        .collect()
}

/// What one consumer thread reads: from `start`,
/// until the limit, recording end-to-end latency when `latency` is set.
///
/// Messages are taken a batch at a time ([`RDKAFKA_BATCH_MESSAGES_MAX`]) from
/// the consumer queue with librdkafka's batch call, and librdkafka is asked to
/// keep a deep local queue, as `rdkafka_performance` does: per-message
/// `BaseConsumer::poll` measured rust-rdkafka, not the broker.
fn rdkafka_consume(
    common: &Common,
    fetch: FetchArgs,
    partitions: Vec<i32>,
    start: Start,
    latency: bool,
    run: Arc<Run>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Stats> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", &common.brokers)
        .set("group.id", "loadgen")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        // Keep fetching until this many messages (or the bytes below) wait
        // in the local queue, so that the application never waits on a
        // fetch round trip.
        .set("queued.min.messages", "1000000")
        .set("queued.max.messages.kbytes", "262144");
    if let Some(bytes) = fetch.fetch_max_bytes {
        config.set("fetch.max.bytes", bytes.to_string());
        // librdkafka refuses a response bound below the per-partition bound
        // or below `message.max.bytes` (1,000,000 by default).
        if bytes < RDKAFKA_PARTITION_FETCH_BYTES_DEFAULT {
            config.set("max.partition.fetch.bytes", bytes.to_string());
            config.set("message.max.bytes", bytes.to_string());
        }
    }
    let consumer: BaseConsumer = config.create()?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in partitions {
        let offset = match &start {
            Start::Beginning => rdkafka::Offset::Beginning,
            Start::At(offsets) => rdkafka::Offset::Offset(offsets.get(&p).copied().unwrap_or(0)),
        };
        assignment.add_partition_offset(&common.topic, p, offset)?;
    }
    consumer.assign(&assignment)?;
    let mut queue = benches::rdkafka_batch::BatchQueue::new(&consumer, RDKAFKA_BATCH_MESSAGES_MAX)
        .context("the rdkafka consumer has no consumer queue")?;
    let mut stats = Stats::new(run.started);
    let mut last_seen = Instant::now();
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        if start.is_beginning() && last_seen.elapsed() > CONSUME_IDLE_TIMEOUT {
            break;
        }
        // One clock reading per batch: a batch is what arrived since the last.
        let mut now = None;
        let mut wall = 0;
        let (mut messages, mut bytes) = (0u64, 0u64);
        queue.consume(Duration::from_millis(100), |message| match message {
            Ok(value) => {
                let now = *now.get_or_insert_with(|| {
                    wall = if latency { now_nanos() } else { 0 };
                    Instant::now()
                });
                if latency {
                    stats.record(now, value.len() as u64, since_stamp(value, wall));
                }
                messages += 1;
                bytes += value.len() as u64;
            }
            Err(code) => {
                stats.errors += 1;
                eprintln!("consume error: {code}");
            }
        });
        let Some(now) = now else { continue };
        last_seen = now;
        publish_batch(&mut stats, &run, now, messages, bytes, latency);
    }
    Ok(stats)
}

/// Counts one batch of consumed messages: in the consumer's own stats (when
/// latencies were not recorded per message) and, once per batch to keep the
/// lock off the per-message path, in the shared ones.
fn publish_batch(
    stats: &mut Stats,
    run: &Run,
    now: Instant,
    messages: u64,
    bytes: u64,
    latency: bool,
) {
    if !latency {
        stats.record_many(now, messages, bytes);
    }
    run.stats
        .lock()
        .expect("stats lock")
        .record_many(now, messages, bytes);
}

/// Messages one rdkafka batch call hands out at most.
const RDKAFKA_BATCH_MESSAGES_MAX: usize = 10_000;
/// librdkafka's default `max.partition.fetch.bytes`.
const RDKAFKA_PARTITION_FETCH_BYTES_DEFAULT: i32 = 1024 * 1024;

/// Our consumer on its own runtime thread: the same contract as [`rdkafka_consume`].
fn ours_consume(
    common: &Common,
    fetch: FetchArgs,
    partitions: Vec<i32>,
    start: Start,
    latency: bool,
    run: Arc<Run>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Stats> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut config = client::ConsumerConfig::new(&common.brokers);
        config.enable_auto_commit = false;
        if let Some(bytes) = fetch.fetch_max_bytes {
            config.fetch_max_bytes = bytes;
        }
        let consumer = client::Consumer::connect(config).await?;
        let assignment: Vec<client::TopicPartition> = partitions
            .iter()
            .map(|p| client::TopicPartition::new(common.topic.clone(), *p))
            .collect();
        consumer.assign(&assignment).await?;
        match &start {
            Start::Beginning => consumer.seek_to_beginning(&assignment)?,
            Start::At(offsets) => {
                for tp in &assignment {
                    consumer.seek(tp, offsets.get(&tp.partition).copied().unwrap_or(0))?;
                }
            }
        }
        let mut stats = Stats::new(run.started);
        let mut last_seen = Instant::now();
        loop {
            if stop.load(std::sync::atomic::Ordering::Relaxed)
                || (start.is_beginning() && last_seen.elapsed() > CONSUME_IDLE_TIMEOUT)
            {
                break;
            }
            let records = match consumer.poll(Duration::from_millis(100)).await {
                Ok(records) => records,
                Err(e) => {
                    stats.errors += 1;
                    eprintln!("consume error: {e}");
                    continue;
                }
            };
            if records.is_empty() {
                continue;
            }
            let now = Instant::now();
            last_seen = now;
            let wall = if latency { now_nanos() } else { 0 };
            let mut bytes = 0u64;
            for record in &records {
                let value = record.value.as_deref().unwrap_or_default();
                bytes += value.len() as u64;
                if latency {
                    stats.record(now, value.len() as u64, since_stamp(value, wall));
                }
            }
            publish_batch(&mut stats, &run, now, records.len() as u64, bytes, latency);
        }
        let _ = consumer.close().await;
        Ok(stats)
    })
}

fn split_partitions(partitions: i32, consumers: usize) -> Vec<Vec<i32>> {
    let n = consumers.clamp(1, partitions.max(1) as usize);
    let mut out = vec![Vec::new(); n];
    for p in 0..partitions {
        out[p as usize % n].push(p);
    }
    out
}

/// Running consumer threads: the flag that stops them, their handles, and the shared progress.
struct Consumers {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handles: Vec<tokio::task::JoinHandle<anyhow::Result<Stats>>>,
    run: Arc<Run>,
}

fn start_consumers(
    common: &Common,
    consumers: usize,
    fetch: FetchArgs,
    start: Start,
    latency: bool,
) -> anyhow::Result<Consumers> {
    let started = Instant::now();
    let run = Arc::new(Run {
        stats: Mutex::new(Stats::new(started)),
        started,
        limit: Limit::of(common),
    });
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut handles = Vec::new();
    for partitions in split_partitions(common.partitions, consumers) {
        let common = common.clone();
        let run = run.clone();
        let stop = stop.clone();
        let start = start.clone();
        handles.push(tokio::task::spawn_blocking(move || match common.client {
            ClientKind::Ours => ours_consume(&common, fetch, partitions, start, latency, run, stop),
            ClientKind::Rdkafka => {
                rdkafka_consume(&common, fetch, partitions, start, latency, run, stop)
            }
        }));
    }
    Ok(Consumers { stop, handles, run })
}

async fn consume_command(args: ConsumeArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let Consumers { stop, handles, run } =
        start_consumers(common, args.consumers, args.fetch, Start::Beginning, false)?;
    let progress = spawn_progress("consume", run.clone());
    // Stop at the count or the duration; an idle consumer stops by itself.
    let limit = Limit::of(common);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let messages = run.stats.lock().expect("stats lock").messages;
        let done = limit.count.is_some_and(|c| messages >= c)
            || (limit.count.is_none()
                && limit.duration.is_some_and(|d| run.started.elapsed() >= d))
            || handles.iter().all(|h| h.is_finished());
        if done {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = Stats::new(run.started);
    for handle in handles {
        total.merge(&handle.await??);
    }
    progress.abort();
    Progress::default().finish();
    // Count time up to the last consumed record, not the idle wait after it.
    let elapsed = total
        .last
        .map_or_else(|| run.started.elapsed(), |last| last - run.started);
    let summary = Summary::of("consume", &total, elapsed);
    summary.print();
    let mut settings = settings(common, &[("consumers", args.consumers.to_string())]);
    settings.push(("fetch_max_bytes", args.fetch.setting()));
    settings.push(("mode", "consume".into()));
    finish(common, &settings, &[summary], &[("consume", &total)])
}

async fn end_to_end_command(args: EndToEndArgs) -> anyhow::Result<()> {
    check_message_size(&args.common)?;
    ensure_topic(&args.common).await?;
    // Consumers start at today's log end, so every record produced next is theirs.
    let common = args.common.clone();
    let ends = tokio::task::spawn_blocking(move || end_offsets(&common)).await??;
    let Consumers { stop, handles, run } = start_consumers(
        &args.common,
        args.consumers,
        args.fetch,
        Start::At(Arc::new(ends)),
        true,
    )?;
    let (produced, produce_elapsed) =
        run_producers(&args.common, &args.producer, "end-to-end").await?;
    // Wait until every produced message was consumed, or a bound passes.
    let deadline = Instant::now() + CONSUME_IDLE_TIMEOUT;
    while run.stats.lock().expect("stats lock").messages < produced.messages
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut consumed = Stats::new(run.started);
    for handle in handles {
        consumed.merge(&handle.await??);
    }
    let produce_summary = Summary::of("produce", &produced, produce_elapsed);
    let e2e_summary = Summary::of("end-to-end", &consumed, produce_elapsed);
    produce_summary.print();
    e2e_summary.print();
    if consumed.messages < produced.messages {
        eprintln!(
            "warning: consumed {} of {} produced messages",
            consumed.messages, produced.messages
        );
    }
    let mut settings = settings(&args.common, &producer_settings(&args.producer));
    settings.push(("consumers", args.consumers.to_string()));
    settings.push(("fetch_max_bytes", args.fetch.setting()));
    settings.push(("mode", "end-to-end".into()));
    finish(
        &args.common,
        &settings,
        &[produce_summary, e2e_summary],
        &[("produce", &produced), ("end-to-end", &consumed)],
    )
}

fn baseline_command(args: BaselineArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    // Each baseline deletes its file when done (see benches::baseline).
    let dir = tempfile::tempdir_in(&args.dir)?;
    let total = args.megabytes << 20;
    println!(
        "baseline: {} MiB each in {}, fsync every {:?} and at the end",
        args.megabytes,
        args.dir.display(),
        baseline::FLUSH_INTERVAL
    );
    // First, while nothing this command wrote is being written back: the
    // writeback threads would take the cores from the probe.
    let probe = Duration::try_from_secs_f64(args.stall_seconds)
        .map_err(|e| anyhow::anyhow!("--stall-seconds {}: {e}", args.stall_seconds))?;
    let cores = baseline::core_stalls(probe)?;
    for core in &cores {
        let seconds = core.elapsed.as_secs_f64();
        println!(
            "core {} stalls: {:.1}/s over {} us, {:.1}/s over 1 ms, longest {:.2} ms, {:.2}% of the time lost",
            core.cpu,
            core.stalls as f64 / seconds,
            baseline::STALL_MIN.as_micros(),
            core.stalls_over_1ms as f64 / seconds,
            core.longest.as_secs_f64() * 1e3,
            core.lost_share() * 100.0
        );
    }
    let disk = baseline::raw_sequential_write(dir.path(), total)?;
    println!(
        "raw sequential write (1 MiB writes):          {:>8.1} MB/s",
        disk.mb_per_s()
    );
    let to_file = baseline::loopback_to_file(dir.path(), args.chunk_bytes, total)?;
    println!(
        "loopback TCP into a file ({} B writes): {:>8.1} MB/s",
        args.chunk_bytes,
        to_file.mb_per_s()
    );
    let from_file = baseline::file_to_loopback(dir.path(), total)?;
    println!(
        "file over loopback TCP:                       {:>8.1} MB/s",
        from_file.mb_per_s()
    );
    let new_memory = baseline::new_memory_first_write(total);
    println!(
        "first write of new memory (per 4 KiB page):   {:>8.1} MB/s",
        new_memory.mb_per_s()
    );
    if let Some(path) = &args.json {
        let row = |name: &str, rate: baseline::Rate| {
            format!(
                "{{\"name\":\"{name}\",\"bytes\":{},\"seconds\":{:.6},\"mb_per_s\":{:.3}}}",
                rate.bytes,
                rate.elapsed.as_secs_f64(),
                rate.mb_per_s()
            )
        };
        let core_rows: Vec<String> = cores
            .iter()
            .map(|core| {
                format!(
                    "{{\"cpu\":{},\"seconds\":{:.6},\"stalls\":{},\"stalled_seconds\":{:.6},\"stalls_over_1ms\":{},\"longest_ms\":{:.3}}}",
                    core.cpu,
                    core.elapsed.as_secs_f64(),
                    core.stalls,
                    core.stalled.as_secs_f64(),
                    core.stalls_over_1ms,
                    core.longest.as_secs_f64() * 1e3
                )
            })
            .collect();
        let json = format!(
            "{{\"baseline\":[{},{},{},{}],\"core_stalls\":[{}]}}\n",
            row("raw_sequential_write", disk),
            row("loopback_to_file", to_file),
            row("file_to_loopback", from_file),
            row("new_memory_first_write", new_memory),
            core_rows.join(",")
        );
        std::fs::write(path, json)?;
    }
    Ok(())
}
