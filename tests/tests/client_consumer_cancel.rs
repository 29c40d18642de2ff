//! Cancel safety of our Rust consumer (`client::Consumer`) against the real
//! broker binary: a `poll` raced against a timer in `select!` (the way an
//! application races it against Ctrl-C), every public async method dropped
//! at the await points it reaches, the record stream, and a panicking fetch
//! task or heartbeat task. Each run draws its cancellations from a seeded generator and
//! prints the seed; `CANCEL_SEED=<seed>` replays a run.
//!
//! The oracle is the same everywhere: per partition, the records handed to
//! the application follow each other without a gap or a repeat, except
//! that after a restart (a fresh consumer, or a rejoin) a partition may
//! start again anywhere between its last acknowledged commit and the
//! offset after the last record handed out; nothing is ever skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::task::Poll;
use std::time::{Duration, Instant};

use client::{
    AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, OffsetAndMetadata, PollError,
    TopicPartition,
};
use futures::StreamExt;

/// Bound on a whole consume loop of one consumer.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(120);
/// One poll's own wait.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// How long a consumer with nothing left to read keeps polling before it
/// counts as done.
const IDLE_POLL_TIMEOUT: Duration = Duration::from_millis(1500);
/// Session timeout of the group members here (the broker's minimum is
/// lowered to allow it).
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// Bound on a poll surfacing a failed fetch or heartbeat task.
const TASK_FAILURE_TIMEOUT: Duration = Duration::from_secs(10);

/// The seed of this run: `CANCEL_SEED`, or the clock.
fn seed() -> u64 {
    let seed = std::env::var("CANCEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("CANCEL_SEED={seed}");
    seed
}

/// SplitMix64: a small seeded generator, enough to pick timers and depths.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    fn up_to(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn group_config(addr: &str, group: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(addr).with_group(group);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.enable_auto_commit = false;
    config.session_timeout = SESSION_TIMEOUT;
    config.heartbeat_interval = HEARTBEAT_INTERVAL;
    config
}

fn value(record: &ConsumerRecord) -> String {
    String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap()
}

/// What the application was handed, checked record by record. Violations
/// are counted rather than fatal at once, so that a failing run says how
/// many records it lost.
struct Oracle {
    per_partition: i64,
    /// The offset after the last record handed out, per partition.
    next: BTreeMap<i32, i64>,
    /// The last commit acknowledged, per partition.
    acknowledged: BTreeMap<i32, i64>,
    /// Partitions whose next record may start again (after a restart), with
    /// the last commit acknowledged when the restart began: the consumer
    /// may have read the committed offsets before a later commit.
    restarted: BTreeMap<i32, Option<i64>>,
    /// Every offset handed out at least once, per partition.
    seen: BTreeMap<i32, BTreeSet<i64>>,
    handed_out: usize,
    repeats_after_restart: usize,
    /// Records jumped over while handing out (positions moved past them).
    skipped: usize,
    /// Records handed out twice without a restart in between.
    repeated: usize,
    /// Commits beyond the records handed out.
    commits_past_handed_out: usize,
    /// The first few violations, for the failure message.
    violations: Vec<String>,
}

/// How many violations a failure message quotes.
const VIOLATIONS_QUOTED_MAX: usize = 10;

impl Oracle {
    fn new(partitions: i32, per_partition: usize) -> Oracle {
        Oracle {
            per_partition: per_partition as i64,
            next: (0..partitions).map(|p| (p, 0)).collect(),
            acknowledged: (0..partitions).map(|p| (p, 0)).collect(),
            restarted: (0..partitions).map(|p| (p, None)).collect(),
            seen: (0..partitions).map(|p| (p, BTreeSet::new())).collect(),
            handed_out: 0,
            repeats_after_restart: 0,
            skipped: 0,
            repeated: 0,
            commits_past_handed_out: 0,
            violations: Vec::new(),
        }
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < VIOLATIONS_QUOTED_MAX {
            self.violations.push(what);
        }
    }

    /// A record handed to the application: the next one of its partition,
    /// or after a restart one between the last acknowledged commit and that.
    fn handed(&mut self, record: &ConsumerRecord) {
        let p = record.partition;
        let next = self.next[&p];
        assert_eq!(
            value(record),
            format!("{p}:{}", record.offset),
            "value of {p}@{}",
            record.offset
        );
        if let Some(floor) = self.restarted.get_mut(&p).unwrap().take() {
            if record.offset > next {
                self.skipped += (record.offset - next) as usize;
                self.violation(format!(
                    "partition {p} restarted at {}, past the last record handed out ({next}): skipped",
                    record.offset
                ));
            } else if record.offset < floor {
                self.violation(format!(
                    "partition {p} restarted at {}, below the acknowledged commit {floor}",
                    record.offset
                ));
            } else {
                self.repeats_after_restart += (next - record.offset) as usize;
            }
        } else if record.offset > next {
            self.skipped += (record.offset - next) as usize;
            self.violation(format!(
                "partition {p}: offsets {next}..{} were skipped (never handed out)",
                record.offset
            ));
        } else if record.offset < next {
            self.repeated += 1;
            self.violation(format!(
                "partition {p}: offset {} handed out again (expected {next})",
                record.offset
            ));
        }
        self.next.insert(p, record.offset + 1);
        self.seen.get_mut(&p).unwrap().insert(record.offset);
        self.handed_out += 1;
    }

    /// A commit the coordinator acknowledged.
    fn acknowledged(&mut self, offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>) {
        for (tp, offset) in offsets {
            let p = tp.partition;
            if offset.offset > self.next[&p] {
                self.commits_past_handed_out += 1;
                let next = self.next[&p];
                self.violation(format!(
                    "partition {p}: committed {} past what was handed out ({next})",
                    offset.offset
                ));
            }
            self.acknowledged.insert(p, offset.offset);
        }
    }

    /// A fresh consumer (or a rejoin) takes over from the commits.
    fn restart(&mut self) {
        for (p, restarted) in self.restarted.iter_mut() {
            // A partition restarted twice before its first record keeps the
            // lower floor.
            let floor = self.acknowledged[p];
            *restarted = Some(restarted.map_or(floor, |earlier| earlier.min(floor)));
        }
    }

    fn everything_handed_out(&self) -> bool {
        self.next.values().all(|n| *n == self.per_partition)
    }

    /// Records of the log never handed out.
    fn never_handed_out(&self) -> usize {
        self.seen
            .values()
            .map(|seen| self.per_partition as usize - seen.len())
            .sum()
    }

    fn assert_clean(&self) {
        let total = self.per_partition as usize * self.seen.len();
        let lost = self.never_handed_out();
        eprintln!(
            "oracle: {} handed out, {lost} of {total} never handed out, {} skipped, {} repeated, {} commits past what was handed out, {} again after restarts",
            self.handed_out, self.skipped, self.repeated, self.commits_past_handed_out, self.repeats_after_restart
        );
        assert!(
            lost == 0
                && self.skipped == 0
                && self.repeated == 0
                && self.commits_past_handed_out == 0
                && self.violations.is_empty(),
            "{lost} of {total} records never handed out, {} skipped, {} repeated, {} commits past what was handed out; first violations:\n{}",
            self.skipped,
            self.repeated,
            self.commits_past_handed_out,
            self.violations.join("\n")
        );
    }
}

/// What the broker has committed for the group (the raw connection blocks,
/// so it runs on a blocking thread).
async fn committed_offsets(addr: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let (addr, group, topic) = (addr.to_string(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let mut conn = tests::RawConnection::connect(&addr).unwrap();
        tests::committed_offsets(
            &mut conn,
            &group,
            &topic,
            &(0..partitions).collect::<Vec<_>>(),
        )
        .unwrap()
    })
    .await
    .unwrap()
}

/// A fresh consumer of `group` reads the rest; every record of every
/// partition must then have been handed out at least once.
async fn resume_and_check(addr: &str, group: &str, topic: &str, oracle: &mut Oracle) {
    oracle.restart();
    let consumer = Consumer::connect(group_config(addr, group)).await.unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let mut idle_since = Instant::now();
    while !(oracle.everything_handed_out() && idle_since.elapsed() >= IDLE_POLL_TIMEOUT) {
        assert!(Instant::now() < deadline, "the fresh consumer stalled");
        let records = consumer.poll(POLL_SLICE).await.unwrap();
        if !records.is_empty() {
            idle_since = Instant::now();
        }
        for record in &records {
            oracle.handed(record);
        }
    }
    consumer.close().await.unwrap();
}

#[test]
fn poll_raced_against_a_timer_on_a_current_thread_runtime_skips_no_record() {
    // A group consumer whose poll loses a select! to a 0-3 ms timer now and then, committing after each batch, hands out every record once; a fresh consumer resumes from its commits without a gap.
    const PARTITIONS: i32 = 4;
    const PER_PARTITION: usize = 5_000;
    const TIMER_MS_MAX: u64 = 3;
    /// Small batches: many polls, so many chances to lose the race at the
    /// point where records were collected but not yet returned.
    const MAX_POLL_RECORDS: usize = 50;
    let topic = "raced";
    let group = "raced-readers";
    let mut rng = Rng(seed());
    current_thread_runtime().block_on(async {
        let (_dir, broker) =
            tests::broker_with_numbered_topic(topic, PARTITIONS, PER_PARTITION).await;
        let mut oracle = Oracle::new(PARTITIONS, PER_PARTITION);
        let mut config = group_config(&broker.addr, group);
        config.max_poll_records = MAX_POLL_RECORDS;
        let consumer = Consumer::connect(config).await.unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        let mut dropped_polls = 0u64;
        let at_end = |consumer: &Consumer| {
            (0..PARTITIONS).all(|p| {
                consumer.position(&TopicPartition::new(topic, p)) == Some(PER_PARTITION as i64)
            })
        };
        while !at_end(&consumer) {
            assert!(Instant::now() < deadline, "the raced consumer stalled");
            let timer = Duration::from_millis(rng.up_to(TIMER_MS_MAX));
            tokio::select! {
                polled = consumer.poll(POLL_SLICE) => {
                    let records = polled.unwrap();
                    for record in &records {
                        oracle.handed(record);
                    }
                    if !records.is_empty() {
                        consumer.commit_sync().await.unwrap();
                        let partitions: Vec<TopicPartition> =
                            (0..PARTITIONS).map(|p| TopicPartition::new(topic, p)).collect();
                        let committed = consumer.committed(&partitions).await.unwrap();
                        oracle.acknowledged(
                            &committed.into_iter().filter_map(|(tp, o)| Some((tp, o?))).collect(),
                        );
                    }
                }
                _ = tokio::time::sleep(timer) => dropped_polls += 1,
            }
        }
        let handed_out = oracle.handed_out;
        consumer.close().await.unwrap();
        eprintln!("first consumer: {handed_out} records handed out, {dropped_polls} polls dropped");
        resume_and_check(&broker.addr, group, topic, &mut oracle).await;
        oracle.assert_clean();
        assert_eq!(
            oracle.repeats_after_restart, 0,
            "every batch was committed, so nothing is read twice"
        );
    });
}

/// When to drop a future: after it was polled this often (yielding to the
/// runtime in between), or after this long.
#[derive(Debug, Clone, Copy)]
enum Cancel {
    AfterPolls(u32),
    After(Duration),
}

impl Cancel {
    /// Polls of up to `polls_max`, or timeouts of up to `ms_max`, half each.
    fn draw(rng: &mut Rng, polls_max: u64, ms_max: u64) -> Cancel {
        if rng.up_to(1) == 0 {
            Cancel::AfterPolls(rng.up_to(polls_max) as u32)
        } else {
            Cancel::After(Duration::from_millis(rng.up_to(ms_max)))
        }
    }
}

/// Runs `future` to completion, or drops it where `cancel` says; `None`
/// when it was dropped.
async fn run_or_drop<F: Future>(future: F, cancel: Cancel) -> Option<F::Output> {
    match cancel {
        Cancel::AfterPolls(polls) => {
            let mut future = std::pin::pin!(future);
            for _ in 0..polls {
                if let Poll::Ready(output) = futures::poll!(future.as_mut()) {
                    return Some(output);
                }
                tokio::task::yield_now().await;
            }
            None
        }
        Cancel::After(after) => tokio::time::timeout(after, future).await.ok(),
    }
}

#[test]
fn every_consumer_method_dropped_at_any_await_point_skips_and_repeats_nothing() {
    // connect, poll, the stream, the commits, committed, unsubscribe, assign and close are each dropped after 0-6 polls or 0-20 ms; the records handed out never skip or repeat an offset, and a fresh consumer resumes between the last acknowledged commit and the last record handed out.
    const PARTITIONS: i32 = 3;
    const PER_PARTITION: usize = 800;
    const POLLS_MAX: u64 = 6;
    const MS_MAX: u64 = 20;
    /// Every this many steps the consumer leaves its group: by
    /// `unsubscribe` (then it subscribes again) and by `assign` in turn.
    const REJOIN_EVERY: u64 = 150;
    /// Connects dropped before the consumer under test connects.
    const CONNECT_DROPS: usize = 8;
    let topic = "dropped";
    let group = "dropped-readers";
    let mut rng = Rng(seed());
    current_thread_runtime().block_on(async {
        let (_dir, broker) =
            tests::broker_with_numbered_topic(topic, PARTITIONS, PER_PARTITION).await;
        let mut oracle = Oracle::new(PARTITIONS, PER_PARTITION);
        let mut config = group_config(&broker.addr, group);
        config.max_poll_records = 40;
        let mut connects_dropped = 0;
        for _ in 0..CONNECT_DROPS {
            let cancel = Cancel::draw(&mut rng, POLLS_MAX, MS_MAX);
            match run_or_drop(Consumer::connect(config.clone()), cancel).await {
                Some(connected) => connected.unwrap().close().await.unwrap(),
                None => connects_dropped += 1,
            }
        }
        eprintln!("connect dropped {connects_dropped} of {CONNECT_DROPS} times");
        let consumer = Consumer::connect(config).await.unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let partitions: Vec<TopicPartition> = (0..PARTITIONS)
            .map(|p| TopicPartition::new(topic, p))
            .collect();
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        let mut dropped: BTreeMap<&str, u64> = BTreeMap::new();
        let mut step = 0u64;
        while !oracle.everything_handed_out() {
            assert!(
                Instant::now() < deadline,
                "the consumer stalled after {} records",
                oracle.handed_out
            );
            step += 1;
            let cancel = Cancel::draw(&mut rng, POLLS_MAX, MS_MAX);
            let method = match rng.up_to(9) {
                0..=3 => "poll",
                4 => "stream",
                5 => "commit_sync",
                6 => "commit_async",
                7 => "commit_offsets_sync",
                8 => "commit_offsets_async",
                _ => "committed",
            };
            // Every REJOIN_EVERY-th step (a rem, since the workspace's
            // rust-version predates `is_multiple_of`).
            let method = match (step.rem_euclid(REJOIN_EVERY), step / REJOIN_EVERY) {
                (0, rejoins) if rejoins.rem_euclid(2) == 1 => "unsubscribe",
                (0, _) => "assign",
                _ => method,
            };
            let completed = match method {
                "poll" => match run_or_drop(consumer.poll(POLL_SLICE), cancel).await {
                    Some(records) => {
                        for record in &records.unwrap() {
                            oracle.handed(record);
                        }
                        true
                    }
                    None => false,
                },
                "stream" => {
                    let mut stream = consumer.stream();
                    match run_or_drop(stream.next(), cancel).await {
                        Some(record) => {
                            oracle.handed(&record.unwrap().unwrap());
                            true
                        }
                        None => false,
                    }
                }
                "commit_sync" => {
                    let positions: BTreeMap<TopicPartition, OffsetAndMetadata> = partitions
                        .iter()
                        .filter_map(|tp| {
                            Some((tp.clone(), OffsetAndMetadata::new(consumer.position(tp)?)))
                        })
                        .collect();
                    match run_or_drop(consumer.commit_sync(), cancel).await {
                        Some(result) => {
                            if result.is_ok() {
                                oracle.acknowledged(&positions);
                            }
                            true
                        }
                        None => false,
                    }
                }
                "commit_async" => run_or_drop(async { consumer.commit_async().await }, cancel)
                    .await
                    .is_some(),
                "commit_offsets_sync" | "commit_offsets_async" => {
                    // What the oracle saw handed out: the application's own record.
                    let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = partitions
                        .iter()
                        .map(|tp| {
                            (
                                tp.clone(),
                                OffsetAndMetadata::new(oracle.next[&tp.partition]),
                            )
                        })
                        .collect();
                    let outcome = if method == "commit_offsets_sync" {
                        run_or_drop(consumer.commit_offsets_sync(offsets.clone()), cancel).await
                    } else {
                        run_or_drop(
                            async { consumer.commit_offsets_async(offsets.clone()).await },
                            cancel,
                        )
                        .await
                    };
                    match outcome {
                        Some(result) => {
                            if result.is_ok() {
                                oracle.acknowledged(&offsets);
                            }
                            true
                        }
                        None => false,
                    }
                }
                "committed" => run_or_drop(consumer.committed(&partitions), cancel)
                    .await
                    .is_some(),
                "unsubscribe" => {
                    let completed = run_or_drop(consumer.unsubscribe(), cancel).await.is_some();
                    // Wherever it stopped, the consumer rejoins and starts
                    // again from the group's commits.
                    consumer.subscribe(&[topic]).unwrap();
                    oracle.restart();
                    completed
                }
                "assign" => {
                    // Leaves the group (if it had not been dropped before it
                    // began) and reads on from the commits as a standalone
                    // member, until the next rejoin subscribes again.
                    let completed = run_or_drop(consumer.assign(&partitions), cancel)
                        .await
                        .is_some();
                    oracle.restart();
                    completed
                }
                other => unreachable!("{other}"),
            };
            if !completed {
                *dropped.entry(method).or_default() += 1;
            }
        }
        eprintln!(
            "{step} steps, {} records handed out ({} again after rejoins), dropped: {dropped:?}",
            oracle.handed_out, oracle.repeats_after_restart
        );
        // The last commits may have been dropped after they were sent: what
        // the broker has is the floor now (and is checked against what was
        // handed out).
        let committed = committed_offsets(&broker.addr, group, topic, PARTITIONS).await;
        oracle.acknowledged(
            &committed
                .iter()
                .enumerate()
                .map(|(p, o)| {
                    (
                        TopicPartition::new(topic, p as i32),
                        OffsetAndMetadata::new(*o),
                    )
                })
                .collect(),
        );
        let cancel = Cancel::draw(&mut rng, POLLS_MAX, MS_MAX);
        let closed = run_or_drop(consumer.close(), cancel).await.is_some();
        eprintln!("close {}", if closed { "completed" } else { "dropped" });
        resume_and_check(&broker.addr, group, topic, &mut oracle).await;
        oracle.assert_clean();
    });
}

#[test]
fn record_stream_hands_out_each_record_once_and_a_commit_covers_only_what_it_yielded() {
    // The stream yields every record once, in order per partition, with some next() calls dropped; after dropping the stream half-way, commit_sync commits exactly the records it yielded, and a fresh consumer starts right after them.
    const PARTITIONS: i32 = 2;
    const PER_PARTITION: usize = 600;
    const TAKE_FIRST: usize = 700;
    let topic = "streamed";
    let group = "stream-readers";
    let mut rng = Rng(seed());
    current_thread_runtime().block_on(async {
        let (_dir, broker) =
            tests::broker_with_numbered_topic(topic, PARTITIONS, PER_PARTITION).await;
        let mut oracle = Oracle::new(PARTITIONS, PER_PARTITION);
        let mut config = group_config(&broker.addr, group);
        config.max_poll_records = 64;
        let consumer = Consumer::connect(config).await.unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        {
            let mut stream = consumer.stream();
            while oracle.handed_out < TAKE_FIRST {
                assert!(Instant::now() < deadline, "the stream stalled");
                let cancel = Cancel::draw(&mut rng, 3, 5);
                if let Some(item) = run_or_drop(stream.next(), cancel).await {
                    let record = item.expect("the stream never ends").unwrap();
                    oracle.handed(&record);
                }
            }
        }
        consumer.commit_sync().await.unwrap();
        let committed = committed_offsets(&broker.addr, group, topic, PARTITIONS).await;
        for (p, offset) in committed.iter().enumerate() {
            assert_eq!(
                *offset,
                oracle.next[&(p as i32)],
                "partition {p}: the commit covers exactly what the stream yielded"
            );
        }
        oracle.acknowledged(
            &committed
                .iter()
                .enumerate()
                .map(|(p, o)| {
                    (
                        TopicPartition::new(topic, p as i32),
                        OffsetAndMetadata::new(*o),
                    )
                })
                .collect(),
        );
        consumer.close().await.unwrap();
        resume_and_check(&broker.addr, group, topic, &mut oracle).await;
        oracle.assert_clean();
        assert_eq!(oracle.repeats_after_restart, 0);
    });
}

#[test]
fn panicking_fetch_task_surfaces_from_poll_and_skips_nothing() {
    // A fetch task that panics makes the next poll fail with FetchTaskFailed (carrying the panic message) within a bounded wait instead of returning nothing forever; the consumer then reads every record once.
    const PARTITIONS: i32 = 2;
    const PER_PARTITION: usize = 300;
    let topic = "fetch-panics";
    current_thread_runtime().block_on(async {
        let (_dir, broker) =
            tests::broker_with_numbered_topic(topic, PARTITIONS, PER_PARTITION).await;
        let mut oracle = Oracle::new(PARTITIONS, PER_PARTITION);
        let mut config = ConsumerConfig::new(&broker.addr);
        config.auto_offset_reset = AutoOffsetReset::Earliest;
        let mut consumer = Consumer::connect(config).await.unwrap();
        let partitions: Vec<TopicPartition> = (0..PARTITIONS)
            .map(|p| TopicPartition::new(topic, p))
            .collect();
        consumer.assign(&partitions).await.unwrap();
        consumer.inject_fetch_task_panics(1, "injected fetch panic");
        let deadline = Instant::now() + TASK_FAILURE_TIMEOUT;
        let error = loop {
            assert!(
                Instant::now() < deadline,
                "no poll reported the panicked fetch task within {TASK_FAILURE_TIMEOUT:?}"
            );
            match consumer.poll(POLL_SLICE).await {
                Ok(records) => {
                    for record in &records {
                        oracle.handed(record);
                    }
                }
                Err(error) => break error,
            }
        };
        match &error {
            PollError::FetchTaskFailed { reason, .. } => {
                assert!(reason.contains("injected fetch panic"), "{error}")
            }
            other => panic!("expected FetchTaskFailed, got {other:?}"),
        }
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        while !oracle.everything_handed_out() {
            assert!(
                Instant::now() < deadline,
                "the consumer stalled after the panic"
            );
            for record in &consumer.poll(POLL_SLICE).await.unwrap() {
                oracle.handed(record);
            }
        }
        oracle.assert_clean();
    });
}

#[test]
fn panicking_heartbeat_task_surfaces_from_poll_and_the_member_keeps_its_generation() {
    // A heartbeat task that panics makes the next poll fail with HeartbeatTaskFailed (carrying the panic message); it is started again, so the member keeps its generation across three session timeouts and reads every record once.
    const PARTITIONS: i32 = 2;
    const PER_PARTITION: usize = 300;
    /// Short, so that a member without heartbeats would be dropped soon.
    const SHORT_SESSION_TIMEOUT: Duration = Duration::from_secs(2);
    let topic = "heartbeat-panics";
    let group = "heartbeat-readers";
    current_thread_runtime().block_on(async {
        let (_dir, broker) =
            tests::broker_with_numbered_topic(topic, PARTITIONS, PER_PARTITION).await;
        let mut oracle = Oracle::new(PARTITIONS, PER_PARTITION);
        let mut config = group_config(&broker.addr, group);
        config.session_timeout = SHORT_SESSION_TIMEOUT;
        config.heartbeat_interval = Duration::from_millis(300);
        config.max_poll_records = 10;
        let mut consumer = Consumer::connect(config).await.unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        while oracle.handed_out == 0 {
            assert!(Instant::now() < deadline, "the consumer never joined");
            for record in &consumer.poll(POLL_SLICE).await.unwrap() {
                oracle.handed(record);
            }
        }
        let generation = consumer.group_generation().expect("joined");
        consumer.inject_heartbeat_panic("injected heartbeat panic");
        let deadline = Instant::now() + TASK_FAILURE_TIMEOUT;
        let error = loop {
            assert!(
                Instant::now() < deadline,
                "no poll reported the panicked heartbeat task within {TASK_FAILURE_TIMEOUT:?}"
            );
            match consumer.poll(POLL_SLICE).await {
                Ok(records) => {
                    for record in &records {
                        oracle.handed(record);
                    }
                }
                Err(error) => break error,
            }
        };
        match &error {
            PollError::HeartbeatTaskFailed { reason } => {
                assert!(reason.contains("injected heartbeat panic"), "{error}")
            }
            other => panic!("expected HeartbeatTaskFailed, got {other:?}"),
        }
        // Slowly, so that the member outlives several session timeouts.
        let watch_until = Instant::now() + 3 * SHORT_SESSION_TIMEOUT;
        while Instant::now() < watch_until || !oracle.everything_handed_out() {
            assert!(
                Instant::now() < deadline + CONSUME_TIMEOUT,
                "the consumer stalled"
            );
            for record in &consumer.poll(POLL_SLICE).await.unwrap() {
                oracle.handed(record);
            }
            tokio::time::sleep(POLL_SLICE).await;
        }
        // The coordinator still knows the member in that generation: a
        // member whose heartbeats had stopped would have been dropped, and
        // its commit refused (UNKNOWN_MEMBER_ID).
        assert_eq!(consumer.group_generation(), Some(generation));
        consumer
            .commit_sync()
            .await
            .expect("the member kept its generation: heartbeats went on");
        oracle.assert_clean();
        consumer.close().await.unwrap();
    });
}
