//! A group member in its own process, for tests that kill consumers with
//! SIGKILL: it subscribes, prints every record it processed, commits after
//! each batch, and reports its assignment. SIGTERM closes it cleanly.
//!
//! ```text
//! group_consumer --bootstrap ADDR --topic T --group G [--session-timeout-ms N]
//!                [--instance-id ID] [--max-poll-records N] [--strategy NAME]
//!                [--processing-ms N]
//! ```
//!
//! `--processing-ms` is the time each batch takes to "process" (the
//! application's work between two polls), so that a test can kill the
//! process while it is still working through a topic.
//!
//! Output, one line per event (each line one `write`, so a kill never
//! leaves half a line that parses):
//!
//! ```text
//! assignment 0,3,7          the whole assignment after each rebalance
//! revoked 3                 partitions given up (their positions committed first)
//! lost 3                    partitions lost with the membership
//! record 7 1234             processed: partition 7, offset 1234
//! committed                 the records printed before this line are committed
//! error <text>              a poll or commit error (the consumer carries on)
//! ```

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use client::{
    AssignmentStrategy, AutoOffsetReset, Consumer, ConsumerConfig, RebalanceContext,
    RebalanceListener, TopicPartition,
};

/// How long one poll waits.
const POLL_WAIT: Duration = Duration::from_millis(200);

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

fn list(partitions: &[TopicPartition]) -> String {
    let mut numbers: Vec<i32> = partitions.iter().map(|tp| tp.partition).collect();
    numbers.sort_unstable();
    numbers
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

struct Reporter;

impl RebalanceListener for Reporter {
    fn on_partitions_revoked(
        &mut self,
        consumer: &mut RebalanceContext<'_>,
        partitions: &[TopicPartition],
    ) {
        // Commit what was processed before the partitions move on.
        consumer.commit_positions(partitions);
        say(&format!("revoked {}", list(partitions)));
    }

    fn on_partitions_assigned(
        &mut self,
        consumer: &mut RebalanceContext<'_>,
        _partitions: &[TopicPartition],
    ) {
        say(&format!("assignment {}", list(&consumer.assignment())));
    }

    fn on_partitions_lost(
        &mut self,
        _consumer: &mut RebalanceContext<'_>,
        partitions: &[TopicPartition],
    ) {
        say(&format!("lost {}", list(partitions)));
    }
}

struct Args {
    bootstrap: String,
    topic: String,
    group: String,
    session_timeout_ms: u64,
    instance_id: Option<String>,
    max_poll_records: usize,
    strategy: AssignmentStrategy,
    processing: Duration,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        bootstrap: String::new(),
        topic: String::new(),
        group: String::new(),
        session_timeout_ms: 3_000,
        instance_id: None,
        max_poll_records: 100,
        strategy: AssignmentStrategy::Range,
        processing: Duration::ZERO,
    };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let value = raw
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bootstrap" => args.bootstrap = value,
            "--topic" => args.topic = value,
            "--group" => args.group = value,
            "--session-timeout-ms" => args.session_timeout_ms = value.parse()?,
            "--instance-id" => args.instance_id = Some(value),
            "--max-poll-records" => args.max_poll_records = value.parse()?,
            "--processing-ms" => args.processing = Duration::from_millis(value.parse()?),
            "--strategy" => {
                args.strategy = AssignmentStrategy::from_name(&value)
                    .with_context(|| format!("unknown strategy {value}"))?
            }
            other => bail!("unknown flag {other}"),
        }
    }
    anyhow::ensure!(
        !args.bootstrap.is_empty() && !args.topic.is_empty() && !args.group.is_empty(),
        "--bootstrap, --topic and --group are required"
    );
    Ok(args)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let mut config = ConsumerConfig::new(&args.bootstrap).with_group(&args.group);
    config.enable_auto_commit = false;
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.session_timeout = Duration::from_millis(args.session_timeout_ms);
    config.heartbeat_interval = Duration::from_millis(args.session_timeout_ms / 10);
    config.group_instance_id = args.instance_id;
    config.max_poll_records = args.max_poll_records;
    config.partition_assignment_strategy = vec![args.strategy];
    let consumer = Consumer::connect(config).await?;
    consumer.subscribe_with_listener(&[&args.topic], Reporter)?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let records = tokio::select! {
            _ = terminate.recv() => break,
            polled = consumer.poll(POLL_WAIT) => polled,
        };
        let records = match records {
            Ok(records) => records,
            Err(error) => {
                say(&format!("error {error}"));
                continue;
            }
        };
        if records.is_empty() {
            continue;
        }
        // The application's work on the batch, then the proof it was done.
        tokio::time::sleep(args.processing).await;
        for record in &records {
            say(&format!("record {} {}", record.partition, record.offset));
        }
        match consumer.commit_sync().await {
            Ok(()) => say("committed"),
            Err(error) => say(&format!("error {error}")),
        }
    }
    consumer.close().await?;
    say("closed");
    Ok(())
}
