//! DeleteRecords (API 21) against real broker processes: librdkafka's admin
//! client moves a partition's log start offset, consumers and ListOffsets
//! see it, it survives a crash, and followers follow it, so a new leader
//! starts where the old one did.

use std::time::Duration;

use protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use protocol::messages::{ApiKey, DeleteRecordsRequest, DeleteRecordsResponse, TopicName};
use protocol::{ErrorCode, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tests::{batch_of, create_topic, produce_to, BrokerProcess, Cluster, RawConnection};

/// Bound on a consumer's first message.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new leader may take to be elected after a kill -9.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the ISR may take to be full.
const ISR_FULL_TIMEOUT: Duration = Duration::from_secs(30);

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// DeleteRecords v2 of partition 0 before `offset`: (error code, low watermark).
fn delete_records(conn: &mut RawConnection, topic: &str, offset: i64) -> (i16, i64) {
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(offset)])]);
    let response: DeleteRecordsResponse = conn.call(ApiKey::DeleteRecords, 2, &request).unwrap();
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

fn create_compacted_topic(conn: &mut RawConnection, name: &str) {
    use protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("cleanup.policy"))
                .with_value(Some(StrBytes::from_static_str("compact")))])])
        .with_timeout_ms(5000);
    let response: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 7, &request).unwrap();
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0]);
}

fn produce_numbered(conn: &mut RawConnection, topic: &str, count: i64, acks: i16) {
    for i in 0..count {
        let value = format!("value-{i}");
        assert_eq!(
            produce_to(conn, topic, 0, batch_of(&[&value]), acks).unwrap(),
            (0, i)
        );
    }
}

/// The first message a librdkafka consumer reads from the beginning: (offset, value).
fn first_from_beginning(addr: &str, topic: &str) -> (i64, String) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "delete-records-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = std::time::Instant::now() + CONSUME_TIMEOUT;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no message within {CONSUME_TIMEOUT:?}"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            let message = message.expect("consumer error");
            let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            return (message.offset(), value);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_delete_records_moves_the_log_start_for_consumers_and_list_offsets() {
    // AdminClient::delete_records answers the low watermark; consumers from earliest start there, also after kill -9.
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "trimmed", 1);
    produce_numbered(&mut conn, "trimmed", 10, 1);

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("trimmed", 0, Offset::Offset(4))
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let result = admin.delete_records(&offsets, &options).await.unwrap();
    let element = result.find_partition("trimmed", 0).unwrap();
    assert!(element.error().is_ok(), "{:?}", element.error());
    assert_eq!(element.offset(), Offset::Offset(4), "the low watermark");

    assert_eq!(tests::earliest_offset(&mut conn, "trimmed"), (0, 4));
    let addr = broker.addr.clone();
    let first = tokio::task::spawn_blocking(move || first_from_beginning(&addr, "trimmed"))
        .await
        .unwrap();
    assert_eq!(first, (4, "value-4".to_string()));

    // The log start offset is kept across a crash.
    drop(conn);
    broker.kill9().unwrap();
    broker.restart().unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    assert_eq!(tests::earliest_offset(&mut conn, "trimmed"), (0, 4));
}

#[test]
fn delete_records_answers_kafkas_errors_and_minus_one_means_the_high_watermark() {
    // Past the high watermark is out of range, -1 deletes everything committed, unknown and compacted topics are refused.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "bounded", 1);
    produce_numbered(&mut conn, "bounded", 5, 1);
    assert_eq!(
        delete_records(&mut conn, "bounded", 6).0,
        ErrorCode::OFFSET_OUT_OF_RANGE.code()
    );
    assert_eq!(
        delete_records(&mut conn, "bounded", -7).0,
        ErrorCode::OFFSET_OUT_OF_RANGE.code()
    );
    assert_eq!(delete_records(&mut conn, "bounded", 2), (0, 2));
    // An offset below the log start changes nothing.
    assert_eq!(delete_records(&mut conn, "bounded", 1), (0, 2));
    assert_eq!(delete_records(&mut conn, "bounded", -1), (0, 5));
    assert_eq!(tests::earliest_offset(&mut conn, "bounded"), (0, 5));
    // The log goes on from where it ended.
    assert_eq!(
        produce_to(&mut conn, "bounded", 0, batch_of(&["after"]), 1).unwrap(),
        (0, 5)
    );
    assert_eq!(
        delete_records(&mut conn, "no-such-topic", 0).0,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
    );

    create_compacted_topic(&mut conn, "compacted");
    assert_eq!(
        delete_records(&mut conn, "compacted", 0).0,
        ErrorCode::POLICY_VIOLATION.code()
    );
}

#[test]
fn followers_follow_the_leaders_log_start_so_a_new_leader_starts_there() {
    // After DeleteRecords on the leader and kill -9 of it, the new leader's earliest offset is the deleted offset.
    let mut cluster = Cluster::start(3, 0, tests::cluster::FAST_FAILURE_SETTINGS).unwrap();
    assert_eq!(cluster.create_topic(1, "shared", 1, 3).unwrap(), 0);
    let view = cluster.wait_for_agreement("a full ISR", ISR_FULL_TIMEOUT, |v| {
        v.partitions("shared").len() == 1 && v.partition("shared", 0).isr.len() == 3
    });
    let leader = view.partition("shared", 0).leader;
    let follower = *view
        .partition("shared", 0)
        .replicas
        .iter()
        .find(|&&id| id != leader)
        .unwrap();
    let mut conn = RawConnection::connect(&cluster.client_addr(leader)).unwrap();
    produce_numbered(&mut conn, "shared", 10, -1);
    let mut to_follower = RawConnection::connect(&cluster.client_addr(follower)).unwrap();
    assert_eq!(
        delete_records(&mut to_follower, "shared", 6).0,
        ErrorCode::NOT_LEADER_OR_FOLLOWER.code()
    );
    assert_eq!(delete_records(&mut conn, "shared", 6), (0, 6));
    // An acks=all write is acknowledged once every follower fetched past it,
    // after the fetch answer that carried the new log start offset.
    assert_eq!(
        produce_to(&mut conn, "shared", 0, batch_of(&["after"]), -1).unwrap(),
        (0, 10)
    );
    drop(conn);
    cluster.kill9(leader);
    let view = cluster.wait_for(follower, "a new leader", FAILOVER_TIMEOUT, |v| {
        let p = v.partition("shared", 0);
        p.leader > 0 && p.leader != leader
    });
    let new_leader = view.partition("shared", 0).leader;
    let mut conn = RawConnection::connect(&cluster.client_addr(new_leader)).unwrap();
    assert_eq!(tests::earliest_offset(&mut conn, "shared"), (0, 6));
}
