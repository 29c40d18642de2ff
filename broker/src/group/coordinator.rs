//! The state machine of the groups of one `__consumer_offsets` partition:
//! Kafka's classic rebalance protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup), static membership (KIP-345), committed offsets and their
//! expiry. No I/O: [`Coordinator::handle`] takes an [`Event`] and the time,
//! and returns [`Command`]s (answer a waiting request, append records to the
//! partition). Appends complete through [`Event::AppendCompleted`], so a
//! response that depends on a write (an offset commit, the leader's
//! assignment) goes out only once the write is in the log.
//!
//! Timeouts (sessions, rebalances, the initial rebalance delay, members that
//! never send SyncGroup) are deadlines in [`Deadlines`]; every event fires the
//! deadlines that have passed, and the runtime sends [`Event::Tick`] at
//! [`Coordinator::next_deadline`].
//!
//! The logic follows Apache Kafka's classic group coordinator
//! (`GroupMetadataManager` in Kafka 4.x, `GroupCoordinator.scala` before it);
//! comments name the places where this one differs.

use std::collections::HashMap;

use crate::group::messages::*;
use crate::group::records::{GroupMetadataValue, OffsetCommitValue, RecordKey};
use crate::group::state::{
    CommittedOffset, Group, GroupState, JoinPhase, Member, CONSUMER_PROTOCOL_TYPE,
};
use crate::group::timers::Deadlines;
use crate::group::GroupConfig;
use crate::storage::TopicPartition;
use bytes::Bytes;
use protocol::ErrorCode;

/// How long a new member may wait in a JoinGroup before it is dropped
/// (Kafka's `NewMemberJoinTimeoutMs`): a client that gave up and retried
/// must not leave a defunct member behind for a whole rebalance.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 5 * 60 * 1000;
/// Groups one `__consumer_offsets` partition holds; new groups past it are refused
/// with `ErrorCode::COORDINATOR_NOT_AVAILABLE` until offset expiry removes some.
pub const GROUPS_PER_PARTITION_MAX: usize = 20_000;
/// Tombstones written in one append by the expiry pass.
pub const TOMBSTONES_PER_APPEND_MAX: usize = 1_000;
/// Longest string a record field holds (an `i16` length).
pub const RECORD_STRING_BYTES_MAX: usize = i16::MAX as usize;
/// A member id is `<client id or instance id>-<uuid>`: the suffix takes this much.
pub const MEMBER_ID_SUFFIX_BYTES: usize = 37;
/// Deadlines fired in one event; the rest fire on the next tick.
pub const DEADLINES_FIRED_PER_EVENT_MAX: usize = 100_000;
/// Bitfield of the operations on a group (READ, DELETE, DESCRIBE) for
/// DescribeGroups with `include_authorized_operations`: there are no ACLs, so all.
pub const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// Identifies an append the state machine asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WriteId(pub u64);

/// A record for `__consumer_offsets`: a null value is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetsRecord {
    pub key: RecordKey,
    pub value: Option<RecordValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordValue {
    OffsetCommit(OffsetCommitValue),
    GroupMetadata(GroupMetadataValue),
}

pub enum Event<R> {
    JoinGroup {
        reply: R,
        request: JoinGroup,
    },
    SyncGroup {
        reply: R,
        request: SyncGroup,
    },
    Heartbeat {
        reply: R,
        request: Heartbeat,
    },
    LeaveGroup {
        reply: R,
        request: LeaveGroup,
    },
    OffsetCommit {
        reply: R,
        request: OffsetCommit,
    },
    DeleteGroup {
        reply: R,
        group_id: String,
    },
    OffsetDelete {
        reply: R,
        request: OffsetDelete,
    },
    /// The outcome of a [`Command::Append`]: `Err` carries the partition's error code.
    AppendCompleted {
        write: WriteId,
        result: Result<(), ErrorCode>,
    },
    /// Time has passed: fire due deadlines.
    Tick,
    /// The periodic offset-retention pass.
    ExpireOffsets,
    /// A topic was deleted: its committed offsets go too, as in Kafka.
    TopicDeleted {
        topic: String,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command<R> {
    Reply {
        to: R,
        response: Response,
    },
    /// Append these records as one batch, in this order, then report with
    /// [`Event::AppendCompleted`].
    Append {
        write: WriteId,
        records: Vec<OffsetsRecord>,
        timestamp_ms: i64,
    },
}

/// Where member ids get their unique suffix: random UUIDs in the broker,
/// a counter in tests so that ids are predictable.
#[derive(Debug, Clone)]
pub enum MemberIds {
    Random,
    Sequential(u64),
}

impl MemberIds {
    fn next(&mut self, prefix: &str) -> String {
        match self {
            MemberIds::Random => format!("{prefix}-{}", uuid::Uuid::new_v4()),
            MemberIds::Sequential(n) => {
                *n += 1;
                format!("{prefix}-{n}")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TimerKey {
    /// A member's session: it must heartbeat (or be in a rebalance) by then.
    Heartbeat { group_id: String, member_id: String },
    /// A member told `ErrorCode::MEMBER_ID_REQUIRED` must join with its id by then.
    PendingMember { group_id: String, member_id: String },
    /// The end of the initial delay or of the rebalance timeout.
    Join { group_id: String },
    /// Members that have not sent SyncGroup by then are removed.
    Sync { group_id: String },
}

/// What to do when an append completes.
enum PendingWrite<R> {
    OffsetCommit {
        group_id: String,
        reply: R,
        written: Vec<(TopicPartition, CommittedOffset)>,
        refused: HashMap<TopicPartition, ErrorCode>,
        order: Vec<TopicPartition>,
    },
    /// The leader's assignment for `generation_id`.
    Assignment {
        group_id: String,
        generation_id: i32,
        assignment: HashMap<String, Bytes>,
    },
    /// The group went Empty; nothing waits on it.
    EmptyGroup { group_id: String },
    /// A static member rejoined a Stable group under a new member id.
    StaticMemberReplaced {
        group_id: String,
        group_instance_id: String,
        old_member_id: String,
        new_member_id: String,
        leader_before: Option<String>,
        supports_skip_assignment: bool,
        previous: MemberSettings,
    },
    /// Tombstones; `reply` (if any) is answered with `response` on success.
    Deletion { reply: Option<(R, Response)> },
}

/// A member's settings a failed static-member replacement restores.
struct MemberSettings {
    protocols: Vec<Protocol>,
    rebalance_timeout_ms: i32,
    session_timeout_ms: i32,
}

pub struct Coordinator<R> {
    config: GroupConfig,
    groups: HashMap<String, Group<R>>,
    deadlines: Deadlines<TimerKey>,
    writes: HashMap<WriteId, PendingWrite<R>>,
    next_write_id: u64,
    member_ids: MemberIds,
}

impl<R> Coordinator<R> {
    pub fn new(config: GroupConfig, member_ids: MemberIds) -> Self {
        Coordinator {
            config,
            groups: HashMap::new(),
            deadlines: Deadlines::default(),
            writes: HashMap::new(),
            next_write_id: 0,
            member_ids,
        }
    }

    /// Installs a group rebuilt from the log (see `load.rs`): its members'
    /// sessions start now, and a group above `group.max.size` rebalances.
    pub fn install_loaded_group(&mut self, mut group: Group<R>, now_ms: i64) {
        assert!(
            matches!(group.state(), GroupState::Empty | GroupState::Stable),
            "a loaded group is Empty or Stable"
        );
        for member in group.members() {
            self.deadlines.schedule(
                TimerKey::Heartbeat {
                    group_id: group.group_id.clone(),
                    member_id: member.member_id.clone(),
                },
                now_ms + i64::from(member.session_timeout_ms),
            );
        }
        if group.member_count() > self.config.group_members_max {
            let mut discarded = Vec::new();
            self.prepare_rebalance(
                &mut group,
                "the loaded group is over group.max.size",
                now_ms,
                &mut discarded,
            );
            assert!(
                discarded.is_empty(),
                "a loaded group has no waiting requests"
            );
        }
        let id = group.group_id.clone();
        self.groups.insert(id, group);
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Feeds one event; returns what to do.
    pub fn handle(&mut self, event: Event<R>, now_ms: i64) -> Vec<Command<R>> {
        let mut out = Vec::new();
        match event {
            Event::JoinGroup { reply, request } => {
                self.join_group(reply, request, now_ms, &mut out)
            }
            Event::SyncGroup { reply, request } => {
                self.sync_group(reply, request, now_ms, &mut out)
            }
            Event::Heartbeat { reply, request } => {
                let error = self.heartbeat(&request, now_ms);
                out.push(Command::Reply {
                    to: reply,
                    response: Response::Heartbeat(error),
                });
            }
            Event::LeaveGroup { reply, request } => {
                let result = self.leave_group(request, now_ms, &mut out);
                out.push(Command::Reply {
                    to: reply,
                    response: Response::LeaveGroup(result),
                });
            }
            Event::OffsetCommit { reply, request } => {
                self.offset_commit(reply, request, now_ms, &mut out)
            }
            Event::DeleteGroup { reply, group_id } => {
                self.delete_group(reply, group_id, now_ms, &mut out)
            }
            Event::OffsetDelete { reply, request } => {
                self.offset_delete(reply, request, now_ms, &mut out)
            }
            Event::AppendCompleted { write, result } => {
                self.append_completed(write, result, now_ms, &mut out)
            }
            Event::Tick => {}
            Event::ExpireOffsets => self.expire_offsets(now_ms, &mut out),
            Event::TopicDeleted { topic } => self.topic_deleted(&topic, now_ms, &mut out),
        }
        self.fire_due_deadlines(now_ms, &mut out);
        out
    }

    /// When the machine next needs a [`Event::Tick`].
    pub fn next_deadline(&self) -> Option<i64> {
        self.deadlines.next_deadline()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(Group::state)
    }

    pub fn group(&self, group_id: &str) -> Option<&Group<R>> {
        self.groups.get(group_id)
    }

    /// Appends issued and not yet completed.
    pub fn writes_in_flight(&self) -> usize {
        self.writes.len()
    }

    /// Gives up the partition (its leadership moved): every waiting request
    /// is answered `ErrorCode::NOT_COORDINATOR`, so its client looks for the new coordinator.
    pub fn unload(mut self) -> Vec<Command<R>> {
        let mut out = Vec::new();
        for (_, mut group) in self.groups.drain() {
            for member in group.members_mut() {
                if let Some(to) = member.awaiting_join.take() {
                    out.push(join_reply(
                        to,
                        JoinGroupResult::error(
                            member.member_id.clone(),
                            ErrorCode::NOT_COORDINATOR,
                        ),
                    ));
                }
                if let Some(to) = member.awaiting_sync.take() {
                    out.push(sync_reply(
                        to,
                        SyncGroupResult::error(ErrorCode::NOT_COORDINATOR),
                    ));
                }
            }
        }
        for (_, write) in self.writes.drain() {
            match write {
                PendingWrite::OffsetCommit { reply, order, .. } => out.push(Command::Reply {
                    to: reply,
                    response: Response::OffsetCommit(OffsetCommitResult {
                        partitions: order
                            .into_iter()
                            .map(|tp| (tp, ErrorCode::NOT_COORDINATOR))
                            .collect(),
                    }),
                }),
                PendingWrite::Deletion {
                    reply: Some((to, response)),
                } => out.push(Command::Reply {
                    to,
                    response: failed_deletion(response, ErrorCode::NOT_COORDINATOR),
                }),
                _ => {}
            }
        }
        out
    }

    // ---- read-only queries --------------------------------------------------

    /// Committed offsets for OffsetFetch: the named partitions (-1 where
    /// nothing is committed, and for an unknown group), or every committed
    /// offset of the group when `topics` is `None`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> FetchedOffsets {
        let group = self.groups.get(group_id);
        let fetched = |tp: &TopicPartition| {
            let committed = group.and_then(|g| g.offsets.get(tp));
            FetchedOffset {
                partition: tp.partition,
                offset: committed.map_or(-1, |c| c.offset),
                leader_epoch: committed.map_or(-1, |c| c.leader_epoch),
                metadata: committed.map(|c| c.metadata.clone()).unwrap_or_default(),
            }
        };
        match topics {
            Some(topics) => topics
                .iter()
                .map(|(topic, partitions)| {
                    let offsets = partitions
                        .iter()
                        .map(|p| fetched(&TopicPartition::new(topic.clone(), *p)))
                        .collect();
                    (topic.clone(), offsets)
                })
                .collect(),
            None => {
                let mut out: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
                for tp in group.into_iter().flat_map(|g| g.offsets.keys()) {
                    match out.last_mut() {
                        Some((topic, offsets)) if *topic == tp.topic => offsets.push(fetched(tp)),
                        _ => out.push((tp.topic.clone(), vec![fetched(tp)])),
                    }
                }
                out
            }
        }
    }

    /// DescribeGroups: member metadata and assignments only while Stable, as Kafka does.
    pub fn describe_group(&self, group_id: &str) -> Option<GroupDescription> {
        let group = self.groups.get(group_id)?;
        let stable_protocol = group
            .is(GroupState::Stable)
            .then(|| group.protocol_name.clone())
            .flatten();
        Some(GroupDescription {
            state: group.state().name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_name: stable_protocol.clone().unwrap_or_default(),
            members: group
                .members()
                .map(|m| DescribedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: stable_protocol
                        .as_deref()
                        .and_then(|p| m.metadata_for(p))
                        .cloned()
                        .unwrap_or_default(),
                    assignment: if stable_protocol.is_some() {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }

    pub fn list_groups(&self) -> Vec<ListedGroup> {
        let mut groups: Vec<ListedGroup> = self
            .groups
            .values()
            .filter(|g| !g.is(GroupState::Dead))
            .map(|g| ListedGroup {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state().name(),
            })
            .collect();
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        groups
    }

    // ---- JoinGroup ------------------------------------------------------------

    fn join_group(&mut self, reply: R, request: JoinGroup, now_ms: i64, out: &mut Vec<Command<R>>) {
        let error = |code| JoinGroupResult::error(request.member_id.clone(), code);
        if request.group_id.is_empty() || request.group_id.len() > RECORD_STRING_BYTES_MAX {
            return out.push(join_reply(reply, error(ErrorCode::INVALID_GROUP_ID)));
        }
        let prefix_bytes_max = RECORD_STRING_BYTES_MAX - MEMBER_ID_SUFFIX_BYTES;
        let too_long = request.client_id.len() > prefix_bytes_max
            || request.member_id.len() > RECORD_STRING_BYTES_MAX
            || request
                .group_instance_id
                .as_ref()
                .is_some_and(|i| i.len() > prefix_bytes_max)
            || request.protocol_type.len() > RECORD_STRING_BYTES_MAX
            || request
                .protocols
                .iter()
                .any(|p| p.name.len() > RECORD_STRING_BYTES_MAX);
        if too_long {
            return out.push(join_reply(reply, error(ErrorCode::INVALID_REQUEST)));
        }
        if request.session_timeout_ms < self.config.session_timeout_ms_min
            || request.session_timeout_ms > self.config.session_timeout_ms_max
        {
            return out.push(join_reply(reply, error(ErrorCode::INVALID_SESSION_TIMEOUT)));
        }
        let is_unknown_member = request.member_id.is_empty();
        let mut group = match self.groups.remove(&request.group_id) {
            Some(group) => group,
            None if !is_unknown_member => {
                return out.push(join_reply(reply, error(ErrorCode::UNKNOWN_MEMBER_ID)));
            }
            None if self.groups.len() >= GROUPS_PER_PARTITION_MAX => {
                tracing::warn!(group = %request.group_id, "refusing a new group: {GROUPS_PER_PARTITION_MAX} groups on this partition");
                return out.push(join_reply(
                    reply,
                    error(ErrorCode::COORDINATOR_NOT_AVAILABLE),
                ));
            }
            None => Group::new(request.group_id.clone(), now_ms),
        };
        if !self.accept_joining_member(&group, &request.member_id) {
            tracing::info!(group = %group.group_id, member = %request.member_id, "group is full (group.max.size {})", self.config.group_members_max);
            self.remove_member_quietly(&mut group, &request.member_id, out);
            out.push(join_reply(
                reply,
                JoinGroupResult::error("", ErrorCode::GROUP_MAX_SIZE_REACHED),
            ));
        } else if is_unknown_member {
            self.join_new_member(&mut group, reply, request, now_ms, out);
        } else {
            self.join_current_member(&mut group, reply, request, now_ms, out);
        }
        if group.is(GroupState::PreparingRebalance) {
            self.try_complete_join(&mut group, now_ms, out);
        }
        self.restore(group);
    }

    /// Kafka's `acceptJoiningMember`: existing members are always let back in;
    /// new ones up to `group.max.size`.
    fn accept_joining_member(&self, group: &Group<R>, member_id: &str) -> bool {
        let max = self.config.group_members_max;
        match group.state() {
            GroupState::Empty | GroupState::Dead => {
                // Not in Kafka: members still fetching their id count too, so
                // a flood of first JoinGroups cannot grow the group unbounded.
                group.has_member(member_id)
                    || group.pending_members.contains(member_id)
                    || group.pending_members.len() < max
            }
            GroupState::PreparingRebalance => {
                group
                    .member(member_id)
                    .is_some_and(|m| m.awaiting_join.is_some())
                    || group.members_awaiting_join() < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                group.has_member(member_id) || group.member_count() < max
            }
        }
    }

    fn join_new_member(
        &mut self,
        group: &mut Group<R>,
        reply: R,
        request: JoinGroup,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        if group.is(GroupState::Dead) {
            return out.push(join_reply(
                reply,
                JoinGroupResult::error("", ErrorCode::COORDINATOR_NOT_AVAILABLE),
            ));
        }
        if !group.supports_protocols(&request.protocol_type, &request.protocols) {
            return out.push(join_reply(
                reply,
                JoinGroupResult::error("", ErrorCode::INCONSISTENT_GROUP_PROTOCOL),
            ));
        }
        let prefix = request
            .group_instance_id
            .as_deref()
            .unwrap_or(&request.client_id);
        let new_member_id = self.member_ids.next(prefix);
        match request.group_instance_id.clone() {
            Some(instance) => match group.static_member_id(&instance).map(str::to_string) {
                Some(old_member_id) => self.replace_static_member_and_rebalance(
                    group,
                    reply,
                    request,
                    &instance,
                    old_member_id,
                    new_member_id,
                    now_ms,
                    out,
                ),
                None => {
                    self.add_member_and_rebalance(group, reply, request, new_member_id, now_ms, out)
                }
            },
            None if request.require_known_member_id => {
                // KIP-394: the member learns its id first and joins with it, so a
                // client that times out and retries does not leave ghosts behind.
                group.pending_members.insert(new_member_id.clone());
                self.deadlines.schedule(
                    TimerKey::PendingMember {
                        group_id: group.group_id.clone(),
                        member_id: new_member_id.clone(),
                    },
                    now_ms + i64::from(request.session_timeout_ms),
                );
                out.push(join_reply(
                    reply,
                    JoinGroupResult::error(new_member_id, ErrorCode::MEMBER_ID_REQUIRED),
                ));
            }
            None => {
                self.add_member_and_rebalance(group, reply, request, new_member_id, now_ms, out)
            }
        }
    }

    fn join_current_member(
        &mut self,
        group: &mut Group<R>,
        reply: R,
        request: JoinGroup,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        let member_id = request.member_id.clone();
        let error = |code| JoinGroupResult::error(member_id.clone(), code);
        if group.is(GroupState::Dead) {
            return out.push(join_reply(
                reply,
                error(ErrorCode::COORDINATOR_NOT_AVAILABLE),
            ));
        }
        if !group.supports_protocols(&request.protocol_type, &request.protocols) {
            return out.push(join_reply(
                reply,
                error(ErrorCode::INCONSISTENT_GROUP_PROTOCOL),
            ));
        }
        if group.pending_members.contains(&member_id) {
            if request.group_instance_id.is_some() {
                // Kafka never issues a pending id to a static member; this
                // request mixes the two (Kafka answers it the same way).
                return out.push(join_reply(reply, error(ErrorCode::UNKNOWN_SERVER_ERROR)));
            }
            self.deadlines.cancel(&TimerKey::PendingMember {
                group_id: group.group_id.clone(),
                member_id: member_id.clone(),
            });
            return self.add_member_and_rebalance(group, reply, request, member_id, now_ms, out);
        }
        let instance = request.group_instance_id.as_deref();
        let unknown_instance = instance.is_some_and(|i| group.static_member_id(i).is_none());
        if group.is_static_member_fenced(instance, &member_id) {
            tracing::info!(group = %group.group_id, member = %member_id, instance = ?instance, "fencing an old incarnation of a static member");
            return out.push(join_reply(reply, error(ErrorCode::FENCED_INSTANCE_ID)));
        }
        if !group.has_member(&member_id) || unknown_instance {
            return out.push(join_reply(reply, error(ErrorCode::UNKNOWN_MEMBER_ID)));
        }
        let matches = group
            .member(&member_id)
            .is_some_and(|m| m.protocols == request.protocols);
        match group.state() {
            GroupState::PreparingRebalance => {
                let reason = format!("member {member_id} joining during PreparingRebalance");
                self.update_member_and_rebalance(group, reply, request, &reason, now_ms, out);
            }
            GroupState::CompletingRebalance if matches => {
                // The member lost the JoinGroup response: send it again.
                let result =
                    self.current_generation(group, &member_id, group.is_leader(&member_id));
                out.push(join_reply(reply, result));
            }
            GroupState::CompletingRebalance => {
                let reason =
                    format!("member {member_id} changed its metadata during CompletingRebalance");
                self.update_member_and_rebalance(group, reply, request, &reason, now_ms, out);
            }
            GroupState::Stable if group.is_leader(&member_id) || !matches => {
                // The leader rejoining asks for a rebalance (e.g. topic metadata
                // changed); so does a member whose metadata changed.
                let reason = format!("member {member_id} rejoining a Stable group");
                self.update_member_and_rebalance(group, reply, request, &reason, now_ms, out);
            }
            GroupState::Stable => {
                let result = self.current_generation(group, &member_id, false);
                out.push(join_reply(reply, result));
            }
            GroupState::Empty | GroupState::Dead => {
                out.push(join_reply(reply, error(ErrorCode::UNKNOWN_MEMBER_ID)));
            }
        }
    }

    /// The JoinGroup answer for the generation in progress.
    fn current_generation(
        &self,
        group: &Group<R>,
        member_id: &str,
        with_members: bool,
    ) -> JoinGroupResult {
        JoinGroupResult {
            error: ErrorCode::NONE,
            generation_id: group.generation_id,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol_name.clone(),
            leader: group.leader_id.clone().unwrap_or_default(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: if with_members {
                group.current_member_metadata()
            } else {
                Vec::new()
            },
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        group: &mut Group<R>,
        reply: R,
        request: JoinGroup,
        member_id: String,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        if group.is(GroupState::PreparingRebalance) && group.generation_id == 0 {
            group.new_member_added = true;
        }
        let reason = format!(
            "adding new member {member_id}{}",
            request
                .reason
                .as_deref()
                .map(|r| format!(" (client reason: {r})"))
                .unwrap_or_default()
        );
        group.add_member(Member {
            member_id: member_id.clone(),
            group_instance_id: request.group_instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            session_timeout_ms: request.session_timeout_ms,
            protocol_type: request.protocol_type,
            protocols: request.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(reply),
            awaiting_sync: None,
            is_new: true,
        });
        // A new member cannot heartbeat before its first JoinGroup answer, and
        // its socket is parked meanwhile; it gets a long, fixed deadline instead.
        self.schedule_heartbeat(
            &group.group_id,
            &member_id,
            now_ms + NEW_MEMBER_JOIN_TIMEOUT_MS,
        );
        self.maybe_prepare_rebalance(group, &reason, now_ms, out);
    }

    fn update_member_and_rebalance(
        &mut self,
        group: &mut Group<R>,
        reply: R,
        request: JoinGroup,
        reason: &str,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        self.update_member(
            group,
            &request.member_id,
            reply,
            request.protocols,
            request.rebalance_timeout_ms,
            request.session_timeout_ms,
            out,
        );
        self.maybe_prepare_rebalance(group, reason, now_ms, out);
    }

    /// Takes a member's new protocols and timeouts and parks its JoinGroup.
    /// A JoinGroup it already had waiting is superseded (Kafka drops it
    /// unanswered; here it gets `ErrorCode::REBALANCE_IN_PROGRESS` so nothing waits forever).
    #[allow(clippy::too_many_arguments)]
    fn update_member(
        &mut self,
        group: &mut Group<R>,
        member_id: &str,
        reply: R,
        protocols: Vec<Protocol>,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        out: &mut Vec<Command<R>>,
    ) {
        let member = group.member_mut(member_id).expect("updated member exists");
        member.protocols = protocols;
        member.rebalance_timeout_ms = rebalance_timeout_ms;
        member.session_timeout_ms = session_timeout_ms;
        if let Some(superseded) = member.awaiting_join.replace(reply) {
            out.push(join_reply(
                superseded,
                JoinGroupResult::error(member_id, ErrorCode::REBALANCE_IN_PROGRESS),
            ));
        }
    }

    /// KIP-345: a known group.instance.id joining with no member id takes
    /// over its old member (fencing the old id) without a rebalance where
    /// Kafka does so: in a Stable group whose selected protocol stays the same.
    #[allow(clippy::too_many_arguments)]
    fn replace_static_member_and_rebalance(
        &mut self,
        group: &mut Group<R>,
        reply: R,
        request: JoinGroup,
        instance: &str,
        old_member_id: String,
        new_member_id: String,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        let leader_before = group.leader_id.clone();
        let previous = {
            let old = group.member(&old_member_id).expect("static member exists");
            MemberSettings {
                protocols: old.protocols.clone(),
                rebalance_timeout_ms: old.rebalance_timeout_ms,
                session_timeout_ms: old.session_timeout_ms,
            }
        };
        let (fenced_join, fenced_sync) =
            group.replace_static_member(instance, &old_member_id, &new_member_id);
        if let Some(to) = fenced_join {
            out.push(join_reply(
                to,
                JoinGroupResult::error(old_member_id.clone(), ErrorCode::FENCED_INSTANCE_ID),
            ));
        }
        if let Some(to) = fenced_sync {
            out.push(sync_reply(
                to,
                SyncGroupResult::error(ErrorCode::FENCED_INSTANCE_ID),
            ));
        }
        // The old id's session ends with it; the new id's starts now.
        self.deadlines.cancel(&TimerKey::Heartbeat {
            group_id: group.group_id.clone(),
            member_id: old_member_id.clone(),
        });
        self.schedule_heartbeat(
            &group.group_id,
            &new_member_id,
            now_ms + i64::from(request.session_timeout_ms),
        );
        self.update_member(
            group,
            &new_member_id,
            reply,
            request.protocols,
            request.rebalance_timeout_ms,
            request.session_timeout_ms,
            out,
        );
        tracing::info!(group = %group.group_id, instance, old = %old_member_id, new = %new_member_id, "static member rejoined with a new member id");
        match group.state() {
            GroupState::Stable => {
                if group.protocol_name.as_deref() == Some(group.select_protocol().as_str()) {
                    // Nothing the assignment depends on changed: persist the new
                    // member id and let the member carry on with its assignment.
                    let value = group.metadata_value(&group.current_assignment());
                    let record = group_metadata_record(&group.group_id, Some(value));
                    let write = PendingWrite::StaticMemberReplaced {
                        group_id: group.group_id.clone(),
                        group_instance_id: instance.to_string(),
                        old_member_id,
                        new_member_id,
                        leader_before,
                        supports_skip_assignment: request.supports_skip_assignment,
                        previous,
                    };
                    self.append(Some(group), write, vec![record], now_ms, out);
                } else {
                    let reason =
                        format!("static member {instance} rejoined with a change of protocol");
                    self.maybe_prepare_rebalance(group, &reason, now_ms, out);
                }
            }
            GroupState::CompletingRebalance => {
                let reason =
                    format!("static member {instance} rejoined during CompletingRebalance");
                self.prepare_rebalance(group, &reason, now_ms, out);
            }
            GroupState::PreparingRebalance => {}
            GroupState::Empty | GroupState::Dead => {
                panic!(
                    "group {} has a static member but is {}",
                    group.group_id,
                    group.state().name()
                )
            }
        }
    }

    // ---- rebalancing ------------------------------------------------------------

    fn maybe_prepare_rebalance(
        &mut self,
        group: &mut Group<R>,
        reason: &str,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        if matches!(
            group.state(),
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(group, reason, now_ms, out);
        }
    }

    fn prepare_rebalance(
        &mut self,
        group: &mut Group<R>,
        reason: &str,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        if group.is(GroupState::CompletingRebalance) {
            self.reset_and_propagate_assignment_error(
                group,
                ErrorCode::REBALANCE_IN_PROGRESS,
                now_ms,
                out,
            );
        }
        self.deadlines.cancel(&TimerKey::Sync {
            group_id: group.group_id.clone(),
        });
        let rebalance_timeout_ms = group.rebalance_timeout_ms();
        let (phase, wait_ms) = if group.is(GroupState::Empty) {
            let delay_ms = i64::from(self.config.initial_rebalance_delay_ms);
            (
                JoinPhase::InitialDelay {
                    delay_ms,
                    remaining_ms: (rebalance_timeout_ms - delay_ms).max(0),
                },
                delay_ms,
            )
        } else {
            (JoinPhase::Rebalance, rebalance_timeout_ms)
        };
        group.join_phase = Some(phase);
        self.deadlines.schedule(
            TimerKey::Join {
                group_id: group.group_id.clone(),
            },
            now_ms + wait_ms,
        );
        group.transition_to(GroupState::PreparingRebalance, now_ms);
        tracing::info!(group = %group.group_id, generation = group.generation_id, reason, "preparing to rebalance");
        self.try_complete_join(group, now_ms, out);
    }

    /// Completes the join phase early once every member has rejoined (never
    /// during the initial delay, which exists to let more members arrive).
    fn try_complete_join(&mut self, group: &mut Group<R>, now_ms: i64, out: &mut Vec<Command<R>>) {
        if group.is(GroupState::PreparingRebalance)
            && group.join_phase == Some(JoinPhase::Rebalance)
            && group.all_members_joined()
        {
            self.complete_join(group, now_ms, out);
        }
    }

    fn complete_join(&mut self, group: &mut Group<R>, now_ms: i64, out: &mut Vec<Command<R>>) {
        assert!(
            group.is(GroupState::PreparingRebalance),
            "only a rebalancing group completes a join"
        );
        self.deadlines.cancel(&TimerKey::Join {
            group_id: group.group_id.clone(),
        });
        group.join_phase = None;
        // Dynamic members that did not rejoin in time are gone; static ones
        // stay until their session expires (KIP-345).
        let not_rejoined: Vec<String> = group
            .members()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        if !not_rejoined.is_empty() {
            tracing::info!(group = %group.group_id, members = ?not_rejoined, "removing members that did not rejoin");
        }
        for member_id in &not_rejoined {
            self.remove_member_quietly(group, member_id, out);
        }
        if !group.maybe_elect_new_joined_leader() && group.has_members() {
            // Only static members are left and none rejoined: wait another
            // rebalance timeout for them to rejoin or for their sessions to end.
            tracing::warn!(group = %group.group_id, "no member rejoined; waiting another rebalance timeout");
            group.join_phase = Some(JoinPhase::Rebalance);
            self.deadlines.schedule(
                TimerKey::Join {
                    group_id: group.group_id.clone(),
                },
                now_ms + group.rebalance_timeout_ms().max(1),
            );
            return;
        }
        group.init_next_generation(now_ms);
        if group.is(GroupState::Empty) {
            tracing::info!(group = %group.group_id, generation = group.generation_id, "group is now empty");
            let value = group.metadata_value(&HashMap::new());
            let record = group_metadata_record(&group.group_id, Some(value));
            let write = PendingWrite::EmptyGroup {
                group_id: group.group_id.clone(),
            };
            self.append(Some(group), write, vec![record], now_ms, out);
            return;
        }
        tracing::info!(
            group = %group.group_id,
            generation = group.generation_id,
            protocol = ?group.protocol_name,
            members = group.member_count(),
            static_members = group.static_member_count(),
            "stabilized the group; waiting for the leader's assignment"
        );
        let leader_result =
            self.current_generation(group, group.leader_id.as_deref().unwrap_or_default(), true);
        for member_id in group.member_ids() {
            let is_leader = group.is_leader(&member_id);
            let member = group.member_mut(&member_id).expect("listed member exists");
            if let Some(to) = member.awaiting_join.take() {
                let result = JoinGroupResult {
                    member_id: member_id.clone(),
                    members: if is_leader {
                        leader_result.members.clone()
                    } else {
                        Vec::new()
                    },
                    ..leader_result.clone()
                };
                out.push(join_reply(to, result));
            }
            member.is_new = false;
            let session_timeout_ms = member.session_timeout_ms;
            group.pending_sync_members.insert(member_id.clone());
            self.schedule_heartbeat(
                &group.group_id,
                &member_id,
                now_ms + i64::from(session_timeout_ms),
            );
        }
        self.deadlines.schedule(
            TimerKey::Sync {
                group_id: group.group_id.clone(),
            },
            now_ms + group.rebalance_timeout_ms(),
        );
    }

    fn reset_and_propagate_assignment_error(
        &mut self,
        group: &mut Group<R>,
        error: ErrorCode,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        assert!(
            group.is(GroupState::CompletingRebalance),
            "assignments are reset only while completing a rebalance"
        );
        for member in group.members_mut() {
            member.assignment = Bytes::new();
        }
        self.propagate_assignment(group, error, now_ms, out);
    }

    /// Answers every waiting SyncGroup with the member's assignment (or
    /// `error`), and restarts those members' sessions.
    fn propagate_assignment(
        &mut self,
        group: &mut Group<R>,
        error: ErrorCode,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        let (protocol_type, protocol_name) = if error.is_ok() {
            (group.protocol_type.clone(), group.protocol_name.clone())
        } else {
            (None, None)
        };
        let group_id = group.group_id.clone();
        for member in group.members_mut() {
            if let Some(to) = member.awaiting_sync.take() {
                out.push(sync_reply(
                    to,
                    SyncGroupResult {
                        error,
                        protocol_type: protocol_type.clone(),
                        protocol_name: protocol_name.clone(),
                        assignment: member.assignment.clone(),
                    },
                ));
                self.deadlines.schedule(
                    TimerKey::Heartbeat {
                        group_id: group_id.clone(),
                        member_id: member.member_id.clone(),
                    },
                    now_ms + i64::from(member.session_timeout_ms),
                );
            }
        }
    }

    /// Removes a member after LeaveGroup or session expiry and lets the group
    /// react: a rebalance if it was running, or an earlier end of the join phase.
    fn remove_member_and_update_group(
        &mut self,
        group: &mut Group<R>,
        member_id: &str,
        reason: &str,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        if !group.has_member(member_id) {
            return;
        }
        self.remove_member_quietly(group, member_id, out);
        match group.state() {
            GroupState::Dead | GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(group, reason, now_ms, out)
            }
            GroupState::PreparingRebalance => self.try_complete_join(group, now_ms, out),
        }
    }

    /// Removes a member without triggering anything; its waiting requests
    /// are answered `ErrorCode::UNKNOWN_MEMBER_ID` so the client rejoins if it is alive.
    fn remove_member_quietly(
        &mut self,
        group: &mut Group<R>,
        member_id: &str,
        out: &mut Vec<Command<R>>,
    ) {
        self.deadlines.cancel(&TimerKey::Heartbeat {
            group_id: group.group_id.clone(),
            member_id: member_id.to_string(),
        });
        if let Some(member) = group.remove_member(member_id) {
            if let Some(to) = member.awaiting_join {
                out.push(join_reply(
                    to,
                    JoinGroupResult::error("", ErrorCode::UNKNOWN_MEMBER_ID),
                ));
            }
            if let Some(to) = member.awaiting_sync {
                out.push(sync_reply(
                    to,
                    SyncGroupResult::error(ErrorCode::UNKNOWN_MEMBER_ID),
                ));
            }
        }
    }

    // ---- SyncGroup, Heartbeat, LeaveGroup --------------------------------------

    fn sync_group(&mut self, reply: R, request: SyncGroup, now_ms: i64, out: &mut Vec<Command<R>>) {
        let Some(mut group) = self.groups.remove(&request.group_id) else {
            return out.push(sync_reply(
                reply,
                SyncGroupResult::error(ErrorCode::UNKNOWN_MEMBER_ID),
            ));
        };
        if let Err(error) = validate_sync_group(&group, &request) {
            out.push(sync_reply(reply, SyncGroupResult::error(error)));
            return self.restore(group);
        }
        match group.state() {
            GroupState::Empty => out.push(sync_reply(
                reply,
                SyncGroupResult::error(ErrorCode::UNKNOWN_MEMBER_ID),
            )),
            GroupState::PreparingRebalance => out.push(sync_reply(
                reply,
                SyncGroupResult::error(ErrorCode::REBALANCE_IN_PROGRESS),
            )),
            GroupState::CompletingRebalance => {
                let member = group
                    .member_mut(&request.member_id)
                    .expect("validated member exists");
                if let Some(superseded) = member.awaiting_sync.replace(reply) {
                    out.push(sync_reply(
                        superseded,
                        SyncGroupResult::error(ErrorCode::REBALANCE_IN_PROGRESS),
                    ));
                }
                group.pending_sync_members.remove(&request.member_id);
                if group.is_leader(&request.member_id) {
                    let mut assignment: HashMap<String, Bytes> =
                        request.assignments.into_iter().collect();
                    let missing: Vec<String> = group
                        .member_ids()
                        .into_iter()
                        .filter(|id| !assignment.contains_key(id))
                        .collect();
                    if !missing.is_empty() {
                        tracing::warn!(group = %group.group_id, ?missing, "the leader's assignment leaves members out; they get an empty one");
                    }
                    for id in missing {
                        assignment.insert(id, Bytes::new());
                    }
                    tracing::info!(
                        group = %group.group_id,
                        generation = group.generation_id,
                        members = group.member_count(),
                        "assignment received from the leader"
                    );
                    let value = group.metadata_value(&assignment);
                    let record = group_metadata_record(&group.group_id, Some(value));
                    let write = PendingWrite::Assignment {
                        group_id: group.group_id.clone(),
                        generation_id: group.generation_id,
                        assignment,
                    };
                    self.append(Some(&mut group), write, vec![record], now_ms, out);
                }
            }
            GroupState::Stable => {
                group.pending_sync_members.remove(&request.member_id);
                let member = group
                    .member(&request.member_id)
                    .expect("validated member exists");
                let result = SyncGroupResult {
                    error: ErrorCode::NONE,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment: member.assignment.clone(),
                };
                let session_timeout_ms = member.session_timeout_ms;
                out.push(sync_reply(reply, result));
                self.schedule_heartbeat(
                    &group.group_id,
                    &request.member_id,
                    now_ms + i64::from(session_timeout_ms),
                );
            }
            GroupState::Dead => unreachable!("validation refuses a dead group"),
        }
        self.restore(group);
    }

    fn heartbeat(&mut self, request: &Heartbeat, now_ms: i64) -> ErrorCode {
        let Some(group) = self.groups.get(&request.group_id) else {
            return ErrorCode::UNKNOWN_MEMBER_ID;
        };
        if group.is(GroupState::Dead) {
            return ErrorCode::COORDINATOR_NOT_AVAILABLE;
        }
        if let Err(error) =
            group.validate_member(&request.member_id, request.group_instance_id.as_deref())
        {
            return error;
        }
        if request.generation_id != group.generation_id {
            return ErrorCode::ILLEGAL_GENERATION;
        }
        let (answer, session_timeout_ms) = match group.state() {
            GroupState::Empty => return ErrorCode::UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => (
                ErrorCode::REBALANCE_IN_PROGRESS,
                group.member(&request.member_id),
            ),
            GroupState::CompletingRebalance | GroupState::Stable => {
                (ErrorCode::NONE, group.member(&request.member_id))
            }
            GroupState::Dead => unreachable!("checked above"),
        };
        let session_timeout_ms = session_timeout_ms
            .expect("validated member exists")
            .session_timeout_ms;
        let group_id = group.group_id.clone();
        self.schedule_heartbeat(
            &group_id,
            &request.member_id,
            now_ms + i64::from(session_timeout_ms),
        );
        answer
    }

    fn leave_group(
        &mut self,
        request: LeaveGroup,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) -> LeaveGroupResult {
        let Some(mut group) = self.groups.remove(&request.group_id) else {
            return LeaveGroupResult {
                error: ErrorCode::NONE,
                members: request
                    .members
                    .into_iter()
                    .map(|m| (m, ErrorCode::UNKNOWN_MEMBER_ID))
                    .collect(),
            };
        };
        if group.is(GroupState::Dead) {
            self.restore(group);
            return LeaveGroupResult {
                error: ErrorCode::COORDINATOR_NOT_AVAILABLE,
                members: Vec::new(),
            };
        }
        let mut results = Vec::with_capacity(request.members.len());
        for identity in request.members {
            let client_reason = identity
                .reason
                .as_deref()
                .map(|r| format!(" (client reason: {r})"))
                .unwrap_or_default();
            let reason =
                |member_id: &str| format!("member {member_id} left the group{client_reason}");
            let error = if identity.member_id.is_empty() {
                // An administrator removing a static member by its instance id.
                match identity
                    .group_instance_id
                    .as_deref()
                    .and_then(|i| group.static_member_id(i))
                    .map(str::to_string)
                {
                    Some(member_id) => {
                        tracing::info!(group = %group.group_id, member = %member_id, instance = ?identity.group_instance_id, "static member removed by instance id");
                        self.remove_member_and_update_group(
                            &mut group,
                            &member_id,
                            &reason(&member_id),
                            now_ms,
                            out,
                        );
                        ErrorCode::NONE
                    }
                    None => ErrorCode::UNKNOWN_MEMBER_ID,
                }
            } else if group.pending_members.remove(&identity.member_id) {
                self.deadlines.cancel(&TimerKey::PendingMember {
                    group_id: group.group_id.clone(),
                    member_id: identity.member_id.clone(),
                });
                if group.is(GroupState::PreparingRebalance) {
                    self.try_complete_join(&mut group, now_ms, out);
                }
                ErrorCode::NONE
            } else {
                match group
                    .validate_member(&identity.member_id, identity.group_instance_id.as_deref())
                {
                    Err(error) => error,
                    Ok(()) => {
                        tracing::info!(group = %group.group_id, member = %identity.member_id, "member left");
                        self.remove_member_and_update_group(
                            &mut group,
                            &identity.member_id,
                            &reason(&identity.member_id),
                            now_ms,
                            out,
                        );
                        ErrorCode::NONE
                    }
                }
            };
            results.push((identity, error));
        }
        self.restore(group);
        LeaveGroupResult {
            error: ErrorCode::NONE,
            members: results,
        }
    }

    // ---- offsets ------------------------------------------------------------------

    fn offset_commit(
        &mut self,
        reply: R,
        request: OffsetCommit,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        let order: Vec<TopicPartition> = request.offsets.iter().map(|(tp, _)| tp.clone()).collect();
        let fail_all = |error: ErrorCode| OffsetCommitResult {
            partitions: order.iter().map(|tp| (tp.clone(), error)).collect(),
        };
        if request.group_id.len() > RECORD_STRING_BYTES_MAX {
            return out.push(commit_reply(reply, fail_all(ErrorCode::INVALID_GROUP_ID)));
        }
        let mut group = match self.groups.remove(&request.group_id) {
            Some(group) => group,
            // A consumer without group management (generation -1) commits
            // into a "simple" group, created for it.
            None if request.generation_id < 0 => {
                if self.groups.len() >= GROUPS_PER_PARTITION_MAX {
                    tracing::warn!(group = %request.group_id, "refusing a new group: {GROUPS_PER_PARTITION_MAX} groups on this partition");
                    return out.push(commit_reply(
                        reply,
                        fail_all(ErrorCode::COORDINATOR_NOT_AVAILABLE),
                    ));
                }
                Group::new(request.group_id.clone(), now_ms)
            }
            None if request.group_id_not_found_supported => {
                return out.push(commit_reply(reply, fail_all(ErrorCode::GROUP_ID_NOT_FOUND)));
            }
            None => return out.push(commit_reply(reply, fail_all(ErrorCode::ILLEGAL_GENERATION))),
        };
        if let Err(error) = validate_offset_commit(&group, &request) {
            out.push(commit_reply(reply, fail_all(error)));
            return self.restore(group);
        }
        // In the classic protocol a commit keeps a member's session alive.
        if matches!(
            group.state(),
            GroupState::Stable | GroupState::PreparingRebalance
        ) {
            if let Some(member) = group.member(&request.member_id) {
                let at = now_ms + i64::from(member.session_timeout_ms);
                self.schedule_heartbeat(&group.group_id, &request.member_id, at);
            }
        }
        let mut refused = HashMap::new();
        let mut written = Vec::new();
        for (tp, offset) in request.offsets {
            if offset.metadata.len() > self.config.offset_metadata_bytes_max {
                refused.insert(tp, ErrorCode::OFFSET_METADATA_TOO_LARGE);
                continue;
            }
            written.push((
                tp,
                CommittedOffset {
                    offset: offset.offset,
                    leader_epoch: offset.leader_epoch,
                    metadata: offset.metadata,
                    commit_timestamp_ms: now_ms,
                    expire_timestamp_ms: request.retention_ms.map(|r| now_ms.saturating_add(r)),
                },
            ));
        }
        if written.is_empty() {
            let partitions = order.into_iter().map(|tp| {
                let error = refused.get(&tp).copied().unwrap_or(ErrorCode::NONE);
                (tp, error)
            });
            out.push(commit_reply(
                reply,
                OffsetCommitResult {
                    partitions: partitions.collect(),
                },
            ));
            return self.restore(group);
        }
        let records = written
            .iter()
            .map(|(tp, committed)| OffsetsRecord {
                key: RecordKey::OffsetCommit {
                    group: group.group_id.clone(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                },
                value: Some(RecordValue::OffsetCommit(committed.to_value())),
            })
            .collect();
        let write = PendingWrite::OffsetCommit {
            group_id: group.group_id.clone(),
            reply,
            written,
            refused,
            order,
        };
        self.append(Some(&mut group), write, records, now_ms, out);
        self.restore(group);
    }

    fn delete_group(&mut self, reply: R, group_id: String, now_ms: i64, out: &mut Vec<Command<R>>) {
        let Some(mut group) = self.groups.remove(&group_id) else {
            return out.push(Command::Reply {
                to: reply,
                response: Response::DeleteGroup(ErrorCode::GROUP_ID_NOT_FOUND),
            });
        };
        let error = match group.state() {
            GroupState::Dead => ErrorCode::GROUP_ID_NOT_FOUND,
            GroupState::Empty => ErrorCode::NONE,
            _ => ErrorCode::NON_EMPTY_GROUP,
        };
        if !error.is_ok() {
            out.push(Command::Reply {
                to: reply,
                response: Response::DeleteGroup(error),
            });
            return self.restore(group);
        }
        let mut records: Vec<OffsetsRecord> = std::mem::take(&mut group.offsets)
            .into_keys()
            .map(|tp| offset_tombstone(&group.group_id, &tp))
            .collect();
        records.push(group_metadata_record(&group.group_id, None));
        group.transition_to(GroupState::Dead, now_ms);
        tracing::info!(group = %group.group_id, offsets = records.len() - 1, "deleted the group");
        let write = PendingWrite::Deletion {
            reply: Some((reply, Response::DeleteGroup(ErrorCode::NONE))),
        };
        self.append(None, write, records, now_ms, out);
        self.restore(group);
    }

    fn offset_delete(
        &mut self,
        reply: R,
        request: OffsetDelete,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        let refused = |error| {
            Response::OffsetDelete(OffsetDeleteResult {
                error,
                partitions: Vec::new(),
            })
        };
        let Some(mut group) = self.groups.remove(&request.group_id) else {
            return out.push(Command::Reply {
                to: reply,
                response: refused(ErrorCode::GROUP_ID_NOT_FOUND),
            });
        };
        let group_error = match group.state() {
            GroupState::Dead => Some(ErrorCode::GROUP_ID_NOT_FOUND),
            GroupState::Empty => None,
            _ if group.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE) => None,
            _ => Some(ErrorCode::NON_EMPTY_GROUP),
        };
        if let Some(error) = group_error {
            out.push(Command::Reply {
                to: reply,
                response: refused(error),
            });
            return self.restore(group);
        }
        let mut partitions = Vec::with_capacity(request.partitions.len());
        let mut records = Vec::new();
        for tp in request.partitions {
            // A live consumer group keeps the offsets of topics it consumes.
            if !group.is(GroupState::Empty) && group.is_subscribed_to(&tp.topic) {
                partitions.push((tp, ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC));
                continue;
            }
            if group.offsets.remove(&tp).is_some() {
                records.push(offset_tombstone(&group.group_id, &tp));
            }
            partitions.push((tp, ErrorCode::NONE));
        }
        self.bury_if_empty(&mut group, &mut records, now_ms);
        let response = Response::OffsetDelete(OffsetDeleteResult {
            error: ErrorCode::NONE,
            partitions,
        });
        if records.is_empty() {
            out.push(Command::Reply {
                to: reply,
                response,
            });
        } else {
            let write = PendingWrite::Deletion {
                reply: Some((reply, response)),
            };
            self.append(None, write, records, now_ms, out);
        }
        self.restore(group);
    }

    /// Kafka's offset retention (KIP-211): once a group is Empty, its offsets
    /// expire `offsets.retention.minutes` after it became Empty (after their
    /// commit, for a simple group that never had members; at their explicit
    /// expire timestamp, for commits that carried one). A group with members
    /// keeps every offset (Kafka also expires offsets of topics a Stable
    /// consumer group no longer subscribes to; this coordinator does not).
    /// Groups left Empty with no offsets are removed.
    fn expire_offsets(&mut self, now_ms: i64, out: &mut Vec<Command<R>>) {
        let retention_ms = self.config.offsets_retention_ms;
        let group_ids: Vec<String> = self.groups.keys().cloned().collect();
        let mut records = Vec::new();
        for group_id in group_ids {
            let mut group = self.groups.remove(&group_id).expect("listed group exists");
            let eligible = group.is(GroupState::Empty)
                && group.pending_writes == 0
                && group.pending_members.is_empty();
            if eligible {
                let simple = group.protocol_type.is_none();
                let became_empty_ms = group.state_timestamp_ms;
                let expired: Vec<TopicPartition> = group
                    .offsets
                    .iter()
                    .filter(|(_, committed)| match committed.expire_timestamp_ms {
                        Some(expire_timestamp_ms) => now_ms >= expire_timestamp_ms,
                        None => {
                            let base = if simple {
                                committed.commit_timestamp_ms
                            } else {
                                became_empty_ms.unwrap_or(committed.commit_timestamp_ms)
                            };
                            now_ms.saturating_sub(base) >= retention_ms
                        }
                    })
                    .map(|(tp, _)| tp.clone())
                    .collect();
                if !expired.is_empty() {
                    tracing::info!(group = %group.group_id, expired = expired.len(), "expired committed offsets");
                }
                drop_offsets(&mut group, expired, &mut records);
                self.bury_if_empty(&mut group, &mut records, now_ms);
            }
            self.restore(group);
        }
        self.append_tombstones(records, now_ms, out);
    }

    /// Drops every group's committed offsets of a deleted topic, with tombstones.
    fn topic_deleted(&mut self, topic: &str, now_ms: i64, out: &mut Vec<Command<R>>) {
        let group_ids: Vec<String> = self.groups.keys().cloned().collect();
        let mut records = Vec::new();
        for group_id in group_ids {
            let mut group = self.groups.remove(&group_id).expect("listed group exists");
            let deleted: Vec<TopicPartition> = group
                .offsets
                .keys()
                .filter(|tp| tp.topic == topic)
                .cloned()
                .collect();
            drop_offsets(&mut group, deleted, &mut records);
            self.bury_if_empty(&mut group, &mut records, now_ms);
            self.restore(group);
        }
        self.append_tombstones(records, now_ms, out);
    }

    /// Writes tombstones in appends of bounded size, answering nobody.
    fn append_tombstones(
        &mut self,
        mut records: Vec<OffsetsRecord>,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        while !records.is_empty() {
            let rest = records.split_off(records.len().min(TOMBSTONES_PER_APPEND_MAX));
            let chunk = std::mem::replace(&mut records, rest);
            self.append(
                None,
                PendingWrite::Deletion { reply: None },
                chunk,
                now_ms,
                out,
            );
        }
    }

    /// An Empty group with no offsets left is removed, with a tombstone for its metadata.
    fn bury_if_empty(
        &mut self,
        group: &mut Group<R>,
        records: &mut Vec<OffsetsRecord>,
        now_ms: i64,
    ) {
        if group.is(GroupState::Empty) && group.offsets.is_empty() && group.pending_writes == 0 {
            tracing::info!(group = %group.group_id, generation = group.generation_id, "group is dead: empty with no committed offsets");
            group.transition_to(GroupState::Dead, now_ms);
            records.push(group_metadata_record(&group.group_id, None));
        }
    }

    // ---- appends ------------------------------------------------------------------

    fn append(
        &mut self,
        group: Option<&mut Group<R>>,
        write: PendingWrite<R>,
        records: Vec<OffsetsRecord>,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        assert!(!records.is_empty(), "an append carries records");
        if let Some(group) = group {
            group.pending_writes += 1;
        }
        self.next_write_id += 1;
        let id = WriteId(self.next_write_id);
        let previous = self.writes.insert(id, write);
        assert!(previous.is_none(), "write ids are unique");
        out.push(Command::Append {
            write: id,
            records,
            timestamp_ms: now_ms,
        });
    }

    fn append_completed(
        &mut self,
        write: WriteId,
        result: Result<(), ErrorCode>,
        now_ms: i64,
        out: &mut Vec<Command<R>>,
    ) {
        let pending = self
            .writes
            .remove(&write)
            .unwrap_or_else(|| panic!("completion of an unknown write {write:?}"));
        if let Err(error) = result {
            tracing::warn!(write = write.0, %error, "append to __consumer_offsets failed");
        }
        match pending {
            PendingWrite::OffsetCommit {
                group_id,
                reply,
                written,
                refused,
                order,
            } => {
                let outcome = match result {
                    Ok(()) => ErrorCode::NONE,
                    Err(error) => offset_write_error(error),
                };
                if let Some(group) = self.groups.get_mut(&group_id) {
                    group.pending_writes -= 1;
                    if outcome.is_ok() {
                        group.offsets.extend(written);
                    }
                }
                let partitions = order
                    .into_iter()
                    .map(|tp| {
                        let error = refused.get(&tp).copied().unwrap_or(outcome);
                        (tp, error)
                    })
                    .collect();
                out.push(commit_reply(reply, OffsetCommitResult { partitions }));
            }
            PendingWrite::Assignment {
                group_id,
                generation_id,
                assignment,
            } => {
                let Some(mut group) = self.groups.remove(&group_id) else {
                    return;
                };
                group.pending_writes -= 1;
                // Another member may have joined meanwhile: only the generation
                // the assignment was made for becomes Stable.
                if group.is(GroupState::CompletingRebalance) && group.generation_id == generation_id
                {
                    match result {
                        Ok(()) => {
                            for member in group.members_mut() {
                                member.assignment = assignment
                                    .get(&member.member_id)
                                    .cloned()
                                    .unwrap_or_default();
                            }
                            self.propagate_assignment(&mut group, ErrorCode::NONE, now_ms, out);
                            group.transition_to(GroupState::Stable, now_ms);
                        }
                        Err(error) => {
                            self.reset_and_propagate_assignment_error(
                                &mut group,
                                group_write_error(error),
                                now_ms,
                                out,
                            );
                            self.maybe_prepare_rebalance(
                                &mut group,
                                "storing the assignment failed",
                                now_ms,
                                out,
                            );
                        }
                    }
                }
                self.restore(group);
            }
            PendingWrite::EmptyGroup { group_id } => {
                // Nobody waits; a failure only means an older generation is on
                // disk, which is safe for a group without members.
                if let Some(group) = self.groups.get_mut(&group_id) {
                    group.pending_writes -= 1;
                }
            }
            PendingWrite::StaticMemberReplaced {
                group_id,
                group_instance_id,
                old_member_id,
                new_member_id,
                leader_before,
                supports_skip_assignment,
                previous,
            } => {
                let Some(mut group) = self.groups.remove(&group_id) else {
                    return;
                };
                group.pending_writes -= 1;
                if group.static_member_id(&group_instance_id) == Some(new_member_id.as_str()) {
                    match result {
                        Ok(()) => {
                            let is_leader = group.is_leader(&new_member_id);
                            // Before JoinGroup v9 the old leader id is returned, so a
                            // rejoining leader does not run a pointless assignment a
                            // Stable group would not send out; v9+ says skip_assignment.
                            let result = JoinGroupResult {
                                error: ErrorCode::NONE,
                                generation_id: group.generation_id,
                                protocol_type: group.protocol_type.clone(),
                                protocol_name: group.protocol_name.clone(),
                                leader: if supports_skip_assignment {
                                    group.leader_id.clone().unwrap_or_default()
                                } else {
                                    leader_before.unwrap_or_default()
                                },
                                skip_assignment: is_leader && supports_skip_assignment,
                                member_id: new_member_id.clone(),
                                members: if is_leader && supports_skip_assignment {
                                    group.current_member_metadata()
                                } else {
                                    Vec::new()
                                },
                            };
                            let member = group
                                .member_mut(&new_member_id)
                                .expect("replaced member exists");
                            if let Some(to) = member.awaiting_join.take() {
                                out.push(join_reply(to, result));
                            }
                        }
                        Err(error) => {
                            // Undo: the old member id stays the static member's.
                            let (waiting, _) = group.replace_static_member(
                                &group_instance_id,
                                &new_member_id,
                                &old_member_id,
                            );
                            let member = group
                                .member_mut(&old_member_id)
                                .expect("restored member exists");
                            member.protocols = previous.protocols;
                            member.rebalance_timeout_ms = previous.rebalance_timeout_ms;
                            member.session_timeout_ms = previous.session_timeout_ms;
                            let session_timeout_ms = member.session_timeout_ms;
                            self.deadlines.cancel(&TimerKey::Heartbeat {
                                group_id: group_id.clone(),
                                member_id: new_member_id.clone(),
                            });
                            self.schedule_heartbeat(
                                &group_id,
                                &old_member_id,
                                now_ms + i64::from(session_timeout_ms),
                            );
                            if let Some(to) = waiting {
                                let result = JoinGroupResult {
                                    leader: leader_before.unwrap_or_default(),
                                    generation_id: group.generation_id,
                                    protocol_type: group.protocol_type.clone(),
                                    protocol_name: group.protocol_name.clone(),
                                    ..JoinGroupResult::error("", group_write_error(error))
                                };
                                out.push(join_reply(to, result));
                            }
                        }
                    }
                }
                self.restore(group);
            }
            PendingWrite::Deletion { reply } => {
                if let Some((to, response)) = reply {
                    let response = match result {
                        Ok(()) => response,
                        Err(error) => failed_deletion(response, group_write_error(error)),
                    };
                    out.push(Command::Reply { to, response });
                }
            }
        }
    }

    // ---- deadlines ------------------------------------------------------------------

    fn schedule_heartbeat(&mut self, group_id: &str, member_id: &str, at_ms: i64) {
        self.deadlines.schedule(
            TimerKey::Heartbeat {
                group_id: group_id.to_string(),
                member_id: member_id.to_string(),
            },
            at_ms,
        );
    }

    fn fire_due_deadlines(&mut self, now_ms: i64, out: &mut Vec<Command<R>>) {
        for _ in 0..DEADLINES_FIRED_PER_EVENT_MAX {
            let Some(key) = self.deadlines.pop_due(now_ms) else {
                return;
            };
            self.fire(key, now_ms, out);
        }
    }

    fn fire(&mut self, key: TimerKey, now_ms: i64, out: &mut Vec<Command<R>>) {
        match key {
            TimerKey::Heartbeat {
                group_id,
                member_id,
            } => {
                let Some(mut group) = self.groups.remove(&group_id) else {
                    return;
                };
                if group
                    .member(&member_id)
                    .is_some_and(|m| !m.has_satisfied_heartbeat())
                {
                    tracing::info!(group = %group_id, member = %member_id, "member's session expired; removing it from the group");
                    let reason = format!("member {member_id}'s session expired");
                    self.remove_member_and_update_group(
                        &mut group, &member_id, &reason, now_ms, out,
                    );
                }
                self.restore(group);
            }
            TimerKey::PendingMember {
                group_id,
                member_id,
            } => {
                let Some(mut group) = self.groups.remove(&group_id) else {
                    return;
                };
                if group.pending_members.remove(&member_id) {
                    tracing::info!(group = %group_id, member = %member_id, "pending member did not join in its session timeout");
                    if group.is(GroupState::PreparingRebalance) {
                        self.try_complete_join(&mut group, now_ms, out);
                    }
                }
                self.restore(group);
            }
            TimerKey::Join { group_id } => {
                let Some(mut group) = self.groups.remove(&group_id) else {
                    return;
                };
                if group.is(GroupState::PreparingRebalance) {
                    match group.join_phase {
                        Some(JoinPhase::InitialDelay {
                            delay_ms,
                            remaining_ms,
                        }) if group.new_member_added && remaining_ms > 0 => {
                            // Members are still arriving: wait a little longer, within the rebalance timeout.
                            group.new_member_added = false;
                            let wait_ms = delay_ms.min(remaining_ms);
                            group.join_phase = Some(JoinPhase::InitialDelay {
                                delay_ms,
                                remaining_ms: (remaining_ms - wait_ms).max(0),
                            });
                            self.deadlines.schedule(
                                TimerKey::Join {
                                    group_id: group_id.clone(),
                                },
                                now_ms + wait_ms,
                            );
                        }
                        Some(_) => self.complete_join(&mut group, now_ms, out),
                        None => {}
                    }
                }
                self.restore(group);
            }
            TimerKey::Sync { group_id } => {
                let Some(mut group) = self.groups.remove(&group_id) else {
                    return;
                };
                let waiting = matches!(
                    group.state(),
                    GroupState::CompletingRebalance | GroupState::Stable
                ) && !group.pending_sync_members.is_empty();
                if waiting {
                    let missing: Vec<String> = group.pending_sync_members.iter().cloned().collect();
                    tracing::info!(group = %group_id, ?missing, "removing members that did not send SyncGroup in time");
                    for member_id in &missing {
                        self.remove_member_quietly(&mut group, member_id, out);
                    }
                    self.maybe_prepare_rebalance(
                        &mut group,
                        "members did not send SyncGroup in time",
                        now_ms,
                        out,
                    );
                }
                self.restore(group);
            }
        }
    }

    /// Puts a group back after an event; a Dead group leaves the coordinator,
    /// with whatever deadlines it still had. So does a group that never held
    /// anything (a first JoinGroup that failed, a member id never used):
    /// nothing about it is on disk, so nothing is lost.
    fn restore(&mut self, mut group: Group<R>) {
        let holds_nothing = group.is(GroupState::Empty)
            && group.generation_id == 0
            && !group.has_members()
            && group.pending_members.is_empty()
            && group.offsets.is_empty()
            && group.pending_writes == 0;
        if holds_nothing {
            group.transition_to(GroupState::Dead, 0);
        }
        if group.is(GroupState::Dead) {
            let group_id = group.group_id.clone();
            self.deadlines.cancel(&TimerKey::Join {
                group_id: group_id.clone(),
            });
            self.deadlines.cancel(&TimerKey::Sync {
                group_id: group_id.clone(),
            });
            for member_id in &group.pending_members {
                self.deadlines.cancel(&TimerKey::PendingMember {
                    group_id: group_id.clone(),
                    member_id: member_id.clone(),
                });
            }
            assert!(!group.has_members(), "only an empty group dies");
            return;
        }
        let previous = self.groups.insert(group.group_id.clone(), group);
        assert!(previous.is_none(), "a group is taken out once at a time");
    }
}

/// Kafka's SyncGroup checks, in Kafka's order.
fn validate_sync_group<R>(group: &Group<R>, request: &SyncGroup) -> Result<(), ErrorCode> {
    if group.is(GroupState::Dead) {
        return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
    }
    group.validate_member(&request.member_id, request.group_instance_id.as_deref())?;
    if request.generation_id != group.generation_id {
        return Err(ErrorCode::ILLEGAL_GENERATION);
    }
    if let Some(protocol_type) = &request.protocol_type {
        if group.protocol_type.as_ref() != Some(protocol_type) {
            return Err(ErrorCode::INCONSISTENT_GROUP_PROTOCOL);
        }
    }
    if let Some(protocol_name) = &request.protocol_name {
        if group.protocol_name.as_ref() != Some(protocol_name) {
            return Err(ErrorCode::INCONSISTENT_GROUP_PROTOCOL);
        }
    }
    Ok(())
}

/// Kafka's OffsetCommit checks for a classic group.
fn validate_offset_commit<R>(group: &Group<R>, request: &OffsetCommit) -> Result<(), ErrorCode> {
    if group.is(GroupState::Dead) {
        return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
    }
    if request.generation_id < 0 && group.is(GroupState::Empty) {
        // Generation -1: an admin client or a consumer without group
        // management may commit while the group has no members.
        return Ok(());
    }
    if request.generation_id >= 0
        || !request.member_id.is_empty()
        || request.group_instance_id.is_some()
    {
        group.validate_member(&request.member_id, request.group_instance_id.as_deref())?;
        if request.generation_id != group.generation_id {
            return Err(ErrorCode::ILLEGAL_GENERATION);
        }
    } else if !group.is(GroupState::Empty) {
        // Only members commit into a group that has members.
        return Err(ErrorCode::UNKNOWN_MEMBER_ID);
    }
    if group.is(GroupState::CompletingRebalance) {
        // The member has its new generation but not its assignment yet.
        return Err(ErrorCode::REBALANCE_IN_PROGRESS);
    }
    Ok(())
}

/// Kafka's mapping of a failed group-metadata append to what clients expect.
pub fn group_write_error(error: ErrorCode) -> ErrorCode {
    match error.code() {
        3 | 19 | 20 | 7 => ErrorCode::COORDINATOR_NOT_AVAILABLE,
        6 | 56 => ErrorCode::NOT_COORDINATOR,
        10 | 18 | 4 => ErrorCode::UNKNOWN_SERVER_ERROR,
        _ => error,
    }
}

/// Kafka's mapping of a failed offset-commit append.
pub fn offset_write_error(error: ErrorCode) -> ErrorCode {
    match error.code() {
        10 | 18 | 4 => ErrorCode::INVALID_COMMIT_OFFSET_SIZE,
        _ => group_write_error(error),
    }
}

fn failed_deletion(response: Response, error: ErrorCode) -> Response {
    match response {
        Response::DeleteGroup(_) => Response::DeleteGroup(error),
        Response::OffsetDelete(_) => Response::OffsetDelete(OffsetDeleteResult {
            error,
            partitions: Vec::new(),
        }),
        other => unreachable!("only deletions wait on tombstones, not {other:?}"),
    }
}

fn group_metadata_record(group_id: &str, value: Option<GroupMetadataValue>) -> OffsetsRecord {
    OffsetsRecord {
        key: RecordKey::GroupMetadata {
            group: group_id.to_string(),
        },
        value: value.map(RecordValue::GroupMetadata),
    }
}

/// Forgets a group's committed offsets of `partitions`, with a tombstone for each.
fn drop_offsets<R>(
    group: &mut Group<R>,
    partitions: Vec<TopicPartition>,
    records: &mut Vec<OffsetsRecord>,
) {
    for tp in partitions {
        group.offsets.remove(&tp);
        records.push(offset_tombstone(&group.group_id, &tp));
    }
}

fn offset_tombstone(group_id: &str, tp: &TopicPartition) -> OffsetsRecord {
    OffsetsRecord {
        key: RecordKey::OffsetCommit {
            group: group_id.to_string(),
            topic: tp.topic.clone(),
            partition: tp.partition,
        },
        value: None,
    }
}

fn join_reply<R>(to: R, result: JoinGroupResult) -> Command<R> {
    Command::Reply {
        to,
        response: Response::JoinGroup(result),
    }
}

fn sync_reply<R>(to: R, result: SyncGroupResult) -> Command<R> {
    Command::Reply {
        to,
        response: Response::SyncGroup(result),
    }
}

fn commit_reply<R>(to: R, result: OffsetCommitResult) -> Command<R> {
    Command::Reply {
        to,
        response: Response::OffsetCommit(result),
    }
}
