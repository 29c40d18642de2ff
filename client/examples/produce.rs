//! Produces N records to a topic and prints where each landed.
//!
//! ```text
//! cargo run -p client --example produce -- --bootstrap 127.0.0.1:9092 --topic demo --count 10
//! ```

use anyhow::Context;
use clap::Parser;
use client::{Acks, Compression, Producer, ProducerConfig, ProducerRecord};

#[derive(Parser, Debug)]
#[command(about = "Produce records with the Rust client and print partitions and offsets")]
struct Cli {
    /// Comma-separated `host:port` list of brokers.
    #[arg(long, env = "BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic to write to (auto-created where the broker allows it).
    #[arg(long)]
    topic: String,
    /// How many records to produce.
    #[arg(long, default_value_t = 10)]
    count: u64,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Records without keys (sticky partitioning) instead of keys `key-<i>`.
    #[arg(long)]
    no_keys: bool,
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
    let mut config = ProducerConfig::new(&cli.bootstrap);
    config.acks = cli.acks.parse::<Acks>()?;
    config.enable_idempotence = config.acks == Acks::All;
    config.compression = cli.compression.parse::<Compression>()?;
    let producer = Producer::connect(config).await.context("cannot connect")?;
    let mut deliveries = Vec::with_capacity(cli.count as usize);
    for i in 0..cli.count {
        let mut record = ProducerRecord::new(&cli.topic).with_value(format!("record {i}"));
        if !cli.no_keys {
            record = record.with_key(format!("key-{i}"));
        }
        deliveries.push(producer.send(record).await?);
    }
    producer.flush().await;
    let mut failed = 0;
    for (i, delivery) in deliveries.into_iter().enumerate() {
        match delivery.await {
            Ok(metadata) => println!(
                "record {i}: partition {} offset {}",
                metadata.partition,
                metadata
                    .offset
                    .map_or("unknown".to_string(), |o| o.to_string())
            ),
            Err(error) => {
                failed += 1;
                println!("record {i}: failed (retried: {}): {error}", error.retried());
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} of {} records failed", cli.count);
    Ok(())
}
