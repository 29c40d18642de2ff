//! Retention: deleting whole sealed segments by total size and by age, and
//! moving the log start offset (retention and DeleteRecords).
//!
//! A segment's age is its largest timestamp (as Kafka), or its file's
//! modification time if no batch carries a timestamp. Deletion goes oldest
//! first and stops at the first segment that must stay. The active segment is
//! never deleted while it holds data that is not expired; if it is entirely
//! expired by time, it is rolled first and then deleted like any other, so the
//! log becomes empty with its start offset at its end offset (as Kafka).
//!
//! Retention by size and age applies only if the cleanup policy includes
//! `delete`: a `compact`-only log keeps every segment (as Kafka), and only the
//! cleaner and DeleteRecords remove data from it.

use crate::storage::error::StorageError;
use crate::storage::log::PartitionLog;
use crate::storage::segment::Segment;

impl PartitionLog {
    /// Applies `retention_ms` and `retention_bytes` (if the cleanup policy
    /// includes `delete`); returns how many segments it deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        self.apply_retention_below(now_ms, i64::MAX)
    }

    /// Like [`PartitionLog::apply_retention`], but never deletes a segment
    /// holding offsets at or past `upper_bound_offset` (e.g. the high watermark).
    pub fn apply_retention_below(
        &mut self,
        now_ms: i64,
        upper_bound_offset: i64,
    ) -> Result<usize, StorageError> {
        if self.is_offline() {
            return Err(StorageError::Offline {
                reason: self.offline_reason().unwrap_or_default().to_string(),
            });
        }
        let expired = |segment: &Segment, retention_ms: u64| {
            let age_from = if segment.max_timestamp() >= 0 {
                segment.max_timestamp()
            } else {
                segment.last_modified_ms()
            };
            now_ms.saturating_sub(age_from) > retention_ms as i64
        };
        let policy_deletes = self.config.cleanup_policy.delete;
        let retention_ms = self.config.retention_ms.filter(|_| policy_deletes);
        let retention_bytes = self.config.retention_bytes.filter(|_| policy_deletes);
        // Roll an active segment that is expired as a whole, so it can go too.
        if let Some(retention_ms) = retention_ms {
            let active = self.segments.values().next_back().expect("active segment");
            let all_expired = self
                .segments
                .values()
                .all(|segment| segment.is_empty() || expired(segment, retention_ms));
            if !active.is_empty() && all_expired && active.next_offset() <= upper_bound_offset {
                self.roll(now_ms)?;
            }
        }
        // Trims deferred by readers' mappings get another chance here.
        self.retry_trims()?;
        let mut total_bytes = self.size_bytes();
        let mut doomed = Vec::new();
        let sealed_count = self.segments.len() - 1;
        for segment in self.segments.values().take(sealed_count) {
            if segment.next_offset() > upper_bound_offset {
                break;
            }
            let by_time = retention_ms.is_some_and(|retention_ms| expired(segment, retention_ms));
            let by_size = retention_bytes.is_some_and(|retention_bytes| {
                total_bytes - segment.size_bytes() >= retention_bytes
            });
            if !(by_time || by_size) {
                break;
            }
            total_bytes -= segment.size_bytes();
            doomed.push(segment.base_offset());
        }
        let Some(&last_doomed) = doomed.last() else {
            return Ok(0);
        };
        let new_start = self.segments[&last_doomed].next_offset();
        self.delete_segments_below(new_start)?;
        Ok(doomed.len())
    }

    /// Moves the log start offset up to `offset` (DeleteRecords), deleting the
    /// segments wholly below it. Reads below it then answer `OffsetOutOfRange`.
    pub fn set_log_start_offset(&mut self, offset: i64) -> Result<(), StorageError> {
        if self.is_offline() {
            return Err(StorageError::Offline {
                reason: self.offline_reason().unwrap_or_default().to_string(),
            });
        }
        let log_end_offset = self.log_end_offset();
        if offset > log_end_offset || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(());
        }
        self.delete_segments_below(offset)
    }

    /// Sets the log start offset to `new_start` and deletes every sealed
    /// segment that ends at or below it; the active segment always stays.
    /// The segments' files are renamed here and unlinked when the caller
    /// drops what [`PartitionLog::take_doomed`] returns, outside the lock.
    fn delete_segments_below(&mut self, new_start: i64) -> Result<(), StorageError> {
        assert!(
            new_start <= self.log_end_offset(),
            "log start offset past the log end"
        );
        self.log_start_offset = self.log_start_offset.max(new_start);
        // The cleaner must not swap in copies of segments read before this.
        self.generation += 1;
        let active_base = *self.segments.keys().next_back().expect("active segment");
        let doomed: Vec<i64> = self
            .segments
            .iter()
            .filter(|(&base, segment)| base != active_base && segment.next_offset() <= new_start)
            .map(|(&base, _)| base)
            .collect();
        for base in doomed {
            let segment = self.segments.remove(&base).expect("listed segment");
            tracing::info!(segment = %segment.log_path().display(), bytes = segment.size_bytes(),
                log_start_offset = self.log_start_offset, "deleting segment");
            self.dir_dirty = true;
            match segment.doom() {
                Ok(doomed) => self.doomed.push(doomed),
                Err(error) => return Err(self.fail("deleting a segment", error)),
            }
        }
        if let Err(error) = self
            .epochs
            .truncate_from_start(&self.files, self.log_start_offset)
        {
            return Err(self.fail("truncating the leader epoch cache", error));
        }
        Ok(())
    }
}
