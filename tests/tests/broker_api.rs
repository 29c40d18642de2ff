//! The Kafka APIs of a single broker, exercised over raw connections to the
//! real binary: lifecycle, long-poll fetches, byte limits, offsets by time,
//! topic administration and configs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse, FetchRequest,
    FetchResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use protocol::{ErrorCode, StrBytes};
use tests::{batch_of, create_topic, produce_to, BrokerProcess, RawConnection};

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn fetch(
    conn: &mut RawConnection,
    topic: &str,
    offset: i64,
    max_wait_ms: i32,
    max_bytes: i32,
    partition_max_bytes: i32,
) -> FetchResponse {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(partition_max_bytes)])]);
    conn.call(ApiKey::Fetch, 12, &request).unwrap()
}

fn records_of(response: &FetchResponse) -> Bytes {
    response.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default()
}

#[test]
fn sigterm_shuts_down_cleanly_and_a_restart_serves_every_write() {
    // SIGTERM exits 0 after flushing; the restarted broker serves the same data at the same offsets.
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "kept", 1);
    for i in 0..10 {
        let value = format!("value-{i}");
        assert_eq!(
            produce_to(&mut conn, "kept", 0, batch_of(&[&value]), 1).unwrap(),
            (0, i)
        );
    }
    drop(conn);
    assert_eq!(broker.terminate().unwrap(), 0, "graceful shutdown exits 0");
    assert!(broker.output().contains("shut down cleanly"));
    broker.restart().unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let records = tests::fetch_partition(&mut conn, "kept", 0, 0).unwrap();
    let mut values = Vec::new();
    for batch in protocol::batch::batches(&records) {
        for record in protocol::batch::decode_records(&batch).unwrap() {
            values.push((record.offset, record.value.unwrap()));
        }
    }
    let expected: Vec<(i64, Bytes)> = (0..10)
        .map(|i| (i, Bytes::from(format!("value-{i}"))))
        .collect();
    assert_eq!(values, expected);
}

#[test]
fn a_broker_given_one_worker_thread_runs_one_and_serves() {
    // Brokers sharing a machine split its cores with num.worker.threads.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &["--set", "num.worker.threads=1"]).unwrap();
    assert!(
        broker.wait_for_output("runtime started worker_threads=1"),
        "{}",
        broker.output()
    );
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "one-thread", 1);
    let records = batch_of(&["a", "b"]);
    assert_eq!(
        produce_to(&mut conn, "one-thread", 0, records.clone(), 1).unwrap(),
        (0, 0)
    );
    let response = fetch(&mut conn, "one-thread", 0, 0, 1 << 20, 1 << 20);
    // Byte for byte past the offset and leader epoch, which the broker sets.
    assert_eq!(&records_of(&response)[16..], &records[16..]);
}

#[test]
fn long_poll_fetch_returns_as_soon_as_a_record_arrives() {
    // A fetch waiting on an empty partition returns the new record well before max_wait_ms.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "poll", 1);
    let addr = broker.addr.clone();
    let started = Instant::now();
    let waiter = std::thread::spawn(move || {
        let mut conn = RawConnection::connect(&addr).unwrap();
        fetch(&mut conn, "poll", 0, 20_000, 1 << 20, 1 << 20)
    });
    // The producer connection is independent of the waiting fetch.
    let mut producer = RawConnection::connect(&broker.addr).unwrap();
    assert_eq!(
        produce_to(&mut producer, "poll", 0, batch_of(&["wake up"]), 1).unwrap(),
        (0, 0)
    );
    let response = waiter.join().unwrap();
    let records = records_of(&response);
    assert!(!records.is_empty(), "the waiting fetch got the record");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it did not wait out max_wait_ms"
    );
}

#[test]
fn long_poll_fetch_without_data_waits_max_wait_ms_then_answers_empty() {
    // With nothing to read, the broker holds the fetch for max_wait_ms and then answers with no records.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "idle", 1);
    let started = Instant::now();
    let response = fetch(&mut conn, "idle", 0, 400, 1 << 20, 1 << 20);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
    assert!(records_of(&response).is_empty());
}

#[test]
fn fetch_respects_max_bytes_but_always_returns_a_first_whole_batch() {
    // max_bytes caps the response at whole batches; a first batch larger than the limit still comes (KIP-74).
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "sized", 1);
    let value = "x".repeat(1000);
    for i in 0..10 {
        assert_eq!(
            produce_to(&mut conn, "sized", 0, batch_of(&[&value]), 1).unwrap(),
            (0, i)
        );
    }
    let one_batch = tests::fetch_partition(&mut conn, "sized", 0, 9)
        .unwrap()
        .len();
    let response = fetch(
        &mut conn,
        "sized",
        0,
        0,
        (one_batch * 3 + 10) as i32,
        1 << 20,
    );
    let records = records_of(&response);
    assert_eq!(protocol::batch::batches(&records).count(), 3);
    let response = fetch(&mut conn, "sized", 0, 0, 1 << 20, 10);
    let records = records_of(&response);
    assert_eq!(
        protocol::batch::batches(&records).count(),
        1,
        "one oversized first batch"
    );
    // Fetching past the end of the log is out of range.
    let response = fetch(&mut conn, "sized", 11, 0, 1 << 20, 1 << 20);
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ErrorCode::OFFSET_OUT_OF_RANGE.code()
    );
}

fn list_offset(conn: &mut RawConnection, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)])]);
    let response: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, 7, &request).unwrap();
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

#[test]
fn list_offsets_answers_earliest_latest_max_and_by_timestamp() {
    // -2, -1, -3 and a timestamp each find the offset Kafka would.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "times", 1);
    let base = tests::now_ms();
    for i in 0..5i64 {
        let mut builder = protocol::batch::BatchBuilder::new();
        builder.push(&protocol::batch::Record {
            key: None,
            value: Some(Bytes::from(format!("at {i}"))),
            headers: vec![],
            timestamp: base + i * 1000,
        });
        assert_eq!(
            produce_to(&mut conn, "times", 0, builder.build(), 1).unwrap(),
            (0, i)
        );
    }
    assert_eq!(list_offset(&mut conn, "times", -2).1, 0);
    assert_eq!(list_offset(&mut conn, "times", -1).1, 5);
    let (_, offset, timestamp) = list_offset(&mut conn, "times", -3);
    assert_eq!((offset, timestamp), (4, base + 4000));
    let (error, offset, timestamp) = list_offset(&mut conn, "times", base + 2500);
    assert_eq!((error, offset, timestamp), (0, 3, base + 3000));
    assert_eq!(
        list_offset(&mut conn, "times", base + 10_000).1,
        -1,
        "nothing that late"
    );
}

#[test]
fn metadata_auto_creates_topics_with_the_configured_partition_count() {
    // num.partitions sets how many partitions an auto-created topic gets; the broker is leader of all.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &["--set", "num.partitions=3"]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(topic_name("auto"))),
        ]))
        .with_allow_auto_topic_creation(true);
    let response: MetadataResponse = conn.call(ApiKey::Metadata, 12, &request).unwrap();
    let topic = &response.topics[0];
    assert_eq!(topic.error_code, 0);
    assert_eq!(topic.partitions.len(), 3);
    assert!(!topic.topic_id.is_nil());
    let broker_id = response.brokers[0].node_id;
    assert!(topic
        .partitions
        .iter()
        .all(|p| p.leader_id == broker_id && p.isr_nodes == vec![broker_id]));
    // A client that asks not to create gets UNKNOWN_TOPIC_OR_PARTITION.
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(topic_name("not-auto"))),
        ]))
        .with_allow_auto_topic_creation(false);
    let response: MetadataResponse = conn.call(ApiKey::Metadata, 12, &request).unwrap();
    assert_eq!(
        response.topics[0].error_code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
    );
}

#[test]
fn create_partitions_grows_a_topic_and_refuses_to_shrink_it() {
    // Partitions can be added, never removed; new partitions take writes.
    use protocol::messages::create_partitions_request::CreatePartitionsTopic;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "grow", 2);
    let grow = |count| {
        CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name("grow"))
                .with_count(count)])
            .with_timeout_ms(5000)
    };
    let response: CreatePartitionsResponse =
        conn.call(ApiKey::CreatePartitions, 3, &grow(4)).unwrap();
    assert_eq!(response.results[0].error_code, 0);
    assert_eq!(
        produce_to(&mut conn, "grow", 3, batch_of(&["new"]), 1).unwrap(),
        (0, 0)
    );
    let response: CreatePartitionsResponse =
        conn.call(ApiKey::CreatePartitions, 3, &grow(3)).unwrap();
    assert_eq!(
        response.results[0].error_code,
        ErrorCode::INVALID_PARTITIONS.code()
    );
}

#[test]
fn delete_topic_removes_it_and_its_data() {
    // After DeleteTopics the topic is unknown and its partition directories are gone.
    let dir = tempfile::tempdir().unwrap();
    let broker =
        BrokerProcess::start(dir.path(), &["--set", "auto.create.topics.enable=false"]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "doomed", 2);
    produce_to(&mut conn, "doomed", 0, batch_of(&["bye"]), 1).unwrap();
    assert!(dir.path().join("doomed-0").exists());
    let request = DeleteTopicsRequest::default()
        .with_topic_names(vec![topic_name("doomed")])
        .with_timeout_ms(5000);
    let response: DeleteTopicsResponse = conn.call(ApiKey::DeleteTopics, 5, &request).unwrap();
    assert_eq!(response.responses[0].error_code, 0);
    assert!(!dir.path().join("doomed-0").exists());
    assert!(!dir.path().join("doomed-1").exists());
    let (error, _) = produce_to(&mut conn, "doomed", 0, batch_of(&["again"]), 1).unwrap();
    assert_eq!(error, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code());
}

#[test]
fn describe_configs_reports_topic_overrides_and_broker_basics() {
    // A topic's overrides show as topic-sourced, also after a restart; the broker resource lists its settings.
    use protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use protocol::messages::describe_configs_request::DescribeConfigsResource;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let request = protocol::messages::CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(topic_name("configured"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("60000")))]),
    ]);
    let created: protocol::messages::CreateTopicsResponse =
        conn.call(ApiKey::CreateTopics, 7, &request).unwrap();
    assert_eq!(created.topics[0].error_code, 0);
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("configured")),
        DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1")),
    ]);
    let response: DescribeConfigsResponse =
        conn.call(ApiKey::DescribeConfigs, 4, &request).unwrap();
    let topic = &response.results[0];
    assert_eq!(topic.error_code, 0);
    let retention = topic
        .configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_deref(), Some("60000"));
    assert_eq!(retention.config_source, 1, "topic-level override");
    let broker_configs = &response.results[1];
    assert_eq!(broker_configs.error_code, 0);
    assert!(broker_configs
        .configs
        .iter()
        .any(|c| c.name.as_str() == "log.flush.policy"));
    // Invalid overrides are refused at creation.
    let bad = protocol::messages::CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(topic_name("badly-configured"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("soon")))]),
    ]);
    let refused: protocol::messages::CreateTopicsResponse =
        conn.call(ApiKey::CreateTopics, 7, &bad).unwrap();
    assert_eq!(
        refused.topics[0].error_code,
        ErrorCode::INVALID_CONFIG.code()
    );
}

#[test]
fn internal_offsets_topic_cannot_be_written_created_or_deleted_by_clients() {
    // __consumer_offsets belongs to the broker: no auto-creation, no produce, no create, no delete.
    let dir = tempfile::tempdir().unwrap();
    let broker =
        BrokerProcess::start(dir.path(), &["--set", "offsets.topic.num.partitions=3"]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![
            protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(topic_name("__consumer_offsets"))),
        ]))
        .with_allow_auto_topic_creation(true);
    let response: MetadataResponse = conn.call(ApiKey::Metadata, 12, &metadata).unwrap();
    assert_eq!(
        response.topics[0].error_code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
    );
    // The first group lookup makes the broker create it.
    tests::wait_for_group_coordinator(&mut conn, "some-group").unwrap();
    let response: MetadataResponse = conn.call(ApiKey::Metadata, 12, &metadata).unwrap();
    assert_eq!(response.topics[0].error_code, 0);
    assert!(response.topics[0].is_internal);
    assert_eq!(response.topics[0].partitions.len(), 3);
    let (error, _) =
        produce_to(&mut conn, "__consumer_offsets", 0, batch_of(&["forged"]), 1).unwrap();
    assert_eq!(error, ErrorCode::INVALID_TOPIC_EXCEPTION.code());
    let request = DeleteTopicsRequest::default()
        .with_topic_names(vec![topic_name("__consumer_offsets")])
        .with_timeout_ms(5000);
    let response: DeleteTopicsResponse = conn.call(ApiKey::DeleteTopics, 5, &request).unwrap();
    assert_eq!(
        response.responses[0].error_code,
        ErrorCode::INVALID_TOPIC_EXCEPTION.code()
    );
    assert!(dir.path().join("__consumer_offsets-0").exists());
}

#[test]
fn fetch_by_topic_id_works_from_version_13_and_unknown_ids_are_refused() {
    // Fetch v13+ names topics by id: a known id reads the partition, an unknown one answers UNKNOWN_TOPIC_ID.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "by-id", 1);
    assert_eq!(
        produce_to(&mut conn, "by-id", 0, batch_of(&["a", "b"]), 1).unwrap(),
        (0, 0)
    );
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(topic_name("by-id"))),
    ]));
    let response: MetadataResponse = conn.call(ApiKey::Metadata, 12, &metadata).unwrap();
    let topic_id = response.topics[0].topic_id;
    assert!(!topic_id.is_nil());
    for (id, expected) in [
        (topic_id, 0i16),
        (uuid_of(7), ErrorCode::UNKNOWN_TOPIC_ID.code()),
    ] {
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(id)
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_current_leader_epoch(-1)
                    .with_partition_max_bytes(1 << 20)])]);
        let response: FetchResponse = conn.call(ApiKey::Fetch, 16, &request).unwrap();
        let partition = &response.responses[0].partitions[0];
        assert_eq!(response.responses[0].topic_id, id);
        assert_eq!(partition.error_code, expected);
        if expected == 0 {
            let records = partition.records.clone().unwrap_or_default();
            let batch = protocol::batch::batches(&records)
                .next()
                .expect("one batch");
            assert_eq!(protocol::batch::decode_records(&batch).unwrap().len(), 2);
            assert_eq!(partition.high_watermark, 2);
        }
    }
}

fn uuid_of(byte: u8) -> uuid::Uuid {
    uuid::Uuid::from_bytes([byte; 16])
}

#[test]
fn describe_cluster_and_describe_quorum_name_the_lone_broker_as_controller() {
    // The single-node default is a cluster of one: its own controller and its quorum's leader.
    use protocol::messages::{
        DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest,
        DescribeQuorumResponse,
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &["--node-id", "7"]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let cluster: DescribeClusterResponse = conn
        .call(
            ApiKey::DescribeCluster,
            1,
            &DescribeClusterRequest::default().with_endpoint_type(1),
        )
        .unwrap();
    assert_eq!(cluster.error_code, 0);
    assert_eq!(cluster.controller_id, BrokerId(7));
    let brokers: Vec<(i32, String)> = cluster
        .brokers
        .iter()
        .map(|b| (b.broker_id.0, format!("{}:{}", b.host, b.port)))
        .collect();
    assert_eq!(brokers, vec![(7, broker.addr.clone())]);
    let quorum: DescribeQuorumResponse = conn
        .call(ApiKey::DescribeQuorum, 2, &DescribeQuorumRequest::default())
        .unwrap();
    let partition = &quorum.topics[0].partitions[0];
    assert_eq!(quorum.topics[0].topic_name.0.as_str(), "__cluster_metadata");
    assert_eq!(
        (partition.error_code, partition.leader_id),
        (0, BrokerId(7))
    );
    assert!(
        partition.leader_epoch >= 1 && partition.high_watermark > 0,
        "{partition:?}"
    );
    let voters: Vec<i32> = partition
        .current_voters
        .iter()
        .map(|v| v.replica_id.0)
        .collect();
    assert_eq!(voters, vec![7]);
}

#[test]
fn elect_leaders_and_unregister_broker_are_answered_by_the_controller() {
    // A preferred election where the preferred replica leads is not needed; an unknown broker cannot be unregistered.
    use protocol::messages::elect_leaders_request::TopicPartitions;
    use protocol::messages::{
        ElectLeadersRequest, ElectLeadersResponse, UnregisterBrokerRequest,
        UnregisterBrokerResponse,
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "elect", 2);
    let request = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_timeout_ms(5_000)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic(topic_name("elect"))
            .with_partitions(vec![1, 9])]));
    let response: ElectLeadersResponse = conn.call(ApiKey::ElectLeaders, 2, &request).unwrap();
    assert_eq!(response.error_code, 0);
    let codes: Vec<(i32, i16)> = response.replica_election_results[0]
        .partition_result
        .iter()
        .map(|p| (p.partition_id, p.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            (1, ErrorCode::ELECTION_NOT_NEEDED.code()),
            (9, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code())
        ]
    );
    let unregister: UnregisterBrokerResponse = conn
        .call(
            ApiKey::UnregisterBroker,
            0,
            &UnregisterBrokerRequest::default().with_broker_id(BrokerId(42)),
        )
        .unwrap();
    assert_eq!(
        unregister.error_code,
        ErrorCode::BROKER_ID_NOT_REGISTERED.code()
    );
}

#[test]
fn offset_for_leader_epoch_answers_each_epochs_end_from_the_leader_epoch_cache() {
    // KIP-101/320: the latest epoch ends at the log end; an unknown later epoch is
    // UNDEFINED; a client that knows a newer current epoch than the broker is told so.
    use protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "epochs", 1);
    let (code, _) = produce_to(&mut conn, "epochs", 0, batch_of(&["a", "b", "c"]), 1).unwrap();
    assert_eq!(code, 0);
    let mut ask = |current_leader_epoch: i32, leader_epoch: i32| {
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(topic_name("epochs"))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(current_leader_epoch)
                    .with_leader_epoch(leader_epoch)])]);
        let response: OffsetForLeaderEpochResponse = conn
            .call(ApiKey::OffsetForLeaderEpoch, 4, &request)
            .unwrap();
        let p = &response.topics[0].partitions[0];
        (p.error_code, p.leader_epoch, p.end_offset)
    };
    assert_eq!(ask(0, 0), (0, 0, 3));
    assert_eq!(ask(-1, 7), (0, -1, -1));
    assert_eq!(
        ask(1, 0).0,
        ErrorCode::UNKNOWN_LEADER_EPOCH.code(),
        "a newer current epoch than the broker knows"
    );
}
