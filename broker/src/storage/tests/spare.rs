//! The spare segment: the next segment's file allocated ahead on a thread,
//! put in place at the roll, and never left behind.

use std::sync::Arc;

use super::*;
use crate::storage::file::FaultInjector;
use crate::storage::log::OpenOptions;
use crate::storage::segment::segment_file_name;
use crate::storage::spare::{SPARE_FILE_NAME, SPARE_SEGMENT_BYTES_MIN};

/// Segments just big enough for a spare, growing 1 MiB at a time otherwise.
fn spare_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: SPARE_SEGMENT_BYTES_MIN,
        preallocate_step_bytes: 1 << 20,
        ..small_config()
    }
}

/// Appends `batch` `count` times; returns what the log must read back.
fn append_times(log: &mut PartitionLog, batch: &Bytes, count: usize, expected: &mut Vec<Vec<u8>>) {
    for _ in 0..count {
        let info = log.append(batch, 1, 0).expect("append");
        expected.push(stored(batch, info.base_offset, 1));
    }
}

fn log_len(dir: &std::path::Path, base_offset: i64) -> u64 {
    std::fs::metadata(dir.join(segment_file_name(base_offset, "log")))
        .expect("segment log")
        .len()
}

#[test]
fn a_busy_log_rolls_into_a_segment_allocated_ahead_in_full() {
    // Past half a segment, the next segment's file is allocated on a thread;
    // the roll renames it into place, so the new segment needs no fallocate.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), spare_config());
    let big = batch(1, 1 << 20, 5);
    let mut expected = Vec::new();
    append_times(&mut log, &big, 16, &mut expected);
    assert_eq!(log.spare_ready(), None, "a quarter full: no spare yet");
    append_times(&mut log, &big, 17, &mut expected);
    assert_eq!(
        log.spare_ready(),
        Some(true),
        "past half: the spare is allocated"
    );
    let spare = dir.path().join(SPARE_FILE_NAME);
    assert_eq!(
        std::fs::metadata(&spare).expect("spare").len(),
        SPARE_SEGMENT_BYTES_MIN
    );
    assert_eq!(log.segment_count(), 1);
    while log.segment_count() == 1 {
        append_times(&mut log, &big, 1, &mut expected);
    }
    let active_base = *log.segment_base_offsets().last().expect("segments");
    assert_eq!(
        log_len(dir.path(), active_base),
        SPARE_SEGMENT_BYTES_MIN,
        "the new segment has its whole size allocated (stepping would give 1 MiB)"
    );
    assert!(!spare.exists(), "the spare became the segment");
    assert_eq!(log.spare_ready(), None);
    assert_eq!(read_all(&log), expected);
    log.close().expect("close");
    drop(log);
    let reopened = open_log(dir.path(), spare_config());
    assert_eq!(read_all(&reopened), expected, "read back after a reopen");
}

#[test]
fn a_spare_that_cannot_be_allocated_is_dropped_and_the_segment_grows_by_steps() {
    // A full disk fails the spare's allocation: the roll removes the half-made
    // file, the next segment grows step by step, and no data is lost.
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = FaultInjector::new();
    let (mut log, _) = PartitionLog::open(
        dir.path(),
        spare_config(),
        FileLayer::with_faults(Arc::clone(&faults)),
        MappingBudget::new(64),
        OpenOptions::default(),
    )
    .expect("open log");
    let big = batch(1, 1 << 20, 5);
    let mut expected = Vec::new();
    append_times(&mut log, &big, 16, &mut expected);
    // Room for the active segment's next 1 MiB steps up to half a segment
    // and a little more, not for an 8 MiB step of the spare.
    faults.limit_allocation(20 << 20);
    append_times(&mut log, &big, 17, &mut expected);
    assert_eq!(
        log.spare_ready(),
        Some(false),
        "the spare's allocation failed"
    );
    faults.unlimit_allocation();
    while log.segment_count() == 1 {
        append_times(&mut log, &big, 1, &mut expected);
    }
    let active_base = *log.segment_base_offsets().last().expect("segments");
    assert!(
        log_len(dir.path(), active_base) < SPARE_SEGMENT_BYTES_MIN,
        "the new segment was not made from the failed spare"
    );
    assert_eq!(log.spare_ready(), None, "the failed spare was dropped");
    assert!(!dir.path().join(SPARE_FILE_NAME).exists());
    assert_eq!(read_all(&log), expected);
}

/// A log past half its first segment, with its spare allocated.
fn log_with_a_spare(dir: &std::path::Path) -> PartitionLog {
    let mut log = open_log(dir, spare_config());
    append_times(&mut log, &batch(1, 1 << 20, 5), 33, &mut Vec::new());
    assert_eq!(log.spare_ready(), Some(true));
    assert!(dir.join(SPARE_FILE_NAME).exists());
    log
}

#[test]
fn closing_a_log_removes_its_spare() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = log_with_a_spare(dir.path());
    log.close().expect("close");
    assert!(!dir.path().join(SPARE_FILE_NAME).exists());
}

#[test]
fn a_log_going_offline_removes_its_spare() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = log_with_a_spare(dir.path());
    log.mark_offline("the partition was deleted");
    assert!(!dir.path().join(SPARE_FILE_NAME).exists());
}

#[test]
fn a_spare_left_by_a_crash_is_removed_when_the_log_opens() {
    // A crash can leave a spare, allocated or half made; loading never takes
    // it for a segment and removes it.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), spare_config());
    let mut expected = Vec::new();
    append_times(&mut log, &batch(3, 100, 5), 4, &mut expected);
    drop(log);
    std::fs::write(dir.path().join(SPARE_FILE_NAME), vec![0u8; 4096]).expect("spare");
    let log = open_log(dir.path(), spare_config());
    assert!(!dir.path().join(SPARE_FILE_NAME).exists());
    assert_eq!(log.segment_count(), 1);
    assert_eq!(read_all(&log), expected);
}

#[test]
fn logs_with_small_segments_never_make_a_spare() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    for i in 0..200 {
        log.append(&batch(2, 200, i), 1, 0).expect("append");
        assert_eq!(log.spare_ready(), None);
    }
    assert!(log.segment_count() > 5, "segments rolled");
    assert!(!dir.path().join(SPARE_FILE_NAME).exists());
}
