//! The one place internal errors become Kafka error codes. The codes
//! themselves are named once, in `protocol::ErrorCode`.

use protocol::ErrorCode;

use crate::partition::AppendError;
use crate::storage::StorageError;

/// An error a client hears about as a Kafka error code.
pub trait KafkaErrorCode {
    fn error_code(&self) -> ErrorCode;
}

impl KafkaErrorCode for StorageError {
    fn error_code(&self) -> ErrorCode {
        match self {
            StorageError::OffsetOutOfRange { .. } => ErrorCode::OFFSET_OUT_OF_RANGE,
            StorageError::CorruptBatch(_) => ErrorCode::CORRUPT_MESSAGE,
            StorageError::RecordSetTooLarge { .. } => ErrorCode::RECORD_LIST_TOO_LARGE,
            StorageError::NonContiguousOffsets { .. }
            | StorageError::Offline { .. }
            | StorageError::Io { .. }
            | StorageError::CorruptFile { .. }
            | StorageError::InvalidConfig { .. }
            | StorageError::TopicIdMismatch { .. } => ErrorCode::KAFKA_STORAGE_ERROR,
        }
    }
}

impl KafkaErrorCode for AppendError {
    fn error_code(&self) -> ErrorCode {
        match self {
            AppendError::Storage(e) => e.error_code(),
            AppendError::Sequence { code } => *code,
            AppendError::MultipleIdempotentBatches { .. } => ErrorCode::INVALID_RECORD,
            AppendError::NotLeader { .. } | AppendError::LeaseLapsed => {
                ErrorCode::NOT_LEADER_OR_FOLLOWER
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::BrokerId;

    #[test]
    fn a_follower_refuses_appends_with_a_retriable_code() {
        // Clients retry NOT_LEADER_OR_FOLLOWER after refreshing metadata.
        let code = AppendError::NotLeader {
            leader: BrokerId(2),
        }
        .error_code();
        assert_eq!(code, ErrorCode::NOT_LEADER_OR_FOLLOWER);
        assert!(code.is_retriable());
        let out_of_range = StorageError::OffsetOutOfRange {
            requested: 9,
            log_start_offset: 0,
            log_end_offset: 5,
        };
        assert_eq!(out_of_range.error_code(), ErrorCode::OFFSET_OUT_OF_RANGE);
    }
}
