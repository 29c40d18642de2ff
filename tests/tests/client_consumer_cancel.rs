//! Cancel safety of our Rust consumer (`client::Consumer`) against the real
//! broker binary: a `poll` raced against a timer in `select!` (the way an
//! application races it against Ctrl-C), every public async method dropped
//! after exactly 0, 1, 2, ... `Pending`s until a call completes (so at every
//! await point it reaches), the record stream, and a panicking fetch task
//! or heartbeat task. The random cancellations draw from a seeded generator
//! and print the seed; `CANCEL_SEED=<seed>` replays a run.
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

    /// A commit of what was handed out: the offset after the last record
    /// handed out, per partition (the application's own record of it).
    fn handed_out_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        partitions
            .iter()
            .map(|tp| (tp.clone(), OffsetAndMetadata::new(self.next[&tp.partition])))
            .collect()
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

/// Bound on one call of a consumer method in the sweeps.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `future` by hand until it is ready or has answered `Pending`
/// `pendings` times, then drops it; `None` when it was dropped
/// (`pendings = 0` drops it unpolled). After each `Pending` it is polled
/// again only once it woke the task itself, so each `Pending` is one await
/// point at which the future stopped, never a spurious poll.
async fn drop_after_pendings<F: Future>(future: F, pendings: u32) -> Option<F::Output> {
    if pendings == 0 {
        return None;
    }
    let mut future = std::pin::pin!(future);
    let mut seen = 0;
    let driven = std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => {
            seen += 1;
            if seen == pendings {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        }
    });
    tokio::time::timeout(CALL_TIMEOUT, driven)
        .await
        .unwrap_or_else(|_| panic!("a call did not wake within {CALL_TIMEOUT:?}"))
}

/// Drives a commit of `offsets` like [`drop_after_pendings`]; whether it
/// completed. A commit that completed and succeeded is acknowledged to the
/// oracle.
async fn commit_dropped_after_pendings<E>(
    commit: impl Future<Output = Result<(), E>>,
    pendings: u32,
    offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    oracle: &mut Oracle,
) -> bool {
    match drop_after_pendings(commit, pendings).await {
        Some(result) => {
            if result.is_ok() {
                oracle.acknowledged(offsets);
            }
            true
        }
        None => false,
    }
}

/// Bound on the `Pending`s of one call: a sweep that reaches it without
/// the call completing fails (the call hangs, or the sweep covers nothing).
const SWEEP_PENDINGS_MAX: u32 = 300;

/// How the sweeps of one method went.
#[derive(Debug, Default)]
struct MethodSweeps {
    /// Sweeps that ended with a completed call.
    sweeps: u32,
    /// Calls dropped, at every depth.
    drops: u64,
    /// The most `Pending`s a call was dropped after.
    deepest_drop: u32,
    /// The most `Pending`s a completed call answered.
    most_pendings_completed: u32,
}

/// Sweeps of one method: a fresh call dropped after 0, 1, 2, ... `Pending`s
/// (`$pendings`), until `$attempt` (true when the call completed) says one
/// completed, bounded by [`SWEEP_PENDINGS_MAX`].
macro_rules! sweep {
    ($sweeps:expr, $deadline:expr, $method:expr, |$pendings:ident| $attempt:expr) => {{
        let method: &'static str = $method;
        let stats = $sweeps.entry(method).or_insert_with(MethodSweeps::default);
        let mut completed = false;
        for $pendings in 0..=SWEEP_PENDINGS_MAX {
            assert!(
                Instant::now() < $deadline,
                "{method} still not complete after {} Pendings at the deadline",
                $pendings
            );
            if $attempt {
                stats.sweeps += 1;
                // The completed call answered one `Pending` fewer than its
                // budget (zero for an unpolled budget).
                let answered = $pendings.saturating_sub(1);
                stats.most_pendings_completed = stats.most_pendings_completed.max(answered);
                completed = true;
                break;
            }
            stats.drops += 1;
            stats.deepest_drop = stats.deepest_drop.max($pendings);
        }
        assert!(
            completed,
            "{method} did not complete within {SWEEP_PENDINGS_MAX} Pendings"
        );
    }};
}

/// Bound on a consumer (re)joining its group.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls until the consumer is in its group with partitions, handing what
/// it returns to the oracle: a leave swept next has a member to take out.
async fn poll_until_joined(consumer: &Consumer, oracle: &mut Oracle) {
    let deadline = Instant::now() + JOIN_TIMEOUT;
    while consumer.group_generation().is_none() || consumer.assignment().is_empty() {
        assert!(Instant::now() < deadline, "the consumer did not join");
        for record in &consumer.poll(POLL_SLICE).await.unwrap() {
            oracle.handed(record);
        }
    }
}

/// Hands the records the consumer collected and did not hand out yet to
/// the oracle (a poll that does not wait), so that the next call fetches.
async fn hand_out_collected(consumer: &Consumer, oracle: &mut Oracle) {
    for record in &consumer.poll(Duration::ZERO).await.unwrap() {
        oracle.handed(record);
    }
}

/// Bound on a member leaving: half its session, so a member that was only
/// dropped by its session expiring fails the wait.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(SESSION_TIMEOUT.as_secs() / 2);

/// Waits until `group` has no member left: a member that left (or whose
/// leave was dropped after it began) is gone, without waiting for its
/// session to expire.
async fn wait_for_empty_group(addr: &str, group: &str) {
    let (addr, group) = (addr.to_string(), group.to_string());
    tokio::task::spawn_blocking(move || {
        let mut conn = tests::RawConnection::connect(&addr).unwrap();
        let emptied = tests::wait_until(LEAVE_TIMEOUT, || {
            tests::describe_group(&mut conn, &group)
                .unwrap()
                .members
                .is_empty()
        });
        assert!(emptied, "the member did not leave {group}");
    })
    .await
    .unwrap()
}

/// What a commit of the consumer's positions covers: the offset after the
/// last record handed out, per partition with a known position.
fn positions(
    consumer: &Consumer,
    partitions: &[TopicPartition],
) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
    partitions
        .iter()
        .filter_map(|tp| Some((tp.clone(), OffsetAndMetadata::new(consumer.position(tp)?))))
        .collect()
}

#[test]
fn every_consumer_method_dropped_after_each_number_of_pendings_skips_and_repeats_nothing() {
    // Each public async method of the consumer (connect, poll, the stream's next, commit_sync, commit_offsets_sync, the futures of commit_async and commit_offsets_async, committed, assign, unsubscribe, close) is called again and again, dropped after exactly 0, 1, 2, ... Pendings, until a call completes; the records handed out never skip or repeat an offset, a commit never covers a record not handed out, and a fresh consumer resumes between the last acknowledged commit and the last record handed out.
    sweep_every_consumer_method("swept", "swept-readers", false);
}

#[test]
fn with_auto_commit_every_consumer_method_dropped_after_each_number_of_pendings_skips_and_repeats_nothing(
) {
    // The same sweeps with auto-commit on (every 50 ms), so that poll, assign, unsubscribe and close also stop at the commits they make themselves: no record is skipped or repeated, and no auto-commit covers a record not handed out.
    sweep_every_consumer_method("swept-auto", "swept-auto-readers", true);
}

/// The body of the two sweep tests above.
fn sweep_every_consumer_method(topic: &str, group: &str, auto_commit: bool) {
    const PARTITIONS: i32 = 3;
    const PER_PARTITION: usize = 600;
    const MAX_POLL_RECORDS: usize = 25;
    const AUTO_COMMIT_INTERVAL: Duration = Duration::from_millis(50);
    /// Every this many rounds of the methods that keep the membership, one
    /// of those that end it (unsubscribe, assign, close, in turn) is swept.
    const LEAVE_EVERY: u32 = 2;
    /// The methods that end the membership; each attempt rejoins after it.
    const LEAVING: [&str; 3] = ["unsubscribe", "assign", "close"];
    current_thread_runtime().block_on(async {
        let (_dir, broker) =
            tests::broker_with_numbered_topic(topic, PARTITIONS, PER_PARTITION).await;
        let mut oracle = Oracle::new(PARTITIONS, PER_PARTITION);
        let mut config = group_config(&broker.addr, group);
        config.max_poll_records = MAX_POLL_RECORDS;
        config.enable_auto_commit = auto_commit;
        config.auto_commit_interval = AUTO_COMMIT_INTERVAL;
        let partitions: Vec<TopicPartition> = (0..PARTITIONS)
            .map(|p| TopicPartition::new(topic, p))
            .collect();
        let mut sweeps: BTreeMap<&'static str, MethodSweeps> = BTreeMap::new();
        let started = Instant::now();
        let deadline = started + CONSUME_TIMEOUT;

        sweep!(sweeps, deadline, "connect", |pendings| {
            match drop_after_pendings(Consumer::connect(config.clone()), pendings).await {
                Some(connected) => {
                    connected.unwrap().close().await.unwrap();
                    true
                }
                None => false,
            }
        });
        let mut consumer = Consumer::connect(config.clone()).await.unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let mut round = 0u32;
        // Until every record was handed out and every method swept.
        while !(oracle.everything_handed_out()
            && LEAVING.iter().all(|method| sweeps.contains_key(method)))
        {
            assert!(
                Instant::now() < deadline,
                "the sweeps stalled after {} records and {round} rounds",
                oracle.handed_out
            );
            round += 1;
            sweep!(sweeps, deadline, "poll", |pendings| {
                match drop_after_pendings(consumer.poll(POLL_SLICE), pendings).await {
                    Some(records) => {
                        for record in &records.unwrap() {
                            oracle.handed(record);
                        }
                        true
                    }
                    None => false,
                }
            });
            // With every record collected handed out, so that next() must
            // fetch: the kept stream's dropped next() leaves its round to
            // the next one. The stream never ends, so only while records
            // are left to come.
            hand_out_collected(&consumer, &mut oracle).await;
            if !oracle.everything_handed_out() {
                let mut stream = consumer.stream();
                sweep!(sweeps, deadline, "stream.next (stream kept)", |pendings| {
                    match drop_after_pendings(stream.next(), pendings).await {
                        Some(item) => {
                            oracle.handed(&item.expect("the stream never ends").unwrap());
                            true
                        }
                        None => false,
                    }
                });
            }
            // A fresh stream each call: the stream is dropped with next().
            hand_out_collected(&consumer, &mut oracle).await;
            if !oracle.everything_handed_out() {
                sweep!(
                    sweeps,
                    deadline,
                    "stream.next (stream dropped too)",
                    |pendings| {
                        let mut stream = consumer.stream();
                        match drop_after_pendings(stream.next(), pendings).await {
                            Some(item) => {
                                oracle.handed(&item.expect("the stream never ends").unwrap());
                                true
                            }
                            None => false,
                        }
                    }
                );
            }
            sweep!(sweeps, deadline, "commit_sync", |pendings| {
                let offsets = positions(&consumer, &partitions);
                let commit = consumer.commit_sync();
                commit_dropped_after_pendings(commit, pendings, &offsets, &mut oracle).await
            });
            sweep!(sweeps, deadline, "commit_offsets_sync", |pendings| {
                let offsets = oracle.handed_out_offsets(&partitions);
                let commit = consumer.commit_offsets_sync(offsets.clone());
                commit_dropped_after_pendings(commit, pendings, &offsets, &mut oracle).await
            });
            // commit_async queues when called; the sweep drops its CommitFuture.
            sweep!(
                sweeps,
                deadline,
                "commit_async (its CommitFuture)",
                |pendings| {
                    let offsets = positions(&consumer, &partitions);
                    let commit = consumer.commit_async();
                    commit_dropped_after_pendings(commit, pendings, &offsets, &mut oracle).await
                }
            );
            sweep!(
                sweeps,
                deadline,
                "commit_offsets_async (its CommitFuture)",
                |pendings| {
                    let offsets = oracle.handed_out_offsets(&partitions);
                    let commit = consumer.commit_offsets_async(offsets.clone());
                    commit_dropped_after_pendings(commit, pendings, &offsets, &mut oracle).await
                }
            );
            sweep!(sweeps, deadline, "committed", |pendings| {
                match drop_after_pendings(consumer.committed(&partitions), pendings).await {
                    Some(result) => {
                        // The coordinator's commits, checked against what
                        // was handed out.
                        let committed = result.unwrap();
                        oracle.acknowledged(
                            &committed
                                .into_iter()
                                .filter_map(|(tp, o)| Some((tp, o?)))
                                .collect(),
                        );
                        true
                    }
                    None => false,
                }
            });
            if round.rem_euclid(LEAVE_EVERY) != 0 {
                continue;
            }
            // Each call leaves a member of the group (so that it has
            // something to leave), and the consumer then reads on from the
            // commits.
            match LEAVING[(round / LEAVE_EVERY - 1) as usize % LEAVING.len()] {
                "unsubscribe" => sweep!(sweeps, deadline, "unsubscribe", |pendings| {
                    consumer.subscribe(&[topic]).unwrap();
                    poll_until_joined(&consumer, &mut oracle).await;
                    let completed = drop_after_pendings(consumer.unsubscribe(), pendings)
                        .await
                        .is_some();
                    // Every other drop, the member must be gone before the
                    // consumer rejoins; in between, the rejoin races the
                    // LeaveGroup still on its way.
                    if pendings % 2 == 1 {
                        wait_for_empty_group(&broker.addr, group).await;
                    }
                    consumer.subscribe(&[topic]).unwrap();
                    oracle.restart();
                    completed
                }),
                "assign" => sweep!(sweeps, deadline, "assign", |pendings| {
                    consumer.subscribe(&[topic]).unwrap();
                    poll_until_joined(&consumer, &mut oracle).await;
                    let completed = drop_after_pendings(consumer.assign(&partitions), pendings)
                        .await
                        .is_some();
                    // Every other drop, the member must be gone before the
                    // consumer rejoins; in between, the rejoin races the
                    // LeaveGroup still on its way.
                    if pendings % 2 == 1 {
                        wait_for_empty_group(&broker.addr, group).await;
                    }
                    // Assigned (or, dropped unpolled, still subscribed),
                    // it reads on from the commits either way.
                    oracle.restart();
                    completed
                }),
                "close" => sweep!(sweeps, deadline, "close", |pendings| {
                    consumer.subscribe(&[topic]).unwrap();
                    poll_until_joined(&consumer, &mut oracle).await;
                    let closing = std::mem::replace(
                        &mut consumer,
                        Consumer::connect(config.clone()).await.unwrap(),
                    );
                    let completed = match drop_after_pendings(closing.close(), pendings).await {
                        Some(result) => {
                            result.unwrap();
                            true
                        }
                        None => false,
                    };
                    wait_for_empty_group(&broker.addr, group).await;
                    consumer.subscribe(&[topic]).unwrap();
                    oracle.restart();
                    completed
                }),
                other => unreachable!("{other}"),
            }
        }
        eprintln!(
            "{round} rounds in {:?}, {} records handed out ({} again after restarts)",
            started.elapsed(),
            oracle.handed_out,
            oracle.repeats_after_restart
        );
        for (method, stats) in &sweeps {
            eprintln!("{method}: {stats:?}");
        }
        for (method, stats) in &sweeps {
            assert!(
                stats.deepest_drop >= 1,
                "{method} never reached an await point: {stats:?}"
            );
        }
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
        consumer.close().await.unwrap();
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
