//! One partition's log: segments named by base offset, the last one active.
//!
//! `PartitionLog` is not internally synchronised: writes take `&mut self`, and
//! the `LogManager` hands it out behind a `Mutex`. Reads return `Bytes` that
//! slice the segment mappings without copying and stay valid after any later
//! operation on the log (see `mapping.rs`).
//!
//! Any I/O error while changing the log (including a full disk) takes the
//! partition offline: every later call answers [`StorageError::Offline`], and
//! the data already appended stays as it was on disk.
//!
//! Offsets are dense until the log is compacted (`cleaner.rs`): from then on a
//! batch may start past the end of the one before it, and the marker file
//! [`OFFSETS_MAY_SKIP_FILE`] tells recovery to accept that.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use protocol::batch::{BatchError, BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES};

use crate::storage::config::{FlushPolicy, LogConfig};
use crate::storage::epoch::LeaderEpochCache;
use crate::storage::error::StorageError;
use crate::storage::file::FileLayer;
use crate::storage::mapping::MappingBudget;
use crate::storage::metadata;
use crate::storage::recovery::{self, LoadOptions, RecoveryReport};
use crate::storage::segment::{
    DoomedSegment, Segment, SegmentPaths, SegmentTrim, RELATIVE_OFFSET_MAX, SEGMENT_POSITION_MAX,
};
use crate::storage::spare::{Spare, SPARE_SEGMENT_BYTES_MIN};

/// Present in a partition directory once offsets may skip between batches
/// (the cleaner removed batches, or a follower copied a compacted leader).
/// Written durably before the first gap exists; never removed.
pub const OFFSETS_MAY_SKIP_FILE: &str = "offsets-may-skip";
const OFFSETS_MAY_SKIP_CONTENTS: &[u8] = b"version: 0\n";

/// What an append stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
    pub max_timestamp: i64,
}

/// What a read returned: whole batches from one segment.
#[derive(Clone, Debug)]
pub struct ReadInfo {
    /// Whole batches, one segment, a zero-copy slice of the mapping.
    pub records: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// Where a log starts when it is opened; see [`PartitionLog::open`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// From `recovery-point-offset-checkpoint`; `None` scans everything after an unclean stop.
    pub recovery_point: Option<i64>,
    /// From `log-start-offset-checkpoint`.
    pub log_start_offset: Option<i64>,
    /// Whether the clean-shutdown marker was present: then nothing is scanned.
    pub clean_shutdown: bool,
    /// From `cleaner-offset-checkpoint`: the cleaner has cleaned everything below.
    pub cleaner_offset: Option<i64>,
}

/// Shape of a record set, from its batch headers alone.
struct RecordSetShape {
    batches: usize,
    offset_count: i64,
    max_timestamp: i64,
    /// With expected offsets (follower appends): the offset after the last
    /// batch, and the first batch's base offset.
    end_offset: Option<i64>,
    first_offset: Option<i64>,
    /// Some batch starts past the end of the one before it.
    skips_offsets: bool,
}

/// An fsync of a partition's dirty files, and the trims of its newly sealed
/// segments, run without holding the partition lock.
pub struct FlushJob {
    files: FileLayer,
    paths: Vec<PathBuf>,
    dir: Option<PathBuf>,
    up_to: i64,
    generation: u64,
    trims: Vec<SegmentTrim>,
    /// The log's count of cuts, and its value when the trims were planned.
    cuts: Arc<Mutex<u64>>,
    cuts_planned: u64,
    /// Base offsets of the segments whose files the trims shrank.
    trimmed: Vec<i64>,
    trim_error: Option<io::Error>,
}

impl FlushJob {
    /// Trims, then fsyncs the files (and the directory if entries changed).
    pub fn run(&mut self) -> io::Result<()> {
        self.trim();
        for path in &self.paths {
            match self.files.sync_file(path) {
                // A segment deleted by retention meanwhile needs no fsync.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        if let Some(dir) = &self.dir {
            self.files.sync_dir(dir)?;
        }
        Ok(())
    }

    /// Shrinks sealed segments' files to their contents, unless the log was
    /// cut since they were planned: a cut segment may be appended to again,
    /// past the length planned. Holding the lock keeps a cut from starting
    /// while a shrink runs.
    fn trim(&mut self) {
        if self.trims.is_empty() {
            return;
        }
        let cuts = self.cuts.lock().unwrap_or_else(PoisonError::into_inner);
        if *cuts != self.cuts_planned {
            return;
        }
        for trim in &self.trims {
            match trim.run(&self.files) {
                Ok(true) => self.trimmed.push(trim.base_offset),
                // A reader still maps a file: the next flush tries again.
                Ok(false) => {}
                Err(error) => {
                    self.trim_error = Some(error);
                    return;
                }
            }
        }
    }
}

pub struct PartitionLog {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) files: FileLayer,
    pub(crate) budget: MappingBudget,
    /// By base offset; the last one is active. Never empty.
    pub(crate) segments: BTreeMap<i64, Segment>,
    pub(crate) log_start_offset: i64,
    recovery_point: i64,
    pub(crate) epochs: LeaderEpochCache,
    topic_id: Option<uuid::Uuid>,
    offline: Option<String>,
    /// When the oldest append not yet fsynced happened.
    unflushed_since_ms: Option<i64>,
    /// Files were created or removed since the directory was last fsynced.
    pub(crate) dir_dirty: bool,
    /// Offsets may skip between batches (see [`OFFSETS_MAY_SKIP_FILE`]).
    pub(crate) offsets_may_skip: bool,
    /// Everything below this offset was cleaned; `None` if never cleaned.
    pub(crate) cleaner_offset: Option<i64>,
    /// Bumped whenever data is removed or segments are replaced (truncation,
    /// retention, a cleaner swap), so the cleaner can tell that the segments it
    /// read without the lock are still the log's.
    pub(crate) generation: u64,
    /// The earliest delete horizon of a tombstone the last cleaning kept: a
    /// clean is due then even if little is dirty. In memory only.
    pub(crate) tombstones_due_ms: Option<i64>,
    /// The next segment's file, being allocated ahead (see `spare.rs`).
    spare: Option<Spare>,
    /// Counts cuts of segment files in place and closes. A [`FlushJob`]
    /// shrinks files only while holding it, and only if no cut came since it
    /// planned the shrink; a cut takes it first, so it waits for a shrink
    /// under way.
    cuts: Arc<Mutex<u64>>,
    /// Segments retention or a new log start offset took out, whose files
    /// are still to be unlinked (see [`PartitionLog::take_doomed`]).
    pub(crate) doomed: Vec<DoomedSegment>,
}

fn corrupt(error: BatchError) -> StorageError {
    StorageError::CorruptBatch(error)
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Checks the batch headers of a record set (not the CRCs: the caller
/// validated the batches) so that storing it cannot misbehave. With
/// `expected_offset`, each batch must continue the offsets (follower appends),
/// or, with `gaps_allowed`, start at or past where the previous one ended.
fn check_record_set(
    records: &[u8],
    expected_offset: Option<i64>,
    gaps_allowed: bool,
) -> Result<RecordSetShape, StorageError> {
    if records.is_empty() {
        return Err(corrupt(BatchError::Truncated {
            available: 0,
            needed: BATCH_HEADER_BYTES,
        }));
    }
    if records.len() as u64 > SEGMENT_POSITION_MAX {
        return Err(StorageError::RecordSetTooLarge {
            size: records.len(),
            limit: SEGMENT_POSITION_MAX,
        });
    }
    let mut shape = RecordSetShape {
        batches: 0,
        offset_count: 0,
        max_timestamp: -1,
        end_offset: None,
        first_offset: None,
        skips_offsets: false,
    };
    let mut next = expected_offset;
    let mut rest = records;
    while !rest.is_empty() {
        let header = BatchHeader::new(rest).map_err(corrupt)?;
        let minimum = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
        if header.batch_length() < minimum {
            return Err(corrupt(BatchError::BadLength {
                batch_length: header.batch_length(),
                minimum,
            }));
        }
        let total = header.total_bytes();
        if total > rest.len() {
            return Err(corrupt(BatchError::Truncated {
                available: rest.len(),
                needed: total,
            }));
        }
        if header.magic() != protocol::batch::MAGIC_V2 {
            return Err(corrupt(BatchError::BadMagic {
                magic: header.magic(),
            }));
        }
        let delta = header.last_offset_delta();
        if delta < 0 || i64::from(delta) > RELATIVE_OFFSET_MAX {
            return Err(corrupt(BatchError::BadOffsetDelta {
                last_offset_delta: delta,
                records_count: header.records_count(),
            }));
        }
        if let Some(expected) = next {
            let base_offset = header.base_offset();
            let continues = base_offset == expected || (gaps_allowed && base_offset > expected);
            let first_offset = *shape.first_offset.get_or_insert(base_offset);
            let end_offset = base_offset.checked_add(i64::from(delta) + 1);
            // One record set goes into one segment, so its offsets must fit one.
            let fits = end_offset.is_some_and(|end| end - 1 - first_offset <= RELATIVE_OFFSET_MAX);
            if !continues || !fits {
                return Err(StorageError::NonContiguousOffsets {
                    base_offset,
                    log_end_offset: expected,
                });
            }
            shape.skips_offsets |= base_offset != expected;
            next = end_offset;
            shape.end_offset = end_offset;
        }
        shape.batches += 1;
        shape.offset_count += i64::from(delta) + 1;
        if shape.offset_count - 1 > RELATIVE_OFFSET_MAX {
            // One record set goes into one segment, so its offsets must fit one.
            return Err(corrupt(BatchError::BadOffsetDelta {
                last_offset_delta: delta,
                records_count: header.records_count(),
            }));
        }
        shape.max_timestamp = shape.max_timestamp.max(header.max_timestamp());
        rest = &rest[total..];
    }
    Ok(shape)
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`, recovering it unless
    /// `options.clean_shutdown`. Most callers go through `LogManager`.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        files: FileLayer,
        budget: MappingBudget,
        options: OpenOptions,
    ) -> Result<(PartitionLog, RecoveryReport), StorageError> {
        config
            .validate()
            .map_err(|reason| StorageError::InvalidConfig { reason })?;
        let io_error = |context: &str, error: io::Error| {
            StorageError::io(format!("{context} {}", dir.display()), error)
        };
        std::fs::create_dir_all(dir).map_err(|e| io_error("create", e))?;
        let recovery_point = options.recovery_point.unwrap_or(0);
        let offsets_may_skip = dir.join(OFFSETS_MAY_SKIP_FILE).exists();
        let load = LoadOptions {
            recovery_point,
            clean_shutdown: options.clean_shutdown,
            empty_base_offset: options.log_start_offset.unwrap_or(0),
            offsets_may_skip,
        };
        let (mut segments, report) = recovery::load_segments(dir, &config, &files, &budget, &load)
            .map_err(|e| io_error("load", e))?;
        let last_base = *segments.keys().next_back().expect("at least one segment");
        for (&base, segment) in segments.iter_mut() {
            if base == last_base {
                segment.make_active();
            } else if !segment.is_active() {
                segment.trim().map_err(|e| io_error("trim", e))?;
            }
        }
        let first = segments.values().next().expect("at least one segment");
        let log_end_offset = segments
            .values()
            .next_back()
            .expect("at least one segment")
            .next_offset();
        let log_start_offset = options
            .log_start_offset
            .unwrap_or(0)
            .max(first.base_offset())
            .min(log_end_offset);
        let mut epochs = LeaderEpochCache::open(dir)?;
        epochs.truncate_from_end(&files, log_end_offset)?;
        epochs.truncate_from_start(&files, log_start_offset)?;
        let topic_id = metadata::read_partition_metadata(dir)?.map(uuid::Uuid::from_bytes);
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            files,
            budget,
            segments,
            log_start_offset,
            recovery_point: log_end_offset,
            epochs,
            topic_id,
            offline: None,
            unflushed_since_ms: None,
            dir_dirty: true,
            offsets_may_skip,
            cleaner_offset: options
                .cleaner_offset
                .filter(|&offset| offset >= 0 && offset <= log_end_offset),
            generation: 0,
            tombstones_due_ms: None,
            spare: None,
            cuts: Arc::new(Mutex::new(0)),
            doomed: Vec::new(),
        };
        if options.clean_shutdown {
            log.dir_dirty = false;
        } else {
            // Recovered data is re-validated; make it durable before naming it flushed.
            for segment in log.segments.values_mut() {
                segment.flush().map_err(|e| io_error("flush", e))?;
            }
            log.files.sync_dir(dir).map_err(|e| io_error("sync", e))?;
            log.dir_dirty = false;
        }
        log.check_invariants();
        Ok((log, report))
    }

    fn check_invariants(&self) {
        assert!(
            !self.segments.is_empty(),
            "a log always has an active segment"
        );
        assert!(
            self.recovery_point <= self.log_end_offset(),
            "recovery point {} past log end {}",
            self.recovery_point,
            self.log_end_offset()
        );
        assert!(
            self.log_start_offset <= self.log_end_offset(),
            "log start {} past log end {}",
            self.log_start_offset,
            self.log_end_offset()
        );
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn check_online(&self) -> Result<(), StorageError> {
        match &self.offline {
            Some(reason) => Err(StorageError::Offline {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Takes the partition offline after an I/O error and returns the error to report.
    pub(crate) fn fail(&mut self, context: &str, error: impl std::fmt::Display) -> StorageError {
        let reason = format!("{context} in {}: {error}", self.dir.display());
        tracing::error!(%reason, "partition log goes offline");
        self.offline = Some(reason.clone());
        self.discard_spare();
        StorageError::Offline { reason }
    }

    /// Appends batches as the leader: each batch gets the next offsets and
    /// `leader_epoch`, rewritten in place in the mapping after the copy.
    pub fn append(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.check_online()?;
        let shape = check_record_set(records, None, false)?;
        let base_offset = self.log_end_offset();
        self.append_checked(records, &shape, Some((base_offset, leader_epoch)), now_ms)?;
        if leader_epoch >= 0
            && self
                .latest_epoch()
                .is_none_or(|latest| leader_epoch > latest)
        {
            self.assign_epoch_start(leader_epoch, base_offset)?;
        }
        self.after_append(now_ms)?;
        Ok(AppendInfo {
            base_offset,
            last_offset: self.log_end_offset() - 1,
            log_start_offset: self.log_start_offset,
            max_timestamp: shape.max_timestamp,
        })
    }

    /// Appends batches fetched from the leader, keeping their offsets and
    /// epochs. They must continue the log end offset exactly, except in a
    /// compacted log, where the leader's cleaner may have left gaps: there
    /// each batch must start at or past the end of the one before.
    pub fn append_as_follower(&mut self, records: &[u8]) -> Result<AppendInfo, StorageError> {
        self.check_online()?;
        let base_offset = self.log_end_offset();
        let gaps_allowed = self.offsets_may_skip || self.config.cleanup_policy.compact;
        let shape = check_record_set(records, Some(base_offset), gaps_allowed)?;
        if shape.skips_offsets {
            self.allow_offset_gaps()?;
        }
        let base_offset = shape.first_offset.unwrap_or(base_offset);
        let now_ms = wall_clock_ms();
        self.append_checked(records, &shape, None, now_ms)?;
        let mut rest = records;
        while !rest.is_empty() {
            let header = BatchHeader::new(rest).map_err(corrupt)?;
            let epoch = header.partition_leader_epoch();
            if epoch >= 0 && self.latest_epoch().is_none_or(|latest| epoch > latest) {
                self.assign_epoch_start(epoch, header.base_offset())?;
            }
            rest = &rest[header.total_bytes()..];
        }
        self.after_append(now_ms)?;
        Ok(AppendInfo {
            base_offset,
            last_offset: self.log_end_offset() - 1,
            log_start_offset: self.log_start_offset,
            max_timestamp: shape.max_timestamp,
        })
    }

    fn append_checked(
        &mut self,
        records: &[u8],
        shape: &RecordSetShape,
        assign: Option<(i64, i32)>,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let end_offset = match (assign, shape.end_offset) {
            (Some((first_offset, _)), _) => first_offset + shape.offset_count,
            (None, Some(end_offset)) => end_offset,
            (None, None) => self.log_end_offset() + shape.offset_count,
        };
        let first_offset = assign.map_or(shape.first_offset, |(first, _)| Some(first));
        self.maybe_roll(records.len() as u64, first_offset, end_offset, now_ms)?;
        let step = self.config.preallocate_step_bytes;
        let active = self.active_mut();
        // Reserve every byte on disk before writing any, so a full disk fails
        // the append cleanly instead of faulting in the middle of it.
        if let Err(error) = active.reserve(records.len() as u64, shape.batches, step) {
            return Err(self.fail("allocating space for an append", error));
        }
        match self.active_mut().append(records, assign, now_ms) {
            Ok(next_offset) => {
                assert_eq!(
                    next_offset, end_offset,
                    "the log must end where the record set ends"
                );
                Ok(())
            }
            Err(error) => Err(self.fail("appending", error)),
        }
    }

    fn after_append(&mut self, now_ms: i64) -> Result<(), StorageError> {
        self.unflushed_since_ms.get_or_insert(now_ms);
        if self.config.flush_policy == FlushPolicy::EveryBatch {
            self.flush()?;
        }
        self.maybe_start_spare();
        Ok(())
    }

    /// Starts allocating the next segment's file once the active segment is
    /// half full, if segments are big enough to have a spare (see `spare.rs`).
    /// At most one spare is tried per segment: one that fails is cleared at
    /// the next roll.
    fn maybe_start_spare(&mut self) {
        let segment_bytes = self.config.segment_bytes_max;
        if self.spare.is_some()
            || segment_bytes < SPARE_SEGMENT_BYTES_MIN
            || self.active().size_bytes() < segment_bytes / 2
        {
            return;
        }
        let len = segment_bytes.min(SEGMENT_POSITION_MAX);
        self.spare = Some(Spare::start(&self.files, &self.dir, len));
    }

    /// Puts the spare, if it is allocated, in place as the `.log` of the
    /// segment about to be created at `base_offset`. A spare still being
    /// allocated is left for the next roll.
    fn use_spare(&mut self, base_offset: i64) {
        let Some(spare) = self.spare.take() else {
            return;
        };
        let log_path = SegmentPaths::new(&self.dir, base_offset, None).log;
        match spare.take_into(&self.files, &log_path) {
            Ok(kept) => self.spare = kept,
            Err(error) => tracing::warn!(%error, "could not put the spare segment in place"),
        }
    }

    /// Whether a spare was started; if so, waits until its allocation is
    /// over and says whether it is ready (for tests).
    #[cfg(test)]
    pub(crate) fn spare_ready(&mut self) -> Option<bool> {
        self.spare.as_mut().map(Spare::wait_ready)
    }

    /// Stops and removes the spare, if any.
    fn discard_spare(&mut self) {
        if let Some(spare) = self.spare.take() {
            spare.discard(&self.files);
        }
    }

    /// Rolls before an append of `bytes` whose offsets are `[first_offset,
    /// end_offset)` (`first_offset` is known only for follower appends, whose
    /// first batch may follow a gap), if the active segment cannot take it.
    fn maybe_roll(
        &mut self,
        bytes: u64,
        first_offset: Option<i64>,
        end_offset: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let active = self.active();
        let offsets_overflow = end_offset - 1 - active.base_offset() > RELATIVE_OFFSET_MAX;
        if active.is_empty() && !offsets_overflow {
            return Ok(());
        }
        let too_big = active.size_bytes() + bytes > self.config.segment_bytes_max;
        let too_old = active
            .rolling_base_ms
            .is_some_and(|base| now_ms.saturating_sub(base) > self.config.segment_ms_max as i64);
        if offsets_overflow {
            // The offsets do not fit this segment's relative range: start the
            // next segment at the append's first offset (past the log end
            // after a follower's gap, else at it).
            let base = first_offset.unwrap_or(self.log_end_offset());
            self.roll_at(base, now_ms)?;
        } else if too_big || too_old || active.index_is_full() {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Reads whole batches from one segment, starting with the batch that
    /// contains `offset` (or, if the cleaner removed it, the next batch after
    /// it), stopping before any batch that reaches `max_offset`.
    /// At most `max_bytes`, except that with `min_one_batch` a larger first
    /// batch is returned whole.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<ReadInfo, StorageError> {
        self.check_online()?;
        let log_end_offset = self.log_end_offset();
        if offset < self.log_start_offset || offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        let mut records = Bytes::new();
        if offset < log_end_offset && offset < max_offset {
            let start = self
                .segments
                .range(..=offset)
                .next_back()
                .map_or(offset, |(&base, _)| base);
            for segment in self.segments.range(start..).map(|(_, s)| s) {
                // With gaps, `offset` may lie after a segment's data or before
                // the next one's: the read starts at the next batch.
                if segment.next_offset() <= offset || segment.is_empty() {
                    continue;
                }
                records = segment
                    .read(offset, max_bytes, max_offset, min_one_batch)
                    .map_err(|error| {
                        StorageError::io(format!("read {}", segment.log_path().display()), error)
                    })?;
                break;
            }
        }
        Ok(ReadInfo {
            records,
            log_start_offset: self.log_start_offset,
            log_end_offset,
        })
    }

    /// Takes the segments that retention or a new log start offset removed
    /// from the log and whose files still exist (renamed `*.deleted`).
    /// Dropping them unlinks the files: drop them after releasing the log's
    /// lock, so appends never wait for the kernel to free a large file.
    /// Those nobody takes are unlinked with the log.
    pub fn take_doomed(&mut self) -> Vec<DoomedSegment> {
        std::mem::take(&mut self.doomed)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// ListOffsets by timestamp: the first batch whose largest timestamp is
    /// `>= timestamp_ms`, as `(base offset of that batch, its max timestamp)`.
    /// Batch granularity: the records are never decoded, so the offset is the
    /// batch's base offset (at or before the first matching record).
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Option<(i64, i64)> {
        for segment in self.segments.values() {
            if segment.next_offset() <= self.log_start_offset
                || segment.max_timestamp() < timestamp_ms
            {
                continue;
            }
            match segment.find_timestamp(timestamp_ms) {
                Ok(Some((offset, timestamp))) => {
                    return Some((offset.max(self.log_start_offset), timestamp))
                }
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(dir = %self.dir.display(), %error, "timestamp lookup failed");
                    return None;
                }
            }
        }
        None
    }

    /// ListOffsets MAX_TIMESTAMP: `(largest timestamp, base offset of the first
    /// batch that has it)`, or `None` if no batch carries a timestamp.
    pub fn max_timestamp_and_offset(&self) -> Option<(i64, i64)> {
        let mut best: Option<(i64, i64)> = None;
        for segment in self.segments.values() {
            if segment.next_offset() <= self.log_start_offset || segment.max_timestamp() < 0 {
                continue;
            }
            if best.is_none_or(|(timestamp, _)| segment.max_timestamp() > timestamp) {
                best = Some((segment.max_timestamp(), segment.offset_of_max_timestamp()));
            }
        }
        best
    }

    /// fsyncs everything appended; afterwards the recovery point is the log end offset.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.check_online()?;
        self.retry_trims()?;
        let log_end_offset = self.log_end_offset();
        let mut failure = None;
        for segment in self.segments.values_mut() {
            if let Err(error) = segment.flush() {
                failure = Some(error);
                break;
            }
        }
        if let Some(error) = failure {
            return Err(self.fail("fsync", error));
        }
        if self.dir_dirty {
            if let Err(error) = self.files.sync_dir(&self.dir) {
                return Err(self.fail("fsync of the directory", error));
            }
            self.dir_dirty = false;
        }
        self.recovery_point = log_end_offset;
        self.unflushed_since_ms = None;
        self.check_invariants();
        Ok(())
    }

    /// Starts an interval flush that runs outside the partition lock: takes the
    /// dirty files and the offset they will cover, and plans the trims of the
    /// sealed segments. `None` when no flush is due. Appends may go on while
    /// [`FlushJob::run`] trims and fsyncs; finish with
    /// [`PartitionLog::complete_flush`].
    pub fn begin_flush_if_due(&mut self, now_ms: i64) -> Option<FlushJob> {
        if self.offline.is_some() {
            return None;
        }
        let FlushPolicy::IntervalMs(interval_ms) = self.config.flush_policy else {
            return None;
        };
        let since = self.unflushed_since_ms?;
        if now_ms.saturating_sub(since) < interval_ms as i64 {
            return None;
        }
        let paths = self
            .segments
            .values_mut()
            .flat_map(|segment| segment.take_dirty_paths())
            .collect();
        let dir = std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone());
        self.unflushed_since_ms = None;
        let mut trims = Vec::new();
        for segment in self.segments.values().filter(|s| !s.is_active()) {
            match segment.plan_trim() {
                Ok(trim) => trims.extend(trim),
                // Left pending: a trim under the lock (retention) retries it
                // and takes the partition offline if it fails again.
                Err(error) => {
                    tracing::warn!(dir = %self.dir.display(), %error, "cannot open a sealed segment's files to trim them");
                }
            }
        }
        let cuts_planned = *self.cuts.lock().unwrap_or_else(PoisonError::into_inner);
        Some(FlushJob {
            files: self.files.clone(),
            paths,
            dir,
            up_to: self.log_end_offset(),
            generation: self.generation,
            trims,
            cuts: self.cuts.clone(),
            cuts_planned,
            trimmed: Vec::new(),
            trim_error: None,
        })
    }

    /// Finishes a flush begun with [`PartitionLog::begin_flush_if_due`]: on
    /// success the recovery point moves to what the flush covered.
    pub fn complete_flush(
        &mut self,
        job: FlushJob,
        result: io::Result<()>,
    ) -> Result<(), StorageError> {
        match result {
            Ok(()) => {
                // If data was removed or replaced while the fsync ran, what it
                // covered may not be what the log now holds: leave the recovery
                // point to the next flush.
                // Likewise the segments trimmed may have been replaced.
                if self.generation == job.generation {
                    self.recovery_point = self.recovery_point.max(job.up_to);
                    for base in &job.trimmed {
                        if let Some(segment) = self.segments.get_mut(base) {
                            segment.trimmed();
                        }
                    }
                }
                if let Some(error) = job.trim_error {
                    return Err(self.fail("trimming a segment", error));
                }
                self.check_invariants();
                Ok(())
            }
            Err(error) => {
                for segment in self.segments.values_mut() {
                    segment.mark_dirty();
                }
                Err(self.fail("fsync", error))
            }
        }
    }

    /// Flushes if the flush policy is `IntervalMs` and the oldest unflushed
    /// append is at least that old. Returns whether it flushed.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<bool, StorageError> {
        if self.offline.is_some() {
            return Ok(false);
        }
        let FlushPolicy::IntervalMs(interval_ms) = self.config.flush_policy else {
            return Ok(false);
        };
        match self.unflushed_since_ms {
            Some(since) if now_ms.saturating_sub(since) >= interval_ms as i64 => {
                self.flush()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Trims the sealed segments now, under the lock: those not trimmed yet,
    /// and those whose trim a reader's live mapping deferred.
    pub(crate) fn retry_trims(&mut self) -> Result<(), StorageError> {
        let mut failure = None;
        for segment in self.segments.values_mut() {
            if segment.trim_pending() && !segment.is_active() {
                if let Err(error) = segment.trim() {
                    failure = Some(error);
                    break;
                }
            }
        }
        match failure {
            Some(error) => Err(self.fail("trimming a segment", error)),
            None => Ok(()),
        }
    }

    /// Everything below this offset is known to be fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Drops everything at or after `offset` (a follower whose log diverged).
    /// Kafka semantics: the batch containing `offset` goes too, so the log end
    /// offset becomes that batch's base offset. An offset below the log start
    /// empties the log and restarts it at `offset`. The cut is fsynced.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        self.check_online()?;
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let offset = offset.max(0);
        let result = self.truncate_inner(offset);
        if let Err(error) = result {
            return Err(self.fail("truncating", error));
        }
        let log_end_offset = self.log_end_offset();
        assert!(
            log_end_offset <= offset,
            "truncation must not keep offsets past the target"
        );
        self.generation += 1;
        self.recovery_point = self.recovery_point.min(log_end_offset);
        self.cleaner_offset = self.cleaner_offset.map(|c| c.min(log_end_offset));
        if let Err(error) = self.epochs.truncate_from_end(&self.files, log_end_offset) {
            return Err(self.fail("truncating the leader epoch cache", error));
        }
        if self.log_start_offset > log_end_offset {
            self.log_start_offset = log_end_offset;
        }
        self.check_invariants();
        Ok(())
    }

    fn truncate_inner(&mut self, offset: i64) -> io::Result<()> {
        self.count_cut();
        let first_base = *self.segments.keys().next().expect("at least one segment");
        // Segments that start at or after the target go entirely; below the log
        // start (or the first segment) the log restarts empty at the target.
        let doomed_from = if offset < self.log_start_offset || offset <= first_base {
            first_base
        } else {
            offset
        };
        let doomed: Vec<i64> = self
            .segments
            .range(doomed_from..)
            .map(|(&b, _)| b)
            .collect();
        for base in doomed {
            let segment = self.segments.remove(&base).expect("listed segment");
            segment.delete()?;
            self.dir_dirty = true;
        }
        match self.segments.values_mut().next_back() {
            None => {
                let segment = self.new_segment(offset)?;
                self.segments.insert(offset, segment);
                self.log_start_offset = offset;
                self.dir_dirty = true;
            }
            Some(segment) => {
                segment.make_active();
                segment.truncate_to(offset)?;
            }
        }
        if self.dir_dirty {
            self.files.sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Empties the log and restarts it at `offset`, which may lie past the log
    /// end (Kafka's `truncateFullyAndStartAt`): a replica that installs a
    /// snapshot newer than its whole log keeps none of the log. The leader
    /// epoch cache is cleared, and the change is fsynced.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), StorageError> {
        self.check_online()?;
        assert!(offset >= 0, "a log cannot start at {offset}");
        if let Err(error) = self.restart_empty_at(offset) {
            return Err(self.fail("truncating fully", error));
        }
        self.generation += 1;
        self.log_start_offset = offset;
        self.recovery_point = offset;
        self.unflushed_since_ms = None;
        self.cleaner_offset = None;
        // Every epoch entry starts at or past 0: this drops them all.
        if let Err(error) = self.epochs.truncate_from_end(&self.files, 0) {
            return Err(self.fail("clearing the leader epoch cache", error));
        }
        assert_eq!(self.log_end_offset(), offset, "the restarted log is empty");
        self.check_invariants();
        Ok(())
    }

    /// Creates the log's next (active, empty) segment at `base_offset`.
    fn new_segment(&self, base_offset: i64) -> io::Result<Segment> {
        Segment::open(
            &self.dir,
            base_offset,
            &self.config,
            &self.files,
            &self.budget,
            true,
            self.offsets_may_skip,
        )
    }

    fn restart_empty_at(&mut self, offset: i64) -> io::Result<()> {
        self.count_cut();
        self.discard_spare();
        let doomed: Vec<i64> = self.segments.keys().copied().collect();
        for base in doomed {
            let segment = self.segments.remove(&base).expect("listed segment");
            segment.delete()?;
        }
        let segment = self.new_segment(offset)?;
        self.segments.insert(offset, segment);
        self.files.sync_dir(&self.dir)?;
        self.dir_dirty = false;
        Ok(())
    }

    /// Seals the active segment and starts a new one at the log end offset.
    /// Does nothing if the active segment is empty. Under the `EveryBatch` and
    /// `OnRoll` policies the log is then fsynced.
    pub fn roll(&mut self, now_ms: i64) -> Result<(), StorageError> {
        self.check_online()?;
        if self.active().is_empty() {
            return Ok(());
        }
        self.roll_at(self.log_end_offset(), now_ms)
    }

    /// Seals the active segment (or, if it is empty, replaces it) and starts a
    /// new one at `base_offset`, which is past the log end only in a log whose
    /// offsets may skip.
    fn roll_at(&mut self, base_offset: i64, now_ms: i64) -> Result<(), StorageError> {
        let log_end_offset = self.log_end_offset();
        assert!(
            base_offset == log_end_offset
                || (self.offsets_may_skip && base_offset > log_end_offset),
            "a new segment at {base_offset} must start at the log end {log_end_offset}"
        );
        let replaced_empty = self.active().is_empty();
        if replaced_empty && base_offset == self.active().base_offset() {
            return Ok(());
        }
        if !replaced_empty {
            if let Err(error) = self.active_mut().seal() {
                return Err(self.fail("sealing a segment", error));
            }
        }
        self.use_spare(base_offset);
        let opened = self.new_segment(base_offset);
        match opened {
            Ok(mut segment) => {
                assert!(segment.is_empty(), "a new segment must start empty");
                segment.rolling_base_ms = Some(now_ms);
                if replaced_empty {
                    let empty_base = self.active().base_offset();
                    let empty = self.segments.remove(&empty_base).expect("active segment");
                    if let Err(error) = empty.delete() {
                        return Err(self.fail("removing an empty segment", error));
                    }
                }
                self.segments.insert(base_offset, segment);
                self.dir_dirty = true;
            }
            Err(error) => return Err(self.fail("creating a segment", error)),
        }
        if !matches!(self.config.flush_policy, FlushPolicy::IntervalMs(_)) {
            self.flush()?;
        }
        Ok(())
    }

    /// Records that `leader_epoch` starts at `start_offset` in the leader-epoch
    /// cache (ignored unless newer than the latest epoch), persisted at once.
    pub fn assign_epoch_start(
        &mut self,
        leader_epoch: i32,
        start_offset: i64,
    ) -> Result<(), StorageError> {
        self.check_online()?;
        match self.epochs.assign(&self.files, leader_epoch, start_offset) {
            Ok(_) => Ok(()),
            Err(error) => Err(self.fail("writing the leader epoch checkpoint", error)),
        }
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// KIP-101 OffsetForLeaderEpoch: `(epoch, end offset)`, `None` for UNDEFINED.
    pub fn end_offset_for_epoch(&self, leader_epoch: i32) -> Option<(i32, i64)> {
        self.epochs
            .end_offset_for(leader_epoch, self.log_end_offset())
    }

    /// The leader-epoch cache entries `(epoch, start_offset)`.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.epochs.entries().to_vec()
    }

    /// Takes the partition offline for a reason other than an I/O error.
    pub fn mark_offline(&mut self, reason: &str) {
        self.offline.get_or_insert_with(|| reason.to_string());
        self.discard_spare();
    }

    pub fn is_offline(&self) -> bool {
        self.offline.is_some()
    }

    /// Whether offsets may skip between batches (the log was compacted).
    pub fn offsets_may_skip(&self) -> bool {
        self.offsets_may_skip
    }

    /// Marks the log as one whose offsets may skip, durably, before any gap
    /// exists: the marker file is written and the directory fsynced.
    pub(crate) fn allow_offset_gaps(&mut self) -> Result<(), StorageError> {
        if self.offsets_may_skip {
            return Ok(());
        }
        let path = self.dir.join(OFFSETS_MAY_SKIP_FILE);
        if let Err(error) = self
            .files
            .write_atomically(&path, OFFSETS_MAY_SKIP_CONTENTS)
        {
            return Err(self.fail("writing the offsets-may-skip marker", error));
        }
        self.offsets_may_skip = true;
        for segment in self.segments.values_mut() {
            segment.allow_offset_gaps();
        }
        Ok(())
    }

    /// Everything below this offset has been cleaned (`None`: never cleaned).
    pub fn cleaner_offset(&self) -> Option<i64> {
        self.cleaner_offset
    }

    /// Why the partition is offline, if it is.
    pub fn offline_reason(&self) -> Option<&str> {
        self.offline.as_deref()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The topic id from `partition.metadata`, if the directory has one.
    pub fn topic_id(&self) -> Option<uuid::Uuid> {
        self.topic_id
    }

    /// Writes `partition.metadata` with this topic id.
    pub fn set_topic_id(&mut self, topic_id: uuid::Uuid) -> Result<(), StorageError> {
        metadata::write_partition_metadata(&self.files, &self.dir, *topic_id.as_bytes())?;
        self.topic_id = Some(topic_id);
        Ok(())
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration; takes effect at the next append, roll or retention pass.
    pub fn set_config(&mut self, config: LogConfig) -> Result<(), StorageError> {
        config
            .validate()
            .map_err(|reason| StorageError::InvalidConfig { reason })?;
        self.config = config;
        Ok(())
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Total bytes of batches in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size_bytes).sum()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    /// Waits for a trim under way outside the lock, and keeps the ones
    /// already planned from running: segment files are about to change in
    /// place.
    fn count_cut(&self) {
        *self.cuts.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    }

    /// Drops every cached mapping of this log (readers keep theirs).
    pub fn unmap(&self) {
        for segment in self.segments.values() {
            segment.unmap();
        }
    }

    /// Flushes, trims every file to its data (unless a reader still maps it),
    /// unmaps, and closes the log: later calls answer `Offline`.
    pub fn close(&mut self) -> Result<(), StorageError> {
        self.check_online()?;
        // A later open of the log must not meet a trim planned now.
        self.count_cut();
        self.flush()?;
        let mut failure = None;
        for segment in self.segments.values_mut() {
            if let Err(error) = segment.trim() {
                failure = Some(error);
                break;
            }
        }
        if let Some(error) = failure {
            return Err(self.fail("trimming at close", error));
        }
        self.unmap();
        self.offline = Some("the log is closed".to_string());
        self.discard_spare();
        Ok(())
    }
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("dir", &self.dir)
            .field("log_start_offset", &self.log_start_offset)
            .field("log_end_offset", &self.log_end_offset())
            .field("recovery_point", &self.recovery_point)
            .field("segments", &self.segments.len())
            .field("offline", &self.offline)
            .finish()
    }
}
