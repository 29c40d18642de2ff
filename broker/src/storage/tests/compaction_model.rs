//! Property test of compaction: random keyed appends (tombstones included),
//! rolls, cleanings with random key-map sizes and clocks, an upper bound that
//! moves like a high watermark, truncations above it, and clean and unclean
//! reopens. After every step the log must keep what compaction promises
//! against everything ever appended (`compaction::check_compacted`): each
//! key's latest value at its original offset, no older duplicate below the
//! cleaner offset, offsets strictly increasing, every batch valid.

use proptest::prelude::*;

use super::compaction::{check_compacted, compact_config, Written};
use super::*;
use crate::storage::offset_map::OFFSET_MAP_SLOT_BYTES;
use crate::storage::{CleanerConfig, LogManager, TopicPartition};

/// Steps per generated case.
const COMPACTION_STEPS_MAX: usize = 60;
/// Cases per run.
const COMPACTION_CASES: u32 = 64;
/// Records per appended batch, at most.
const RECORDS_PER_BATCH_MAX: usize = 6;

#[derive(Clone, Debug)]
enum Op {
    /// `(key, tombstone)` per record.
    Append {
        records: Vec<(u8, bool)>,
    },
    Roll,
    /// Cleans with a key map of `map_slots` slots after `advance_ms`.
    Clean {
        map_slots: u16,
        advance_ms: u32,
    },
    /// The upper bound (a high watermark) moves to the log end.
    AdvanceUpperBound,
    /// Truncates at this fraction of the offsets above the upper bound.
    Truncate {
        per_mille: u16,
    },
    ReopenClean,
    ReopenUnclean,
}

fn op(key_space: u8) -> impl Strategy<Value = Op> {
    let record = (0..key_space, prop::bool::weighted(0.2));
    prop_oneof![
        8 => prop::collection::vec(record, 1..=RECORDS_PER_BATCH_MAX).prop_map(|records| Op::Append { records }),
        3 => Just(Op::Roll),
        4 => (16u16..400, 0u32..25_000).prop_map(|(map_slots, advance_ms)| Op::Clean { map_slots, advance_ms }),
        3 => Just(Op::AdvanceUpperBound),
        1 => (0u16..=1000).prop_map(|per_mille| Op::Truncate { per_mille }),
        1 => Just(Op::ReopenClean),
        1 => Just(Op::ReopenUnclean),
    ]
}

fn case() -> impl Strategy<Value = Vec<Op>> {
    (2u8..40)
        .prop_flat_map(|key_space| prop::collection::vec(op(key_space), 1..COMPACTION_STEPS_MAX))
}

fn tp() -> TopicPartition {
    TopicPartition::new("compacted", 0)
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes_max: 2048,
        ..compact_config()
    };
    let mut manager = LogManager::open(dir.path(), config.clone(), 8).expect("open");
    manager.create(&tp(), config.clone()).expect("create");
    let mut written = Written::default();
    let mut now_ms: i64 = 1_000;
    let mut upper_bound: i64 = 0;
    let mut sequence = 0u64;
    for op in ops {
        match op {
            Op::Append { records } => {
                let batch: Vec<(String, Option<String>)> = records
                    .iter()
                    .map(|&(key, tombstone)| {
                        sequence += 1;
                        (
                            format!("k{key}"),
                            (!tombstone).then(|| format!("v{sequence}")),
                        )
                    })
                    .collect();
                let log = manager.get(&tp()).unwrap();
                written.append(&mut log.lock().unwrap(), &batch, now_ms);
            }
            Op::Roll => {
                let log = manager.get(&tp()).unwrap();
                log.lock().unwrap().roll(now_ms).expect("roll");
            }
            Op::Clean {
                map_slots,
                advance_ms,
            } => {
                now_ms += i64::from(advance_ms);
                manager.set_cleaner_config(CleanerConfig {
                    dedupe_buffer_bytes: usize::from(map_slots) * OFFSET_MAP_SLOT_BYTES,
                });
                let report = manager.clean_pass_below(now_ms, &|_| upper_bound);
                prop_assert!(report.failed.is_empty(), "{:?}", report.failed);
                prop_assert!(report.abandoned.is_empty());
                for (_, stats) in &report.cleaned {
                    prop_assert!(stats.cleaned_up_to <= upper_bound.max(stats.first_dirty_offset));
                }
            }
            Op::AdvanceUpperBound => {
                upper_bound = manager.get(&tp()).unwrap().lock().unwrap().log_end_offset();
            }
            Op::Truncate { per_mille } => {
                let log = manager.get(&tp()).unwrap();
                let mut guard = log.lock().unwrap();
                let span = guard.log_end_offset() - upper_bound;
                let target = upper_bound + span * i64::from(per_mille) / 1000;
                guard.truncate_to(target).expect("truncate");
                written.truncate(guard.log_end_offset());
                // Below the upper bound, only batches it never let the cleaner use.
                upper_bound = upper_bound.min(guard.log_end_offset());
            }
            Op::ReopenClean => {
                manager.shutdown().expect("shutdown");
                drop(manager);
                manager = LogManager::open(dir.path(), config.clone(), 8).expect("reopen");
                prop_assert_eq!(manager.recovery_report().bytes_scanned, 0);
            }
            Op::ReopenUnclean => {
                manager.write_checkpoints().expect("checkpoints");
                drop(manager);
                manager = LogManager::open(dir.path(), config.clone(), 8).expect("reopen");
                prop_assert_eq!(manager.recovery_report().bytes_truncated, 0);
            }
        }
        let log = manager.get(&tp()).unwrap();
        let guard = log.lock().unwrap();
        check_compacted(&guard, &written);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: COMPACTION_CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn compaction_keeps_the_latest_record_of_every_key(ops in case()) {
        // Proves that any mix of keyed appends, rolls, cleanings, truncations and reopens keeps compaction's promises.
        run(ops)?;
    }
}
