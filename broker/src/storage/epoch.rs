//! The leader-epoch cache: for each leader epoch, the first offset written in
//! it, persisted in `leader-epoch-checkpoint` beside the log (Kafka's format).
//! Followers use it to find where their log diverged from the leader's (KIP-101).

use std::path::{Path, PathBuf};

use crate::storage::checkpoint;
use crate::storage::error::StorageError;
use crate::storage::file::FileLayer;

pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

#[derive(Debug)]
pub(crate) struct LeaderEpochCache {
    path: PathBuf,
    /// `(epoch, start_offset)`, both strictly increasing.
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    /// Loads the checkpoint in `dir`, dropping entries that break monotonicity
    /// (a damaged file must not poison the cache).
    pub(crate) fn open(dir: &Path) -> Result<Self, StorageError> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
        let mut entries: Vec<(i32, i64)> = Vec::new();
        for (epoch, start_offset) in checkpoint::read_epochs(&path)? {
            if epoch < 0 || start_offset < 0 {
                continue;
            }
            if let Some(&(last_epoch, last_start)) = entries.last() {
                if epoch <= last_epoch || start_offset < last_start {
                    tracing::warn!(path = %path.display(), epoch, start_offset,
                        "dropping non-monotonic leader epoch entry");
                    continue;
                }
            }
            entries.push((epoch, start_offset));
        }
        Ok(LeaderEpochCache { path, entries })
    }

    pub(crate) fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    fn persist(&self, files: &FileLayer) -> Result<(), StorageError> {
        checkpoint::write_epochs(files, &self.path, &self.entries)
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(epoch, _)| epoch)
    }

    /// Records that `epoch` starts at `start_offset`. An epoch not newer than the
    /// latest is ignored (Kafka does the same); an entry for a newer epoch at an
    /// offset below existing entries replaces them.
    pub(crate) fn assign(
        &mut self,
        files: &FileLayer,
        epoch: i32,
        start_offset: i64,
    ) -> Result<bool, StorageError> {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return Ok(false);
        }
        self.entries
            .retain(|&(_, existing_start)| existing_start < start_offset);
        self.entries.push((epoch, start_offset));
        assert!(
            self.entries
                .windows(2)
                .all(|pair| pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1),
            "leader epoch entries must increase"
        );
        self.persist(files)?;
        Ok(true)
    }

    /// Drops every entry starting at or past `end_offset` (the log was truncated there).
    pub(crate) fn truncate_from_end(
        &mut self,
        files: &FileLayer,
        end_offset: i64,
    ) -> Result<(), StorageError> {
        let before = self.entries.len();
        self.entries
            .retain(|&(_, start_offset)| start_offset < end_offset);
        if self.entries.len() != before {
            self.persist(files)?;
        }
        Ok(())
    }

    /// Drops entries wholly below the new log start offset; the last of them is
    /// kept and moved up to `start_offset`, as Kafka does.
    pub(crate) fn truncate_from_start(
        &mut self,
        files: &FileLayer,
        start_offset: i64,
    ) -> Result<(), StorageError> {
        let below = self
            .entries
            .iter()
            .take_while(|&&(_, entry_start)| entry_start <= start_offset)
            .count();
        if below == 0 {
            return Ok(());
        }
        let (epoch, entry_start) = self.entries[below - 1];
        if below == 1 && entry_start == start_offset {
            return Ok(());
        }
        self.entries.drain(..below);
        self.entries.insert(0, (epoch, start_offset));
        self.persist(files)
    }

    /// KIP-101 OffsetForLeaderEpoch: the largest epoch `<= requested` and the
    /// end offset of `requested` (the start of the next larger epoch, or the log
    /// end offset if `requested` is the latest). `None` means UNDEFINED.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if requested < 0 {
            return None;
        }
        let latest = self.latest_epoch()?;
        if requested == latest {
            return Some((requested, log_end_offset));
        }
        let higher = self.entries.iter().find(|&&(epoch, _)| epoch > requested)?;
        match self
            .entries
            .iter()
            .rev()
            .find(|&&(epoch, _)| epoch <= requested)
        {
            // Older than anything known: the data is gone; answer the start of the
            // first larger epoch, so the follower replicates from there.
            None => Some((requested, higher.1)),
            Some(&(floor_epoch, _)) => Some((floor_epoch, higher.1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offset_for_epoch_follows_kip_101() {
        // Proves the lookup answers the next epoch's start, the LEO for the latest, and UNDEFINED above.
        let dir = tempfile::tempdir().expect("tempdir");
        let files = FileLayer::real();
        let mut cache = LeaderEpochCache::open(dir.path()).expect("open");
        cache.assign(&files, 1, 0).expect("assign");
        cache.assign(&files, 3, 10).expect("assign");
        cache.assign(&files, 4, 25).expect("assign");
        assert_eq!(cache.end_offset_for(4, 40), Some((4, 40)));
        assert_eq!(cache.end_offset_for(3, 40), Some((3, 25)));
        assert_eq!(cache.end_offset_for(2, 40), Some((1, 10)));
        assert_eq!(cache.end_offset_for(0, 40), Some((0, 0)));
        assert_eq!(cache.end_offset_for(5, 40), None);
        let reopened = LeaderEpochCache::open(dir.path()).expect("reopen");
        assert_eq!(reopened.entries(), &[(1, 0), (3, 10), (4, 25)]);
    }

    #[test]
    fn truncation_keeps_the_cache_consistent_with_the_log() {
        // Proves truncating the end drops later epochs and truncating the start moves the first entry up.
        let dir = tempfile::tempdir().expect("tempdir");
        let files = FileLayer::real();
        let mut cache = LeaderEpochCache::open(dir.path()).expect("open");
        cache.assign(&files, 1, 0).expect("assign");
        cache.assign(&files, 2, 10).expect("assign");
        cache.assign(&files, 3, 20).expect("assign");
        cache.truncate_from_end(&files, 20).expect("truncate");
        assert_eq!(cache.entries(), &[(1, 0), (2, 10)]);
        cache.truncate_from_start(&files, 15).expect("truncate");
        assert_eq!(cache.entries(), &[(2, 15)]);
        assert!(
            !cache.assign(&files, 2, 30).expect("assign"),
            "stale epoch ignored"
        );
        let reopened = LeaderEpochCache::open(dir.path()).expect("reopen");
        assert_eq!(reopened.entries(), &[(2, 15)]);
    }
}
