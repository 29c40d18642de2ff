//! All partition logs under one data directory: opening (and recovering)
//! them, creating and deleting partitions, the periodic flush and retention
//! passes (flush, retention, cleaning), the checkpoint files, and the
//! clean-shutdown marker.
//!
//! ```text
//! <data_dir>/recovery-point-offset-checkpoint  per partition: all below is flushed
//! <data_dir>/log-start-offset-checkpoint       per partition: the log start offset
//! <data_dir>/cleaner-offset-checkpoint         per compacted partition: all below is cleaned
//! <data_dir>/.kafka_cleanshutdown              present only after a clean shutdown
//! <data_dir>/<topic>-<partition>/              one PartitionLog
//! ```
//!
//! The manager is internally synchronised and shareable in an `Arc`; each
//! log is behind its own `std::sync::Mutex`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::storage::checkpoint;
use crate::storage::cleaner::{self, CleanOutcome, CleanStats, CleanerConfig, CleanerError};
use crate::storage::config::LogConfig;
use crate::storage::error::StorageError;
use crate::storage::file::FileLayer;
use crate::storage::log::{OpenOptions, PartitionLog};
use crate::storage::mapping::MappingBudget;
use crate::storage::recovery::RecoveryReport;

pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
pub const RECOVERY_POINT_CHECKPOINT_FILE: &str = "recovery-point-offset-checkpoint";
pub const LOG_START_OFFSET_CHECKPOINT_FILE: &str = "log-start-offset-checkpoint";
pub const CLEANER_OFFSET_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// A partition directory being deleted is first renamed to end with this.
const DELETED_DIR_SUFFIX: &str = "-delete";

/// A partition, named on disk as `<topic>-<partition>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// The directory name: `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses a directory name; the partition is after the last `-`.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        let partition: i32 = partition.parse().ok()?;
        if topic.is_empty() || partition < 0 || topic.contains(char::is_whitespace) {
            return None;
        }
        Some(TopicPartition::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

type SharedLog = Arc<Mutex<PartitionLog>>;

/// What one [`LogManager::clean_pass`] did, per partition.
#[derive(Debug, Default)]
pub struct CleanPassReport {
    pub cleaned: Vec<(TopicPartition, CleanStats)>,
    /// The log changed during its cleaning; the next pass retries.
    pub abandoned: Vec<TopicPartition>,
    pub failed: Vec<(TopicPartition, String)>,
}

pub struct LogManager {
    data_dir: PathBuf,
    default_config: LogConfig,
    files: FileLayer,
    budget: MappingBudget,
    logs: RwLock<BTreeMap<TopicPartition, SharedLog>>,
    recovery_report: RecoveryReport,
    /// Serialises checkpoint writes and remembers what they last wrote.
    checkpoints_written: Mutex<CheckpointsWritten>,
    cleaner_config: Mutex<CleanerConfig>,
    /// Serialises cleaning passes: one cleaner, one partition at a time.
    cleaner_lock: Mutex<()>,
    /// Partitions whose data the cleaner found corrupt: skipped until restart.
    uncleanable: Mutex<BTreeSet<TopicPartition>>,
}

/// What each checkpoint file last had written to it (`None`: not written by
/// this process yet, or the last write failed; the cleaner offsets start as
/// what was read at open). A checkpoint whose contents did not change is not
/// rewritten: the periodic pass runs every `flush_check_interval_ms`, and
/// each write costs two fsyncs and a rename.
#[derive(Default)]
struct CheckpointsWritten {
    recovery_points: Option<BTreeMap<TopicPartition, i64>>,
    log_start_offsets: Option<BTreeMap<TopicPartition, i64>>,
    cleaner_offsets: Option<BTreeMap<TopicPartition, i64>>,
}

fn lock_log(log: &SharedLog) -> MutexGuard<'_, PartitionLog> {
    // A panic while holding a log's lock is a broken invariant of ours; the
    // log's on-disk state stays recoverable, so later callers proceed.
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LogManager {
    /// Opens every partition under `data_dir` (created if absent), recovering
    /// them unless the clean-shutdown marker is present; see `recovery.rs`.
    /// `mappings_max` bounds the memory maps cached across all partitions.
    pub fn open(
        data_dir: &Path,
        default_config: LogConfig,
        mappings_max: usize,
    ) -> Result<LogManager, StorageError> {
        Self::open_with_file_layer(data_dir, default_config, mappings_max, FileLayer::real())
    }

    /// [`LogManager::open`] with an explicit file layer (fault injection in tests).
    pub fn open_with_file_layer(
        data_dir: &Path,
        default_config: LogConfig,
        mappings_max: usize,
        files: FileLayer,
    ) -> Result<LogManager, StorageError> {
        default_config
            .validate()
            .map_err(|reason| StorageError::InvalidConfig { reason })?;
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StorageError::io(format!("create {}", data_dir.display()), e))?;
        let marker = data_dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_shutdown = marker.exists();
        let read_checkpoint = |name: &str| match checkpoint::read_offsets(&data_dir.join(name)) {
            Ok(offsets) => offsets,
            Err(error) => {
                // Without it recovery scans everything and the log starts at its
                // first segment: slower, never wrong about what is on disk.
                tracing::warn!(%error, "ignoring unreadable checkpoint {name}");
                BTreeMap::new()
            }
        };
        let recovery_points = read_checkpoint(RECOVERY_POINT_CHECKPOINT_FILE);
        let log_start_offsets = read_checkpoint(LOG_START_OFFSET_CHECKPOINT_FILE);
        // Without it every compacted log is cleaned again from its start.
        let cleaner_offsets = read_checkpoint(CLEANER_OFFSET_CHECKPOINT_FILE);
        let budget = MappingBudget::new(mappings_max);
        let mut report = RecoveryReport {
            clean_shutdown,
            ..RecoveryReport::default()
        };
        let mut logs = BTreeMap::new();
        let entries = std::fs::read_dir(data_dir)
            .map_err(|e| StorageError::io(format!("list {}", data_dir.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| StorageError::io(format!("list {}", data_dir.display()), e))?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(DELETED_DIR_SUFFIX) {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| StorageError::io(format!("remove {}", path.display()), e))?;
                continue;
            }
            // The metadata quorum's log is opened by the quorum, never as a topic.
            if name == crate::quorum::METADATA_LOG_DIR_NAME {
                continue;
            }
            let Some(tp) = TopicPartition::from_dir_name(name) else {
                tracing::warn!(dir = %path.display(), "skipping a directory that names no partition");
                continue;
            };
            let options = OpenOptions {
                recovery_point: recovery_points.get(&tp).copied(),
                log_start_offset: log_start_offsets.get(&tp).copied(),
                clean_shutdown,
                cleaner_offset: cleaner_offsets.get(&tp).copied(),
            };
            let (log, log_report) = PartitionLog::open(
                &path,
                default_config.clone(),
                files.clone(),
                budget.clone(),
                options,
            )?;
            report.add(&log_report);
            logs.insert(tp, Arc::new(Mutex::new(log)));
        }
        let manager = LogManager {
            data_dir: data_dir.to_path_buf(),
            default_config,
            files,
            budget,
            logs: RwLock::new(logs),
            recovery_report: report,
            checkpoints_written: Mutex::new(CheckpointsWritten {
                cleaner_offsets: Some(cleaner_offsets),
                ..CheckpointsWritten::default()
            }),
            cleaner_config: Mutex::new(CleanerConfig::default()),
            cleaner_lock: Mutex::new(()),
            uncleanable: Mutex::new(BTreeSet::new()),
        };
        manager.write_checkpoints()?;
        if clean_shutdown {
            // From here on the logs change: the next start must not trust them blindly.
            manager
                .files
                .remove_file(&marker)
                .and_then(|()| manager.files.sync_dir(data_dir))
                .map_err(|e| StorageError::io("remove the clean-shutdown marker", e))?;
        }
        Ok(manager)
    }

    fn logs(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<TopicPartition, SharedLog>> {
        self.logs
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn all_logs(&self) -> Vec<(TopicPartition, SharedLog)> {
        self.logs()
            .iter()
            .map(|(tp, log)| (tp.clone(), Arc::clone(log)))
            .collect()
    }

    /// What opening the logs found: scans, truncations, whether the last stop was clean.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery_report
    }

    /// The mapping budget shared by all logs.
    pub fn mapping_budget(&self) -> &MappingBudget {
        &self.budget
    }

    pub fn default_config(&self) -> &LogConfig {
        &self.default_config
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Mutex<PartitionLog>>> {
        self.logs().get(tp).cloned()
    }

    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.logs().keys().cloned().collect()
    }

    /// Creates the partition's log, or returns the existing one unchanged.
    pub fn create(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
    ) -> Result<Arc<Mutex<PartitionLog>>, StorageError> {
        self.create_inner(tp, config, None)
    }

    /// Like [`LogManager::create`], and writes `partition.metadata` with the
    /// topic id if the directory has none. An existing, different topic id is an error.
    pub fn create_with_topic_id(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
        topic_id: uuid::Uuid,
    ) -> Result<Arc<Mutex<PartitionLog>>, StorageError> {
        self.create_inner(tp, config, Some(topic_id))
    }

    fn create_inner(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
        topic_id: Option<uuid::Uuid>,
    ) -> Result<Arc<Mutex<PartitionLog>>, StorageError> {
        if TopicPartition::from_dir_name(&tp.dir_name()).as_ref() != Some(tp) {
            return Err(StorageError::InvalidConfig {
                reason: format!("{tp} cannot name a partition directory"),
            });
        }
        let mut logs = self.logs.write().unwrap_or_else(|p| p.into_inner());
        let log = match logs.get(tp) {
            Some(log) => Arc::clone(log),
            None => {
                let dir = self.data_dir.join(tp.dir_name());
                // A directory left from before is recovered; a new one has nothing to scan.
                let options = OpenOptions {
                    recovery_point: Some(0),
                    log_start_offset: Some(0),
                    clean_shutdown: !dir.exists(),
                    cleaner_offset: None,
                };
                let (log, _) = PartitionLog::open(
                    &dir,
                    config,
                    self.files.clone(),
                    self.budget.clone(),
                    options,
                )?;
                self.files
                    .sync_dir(&self.data_dir)
                    .map_err(|e| StorageError::io("sync the data directory", e))?;
                let log = Arc::new(Mutex::new(log));
                logs.insert(tp.clone(), Arc::clone(&log));
                log
            }
        };
        drop(logs);
        if let Some(topic_id) = topic_id {
            let mut guard = lock_log(&log);
            match guard.topic_id() {
                None => guard.set_topic_id(topic_id)?,
                Some(existing) if existing == topic_id => {}
                Some(existing) => {
                    return Err(StorageError::TopicIdMismatch {
                        partition: tp.to_string(),
                        stored: existing,
                        requested: topic_id,
                    })
                }
            }
        }
        Ok(log)
    }

    /// Removes the partition: closes its log and deletes its directory.
    /// `Bytes` already handed to readers stay readable (the files are
    /// unlinked, their mappings live on until the last slice is dropped).
    pub fn delete(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        let removed = self
            .logs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tp);
        let Some(log) = removed else {
            return Ok(());
        };
        let dir = {
            let mut guard = lock_log(&log);
            guard.unmap();
            guard.mark_offline("the partition was deleted");
            guard.dir().to_path_buf()
        };
        let doomed = self.data_dir.join(format!(
            "{}.{}{DELETED_DIR_SUFFIX}",
            tp.dir_name(),
            uuid::Uuid::new_v4().simple()
        ));
        let io = |e| StorageError::io(format!("delete {}", dir.display()), e);
        std::fs::rename(&dir, &doomed).map_err(io)?;
        self.files.sync_dir(&self.data_dir).map_err(io)?;
        std::fs::remove_dir_all(&doomed).map_err(io)?;
        self.uncleanable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tp);
        self.write_checkpoints()
    }

    /// Flushes every partition whose `IntervalMs` flush is due. A failing
    /// partition goes offline; the others are still flushed; the first error is returned.
    pub fn flush_due(&self, now_ms: i64) -> Result<(), StorageError> {
        let mut first_error = None;
        for (_, log) in self.all_logs() {
            // The trims and fsyncs run without the partition lock, so appends are not held up by the disk.
            let Some(mut job) = lock_log(&log).begin_flush_if_due(now_ms) else {
                continue;
            };
            let result = job.run();
            if let Err(error) = lock_log(&log).complete_flush(job, result) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Applies retention to every partition and persists moved log start offsets.
    pub fn retention_pass(&self, now_ms: i64) {
        self.retention_pass_below(now_ms, &|_| i64::MAX)
    }

    /// Like [`LogManager::retention_pass`], never deleting a segment that
    /// holds offsets at or past `upper_bound(partition)`: the high
    /// watermark, so that retention never removes a record followers may
    /// not have yet, nor one a consumer has not been allowed to see.
    pub fn retention_pass_below(&self, now_ms: i64, upper_bound: &dyn Fn(&TopicPartition) -> i64) {
        let mut deleted = 0;
        for (tp, log) in self.all_logs() {
            let mut guard = lock_log(&log);
            if guard.is_offline() {
                continue;
            }
            match guard.apply_retention_below(now_ms, upper_bound(&tp)) {
                Ok(count) => deleted += count,
                Err(error) => tracing::warn!(partition = %tp, %error, "retention failed"),
            }
            let doomed = guard.take_doomed();
            drop(guard);
            // Unlinked here, without the lock: appends to the partition go on.
            drop(doomed);
        }
        if deleted > 0 {
            if let Err(error) = self.write_checkpoints() {
                tracing::warn!(%error, "writing checkpoints after retention failed");
            }
        }
    }

    /// The cleaner's settings (the key map's memory).
    pub fn cleaner_config(&self) -> CleanerConfig {
        self.cleaner_config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_cleaner_config(&self, config: CleanerConfig) {
        *self
            .cleaner_config
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Cleans every compacted partition that is dirty enough, one at a time,
    /// then writes `cleaner-offset-checkpoint`. See [`LogManager::clean_pass_below`].
    pub fn clean_pass(&self, now_ms: i64) -> CleanPassReport {
        self.clean_pass_below(now_ms, &|_| i64::MAX)
    }

    /// Like [`LogManager::clean_pass`], never cleaning a segment that holds
    /// offsets at or past `upper_bound(partition)`: pass the high watermark
    /// once followers exist, so that a record a new leader may not have never
    /// hides an older one. Each log's lock is held only to plan and to swap;
    /// the rewrite runs without it. Blocking: run it on a blocking thread.
    /// A partition with corrupt data is reported once and then skipped.
    pub fn clean_pass_below(
        &self,
        now_ms: i64,
        upper_bound: &dyn Fn(&TopicPartition) -> i64,
    ) -> CleanPassReport {
        let _one_cleaner = self.cleaner_lock.lock().unwrap_or_else(|p| p.into_inner());
        let config = self.cleaner_config();
        let mut report = CleanPassReport::default();
        for (tp, log) in self.all_logs() {
            let skipped = self
                .uncleanable
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&tp);
            if skipped {
                continue;
            }
            match cleaner::clean_log(&*log, now_ms, upper_bound(&tp), &config) {
                Ok(CleanOutcome::NotDue) => {}
                Ok(CleanOutcome::Cleaned(stats)) => report.cleaned.push((tp, stats)),
                Ok(CleanOutcome::Abandoned) => report.abandoned.push(tp),
                Err(error) => {
                    if matches!(error, CleanerError::CorruptBatch { .. }) {
                        tracing::error!(partition = %tp, %error,
                            "the cleaner skips this partition until restart");
                        self.uncleanable
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(tp.clone());
                    } else {
                        tracing::warn!(partition = %tp, %error, "cleaning failed");
                    }
                    report.failed.push((tp, error.to_string()));
                }
            }
        }
        if let Err(error) = self.write_checkpoints() {
            tracing::warn!(%error, "writing checkpoints after cleaning failed");
        }
        report
    }

    /// Writes the recovery points (flushed offsets only) and log start
    /// offsets, and the cleaner offsets, each only if it changed since this
    /// process last wrote it.
    pub fn write_checkpoints(&self) -> Result<(), StorageError> {
        let mut written = self
            .checkpoints_written
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut recovery_points = BTreeMap::new();
        let mut log_start_offsets = BTreeMap::new();
        let mut cleaner_offsets = BTreeMap::new();
        for (tp, log) in self.all_logs() {
            let guard = lock_log(&log);
            recovery_points.insert(tp.clone(), guard.recovery_point());
            if let Some(offset) = guard.cleaner_offset() {
                cleaner_offsets.insert(tp.clone(), offset);
            }
            log_start_offsets.insert(tp, guard.log_start_offset());
        }
        let written = &mut *written;
        for (name, offsets, last) in [
            (
                CLEANER_OFFSET_CHECKPOINT_FILE,
                cleaner_offsets,
                &mut written.cleaner_offsets,
            ),
            (
                RECOVERY_POINT_CHECKPOINT_FILE,
                recovery_points,
                &mut written.recovery_points,
            ),
            (
                LOG_START_OFFSET_CHECKPOINT_FILE,
                log_start_offsets,
                &mut written.log_start_offsets,
            ),
        ] {
            if last.as_ref() == Some(&offsets) {
                continue;
            }
            // A failed write leaves the file in an unknown state: rewrite it next time.
            *last = None;
            checkpoint::write_offsets(&self.files, &self.data_dir.join(name), &offsets)?;
            *last = Some(offsets);
        }
        Ok(())
    }

    /// Flushes and closes every log (trimming files to their data), writes the
    /// checkpoints and, if every log closed cleanly, the clean-shutdown marker.
    /// The logs answer `Offline` afterwards.
    pub fn shutdown(&self) -> Result<(), StorageError> {
        let mut first_error = None;
        for (tp, log) in self.all_logs() {
            let mut guard = lock_log(&log);
            if let Err(error) = guard.close() {
                tracing::warn!(partition = %tp, %error, "log did not close cleanly");
                first_error.get_or_insert(error);
            }
        }
        self.write_checkpoints()?;
        if let Some(error) = first_error {
            return Err(error);
        }
        self.files
            .write_atomically(&self.data_dir.join(CLEAN_SHUTDOWN_FILE), b"")
            .map_err(|e| StorageError::io("write the clean-shutdown marker", e))
    }

    /// Writes a per-partition offset checkpoint named `name` in the data dir
    /// (atomically, through the file layer).
    pub fn write_offset_checkpoint(
        &self,
        name: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), StorageError> {
        checkpoint::write_offsets(&self.files, &self.data_dir.join(name), offsets)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}
