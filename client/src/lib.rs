//! Rust client for the broker (and any Kafka-compatible cluster): the
//! producer, the consumer and the admin client, on a shared connection layer.
//!
//! - [`producer`]: [`Producer`], [`ProducerConfig`], records, partitioning,
//!   batching, retries, idempotence.
//! - [`consumer`]: [`Consumer`], [`ConsumerConfig`], groups (subscribe,
//!   rebalances, the [`RebalanceListener`]), manual assignment, committed
//!   offsets, fetching and record decoding.
//! - [`admin`]: [`Admin`]: topics, partitions, the cluster, offsets, configs,
//!   reassignments and leader elections, with errors that carry Kafka's codes.
//! - [`connection`]: one broker connection: correlation ids, pipelining,
//!   ApiVersions negotiation.
//! - [`cluster`]: connections per broker and metadata refresh.
//! - [`metadata`]: the metadata cache (brokers, topics, partition leaders).
//! - [`compression`]: gzip, snappy, lz4 and zstd for record batches.
//! - [`backoff`]: exponential backoff with jitter.
//! - [`error`]: the producer's error types (the consumer's are in
//!   [`consumer::error`]).
//!
//! # Example
//!
//! ```no_run
//! use client::{Producer, ProducerConfig, ProducerRecord};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let producer = Producer::connect(ProducerConfig::new("127.0.0.1:9092")).await?;
//! let delivery = producer
//!     .send(ProducerRecord::new("events").with_key("user-42").with_value("signed in"))
//!     .await?;
//! let written = delivery.await?;
//! println!("partition {} offset {:?}", written.partition, written.offset);
//! producer.flush().await;
//! # Ok(())
//! # }
//! ```
//!
//! `send` resolves once the record is queued (it waits for buffer room and
//! topic metadata, at most `max_block`); the returned [`DeliveryFuture`]
//! resolves once the broker acknowledged it or it failed for good. See
//! `docs/client.md` for the settings and delivery guarantees.
//!
//! The consumer joins a group, polls records and commits what it processed:
//!
//! ```no_run
//! use std::time::Duration;
//! use client::{Consumer, ConsumerConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = ConsumerConfig::new("127.0.0.1:9092").with_group("billing");
//! config.enable_auto_commit = false;
//! let consumer = Consumer::connect(config).await?;
//! consumer.subscribe(&["events"])?;
//! loop {
//!     let records = consumer.poll(Duration::from_millis(500)).await?;
//!     for record in &records {
//!         println!("{}-{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
//!     }
//!     // At-least-once: commit after processing; a crash before this line
//!     // means these records are delivered again.
//!     consumer.commit_sync().await?;
//! }
//! # }
//! ```
//!
//! The admin client creates and inspects topics, looks up offsets and moves
//! partitions; every refusal is an [`AdminError`] carrying Kafka's code:
//!
//! ```no_run
//! use std::time::Duration;
//! use client::admin::{NewTopic, OffsetSpec};
//! use client::{Admin, AdminConfig, AdminError, ErrorCode, TopicPartition};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! const TIMEOUT: Duration = Duration::from_secs(30);
//! let admin = Admin::connect(AdminConfig::new("127.0.0.1:9092")).await?;
//! let topic = NewTopic::new("events", 6, 3).with_config("retention.ms", "86400000");
//! match admin.create_topic(topic, TIMEOUT).await {
//!     Ok(created) => println!("created {} ({})", created.name, created.topic_id),
//!     Err(AdminError::Topic { code, .. }) if code == ErrorCode::TOPIC_ALREADY_EXISTS => {}
//!     Err(other) => return Err(other.into()),
//! }
//! let ends = admin
//!     .list_offsets(&[(TopicPartition::new("events", 0), OffsetSpec::Latest)], TIMEOUT)
//!     .await?;
//! println!("{:?}", ends);
//! # Ok(())
//! # }
//! ```
//!
//! `poll` returns at most `max_poll_records` records and moves each
//! partition's position past them; commits (`commit_sync`, `commit_async`,
//! or auto-commit) store those positions. Records are delivered at least
//! once: after a crash or a rebalance, the records since the last commit
//! come again. `Consumer::stream` hands the records out one at a time as a
//! `futures::Stream`. Every async method of the consumer is cancel-safe:
//! `poll` may lose a `select!` without losing records.

#![warn(missing_docs)]

pub mod admin;
pub mod backoff;
pub mod cluster;
pub mod compression;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod metadata;
pub mod producer;
pub(crate) mod properties;

/// Lets the client's background tasks (the producer's sender, fetches,
/// connection writers and readers) run once before a call returns to the
/// application, on a single-threaded runtime: there they run only when the
/// application awaits something that is not ready, which a busy
/// application may not do for a long time. On a multi-threaded runtime they
/// run on other workers, and a yield is skipped: it is deferred until the
/// worker has nothing else to run, so a caller that drives the call with
/// another executor's `block_on` inside a task would wait forever.
pub(crate) async fn yield_if_single_threaded() {
    let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
    if matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::CurrentThread)) {
        tokio::task::yield_now().await;
    }
}

/// The message of a caught panic (its payload is a `&str` or a `String`
/// when it came from `panic!`).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Why a spawned task ended without an outcome: its panic message, or that
/// it was cancelled.
pub(crate) fn join_error_reason(task: &str, error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return format!("the {task} was cancelled: {error}");
    }
    format!(
        "the {task} panicked: {}",
        panic_message(&*error.into_panic())
    )
}

pub use admin::{Admin, AdminConfig, AdminError};
pub use compression::Compression;
pub use consumer::{
    AssignmentError, AssignmentStrategy, AutoOffsetReset, CommitError, CommitFuture, Consumer,
    ConsumerConfig, ConsumerConnectError, ConsumerMetrics, ConsumerRecord, ConsumerRecords,
    GroupError, Header, OffsetAndMetadata, OffsetFetchError, PartitionMetrics, PollError,
    RebalanceContext, RebalanceListener, RecordError, RecordStream, RetriableError, StoreError,
    SubscribeError, TimestampType, TopicPartition,
};
pub use error::{AttemptError, ConfigError, ConnectError, ProduceError, SendError};
pub use producer::{
    Acks, DeliveryFuture, Producer, ProducerConfig, ProducerIdentity, ProducerMetrics,
    ProducerRecord, RecordMetadata,
};
/// Kafka error codes, as every error that came from a broker carries them.
pub use protocol::ErrorCode;
