//! The LogManager: many partitions under one mapping budget, checkpoints,
//! topic ids, creation, deletion, and the periodic passes.

use super::*;
use crate::storage::checkpoint::read_offsets;
use crate::storage::manager::{LOG_START_OFFSET_CHECKPOINT_FILE, RECOVERY_POINT_CHECKPOINT_FILE};
use crate::storage::{LogManager, TopicPartition};

/// Partitions in the many-partitions test.
const MANY_PARTITIONS: i32 = 3000;
/// Room for the many-partitions test's files.
const MANY_PARTITIONS_SCRATCH_BYTES: u64 = 1 << 30;
/// The mapping budget in the many-partitions test.
const MANY_PARTITIONS_MAPPINGS_MAX: usize = 256;
/// The bound on open write descriptors in the many-partitions test.
const MANY_PARTITIONS_WRITERS_MAX: usize = 64;

fn tiny_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 4096,
        index_interval_bytes: 64,
        segment_index_bytes_max: 1024,
        preallocate_step_bytes: 4096,
        ..small_config()
    }
}

#[test]
fn three_thousand_partitions_stay_within_the_mapping_and_writer_budgets() {
    // Proves live cached mappings and open write descriptors stay within their bounds while every one of 3000 partitions stays readable.
    let dir = ScratchDir::new(MANY_PARTITIONS_SCRATCH_BYTES);
    let files = FileLayer::real().with_writers_max(MANY_PARTITIONS_WRITERS_MAX);
    let manager = LogManager::open_with_file_layer(
        dir.path(),
        tiny_config(),
        MANY_PARTITIONS_MAPPINGS_MAX,
        files.clone(),
    )
    .expect("open");
    let budget = manager.mapping_budget().clone();
    let records = batch(3, 700, 1);
    for partition in 0..MANY_PARTITIONS {
        let tp = TopicPartition::new("many", partition);
        let log = manager.create(&tp, tiny_config()).expect("create");
        let mut guard = log.lock().unwrap();
        // Two segments per partition, so sealed and active mappings both exist.
        for _ in 0..3 {
            guard.append(&records, 0, 0).expect("append");
        }
        assert!(budget.live() <= MANY_PARTITIONS_MAPPINGS_MAX);
        assert!(files.writers_open() <= MANY_PARTITIONS_WRITERS_MAX);
    }
    assert_eq!(files.writers_open(), MANY_PARTITIONS_WRITERS_MAX);
    let check_all = |manager: &LogManager| {
        for partition in 0..MANY_PARTITIONS {
            let tp = TopicPartition::new("many", partition);
            let log = manager.get(&tp).expect("partition");
            let guard = log.lock().unwrap();
            let batches = read_all(&guard);
            assert_eq!(batches.len(), 3, "partition {partition}");
            assert_eq!(guard.offset_for_timestamp(0), Some((0, 1)));
        }
    };
    check_all(&manager);
    assert!(
        budget.peak() <= MANY_PARTITIONS_MAPPINGS_MAX,
        "peak {}",
        budget.peak()
    );
    assert!(budget.evictions() > 0, "the budget had to evict");
    manager.shutdown().expect("shutdown");
    drop(manager);
    let manager =
        LogManager::open(dir.path(), tiny_config(), MANY_PARTITIONS_MAPPINGS_MAX).expect("reopen");
    assert_eq!(manager.partitions().len(), MANY_PARTITIONS as usize);
    check_all(&manager);
    let budget = manager.mapping_budget();
    assert!(
        budget.peak() <= MANY_PARTITIONS_MAPPINGS_MAX,
        "peak {}",
        budget.peak()
    );
}

#[test]
fn topic_ids_are_written_to_partition_metadata_and_read_back_on_open() {
    // Proves create_with_topic_id persists the id in Kafka's partition.metadata and reopening restores it.
    let dir = tempfile::tempdir().expect("tempdir");
    let id = uuid::Uuid::new_v4();
    let tp = TopicPartition::new("with-id", 2);
    {
        let manager = LogManager::open(dir.path(), small_config(), 8).expect("open");
        let log = manager
            .create_with_topic_id(&tp, small_config(), id)
            .expect("create");
        assert_eq!(log.lock().unwrap().topic_id(), Some(id));
        // Idempotent with the same id; a different id is refused.
        manager
            .create_with_topic_id(&tp, small_config(), id)
            .expect("same id");
        assert!(manager
            .create_with_topic_id(&tp, small_config(), uuid::Uuid::new_v4())
            .is_err());
        manager.shutdown().expect("shutdown");
    }
    let text = std::fs::read_to_string(dir.path().join("with-id-2/partition.metadata")).unwrap();
    assert!(text.starts_with("version: 0\ntopic_id: "));
    let manager = LogManager::open(dir.path(), small_config(), 8).expect("reopen");
    assert_eq!(manager.partitions(), vec![tp.clone()]);
    assert_eq!(
        manager.get(&tp).unwrap().lock().unwrap().topic_id(),
        Some(id)
    );
}

#[test]
fn create_is_idempotent_and_delete_removes_the_partition() {
    // Proves create returns the existing log, and delete removes the directory for good.
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = LogManager::open(dir.path(), small_config(), 8).expect("open");
    let tp = TopicPartition::new("t", 0);
    let first = manager.create(&tp, small_config()).expect("create");
    first
        .lock()
        .unwrap()
        .append(&batch(1, 10, 1), 0, 0)
        .unwrap();
    let second = manager.create(&tp, small_config()).expect("create again");
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    manager.delete(&tp).expect("delete");
    assert!(manager.get(&tp).is_none());
    assert!(
        first.lock().unwrap().is_offline(),
        "a deleted log refuses further use"
    );
    assert!(!dir.path().join("t-0").exists());
    manager.shutdown().expect("shutdown");
    drop(manager);
    let manager = LogManager::open(dir.path(), small_config(), 8).expect("reopen");
    assert!(manager.partitions().is_empty());
}

#[test]
fn checkpoints_name_only_flushed_offsets_and_the_log_start() {
    // Proves the recovery-point checkpoint names flushed offsets only and the log-start checkpoint survives restarts.
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = LogManager::open(dir.path(), small_config(), 8).expect("open");
    let tp = TopicPartition::new("cp", 1);
    let log = manager.create(&tp, small_config()).expect("create");
    {
        let mut guard = log.lock().unwrap();
        for _ in 0..10 {
            guard.append(&batch(2, 10, 1), 0, 0).unwrap();
        }
        guard.flush().unwrap();
        for _ in 0..5 {
            guard.append(&batch(2, 10, 1), 0, 0).unwrap();
        }
        guard.set_log_start_offset(7).unwrap();
    }
    manager.write_checkpoints().expect("checkpoints");
    let recovery_points = read_offsets(&dir.path().join(RECOVERY_POINT_CHECKPOINT_FILE)).unwrap();
    assert_eq!(recovery_points.get(&tp), Some(&20), "only flushed offsets");
    let starts = read_offsets(&dir.path().join(LOG_START_OFFSET_CHECKPOINT_FILE)).unwrap();
    assert_eq!(starts.get(&tp), Some(&7));
    drop(log);
    drop(manager);
    let manager = LogManager::open(dir.path(), small_config(), 8).expect("reopen");
    let log = manager.get(&tp).unwrap();
    let guard = log.lock().unwrap();
    assert_eq!(guard.log_start_offset(), 7);
    assert_eq!(guard.log_end_offset(), 30);
    assert_eq!(
        guard.recovery_point(),
        30,
        "recovered data is flushed before it is named"
    );
}

#[test]
fn unchanged_checkpoints_are_not_rewritten() {
    // Proves the periodic checkpoint pass touches no file while nothing it records changed, and rewrites a checkpoint once its offsets move.
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = crate::storage::FaultInjector::new();
    let files = FileLayer::with_faults(std::sync::Arc::clone(&faults));
    let manager =
        LogManager::open_with_file_layer(dir.path(), small_config(), 8, files).expect("open");
    let tp = TopicPartition::new("cp", 0);
    let log = manager.create(&tp, small_config()).expect("create");
    log.lock().unwrap().append(&batch(2, 10, 1), 0, 0).unwrap();
    manager.write_checkpoints().expect("checkpoints");
    let ops = faults.file_ops();
    for _ in 0..3 {
        manager.write_checkpoints().expect("checkpoints");
    }
    assert_eq!(faults.file_ops(), ops, "nothing changed, nothing written");
    let recovery_points =
        || read_offsets(&dir.path().join(RECOVERY_POINT_CHECKPOINT_FILE)).unwrap();
    assert_eq!(recovery_points().get(&tp), Some(&0));
    log.lock().unwrap().flush().unwrap();
    manager.write_checkpoints().expect("checkpoints");
    assert_eq!(
        recovery_points().get(&tp),
        Some(&2),
        "a moved recovery point is written"
    );
    let starts = read_offsets(&dir.path().join(LOG_START_OFFSET_CHECKPOINT_FILE)).unwrap();
    assert_eq!(starts.get(&tp), Some(&0));
}

#[test]
fn flush_due_flushes_only_interval_partitions_whose_time_has_come() {
    // Proves flush_due applies each partition's IntervalMs policy and leaves others alone.
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = LogManager::open(dir.path(), small_config(), 8).expect("open");
    let interval = TopicPartition::new("interval", 0);
    let on_roll = TopicPartition::new("onroll", 0);
    let interval_log = manager
        .create(
            &interval,
            LogConfig {
                flush_policy: FlushPolicy::IntervalMs(500),
                ..small_config()
            },
        )
        .unwrap();
    let on_roll_log = manager
        .create(
            &on_roll,
            LogConfig {
                flush_policy: FlushPolicy::OnRoll,
                ..small_config()
            },
        )
        .unwrap();
    interval_log
        .lock()
        .unwrap()
        .append(&batch(1, 10, 1), 0, 1000)
        .unwrap();
    on_roll_log
        .lock()
        .unwrap()
        .append(&batch(1, 10, 1), 0, 1000)
        .unwrap();
    manager.flush_due(1400).expect("flush_due");
    assert_eq!(interval_log.lock().unwrap().recovery_point(), 0);
    manager.flush_due(1500).expect("flush_due");
    assert_eq!(interval_log.lock().unwrap().recovery_point(), 1);
    assert_eq!(on_roll_log.lock().unwrap().recovery_point(), 0);
}

#[test]
fn retention_pass_deletes_old_segments_and_persists_the_log_start() {
    // Proves the periodic retention pass applies each log's retention and checkpoints the new log start.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_ms: Some(60_000),
        ..small_config()
    };
    let manager = LogManager::open(dir.path(), config.clone(), 8).expect("open");
    let tp = TopicPartition::new("old", 0);
    let log = manager.create(&tp, config).unwrap();
    {
        let mut guard = log.lock().unwrap();
        for i in 0..100 {
            guard.append(&batch(1, 500, i * 1000), 0, 0).unwrap();
        }
    }
    manager.retention_pass(100_000);
    let start = log.lock().unwrap().log_start_offset();
    assert!(
        start > 0 && start <= 40 + 16,
        "segments older than 60 s went (start {start})"
    );
    let starts = read_offsets(&dir.path().join(LOG_START_OFFSET_CHECKPOINT_FILE)).unwrap();
    assert_eq!(starts.get(&tp), Some(&start));
}

#[test]
fn metadata_quorum_log_is_not_opened_as_a_partition() {
    // Proves the manager leaves `__cluster_metadata-0` to the quorum, which opens it itself.
    let dir = tempfile::tempdir().expect("tempdir");
    let quorum_dir = dir.path().join(crate::quorum::METADATA_LOG_DIR_NAME);
    let mut log = open_log(&quorum_dir, small_config());
    log.append(&batch(1, 10, 1), 0, 0).expect("append");
    log.close().expect("close");
    let manager = LogManager::open(dir.path(), small_config(), 16).expect("open");
    assert!(manager.partitions().is_empty());
}
