//! The group APIs byte by byte against the real broker binary: every version
//! in our ranges, the records in `__consumer_offsets` decoded independently
//! of the broker's codec, JoinGroup answered at shutdown, and offsets expiring
//! on their own clock.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use protocol::messages::join_group_request::JoinGroupRequestProtocol;
use protocol::messages::leave_group_request::MemberIdentity;
use protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use protocol::messages::*;
use protocol::StrBytes;
use tests::{BrokerProcess, RawConnection};

const SESSION_TIMEOUT_MS: i32 = 10_000;
const TOPIC: &str = "group-api-topic";

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn group(text: &str) -> GroupId {
    GroupId(s(text))
}

/// A consumer-protocol subscription (v0) to `topics`.
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

/// A consumer-protocol assignment (v0) of `partitions` of `topic`.
fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(0);
    out.put_i32(1);
    out.put_i16(topic.len() as i16);
    out.put_slice(topic.as_bytes());
    out.put_i32(partitions.len() as i32);
    for p in partitions {
        out.put_i32(*p);
    }
    out.put_i32(-1);
    out.freeze()
}

fn join_request(group_id: &str, member_id: &str, instance: Option<&str>) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group(group_id))
        .with_session_timeout_ms(SESSION_TIMEOUT_MS)
        .with_rebalance_timeout_ms(SESSION_TIMEOUT_MS)
        .with_member_id(s(member_id))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(subscription(&[TOPIC]))])
}

/// Joins `group_id` alone at JoinGroup `version`, through the member id round trip from v4.
fn join_alone(conn: &mut RawConnection, version: i16, group_id: &str) -> JoinGroupResponse {
    let request = join_request(group_id, "", None);
    let mut response: JoinGroupResponse = conn.call(ApiKey::JoinGroup, version, &request).unwrap();
    if version >= 4 {
        assert_eq!(
            response.error_code, 79,
            "v{version}: MEMBER_ID_REQUIRED first"
        );
        assert!(!response.member_id.is_empty());
        let request = join_request(group_id, response.member_id.as_str(), None);
        response = conn.call(ApiKey::JoinGroup, version, &request).unwrap();
    }
    assert_eq!(response.error_code, 0, "JoinGroup v{version}: {response:?}");
    response
}

fn commit_request(
    group_id: &str,
    generation: i32,
    member_id: &str,
    offset: i64,
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_retention_time_ms(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(s("md")))])])
}

/// OffsetFetch of partition 0 of the test topic at any version.
fn fetch_offset(conn: &mut RawConnection, version: i16, group_id: &str) -> i64 {
    let request = if version >= 8 {
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(group(group_id))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partition_indexes(vec![0])]))])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(group(group_id))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partition_indexes(vec![0])]))
    };
    let response: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, version, &request).unwrap();
    if version >= 8 {
        assert_eq!(response.groups[0].error_code, 0);
        response.groups[0].topics[0].partitions[0].committed_offset
    } else {
        assert_eq!(response.error_code, 0);
        let partition = &response.topics[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        partition.committed_offset
    }
}

#[test]
fn every_version_of_every_group_api_is_answered() {
    // One group per JoinGroup version goes join → sync → heartbeat → commit → fetch → describe → leave → list → delete.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    tests::create_topic(&mut conn, TOPIC, 2);
    for version in 0..=9i16 {
        let group_id = format!("group-v{version}");
        // FindCoordinator v0-v3 asks for one key; v4+ for a list.
        let find_version = version.min(6);
        let find = if find_version >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s(&group_id)])
        } else {
            FindCoordinatorRequest::default().with_key(s(&group_id))
        };
        let found: FindCoordinatorResponse = conn
            .call(ApiKey::FindCoordinator, find_version, &find)
            .unwrap();
        let error = if find_version >= 4 {
            found.coordinators[0].error_code
        } else {
            found.error_code
        };
        assert_eq!(error, 0, "FindCoordinator v{find_version}");

        let joined = join_alone(&mut conn, version, &group_id);
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.leader, joined.member_id);
        assert_eq!(joined.members.len(), 1);
        assert_eq!(
            joined.protocol_name.as_ref().map(|p| p.as_str()),
            Some("range")
        );
        let member_id = joined.member_id.as_str().to_string();

        let sync_version = version.min(5);
        let sync = SyncGroupRequest::default()
            .with_group_id(group(&group_id))
            .with_generation_id(1)
            .with_member_id(s(&member_id))
            .with_protocol_type((sync_version >= 5).then(|| s("consumer")))
            .with_protocol_name((sync_version >= 5).then(|| s("range")))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(s(&member_id))
                .with_assignment(assignment(TOPIC, &[0, 1]))]);
        let synced: SyncGroupResponse = conn.call(ApiKey::SyncGroup, sync_version, &sync).unwrap();
        assert_eq!(synced.error_code, 0, "SyncGroup v{sync_version}");
        assert_eq!(synced.assignment, assignment(TOPIC, &[0, 1]));

        let heartbeat_version = version.min(4);
        let heartbeat = HeartbeatRequest::default()
            .with_group_id(group(&group_id))
            .with_generation_id(1)
            .with_member_id(s(&member_id));
        let beat: HeartbeatResponse = conn
            .call(ApiKey::Heartbeat, heartbeat_version, &heartbeat)
            .unwrap();
        assert_eq!(beat.error_code, 0, "Heartbeat v{heartbeat_version}");
        let stale: HeartbeatResponse = conn
            .call(
                ApiKey::Heartbeat,
                heartbeat_version,
                &heartbeat.clone().with_generation_id(0),
            )
            .unwrap();
        assert_eq!(stale.error_code, 22, "ILLEGAL_GENERATION");

        // Every OffsetCommit version against every group, and OffsetFetch at the matching version.
        let commit_version = (version + 2).min(9);
        let committed: OffsetCommitResponse = conn
            .call(
                ApiKey::OffsetCommit,
                commit_version,
                &commit_request(&group_id, 1, &member_id, 100 + i64::from(version)),
            )
            .unwrap();
        assert_eq!(
            committed.topics[0].partitions[0].error_code, 0,
            "OffsetCommit v{commit_version}"
        );
        let fetch_version = (version + 1).clamp(1, 9);
        assert_eq!(
            fetch_offset(&mut conn, fetch_version, &group_id),
            100 + i64::from(version),
            "OffsetFetch v{fetch_version}"
        );

        let describe_version = version.min(6);
        let described: DescribeGroupsResponse = conn
            .call(
                ApiKey::DescribeGroups,
                describe_version,
                &DescribeGroupsRequest::default()
                    .with_groups(vec![group(&group_id)])
                    .with_include_authorized_operations(describe_version >= 3),
            )
            .unwrap();
        let described = &described.groups[0];
        assert_eq!(
            (described.error_code, described.group_state.as_str()),
            (0, "Stable")
        );
        assert_eq!(described.protocol_data.as_str(), "range");
        assert_eq!(
            described.members[0].member_assignment,
            assignment(TOPIC, &[0, 1])
        );
        assert_eq!(described.members[0].client_id.as_str(), "raw-test");

        let leave_version = version.min(5);
        let leave = if leave_version >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(group(&group_id))
                .with_members(vec![MemberIdentity::default().with_member_id(s(&member_id))])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(group(&group_id))
                .with_member_id(s(&member_id))
        };
        let left: LeaveGroupResponse = conn
            .call(ApiKey::LeaveGroup, leave_version, &leave)
            .unwrap();
        assert_eq!(left.error_code, 0, "LeaveGroup v{leave_version}");
        if leave_version >= 3 {
            assert_eq!(left.members[0].error_code, 0);
        }
    }

    // ListGroups at every version sees the ten groups, now Empty.
    for version in 0..=5i16 {
        let request = ListGroupsRequest::default().with_states_filter(if version >= 4 {
            vec![s("empty")]
        } else {
            vec![]
        });
        let listed: ListGroupsResponse = conn.call(ApiKey::ListGroups, version, &request).unwrap();
        assert_eq!(listed.error_code, 0);
        let names: Vec<&str> = listed
            .groups
            .iter()
            .map(|g| g.group_id.0.as_str())
            .collect();
        assert_eq!(names.len(), 10, "ListGroups v{version}: {names:?}");
        if version >= 4 {
            assert!(listed
                .groups
                .iter()
                .all(|g| g.group_state.as_str() == "Empty"));
        }
    }
    // A state filter that matches nothing, and a type filter for KIP-848 groups.
    let stable: ListGroupsResponse = conn
        .call(
            ApiKey::ListGroups,
            5,
            &ListGroupsRequest::default().with_states_filter(vec![s("Stable")]),
        )
        .unwrap();
    assert!(stable.groups.is_empty());
    let consumer_type: ListGroupsResponse = conn
        .call(
            ApiKey::ListGroups,
            5,
            &ListGroupsRequest::default().with_types_filter(vec![s("consumer")]),
        )
        .unwrap();
    assert!(consumer_type.groups.is_empty());

    // OffsetDelete of an Empty group's last offset removes the group too (as Kafka does).
    let offset_delete = OffsetDeleteRequest::default()
        .with_group_id(group("group-v9"))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(0)
            ])]);
    let deleted: OffsetDeleteResponse = conn.call(ApiKey::OffsetDelete, 0, &offset_delete).unwrap();
    assert_eq!(
        (
            deleted.error_code,
            deleted.topics[0].partitions[0].error_code
        ),
        (0, 0)
    );
    assert_eq!(fetch_offset(&mut conn, 8, "group-v9"), -1);
    assert_eq!(
        tests::describe_group(&mut conn, "group-v9")
            .unwrap()
            .group_state
            .as_str(),
        "Dead"
    );
    // DeleteGroups at every version.
    for version in 0..=2i16 {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![
            group(&format!("group-v{}", version * 3)),
            group(&format!("group-v{}", version * 3 + 1)),
            group("no-such-group"),
        ]);
        let response: DeleteGroupsResponse =
            conn.call(ApiKey::DeleteGroups, version, &request).unwrap();
        let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
        assert_eq!(
            codes,
            vec![0, 0, 69],
            "DeleteGroups v{version}: GROUP_ID_NOT_FOUND for the unknown one"
        );
    }
    // Describing a deleted group: GROUP_ID_NOT_FOUND from v6, a Dead group before.
    let gone = |version| -> DescribeGroupsResponse {
        RawConnection::connect(&broker.addr)
            .unwrap()
            .call(
                ApiKey::DescribeGroups,
                version,
                &DescribeGroupsRequest::default().with_groups(vec![group("group-v0")]),
            )
            .unwrap()
    };
    assert_eq!(gone(6).groups[0].error_code, 69);
    assert_eq!(
        (
            gone(5).groups[0].error_code,
            gone(5).groups[0].group_state.as_str()
        ),
        (0, "Dead")
    );
}

#[test]
fn members_see_each_others_rebalances_through_heartbeats() {
    // A second member's JoinGroup waits until the first rejoins; the first learns of the rebalance from its heartbeat.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut a = RawConnection::connect(&broker.addr).unwrap();
    tests::create_topic(&mut a, TOPIC, 2);
    let joined_a = join_alone(&mut a, 9, "pair");
    let member_a = joined_a.member_id.as_str().to_string();
    let sync = |member: &str, generation: i32, assignments: Vec<SyncGroupRequestAssignment>| {
        SyncGroupRequest::default()
            .with_group_id(group("pair"))
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_assignments(assignments)
    };
    let _: SyncGroupResponse = a
        .call(ApiKey::SyncGroup, 5, &sync(&member_a, 1, vec![]))
        .unwrap();
    let addr = broker.addr.clone();
    let second = std::thread::spawn(move || {
        let mut b = RawConnection::connect(&addr).unwrap();
        join_alone(&mut b, 9, "pair")
    });
    let rebalancing = tests::wait_until(tests::GROUP_SETTLE_TIMEOUT, || {
        let beat: HeartbeatResponse = a
            .call(
                ApiKey::Heartbeat,
                4,
                &HeartbeatRequest::default()
                    .with_group_id(group("pair"))
                    .with_generation_id(1)
                    .with_member_id(s(&member_a)),
            )
            .unwrap();
        beat.error_code == 27
    });
    assert!(rebalancing, "A's heartbeat says REBALANCE_IN_PROGRESS");
    let rejoined: JoinGroupResponse = a
        .call(ApiKey::JoinGroup, 9, &join_request("pair", &member_a, None))
        .unwrap();
    let joined_b = second.join().unwrap();
    assert_eq!((rejoined.generation_id, joined_b.generation_id), (2, 2));
    assert_eq!(rejoined.members.len(), 2, "the leader sees both members");
    assert!(joined_b.members.is_empty());
    assert_eq!(joined_b.leader.as_str(), member_a);
}

#[test]
fn a_waiting_join_group_is_answered_not_coordinator_at_shutdown() {
    // A JoinGroup parked in a rebalance ends with NOT_COORDINATOR when the broker stops, not with a dropped connection.
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut a = RawConnection::connect(&broker.addr).unwrap();
    tests::create_topic(&mut a, TOPIC, 1);
    let member_a = join_alone(&mut a, 9, "waiting")
        .member_id
        .as_str()
        .to_string();
    let sync = SyncGroupRequest::default()
        .with_group_id(group("waiting"))
        .with_generation_id(1)
        .with_member_id(s(&member_a));
    let _: SyncGroupResponse = a.call(ApiKey::SyncGroup, 5, &sync).unwrap();
    // B's join waits for A, which never rejoins.
    let addr = broker.addr.clone();
    let waiting = std::thread::spawn(move || {
        let mut b = RawConnection::connect(&addr).unwrap();
        let first: JoinGroupResponse = b
            .call(ApiKey::JoinGroup, 9, &join_request("waiting", "", None))
            .unwrap();
        b.call::<_, JoinGroupResponse>(
            ApiKey::JoinGroup,
            9,
            &join_request("waiting", first.member_id.as_str(), None),
        )
    });
    assert!(tests::wait_until(tests::GROUP_SETTLE_TIMEOUT, || {
        tests::describe_group(&mut a, "waiting")
            .unwrap()
            .group_state
            .as_str()
            == "PreparingRebalance"
    }));
    assert_eq!(broker.terminate().unwrap(), 0);
    let answer = waiting.join().unwrap().expect("the JoinGroup is answered");
    assert_eq!(answer.error_code, 16, "NOT_COORDINATOR");
}

/// Java's `String.hashCode` over UTF-16 units (how Kafka places groups).
fn java_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

#[test]
fn commits_are_kafka_format_records_in_the_groups_offsets_partition() {
    // The commit lands in partition abs(hash) % N of __consumer_offsets, keyed (v1, group, topic, partition), valued v3.
    let dir = tempfile::tempdir().unwrap();
    let broker =
        BrokerProcess::start(dir.path(), &["--set", "offsets.topic.num.partitions=7"]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    tests::create_topic(&mut conn, TOPIC, 1);
    let group_id = "consumer-group-with-a-negative-hash";
    tests::wait_for_group_coordinator(&mut conn, group_id).unwrap();
    let committed: OffsetCommitResponse = conn
        .call(
            ApiKey::OffsetCommit,
            8,
            &commit_request(group_id, -1, "", 1234),
        )
        .unwrap();
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);

    // The offsets topic is internal, with the configured partition count.
    let metadata: MetadataResponse = conn
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(s("__consumer_offsets")))),
            ])),
        )
        .unwrap();
    assert!(metadata.topics[0].is_internal);
    assert_eq!(metadata.topics[0].partitions.len(), 7);

    let hash = java_hash(group_id);
    assert!(hash < 0, "the test wants a negative hash: {hash}");
    let partition = if hash == i32::MIN { 0 } else { hash.abs() } % 7;
    let records = tests::fetch_partition(&mut conn, "__consumer_offsets", partition, 0).unwrap();
    let batch = protocol::batch::batches(&records)
        .next()
        .expect("one batch");
    let decoded = protocol::batch::decode_records(&batch).unwrap();
    assert_eq!(decoded.len(), 1);
    let mut key = BytesMut::new();
    key.put_i16(1);
    key.put_i16(group_id.len() as i16);
    key.put_slice(group_id.as_bytes());
    key.put_i16(TOPIC.len() as i16);
    key.put_slice(TOPIC.as_bytes());
    key.put_i32(0);
    assert_eq!(decoded[0].key.as_deref(), Some(&key[..]));
    let value = decoded[0].value.clone().expect("not a tombstone");
    assert_eq!(&value[..2], &[0, 3], "value version 3");
    assert_eq!(i64::from_be_bytes(value[2..10].try_into().unwrap()), 1234);
    assert_eq!(
        i32::from_be_bytes(value[10..14].try_into().unwrap()),
        -1,
        "no leader epoch"
    );
    assert_eq!(&value[14..18], &[0, 2, b'm', b'd'], "metadata");
    // No other partition holds anything.
    for other in (0..7).filter(|p| *p != partition) {
        assert!(
            tests::fetch_partition(&mut conn, "__consumer_offsets", other, 0)
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn an_empty_groups_offsets_expire_and_stay_expired_after_a_restart() {
    // With offsets.retention.minutes=1, an empty group's offsets are tombstoned by the broker's own timer and do not come back on load.
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(
        dir.path(),
        &[
            "--set",
            "offsets.retention.minutes=1",
            "--set",
            "offsets.retention.check.interval.ms=500",
        ],
    )
    .unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    tests::create_topic(&mut conn, TOPIC, 1);
    tests::wait_for_group_coordinator(&mut conn, "expiring").unwrap();
    let committed: OffsetCommitResponse = conn
        .call(
            ApiKey::OffsetCommit,
            9,
            &commit_request("expiring", -1, "", 5),
        )
        .unwrap();
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        tests::committed_offsets(&mut conn, "expiring", TOPIC, &[0]).unwrap(),
        vec![5]
    );
    // A member group keeps its offsets while it has a member heartbeating.
    let member = join_alone(&mut conn, 9, "kept")
        .member_id
        .as_str()
        .to_string();
    let sync = SyncGroupRequest::default()
        .with_group_id(group("kept"))
        .with_generation_id(1)
        .with_member_id(s(&member));
    let _: SyncGroupResponse = conn.call(ApiKey::SyncGroup, 5, &sync).unwrap();
    let kept: OffsetCommitResponse = conn
        .call(
            ApiKey::OffsetCommit,
            9,
            &commit_request("kept", 1, &member, 9),
        )
        .unwrap();
    assert_eq!(kept.topics[0].partitions[0].error_code, 0);
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(group("kept"))
        .with_generation_id(1)
        .with_member_id(s(&member));
    let expired = tests::wait_until(Duration::from_secs(90), || {
        let beat: HeartbeatResponse = conn.call(ApiKey::Heartbeat, 4, &heartbeat).unwrap();
        assert_eq!(beat.error_code, 0);
        tests::committed_offsets(&mut conn, "expiring", TOPIC, &[0]).unwrap() == vec![-1]
    });
    assert!(expired, "the offset expired within a minute and a half");
    assert!(broker.wait_for_output("expired committed offsets"));
    assert_eq!(
        tests::committed_offsets(&mut conn, "kept", TOPIC, &[0]).unwrap(),
        vec![9]
    );
    let described = tests::describe_group(&mut conn, "expiring").unwrap();
    assert_eq!(described.group_state.as_str(), "Dead", "the group is gone");
    broker.terminate().unwrap();
    broker.restart().unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    tests::wait_for_group_coordinator(&mut conn, "expiring").unwrap();
    assert_eq!(
        tests::committed_offsets(&mut conn, "expiring", TOPIC, &[0]).unwrap(),
        vec![-1]
    );
    assert_eq!(
        tests::committed_offsets(&mut conn, "kept", TOPIC, &[0]).unwrap(),
        vec![9]
    );
}
