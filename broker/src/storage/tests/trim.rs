//! Trimming a sealed segment's files to their contents: a roll leaves it to
//! the next interval flush, which shrinks the files without the partition
//! lock; a truncation that reopens the segment meanwhile must stop it.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::storage::segment::segment_file_name;
use crate::storage::{FaultInjector, StorageError};

/// Lengths of a segment's `.log`, `.index` and `.timeindex` files.
fn file_lengths(dir: &Path, base_offset: i64) -> [u64; 3] {
    ["log", "index", "timeindex"].map(|extension| {
        std::fs::metadata(dir.join(segment_file_name(base_offset, extension)))
            .expect("segment file")
            .len()
    })
}

/// Bytes of the batches stored in the segment starting at `base_offset`.
fn data_bytes(log: &PartitionLog, base_offset: i64) -> u64 {
    let next = log
        .segment_base_offsets()
        .into_iter()
        .find(|&base| base > base_offset)
        .unwrap_or(log.log_end_offset());
    read_all(log)
        .iter()
        .filter(|batch| {
            let header = BatchHeader::new(batch).expect("header");
            header.base_offset() >= base_offset && header.base_offset() < next
        })
        .map(|batch| batch.len() as u64)
        .sum()
}

/// Whether an index file holds entries up to its end: the index marks the end
/// of its entries with an all-zero one, so a trimmed file has none.
fn ends_with_an_entry(path: &Path, entry_bytes: usize) -> bool {
    let bytes = std::fs::read(path).expect("index file");
    bytes.len().is_multiple_of(entry_bytes)
        && bytes
            .chunks(entry_bytes)
            .all(|entry| entry.iter().any(|&b| b != 0))
}

/// Closes the log and checks that reopening it reads back `expected`.
fn assert_reopens_with(mut log: PartitionLog, dir: &Path, expected: &[Vec<u8>]) {
    log.close().expect("close");
    let reopened = open_log(dir, small_config());
    assert_eq!(read_all(&reopened), expected);
}

/// Runs the interval flush the way the manager does, returning whether it
/// was due.
fn run_flush_job(log: &mut PartitionLog, now_ms: i64) -> bool {
    let Some(mut job) = log.begin_flush_if_due(now_ms) else {
        return false;
    };
    let result = job.run();
    log.complete_flush(job, result).expect("flush");
    true
}

#[test]
fn a_roll_leaves_the_trim_to_the_interval_flush() {
    // Proves the roll itself does not shrink the sealed files, the flush job does, and reads are right before and after.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    for i in 0..12 {
        log.append(&batch(1, 1000, i), 0, 0).expect("append");
    }
    log.roll(0).expect("roll");
    let before = read_all(&log);
    let sealed_data = data_bytes(&log, 0);
    let [log_len, index_len, time_len] = file_lengths(dir.path(), 0);
    assert!(
        log_len > sealed_data,
        "the roll left the .log at its allocated {log_len} bytes, not its {sealed_data} of data"
    );
    assert!(
        !ends_with_an_entry(&dir.path().join(segment_file_name(0, "index")), 8)
            && index_len > 0
            && time_len > 0,
        "the roll left the index files at their allocated length"
    );

    assert!(
        run_flush_job(&mut log, 10_000),
        "the appends are due a flush"
    );
    let [log_len, _, _] = file_lengths(dir.path(), 0);
    assert_eq!(
        log_len, sealed_data,
        "the flush trimmed the .log to its data"
    );
    assert!(ends_with_an_entry(
        &dir.path().join(segment_file_name(0, "index")),
        8
    ));
    assert!(ends_with_an_entry(
        &dir.path().join(segment_file_name(0, "timeindex")),
        12
    ));
    assert_eq!(read_all(&log), before);
    let [_, index_len, _] = file_lengths(dir.path(), 0);
    assert!(index_len > 0, "the sealed segment keeps its index entries");
    // A lookup through the trimmed offset index still finds each batch.
    for offset in 0..12 {
        let read = log.read(offset, 1, i64::MAX, true).expect("read");
        let first = split_batches(&read.records).remove(0);
        assert_eq!(BatchHeader::new(&first).unwrap().base_offset(), offset);
    }

    // Nothing left to trim: the next flush shrinks nothing and reopening finds the same log.
    log.append(&batch(1, 10, 99), 0, 10_000).expect("append");
    assert!(run_flush_job(&mut log, 20_000));
    assert_eq!(file_lengths(dir.path(), 0)[0], sealed_data);
    let expected = read_all(&log);
    assert_reopens_with(log, dir.path(), &expected);
}

#[test]
fn a_truncation_between_planning_and_running_a_trim_stops_it() {
    // Proves the trim planned before a truncation that reopens the sealed segment cannot cut what is appended after it.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    for i in 0..10 {
        log.append(&batch(1, 1000, i), 0, 0).expect("append");
    }
    log.roll(0).expect("roll");
    log.append(&batch(1, 1000, 10), 0, 0).expect("append");
    let sealed_data = data_bytes(&log, 0);
    let mut job = log.begin_flush_if_due(10_000).expect("due");

    // The partition lock would be released here: a follower's truncation
    // makes the sealed segment active again and appends run past its old end.
    log.truncate_to(5).expect("truncate");
    assert_eq!(log.segment_base_offsets(), vec![0]);
    for i in 0..8 {
        log.append(&batch(1, 1000, 100 + i), 0, 10_001)
            .expect("append after the cut");
    }
    assert_eq!(log.segment_base_offsets(), vec![0], "no roll");
    assert!(
        data_bytes(&log, 0) > sealed_data,
        "appends passed the old end"
    );
    let expected = read_all(&log);
    assert_eq!(expected.len(), 13);
    // The mapping budget may evict the cached mappings at any time; then no
    // live mapping stands in the way of the planned shrink.
    log.unmap();

    let result = job.run();
    log.complete_flush(job, result).expect("flush");
    assert_eq!(read_all(&log), expected);
    assert!(
        file_lengths(dir.path(), 0)[0] >= data_bytes(&log, 0),
        "the file still holds every batch"
    );
    assert_reopens_with(log, dir.path(), &expected);
}

#[test]
fn a_trim_by_the_flush_waits_for_a_reader_of_the_whole_file() {
    // Proves the flush job does not shrink a file a reader still maps past its data, and trims it at a later flush.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    log.append(&batch(1, 1000, 1), 0, 0).expect("append");
    // Read while the segment is active: the Bytes slice a mapping of the whole allocated file.
    let held = log.read(0, 1 << 20, i64::MAX, true).expect("read");
    let held_copy = held.records.to_vec();
    log.roll(0).expect("roll");
    let sealed_data = held.records.len() as u64;

    assert!(run_flush_job(&mut log, 10_000));
    assert!(
        file_lengths(dir.path(), 0)[0] > sealed_data,
        "a mapped file is not shrunk"
    );
    assert_eq!(&held.records[..], &held_copy[..]);

    drop(held);
    log.append(&batch(1, 10, 2), 0, 10_000).expect("append");
    assert!(run_flush_job(&mut log, 20_000));
    assert_eq!(
        file_lengths(dir.path(), 0)[0],
        sealed_data,
        "trimmed once the reader let go"
    );
}

#[test]
fn a_trim_that_fails_in_the_flush_job_takes_the_partition_offline_and_loses_nothing() {
    // Proves an I/O error shrinking a file outside the lock is reported like any other storage error, and the data reads back after a restart.
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = FaultInjector::new();
    let (mut log, _) = PartitionLog::open(
        dir.path(),
        small_config(),
        FileLayer::with_faults(Arc::clone(&faults)),
        MappingBudget::new(64),
        OpenOptions::default(),
    )
    .expect("open");
    for i in 0..12 {
        log.append(&batch(1, 1000, i), 0, 0).expect("append");
    }
    log.roll(0).expect("roll");
    let expected = read_all(&log);
    let mut job = log.begin_flush_if_due(10_000).expect("due");
    faults.fail_trims(true);
    let result = job.run();
    let error = log
        .complete_flush(job, result)
        .expect_err("the trim failed");
    assert!(
        matches!(&error, StorageError::Offline { reason } if reason.contains("trimming a segment")),
        "{error}"
    );
    assert!(log.is_offline());
    drop(log);

    // Loading trims what the failed job left.
    let reopened = open_log(dir.path(), small_config());
    assert_eq!(read_all(&reopened), expected);
    assert_eq!(file_lengths(dir.path(), 0)[0], data_bytes(&reopened, 0));
}
