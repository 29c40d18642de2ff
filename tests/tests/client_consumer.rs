//! Our Rust consumer (`client::Consumer`) against the real broker binary, in
//! one process: reading every record of a group's partitions, compressed
//! batches of every codec, the rebalance listener under the
//! eager and cooperative protocols, seek, pause and resume,
//! `auto_offset_reset`, manual assignment without a group, auto-commit and
//! async commits, static membership, and a group shared with a librdkafka
//! consumer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::{
    AssignmentStrategy, AutoOffsetReset, CommitError, Compression, Consumer, ConsumerConfig,
    OffsetAndMetadata, PollError, RebalanceContext, RebalanceListener, TopicPartition,
};
use tests::GROUP_SETTLE_TIMEOUT;

/// Bound on reading back everything a test produced.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);
/// One poll's wait in the polling loops.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// Session timeout of the group members here: the broker's minimum is
/// lowered to allow it, so a dead member is noticed quickly.
const SESSION_TIMEOUT: Duration = Duration::from_secs(3);
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(300);

fn group_config(addr: &str, group: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(addr).with_group(group);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.enable_auto_commit = false;
    config.session_timeout = SESSION_TIMEOUT;
    config.heartbeat_interval = HEARTBEAT_INTERVAL;
    config
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn value(record: &client::ConsumerRecord) -> String {
    String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap()
}

/// Polls until `done` says the records seen so far are enough.
async fn poll_until(
    consumer: &mut Consumer,
    what: &str,
    mut done: impl FnMut(&[client::ConsumerRecord]) -> bool,
) -> Vec<client::ConsumerRecord> {
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let mut seen = Vec::new();
    while !done(&seen) {
        assert!(
            Instant::now() < deadline,
            "{what}: gave up after {} records",
            seen.len()
        );
        let records = consumer.poll(POLL_SLICE).await.unwrap();
        seen.extend(records);
    }
    seen
}

/// Checks that `records` hold exactly offsets `0..per_partition` of every
/// partition, once each, in order, with the values `produce_numbered` wrote.
fn assert_every_record_once(
    records: &[client::ConsumerRecord],
    partitions: i32,
    per_partition: usize,
) {
    let mut by_partition: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for record in records {
        by_partition
            .entry(record.partition)
            .or_default()
            .push((record.offset, value(record)));
    }
    assert_eq!(by_partition.len(), partitions as usize, "partitions seen");
    for (partition, seen) in by_partition {
        let expected: Vec<(i64, String)> = (0..per_partition)
            .map(|i| (i as i64, format!("{partition}:{i}")))
            .collect();
        assert_eq!(seen, expected, "partition {partition}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_consumer_reads_every_record_once_in_order_and_commits_the_end() {
    // 4 partitions x 500 records: each offset exactly once, in order, with its value; the commit stores the end offsets.
    const PARTITIONS: i32 = 4;
    const PER_PARTITION: usize = 500;
    let (_dir, broker) =
        tests::broker_with_numbered_topic("orders", PARTITIONS, PER_PARTITION).await;
    let mut config = group_config(&broker.addr, "readers");
    config.max_poll_records = 300;
    let mut consumer = Consumer::connect(config).await.unwrap();
    consumer.subscribe(&["orders"]).unwrap();
    let total = PARTITIONS as usize * PER_PARTITION;
    let records = poll_until(&mut consumer, "read everything", |seen| seen.len() >= total).await;
    assert_every_record_once(&records, PARTITIONS, PER_PARTITION);
    let record = &records[0];
    assert_eq!(&*record.topic, "orders");
    assert!(record.timestamp > 0);
    assert_eq!(
        record.key.as_deref().map(|k| k.starts_with(b"k")),
        Some(true)
    );
    // Nothing more arrives.
    let extra = consumer.poll(Duration::from_millis(300)).await.unwrap();
    assert!(extra.is_empty(), "{} extra records", extra.len());
    consumer.commit_sync().await.unwrap();
    let partitions: Vec<TopicPartition> = (0..PARTITIONS).map(|p| tp("orders", p)).collect();
    let committed = consumer.committed(&partitions).await.unwrap();
    for partition in &partitions {
        assert_eq!(
            committed[partition].as_ref().map(|o| o.offset),
            Some(PER_PARTITION as i64),
            "{partition}"
        );
        assert_eq!(consumer.position(partition), Some(PER_PARTITION as i64));
    }
    consumer.close().await.unwrap();
}

/// What the rebalance listener saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Assigned(BTreeSet<i32>),
    Revoked(BTreeSet<i32>),
    Lost(BTreeSet<i32>),
}

/// Records every callback; commits the positions of revoked partitions.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
}

fn numbers(partitions: &[TopicPartition]) -> BTreeSet<i32> {
    partitions.iter().map(|tp| tp.partition).collect()
}

impl RebalanceListener for Recorder {
    fn on_partitions_revoked(
        &mut self,
        consumer: &mut RebalanceContext<'_>,
        partitions: &[TopicPartition],
    ) {
        consumer.commit_positions(partitions);
        self.events
            .lock()
            .unwrap()
            .push(Event::Revoked(numbers(partitions)));
    }
    fn on_partitions_assigned(
        &mut self,
        _consumer: &mut RebalanceContext<'_>,
        partitions: &[TopicPartition],
    ) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Assigned(numbers(partitions)));
    }
    fn on_partitions_lost(
        &mut self,
        _consumer: &mut RebalanceContext<'_>,
        partitions: &[TopicPartition],
    ) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Lost(numbers(partitions)));
    }
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

/// A group member polling on its own task, as an application would:
/// it records what it consumed and its assignment, and commits after
/// every batch.
struct Member {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Consumer>,
    consumed: Arc<Mutex<Vec<(i32, i64)>>>,
    assignment: Arc<Mutex<BTreeSet<i32>>>,
}

impl Member {
    fn spawn(consumer: Consumer) -> Member {
        let stop = tokio_util::sync::CancellationToken::new();
        let consumed = Arc::new(Mutex::new(Vec::new()));
        let assignment = Arc::new(Mutex::new(BTreeSet::new()));
        let task = tokio::spawn({
            let (stop, consumed, assignment) = (stop.clone(), consumed.clone(), assignment.clone());
            async move {
                while !stop.is_cancelled() {
                    let records = consumer.poll(POLL_SLICE).await.unwrap();
                    *assignment.lock().unwrap() = numbers(&consumer.assignment());
                    if records.is_empty() {
                        continue;
                    }
                    consumed
                        .lock()
                        .unwrap()
                        .extend(records.iter().map(|r| (r.partition, r.offset)));
                    match consumer.commit_sync().await {
                        Ok(()) | Err(CommitError::Rebalanced { .. }) => {}
                        Err(e) => panic!("commit failed: {e}"),
                    }
                }
                consumer
            }
        });
        Member {
            stop,
            task,
            consumed,
            assignment,
        }
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.assignment.lock().unwrap().clone()
    }

    fn consumed(&self) -> Vec<(i32, i64)> {
        self.consumed.lock().unwrap().clone()
    }

    /// Stops polling and hands the consumer back.
    async fn stop(self) -> Consumer {
        self.stop.cancel();
        self.task.await.unwrap()
    }
}

/// Waits (polling the condition; the members poll on their own tasks).
async fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all(partitions: i32) -> BTreeSet<i32> {
    (0..partitions).collect()
}

/// The assignments split `partitions` between the members: disjoint, covering all, none empty.
fn split_between(assignments: &[BTreeSet<i32>], partitions: i32) -> bool {
    let total: usize = assignments.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = assignments.iter().flatten().copied().collect();
    total == partitions as usize
        && union == all(partitions)
        && assignments.iter().all(|a| !a.is_empty())
}

async fn listening_member(
    addr: &str,
    group: &str,
    topic: &str,
    strategy: AssignmentStrategy,
) -> (Member, Recorder) {
    let mut config = group_config(addr, group);
    config.partition_assignment_strategy = vec![strategy];
    let consumer = Consumer::connect(config).await.unwrap();
    let recorder = Recorder::default();
    consumer
        .subscribe_with_listener(&[topic], recorder.clone())
        .unwrap();
    (Member::spawn(consumer), recorder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_rebalance_revokes_everything_first_and_commits_before_partitions_move() {
    // Range (eager): A gets all 6, then B joins: A revokes all 6 (committing its positions), the two split 3/3, B reads nothing twice; B leaves: A gets all 6 back.
    const PARTITIONS: i32 = 6;
    const PER_PARTITION: usize = 50;
    let (_dir, broker) =
        tests::broker_with_numbered_topic("eager", PARTITIONS, PER_PARTITION).await;
    let (a, a_events) = listening_member(
        &broker.addr,
        "eager-group",
        "eager",
        AssignmentStrategy::Range,
    )
    .await;
    wait_for("A reads everything", CONSUME_TIMEOUT, || {
        a.consumed().len() == PARTITIONS as usize * PER_PARTITION
    })
    .await;
    assert_eq!(a_events.events(), [Event::Assigned(all(PARTITIONS))]);
    let (b, b_events) = listening_member(
        &broker.addr,
        "eager-group",
        "eager",
        AssignmentStrategy::Range,
    )
    .await;
    wait_for("A and B split the partitions", GROUP_SETTLE_TIMEOUT, || {
        split_between(&[a.assignment(), b.assignment()], PARTITIONS)
    })
    .await;
    let (a_now, b_now) = (a.assignment(), b.assignment());
    assert_eq!((a_now.len(), b_now.len()), (3, 3));
    assert_eq!(
        a_events.events(),
        [
            Event::Assigned(all(PARTITIONS)),
            Event::Revoked(all(PARTITIONS)),
            Event::Assigned(a_now.clone())
        ]
    );
    assert_eq!(b_events.events(), [Event::Assigned(b_now.clone())]);
    assert!(
        b.consumed().is_empty(),
        "A committed before revoking, so B starts at the end: {:?}",
        b.consumed()
    );
    // B leaves (close sends LeaveGroup): A is revoked its 3 and given all 6.
    let b_consumer = b.stop().await;
    b_consumer.close().await.unwrap();
    wait_for("A owns everything again", GROUP_SETTLE_TIMEOUT, || {
        a.assignment() == all(PARTITIONS)
    })
    .await;
    let events = a_events.events();
    assert_eq!(
        events[3..],
        [Event::Revoked(a_now), Event::Assigned(all(PARTITIONS))]
    );
    assert_eq!(
        b_events.events(),
        [Event::Assigned(b_now.clone()), Event::Revoked(b_now)]
    );
    a.stop().await.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_rebalance_revokes_only_the_partitions_that_move() {
    // Cooperative-sticky: when B joins, A gives up exactly the partitions B ends up with and keeps the rest throughout.
    const PARTITIONS: i32 = 6;
    let (_dir, broker) = tests::broker_with_numbered_topic("coop", PARTITIONS, 20).await;
    let strategy = AssignmentStrategy::CooperativeSticky;
    let (a, a_events) = listening_member(&broker.addr, "coop-group", "coop", strategy).await;
    wait_for("A owns everything", GROUP_SETTLE_TIMEOUT, || {
        a.assignment() == all(PARTITIONS)
    })
    .await;
    let (b, b_events) = listening_member(&broker.addr, "coop-group", "coop", strategy).await;
    wait_for("A and B split the partitions", GROUP_SETTLE_TIMEOUT, || {
        split_between(&[a.assignment(), b.assignment()], PARTITIONS)
    })
    .await;
    let (a_now, b_now) = (a.assignment(), b.assignment());
    assert_eq!((a_now.len(), b_now.len()), (3, 3));
    let events = a_events.events();
    let revoked: BTreeSet<i32> = events
        .iter()
        .filter_map(|e| match e {
            Event::Revoked(p) => Some(p.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        revoked, b_now,
        "A revoked exactly what moved to B: {events:?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, Event::Lost(_))),
        "{events:?}"
    );
    let b_assigned: BTreeSet<i32> = b_events
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Assigned(p) => Some(p.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(b_assigned, b_now);
    b.stop().await.close().await.unwrap();
    a.stop().await.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_moves_the_next_poll_to_the_given_offset() {
    // Without a group: seek forward, back, to the beginning and to the end; each next poll starts there.
    let (_dir, broker) = tests::broker_with_numbered_topic("seekable", 1, 100).await;
    let mut config = ConsumerConfig::new(&broker.addr);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    let mut consumer = Consumer::connect(config).await.unwrap();
    let p0 = tp("seekable", 0);
    consumer.assign(std::slice::from_ref(&p0)).await.unwrap();
    consumer.seek(&p0, 50).unwrap();
    let records = poll_until(&mut consumer, "from 50", |seen| {
        seen.last().is_some_and(|r| r.offset == 99)
    })
    .await;
    assert_eq!(records.first().map(|r| r.offset), Some(50));
    assert_eq!(records.len(), 50);
    consumer.seek(&p0, 10).unwrap();
    let records = poll_until(&mut consumer, "from 10", |seen| !seen.is_empty()).await;
    assert_eq!(records[0].offset, 10);
    assert_eq!(value(&records[0]), "0:10");
    consumer
        .seek_to_beginning(std::slice::from_ref(&p0))
        .unwrap();
    let records = poll_until(&mut consumer, "from the beginning", |seen| !seen.is_empty()).await;
    assert_eq!(records[0].offset, 0);
    consumer.seek_to_end(std::slice::from_ref(&p0)).unwrap();
    let nothing = consumer.poll(Duration::from_millis(300)).await.unwrap();
    assert!(nothing.is_empty(), "at the end: {} records", nothing.len());
    tests::produce_numbered(&broker.addr, "seekable", 1, 5, Compression::None)
        .await
        .unwrap();
    let records = poll_until(&mut consumer, "new records", |seen| seen.len() >= 5).await;
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [100, 101, 102, 103, 104]
    );
    assert!(
        consumer.seek(&tp("seekable", 7), 0).is_err(),
        "not assigned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_partition_returns_nothing_until_resumed() {
    // Pausing p0 holds its records back (fetched or not) while p1 flows; resuming releases them, none lost.
    let (_dir, broker) = tests::broker_with_numbered_topic("pausable", 2, 30).await;
    let mut config = ConsumerConfig::new(&broker.addr);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.max_poll_records = 10;
    let mut consumer = Consumer::connect(config).await.unwrap();
    let (p0, p1) = (tp("pausable", 0), tp("pausable", 1));
    consumer.assign(&[p0.clone(), p1.clone()]).await.unwrap();
    // Let some of p0 arrive (and more of it be buffered), then pause it.
    let first = poll_until(&mut consumer, "some of p0", |seen| {
        seen.iter().any(|r| r.partition == 0)
    })
    .await;
    consumer.pause(std::slice::from_ref(&p0)).unwrap();
    assert_eq!(consumer.paused(), std::slice::from_ref(&p0));
    let p0_before = first.iter().filter(|r| r.partition == 0).count();
    let p1_before = first.iter().filter(|r| r.partition == 1).count();
    let mut during = first;
    during.extend(
        poll_until(&mut consumer, "all of p1", |seen| {
            p1_before + seen.iter().filter(|r| r.partition == 1).count() >= 30
        })
        .await,
    );
    let quiet = consumer.poll(Duration::from_millis(500)).await.unwrap();
    during.extend(quiet);
    assert_eq!(
        during.iter().filter(|r| r.partition == 0).count(),
        p0_before,
        "nothing of p0 while paused"
    );
    consumer.resume(std::slice::from_ref(&p0)).unwrap();
    assert!(consumer.paused().is_empty());
    let after = poll_until(&mut consumer, "the rest of p0", |seen| {
        seen.iter().filter(|r| r.partition == 0).count() + p0_before >= 30
    })
    .await;
    let mut p0_offsets: Vec<i64> = during
        .iter()
        .chain(after.iter())
        .filter(|r| r.partition == 0)
        .map(|r| r.offset)
        .collect();
    p0_offsets.sort_unstable();
    assert_eq!(
        p0_offsets,
        (0..30).collect::<Vec<i64>>(),
        "every p0 record once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_offset_reset_earliest_latest_and_none_decide_where_a_new_group_starts() {
    // No committed offset: earliest reads from 0, latest only what comes later, none fails with a typed error; out of range likewise.
    let (_dir, broker) = tests::broker_with_numbered_topic("resets", 1, 10).await;
    let p0 = tp("resets", 0);

    let mut earliest = Consumer::connect(group_config(&broker.addr, "from-earliest"))
        .await
        .unwrap();
    earliest.subscribe(&["resets"]).unwrap();
    let records = poll_until(&mut earliest, "earliest", |seen| seen.len() >= 10).await;
    assert_eq!(records[0].offset, 0);

    let mut config = group_config(&broker.addr, "from-latest");
    config.auto_offset_reset = AutoOffsetReset::Latest;
    let mut latest = Consumer::connect(config).await.unwrap();
    latest.subscribe(&["resets"]).unwrap();
    let deadline = Instant::now() + GROUP_SETTLE_TIMEOUT;
    while latest.position(&p0).is_none() {
        assert!(Instant::now() < deadline, "latest never got a position");
        assert!(latest.poll(POLL_SLICE).await.unwrap().is_empty());
    }
    assert_eq!(latest.position(&p0), Some(10));
    tests::produce_numbered(&broker.addr, "resets", 1, 3, Compression::None)
        .await
        .unwrap();
    let records = poll_until(&mut latest, "latest", |seen| seen.len() >= 3).await;
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [10, 11, 12]
    );

    let mut config = group_config(&broker.addr, "no-reset");
    config.auto_offset_reset = AutoOffsetReset::None;
    let none = Consumer::connect(config.clone()).await.unwrap();
    none.subscribe(&["resets"]).unwrap();
    let deadline = Instant::now() + GROUP_SETTLE_TIMEOUT;
    let error = loop {
        assert!(
            Instant::now() < deadline,
            "no error from auto_offset_reset=none"
        );
        match none.poll(POLL_SLICE).await {
            Ok(records) => assert!(records.is_empty()),
            Err(error) => break error,
        }
    };
    assert_eq!(
        error,
        PollError::NoOffset {
            topic: "resets".into(),
            partition: 0
        }
    );
    // A seek gives it a position; a position past the log end is out of range.
    none.seek(&p0, 1_000).unwrap();
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let error = loop {
        assert!(Instant::now() < deadline, "no out-of-range error");
        match none.poll(POLL_SLICE).await {
            Ok(records) => assert!(records.is_empty()),
            Err(error) => break error,
        }
    };
    assert_eq!(
        error,
        PollError::OffsetOutOfRange {
            topic: "resets".into(),
            partition: 0,
            offset: 1_000
        }
    );
    // With a committed offset, none is no obstacle.
    none.commit_offsets_sync(BTreeMap::from([(p0.clone(), OffsetAndMetadata::new(4))]))
        .await
        .unwrap();
    none.close().await.unwrap();
    let mut resumed = Consumer::connect(config).await.unwrap();
    resumed.subscribe(&["resets"]).unwrap();
    let records = poll_until(&mut resumed, "from the commit", |seen| !seen.is_empty()).await;
    assert_eq!(records[0].offset, 4);

    // Out of range with earliest: back to the start.
    let mut config = ConsumerConfig::new(&broker.addr);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    let mut reset = Consumer::connect(config).await.unwrap();
    reset.assign(std::slice::from_ref(&p0)).await.unwrap();
    reset.seek(&p0, 5_000).unwrap();
    let records = poll_until(&mut reset, "reset to earliest", |seen| !seen.is_empty()).await;
    assert_eq!(records[0].offset, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_without_a_group_reads_but_cannot_commit() {
    // Manual assignment needs no group; subscribe and commits do, and say so with typed errors.
    let (_dir, broker) = tests::broker_with_numbered_topic("manual", 3, 40).await;
    let mut config = ConsumerConfig::new(&broker.addr);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    let mut consumer = Consumer::connect(config).await.unwrap();
    assert_eq!(
        consumer.subscribe(&["manual"]),
        Err(client::SubscribeError::NoGroupId)
    );
    assert_eq!(
        consumer.poll(POLL_SLICE).await.unwrap_err(),
        PollError::NotSubscribed
    );
    consumer
        .assign(&[tp("manual", 0), tp("manual", 2)])
        .await
        .unwrap();
    let records = poll_until(&mut consumer, "two partitions", |seen| seen.len() >= 80).await;
    let partitions: BTreeSet<i32> = records.iter().map(|r| r.partition).collect();
    assert_eq!(partitions, BTreeSet::from([0, 2]));
    assert_eq!(consumer.commit_sync().await, Err(CommitError::NoGroupId));
    assert!(consumer.committed(&[tp("manual", 0)]).await.is_err());
    assert!(consumer.commit_async().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_with_a_group_commits_standalone_and_resumes_there() {
    // assign() with a group id starts at the committed offsets and commits outside any generation.
    let (_dir, broker) = tests::broker_with_numbered_topic("standalone", 1, 30).await;
    let p0 = tp("standalone", 0);
    let mut config = group_config(&broker.addr, "standalone-group");
    config.max_poll_records = 12;
    let mut consumer = Consumer::connect(config.clone()).await.unwrap();
    consumer.assign(std::slice::from_ref(&p0)).await.unwrap();
    let records = poll_until(&mut consumer, "a first batch", |seen| !seen.is_empty()).await;
    assert_eq!(records.len(), 12);
    consumer.commit_sync().await.unwrap();
    consumer.close().await.unwrap();
    let mut again = Consumer::connect(config).await.unwrap();
    again.assign(std::slice::from_ref(&p0)).await.unwrap();
    let records = poll_until(&mut again, "after the commit", |seen| !seen.is_empty()).await;
    assert_eq!(records[0].offset, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_commit_stores_exactly_what_poll_returned() {
    // With auto-commit, the committed offset follows what poll handed out, not what was fetched or buffered.
    let (_dir, broker) = tests::broker_with_numbered_topic("auto", 1, 100).await;
    let p0 = tp("auto", 0);
    let mut config = group_config(&broker.addr, "auto-group");
    config.enable_auto_commit = true;
    config.auto_commit_interval = Duration::from_millis(100);
    config.max_poll_records = 10;
    let mut consumer = Consumer::connect(config).await.unwrap();
    consumer.subscribe(&["auto"]).unwrap();
    let records = poll_until(&mut consumer, "one batch", |seen| !seen.is_empty()).await;
    assert_eq!(records.len(), 10);
    // The rest is fetched (buffered) but held back by the pause; poll keeps auto-committing.
    consumer.pause(std::slice::from_ref(&p0)).unwrap();
    let mut raw = tests::RawConnection::connect(&broker.addr).unwrap();
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    loop {
        assert!(consumer.poll(POLL_SLICE).await.unwrap().is_empty());
        let committed = tests::committed_offsets(&mut raw, "auto-group", "auto", &[0]).unwrap();
        if committed == [10] {
            break;
        }
        assert!(Instant::now() < deadline, "committed {committed:?}");
    }
    // Several more auto-commit intervals: still 10.
    for _ in 0..5 {
        assert!(consumer.poll(POLL_SLICE).await.unwrap().is_empty());
    }
    assert_eq!(
        tests::committed_offsets(&mut raw, "auto-group", "auto", &[0]).unwrap(),
        [10]
    );
    consumer.resume(std::slice::from_ref(&p0)).unwrap();
    poll_until(&mut consumer, "the rest", |seen| seen.len() >= 90).await;
    // close commits the final positions.
    consumer.close().await.unwrap();
    assert_eq!(
        tests::committed_offsets(&mut raw, "auto-group", "auto", &[0]).unwrap(),
        [100]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_commits_complete_in_the_order_they_were_made() {
    // Ten async commits of growing offsets, awaited out of order: the last one made is what stays committed.
    let (_dir, broker) = tests::broker_with_numbered_topic("async-commits", 1, 20).await;
    let p0 = tp("async-commits", 0);
    let mut consumer = Consumer::connect(group_config(&broker.addr, "async-group"))
        .await
        .unwrap();
    consumer.subscribe(&["async-commits"]).unwrap();
    poll_until(&mut consumer, "everything", |seen| seen.len() >= 20).await;
    let mut pending = Vec::new();
    for offset in 1..=10 {
        pending.push(consumer.commit_offsets_async(BTreeMap::from([(
            p0.clone(),
            OffsetAndMetadata::new(offset),
        )])));
    }
    for commit in pending.into_iter().rev() {
        commit.await.unwrap();
    }
    let committed = consumer.committed(std::slice::from_ref(&p0)).await.unwrap();
    assert_eq!(committed[&p0].as_ref().map(|o| o.offset), Some(10));
    consumer.commit_async().await.unwrap();
    let committed = consumer.committed(std::slice::from_ref(&p0)).await.unwrap();
    assert_eq!(committed[&p0].as_ref().map(|o| o.offset), Some(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_that_restarts_keeps_its_partitions_without_a_rebalance() {
    // A static member (group_instance_id) that closes and comes back within its session gets the same partitions in the same generation.
    let dir = tempfile::tempdir().unwrap();
    let broker = tests::start_short_session_broker(dir.path());
    tests::create_topic_async(&broker.addr, "static", 4).await;
    let mut config = group_config(&broker.addr, "static-group");
    config.group_instance_id = Some("instance-a".into());
    config.session_timeout = Duration::from_secs(10);
    let first = Consumer::connect(config.clone()).await.unwrap();
    first.subscribe(&["static"]).unwrap();
    let deadline = Instant::now() + GROUP_SETTLE_TIMEOUT;
    while first.group_generation().is_none() || first.assignment().len() < 4 {
        assert!(Instant::now() < deadline, "never joined");
        first.poll(POLL_SLICE).await.unwrap();
    }
    let (generation, _) = first.group_generation().unwrap();
    let assignment = first.assignment();
    first.close().await.unwrap();
    let second = Consumer::connect(config).await.unwrap();
    second.subscribe(&["static"]).unwrap();
    let deadline = Instant::now() + GROUP_SETTLE_TIMEOUT;
    while second.group_generation().is_none() {
        assert!(Instant::now() < deadline, "never rejoined");
        second.poll(POLL_SLICE).await.unwrap();
    }
    assert_eq!(second.assignment(), assignment);
    assert_eq!(
        second.group_generation().unwrap().0,
        generation,
        "no rebalance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_batches_of_every_codec_decode_record_for_record() {
    // Our gzip, snappy, lz4 and zstd batches over two partitions come back every record once, in order.
    let dir = tempfile::tempdir().unwrap();
    let broker = tests::start_short_session_broker(dir.path());
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let topic = codec.name();
        tests::create_topic_async(&broker.addr, topic, 2).await;
        tests::produce_numbered(&broker.addr, topic, 2, 300, codec)
            .await
            .unwrap();
        let mut config = ConsumerConfig::new(&broker.addr);
        config.auto_offset_reset = AutoOffsetReset::Earliest;
        let mut consumer = Consumer::connect(config).await.unwrap();
        consumer
            .assign(&[tp(topic, 0), tp(topic, 1)])
            .await
            .unwrap();
        let records = poll_until(&mut consumer, topic, |seen| seen.len() >= 600).await;
        assert_every_record_once(&records, 2, 300);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_librdkafka_consumers_share_one_group_with_the_range_assignor() {
    // A Rust member and a librdkafka member split 6 partitions (range), and between them read every record.
    const PARTITIONS: i32 = 6;
    const PER_PARTITION: usize = 100;
    let (_dir, broker) =
        tests::broker_with_numbered_topic("mixed", PARTITIONS, PER_PARTITION).await;
    let (rust, _events) = listening_member(
        &broker.addr,
        "mixed-group",
        "mixed",
        AssignmentStrategy::Range,
    )
    .await;
    // librdkafka polls on a thread of its own.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rdkafka_consumed = Arc::new(Mutex::new(Vec::<(i32, i64)>::new()));
    let rdkafka_assignment = Arc::new(Mutex::new(BTreeSet::<i32>::new()));
    let thread = std::thread::spawn({
        let (addr, stop) = (broker.addr.clone(), stop.clone());
        let (consumed, assignment) = (rdkafka_consumed.clone(), rdkafka_assignment.clone());
        move || {
            use rdkafka::consumer::{BaseConsumer, Consumer as _};
            use rdkafka::Message;
            let consumer: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &addr)
                .set("group.id", "mixed-group")
                .set("partition.assignment.strategy", "range")
                .set("session.timeout.ms", "3000")
                .set("heartbeat.interval.ms", "300")
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "100")
                .create()
                .unwrap();
            consumer.subscribe(&["mixed"]).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                    consumed
                        .lock()
                        .unwrap()
                        .push((message.partition(), message.offset()));
                }
                *assignment.lock().unwrap() = consumer
                    .assignment()
                    .unwrap()
                    .elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect();
            }
            consumer.unsubscribe();
        }
    });
    wait_for(
        "Rust and librdkafka split the partitions",
        GROUP_SETTLE_TIMEOUT,
        || {
            split_between(
                &[
                    rust.assignment(),
                    rdkafka_assignment.lock().unwrap().clone(),
                ],
                PARTITIONS,
            )
        },
    )
    .await;
    let expected: BTreeSet<(i32, i64)> = (0..PARTITIONS)
        .flat_map(|p| (0..PER_PARTITION as i64).map(move |o| (p, o)))
        .collect();
    wait_for(
        "every record consumed by one of them",
        CONSUME_TIMEOUT,
        || {
            let mut seen: BTreeSet<(i32, i64)> = rust.consumed().into_iter().collect();
            seen.extend(rdkafka_consumed.lock().unwrap().iter().copied());
            seen == expected
        },
    )
    .await;
    let (rust_now, rdkafka_now) = (
        rust.assignment(),
        rdkafka_assignment.lock().unwrap().clone(),
    );
    assert_eq!(
        (rust_now.len(), rdkafka_now.len()),
        (3, 3),
        "range splits 6 as 3+3"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    thread.join().unwrap();
    rust.stop().await.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_that_stops_polling_leaves_and_finds_its_partitions_lost_on_the_next_poll() {
    // Past max_poll_interval without a poll, the heartbeat task leaves the group so B gets
    // everything; A's next poll reports its partitions lost (no commit possible) and rejoins.
    const PARTITIONS: i32 = 4;
    let dir = tempfile::tempdir().unwrap();
    let broker = tests::start_short_session_broker(dir.path());
    tests::create_topic_async(&broker.addr, "stalled", PARTITIONS).await;
    let mut config = group_config(&broker.addr, "stall-group");
    config.max_poll_interval = Duration::from_millis(1_500);
    let a = Consumer::connect(config).await.unwrap();
    let a_events = Recorder::default();
    a.subscribe_with_listener(&["stalled"], a_events.clone())
        .unwrap();
    let deadline = Instant::now() + GROUP_SETTLE_TIMEOUT;
    while a.assignment().len() < PARTITIONS as usize {
        assert!(Instant::now() < deadline, "A never got the partitions");
        a.poll(POLL_SLICE).await.unwrap();
    }
    let (b, _b_events) = listening_member(
        &broker.addr,
        "stall-group",
        "stalled",
        AssignmentStrategy::Range,
    )
    .await;
    // A is busy elsewhere (not polling) until B owns everything.
    wait_for(
        "B to take over from the stalled A",
        GROUP_SETTLE_TIMEOUT,
        || b.assignment() == all(PARTITIONS),
    )
    .await;
    let deadline = Instant::now() + GROUP_SETTLE_TIMEOUT;
    while !split_between(&[numbers(&a.assignment()), b.assignment()], PARTITIONS) {
        assert!(Instant::now() < deadline, "A never rejoined");
        a.poll(POLL_SLICE).await.unwrap();
    }
    let events = a_events.events();
    assert_eq!(
        events[..2],
        [
            Event::Assigned(all(PARTITIONS)),
            Event::Lost(all(PARTITIONS))
        ]
    );
    assert_eq!(
        events.last(),
        Some(&Event::Assigned(numbers(&a.assignment())))
    );
    b.stop().await.close().await.unwrap();
}
