//! A partition as the broker serves it: the log plus the replication state
//! around it (its role: leader or follower, and the leader epoch, both from
//! the metadata image; the high watermark). Until followers replicate, the
//! high watermark follows the log end offset; the shape (a watched high
//! watermark that `acks=all` and consumer long-polls wait on) is the one
//! replication fills in.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use tokio::sync::watch;
use uuid::Uuid;

use protocol::batch::{batches, BatchHeader};
use protocol::ErrorCode;

use crate::ids::{BrokerId, LeaderEpoch};
use crate::producer_state::{BatchIdentity, ProducerStateTable, Verdict};
use crate::storage::{AppendInfo, LogConfig, PartitionLog, ReadInfo, StorageError};

/// Bytes read at a time while replaying the log into producer state.
const REPLAY_READ_BYTES: usize = 4 << 20;
/// Producer-state snapshots kept per partition (older ones are deleted).
const SNAPSHOTS_KEPT: usize = 2;
const SNAPSHOT_SUFFIX: &str = ".snapshot";

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("producer sequence check failed: {code}")]
    Sequence { code: ErrorCode },
    #[error("an idempotent record set must hold exactly one batch, not {batches}")]
    MultipleIdempotentBatches { batches: usize },
    #[error("this broker does not lead the partition (leader {leader})")]
    NotLeader { leader: BrokerId },
}

/// The outcome of an accepted append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    New(AppendInfo),
    /// A retried idempotent batch already in the log: its original offsets.
    Duplicate {
        base_offset: i64,
        log_start_offset: i64,
    },
}

/// Whose view a read takes: consumers stop at the high watermark, replicas at the log end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBound {
    HighWatermark,
    LogEnd,
}

/// Who leads a partition and in which epoch, as the metadata image says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub leader: BrokerId,
    pub leader_epoch: LeaderEpoch,
    /// This broker is the leader.
    pub leads: bool,
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub topic_id: Uuid,
    /// Read-locked across a leader's append, so that no batch is appended
    /// in an epoch this broker no longer leads.
    role: RwLock<Role>,
    log: Arc<Mutex<PartitionLog>>,
    /// Idempotent producers' recent sequences. Locked before `log` whenever both are held.
    producers: Mutex<ProducerStateTable>,
    /// Offsets below this are committed (replicated to the whole ISR).
    high_watermark: watch::Sender<i64>,
}

impl Partition {
    pub fn new(
        topic: String,
        index: i32,
        topic_id: Uuid,
        role: Role,
        log: Arc<Mutex<PartitionLog>>,
    ) -> Partition {
        let (log_end_offset, producers) = {
            let log = lock(&log);
            (log.log_end_offset(), load_producer_state(&log))
        };
        let (high_watermark, _) = watch::channel(log_end_offset);
        Partition {
            topic,
            index,
            topic_id,
            role: RwLock::new(role),
            log,
            producers: Mutex::new(producers),
            high_watermark,
        }
    }

    fn log(&self) -> MutexGuard<'_, PartitionLog> {
        lock(&self.log)
    }

    pub fn role(&self) -> Role {
        *self.role.read().expect("role lock")
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.role().leader_epoch
    }

    pub fn is_leader(&self) -> bool {
        self.role().leads
    }

    /// Takes the role the metadata image gives. Epochs never go back: an
    /// older image cannot be applied after a newer one.
    pub fn set_role(&self, role: Role) {
        let mut current = self.role.write().expect("role lock");
        assert!(
            role.leader_epoch >= current.leader_epoch,
            "leader epoch of {}-{} moves back from {} to {}",
            self.topic,
            self.index,
            current.leader_epoch,
            role.leader_epoch
        );
        if *current != role {
            tracing::info!(topic = %self.topic, partition = self.index, leader = %role.leader, leader_epoch = %role.leader_epoch, leads = role.leads, "partition role changed");
        }
        *current = role;
    }

    /// Appends validated batches as leader: checks idempotent producers'
    /// sequences, appends, and advances the high watermark, waking consumers.
    pub fn append_as_leader(&self, records: &Bytes, now_ms: i64) -> Result<Appended, AppendError> {
        let role = self.role.read().expect("role lock");
        if !role.leads {
            return Err(AppendError::NotLeader {
                leader: role.leader,
            });
        }
        let mut producers = self.producers.lock().expect("producer state lock");
        let identity = idempotent_identity(records)?;
        if let Some(identity) = &identity {
            match producers.check(identity) {
                Ok(Verdict::Append) => {}
                Ok(Verdict::Duplicate { base_offset, .. }) => {
                    return Ok(Appended::Duplicate {
                        base_offset,
                        log_start_offset: self.log().log_start_offset(),
                    });
                }
                Err(e) => return Err(AppendError::Sequence { code: e.code }),
            }
        }
        let (info, log_end_offset) = {
            let mut log = self.log();
            let segments_before = log.segment_count();
            let info = log.append(records, role.leader_epoch.0, now_ms)?;
            if log.segment_count() > segments_before {
                // The batch opened a new segment: snapshot the state as of its start,
                // so recovery replays at most one segment.
                write_snapshot(&log, &producers, info.base_offset);
            }
            (info, log.log_end_offset())
        };
        if let Some(identity) = &identity {
            producers.record(identity, info.base_offset, info.last_offset);
        }
        drop(producers);
        drop(role);
        assert!(
            info.last_offset < log_end_offset,
            "appended offsets must lie below the log end offset"
        );
        // The ISR is this broker alone: everything appended is committed.
        self.advance_high_watermark(log_end_offset);
        Ok(Appended::New(info))
    }

    /// Writes a producer-state snapshot at the log end, so the next start replays nothing.
    pub fn snapshot_producer_state(&self) {
        let producers = self.producers.lock().expect("producer state lock");
        let log = self.log();
        write_snapshot(&log, &producers, log.log_end_offset());
    }

    fn advance_high_watermark(&self, offset: i64) {
        self.high_watermark.send_if_modified(|hw| {
            if offset > *hw {
                *hw = offset;
                true
            } else {
                false
            }
        });
    }

    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        bound: ReadBound,
        min_one_batch: bool,
    ) -> Result<ReadInfo, StorageError> {
        let log = self.log();
        let max_offset = match bound {
            ReadBound::HighWatermark => *self.high_watermark.borrow(),
            ReadBound::LogEnd => log.log_end_offset(),
        };
        log.read(offset, max_bytes, max_offset, min_one_batch)
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// A receiver that sees every high watermark change, for long-polls and `acks=all`.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log().log_start_offset()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log().log_end_offset()
    }

    /// Applies changed topic config overrides to the log.
    pub fn set_log_config(&self, config: LogConfig) -> Result<(), StorageError> {
        self.log().set_config(config)
    }

    pub fn is_offline(&self) -> bool {
        self.log().is_offline()
    }

    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Option<(i64, i64)> {
        self.log().offset_for_timestamp(timestamp_ms)
    }

    pub fn max_timestamp_and_offset(&self) -> Option<(i64, i64)> {
        self.log().max_timestamp_and_offset()
    }
}

/// The producer identity of an idempotent record set, which must be a single batch.
fn idempotent_identity(records: &Bytes) -> Result<Option<BatchIdentity>, AppendError> {
    let mut count = 0;
    let mut identity = None;
    for batch in batches(records) {
        count += 1;
        if let Ok(header) = BatchHeader::new(&batch) {
            identity = identity.or(BatchIdentity::of(&header));
        }
    }
    if identity.is_some() && count > 1 {
        return Err(AppendError::MultipleIdempotentBatches { batches: count });
    }
    Ok(identity)
}

fn snapshot_path(log: &PartitionLog, offset: i64) -> std::path::PathBuf {
    log.dir().join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

/// Snapshot files of a partition, by offset, oldest first.
fn snapshots(log: &PartitionLog) -> Vec<(i64, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(log.dir()) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let offset = name.strip_suffix(SNAPSHOT_SUFFIX)?.parse::<i64>().ok()?;
            Some((offset, entry.path()))
        })
        .collect();
    found.sort();
    found
}

/// Best effort: a missing snapshot only costs a longer replay at the next start.
fn write_snapshot(log: &PartitionLog, producers: &ProducerStateTable, offset: i64) {
    if let Err(e) =
        crate::fsutil::write_atomically(&snapshot_path(log, offset), &producers.encode())
    {
        tracing::warn!(dir = %log.dir().display(), error = %e, "cannot write producer-state snapshot");
        return;
    }
    let all = snapshots(log);
    for (old, path) in all.iter().take(all.len().saturating_sub(SNAPSHOTS_KEPT)) {
        if *old < offset {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Loads the newest usable snapshot and replays the log after it.
fn load_producer_state(log: &PartitionLog) -> ProducerStateTable {
    let log_end_offset = log.log_end_offset();
    let log_start_offset = log.log_start_offset();
    let mut table = ProducerStateTable::default();
    let mut from = log_start_offset;
    for (offset, path) in snapshots(log).into_iter().rev() {
        if offset > log_end_offset {
            // Written for data that recovery has since truncated away.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if let Some(loaded) = std::fs::read(&path)
            .ok()
            .and_then(|b| ProducerStateTable::decode(&b))
        {
            table = loaded;
            from = offset.max(log_start_offset);
            break;
        }
        tracing::warn!(path = %path.display(), "ignoring damaged producer-state snapshot");
    }
    let mut offset = from;
    let mut replayed = 0usize;
    while offset < log_end_offset {
        let read = match log.read(offset, REPLAY_READ_BYTES, log_end_offset, true) {
            Ok(read) if !read.records.is_empty() => read,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(dir = %log.dir().display(), error = %e, "producer-state replay stopped early");
                break;
            }
        };
        for batch in batches(&read.records) {
            let Ok(header) = BatchHeader::new(&batch) else {
                break;
            };
            if header.last_offset() >= offset {
                table.replay(&header);
                replayed += 1;
            }
            offset = offset.max(header.last_offset() + 1);
        }
    }
    if replayed > 0 {
        tracing::debug!(dir = %log.dir().display(), from, replayed, "rebuilt producer state from the log");
    }
    table
}

/// A poisoned lock means a panic while the log was being changed; the
/// in-memory state may be half-updated, so serving it further is unsafe.
fn lock(log: &Mutex<PartitionLog>) -> MutexGuard<'_, PartitionLog> {
    log.lock()
        .expect("partition log lock poisoned by an earlier panic")
}
