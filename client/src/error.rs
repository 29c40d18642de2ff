//! The errors of the producer API, one enum per operation a caller matches on:
//! [`ConnectError`] from `Producer::connect`, [`SendError`] when `send` does
//! not accept a record, [`ProduceError`] when an accepted record is not
//! delivered. Every `ProduceError` says how often its batch was sent, so a
//! caller can tell a first-try rejection from retries that ran out.

use std::time::Duration;

use protocol::ErrorCode;
use thiserror::Error;

use crate::cluster::ClusterError;
use crate::connection::ConnectionError;

/// A setting, or a combination of settings, that cannot work.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting (by field name), alone or with others, cannot work.
    #[error("invalid {setting}: {reason}")]
    Invalid {
        /// The setting, by its Java property name.
        setting: &'static str,
        /// Why it cannot work.
        reason: String,
    },
    /// A property name (`linger.ms`) this client does not know.
    #[error("unknown property {name:?}")]
    UnknownProperty {
        /// The property's name.
        name: String,
    },
    /// A property's value does not parse, or is out of range.
    #[error("invalid value {value:?} for property {name}: {reason}")]
    InvalidProperty {
        /// The property's name.
        name: String,
        /// The value given.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// `from_properties` without a property it needs.
    #[error("property {name} is required")]
    MissingProperty {
        /// The property's name.
        name: &'static str,
    },
}

/// Why `Producer::connect` failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No broker could be reached.
    #[error("cannot reach the cluster: {0}")]
    Cluster(#[from] ClusterError),
    /// The broker refused to give the idempotent producer an id.
    #[error("InitProducerId failed with {code}")]
    InitProducerId {
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
    },
}

/// Why `send` did not accept a record. Nothing was queued: the record is not
/// in flight and will not be delivered.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    #[error(
        "buffer memory full: {needed_bytes} bytes needed, {buffer_memory_bytes} bytes all taken by undelivered records; waited {waited:?} (max_block)"
    )]
    /// The buffer had no room for the record within `max_block`.
    BufferExhausted {
        /// The room the record needed.
        needed_bytes: usize,
        /// The buffer's size (`buffer.memory`).
        buffer_memory_bytes: usize,
        /// How long `send` waited for room (`max.block.ms`).
        waited: Duration,
    },
    /// The record is larger than a request or the buffer may be.
    #[error("record of about {size_bytes} bytes exceeds {setting} ({limit_bytes} bytes)")]
    RecordTooLarge {
        /// The record's size.
        size_bytes: usize,
        /// The bound it exceeds.
        limit_bytes: usize,
        /// The setting that sets the bound.
        setting: &'static str,
    },
    /// The topic's metadata did not come within `max_block`.
    #[error("no metadata for topic {topic} after {waited:?} (max_block): {reason}")]
    MetadataUnavailable {
        /// The topic.
        topic: String,
        /// How long `send` waited (`max.block.ms`).
        waited: Duration,
        /// Why the metadata was not there.
        reason: String,
    },
    /// The record names a partition the topic does not have.
    #[error("topic {topic} has {partition_count} partitions; there is no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        partition_count: i32,
    },
    /// The producer was closed.
    #[error("the producer is closed")]
    Closed,
    /// The producer's sender task died (a panic: a bug, reported rather
    /// than hidden); this producer accepts no more records. `reason` says
    /// why it died.
    #[error("the producer's sender task stopped: {reason}")]
    SenderStopped {
        /// Why the sender task ended (its panic's message).
        reason: String,
    },
}

/// Why one attempt to deliver a batch failed in a way worth retrying: the
/// last one is in [`ProduceError::RetriesExhausted`] and
/// [`ProduceError::DeliveryTimeout`].
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptError {
    /// The broker answered the partition with a retriable error code (e.g.
    /// `NOT_LEADER_OR_FOLLOWER`, `NOT_ENOUGH_REPLICAS`,
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER` while an earlier batch is retried).
    #[error("{code}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// The request got no answer: the connection failed or timed out.
    #[error(transparent)]
    Network(Box<ClusterError>),
    /// The broker's response did not mention the partition.
    #[error("partition missing from the Produce response")]
    MissingPartition,
}

impl AttemptError {
    /// The Kafka error code, when the broker gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            AttemptError::Broker { code, .. } => Some(*code),
            AttemptError::Network(_) | AttemptError::MissingPartition => None,
        }
    }
}

/// Why a record that `send` accepted was not delivered.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProduceError {
    /// The broker answered with an error that retrying cannot fix (or that
    /// this producer does not retry).
    #[error("{topic}-{partition}: broker rejected the batch with {code}{} after {attempts} attempt(s)", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Rejected {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
        /// The broker's error message, if it sent one.
        message: Option<String>,
        /// How many times the record's batch was sent.
        attempts: u32,
    },
    /// Retriable errors kept coming until `retries` was used up.
    #[error("{topic}-{partition}: gave up after {attempts} attempt(s) (retries exhausted); last error: {last_error}")]
    RetriesExhausted {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
        /// How many times the record's batch was sent.
        attempts: u32,
        /// What the last attempt failed with.
        last_error: AttemptError,
    },
    /// `delivery_timeout` passed before the batch was acknowledged. If it had
    /// been sent, it may or may not have been written.
    #[error("{topic}-{partition}: not delivered within {delivery_timeout:?} after {attempts} attempt(s){}", last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    DeliveryTimeout {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
        /// The bound that passed (`delivery.timeout.ms`).
        delivery_timeout: Duration,
        /// How many times the record's batch was sent.
        attempts: u32,
        /// What the last attempt failed with, if one was made.
        last_error: Option<AttemptError>,
    },
    /// A request could not be built or sent at all (a bug or a version
    /// mismatch rather than a network problem).
    #[error("{topic}-{partition}: cannot send the batch after {attempts} attempt(s): {error}")]
    Connection {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
        /// How many times the record's batch was sent.
        attempts: u32,
        /// The connection's error.
        error: ConnectionError,
    },
    /// The records could not be compressed.
    #[error("{topic}-{partition}: cannot compress the batch: {reason}")]
    Compression {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
        /// Why the batch could not be compressed.
        reason: String,
    },
    /// The producer's sender task died (a panic: a bug, reported rather
    /// than hidden) before reporting on this record. The record may or may
    /// not have been written, if it had been sent. `reason` says why the
    /// task died.
    #[error("the producer's sender task stopped before reporting on this record: {reason}")]
    SenderStopped {
        /// Why the sender task ended (its panic's message).
        reason: String,
    },
}

impl ProduceError {
    /// How many times the batch was sent (0 if it never left the client).
    pub fn attempts(&self) -> u32 {
        match self {
            ProduceError::Rejected { attempts, .. }
            | ProduceError::RetriesExhausted { attempts, .. }
            | ProduceError::DeliveryTimeout { attempts, .. }
            | ProduceError::Connection { attempts, .. } => *attempts,
            ProduceError::Compression { .. } | ProduceError::SenderStopped { .. } => 0,
        }
    }

    /// Whether the batch was sent more than once before this error.
    pub fn retried(&self) -> bool {
        self.attempts() > 1
    }

    /// The Kafka error code, when the broker gave one: the code of a
    /// rejection, or of the last attempt when retries or the delivery
    /// timeout ran out.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ProduceError::Rejected { code, .. } => Some(*code),
            ProduceError::RetriesExhausted { last_error, .. } => last_error.code(),
            ProduceError::DeliveryTimeout { last_error, .. } => {
                last_error.as_ref().and_then(AttemptError::code)
            }
            _ => None,
        }
    }
}
