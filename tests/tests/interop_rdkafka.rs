//! librdkafka (through the `rdkafka` crate) against the real broker binary,
//! configured with nothing but `bootstrap.servers` unless a test says otherwise.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tests::BrokerProcess;

/// Bound on how long a consumer may take to read back what was produced.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(120);

fn client_config(addr: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", addr);
    config
}

async fn create_topic(addr: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client_config(addr).create().unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    for result in results {
        result.unwrap();
    }
}

/// Reads partitions `0..partitions` of `topic` from the beginning until `expected` messages arrived.
fn consume_all(
    addr: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<(i32, i64, Vec<u8>, Vec<u8>)> {
    // librdkafka needs a group id even for manual assignment; nothing is committed.
    let consumer: BaseConsumer = client_config(addr)
        .set("group.id", "interop-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = std::time::Instant::now() + CONSUME_TIMEOUT;
    let mut out = Vec::with_capacity(expected);
    while out.len() < expected {
        assert!(
            std::time::Instant::now() < deadline,
            "consumed only {} of {expected} messages within {CONSUME_TIMEOUT:?}",
            out.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            let message = message.expect("consumer error");
            out.push((
                message.partition(),
                message.offset(),
                message.key().unwrap_or_default().to_vec(),
                message.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    // Nothing beyond what was produced shows up.
    assert!(consumer.poll(Duration::from_millis(500)).is_none());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_acks_all_round_trips_100k_keyed_messages_over_4_partitions() {
    // 100,000 keyed messages with acks=all come back complete, in per-partition order, at the offsets delivery reported.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    create_topic(&broker.addr, "interop", 4).await;
    let producer: FutureProducer = client_config(&broker.addr)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    const COUNT: usize = 100_000;
    let mut delivered: HashMap<String, (i32, i64)> = HashMap::with_capacity(COUNT);
    for chunk_start in (0..COUNT).step_by(10_000) {
        let mut futures = Vec::with_capacity(10_000);
        for i in chunk_start..chunk_start + 10_000 {
            let key = format!("key-{i}");
            let value = format!("value-{i}-{}", "x".repeat(i % 100));
            futures.push((
                key.clone(),
                producer
                    .send_result(FutureRecord::to("interop").key(&key).payload(&value))
                    .map_err(|(e, _)| e)
                    .expect("enqueued"),
            ));
        }
        for (key, future) in futures {
            let delivery = future.await.expect("delivery future");
            let delivery = delivery.map_err(|(e, _)| e).expect("delivered");
            delivered.insert(key, (delivery.partition, delivery.offset));
        }
    }
    let consumed = consume_all(&broker.addr, "interop", 4, COUNT);
    assert_eq!(consumed.len(), COUNT);
    let mut next_offset = [0i64; 4];
    let mut per_partition = [0usize; 4];
    for (partition, offset, key, value) in &consumed {
        let key = String::from_utf8(key.clone()).unwrap();
        let i: usize = key.strip_prefix("key-").unwrap().parse().unwrap();
        assert_eq!(
            value,
            format!("value-{i}-{}", "x".repeat(i % 100)).as_bytes()
        );
        assert_eq!(delivered[&key], (*partition, *offset), "offset of {key}");
        let p = *partition as usize;
        assert_eq!(
            *offset, next_offset[p],
            "partition {p} offsets are dense and in order"
        );
        next_offset[p] += 1;
        per_partition[p] += 1;
    }
    // Keys spread over all four partitions.
    assert!(per_partition.iter().all(|n| *n > 0), "{per_partition:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_are_stored_and_fetched_intact() {
    // gzip, snappy, lz4 and zstd batches pass through untouched and decode on the consumer.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    for (codec, bits) in [("gzip", 1u8), ("snappy", 2), ("lz4", 3), ("zstd", 4)] {
        let topic = format!("compressed-{codec}");
        create_topic(&broker.addr, &topic, 1).await;
        let producer: FutureProducer = client_config(&broker.addr)
            .set("compression.type", codec)
            .set("linger.ms", "20")
            // Several batches per codec (librdkafka sends an oversized lz4 batch uncompressed).
            .set("batch.num.messages", "200")
            .create()
            .unwrap();
        const COUNT: usize = 2_000;
        let futures: Vec<_> = (0..COUNT)
            .map(|i| {
                let value = format!("{codec} message {i} {}", "compressible ".repeat(20));
                producer
                    .send_result(FutureRecord::<(), _>::to(&topic).payload(&value))
                    .map_err(|(e, _)| e)
                    .expect("enqueued")
            })
            .collect();
        for future in futures {
            future.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
        // The stored batches carry the producer's codec and still pass their CRC.
        let mut raw = tests::RawConnection::connect(&broker.addr).unwrap();
        let records = tests::fetch_partition(&mut raw, &topic, 0, 0).unwrap();
        let mut batches = 0;
        for batch in protocol::batch::batches(&records) {
            let header = protocol::batch::BatchHeader::new(&batch).unwrap();
            header.validate().unwrap();
            assert_eq!(
                header.attributes() & 0x07,
                i16::from(bits),
                "{codec} batch attributes"
            );
            batches += 1;
        }
        assert!(batches >= COUNT / 200, "{codec}: {batches} batches");
        let consumed = consume_all(&broker.addr, &topic, 1, COUNT);
        for (i, (_, offset, _, value)) in consumed.iter().enumerate() {
            assert_eq!(*offset, i as i64);
            let expected = format!("{codec} message {i} {}", "compressible ".repeat(20));
            assert_eq!(value, expected.as_bytes());
        }
    }
}
