//! What the coordinator state machine is asked and what it answers, in the
//! terms of the group APIs but free of wire versions: the handlers in
//! `handlers/groups.rs` translate between these and each request version.

use bytes::Bytes;
use protocol::ErrorCode;

use crate::storage::TopicPartition;

/// One protocol a member supports, with its metadata (for consumers: the subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

#[derive(Debug, Clone)]
pub struct JoinGroup {
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// In the member's order of preference.
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: a new member first gets its id with `ErrorCode::MEMBER_ID_REQUIRED`.
    pub require_known_member_id: bool,
    /// JoinGroup v9+: a static leader rejoining a stable group may be told to skip assignment.
    pub supports_skip_assignment: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResult {
    pub error: ErrorCode,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// Only the leader gets the members (with their metadata for the chosen protocol).
    pub members: Vec<JoinedMember>,
}

impl JoinGroupResult {
    pub fn error(member_id: impl Into<String>, error: ErrorCode) -> Self {
        JoinGroupResult {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.into(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncGroup {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// SyncGroup v5+: checked against the group's when given.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// Sent by the leader only: each member's assignment.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupResult {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncGroupResult {
    pub fn error(error: ErrorCode) -> Self {
        SyncGroupResult {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberIdentity {
    /// Empty when an administrator removes a static member by instance id.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LeaveGroup {
    pub group_id: String,
    pub members: Vec<MemberIdentity>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupResult {
    pub error: ErrorCode,
    pub members: Vec<(MemberIdentity, ErrorCode)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetToCommit {
    pub offset: i64,
    /// -1 when the client names none.
    pub leader_epoch: i32,
    /// A null metadata is stored as the empty string, as Kafka does.
    pub metadata: String,
}

#[derive(Debug, Clone)]
pub struct OffsetCommit {
    pub group_id: String,
    /// -1 for a consumer that does not use group management.
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// OffsetCommit v2-v4: how long to keep these offsets; `None` for the broker default.
    pub retention_ms: Option<i64>,
    /// OffsetCommit v9+ answers `ErrorCode::GROUP_ID_NOT_FOUND` where older versions got `ErrorCode::ILLEGAL_GENERATION`.
    pub group_id_not_found_supported: bool,
    pub offsets: Vec<(TopicPartition, OffsetToCommit)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitResult {
    pub partitions: Vec<(TopicPartition, ErrorCode)>,
}

#[derive(Debug, Clone)]
pub struct OffsetDelete {
    pub group_id: String,
    pub partitions: Vec<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetDeleteResult {
    /// When set, the partitions carry no errors of their own.
    pub error: ErrorCode,
    pub partitions: Vec<(TopicPartition, ErrorCode)>,
}

/// A committed offset as OffsetFetch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub partition: i32,
    /// -1 when nothing is committed.
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// OffsetFetch results: each topic with its partitions' committed offsets.
pub type FetchedOffsets = Vec<(String, Vec<FetchedOffset>)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    /// The selected protocol while the group is Stable, else empty.
    pub protocol_name: String,
    pub members: Vec<DescribedMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

/// Every answer the state machine sends back to a waiting request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    JoinGroup(JoinGroupResult),
    SyncGroup(SyncGroupResult),
    Heartbeat(ErrorCode),
    LeaveGroup(LeaveGroupResult),
    OffsetCommit(OffsetCommitResult),
    DeleteGroup(ErrorCode),
    OffsetDelete(OffsetDeleteResult),
}
