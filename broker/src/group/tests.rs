//! The coordinator state machine, driven by hand: requests, time and append
//! outcomes in; responses and records out. No sockets, no clock but `now`.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use protocol::ErrorCode;

use crate::group::coordinator::{
    Command, Coordinator, Event, MemberIds, OffsetsRecord, RecordValue,
};
use crate::group::load::Loader;
use crate::group::messages::*;
use crate::group::records::{self, RecordKey};
use crate::group::state::GroupState;
use crate::group::GroupConfig;
use crate::storage::TopicPartition;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

/// Drives one state machine: each request gets a reply id, responses are
/// collected by id (each answered at most once), appends go to `log`.
struct Harness {
    coordinator: Coordinator<u64>,
    config: GroupConfig,
    now_ms: i64,
    next_reply: u64,
    responses: HashMap<u64, Response>,
    /// Every record appended, in order, as the partition would hold them.
    log: Vec<OffsetsRecord>,
    /// When set, appends fail with this error.
    fail_appends: Option<ErrorCode>,
}

fn config() -> GroupConfig {
    GroupConfig {
        session_timeout_ms_min: 1_000,
        ..GroupConfig::default()
    }
}

impl Harness {
    fn new() -> Self {
        Self::with_config(config())
    }

    fn with_config(config: GroupConfig) -> Self {
        Harness {
            coordinator: Coordinator::new(config.clone(), MemberIds::Sequential(0)),
            config,
            now_ms: 1_000_000,
            next_reply: 0,
            responses: HashMap::new(),
            log: Vec::new(),
            fail_appends: None,
        }
    }

    fn perform(&mut self, commands: Vec<Command<u64>>) {
        for command in commands {
            match command {
                Command::Reply { to, response } => {
                    let previous = self.responses.insert(to, response);
                    assert!(previous.is_none(), "request {to} answered twice");
                }
                Command::Append { write, records, .. } => {
                    let result = match self.fail_appends {
                        None => {
                            self.log.extend(records);
                            Ok(())
                        }
                        Some(error) => Err(error),
                    };
                    let more = self
                        .coordinator
                        .handle(Event::AppendCompleted { write, result }, self.now_ms);
                    self.perform(more);
                }
            }
        }
    }

    fn send(&mut self, event: impl FnOnce(u64) -> Event<u64>) -> u64 {
        self.next_reply += 1;
        let id = self.next_reply;
        let commands = self.coordinator.handle(event(id), self.now_ms);
        self.perform(commands);
        id
    }

    fn advance(&mut self, ms: i64) {
        self.now_ms += ms;
        let commands = self.coordinator.handle(Event::Tick, self.now_ms);
        self.perform(commands);
    }

    fn response(&self, id: u64) -> Option<&Response> {
        self.responses.get(&id)
    }

    fn join_result(&self, id: u64) -> JoinGroupResult {
        match self.response(id) {
            Some(Response::JoinGroup(result)) => result.clone(),
            other => panic!("request {id}: expected a JoinGroup answer, got {other:?}"),
        }
    }

    fn sync_result(&self, id: u64) -> SyncGroupResult {
        match self.response(id) {
            Some(Response::SyncGroup(result)) => result.clone(),
            other => panic!("request {id}: expected a SyncGroup answer, got {other:?}"),
        }
    }

    fn join(&mut self, request: JoinGroup) -> u64 {
        self.send(|reply| Event::JoinGroup { reply, request })
    }

    /// A v4+ member joining from scratch: fetch an id, join with it.
    fn join_new(&mut self, group: &str, client: &str) -> (u64, String) {
        let first = self.join(join_request(group, "", client));
        let result = self.join_result(first);
        assert_eq!(result.error, ErrorCode::MEMBER_ID_REQUIRED);
        let member_id = result.member_id;
        (
            self.join(join_request(group, &member_id, client)),
            member_id,
        )
    }

    fn sync(
        &mut self,
        group: &str,
        generation: i32,
        member: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> u64 {
        let request = SyncGroup {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments,
        };
        self.send(|reply| Event::SyncGroup { reply, request })
    }

    fn heartbeat(&mut self, group: &str, generation: i32, member: &str) -> ErrorCode {
        self.heartbeat_as(group, generation, member, None)
    }

    fn heartbeat_as(
        &mut self,
        group: &str,
        generation: i32,
        member: &str,
        instance: Option<&str>,
    ) -> ErrorCode {
        let request = Heartbeat {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: instance.map(str::to_string),
        };
        let id = self.send(|reply| Event::Heartbeat { reply, request });
        match self.response(id) {
            Some(Response::Heartbeat(error)) => *error,
            other => panic!("expected a heartbeat answer, got {other:?}"),
        }
    }

    fn leave(&mut self, group: &str, member: &str) -> LeaveGroupResult {
        let request = LeaveGroup {
            group_id: group.into(),
            members: vec![MemberIdentity {
                member_id: member.into(),
                group_instance_id: None,
                reason: None,
            }],
        };
        let id = self.send(|reply| Event::LeaveGroup { reply, request });
        match self.response(id) {
            Some(Response::LeaveGroup(result)) => result.clone(),
            other => panic!("expected a LeaveGroup answer, got {other:?}"),
        }
    }

    fn commit(
        &mut self,
        group: &str,
        generation: i32,
        member: &str,
        offsets: &[(&str, i32, i64)],
    ) -> Vec<ErrorCode> {
        let request = OffsetCommit {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
            retention_ms: None,
            group_id_not_found_supported: false,
            offsets: offsets
                .iter()
                .map(|(topic, partition, offset)| {
                    (
                        TopicPartition::new(*topic, *partition),
                        OffsetToCommit {
                            offset: *offset,
                            leader_epoch: -1,
                            metadata: String::new(),
                        },
                    )
                })
                .collect(),
        };
        let id = self.send(|reply| Event::OffsetCommit { reply, request });
        match self.response(id) {
            Some(Response::OffsetCommit(result)) => {
                result.partitions.iter().map(|(_, e)| *e).collect()
            }
            other => panic!("expected an OffsetCommit answer, got {other:?}"),
        }
    }

    fn committed(&self, group: &str, topic: &str, partition: i32) -> i64 {
        let fetched = self
            .coordinator
            .fetch_offsets(group, Some(&[(topic.to_string(), vec![partition])]));
        fetched[0].1[0].offset
    }

    fn state(&self, group: &str) -> Option<GroupState> {
        self.coordinator.group_state(group)
    }

    /// Two members A (leader) and B, Stable in generation 2 with assignments "a" and "b".
    fn stable_pair(&mut self, group: &str) -> (String, String) {
        let (join_a, a) = self.join_new(group, "client-a");
        assert_eq!(self.join_result(join_a).generation_id, 1);
        let sync_a = self.sync(group, 1, &a, vec![(a.clone(), Bytes::from_static(b"a"))]);
        assert!(self.sync_result(sync_a).error.is_ok());
        let (join_b, b) = self.join_new(group, "client-b");
        assert!(self.response(join_b).is_none(), "B waits for A to rejoin");
        let rejoin_a = self.join(join_request(group, &a, "client-a"));
        let leader_view = self.join_result(rejoin_a);
        assert_eq!(leader_view.generation_id, 2);
        assert_eq!(self.join_result(join_b).generation_id, 2);
        let sync_b = self.sync(group, 2, &b, vec![]);
        let sync_a = self.sync(
            group,
            2,
            &a,
            vec![
                (a.clone(), Bytes::from_static(b"a")),
                (b.clone(), Bytes::from_static(b"b")),
            ],
        );
        assert_eq!(
            self.sync_result(sync_b).assignment,
            Bytes::from_static(b"b")
        );
        assert_eq!(
            self.sync_result(sync_a).assignment,
            Bytes::from_static(b"a")
        );
        assert_eq!(self.state(group), Some(GroupState::Stable));
        (a, b)
    }
}

fn join_request(group: &str, member: &str, client: &str) -> JoinGroup {
    JoinGroup {
        group_id: group.into(),
        member_id: member.into(),
        group_instance_id: None,
        client_id: client.into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: vec![
            Protocol {
                name: "range".into(),
                metadata: subscription(&["t"]),
            },
            Protocol {
                name: "roundrobin".into(),
                metadata: subscription(&["t"]),
            },
        ],
        require_known_member_id: true,
        supports_skip_assignment: false,
        reason: None,
    }
}

fn static_join(group: &str, member: &str, instance: &str) -> JoinGroup {
    JoinGroup {
        group_instance_id: Some(instance.into()),
        ..join_request(group, member, instance)
    }
}

/// A consumer-protocol subscription (v0): version, topics, null user data.
fn subscription(topics: &[&str]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(0);
    out.put_i32(topics.len() as i32);
    for topic in topics {
        out.put_i16(topic.len() as i16);
        out.put_slice(topic.as_bytes());
    }
    out.put_i32(-1);
    out.freeze()
}

#[test]
fn new_member_learns_its_id_then_leads_generation_one() {
    // JoinGroup v4+: ErrorCode::MEMBER_ID_REQUIRED hands out an id; joining with it makes generation 1 with this member as leader.
    let mut h = Harness::new();
    let first = h.join(join_request("g", "", "client-a"));
    let required = h.join_result(first);
    assert_eq!(required.error, ErrorCode::MEMBER_ID_REQUIRED);
    assert!(
        required.member_id.starts_with("client-a-"),
        "{}",
        required.member_id
    );
    assert_eq!(h.state("g"), Some(GroupState::Empty));
    assert_eq!(h.coordinator.group("g").unwrap().pending_members.len(), 1);
    let join = h.join(join_request("g", &required.member_id, "client-a"));
    let result = h.join_result(join);
    assert_eq!(result.error, ErrorCode::NONE);
    assert_eq!(result.generation_id, 1);
    assert_eq!(result.leader, required.member_id);
    assert_eq!(result.protocol_name.as_deref(), Some("range"));
    assert_eq!(result.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(result.members.len(), 1, "the leader sees the members");
    assert_eq!(h.state("g"), Some(GroupState::CompletingRebalance));
    let sync = h.sync(
        "g",
        1,
        &result.member_id,
        vec![(result.member_id.clone(), Bytes::from_static(b"p0"))],
    );
    assert_eq!(h.sync_result(sync).assignment, Bytes::from_static(b"p0"));
    assert_eq!(h.state("g"), Some(GroupState::Stable));
    // The assignment is in the log as the group's metadata record, version 3.
    let Some(RecordValue::GroupMetadata(value)) = &h.log.last().unwrap().value else {
        panic!("expected group metadata, got {:?}", h.log.last())
    };
    assert_eq!(value.generation, 1);
    assert_eq!(value.members[0].assignment, Bytes::from_static(b"p0"));
}

#[test]
fn old_clients_join_without_the_member_id_round_trip() {
    // Before JoinGroup v4 a new member joins directly and gets its id in the answer.
    let mut h = Harness::new();
    let join = h.join(JoinGroup {
        require_known_member_id: false,
        ..join_request("g", "", "old")
    });
    let result = h.join_result(join);
    assert_eq!(result.error, ErrorCode::NONE);
    assert_eq!(result.generation_id, 1);
    assert!(result.member_id.starts_with("old-"));
}

#[test]
fn second_member_joining_makes_both_rejoin_into_the_next_generation() {
    // A Stable group rebalances when a member joins: the old member learns it from its heartbeat and rejoins.
    let mut h = Harness::new();
    let (join_a, a) = h.join_new("g", "a");
    assert_eq!(h.join_result(join_a).generation_id, 1);
    h.sync("g", 1, &a, vec![]);
    let (join_b, b) = h.join_new("g", "b");
    assert!(
        h.response(join_b).is_none(),
        "B waits in PreparingRebalance"
    );
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(h.heartbeat("g", 1, &a), ErrorCode::REBALANCE_IN_PROGRESS);
    let rejoin_a = h.join(join_request("g", &a, "a"));
    let leader = h.join_result(rejoin_a);
    let follower = h.join_result(join_b);
    assert_eq!((leader.generation_id, follower.generation_id), (2, 2));
    assert_eq!(leader.leader, a);
    assert_eq!(follower.leader, a);
    assert_eq!(leader.members.len(), 2);
    assert!(
        follower.members.is_empty(),
        "only the leader gets the members"
    );
    // The follower's SyncGroup waits for the leader's assignment.
    let sync_b = h.sync("g", 2, &b, vec![]);
    assert!(h.response(sync_b).is_none());
    let sync_a = h.sync("g", 2, &a, vec![(b.clone(), Bytes::from_static(b"for-b"))]);
    assert_eq!(
        h.sync_result(sync_b).assignment,
        Bytes::from_static(b"for-b")
    );
    assert_eq!(
        h.sync_result(sync_a).assignment,
        Bytes::new(),
        "members left out get nothing"
    );
    assert_eq!(h.heartbeat("g", 2, &b), ErrorCode::NONE);
}

#[test]
fn member_that_does_not_rejoin_in_the_rebalance_timeout_is_removed() {
    // When the rebalance timeout passes, dynamic members that did not rejoin are dropped and the rest go on.
    let mut h = Harness::new();
    let (a, b) = h.stable_pair("g");
    let (join_c, c) = h.join_new("g", "c");
    let rejoin_a = h.join(join_request("g", &a, "a"));
    assert!(h.response(rejoin_a).is_none(), "B has not rejoined yet");
    // B keeps heartbeating (so its session lives) but never rejoins; its heartbeats say a rebalance is on.
    for _ in 0..5 {
        h.advance(i64::from(REBALANCE_MS) / 6);
        assert_eq!(h.heartbeat("g", 2, &b), ErrorCode::REBALANCE_IN_PROGRESS);
    }
    assert!(h.response(rejoin_a).is_none());
    h.advance(i64::from(REBALANCE_MS) / 6);
    let result = h.join_result(rejoin_a);
    assert_eq!(result.generation_id, 3);
    let mut members: Vec<_> = result.members.iter().map(|m| m.member_id.clone()).collect();
    members.sort();
    let mut expected = vec![a.clone(), c.clone()];
    expected.sort();
    assert_eq!(members, expected);
    assert_eq!(h.join_result(join_c).generation_id, 3);
    assert_eq!(h.heartbeat("g", 3, &b), ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn silent_member_is_removed_after_its_session_timeout() {
    // A member that stops heartbeating is removed at its session timeout, and the survivor gets the group alone.
    let mut h = Harness::new();
    let (a, b) = h.stable_pair("g");
    for _ in 0..3 {
        h.advance(i64::from(SESSION_MS) / 4);
        assert_eq!(
            h.heartbeat("g", 2, &a),
            ErrorCode::NONE,
            "A's heartbeats keep it in"
        );
    }
    assert_eq!(h.state("g"), Some(GroupState::Stable));
    // B has said nothing for a whole session timeout.
    h.advance(i64::from(SESSION_MS) / 4);
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(h.heartbeat("g", 2, &a), ErrorCode::REBALANCE_IN_PROGRESS);
    let rejoin = h.join(join_request("g", &a, "a"));
    let result = h.join_result(rejoin);
    assert_eq!(result.generation_id, 3);
    assert_eq!(result.members.len(), 1);
    assert_eq!(h.heartbeat("g", 3, &b), ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn leaving_rebalances_and_the_last_leave_empties_the_group() {
    // LeaveGroup triggers a rebalance for the others; when the last member leaves the group is Empty and stored so.
    let mut h = Harness::new();
    let (a, b) = h.stable_pair("g");
    let left = h.leave("g", &b);
    assert_eq!(left.members[0].1, ErrorCode::NONE);
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    let rejoin = h.join(join_request("g", &a, "a"));
    assert_eq!(h.join_result(rejoin).generation_id, 3);
    h.sync("g", 3, &a, vec![]);
    assert_eq!(h.leave("g", &a).members[0].1, ErrorCode::NONE);
    assert_eq!(h.state("g"), Some(GroupState::Empty));
    let Some(RecordValue::GroupMetadata(value)) = &h.log.last().unwrap().value else {
        panic!("the empty group is stored")
    };
    assert_eq!(value.generation, 4);
    assert!(value.members.is_empty());
    assert_eq!(value.protocol, None);
    // Leaving again, or an unknown member, is ErrorCode::UNKNOWN_MEMBER_ID.
    assert_eq!(h.leave("g", &a).members[0].1, ErrorCode::UNKNOWN_MEMBER_ID);
    assert_eq!(
        h.leave("nope", &a).members[0].1,
        ErrorCode::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn requests_from_wrong_generations_and_unknown_members_are_refused() {
    // The errors clients rely on: ErrorCode::ILLEGAL_GENERATION, ErrorCode::UNKNOWN_MEMBER_ID, ErrorCode::REBALANCE_IN_PROGRESS.
    let mut h = Harness::new();
    let (a, b) = h.stable_pair("g");
    assert_eq!(h.heartbeat("g", 1, &a), ErrorCode::ILLEGAL_GENERATION);
    assert_eq!(
        h.heartbeat("g", 2, "stranger"),
        ErrorCode::UNKNOWN_MEMBER_ID
    );
    assert_eq!(h.heartbeat("nope", 2, &a), ErrorCode::UNKNOWN_MEMBER_ID);
    let sync = h.sync("g", 1, &a, vec![]);
    assert_eq!(h.sync_result(sync).error, ErrorCode::ILLEGAL_GENERATION);
    let sync = h.sync("g", 2, "stranger", vec![]);
    assert_eq!(h.sync_result(sync).error, ErrorCode::UNKNOWN_MEMBER_ID);
    // A Stable group answers a follower's SyncGroup with its current assignment.
    let sync = h.sync("g", 2, &b, vec![]);
    assert_eq!(h.sync_result(sync).assignment, Bytes::from_static(b"b"));
    // The leader rejoining a Stable group starts a rebalance; a SyncGroup then is refused.
    let rejoin = h.join(join_request("g", &a, "a"));
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    let sync = h.sync("g", 2, &b, vec![]);
    assert_eq!(h.sync_result(sync).error, ErrorCode::REBALANCE_IN_PROGRESS);
    assert!(h.response(rejoin).is_none());
    // A JoinGroup with a member id the group never issued.
    let join = h.join(join_request("g", "ghost", "x"));
    assert_eq!(h.join_result(join).error, ErrorCode::UNKNOWN_MEMBER_ID);
    let join = h.join(join_request("nope", "ghost", "x"));
    assert_eq!(h.join_result(join).error, ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn session_timeouts_outside_the_configured_bounds_are_refused() {
    // ErrorCode::INVALID_SESSION_TIMEOUT below group.min.session.timeout.ms or above group.max.session.timeout.ms.
    let mut h = Harness::new();
    for session in [999, 1_800_001] {
        let join = h.join(JoinGroup {
            session_timeout_ms: session,
            ..join_request("g", "", "a")
        });
        assert_eq!(
            h.join_result(join).error,
            ErrorCode::INVALID_SESSION_TIMEOUT,
            "{session}"
        );
    }
    let join = h.join(join_request("", "", "a"));
    assert_eq!(h.join_result(join).error, ErrorCode::INVALID_GROUP_ID);
}

#[test]
fn members_without_a_common_protocol_are_refused() {
    // ErrorCode::INCONSISTENT_GROUP_PROTOCOL for another protocol type or no protocol shared with every member.
    let mut h = Harness::new();
    let (join_a, _) = h.join_new("g", "a");
    assert!(h.join_result(join_a).error.is_ok());
    let other_type = h.join(JoinGroup {
        protocol_type: "connect".into(),
        ..join_request("g", "", "b")
    });
    assert_eq!(
        h.join_result(other_type).error,
        ErrorCode::INCONSISTENT_GROUP_PROTOCOL
    );
    let no_common = h.join(JoinGroup {
        protocols: vec![Protocol {
            name: "sticky".into(),
            metadata: Bytes::new(),
        }],
        ..join_request("g", "", "c")
    });
    assert_eq!(
        h.join_result(no_common).error,
        ErrorCode::INCONSISTENT_GROUP_PROTOCOL
    );
    let none = h.join(JoinGroup {
        protocols: vec![],
        ..join_request("h", "", "d")
    });
    assert_eq!(
        h.join_result(none).error,
        ErrorCode::INCONSISTENT_GROUP_PROTOCOL
    );
    assert_eq!(
        h.state("h"),
        None,
        "a refused first join leaves no group behind"
    );
}

#[test]
fn the_protocol_most_members_prefer_is_selected() {
    // Protocol selection: the common protocol with the most first-choice votes.
    let mut h = Harness::new();
    let prefer = |names: &[&str]| -> Vec<Protocol> {
        names
            .iter()
            .map(|n| Protocol {
                name: n.to_string(),
                metadata: subscription(&["t"]),
            })
            .collect()
    };
    let a = h.join(JoinGroup {
        require_known_member_id: false,
        protocols: prefer(&["range", "cooperative-sticky"]),
        ..join_request("g", "", "a")
    });
    let a = h.join_result(a).member_id;
    h.sync("g", 1, &a, vec![]);
    let b = h.join(JoinGroup {
        require_known_member_id: false,
        protocols: prefer(&["cooperative-sticky", "range"]),
        ..join_request("g", "", "b")
    });
    let c = h.join(JoinGroup {
        require_known_member_id: false,
        protocols: prefer(&["cooperative-sticky", "range"]),
        ..join_request("g", "", "c")
    });
    let rejoin = h.join(JoinGroup {
        protocols: prefer(&["range", "cooperative-sticky"]),
        ..join_request("g", &a, "a")
    });
    for id in [b, c, rejoin] {
        assert_eq!(
            h.join_result(id).protocol_name.as_deref(),
            Some("cooperative-sticky")
        );
    }
}

#[test]
fn static_member_rejoining_a_stable_group_keeps_its_assignment_without_a_rebalance() {
    // KIP-345: a known group.instance.id with no member id replaces its old member in place; the old id is fenced.
    let mut h = Harness::new();
    let a = h.join(static_join("g", "", "instance-a"));
    let a = h.join_result(a);
    assert_eq!(
        a.error,
        ErrorCode::NONE,
        "static members skip ErrorCode::MEMBER_ID_REQUIRED"
    );
    let b = h.join(static_join("g", "", "instance-b"));
    assert!(h.response(b).is_none());
    let rejoin_a = h.join(static_join("g", &a.member_id, "instance-a"));
    let b = h.join_result(b);
    assert_eq!(h.join_result(rejoin_a).generation_id, 2);
    h.sync("g", 2, &b.member_id, vec![]);
    h.sync(
        "g",
        2,
        &a.member_id,
        vec![
            (a.member_id.clone(), Bytes::from_static(b"a")),
            (b.member_id.clone(), Bytes::from_static(b"b")),
        ],
    );
    assert_eq!(h.state("g"), Some(GroupState::Stable));
    // B restarts: same instance id, no member id.
    let records_before = h.log.len();
    let restarted = h.join(static_join("g", "", "instance-b"));
    let restarted = h.join_result(restarted);
    assert_eq!(restarted.error, ErrorCode::NONE);
    assert_eq!(restarted.generation_id, 2, "no new generation");
    assert_ne!(restarted.member_id, b.member_id);
    assert_eq!(restarted.leader, a.member_id);
    assert_eq!(h.state("g"), Some(GroupState::Stable));
    assert_eq!(
        h.log.len(),
        records_before + 1,
        "the new member id is stored"
    );
    let sync = h.sync("g", 2, &restarted.member_id, vec![]);
    assert_eq!(h.sync_result(sync).assignment, Bytes::from_static(b"b"));
    // The old incarnation is fenced.
    assert_eq!(
        h.heartbeat_as("g", 2, &b.member_id, Some("instance-b")),
        ErrorCode::FENCED_INSTANCE_ID
    );
    assert_eq!(
        h.heartbeat_as("g", 2, &restarted.member_id, Some("instance-b")),
        ErrorCode::NONE
    );
    let old = h.join(static_join("g", &b.member_id, "instance-b"));
    assert_eq!(h.join_result(old).error, ErrorCode::FENCED_INSTANCE_ID);
}

#[test]
fn static_leader_rejoining_is_told_to_skip_assignment_from_join_group_v9() {
    // JoinGroup v9: the replaced leader gets the members and skip_assignment instead of the old leader id.
    let mut h = Harness::new();
    let a = h.join(static_join("g", "", "instance-a"));
    let a = h.join_result(a);
    h.sync("g", 1, &a.member_id, vec![]);
    let rejoin = h.join(JoinGroup {
        supports_skip_assignment: true,
        ..static_join("g", "", "instance-a")
    });
    let rejoin = h.join_result(rejoin);
    assert!(rejoin.skip_assignment);
    assert_eq!(rejoin.leader, rejoin.member_id);
    assert_eq!(rejoin.members.len(), 1);
    assert_eq!(h.state("g"), Some(GroupState::Stable));
}

#[test]
fn static_members_survive_a_rebalance_they_miss_until_their_session_ends() {
    // A static member that does not rejoin stays in the next generation; only its session timeout removes it.
    let mut h = Harness::new();
    let a = h.join(static_join("g", "", "instance-a"));
    let a = h.join_result(a).member_id;
    h.sync("g", 1, &a, vec![]);
    let b = h.join(static_join("g", "", "instance-b"));
    // A stops heartbeating and never rejoins; its session (10 s) is shorter than the rebalance timeout (30 s).
    h.advance(i64::from(SESSION_MS) + 1);
    let b = h.join_result(b);
    assert_eq!(b.generation_id, 2);
    assert_eq!(
        b.members.len(),
        1,
        "A's session ended before the rebalance completed"
    );
    assert!(h
        .coordinator
        .group("g")
        .unwrap()
        .static_member_id("instance-a")
        .is_none());
}

#[test]
fn admin_can_remove_a_static_member_by_instance_id() {
    // LeaveGroup with an empty member id and a group.instance.id removes that static member.
    let mut h = Harness::new();
    let a = h.join(static_join("g", "", "instance-a"));
    let a = h.join_result(a).member_id;
    h.sync("g", 1, &a, vec![]);
    let request = LeaveGroup {
        group_id: "g".into(),
        members: vec![
            MemberIdentity {
                member_id: String::new(),
                group_instance_id: Some("instance-a".into()),
                reason: Some("admin".into()),
            },
            MemberIdentity {
                member_id: String::new(),
                group_instance_id: Some("instance-x".into()),
                reason: None,
            },
        ],
    };
    let id = h.send(|reply| Event::LeaveGroup { reply, request });
    let Some(Response::LeaveGroup(result)) = h.response(id) else {
        panic!()
    };
    assert_eq!(result.members[0].1, ErrorCode::NONE);
    assert_eq!(result.members[1].1, ErrorCode::UNKNOWN_MEMBER_ID);
    // It was the only member: the rebalance completes at once into an Empty generation.
    assert_eq!(h.state("g"), Some(GroupState::Empty));
    assert_eq!(h.coordinator.group("g").unwrap().generation_id, 2);
}

#[test]
fn pending_member_that_never_joins_stops_blocking_the_rebalance_at_its_session_timeout() {
    // A member id handed out with ErrorCode::MEMBER_ID_REQUIRED holds the join phase until used or expired.
    let mut h = Harness::new();
    let (a, _b) = h.stable_pair("g");
    let first = h.join(join_request("g", "", "c"));
    assert_eq!(h.join_result(first).error, ErrorCode::MEMBER_ID_REQUIRED);
    // Another join starts a rebalance; everyone rejoins except the pending member.
    let rejoin_a = h.join(join_request("g", &a, "a"));
    h.leave("g", &_b);
    assert!(
        h.response(rejoin_a).is_none(),
        "the pending member is awaited"
    );
    h.advance(i64::from(SESSION_MS));
    assert_eq!(h.join_result(rejoin_a).generation_id, 3);
    // A group whose only trace is an unused member id disappears with it.
    let first = h.join(join_request("fresh", "", "d"));
    assert_eq!(h.join_result(first).error, ErrorCode::MEMBER_ID_REQUIRED);
    assert_eq!(h.state("fresh"), Some(GroupState::Empty));
    h.advance(i64::from(SESSION_MS));
    assert_eq!(h.state("fresh"), None);
}

#[test]
fn initial_rebalance_delay_collects_members_arriving_together() {
    // With group.initial.rebalance.delay.ms, a new group waits for more members before generation 1.
    let mut h = Harness::with_config(GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..config()
    });
    let a = h.join(JoinGroup {
        require_known_member_id: false,
        ..join_request("g", "", "a")
    });
    h.advance(1_000);
    let b = h.join(JoinGroup {
        require_known_member_id: false,
        ..join_request("g", "", "b")
    });
    h.advance(2_000);
    assert!(h.response(a).is_none(), "B's arrival extends the delay");
    h.advance(3_000);
    assert_eq!(h.join_result(a).generation_id, 1);
    assert_eq!(h.join_result(b).generation_id, 1);
    assert_eq!(
        h.join_result(a).members.len() + h.join_result(b).members.len(),
        2
    );
}

#[test]
fn group_max_size_refuses_extra_members() {
    // ErrorCode::GROUP_MAX_SIZE_REACHED once group.max.size members are in.
    let mut h = Harness::with_config(GroupConfig {
        group_members_max: 1,
        ..config()
    });
    let (join_a, a) = h.join_new("g", "a");
    assert!(h.join_result(join_a).error.is_ok());
    h.sync("g", 1, &a, vec![]);
    let b = h.join(join_request("g", "", "b"));
    assert_eq!(h.join_result(b).error, ErrorCode::GROUP_MAX_SIZE_REACHED);
}

#[test]
fn simple_consumer_commits_without_joining() {
    // Generation -1 and no member id: offsets commit into a group that has no members (kcat, assign+commit).
    let mut h = Harness::new();
    assert_eq!(
        h.commit("simple", -1, "", &[("t", 0, 42), ("t", 1, 7)]),
        vec![ErrorCode::NONE; 2]
    );
    assert_eq!(h.committed("simple", "t", 0), 42);
    assert_eq!(h.committed("simple", "t", 1), 7);
    assert_eq!(h.committed("simple", "t", 2), -1);
    assert_eq!(h.committed("nobody", "t", 0), -1);
    // One record per partition, keyed (group, topic, partition), valued v3.
    assert_eq!(h.log.len(), 2);
    assert_eq!(
        h.log[0].key,
        RecordKey::OffsetCommit {
            group: "simple".into(),
            topic: "t".into(),
            partition: 0
        }
    );
    let Some(RecordValue::OffsetCommit(value)) = &h.log[0].value else {
        panic!()
    };
    assert_eq!(value.offset, 42);
    assert_eq!(value.expire_timestamp_ms, None);
    // Fetching every offset of the group.
    let all = h.coordinator.fetch_offsets("simple", None);
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].1.iter().map(|o| o.offset).collect::<Vec<_>>(),
        vec![42, 7]
    );
}

#[test]
fn commits_are_checked_against_membership_and_generation() {
    // Members commit with their generation; outsiders, stale generations and mid-rebalance commits are refused.
    let mut h = Harness::new();
    let (a, _b) = h.stable_pair("g");
    assert_eq!(h.commit("g", 2, &a, &[("t", 0, 5)]), vec![ErrorCode::NONE]);
    assert_eq!(
        h.commit("g", 1, &a, &[("t", 0, 6)]),
        vec![ErrorCode::ILLEGAL_GENERATION]
    );
    assert_eq!(
        h.commit("g", 2, "stranger", &[("t", 0, 6)]),
        vec![ErrorCode::UNKNOWN_MEMBER_ID]
    );
    assert_eq!(
        h.commit("g", -1, "", &[("t", 0, 6)]),
        vec![ErrorCode::UNKNOWN_MEMBER_ID],
        "a live group takes commits from members only"
    );
    assert_eq!(h.committed("g", "t", 0), 5);
    // An unknown group with a generation: ErrorCode::ILLEGAL_GENERATION (ErrorCode::GROUP_ID_NOT_FOUND from v9).
    assert_eq!(
        h.commit("nope", 3, "m", &[("t", 0, 1)]),
        vec![ErrorCode::ILLEGAL_GENERATION]
    );
    let request = OffsetCommit {
        group_id: "nope".into(),
        generation_id: 3,
        member_id: "m".into(),
        group_instance_id: None,
        retention_ms: None,
        group_id_not_found_supported: true,
        offsets: vec![(
            TopicPartition::new("t", 0),
            OffsetToCommit {
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
            },
        )],
    };
    let id = h.send(|reply| Event::OffsetCommit { reply, request });
    let Some(Response::OffsetCommit(result)) = h.response(id) else {
        panic!()
    };
    assert_eq!(result.partitions[0].1, ErrorCode::GROUP_ID_NOT_FOUND);
    // During CompletingRebalance a member with the new generation gets ErrorCode::REBALANCE_IN_PROGRESS.
    h.join(join_request("g", &a, "a"));
    h.join(join_request("g", &_b, "b"));
    assert_eq!(h.state("g"), Some(GroupState::CompletingRebalance));
    assert_eq!(
        h.commit("g", 3, &a, &[("t", 0, 9)]),
        vec![ErrorCode::REBALANCE_IN_PROGRESS]
    );
}

#[test]
fn oversized_metadata_is_refused_per_partition() {
    // ErrorCode::OFFSET_METADATA_TOO_LARGE for that partition only; the others commit.
    let mut h = Harness::with_config(GroupConfig {
        offset_metadata_bytes_max: 4,
        ..config()
    });
    let request = OffsetCommit {
        group_id: "g".into(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
        retention_ms: None,
        group_id_not_found_supported: false,
        offsets: vec![
            (
                TopicPartition::new("t", 0),
                OffsetToCommit {
                    offset: 1,
                    leader_epoch: 3,
                    metadata: "long metadata".into(),
                },
            ),
            (
                TopicPartition::new("t", 1),
                OffsetToCommit {
                    offset: 2,
                    leader_epoch: 3,
                    metadata: "ok".into(),
                },
            ),
        ],
    };
    let id = h.send(|reply| Event::OffsetCommit { reply, request });
    let Some(Response::OffsetCommit(result)) = h.response(id) else {
        panic!()
    };
    assert_eq!(
        result
            .partitions
            .iter()
            .map(|(_, e)| *e)
            .collect::<Vec<_>>(),
        vec![ErrorCode::OFFSET_METADATA_TOO_LARGE, ErrorCode::NONE]
    );
    let fetched = h
        .coordinator
        .fetch_offsets("g", Some(&[("t".to_string(), vec![1])]));
    assert_eq!(fetched[0].1[0].leader_epoch, 3);
    assert_eq!(fetched[0].1[0].metadata, "ok");
}

#[test]
fn failed_commit_append_reports_the_error_and_keeps_the_old_offset() {
    // An offset is only committed once its record is in the log; a storage failure maps to ErrorCode::NOT_COORDINATOR.
    let mut h = Harness::new();
    h.commit("g", -1, "", &[("t", 0, 1)]);
    h.fail_appends = Some(ErrorCode::KAFKA_STORAGE_ERROR);
    assert_eq!(
        h.commit("g", -1, "", &[("t", 0, 2)]),
        vec![ErrorCode::NOT_COORDINATOR]
    );
    assert_eq!(h.committed("g", "t", 0), 1);
    h.fail_appends = Some(ErrorCode::MESSAGE_TOO_LARGE);
    assert_eq!(
        h.commit("g", -1, "", &[("t", 0, 3)]),
        vec![ErrorCode::INVALID_COMMIT_OFFSET_SIZE]
    );
}

#[test]
fn failed_assignment_append_sends_the_group_back_to_rebalance() {
    // If the leader's assignment cannot be stored, waiting members get the error and the group rebalances.
    let mut h = Harness::new();
    let (join_a, a) = h.join_new("g", "a");
    assert_eq!(h.join_result(join_a).generation_id, 1);
    h.fail_appends = Some(ErrorCode::KAFKA_STORAGE_ERROR);
    let sync = h.sync("g", 1, &a, vec![(a.clone(), Bytes::from_static(b"x"))]);
    assert_eq!(h.sync_result(sync).error, ErrorCode::NOT_COORDINATOR);
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
}

#[test]
fn empty_groups_offsets_expire_after_retention_and_the_group_dies() {
    // offsets.retention: counted from when the group became Empty; never while it has members; tombstones written.
    let retention_ms = 60_000;
    let mut h = Harness::with_config(GroupConfig {
        offsets_retention_ms: retention_ms,
        ..config()
    });
    let (a, b) = h.stable_pair("g");
    h.commit("g", 2, &a, &[("t", 0, 10)]);
    // With members, nothing expires however old the commit is (they keep heartbeating).
    for _ in 0..30 {
        h.advance(retention_ms / 10);
        h.heartbeat("g", 2, &a);
        h.heartbeat("g", 2, &b);
    }
    let commands = h.coordinator.handle(Event::ExpireOffsets, h.now_ms);
    h.perform(commands);
    assert_eq!(h.committed("g", "t", 0), 10);
    h.leave("g", &b);
    h.leave("g", &a);
    assert_eq!(h.state("g"), Some(GroupState::Empty));
    h.advance(retention_ms - 1);
    let commands = h.coordinator.handle(Event::ExpireOffsets, h.now_ms);
    h.perform(commands);
    assert_eq!(
        h.committed("g", "t", 0),
        10,
        "not yet: retention counts from becoming Empty"
    );
    h.advance(1);
    let log_before = h.log.len();
    let commands = h.coordinator.handle(Event::ExpireOffsets, h.now_ms);
    h.perform(commands);
    assert_eq!(h.committed("g", "t", 0), -1);
    assert_eq!(
        h.state("g"),
        None,
        "an empty group without offsets is removed"
    );
    let tombstones: Vec<_> = h.log[log_before..]
        .iter()
        .map(|r| (&r.key, r.value.is_none()))
        .collect();
    assert_eq!(
        tombstones,
        vec![
            (
                &RecordKey::OffsetCommit {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 0
                },
                true
            ),
            (&RecordKey::GroupMetadata { group: "g".into() }, true),
        ]
    );
}

#[test]
fn simple_group_offsets_expire_from_their_commit_and_explicit_retention_wins() {
    // A simple group's offsets expire per commit time; an OffsetCommit v2-4 retention sets its own expiry.
    let mut h = Harness::with_config(GroupConfig {
        offsets_retention_ms: 60_000,
        ..config()
    });
    h.commit("s", -1, "", &[("t", 0, 1)]);
    h.advance(30_000);
    h.commit("s", -1, "", &[("t", 1, 2)]);
    let request = OffsetCommit {
        group_id: "s".into(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
        retention_ms: Some(5_000),
        group_id_not_found_supported: false,
        offsets: vec![(
            TopicPartition::new("t", 2),
            OffsetToCommit {
                offset: 3,
                leader_epoch: -1,
                metadata: String::new(),
            },
        )],
    };
    h.send(|reply| Event::OffsetCommit { reply, request });
    let Some(RecordValue::OffsetCommit(value)) = &h.log.last().unwrap().value else {
        panic!()
    };
    assert!(value.expire_timestamp_ms.is_some(), "written as value v1");
    h.advance(30_000);
    let commands = h.coordinator.handle(Event::ExpireOffsets, h.now_ms);
    h.perform(commands);
    assert_eq!(h.committed("s", "t", 0), -1, "60 s after its commit");
    assert_eq!(h.committed("s", "t", 1), 2, "30 s after its commit");
    assert_eq!(h.committed("s", "t", 2), -1, "its own 5 s retention");
}

#[test]
fn delete_group_needs_an_empty_group_and_writes_tombstones() {
    // DeleteGroups: ErrorCode::NON_EMPTY_GROUP with members, ErrorCode::GROUP_ID_NOT_FOUND if unknown, tombstones otherwise.
    let mut h = Harness::new();
    let (a, b) = h.stable_pair("g");
    h.commit("g", 2, &a, &[("t", 0, 1), ("u", 0, 2)]);
    let delete = |h: &mut Harness, group: &str| {
        let group_id = group.to_string();
        let id = h.send(|reply| Event::DeleteGroup { reply, group_id });
        match h.response(id) {
            Some(Response::DeleteGroup(error)) => *error,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(delete(&mut h, "g"), ErrorCode::NON_EMPTY_GROUP);
    assert_eq!(delete(&mut h, "nope"), ErrorCode::GROUP_ID_NOT_FOUND);
    h.leave("g", &a);
    h.leave("g", &b);
    let before = h.log.len();
    assert_eq!(delete(&mut h, "g"), ErrorCode::NONE);
    assert_eq!(h.state("g"), None);
    assert_eq!(
        h.log.len() - before,
        3,
        "two offset tombstones and the group's"
    );
    assert!(h.log[before..].iter().all(|r| r.value.is_none()));
    assert_eq!(h.committed("g", "t", 0), -1);
}

#[test]
fn offset_delete_spares_topics_a_live_consumer_group_subscribes_to() {
    // OffsetDelete: ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC for subscribed topics of a live group; others are removed.
    let mut h = Harness::new();
    let (a, _) = h.stable_pair("g");
    h.commit("g", 2, &a, &[("t", 0, 1), ("old", 0, 2)]);
    let request = OffsetDelete {
        group_id: "g".into(),
        partitions: vec![TopicPartition::new("t", 0), TopicPartition::new("old", 0)],
    };
    let id = h.send(|reply| Event::OffsetDelete { reply, request });
    let Some(Response::OffsetDelete(result)) = h.response(id) else {
        panic!()
    };
    assert_eq!(result.error, ErrorCode::NONE);
    assert_eq!(
        result
            .partitions
            .iter()
            .map(|(_, e)| *e)
            .collect::<Vec<_>>(),
        vec![ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC, ErrorCode::NONE]
    );
    assert_eq!(h.committed("g", "t", 0), 1);
    assert_eq!(h.committed("g", "old", 0), -1);
    let request = OffsetDelete {
        group_id: "nope".into(),
        partitions: vec![TopicPartition::new("t", 0)],
    };
    let id = h.send(|reply| Event::OffsetDelete { reply, request });
    let Some(Response::OffsetDelete(result)) = h.response(id) else {
        panic!()
    };
    assert_eq!(result.error, ErrorCode::GROUP_ID_NOT_FOUND);
}

#[test]
fn describe_and_list_show_state_members_and_assignments() {
    // DescribeGroups shows members' metadata and assignments while Stable; ListGroups lists every group.
    let mut h = Harness::new();
    let (a, _) = h.stable_pair("g");
    h.commit("simple", -1, "", &[("t", 0, 1)]);
    let described = h.coordinator.describe_group("g").unwrap();
    assert_eq!(described.state, "Stable");
    assert_eq!(described.protocol_type, "consumer");
    assert_eq!(described.protocol_name, "range");
    let member_a = described.members.iter().find(|m| m.member_id == a).unwrap();
    assert_eq!(member_a.assignment, Bytes::from_static(b"a"));
    assert_eq!(member_a.metadata, subscription(&["t"]));
    assert_eq!(member_a.client_id, "client-a");
    let listed = h.coordinator.list_groups();
    assert_eq!(
        listed
            .iter()
            .map(|g| (g.group_id.as_str(), g.state, g.protocol_type.as_str()))
            .collect::<Vec<_>>(),
        vec![("g", "Stable", "consumer"), ("simple", "Empty", "")]
    );
    assert!(h.coordinator.describe_group("nope").is_none());
}

#[test]
fn groups_and_offsets_reload_from_their_records() {
    // Replaying the appended records rebuilds the groups: Stable with members and assignments, offsets, tombstones applied.
    let mut h = Harness::new();
    let (a, b) = h.stable_pair("g");
    h.commit("g", 2, &a, &[("t", 0, 11), ("t", 1, 12)]);
    h.commit("gone", -1, "", &[("t", 0, 1)]);
    let group_id = "gone".to_string();
    h.send(|reply| Event::DeleteGroup { reply, group_id });
    h.commit("simple", -1, "", &[("t", 3, 33)]);
    // Encode and decode every record as the log would hold it.
    let mut loader = Loader::default();
    for (offset, record) in h.log.iter().enumerate() {
        let key = records::encode_key(&record.key);
        let value = record.value.as_ref().map(|v| match v {
            RecordValue::OffsetCommit(v) => records::encode_offset_commit_value(v),
            RecordValue::GroupMetadata(v) => records::encode_group_metadata_value(v),
        });
        loader
            .replay(offset as i64, Some(&key), value.as_deref())
            .unwrap();
    }
    let now_ms = h.now_ms + 5_000;
    let mut reloaded: Coordinator<u64> = loader
        .finish(h.config.clone(), MemberIds::Sequential(100), now_ms)
        .unwrap();
    assert_eq!(reloaded.group_state("g"), Some(GroupState::Stable));
    assert_eq!(reloaded.group_state("gone"), None);
    assert_eq!(reloaded.group_state("simple"), Some(GroupState::Empty));
    let described = reloaded.describe_group("g").unwrap();
    let assignment_of = |id: &str| {
        described
            .members
            .iter()
            .find(|m| m.member_id == id)
            .unwrap()
            .assignment
            .clone()
    };
    assert_eq!(assignment_of(&a), Bytes::from_static(b"a"));
    assert_eq!(assignment_of(&b), Bytes::from_static(b"b"));
    let fetched = reloaded.fetch_offsets("g", None);
    assert_eq!(
        fetched[0].1.iter().map(|o| o.offset).collect::<Vec<_>>(),
        vec![11, 12]
    );
    // The members carry on in generation 2 after the reload...
    let mut h2 = Harness {
        coordinator: reloaded,
        now_ms,
        ..Harness::new()
    };
    assert_eq!(h2.heartbeat("g", 2, &a), ErrorCode::NONE);
    // ...and one that never comes back expires a session timeout after the load.
    h2.advance(i64::from(SESSION_MS) / 2);
    assert_eq!(h2.heartbeat("g", 2, &a), ErrorCode::NONE);
    h2.advance(i64::from(SESSION_MS) / 2 + 1);
    assert_eq!(h2.state("g"), Some(GroupState::PreparingRebalance));
    reloaded = h2.coordinator;
    assert_eq!(reloaded.group("g").unwrap().member_count(), 1);
}

#[test]
fn unloading_answers_every_waiting_request_not_coordinator() {
    // When leadership moves, waiting JoinGroups and SyncGroups end with ErrorCode::NOT_COORDINATOR.
    let mut h = Harness::new();
    let (a, _) = h.stable_pair("g");
    let (join_c, _) = h.join_new("g", "c");
    let rejoin_a = h.join(join_request("g", &a, "a"));
    assert!(h.response(join_c).is_none() && h.response(rejoin_a).is_none());
    let coordinator = std::mem::replace(
        &mut h.coordinator,
        Coordinator::new(config(), MemberIds::Sequential(0)),
    );
    let commands = coordinator.unload();
    h.perform(commands);
    assert_eq!(h.join_result(join_c).error, ErrorCode::NOT_COORDINATOR);
    assert_eq!(h.join_result(rejoin_a).error, ErrorCode::NOT_COORDINATOR);
}

#[test]
fn a_superseded_join_is_answered_so_nothing_waits_forever() {
    // A member sending JoinGroup twice in one rebalance gets ErrorCode::REBALANCE_IN_PROGRESS on the first.
    let mut h = Harness::new();
    let (a, _) = h.stable_pair("g");
    let first = h.join(join_request("g", &a, "a"));
    let second = h.join(join_request("g", &a, "a"));
    assert_eq!(h.join_result(first).error, ErrorCode::REBALANCE_IN_PROGRESS);
    assert!(h.response(second).is_none());
}

#[test]
fn deleting_a_topic_drops_its_committed_offsets_with_tombstones() {
    // Offsets of a deleted topic go (with tombstones); offsets of other topics stay.
    let mut h = Harness::new();
    let (a, _b) = h.stable_pair("g");
    h.commit(
        "g",
        2,
        &a,
        &[("gone", 0, 10), ("gone", 1, 11), ("kept", 0, 12)],
    );
    let log_before = h.log.len();
    let commands = h.coordinator.handle(
        Event::TopicDeleted {
            topic: "gone".into(),
        },
        h.now_ms,
    );
    h.perform(commands);
    assert_eq!(h.committed("g", "gone", 0), -1);
    assert_eq!(h.committed("g", "gone", 1), -1);
    assert_eq!(h.committed("g", "kept", 0), 12);
    let tombstones: Vec<_> = h.log[log_before..]
        .iter()
        .filter(|r| r.value.is_none())
        .map(|r| r.key.clone())
        .collect();
    assert_eq!(tombstones.len(), 2, "{tombstones:?}");
    assert!(tombstones
        .iter()
        .all(|k| matches!(k, RecordKey::OffsetCommit { topic, .. } if topic == "gone")));
    assert_eq!(
        h.state("g"),
        Some(GroupState::Stable),
        "the group itself lives on"
    );
}

#[test]
fn commits_from_before_a_rebalance_are_refused_once_the_group_moved_on() {
    // librdkafka's commit-during-rebalance case: after generation 3 formed, a dropped member's and a stale generation's commits are refused.
    let mut h = Harness::new();
    let (a, b) = h.stable_pair("g");
    assert_eq!(h.commit("g", 2, &b, &[("t", 0, 5)]), vec![ErrorCode::NONE]);
    let (join_c, _c) = h.join_new("g", "c");
    // While the rebalance prepares, generation 2 is still the group's: Kafka accepts its commits.
    assert_eq!(h.commit("g", 2, &b, &[("t", 0, 6)]), vec![ErrorCode::NONE]);
    let rejoin_a = h.join(join_request("g", &a, "a"));
    h.advance(i64::from(REBALANCE_MS) + 1);
    assert_eq!(h.join_result(rejoin_a).generation_id, 3);
    assert_eq!(h.join_result(join_c).generation_id, 3);
    assert_eq!(h.state("g"), Some(GroupState::CompletingRebalance));
    assert_eq!(
        h.commit("g", 2, &b, &[("t", 0, 7)]),
        vec![ErrorCode::UNKNOWN_MEMBER_ID],
        "B did not rejoin: it is no member any more"
    );
    assert_eq!(
        h.commit("g", 2, &a, &[("t", 0, 7)]),
        vec![ErrorCode::ILLEGAL_GENERATION]
    );
    assert_eq!(
        h.commit("g", 3, &a, &[("t", 0, 7)]),
        vec![ErrorCode::REBALANCE_IN_PROGRESS],
        "no assignment yet in generation 3"
    );
    assert_eq!(h.committed("g", "t", 0), 6);
}
