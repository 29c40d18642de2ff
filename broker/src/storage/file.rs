//! The file layer: every allocation, fsync, resize, rename and removal of a
//! storage file goes through [`FileLayer`], so tests can inject faults
//! ([`FaultInjector`]: a full disk, a failing fsync, a process that dies
//! before its next rename or removal) and simulate a power loss that keeps
//! only what was fsynced.
//!
//! Files are opened by path for each operation and closed right after; a
//! mapping outlives its file descriptor, so thousands of partitions do not
//! hold thousands of descriptors. The one exception is the `Writer` of an
//! active segment, which keeps its descriptor open between appends (`pwritev`
//! on it is the append path); the file layer bounds those descriptors to
//! [`WRITERS_OPEN_MAX`] and closes the one open longest to make room.
//!
//! Appended data is written back to disk in the background as it accumulates
//! ([`FileLayer::start_writeback`]), so that the periodic fsync finds little
//! left to write: a second's worth of dirty pages written by one `fdatasync`
//! kept the disk busy for 80-120 ms, and appends during it waited.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::storage::mapping;

/// The device and inode of a file: the key under which live mappings are counted.
pub(crate) type FileKey = (u64, u64);

pub(crate) fn file_key(file: &File) -> io::Result<FileKey> {
    let metadata = file.metadata()?;
    Ok((metadata.dev(), metadata.ino()))
}

/// Write descriptors one file layer (and so one `LogManager`) keeps open at
/// once: one per active segment appended to recently. Past it, the descriptor
/// open longest is closed; its segment reopens the file on its next append.
pub const WRITERS_OPEN_MAX: usize = 256;
/// Buffers handed to one `pwritev` call (Linux's `UIO_MAXIOV`); longer lists
/// are written in several calls.
const IOVECS_PER_CALL_MAX: usize = 1024;
/// Writeback requests waiting for the writeback thread of one file layer at
/// most (each holds a descriptor); past it, a request is dropped: it only
/// hurries what the next fsync does anyway.
const WRITEBACKS_QUEUED_MAX: usize = 64;

/// Routes file operations, optionally through a [`FaultInjector`]. Clones
/// share the fault injector, the bound on open `Writer`s and the writeback
/// thread.
#[derive(Clone, Debug, Default)]
pub struct FileLayer {
    faults: Option<Arc<FaultInjector>>,
    writers: Arc<WriterBudget>,
    writeback: Arc<WritebackQueue>,
}

impl FileLayer {
    /// The plain file layer: no faults.
    pub fn real() -> Self {
        FileLayer::default()
    }

    /// A file layer whose operations consult `faults` first.
    pub fn with_faults(faults: Arc<FaultInjector>) -> Self {
        FileLayer {
            faults: Some(faults),
            ..FileLayer::default()
        }
    }

    /// The same layer with room for `writers_max` open writers (at least 1)
    /// instead of [`WRITERS_OPEN_MAX`], shared by its clones.
    pub fn with_writers_max(self, writers_max: usize) -> Self {
        FileLayer {
            writers: Arc::new(WriterBudget::new(writers_max)),
            ..self
        }
    }

    /// Write descriptors open now, across all writers of this layer and its clones.
    pub fn writers_open(&self) -> usize {
        self.writers.lock().len()
    }

    /// A writer for the existing file at `path`; it opens the file on its first write.
    pub(crate) fn writer(&self, path: &Path) -> Writer {
        Writer {
            path: path.to_path_buf(),
            shared: Arc::new(WriterShared::default()),
            budget: Arc::clone(&self.writers),
        }
    }

    /// Writes all of `buffers`, one after the other, at `offset` of the
    /// writer's file (`pwritev`, repeated after a short write). The space must
    /// be allocated already, so that a full disk cannot fail the write.
    pub(crate) fn write_all_at(
        &self,
        writer: &mut Writer,
        offset: u64,
        buffers: &mut [IoSlice<'_>],
    ) -> io::Result<()> {
        if let Some(faults) = &self.faults {
            faults.check_write()?;
        }
        let file = writer.file()?;
        let mut buffers = buffers;
        let mut offset = offset;
        // Bounded: every call writes at least one byte or fails.
        while !buffers.is_empty() {
            let call = &buffers[..buffers.len().min(IOVECS_PER_CALL_MAX)];
            match rustix::io::pwritev(&*file, call, offset) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(written) => {
                    offset += written as u64;
                    IoSlice::advance_slices(&mut buffers, written);
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(())
    }

    /// Has the kernel start writing `[offset, offset + len)` of the writer's
    /// file to disk (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`), on the
    /// file layer's writeback thread: that call can wait for the disk's
    /// queue, which an append must not. Only a hint: nothing is durable
    /// before an fsync, and a request the queue has no room for is dropped.
    pub(crate) fn start_writeback(&self, writer: &mut Writer, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        if let Some(faults) = &self.faults {
            faults.record_writeback(&writer.path, offset, len);
        }
        if let Ok(file) = writer.file() {
            self.writeback.submit(WritebackJob { file, offset, len });
        }
    }

    pub(crate) fn open_rw(&self, path: &Path, create: bool) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
    }

    /// Reserves `[offset, offset + len)` of the file on disk (`fallocate`, mode
    /// 0), extending it if needed, so that writes to that range never hit a
    /// full disk (through a mapping, that would be a SIGBUS).
    pub(crate) fn allocate(&self, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        if let Some(faults) = &self.faults {
            faults.check_allocate(len)?;
        }
        let file = self.open_rw(path, false)?;
        if i64::try_from(offset.saturating_add(len)).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "allocation past the largest file offset",
            ));
        }
        loop {
            match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), offset, len) {
                Ok(()) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::OPNOTSUPP) => {
                    return emulate_allocation(&file, offset, len);
                }
                Err(errno) => return Err(errno.into()),
            }
        }
    }

    /// fsyncs a file's data (and the metadata needed to read it back).
    pub(crate) fn sync_file(&self, path: &Path) -> io::Result<()> {
        if let Some(faults) = &self.faults {
            faults.check_sync()?;
        }
        let file = File::open(path)?;
        file.sync_data()?;
        if let Some(faults) = &self.faults {
            faults.record_synced(path)?;
        }
        Ok(())
    }

    /// fsyncs a directory, making creations, renames and removals in it durable.
    pub(crate) fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if let Some(faults) = &self.faults {
            faults.check_sync()?;
        }
        File::open(path)?.sync_all()
    }

    /// Shrinks (or extends) a file that no live mapping covers. Shrinking a
    /// mapped file would turn a reader's access past the new end into SIGBUS.
    /// Returns `false`, changing nothing, if the file is mapped somewhere in
    /// this process; the caller then defers the trim or copies instead.
    pub(crate) fn set_len_if_unmapped(&self, path: &Path, len: u64) -> io::Result<bool> {
        let file = self.open_rw(path, false)?;
        let key = file_key(&file)?;
        let current = file.metadata()?.len();
        if len < current && mapping::is_mapped(key) {
            return Ok(false);
        }
        file.set_len(len)?;
        Ok(true)
    }

    /// Shrinks an open file to `len` bytes unless a live mapping in this
    /// process reaches past `len` (then `false`, changing nothing). A file
    /// already that short is left alone, so a repeated trim costs no
    /// `ftruncate`. Working on a descriptor, not a path, the shrink cannot
    /// reach a file that replaced this one meanwhile (a cleaner's swap).
    pub(crate) fn shrink_if_unmapped(&self, file: &File, len: u64) -> io::Result<bool> {
        if file.metadata()?.len() <= len {
            return Ok(true);
        }
        if mapping::maps_past(file_key(file)?, len) {
            return Ok(false);
        }
        if let Some(faults) = &self.faults {
            faults.check_trim()?;
        }
        file.set_len(len)?;
        Ok(true)
    }

    /// Replaces `path` by a new file holding its first `len` bytes, leaving the
    /// old inode (and every mapping of it) untouched. Used to cut a file that a
    /// reader still maps: its `Bytes` keep seeing the old contents.
    pub(crate) fn replace_with_prefix(&self, path: &Path, len: u64) -> io::Result<()> {
        let temp = path.with_extension("truncating");
        {
            let mut source = File::open(path)?;
            let mut target = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temp)?;
            let copied = io::copy(&mut (&mut source).take(len), &mut target)?;
            if copied != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} is shorter than {len} bytes", path.display()),
                ));
            }
            target.flush()?;
        }
        self.sync_file(&temp)?;
        self.rename(&temp, path)
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if let Some(faults) = &self.faults {
            faults.check_file_op()?;
        }
        std::fs::rename(from, to)?;
        if let Some(faults) = &self.faults {
            faults.record_rename(from, to);
        }
        Ok(())
    }

    /// Removes a file; one that does not exist is already removed.
    pub(crate) fn remove_file(&self, path: &Path) -> io::Result<()> {
        if let Some(faults) = &self.faults {
            faults.check_file_op()?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        if let Some(faults) = &self.faults {
            faults.record_removed(path);
        }
        Ok(())
    }

    /// Sets a file's modification time (milliseconds since the epoch).
    pub(crate) fn set_modified_ms(&self, path: &Path, modified_ms: i64) -> io::Result<()> {
        let since_epoch = std::time::Duration::from_millis(modified_ms.max(0) as u64);
        let file = self.open_rw(path, false)?;
        file.set_modified(std::time::UNIX_EPOCH + since_epoch)
    }

    /// Writes a whole small file through a temp file: write, fsync, rename,
    /// fsync the directory. Readers see the old or the new contents, never a mix.
    pub(crate) fn write_atomically(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        let temp = path.with_extension("tmp");
        {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temp)?;
            file.write_all(contents)?;
        }
        self.sync_file(&temp)?;
        self.rename(&temp, path)?;
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => self.sync_dir(dir),
            _ => self.sync_dir(Path::new(".")),
        }
    }
}

/// An open write descriptor of one file, kept between writes (see
/// [`FileLayer::write_all_at`]) and counted against the file layer's bound.
/// The descriptor is closed by [`Writer::close`], on drop, or by the bound
/// making room for another writer; the next write then reopens the file by
/// path. Close it before the path may name another file (a rename over it, a
/// replacement), or the next write would reach the old inode.
#[derive(Debug)]
pub(crate) struct Writer {
    path: PathBuf,
    shared: Arc<WriterShared>,
    budget: Arc<WriterBudget>,
}

#[derive(Debug, Default)]
struct WriterShared {
    /// The descriptor, if open. Taken by the budget to close it.
    file: Mutex<Option<Arc<File>>>,
}

fn lock_writer(shared: &WriterShared) -> MutexGuard<'_, Option<Arc<File>>> {
    // Each update is a single replace or take: nothing is left half done.
    shared
        .file
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Writer {
    /// The open descriptor, opening the file if it is closed.
    fn file(&mut self) -> io::Result<Arc<File>> {
        if let Some(file) = lock_writer(&self.shared).clone() {
            return Ok(file);
        }
        let file = Arc::new(OpenOptions::new().write(true).open(&self.path)?);
        let evicted = self.budget.admit(&self.shared, Arc::clone(&file));
        // Closing happens outside the budget lock.
        drop(evicted);
        Ok(file)
    }

    /// Closes the descriptor; the next write reopens the file by path.
    pub(crate) fn close(&self) {
        // The writer's lock is released before the budget's is taken: the
        // budget takes them in the other order when it evicts.
        let file = lock_writer(&self.shared).take();
        if file.is_some() {
            let me = Arc::as_ptr(&self.shared);
            self.budget.lock().retain(|open| open.as_ptr() != me);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

/// Bounds the descriptors of the [`Writer`]s of one file layer.
/// Lock order: budget, then writer.
#[derive(Debug)]
struct WriterBudget {
    writers_max: usize,
    /// The writers whose descriptor is open, the longest open first.
    open: Mutex<VecDeque<Weak<WriterShared>>>,
}

impl Default for WriterBudget {
    fn default() -> Self {
        WriterBudget::new(WRITERS_OPEN_MAX)
    }
}

impl WriterBudget {
    fn new(writers_max: usize) -> Self {
        WriterBudget {
            writers_max: writers_max.max(1),
            open: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Weak<WriterShared>>> {
        // Pushes, pops and retains cannot be left half done.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Installs `file` as the open descriptor of `writer`, taking the
    /// descriptors of the longest-open writers if the bound is reached.
    /// Returns them, for the caller to close outside the lock.
    fn admit(&self, writer: &Arc<WriterShared>, file: Arc<File>) -> Vec<Arc<File>> {
        let mut evicted = Vec::new();
        let mut open = self.lock();
        // Bounded by the queue, which holds at most `writers_max` entries.
        while open.len() >= self.writers_max {
            let Some(oldest) = open.pop_front() else {
                break;
            };
            if let Some(file) = oldest.upgrade().and_then(|w| lock_writer(&w).take()) {
                evicted.push(file);
            }
        }
        *lock_writer(writer) = Some(file);
        open.push_back(Arc::downgrade(writer));
        assert!(open.len() <= self.writers_max, "writer budget exceeded");
        evicted
    }
}

/// A range of a file to start writing back.
struct WritebackJob {
    file: Arc<File>,
    offset: u64,
    len: u64,
}

impl WritebackJob {
    fn run(&self) {
        let (Ok(offset), Ok(len)) = (i64::try_from(self.offset), i64::try_from(self.len)) else {
            return;
        };
        // SAFETY: a plain system call on a descriptor `self.file` keeps open;
        // it touches no memory of ours. Its failure only means the pages wait
        // for the next fsync, so the result is ignored.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
}

/// The writeback thread of a file layer and its bounded queue. The thread
/// starts with the first request and ends once the layer and all its clones
/// are gone and the queue is drained.
#[derive(Debug, Default)]
struct WritebackQueue {
    jobs: Mutex<Option<SyncSender<WritebackJob>>>,
}

impl WritebackQueue {
    /// Queues `job`, or drops it if the queue is full or the thread cannot start.
    fn submit(&self, job: WritebackJob) {
        let mut jobs = self
            .jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if jobs.is_none() {
            let (sender, receiver) = sync_channel::<WritebackJob>(WRITEBACKS_QUEUED_MAX);
            let started = std::thread::Builder::new()
                .name("log-writeback".to_string())
                .spawn(move || {
                    // Ends when every sender is gone.
                    for job in receiver {
                        job.run();
                    }
                });
            if started.is_err() {
                return;
            }
            *jobs = Some(sender);
        }
        let sent = jobs.as_ref().map(|sender| sender.try_send(job));
        if let Some(Err(TrySendError::Disconnected(_))) = sent {
            // The thread is gone (it cannot panic short of a bug): start
            // another with the next request.
            *jobs = None;
        }
    }
}

/// What `posix_fallocate` does on a filesystem without `fallocate`: allocate
/// every block of the range by writing one byte into it. A byte is written
/// only where the file reads zero (or ends), so no data ever changes.
fn emulate_allocation(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let metadata = file.metadata()?;
    let block = metadata.blksize().max(512);
    let size = metadata.len();
    let end = offset + len;
    let mut position = offset;
    // Bounded by the range: one step per block, then the last byte.
    while position < end {
        let mut byte = [0u8; 1];
        if position < size {
            file.read_exact_at(&mut byte, position)?;
        }
        if byte[0] == 0 {
            file.write_all_at(&byte, position)?;
        }
        position = if position == end - 1 {
            end
        } else {
            (position / block + 1).saturating_mul(block).min(end - 1)
        };
    }
    Ok(())
}

/// How [`FaultInjector::simulate_power_loss`] treats the bytes that were not fsynced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Every byte written since the last fsync of a file is lost.
    DropUnflushed,
    /// The unflushed region is cut at a random point: new bytes before it, old after.
    TornTail,
    /// All writes reached the disk, but one bit past the flushed region flipped.
    FlipBit,
}

/// Faults for tests: a disk that fills up, writes, fsyncs and trims that fail, and a
/// record of every file's contents at its last fsync, to simulate a power loss.
#[derive(Debug, Default)]
pub struct FaultInjector {
    /// Bytes `fallocate` may still reserve before it answers ENOSPC; `u64::MAX` = unlimited.
    allocation_bytes_left: AtomicU64,
    allocation_limited: AtomicBool,
    /// Writeback requests so far, by path: (offset, length).
    writebacks: Mutex<HashMap<PathBuf, Vec<(u64, u64)>>>,
    sync_fails: AtomicBool,
    write_fails: AtomicBool,
    trim_fails: AtomicBool,
    /// Renames and removals that may still succeed while `file_ops_limited`.
    file_ops_left: AtomicU64,
    file_ops_limited: AtomicBool,
    /// Renames and removals attempted so far.
    file_ops: AtomicU64,
    /// File contents as of their last fsync, by path.
    synced: Mutex<HashMap<PathBuf, Vec<u8>>>,
}

impl FaultInjector {
    pub fn new() -> Arc<Self> {
        Arc::new(FaultInjector::default())
    }

    /// From now on, `fallocate` succeeds for `bytes` more bytes, then fails with ENOSPC.
    pub fn limit_allocation(&self, bytes: u64) {
        self.allocation_bytes_left.store(bytes, Ordering::SeqCst);
        self.allocation_limited.store(true, Ordering::SeqCst);
    }

    pub fn unlimit_allocation(&self) {
        self.allocation_limited.store(false, Ordering::SeqCst);
    }

    /// The writeback requests made for the file at `path` so far, in order:
    /// (offset, length).
    pub fn writebacks_of(&self, path: &Path) -> Vec<(u64, u64)> {
        self.writebacks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    fn record_writeback(&self, path: &Path, offset: u64, len: u64) {
        self.writebacks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(path.to_path_buf())
            .or_default()
            .push((offset, len));
    }

    /// Makes every fsync fail with EIO while `fails` is true.
    pub fn fail_syncs(&self, fails: bool) {
        self.sync_fails.store(fails, Ordering::SeqCst);
    }

    /// Makes every write of a `Writer` fail with EIO while `fails` is true.
    pub fn fail_writes(&self, fails: bool) {
        self.write_fails.store(fails, Ordering::SeqCst);
    }

    /// Makes every trim of a file fail with EIO while `fails` is true.
    pub fn fail_trims(&self, fails: bool) {
        self.trim_fails.store(fails, Ordering::SeqCst);
    }

    /// From now on, `ops` more renames and removals succeed; every later one
    /// fails with EIO, as if the process had died right before it.
    pub fn fail_file_ops_after(&self, ops: u64) {
        self.file_ops_left.store(ops, Ordering::SeqCst);
        self.file_ops_limited.store(true, Ordering::SeqCst);
    }

    pub fn unlimit_file_ops(&self) {
        self.file_ops_limited.store(false, Ordering::SeqCst);
    }

    /// Renames and removals attempted so far (successful or not).
    pub fn file_ops(&self) -> u64 {
        self.file_ops.load(Ordering::SeqCst)
    }

    fn check_file_op(&self) -> io::Result<()> {
        self.file_ops.fetch_add(1, Ordering::SeqCst);
        if !self.file_ops_limited.load(Ordering::SeqCst) {
            return Ok(());
        }
        let update = self
            .file_ops_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            });
        match update {
            Ok(_) => Ok(()),
            Err(_) => Err(io::Error::from_raw_os_error(libc::EIO)),
        }
    }

    fn check_allocate(&self, len: u64) -> io::Result<()> {
        if !self.allocation_limited.load(Ordering::SeqCst) {
            return Ok(());
        }
        let update =
            self.allocation_bytes_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(len)
                });
        match update {
            Ok(_) => Ok(()),
            Err(_) => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
        }
    }

    fn check_sync(&self) -> io::Result<()> {
        if self.sync_fails.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn check_write(&self) -> io::Result<()> {
        if self.write_fails.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn check_trim(&self) -> io::Result<()> {
        if self.trim_fails.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn record_synced(&self, path: &Path) -> io::Result<()> {
        let contents = std::fs::read(path)?;
        self.synced
            .lock()
            .expect("fault injector lock")
            .insert(path.to_path_buf(), contents);
        Ok(())
    }

    fn record_rename(&self, from: &Path, to: &Path) {
        let mut synced = self.synced.lock().expect("fault injector lock");
        // A rename is made durable by the directory fsync that follows it; the
        // model treats it as durable at once, carrying the synced contents along.
        match synced.remove(from) {
            Some(contents) => {
                synced.insert(to.to_path_buf(), contents);
            }
            None => {
                synced.remove(to);
            }
        }
    }

    fn record_removed(&self, path: &Path) {
        self.synced
            .lock()
            .expect("fault injector lock")
            .remove(path);
    }

    /// Rewrites every regular file under `dir` as a power loss could have left
    /// it: bytes that were fsynced stay; the rest follows `mode`. Files never
    /// fsynced lose all their contents. Call only once nothing maps these files.
    /// `seed` chooses the cut points and bits.
    pub fn simulate_power_loss(&self, dir: &Path, mode: CrashMode, seed: u64) -> io::Result<()> {
        let synced = self.synced.lock().expect("fault injector lock");
        let mut random = seed | 1;
        let mut next_random = move |bound: u64| -> u64 {
            // xorshift64: a deterministic function of the seed.
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            if bound == 0 {
                0
            } else {
                random % bound
            }
        };
        let mut stack = vec![dir.to_path_buf()];
        while let Some(current) = stack.pop() {
            for entry in std::fs::read_dir(&current)? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let now = std::fs::read(&path)?;
                let before = synced.get(&path).cloned().unwrap_or_default();
                let first_difference = now
                    .iter()
                    .zip(before.iter())
                    .position(|(a, b)| a != b)
                    .unwrap_or(now.len().min(before.len()));
                let after = match mode {
                    CrashMode::DropUnflushed => before,
                    CrashMode::TornTail => {
                        let span = now.len().saturating_sub(first_difference) as u64;
                        let cut = first_difference + next_random(span + 1) as usize;
                        let mut torn = now[..cut.min(now.len())].to_vec();
                        if before.len() > torn.len() {
                            torn.extend_from_slice(&before[torn.len()..]);
                        }
                        torn
                    }
                    CrashMode::FlipBit => {
                        let mut flipped = now.clone();
                        let span = now.len().saturating_sub(first_difference) as u64;
                        if span > 0 {
                            let at = first_difference + next_random(span) as usize;
                            flipped[at] ^= 1 << next_random(8);
                        }
                        flipped
                    }
                };
                std::fs::write(&path, after)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_past_the_bound_are_closed_and_reopen_on_their_next_write() {
        // Proves the file layer keeps at most writers_max descriptors open, and an evicted writer still writes where it should.
        const FILES: usize = 6;
        const ROUNDS: usize = 4;
        let dir = tempfile::tempdir().expect("tempdir");
        let files = FileLayer::real().with_writers_max(2);
        let paths: Vec<PathBuf> = (0..FILES)
            .map(|i| {
                let path = dir.path().join(format!("w{i}"));
                File::create(&path).expect("create");
                files.allocate(&path, 0, 4096).expect("allocate");
                path
            })
            .collect();
        let mut writers: Vec<Writer> = paths.iter().map(|path| files.writer(path)).collect();
        for round in 0..ROUNDS {
            for (i, writer) in writers.iter_mut().enumerate() {
                let header = [round as u8; 2];
                let body = [i as u8; 3];
                let mut buffers = [IoSlice::new(&header), IoSlice::new(&body)];
                files
                    .write_all_at(writer, (round * 5) as u64, &mut buffers)
                    .expect("write");
                assert!(files.writers_open() <= 2);
            }
        }
        for (i, path) in paths.iter().enumerate() {
            let contents = std::fs::read(path).expect("read");
            for round in 0..ROUNDS {
                let at = round * 5;
                assert_eq!(contents[at..at + 2], [round as u8; 2], "file {i}");
                assert_eq!(contents[at + 2..at + 5], [i as u8; 3], "file {i}");
            }
            assert!(contents[ROUNDS * 5..].iter().all(|&b| b == 0));
        }
        writers[0].close();
        writers.truncate(FILES - 1);
        assert!(
            files.writers_open() <= 1,
            "closed and dropped writers free their slots"
        );
        drop(writers);
        assert_eq!(files.writers_open(), 0);
    }

    #[test]
    fn more_buffers_than_one_pwritev_takes_land_whole_and_in_order() {
        // Proves a write of more than IOVECS_PER_CALL_MAX buffers goes out in several calls, each continuing where the last ended.
        let dir = tempfile::tempdir().expect("tempdir");
        let files = FileLayer::real();
        let path = dir.path().join("many");
        File::create(&path).expect("create");
        let pieces: Vec<Vec<u8>> = (0..2 * IOVECS_PER_CALL_MAX + 7)
            .map(|i| vec![(i % 251) as u8; 1 + i % 5])
            .collect();
        let expected = pieces.concat();
        files
            .allocate(&path, 0, expected.len() as u64 + 10)
            .expect("allocate");
        let mut writer = files.writer(&path);
        let mut buffers: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
        files
            .write_all_at(&mut writer, 10, &mut buffers)
            .expect("write");
        let contents = std::fs::read(&path).expect("read");
        assert_eq!(contents[..10], [0u8; 10]);
        assert_eq!(contents[10..10 + expected.len()], expected[..]);
    }

    /// A writeback job on a scratch file.
    fn scratch_job(file: &Arc<File>) -> WritebackJob {
        WritebackJob {
            file: Arc::clone(file),
            offset: 0,
            len: 4096,
        }
    }

    #[test]
    fn writeback_requests_past_the_queue_bound_are_dropped_not_waited_for() {
        // Proves submit never blocks an append: with the thread not draining, the queue keeps WRITEBACKS_QUEUED_MAX jobs and drops the rest.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = Arc::new(File::create(dir.path().join("f")).expect("create"));
        let (sender, stalled_thread) = sync_channel(WRITEBACKS_QUEUED_MAX);
        let queue = WritebackQueue {
            jobs: Mutex::new(Some(sender)),
        };
        let (done, submitted) = sync_channel(1);
        let submitting = Arc::clone(&file);
        std::thread::spawn(move || {
            for _ in 0..WRITEBACKS_QUEUED_MAX + 10 {
                queue.submit(scratch_job(&submitting));
            }
            let _ = done.send(());
        });
        submitted
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("submit returned without waiting for the thread");
        assert_eq!(stalled_thread.try_iter().count(), WRITEBACKS_QUEUED_MAX);
    }

    #[test]
    fn a_writeback_thread_that_is_gone_is_started_again() {
        // Proves a disconnected queue is dropped on the next request and a new thread takes the one after.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = Arc::new(File::create(dir.path().join("f")).expect("create"));
        let (sender, gone_thread) = sync_channel(WRITEBACKS_QUEUED_MAX);
        drop(gone_thread);
        let queue = WritebackQueue {
            jobs: Mutex::new(Some(sender)),
        };
        queue.submit(scratch_job(&file));
        assert!(
            queue.jobs.lock().unwrap().is_none(),
            "the dead queue is let go"
        );
        queue.submit(scratch_job(&file));
        let restarted = queue.jobs.lock().unwrap();
        let sender = restarted.as_ref().expect("a new thread and queue");
        // Each job holds a descriptor until run: the new thread drained this one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&file) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the new thread runs jobs"
            );
            std::thread::yield_now();
        }
        assert!(sender.try_send(scratch_job(&file)).is_ok());
    }

    #[test]
    fn injected_write_failure_is_an_error_and_writes_nothing() {
        // Proves fail_writes turns a positional write into EIO without touching the file.
        let dir = tempfile::tempdir().expect("tempdir");
        let faults = FaultInjector::new();
        let files = FileLayer::with_faults(Arc::clone(&faults));
        let path = dir.path().join("f");
        File::create(&path).expect("create");
        files.allocate(&path, 0, 4096).expect("allocate");
        let mut writer = files.writer(&path);
        faults.fail_writes(true);
        let mut buffers = [IoSlice::new(b"abc")];
        let error = files
            .write_all_at(&mut writer, 0, &mut buffers)
            .expect_err("injected failure");
        assert_eq!(error.raw_os_error(), Some(libc::EIO));
        faults.fail_writes(false);
        let mut buffers = [IoSlice::new(b"xyz")];
        files
            .write_all_at(&mut writer, 3, &mut buffers)
            .expect("write");
        assert_eq!(&std::fs::read(&path).expect("read")[..6], b"\0\0\0xyz");
    }
}
