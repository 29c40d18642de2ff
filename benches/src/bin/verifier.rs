//! `verifier`: produces with acks=all while recording every acknowledgement,
//! reads every partition back, and reports lost, wrong-offset, duplicated,
//! reordered and phantom records. Works against any Kafka-compatible
//! cluster. See `docs/verifier.md`.
//!
//! Exit status: 0 clean, 1 anomalies, 2 incomplete read (nothing wrong in
//! what was read, but not everything was read), 3 the verifier itself
//! failed (bad flags, cluster unreachable, unreadable history).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use benches::verify::produce::{produce, ProduceSettings, IN_FLIGHT_RECORDS_DEFAULT};
use benches::verify::read::{read_log, ReadSettings, HIGH_WATERMARK_SETTLE_TIMEOUT_DEFAULT};
use benches::verify::{check, topic, History, Report, RunId, Verdict};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "verifier",
    about = "Checks a Kafka-compatible cluster for lost, duplicated, reordered and phantom records"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce, then read every partition back and check (the usual mode).
    Run(RunArgs),
    /// Produce only, and write the history for a later `check`.
    Produce(ProduceArgs),
    /// Read every partition back and check it against a history file.
    Check(CheckArgs),
}

#[derive(Args, Clone)]
struct ClusterArgs {
    /// Bootstrap brokers, comma-separated.
    #[arg(long, env = "VERIFIER_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Bound on waiting for one response, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    request_timeout_ms: u64,
}

#[derive(Args, Clone)]
struct ProduceFlags {
    #[arg(long, env = "VERIFIER_TOPIC", default_value = "verifier")]
    topic: String,
    /// Partitions of the topic when it has to be created (an existing
    /// topic keeps its own count).
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Replication factor of the topic when it has to be created.
    #[arg(long, default_value_t = 1)]
    replication_factor: i16,
    /// Stop after this many sends...
    #[arg(long)]
    count: Option<u64>,
    /// ...or after this many seconds (default 10 when --count is not given).
    #[arg(long)]
    duration: Option<f64>,
    /// Sends per second; as fast as --in-flight allows when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Bound on records sent and not yet acknowledged or failed.
    #[arg(long, default_value_t = IN_FLIGHT_RECORDS_DEFAULT)]
    in_flight: usize,
    /// Size of each record's value in bytes (at least its ~40-byte
    /// self-description).
    #[arg(long, default_value_t = 100)]
    message_size: usize,
    /// The producer's delivery timeout: a send not acknowledged by then is
    /// recorded as unknown.
    #[arg(long, default_value_t = 30_000)]
    delivery_timeout_ms: u64,
    /// Bound on creating the topic and waiting for its partitions' leaders, in seconds.
    #[arg(long, default_value_t = 30.0)]
    topic_timeout: f64,
}

#[derive(Args, Clone)]
struct ReadFlags {
    /// Bound on reading every partition back, in seconds; partitions not
    /// read to their end by then make the result incomplete (exit 2).
    #[arg(long, default_value_t = 60.0)]
    read_timeout: f64,
    /// Bound on waiting, before reading, for each partition's high
    /// watermark to reach its highest acknowledged offset (a new leader's
    /// can lag briefly), in seconds; part of --read-timeout.
    #[arg(long, default_value_t = HIGH_WATERMARK_SETTLE_TIMEOUT_DEFAULT.as_secs_f64())]
    settle_timeout: f64,
    /// Also write the report as JSON to this file (`-` for stdout, which
    /// moves the human summary to stderr).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    produce: ProduceFlags,
    #[command(flatten)]
    read: ReadFlags,
    /// Also write the history (JSON lines) to this file.
    #[arg(long)]
    history: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ProduceArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    produce: ProduceFlags,
    /// Where to write the history (JSON lines).
    #[arg(long)]
    history: PathBuf,
}

#[derive(Args, Clone)]
struct CheckArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    read: ReadFlags,
    /// The history a `produce` or `run --history` wrote.
    #[arg(long)]
    history: PathBuf,
}

/// Logging without `RUST_LOG`: the verifier's own warnings (an incomplete
/// read, reports that never came), not the client's per-batch ones.
const DEFAULT_LOG_FILTER: &str = "warn,client=error";

/// Exit status when the verifier itself failed.
const EXIT_FAILED: u8 = 3;

fn main() -> ExitCode {
    // The client warns about every batch that fails while brokers are down,
    // which is the point of a fault test and already in the history; so its
    // warnings are off unless RUST_LOG asks for them.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|runtime| runtime.block_on(run_command(cli.command)));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("verifier: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

async fn run_command(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => {
            let history = produce_phase(&args.cluster, &args.produce).await?;
            if let Some(path) = &args.history {
                write_history(&history, path)?;
            }
            check_phase(&args.cluster, &args.read, &history).await
        }
        Command::Produce(args) => {
            let history = produce_phase(&args.cluster, &args.produce).await?;
            write_history(&history, &args.history)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => {
            let file = File::open(&args.history)
                .with_context(|| format!("opening {}", args.history.display()))?;
            let history = History::read_from(BufReader::new(file))
                .with_context(|| format!("reading {}", args.history.display()))?;
            check_phase(&args.cluster, &args.read, &history).await
        }
    }
}

async fn produce_phase(cluster: &ClusterArgs, flags: &ProduceFlags) -> anyhow::Result<History> {
    let request_timeout = Duration::from_millis(cluster.request_timeout_ms);
    let topic_timeout = seconds(flags.topic_timeout, "--topic-timeout")?;
    let admin = topic::connect(&cluster.brokers, request_timeout, topic_timeout).await?;
    let partition_count = topic::ensure_topic(
        &admin,
        &flags.topic,
        flags.partitions,
        flags.replication_factor,
        topic_timeout,
    )
    .await?;
    admin.close();
    if partition_count != flags.partitions {
        eprintln!(
            "verifier: topic {} exists with {partition_count} partitions; producing to all of them",
            flags.topic
        );
    }
    let duration = match (flags.count, flags.duration) {
        (None, None) => Some(Duration::from_secs(10)),
        (_, duration) => duration.map(|d| seconds(d, "--duration")).transpose()?,
    };
    let settings = ProduceSettings {
        bootstrap_servers: cluster.brokers.clone(),
        topic: flags.topic.clone(),
        partition_count,
        count: flags.count,
        duration,
        rate: flags.rate,
        in_flight_max: flags.in_flight,
        message_bytes: flags.message_size,
        delivery_timeout: Duration::from_millis(flags.delivery_timeout_ms),
        request_timeout,
    };
    let run_id = RunId::generate();
    eprintln!(
        "verifier: run {run_id} producing to {} ({partition_count} partitions); SIGINT or SIGTERM stops producing and goes on to the check",
        flags.topic
    );
    let started = std::time::Instant::now();
    let history = produce(&settings, run_id, stop_signal()).await?;
    eprintln!(
        "verifier: sent {} records in {:.1} s",
        history.sends.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(history)
}

async fn check_phase(
    cluster: &ClusterArgs,
    flags: &ReadFlags,
    history: &History,
) -> anyhow::Result<ExitCode> {
    let settings = ReadSettings {
        bootstrap_servers: cluster.brokers.clone(),
        topic: history.topic.clone(),
        partition_count: history.partition_count,
        timeout: seconds(flags.read_timeout, "--read-timeout")?,
        request_timeout: Duration::from_millis(cluster.request_timeout_ms),
        expected_end_offsets: history.acknowledged_end_offsets(),
        settle_timeout: seconds(flags.settle_timeout, "--settle-timeout")?,
    };
    let log = read_log(&settings).await?;
    let report = check(history, &log);
    write_report(&report, flags.json.as_deref())?;
    Ok(ExitCode::from(match report.verdict {
        Verdict::Clean => 0,
        Verdict::Anomalies => 1,
        Verdict::Incomplete => 2,
    }))
}

fn write_history(history: &History, path: &Path) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    history
        .write_to(file)
        .with_context(|| format!("writing {}", path.display()))
}

/// The human summary on stdout, and the JSON where `--json` says; JSON on
/// stdout moves the summary to stderr so that stdout stays parseable.
fn write_report(report: &Report, json: Option<&Path>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    match json {
        Some(path) if path == Path::new("-") => {
            eprint!("{report}");
            println!("{text}");
        }
        Some(path) => {
            print!("{report}");
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => print!("{report}"),
    }
    Ok(())
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{flag} {value}"))
}

/// Resolves on SIGINT or SIGTERM, so that a fault test (or a person) can end
/// producing and still get the check.
async fn stop_signal() {
    let mut terminate = match tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::terminate(),
    ) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops producing");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
