//! Log compaction through the public API: the latest value of each key
//! survives at its offset, tombstones go after `delete.retention.ms`, reads
//! step over the gaps, the cleaner's bounds and triggers hold, and the log
//! survives restarts, followers and interference while it is cleaned.

use std::collections::BTreeMap;

use bytes::Bytes;
use protocol::batch::{decode_records, BatchBuilder, BatchHeader, DecodedRecord, Record};

use super::*;
use crate::storage::cleaner::{clean_log, LockedLog};
use crate::storage::log::OFFSETS_MAY_SKIP_FILE;
use crate::storage::manager::CLEANER_OFFSET_CHECKPOINT_FILE;
use crate::storage::offset_map::OFFSET_MAP_SLOT_BYTES;
use crate::storage::segment::segment_file_name;
use crate::storage::{
    CleanOutcome, CleanStats, CleanerConfig, CleanupPolicy, LogManager, StorageError,
    TopicPartition,
};

/// `delete.retention.ms` in these tests.
pub(super) const TOMBSTONE_RETENTION_MS: u64 = 10_000;
/// Cleanings a test runs at most while waiting for a log to be fully clean.
const CLEANINGS_MAX: usize = 500;

/// A compacted log's config: small segments, and any dirt is enough to clean.
pub(super) fn compact_config() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::COMPACT,
        delete_retention_ms: TOMBSTONE_RETENTION_MS,
        min_cleanable_dirty_ratio: 0.0,
        ..small_config()
    }
}

/// One uncompressed batch of keyed records (`None` values are tombstones).
pub(super) fn keyed_batch(records: &[(String, Option<String>)], timestamp: i64) -> Bytes {
    let mut builder = BatchBuilder::new();
    for (key, value) in records {
        builder.push(&Record {
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: value
                .as_deref()
                .map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Vec::new(),
            timestamp,
        });
    }
    builder.build()
}

fn records(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

/// Everything ever appended, by offset: the oracle of the compaction tests.
#[derive(Clone, Debug, Default)]
pub(super) struct Written {
    pub(super) records: BTreeMap<i64, (String, Option<String>)>,
}

impl Written {
    pub(super) fn append(
        &mut self,
        log: &mut PartitionLog,
        batch: &[(String, Option<String>)],
        now_ms: i64,
    ) -> i64 {
        let info = log
            .append(&keyed_batch(batch, now_ms), 0, now_ms)
            .expect("append");
        for (i, record) in batch.iter().enumerate() {
            self.records
                .insert(info.base_offset + i as i64, record.clone());
        }
        info.base_offset
    }

    /// Forgets what a truncation removed.
    pub(super) fn truncate(&mut self, log_end_offset: i64) {
        self.records.retain(|&offset, _| offset < log_end_offset);
    }

    /// The latest offset and value of each key among offsets below `end`.
    fn latest_below(&self, end: i64) -> BTreeMap<&str, (i64, Option<&str>)> {
        let mut latest = BTreeMap::new();
        for (&offset, (key, value)) in self.records.range(..end) {
            latest.insert(key.as_str(), (offset, value.as_deref()));
        }
        latest
    }
}

/// Every record the log serves, read from the log start batch by batch, each
/// batch validated. A read below the log end may come back empty only when
/// the cleaner removed everything from there to the (empty) active segment.
pub(super) fn stored_records(log: &PartitionLog) -> Vec<DecodedRecord> {
    let mut records = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, 64 * 1024, i64::MAX, true).expect("read");
        if read.records.is_empty() {
            let data_after = log
                .segments
                .values()
                .any(|segment| segment.next_offset() > offset && !segment.is_empty());
            assert!(!data_after, "a read at {offset} skipped data");
            break;
        }
        for batch in split_batches(&read.records) {
            let header = BatchHeader::new(&batch).expect("header");
            header.validate().expect("stored batch is valid");
            assert!(
                header.last_offset() >= offset,
                "a read starts at or after its offset"
            );
            offset = header.last_offset() + 1;
            records.extend(decode_records(&Bytes::from(batch)).expect("decodable batch"));
        }
    }
    records
}

/// Offsets from which `check_reads_at_every_offset` reads every offset; in
/// longer logs it reads every seventh.
const EVERY_OFFSET_READ_MAX: i64 = 400;

/// A read at any offset returns the first stored batch that ends at or after
/// it (through the rebuilt indexes of cleaned segments, and across gaps).
fn check_reads_at_every_offset(log: &PartitionLog) {
    let bounds: Vec<(i64, i64)> = {
        let mut bounds = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let read = log.read(offset, 64 * 1024, i64::MAX, true).expect("read");
            if read.records.is_empty() {
                break;
            }
            for batch in split_batches(&read.records) {
                let header = BatchHeader::new(&batch).expect("header");
                bounds.push((header.base_offset(), header.last_offset()));
                offset = header.last_offset() + 1;
            }
        }
        bounds
    };
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let step = if end - start <= EVERY_OFFSET_READ_MAX {
        1
    } else {
        7
    };
    for offset in (start..end).step_by(step) {
        let read = log.read(offset, 1, i64::MAX, true).expect("read");
        let expected = bounds.iter().find(|(_, last)| *last >= offset);
        match expected {
            None => assert!(read.records.is_empty(), "nothing at or after {offset}"),
            Some(&(base, _)) => {
                let header = BatchHeader::new(&read.records).expect("a batch");
                assert_eq!(header.base_offset(), base, "read at {offset}");
            }
        }
    }
}

/// What compaction promises, checked against everything appended:
/// - offsets strictly increase, and each stored record is the one appended there;
/// - the latest record of every key is stored at its offset, except a
///   tombstone, which may be gone, but then so is every record of its key;
/// - below the cleaner offset, a key appears at most once: its latest record there.
pub(super) fn check_compacted(log: &PartitionLog, written: &Written) -> Vec<DecodedRecord> {
    let stored = stored_records(log);
    check_reads_at_every_offset(log);
    let mut previous = -1;
    let mut stored_keys: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for record in &stored {
        assert!(record.offset > previous, "offsets strictly increase");
        previous = record.offset;
        let (key, value) = written
            .records
            .get(&record.offset)
            .unwrap_or_else(|| panic!("offset {} was never written", record.offset));
        assert_eq!(
            record.key.as_deref(),
            Some(key.as_bytes()),
            "key at {}",
            record.offset
        );
        assert_eq!(
            record.value.as_deref(),
            value.as_deref().map(str::as_bytes),
            "value at {}",
            record.offset
        );
        stored_keys
            .entry(key.clone())
            .or_default()
            .push(record.offset);
    }
    let log_start = log.log_start_offset();
    for (key, (offset, value)) in written.latest_below(i64::MAX) {
        if offset < log_start {
            continue;
        }
        let offsets = stored_keys.get(key).cloned().unwrap_or_default();
        match value {
            Some(_) => assert!(
                offsets.contains(&offset),
                "the latest value of {key} at {offset} survives (stored at {offsets:?})"
            ),
            None => assert!(
                offsets.is_empty() || offsets.contains(&offset),
                "a removed tombstone of {key} leaves no older record ({offsets:?})"
            ),
        }
    }
    let clean_end = log.cleaner_offset().unwrap_or(log_start);
    let latest_clean = written.latest_below(clean_end);
    for (key, offsets) in &stored_keys {
        let below: Vec<i64> = offsets.iter().copied().filter(|&o| o < clean_end).collect();
        assert!(
            below.len() <= 1,
            "{key} appears once below {clean_end}: {below:?}"
        );
        if let Some(&offset) = below.first() {
            assert_eq!(
                latest_clean.get(key.as_str()).map(|l| l.0),
                Some(offset),
                "{key} below {clean_end} is its latest record there"
            );
        }
    }
    stored
}

fn cleaned(outcome: CleanOutcome) -> CleanStats {
    match outcome {
        CleanOutcome::Cleaned(stats) => stats,
        other => panic!("expected a cleaning, got {other:?}"),
    }
}

/// Appends `rounds` batches updating keys `k0..k{keys}`, rolling every few.
fn churn(log: &mut PartitionLog, written: &mut Written, rounds: usize, keys: usize, now_ms: i64) {
    for round in 0..rounds {
        let batch: Vec<(String, Option<String>)> = (0..4)
            .map(|i| {
                let key = format!("k{}", (round * 4 + i) % keys);
                (key, Some(format!("v{now_ms}.{round}.{i}")))
            })
            .collect();
        written.append(log, &batch, now_ms);
        if round % 5 == 4 {
            log.roll(now_ms).expect("roll");
        }
    }
}

#[test]
fn compaction_keeps_only_the_latest_value_of_each_key_at_its_original_offset() {
    // Proves a cleaning keeps each key's latest value at its offset, removes older ones, and keeps the log start and active segment.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), compact_config());
    let mut written = Written::default();
    churn(&mut log, &mut written, 40, 10, 1);
    log.roll(2).expect("roll");
    written.append(&mut log, &records(&[("tail", Some("t"))]), 3);
    let active_before = log
        .read(log.log_end_offset() - 1, 1 << 20, i64::MAX, true)
        .unwrap();
    let (segments_before, bytes_before) = (log.segment_count(), log.size_bytes());
    let stats = cleaned(log.clean(100, &CleanerConfig::default()).expect("clean"));
    assert_eq!(stats.first_dirty_offset, 0);
    assert_eq!(
        stats.cleaned_up_to,
        log.log_end_offset() - 1,
        "everything sealed is clean"
    );
    assert_eq!(stats.keys, 10);
    assert_eq!(stats.records_removed, 150);
    let stored = check_compacted(&log, &written);
    assert_eq!(stored.len(), 11, "ten keys and the active segment's record");
    assert_eq!(log.log_start_offset(), 0);
    assert!(
        log.segment_count() < segments_before,
        "cleaned segments were merged"
    );
    assert!(log.size_bytes() < bytes_before / 4);
    let active_after = log
        .read(log.log_end_offset() - 1, 1 << 20, i64::MAX, true)
        .unwrap();
    assert_eq!(
        active_after.records, active_before.records,
        "the active segment is never cleaned"
    );
    assert!(log.offsets_may_skip());
    assert!(dir.path().join(OFFSETS_MAY_SKIP_FILE).exists());
    // Nothing is dirty any more.
    assert_eq!(
        log.clean(101, &CleanerConfig::default()).unwrap(),
        CleanOutcome::NotDue
    );
}

#[test]
fn a_read_inside_a_removed_gap_returns_the_next_surviving_batch() {
    // Proves a fetch at an offset the cleaner removed (inside a segment, or in emptied segments) returns the next batch.
    let dir = tempfile::tempdir().expect("tempdir");
    // One batch per segment, and too big to merge two segments.
    let config = LogConfig {
        segment_bytes_max: 250,
        ..compact_config()
    };
    let mut log = open_log(dir.path(), config);
    let mut written = Written::default();
    let value = "x".repeat(120);
    for key in ["a", "x", "a", "x", "b"] {
        written.append(&mut log, &records(&[(key, Some(&value))]), 1);
    }
    assert_eq!(log.segment_count(), 5);
    cleaned(log.clean(10, &CleanerConfig::default()).expect("clean"));
    check_compacted(&log, &written);
    let first = |log: &PartitionLog, offset: i64| {
        let read = log.read(offset, 1 << 20, i64::MAX, true).expect("read");
        BatchHeader::new(&read.records)
            .expect("a batch")
            .base_offset()
    };
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(first(&log, 0), 2, "offsets 0 and 1 were cleaned away");
    assert_eq!(first(&log, 1), 2);
    assert_eq!(first(&log, 2), 2);
    assert_eq!(first(&log, 3), 3);
    // A second cleaning merges the emptied segments into the next one.
    written.append(&mut log, &records(&[("b", Some("again"))]), 2);
    cleaned(log.clean(20, &CleanerConfig::default()).expect("clean"));
    assert!(log.segment_base_offsets().len() < 5);
    assert_eq!(first(&log, 0), 2);
    check_compacted(&log, &written);
    // Recovery scanning every segment (no recovery point) accepts the gaps,
    // within segments and between them.
    log.roll(3).expect("roll");
    written.append(&mut log, &records(&[("b", Some("third"))]), 3);
    cleaned(log.clean(30, &CleanerConfig::default()).expect("clean"));
    let before = stored_records(&log);
    let gaps_between_segments = log
        .segments
        .values()
        .zip(log.segments.values().skip(1))
        .filter(|(a, b)| a.next_offset() < b.base_offset())
        .count();
    assert!(gaps_between_segments > 0);
    drop(log);
    let log = open_log(dir.path(), compact_config());
    assert_eq!(stored_records(&log), before);
    check_compacted(&log, &written);
}

#[test]
fn tombstones_survive_delete_retention_ms_after_their_first_cleaning_then_go() {
    // Proves a tombstone outlives older values, stays for delete.retention.ms after it was first cleaned, then goes.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), compact_config());
    let mut written = Written::default();
    written.append(
        &mut log,
        &records(&[("k", Some("v1")), ("other", Some("o"))]),
        1,
    );
    written.append(&mut log, &records(&[("k", Some("v2"))]), 2);
    let tombstone_at = written.append(&mut log, &records(&[("k", None)]), 3);
    log.roll(3).expect("roll");
    written.append(&mut log, &records(&[("tail", Some("t"))]), 4);
    let first_cleaning_ms = 1_000;
    let stats = cleaned(
        log.clean(first_cleaning_ms, &CleanerConfig::default())
            .unwrap(),
    );
    assert_eq!(stats.records_removed, 2, "the older values of k go");
    let stored = check_compacted(&log, &written);
    let keys: Vec<_> = stored
        .iter()
        .map(|r| (r.offset, r.value.is_none()))
        .collect();
    assert_eq!(
        keys,
        vec![(1, false), (tombstone_at, true), (tombstone_at + 1, false)]
    );
    // The tombstone's batch carries its delete horizon; its timestamp is unchanged.
    let horizon_ms = first_cleaning_ms + TOMBSTONE_RETENTION_MS as i64;
    let read = log.read(tombstone_at, 1 << 20, i64::MAX, true).unwrap();
    let header = BatchHeader::new(&read.records).unwrap();
    assert_eq!(header.base_offset(), tombstone_at);
    assert_eq!(header.base_timestamp(), horizon_ms);
    assert_ne!(
        header.attributes() & crate::storage::batch_filter::DELETE_HORIZON_FLAG,
        0
    );
    assert_eq!(stored[1].timestamp, 3);
    // Before the horizon, no cleaning is due; a cleaning for other reasons keeps it.
    assert_eq!(
        log.clean(horizon_ms - 1, &CleanerConfig::default())
            .unwrap(),
        CleanOutcome::NotDue
    );
    written.append(&mut log, &records(&[("other", Some("o2"))]), 5);
    log.roll(5).expect("roll");
    written.append(&mut log, &records(&[("tail", Some("t2"))]), 6);
    cleaned(
        log.clean(horizon_ms - 1, &CleanerConfig::default())
            .unwrap(),
    );
    assert!(stored_records(&log)
        .iter()
        .any(|r| r.offset == tombstone_at));
    // At the horizon, the cleaning is due by itself and removes the tombstone.
    let stats = cleaned(log.clean(horizon_ms, &CleanerConfig::default()).unwrap());
    assert_eq!(stats.tombstones_removed, 1);
    let stored = check_compacted(&log, &written);
    assert!(
        stored.iter().all(|r| r.key.as_deref() != Some(&b"k"[..])),
        "k is gone entirely"
    );
    assert_eq!(
        log.clean(horizon_ms + 1, &CleanerConfig::default())
            .unwrap(),
        CleanOutcome::NotDue
    );
}

#[test]
fn cleaning_waits_for_the_dirty_ratio_the_compaction_lag_and_the_upper_bound() {
    // Proves min.cleanable.dirty.ratio, min.compaction.lag.ms, the upper bound and the cleanup policy each hold a cleaning back.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        min_cleanable_dirty_ratio: 0.5,
        min_compaction_lag_ms: 5_000,
        ..compact_config()
    };
    let mut log = open_log(dir.path(), config.clone());
    let mut written = Written::default();
    for i in 0..20 {
        written.append(
            &mut log,
            &records(&[(&format!("k{i}"), Some("first"))]),
            1_000,
        );
    }
    log.roll(1_000).expect("roll");
    written.append(&mut log, &records(&[("tail", Some("t"))]), 1_000);
    let cleaner = CleanerConfig::default();
    assert_eq!(
        log.clean(2_000, &cleaner).unwrap(),
        CleanOutcome::NotDue,
        "younger than the lag"
    );
    assert_eq!(
        log.clean_below(9_000, 10, &cleaner).unwrap(),
        CleanOutcome::NotDue,
        "past the upper bound"
    );
    log.set_config(LogConfig {
        cleanup_policy: CleanupPolicy::DELETE,
        ..config.clone()
    })
    .unwrap();
    assert_eq!(
        log.clean(9_000, &cleaner).unwrap(),
        CleanOutcome::NotDue,
        "not compacted"
    );
    log.set_config(config).unwrap();
    cleaned(log.clean(9_000, &cleaner).unwrap());
    // A little new dirt is below the ratio; as much again as is clean is not.
    written.append(&mut log, &records(&[("k0", Some("second"))]), 1_000);
    log.roll(1_000).expect("roll");
    assert_eq!(
        log.clean(9_000, &cleaner).unwrap(),
        CleanOutcome::NotDue,
        "below the dirty ratio"
    );
    for i in 0..20 {
        written.append(
            &mut log,
            &records(&[(&format!("k{i}"), Some("third"))]),
            1_000,
        );
    }
    log.roll(1_000).expect("roll");
    written.append(&mut log, &records(&[("tail", Some("t"))]), 1_000);
    cleaned(log.clean(9_000, &cleaner).unwrap());
    check_compacted(&log, &written);
}

/// The same batch, marked as gzip-compressed (its CRC fixed). The cleaner
/// never decompresses, so it cannot tell; clients never see these.
fn marked_compressed(batch: &[u8]) -> Vec<u8> {
    let mut marked = batch.to_vec();
    let attributes = i16::from_be_bytes([marked[21], marked[22]]) | 1;
    marked[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&marked[21..]);
    marked[17..21].copy_from_slice(&crc.to_be_bytes());
    marked
}

#[test]
fn compressed_batches_are_kept_byte_for_byte_and_keep_tombstones_alive() {
    // Proves a compressed batch (unreadable here) survives untouched, and no tombstone is removed while one exists.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), compact_config());
    let mut written = Written::default();
    let compressed = marked_compressed(&keyed_batch(&records(&[("d", Some("hidden"))]), 1));
    log.append(&compressed, 0, 1).expect("append");
    written.append(&mut log, &records(&[("k", Some("v1"))]), 1);
    written.append(&mut log, &records(&[("k", Some("v2"))]), 1);
    written.append(&mut log, &records(&[("d", None)]), 1);
    log.roll(1).expect("roll");
    written.append(&mut log, &records(&[("tail", Some("t"))]), 1);
    let stats = cleaned(log.clean(1_000, &CleanerConfig::default()).unwrap());
    assert_eq!(stats.compressed_batches_kept, 1);
    assert_eq!(stats.records_removed, 1, "only k=v1 goes");
    let first = log.read(0, 1 << 20, i64::MAX, true).unwrap();
    assert_eq!(
        &first.records[..compressed.len()],
        &stored(&compressed, 0, 0)[..]
    );
    // Long after the horizon, the tombstone of d stays: d=hidden may be older.
    let later = 1_000 + TOMBSTONE_RETENTION_MS as i64 * 10;
    assert_eq!(
        log.clean(later, &CleanerConfig::default()).unwrap(),
        CleanOutcome::NotDue,
        "a tombstone that cannot go makes no cleaning due"
    );
    written.append(&mut log, &records(&[("k", Some("v3"))]), 2);
    log.roll(2).expect("roll");
    written.append(&mut log, &records(&[("tail", Some("t2"))]), 2);
    cleaned(log.clean(later, &CleanerConfig::default()).unwrap());
    let batches = read_all(&log);
    assert_eq!(batches[0], stored(&compressed, 0, 0));
    let readable: Vec<DecodedRecord> = batches[1..]
        .iter()
        .flat_map(|b| decode_records(&Bytes::from(b.clone())).expect("uncompressed"))
        .collect();
    assert!(readable.iter().any(|r| r.offset == 3 && r.value.is_none()));
    assert!(
        readable.iter().all(|r| r.offset != 2),
        "k=v2 went once k=v3 came"
    );
}

#[test]
fn a_key_map_too_small_for_the_dirty_keys_cleans_over_several_cleanings() {
    // Proves the key map's memory bound holds: a log with more keys than fit is cleaned completely, a part per cleaning.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), compact_config());
    let mut written = Written::default();
    churn(&mut log, &mut written, 100, 60, 1);
    log.roll(2).expect("roll");
    written.append(&mut log, &records(&[("tail", Some("t"))]), 3);
    let small = CleanerConfig {
        dedupe_buffer_bytes: OFFSET_MAP_SLOT_BYTES * 20,
    };
    let mut cleanings = 0;
    loop {
        match log.clean(100, &small).expect("clean") {
            CleanOutcome::Cleaned(stats) => {
                assert!(stats.keys <= 18, "the map holds at most 90% of 20 slots");
                cleanings += 1;
            }
            CleanOutcome::NotDue => break,
            CleanOutcome::Abandoned => panic!("nothing interferes here"),
        }
        assert!(cleanings < CLEANINGS_MAX, "cleaning makes progress");
        check_compacted(&log, &written);
    }
    assert!(cleanings > 3, "{cleanings} cleanings");
    assert_eq!(log.cleaner_offset(), Some(log.log_end_offset() - 1));
    assert_eq!(stored_records(&log).len(), 61);
}

#[test]
fn bytes_held_by_a_reader_survive_a_compaction() {
    // Proves readers' Bytes of cleaned-away segments stay readable and unchanged after the swap unlinks them.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), compact_config());
    let mut written = Written::default();
    churn(&mut log, &mut written, 30, 5, 1);
    written.append(&mut log, &records(&[("tail", Some("t"))]), 3);
    let held: Vec<Bytes> = log
        .segment_base_offsets()
        .iter()
        .map(|&base| log.read(base, 1 << 20, i64::MAX, true).unwrap().records)
        .collect();
    let copies: Vec<Vec<u8>> = held.iter().map(|b| b.to_vec()).collect();
    let first_file = dir.path().join(segment_file_name(0, "log"));
    let inode = |path: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    };
    let inode_before = inode(&first_file);
    cleaned(log.clean(100, &CleanerConfig::default()).expect("clean"));
    assert_ne!(
        inode(&first_file),
        inode_before,
        "the cleaned segment is a new file"
    );
    check_compacted(&log, &written);
    for (bytes, copy) in held.iter().zip(&copies) {
        assert_eq!(&bytes[..], &copy[..]);
    }
    let sum: u64 = held
        .iter()
        .flat_map(|b| b.iter())
        .map(|&b| u64::from(b))
        .sum();
    assert!(sum > 0, "every page of the old segments is still readable");
}

fn compact_tp() -> TopicPartition {
    TopicPartition::new("__consumer_offsets", 0)
}

#[test]
fn a_compacted_log_reopens_with_its_gaps_and_its_cleaner_offset() {
    // Proves clean and unclean restarts keep a compacted log as it was, and the next cleaning starts at the checkpointed offset.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut written = Written::default();
    let (stored_before, cleaned_up_to) = {
        let manager = LogManager::open(dir.path(), small_config(), 16).expect("open");
        let log = manager
            .create(&compact_tp(), compact_config())
            .expect("create");
        let mut guard = log.lock().unwrap();
        churn(&mut guard, &mut written, 30, 7, 1);
        guard.roll(2).expect("roll");
        written.append(&mut guard, &records(&[("tail", Some("t"))]), 3);
        drop(guard);
        let report = manager.clean_pass(100);
        assert_eq!(report.cleaned.len(), 1);
        let cleaned_up_to = report.cleaned[0].1.cleaned_up_to;
        let text =
            std::fs::read_to_string(dir.path().join(CLEANER_OFFSET_CHECKPOINT_FILE)).unwrap();
        assert_eq!(
            text,
            format!("0\n1\n__consumer_offsets 0 {cleaned_up_to}\n")
        );
        let stored = check_compacted(&log.lock().unwrap(), &written);
        manager.shutdown().expect("shutdown");
        (stored, cleaned_up_to)
    };
    for clean_stop in [true, false] {
        let manager = LogManager::open(dir.path(), small_config(), 16).expect("reopen");
        assert_eq!(manager.recovery_report().clean_shutdown, clean_stop);
        assert_eq!(
            manager.recovery_report().bytes_truncated,
            0,
            "gaps are not corruption"
        );
        let log = manager.get(&compact_tp()).expect("partition");
        let mut guard = log.lock().unwrap();
        assert!(guard.offsets_may_skip());
        assert_eq!(guard.cleaner_offset(), Some(cleaned_up_to));
        guard.set_config(compact_config()).unwrap();
        assert_eq!(stored_records(&guard), stored_before);
        // Dropped without a shutdown: the next open is unclean.
    }
    let manager = LogManager::open(dir.path(), small_config(), 16).expect("reopen");
    let log = manager.get(&compact_tp()).expect("partition");
    {
        let mut guard = log.lock().unwrap();
        guard.set_config(compact_config()).unwrap();
        churn(&mut guard, &mut written, 10, 7, 200);
        guard.roll(201).expect("roll");
    }
    let report = manager.clean_pass(300);
    assert_eq!(report.cleaned[0].1.first_dirty_offset, cleaned_up_to);
    check_compacted(&log.lock().unwrap(), &written);
}

#[test]
fn leftover_files_of_an_uncommitted_swap_are_removed_on_recovery() {
    // Proves `.cleaned` files and index `.swap` files without a `.log.swap` are discarded and the old segments kept.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut written = Written::default();
    let stored_before = {
        let mut log = open_log(dir.path(), compact_config());
        churn(&mut log, &mut written, 12, 4, 1);
        stored_records(&log)
    };
    let junk = [
        segment_file_name(0, "log.cleaned"),
        segment_file_name(0, "index.cleaned"),
        segment_file_name(0, "timeindex.swap"),
        segment_file_name(0, "index.swap"),
    ];
    for name in &junk {
        std::fs::write(dir.path().join(name), b"half-written").unwrap();
    }
    let log = open_log(dir.path(), compact_config());
    for name in &junk {
        assert!(!dir.path().join(name).exists(), "{name} removed");
    }
    assert_eq!(stored_records(&log), stored_before);
}

#[test]
fn a_follower_copies_a_compacted_leader_with_its_gaps() {
    // Proves a compacted follower accepts the leader's gaps (and keeps them across an unclean restart), while a plain log refuses them.
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let mut leader = open_log(leader_dir.path(), compact_config());
    let mut written = Written::default();
    churn(&mut leader, &mut written, 30, 6, 1);
    leader.roll(2).expect("roll");
    written.append(&mut leader, &records(&[("tail", Some("t"))]), 3);
    cleaned(leader.clean(100, &CleanerConfig::default()).unwrap());
    let leader_batches = read_all(&leader);

    let follower_dir = tempfile::tempdir().expect("tempdir");
    let mut follower = open_log(follower_dir.path(), compact_config());
    let mut offset = 0;
    while offset < leader.log_end_offset() {
        let read = leader.read(offset, 1000, i64::MAX, true).expect("fetch");
        let info = follower
            .append_as_follower(&read.records)
            .expect("follower append");
        offset = info.last_offset + 1;
    }
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(read_all(&follower), leader_batches);
    drop(follower);
    let follower = open_log(follower_dir.path(), compact_config());
    assert_eq!(
        read_all(&follower),
        leader_batches,
        "the gaps survive recovery"
    );

    let plain_dir = tempfile::tempdir().expect("tempdir");
    let mut plain = open_log(plain_dir.path(), small_config());
    let gapped = leader.read(0, 1 << 20, i64::MAX, true).unwrap();
    assert!(matches!(
        plain.append_as_follower(&gapped.records),
        Err(StorageError::NonContiguousOffsets { .. })
    ));
}

#[test]
fn truncation_into_a_gap_ends_the_log_before_the_gap() {
    // Proves truncating at an offset the cleaner removed drops every batch from there on and keeps the cleaner offset within the log.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), compact_config());
    let mut written = Written::default();
    written.append(&mut log, &records(&[("a", Some("1"))]), 1);
    written.append(&mut log, &records(&[("b", Some("1"))]), 1);
    written.append(&mut log, &records(&[("b", Some("2")), ("b", Some("3"))]), 1);
    written.append(&mut log, &records(&[("c", Some("1"))]), 1);
    log.roll(1).expect("roll");
    written.append(&mut log, &records(&[("tail", Some("t"))]), 1);
    cleaned(log.clean(10, &CleanerConfig::default()).unwrap());
    // Offsets 1 and 2 were removed: batches a@0, b@3 (in [2, 3]), c@4 remain.
    log.truncate_to(1).expect("truncate");
    assert_eq!(log.log_end_offset(), 1, "the log ends after a@0");
    assert_eq!(log.cleaner_offset(), Some(1));
    written.truncate(1);
    check_compacted(&log, &written);
    let at = written.append(&mut log, &records(&[("d", Some("1"))]), 2);
    assert_eq!(at, 1, "appends continue at the new end");
    check_compacted(&log, &written);
}

/// A change made to a log while the cleaner works on it.
type LogChange = fn(&mut PartitionLog);

/// A log whose owner changes it between the cleaner's steps.
struct Interfering<'a> {
    log: &'a mut PartitionLog,
    calls: usize,
    interfere_at: usize,
    change: LogChange,
}

impl LockedLog for &mut Interfering<'_> {
    fn with_log<R>(&mut self, f: impl FnOnce(&mut PartitionLog) -> R) -> R {
        self.calls += 1;
        if self.calls == self.interfere_at {
            (self.change)(self.log);
        }
        f(self.log)
    }
}

#[test]
fn the_cleaner_abandons_its_work_when_the_log_changes_between_its_steps() {
    // Proves a truncation or retention between any two cleaner steps abandons the cleaning without loss or leftovers, and appends do not.
    let changes: [(&str, LogChange, bool); 3] = [
        (
            "truncate",
            |log| log.truncate_to(log.log_end_offset() - 1).unwrap(),
            true,
        ),
        (
            "log start",
            |log| log.set_log_start_offset(1).unwrap(),
            true,
        ),
        (
            "append",
            |log| {
                log.append(&batch(1, 10, 0), 0, 0).unwrap();
            },
            false,
        ),
    ];
    for (name, change, abandons) in changes {
        // Step 1 plans; every later step reads a segment or swaps a group.
        for interfere_at in 2.. {
            assert!(
                interfere_at < 200,
                "the cleaning has a bounded number of steps"
            );
            let dir = tempfile::tempdir().expect("tempdir");
            let mut log = open_log(dir.path(), compact_config());
            let mut written = Written::default();
            churn(&mut log, &mut written, 20, 5, 1);
            log.roll(2).expect("roll");
            written.append(
                &mut log,
                &records(&[("tail", Some("t")), ("tail", Some("u"))]),
                3,
            );
            let mut interfering = Interfering {
                log: &mut log,
                calls: 0,
                interfere_at,
                change,
            };
            let outcome = clean_log(&mut interfering, 100, i64::MAX, &CleanerConfig::default())
                .expect("clean");
            let calls = interfering.calls;
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
                .collect();
            assert!(leftovers.is_empty(), "{name}@{interfere_at}: {leftovers:?}");
            if interfere_at > calls {
                assert!(matches!(outcome, CleanOutcome::Cleaned(_)));
                break;
            }
            if abandons {
                assert_eq!(outcome, CleanOutcome::Abandoned, "{name}@{interfere_at}");
            } else {
                assert!(
                    matches!(outcome, CleanOutcome::Cleaned(_)),
                    "{name}@{interfere_at}"
                );
            }
            // Whatever happened, the log is whole, and the next cleaning completes.
            written.truncate(log.log_end_offset());
            let records_after: Vec<_> = stored_records(&log);
            assert!(records_after.windows(2).all(|w| w[0].offset < w[1].offset));
            assert!(!log.is_offline());
            if abandons {
                assert!(matches!(
                    log.clean(200, &CleanerConfig::default()).unwrap(),
                    CleanOutcome::Cleaned(_) | CleanOutcome::NotDue
                ));
            }
        }
    }
}

#[test]
fn a_trim_planned_before_a_cleaning_leaves_the_cleaned_copy_whole() {
    // Proves the flush job's trim reaches only the files it opened: a cleaned copy swapped in under the same name, longer than the segment it replaced, keeps every byte.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path(), compact_config());
    let mut written = Written::default();
    written.append(&mut log, &records(&[("a", Some("1"))]), 1);
    log.roll(1).expect("roll");
    for i in 0..20 {
        let batch = [(format!("k{i}"), Some(format!("value {i}")))];
        written.append(&mut log, &batch, 1);
    }
    log.roll(1).expect("roll");
    written.append(&mut log, &records(&[("tail", Some("t"))]), 1);
    // The first segment holds just the first batch.
    let first_data = read_all(&log)[0].len();
    // Planned now: trims of both sealed segments, neither trimmed since its roll.
    let mut job = log.begin_flush_if_due(10_000).expect("due");

    // The partition lock would be released here: a cleaning merges the two
    // sealed segments into one copy named like the first, and longer than it.
    cleaned(log.clean(100, &CleanerConfig::default()).expect("clean"));
    let merged = dir.path().join(segment_file_name(0, "log"));
    let merged_len = std::fs::metadata(&merged).unwrap().len();
    assert!(
        merged_len > first_data as u64,
        "the copy ({merged_len} bytes) is longer than the first segment's data ({first_data})"
    );
    // With no cached mapping left, nothing but the descriptors keeps the
    // planned shrink off the copy.
    log.unmap();
    let result = job.run();
    log.complete_flush(job, result).expect("flush");

    assert_eq!(std::fs::metadata(&merged).unwrap().len(), merged_len);
    let expected = check_compacted(&log, &written);
    assert_eq!(expected.len(), 22, "21 keys and the tail");
    log.close().expect("close");
    let reopened = open_log(dir.path(), compact_config());
    assert_eq!(check_compacted(&reopened, &written), expected);
}

#[test]
fn clean_pass_reports_a_corrupt_partition_once_and_cleans_the_others() {
    // Proves a CRC failure stops cleaning of that partition only, without touching its data.
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = LogManager::open(dir.path(), small_config(), 16).expect("open");
    let mut written = Written::default();
    for partition in 0..2 {
        let log = manager
            .create(
                &TopicPartition::new("compacted", partition),
                compact_config(),
            )
            .expect("create");
        let mut guard = log.lock().unwrap();
        churn(&mut guard, &mut written, 10, 3, 1);
        guard.roll(2).expect("roll");
        guard.append(&batch(1, 10, 0), 0, 0).expect("append");
    }
    let damaged = dir
        .path()
        .join("compacted-0")
        .join(segment_file_name(0, "log"));
    {
        // In place, so the file never shrinks under the log's mapping.
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&damaged)
            .unwrap();
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, 100).unwrap();
        file.write_all_at(&[byte[0] ^ 0x40], 100).unwrap();
    }
    let bytes = std::fs::read(&damaged).unwrap();
    let report = manager.clean_pass(100);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, TopicPartition::new("compacted", 0));
    assert!(report.failed[0].1.contains("crc"), "{}", report.failed[0].1);
    assert_eq!(report.cleaned.len(), 1);
    assert_eq!(
        std::fs::read(&damaged).unwrap(),
        bytes,
        "the damaged segment is untouched"
    );
    let again = manager.clean_pass(200);
    assert!(
        again.failed.is_empty() && again.cleaned.is_empty(),
        "skipped until restart"
    );
}

#[test]
fn compact_only_logs_ignore_time_and_size_retention() {
    // Proves retention.ms and retention.bytes delete segments only if the cleanup policy includes delete.
    let dir = tempfile::tempdir().expect("tempdir");
    for (policy, deletes) in [
        (CleanupPolicy::COMPACT, false),
        (CleanupPolicy::COMPACT_DELETE, true),
        (CleanupPolicy::DELETE, true),
    ] {
        let path = dir.path().join(policy.to_string());
        let config = LogConfig {
            cleanup_policy: policy,
            retention_ms: Some(1),
            retention_bytes: Some(1),
            ..compact_config()
        };
        let mut log = open_log(&path, config);
        let mut written = Written::default();
        churn(&mut log, &mut written, 20, 5, 1);
        let deleted = log.apply_retention(1_000_000).expect("retention");
        assert_eq!(deleted > 0, deletes, "{policy}");
    }
}

#[test]
fn cleanup_policy_parses_kafkas_names() {
    // Proves the Kafka spellings of cleanup.policy parse, in either order, and nonsense does not.
    assert_eq!(CleanupPolicy::parse("delete"), Some(CleanupPolicy::DELETE));
    assert_eq!(
        CleanupPolicy::parse("compact"),
        Some(CleanupPolicy::COMPACT)
    );
    assert_eq!(
        CleanupPolicy::parse("compact,delete"),
        Some(CleanupPolicy::COMPACT_DELETE)
    );
    assert_eq!(
        CleanupPolicy::parse("delete, compact"),
        Some(CleanupPolicy::COMPACT_DELETE)
    );
    assert_eq!(CleanupPolicy::parse(""), None);
    assert_eq!(CleanupPolicy::parse("compact,shred"), None);
    assert_eq!(CleanupPolicy::COMPACT_DELETE.to_string(), "compact,delete");
}

#[test]
fn a_full_disk_while_writing_a_cleaned_copy_fails_the_cleaning_but_not_the_log() {
    // Proves an ENOSPC while writing a cleaned segment leaves the old segments, no temporary files, and an online log.
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = crate::storage::FaultInjector::new();
    let (mut log, _) = PartitionLog::open(
        dir.path(),
        compact_config(),
        FileLayer::with_faults(std::sync::Arc::clone(&faults)),
        MappingBudget::new(64),
        crate::storage::log::OpenOptions::default(),
    )
    .expect("open");
    let mut written = Written::default();
    churn(&mut log, &mut written, 30, 4, 1);
    log.roll(2).expect("roll");
    written.append(&mut log, &records(&[("tail", Some("t"))]), 3);
    let before = stored_records(&log);
    faults.limit_allocation(0);
    let error = log
        .clean(100, &CleanerConfig::default())
        .expect_err("no space");
    assert!(error.to_string().contains("allocating"), "{error}");
    faults.unlimit_allocation();
    assert!(!log.is_offline());
    assert_eq!(stored_records(&log), before);
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".cleaned")
        })
        .count();
    assert_eq!(leftovers, 0);
    cleaned(log.clean(100, &CleanerConfig::default()).expect("clean"));
    check_compacted(&log, &written);
}

#[test]
fn a_follower_gap_wider_than_a_segment_can_index_starts_a_new_segment() {
    // Proves a compacted leader's gap past a segment's relative offset range rolls the follower at the batch, never panics.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut follower = open_log(dir.path(), compact_config());
    let far = crate::storage::segment::RELATIVE_OFFSET_MAX + 10;
    let batch_at = |offset: i64| stored(&keyed_batch(&records(&[("k", Some("v"))]), 1), offset, 0);
    // Into the empty first segment, then past a non-empty one.
    follower.append_as_follower(&batch_at(far)).expect("append");
    assert_eq!(follower.segment_base_offsets(), vec![far]);
    follower
        .append_as_follower(&batch_at(far + 1))
        .expect("append");
    let farther = far + 1 + far;
    follower
        .append_as_follower(&batch_at(farther))
        .expect("append");
    assert_eq!(follower.segment_base_offsets(), vec![far, farther]);
    assert_eq!(follower.log_end_offset(), farther + 1);
    drop(follower);
    let follower = open_log(dir.path(), compact_config());
    let offsets: Vec<i64> = stored_records(&follower).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![far, far + 1, farther]);
}
