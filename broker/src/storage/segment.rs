//! One segment: a `.log` file of record batches, as on the wire, with its
//! `.index` and `.timeindex`, all named by the segment's base offset.
//!
//! The active segment's file is allocated ahead of the data in steps of
//! `preallocate_step_bytes` (`fallocate`, so a full disk is an append error
//! before anything is written); the bytes past the data are zero, and a zero
//! `batch_length` is the normal end of the data. Appends are positional
//! writes (`pwritev`) on a descriptor the segment keeps open while it is
//! active (`Writer`): each batch goes out as two buffers, its header with
//! the assigned base offset and leader epoch, then the rest straight from the
//! caller's bytes, so record bytes are copied once, into the page cache. The
//! file is never written through a mapping: a store to a fresh page of a
//! shared mapping faults, and the kernel reads (zero-fills) the page before
//! the store lands, which cost more CPU than the copy itself.
//!
//! Every `writeback_after_bytes` appended, the whole pages appended since are
//! handed to the file layer's writeback thread, which has the kernel start
//! writing them (see [`FileLayer::start_writeback`]); the last, partial page
//! waits, as the next append rewrites it.
//!
//! Reads go through a read-only mapping, which sees what `pwritev` wrote
//! (Linux keeps one page cache for both): for the active segment a mapping
//! of the whole allocated file, for a sealed one (trimmed to its data) a
//! mapping of exactly the data. Both are created on demand and evictable.
//!
//! Batches follow each other with increasing offsets. In a log that was
//! compacted (`offsets_may_skip`), a batch may start past the end of the one
//! before it: the cleaner dropped the batches in between. Otherwise each batch
//! must continue the previous one exactly, and recovery cuts the file where one
//! does not.

use std::fs::File;
use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use protocol::batch::{
    assign_offset_and_epoch, BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES,
};

use crate::storage::config::LogConfig;
use crate::storage::file::{FileLayer, Writer};
use crate::storage::index::{OffsetIndex, TimeIndex};
use crate::storage::mapping::{bytes_of, Map, MappingBudget, Slot};

pub const LOG_FILE_SUFFIX: &str = "log";
pub const INDEX_FILE_SUFFIX: &str = "index";
pub const TIME_INDEX_FILE_SUFFIX: &str = "timeindex";
/// The smallest `batch_length` a v2 batch can have.
const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
/// Offsets within a segment are stored relative to its base as u32; Kafka
/// keeps them within `i32::MAX`, and so do we.
pub const RELATIVE_OFFSET_MAX: i64 = i32::MAX as i64;
/// Positions within a segment are u32 in the offset index; Kafka caps a
/// segment at `i32::MAX` bytes.
pub const SEGMENT_POSITION_MAX: u64 = i32::MAX as u64;

/// A read of the active segment that starts within this many bytes of its
/// end reads pages appended moments ago, still cached: it asks for no
/// read-ahead (see [`Segment::read`]).
const RECENT_BYTES: u64 = 4 << 20;
/// How far ahead a recovery scan asks the kernel to read.
const WALK_READ_AHEAD_BYTES: u64 = 4 << 20;
/// Batches written by one `pwritev` call of [`Segment::append`].
const BATCHES_PER_WRITE: usize = 16;

/// The page size writeback ranges are aligned to: a page the next append
/// writes into again is not written back before it is whole.
const WRITEBACK_PAGE_BYTES: u64 = 4096;

/// The end of the whole pages among the first `bytes` of a file.
fn whole_pages_end(bytes: u64) -> u64 {
    bytes / WRITEBACK_PAGE_BYTES * WRITEBACK_PAGE_BYTES
}

/// `<base offset, 20 digits>.<suffix>`, so segment files sort by name.
pub fn segment_file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// The three files of one segment. With a `temporary_suffix` they are a copy
/// being prepared under another name, e.g. `00000000000000000000.log.cleaned`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentPaths {
    pub(crate) log: PathBuf,
    pub(crate) index: PathBuf,
    pub(crate) time_index: PathBuf,
}

impl SegmentPaths {
    pub(crate) fn new(dir: &Path, base_offset: i64, temporary_suffix: Option<&str>) -> Self {
        let path = |suffix: &str| {
            let name = segment_file_name(base_offset, suffix);
            match temporary_suffix {
                None => dir.join(name),
                Some(extra) => dir.join(format!("{name}.{extra}")),
            }
        };
        SegmentPaths {
            log: path(LOG_FILE_SUFFIX),
            index: path(INDEX_FILE_SUFFIX),
            time_index: path(TIME_INDEX_FILE_SUFFIX),
        }
    }

    /// The index files first and the log last: the order of a swap's renames.
    pub(crate) fn all(&self) -> [&Path; 3] {
        [&self.index, &self.time_index, &self.log]
    }
}

fn invalid_data(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

/// What one step of a walk over a segment found at a position.
enum Step {
    Batch {
        total: usize,
        base_offset: i64,
        next_offset: i64,
        max_timestamp: i64,
    },
    /// Zeros (preallocated space) or nothing: the normal end of the data.
    End,
    Invalid(String),
}

/// Inspects the batch that should start at `bytes[0]`, with `bytes` running to
/// the end of the file. Every field read from disk is checked; nothing panics.
/// The batch must start at `expected_offset`, or (unless `dense`) past it.
fn inspect(
    bytes: &[u8],
    segment_base: i64,
    expected_offset: i64,
    validate_crc: bool,
    dense: bool,
) -> Step {
    let overhead = &bytes[..bytes.len().min(LOG_OVERHEAD_BYTES)];
    if overhead.iter().all(|&b| b == 0) {
        return Step::End;
    }
    let header = match BatchHeader::new(bytes) {
        Ok(header) => header,
        Err(error) => return Step::Invalid(format!("torn batch header: {error}")),
    };
    let batch_length = header.batch_length();
    if batch_length < BATCH_LENGTH_MIN {
        return Step::Invalid(format!("impossible batch length {batch_length}"));
    }
    let total = header.total_bytes();
    if total > bytes.len() {
        return Step::Invalid(format!(
            "torn batch: {total} bytes announced, {} present",
            bytes.len()
        ));
    }
    if validate_crc {
        if let Err(error) = header.validate() {
            return Step::Invalid(error.to_string());
        }
    } else if header.magic() != protocol::batch::MAGIC_V2 || header.last_offset_delta() < 0 {
        return Step::Invalid("bad magic or offset delta".to_string());
    }
    let base_offset = header.base_offset();
    if base_offset < expected_offset || (dense && base_offset != expected_offset) {
        return Step::Invalid(format!(
            "batch at offset {base_offset} does not continue offset {expected_offset}"
        ));
    }
    let next_offset = base_offset
        .checked_add(i64::from(header.last_offset_delta()))
        .and_then(|last| last.checked_add(1));
    match next_offset {
        Some(next_offset) if next_offset - 1 - segment_base <= RELATIVE_OFFSET_MAX => Step::Batch {
            total,
            base_offset,
            next_offset,
            max_timestamp: header.max_timestamp(),
        },
        _ => Step::Invalid(format!(
            "offsets of batch {base_offset} overflow the segment"
        )),
    }
}

/// Where one batch of an append went, kept to index it once written.
#[derive(Clone, Copy, Debug, Default)]
struct AppendedBatch {
    /// Within the appended records.
    position: usize,
    total: usize,
    base_offset: i64,
    max_timestamp: i64,
}

/// How a recovery scan of one segment ended.
#[derive(Debug, Default)]
pub(crate) struct ScanOutcome {
    pub(crate) bytes_scanned: u64,
    pub(crate) bytes_truncated: u64,
    pub(crate) invalid: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    paths: SegmentPaths,
    files: FileLayer,
    /// Bytes of whole batches at the start of the file.
    data_len: u64,
    /// Bytes of the `.log` file in use, all of them allocated: up to where
    /// appends have room while the segment is active, exactly the data once
    /// it is sealed.
    capacity: u64,
    /// Length of the `.log` file: `capacity`, or more until a sealed
    /// segment's trim shrinks it.
    file_bytes: u64,
    next_offset: i64,
    max_timestamp: i64,
    /// Base offset of the first batch with `max_timestamp`, or -1.
    offset_of_max_timestamp: i64,
    bytes_since_index: u64,
    index_interval_bytes: u64,
    /// Where the pages handed to writeback end (a page boundary).
    written_back: u64,
    writeback_after_bytes: u64,
    /// When the segment's age is counted from (first append in this process).
    pub(crate) rolling_base_ms: Option<i64>,
    log_slot: Slot,
    /// Appends go through it; closed while the segment is sealed.
    writer: Writer,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    active: bool,
    /// Written since the last fsync.
    dirty: bool,
    /// Batches may start past the end of the previous one (a compacted log).
    offsets_may_skip: bool,
}

/// The files of a sealed segment to shrink to what it uses (see
/// [`Segment::plan_trim`]).
pub(crate) struct SegmentTrim {
    pub(crate) base_offset: i64,
    /// Descriptors and the length to keep of each.
    files: Vec<(File, u64)>,
}

impl SegmentTrim {
    /// Shrinks each file unless a live mapping reaches past the length to
    /// keep. Returns whether every file is now exactly what the segment uses.
    pub(crate) fn run(&self, layer: &FileLayer) -> io::Result<bool> {
        let mut all = true;
        for (file, len) in &self.files {
            all &= layer.shrink_if_unmapped(file, *len)?;
        }
        Ok(all)
    }
}

impl Segment {
    /// Opens the segment with this base offset in `dir`, creating empty files
    /// if absent. Locates the end of the data by walking the batch headers
    /// from the last offset-index entry (no CRC checks; see [`Segment::recover`]).
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        files: &FileLayer,
        budget: &MappingBudget,
        active: bool,
        offsets_may_skip: bool,
    ) -> io::Result<Segment> {
        let paths = SegmentPaths::new(dir, base_offset, None);
        Self::open_at(
            paths,
            base_offset,
            config,
            files,
            budget,
            active,
            offsets_may_skip,
        )
    }

    /// Creates an empty, writable segment under temporary names (`temporary_suffix`),
    /// replacing any stale files of those names. The cleaner writes a compacted
    /// copy into it and then swaps it in (see `swap.rs`).
    pub(crate) fn create_temporary(
        dir: &Path,
        base_offset: i64,
        temporary_suffix: &str,
        config: &LogConfig,
        files: &FileLayer,
        budget: &MappingBudget,
    ) -> io::Result<Segment> {
        let paths = SegmentPaths::new(dir, base_offset, Some(temporary_suffix));
        for path in paths.all() {
            files.remove_file(path)?;
        }
        let segment = Self::open_at(paths, base_offset, config, files, budget, true, true)?;
        assert!(segment.is_empty(), "a temporary segment must start empty");
        Ok(segment)
    }

    fn open_at(
        paths: SegmentPaths,
        base_offset: i64,
        config: &LogConfig,
        files: &FileLayer,
        budget: &MappingBudget,
        active: bool,
        offsets_may_skip: bool,
    ) -> io::Result<Segment> {
        assert!(base_offset >= 0, "segment base offset must not be negative");
        let file = files.open_rw(&paths.log, true)?;
        let capacity = file.metadata()?.len();
        drop(file);
        let offset_index =
            OffsetIndex::open(files, budget, &paths.index, config.segment_index_bytes_max)?;
        let time_index = TimeIndex::open(
            files,
            budget,
            &paths.time_index,
            config.segment_index_bytes_max,
        )?;
        let writer = files.writer(&paths.log);
        let mut segment = Segment {
            base_offset,
            paths,
            files: files.clone(),
            data_len: 0,
            capacity,
            file_bytes: capacity,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            bytes_since_index: 0,
            index_interval_bytes: config.index_interval_bytes,
            written_back: 0,
            writeback_after_bytes: config.writeback_after_bytes,
            rolling_base_ms: None,
            log_slot: Slot::new(budget),
            writer,
            offset_index,
            time_index,
            active,
            dirty: false,
            offsets_may_skip,
        };
        segment.locate_end()?;
        Ok(segment)
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub(crate) fn size_bytes(&self) -> u64 {
        self.data_len
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.data_len == 0
    }
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub(crate) fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }
    /// Some file is longer than what the segment uses: a sealed segment not
    /// trimmed yet (see [`Segment::plan_trim`]).
    pub(crate) fn trim_pending(&self) -> bool {
        self.file_bytes > self.capacity
            || self.offset_index.file.has_slack()
            || self.time_index.file.has_slack()
    }
    pub(crate) fn index_is_full(&self) -> bool {
        self.offset_index.file.is_full() || self.time_index.file.is_full()
    }
    pub(crate) fn log_path(&self) -> &Path {
        &self.paths.log
    }

    /// From now on batches may start past the end of the previous one.
    pub(crate) fn allow_offset_gaps(&mut self) {
        self.offsets_may_skip = true;
    }

    /// Every batch of the segment, as one zero-copy slice of its mapping. The
    /// slice stays readable whatever happens to the segment afterwards.
    pub(crate) fn data(&self) -> io::Result<Bytes> {
        match self.map_for_read()? {
            Some(map) => {
                if self.active {
                    map.read_ahead(0, self.data_len as usize);
                }
                Ok(bytes_of(&map, 0, self.data_len as usize))
            }
            None => Ok(Bytes::new()),
        }
    }

    /// Milliseconds since the epoch of the `.log` file's last modification.
    pub(crate) fn last_modified_ms(&self) -> i64 {
        std::fs::metadata(&self.paths.log)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64)
    }

    /// The read-only mapping to read the data through: of the whole allocated
    /// file of an active segment (so it serves appends to come), or of exactly
    /// the data of a sealed one.
    fn map_for_read(&self) -> io::Result<Option<Arc<Map>>> {
        if self.data_len == 0 {
            return Ok(None);
        }
        let data_len = self.data_len;
        let len = if self.active {
            self.capacity
        } else {
            self.data_len
        };
        let map = self
            .log_slot
            .get_or_map(|map| map.len() as u64 >= data_len, || self.open_map(len))?;
        Ok(Some(map))
    }

    /// A read-only mapping of the first `len` bytes of the `.log`. One that
    /// reaches past the data, into the allocated room appends will write,
    /// reads ahead only when asked ([`Map::stop_read_ahead`]).
    fn open_map(&self, len: u64) -> io::Result<Map> {
        let map = Map::open(&self.files, &self.paths.log, len, false)?;
        if len > self.data_len {
            map.stop_read_ahead();
        }
        Ok(map)
    }

    /// Walks batches from `position` (expected to hold `offset`) to the end of
    /// the file, updating the data end, next offset and largest timestamp, and
    /// (if `index`) the indexes. Stops at the normal end or the first invalid batch.
    fn walk(
        &mut self,
        mut position: u64,
        mut offset: i64,
        validate_crc: bool,
        index: bool,
    ) -> io::Result<ScanOutcome> {
        let mut outcome = ScanOutcome::default();
        let file_len = self.capacity.min(SEGMENT_POSITION_MAX);
        self.data_len = position;
        self.next_offset = offset;
        if position >= file_len {
            return Ok(outcome);
        }
        // Map the whole file: the end of the data is not known yet.
        let map = self.map_whole_file()?;
        let start = position;
        let mut read_ahead_to = position;
        while position < file_len {
            if position >= read_ahead_to {
                // The data's end is not known yet: ask for a step at a time,
                // so at most one step of the room past it is read (as zeros).
                read_ahead_to = (position + WALK_READ_AHEAD_BYTES).min(file_len);
                map.read_ahead(position as usize, read_ahead_to as usize);
            }
            let rest = map.slice(position as usize, file_len as usize);
            match inspect(
                rest,
                self.base_offset,
                offset,
                validate_crc,
                !self.offsets_may_skip,
            ) {
                Step::End => break,
                Step::Invalid(reason) => {
                    outcome.invalid = Some(reason);
                    break;
                }
                Step::Batch {
                    total,
                    base_offset,
                    next_offset,
                    max_timestamp,
                } => {
                    if index {
                        self.offset_index.file.reserve(1)?;
                        self.time_index.file.reserve(1)?;
                        self.index_batch(position, base_offset, total as u64, max_timestamp)?;
                    } else {
                        self.note_timestamp(base_offset, max_timestamp);
                        self.bytes_since_index += total as u64;
                    }
                    position += total as u64;
                    offset = next_offset;
                    self.data_len = position;
                    self.next_offset = offset;
                }
            }
        }
        outcome.bytes_scanned = position - start;
        if outcome.invalid.is_some() {
            outcome.bytes_truncated = self.capacity - position;
        }
        Ok(outcome)
    }

    /// A read-only mapping of the whole file (whose data end may not be known yet).
    fn map_whole_file(&self) -> io::Result<Arc<Map>> {
        let capacity = self.capacity;
        self.log_slot.get_or_map(
            |map| map.len() as u64 >= capacity,
            || self.open_map(capacity),
        )
    }

    fn note_timestamp(&mut self, base_offset: i64, max_timestamp: i64) {
        if max_timestamp > self.max_timestamp {
            self.max_timestamp = max_timestamp;
            self.offset_of_max_timestamp = base_offset;
        }
    }

    fn relative(&self, offset: i64) -> u32 {
        let relative = offset - self.base_offset;
        assert!(
            (0..=RELATIVE_OFFSET_MAX).contains(&relative),
            "offset {offset} outside segment {}",
            self.base_offset
        );
        relative as u32
    }

    /// Index bookkeeping for one batch at `position`; the caller reserved room.
    fn index_batch(
        &mut self,
        position: u64,
        base_offset: i64,
        total: u64,
        max_timestamp: i64,
    ) -> io::Result<()> {
        self.note_timestamp(base_offset, max_timestamp);
        if position > 0 && self.bytes_since_index > self.index_interval_bytes {
            let relative = self.relative(base_offset);
            self.offset_index.append(relative, position as u32)?;
            if self.offset_of_max_timestamp >= 0 {
                let of_max = self.relative(self.offset_of_max_timestamp);
                self.time_index.maybe_append(self.max_timestamp, of_max)?;
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += total;
        Ok(())
    }

    /// Finds the end of the data from the last offset-index entry, trusting the
    /// batches (used for flushed segments and after a clean shutdown). Falls
    /// back to rebuilding the indexes if the last entry does not check out.
    fn locate_end(&mut self) -> io::Result<()> {
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.bytes_since_index = 0;
        let start = match self.offset_index.last()? {
            None => Some((0, self.base_offset)),
            Some((relative, position)) => {
                let offset = self.base_offset + i64::from(relative);
                self.header_base_offset_at(u64::from(position))?
                    .filter(|&at| at == offset)
                    .map(|_| (u64::from(position), offset))
            }
        };
        let Some((position, offset)) = start else {
            tracing::warn!(segment = %self.paths.log.display(), "offset index does not match the log; rebuilding it");
            return self.rebuild_indexes(false).map(|_| ());
        };
        if let Some((timestamp, relative)) = self.time_index.last()? {
            self.note_timestamp(self.base_offset + i64::from(relative), timestamp);
        }
        let outcome = self.walk(position, offset, false, false)?;
        if let Some(reason) = outcome.invalid {
            tracing::warn!(segment = %self.paths.log.display(), %reason, data_len = self.data_len,
                "segment data ends at an unreadable batch");
        }
        Ok(())
    }

    /// The base offset stored in the batch header at `position`, if one fits.
    fn header_base_offset_at(&self, position: u64) -> io::Result<Option<i64>> {
        if position + BATCH_HEADER_BYTES as u64 > self.capacity || position == 0 {
            return Ok(None);
        }
        let map = self.map_whole_file()?;
        let header = map.slice(position as usize, position as usize + BATCH_HEADER_BYTES);
        Ok(BatchHeader::new(header).ok().map(|h| h.base_offset()))
    }

    fn rebuild_indexes(&mut self, validate_crc: bool) -> io::Result<ScanOutcome> {
        self.offset_index.file.reset()?;
        self.time_index.file.reset()?;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.bytes_since_index = 0;
        self.dirty = true;
        self.walk(0, self.base_offset, validate_crc, true)
    }

    /// Validates every batch (lengths, magic, CRC, continuing offsets), cuts
    /// the file at the first invalid one and rebuilds both indexes.
    pub(crate) fn recover(&mut self) -> io::Result<ScanOutcome> {
        let outcome = self.rebuild_indexes(true)?;
        if outcome.invalid.is_some() {
            self.cut_file(self.data_len)?;
        }
        Ok(outcome)
    }

    /// Makes the file exactly `len` bytes without shrinking any live mapping:
    /// shrinks it in place if nothing maps it, else replaces it with a copy of
    /// its prefix (readers keep the old inode and its unchanged bytes).
    fn cut_file(&mut self, len: u64) -> io::Result<()> {
        self.log_slot.clear();
        // A replacement is a new inode: the next append must reopen the path.
        self.writer.close();
        if !self.files.set_len_if_unmapped(&self.paths.log, len)? {
            self.files.replace_with_prefix(&self.paths.log, len)?;
        }
        self.capacity = len;
        self.file_bytes = len;
        self.written_back = self.written_back.min(whole_pages_end(len));
        self.files.sync_file(&self.paths.log)?;
        Ok(())
    }

    /// Position of the batch containing `offset` (or, if `offset` lies in a
    /// gap the cleaner left or before the segment, of the first batch after
    /// it), or `None` past the data. Uses the offset index, then scans batch
    /// headers; a bad index entry falls back to a scan from the start.
    pub(crate) fn position_of(&self, offset: i64) -> io::Result<Option<u64>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let offset = offset.max(self.base_offset);
        let Some(map) = self.map_for_read()? else {
            return Ok(None);
        };
        let relative = (offset - self.base_offset).min(i64::from(u32::MAX)) as u32;
        let hint = self
            .offset_index
            .lookup(relative)?
            .filter(|&(_, position)| u64::from(position) < self.data_len)
            .map(|(relative, position)| {
                (u64::from(position), self.base_offset + i64::from(relative))
            });
        let starts = [hint, Some((0, self.base_offset))];
        for (mut position, expected) in starts.into_iter().flatten() {
            let mut expected = expected;
            let mut consistent = true;
            while position < self.data_len {
                let rest = map.slice(position as usize, self.data_len as usize);
                match inspect(
                    rest,
                    self.base_offset,
                    expected,
                    false,
                    !self.offsets_may_skip,
                ) {
                    Step::Batch {
                        total, next_offset, ..
                    } => {
                        if next_offset > offset {
                            return Ok(Some(position));
                        }
                        position += total as u64;
                        expected = next_offset;
                    }
                    _ => {
                        consistent = false;
                        break;
                    }
                }
            }
            if consistent {
                return Ok(None);
            }
        }
        Err(invalid_data(format!(
            "{}: no readable batch holds offset {offset}",
            self.paths.log.display()
        )))
    }

    /// Whole batches starting with the one containing `offset`, up to
    /// `max_bytes` (but at least one batch if `min_one_batch`), excluding any
    /// batch whose last offset reaches `max_offset`.
    pub(crate) fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> io::Result<Bytes> {
        let Some(start) = self.position_of(offset)? else {
            return Ok(Bytes::new());
        };
        let Some(map) = self.map_for_read()? else {
            return Ok(Bytes::new());
        };
        if self.active && self.data_len - start > RECENT_BYTES {
            // A reader behind the tail, whose pages may have left the cache:
            // the active segment's mapping does not read ahead by itself.
            let wanted = start.saturating_add(max_bytes as u64).min(self.data_len);
            map.read_ahead(start as usize, wanted as usize);
        }
        let mut end = start;
        while end < self.data_len {
            let (total, next_offset) = self.batch_at(&map, end)?;
            if next_offset > max_offset {
                break;
            }
            let taken = (end - start) as usize;
            if taken + total as usize > max_bytes && !(taken == 0 && min_one_batch) {
                break;
            }
            end += total;
        }
        Ok(bytes_of(&map, start as usize, end as usize))
    }

    /// `(total_bytes, next_offset)` of the batch at `position` within the data,
    /// checked so that damaged bytes give an error, never a panic or a loop.
    fn batch_at(&self, map: &Map, position: u64) -> io::Result<(u64, i64)> {
        let rest = map.slice(position as usize, self.data_len as usize);
        let broken = |reason: String| {
            invalid_data(format!(
                "{}: batch at position {position}: {reason}",
                self.paths.log.display()
            ))
        };
        let header = BatchHeader::new(rest).map_err(|error| broken(error.to_string()))?;
        let total = header.total_bytes();
        if header.batch_length() < BATCH_LENGTH_MIN || total > rest.len() {
            return Err(broken(format!("impossible length {total}")));
        }
        let next_offset = header
            .base_offset()
            .checked_add(i64::from(header.last_offset_delta()))
            .and_then(|last| last.checked_add(1))
            .ok_or_else(|| broken("offset overflow".to_string()))?;
        Ok((total as u64, next_offset))
    }

    /// The first batch whose largest timestamp is `>= timestamp`, as
    /// `(base_offset, max_timestamp)`.
    pub(crate) fn find_timestamp(&self, timestamp: i64) -> io::Result<Option<(i64, i64)>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let start_offset = match self.time_index.lookup_below(timestamp)? {
            Some((_, relative)) => self.base_offset + i64::from(relative),
            None => self.base_offset,
        };
        let Some(mut position) = self
            .position_of(start_offset)?
            .or(self.position_of(self.base_offset)?)
        else {
            return Ok(None);
        };
        let Some(map) = self.map_for_read()? else {
            return Ok(None);
        };
        while position < self.data_len {
            let (total, _) = self.batch_at(&map, position)?;
            let header = BatchHeader::new(map.slice(position as usize, self.data_len as usize))
                .map_err(|error| invalid_data(error.to_string()))?;
            if header.max_timestamp() >= timestamp {
                // Kafka answers the first record at or after the timestamp,
                // which may lie inside the batch: an uncompressed batch is
                // read record by record (only here, never on produce or
                // fetch); a compressed one answers its base offset.
                let batch = bytes::Bytes::copy_from_slice(
                    map.slice(position as usize, (position + total) as usize),
                );
                let first = protocol::batch::decode_records(&batch)
                    .ok()
                    .and_then(|records| records.into_iter().find(|r| r.timestamp >= timestamp));
                return Ok(Some(match first {
                    Some(record) => (record.offset, record.timestamp),
                    None => (header.base_offset(), header.max_timestamp()),
                }));
            }
            position += total;
        }
        Ok(None)
    }

    /// Reserves disk space for `bytes` more log bytes and `batches` more
    /// index entries, growing the file in `step` increments.
    pub(crate) fn reserve(&mut self, bytes: u64, batches: usize, step: u64) -> io::Result<()> {
        assert!(self.active, "only the active segment grows");
        let end = self.data_len + bytes;
        if end > self.capacity {
            let step = step.max(1);
            let new_capacity = end.div_ceil(step).saturating_mul(step);
            self.files
                .allocate(&self.paths.log, self.capacity, new_capacity - self.capacity)?;
            self.capacity = new_capacity;
            self.file_bytes = self.file_bytes.max(new_capacity);
        }
        // At most one index entry per batch, and one per index interval.
        let entries = match bytes.checked_div(self.index_interval_bytes) {
            Some(intervals) => batches.min(intervals as usize + 1),
            None => batches,
        };
        self.offset_index.file.reserve(entries)?;
        self.time_index.file.reserve(entries)?;
        Ok(())
    }

    /// Writes `records` (whole batches whose headers the caller checked) at the
    /// end of the data, either rewriting each batch's base offset and leader
    /// epoch on the way (`assign = Some((first_offset, epoch))`) or keeping
    /// them, and indexes them. The caller reserved the space. Returns the next
    /// offset after the records.
    pub(crate) fn append(
        &mut self,
        records: &[u8],
        assign: Option<(i64, i32)>,
        now_ms: i64,
    ) -> io::Result<i64> {
        let start = self.data_len;
        let end = start + records.len() as u64;
        assert!(self.active, "only the active segment is written");
        assert!(end <= SEGMENT_POSITION_MAX, "segment position overflow");
        assert!(end <= self.capacity, "write past the allocated space");
        let mut offset = match assign {
            Some((first_offset, _)) => first_offset,
            None => self.next_offset,
        };
        let mut position = 0usize;
        // Bounded by the records: each round takes at least one batch.
        while position < records.len() {
            let round_start = position;
            // The headers of this round's batches with offset and epoch assigned.
            let mut headers = [[0u8; BATCH_HEADER_BYTES]; BATCHES_PER_WRITE];
            let mut batches = [AppendedBatch::default(); BATCHES_PER_WRITE];
            let mut count = 0;
            while count < BATCHES_PER_WRITE && position < records.len() {
                let header = BatchHeader::new(&records[position..])
                    .expect("caller checked the batch headers");
                let total = header.total_bytes();
                let base_offset = match assign {
                    Some((_, epoch)) => {
                        let patched = &mut headers[count];
                        patched.copy_from_slice(&records[position..position + BATCH_HEADER_BYTES]);
                        assign_offset_and_epoch(patched, offset, epoch);
                        offset
                    }
                    None => header.base_offset(),
                };
                if assign.is_some() || !self.offsets_may_skip {
                    assert_eq!(base_offset, offset, "offsets must be dense and increasing");
                } else {
                    assert!(base_offset >= offset, "offsets must increase");
                }
                batches[count] = AppendedBatch {
                    position,
                    total,
                    base_offset,
                    max_timestamp: header.max_timestamp(),
                };
                offset = base_offset + i64::from(header.last_offset_delta()) + 1;
                position += total;
                count += 1;
            }
            let round = &batches[..count];
            let at = start + round_start as u64;
            if assign.is_some() {
                let mut buffers = [IoSlice::new(&[]); 2 * BATCHES_PER_WRITE];
                for (i, batch) in round.iter().enumerate() {
                    let rest = batch.position + BATCH_HEADER_BYTES..batch.position + batch.total;
                    buffers[2 * i] = IoSlice::new(&headers[i]);
                    buffers[2 * i + 1] = IoSlice::new(&records[rest]);
                }
                self.files
                    .write_all_at(&mut self.writer, at, &mut buffers[..2 * count])?;
            } else {
                let mut buffers = [IoSlice::new(&records[round_start..position])];
                self.files
                    .write_all_at(&mut self.writer, at, &mut buffers)?;
            }
            for batch in round {
                self.index_batch(
                    start + batch.position as u64,
                    batch.base_offset,
                    batch.total as u64,
                    batch.max_timestamp,
                )?;
            }
        }
        self.data_len = end;
        self.maybe_start_writeback();
        self.next_offset = offset;
        self.dirty = true;
        self.rolling_base_ms.get_or_insert(now_ms);
        Ok(offset)
    }

    /// Hands the whole pages appended since the last writeback to the file
    /// layer's writeback thread once there are `writeback_after_bytes` of them.
    fn maybe_start_writeback(&mut self) {
        if self.writeback_after_bytes == 0 {
            return;
        }
        let end = whole_pages_end(self.data_len);
        if end < self.written_back + self.writeback_after_bytes {
            return;
        }
        self.files
            .start_writeback(&mut self.writer, self.written_back, end - self.written_back);
        self.written_back = end;
    }

    /// Drops the batch containing `offset` (or, in a gap, the first batch
    /// after it) and everything after it. Returns the new next offset: the
    /// dropped batch's base offset, or less if a gap came before it.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> io::Result<i64> {
        let Some(position) = self.position_of(offset)? else {
            return Ok(self.next_offset);
        };
        self.offset_index.truncate_to_position(position as u32)?;
        let map = self.map_for_read()?.expect("a position implies data");
        let cut_offset = BatchHeader::new(map.slice(position as usize, self.data_len as usize))
            .map_err(|error| invalid_data(error.to_string()))?
            .base_offset();
        drop(map);
        self.time_index
            .truncate_to_offset(self.relative(cut_offset))?;
        self.active = true;
        self.cut_file(position)?;
        self.offset_index.file.sync()?;
        self.time_index.file.sync()?;
        self.locate_end()?;
        assert_eq!(self.data_len, position, "truncation must end at the cut");
        if self.offsets_may_skip {
            // The cut batch may follow a gap: the data then ends before its base.
            assert!(
                self.next_offset <= cut_offset,
                "truncation must not keep the cut batch"
            );
        } else {
            assert_eq!(
                self.next_offset, cut_offset,
                "truncation must end at the cut batch"
            );
        }
        Ok(self.next_offset)
    }

    /// Makes a sealed segment the active one again (the segments after it are gone).
    pub(crate) fn make_active(&mut self) {
        if !self.active {
            self.log_slot.clear();
            self.active = true;
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// Turns the active segment into a sealed one: records the final largest
    /// timestamp in the time index and stops using the room past the data.
    /// The files keep their length: shrinking them waits for the journal of
    /// the file system, so it is left to a trim off the append path
    /// ([`Segment::plan_trim`], or [`Segment::trim`]).
    pub(crate) fn seal(&mut self) -> io::Result<()> {
        if self.offset_of_max_timestamp >= 0 {
            self.time_index.file.reserve(1)?;
            let relative = self.relative(self.offset_of_max_timestamp);
            self.time_index.maybe_append(self.max_timestamp, relative)?;
        }
        self.active = false;
        self.writer.close();
        self.dirty = true;
        self.release_slack();
        Ok(())
    }

    /// From now on the segment is mapped only as far as its data and entries
    /// (nothing is appended to it any more).
    fn release_slack(&mut self) {
        if self.capacity > self.data_len {
            // The cached mapping covers the released room: drop it.
            self.log_slot.clear();
            self.capacity = self.data_len;
        }
        self.offset_index.file.release_slack();
        self.time_index.file.release_slack();
    }

    /// The files of a segment no longer appended to (a sealed one, or any at
    /// close) that are longer than what it uses, opened, with the lengths to
    /// shrink them to; `None` if there are none.
    /// The shrink ([`SegmentTrim::run`]) may then run without the partition
    /// lock: the segment's readers never touch a byte past those lengths, and
    /// a descriptor cannot reach a file that replaced this one. Only a cut of
    /// the segment in place (a truncation) must not overlap it.
    pub(crate) fn plan_trim(&self) -> io::Result<Option<SegmentTrim>> {
        if !self.trim_pending() {
            return Ok(None);
        }
        let mut files = Vec::with_capacity(3);
        if self.file_bytes > self.capacity {
            files.push((self.files.open_rw(&self.paths.log, false)?, self.capacity));
        }
        files.extend(self.offset_index.file.slack()?);
        files.extend(self.time_index.file.slack()?);
        Ok(Some(SegmentTrim {
            base_offset: self.base_offset,
            files,
        }))
    }

    /// A trim planned by [`Segment::plan_trim`] shrank every file.
    pub(crate) fn trimmed(&mut self) {
        self.file_bytes = self.capacity;
        self.offset_index.file.slack_trimmed();
        self.time_index.file.slack_trimmed();
    }

    /// Shrinks the files to their contents now, unless a live mapping (a
    /// reader's `Bytes` of the whole file from when it was active) reaches
    /// past them; then the trim stays pending.
    pub(crate) fn trim(&mut self) -> io::Result<()> {
        self.release_slack();
        if let Some(trim) = self.plan_trim()? {
            if trim.run(&self.files)? {
                self.trimmed();
            }
        }
        Ok(())
    }

    /// fsyncs the three files if anything was written since the last fsync.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.files.sync_file(&self.paths.log)?;
        self.offset_index.file.sync()?;
        self.time_index.file.sync()?;
        self.dirty = false;
        Ok(())
    }

    /// For a flush outside the partition lock: the files to fsync if anything
    /// was written since the last fsync, marking the segment clean. Whatever
    /// is appended afterwards makes it dirty again and waits for the next flush.
    pub(crate) fn take_dirty_paths(&mut self) -> Vec<PathBuf> {
        if !self.dirty {
            return Vec::new();
        }
        self.dirty = false;
        vec![
            self.paths.log.clone(),
            self.offset_index.file.path().to_path_buf(),
            self.time_index.file.path().to_path_buf(),
        ]
    }

    /// A flush outside the lock failed: the segment's data is not known to be on disk.
    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Drops the cached mappings and closes the write descriptor (both are
    /// re-created on demand).
    pub(crate) fn unmap(&self) {
        self.log_slot.clear();
        self.writer.close();
        self.offset_index.file.unmap();
        self.time_index.file.unmap();
    }

    /// Takes the segment out of its log without unlinking it yet: drops the
    /// cached mappings and the write descriptor and renames the files with
    /// the [`DELETED_SUFFIX`], which is quick. Unlinking a large file is
    /// not: the kernel frees its cached pages and blocks then (a third of a
    /// second for 1 GiB here), so it happens when the returned
    /// [`DoomedSegment`] is dropped, after the log's lock is released. A
    /// crash in between leaves `*.deleted` files, which recovery removes.
    pub(crate) fn doom(self) -> io::Result<DoomedSegment> {
        self.log_slot.clear();
        self.writer.close();
        self.offset_index.file.unmap();
        self.time_index.file.unmap();
        let mut doomed = DoomedSegment {
            files: self.files.clone(),
            paths: Vec::with_capacity(3),
        };
        for path in [
            self.paths.log.as_path(),
            self.offset_index.file.path(),
            self.time_index.file.path(),
        ] {
            let mut renamed = path.as_os_str().to_owned();
            renamed.push(".");
            renamed.push(DELETED_SUFFIX);
            let renamed = PathBuf::from(renamed);
            match self.files.rename(path, &renamed) {
                Ok(()) => doomed.paths.push(renamed),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(doomed)
    }

    /// Removes the files. Readers' `Bytes` keep the unlinked inode alive.
    pub(crate) fn delete(self) -> io::Result<()> {
        self.log_slot.clear();
        self.writer.close();
        self.files.remove_file(&self.paths.log)?;
        self.offset_index.file.delete()?;
        self.time_index.file.delete()?;
        Ok(())
    }
}

/// The suffix a segment's files get when the log lets go of them, until
/// they are unlinked (see [`Segment::doom`]).
pub const DELETED_SUFFIX: &str = "deleted";

/// The renamed files of a segment its log no longer has. Dropping it
/// unlinks them, so hold it only until the log's lock is released. Readers'
/// `Bytes` keep the unlinked inodes alive, as with any deletion.
#[derive(Debug)]
#[must_use = "dropping a DoomedSegment unlinks its files: drop it after the log's lock"]
pub struct DoomedSegment {
    files: FileLayer,
    paths: Vec<PathBuf>,
}

impl Drop for DoomedSegment {
    fn drop(&mut self) {
        for path in &self.paths {
            if let Err(error) = self.files.remove_file(path) {
                tracing::warn!(path = %path.display(), %error,
                    "cannot remove a deleted segment's file; recovery removes it");
            }
        }
    }
}
