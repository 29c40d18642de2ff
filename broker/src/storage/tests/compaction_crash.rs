//! Crashes during a cleaning: the process dies before each rename or removal
//! of a cleaning in turn (the fault injector fails that one and all later
//! ones), with or without a power loss that keeps only fsynced bytes. After
//! recovery the log must hold either its segments from before the cleaning
//! or the cleaned ones, never a mix and never less.

use std::sync::Arc;

use super::compaction::{compact_config, keyed_batch, stored_records};
use super::*;
use crate::storage::file::{CrashMode, FaultInjector};
use crate::storage::{LogManager, TopicPartition};

/// The clock of the cleaning in every scenario, so all clean alike.
const CLEANING_MS: i64 = 50_000;
/// Room for one scenario's files.
const CRASH_SCRATCH_BYTES: u64 = 16 << 20;

fn tp() -> TopicPartition {
    TopicPartition::new("compacted", 0)
}

/// A compacted log of three sealed segments that clean into one, whose last
/// batch holds a key written once, so the cleaned copy ends where its last
/// source ends. Everything is flushed, so a power loss keeps it all.
fn prepare(manager: &LogManager) {
    let log = manager.create(&tp(), compact_config()).expect("create");
    let mut guard = log.lock().unwrap();
    for segment in 0..3 {
        for round in 0..6 {
            let key = |i: usize| format!("k{}", (round * 3 + i) % 7);
            let mut batch: Vec<(String, Option<String>)> = (0..3)
                .map(|i| (key(i), Some(format!("v{segment}.{round}.{i}"))))
                .collect();
            if round == 2 {
                batch.push((key(0), None));
            }
            guard
                .append(&keyed_batch(&batch, segment * 10 + round as i64), 0, 0)
                .expect("append");
        }
        let once = vec![(format!("once{segment}"), Some("x".to_string()))];
        guard
            .append(&keyed_batch(&once, 100), 0, 0)
            .expect("append");
        guard.roll(0).expect("roll");
    }
    guard
        .append(
            &keyed_batch(&[("tail".into(), Some("t".into()))], 200),
            0,
            0,
        )
        .expect("append");
    guard.flush().expect("flush");
    drop(guard);
    manager.write_checkpoints().expect("checkpoints");
}

fn batches_of(dir: &std::path::Path) -> (Vec<Vec<u8>>, LogManager) {
    let manager = LogManager::open(dir, compact_config(), 32).expect("open");
    let log = manager.get(&tp()).expect("partition");
    let batches = read_all(&log.lock().unwrap());
    (batches, manager)
}

/// What recovery found after a crash, and what cleaning it again gave.
struct Recovered {
    batches: Vec<Vec<u8>>,
    swaps_completed: u64,
    recleaned: Vec<Vec<u8>>,
}

/// Runs a cleaning whose file operations fail after `ops_allowed` of them,
/// optionally loses power, recovers, and cleans again.
fn crash_scenario(ops_allowed: u64, power_loss: bool) -> Recovered {
    let dir = ScratchDir::new(CRASH_SCRATCH_BYTES);
    let faults = FaultInjector::new();
    let files = FileLayer::with_faults(Arc::clone(&faults));
    {
        let manager = LogManager::open_with_file_layer(dir.path(), compact_config(), 32, files)
            .expect("open");
        prepare(&manager);
        faults.fail_file_ops_after(ops_allowed);
        manager.clean_pass(CLEANING_MS);
        // The process dies here: no shutdown.
    }
    if power_loss {
        faults
            .simulate_power_loss(dir.path(), CrashMode::DropUnflushed, ops_allowed)
            .expect("power loss");
    }
    let (batches, manager) = batches_of(dir.path());
    let swaps_completed = manager.recovery_report().swaps_completed;
    let report = manager.clean_pass(CLEANING_MS);
    assert!(report.failed.is_empty(), "{report:?}");
    let log = manager.get(&tp()).expect("partition");
    let guard = log.lock().unwrap();
    stored_records(&guard);
    Recovered {
        batches,
        swaps_completed,
        recleaned: read_all(&guard),
    }
}

#[test]
fn a_crash_at_any_step_of_a_cleaning_leaves_the_old_or_the_cleaned_segments() {
    // Proves that dying before each file operation of a cleaning (and losing power after) recovers to exactly the old or the new segment set.
    let (before, after, ops) = {
        let dir = ScratchDir::new(CRASH_SCRATCH_BYTES);
        let faults = FaultInjector::new();
        let files = FileLayer::with_faults(Arc::clone(&faults));
        let manager = LogManager::open_with_file_layer(dir.path(), compact_config(), 32, files)
            .expect("open");
        prepare(&manager);
        let log = manager.get(&tp()).expect("partition");
        let before = read_all(&log.lock().unwrap());
        let ops_before = faults.file_ops();
        let report = manager.clean_pass(CLEANING_MS);
        assert_eq!(report.cleaned.len(), 1, "{report:?}");
        let after = read_all(&log.lock().unwrap());
        (before, after, faults.file_ops() - ops_before)
    };
    assert!(after.len() < before.len(), "the cleaning removed batches");
    assert!(
        ops >= 10,
        "a swap renames and removes files ({ops} operations)"
    );
    for power_loss in [false, true] {
        let mut old = 0;
        let mut new = 0;
        let mut finished_by_recovery = 0;
        for ops_allowed in 0..=ops {
            let recovered = crash_scenario(ops_allowed, power_loss);
            finished_by_recovery += recovered.swaps_completed;
            if recovered.batches == before {
                old += 1;
            } else if recovered.batches == after {
                new += 1;
            } else {
                panic!(
                    "dying after {ops_allowed} operations (power loss: {power_loss}) left a mix: {} batches",
                    recovered.batches.len()
                );
            }
            assert_eq!(
                recovered.recleaned, after,
                "the recovered log cleans to the uninterrupted result"
            );
        }
        assert!(
            old > 0 && new > 0,
            "both outcomes occur ({old} old, {new} new)"
        );
        assert!(
            finished_by_recovery > 0,
            "recovery finished a committed swap"
        );
    }
}
