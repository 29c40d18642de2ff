//! Our Rust producer (`client`) against the real broker binary: delivery with
//! each acks setting, compression read back by librdkafka, murmur2
//! partitioning compared with librdkafka's, back-pressure, the delivery
//! timeout, and exactly-once, in-order delivery through a fault-injecting
//! proxy.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use client::{
    Acks, AttemptError, Compression, ErrorCode, ProduceError, Producer, ProducerConfig,
    ProducerRecord, SendError,
};
use protocol::batch::{batches, decode_records, BatchHeader, DecodedRecord};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use tests::proxy::{ChaosSchedule, Proxy};
use tests::BrokerProcess;

/// Bound on reading back what was produced.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one delivery report in tests where the broker is healthy.
const DELIVERY_WAIT: Duration = Duration::from_secs(60);

/// Reads a whole partition straight from the broker (not through any proxy).
async fn read_partition(addr: &str, topic: &str, partition: i32) -> Vec<DecodedRecord> {
    let addr = addr.to_string();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let mut connection = tests::RawConnection::connect(&addr).unwrap();
        let mut records = Vec::new();
        let mut offset = 0;
        loop {
            let set = tests::fetch_partition(&mut connection, &topic, partition, offset).unwrap();
            let before = records.len();
            for batch in batches(&set) {
                for record in decode_records(&batch).unwrap() {
                    if record.offset >= offset {
                        offset = record.offset + 1;
                        records.push(record);
                    }
                }
            }
            if records.len() == before {
                return records;
            }
        }
    })
    .await
    .unwrap()
}

/// A broker that advertises a fault-injecting proxy in front of it, so that
/// all client traffic goes through the proxy.
async fn broker_behind_proxy() -> (Proxy, BrokerProcess, tempfile::TempDir) {
    let proxy = Proxy::bind().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker =
        BrokerProcess::start(dir.path(), &["--advertised-listener", &proxy.addr()]).unwrap();
    proxy.forward_to(&broker.addr);
    (proxy, broker, dir)
}

fn value_of(record: &DecodedRecord) -> String {
    String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap()
}

fn rdkafka_config(addr: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", addr);
    config
}

/// Consumes partition 0 of `topic` from the beginning until `expected` values arrived.
fn consume_values(addr: &str, topic: &str, expected: usize) -> Vec<Vec<u8>> {
    tests::read_partition_zero_with_librdkafka(
        addr,
        topic,
        "client-producer-read-back",
        expected,
        READ_BACK_TIMEOUT,
        |message| message.payload().unwrap_or_default().to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_one_and_all_each_deliver_every_record() {
    // With acks=0, 1 and all, every record sent is stored once; with 1 and all at the offset its delivery report gave.
    const COUNT: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &["--set", "num.partitions=2"]).unwrap();
    for (acks, topic) in [
        (Acks::None, "acks-0"),
        (Acks::Leader, "acks-1"),
        (Acks::All, "acks-all"),
    ] {
        let mut config = ProducerConfig::new(&broker.addr);
        config.acks = acks;
        config.enable_idempotence = acks == Acks::All;
        let producer = Producer::connect(config).await.unwrap();
        assert_eq!(producer.identity().is_some(), acks == Acks::All);
        let mut deliveries = Vec::new();
        for i in 0..COUNT {
            let record = ProducerRecord::new(topic)
                .with_key(format!("key-{}", i % 10))
                .with_value(format!("{i}"));
            deliveries.push(producer.send(record).await.unwrap());
        }
        producer.flush().await;
        let mut reported: HashMap<(i32, i64), String> = HashMap::new();
        for (i, delivery) in deliveries.into_iter().enumerate() {
            let metadata = tokio::time::timeout(DELIVERY_WAIT, delivery)
                .await
                .unwrap()
                .unwrap();
            match (acks, metadata.offset) {
                (Acks::None, None) => {}
                (Acks::None, Some(offset)) => panic!("acks=0 cannot know an offset, got {offset}"),
                (_, Some(offset)) => {
                    reported.insert((metadata.partition, offset), i.to_string());
                }
                (_, None) => panic!("{acks:?}: record {i} has no offset"),
            }
        }
        // acks=0 has no acknowledgement to wait for: poll the log until all records are there.
        let deadline = Instant::now() + READ_BACK_TIMEOUT;
        let stored = loop {
            let mut stored = Vec::new();
            for partition in 0..2 {
                for record in read_partition(&broker.addr, topic, partition).await {
                    stored.push((partition, record.offset, value_of(&record)));
                }
            }
            if stored.len() >= COUNT || Instant::now() > deadline {
                break stored;
            }
            tokio::task::yield_now().await;
        };
        assert_eq!(stored.len(), COUNT, "{acks:?}: every record stored once");
        let mut values: Vec<usize> = stored.iter().map(|(_, _, v)| v.parse().unwrap()).collect();
        values.sort_unstable();
        assert_eq!(values, (0..COUNT).collect::<Vec<_>>(), "{acks:?}");
        if acks != Acks::None {
            for (partition, offset, value) in &stored {
                assert_eq!(
                    reported.get(&(*partition, *offset)),
                    Some(value),
                    "{acks:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_with_callback_reports_each_record_once_with_its_stored_offset_or_its_error() {
    // Each callback runs once: with the offset the record is stored at while the
    // broker is up, and with an error once it is gone.
    const COUNT: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut config = ProducerConfig::new(&broker.addr);
    config.delivery_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(1);
    let producer = Producer::connect(config).await.unwrap();
    let (reports, received) = std::sync::mpsc::channel();
    for i in 0..COUNT {
        let reports = reports.clone();
        let record = ProducerRecord::new("callbacks").with_value(format!("{i}"));
        producer
            .send_with_callback(record, move |result| reports.send((i, result)).unwrap())
            .await
            .unwrap();
    }
    producer.flush().await;
    let mut offsets = vec![None; COUNT];
    while let Ok((i, result)) = received.try_recv() {
        let metadata = result.unwrap();
        assert_eq!(metadata.partition, 0);
        assert!(
            offsets[i].replace(metadata.offset.unwrap()).is_none(),
            "record {i} reported twice"
        );
    }
    let stored = read_partition(&broker.addr, "callbacks", 0).await;
    assert_eq!(stored.len(), COUNT);
    for record in &stored {
        let i: usize = value_of(record).parse().unwrap();
        assert_eq!(offsets[i], Some(record.offset), "record {i}");
    }

    broker.kill9().unwrap();
    producer
        .send_with_callback(
            ProducerRecord::new("callbacks").with_value("lost"),
            move |result| reports.send((COUNT, result)).unwrap(),
        )
        .await
        .unwrap();
    let (i, result) = tokio::task::spawn_blocking(move || received.recv_timeout(DELIVERY_WAIT))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(i, COUNT);
    assert!(
        matches!(result, Err(ProduceError::DeliveryTimeout { .. })),
        "{result:?}"
    );
}

/// Sends record `i` of a chain whose every delivery callback sends the next
/// one, from inside the callback; the last callback reports on `done`.
fn send_chained(
    producer: Producer,
    i: usize,
    count: usize,
    done: std::sync::mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    let record = ProducerRecord::new("chained").with_value(format!("{i}"));
    let next = producer.clone();
    let send = producer.send_with_callback(record, move |result| {
        let outcome = match result {
            Err(e) => Err(e.to_string()),
            Ok(_) if i + 1 == count => Ok(()),
            Ok(_) => send_chained(next, i + 1, count, done.clone()),
        };
        if let Err(e) = outcome {
            let _ = done.send(Err(e));
        } else if i + 1 == count {
            let _ = done.send(Ok(()));
        }
    });
    futures::executor::block_on(send).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_callback_may_send_another_record() {
    // Callbacks run without the producer's internal lock held: a callback that sends the next record neither deadlocks nor loses it.
    chain_of_sends_from_callbacks().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_delivery_callback_may_send_another_record_on_a_single_threaded_runtime() {
    // The same on the one thread of a current-thread runtime, where send
    // yields to let the sender run, except from a callback: the callback
    // runs on the sender, and a yield there would wait for it forever.
    chain_of_sends_from_callbacks().await;
}

/// Sends a chain of records, each from the delivery callback of the one
/// before, and checks that all of them are stored in order.
async fn chain_of_sends_from_callbacks() {
    const COUNT: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut config = ProducerConfig::new(&broker.addr);
    config.linger = Duration::ZERO;
    let producer = Producer::connect(config).await.unwrap();
    producer.partitions_for("chained").await.unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    // The first link blocks on its send off the runtime's threads, as an
    // application thread would.
    let first = producer.clone();
    tokio::task::spawn_blocking(move || send_chained(first, 0, COUNT, done))
        .await
        .unwrap()
        .unwrap();
    let outcome = tokio::task::spawn_blocking(move || finished.recv_timeout(DELIVERY_WAIT))
        .await
        .unwrap()
        .expect("the chain finished");
    outcome.unwrap();
    let stored = read_partition(&broker.addr, "chained", 0).await;
    let values: Vec<String> = stored.iter().map(value_of).collect();
    let expected: Vec<String> = (0..COUNT).map(|i| i.to_string()).collect();
    assert_eq!(values, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lz4_and_zstd_batches_are_stored_compressed_and_read_back_by_librdkafka() {
    // Our compressed batches keep their codec bits on the broker and decode in librdkafka to the values we sent.
    const COUNT: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    for (codec, bits) in [(Compression::Lz4, 3i16), (Compression::Zstd, 4)] {
        let topic = format!("compressed-{}", codec.name());
        let mut config = ProducerConfig::new(&broker.addr);
        config.compression = codec;
        config.linger = Duration::from_millis(20);
        let producer = Producer::connect(config).await.unwrap();
        let value =
            |i: usize| format!("{} record {i} {}", codec.name(), "compressible ".repeat(20));
        let mut deliveries = Vec::new();
        for i in 0..COUNT {
            deliveries.push(
                producer
                    .send(ProducerRecord::new(&topic).with_value(value(i)))
                    .await
                    .unwrap(),
            );
        }
        producer.flush().await;
        for (i, delivery) in deliveries.into_iter().enumerate() {
            let metadata = delivery.await.unwrap();
            assert_eq!(metadata.offset, Some(i as i64));
        }
        let addr = broker.addr.clone();
        let stored_topic = topic.clone();
        let headers = tokio::task::spawn_blocking(move || {
            let mut raw = tests::RawConnection::connect(&addr).unwrap();
            let set = tests::fetch_partition(&mut raw, &stored_topic, 0, 0).unwrap();
            batches(&set)
                .map(|b| {
                    let header = BatchHeader::new(&b).unwrap();
                    header.validate().unwrap();
                    (header.attributes() & 0x07, header.records_count())
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        assert!(
            headers.len() > 1,
            "{codec:?}: several batches, got {headers:?}"
        );
        assert!(
            headers.iter().all(|(attributes, _)| *attributes == bits),
            "{codec:?}: {headers:?}"
        );
        let addr = broker.addr.clone();
        let consumed = tokio::task::spawn_blocking(move || consume_values(&addr, &topic, COUNT))
            .await
            .unwrap();
        for (i, payload) in consumed.iter().enumerate() {
            assert_eq!(payload, value(i).as_bytes(), "{codec:?} record {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_land_on_the_partition_librdkafka_murmur2_random_picks() {
    // The same key goes to the same partition from librdkafka (murmur2_random) and from us, for 500 keys.
    const PARTITIONS: i32 = 7;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    tests::create_topic_async(&broker.addr, "murmur", PARTITIONS).await;
    let keys: Vec<Vec<u8>> = (0..500)
        .map(|i| match i % 4 {
            0 => format!("key-{i}").into_bytes(),
            1 => format!("ключ-{i}-ü").into_bytes(),
            2 => (0..(i % 23) as u8)
                .map(|b| b.wrapping_mul(37).wrapping_add(i as u8))
                .collect(),
            _ => format!("{i}").into_bytes(),
        })
        .filter(|k: &Vec<u8>| !k.is_empty())
        .collect();
    let rdkafka: FutureProducer = rdkafka_config(&broker.addr)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut theirs = Vec::new();
    for key in &keys {
        let delivery = rdkafka
            .send(
                FutureRecord::to("murmur").key(key).payload("x"),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        theirs.push(delivery.partition);
    }
    let producer = Producer::connect(ProducerConfig::new(&broker.addr))
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for key in &keys {
        let record = ProducerRecord::new("murmur")
            .with_key(key.clone())
            .with_value("y");
        deliveries.push(producer.send(record).await.unwrap());
    }
    let mut ours = Vec::new();
    for delivery in deliveries {
        ours.push(delivery.await.unwrap().partition);
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(ours[i], theirs[i], "key {key:?}");
        assert_eq!(
            ours[i],
            client::producer::partitioner::partition_for_key(key, PARTITIONS)
        );
    }
    let used: std::collections::BTreeSet<i32> = ours.iter().copied().collect();
    assert_eq!(
        used.len(),
        PARTITIONS as usize,
        "keys spread over every partition"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idempotence_a_partition_pipelines_up_to_max_in_flight_batches() {
    // With responses held back, a non-idempotent producer still gets
    // max_in_flight batches of one partition written (Kafka's behaviour), and
    // exactly one when max_in_flight is 1.
    for (max_in_flight, expected) in [(5usize, 5usize), (1, 1)] {
        let (proxy, broker, _dir) = broker_behind_proxy().await;
        let topic = format!("pipelined-{max_in_flight}");
        let mut config = ProducerConfig::new(&proxy.addr());
        config.acks = Acks::Leader;
        config.enable_idempotence = false;
        config.max_in_flight_requests_per_connection = max_in_flight;
        config.linger = Duration::ZERO;
        // Every record fills a batch of its own.
        config.batch_size = 1;
        let producer = Producer::connect(config).await.unwrap();
        producer.partitions_for(&topic).await.unwrap();
        proxy.pause_responses();
        let mut deliveries = Vec::new();
        for i in 0..8 {
            let record = ProducerRecord::new(topic.as_str())
                .with_partition(0)
                .with_value(format!("{i}"));
            deliveries.push(producer.send(record).await.unwrap());
        }
        // The requests pass the proxy; only their responses are held.
        let deadline = Instant::now() + READ_BACK_TIMEOUT;
        let stored = loop {
            let stored = read_partition(&broker.addr, &topic, 0).await.len();
            if stored >= expected || Instant::now() > deadline {
                break stored;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(stored, expected, "max_in_flight {max_in_flight}");
        // Nothing more goes out while those are unanswered.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stored = read_partition(&broker.addr, &topic, 0).await;
        assert_eq!(stored.len(), expected, "max_in_flight {max_in_flight}");
        proxy.resume_responses();
        for delivery in deliveries {
            tokio::time::timeout(DELIVERY_WAIT, delivery)
                .await
                .unwrap()
                .unwrap();
        }
        let stored = read_partition(&broker.addr, &topic, 0).await;
        let values: Vec<String> = stored.iter().map(value_of).collect();
        let sent: Vec<String> = (0..8).map(|i| i.to_string()).collect();
        assert_eq!(values, sent, "without faults the order is kept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_waits_for_buffer_memory_and_fails_after_max_block_when_none_frees() {
    // With responses held back, sends fill buffer_memory, the next one fails after max_block, and a waiting send proceeds once memory frees.
    const MAX_BLOCK: Duration = Duration::from_secs(2);
    const STILL_BLOCKED_FOR: Duration = Duration::from_millis(300);
    let (proxy, _broker, _dir) = broker_behind_proxy().await;
    let mut config = ProducerConfig::new(&proxy.addr());
    config.buffer_memory = 16 * 1024;
    config.batch_size = 4 * 1024;
    config.max_block = MAX_BLOCK;
    config.request_timeout = Duration::from_secs(60);
    let producer = Producer::connect(config).await.unwrap();
    producer.partitions_for("pressure").await.unwrap();
    proxy.pause_responses();
    let record = || ProducerRecord::new("pressure").with_value(vec![b'v'; 1000]);
    let mut accepted = Vec::new();
    let error = loop {
        assert!(accepted.len() < 100, "buffer_memory never filled");
        let started = Instant::now();
        match producer.send(record()).await {
            Ok(delivery) => accepted.push(delivery),
            Err(error) => break (error, started.elapsed()),
        }
    };
    let (error, waited) = error;
    assert!(
        matches!(
            error,
            SendError::BufferExhausted {
                buffer_memory_bytes: 16384,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        waited >= MAX_BLOCK,
        "failed after {waited:?}, before max_block"
    );
    assert!(
        (10..=16).contains(&accepted.len()),
        "{} records fit in 16 KiB",
        accepted.len()
    );
    // A send now has to wait for memory...
    let waiting = tokio::spawn({
        let producer = producer.clone();
        async move { producer.send(record()).await }
    });
    let mut waiting = std::pin::pin!(waiting);
    assert!(
        tokio::time::timeout(STILL_BLOCKED_FOR, &mut waiting)
            .await
            .is_err(),
        "send returned while buffer memory was full"
    );
    // ...and proceeds once responses free it.
    proxy.resume_responses();
    let delivery = waiting
        .await
        .unwrap()
        .expect("accepted once memory was freed");
    for delivery in accepted {
        delivery.await.unwrap();
    }
    delivery.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_carries_the_brokers_last_error_code() {
    // acks=all below min.insync.replicas is refused with the retriable NOT_ENOUGH_REPLICAS; once retries run out the report carries that code, typed, not a string.
    const RETRIES: u32 = 2;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &["--set", "min.insync.replicas=2"]).unwrap();
    tests::create_topic_async(&broker.addr, "under-replicated", 1).await;
    let mut config = ProducerConfig::new(&broker.addr);
    config.acks = Acks::All;
    config.enable_idempotence = false;
    config.retries = RETRIES;
    config.retry_backoff = Duration::from_millis(20);
    config.retry_backoff_max = Duration::from_millis(50);
    let producer = Producer::connect(config).await.unwrap();
    let delivery = producer
        .send(ProducerRecord::new("under-replicated").with_value("v"))
        .await
        .unwrap();
    let error = tokio::time::timeout(DELIVERY_WAIT, delivery)
        .await
        .expect("a report")
        .unwrap_err();
    match &error {
        ProduceError::RetriesExhausted {
            attempts,
            last_error: AttemptError::Broker { code, .. },
            ..
        } => {
            assert_eq!(*attempts, RETRIES + 1);
            assert_eq!(*code, ErrorCode::NOT_ENOUGH_REPLICAS);
        }
        other => panic!("expected RetriesExhausted with a broker code, got {other:?}"),
    }
    assert_eq!(error.code(), Some(ErrorCode::NOT_ENOUGH_REPLICAS));
    assert!(error.retried());
    let metrics = producer.metrics();
    assert_eq!(metrics.retries, u64::from(RETRIES));
    assert_eq!(metrics.batches_failed, 1);
    assert_eq!(metrics.buffer_used_bytes, 0);
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_buffer_use_and_requests_in_flight() {
    // A record held by linger shows in the buffer; with the broker stopped its request shows in flight; once the broker answers, both are back to zero.
    const WAIT: Duration = Duration::from_secs(10);
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    tests::create_topic_async(&broker.addr, "metered", 1).await;
    let mut config = ProducerConfig::new(&broker.addr);
    config.linger = Duration::from_secs(60);
    let producer = Producer::connect(config).await.unwrap();
    producer.partitions_for("metered").await.unwrap();
    let before = producer.metrics();
    assert_eq!(before.buffer_used_bytes, 0);
    assert_eq!(before.buffer_memory_bytes, 32 * 1024 * 1024);
    let delivery = producer
        .send(ProducerRecord::new("metered").with_value("held by linger"))
        .await
        .unwrap();
    let held = producer.metrics();
    assert!(held.buffer_used_bytes > 0, "{held:?}");
    assert_eq!(held.in_flight_requests, 0);
    signal(broker.pid(), "STOP");
    let flushing = {
        let producer = producer.clone();
        tokio::spawn(async move { producer.flush().await })
    };
    let deadline = Instant::now() + WAIT;
    while producer.metrics().in_flight_requests != 1 {
        assert!(Instant::now() < deadline, "{:?}", producer.metrics());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(broker.pid(), "CONT");
    tokio::time::timeout(WAIT, flushing).await.unwrap().unwrap();
    delivery.await.unwrap();
    let after = producer.metrics();
    assert_eq!(after.buffer_used_bytes, 0, "{after:?}");
    assert_eq!(after.in_flight_requests, 0);
    assert_eq!(after.retries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_timeout_fails_retried_batch_with_a_typed_error_when_the_broker_is_gone() {
    // After the broker dies, a record is retried until delivery_timeout and then reported as DeliveryTimeout, retried.
    const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);
    const SLACK: Duration = Duration::from_secs(1);
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut config = ProducerConfig::new(&broker.addr);
    config.delivery_timeout = DELIVERY_TIMEOUT;
    config.request_timeout = Duration::from_secs(1);
    config.retry_backoff = Duration::from_millis(50);
    config.retry_backoff_max = Duration::from_millis(200);
    let producer = Producer::connect(config).await.unwrap();
    producer.partitions_for("doomed").await.unwrap();
    broker.kill9().unwrap();
    let started = Instant::now();
    let delivery = producer
        .send(ProducerRecord::new("doomed").with_value("v"))
        .await
        .unwrap();
    let error = delivery.await.unwrap_err();
    let elapsed = started.elapsed();
    match &error {
        ProduceError::DeliveryTimeout {
            topic,
            delivery_timeout,
            attempts,
            last_error,
            ..
        } => {
            assert_eq!(topic, "doomed");
            assert_eq!(*delivery_timeout, DELIVERY_TIMEOUT);
            assert!(*attempts >= 2, "{attempts} attempts");
            assert!(last_error.is_some());
        }
        other => panic!("expected DeliveryTimeout, got {other:?}"),
    }
    assert!(error.retried());
    assert!(
        elapsed >= DELIVERY_TIMEOUT - SLACK && elapsed <= DELIVERY_TIMEOUT + SLACK,
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_timeout_bounds_a_request_that_is_never_answered() {
    // A batch in flight whose response never comes fails at delivery_timeout, not at the longer request timeout.
    const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);
    const SLACK: Duration = Duration::from_secs(1);
    let (proxy, _broker, _dir) = broker_behind_proxy().await;
    let mut config = ProducerConfig::new(&proxy.addr());
    config.delivery_timeout = DELIVERY_TIMEOUT;
    config.request_timeout = Duration::from_secs(30);
    let producer = Producer::connect(config).await.unwrap();
    producer.partitions_for("silent").await.unwrap();
    proxy.pause_responses();
    let started = Instant::now();
    let delivery = producer
        .send(ProducerRecord::new("silent").with_value("v"))
        .await
        .unwrap();
    let error = delivery.await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(error, ProduceError::DeliveryTimeout { attempts: 1, .. }),
        "{error:?}"
    );
    assert!(!error.retried());
    assert!(elapsed <= DELIVERY_TIMEOUT + SLACK, "{elapsed:?}");
    proxy.resume_responses();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linger_holds_a_lone_record_until_it_passes_and_flush_sends_at_once() {
    // A record alone in its batch waits `linger` before it is sent; flush sends it without waiting.
    const LINGER: Duration = Duration::from_millis(700);
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut config = ProducerConfig::new(&broker.addr);
    config.linger = LINGER;
    let producer = Producer::connect(config).await.unwrap();
    producer.partitions_for("linger").await.unwrap();
    let started = Instant::now();
    let delivery = producer
        .send(ProducerRecord::new("linger").with_value("waits"))
        .await
        .unwrap();
    delivery.await.unwrap();
    assert!(
        started.elapsed() >= LINGER,
        "sent after {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let delivery = producer
        .send(ProducerRecord::new("linger").with_value("flushed"))
        .await
        .unwrap();
    producer.flush().await;
    assert_eq!(delivery.await.unwrap().offset, Some(1));
    assert!(
        started.elapsed() < LINGER,
        "flush took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_accepted_before_the_last_producer_handle_drops_are_still_delivered() {
    // Dropping the producer does not drop its queue: every accepted record is sent and reported on.
    const COUNT: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut config = ProducerConfig::new(&broker.addr);
    config.linger = Duration::from_millis(200);
    let producer = Producer::connect(config).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..COUNT {
        let record = ProducerRecord::new("dropped").with_value(format!("{i}"));
        deliveries.push(producer.send(record).await.unwrap());
    }
    drop(producer);
    for delivery in deliveries {
        tokio::time::timeout(DELIVERY_WAIT, delivery)
            .await
            .unwrap()
            .unwrap();
    }
    let stored = read_partition(&broker.addr, "dropped", 0).await;
    let values: Vec<String> = stored.iter().map(value_of).collect();
    assert_eq!(
        values,
        (0..COUNT).map(|i| i.to_string()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_lost_to_the_delivery_timeout_bumps_the_epoch_and_later_records_still_flow() {
    // A sequenced batch that timed out in flight leaves its sequence unknown; the producer takes a new epoch and keeps delivering in order.
    const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);
    const LATER: usize = 50;
    let (proxy, broker, _dir) = broker_behind_proxy().await;
    let mut config = ProducerConfig::new(&proxy.addr());
    config.delivery_timeout = DELIVERY_TIMEOUT;
    config.request_timeout = Duration::from_secs(30);
    let producer = Producer::connect(config).await.unwrap();
    let before = producer.identity().expect("idempotent producer");
    producer.partitions_for("bump").await.unwrap();
    proxy.pause_responses();
    let lost = producer
        .send(ProducerRecord::new("bump").with_value("unknown"))
        .await
        .unwrap();
    let error = lost.await.unwrap_err();
    assert!(
        matches!(error, ProduceError::DeliveryTimeout { .. }),
        "{error:?}"
    );
    proxy.resume_responses();
    let mut offsets = Vec::new();
    for i in 0..LATER {
        let delivery = producer
            .send(ProducerRecord::new("bump").with_value(format!("{i}")))
            .await
            .unwrap();
        offsets.push(delivery.await.unwrap().offset.unwrap());
    }
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
    let after = producer.identity().unwrap();
    assert!(
        after.producer_id != before.producer_id || after.producer_epoch > before.producer_epoch,
        "no new epoch: {before:?} -> {after:?}"
    );
    // The timed-out record's fate was unknown: present at most once, before the later ones.
    let values: Vec<String> = read_partition(&broker.addr, "bump", 0)
        .await
        .iter()
        .map(value_of)
        .collect();
    let later: Vec<String> = (0..LATER).map(|i| i.to_string()).collect();
    match values.first().map(String::as_str) {
        Some("unknown") => assert_eq!(values[1..], later[..]),
        _ => assert_eq!(values, later),
    }
}

/// Faults the proxy must have injected before the exactly-once check counts.
const FAULTS_MIN: usize = 20;
/// Records sent at least, whatever the fault count.
const FAULT_TEST_RECORDS_MIN: usize = 5_000;
/// Records per round; each round is awaited before the next, so many batches
/// per partition are in flight when faults hit.
const FAULT_TEST_ROUND_RECORDS: usize = 1_000;
/// Bound on rounds, in case faults stop being injected.
const FAULT_TEST_ROUNDS_MAX: usize = 1_000;
/// The default seed of the random fault schedule (`CHAOS_SEED` overrides it).
const CHAOS_SEED_DEFAULT: u64 = 0x00c0_ffee;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_is_stored_exactly_once_in_send_order_through_20_injected_faults()
{
    // Through dropped connections, lost, cut and delayed responses, each partition holds every acknowledged record once, in send order.
    const TOPIC: &str = "faults";
    const PARTITIONS: i32 = 3;
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CHAOS_SEED_DEFAULT);
    eprintln!("chaos seed {seed} (set CHAOS_SEED to replay)");
    let proxy = Proxy::bind().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(
        dir.path(),
        &[
            "--advertised-listener",
            &proxy.addr(),
            "--set",
            &format!("num.partitions={PARTITIONS}"),
        ],
    )
    .unwrap();
    proxy.forward_to(&broker.addr);
    let mut config = ProducerConfig::new(&proxy.addr());
    config.request_timeout = Duration::from_secs(1);
    config.linger = Duration::from_millis(2);
    config.batch_size = 512;
    config.retry_backoff = Duration::from_millis(20);
    config.retry_backoff_max = Duration::from_millis(200);
    config.delivery_timeout = Duration::from_secs(120);
    let producer = Producer::connect(config).await.unwrap();
    assert!(
        producer.identity().is_some(),
        "exactly-once needs the broker's InitProducerId"
    );
    assert_eq!(producer.partitions_for(TOPIC).await.unwrap(), PARTITIONS);
    proxy.start_chaos(ChaosSchedule {
        seed,
        fault_probability: 0.1,
        delay_max: Duration::from_millis(300),
    });
    let mut results = Vec::new();
    let mut next = 0usize;
    let mut rounds = 0;
    while (proxy.faults_injected() < FAULTS_MIN || next < FAULT_TEST_RECORDS_MIN)
        && rounds < FAULT_TEST_ROUNDS_MAX
    {
        let mut round = Vec::with_capacity(FAULT_TEST_ROUND_RECORDS);
        for _ in 0..FAULT_TEST_ROUND_RECORDS {
            let record = ProducerRecord::new(TOPIC)
                .with_key(format!("key-{}", next % 17))
                .with_value(format!("{next}"));
            round.push((next, producer.send(record).await.expect("send accepted")));
            next += 1;
        }
        for (i, delivery) in round {
            results.push((i, delivery.await));
        }
        rounds += 1;
    }
    proxy.stop_chaos();
    producer.flush().await;
    let faults = proxy.faults_injected();
    eprintln!(
        "{next} records in {rounds} rounds, {faults} faults, {} connections: {:?}",
        proxy.connections_accepted(),
        proxy.fault_log()
    );
    assert!(faults >= FAULTS_MIN, "only {faults} faults injected");

    let mut expected: HashMap<i32, Vec<usize>> = HashMap::new();
    let mut reported_offsets: HashMap<(i32, i64), usize> = HashMap::new();
    let mut failures = Vec::new();
    for (i, result) in results {
        match result {
            Ok(metadata) => {
                expected.entry(metadata.partition).or_default().push(i);
                if let Some(offset) = metadata.offset {
                    reported_offsets.insert((metadata.partition, offset), i);
                }
            }
            Err(error) => failures.push((i, error)),
        }
    }
    // With a 120 s delivery timeout and unlimited retries nothing should fail;
    // if something did, the report says what.
    assert!(
        failures.is_empty(),
        "{} records failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    let mut stored_total = 0;
    for partition in 0..PARTITIONS {
        let stored: Vec<(i64, usize)> = read_partition(&broker.addr, TOPIC, partition)
            .await
            .iter()
            .map(|r| (r.offset, value_of(r).parse().unwrap()))
            .collect();
        let sent = expected.remove(&partition).unwrap_or_default();
        let stored_values: Vec<usize> = stored.iter().map(|(_, v)| *v).collect();
        // Exactly once and in send order: the log is the acknowledged records, in order, nothing else.
        assert_eq!(
            stored_values.len(),
            sent.len(),
            "partition {partition}: count"
        );
        assert_eq!(
            stored_values, sent,
            "partition {partition}: content and order"
        );
        for (offset, value) in &stored {
            if let Some(reported) = reported_offsets.get(&(partition, *offset)) {
                assert_eq!(reported, value, "partition {partition} offset {offset}");
            }
        }
        stored_total += stored.len();
    }
    assert_eq!(stored_total, next);
    eprintln!(
        "verified {stored_total} records over {PARTITIONS} partitions after {faults} faults; producer now {:?}",
        producer.identity()
    );
}

#[test]
fn a_single_threaded_producer_sends_full_batches_while_the_application_works() {
    // On a current-thread runtime the sender task runs only when the
    // application awaits something that is not ready; send returns at once
    // while the buffer has room. After a loop of sends that filled several
    // batches, the application holds the thread: the full batches must reach
    // the broker anyway, without a flush.
    const RECORDS: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let app = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let producer = app.block_on(async {
        tests::create_topic_async(&broker.addr, "busy", 1).await;
        let mut config = ProducerConfig::new(&broker.addr);
        config.batch_size = 16 * 1024;
        // Only full batches go out while the application works.
        config.linger = Duration::from_secs(60);
        let producer = Producer::connect(config).await.unwrap();
        for i in 0..RECORDS {
            let record = ProducerRecord::new("busy")
                .with_partition(0)
                .with_value(format!("{i:0>100}"));
            producer.send(record).await.unwrap();
        }
        producer
    });
    let mut conn = tests::RawConnection::connect(&broker.addr).unwrap();
    let mut stored_records = || -> usize {
        let records = tests::fetch_partition(&mut conn, "busy", 0, 0).unwrap();
        batches(&records)
            .map(|b| BatchHeader::new(&b).unwrap().records_count() as usize)
            .sum()
    };
    let mut stored = 0;
    let arrived = tests::wait_until(Duration::from_secs(10), || {
        stored = stored_records();
        stored >= RECORDS / 2
    });
    assert!(
        arrived,
        "{stored} of {RECORDS} records on the broker while the application worked"
    );
    app.block_on(producer.flush());
    assert_eq!(stored_records(), RECORDS);
}
