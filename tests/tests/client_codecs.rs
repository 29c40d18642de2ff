//! Every codec between our Rust client and librdkafka and the Java client,
//! through the real broker: librdkafka's gzip, snappy (raw, unframed), lz4
//! and zstd batches, and the Java producer's (snappy in xerial framing),
//! read by our consumer; our producer's batches of each codec (snappy in the
//! Java client's xerial framing) read by librdkafka; and a batch that does
//! not decompress surfacing as a typed error that says where to seek.

use std::time::{Duration, Instant};

use client::compression::SNAPPY_JAVA_MAGIC;
use client::{
    AutoOffsetReset, Compression, Consumer, ConsumerConfig, PollError, RecordError, TopicPartition,
};
use protocol::batch::{BatchHeader, BATCH_HEADER_BYTES};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

/// Bound on reading back everything a test produced.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);
/// One poll's wait in the polling loops.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// Records per codec: several batches each.
const RECORDS_PER_CODEC: usize = 1_000;
/// The codecs other than `none`.
const CODECS: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// A value that compresses well, so that librdkafka, which sends a batch
/// uncompressed when compression would not shrink it, compresses every batch.
fn compressible_value(codec: Compression, i: usize) -> String {
    format!("{} record {i} {}", codec.name(), "compressible ".repeat(20))
}

/// The record set of partition 0 of `topic`, straight from the broker.
async fn stored_batches(addr: &str, topic: &str) -> Vec<bytes::Bytes> {
    let (addr, topic) = (addr.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let mut raw = tests::RawConnection::connect(&addr).unwrap();
        let records = tests::fetch_partition(&mut raw, &topic, 0, 0).unwrap();
        protocol::batch::batches(&records).collect::<Vec<_>>()
    })
    .await
    .unwrap()
}

/// Checks that every stored batch of `topic` passes its CRC and carries
/// `codec`'s bits, and returns the batches.
async fn assert_stored_with(addr: &str, topic: &str, codec: Compression) -> Vec<bytes::Bytes> {
    let batches = stored_batches(addr, topic).await;
    assert!(batches.len() >= 2, "{topic}: {} batches", batches.len());
    for batch in &batches {
        let header = BatchHeader::new(batch).unwrap();
        header.validate().unwrap();
        assert_eq!(header.compression(), codec.to_protocol(), "{topic}");
    }
    batches
}

/// Reads partition 0 of `topic` from the start with our consumer until
/// `count` records arrived.
async fn consume_with_ours(addr: &str, topic: &str, count: usize) -> Vec<client::ConsumerRecord> {
    let mut config = ConsumerConfig::new(addr);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    let consumer = Consumer::connect(config).await.unwrap();
    consumer
        .assign(&[TopicPartition::new(topic, 0)])
        .await
        .unwrap();
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let mut seen = Vec::new();
    while seen.len() < count {
        assert!(
            Instant::now() < deadline,
            "{topic}: {} of {count} records",
            seen.len()
        );
        let records = consumer
            .poll(POLL_SLICE)
            .await
            .unwrap_or_else(|e| panic!("{topic}: {e}"));
        seen.extend(records);
    }
    consumer.close().await.unwrap();
    seen
}

/// Reads partition 0 of `topic` from the start with librdkafka until
/// `count` messages arrived: (offset, value).
fn consume_with_librdkafka(addr: &str, topic: &str, count: usize) -> Vec<(i64, Vec<u8>)> {
    tests::read_partition_zero_with_librdkafka(
        addr,
        topic,
        "codec-reader",
        count,
        CONSUME_TIMEOUT,
        |message| (message.offset(), message.payload().unwrap().to_vec()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_batches_of_every_codec_are_read_by_our_consumer() {
    // librdkafka's gzip, raw snappy, lz4 and zstd batches come back record for record, in order.
    let dir = tempfile::tempdir().unwrap();
    let broker = tests::BrokerProcess::start(dir.path(), &[]).unwrap();
    for codec in CODECS {
        let topic = format!("from-librdkafka-{}", codec.name());
        tests::create_topic_async(&broker.addr, &topic, 1).await;
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &broker.addr)
            .set("compression.type", codec.name())
            .set("linger.ms", "20")
            .set("batch.num.messages", "100")
            .create()
            .unwrap();
        let deliveries: Vec<_> = (0..RECORDS_PER_CODEC)
            .map(|i| {
                let value = compressible_value(codec, i);
                producer
                    .send_result(
                        FutureRecord::<(), _>::to(&topic)
                            .partition(0)
                            .payload(&value),
                    )
                    .map_err(|(e, _)| e)
                    .expect("enqueued")
            })
            .collect();
        for delivery in deliveries {
            delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
        let batches = assert_stored_with(&broker.addr, &topic, codec).await;
        if codec == Compression::Snappy {
            // librdkafka writes raw snappy, without the Java framing.
            assert!(batches
                .iter()
                .all(|b| !b[BATCH_HEADER_BYTES..].starts_with(&SNAPPY_JAVA_MAGIC)));
        }
        let records = consume_with_ours(&broker.addr, &topic, RECORDS_PER_CODEC).await;
        assert_eq!(records.len(), RECORDS_PER_CODEC, "{topic}");
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record.offset, i as i64, "{topic}");
            assert_eq!(
                record.value.as_deref(),
                Some(compressible_value(codec, i).as_bytes()),
                "{topic} offset {i}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_batches_of_every_codec_are_read_by_our_consumer() {
    // The Java producer writes 200 records with each codec; our consumer reads every one, in order, with its key and value.
    const RECORDS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let broker = tests::BrokerProcess::start(dir.path(), &[]).unwrap();
    for codec in CODECS {
        let name = codec.name();
        let topic = format!("java-{name}");
        tests::create_topic_async(&broker.addr, &topic, 1).await;
        let (addr, java_topic) = (broker.addr.clone(), topic.clone());
        let output = tokio::task::spawn_blocking(move || {
            tests::external::run_java(
                "ProducerDefaults",
                &[&addr, &java_topic, "1", &RECORDS.to_string(), name],
                None,
            )
        })
        .await
        .unwrap();
        let stdout = output.expect_success(&format!("ProducerDefaults with {name}"));
        assert!(
            stdout.contains(&format!("compression.type={name}")),
            "{stdout}"
        );
        for batch in stored_batches(&broker.addr, &topic).await {
            let header = BatchHeader::new(&batch).unwrap();
            assert_eq!(header.compression(), codec.to_protocol(), "{topic}");
        }
        let records = consume_with_ours(&broker.addr, &topic, RECORDS).await;
        assert_eq!(records.len(), RECORDS, "{topic}");
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record.offset, i as i64, "{topic}");
            assert_eq!(
                record.key.as_deref(),
                Some(format!("key-{}", i % 20).as_bytes()),
                "{topic}@{i}"
            );
            assert_eq!(
                record.value.as_deref(),
                Some(format!("value-{i}").as_bytes()),
                "{topic}@{i}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_batches_of_every_codec_are_read_by_librdkafka() {
    // Our producer's gzip, Java-framed snappy, lz4 and zstd batches are stored as sent and librdkafka reads every record.
    let dir = tempfile::tempdir().unwrap();
    let broker = tests::BrokerProcess::start(dir.path(), &[]).unwrap();
    for codec in CODECS {
        let topic = format!("from-rust-{}", codec.name());
        tests::create_topic_async(&broker.addr, &topic, 1).await;
        let mut config = client::ProducerConfig::new(&broker.addr);
        config.compression = codec;
        // Small batches, so that each codec writes several.
        config.batch_size = 8 * 1024;
        let producer = client::Producer::connect(config).await.unwrap();
        let mut deliveries = Vec::with_capacity(RECORDS_PER_CODEC);
        for i in 0..RECORDS_PER_CODEC {
            let record = client::ProducerRecord::new(topic.as_str())
                .with_partition(0)
                .with_value(compressible_value(codec, i));
            deliveries.push(producer.send(record).await.unwrap());
        }
        producer.flush().await;
        for delivery in deliveries {
            delivery.await.unwrap();
        }
        let batches = assert_stored_with(&broker.addr, &topic, codec).await;
        if codec == Compression::Snappy {
            // We write the Java client's xerial framing.
            assert!(batches
                .iter()
                .all(|b| b[BATCH_HEADER_BYTES..].starts_with(&SNAPPY_JAVA_MAGIC)));
        }
        let (addr, name) = (broker.addr.clone(), topic.clone());
        let consumed = tokio::task::spawn_blocking(move || {
            consume_with_librdkafka(&addr, &name, RECORDS_PER_CODEC)
        })
        .await
        .unwrap();
        for (i, (offset, value)) in consumed.iter().enumerate() {
            assert_eq!(*offset, i as i64, "{topic}");
            assert_eq!(
                value,
                compressible_value(codec, i).as_bytes(),
                "{topic} offset {i}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_does_not_decompress_is_a_typed_error_and_seekable() {
    // A gzip-flagged batch holding plain records fails poll with Decompression (no hang, no panic); seeking past it reads on.
    let dir = tempfile::tempdir().unwrap();
    let broker = tests::BrokerProcess::start(dir.path(), &[]).unwrap();
    tests::create_topic_async(&broker.addr, "broken", 1).await;
    let addr = broker.addr.clone();
    tokio::task::spawn_blocking(move || {
        let mut raw = tests::RawConnection::connect(&addr).unwrap();
        let good = tests::batch_of(&["before"]);
        assert_eq!(
            tests::produce_to(&mut raw, "broken", 0, good, 1).unwrap().0,
            0
        );
        // Plain records under gzip's attribute bits, with a CRC that matches.
        let mut bad = bytes::BytesMut::from(&tests::batch_of(&["x", "y", "z"])[..]);
        bad[21..23].copy_from_slice(&Compression::Gzip.attribute_bits().to_be_bytes());
        let crc = crc32c_of(&bad[21..]);
        bad[17..21].copy_from_slice(&crc.to_be_bytes());
        let (code, base) = tests::produce_to(&mut raw, "broken", 0, bad.freeze(), 1).unwrap();
        assert_eq!((code, base), (0, 1), "the broker stores the batch as sent");
        let after = tests::batch_of(&["after"]);
        assert_eq!(
            tests::produce_to(&mut raw, "broken", 0, after, 1)
                .unwrap()
                .0,
            0
        );
    })
    .await
    .unwrap();

    let mut config = ConsumerConfig::new(&broker.addr);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    let consumer = Consumer::connect(config).await.unwrap();
    let p0 = TopicPartition::new("broken", 0);
    consumer.assign(std::slice::from_ref(&p0)).await.unwrap();
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let mut values = Vec::new();
    let (offset, error) = loop {
        assert!(Instant::now() < deadline, "no error for the broken batch");
        match consumer.poll(POLL_SLICE).await {
            Ok(records) => values.extend(records.iter().map(|r| r.value.clone().unwrap())),
            Err(PollError::Record { offset, error, .. }) => break (offset, error),
            Err(other) => panic!("unexpected {other}"),
        }
    };
    assert_eq!(values, ["before"]);
    assert_eq!(offset, 1);
    assert!(
        matches!(
            error,
            RecordError::Decompression {
                codec: "gzip",
                base_offset: 1,
                last_offset: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("gzip"), "{error}");
    // Nothing is skipped silently: the next poll fails the same way.
    let again = consumer.poll(POLL_SLICE).await;
    assert!(matches!(again, Err(PollError::Record { .. })), "{again:?}");
    consumer.seek(&p0, error.next_offset().unwrap()).unwrap();
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let after = loop {
        assert!(Instant::now() < deadline, "nothing after the broken batch");
        let records = consumer.poll(POLL_SLICE).await.unwrap();
        if let Some(record) = records.iter().next() {
            break record.clone();
        }
    };
    assert_eq!(
        (after.offset, after.value.as_deref()),
        (4, Some(&b"after"[..]))
    );
    consumer.close().await.unwrap();
}

/// CRC-32C as record batches use it (Castagnoli), bitwise: the tests crate
/// has no crc32c dependency, and one short batch does not need speed.
fn crc32c_of(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
