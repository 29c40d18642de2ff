//! A topic's `compression.type` on the real broker: batches produced in
//! another codec (by our client, by kcat) are stored in the topic's codec,
//! read back raw with Fetch, and consumed intact by librdkafka and kcat;
//! `producer` keeps the producer's codec; the broker-wide default applies to
//! topics without their own setting; bad values are INVALID_CONFIG, and a
//! batch too large once decompressed is MESSAGE_TOO_LARGE.

use std::time::Duration;

use bytes::Bytes;
use protocol::batch::{BatchBuilder, BatchHeader, Compression, Record};
use protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use protocol::messages::describe_configs_request::DescribeConfigsResource;
use protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    TopicName,
};
use protocol::{ErrorCode, StrBytes};
use rdkafka::message::Headers;
use rdkafka::Message;
use tests::{kcat, produce_to, BrokerProcess, RawConnection};

/// Bound on reading back everything a test produced.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);
/// Records a client produces: several batches.
const RECORDS: usize = 500;

/// CreateTopics v7 of a one-partition topic with `configs`; the topic's error code.
fn create_with(conn: &mut RawConnection, name: &str, configs: &[(&str, &str)]) -> i16 {
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )])
        .with_timeout_ms(5000);
    let response: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 7, &request).unwrap();
    response.topics[0].error_code
}

/// IncrementalAlterConfigs SET of one topic config; the resource's error code.
fn set_topic_config(conn: &mut RawConnection, topic: &str, key: &str, value: &str) -> i16 {
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.into()))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_string(key.into()))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_string(value.into())))]),
    ]);
    let response: IncrementalAlterConfigsResponse = conn
        .call(ApiKey::IncrementalAlterConfigs, 1, &request)
        .unwrap();
    response.responses[0].error_code
}

/// A topic's `compression.type` as DescribeConfigs v4 gives it: (value, source).
fn described_compression(conn: &mut RawConnection, topic: &str) -> (String, i8) {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.into()))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("compression.type")]))]);
    let response: DescribeConfigsResponse =
        conn.call(ApiKey::DescribeConfigs, 4, &request).unwrap();
    let config = &response.results[0].configs[0];
    (
        config.value.as_ref().unwrap().to_string(),
        config.config_source,
    )
}

/// The stored batches of partition 0 of `topic`, each checked against its CRC.
fn stored_batches(addr: &str, topic: &str) -> Vec<Bytes> {
    let mut raw = RawConnection::connect(addr).unwrap();
    let records = tests::fetch_partition(&mut raw, topic, 0, 0).unwrap();
    let batches: Vec<_> = protocol::batch::batches(&records).collect();
    for batch in &batches {
        BatchHeader::new(batch).unwrap().validate().unwrap();
    }
    batches
}

/// The codecs of `topic`'s stored batches.
fn stored_codecs(addr: &str, topic: &str) -> Vec<Compression> {
    stored_batches(addr, topic)
        .iter()
        .map(|b| BatchHeader::new(b).unwrap().compression())
        .collect()
}

/// `records` as one batch compressed with `codec`, built as a producer would.
fn compressed_batch(codec: client::Compression, records: &[Record]) -> Bytes {
    let mut builder = BatchBuilder::new();
    for record in records {
        builder.push(record);
    }
    let plain = builder.build();
    let packed = protocol::compression::recompress_batch(
        &plain,
        codec,
        protocol::compression::DECOMPRESSED_BYTES_MAX,
    )
    .unwrap();
    Bytes::from(packed)
}

fn value(i: usize) -> String {
    format!("record {i} {}", "compressible ".repeat(10))
}

/// A message as librdkafka read it: offset, key, value, its first header's value.
type Consumed = (i64, Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// Reads partition 0 of `topic` with librdkafka until `count` messages arrived.
fn consume_with_librdkafka(addr: &str, topic: &str, count: usize) -> Vec<Consumed> {
    tests::read_partition_zero_with_librdkafka(
        addr,
        topic,
        "compression-reader",
        count,
        CONSUME_TIMEOUT,
        |message| {
            let header = message
                .headers()
                .and_then(|h| h.iter().next().and_then(|h| h.value.map(|v| v.to_vec())));
            (
                message.offset(),
                message.key().unwrap_or_default().to_vec(),
                message.payload().unwrap_or_default().to_vec(),
                header,
            )
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_uncompressed_batches_are_stored_as_zstd_and_librdkafka_reads_them_intact() {
    // compression.type=zstd: our idempotent producer's uncompressed batches are stored in zstd with the
    // producer id, sequences, offsets, keys, values and headers kept; librdkafka reads every record.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let addr = broker.addr.clone();
    let mut conn = RawConnection::connect(&addr).unwrap();
    assert_eq!(
        create_with(&mut conn, "zstd-topic", &[("compression.type", "zstd")]),
        0
    );
    let mut config = client::ProducerConfig::new(&addr);
    config.compression = client::Compression::None;
    // Small batches, so that several are recompressed.
    config.batch_size = 8 * 1024;
    let producer = client::Producer::connect(config).await.unwrap();
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let record = client::ProducerRecord::new("zstd-topic")
            .with_partition(0)
            .with_key(format!("key-{i}"))
            .with_header("n", Some(Bytes::from(i.to_string())))
            .with_value(value(i));
        deliveries.push(producer.send(record).await.unwrap());
    }
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.unwrap();
    }

    let (batches, consumed) = tokio::task::spawn_blocking(move || {
        (
            stored_batches(&addr, "zstd-topic"),
            consume_with_librdkafka(&addr, "zstd-topic", RECORDS),
        )
    })
    .await
    .unwrap();
    assert!(batches.len() >= 2, "{} batches", batches.len());
    let mut next_offset = 0;
    for batch in &batches {
        let header = BatchHeader::new(batch).unwrap();
        assert_eq!(header.compression(), Compression::Zstd);
        assert!(header.producer_id() >= 0, "the producer id is kept");
        assert_eq!(header.producer_epoch(), 0);
        assert_eq!(i64::from(header.base_sequence()), next_offset);
        assert_eq!(header.base_offset(), next_offset);
        assert_eq!(
            header.records_count(),
            header.last_offset_delta() + 1,
            "dense"
        );
        next_offset = header.last_offset() + 1;
    }
    assert_eq!(next_offset, RECORDS as i64);
    for (i, (offset, key, payload, header)) in consumed.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        assert_eq!(key, format!("key-{i}").as_bytes());
        assert_eq!(payload, value(i).as_bytes());
        assert_eq!(header.as_deref(), Some(i.to_string().as_bytes()));
    }
}

#[test]
fn kcat_batches_are_recompressed_to_gzip_and_kept_as_lz4_under_producer() {
    // kcat's uncompressed batches land in gzip on a gzip topic and its lz4 batches stay lz4 on a topic
    // with the default `producer`; kcat reads both back key for key.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let b = broker.addr.as_str();
    let mut conn = RawConnection::connect(b).unwrap();
    assert_eq!(
        create_with(&mut conn, "gzip-topic", &[("compression.type", "gzip")]),
        0
    );
    assert_eq!(create_with(&mut conn, "producer-topic", &[]), 0);
    assert_eq!(
        described_compression(&mut conn, "producer-topic"),
        ("producer".to_string(), 5)
    );
    assert_eq!(
        described_compression(&mut conn, "gzip-topic"),
        ("gzip".to_string(), 1)
    );

    let input: String = (0..RECORDS)
        .map(|i| format!("k{i}:{}\n", value(i)))
        .collect();
    for (topic, codec) in [("gzip-topic", "none"), ("producer-topic", "lz4")] {
        kcat(
            &["-b", b, "-P", "-t", topic, "-p", "0", "-K:", "-z", codec],
            Some(&input),
        );
    }
    let gzip = stored_codecs(b, "gzip-topic");
    assert!(!gzip.is_empty());
    assert!(gzip.iter().all(|c| *c == Compression::Gzip), "{gzip:?}");
    let lz4 = stored_codecs(b, "producer-topic");
    assert!(!lz4.is_empty());
    assert!(lz4.iter().all(|c| *c == Compression::Lz4), "{lz4:?}");

    for topic in ["gzip-topic", "producer-topic"] {
        let consumed = kcat(
            &[
                "-b",
                b,
                "-C",
                "-t",
                topic,
                "-o",
                "beginning",
                "-e",
                "-f",
                "%o %k:%s\n",
            ],
            None,
        );
        let lines: Vec<&str> = consumed.lines().collect();
        assert_eq!(lines.len(), RECORDS, "{topic}");
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(*line, format!("{i} k{i}:{}", value(i)), "{topic}");
        }
    }
}

#[test]
fn the_broker_default_applies_and_bad_values_and_oversized_batches_are_refused() {
    // compression.type=lz4 on the broker stores a plain topic's batches in lz4; a topic set to uncompressed
    // decompresses, and refuses a batch that is too large once decompressed; bad values are INVALID_CONFIG.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &["--set", "compression.type=lz4"]).unwrap();
    let b = broker.addr.as_str();
    let mut conn = RawConnection::connect(b).unwrap();

    assert_eq!(create_with(&mut conn, "plain", &[]), 0);
    // Inherited from the broker's configuration: STATIC_BROKER_CONFIG, as Kafka says.
    assert_eq!(
        described_compression(&mut conn, "plain"),
        ("lz4".to_string(), 4)
    );
    let (code, _) = produce_to(&mut conn, "plain", 0, tests::batch_of(&["a", "b"]), -1).unwrap();
    assert_eq!(code, 0);
    assert_eq!(stored_codecs(b, "plain"), vec![Compression::Lz4]);

    for bad in ["brotli", "none", "ZSTD", ""] {
        assert_eq!(
            create_with(&mut conn, "bad", &[("compression.type", bad)]),
            ErrorCode::INVALID_CONFIG.code(),
            "{bad:?}"
        );
        assert_eq!(
            set_topic_config(&mut conn, "plain", "compression.type", bad),
            ErrorCode::INVALID_CONFIG.code(),
            "{bad:?}"
        );
    }

    // A gzip batch of 200 records that shrinks under 2,000 bytes but is ~20 KB decompressed.
    assert_eq!(
        create_with(
            &mut conn,
            "small",
            &[
                ("compression.type", "uncompressed"),
                ("max.message.bytes", "2000")
            ]
        ),
        0
    );
    let records: Vec<Record> = (0..200)
        .map(|i| Record {
            key: None,
            value: Some(Bytes::from(value(i))),
            headers: vec![],
            timestamp: tests::now_ms(),
        })
        .collect();
    let gzip = compressed_batch(client::Compression::Gzip, &records);
    assert!(gzip.len() < 2000, "{} bytes", gzip.len());
    let (code, _) = produce_to(&mut conn, "small", 0, gzip, -1).unwrap();
    assert_eq!(code, ErrorCode::MESSAGE_TOO_LARGE.code());
    // A few records fit once decompressed, and are stored uncompressed.
    let gzip = compressed_batch(client::Compression::Gzip, &records[..3]);
    let (code, offset) = produce_to(&mut conn, "small", 0, gzip, -1).unwrap();
    assert_eq!((code, offset), (0, 0));
    let stored = stored_batches(b, "small");
    assert_eq!(stored.len(), 1);
    let decoded = protocol::batch::decode_records(&stored[0]).unwrap();
    let values: Vec<_> = decoded.iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(
        values,
        (0..3).map(|i| Bytes::from(value(i))).collect::<Vec<_>>()
    );

    // Switching a topic to `producer` stops recompression from the next batch on.
    assert_eq!(
        set_topic_config(&mut conn, "plain", "compression.type", "producer"),
        0
    );
    assert_eq!(
        described_compression(&mut conn, "plain"),
        ("producer".to_string(), 1)
    );
    let (code, _) = produce_to(&mut conn, "plain", 0, tests::batch_of(&["c"]), -1).unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        stored_codecs(b, "plain"),
        vec![Compression::Lz4, Compression::None]
    );
}
