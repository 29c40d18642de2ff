//! Per-partition log configuration: segment sizes, index spacing, retention,
//! flushing, and compaction (`cleanup.policy`).

/// When appended bytes are fsynced. Each policy is a promise about what an
/// acknowledged append survives; see `docs/storage.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fsync after every append: an acknowledged append survives power loss.
    EveryBatch,
    /// fsync when `LogManager::flush_due` finds the partition dirty for at least
    /// this many milliseconds: a power loss may lose up to that window.
    IntervalMs(u64),
    /// fsync only when a segment is sealed (rolled) and at shutdown: a power
    /// loss may lose the whole active segment. A process crash loses nothing.
    OnRoll,
}

/// Kafka's `segment.bytes` default: 1 GiB.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 1 << 30;
/// Kafka's `segment.ms` default: 7 days.
pub const SEGMENT_MS_MAX_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's `index.interval.bytes` default.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u64 = 4096;
/// Kafka's `segment.index.bytes` default: 10 MiB.
pub const SEGMENT_INDEX_BYTES_MAX_DEFAULT: u64 = 10 << 20;
/// Kafka's `retention.ms` default: 7 days.
pub const RETENTION_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// Default flush interval; Kafka leaves flushing to the OS, we bound the window.
pub const FLUSH_INTERVAL_MS_DEFAULT: u64 = 1000;
/// How much the active segment's file and mapping grow at a time.
pub const PREALLOCATE_STEP_BYTES_DEFAULT: u64 = 8 << 20;
/// Appended bytes after which the active segment asks the kernel to start
/// writing them back (1 MiB).
pub const WRITEBACK_AFTER_BYTES_DEFAULT: u64 = 1 << 20;
/// Segment positions are stored as u32 in the offset index, and Kafka caps
/// `segment.bytes` at `i32::MAX`; so do we.
pub const SEGMENT_BYTES_LIMIT: u64 = i32::MAX as u64;
/// Kafka's `min.cleanable.dirty.ratio` default.
pub const MIN_CLEANABLE_DIRTY_RATIO_DEFAULT: f64 = 0.5;
/// Kafka's `delete.retention.ms` default: 1 day.
pub const DELETE_RETENTION_MS_DEFAULT: u64 = 24 * 60 * 60 * 1000;
/// Kafka's `min.compaction.lag.ms` default.
pub const MIN_COMPACTION_LAG_MS_DEFAULT: u64 = 0;

/// Kafka's `cleanup.policy`: `delete` (retention by size and age), `compact`
/// (keep the latest record per key), or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Retention by `retention_ms` and `retention_bytes` applies.
    pub delete: bool,
    /// The cleaner keeps only the latest record of each key in sealed segments.
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
    pub const COMPACT: CleanupPolicy = CleanupPolicy {
        delete: false,
        compact: true,
    };
    pub const COMPACT_DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: true,
    };

    /// Parses Kafka's comma-separated list (`delete`, `compact`, `compact,delete`).
    /// Returns `None` for an unknown or empty policy.
    pub fn parse(text: &str) -> Option<CleanupPolicy> {
        let mut policy = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in text.split(',') {
            match part.trim() {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                _ => return None,
            }
        }
        (policy.delete || policy.compact).then_some(policy)
    }
}

impl Default for CleanupPolicy {
    fn default() -> Self {
        CleanupPolicy::DELETE
    }
}

impl std::fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.compact, self.delete) {
            (true, true) => f.write_str("compact,delete"),
            (true, false) => f.write_str("compact"),
            _ => f.write_str("delete"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// Roll when the active segment would grow past this (Kafka `segment.bytes`).
    pub segment_bytes_max: u64,
    /// Roll when the active segment is older than this (Kafka `segment.ms`).
    pub segment_ms_max: u64,
    /// Bytes appended between two sparse index entries (Kafka `index.interval.bytes`).
    pub index_interval_bytes: u64,
    /// Largest size of one segment's offset index; the time index is capped at
    /// the same number of entries. A full index rolls the segment.
    pub segment_index_bytes_max: u64,
    /// Delete the oldest sealed segments while the log is larger than this.
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose largest timestamp is older than this.
    pub retention_ms: Option<u64>,
    /// When appended data is fsynced.
    pub flush_policy: FlushPolicy,
    /// How much the active segment's file and mapping grow at a time.
    pub preallocate_step_bytes: u64,
    /// Once this many bytes were appended since the last time, the active
    /// segment has the kernel start writing the whole pages appended since
    /// (`sync_file_range`, in the background; 0 = never). The data is not
    /// durable until the next fsync; that fsync then has less to write.
    pub writeback_after_bytes: u64,
    /// Whether retention deletes and/or the cleaner compacts (Kafka `cleanup.policy`).
    /// Without `delete`, `retention_ms` and `retention_bytes` are ignored, as in Kafka.
    pub cleanup_policy: CleanupPolicy,
    /// Clean a compacted log once its uncleaned bytes are at least this fraction
    /// of its cleanable bytes (Kafka `min.cleanable.dirty.ratio`), in `[0, 1]`.
    pub min_cleanable_dirty_ratio: f64,
    /// How long a tombstone survives after the cleaner first saw it (Kafka
    /// `delete.retention.ms`), so consumers reading from the start see the delete.
    pub delete_retention_ms: u64,
    /// A segment whose newest record is younger than this is not cleaned
    /// (Kafka `min.compaction.lag.ms`).
    pub min_compaction_lag_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
            segment_ms_max: SEGMENT_MS_MAX_DEFAULT,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            segment_index_bytes_max: SEGMENT_INDEX_BYTES_MAX_DEFAULT,
            retention_bytes: None,
            retention_ms: Some(RETENTION_MS_DEFAULT),
            flush_policy: FlushPolicy::IntervalMs(FLUSH_INTERVAL_MS_DEFAULT),
            preallocate_step_bytes: PREALLOCATE_STEP_BYTES_DEFAULT,
            writeback_after_bytes: WRITEBACK_AFTER_BYTES_DEFAULT,
            cleanup_policy: CleanupPolicy::DELETE,
            min_cleanable_dirty_ratio: MIN_CLEANABLE_DIRTY_RATIO_DEFAULT,
            delete_retention_ms: DELETE_RETENTION_MS_DEFAULT,
            min_compaction_lag_ms: MIN_COMPACTION_LAG_MS_DEFAULT,
        }
    }
}

impl LogConfig {
    /// Checks the bounds the storage engine relies on.
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_bytes_max == 0 || self.segment_bytes_max > SEGMENT_BYTES_LIMIT {
            return Err(format!(
                "segment_bytes_max {} must be in 1..={SEGMENT_BYTES_LIMIT}",
                self.segment_bytes_max
            ));
        }
        if self.segment_index_bytes_max < 64 {
            return Err(format!(
                "segment_index_bytes_max {} must be at least 64",
                self.segment_index_bytes_max
            ));
        }
        if self.preallocate_step_bytes == 0 {
            return Err("preallocate_step_bytes must be positive".to_string());
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return Err(format!(
                "min_cleanable_dirty_ratio {} must be in [0, 1]",
                self.min_cleanable_dirty_ratio
            ));
        }
        if !(self.cleanup_policy.delete || self.cleanup_policy.compact) {
            return Err("cleanup_policy must delete, compact, or both".to_string());
        }
        Ok(())
    }
}
