//! How our consumer fetches, against the real broker binary: a partition's
//! next data is fetched while `poll` still hands out the previous, a `seek`
//! drops what was fetched ahead, and a partition with nothing new does not
//! hold back another's backlog behind a long-poll.

use std::time::{Duration, Instant};

use client::{AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, TopicPartition};
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
    // Let the fetch ahead arrive, so that the seek has buffered data to drop.
    tokio::time::sleep(Duration::from_millis(200)).await;
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
