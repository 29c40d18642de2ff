//! DescribeLogDirs, AlterReplicaLogDirs and DescribeTopicPartitions over raw
//! connections to the real binary: what each answers, page by page, and the
//! error Kafka gives for each kind of bad request.

use protocol::messages::alter_replica_log_dirs_request::{
    AlterReplicaLogDir, AlterReplicaLogDirTopic,
};
use protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use protocol::messages::describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic;
use protocol::messages::{
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, ApiKey, ApiVersionsRequest,
    ApiVersionsResponse, BrokerId, DescribeLogDirsRequest, DescribeLogDirsResponse,
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, MetadataRequest,
    MetadataResponse, TopicName,
};
use protocol::{ErrorCode, StrBytes};
use tests::{batch_of, create_topic, produce_to, BrokerProcess, RawConnection};

/// The operations a topic allows without ACLs: READ, WRITE, CREATE, DELETE,
/// ALTER, DESCRIBE, DESCRIBE_CONFIGS and ALTER_CONFIGS, as Kafka's bitfield.
const ALL_TOPIC_OPERATIONS: i32 = 3576;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn describe_log_dirs(
    conn: &mut RawConnection,
    version: i16,
    topics: Option<&[(&str, &[i32])]>,
) -> DescribeLogDirsResponse {
    let topics = topics.map(|topics| {
        topics
            .iter()
            .map(|(name, partitions)| {
                DescribableLogDirTopic::default()
                    .with_topic(topic_name(name))
                    .with_partitions(partitions.to_vec())
            })
            .collect()
    });
    let request = DescribeLogDirsRequest::default().with_topics(topics);
    conn.call(ApiKey::DescribeLogDirs, version, &request)
        .unwrap()
}

/// Every (topic, partition, size, lag, is_future) of a DescribeLogDirs answer's one dir.
fn replicas(response: &DescribeLogDirsResponse) -> Vec<(String, i32, i64, i64, bool)> {
    assert_eq!(response.results.len(), 1, "one log dir: {response:?}");
    response.results[0]
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.partition_size,
                    p.offset_lag,
                    p.is_future_key,
                )
            })
        })
        .collect()
}

fn alter_replica_log_dirs(
    conn: &mut RawConnection,
    moves: &[(&str, &str, &[i32])],
) -> Vec<(String, i32, i16)> {
    let dirs = moves
        .iter()
        .map(|(path, topic, partitions)| {
            AlterReplicaLogDir::default()
                .with_path(StrBytes::from_string(path.to_string()))
                .with_topics(vec![AlterReplicaLogDirTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(partitions.to_vec())])
        })
        .collect();
    let request = AlterReplicaLogDirsRequest::default().with_dirs(dirs);
    let response: AlterReplicaLogDirsResponse =
        conn.call(ApiKey::AlterReplicaLogDirs, 2, &request).unwrap();
    let mut results: Vec<_> = response
        .results
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.topic_name.0.to_string(), p.partition_index, p.error_code))
        })
        .collect();
    results.sort();
    results
}

fn describe_topic_partitions(
    conn: &mut RawConnection,
    topics: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> DescribeTopicPartitionsResponse {
    let request = DescribeTopicPartitionsRequest::default()
        .with_topics(
            topics
                .iter()
                .map(|t| TopicRequest::default().with_name(topic_name(t)))
                .collect(),
        )
        .with_response_partition_limit(limit)
        .with_cursor(cursor.map(|(topic, partition)| {
            Cursor::default()
                .with_topic_name(topic_name(topic))
                .with_partition_index(partition)
        }));
    conn.call(ApiKey::DescribeTopicPartitions, 0, &request)
        .unwrap()
}

/// A page as (topic, error code, partition indexes), and its next cursor.
type Page = (Vec<(String, i16, Vec<i32>)>, Option<(String, i32)>);

fn page(response: &DescribeTopicPartitionsResponse) -> Page {
    let topics = response
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                t.error_code,
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let cursor = response
        .next_cursor
        .as_ref()
        .map(|c| (c.topic_name.0.to_string(), c.partition_index));
    (topics, cursor)
}

fn owned(topics: &[(&str, i16, &[i32])], cursor: Option<(&str, i32)>) -> Page {
    (
        topics
            .iter()
            .map(|(name, code, partitions)| (name.to_string(), *code, partitions.to_vec()))
            .collect(),
        cursor.map(|(name, index)| (name.to_string(), index)),
    )
}

#[test]
fn describe_log_dirs_reports_the_data_dir_its_volume_and_each_replica_filtered_by_topic() {
    // DescribeLogDirs names the data dir as the one log dir, with its volume's sizes from v4, the
    // size of each hosted replica (non-zero where records were written) and lag 0 on the leader;
    // a topic list keeps only the named partitions hosted here and leaves unknown ones out.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "sized", 2);
    create_topic(&mut conn, "other", 1);
    let (code, _) = produce_to(&mut conn, "sized", 0, batch_of(&["a", "b", "c"]), -1).unwrap();
    assert_eq!(code, 0);

    let response = describe_log_dirs(&mut conn, 4, None);
    assert_eq!(response.error_code, 0);
    let result = &response.results[0];
    assert_eq!(result.error_code, 0);
    assert_eq!(
        result.log_dir.as_str(),
        dir.path().to_str().unwrap(),
        "the log dir is the data dir"
    );
    assert!(result.total_bytes > 0, "{result:?}");
    assert!(
        result.usable_bytes >= 0 && result.usable_bytes <= result.total_bytes,
        "{result:?}"
    );
    let all = replicas(&response);
    assert_eq!(all.len(), 3, "{all:?}");
    let sized_0 = all.iter().find(|r| r.0 == "sized" && r.1 == 0).unwrap();
    assert!(sized_0.2 > 0, "a written partition has a size: {all:?}");
    assert!(all.contains(&("sized".into(), 1, 0, 0, false)), "{all:?}");
    assert!(all.contains(&("other".into(), 0, 0, 0, false)), "{all:?}");
    assert!(all.iter().all(|r| r.3 == 0 && !r.4), "{all:?}");

    let filtered = describe_log_dirs(&mut conn, 4, Some(&[("sized", &[0, 7]), ("missing", &[0])]));
    assert_eq!(replicas(&filtered), vec![sized_0.clone()]);
    let none = describe_log_dirs(&mut conn, 4, Some(&[("missing", &[0])]));
    assert_eq!(none.results.len(), 1, "the dir is still described");
    assert!(none.results[0].topics.is_empty(), "{none:?}");

    // Version 1 has no volume sizes, but the same replicas.
    let v1 = describe_log_dirs(&mut conn, 1, Some(&[("sized", &[0])]));
    assert_eq!(replicas(&v1), vec![sized_0.clone()]);
    assert_eq!(v1.results[0].total_bytes, -1);
}

#[test]
fn alter_replica_log_dirs_accepts_the_log_dir_and_refuses_other_paths_and_unknown_partitions() {
    // The one log dir is where every replica already is: naming it succeeds; another path is
    // LOG_DIR_NOT_FOUND (checked first, as Kafka does); an unknown topic or partition is
    // UNKNOWN_TOPIC_OR_PARTITION; a topic name too long for Kafka's future-replica dir is
    // INVALID_TOPIC_EXCEPTION.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "moved", 2);
    let log_dir = dir.path().to_str().unwrap();
    let long_name = "x".repeat(240);

    let results = alter_replica_log_dirs(
        &mut conn,
        &[
            (log_dir, "moved", &[0, 1, 5]),
            ("/nowhere", "other", &[0]),
            (log_dir, "missing", &[0]),
            (log_dir, &long_name, &[0]),
        ],
    );
    assert_eq!(
        results,
        vec![
            (
                "missing".into(),
                0,
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
            ),
            ("moved".into(), 0, 0),
            ("moved".into(), 1, 0),
            (
                "moved".into(),
                5,
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
            ),
            ("other".into(), 0, ErrorCode::LOG_DIR_NOT_FOUND.code()),
            (
                long_name.clone(),
                0,
                ErrorCode::INVALID_TOPIC_EXCEPTION.code()
            ),
        ]
    );
    // A path that is not exactly the log dir's is not it.
    let results = alter_replica_log_dirs(&mut conn, &[(&format!("{log_dir}/"), "moved", &[0])]);
    assert_eq!(
        results,
        vec![("moved".into(), 0, ErrorCode::LOG_DIR_NOT_FOUND.code())]
    );
    let described = describe_log_dirs(&mut conn, 4, Some(&[("moved", &[0, 1])]));
    assert_eq!(
        replicas(&described).len(),
        2,
        "the replicas stay where they are"
    );
}

#[test]
fn describe_topic_partitions_pages_through_every_topic_and_resumes_at_the_cursor() {
    // Every topic, four partitions a page: each page ends with a cursor at the first partition
    // left out, the next request resumes there, and together the pages hold every partition once,
    // in name and index order, with what Metadata says of each.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "page-b", 3);
    create_topic(&mut conn, "page-a", 5);
    create_topic(&mut conn, "page-c", 1);

    let first = describe_topic_partitions(&mut conn, &[], 4, None);
    assert_eq!(
        page(&first),
        owned(&[("page-a", 0, &[0, 1, 2, 3])], Some(("page-a", 4)))
    );
    let second = describe_topic_partitions(&mut conn, &[], 4, Some(("page-a", 4)));
    assert_eq!(
        page(&second),
        owned(
            &[("page-a", 0, &[4]), ("page-b", 0, &[0, 1, 2])],
            Some(("page-c", 0))
        )
    );
    let third = describe_topic_partitions(&mut conn, &[], 4, Some(("page-c", 0)));
    assert_eq!(page(&third), owned(&[("page-c", 0, &[0])], None));

    // Each partition as Metadata describes it: leader, epoch, replicas, ISR; no offline replicas
    // and no eligible leader replicas.
    let metadata: MetadataResponse = conn
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .unwrap();
    let topics: Vec<&DescribeTopicPartitionsResponseTopic> = [&first, &second, &third]
        .iter()
        .flat_map(|response| response.topics.iter())
        .collect();
    for topic in topics {
        let name = topic.name.as_ref().unwrap();
        let expected = metadata
            .topics
            .iter()
            .find(|t| t.name.as_ref() == Some(name))
            .unwrap();
        assert_eq!(topic.topic_id, expected.topic_id);
        assert!(!topic.is_internal);
        assert_eq!(topic.topic_authorized_operations, ALL_TOPIC_OPERATIONS);
        for partition in &topic.partitions {
            let want = &expected.partitions[partition.partition_index as usize];
            assert_eq!(partition.error_code, 0);
            assert_eq!(partition.leader_id, BrokerId(1));
            assert_eq!(partition.leader_id, want.leader_id);
            assert_eq!(partition.leader_epoch, want.leader_epoch);
            assert_eq!(partition.replica_nodes, want.replica_nodes);
            assert_eq!(partition.isr_nodes, want.isr_nodes);
            assert!(partition.offline_replicas.is_empty());
            assert_eq!(partition.eligible_leader_replicas, Some(vec![]));
            assert_eq!(partition.last_known_elr, Some(vec![]));
        }
    }

    // A page that ends exactly at a topic's last partition points at the next topic's first.
    let exact = describe_topic_partitions(&mut conn, &[], 5, None);
    assert_eq!(
        page(&exact),
        owned(&[("page-a", 0, &[0, 1, 2, 3, 4])], Some(("page-b", 0)))
    );
    // Without a limit worth the name, a page still holds one partition.
    let one = describe_topic_partitions(&mut conn, &[], 0, None);
    assert_eq!(
        page(&one),
        owned(&[("page-a", 0, &[0])], Some(("page-a", 1)))
    );
}

#[test]
fn describe_topic_partitions_by_name_reports_unknown_names_and_refuses_bad_cursors() {
    // Named topics come back in name order, unknown ones with UNKNOWN_TOPIC_OR_PARTITION (and
    // invalid names with INVALID_TOPIC_EXCEPTION) without using up the page; a cursor skips the
    // topics before it. A cursor on a topic that is not listed, or at a negative partition, is
    // INVALID_REQUEST for every listed topic.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "named", 3);
    create_topic(&mut conn, "unasked", 2);
    let unknown = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code();
    let invalid_name = ErrorCode::INVALID_TOPIC_EXCEPTION.code();

    let first = describe_topic_partitions(&mut conn, &["named", "absent", "bad name!"], 2, None);
    assert_eq!(
        page(&first),
        owned(
            &[
                ("absent", unknown, &[]),
                ("bad name!", invalid_name, &[]),
                ("named", 0, &[0, 1])
            ],
            Some(("named", 2))
        )
    );
    let absent = &first.topics[0];
    assert!(absent.topic_id.is_nil());
    let resumed = describe_topic_partitions(
        &mut conn,
        &["named", "absent", "bad name!"],
        2,
        Some(("named", 2)),
    );
    assert_eq!(page(&resumed), owned(&[("named", 0, &[2])], None));

    let invalid = ErrorCode::INVALID_REQUEST.code();
    let not_listed = describe_topic_partitions(&mut conn, &["named"], 2, Some(("unasked", 0)));
    assert_eq!(page(&not_listed), owned(&[("named", invalid, &[])], None));
    let negative = describe_topic_partitions(&mut conn, &["named"], 2, Some(("named", -1)));
    assert_eq!(page(&negative), owned(&[("named", invalid, &[])], None));
    // Past the last partition the topic is answered with none.
    let past = describe_topic_partitions(&mut conn, &["named"], 2, Some(("named", 9)));
    assert_eq!(page(&past), owned(&[("named", 0, &[])], None));
}

#[test]
fn api_versions_lists_the_log_dir_and_topic_partition_apis() {
    // ApiVersions offers AlterReplicaLogDirs v1-2, DescribeLogDirs v1-4 and DescribeTopicPartitions v0.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let response: ApiVersionsResponse = conn
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .unwrap();
    let range = |key: ApiKey| {
        response
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .map(|k| (k.min_version, k.max_version))
    };
    assert_eq!(range(ApiKey::AlterReplicaLogDirs), Some((1, 2)));
    assert_eq!(range(ApiKey::DescribeLogDirs), Some((1, 4)));
    assert_eq!(range(ApiKey::DescribeTopicPartitions), Some((0, 0)));
}
