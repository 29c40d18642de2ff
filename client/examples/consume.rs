//! Consumes a topic in a group, prints every record, and commits after each
//! batch it printed (at-least-once: a crash before the commit means the
//! batch is printed again by whoever gets the partition next).
//!
//! ```text
//! cargo run -p client --example consume -- --bootstrap 127.0.0.1:9092 --topic demo --group demo-readers
//! ```

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use client::{AutoOffsetReset, Consumer, ConsumerConfig};

/// How often a `--quiet` run commits.
const QUIET_COMMIT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Parser, Debug)]
#[command(about = "Consume records with the Rust client, print them, commit them")]
struct Cli {
    /// Comma-separated `host:port` list of brokers.
    #[arg(long, env = "BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic to read.
    #[arg(long)]
    topic: String,
    /// Consumer group; committed offsets are stored under it.
    #[arg(long)]
    group: String,
    /// Where to start without a committed offset: earliest, latest or none.
    #[arg(long, default_value = "earliest")]
    auto_offset_reset: String,
    /// Stop after this many records (default: run until interrupted).
    #[arg(long)]
    max_records: Option<u64>,
    /// Print a summary (records, bytes, rate) at the end instead of every record.
    #[arg(long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let mut config = ConsumerConfig::new(&cli.bootstrap).with_group(&cli.group);
    config.enable_auto_commit = false;
    config.auto_offset_reset = cli.auto_offset_reset.parse::<AutoOffsetReset>()?;
    let consumer = Consumer::connect(config).await.context("cannot connect")?;
    consumer.subscribe(&[&cli.topic])?;
    let mut seen = 0u64;
    let mut bytes = 0u64;
    let mut started: Option<std::time::Instant> = None;
    let mut last_commit = std::time::Instant::now();
    loop {
        // `poll` is cancel-safe: losing this race to Ctrl-C loses no record
        // (what it had collected stays in the consumer, uncommitted).
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            polled = consumer.poll(Duration::from_millis(500)) => {
                let records = polled?;
                if !records.is_empty() && started.is_none() {
                    started = Some(std::time::Instant::now());
                }
                for record in records.iter().filter(|_| cli.quiet) {
                    bytes += record.value.as_ref().map_or(0, |v| v.len() as u64);
                }
                for record in records.iter().filter(|_| !cli.quiet) {
                    let show = |bytes: &Option<bytes::Bytes>| {
                        bytes.as_ref().map_or("null".to_string(), |b| String::from_utf8_lossy(b).into_owned())
                    };
                    println!(
                        "{}-{} offset {} key {} value {}",
                        record.topic,
                        record.partition,
                        record.offset,
                        show(&record.key),
                        show(&record.value)
                    );
                }
                if !records.is_empty() {
                    seen += records.len() as u64;
                    if !cli.quiet {
                        consumer.commit_sync().await.context("commit failed")?;
                    } else if last_commit.elapsed() >= QUIET_COMMIT_INTERVAL {
                        // Quiet runs measure throughput: commit once a second.
                        // Not awaited: the commit completes on its own.
                        drop(consumer.commit_async());
                        last_commit = std::time::Instant::now();
                    }
                }
                if cli.max_records.is_some_and(|max| seen >= max) {
                    break;
                }
            }
        }
    }
    if cli.quiet {
        consumer.commit_sync().await.context("commit failed")?;
        let elapsed = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        println!(
            "{seen} records, {bytes} value bytes in {elapsed:.2} s ({:.0} records/s)",
            seen as f64 / elapsed.max(f64::EPSILON)
        );
    }
    consumer.close().await?;
    Ok(())
}
