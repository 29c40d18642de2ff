//! Kafka error codes the consumer acts on that `protocol::ErrorCode` has no
//! name for (group coordination, offsets, leader epochs).

use protocol::ErrorCode;

pub const COORDINATOR_LOAD_IN_PROGRESS: ErrorCode = ErrorCode(14);
pub const COORDINATOR_NOT_AVAILABLE: ErrorCode = ErrorCode(15);
pub const NOT_COORDINATOR: ErrorCode = ErrorCode(16);
pub const ILLEGAL_GENERATION: ErrorCode = ErrorCode(22);
pub const UNKNOWN_MEMBER_ID: ErrorCode = ErrorCode(25);
pub const REBALANCE_IN_PROGRESS: ErrorCode = ErrorCode(27);
pub const GROUP_AUTHORIZATION_FAILED: ErrorCode = ErrorCode(30);
pub const FENCED_LEADER_EPOCH: ErrorCode = ErrorCode(74);
pub const UNKNOWN_LEADER_EPOCH: ErrorCode = ErrorCode(76);
pub const OFFSET_NOT_AVAILABLE: ErrorCode = ErrorCode(78);
pub const MEMBER_ID_REQUIRED: ErrorCode = ErrorCode(79);
pub const FENCED_INSTANCE_ID: ErrorCode = ErrorCode(82);
pub const UNSTABLE_OFFSET_COMMIT: ErrorCode = ErrorCode(88);

/// The coordinator moved or is not there: look it up again.
pub fn coordinator_moved(code: ErrorCode) -> bool {
    code == NOT_COORDINATOR || code == COORDINATOR_NOT_AVAILABLE
}

/// The coordinator is there but cannot answer yet, or moved: try again later.
pub fn coordinator_retriable(code: ErrorCode) -> bool {
    coordinator_moved(code) || code == COORDINATOR_LOAD_IN_PROGRESS
}

/// The member's generation or id is no longer valid.
pub fn membership_invalid(code: ErrorCode) -> bool {
    code == ILLEGAL_GENERATION || code == UNKNOWN_MEMBER_ID
}

/// Errors on a partition's fetch or offset lookup that a metadata refresh
/// (a new leader, a new leader epoch) and a retry fix.
pub fn needs_metadata_refresh(code: ErrorCode) -> bool {
    code == ErrorCode::NOT_LEADER_OR_FOLLOWER
        || code == ErrorCode::LEADER_NOT_AVAILABLE
        || code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        || code == ErrorCode::UNKNOWN_TOPIC_ID
        || code == ErrorCode::KAFKA_STORAGE_ERROR
        || code == FENCED_LEADER_EPOCH
        || code == UNKNOWN_LEADER_EPOCH
        || code == OFFSET_NOT_AVAILABLE
}
