//! Append, read, roll, timestamps, truncation and the epoch cache of one log.

use std::os::unix::fs::MetadataExt;

use super::*;
use crate::storage::mapping::Map;
use crate::storage::segment::segment_file_name;
use crate::storage::StorageError;

#[test]
fn append_assigns_dense_offsets_and_reads_back_the_same_batches() {
    // Proves offsets are assigned densely across batches and reads return the stored bytes.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    let mut expected = Vec::new();
    for i in 0..50 {
        let records = batch(1 + i % 4, 120, 1000 + i as i64);
        let info = log.append(&records, 7, 1000).expect("append");
        assert_eq!(info.base_offset, expected_offset(&expected));
        assert_eq!(info.last_offset, info.base_offset + (i % 4) as i64);
        expected.push(stored(&records, info.base_offset, 7));
    }
    assert_eq!(log.log_end_offset(), expected_offset(&expected));
    assert_eq!(read_all(&log), expected);
    assert!(log.segment_count() > 1, "small segments rolled");
}

#[test]
fn a_record_set_of_many_batches_is_stored_with_each_header_assigned() {
    // Proves an append of more batches than one pwritev round carries stores every batch with its own offset and epoch.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        ..small_config()
    };
    let mut log = open_log(dir.path(), config.clone());
    log.append(&batch(2, 10, 1), 3, 0).expect("append");
    let batches: Vec<Bytes> = (0..40)
        .map(|i| batch(1 + i % 3, 50 + i, 1000 + i as i64))
        .collect();
    let records: Vec<u8> = batches.iter().flat_map(|b| b.iter().copied()).collect();
    let info = log.append(&records, 9, 0).expect("append");
    assert_eq!(info.base_offset, 2);
    let mut expected = vec![stored(&batch(2, 10, 1), 0, 3)];
    for one in &batches {
        let offset = expected_offset(&expected);
        expected.push(stored(one, offset, 9));
    }
    assert_eq!(info.last_offset + 1, expected_offset(&expected));
    assert_eq!(read_all(&log), expected);
    // An unclean reopen validates every stored batch (CRC, continuing offsets).
    drop(log);
    let (log, report) = PartitionLog::open(
        dir.path(),
        config,
        FileLayer::real(),
        MappingBudget::new(8),
        OpenOptions::default(),
    )
    .expect("reopen");
    assert_eq!(report.bytes_truncated, 0);
    assert_eq!(read_all(&log), expected);
}

#[test]
fn only_the_active_segment_keeps_a_write_descriptor_and_truncation_reopens_it() {
    // Proves sealed segments close their descriptor, and appends after a truncation that replaced the file land in the new file.
    let dir = tempfile::tempdir().expect("tempdir");
    let files = FileLayer::real();
    let mut log = PartitionLog::open(
        dir.path(),
        small_config(),
        files.clone(),
        MappingBudget::new(8),
        OpenOptions::default(),
    )
    .expect("open")
    .0;
    let records = batch(2, 300, 1);
    let mut expected = Vec::new();
    for _ in 0..40 {
        let info = log.append(&records, 1, 0).expect("append");
        expected.push(stored(&records, info.base_offset, 1));
    }
    assert!(log.segment_count() > 1);
    assert_eq!(
        files.writers_open(),
        1,
        "one descriptor: the active segment's"
    );
    let active_base = *log.segment_base_offsets().last().expect("segments");
    let in_active = expected
        .iter()
        .filter(|b| BatchHeader::new(b).expect("header").base_offset() >= active_base)
        .count();
    assert!(
        in_active >= 2,
        "the active segment holds a batch to keep and one to cut"
    );
    // A reader's mapping makes truncation replace the file rather than shrink it.
    let active_path = dir.path().join(segment_file_name(active_base, "log"));
    let inode_before = std::fs::metadata(&active_path).expect("stat").ino();
    let held = log
        .read(active_base, 1 << 20, i64::MAX, true)
        .expect("read");
    log.truncate_to(active_base + 2).expect("truncate");
    let inode_after = std::fs::metadata(&active_path).expect("stat").ino();
    assert_ne!(inode_before, inode_after, "the file was replaced");
    expected.truncate(expected.len() - in_active + 1);
    for _ in 0..5 {
        let info = log.append(&records, 2, 0).expect("append");
        expected.push(stored(&records, info.base_offset, 2));
    }
    assert_eq!(read_all(&log), expected);
    drop(held);
    drop(log);
    assert_eq!(files.writers_open(), 0, "a closed log holds no descriptor");
    let log = open_log(dir.path(), small_config());
    assert_eq!(read_all(&log), expected, "the appends reached the new file");
}

#[test]
fn appended_pages_are_handed_to_writeback_whole_in_order_and_after_a_cut_again() {
    // Proves the active segment hands what it appended to writeback in
    // page-aligned ranges that follow each other from the start of the file,
    // each once `writeback_after_bytes` have accumulated, never the partial
    // last page; and that after a truncation the pages rewritten past the cut
    // are handed over again.
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = crate::storage::FaultInjector::new();
    let every = 64 * 1024;
    let config = LogConfig {
        segment_bytes_max: 16 << 20,
        preallocate_step_bytes: 1 << 20,
        writeback_after_bytes: every,
        ..small_config()
    };
    let mut log = PartitionLog::open(
        dir.path(),
        config.clone(),
        FileLayer::with_faults(std::sync::Arc::clone(&faults)),
        MappingBudget::new(8),
        OpenOptions::default(),
    )
    .expect("open")
    .0;
    let path = dir.path().join(segment_file_name(0, "log"));
    let records = batch(3, 1000, 1);
    let mut data_len = 0u64;
    let mut offsets = Vec::new();
    for _ in 0..200 {
        offsets.push(log.append(&records, 1, 0).expect("append").base_offset);
        data_len += records.len() as u64;
    }
    let ranges = faults.writebacks_of(&path);
    let mut expected_start = 0;
    for &(offset, len) in &ranges {
        assert_eq!(
            offset, expected_start,
            "ranges follow each other: {ranges:?}"
        );
        assert_eq!(offset % 4096, 0, "page aligned: {ranges:?}");
        assert_eq!((offset + len) % 4096, 0, "whole pages: {ranges:?}");
        assert!(len >= every, "at least writeback_after_bytes: {ranges:?}");
        expected_start = offset + len;
    }
    assert!(
        expected_start <= data_len / 4096 * 4096,
        "never the partial last page"
    );
    assert!(
        expected_start + every + 4096 > data_len,
        "everything but the last {every} bytes was handed over: {expected_start} of {data_len}"
    );

    // Cut back to the middle: the pages appended from there on are handed over again.
    let cut = offsets[100];
    log.truncate_to(cut).expect("truncate");
    let handed_before = faults.writebacks_of(&path).len();
    for _ in 0..100 {
        log.append(&records, 2, 0).expect("append");
    }
    let after_cut = &faults.writebacks_of(&path)[handed_before..];
    let cut_position = 100 * records.len() as u64;
    let (first, _) = after_cut.first().copied().expect("writeback after the cut");
    assert_eq!(
        first,
        cut_position / 4096 * 4096,
        "restarts at the cut's page: {after_cut:?}"
    );
    drop(log);

    // With writeback_after_bytes 0, nothing is handed over.
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = crate::storage::FaultInjector::new();
    let mut log = PartitionLog::open(
        dir.path(),
        LogConfig {
            writeback_after_bytes: 0,
            ..config
        },
        FileLayer::with_faults(std::sync::Arc::clone(&faults)),
        MappingBudget::new(8),
        OpenOptions::default(),
    )
    .expect("open")
    .0;
    for _ in 0..200 {
        log.append(&records, 1, 0).expect("append");
    }
    let path = dir.path().join(segment_file_name(0, "log"));
    assert!(faults.writebacks_of(&path).is_empty());
}

fn expected_offset(batches: &[Vec<u8>]) -> i64 {
    batches.last().map_or(0, |b| {
        BatchHeader::new(b).expect("header").last_offset() + 1
    })
}

#[test]
fn read_starts_at_the_batch_containing_the_offset_and_honours_limits() {
    // Proves Kafka read semantics: containing batch first, whole batches, max_bytes, min_one_batch, max_offset.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    let records = batch(5, 100, 1);
    for _ in 0..4 {
        log.append(&records, 0, 0).expect("append");
    }
    let size = records.len();
    // Offset 7 lies in the second batch (offsets 5..=9).
    let info = log.read(7, size * 2, i64::MAX, false).expect("read");
    assert_eq!(info.records.len(), size * 2);
    assert_eq!(BatchHeader::new(&info.records).unwrap().base_offset(), 5);
    // A limit below one batch returns nothing, unless min_one_batch.
    assert!(log
        .read(0, size - 1, i64::MAX, false)
        .unwrap()
        .records
        .is_empty());
    assert_eq!(
        log.read(0, size - 1, i64::MAX, true).unwrap().records.len(),
        size
    );
    // max_offset excludes batches that reach it.
    assert_eq!(
        log.read(0, 1 << 20, 10, true).unwrap().records.len(),
        size * 2
    );
    assert!(log.read(0, 1 << 20, 3, true).unwrap().records.is_empty());
    // At the log end: empty; past it or below the start: out of range.
    let end = log.read(20, 1 << 20, i64::MAX, true).expect("read at end");
    assert!(end.records.is_empty());
    assert_eq!(end.log_end_offset, 20);
    assert!(matches!(
        log.read(21, 10, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { requested: 21, .. })
    ));
    assert!(matches!(
        log.read(-1, 10, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn a_read_never_spans_two_segments() {
    // Proves each read returns batches from one segment only.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    let records = batch(1, 1000, 1);
    for _ in 0..40 {
        log.append(&records, 0, 0).expect("append");
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 3);
    let info = log.read(0, 1 << 30, i64::MAX, true).expect("read");
    let batches = split_batches(&info.records);
    assert_eq!(
        batches.len() as i64,
        bases[1],
        "stops at the first segment's end"
    );
}

#[test]
fn segments_roll_by_size_and_are_named_by_zero_padded_base_offset() {
    // Proves size-based rolling and the 20-digit file names, with sealed files trimmed by the next flush.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    let records = batch(2, 500, 1);
    for _ in 0..60 {
        log.append(&records, 0, 0).expect("append");
    }
    // The interval flush trims the sealed segments.
    let mut job = log.begin_flush_if_due(i64::MAX).expect("due");
    let result = job.run();
    log.complete_flush(job, result).expect("flush");
    let bases = log.segment_base_offsets();
    assert!(bases.len() > 2);
    for (i, base) in bases.iter().enumerate() {
        let name = segment_file_name(*base, "log");
        assert_eq!(name.len(), 24);
        let path = dir.path().join(&name);
        let len = std::fs::metadata(&path).expect("segment file").len();
        assert!(len <= 16 * 1024, "segment within segment_bytes_max");
        if i + 1 < bases.len() {
            assert_eq!(
                len % records.len() as u64,
                0,
                "sealed segment trimmed to its data"
            );
            assert!(dir.path().join(segment_file_name(*base, "index")).exists());
            assert!(dir
                .path()
                .join(segment_file_name(*base, "timeindex"))
                .exists());
        }
    }
}

#[test]
fn segment_rolls_by_age_from_its_first_append() {
    // Proves segment_ms_max rolls the active segment once its first append is old enough.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_ms_max: 1000,
        ..small_config()
    };
    let mut log = open_log(dir.path(), config);
    let records = batch(1, 10, 1);
    log.append(&records, 0, 10_000).expect("append");
    log.append(&records, 0, 10_900).expect("append");
    assert_eq!(log.segment_count(), 1);
    log.append(&records, 0, 11_001).expect("append");
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
}

#[test]
fn timestamps_find_the_first_batch_at_or_after_the_target() {
    // Proves offset_for_timestamp and max_timestamp_and_offset at batch granularity, across segments.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    for i in 0..100i64 {
        // Timestamps rise by 10 per batch, with one outlier.
        let timestamp = if i == 42 { 100_000 } else { 1000 + i * 10 };
        log.append(&batch(2, 200, timestamp), 0, 0).expect("append");
    }
    assert!(log.segment_count() > 3);
    assert_eq!(log.offset_for_timestamp(0), Some((0, 1000)));
    assert_eq!(log.offset_for_timestamp(1000), Some((0, 1000)));
    assert_eq!(log.offset_for_timestamp(1001), Some((2, 1010)));
    assert_eq!(log.offset_for_timestamp(1425), Some((84, 100_000)));
    assert_eq!(log.offset_for_timestamp(1435), Some((84, 100_000)));
    assert_eq!(log.offset_for_timestamp(100_001), None);
    assert_eq!(log.max_timestamp_and_offset(), Some((100_000, 84)));
    // The same answers after a clean reopen, from the indexes on disk.
    log.close().expect("close");
    drop(log);
    let log = PartitionLog::open(
        dir.path(),
        small_config(),
        FileLayer::real(),
        MappingBudget::new(8),
        OpenOptions {
            clean_shutdown: true,
            ..OpenOptions::default()
        },
    )
    .expect("reopen")
    .0;
    assert_eq!(log.offset_for_timestamp(1001), Some((2, 1010)));
    assert_eq!(log.offset_for_timestamp(1440), Some((84, 100_000)));
    assert_eq!(log.offset_for_timestamp(1500), Some((84, 100_000)));
    assert_eq!(log.offset_for_timestamp(1500 + 1), Some((84, 100_000)));
    assert_eq!(log.max_timestamp_and_offset(), Some((100_000, 84)));
}

#[test]
fn a_timestamp_inside_a_batch_finds_the_first_record_at_or_after_it() {
    // Kafka's answer: two records stamped 1234 and 999999999999 in one batch;
    // a query for the second gets offset 1, not the batch's base offset.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    let mut builder = protocol::batch::BatchBuilder::new();
    for timestamp in [1234, 999_999_999_999] {
        builder.push(&protocol::batch::Record {
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Vec::new(),
            timestamp,
        });
    }
    log.append(&builder.build(), 0, 0).expect("append");
    assert_eq!(log.offset_for_timestamp(1234), Some((0, 1234)));
    assert_eq!(log.offset_for_timestamp(1235), Some((1, 999_999_999_999)));
    assert_eq!(
        log.offset_for_timestamp(999_999_999_999),
        Some((1, 999_999_999_999))
    );
}

#[test]
fn truncate_to_drops_the_suffix_and_later_epochs() {
    // Proves truncate_to removes the batch containing the offset and everything after, across segments.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    let records = batch(3, 300, 5);
    let mut expected = Vec::new();
    for i in 0..60 {
        let epoch = if i < 30 { 1 } else { 2 };
        let info = log.append(&records, epoch, 0).expect("append");
        expected.push(stored(&records, info.base_offset, epoch));
    }
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 90)]);
    let segments_before = log.segment_count();
    log.truncate_to(64).expect("truncate");
    // Offset 64 is inside the batch at 63, which goes as well.
    assert_eq!(log.log_end_offset(), 63);
    assert!(log.segment_count() < segments_before);
    assert_eq!(log.epoch_entries(), vec![(1, 0)]);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 63)));
    expected.truncate(21);
    assert_eq!(read_all(&log), expected);
    // The log goes on from the cut.
    let info = log.append(&records, 3, 0).expect("append");
    assert_eq!(info.base_offset, 63);
    expected.push(stored(&records, 63, 3));
    assert_eq!(read_all(&log), expected);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 63)));
    assert_eq!(log.end_offset_for_epoch(2), Some((1, 63)));
    // Truncating to zero empties the log.
    log.truncate_to(0).expect("truncate");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert!(log.epoch_entries().is_empty());
}

#[test]
fn follower_appends_keep_offsets_and_reject_gaps() {
    // Proves append_as_follower stores batches as fetched and refuses ones that do not continue the log.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    let first = stored(&batch(4, 10, 1), 0, 5);
    let second = stored(&batch(2, 10, 1), 4, 6);
    let mut both = first.clone();
    both.extend_from_slice(&second);
    let info = log.append_as_follower(&both).expect("append");
    assert_eq!((info.base_offset, info.last_offset), (0, 5));
    assert_eq!(read_all(&log), vec![first, second]);
    assert_eq!(log.epoch_entries(), vec![(5, 0), (6, 4)]);
    let gap = stored(&batch(1, 10, 1), 7, 6);
    assert!(matches!(
        log.append_as_follower(&gap),
        Err(StorageError::NonContiguousOffsets {
            base_offset: 7,
            log_end_offset: 6
        })
    ));
    assert!(
        !log.is_offline(),
        "a bad input batch does not take the partition offline"
    );
}

#[test]
fn malformed_input_is_rejected_without_touching_the_log() {
    // Proves a record set with a bad length or trailing bytes is refused as CorruptBatch.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    let mut records = batch(1, 10, 1).to_vec();
    records.push(0);
    assert!(matches!(
        log.append(&records, 0, 0),
        Err(StorageError::CorruptBatch(_))
    ));
    assert!(matches!(
        log.append(&[], 0, 0),
        Err(StorageError::CorruptBatch(_))
    ));
    let mut short = batch(1, 10, 1).to_vec();
    short[8..12].copy_from_slice(&10i32.to_be_bytes());
    assert!(matches!(
        log.append(&short, 0, 0),
        Err(StorageError::CorruptBatch(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn flush_policies_move_the_recovery_point_as_promised() {
    // Proves EveryBatch flushes each append, OnRoll only at rolls, IntervalMs when due.
    let records = batch(1, 3000, 1);
    for policy in [
        FlushPolicy::EveryBatch,
        FlushPolicy::OnRoll,
        FlushPolicy::IntervalMs(100),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            flush_policy: policy,
            ..small_config()
        };
        let mut log = open_log(dir.path(), config);
        log.append(&records, 0, 1000).expect("append");
        match policy {
            FlushPolicy::EveryBatch => assert_eq!(log.recovery_point(), 1),
            FlushPolicy::OnRoll | FlushPolicy::IntervalMs(_) => assert_eq!(log.recovery_point(), 0),
        }
        assert!(!log.flush_if_due(1050).expect("flush_if_due"));
        let due = log.flush_if_due(1100).expect("flush_if_due");
        assert_eq!(due, policy == FlushPolicy::IntervalMs(100));
        for _ in 0..10 {
            log.append(&records, 0, 2000).expect("append");
        }
        assert!(log.segment_count() > 1);
        match policy {
            FlushPolicy::EveryBatch => assert_eq!(log.recovery_point(), log.log_end_offset()),
            FlushPolicy::OnRoll => {
                let active_base = *log.segment_base_offsets().last().unwrap();
                assert!(log.recovery_point() >= active_base - 1);
                assert!(log.recovery_point() < log.log_end_offset());
            }
            FlushPolicy::IntervalMs(_) => assert_eq!(log.recovery_point(), 1),
        }
        log.flush().expect("flush");
        assert_eq!(log.recovery_point(), log.log_end_offset());
    }
}

#[test]
fn interval_flush_outside_the_lock_covers_only_what_was_appended_before_it_began() {
    // Appends between begin and complete are allowed and stay beyond the recovery point until the next flush.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        flush_policy: FlushPolicy::IntervalMs(100),
        ..small_config()
    };
    let mut log = open_log(dir.path(), config);
    let records = batch(2, 200, 1);
    log.append(&records, 0, 1000).expect("append");
    assert!(log.begin_flush_if_due(1050).is_none(), "not due yet");
    let mut job = log.begin_flush_if_due(1100).expect("due");
    // The partition lock would be released here; an append lands meanwhile.
    log.append(&records, 0, 1101)
        .expect("append during the fsync");
    let result = job.run();
    log.complete_flush(job, result).expect("flush");
    assert_eq!(
        log.recovery_point(),
        2,
        "only what was appended before the flush began"
    );
    let mut job = log
        .begin_flush_if_due(1201)
        .expect("the later append is due");
    let result = job.run();
    log.complete_flush(job, result).expect("flush");
    assert_eq!(log.recovery_point(), 4);
    // A truncation while an fsync runs leaves the recovery point to the next flush.
    log.append(&records, 0, 1300).expect("append");
    let mut job = log.begin_flush_if_due(1400).expect("due");
    log.truncate_to(4).expect("truncate");
    log.append(&records, 0, 1401).expect("append new data");
    let result = job.run();
    log.complete_flush(job, result).expect("flush");
    assert_eq!(log.recovery_point(), 4);
}

#[test]
fn retention_deletes_whole_sealed_segments_by_size_and_by_age() {
    // Proves size and time retention delete the oldest sealed segments and advance the log start.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    let records_per_batch = 2;
    for i in 0..80i64 {
        log.append(&batch(records_per_batch, 500, i * 1000), 0, 0)
            .expect("append");
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 5);
    let size_before = log.size_bytes();
    log.set_config(LogConfig {
        retention_bytes: Some(size_before / 2),
        ..small_config()
    })
    .expect("config");
    let deleted = log.apply_retention(0).expect("retention");
    assert!(deleted > 0);
    assert!(log.size_bytes() >= size_before / 2);
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    assert!(matches!(
        log.read(0, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // By age: everything older than 10 s before "now" = 80 s goes, except the active segment.
    log.set_config(LogConfig {
        retention_ms: Some(10_000),
        ..small_config()
    })
    .expect("config");
    log.apply_retention(80_000).expect("retention");
    let start = log.log_start_offset();
    let first_kept = log.read(start, 100, i64::MAX, true).expect("read");
    let header = BatchHeader::new(&first_kept.records).expect("header");
    assert!(
        80_000 - 10_000 - header.max_timestamp() <= 16 * 1000,
        "only old segments went"
    );
    // A wholly expired log is rolled and emptied, its start at its end.
    log.apply_retention(10_000_000).expect("retention");
    assert_eq!(log.log_start_offset(), log.log_end_offset());
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), 160);
}

/// The names of the files in `dir` that end with `.deleted`.
fn deleted_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".deleted"))
        .collect();
    names.sort();
    names
}

#[test]
fn retention_unlinks_a_segment_only_when_its_doomed_files_drop() {
    // Proves the slow unlink of an expired segment waits for the caller to
    // drop what take_doomed returns (after the log's lock), that the log has
    // let go of the files at once, and that recovery removes the renamed
    // files a crash left behind.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    for i in 0..40i64 {
        log.append(&batch(2, 500, i * 1000), 0, 0).expect("append");
    }
    let first = log.segment_base_offsets()[0];
    log.set_config(LogConfig {
        retention_ms: Some(10_000),
        ..small_config()
    })
    .expect("config");
    let deleted = log.apply_retention(30_000).expect("retention");
    assert!(deleted > 0);
    assert!(log.segment_base_offsets()[0] > first);
    let first_log = segment_file_name(first, "log");
    assert!(
        !dir.path().join(&first_log).exists(),
        "the log let go of the file"
    );
    let renamed = deleted_files(dir.path());
    assert!(
        renamed.contains(&format!("{first_log}.deleted")),
        "{renamed:?}"
    );
    assert_eq!(renamed.len(), 3 * deleted, "log, index and time index each");
    // Appends go on while the doomed files wait.
    log.append(&batch(2, 500, 40_000), 0, 0).expect("append");
    drop(log.take_doomed());
    assert_eq!(deleted_files(dir.path()), Vec::<String>::new());

    // A crash between the rename and the unlink: recovery removes the files.
    log.apply_retention(10_000_000).expect("retention");
    std::mem::forget(log.take_doomed());
    assert!(!deleted_files(dir.path()).is_empty());
    let end = log.log_end_offset();
    drop(log);
    let log = open_log(dir.path(), small_config());
    assert_eq!(deleted_files(dir.path()), Vec::<String>::new());
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn set_log_start_offset_hides_older_batches() {
    // Proves DeleteRecords semantics: reads below the new start are out of range; whole segments below it go.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    for _ in 0..60 {
        log.append(&batch(2, 500, 1), 0, 0).expect("append");
    }
    let bases = log.segment_base_offsets();
    let target = bases[2] + 3;
    log.set_log_start_offset(target).expect("set start");
    assert_eq!(log.log_start_offset(), target);
    assert_eq!(log.segment_base_offsets()[0], bases[2]);
    assert!(log.read(target - 1, 100, i64::MAX, true).is_err());
    let info = log.read(target, 100, i64::MAX, true).expect("read");
    assert_eq!(
        BatchHeader::new(&info.records).unwrap().base_offset(),
        target - 1,
        "the batch containing the start offset"
    );
    assert!(log.set_log_start_offset(10_000).is_err());
}

#[test]
fn truncate_fully_restarts_an_empty_log_past_its_end() {
    // Proves a log can restart empty at an offset past its end (a replica
    // installing a newer snapshot), and that the restart survives a reopen.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), small_config());
    let records = batch(3, 300, 5);
    for _ in 0..30 {
        log.append(&records, 1, 0).expect("append");
    }
    assert!(log.segment_count() > 1);
    log.truncate_fully_and_start_at(500)
        .expect("truncate fully");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
    assert_eq!(log.segment_count(), 1);
    assert!(log.epoch_entries().is_empty());
    assert!(read_all(&log).is_empty());
    let info = log.append(&records, 2, 0).expect("append");
    assert_eq!(info.base_offset, 500);
    log.flush().expect("flush");
    let expected = vec![stored(&records, 500, 2)];
    assert_eq!(read_all(&log), expected);
    drop(log);
    let log = open_log(dir.path(), small_config());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 503));
    assert_eq!(read_all(&log), expected);
    assert_eq!(log.epoch_entries(), vec![(2, 500)]);
}

#[test]
fn reading_the_active_segment_from_disk_never_caches_the_room_past_its_data() {
    // Proves a read that faults pages of the active segment in from disk reads the data only: read-ahead never fills the allocated room past the data with zeros (which appends would then overwrite).
    const STEP: u64 = 8 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes_max: 64 << 20,
        preallocate_step_bytes: STEP,
        ..small_config()
    };
    let mut log = open_log(dir.path(), config);
    let records = batch(16, 1000, 1);
    let mut data_bytes = 0;
    while data_bytes < 1 << 20 {
        log.append(&records, 1, 0).expect("append");
        data_bytes += records.len();
    }
    log.flush().expect("flush");
    let path = dir.path().join(segment_file_name(0, "log"));
    let file_bytes = std::fs::metadata(&path).expect("stat").len();
    assert!(
        file_bytes >= data_bytes as u64 + STEP / 2,
        "the segment has room allocated past its data ({file_bytes} bytes for {data_bytes})"
    );
    // Drop the written pages from the page cache, as memory pressure does.
    let file = std::fs::File::open(&path).expect("open");
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
    let probe = Map::open(&FileLayer::real(), &path, file_bytes, false).expect("map");
    assert_eq!(
        probe.resident_pages(0, data_bytes).expect("mincore"),
        0,
        "the data left the page cache"
    );

    let read = log.read(0, 2 << 20, i64::MAX, true).expect("read");
    assert_eq!(
        read.records.len(),
        data_bytes,
        "one read takes all the data"
    );
    let checksum = read.records.iter().fold(0u8, |sum, &b| sum.wrapping_add(b));
    std::hint::black_box(checksum);

    let data_pages = data_bytes.div_ceil(4096);
    assert_eq!(
        probe.resident_pages(0, data_bytes).expect("mincore"),
        data_pages,
        "the read brought the data back"
    );
    let room_start = data_pages * 4096;
    assert_eq!(
        probe
            .resident_pages(room_start, file_bytes as usize)
            .expect("mincore"),
        0,
        "no page past the data was read"
    );
}
