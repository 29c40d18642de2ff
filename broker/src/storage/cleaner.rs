//! Log compaction (`cleanup.policy=compact`), after Kafka's log cleaner: in
//! the sealed segments of a compacted log, keep only the latest record of
//! each key, and drop a key's tombstone (a null value) once
//! `delete.retention.ms` has passed since the cleaner first kept it.
//!
//! One cleaning of one log runs in three phases, of which only the short
//! first and last take the log's lock:
//!
//! 1. **Plan** (locked, `PartitionLog::cleaning_plan`): list the cleanable
//!    segments: the sealed ones below the first uncleanable offset (the active
//!    segment's base, the caller's upper bound such as the high watermark,
//!    and any segment younger than `min.compaction.lag.ms`). Their bytes below
//!    the cleaner offset are *clean*; the rest are *dirty*. Clean only if the
//!    dirty share is at least `min.cleanable.dirty.ratio`, or a kept
//!    tombstone's delete horizon has passed.
//! 2. **Build** (unlocked, each segment's bytes fetched as a zero-copy `Bytes`
//!    under a brief lock): walk the dirty records into an `OffsetMap` (key →
//!    latest offset) bounded by `dedupe_buffer_bytes`; if it fills up, the map
//!    ends at that record and the rest waits for the next cleaning. Then
//!    rewrite the segments below the map's end, in groups of consecutive
//!    segments that fit one segment, into `.cleaned` files, dropping every
//!    record whose key has a later offset in the map.
//! 3. **Swap** (locked, per group, `PartitionLog::install_cleaned`): check
//!    that the log's generation is unchanged (no truncation, retention or
//!    deletion since the plan), then swap the cleaned group in (`swap.rs`). At
//!    the end the cleaner offset moves to the map's end.
//!
//! What is kept, and why nothing is lost:
//! - Offsets never change; a cleaned log has gaps. A rewritten batch keeps
//!   its base offset and `last_offset_delta` (`batch_filter.rs`); a batch that
//!   loses every record is dropped. (Kafka keeps the last batch of each
//!   idempotent producer, even empty, to keep its sequence state; this cleaner
//!   does not.)
//! - A record is removed only if the map holds a later offset for its key,
//!   and every map entry names a record that exists below the uncleanable
//!   offset; so the latest record of every key always survives.
//! - A tombstone is the latest record of its key when it is cleaned; the
//!   first time, its batch gets a delete horizon of `now +
//!   delete.retention.ms`. After the horizon, the tombstone goes.
//! - Compressed batches cannot be read here (the broker has no codecs):
//!   compacted topics need uncompressed batches. A compressed batch is kept
//!   byte for byte, and while the log holds one, no tombstone is removed (an
//!   older value of its key might hide in the compressed batch). Control
//!   batches and records without a key are kept too.
//! - The active segment is never cleaned, and the log start offset never moves.

use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

use bytes::Bytes;
use protocol::batch::{BatchError, BatchHeader, Compression, BATCH_HEADER_BYTES};
use thiserror::Error;

use crate::storage::batch_filter::{delete_horizon_ms, rebuild_batch, scan_records, RecordSpan};
use crate::storage::config::LogConfig;
use crate::storage::error::StorageError;
use crate::storage::file::FileLayer;
use crate::storage::log::PartitionLog;
use crate::storage::mapping::MappingBudget;
use crate::storage::offset_map::OffsetMap;
use crate::storage::segment::{Segment, RELATIVE_OFFSET_MAX, SEGMENT_POSITION_MAX};
use crate::storage::swap::{self, CLEANED_SUFFIX};

/// Kafka's `log.cleaner.dedupe.buffer.size` default: memory for the key map.
pub const DEDUPE_BUFFER_BYTES_DEFAULT: usize = 128 << 20;

/// Settings of the cleaner shared by all logs of a `LogManager`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanerConfig {
    /// Memory for the key map of one cleaning (Kafka
    /// `log.cleaner.dedupe.buffer.size`). A log with more distinct keys in its
    /// dirty part than fit is cleaned over several cleanings, oldest first.
    pub dedupe_buffer_bytes: usize,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            dedupe_buffer_bytes: DEDUPE_BUFFER_BYTES_DEFAULT,
        }
    }
}

/// What one cleaning of one log did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// The first offset that was not clean before.
    pub first_dirty_offset: i64,
    /// Everything below this offset is clean now: the next cleaning starts here.
    pub cleaned_up_to: i64,
    /// Distinct keys in the map.
    pub keys: usize,
    pub segments_read: u64,
    pub segments_written: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Records removed, tombstones included.
    pub records_removed: u64,
    pub tombstones_removed: u64,
    /// Batches dropped because they lost every record.
    pub batches_removed: u64,
    /// Compressed batches kept untouched (their records cannot be read).
    pub compressed_batches_kept: u64,
    /// Uncompressed batches whose records could not be read, kept untouched.
    pub unreadable_batches_kept: u64,
}

/// Why a cleaning failed. The log keeps its old segments in every case;
/// only an I/O error while swapping takes the partition offline.
#[derive(Debug, Error)]
pub enum CleanerError {
    #[error(
        "corrupt batch at offset {base_offset} in segment {segment_base_offset} of {dir}: {source}"
    )]
    CorruptBatch {
        dir: String,
        segment_base_offset: i64,
        base_offset: i64,
        #[source]
        source: BatchError,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("the cleaned segment {base_offset} of {dir} would pass {limit} bytes")]
    SegmentTooLarge {
        dir: String,
        base_offset: i64,
        limit: u64,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The result of asking a log to clean itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CleanOutcome {
    /// Not compacted, offline, or not dirty enough.
    NotDue,
    Cleaned(CleanStats),
    /// The log changed under the cleaner (truncation, retention, deletion).
    /// Nothing was lost; the next pass tries again.
    Abandoned,
}

/// A cleanable segment, as the plan saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SegmentInfo {
    base_offset: i64,
    next_offset: i64,
    size_bytes: u64,
    last_modified_ms: i64,
}

/// What a cleaning reads, decided under the lock.
pub(crate) struct CleaningPlan {
    dir: PathBuf,
    config: LogConfig,
    files: FileLayer,
    budget: MappingBudget,
    generation: u64,
    first_dirty_offset: i64,
    /// Sealed, cleanable segments, oldest first.
    segments: Vec<SegmentInfo>,
}

impl CleaningPlan {
    /// The offset after the last cleanable segment.
    fn end_offset(&self) -> i64 {
        self.segments
            .last()
            .map_or(self.first_dirty_offset, |s| s.next_offset)
    }

    /// Consecutive segments below `clean_end`, grouped so that each group's
    /// bytes fit one segment and its offsets one segment's relative range.
    fn groups(&self, clean_end: i64) -> Vec<Vec<SegmentInfo>> {
        let bytes_max = self.config.segment_bytes_max.min(SEGMENT_POSITION_MAX);
        let mut groups: Vec<Vec<SegmentInfo>> = Vec::new();
        let mut group_bytes = 0;
        for &segment in self.segments.iter().filter(|s| s.base_offset < clean_end) {
            match groups.last_mut() {
                Some(group)
                    if group_bytes + segment.size_bytes <= bytes_max
                        && segment.next_offset - 1 - group[0].base_offset
                            <= RELATIVE_OFFSET_MAX =>
                {
                    group.push(segment);
                    group_bytes += segment.size_bytes;
                }
                _ => {
                    groups.push(vec![segment]);
                    group_bytes = segment.size_bytes;
                }
            }
        }
        groups
    }

    fn corrupt(&self, segment: &SegmentInfo, base_offset: i64, source: BatchError) -> CleanerError {
        CleanerError::CorruptBatch {
            dir: self.dir.display().to_string(),
            segment_base_offset: segment.base_offset,
            base_offset,
            source,
        }
    }

    fn io(&self, context: &str, source: io::Error) -> CleanerError {
        CleanerError::Io {
            context: format!("{context} in {}", self.dir.display()),
            source,
        }
    }
}

/// Access to the log being cleaned: through its mutex (the manager, which
/// releases the lock between steps) or through `&mut` (a direct call).
pub(crate) trait LockedLog {
    fn with_log<R>(&mut self, f: impl FnOnce(&mut PartitionLog) -> R) -> R;
}

impl LockedLog for &mut PartitionLog {
    fn with_log<R>(&mut self, f: impl FnOnce(&mut PartitionLog) -> R) -> R {
        f(self)
    }
}

impl LockedLog for &Mutex<PartitionLog> {
    fn with_log<R>(&mut self, f: impl FnOnce(&mut PartitionLog) -> R) -> R {
        // As in the manager: a panic under the lock leaves the log recoverable.
        let mut guard = self.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

/// The whole batches of a segment's bytes, each checked: lengths, and with
/// `validate` also magic, offsets and CRC.
fn checked_batches<'a>(
    plan: &'a CleaningPlan,
    segment: &'a SegmentInfo,
    data: &'a [u8],
    validate: bool,
) -> impl Iterator<Item = Result<(&'a [u8], BatchHeader<'a>), CleanerError>> + 'a {
    let mut rest = data;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        let checked = BatchHeader::new(rest).and_then(|header| {
            let total = header.total_bytes();
            if validate {
                header.validate()?;
            } else if total < BATCH_HEADER_BYTES || total > rest.len() {
                return Err(BatchError::Truncated {
                    available: rest.len(),
                    needed: total.max(BATCH_HEADER_BYTES),
                });
            }
            Ok(total)
        });
        match checked {
            Ok(total) => {
                let batch = &rest[..total];
                rest = &rest[total..];
                let header = BatchHeader::new(batch).expect("validated above");
                Some(Ok((batch, header)))
            }
            Err(error) => {
                failed = true;
                let base_offset = BatchHeader::new(rest).map_or(-1, |h| h.base_offset());
                Some(Err(plan.corrupt(segment, base_offset, error)))
            }
        }
    })
}

/// How the records of one batch fare.
enum Verdict {
    Keep,
    Drop,
    Rewrite(Vec<u8>),
}

/// What decides each record's fate in one cleaning.
struct Filter<'a> {
    map: &'a OffsetMap,
    /// Below this offset the log is clean once this cleaning is done.
    clean_end: i64,
    now_ms: i64,
    delete_retention_ms: u64,
    /// False while the log holds a compressed batch (see the module docs).
    remove_tombstones: bool,
}

impl Filter<'_> {
    fn retains(&self, record: &RecordSpan<'_>, horizon_ms: Option<i64>) -> bool {
        let Some(key) = record.key else {
            return true;
        };
        if self
            .map
            .get(key)
            .is_some_and(|latest| latest > record.offset)
        {
            return false;
        }
        if !record.is_tombstone || record.offset >= self.clean_end {
            return true;
        }
        // The latest record of its key, and a tombstone: it goes once its
        // delete horizon has passed.
        !(self.remove_tombstones && horizon_ms.is_some_and(|horizon| self.now_ms >= horizon))
    }

    fn judge(
        &self,
        batch: &[u8],
        header: &BatchHeader<'_>,
        stats: &mut CleanStats,
        tombstones_due_ms: &mut Option<i64>,
    ) -> Verdict {
        if header.compression() != Compression::None {
            stats.compressed_batches_kept += 1;
            return Verdict::Keep;
        }
        if header.is_control() {
            return Verdict::Keep;
        }
        let records = match scan_records(batch) {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(base_offset = header.base_offset(), %error,
                    "keeping a batch whose records cannot be read");
                stats.unreadable_batches_kept += 1;
                return Verdict::Keep;
            }
        };
        let horizon_ms = delete_horizon_ms(header);
        let mut kept = Vec::with_capacity(records.len());
        let mut needs_horizon = false;
        for record in &records {
            if self.retains(record, horizon_ms) {
                needs_horizon |= record.is_tombstone
                    && record.key.is_some()
                    && record.offset < self.clean_end
                    && horizon_ms.is_none();
                kept.push(record);
            } else {
                stats.records_removed += 1;
                stats.tombstones_removed += u64::from(record.is_tombstone);
            }
        }
        let new_horizon_ms =
            needs_horizon.then(|| self.now_ms.saturating_add(self.delete_retention_ms as i64));
        // A tombstone that cannot go (see `remove_tombstones`) makes no cleaning due.
        if let Some(horizon) = horizon_ms
            .or(new_horizon_ms)
            .filter(|_| self.remove_tombstones)
        {
            if kept.iter().any(|r| r.is_tombstone && r.key.is_some()) {
                *tombstones_due_ms =
                    Some(tombstones_due_ms.map_or(horizon, |due| due.min(horizon)));
            }
        }
        if kept.len() == records.len() && new_horizon_ms.is_none() {
            Verdict::Keep
        } else if kept.is_empty() {
            stats.batches_removed += 1;
            Verdict::Drop
        } else {
            Verdict::Rewrite(rebuild_batch(batch, &kept, new_horizon_ms))
        }
    }
}

/// A group's cleaned copy, written and fsynced under `.cleaned` names.
pub(crate) struct CleanedGroup {
    base_offset: i64,
    sources: Vec<SegmentInfo>,
}

enum GroupBuild {
    /// One segment whose every batch stays as it is: nothing to write.
    Unchanged,
    Written(CleanedGroup),
    Abandoned,
}

/// The cleaned copy of a group being written.
struct Output {
    segment: Segment,
    base_offset: i64,
}

impl Output {
    fn create(plan: &CleaningPlan, base_offset: i64) -> Result<Output, CleanerError> {
        let segment = Segment::create_temporary(
            &plan.dir,
            base_offset,
            CLEANED_SUFFIX,
            &plan.config,
            &plan.files,
            &plan.budget,
        )
        .map_err(|e| plan.io("creating a cleaned segment", e))?;
        Ok(Output {
            segment,
            base_offset,
        })
    }

    /// Appends whole batches, keeping their offsets.
    fn write(
        &mut self,
        plan: &CleaningPlan,
        records: &[u8],
        batches: usize,
        now_ms: i64,
    ) -> Result<(), CleanerError> {
        if records.is_empty() {
            return Ok(());
        }
        if self.segment.size_bytes() + records.len() as u64 > SEGMENT_POSITION_MAX {
            return Err(CleanerError::SegmentTooLarge {
                dir: plan.dir.display().to_string(),
                base_offset: self.base_offset,
                limit: SEGMENT_POSITION_MAX,
            });
        }
        self.segment
            .reserve(
                records.len() as u64,
                batches,
                plan.config.preallocate_step_bytes,
            )
            .map_err(|e| plan.io("allocating a cleaned segment", e))?;
        self.segment
            .append(records, None, now_ms)
            .map_err(|e| plan.io("writing a cleaned segment", e))?;
        Ok(())
    }
}

/// Writes the cleaned copy of one group, unlocked except to fetch each
/// segment's bytes.
fn build_group<L: LockedLog>(
    log: &mut L,
    plan: &CleaningPlan,
    group: &[SegmentInfo],
    filter: &Filter<'_>,
    stats: &mut CleanStats,
    tombstones_due_ms: &mut Option<i64>,
) -> Result<GroupBuild, CleanerError> {
    let base_offset = group[0].base_offset;
    // A group of several segments is always rewritten (it merges them); a
    // single segment only once a batch changes.
    let mut output = if group.len() > 1 {
        Some(Output::create(plan, base_offset)?)
    } else {
        None
    };
    for segment in group {
        let read = log.with_log(|log| log.cleaner_read(segment.base_offset, plan.generation));
        let Some(data) = read? else {
            return Ok(GroupBuild::Abandoned);
        };
        stats.segments_read += 1;
        stats.bytes_read += data.len() as u64;
        // Kept batches are copied in runs: `data[run_start..position]` holds
        // `run_batches` batches not written yet.
        let (mut run_start, mut position, mut run_batches) = (0usize, 0usize, 0usize);
        for checked in checked_batches(plan, segment, &data, true) {
            let (batch, header) = checked?;
            let verdict = filter.judge(batch, &header, stats, tombstones_due_ms);
            if !matches!(verdict, Verdict::Keep) {
                // A change: the copy is needed from here on (with the run before it).
                if output.is_none() {
                    output = Some(Output::create(plan, base_offset)?);
                }
                let out = output.as_mut().expect("created above");
                out.write(plan, &data[run_start..position], run_batches, filter.now_ms)?;
                if let Verdict::Rewrite(rebuilt) = verdict {
                    out.write(plan, &rebuilt, 1, filter.now_ms)?;
                }
                (run_start, run_batches) = (position + batch.len(), 0);
            } else {
                run_batches += 1;
            }
            position += batch.len();
        }
        if let Some(out) = output.as_mut() {
            out.write(plan, &data[run_start..position], run_batches, filter.now_ms)?;
        }
    }
    let Some(Output { mut segment, .. }) = output else {
        return Ok(GroupBuild::Unchanged);
    };
    segment
        .seal()
        .map_err(|e| plan.io("sealing a cleaned segment", e))?;
    // Off the append path already: trim now rather than after the swap.
    segment
        .trim()
        .map_err(|e| plan.io("trimming a cleaned segment", e))?;
    // The copy carries its sources' age, for retention by file time.
    let last_modified_ms = group.iter().map(|s| s.last_modified_ms).max().unwrap_or(0);
    plan.files
        .set_modified_ms(segment.log_path(), last_modified_ms)
        .map_err(|e| plan.io("dating a cleaned segment", e))?;
    segment
        .flush()
        .map_err(|e| plan.io("fsyncing a cleaned segment", e))?;
    stats.segments_written += 1;
    stats.bytes_written += segment.size_bytes();
    assert!(
        segment.next_offset() <= group.last().expect("a group is never empty").next_offset,
        "a cleaned copy must not hold offsets past its sources"
    );
    drop(segment);
    Ok(GroupBuild::Written(CleanedGroup {
        base_offset,
        sources: group.to_vec(),
    }))
}

/// Cleans one log: plan under the lock, build without it, swap under it.
pub(crate) fn clean_log<L: LockedLog>(
    mut log: L,
    now_ms: i64,
    upper_bound_offset: i64,
    config: &CleanerConfig,
) -> Result<CleanOutcome, CleanerError> {
    let Some(mut plan) = log.with_log(|log| log.cleaning_plan(now_ms, upper_bound_offset)) else {
        return Ok(CleanOutcome::NotDue);
    };
    let mut stats = CleanStats {
        first_dirty_offset: plan.first_dirty_offset,
        ..CleanStats::default()
    };
    // 1. The key map over the dirty records (their batches validated). The
    //    clean segments' headers are walked only to notice compressed batches;
    //    the rewrite validates every batch it reads.
    let mut map = OffsetMap::new(config.dedupe_buffer_bytes);
    let mut map_end = plan.end_offset();
    let mut map_full = false;
    let mut compressed_seen = false;
    for segment in &plan.segments {
        let read = log.with_log(|log| log.cleaner_read(segment.base_offset, plan.generation));
        let Some(data) = read? else {
            return Ok(CleanOutcome::Abandoned);
        };
        let dirty = segment.next_offset > plan.first_dirty_offset;
        for checked in checked_batches(&plan, segment, &data, dirty) {
            let (batch, header) = checked?;
            if header.compression() != Compression::None {
                compressed_seen = true;
                continue;
            }
            if !dirty
                || map_full
                || header.is_control()
                || header.last_offset() < plan.first_dirty_offset
            {
                continue;
            }
            let Ok(records) = scan_records(batch) else {
                continue;
            };
            for record in records
                .iter()
                .filter(|r| r.offset >= plan.first_dirty_offset)
            {
                let Some(key) = record.key else {
                    continue;
                };
                if !map.put(key, record.offset) {
                    // Full: the map covers the records before this one.
                    map_end = record.offset;
                    map_full = true;
                    break;
                }
            }
        }
    }
    let clean_end = map_end.max(plan.first_dirty_offset);
    if compressed_seen {
        tracing::warn!(dir = %plan.dir.display(),
            "compacted topics need uncompressed batches: compressed batches are kept as they are, and tombstones with them");
    }
    // 2 and 3. Rewrite each group without the lock, swap it in with it.
    let filter = Filter {
        map: &map,
        clean_end,
        now_ms,
        delete_retention_ms: plan.config.delete_retention_ms,
        remove_tombstones: !compressed_seen,
    };
    let mut tombstones_due_ms = None;
    for group in plan.groups(clean_end) {
        let built = build_group(
            &mut log,
            &plan,
            &group,
            &filter,
            &mut stats,
            &mut tombstones_due_ms,
        );
        let cleaned = match built {
            Ok(GroupBuild::Unchanged) => continue,
            Ok(GroupBuild::Written(cleaned)) => cleaned,
            failed_or_abandoned => {
                if let Err(error) = swap::discard(&plan.dir, &plan.files, group[0].base_offset) {
                    tracing::warn!(dir = %plan.dir.display(), %error, "cannot remove an abandoned cleaned segment");
                }
                return failed_or_abandoned.map(|_| CleanOutcome::Abandoned);
            }
        };
        match log.with_log(|log| log.install_cleaned(&cleaned, plan.generation))? {
            Some(generation) => plan.generation = generation,
            None => {
                swap::discard(&plan.dir, &plan.files, cleaned.base_offset)
                    .map_err(|e| plan.io("removing an abandoned cleaned segment", e))?;
                return Ok(CleanOutcome::Abandoned);
            }
        }
    }
    let finished =
        log.with_log(|log| log.finish_cleaning(plan.generation, clean_end, tombstones_due_ms));
    if !finished {
        return Ok(CleanOutcome::Abandoned);
    }
    stats.cleaned_up_to = clean_end;
    stats.keys = map.len();
    tracing::info!(
        dir = %plan.dir.display(),
        first_dirty_offset = stats.first_dirty_offset,
        cleaned_up_to = stats.cleaned_up_to,
        keys = stats.keys,
        records_removed = stats.records_removed,
        bytes_read = stats.bytes_read,
        bytes_written = stats.bytes_written,
        "cleaned a compacted log"
    );
    Ok(CleanOutcome::Cleaned(stats))
}

impl PartitionLog {
    /// Cleans this log now if its config compacts it and it is dirty enough
    /// (or a tombstone is due), holding `&mut self` throughout.
    /// `LogManager::clean_pass` cleans without holding the lock for the rewrite.
    pub fn clean(
        &mut self,
        now_ms: i64,
        config: &CleanerConfig,
    ) -> Result<CleanOutcome, CleanerError> {
        self.clean_below(now_ms, i64::MAX, config)
    }

    /// Like [`PartitionLog::clean`], but never cleans a segment holding
    /// offsets at or past `upper_bound_offset` (the high watermark: data a
    /// new leader might not have must not hide older records).
    pub fn clean_below(
        &mut self,
        now_ms: i64,
        upper_bound_offset: i64,
        config: &CleanerConfig,
    ) -> Result<CleanOutcome, CleanerError> {
        clean_log(self, now_ms, upper_bound_offset, config)
    }

    /// Decides whether a cleaning is due and what it reads.
    pub(crate) fn cleaning_plan(
        &self,
        now_ms: i64,
        upper_bound_offset: i64,
    ) -> Option<CleaningPlan> {
        if self.is_offline() || !self.config.cleanup_policy.compact {
            return None;
        }
        let active_base = *self.segments.keys().next_back().expect("an active segment");
        let lag_ms = self.config.min_compaction_lag_ms as i64;
        let mut segments = Vec::new();
        for (&base_offset, segment) in self.segments.range(..active_base) {
            let too_young = lag_ms > 0 && segment.max_timestamp() > now_ms.saturating_sub(lag_ms);
            if segment.next_offset() > upper_bound_offset || too_young {
                break;
            }
            segments.push(SegmentInfo {
                base_offset,
                next_offset: segment.next_offset(),
                size_bytes: segment.size_bytes(),
                last_modified_ms: segment.last_modified_ms(),
            });
        }
        let first_dirty_offset = self
            .cleaner_offset
            .unwrap_or(self.log_start_offset)
            .max(self.log_start_offset);
        let (clean_bytes, dirty_bytes) = segments.iter().fold((0u64, 0u64), |(clean, dirty), s| {
            if s.next_offset <= first_dirty_offset {
                (clean + s.size_bytes, dirty)
            } else {
                (clean, dirty + s.size_bytes)
            }
        });
        let dirty_ratio = dirty_bytes as f64 / (clean_bytes + dirty_bytes).max(1) as f64;
        let dirty_enough = dirty_bytes > 0 && dirty_ratio >= self.config.min_cleanable_dirty_ratio;
        let tombstones_due = self.tombstones_due_ms.is_some_and(|due| now_ms >= due);
        if segments.is_empty() || !(dirty_enough || tombstones_due) {
            return None;
        }
        Some(CleaningPlan {
            dir: self.dir.clone(),
            config: self.config.clone(),
            files: self.files.clone(),
            budget: self.budget.clone(),
            generation: self.generation,
            first_dirty_offset,
            segments,
        })
    }

    /// The bytes of a sealed segment for the cleaner, or `None` if the log
    /// changed since `generation`.
    pub(crate) fn cleaner_read(
        &self,
        base_offset: i64,
        generation: u64,
    ) -> Result<Option<Bytes>, CleanerError> {
        if self.is_offline() || self.generation != generation {
            return Ok(None);
        }
        let Some(segment) = self.segments.get(&base_offset) else {
            return Ok(None);
        };
        segment.data().map(Some).map_err(|source| CleanerError::Io {
            context: format!("reading {}", segment.log_path().display()),
            source,
        })
    }

    /// Swaps a cleaned group in for its source segments, unless the log
    /// changed since `generation` (then `Ok(None)`, nothing touched). Returns
    /// the new generation. An I/O error here takes the partition offline;
    /// recovery then finishes or discards the swap.
    pub(crate) fn install_cleaned(
        &mut self,
        cleaned: &CleanedGroup,
        generation: u64,
    ) -> Result<Option<u64>, CleanerError> {
        if self.is_offline() || self.generation != generation || !self.config.cleanup_policy.compact
        {
            return Ok(None);
        }
        let active_base = *self.segments.keys().next_back().expect("an active segment");
        let unchanged = cleaned.sources.iter().all(|source| {
            source.base_offset != active_base
                && self
                    .segments
                    .get(&source.base_offset)
                    .is_some_and(|s| s.next_offset() == source.next_offset && !s.is_active())
        });
        if !unchanged {
            return Ok(None);
        }
        let last_next_offset = cleaned
            .sources
            .last()
            .expect("a group is never empty")
            .next_offset;
        let segments_before = self.segments.len();
        // Recovery must accept the gaps before any exists on disk.
        self.allow_offset_gaps()?;
        let base_offset = cleaned.base_offset;
        if let Err(error) = swap::commit(&self.dir, &self.files, base_offset) {
            return Err(self.fail("committing a cleaned segment", error).into());
        }
        for source in &cleaned.sources {
            let segment = self
                .segments
                .remove(&source.base_offset)
                .expect("checked above");
            if source.base_offset == base_offset {
                // Its files are renamed over below; readers keep the old inodes.
                segment.unmap();
            } else if let Err(error) = segment.delete() {
                return Err(self
                    .fail("removing a cleaned segment's source", error)
                    .into());
            }
        }
        if let Err(error) = swap::finish(&self.dir, &self.files, base_offset) {
            return Err(self.fail("finishing a cleaned segment swap", error).into());
        }
        let opened = Segment::open(
            &self.dir,
            base_offset,
            &self.config,
            &self.files,
            &self.budget,
            false,
            true,
        );
        let segment = match opened {
            Ok(segment) => segment,
            Err(error) => return Err(self.fail("opening a cleaned segment", error).into()),
        };
        assert!(
            segment.next_offset() <= last_next_offset,
            "a cleaned segment must not hold offsets past its sources"
        );
        self.segments.insert(base_offset, segment);
        assert_eq!(
            self.segments.len(),
            segments_before + 1 - cleaned.sources.len(),
            "a swap replaces exactly its sources"
        );
        self.generation += 1;
        Ok(Some(self.generation))
    }

    /// Records the end of a cleaning, unless the log changed since `generation`.
    pub(crate) fn finish_cleaning(
        &mut self,
        generation: u64,
        cleaned_up_to: i64,
        tombstones_due_ms: Option<i64>,
    ) -> bool {
        if self.is_offline() || self.generation != generation {
            return false;
        }
        self.cleaner_offset = Some(cleaned_up_to.min(self.log_end_offset()));
        self.tombstones_due_ms = tombstones_due_ms;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(sizes: &[(i64, i64, u64)], segment_bytes_max: u64) -> CleaningPlan {
        CleaningPlan {
            dir: PathBuf::from("/nonexistent"),
            config: LogConfig {
                segment_bytes_max,
                ..LogConfig::default()
            },
            files: FileLayer::real(),
            budget: MappingBudget::new(1),
            generation: 0,
            first_dirty_offset: 0,
            segments: sizes
                .iter()
                .map(|&(base_offset, next_offset, size_bytes)| SegmentInfo {
                    base_offset,
                    next_offset,
                    size_bytes,
                    last_modified_ms: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn groups_merge_consecutive_segments_up_to_one_segment_of_bytes() {
        // Proves groups hold consecutive segments below the clean end whose total size fits segment_bytes_max.
        let plan = plan_of(
            &[
                (0, 10, 400),
                (10, 20, 500),
                (20, 30, 200),
                (30, 40, 900),
                (40, 50, 10),
            ],
            1000,
        );
        let bases = |groups: Vec<Vec<SegmentInfo>>| -> Vec<Vec<i64>> {
            groups
                .into_iter()
                .map(|g| g.into_iter().map(|s| s.base_offset).collect())
                .collect()
        };
        assert_eq!(
            bases(plan.groups(i64::MAX)),
            vec![vec![0, 10], vec![20], vec![30, 40]]
        );
        assert_eq!(bases(plan.groups(25)), vec![vec![0, 10], vec![20]]);
        assert_eq!(bases(plan.groups(20)), vec![vec![0, 10]]);
    }

    #[test]
    fn groups_never_span_more_offsets_than_a_segment_can_index() {
        // Proves a group's offsets stay within the relative range a segment can hold.
        let far = RELATIVE_OFFSET_MAX + 5;
        let plan = plan_of(&[(0, 10, 1), (10, 20, 1), (far, far + 1, 1)], 1 << 20);
        let groups = plan.groups(i64::MAX);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1][0].base_offset, far);
    }
}
