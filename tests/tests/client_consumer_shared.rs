//! A consumer shared between tasks (`Arc<Consumer>`), against the real
//! broker binary: a worker task stores and commits offsets while the main
//! task polls, and a consumer dropped without `close` leaves its group, so
//! the other member takes its partitions long before the session timeout.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{
    AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, OffsetAndMetadata, StoreError,
    TopicPartition,
};
use tests::GROUP_SETTLE_TIMEOUT;

/// Bound on reading back everything a test produced.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);
/// One poll's wait in the polling loops.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// A poll far longer than any commit: commits made meanwhile must not wait for it.
const LONG_POLL: Duration = Duration::from_secs(30);
/// Bound on a commit the coordinator answers at once.
const COMMIT_BOUND: Duration = Duration::from_secs(5);

fn group_config(addr: &str, group: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(addr).with_group(group);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.enable_auto_commit = false;
    config.session_timeout = Duration::from_secs(3);
    config.heartbeat_interval = Duration::from_millis(300);
    config
}

async fn committed(consumer: &Consumer, tp: &TopicPartition) -> Option<i64> {
    consumer.committed(std::slice::from_ref(tp)).await.unwrap()[tp]
        .as_ref()
        .map(|o| o.offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_task_stores_and_commits_while_the_main_task_polls() {
    // A worker stores the offsets of records it processed and commits them from its own task while the main task sits in a long poll; the commits cover what was stored, not what was handed out, and a restart resumes there.
    const RECORDS: usize = 200;
    const PROCESSED: usize = 150;
    let topic = "shared";
    let (_dir, broker) = tests::broker_with_numbered_topic(topic, 1, RECORDS).await;
    let p0 = TopicPartition::new(topic, 0);
    let mut config = group_config(&broker.addr, "shared-group");
    config.enable_auto_offset_store = false;
    let mut consumer = Consumer::connect(config.clone()).await.unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let consumer = Arc::new(consumer);

    // The main task polls and hands every record to the worker.
    let (records_tx, mut records_rx) = tokio::sync::mpsc::unbounded_channel::<ConsumerRecord>();
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let mut handed_out = 0;
    while handed_out < RECORDS {
        assert!(Instant::now() < deadline, "{handed_out} records handed out");
        for record in &consumer.poll(POLL_SLICE).await.unwrap() {
            records_tx.send(record.clone()).unwrap();
            handed_out += 1;
        }
    }
    assert_eq!(consumer.position(&p0), Some(RECORDS as i64));

    // The main task now sits in a poll that finds nothing.
    let poller = {
        let consumer = consumer.clone();
        tokio::spawn(async move { consumer.poll(LONG_POLL).await.map(|r| r.len()) })
    };
    // The worker processes the first PROCESSED records, storing each,
    // and commits from its own task meanwhile.
    let worker = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            for _ in 0..PROCESSED {
                let record = records_rx.recv().await.unwrap();
                consumer.store_record(&record).unwrap();
            }
            let started = Instant::now();
            tokio::time::timeout(COMMIT_BOUND, consumer.commit_sync())
                .await
                .expect("commit_sync waited for the poll")
                .unwrap();
            started.elapsed()
        })
    };
    let waited = worker.await.unwrap();
    assert!(
        !poller.is_finished(),
        "the long poll ended before the worker's commit"
    );
    eprintln!("commit from the worker took {waited:?} while the main task polled");
    // What was stored is committed, not what was handed out.
    assert_eq!(committed(&consumer, &p0).await, Some(PROCESSED as i64));

    // commit_async is a plain function: the commit is queued when it returns.
    let stored = OffsetAndMetadata::new(PROCESSED as i64 + 10);
    consumer.store_offset(&p0, stored).unwrap();
    let queued = consumer.commit_async();
    tokio::time::timeout(COMMIT_BOUND, queued)
        .await
        .expect("async commit answered")
        .unwrap();
    assert_eq!(committed(&consumer, &p0).await, Some(PROCESSED as i64 + 10));
    assert_eq!(
        consumer.store_offset(&TopicPartition::new(topic, 7), OffsetAndMetadata::new(1)),
        Err(StoreError::NotAssigned {
            topic: topic.into(),
            partition: 7
        })
    );
    poller.abort();
    let _ = poller.await;
    Arc::into_inner(consumer).unwrap().close().await.unwrap();

    // A restart resumes after the last offset committed.
    let mut again = Consumer::connect(config.clone()).await.unwrap();
    again.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let first = loop {
        assert!(Instant::now() < deadline, "nothing read after the restart");
        if let Some(record) = again.poll(POLL_SLICE).await.unwrap().into_iter().next() {
            break record.offset;
        }
    };
    assert_eq!(first, PROCESSED as i64 + 10);
    again.close().await.unwrap();

    // With the automatic store (the default), poll stores: store_offset is refused.
    let mut automatic = Consumer::connect(group_config(&broker.addr, "shared-auto"))
        .await
        .unwrap();
    automatic.subscribe(&[topic]).unwrap();
    assert_eq!(
        automatic.store_offset(&p0, OffsetAndMetadata::new(1)),
        Err(StoreError::AutoStoreEnabled)
    );
}

/// Polls `consumer` on a task of its own until `stop` fires, then drops it
/// (without `close`).
fn spawn_member(
    consumer: Arc<Consumer>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                polled = consumer.poll(POLL_SLICE) => { polled.unwrap(); }
            }
        }
        drop(consumer);
    })
}

fn partitions_of(consumer: &Consumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .iter()
        .map(|tp| tp.partition)
        .collect()
}

async fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_member_leaves_so_the_other_gets_its_partitions_before_the_session_timeout() {
    // Two members split 4 partitions; one is dropped without close, and the other holds all 4 well within the 30 s session timeout, because the dropped one sent LeaveGroup.
    const PARTITIONS: i32 = 4;
    const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
    /// Well before the session timeout: a heartbeat or two, and a rejoin.
    const TAKEOVER_BOUND: Duration = Duration::from_secs(10);
    let topic = "dropped-member";
    let (_dir, broker) = tests::broker_with_numbered_topic(topic, PARTITIONS, 10).await;
    let mut config = group_config(&broker.addr, "drop-group");
    config.session_timeout = SESSION_TIMEOUT;
    let mut members = Vec::new();
    for _ in 0..2 {
        let mut consumer = Consumer::connect(config.clone()).await.unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let consumer = Arc::new(consumer);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = spawn_member(consumer.clone(), stopped);
        members.push((consumer, stop, task));
    }
    wait_for(
        "the members split the partitions",
        GROUP_SETTLE_TIMEOUT,
        || {
            let a = partitions_of(&members[0].0);
            let b = partitions_of(&members[1].0);
            !a.is_empty() && !b.is_empty() && a.len() + b.len() == PARTITIONS as usize
        },
    )
    .await;
    let (first, stop, task) = members.remove(0);
    drop(first);
    stop.send(()).unwrap();
    task.await.unwrap();
    let dropped_at = Instant::now();
    let survivor = &members[0].0;
    wait_for("the survivor holds every partition", TAKEOVER_BOUND, || {
        partitions_of(survivor).len() == PARTITIONS as usize
    })
    .await;
    eprintln!(
        "the survivor held all {PARTITIONS} partitions {:?} after the drop",
        dropped_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_each_partitions_lag_behind_the_high_watermark() {
    // After a poll of 10 of 100 records the lag is 90; once everything is handed out it is 0.
    let topic = "lagging";
    let (_dir, broker) = tests::broker_with_numbered_topic(topic, 1, 100).await;
    let p0 = TopicPartition::new(topic, 0);
    let mut config = group_config(&broker.addr, "lag-group");
    config.max_poll_records = 10;
    let mut consumer = Consumer::connect(config).await.unwrap();
    consumer.assign(std::slice::from_ref(&p0)).await.unwrap();
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let mut handed_out = consumer.poll(POLL_SLICE).await.unwrap().len();
    while handed_out == 0 {
        assert!(Instant::now() < deadline, "nothing read");
        handed_out = consumer.poll(POLL_SLICE).await.unwrap().len();
    }
    assert_eq!(handed_out, 10);
    assert_eq!(consumer.lag(&p0), Some(90));
    let metrics = consumer.metrics();
    assert_eq!(metrics.partitions[&p0].position, Some(10));
    assert_eq!(metrics.partitions[&p0].high_watermark, Some(100));
    assert_eq!(metrics.total_lag(), 90);
    while handed_out < 100 {
        assert!(Instant::now() < deadline, "{handed_out} read");
        handed_out += consumer.poll(POLL_SLICE).await.unwrap().len();
    }
    assert_eq!(consumer.lag(&p0), Some(0));
}
