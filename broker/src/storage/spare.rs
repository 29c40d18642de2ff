//! The spare segment file: the next segment's `.log`, created and allocated
//! in full on a thread of its own while the active segment fills, so that
//! the appends of a busy log never wait for `fallocate`.
//!
//! The active segment grows in `preallocate_step_bytes` steps, each a
//! `fallocate` on the append path. On ext4 such a call now and then waits
//! for the journal commit that the once-a-second `fdatasync` started, and it
//! holds the inode lock every `pwritev` of that file needs meanwhile: appends
//! stopped for 26-76 ms at a time under a 1 KiB / 300k msg/s load
//! (docs/benchmarks.md, tenth round). A spare is a different file, so its
//! allocation waits for the journal on its own thread; a roll renames it
//! into place, and the new segment then has all its space from the start.
//!
//! Only logs whose segments are at least [`SPARE_SEGMENT_BYTES_MIN`] get a
//! spare, once their active segment is half full: a busy log reserves at most
//! one segment of disk ahead, and a log that rarely fills a segment never
//! does. The spare's name ends in `.tmp`, so a crash leaves nothing that
//! loading the log would take for a segment: it removes `.tmp` files.

use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crate::storage::file::FileLayer;

/// Name of the spare file in the log's directory.
pub(crate) const SPARE_FILE_NAME: &str = "spare-segment.tmp";
/// Logs with smaller segments allocate them step by step, as before: their
/// steps are few and a spare would gain little.
pub const SPARE_SEGMENT_BYTES_MIN: u64 = 64 << 20;
/// The spare is allocated in steps this big: one big `fallocate` makes one
/// big journal transaction, which every other journaled change waits for.
const SPARE_ALLOCATION_STEP_BYTES: u64 = 8 << 20;

pub(crate) struct Spare {
    path: PathBuf,
    state: State,
}

enum State {
    /// The thread is creating and allocating the file.
    Allocating(JoinHandle<io::Result<()>>),
    /// The file exists with the whole segment allocated.
    Ready,
    /// The thread could not be started or could not allocate the file.
    Failed,
}

impl Spare {
    /// Starts creating and allocating a spare of `len` bytes in `dir`.
    pub(crate) fn start(files: &FileLayer, dir: &Path, len: u64) -> Spare {
        let path = dir.join(SPARE_FILE_NAME);
        let job = {
            let files = files.clone();
            let path = path.clone();
            std::thread::Builder::new()
                .name("spare-segment".to_string())
                .spawn(move || {
                    files.remove_file(&path)?;
                    drop(files.open_rw(&path, true)?);
                    let mut at = 0;
                    while at < len {
                        let step = SPARE_ALLOCATION_STEP_BYTES.min(len - at);
                        files.allocate(&path, at, step)?;
                        at += step;
                    }
                    Ok(())
                })
        };
        let state = match job {
            Ok(job) => State::Allocating(job),
            Err(error) => {
                tracing::warn!(%error, "no thread for a spare segment; segments grow step by step");
                State::Failed
            }
        };
        Spare { path, state }
    }

    /// Takes the thread's outcome once it has one (at once if `wait`).
    fn settle(&mut self, wait: bool) {
        let finished = matches!(&self.state, State::Allocating(job) if wait || job.is_finished());
        if !finished {
            return;
        }
        let State::Allocating(job) = std::mem::replace(&mut self.state, State::Failed) else {
            unreachable!("checked above");
        };
        match job.join() {
            Ok(Ok(())) => self.state = State::Ready,
            Ok(Err(error)) => {
                tracing::warn!(path = %self.path.display(), %error, "could not allocate a spare segment");
            }
            Err(_) => tracing::error!("the spare segment thread panicked"),
        }
    }

    /// At a roll, without waiting: an allocated spare is renamed to
    /// `log_path` (the `.log` of the new segment) and used up; one still
    /// being allocated is handed back for the next roll; a failed one is
    /// removed. `Ok(None)` means the spare is gone.
    pub(crate) fn take_into(
        mut self,
        files: &FileLayer,
        log_path: &Path,
    ) -> io::Result<Option<Spare>> {
        self.settle(false);
        match self.state {
            State::Allocating(_) => Ok(Some(self)),
            State::Ready => match files.rename(&self.path, log_path) {
                Ok(()) => Ok(None),
                Err(error) => {
                    self.discard(files);
                    Err(error)
                }
            },
            State::Failed => {
                self.discard(files);
                Ok(None)
            }
        }
    }

    /// Waits for the thread; whether the spare is ready to be taken.
    #[cfg(test)]
    pub(crate) fn wait_ready(&mut self) -> bool {
        self.settle(true);
        matches!(self.state, State::Ready)
    }

    /// Waits for the thread and removes the file (the log is closing or
    /// going offline, or the spare failed).
    pub(crate) fn discard(mut self, files: &FileLayer) {
        self.settle(true);
        if let Err(error) = files.remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "could not remove a spare segment");
        }
    }
}
