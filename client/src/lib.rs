//! Rust client for the broker (and any Kafka-compatible cluster): for now the
//! producer, on a connection layer meant to be shared with the consumer and
//! admin clients.
//!
//! - [`producer`]: [`Producer`], [`ProducerConfig`], records, partitioning,
//!   batching, retries, idempotence.
//! - [`connection`]: one broker connection: correlation ids, pipelining,
//!   ApiVersions negotiation.
//! - [`cluster`]: connections per broker and metadata refresh.
//! - [`metadata`]: the metadata cache (brokers, topics, partition leaders).
//! - [`compression`]: lz4 and zstd for record batches.
//! - [`backoff`]: exponential backoff with jitter.
//! - [`error`]: the producer's error types.
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

pub mod backoff;
pub mod cluster;
pub mod compression;
pub mod connection;
pub mod error;
pub mod metadata;
pub mod producer;

pub use compression::Compression;
pub use error::{ConfigError, ConnectError, ProduceError, SendError};
pub use producer::{
    Acks, DeliveryFuture, Producer, ProducerConfig, ProducerIdentity, ProducerRecord,
    RecordMetadata,
};
