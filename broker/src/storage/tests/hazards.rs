//! The two hazards of mapped files: (a) a file shrinking under a live mapping
//! (SIGBUS for a reader), and (b) a full disk behind a mapping (SIGBUS for a
//! writer; appends use `pwritev` now, but the space is still allocated ahead so
//! a full disk fails the append before anything is written). Both must be
//! ordinary, survivable events, and so must a failing write.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::storage::file::FaultInjector;
use crate::storage::segment::segment_file_name;
use crate::storage::{LogManager, StorageError, TopicPartition};

/// Size of the tmpfs that plays a full disk.
const TMPFS_BYTES: u64 = 4 << 20;
/// Filler that keeps the tmpfs fuller, removed to make room for reopening.
const FILLER_BYTES: u64 = 512 << 10;

#[test]
fn bytes_held_by_a_reader_survive_truncate_roll_retention_and_delete() {
    // Proves (a): a reader's Bytes stay readable and unchanged across every operation that cuts or removes files.
    let data = tempfile::tempdir().expect("tempdir");
    let manager = LogManager::open(data.path(), small_config(), 16).expect("open");
    let tp = TopicPartition::new("hazard", 0);
    let log = manager.create(&tp, small_config()).expect("create");
    let mut guard = log.lock().unwrap();
    let records = batch(2, 700, 1);
    for _ in 0..30 {
        guard.append(&records, 0, 0).expect("append");
    }
    let active_base = *guard.segment_base_offsets().last().unwrap();
    let active_path = guard.dir().join(segment_file_name(active_base, "log"));
    let inode_before = std::fs::metadata(&active_path).unwrap().ino();
    // Hold slices of the first (sealed) segment and of the active one.
    let sealed_read = guard.read(0, 1 << 20, i64::MAX, true).expect("read");
    let active_read = guard
        .read(active_base, 1 << 20, i64::MAX, true)
        .expect("read");
    let sealed_copy = sealed_read.records.to_vec();
    let active_copy = active_read.records.to_vec();
    assert!(!active_copy.is_empty() && !sealed_copy.is_empty());

    // Truncating inside the active segment while a reader maps it replaces the
    // file instead of cutting it under the reader.
    guard.truncate_to(active_base + 1).expect("truncate");
    assert_eq!(guard.log_end_offset(), active_base);
    let inode_after = std::fs::metadata(&active_path).unwrap().ino();
    assert_ne!(
        inode_before, inode_after,
        "a mapped file is replaced, not shrunk"
    );
    assert_eq!(&active_read.records[..], &active_copy[..]);

    // Appending over the cut does not change what the reader holds.
    for _ in 0..30 {
        guard.append(&batch(2, 700, 2), 0, 0).expect("append");
    }
    assert_eq!(&active_read.records[..], &active_copy[..]);

    // A roll with a reader on the active segment defers the trim.
    let held = guard
        .read(guard.log_end_offset() - 2, 1 << 20, i64::MAX, true)
        .expect("read");
    let held_copy = held.records.to_vec();
    guard.roll(0).expect("roll");
    assert_eq!(&held.records[..], &held_copy[..]);

    // Retention deletes the segment behind the sealed read.
    guard
        .set_config(LogConfig {
            retention_bytes: Some(1),
            ..small_config()
        })
        .expect("config");
    assert!(guard.apply_retention(0).expect("retention") > 0);
    assert!(!data
        .path()
        .join(tp.dir_name())
        .join(segment_file_name(0, "log"))
        .exists());
    assert_eq!(&sealed_read.records[..], &sealed_copy[..]);
    drop(guard);

    // Deleting the partition removes the directory; the slices stay readable.
    manager.delete(&tp).expect("delete");
    assert!(!data.path().join(tp.dir_name()).exists());
    assert_eq!(&sealed_read.records[..], &sealed_copy[..]);
    assert_eq!(&active_read.records[..], &active_copy[..]);
    assert_eq!(&held.records[..], &held_copy[..]);
    // Every byte, one at a time, to touch every page.
    let sum: u64 = [&sealed_read.records, &active_read.records, &held.records]
        .iter()
        .flat_map(|b| b.iter())
        .map(|&b| u64::from(b))
        .sum();
    assert!(sum > 0);
}

#[test]
fn deferred_trim_happens_once_the_reader_lets_go() {
    // Proves a roll under a live reader leaves the file long, and the next flush trims it once the Bytes are dropped.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    log.append(&batch(1, 100, 1), 0, 0).expect("append");
    let path = dir.path().join(segment_file_name(0, "log"));
    let held = log.read(0, 1 << 20, i64::MAX, true).expect("read");
    log.roll(0).expect("roll");
    let data_len = held.records.len() as u64;
    assert!(
        std::fs::metadata(&path).unwrap().len() > data_len,
        "trim deferred"
    );
    drop(held);
    log.flush().expect("flush");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        data_len,
        "trimmed later"
    );
}

/// Appends until the log reports an error; returns the acknowledged batches and the error.
fn fill_until_error(log: &mut PartitionLog, value_bytes: usize) -> (Vec<Vec<u8>>, StorageError) {
    let mut acknowledged = Vec::new();
    // Bounded: the disks used here fill long before this many appends.
    for i in 0..100_000 {
        let records = batch(1, value_bytes, i);
        match log.append(&records, 1, 0) {
            Ok(info) => acknowledged.push(stored(&records, info.base_offset, 1)),
            Err(error) => return (acknowledged, error),
        }
    }
    panic!("the disk never filled up");
}

fn check_full_disk_behaviour(data_dir: &Path, files: FileLayer, make_room: impl FnOnce()) {
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        preallocate_step_bytes: 256 << 10,
        flush_policy: FlushPolicy::EveryBatch,
        ..small_config()
    };
    let tp = TopicPartition::new("full", 0);
    let acknowledged = {
        let manager =
            LogManager::open_with_file_layer(data_dir, config.clone(), 16, files).expect("open");
        let log = manager.create(&tp, config.clone()).expect("create");
        let mut guard = log.lock().unwrap();
        let (acknowledged, error) = fill_until_error(&mut guard, 10_000);
        assert!(
            matches!(&error, StorageError::Offline { reason } if reason.contains("No space left") || reason.contains("os error 28")),
            "a full disk is an Offline error, got {error:?}"
        );
        assert!(guard.is_offline());
        assert!(matches!(
            guard.append(&batch(1, 10, 0), 1, 0),
            Err(StorageError::Offline { .. })
        ));
        assert!(!acknowledged.is_empty());
        acknowledged
        // Dropped without a clean shutdown, as a broker that cannot write would be.
    };
    make_room();
    let manager = LogManager::open(data_dir, config, 16).expect("reopen");
    let log = manager.get(&tp).expect("partition");
    let guard = log.lock().unwrap();
    assert_eq!(
        read_all(&guard),
        acknowledged,
        "every acknowledged batch survived"
    );
}

#[test]
fn full_disk_from_fault_injection_takes_the_partition_offline_without_losing_data() {
    // Proves (b) with an injected ENOSPC: the append fails cleanly and acknowledged data is intact.
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = FaultInjector::new();
    faults.limit_allocation(3 << 20);
    let injected = Arc::clone(&faults);
    check_full_disk_behaviour(dir.path(), FileLayer::with_faults(faults), move || {
        injected.unlimit_allocation();
    });
}

#[test]
fn failed_write_takes_the_partition_offline_without_losing_data() {
    // Proves an I/O error from the append's pwritev is an Offline error, and every batch acknowledged before it survives.
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = FaultInjector::new();
    let config = LogConfig {
        flush_policy: FlushPolicy::EveryBatch,
        ..small_config()
    };
    let tp = TopicPartition::new("write-fails", 0);
    let acknowledged = {
        let files = FileLayer::with_faults(Arc::clone(&faults));
        let manager =
            LogManager::open_with_file_layer(dir.path(), config.clone(), 16, files).expect("open");
        let log = manager.create(&tp, config.clone()).expect("create");
        let mut guard = log.lock().unwrap();
        let mut acknowledged = Vec::new();
        for i in 0..10 {
            let records = batch(2, 300, i);
            let info = guard.append(&records, 1, 0).expect("append");
            acknowledged.push(stored(&records, info.base_offset, 1));
        }
        faults.fail_writes(true);
        let error = guard
            .append(&batch(2, 300, 10), 1, 0)
            .expect_err("the write fails");
        assert!(
            matches!(&error, StorageError::Offline { reason } if reason.contains("os error 5")),
            "a failed write is an Offline error, got {error:?}"
        );
        assert!(guard.is_offline());
        acknowledged
        // Dropped without a clean shutdown.
    };
    faults.fail_writes(false);
    let manager = LogManager::open(dir.path(), config, 16).expect("reopen");
    let log = manager.get(&tp).expect("partition");
    assert_eq!(read_all(&log.lock().unwrap()), acknowledged);
}

#[test]
fn full_tmpfs_takes_the_partition_offline_without_losing_data() {
    // Proves (b) on a real 4 MiB tmpfs: ENOSPC from fallocate is an append error, never a SIGBUS.
    let tmpfs = match Tmpfs::mount(TMPFS_BYTES) {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            println!("tmpfs unavailable ({reason}); falling back to injected ENOSPC");
            let dir = tempfile::tempdir().expect("tempdir");
            let faults = FaultInjector::new();
            faults.limit_allocation(TMPFS_BYTES);
            let injected = Arc::clone(&faults);
            check_full_disk_behaviour(dir.path(), FileLayer::with_faults(faults), move || {
                injected.unlimit_allocation();
            });
            return;
        }
    };
    let data_dir = tmpfs.path.join("data");
    let filler = tmpfs.path.join("filler");
    std::fs::write(&filler, vec![1u8; FILLER_BYTES as usize]).expect("filler");
    check_full_disk_behaviour(&data_dir, FileLayer::real(), || {
        std::fs::remove_file(&filler).expect("remove filler");
    });
}
