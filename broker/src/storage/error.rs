//! The storage engine's error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("offset {requested} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        requested: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("corrupt batch: {0}")]
    CorruptBatch(protocol::batch::BatchError),
    #[error("follower batch at offset {base_offset} does not continue the log end offset {log_end_offset}")]
    NonContiguousOffsets {
        base_offset: i64,
        log_end_offset: i64,
    },
    #[error("partition is offline: {reason}")]
    Offline { reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt file {path}: {reason}")]
    CorruptFile { path: String, reason: String },
    #[error("invalid log configuration: {reason}")]
    InvalidConfig { reason: String },
    #[error("partition {partition} has topic id {stored}, not {requested}")]
    TopicIdMismatch {
        partition: String,
        stored: uuid::Uuid,
        requested: uuid::Uuid,
    },
    #[error("record set of {size} bytes cannot be stored (limit {limit})")]
    RecordSetTooLarge { size: usize, limit: u64 },
}

impl StorageError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }
}
