//! Crash recovery: unclean stops, power loss through the fault-injecting file
//! layer (unflushed bytes dropped, torn tails, flipped bits), and damage done
//! to segment files directly. Recovery must keep every flushed batch and
//! nothing invalid.

use std::sync::Arc;

use super::*;
use crate::storage::file::{CrashMode, FaultInjector};
use crate::storage::segment::segment_file_name;
use crate::storage::{LogManager, TopicPartition};

/// Appends per crash scenario.
const CRASH_APPENDS: u64 = 60;
/// Room for one crash scenario's files.
const CRASH_SCRATCH_BYTES: u64 = 64 << 20;
/// Seeds tried per crash mode.
const CRASH_SEEDS: u64 = 12;

struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

fn tp() -> TopicPartition {
    TopicPartition::new("crash", 0)
}

/// Runs random appends and flushes, loses power, recovers; returns
/// (batches appended, batches flushed, batches recovered).
fn power_loss_scenario(mode: CrashMode, seed: u64) -> (usize, usize, usize) {
    let dir = ScratchDir::new(CRASH_SCRATCH_BYTES);
    let faults = FaultInjector::new();
    let files = FileLayer::with_faults(Arc::clone(&faults));
    let config = LogConfig {
        flush_policy: FlushPolicy::IntervalMs(u64::MAX / 2),
        ..small_config()
    };
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut appended = Vec::new();
    let mut flushed = 0;
    {
        let manager =
            LogManager::open_with_file_layer(dir.path(), config.clone(), 32, files).expect("open");
        let log = manager.create(&tp(), config.clone()).expect("create");
        let mut guard = log.lock().unwrap();
        for i in 0..CRASH_APPENDS {
            let records = batch(1 + rng.below(4) as usize, rng.below(700) as usize, i as i64);
            let info = guard.append(&records, 1, i as i64).expect("append");
            appended.push(stored(&records, info.base_offset, 1));
            if rng.below(6) == 0 {
                guard.flush().expect("flush");
                flushed = appended.len();
                drop(guard);
                manager.write_checkpoints().expect("checkpoints");
                guard = log.lock().unwrap();
            }
        }
        // Power goes out: no flush, no shutdown.
    }
    faults
        .simulate_power_loss(dir.path(), mode, seed)
        .expect("simulate power loss");
    let manager = LogManager::open(dir.path(), config, 32).expect("recover");
    assert!(!manager.recovery_report().clean_shutdown);
    let log = manager.get(&tp()).expect("partition");
    let guard = log.lock().unwrap();
    let recovered = read_all(&guard);
    assert!(
        recovered.len() >= flushed,
        "{mode:?}/{seed}: lost flushed batches ({} < {flushed})",
        recovered.len()
    );
    assert_eq!(
        recovered[..],
        appended[..recovered.len()],
        "{mode:?}/{seed}: recovered batches are a prefix of what was appended"
    );
    // The recovered log accepts appends at its end.
    drop(guard);
    let mut guard = log.lock().unwrap();
    let info = guard
        .append(&batch(1, 10, 0), 2, 0)
        .expect("append after recovery");
    assert_eq!(info.base_offset, guard.log_end_offset() - 1);
    (appended.len(), flushed, recovered.len())
}

#[test]
fn power_loss_keeps_every_flushed_batch_and_nothing_invalid() {
    // Proves, for dropped unflushed bytes, torn tails and flipped bits, that recovery keeps a valid prefix containing every flushed batch.
    for mode in [
        CrashMode::DropUnflushed,
        CrashMode::TornTail,
        CrashMode::FlipBit,
    ] {
        let mut lost_something = false;
        for seed in 1..=CRASH_SEEDS {
            let (appended, _flushed, recovered) = power_loss_scenario(mode, seed);
            lost_something |= recovered < appended;
        }
        if mode == CrashMode::DropUnflushed {
            assert!(lost_something, "the scenarios did lose unflushed data");
        }
    }
}

/// Appends `count` batches to a fresh log, flushes the first `flushed` of
/// them, and stops uncleanly. Returns the stored batches.
fn unclean_log(dir: &std::path::Path, count: usize, flushed: usize) -> Vec<Vec<u8>> {
    let manager = LogManager::open(dir, small_config(), 32).expect("open");
    let log = manager.create(&tp(), small_config()).expect("create");
    let mut guard = log.lock().unwrap();
    let mut appended = Vec::new();
    for i in 0..count {
        let records = batch(2, 200, i as i64);
        let info = guard.append(&records, 0, 0).expect("append");
        appended.push(stored(&records, info.base_offset, 0));
        if i + 1 == flushed {
            guard.flush().expect("flush");
            drop(guard);
            manager.write_checkpoints().expect("checkpoints");
            guard = log.lock().unwrap();
        }
    }
    appended
}

fn reopen(dir: &std::path::Path) -> (LogManager, Vec<Vec<u8>>) {
    let manager = LogManager::open(dir, small_config(), 32).expect("reopen");
    let batches = {
        let log = manager.get(&tp()).expect("partition");
        let guard = log.lock().unwrap();
        read_all(&guard)
    };
    (manager, batches)
}

fn active_log_path(
    dir: &std::path::Path,
    batches: &[Vec<u8>],
    at: usize,
) -> (std::path::PathBuf, u64) {
    // All batches are the same size and the first segment holds them all here.
    let size = batches[0].len() as u64;
    (
        dir.join(tp().dir_name()).join(segment_file_name(0, "log")),
        size * at as u64,
    )
}

#[test]
fn unclean_stop_keeps_unflushed_batches_that_reached_the_file() {
    // Proves a process crash (page cache intact) loses nothing, and the preallocated zero tail is not corruption.
    let dir = tempfile::tempdir().expect("tempdir");
    let appended = unclean_log(dir.path(), 20, 5);
    let (manager, recovered) = reopen(dir.path());
    assert_eq!(recovered, appended);
    let report = manager.recovery_report();
    assert!(!report.clean_shutdown);
    assert!(report.bytes_scanned > 0);
    assert_eq!(
        report.bytes_truncated, 0,
        "zero tail is the normal end of data"
    );
}

#[test]
fn torn_tail_is_truncated_on_recovery() {
    // Proves a batch cut mid-way is dropped with everything after it, and the flushed part stays.
    let dir = tempfile::tempdir().expect("tempdir");
    let appended = unclean_log(dir.path(), 20, 5);
    let (path, position) = active_log_path(dir.path(), &appended, 12);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(position + 30).unwrap();
    drop(file);
    let (manager, recovered) = reopen(dir.path());
    assert_eq!(recovered, appended[..12]);
    assert!(manager.recovery_report().bytes_truncated > 0);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        position,
        "the torn bytes are gone"
    );
}

#[test]
fn flipped_bit_fails_the_crc_and_truncates_there() {
    // Proves a corrupted batch past the recovery point is dropped with everything after it.
    let dir = tempfile::tempdir().expect("tempdir");
    let appended = unclean_log(dir.path(), 20, 5);
    let (path, position) = active_log_path(dir.path(), &appended, 9);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[position as usize + 100] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    let (_manager, recovered) = reopen(dir.path());
    assert_eq!(recovered, appended[..9]);
}

#[test]
fn impossible_length_and_discontinuous_offsets_truncate_there() {
    // Proves a nonsense batch_length or a batch whose offset does not continue ends the valid log.
    for (at, damage) in [(7usize, "length"), (11, "offset")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let appended = unclean_log(dir.path(), 20, 5);
        let (path, position) = active_log_path(dir.path(), &appended, at);
        let mut bytes = std::fs::read(&path).unwrap();
        let p = position as usize;
        match damage {
            "length" => bytes[p + 8..p + 12].copy_from_slice(&i32::MAX.to_be_bytes()),
            _ => bytes[p..p + 8].copy_from_slice(&1_000_000i64.to_be_bytes()),
        }
        std::fs::write(&path, bytes).unwrap();
        let (_manager, recovered) = reopen(dir.path());
        assert_eq!(recovered, appended[..at], "damage: {damage}");
    }
}

#[test]
fn clean_shutdown_reopens_without_scanning() {
    // Proves the clean-shutdown marker skips recovery: zero bytes scanned, all data readable, marker consumed.
    let dir = tempfile::tempdir().expect("tempdir");
    let appended = {
        let manager = LogManager::open(dir.path(), small_config(), 32).expect("open");
        let log = manager.create(&tp(), small_config()).expect("create");
        let mut appended = Vec::new();
        {
            let mut guard = log.lock().unwrap();
            for i in 0..80 {
                let records = batch(2, 300, i);
                let info = guard.append(&records, 0, 0).expect("append");
                appended.push(stored(&records, info.base_offset, 0));
            }
        }
        manager.shutdown().expect("shutdown");
        appended
    };
    assert!(dir
        .path()
        .join(crate::storage::manager::CLEAN_SHUTDOWN_FILE)
        .exists());
    let (manager, recovered) = reopen(dir.path());
    let report = manager.recovery_report();
    assert!(report.clean_shutdown);
    assert_eq!(report.bytes_scanned, 0);
    assert_eq!(report.segments_scanned, 0);
    assert_eq!(recovered, appended);
    assert!(!dir
        .path()
        .join(crate::storage::manager::CLEAN_SHUTDOWN_FILE)
        .exists());
    // Files were trimmed at shutdown: every segment file is exactly its data.
    let total: u64 = std::fs::read_dir(dir.path().join(tp().dir_name()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(total, appended.iter().map(|b| b.len() as u64).sum::<u64>());
    // And the next unclean stop is recovered, not trusted.
    drop(manager);
    let (manager, _) = reopen(dir.path());
    assert!(!manager.recovery_report().clean_shutdown);
}

#[test]
fn segments_after_a_truncated_one_are_deleted() {
    // Proves that once a segment is cut short, later segments that no longer continue its offsets go.
    let dir = tempfile::tempdir().expect("tempdir");
    let appended = unclean_log(dir.path(), 200, 5);
    let log_dir = dir.path().join(tp().dir_name());
    let mut logs: Vec<_> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    assert!(logs.len() >= 3);
    // Damage the second segment's third batch.
    let size = appended[0].len();
    let mut bytes = std::fs::read(&logs[1]).unwrap();
    bytes[size * 2 + 70] ^= 0xff;
    std::fs::write(&logs[1], bytes).unwrap();
    let (manager, recovered) = reopen(dir.path());
    let first_segment_batches = std::fs::metadata(&logs[0]).unwrap().len() as usize / size;
    assert_eq!(recovered, appended[..first_segment_batches + 2]);
    assert!(manager.recovery_report().segments_deleted >= 1);
    assert!(!logs[2].exists());
}
