//! How our consumer fetches, against the real broker binary: a partition's
//! next data is fetched while `poll` still hands out the previous, a `seek`
//! drops what was fetched ahead, a partition with nothing new does not
//! hold back another's backlog behind a long-poll, a single-threaded
//! application has its next fetch on the wire while it works, and a batch
//! corrupted on disk stops reading at its offset although the data after it
//! was fetched.

use std::time::{Duration, Instant};

use client::{
    AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, PollError, RecordError,
    TopicPartition,
};
use protocol::messages::ApiKey;
use tests::proxy::Proxy;
use tests::{BrokerProcess, RawConnection};

/// Bound on reading back everything a test produced.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);
/// One poll's wait in the polling loops.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// Records in each batch the tests write.
const BATCH_RECORDS: usize = 10;

/// Writes `batches` batches of [`BATCH_RECORDS`] records to `partition`,
/// values `"{partition}:{offset}"`, starting at offset 0.
async fn produce_batches(addr: &str, topic: &str, partition: i32, batches: usize) {
    let (addr, topic) = (addr.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let mut conn = RawConnection::connect(&addr).expect("connect for Produce");
        for batch in 0..batches {
            let values: Vec<String> = (0..BATCH_RECORDS)
                .map(|i| format!("{partition}:{}", batch * BATCH_RECORDS + i))
                .collect();
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            let (code, base_offset) =
                tests::produce_to(&mut conn, &topic, partition, tests::batch_of(&values), 1)
                    .expect("Produce answered");
            assert_eq!(code, 0, "batch {batch}");
            assert_eq!(base_offset, (batch * BATCH_RECORDS) as i64);
        }
    })
    .await
    .expect("Produce thread");
}

/// A consumer without a group that reads from the earliest offset, one
/// batch per partition per fetch (the broker still returns the first batch
/// of a response whole), `max_poll_records` at a time.
async fn one_batch_per_fetch_consumer(addr: &str, max_poll_records: usize) -> Consumer {
    let mut config = ConsumerConfig::new(addr);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.max_partition_fetch_bytes = 1;
    config.max_poll_records = max_poll_records;
    Consumer::connect(config).await.unwrap()
}

/// Polls until `count` records have been returned.
async fn poll_records(consumer: &mut Consumer, count: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let mut seen = Vec::new();
    while seen.len() < count {
        assert!(
            Instant::now() < deadline,
            "gave up after {} of {count} records",
            seen.len()
        );
        seen.extend(consumer.poll(POLL_SLICE).await.unwrap());
    }
    seen
}

fn offsets(records: &[ConsumerRecord]) -> Vec<i64> {
    records.iter().map(|r| r.offset).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_drops_records_fetched_ahead_and_reads_on_from_the_new_position() {
    // With the next batch fetched while poll hands out the previous, a seek still
    // makes the next poll start exactly there, and reading on skips and repeats nothing.
    const BATCHES: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    tests::create_topic_async(&broker.addr, "ahead", 1).await;
    produce_batches(&broker.addr, "ahead", 0, BATCHES).await;
    let mut consumer = one_batch_per_fetch_consumer(&broker.addr, 3).await;
    let p0 = TopicPartition::new("ahead", 0);
    consumer.assign(std::slice::from_ref(&p0)).await.unwrap();
    let first = poll_records(&mut consumer, 1).await;
    assert_eq!(first[0].offset, 0);
    // The fetch ahead went out before poll returned: whether its data is
    // buffered by now or arrives later, it continues the old position, as
    // does the rest of the first batch; the seek must drop both.
    consumer.seek(&p0, 105).unwrap();
    let end = (BATCHES * BATCH_RECORDS) as i64;
    let rest = poll_records(&mut consumer, (end - 105) as usize).await;
    assert_eq!(offsets(&rest), (105..end).collect::<Vec<_>>());
    assert_eq!(
        String::from_utf8(rest[0].value.clone().unwrap().to_vec()).unwrap(),
        "0:105"
    );
    consumer.seek(&p0, 7).unwrap();
    let again = poll_records(&mut consumer, 30).await;
    assert_eq!(offsets(&again[..30]), (7..37).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_partition_does_not_hold_back_another_partitions_backlog() {
    // p0 has nothing; p1 has many batches, one per fetch. Reading p1 takes many
    // polls per batch, so p0 alone would be fetched meanwhile and wait out
    // fetch_max_wait on the broker, delaying p1's next batch by that much each
    // time, unless p1's next fetch goes along with p0's.
    const BATCHES: usize = 20;
    const FETCH_MAX_WAIT: Duration = Duration::from_secs(5);
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    tests::create_topic_async(&broker.addr, "backlog", 2).await;
    produce_batches(&broker.addr, "backlog", 1, BATCHES).await;
    let mut config = ConsumerConfig::new(&broker.addr);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.max_partition_fetch_bytes = 1;
    config.max_poll_records = 2;
    config.fetch_max_wait = FETCH_MAX_WAIT;
    let mut consumer = Consumer::connect(config).await.unwrap();
    consumer
        .assign(&[
            TopicPartition::new("backlog", 0),
            TopicPartition::new("backlog", 1),
        ])
        .await
        .unwrap();
    let started = Instant::now();
    let records = poll_records(&mut consumer, BATCHES * BATCH_RECORDS).await;
    let elapsed = started.elapsed();
    assert!(records.iter().all(|r| r.partition == 1));
    assert_eq!(
        offsets(&records),
        (0..(BATCHES * BATCH_RECORDS) as i64).collect::<Vec<_>>()
    );
    assert!(
        elapsed < FETCH_MAX_WAIT,
        "{BATCHES} batches took {elapsed:?}: a long-poll held the backlog back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_corrupted_on_disk_is_an_error_at_its_offset_not_skipped() {
    // Three batches; one byte of the second's records flipped in the segment
    // file while the broker is down (below the recovery point, so the broker
    // serves it as stored). Whether the consumer fetched the third batch ahead
    // or not, it must return the first batch, then the error at offset 10
    // (again on the next poll), nothing of the second or third batch, and the
    // third after a seek.
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    tests::create_topic_async(&broker.addr, "rot", 1).await;
    produce_batches(&broker.addr, "rot", 0, 3).await;
    assert_eq!(broker.terminate().unwrap(), 0);
    let partition_dir = dir.path().join("rot-0");
    let segment = std::fs::read_dir(&partition_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "log"))
        .expect("a segment file");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == b"0:15")
        .expect("record 15 in the segment");
    bytes[at + 3] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    broker.restart().unwrap();

    for records_per_fetch in ["one batch", "everything"] {
        let mut consumer = if records_per_fetch == "one batch" {
            one_batch_per_fetch_consumer(&broker.addr, 3).await
        } else {
            let mut config = ConsumerConfig::new(&broker.addr);
            config.auto_offset_reset = AutoOffsetReset::Earliest;
            Consumer::connect(config).await.unwrap()
        };
        let p0 = TopicPartition::new("rot", 0);
        consumer.assign(std::slice::from_ref(&p0)).await.unwrap();
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        let mut seen = Vec::new();
        let (offset, error) = loop {
            assert!(Instant::now() < deadline, "{records_per_fetch}: no error");
            match consumer.poll(POLL_SLICE).await {
                Ok(records) => seen.extend(records),
                Err(PollError::Record { offset, error, .. }) => break (offset, error),
                Err(other) => panic!("{records_per_fetch}: unexpected {other}"),
            }
        };
        assert_eq!(
            offsets(&seen),
            (0..10).collect::<Vec<_>>(),
            "{records_per_fetch}"
        );
        assert_eq!(offset, 10, "{records_per_fetch}");
        assert!(
            matches!(
                error,
                RecordError::CorruptBatch {
                    base_offset: 10,
                    ..
                }
            ),
            "{records_per_fetch}: {error:?}"
        );
        let again = consumer.poll(POLL_SLICE).await;
        assert!(
            matches!(again, Err(PollError::Record { offset: 10, .. })),
            "{records_per_fetch}: {again:?}"
        );
        consumer.seek(&p0, 20).unwrap();
        let rest = poll_records(&mut consumer, 10).await;
        assert_eq!(
            offsets(&rest),
            (20..30).collect::<Vec<_>>(),
            "{records_per_fetch}"
        );
    }
}

#[test]
fn a_single_threaded_consumer_has_its_next_fetch_on_the_wire_while_the_application_works() {
    // On a current-thread runtime, nothing the consumer spawned runs while the
    // application works between polls without awaiting. poll must put the
    // partition's next fetch on the socket before it returns records, so the
    // broker answers it meanwhile; otherwise the fetch would only go out when
    // a later poll found the buffer empty.
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let proxy = io.block_on(Proxy::bind()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker =
        BrokerProcess::start(dir.path(), &["--advertised-listener", &proxy.addr()]).unwrap();
    proxy.forward_to(&broker.addr);
    io.block_on(async {
        tests::create_topic_async(&broker.addr, "busy", 1).await;
        produce_batches(&broker.addr, "busy", 0, 3).await;
    });
    let app = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let p0 = TopicPartition::new("busy", 0);
    let (mut consumer, first) = app.block_on(async {
        let consumer = one_batch_per_fetch_consumer(&proxy.addr(), BATCH_RECORDS).await;
        consumer.assign(std::slice::from_ref(&p0)).await.unwrap();
        let first = consumer.poll(CONSUME_TIMEOUT).await.unwrap();
        (consumer, first)
    });
    let first: Vec<ConsumerRecord> = first.into_iter().collect();
    assert_eq!(offsets(&first), (0..10).collect::<Vec<_>>());
    // The application is busy: this thread does not return to the runtime.
    // One fetch (at offset 0) was needed for the first records; the count is
    // absolute, since the one at offset 10 may reach the broker before any
    // snapshot taken here could.
    let fetch = ApiKey::Fetch as i16;
    assert!(
        tests::wait_until(Duration::from_secs(10), || proxy.requests_forwarded(fetch)
            >= 2),
        "the next fetch was not sent while the application worked ({} fetches)",
        proxy.requests_forwarded(fetch)
    );
    let next = app.block_on(poll_records(&mut consumer, BATCH_RECORDS));
    assert_eq!(offsets(&next), (10..20).collect::<Vec<_>>());
}
