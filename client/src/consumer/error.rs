//! The consumer's errors, one enum per operation a caller matches on:
//! [`ConsumerConnectError`] from `Consumer::connect`, [`SubscribeError`]
//! from `subscribe` and `assign`, [`PollError`] from `poll`, [`CommitError`]
//! from the commit calls, [`OffsetFetchError`] from `committed`. A
//! [`GroupError`] is a group failure no retry can fix; it ends up inside
//! the others. A [`RetriableError`] is what a retry might have fixed: the
//! last failure of a call that ran out of time, or of an async commit's
//! single attempt.

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
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No broker could be reached.
    #[error("cannot reach the cluster: {0}")]
    Cluster(#[from] ClusterError),
}

/// Why `subscribe` or `assign` refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The call needs a group, and `group_id` is not set.
    #[error("subscribe needs a group: set group_id")]
    NoGroupId,
    /// A topic name is empty.
    #[error("topic names must not be empty")]
    EmptyTopicName,
    /// The consumer was closed.
    #[error("the consumer is closed")]
    Closed,
    /// `queued_max` changes already wait for the `poll` in progress (see
    /// [`CONTROLS_QUEUED_MAX`](crate::consumer::CONTROLS_QUEUED_MAX)).
    #[error("{queued_max} changes already wait for the poll in progress")]
    TooManyQueued {
        /// The bound that was reached.
        queued_max: usize,
    },
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
        /// The group id.
        group: String,
        /// The request refused, by Kafka's name.
        api: &'static str,
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
    },
    /// The coordinator does not speak a version of an API we need.
    #[error("group {group}: {error}")]
    Unsupported {
        /// The group id.
        group: String,
        /// The version mismatch.
        error: ConnectionError,
    },
    /// The leader's assignment (or a member's subscription) does not decode.
    #[error("group {group}: bad consumer-protocol data from the group: {error}")]
    Codec {
        /// The group id.
        group: String,
        /// Why the bytes do not decode.
        error: CodecError,
    },
    /// The group chose a protocol we did not offer.
    #[error("group {group}: the coordinator selected protocol {protocol:?}, which this member did not offer")]
    UnknownProtocol {
        /// The group id.
        group: String,
        /// The protocol the coordinator selected.
        protocol: String,
    },
}

/// Why `poll` failed. The consumer stays usable: the next `poll` goes on
/// (and, for a record or offset error, fails again until the application
/// `seek`s past it).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PollError {
    /// The consumer is neither subscribed nor assigned.
    #[error("poll needs a subscription or an assignment")]
    NotSubscribed,
    /// `auto_offset_reset` is `None` and the partition has no committed offset.
    #[error("{topic}-{partition} has no committed offset and auto_offset_reset is none")]
    NoOffset {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
    },
    /// `auto_offset_reset` is `None` and the position is outside the log.
    #[error(
        "offset {offset} of {topic}-{partition} is out of range and auto_offset_reset is none"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
        /// The position outside the log.
        offset: i64,
    },
    /// A batch at `offset` cannot be turned into records (a codec we lack, a
    /// corrupt batch). Records before it were delivered; `seek` past it to
    /// go on (for a codec error, to `error.next_offset()`).
    #[error("{topic}-{partition} at offset {offset}: {error}")]
    Record {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
        /// The base offset of the batch that cannot be read.
        offset: i64,
        /// Why it cannot be read.
        error: RecordError,
    },
    /// A fetch error that retrying does not fix (e.g. `TOPIC_AUTHORIZATION_FAILED`).
    #[error("fetching {topic}-{partition} failed with {code}")]
    Fetch {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
    },
    /// ListOffsets (for a reset) failed with an error retrying does not fix.
    #[error("looking up the {policy} offset of {topic}-{partition} failed with {code}")]
    ListOffsets {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
        /// The reset asked for (`earliest`, `latest`).
        policy: &'static str,
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
    },
    /// Reading the committed offsets of newly assigned partitions failed
    /// with an error retrying does not fix.
    #[error(transparent)]
    Committed(#[from] OffsetFetchError),
    /// The consumer cannot stay in its group.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A fetch task ended without an outcome: it panicked (a bug, reported
    /// rather than hidden). No position moved; its partitions are fetched
    /// again after `retry_backoff`, so the next `poll` goes on (and fails
    /// the same way while the panic repeats).
    #[error("the fetch from broker {broker_id} failed: {reason}")]
    FetchTaskFailed {
        /// The broker's node id.
        broker_id: i32,
        /// The panic's message.
        reason: String,
    },
    /// A background lookup (committed offsets, ListOffsets, metadata) ended
    /// without an outcome: it panicked. The lookups start again with the
    /// next `poll`.
    #[error("a consumer lookup task failed: {reason}")]
    LookupTaskFailed {
        /// The panic's message.
        reason: String,
    },
    /// The heartbeat task ended (it panicked). It has been started again;
    /// if it was dead for longer than `session_timeout`, the coordinator
    /// dropped the member, and the next `poll` finds its partitions lost
    /// and rejoins.
    #[error("the consumer's heartbeat task failed: {reason}")]
    HeartbeatTaskFailed {
        /// The panic's message.
        reason: String,
    },
    /// The consumer was closed.
    #[error("the consumer is closed")]
    Closed,
}

/// Why `seek`, `pause` or `resume` refused: the partition is not assigned
/// to this consumer.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssignmentError {
    /// The partition is not assigned to this consumer.
    #[error("{topic}-{partition} is not assigned to this consumer")]
    NotAssigned {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
    },
    /// `queued_max` changes already wait for the `poll` in progress (see
    /// [`CONTROLS_QUEUED_MAX`](crate::consumer::CONTROLS_QUEUED_MAX)).
    #[error("{queued_max} changes already wait for the poll in progress")]
    TooManyQueued {
        /// The bound that was reached.
        queued_max: usize,
    },
}

/// Why a commit failed. Nothing is committed for the partitions in question;
/// their records will be delivered again after a restart or a rebalance.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitError {
    /// The call needs a group, and `group_id` is not set.
    #[error("committing needs a group: set group_id")]
    NoGroupId,
    /// The group rebalanced (or is rebalancing) since the partitions were
    /// assigned (`REBALANCE_IN_PROGRESS`, `ILLEGAL_GENERATION`,
    /// `UNKNOWN_MEMBER_ID`): the partitions may belong to another member now.
    #[error("group {group}: commit refused with {code}: the group rebalanced, so the partitions may have moved to another member")]
    Rebalanced {
        /// The group id.
        group: String,
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
    },
    /// The coordinator refused one partition's offset (e.g.
    /// `OFFSET_METADATA_TOO_LARGE`, `UNKNOWN_TOPIC_OR_PARTITION`).
    #[error("commit of {topic}-{partition} refused with {code}")]
    Partition {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
    },
    /// Retriable errors (coordinator moving or loading, connection trouble)
    /// lasted past the deadline (`default_api_timeout`).
    #[error("commit not confirmed within {waited:?}; last error: {last_error}")]
    Timeout {
        /// How long the commit was tried.
        waited: Duration,
        /// What the last attempt failed with.
        last_error: RetriableError,
        /// The last error code the coordinator answered with, if it
        /// answered one (e.g. `COORDINATOR_LOAD_IN_PROGRESS`), even when
        /// the last attempt got no answer at all.
        last_code: Option<ErrorCode>,
    },
    /// An async commit's single attempt failed with a retriable error.
    #[error("async commit failed (not retried): {cause}")]
    Failed {
        /// What the attempt failed with.
        cause: RetriableError,
    },
    /// The consumer cannot stay in its group.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// `queued_max` commits were already waiting to be sent (see
    /// [`COMMITS_QUEUED_MAX`](crate::consumer::COMMITS_QUEUED_MAX)).
    #[error("{queued_max} commits already wait to be sent")]
    TooManyQueued {
        /// The bound that was reached.
        queued_max: usize,
    },
    /// The consumer was closed.
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
    NotAssigned {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
    },
}

/// Why `committed` could not read the committed offsets.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffsetFetchError {
    /// The call needs a group, and `group_id` is not set.
    #[error("committed offsets need a group: set group_id")]
    NoGroupId,
    /// The coordinator refused one partition.
    #[error("reading the committed offset of {topic}-{partition} failed with {code}")]
    Partition {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
    },
    /// Retriable errors (coordinator moving or loading, connection trouble)
    /// lasted past the deadline (`default_api_timeout`).
    #[error("committed offsets not read within {waited:?}; last error: {last_error}")]
    Timeout {
        /// How long the offsets were asked for.
        waited: Duration,
        /// What the last attempt failed with.
        last_error: RetriableError,
    },
    /// The consumer cannot stay in its group.
    #[error(transparent)]
    Group(#[from] GroupError),
}

/// Why one attempt at a group request failed in a way that a retry may
/// fix: the `last_error` of a call that ran out of time, the `cause` of a
/// failed async commit.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetriableError {
    /// The broker answered a retriable error code: the coordinator moving
    /// (`NOT_COORDINATOR`, `COORDINATOR_NOT_AVAILABLE`) or loading
    /// (`COORDINATOR_LOAD_IN_PROGRESS`), `REQUEST_TIMED_OUT`,
    /// `UNSTABLE_OFFSET_COMMIT`.
    #[error("{api} answered {code}")]
    Code {
        /// The request, by Kafka's name (`OffsetCommit`, `FindCoordinator`, ...).
        api: &'static str,
        /// The broker's error code.
        code: ErrorCode,
    },
    /// The request could not be sent, or its answer not read (a broken
    /// connection, a request timeout).
    #[error(transparent)]
    Connection(ConnectionError),
    /// No broker named a coordinator (FindCoordinator answered none, or
    /// there was no broker to ask).
    #[error("no broker named the group's coordinator")]
    NoCoordinator,
    /// Nothing was answered before the call's deadline.
    #[error("no answer before the deadline")]
    NoAnswer,
}

impl RetriableError {
    /// The Kafka error code, when the broker answered one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            RetriableError::Code { code, .. } => Some(*code),
            _ => None,
        }
    }
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
            CommitError::Failed { cause } => cause.code(),
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
            OffsetFetchError::Timeout { last_error, .. } => last_error.code(),
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
            last_error: RetriableError::NoAnswer,
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
