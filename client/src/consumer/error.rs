//! The consumer's errors, one enum per operation a caller matches on:
//! [`ConsumerConnectError`] from `Consumer::connect`, [`SubscribeError`]
//! from `subscribe` and `assign`, [`PollError`] from `poll`, [`CommitError`]
//! from the commit calls, [`OffsetFetchError`] from `committed`. A
//! [`GroupError`] is a group failure no retry can fix; it ends up inside
//! the others.

use std::time::Duration;

use protocol::ErrorCode;
use thiserror::Error;

use crate::cluster::ClusterError;
use crate::connection::ConnectionError;
use crate::consumer::codec::CodecError;
use crate::consumer::decode::RecordError;
use crate::error::ConfigError;

/// Why `Consumer::connect` failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumerConnectError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot reach the cluster: {0}")]
    Cluster(#[from] ClusterError),
}

/// Why `subscribe` or `assign` refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeError {
    #[error("subscribe needs a group: set group_id")]
    NoGroupId,
    #[error("topic names must not be empty")]
    EmptyTopicName,
    #[error("the consumer is closed")]
    Closed,
}

/// A group failure that retrying cannot fix: the consumer cannot stay in
/// its group as configured.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupError {
    /// The coordinator refused for good, e.g. `INCONSISTENT_GROUP_PROTOCOL`
    /// (no assignor in common with the other members), `INVALID_SESSION_TIMEOUT`,
    /// `GROUP_MAX_SIZE_REACHED`, `FENCED_INSTANCE_ID` (another process took
    /// this `group_instance_id`), `GROUP_AUTHORIZATION_FAILED`.
    #[error("group {group}: {api} failed with {code}")]
    Rejected {
        group: String,
        api: &'static str,
        code: ErrorCode,
    },
    /// The coordinator does not speak a version of an API we need.
    #[error("group {group}: {error}")]
    Unsupported {
        group: String,
        error: ConnectionError,
    },
    /// The leader's assignment (or a member's subscription) does not decode.
    #[error("group {group}: bad consumer-protocol data from the group: {error}")]
    Codec { group: String, error: CodecError },
    /// The group chose a protocol we did not offer.
    #[error("group {group}: the coordinator selected protocol {protocol:?}, which this member did not offer")]
    UnknownProtocol { group: String, protocol: String },
}

/// Why `poll` failed. The consumer stays usable: the next `poll` goes on
/// (and, for a record or offset error, fails again until the application
/// `seek`s past it).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PollError {
    #[error("poll needs a subscription or an assignment")]
    NotSubscribed,
    /// `auto_offset_reset` is `None` and the partition has no committed offset.
    #[error("{topic}-{partition} has no committed offset and auto_offset_reset is none")]
    NoOffset { topic: String, partition: i32 },
    /// `auto_offset_reset` is `None` and the position is outside the log.
    #[error(
        "offset {offset} of {topic}-{partition} is out of range and auto_offset_reset is none"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// A batch at `offset` cannot be turned into records (a codec we lack, a
    /// corrupt batch). Records before it were delivered; `seek` past it to
    /// go on (for a codec error, to `error.next_offset()`).
    #[error("{topic}-{partition} at offset {offset}: {error}")]
    Record {
        topic: String,
        partition: i32,
        offset: i64,
        error: RecordError,
    },
    /// A fetch error that retrying does not fix (e.g. `TOPIC_AUTHORIZATION_FAILED`).
    #[error("fetching {topic}-{partition} failed with {code}")]
    Fetch {
        topic: String,
        partition: i32,
        code: ErrorCode,
    },
    /// ListOffsets (for a reset) failed with an error retrying does not fix.
    #[error("looking up the {policy} offset of {topic}-{partition} failed with {code}")]
    ListOffsets {
        topic: String,
        partition: i32,
        policy: &'static str,
        code: ErrorCode,
    },
    /// Reading the committed offsets of newly assigned partitions failed
    /// with an error retrying does not fix.
    #[error(transparent)]
    Committed(#[from] OffsetFetchError),
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A fetch task ended without an outcome: it panicked (a bug, reported
    /// rather than hidden). No position moved; its partitions are fetched
    /// again after `retry_backoff`, so the next `poll` goes on (and fails
    /// the same way while the panic repeats).
    #[error("the fetch from broker {broker_id} failed: {reason}")]
    FetchTaskFailed { broker_id: i32, reason: String },
    /// A background lookup (committed offsets, ListOffsets, metadata) ended
    /// without an outcome: it panicked. The lookups start again with the
    /// next `poll`.
    #[error("a consumer lookup task failed: {reason}")]
    LookupTaskFailed { reason: String },
    /// The heartbeat task ended (it panicked). It has been started again;
    /// if it was dead for longer than `session_timeout`, the coordinator
    /// dropped the member, and the next `poll` finds its partitions lost
    /// and rejoins.
    #[error("the consumer's heartbeat task failed: {reason}")]
    HeartbeatTaskFailed { reason: String },
    #[error("the consumer is closed")]
    Closed,
}

/// Why `seek`, `pause` or `resume` refused: the partition is not assigned
/// to this consumer.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssignmentError {
    #[error("{topic}-{partition} is not assigned to this consumer")]
    NotAssigned { topic: String, partition: i32 },
}

/// Why a commit failed. Nothing is committed for the partitions in question;
/// their records will be delivered again after a restart or a rebalance.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitError {
    #[error("committing needs a group: set group_id")]
    NoGroupId,
    /// The group rebalanced (or is rebalancing) since the partitions were
    /// assigned (`REBALANCE_IN_PROGRESS`, `ILLEGAL_GENERATION`,
    /// `UNKNOWN_MEMBER_ID`): the partitions may belong to another member now.
    #[error("group {group}: commit refused with {code}: the group rebalanced, so the partitions may have moved to another member")]
    Rebalanced { group: String, code: ErrorCode },
    /// The coordinator refused one partition's offset (e.g.
    /// `OFFSET_METADATA_TOO_LARGE`, `UNKNOWN_TOPIC_OR_PARTITION`).
    #[error("commit of {topic}-{partition} refused with {code}")]
    Partition {
        topic: String,
        partition: i32,
        code: ErrorCode,
    },
    /// Retriable errors (coordinator moving or loading, connection trouble)
    /// lasted past the deadline (`default_api_timeout`). `last_code` is the
    /// last error code the coordinator answered with, if it answered one
    /// (e.g. `COORDINATOR_LOAD_IN_PROGRESS`).
    #[error("commit not confirmed within {waited:?}; last error: {last_error}")]
    Timeout {
        waited: Duration,
        last_error: String,
        last_code: Option<ErrorCode>,
    },
    /// An async commit's single attempt failed with a retriable error;
    /// `code` is the coordinator's, if it answered one.
    #[error("async commit failed (not retried): {reason}")]
    Failed {
        reason: String,
        code: Option<ErrorCode>,
    },
    #[error(transparent)]
    Group(#[from] GroupError),
    /// `queued_max` commits were already waiting to be sent (see
    /// [`COMMITS_QUEUED_MAX`](crate::consumer::COMMITS_QUEUED_MAX)).
    #[error("{queued_max} commits already wait to be sent")]
    TooManyQueued { queued_max: usize },
    #[error("the consumer is closed")]
    Closed,
}

/// Why `store_offset` refused an offset.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// `enable_auto_offset_store` is on: `poll` stores the offsets itself.
    #[error("offsets are stored by poll (enable_auto_offset_store is on)")]
    AutoStoreEnabled,
    /// Offsets are stored only for partitions assigned to this consumer.
    #[error("{topic}-{partition} is not assigned to this consumer")]
    NotAssigned { topic: String, partition: i32 },
}

/// Why `committed` could not read the committed offsets.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffsetFetchError {
    #[error("committed offsets need a group: set group_id")]
    NoGroupId,
    #[error("reading the committed offset of {topic}-{partition} failed with {code}")]
    Partition {
        topic: String,
        partition: i32,
        code: ErrorCode,
    },
    #[error("committed offsets not read within {waited:?}; last error: {last_error}")]
    Timeout {
        waited: Duration,
        last_error: String,
    },
    #[error(transparent)]
    Group(#[from] GroupError),
}

impl GroupError {
    /// The Kafka error code, when the coordinator gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            GroupError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl PollError {
    /// The Kafka error code, when a broker gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            PollError::Fetch { code, .. } | PollError::ListOffsets { code, .. } => Some(*code),
            PollError::Committed(error) => error.code(),
            PollError::Group(error) => error.code(),
            _ => None,
        }
    }
}

impl CommitError {
    /// The Kafka error code, when the coordinator gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CommitError::Rebalanced { code, .. } | CommitError::Partition { code, .. } => {
                Some(*code)
            }
            CommitError::Timeout { last_code, .. } => *last_code,
            CommitError::Failed { code, .. } => *code,
            CommitError::Group(error) => error.code(),
            _ => None,
        }
    }
}

impl OffsetFetchError {
    /// The Kafka error code, when the coordinator gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            OffsetFetchError::Partition { code, .. } => Some(*code),
            OffsetFetchError::Group(error) => error.code(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_from_the_coordinator_carry_its_code_through_every_wrapper() {
        // code() finds the Kafka code whether it sits on the error itself or on a group error inside it.
        let rejected = GroupError::Rejected {
            group: "g".into(),
            api: "JoinGroup",
            code: ErrorCode::INCONSISTENT_GROUP_PROTOCOL,
        };
        assert_eq!(
            PollError::Group(rejected.clone()).code(),
            Some(ErrorCode::INCONSISTENT_GROUP_PROTOCOL)
        );
        assert_eq!(
            CommitError::Group(rejected).code(),
            Some(ErrorCode::INCONSISTENT_GROUP_PROTOCOL)
        );
        let timeout = CommitError::Timeout {
            waited: Duration::from_secs(1),
            last_error: "OffsetCommit answered COORDINATOR_LOAD_IN_PROGRESS".into(),
            last_code: Some(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS),
        };
        assert_eq!(
            timeout.code(),
            Some(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS)
        );
        let fetch = OffsetFetchError::Partition {
            topic: "t".into(),
            partition: 0,
            code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
        };
        assert_eq!(
            PollError::Committed(fetch).code(),
            Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
        );
        assert_eq!(PollError::NotSubscribed.code(), None);
        assert_eq!(CommitError::NoGroupId.code(), None);
    }
}
