//! The consumer side of a run: every partition read from its log start to
//! the high watermark it had when reading began, with a plain consumer (no
//! group, nothing committed), within one overall timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use client::{AutoOffsetReset, Consumer, ConsumerConfig, TopicPartition};
use thiserror::Error;
use tokio::time::Instant;

use crate::verify::check::{ConsumedLog, ConsumedRecord, PartitionRead};
use crate::verify::topic::{self, TopicError};

/// Bound on the records one poll hands back.
const POLL_RECORDS_MAX: usize = 5_000;

/// How long one poll may wait for records; the read timeout is checked
/// between polls.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);

/// Default bound on waiting for each partition's high watermark to reach
/// the offsets the history says were acknowledged. Right after a leader
/// change the new leader's high watermark can lag its log until the
/// followers fetch again, and reading only up to it would report
/// acknowledged records as lost; a watermark still short after this long is
/// taken as it is, and the records beyond it are reported lost.
pub const HIGH_WATERMARK_SETTLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// What to read.
#[derive(Debug, Clone)]
pub struct ReadSettings {
    pub bootstrap_servers: String,
    pub topic: String,
    pub partition_count: i32,
    /// Bound on the whole read: listing offsets and fetching. Partitions not
    /// read to their end by then are reported incomplete.
    pub timeout: Duration,
    pub request_timeout: Duration,
    /// Per partition, the end offset the log should reach (see
    /// [`crate::verify::History::acknowledged_end_offsets`]); reading waits
    /// up to `settle_timeout` for the high watermark to get there.
    pub expected_end_offsets: BTreeMap<i32, i64>,
    /// See [`HIGH_WATERMARK_SETTLE_TIMEOUT_DEFAULT`]; counts toward `timeout`.
    pub settle_timeout: Duration,
}

/// Why the log could not be read at all. A read cut short by the timeout
/// is not an error: its partitions come back incomplete.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("cannot connect the consumer")]
    Connect(#[from] client::ConsumerConnectError),
    #[error("cannot assign the partitions")]
    Assign(#[from] client::SubscribeError),
}

/// Reads partitions `0..partition_count` of the topic from their log start
/// to their high watermark as listed when the read begins.
pub async fn read_log(settings: &ReadSettings) -> Result<ConsumedLog, ReadError> {
    let started = Instant::now();
    let deadline = started + settings.timeout;
    let cluster = topic::connect(
        &settings.bootstrap_servers,
        settings.request_timeout,
        settings.timeout,
    )
    .await?;
    let settle_deadline = deadline.min(started + settings.settle_timeout);
    let ranges = loop {
        let ranges = topic::offset_ranges(
            &cluster,
            &settings.topic,
            settings.partition_count,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await?;
        let short: Vec<(i32, i64, i64)> = settings
            .expected_end_offsets
            .iter()
            .filter_map(|(partition, expected)| {
                let end = ranges.get(partition).map_or(0, |(_, end)| *end);
                (end < *expected).then_some((*partition, end, *expected))
            })
            .collect();
        if short.is_empty() {
            break ranges;
        }
        if Instant::now() >= settle_deadline {
            tracing::warn!(
                ?short,
                "high watermarks (partition, listed, acknowledged up to) still short of acknowledged offsets; reading what is there"
            );
            break ranges;
        }
        tokio::time::sleep(topic::ADMIN_RETRY_INTERVAL).await;
    };
    cluster.close();

    let mut config = ConsumerConfig::new(&settings.bootstrap_servers);
    config.client_id = "verifier-reader".into();
    config.group_id = None;
    config.enable_auto_commit = false;
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.max_poll_records = POLL_RECORDS_MAX;
    config.allow_auto_create_topics = false;
    config.request_timeout = settings.request_timeout;
    let consumer = Consumer::connect(config).await?;
    let partitions: Vec<TopicPartition> = ranges
        .keys()
        .map(|p| TopicPartition::new(settings.topic.as_str(), *p))
        .collect();
    consumer.assign(&partitions).await?;

    let mut reads: BTreeMap<i32, PartitionRead> = ranges
        .iter()
        .map(|(partition, (log_start_offset, end_offset))| {
            let read = PartitionRead {
                partition: *partition,
                log_start_offset: *log_start_offset,
                end_offset: *end_offset,
                // An empty partition is read once its range is known.
                complete: end_offset <= log_start_offset,
                records: Vec::new(),
            };
            (*partition, read)
        })
        .collect();
    let mut last_problem: Option<String> = None;
    while reads.values().any(|r| !r.complete) && Instant::now() < deadline {
        match consumer.poll(POLL_TIMEOUT).await {
            Ok(records) => {
                for record in records.into_vec() {
                    if let Some(read) = reads.get_mut(&record.partition) {
                        read.records.push(ConsumedRecord {
                            offset: record.offset,
                            value: record.value,
                        });
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "poll failed; polling again until the read timeout");
                last_problem = Some(e.to_string());
            }
        }
        let mut reached = Vec::new();
        for (tp, read) in partitions.iter().zip(reads.values_mut()) {
            debug_assert_eq!(tp.partition, read.partition);
            if !read.complete && consumer.position(tp).is_some_and(|p| p >= read.end_offset) {
                read.complete = true;
                reached.push(tp.clone());
            }
        }
        // Records written after the read began are not part of this run's
        // check; pausing stops fetching them.
        if !reached.is_empty() {
            if let Err(e) = consumer.pause(&reached) {
                tracing::debug!(error = %e, "cannot pause a partition read to its end");
            }
        }
    }
    let incomplete: Vec<i32> = reads
        .values()
        .filter(|r| !r.complete)
        .map(|r| r.partition)
        .collect();
    if !incomplete.is_empty() {
        tracing::warn!(
            partitions = ?incomplete,
            timeout = ?settings.timeout,
            last_problem = last_problem.as_deref().unwrap_or("none"),
            "partitions not read to their end before the read timeout"
        );
    }
    if let Err(e) = consumer.close().await {
        tracing::debug!(error = %e, "closing the reader");
    }
    Ok(ConsumedLog {
        partitions: reads.into_values().collect(),
    })
}
