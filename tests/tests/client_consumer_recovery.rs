//! Our Rust consumer surviving failures, on real processes: a group member
//! killed with SIGKILL (its partitions move to the others, who resume at its
//! last commit), a consumer process killed and restarted (it resumes at its
//! committed offsets), and a broker restarted under a running consumer (no
//! committed offset lost; the consumer reconnects and carries on).
//!
//! The members run as `group_consumer` processes (tests/src/bin), which
//! print every record they processed and commit after each batch; the
//! oracle is per partition: the union of processed offsets covers `0..end`
//! without a gap, and no member starts below the last commit it could see.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::{AutoOffsetReset, CommitError, Compression, Consumer, ConsumerConfig};
use tests::GROUP_SETTLE_TIMEOUT;

/// Bound on consuming everything a test produced, failures included.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(90);
/// Session timeout of the members (the broker's minimum is lowered for it):
/// a killed member is removed from the group this long after its last heartbeat.
const SESSION_TIMEOUT_MS: &str = "3000";
/// Each member's work per batch of at most 100 records, so that a kill
/// lands in the middle of a topic rather than after it.
const PROCESSING_MS: &str = "20";

/// A `group_consumer` process and the lines it printed.
struct ConsumerProcess {
    name: &'static str,
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl ConsumerProcess {
    fn start(name: &'static str, addr: &str, topic: &str, group: &str) -> ConsumerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_group_consumer"))
            .args(["--bootstrap", addr, "--topic", topic, "--group", group])
            .args(["--session-timeout-ms", SESSION_TIMEOUT_MS])
            .args([
                "--max-poll-records",
                "100",
                "--processing-ms",
                PROCESSING_MS,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start group_consumer");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        std::thread::spawn({
            let lines = lines.clone();
            move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        // A line cut short by SIGKILL has no newline: ignore it.
                        Ok(_) if line.ends_with('\n') => {
                            lines.lock().unwrap().push(line.trim_end().to_string())
                        }
                        Ok(_) => return,
                    }
                }
            }
        });
        ConsumerProcess {
            name,
            child: Some(child),
            lines,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every `(partition, offset)` the process printed as processed.
    fn processed(&self) -> Vec<(i32, i64)> {
        self.lines()
            .iter()
            .filter_map(|line| {
                let mut words = line.strip_prefix("record ")?.split(' ');
                Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
            })
            .collect()
    }

    /// Per partition, one past the highest offset processed before the last
    /// `committed` line: what this process is known to have committed.
    fn known_committed(&self) -> BTreeMap<i32, i64> {
        let lines = self.lines();
        let last_commit = lines
            .iter()
            .rposition(|l| l == "committed")
            .map_or(0, |i| i + 1);
        let mut out = BTreeMap::new();
        for line in &lines[..last_commit] {
            if let Some(rest) = line.strip_prefix("record ") {
                let mut words = rest.split(' ');
                let partition: i32 = words.next().unwrap().parse().unwrap();
                let offset: i64 = words.next().unwrap().parse().unwrap();
                let entry = out.entry(partition).or_insert(0);
                *entry = (*entry).max(offset + 1);
            }
        }
        out
    }

    /// The assignment after the last rebalance, or `None` while a
    /// rebalance is under way (partitions revoked or lost since).
    fn assignment(&self) -> Option<BTreeSet<i32>> {
        let lines = self.lines();
        let last = lines.iter().rposition(|l| l.starts_with("assignment"))?;
        if lines[last..]
            .iter()
            .any(|l| l.starts_with("revoked") || l.starts_with("lost"))
        {
            return None;
        }
        let list = lines[last].strip_prefix("assignment").unwrap().trim();
        Some(
            list.split(',')
                .filter(|s| !s.is_empty())
                .map(|p| p.parse().unwrap())
                .collect(),
        )
    }

    fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- {} printed:\n{}", self.name, self.lines().join("\n"));
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    assert!(
        tests::wait_until(timeout, &mut condition),
        "timed out waiting for: {what}"
    );
}

/// The processed offsets of every partition cover `0..end` with no gap.
fn covers(processed: &[(i32, i64)], partitions: i32, end: i64) -> bool {
    let seen: BTreeSet<(i32, i64)> = processed.iter().copied().collect();
    (0..partitions).all(|p| (0..end).all(|o| seen.contains(&(p, o))))
}

fn first_offsets(processed: &[(i32, i64)]) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    for (partition, offset) in processed {
        out.entry(*partition).or_insert(*offset);
    }
    out
}

#[test]
fn killed_member_partitions_move_to_the_survivors_who_resume_at_its_last_commit() {
    // 3 members share 12 partitions; one is SIGKILLed mid-stream. The other two take its
    // partitions, start each at (or above) its last commit but never past what it
    // processed, and between the three every offset of every partition is processed.
    const PARTITIONS: i32 = 12;
    const FIRST_WAVE: usize = 200;
    const SECOND_WAVE: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let broker = tests::start_short_session_broker(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        tests::create_topic_async(&broker.addr, "work", PARTITIONS).await;
        tests::produce_numbered(
            &broker.addr,
            "work",
            PARTITIONS,
            FIRST_WAVE,
            Compression::None,
        )
        .await
        .unwrap();
    });
    let mut members = [
        ConsumerProcess::start("a", &broker.addr, "work", "workers"),
        ConsumerProcess::start("b", &broker.addr, "work", "workers"),
        ConsumerProcess::start("c", &broker.addr, "work", "workers"),
    ];
    wait_for(
        "three members with 4 partitions each",
        GROUP_SETTLE_TIMEOUT,
        || {
            let assignments: Vec<Option<BTreeSet<i32>>> =
                members.iter().map(|m| m.assignment()).collect();
            let union: BTreeSet<i32> = assignments.iter().flatten().flatten().copied().collect();
            assignments
                .iter()
                .all(|a| a.as_ref().is_some_and(|a| a.len() == 4))
                && union.len() == 12
        },
    );
    // The second wave arrives while the victim works through its share.
    let producer = runtime.spawn({
        let addr = broker.addr.clone();
        async move {
            tests::produce_numbered(&addr, "work", PARTITIONS, SECOND_WAVE, Compression::None).await
        }
    });
    let victim_partitions = members[2].assignment().unwrap();
    wait_for(
        "the victim to get into the second wave",
        CONSUME_TIMEOUT,
        || {
            members[2]
                .processed()
                .iter()
                .any(|(_, offset)| *offset >= FIRST_WAVE as i64)
        },
    );
    members[2].kill9();
    let victim_processed = members[2].processed();
    let victim_committed = members[2].known_committed();
    let processed_before: Vec<Vec<(i32, i64)>> =
        members[..2].iter().map(|m| m.processed()).collect();
    wait_for(
        "the survivors to own all 12 partitions",
        GROUP_SETTLE_TIMEOUT,
        || {
            let assignments: Vec<Option<BTreeSet<i32>>> =
                members[..2].iter().map(|m| m.assignment()).collect();
            let union: BTreeSet<i32> = assignments.iter().flatten().flatten().copied().collect();
            assignments
                .iter()
                .all(|a| a.as_ref().is_some_and(|a| a.len() == 6))
                && union.len() == 12
        },
    );
    runtime.block_on(producer).unwrap().unwrap();
    let end = (FIRST_WAVE + SECOND_WAVE) as i64;
    let all_processed = || {
        let mut all: Vec<(i32, i64)> = members[..2].iter().flat_map(|m| m.processed()).collect();
        all.extend(victim_processed.iter().copied());
        all
    };
    wait_for("every offset processed by someone", CONSUME_TIMEOUT, || {
        covers(&all_processed(), PARTITIONS, end)
    });
    // Where the survivors picked up the victim's partitions.
    for partition in &victim_partitions {
        let taken_over: Vec<(i32, i64)> = members[..2]
            .iter()
            .zip(&processed_before)
            .flat_map(|(m, before)| m.processed().split_off(before.len()))
            .filter(|(p, _)| p == partition)
            .collect();
        let Some(&resumed_at) = first_offsets(&taken_over).get(partition) else {
            panic!("partition {partition}: the survivors processed nothing of it after the kill");
        };
        let committed = victim_committed.get(partition).copied().unwrap_or(0);
        // Anyone may have processed the partition before the victim had it
        // (the first member owned everything for a moment).
        let processed_end = victim_processed
            .iter()
            .chain(processed_before.iter().flatten())
            .filter(|(p, _)| p == partition)
            .map(|(_, o)| o + 1)
            .max()
            .unwrap_or(0);
        assert!(
            resumed_at >= committed && resumed_at <= processed_end,
            "partition {partition}: resumed at {resumed_at}, victim committed {committed}, processed before the kill up to {processed_end}"
        );
    }
    let total: usize = all_processed().len();
    eprintln!(
        "processed {total} records for {} offsets ({} delivered twice: the at-least-once window)",
        PARTITIONS as i64 * end,
        total as i64 - PARTITIONS as i64 * end
    );
}

#[test]
fn consumer_killed_and_restarted_resumes_at_its_committed_offsets() {
    // A lone member is SIGKILLed mid-stream; its successor starts every partition exactly at
    // the committed offset (nothing below it again, nothing skipped) and finishes the topic.
    const PARTITIONS: i32 = 4;
    const PER_PARTITION: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = tests::start_short_session_broker(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        tests::create_topic_async(&broker.addr, "journal", PARTITIONS).await;
        tests::produce_numbered(
            &broker.addr,
            "journal",
            PARTITIONS,
            PER_PARTITION,
            Compression::None,
        )
        .await
        .unwrap();
    });
    let mut first = ConsumerProcess::start("first", &broker.addr, "journal", "journalists");
    wait_for("the first process to get half way", CONSUME_TIMEOUT, || {
        first.processed().len() >= PARTITIONS as usize * PER_PARTITION / 2
    });
    first.kill9();
    let first_processed = first.processed();
    assert!(
        first_processed.len() < PARTITIONS as usize * PER_PARTITION,
        "the kill came after the whole topic was processed"
    );
    let mut raw = tests::RawConnection::connect(&broker.addr).unwrap();
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    let committed =
        tests::committed_offsets(&mut raw, "journalists", "journal", &partitions).unwrap();
    for (partition, known) in first.known_committed() {
        assert!(
            committed[partition as usize] >= known,
            "partition {partition}: committed {} below what the process saw confirmed ({known})",
            committed[partition as usize]
        );
    }
    let second = ConsumerProcess::start("second", &broker.addr, "journal", "journalists");
    wait_for("the topic finished", CONSUME_TIMEOUT, || {
        let mut all = first_processed.clone();
        all.extend(second.processed());
        covers(&all, PARTITIONS, PER_PARTITION as i64)
    });
    let second_processed = second.processed();
    let resumed = first_offsets(&second_processed);
    for partition in 0..PARTITIONS {
        let committed = committed[partition as usize].max(0);
        if committed >= PER_PARTITION as i64 {
            assert!(
                !resumed.contains_key(&partition),
                "partition {partition} was finished"
            );
            continue;
        }
        assert!(
            resumed.contains_key(&partition),
            "partition {partition} never resumed"
        );
        assert_eq!(
            resumed[&partition], committed,
            "partition {partition} resumes at its commit"
        );
        assert!(
            second_processed
                .iter()
                .all(|(p, o)| *p != partition || *o >= committed),
            "partition {partition}: nothing below the committed offset again"
        );
    }
    let redelivered =
        first_processed.len() + second_processed.len() - PARTITIONS as usize * PER_PARTITION;
    eprintln!("{redelivered} records processed twice (after the last commit before the kill)");
}

#[test]
fn broker_restart_loses_no_committed_offset_and_the_consumer_carries_on() {
    // Commits survive a broker SIGKILL and restart unchanged; the running consumer reconnects,
    // rediscovers its coordinator, and reads the rest without a gap or a repeat.
    const PARTITIONS: i32 = 3;
    const FIRST_WAVE: usize = 300;
    const SECOND_WAVE: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = tests::start_short_session_broker(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr = broker.addr.clone();
    runtime.block_on(async {
        tests::create_topic_async(&addr, "ledger", PARTITIONS).await;
        tests::produce_numbered(&addr, "ledger", PARTITIONS, FIRST_WAVE, Compression::None)
            .await
            .unwrap();
    });
    let mut config = ConsumerConfig::new(&addr).with_group("bookkeepers");
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.enable_auto_commit = false;
    config.session_timeout = Duration::from_secs(6);
    config.heartbeat_interval = Duration::from_millis(300);
    config.max_poll_records = 50;
    let consumer = runtime.block_on(async {
        let consumer = Consumer::connect(config).await.unwrap();
        consumer.subscribe(&["ledger"]).unwrap();
        consumer
    });
    let mut processed: Vec<(i32, i64)> = Vec::new();
    // Consume (and commit) part of the first wave.
    runtime.block_on(async {
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        while processed.len() < FIRST_WAVE {
            assert!(Instant::now() < deadline, "stuck at {}", processed.len());
            let records = consumer.poll(Duration::from_millis(100)).await.unwrap();
            if !records.is_empty() {
                processed.extend(records.iter().map(|r| (r.partition, r.offset)));
                consumer.commit_sync().await.unwrap();
            }
        }
    });
    let mut raw = tests::RawConnection::connect(&addr).unwrap();
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    let before = tests::committed_offsets(&mut raw, "bookkeepers", "ledger", &partitions).unwrap();
    drop(raw);
    broker.kill9().unwrap();
    broker.restart().unwrap();
    let mut raw = tests::RawConnection::connect(&addr).unwrap();
    tests::wait_for_group_coordinator(&mut raw, "bookkeepers").unwrap();
    let after = tests::committed_offsets(&mut raw, "bookkeepers", "ledger", &partitions).unwrap();
    assert_eq!(after, before, "committed offsets across the restart");
    runtime.block_on(async {
        tests::produce_numbered(&addr, "ledger", PARTITIONS, SECOND_WAVE, Compression::None)
            .await
            .unwrap();
        let end = (FIRST_WAVE + SECOND_WAVE) as i64;
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        let mut commit_errors = 0;
        while !covers(&processed, PARTITIONS, end) {
            assert!(
                Instant::now() < deadline,
                "stuck at {} after the restart",
                processed.len()
            );
            let records = consumer.poll(Duration::from_millis(100)).await.unwrap();
            if records.is_empty() {
                continue;
            }
            processed.extend(records.iter().map(|r| (r.partition, r.offset)));
            match consumer.commit_sync().await {
                Ok(()) => {}
                // A rebalance after the restart (if the group came back without
                // this member) refuses the commit; the records come again.
                Err(CommitError::Rebalanced { .. }) => commit_errors += 1,
                Err(e) => panic!("commit after the restart: {e}"),
            }
        }
        if commit_errors == 0 {
            let unique: BTreeSet<(i32, i64)> = processed.iter().copied().collect();
            assert_eq!(
                unique.len(),
                processed.len(),
                "every commit went through, so nothing is read twice"
            );
        }
        consumer.commit_sync().await.unwrap();
    });
    let end = (FIRST_WAVE + SECOND_WAVE) as i64;
    let last = tests::committed_offsets(&mut raw, "bookkeepers", "ledger", &partitions).unwrap();
    assert_eq!(last, vec![end; PARTITIONS as usize]);
    runtime.block_on(consumer.close()).unwrap();
}
