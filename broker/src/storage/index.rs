//! The sparse indexes of a segment, each a memory-mapped array of fixed-size
//! big-endian entries, preallocated and grown in steps:
//!
//! - offset index (`.index`): `relative_offset u32, position u32`, one entry
//!   per `index_interval_bytes` of log, keyed by the batch's base offset minus
//!   the segment's base offset. The first batch (position 0) is never indexed,
//!   so an all-zero entry marks the end of the entries.
//! - time index (`.timeindex`): `timestamp i64, relative_offset u32`: the
//!   largest batch timestamp so far in the segment and the batch that has it,
//!   appended beside an offset-index entry whenever that maximum grew.
//!
//! Entries are strictly increasing, so lookups binary-search the mapping. An
//! index read from disk is only a hint: callers check what it points at.

use std::io;
use std::path::{Path, PathBuf};

use crate::storage::file::FileLayer;
use crate::storage::mapping::{Map, MappingBudget, Slot};

pub const OFFSET_INDEX_ENTRY_BYTES: usize = 8;
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;
/// Entries an index file grows by at a time (capped at the configured maximum).
pub const INDEX_GROWTH_STEP_ENTRIES: u64 = 8192;

/// A file of fixed-size entries, accessed through a budgeted mapping.
#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    files: FileLayer,
    entry_bytes: usize,
    entries: usize,
    entries_max: usize,
    /// Bytes of the file in use (mapped, all of them allocated): room for
    /// entries to come while the segment is active, exactly the entries once
    /// it is sealed.
    capacity_bytes: u64,
    /// Length of the file: `capacity_bytes`, or more until a sealed index's
    /// trim shrinks it.
    file_bytes: u64,
    slot: Slot,
}

impl IndexFile {
    /// Opens (creating if absent) an index file and counts its entries: the
    /// prefix before the first all-zero entry, found by binary search.
    fn open(
        files: &FileLayer,
        budget: &MappingBudget,
        path: &Path,
        entry_bytes: usize,
        entries_max: usize,
    ) -> io::Result<Self> {
        let file = files.open_rw(path, true)?;
        let capacity_bytes = file.metadata()?.len();
        drop(file);
        let mut index = IndexFile {
            path: path.to_path_buf(),
            files: files.clone(),
            entry_bytes,
            entries: 0,
            entries_max,
            capacity_bytes,
            file_bytes: capacity_bytes,
            slot: Slot::new(budget),
        };
        let slots = (capacity_bytes / entry_bytes as u64).min(entries_max as u64) as usize;
        if slots > 0 {
            let map = index.map()?;
            let is_empty = |i: usize| {
                map.slice(i * entry_bytes, (i + 1) * entry_bytes)
                    .iter()
                    .all(|&b| b == 0)
            };
            let (mut low, mut high) = (0usize, slots);
            while low < high {
                let middle = low + (high - low) / 2;
                if is_empty(middle) {
                    high = middle;
                } else {
                    low = middle + 1;
                }
            }
            index.entries = low;
        }
        Ok(index)
    }

    fn map(&self) -> io::Result<std::sync::Arc<Map>> {
        let capacity = self.capacity_bytes;
        self.slot.get_or_map(
            |map| map.len() as u64 >= capacity,
            || Map::open(&self.files, &self.path, capacity, true),
        )
    }

    /// Entry `i`, copied into a buffer as long as the largest entry.
    fn entry(&self, i: usize) -> io::Result<[u8; TIME_INDEX_ENTRY_BYTES]> {
        let map = self.map()?;
        let mut buffer = [0u8; TIME_INDEX_ENTRY_BYTES];
        buffer[..self.entry_bytes]
            .copy_from_slice(map.slice(i * self.entry_bytes, (i + 1) * self.entry_bytes));
        Ok(buffer)
    }

    /// Calls `f` with the bytes of all entries.
    fn with_entries<R>(&self, f: impl FnOnce(&[u8]) -> R) -> io::Result<R> {
        if self.entries == 0 {
            return Ok(f(&[]));
        }
        let map = self.map()?;
        Ok(f(map.slice(0, self.entries * self.entry_bytes)))
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries >= self.entries_max
    }

    /// Reserves disk space for `count` more entries (fewer if the index would
    /// pass its maximum), growing the file in steps.
    pub(crate) fn reserve(&mut self, count: usize) -> io::Result<()> {
        let wanted = (self.entries + count).min(self.entries_max) as u64 * self.entry_bytes as u64;
        if wanted <= self.capacity_bytes {
            return Ok(());
        }
        let step = INDEX_GROWTH_STEP_ENTRIES * self.entry_bytes as u64;
        let limit = self.entries_max as u64 * self.entry_bytes as u64;
        let new_capacity = wanted.div_ceil(step).saturating_mul(step).min(limit);
        self.files.allocate(
            &self.path,
            self.capacity_bytes,
            new_capacity - self.capacity_bytes,
        )?;
        self.capacity_bytes = new_capacity;
        self.file_bytes = self.file_bytes.max(new_capacity);
        Ok(())
    }

    /// Appends an entry; the caller reserved room. Returns false if the index is full.
    fn push(&mut self, entry: &[u8]) -> io::Result<bool> {
        assert_eq!(entry.len(), self.entry_bytes, "index entry size");
        if self.is_full() {
            return Ok(false);
        }
        self.reserve(1)?;
        let map = self.map()?;
        let start = self.entries * self.entry_bytes;
        map.slice_mut(start, start + self.entry_bytes)
            .copy_from_slice(entry);
        self.entries += 1;
        Ok(true)
    }

    /// Keeps the first `count` entries and zeroes the rest on disk.
    fn truncate_entries(&mut self, count: usize) -> io::Result<()> {
        if count >= self.entries {
            return Ok(());
        }
        let map = self.map()?;
        map.slice_mut(count * self.entry_bytes, self.entries * self.entry_bytes)
            .fill(0);
        self.entries = count;
        Ok(())
    }

    /// Forgets every entry and zeroes the whole file, including anything
    /// past the counted entries (a rebuild must not meet stale bytes).
    pub(crate) fn reset(&mut self) -> io::Result<()> {
        self.slot.clear();
        if self.files.set_len_if_unmapped(&self.path, 0)? {
            self.capacity_bytes = 0;
            self.file_bytes = 0;
        } else if self.file_bytes > 0 {
            // Zero the whole file, released room included.
            self.capacity_bytes = self.file_bytes;
            let map = self.map()?;
            map.slice_mut(0, self.capacity_bytes as usize).fill(0);
        }
        self.entries = 0;
        Ok(())
    }

    /// Stops using the room past the entries (a sealed segment's index gets
    /// no more): from now on it is mapped only as far as its entries. The file
    /// keeps its length until a trim shrinks it ([`IndexFile::slack`]).
    pub(crate) fn release_slack(&mut self) {
        let used = (self.entries * self.entry_bytes) as u64;
        if used < self.capacity_bytes {
            // The cached mapping covers the released room: drop it.
            self.slot.clear();
            self.capacity_bytes = used;
        }
    }

    /// The file, opened, and the length to shrink it to, if it is longer than
    /// what the index uses.
    pub(crate) fn slack(&self) -> io::Result<Option<(std::fs::File, u64)>> {
        if self.file_bytes <= self.capacity_bytes {
            return Ok(None);
        }
        let file = self.files.open_rw(&self.path, false)?;
        Ok(Some((file, self.capacity_bytes)))
    }

    pub(crate) fn has_slack(&self) -> bool {
        self.file_bytes > self.capacity_bytes
    }

    /// The file was shrunk to what the index uses.
    pub(crate) fn slack_trimmed(&mut self) {
        self.file_bytes = self.capacity_bytes;
    }

    pub(crate) fn sync(&self) -> io::Result<()> {
        self.files.sync_file(&self.path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn unmap(&self) {
        self.slot.clear();
    }

    pub(crate) fn delete(&self) -> io::Result<()> {
        self.slot.clear();
        self.files.remove_file(&self.path)
    }
}

/// The offset index of one segment.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    pub(crate) file: IndexFile,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    let mut buffer = [0u8; 8];
    buffer.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(buffer)
}

impl OffsetIndex {
    pub(crate) fn open(
        files: &FileLayer,
        budget: &MappingBudget,
        path: &Path,
        index_bytes_max: u64,
    ) -> io::Result<Self> {
        let entries_max = (index_bytes_max / OFFSET_INDEX_ENTRY_BYTES as u64).max(1) as usize;
        Ok(OffsetIndex {
            file: IndexFile::open(files, budget, path, OFFSET_INDEX_ENTRY_BYTES, entries_max)?,
        })
    }

    /// `(relative_offset, position)` of entry `i`.
    pub(crate) fn entry(&self, i: usize) -> io::Result<(u32, u32)> {
        let bytes = self.file.entry(i)?;
        Ok((u32_at(&bytes, 0), u32_at(&bytes, 4)))
    }

    pub(crate) fn last(&self) -> io::Result<Option<(u32, u32)>> {
        match self.file.len() {
            0 => Ok(None),
            n => self.entry(n - 1).map(Some),
        }
    }

    pub(crate) fn append(&mut self, relative_offset: u32, position: u32) -> io::Result<()> {
        if let Some((last_offset, last_position)) = self.last()? {
            assert!(
                relative_offset > last_offset && position > last_position,
                "offset index entries must increase"
            );
        }
        assert!(position > 0, "position 0 is implied, never indexed");
        let mut entry = [0u8; OFFSET_INDEX_ENTRY_BYTES];
        entry[..4].copy_from_slice(&relative_offset.to_be_bytes());
        entry[4..].copy_from_slice(&position.to_be_bytes());
        self.file.push(&entry)?;
        Ok(())
    }

    /// The last entry whose relative offset is `<= target`: where to start
    /// scanning for the batch containing it.
    pub(crate) fn lookup(&self, target: u32) -> io::Result<Option<(u32, u32)>> {
        self.file.with_entries(|entries| {
            let count = entries.len() / OFFSET_INDEX_ENTRY_BYTES;
            let key = |i: usize| u32_at(entries, i * OFFSET_INDEX_ENTRY_BYTES);
            // Number of entries with key <= target.
            let (mut low, mut high) = (0usize, count);
            while low < high {
                let middle = low + (high - low) / 2;
                if key(middle) <= target {
                    low = middle + 1;
                } else {
                    high = middle;
                }
            }
            (low > 0).then(|| {
                let at = (low - 1) * OFFSET_INDEX_ENTRY_BYTES;
                (u32_at(entries, at), u32_at(entries, at + 4))
            })
        })
    }

    /// Drops entries at or past `position` (the log was cut there).
    pub(crate) fn truncate_to_position(&mut self, position: u32) -> io::Result<()> {
        let keep = self.file.with_entries(|entries| {
            let count = entries.len() / OFFSET_INDEX_ENTRY_BYTES;
            (0..count)
                .take_while(|&i| u32_at(entries, i * OFFSET_INDEX_ENTRY_BYTES + 4) < position)
                .count()
        })?;
        self.file.truncate_entries(keep)
    }
}

/// The time index of one segment.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    pub(crate) file: IndexFile,
}

impl TimeIndex {
    pub(crate) fn open(
        files: &FileLayer,
        budget: &MappingBudget,
        path: &Path,
        index_bytes_max: u64,
    ) -> io::Result<Self> {
        // As many entries as the offset index may hold: one per index point at most.
        let entries_max = (index_bytes_max / OFFSET_INDEX_ENTRY_BYTES as u64).max(1) as usize;
        Ok(TimeIndex {
            file: IndexFile::open(files, budget, path, TIME_INDEX_ENTRY_BYTES, entries_max)?,
        })
    }

    /// `(timestamp, relative_offset)` of entry `i`.
    pub(crate) fn entry(&self, i: usize) -> io::Result<(i64, u32)> {
        let bytes = self.file.entry(i)?;
        Ok((i64_at(&bytes, 0), u32_at(&bytes, 8)))
    }

    pub(crate) fn last(&self) -> io::Result<Option<(i64, u32)>> {
        match self.file.len() {
            0 => Ok(None),
            n => self.entry(n - 1).map(Some),
        }
    }

    /// Appends `(timestamp, relative_offset)` if the timestamp is larger than the last entry's.
    pub(crate) fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) -> io::Result<()> {
        if let Some((last_timestamp, last_offset)) = self.last()? {
            if timestamp <= last_timestamp {
                return Ok(());
            }
            assert!(
                relative_offset >= last_offset,
                "time index offsets must not decrease"
            );
        }
        let mut entry = [0u8; TIME_INDEX_ENTRY_BYTES];
        entry[..8].copy_from_slice(&timestamp.to_be_bytes());
        entry[8..].copy_from_slice(&relative_offset.to_be_bytes());
        self.file.push(&entry)?;
        Ok(())
    }

    /// The last entry with a timestamp `< target`: every batch up to its offset
    /// is older than `target`, so a search can start there.
    pub(crate) fn lookup_below(&self, target: i64) -> io::Result<Option<(i64, u32)>> {
        self.file.with_entries(|entries| {
            let count = entries.len() / TIME_INDEX_ENTRY_BYTES;
            let key = |i: usize| i64_at(entries, i * TIME_INDEX_ENTRY_BYTES);
            let (mut low, mut high) = (0usize, count);
            while low < high {
                let middle = low + (high - low) / 2;
                if key(middle) < target {
                    low = middle + 1;
                } else {
                    high = middle;
                }
            }
            (low > 0).then(|| {
                let at = (low - 1) * TIME_INDEX_ENTRY_BYTES;
                (i64_at(entries, at), u32_at(entries, at + 8))
            })
        })
    }

    /// Drops entries whose offset is at or past `relative_offset`.
    pub(crate) fn truncate_to_offset(&mut self, relative_offset: u32) -> io::Result<()> {
        let keep = self.file.with_entries(|entries| {
            let count = entries.len() / TIME_INDEX_ENTRY_BYTES;
            (0..count)
                .take_while(|&i| u32_at(entries, i * TIME_INDEX_ENTRY_BYTES + 8) < relative_offset)
                .count()
        })?;
        self.file.truncate_entries(keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_finds_the_floor_entry_and_survives_reopen() {
        // Proves lookups return the last entry <= target and reopening counts the entries from the file.
        let dir = tempfile::tempdir().expect("tempdir");
        let files = FileLayer::real();
        let budget = MappingBudget::new(8);
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::open(&files, &budget, &path, 1 << 20).expect("open");
        for i in 1..=100u32 {
            index.file.reserve(1).expect("reserve");
            index.append(i * 10, i * 1000).expect("append");
        }
        assert_eq!(index.lookup(5).expect("lookup"), None);
        assert_eq!(index.lookup(10).expect("lookup"), Some((10, 1000)));
        assert_eq!(index.lookup(555).expect("lookup"), Some((550, 55000)));
        assert_eq!(
            index.lookup(u32::MAX).expect("lookup"),
            Some((1000, 100000))
        );
        drop(index);
        let mut index = OffsetIndex::open(&files, &budget, &path, 1 << 20).expect("reopen");
        assert_eq!(index.file.len(), 100);
        index.truncate_to_position(50000).expect("truncate");
        assert_eq!(index.last().expect("last"), Some((490, 49000)));
        drop(index);
        let index = OffsetIndex::open(&files, &budget, &path, 1 << 20).expect("reopen");
        assert_eq!(index.file.len(), 49, "truncated entries are zeroed on disk");
    }

    #[test]
    fn time_index_keeps_only_growing_timestamps() {
        // Proves the time index ignores non-increasing timestamps and finds the last entry below a target.
        let dir = tempfile::tempdir().expect("tempdir");
        let files = FileLayer::real();
        let budget = MappingBudget::new(8);
        let path = dir.path().join("0.timeindex");
        let mut index = TimeIndex::open(&files, &budget, &path, 1 << 20).expect("open");
        index.maybe_append(100, 1).expect("append");
        index.maybe_append(90, 2).expect("append");
        index.maybe_append(200, 3).expect("append");
        assert_eq!(index.file.len(), 2);
        assert_eq!(index.lookup_below(100).expect("lookup"), None);
        assert_eq!(index.lookup_below(150).expect("lookup"), Some((100, 1)));
        assert_eq!(index.lookup_below(1000).expect("lookup"), Some((200, 3)));
    }

    #[test]
    fn full_index_refuses_entries_without_failing() {
        // Proves an index at its configured maximum stops taking entries instead of growing.
        let dir = tempfile::tempdir().expect("tempdir");
        let files = FileLayer::real();
        let budget = MappingBudget::new(8);
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::open(&files, &budget, &path, 64).expect("open");
        for i in 1..=20u32 {
            index.file.reserve(1).expect("reserve");
            index.append(i, i).expect("append");
        }
        assert_eq!(index.file.len(), 8);
        assert!(index.file.is_full());
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 64);
    }
}
