//! Memory maps, the budget that bounds how many are live, and the `Bytes`
//! owners handed to readers. This is the only module with `unsafe` code.
//!
//! A [`Map`] is one `mmap` of a file. It is always held in an `Arc`: a segment
//! caches one in a [`Slot`], and every `Bytes` handed to a reader holds another
//! through [`MappedSlice`]. Replacing or evicting the cached mapping therefore
//! never invalidates a reader's bytes; the kernel mapping goes away only when
//! the last `Arc` does.
//!
//! [`MappingBudget`] bounds the number of mappings cached in slots, shared by
//! all logs of a `LogManager`, so thousands of partitions do not exhaust
//! `vm.max_map_count`. Eviction follows the CLOCK approximation of LRU: a use
//! sets a slot's reference bit without taking the budget lock; eviction sweeps
//! the ring of cached slots, clearing bits, and evicts the first slot whose bit
//! was already clear. A mapping a reader still holds stays alive but is no
//! longer counted.
//!
//! A global registry keeps the lengths of the live mappings of every inode in
//! the process, so the file layer can refuse to shrink a file under a mapping
//! that reaches past the new end.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use memmap2::{Advice, MmapOptions, MmapRaw};

use crate::storage::file::{file_key, FileKey, FileLayer};

/// The lengths of the live mappings of each inode, across the whole process.
static MAPPED_FILES: LazyLock<Mutex<HashMap<FileKey, Vec<usize>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// Every live [`Map`] in the process, cached or held by readers.
static MAPS_ALIVE: AtomicUsize = AtomicUsize::new(0);

fn mapped_files() -> MutexGuard<'static, HashMap<FileKey, Vec<usize>>> {
    // A panic while holding this lock cannot leave the map inconsistent (every
    // update is a single insert or remove), so poisoning is ignored.
    MAPPED_FILES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether any mapping of this inode is alive in the process.
pub(crate) fn is_mapped(key: FileKey) -> bool {
    mapped_files().contains_key(&key)
}

/// Whether a live mapping of this inode reaches past its first `len` bytes:
/// shrinking the file to `len` would leave that mapping pages past the end
/// (SIGBUS on access). Mappings within `len` keep every page they cover.
pub(crate) fn maps_past(key: FileKey, len: u64) -> bool {
    mapped_files()
        .get(&key)
        .is_some_and(|lengths| lengths.iter().any(|&mapped| mapped as u64 > len))
}

/// Number of memory maps alive in the process, including those only readers hold.
pub fn process_maps_alive() -> usize {
    MAPS_ALIVE.load(Ordering::SeqCst)
}

/// One memory mapping of a file.
#[derive(Debug)]
pub(crate) struct Map {
    raw: MmapRaw,
    key: FileKey,
    writable: bool,
}

impl Map {
    /// Maps the first `len` bytes of the file at `path`; `len` must be positive
    /// and within the file (the caller allocated it first).
    pub(crate) fn open(
        files: &FileLayer,
        path: &Path,
        len: u64,
        writable: bool,
    ) -> io::Result<Map> {
        assert!(len > 0, "a mapping must not be empty");
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mapping too large"))?;
        let file = if writable {
            files.open_rw(path, false)?
        } else {
            std::fs::File::open(path)?
        };
        let file_len = file.metadata()?.len();
        if (len as u64) > file_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "cannot map {len} bytes of {} which holds {file_len}",
                    path.display()
                ),
            ));
        }
        let key = file_key(&file)?;
        let mut options = MmapOptions::new();
        options.len(len);
        let raw = if writable {
            options.map_raw(&file)?
        } else {
            options.map_raw_read_only(&file)?
        };
        mapped_files().entry(key).or_default().push(len);
        MAPS_ALIVE.fetch_add(1, Ordering::SeqCst);
        Ok(Map { raw, key, writable })
    }

    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// Stops the kernel reading ahead when a read through this mapping
    /// faults. For a mapping that reaches past the data into allocated but
    /// unwritten room (an active segment's), read-ahead runs into that room
    /// and fills page after page of it with zeros, only for the appends to
    /// overwrite them: each fault on a page the last read-ahead marked starts
    /// the next one, so it keeps ahead of the appends and zeroes every page
    /// before it is written. On a leader serving its followers that cost 8%
    /// of the machine's CPU. Readers that need pages from disk ask for them
    /// with [`Map::read_ahead`], within the data.
    pub(crate) fn stop_read_ahead(&self) {
        if let Err(error) = self.raw.advise(Advice::Random) {
            tracing::debug!(%error, "madvise(MADV_RANDOM) failed; read-ahead stays on");
        }
    }

    /// Asks the kernel to start reading `[start, end)` of the file into the
    /// page cache (`MADV_WILLNEED`), and returns without waiting; pages
    /// already cached are left alone. Only a hint: a failure changes
    /// nothing but speed.
    pub(crate) fn read_ahead(&self, start: usize, end: usize) {
        let end = end.min(self.raw.len());
        if start >= end {
            return;
        }
        if let Err(error) = self.raw.advise_range(Advice::WillNeed, start, end - start) {
            tracing::debug!(%error, "madvise(MADV_WILLNEED) failed");
        }
    }

    /// How many of the pages of `[start, end)` of the file are in the page
    /// cache (`mincore`); touches none of them.
    #[cfg(test)]
    pub(crate) fn resident_pages(&self, start: usize, end: usize) -> io::Result<usize> {
        let page = 4096;
        let start = start / page * page;
        let end = end.min(self.raw.len());
        if start >= end {
            return Ok(0);
        }
        let mut residency = vec![0u8; (end - start).div_ceil(page)];
        // SAFETY: `[start, end)` lies inside the mapping, `start` is page-aligned
        // (the mapping starts on a page), and the vector has one byte per page
        // of the range, as mincore(2) writes.
        let result = unsafe {
            libc::mincore(
                self.raw.as_ptr().add(start) as *mut libc::c_void,
                end - start,
                residency.as_mut_ptr(),
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(residency.iter().filter(|&&bits| bits & 1 != 0).count())
    }

    /// The bytes `[start, end)` of the mapping.
    ///
    /// Callers read only bytes the log has finished writing and will not write
    /// again while this borrow lives: everything the log writes (with `pwritev`
    /// to a segment's `.log`, through a mapping to an index) goes to positions
    /// at or past its end, under `&mut PartitionLog`, and truncation rewrites a
    /// file in place only when no other mapping of it exists.
    pub(crate) fn slice(&self, start: usize, end: usize) -> &[u8] {
        assert!(
            start <= end && end <= self.raw.len(),
            "slice {start}..{end} outside mapping of {}",
            self.raw.len()
        );
        // SAFETY: the range lies inside the mapping (asserted above), which stays
        // mapped for as long as `self` lives; the file behind it never shrinks
        // below the mapping while it is alive (the file layer checks the inode
        // registry before shrinking), so no access faults; and the bytes are not
        // written concurrently (see the contract above).
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr().add(start), end - start) }
    }

    /// The bytes `[start, end)` of a writable mapping, for writing. Only index
    /// files are written this way (an entry is a few bytes, and a fresh page
    /// is faulted in once per few hundred entries); a segment's `.log` is
    /// written with `pwritev` (see `segment.rs`).
    ///
    /// Only the owner of the file's segment calls this, with `&mut` access to
    /// it, on positions no reader has been handed.
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn slice_mut(&self, start: usize, end: usize) -> &mut [u8] {
        assert!(self.writable, "write through a read-only mapping");
        assert!(
            start <= end && end <= self.raw.len(),
            "slice {start}..{end} outside mapping of {}",
            self.raw.len()
        );
        // SAFETY: the range is inside a writable mapping that lives as long as
        // `self`; the space behind it was reserved with fallocate, so writing
        // cannot fault on a full disk; and the caller is the single writer of
        // this range, which no reader's `Bytes` covers (the log hands out only
        // bytes below its end and writes only at or past it).
        unsafe { std::slice::from_raw_parts_mut(self.raw.as_mut_ptr().add(start), end - start) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        let mut files = mapped_files();
        if let Some(lengths) = files.get_mut(&self.key) {
            if let Some(at) = lengths.iter().position(|&len| len == self.raw.len()) {
                lengths.swap_remove(at);
            }
            if lengths.is_empty() {
                files.remove(&self.key);
            }
        }
        MAPS_ALIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The owner behind a reader's `Bytes`: keeps the mapping alive.
struct MappedSlice {
    map: Arc<Map>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MappedSlice {
    fn as_ref(&self) -> &[u8] {
        self.map.slice(self.start, self.end)
    }
}

/// A zero-copy `Bytes` of `[start, end)` of the mapping.
pub(crate) fn bytes_of(map: &Arc<Map>, start: usize, end: usize) -> Bytes {
    assert!(
        start <= end && end <= map.len(),
        "bytes outside the mapping"
    );
    if start == end {
        return Bytes::new();
    }
    Bytes::from_owner(MappedSlice {
        map: Arc::clone(map),
        start,
        end,
    })
}

/// Bounds the number of mappings cached by all logs of a `LogManager`.
/// Cloning shares the budget.
#[derive(Clone, Debug)]
pub struct MappingBudget {
    shared: Arc<BudgetShared>,
}

#[derive(Debug)]
struct BudgetShared {
    mappings_max: usize,
    state: Mutex<BudgetState>,
    freed: Condvar,
    peak: AtomicUsize,
    evictions: AtomicU64,
}

#[derive(Debug, Default)]
struct BudgetState {
    /// Mappings cached in slots, plus reservations for ones being created.
    live: usize,
    /// Slots that hold (or recently held) a mapping, in CLOCK order.
    ring: VecDeque<Weak<SlotShared>>,
}

impl MappingBudget {
    /// A budget of at most `mappings_max` cached mappings (at least 1).
    pub fn new(mappings_max: usize) -> Self {
        MappingBudget {
            shared: Arc::new(BudgetShared {
                mappings_max: mappings_max.max(1),
                state: Mutex::new(BudgetState::default()),
                freed: Condvar::new(),
                peak: AtomicUsize::new(0),
                evictions: AtomicU64::new(0),
            }),
        }
    }

    pub fn mappings_max(&self) -> usize {
        self.shared.mappings_max
    }

    /// Mappings cached now (plus reservations in flight).
    pub fn live(&self) -> usize {
        self.lock().live
    }

    /// The largest value `live` ever had.
    pub fn peak(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// Mappings evicted so far to stay within the budget.
    pub fn evictions(&self) -> u64 {
        self.shared.evictions.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, BudgetState> {
        // Budget state updates are single-field and cannot be left half done.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves room for one mapping, evicting idle ones if the budget is full.
    fn reserve(&self) {
        let mut evicted = Vec::new();
        let mut state = self.lock();
        while state.live >= self.shared.mappings_max {
            match Self::evict_one(&mut state) {
                Some(map) => {
                    evicted.push(map);
                    self.shared.evictions.fetch_add(1, Ordering::SeqCst);
                }
                None => {
                    // Every counted mapping is a reservation still being created;
                    // one will be installed or released shortly.
                    state = self
                        .shared
                        .freed
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            }
        }
        state.live += 1;
        assert!(
            state.live <= self.shared.mappings_max,
            "mapping budget exceeded"
        );
        self.shared.peak.fetch_max(state.live, Ordering::SeqCst);
        drop(state);
        // Unmapping happens outside the budget lock.
        drop(evicted);
    }

    /// Takes the mapping of one idle slot. Sweeps at most twice around the ring.
    fn evict_one(state: &mut BudgetState) -> Option<Arc<Map>> {
        let sweep_steps_max = state.ring.len() * 2 + 1;
        for _ in 0..sweep_steps_max {
            let weak = state.ring.pop_front()?;
            let Some(slot) = weak.upgrade() else {
                continue;
            };
            let mut map = slot.map.lock().unwrap_or_else(|p| p.into_inner());
            if map.is_none() {
                slot.in_ring.store(false, Ordering::SeqCst);
                continue;
            }
            if slot.referenced.swap(false, Ordering::SeqCst) {
                drop(map);
                state.ring.push_back(weak);
                continue;
            }
            let taken = map.take();
            slot.in_ring.store(false, Ordering::SeqCst);
            state.live -= 1;
            return taken;
        }
        None
    }

    fn release(&self) {
        let mut state = self.lock();
        assert!(state.live > 0, "mapping budget released more than reserved");
        state.live -= 1;
        drop(state);
        self.shared.freed.notify_all();
    }

    fn enter_ring(&self, slot: &Arc<SlotShared>) {
        let mut state = self.lock();
        if !slot.in_ring.swap(true, Ordering::SeqCst) {
            state.ring.push_back(Arc::downgrade(slot));
        }
        drop(state);
        // A reserver waiting for an evictable mapping may take this one.
        self.shared.freed.notify_all();
    }
}

#[derive(Debug, Default)]
struct SlotShared {
    map: Mutex<Option<Arc<Map>>>,
    /// Set on every use; cleared by the eviction sweep.
    referenced: AtomicBool,
    /// Whether the ring holds an entry for this slot (changed under the budget lock).
    in_ring: AtomicBool,
}

/// A cache of one file's mapping, counted against a [`MappingBudget`].
/// Lock order: budget, then slot; a slot lock is never held while taking the budget lock.
#[derive(Debug)]
pub(crate) struct Slot {
    shared: Arc<SlotShared>,
    budget: MappingBudget,
}

impl Slot {
    pub(crate) fn new(budget: &MappingBudget) -> Self {
        Slot {
            shared: Arc::new(SlotShared::default()),
            budget: budget.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<Map>>> {
        self.shared
            .map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached mapping, if it has not been evicted.
    pub(crate) fn cached(&self) -> Option<Arc<Map>> {
        let map = self.lock().clone();
        if map.is_some() {
            self.shared.referenced.store(true, Ordering::Relaxed);
        }
        map
    }

    /// The cached mapping, or a new one from `open` if `accept` rejects the
    /// cached one (or there is none), counted against the budget.
    pub(crate) fn get_or_map(
        &self,
        accept: impl Fn(&Map) -> bool,
        open: impl FnOnce() -> io::Result<Map>,
    ) -> io::Result<Arc<Map>> {
        if let Some(map) = self.cached() {
            if accept(&map) {
                return Ok(map);
            }
        }
        // Reserve first, so the count covers the new mapping before it exists;
        // the reservation may evict this slot's own old mapping, which is fine.
        self.budget.reserve();
        let map = match open() {
            Ok(map) => Arc::new(map),
            Err(error) => {
                self.budget.release();
                return Err(error);
            }
        };
        let previous = {
            let mut slot = self.lock();
            let previous = slot.replace(Arc::clone(&map));
            self.shared.referenced.store(true, Ordering::Relaxed);
            previous
        };
        // The replaced mapping's count is handed back; readers may keep it alive.
        if previous.is_some() {
            self.budget.release();
        }
        drop(previous);
        self.budget.enter_ring(&self.shared);
        Ok(map)
    }

    /// Drops the cached mapping (readers' `Bytes` keep theirs alive).
    pub(crate) fn clear(&self) {
        let previous = self.lock().take();
        if previous.is_some() {
            self.budget.release();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(dir: &Path, name: &str, len: u64) -> std::path::PathBuf {
        let path = dir.join(name);
        let file = std::fs::File::create(&path).expect("create");
        file.set_len(len).expect("set_len");
        path
    }

    #[test]
    fn budget_never_counts_more_than_its_bound() {
        // Proves eviction keeps the cached mappings within mappings_max while every slot stays usable.
        let dir = tempfile::tempdir().expect("tempdir");
        let budget = MappingBudget::new(4);
        let files = FileLayer::real();
        let slots: Vec<(Slot, std::path::PathBuf)> = (0..20)
            .map(|i| {
                (
                    Slot::new(&budget),
                    file_with(dir.path(), &format!("f{i}"), 4096),
                )
            })
            .collect();
        for round in 0..3 {
            for (slot, path) in &slots {
                let map = slot
                    .get_or_map(|_| true, || Map::open(&files, path, 4096, true))
                    .expect("map");
                map.slice_mut(0, 1)[0] = round;
                assert!(budget.live() <= 4);
            }
        }
        assert!(budget.peak() <= 4);
        assert!(budget.evictions() > 0);
        drop(slots);
        assert_eq!(budget.live(), 0);
    }

    #[test]
    fn concurrent_mapping_under_a_tiny_budget_neither_deadlocks_nor_overshoots() {
        // Proves threads racing for a budget smaller than their demand all progress within the bound.
        const THREADS: usize = 4;
        const ROUNDS: usize = 200;
        const SLOTS: usize = 16;
        let dir = tempfile::tempdir().expect("tempdir");
        let budget = MappingBudget::new(2);
        let paths: Vec<_> = (0..SLOTS)
            .map(|i| file_with(dir.path(), &format!("g{i}"), 4096))
            .collect();
        let slots: Arc<Vec<Slot>> = Arc::new((0..SLOTS).map(|_| Slot::new(&budget)).collect());
        let paths = Arc::new(paths);
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let slots = Arc::clone(&slots);
                let paths = Arc::clone(&paths);
                std::thread::spawn(move || {
                    let files = FileLayer::real();
                    for round in 0..ROUNDS {
                        let i = (round * 7 + t * 3) % SLOTS;
                        let map = slots[i]
                            .get_or_map(|_| true, || Map::open(&files, &paths[i], 4096, false))
                            .expect("map");
                        assert_eq!(map.slice(0, 1)[0], 0);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("worker");
        }
        assert!(budget.peak() <= 2);
    }

    #[test]
    fn evicted_mapping_stays_readable_through_bytes() {
        // Proves a Bytes slice keeps its mapping alive after the slot evicts it.
        let dir = tempfile::tempdir().expect("tempdir");
        let budget = MappingBudget::new(1);
        let files = FileLayer::real();
        let first = file_with(dir.path(), "a", 4096);
        let second = file_with(dir.path(), "b", 4096);
        let slot_a = Slot::new(&budget);
        let slot_b = Slot::new(&budget);
        let map = slot_a
            .get_or_map(|_| true, || Map::open(&files, &first, 4096, true))
            .expect("map");
        map.slice_mut(0, 4).copy_from_slice(b"abcd");
        let bytes = bytes_of(&map, 0, 4);
        drop(map);
        slot_b
            .get_or_map(|_| true, || Map::open(&files, &second, 4096, true))
            .expect("map");
        assert!(slot_a.cached().is_none(), "slot a was evicted");
        assert_eq!(&bytes[..], b"abcd");
    }

    #[test]
    fn shrinking_a_mapped_file_is_refused() {
        // Proves the file layer will not shrink a file while a mapping of it lives.
        let dir = tempfile::tempdir().expect("tempdir");
        let files = FileLayer::real();
        let path = file_with(dir.path(), "c", 8192);
        let map = Map::open(&files, &path, 8192, false).expect("map");
        assert!(!files.set_len_if_unmapped(&path, 10).expect("set_len"));
        drop(map);
        assert!(files.set_len_if_unmapped(&path, 10).expect("set_len"));
    }

    #[test]
    fn a_trim_is_refused_only_under_a_mapping_past_the_new_end() {
        // Proves shrink_if_unmapped keeps every page a live mapping covers, and allows a shrink that keeps them.
        let dir = tempfile::tempdir().expect("tempdir");
        let files = FileLayer::real();
        let path = file_with(dir.path(), "d", 3 * 4096);
        let file = files.open_rw(&path, false).expect("open");
        let whole = Map::open(&files, &path, 3 * 4096, false).expect("map");
        let head = Map::open(&files, &path, 4096, false).expect("map");
        assert!(!files.shrink_if_unmapped(&file, 2 * 4096).expect("shrink"));
        assert_eq!(file.metadata().unwrap().len(), 3 * 4096, "nothing changed");
        drop(whole);
        assert!(files.shrink_if_unmapped(&file, 2 * 4096).expect("shrink"));
        assert_eq!(file.metadata().unwrap().len(), 2 * 4096);
        assert!(!files.shrink_if_unmapped(&file, 4095).expect("shrink"));
        assert!(files.shrink_if_unmapped(&file, 4096).expect("shrink"));
        assert_eq!(file.metadata().unwrap().len(), 4096);
        assert_eq!(
            head.slice(4095, 4096),
            &[0],
            "the mapped page is still readable"
        );
        drop(head);
        assert!(!is_mapped(file_key(&file).expect("key")));
    }
}
