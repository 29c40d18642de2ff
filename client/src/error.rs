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
        setting: &'static str,
        reason: String,
    },
    /// A property name (`linger.ms`) this client does not know.
    #[error("unknown property {name:?}")]
    UnknownProperty { name: String },
    /// A property's value does not parse, or is out of range.
    #[error("invalid value {value:?} for property {name}: {reason}")]
    InvalidProperty {
        name: String,
        value: String,
        reason: String,
    },
    /// `from_properties` without a property it needs.
    #[error("property {name} is required")]
    MissingProperty { name: &'static str },
}

/// Why `Producer::connect` failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot reach the cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("InitProducerId failed with {code}")]
    InitProducerId { code: ErrorCode },
}

/// Why `send` did not accept a record. Nothing was queued: the record is not
/// in flight and will not be delivered.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    #[error(
        "buffer memory full: {needed_bytes} bytes needed, {buffer_memory_bytes} bytes all taken by undelivered records; waited {waited:?} (max_block)"
    )]
    BufferExhausted {
        needed_bytes: usize,
        buffer_memory_bytes: usize,
        waited: Duration,
    },
    #[error("record of about {size_bytes} bytes exceeds {setting} ({limit_bytes} bytes)")]
    RecordTooLarge {
        size_bytes: usize,
        limit_bytes: usize,
        setting: &'static str,
    },
    #[error("no metadata for topic {topic} after {waited:?} (max_block): {reason}")]
    MetadataUnavailable {
        topic: String,
        waited: Duration,
        reason: String,
    },
    #[error("topic {topic} has {partition_count} partitions; there is no partition {partition}")]
    UnknownPartition {
        topic: String,
        partition: i32,
        partition_count: i32,
    },
    #[error("the producer is closed")]
    Closed,
    /// The producer's sender task died (a panic: a bug, reported rather
    /// than hidden); this producer accepts no more records. `reason` says
    /// why it died.
    #[error("the producer's sender task stopped: {reason}")]
    SenderStopped { reason: String },
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
        code: ErrorCode,
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
        topic: String,
        partition: i32,
        code: ErrorCode,
        message: Option<String>,
        attempts: u32,
    },
    /// Retriable errors kept coming until `retries` was used up.
    #[error("{topic}-{partition}: gave up after {attempts} attempt(s) (retries exhausted); last error: {last_error}")]
    RetriesExhausted {
        topic: String,
        partition: i32,
        attempts: u32,
        last_error: AttemptError,
    },
    /// `delivery_timeout` passed before the batch was acknowledged. If it had
    /// been sent, it may or may not have been written.
    #[error("{topic}-{partition}: not delivered within {delivery_timeout:?} after {attempts} attempt(s){}", last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    DeliveryTimeout {
        topic: String,
        partition: i32,
        delivery_timeout: Duration,
        attempts: u32,
        last_error: Option<AttemptError>,
    },
    /// A request could not be built or sent at all (a bug or a version
    /// mismatch rather than a network problem).
    #[error("{topic}-{partition}: cannot send the batch after {attempts} attempt(s): {error}")]
    Connection {
        topic: String,
        partition: i32,
        attempts: u32,
        error: ConnectionError,
    },
    /// The records could not be compressed.
    #[error("{topic}-{partition}: cannot compress the batch: {reason}")]
    Compression {
        topic: String,
        partition: i32,
        reason: String,
    },
    /// The producer's sender task died (a panic: a bug, reported rather
    /// than hidden) before reporting on this record. The record may or may
    /// not have been written, if it had been sent. `reason` says why the
    /// task died.
    #[error("the producer's sender task stopped before reporting on this record: {reason}")]
    SenderStopped { reason: String },
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
