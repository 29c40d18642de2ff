//! KIP-467 per-record errors on a real broker: a record set with records
//! without a key, sent to a compacted topic, is refused whole with
//! `INVALID_RECORD`, each keyless record named by its index in its batch.

use bytes::Bytes;
use protocol::batch::{BatchBuilder, Record};
use protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, ProduceRequest, ProduceResponse, TopicName,
};
use protocol::{ErrorCode, StrBytes};
use tests::{BrokerProcess, RawConnection};

fn batch(keys: &[Option<&str>]) -> Bytes {
    let mut builder = BatchBuilder::new();
    for (i, key) in keys.iter().enumerate() {
        builder.push(&Record {
            key: key.map(|k| Bytes::from(k.to_string())),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: vec![],
            timestamp: tests::now_ms(),
        });
    }
    builder.build()
}

fn produce(conn: &mut RawConnection, topic: &str, records: Bytes) -> ProduceResponse {
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    conn.call(ApiKey::Produce, 9, &request).unwrap()
}

#[test]
fn records_without_a_key_are_refused_by_a_compacted_topic_with_their_batch_indexes() {
    // INVALID_RECORD with record_errors [(1, ..), (3, ..)] and an error message; nothing is appended; keyed records go in.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("keyed")))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("cleanup.policy"))
                .with_value(Some(StrBytes::from_static_str("compact")))])])
        .with_timeout_ms(5000);
    let created: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 7, &request).unwrap();
    assert_eq!(created.topics[0].error_code, 0);

    let response = produce(
        &mut conn,
        "keyed",
        batch(&[Some("a"), None, Some("b"), None]),
    );
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ErrorCode::INVALID_RECORD.code());
    let indexes: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(indexes, vec![1, 3]);
    let message = p.error_message.as_ref().unwrap().to_string();
    assert!(message.contains("without key"), "{message}");
    assert!(p.record_errors[0]
        .batch_index_error_message
        .as_ref()
        .is_some_and(|m| m.contains("without key")));

    // Nothing of the refused set was appended: the next keyed batch starts at 0.
    let response = produce(&mut conn, "keyed", batch(&[Some("a"), Some("b")]));
    let p = &response.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    assert!(p.record_errors.is_empty());

    // A topic that deletes instead of compacting takes records without a key.
    tests::create_topic(&mut conn, "plain", 1);
    let response = produce(&mut conn, "plain", batch(&[None, None]));
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
}
