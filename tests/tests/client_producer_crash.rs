//! Our producer across a `kill -9` of the broker and a restart: every record
//! acknowledged (flush policy `every-batch`, which promises acknowledged
//! writes are on disk) is stored exactly once, in send order, and the
//! producer carries on by itself once the broker is back.

use std::collections::HashMap;
use std::time::Duration;

use client::{Acks, Producer, ProducerConfig, ProducerRecord};
use protocol::batch::{batches, decode_records};
use tests::BrokerProcess;

const TOPIC: &str = "crashing";
const PARTITIONS: i32 = 3;
const RECORDS: usize = 30_000;
/// Records acknowledged before the broker is killed.
const ACKED_BEFORE_KILL: usize = 5_000;
/// Records sent per round; the producer awaits a round before the next.
const ROUND: usize = 500;

fn stored_values(addr: &str, partition: i32) -> Vec<usize> {
    let mut conn = tests::RawConnection::connect(addr).unwrap();
    let mut values = Vec::new();
    let mut offset = 0;
    loop {
        let set = tests::fetch_partition(&mut conn, TOPIC, partition, offset).unwrap();
        let before = values.len();
        for batch in batches(&set) {
            for record in decode_records(&batch).unwrap() {
                if record.offset >= offset {
                    offset = record.offset + 1;
                    values.push(
                        String::from_utf8(record.value.unwrap().to_vec())
                            .unwrap()
                            .parse()
                            .unwrap(),
                    );
                }
            }
        }
        if values.len() == before {
            return values;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_during_a_producer_run_keeps_every_acknowledged_record_exactly_once_in_order(
) {
    // The broker dies mid-run and comes back; retries and idempotence make the log the acknowledged records, once each.
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(
        dir.path(),
        &[
            "--set",
            "log.flush.policy=every-batch",
            "--set",
            &format!("num.partitions={PARTITIONS}"),
        ],
    )
    .unwrap();
    let mut config = ProducerConfig::new(&broker.addr);
    config.acks = Acks::All;
    config.linger = Duration::from_millis(2);
    config.batch_size = 4096;
    config.request_timeout = Duration::from_secs(2);
    config.retry_backoff = Duration::from_millis(50);
    config.retry_backoff_max = Duration::from_millis(500);
    config.delivery_timeout = Duration::from_secs(120);
    let producer = Producer::connect(config).await.unwrap();
    assert!(producer.identity().is_some(), "idempotence is on");

    let mut results = Vec::with_capacity(RECORDS);
    let mut killed = false;
    for start in (0..RECORDS).step_by(ROUND) {
        let mut round = Vec::with_capacity(ROUND);
        for i in start..start + ROUND {
            let record = ProducerRecord::new(TOPIC)
                .with_key(format!("key-{}", i % 31))
                .with_value(i.to_string());
            round.push((i, producer.send(record).await.expect("send accepted")));
        }
        let mut round = round.into_iter();
        if !killed && start >= ACKED_BEFORE_KILL {
            // Pull the plug once part of this round is acknowledged, so the rest
            // is queued or in flight, then bring the broker back.
            for (i, delivery) in round.by_ref().take(ROUND / 5) {
                results.push((i, delivery.await));
            }
            broker.kill9().unwrap();
            killed = true;
            broker.restart().unwrap();
        }
        for (i, delivery) in round {
            results.push((i, delivery.await));
        }
    }
    producer.flush().await;
    assert!(killed);

    let mut sent: HashMap<i32, Vec<usize>> = HashMap::new();
    let mut failed = Vec::new();
    for (i, result) in results {
        match result {
            Ok(metadata) => sent.entry(metadata.partition).or_default().push(i),
            Err(e) => failed.push((i, e)),
        }
    }
    assert!(
        failed.is_empty(),
        "{} records failed, first {:?}",
        failed.len(),
        failed.first()
    );
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let stored = stored_values(&broker.addr, partition);
        let expected = sent.remove(&partition).unwrap_or_default();
        assert_eq!(
            stored.len(),
            expected.len(),
            "partition {partition}: no record lost or duplicated"
        );
        assert_eq!(
            stored, expected,
            "partition {partition}: acknowledged records in send order"
        );
        total += stored.len();
    }
    eprintln!("{total} records acknowledged and stored exactly once across a kill -9 and restart");
    assert_eq!(total, RECORDS);
}
