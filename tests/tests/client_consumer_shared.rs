//! A consumer shared between tasks (`Arc<Consumer>`), against the real
//! broker binary: a worker task stores and commits offsets, and subscribes,
//! while another task polls; seeks, pauses and resumes made from another
//! task reach the poll in progress, and `assign` and `unsubscribe` from
//! another task end it early; changes and commits past their queues'
//! bounds are refused; and a consumer dropped without `close` leaves its
//! group, so the other member takes its partitions long before the
//! session timeout.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::consumer::{COMMITS_QUEUED_MAX, CONTROLS_QUEUED_MAX};
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
/// Bound on a poll in progress noticing a change made from another task
/// (a fetch or two), far below [`LONG_POLL`].
const CONTROL_BOUND: Duration = Duration::from_secs(10);

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
    let consumer = Consumer::connect(config.clone()).await.unwrap();
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
    let again = Consumer::connect(config.clone()).await.unwrap();
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
    let automatic = Consumer::connect(group_config(&broker.addr, "shared-auto"))
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
        let consumer = Consumer::connect(config.clone()).await.unwrap();
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
    let consumer = Consumer::connect(config).await.unwrap();
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

/// Polls until `count` records came, at most [`CONSUME_TIMEOUT`].
async fn poll_count(consumer: &Consumer, count: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let mut records = Vec::new();
    while records.len() < count {
        assert!(Instant::now() < deadline, "{} records read", records.len());
        records.extend(consumer.poll(POLL_SLICE).await.unwrap());
    }
    records
}

/// A long poll on a task of its own, returned once the poll is under way
/// (its future has been polled and is waiting): its records and how long
/// it took.
async fn spawn_long_poll(
    consumer: &Arc<Consumer>,
) -> tokio::task::JoinHandle<(Vec<ConsumerRecord>, Duration)> {
    let consumer = consumer.clone();
    let (waiting_tx, waiting) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut poll = Box::pin(consumer.poll(LONG_POLL));
        let mut waiting_tx = Some(waiting_tx);
        let records = std::future::poll_fn(|cx| {
            let polled = poll.as_mut().poll(cx);
            if polled.is_pending() {
                if let Some(tx) = waiting_tx.take() {
                    let _ = tx.send(());
                }
            }
            polled
        })
        .await
        .unwrap();
        (records.into_iter().collect(), started.elapsed())
    });
    // Err: the poll returned at once, which the caller's asserts report.
    let _ = waiting.await;
    task
}

/// (partition, offset) of each record.
fn offsets(records: &[ConsumerRecord]) -> Vec<(i32, i64)> {
    records.iter().map(|r| (r.partition, r.offset)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeks_pauses_and_assignments_from_another_task_reach_the_poll_in_progress() {
    // With everything read and a 30 s poll waiting, a seek, a pause, a resume, an assign and an unsubscribe made on &self from another task each take effect within seconds.
    const RECORDS: usize = 20;
    let topic = "steered";
    let (_dir, broker) = tests::broker_with_numbered_topic(topic, 2, RECORDS).await;
    let (p0, p1) = (TopicPartition::new(topic, 0), TopicPartition::new(topic, 1));
    let mut config = ConsumerConfig::new(&broker.addr);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    let consumer = Arc::new(Consumer::connect(config).await.unwrap());
    consumer.assign(&[p0.clone(), p1.clone()]).await.unwrap();
    poll_count(&consumer, 2 * RECORDS).await;

    // Paused p1 and p0 moved back to 15 while a poll waits: it wakes, and hands out p0's last 5 records only.
    let poll = spawn_long_poll(&consumer).await;
    consumer.pause(std::slice::from_ref(&p1)).unwrap();
    consumer.seek(&p0, 15).unwrap();
    let (records, took) = poll.await.unwrap();
    assert!(took < CONTROL_BOUND, "the poll took {took:?}");
    let expected: Vec<(i32, i64)> = (15..RECORDS as i64).map(|o| (0, o)).collect();
    assert_eq!(offsets(&records), expected);
    assert_eq!(consumer.paused(), std::slice::from_ref(&p1));

    // p1 resumed from its beginning while a poll waits: its records come again, from 0.
    let poll = spawn_long_poll(&consumer).await;
    consumer
        .seek_to_beginning(std::slice::from_ref(&p1))
        .unwrap();
    consumer.resume(std::slice::from_ref(&p1)).unwrap();
    let (mut records, took) = poll.await.unwrap();
    assert!(took < CONTROL_BOUND, "the poll took {took:?}");
    records.extend(poll_count(&consumer, RECORDS - records.len()).await);
    let expected: Vec<(i32, i64)> = (0..RECORDS as i64).map(|o| (1, o)).collect();
    assert_eq!(offsets(&records), expected);
    assert!(consumer.paused().is_empty());

    // A seek of a partition not assigned is refused at once, poll or no poll.
    let elsewhere = TopicPartition::new(topic, 7);
    assert!(matches!(
        consumer.seek(&elsewhere, 0),
        Err(client::AssignmentError::NotAssigned { partition: 7, .. })
    ));

    // assign from another task ends the waiting poll early, with nothing.
    let poll = spawn_long_poll(&consumer).await;
    let started = Instant::now();
    consumer.assign(std::slice::from_ref(&p0)).await.unwrap();
    assert!(
        started.elapsed() < CONTROL_BOUND,
        "assign took {:?}",
        started.elapsed()
    );
    let (records, took) = poll.await.unwrap();
    assert!(took < CONTROL_BOUND, "the poll took {took:?}");
    assert!(records.is_empty(), "{:?}", offsets(&records));
    assert_eq!(consumer.assignment(), std::slice::from_ref(&p0));

    // So does unsubscribe.
    let poll = spawn_long_poll(&consumer).await;
    let started = Instant::now();
    consumer.unsubscribe().await;
    assert!(
        started.elapsed() < CONTROL_BOUND,
        "unsubscribe took {:?}",
        started.elapsed()
    );
    let (records, took) = poll.await.unwrap();
    assert!(took < CONTROL_BOUND, "the poll took {took:?}");
    assert!(records.is_empty(), "{:?}", offsets(&records));
    assert!(consumer.assignment().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_task_subscribes_and_commits_while_the_main_task_polls() {
    // A worker task holding an Arc<Consumer> subscribes to another topic while a poll waits on another task: that poll rejoins the group and the new topic's records come within seconds; the worker then commits them from its own task while a poll waits, and the group's commits are exactly what was handed out.
    const RECORDS: usize = 10;
    let (first, second) = ("first-topic", "second-topic");
    let (_dir, broker) = tests::broker_with_numbered_topic(first, 1, RECORDS).await;
    tests::create_topic_async(&broker.addr, second, 2).await;
    tests::produce_numbered(&broker.addr, second, 2, RECORDS, client::Compression::None)
        .await
        .unwrap();
    let consumer = Consumer::connect(group_config(&broker.addr, "worker-subscribes"))
        .await
        .unwrap();
    consumer.subscribe(&[first]).unwrap();
    let consumer = Arc::new(consumer);
    let records = poll_count(&consumer, RECORDS).await;
    assert!(records.iter().all(|r| &*r.topic == first));

    // A poll waits on its own task; the worker subscribes meanwhile.
    let poll = spawn_long_poll(&consumer).await;
    let worker = {
        let consumer = consumer.clone();
        tokio::spawn(async move { consumer.subscribe(&[second]) })
    };
    worker.await.unwrap().unwrap();
    let (mut records, took) = poll.await.unwrap();
    assert!(took < CONTROL_BOUND, "the poll took {took:?}");
    // The poll in progress applied it.
    assert_eq!(consumer.subscription(), [second.to_string()]);
    records.extend(poll_count(&consumer, 2 * RECORDS - records.len()).await);
    let mut handed_out = offsets(&records);
    handed_out.sort();
    let expected: Vec<(i32, i64)> = (0..2)
        .flat_map(|p| (0..RECORDS as i64).map(move |o| (p, o)))
        .collect();
    assert!(
        records.iter().all(|r| &*r.topic == second),
        "the poll rejoined with the new subscription only"
    );
    assert_eq!(handed_out, expected);
    let second_partitions: Vec<TopicPartition> =
        (0..2).map(|p| TopicPartition::new(second, p)).collect();
    let mut assignment = consumer.assignment();
    assignment.sort();
    assert_eq!(assignment, second_partitions);

    // The worker commits from its own task while a poll waits.
    let poll = spawn_long_poll(&consumer).await;
    let worker = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            tokio::time::timeout(COMMIT_BOUND, consumer.commit_sync())
                .await
                .expect("commit_sync waited for the poll")
        })
    };
    worker.await.unwrap().unwrap();
    assert!(!poll.is_finished(), "the long poll ended before the commit");
    let committed = consumer.committed(&second_partitions).await.unwrap();
    for tp in &second_partitions {
        assert_eq!(
            committed[tp].as_ref().map(|o| o.offset),
            Some(RECORDS as i64),
            "{tp:?}"
        );
    }
    poll.abort();
    let _ = poll.await;
    Arc::into_inner(consumer).unwrap().close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn changes_and_commits_past_their_queue_bounds_are_refused_and_the_queued_ones_applied() {
    // While a poll holds the fetch state, seeks, pauses and subscribes wait for it in a queue of CONTROLS_QUEUED_MAX; the next one is refused with TooManyQueued and not applied, and the poll then applies the queued seeks in order (the last one wins). Commits made faster than the lane sends them are refused past COMMITS_QUEUED_MAX, and the queued ones are all answered.
    const RECORDS: usize = 20;
    /// Where the last queued seek moves the partition.
    const LAST_SEEK: i64 = 15;
    let topic = "queued";
    let (_dir, broker) = tests::broker_with_numbered_topic(topic, 1, RECORDS).await;
    let p0 = TopicPartition::new(topic, 0);
    let consumer = Consumer::connect(group_config(&broker.addr, "queued-group"))
        .await
        .unwrap();
    consumer.assign(std::slice::from_ref(&p0)).await.unwrap();
    poll_count(&consumer, RECORDS).await;

    // A poll under way, waiting for fetches: it holds the fetch state and,
    // on this one thread, does not run until it is polled again.
    let mut poll = Box::pin(consumer.poll(LONG_POLL));
    assert!(futures::poll!(poll.as_mut()).is_pending());
    for i in 0..CONTROLS_QUEUED_MAX as i64 - 1 {
        consumer.seek(&p0, i % LAST_SEEK).unwrap();
    }
    consumer.seek(&p0, LAST_SEEK).unwrap();
    let refused = Err(client::AssignmentError::TooManyQueued {
        queued_max: CONTROLS_QUEUED_MAX,
    });
    assert_eq!(consumer.seek(&p0, 0), refused);
    assert_eq!(consumer.pause(std::slice::from_ref(&p0)), refused);
    assert_eq!(
        consumer.subscribe(&[topic]),
        Err(client::SubscribeError::TooManyQueued {
            queued_max: CONTROLS_QUEUED_MAX
        })
    );
    let mut records: Vec<ConsumerRecord> = tokio::time::timeout(CONTROL_BOUND, poll)
        .await
        .expect("the poll applied the queued changes")
        .unwrap()
        .into_iter()
        .collect();
    records.extend(poll_count(&consumer, RECORDS - LAST_SEEK as usize - records.len()).await);
    let expected: Vec<(i32, i64)> = (LAST_SEEK..RECORDS as i64).map(|o| (0, o)).collect();
    assert_eq!(
        offsets(&records),
        expected,
        "the last queued seek applies; the refused seek and pause do not"
    );
    assert!(consumer.paused().is_empty());

    // Commits queued faster than the lane task (on this thread) can send
    // them: past the bound they are refused at once.
    let mut queued = Vec::new();
    for i in 0..COMMITS_QUEUED_MAX as i64 {
        let offsets = [(p0.clone(), OffsetAndMetadata::new(i % RECORDS as i64))].into();
        queued.push(consumer.commit_offsets_async(offsets));
    }
    let offsets = [(p0.clone(), OffsetAndMetadata::new(0))].into();
    assert_eq!(
        consumer.commit_offsets_async(offsets).await,
        Err(client::CommitError::TooManyQueued {
            queued_max: COMMITS_QUEUED_MAX
        })
    );
    for commit in queued {
        tokio::time::timeout(COMMIT_BOUND, commit)
            .await
            .expect("a queued commit answered")
            .unwrap();
    }
    let last = (COMMITS_QUEUED_MAX as i64 - 1) % RECORDS as i64;
    assert_eq!(committed(&consumer, &p0).await, Some(last));
    consumer.close().await.unwrap();
}
