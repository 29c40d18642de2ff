//! Model-based property test: random appends, follower appends, truncations,
//! rolls, retention, log-start moves, flushes, clean and unclean reopens,
//! applied to the log and to a plain `Vec` of batches, which must agree on
//! offsets, contents, log start and log end after every step.

use proptest::prelude::*;

use super::*;
use crate::storage::{LogManager, TopicPartition};

/// Steps per generated case.
const MODEL_STEPS_MAX: usize = 40;
/// Cases per run.
const MODEL_CASES: u32 = 48;

#[derive(Clone, Debug)]
enum Op {
    Append {
        batches: u8,
        records: u8,
        value_bytes: u16,
        epoch_bump: bool,
    },
    FollowerAppend {
        records: u8,
        value_bytes: u16,
    },
    /// Truncate to a point chosen by this fraction of the offsets in the log.
    Truncate {
        per_mille: u16,
    },
    Roll,
    RetainBytes {
        per_mille: u16,
    },
    RetainAll,
    SetLogStart {
        per_mille: u16,
    },
    Flush,
    ReopenClean,
    ReopenUnclean,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..4, 1u8..6, 0u16..900, any::<bool>()).prop_map(|(batches, records, value_bytes, epoch_bump)| Op::Append { batches, records, value_bytes, epoch_bump }),
        2 => (1u8..6, 0u16..900).prop_map(|(records, value_bytes)| Op::FollowerAppend { records, value_bytes }),
        2 => (0u16..=1000).prop_map(|per_mille| Op::Truncate { per_mille }),
        1 => Just(Op::Roll),
        1 => (0u16..=1000).prop_map(|per_mille| Op::RetainBytes { per_mille }),
        1 => Just(Op::RetainAll),
        1 => (0u16..=1000).prop_map(|per_mille| Op::SetLogStart { per_mille }),
        1 => Just(Op::Flush),
        1 => Just(Op::ReopenClean),
        1 => Just(Op::ReopenUnclean),
    ]
}

/// The model: the stored batches still visible, and the log's bounds.
struct Model {
    batches: Vec<(i64, i64, Vec<u8>)>,
    log_start_offset: i64,
    log_end_offset: i64,
    epoch: i32,
}

impl Model {
    fn pick(&self, per_mille: u16) -> i64 {
        let span = self.log_end_offset - self.log_start_offset;
        self.log_start_offset + span * i64::from(per_mille) / 1000
    }

    fn visible(&self) -> Vec<Vec<u8>> {
        self.batches
            .iter()
            .filter(|(_, last, _)| *last >= self.log_start_offset)
            .map(|(_, _, bytes)| bytes.clone())
            .collect()
    }
}

fn tp() -> TopicPartition {
    TopicPartition::new("model", 0)
}

fn check(manager: &LogManager, model: &Model) -> Result<(), TestCaseError> {
    let log = manager.get(&tp()).expect("partition");
    let guard = log.lock().unwrap();
    prop_assert_eq!(guard.log_end_offset(), model.log_end_offset);
    prop_assert_eq!(guard.log_start_offset(), model.log_start_offset);
    prop_assert!(guard.recovery_point() <= guard.log_end_offset());
    prop_assert_eq!(read_all(&guard), model.visible());
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config();
    let mut manager = LogManager::open(dir.path(), config.clone(), 8).expect("open");
    manager.create(&tp(), config.clone()).expect("create");
    let mut model = Model {
        batches: Vec::new(),
        log_start_offset: 0,
        log_end_offset: 0,
        epoch: 0,
    };
    for (step, op) in ops.into_iter().enumerate() {
        let now_ms = step as i64 * 1000;
        match op {
            Op::Append {
                batches,
                records,
                value_bytes,
                epoch_bump,
            } => {
                if epoch_bump {
                    model.epoch += 1;
                }
                let mut set = Vec::new();
                let parts: Vec<_> = (0..batches)
                    .map(|i| {
                        batch(
                            usize::from(records),
                            usize::from(value_bytes),
                            now_ms + i64::from(i),
                        )
                    })
                    .collect();
                for part in &parts {
                    set.extend_from_slice(part);
                }
                let log = manager.get(&tp()).unwrap();
                let info = log
                    .lock()
                    .unwrap()
                    .append(&set, model.epoch, now_ms)
                    .expect("append");
                prop_assert_eq!(info.base_offset, model.log_end_offset);
                for part in parts {
                    let base = model.log_end_offset;
                    let last = base + i64::from(records) - 1;
                    model
                        .batches
                        .push((base, last, stored(&part, base, model.epoch)));
                    model.log_end_offset = last + 1;
                }
                prop_assert_eq!(info.last_offset, model.log_end_offset - 1);
            }
            Op::FollowerAppend {
                records,
                value_bytes,
            } => {
                let base = model.log_end_offset;
                let bytes = stored(
                    &batch(usize::from(records), usize::from(value_bytes), now_ms),
                    base,
                    model.epoch,
                );
                let log = manager.get(&tp()).unwrap();
                log.lock()
                    .unwrap()
                    .append_as_follower(&bytes)
                    .expect("follower append");
                model
                    .batches
                    .push((base, base + i64::from(records) - 1, bytes));
                model.log_end_offset = base + i64::from(records);
            }
            Op::Truncate { per_mille } => {
                let target = model.pick(per_mille);
                let log = manager.get(&tp()).unwrap();
                log.lock().unwrap().truncate_to(target).expect("truncate");
                if target < model.log_end_offset {
                    if target < model.log_start_offset {
                        // Below the log start the log restarts empty at the target.
                        model.batches.clear();
                        model.log_start_offset = target;
                        model.log_end_offset = target;
                    } else {
                        // The batch containing the target goes too (Kafka semantics).
                        let cut = model
                            .batches
                            .iter()
                            .find(|(_, last, _)| *last >= target)
                            .map(|(base, _, _)| *base)
                            .expect("a batch holds every offset below the log end");
                        model.batches.retain(|(_, last, _)| *last < target);
                        model.log_end_offset = cut;
                        model.log_start_offset = model.log_start_offset.min(cut);
                    }
                }
            }
            Op::Roll => {
                let log = manager.get(&tp()).unwrap();
                log.lock().unwrap().roll(now_ms).expect("roll");
            }
            Op::RetainBytes { per_mille } | Op::SetLogStart { per_mille }
                if model.log_end_offset == model.log_start_offset =>
            {
                let _ = per_mille;
            }
            Op::RetainBytes { per_mille } => {
                let log = manager.get(&tp()).unwrap();
                let mut guard = log.lock().unwrap();
                let size = guard.size_bytes();
                let config = LogConfig {
                    retention_bytes: Some(size * u64::from(per_mille) / 1000),
                    ..small_config()
                };
                guard.set_config(config).unwrap();
                guard.apply_retention(now_ms).expect("retention");
                guard.set_config(small_config()).unwrap();
                let start = guard.log_start_offset();
                prop_assert!(start >= model.log_start_offset);
                prop_assert!(
                    start == model.log_start_offset
                        || model.batches.iter().any(|(base, _, _)| *base == start),
                    "retention stops at a batch boundary"
                );
                model.log_start_offset = start;
                drop(guard);
                manager.write_checkpoints().expect("checkpoints");
            }
            Op::RetainAll => {
                let log = manager.get(&tp()).unwrap();
                let mut guard = log.lock().unwrap();
                guard
                    .set_config(LogConfig {
                        retention_ms: Some(0),
                        ..small_config()
                    })
                    .unwrap();
                guard.apply_retention(i64::MAX / 2).expect("retention");
                guard.set_config(small_config()).unwrap();
                model.log_start_offset = model.log_end_offset;
                drop(guard);
                manager.write_checkpoints().expect("checkpoints");
            }
            Op::SetLogStart { per_mille } => {
                let target = model.pick(per_mille);
                let log = manager.get(&tp()).unwrap();
                log.lock()
                    .unwrap()
                    .set_log_start_offset(target)
                    .expect("set log start");
                model.log_start_offset = model.log_start_offset.max(target);
                manager.write_checkpoints().expect("checkpoints");
            }
            Op::Flush => {
                let log = manager.get(&tp()).unwrap();
                log.lock().unwrap().flush().expect("flush");
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
            }
        }
        check(&manager, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: MODEL_CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn log_agrees_with_a_vec_of_batches(ops in prop::collection::vec(op(), 1..MODEL_STEPS_MAX)) {
        // Proves that any sequence of operations leaves the log equal to the simple model.
        run(ops)?;
    }
}
