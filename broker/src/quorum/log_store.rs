//! The Raft log, stored as a [`PartitionLog`] of our own storage engine, as
//! KRaft stores `__cluster_metadata`: one record batch per entry, with
//! `baseOffset` = Raft index and `partitionLeaderEpoch` = term. The batch's
//! single record has no key and a value of one kind byte and a body:
//! [`KIND_BLANK`] (no body), [`KIND_NORMAL`] (the application's payload as
//! is) or [`KIND_MEMBERSHIP`] (openraft's membership in bincode).
//!
//! The engine's recovery drops a torn or corrupt tail on open; what it keeps
//! was validated batch by batch. Everything openraft appends is fsynced
//! before it is told so. Beside the log, the file [`STATE_FILE`] holds the
//! vote and the last purged log id, written atomically.

// openraft's traits fix the error type, `StorageError`, which is large; the
// helpers here return it as the traits do.
#![allow(clippy::result_large_err)]

use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, CommittedLeaderId, Entry, EntryPayload, LogId, LogState, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use protocol::batch::{assign_offset_and_epoch, decode_records, BatchBuilder, Record};

use crate::quorum::types::{NodeId, Payload, TypeConfig};
use crate::storage::config::{CleanupPolicy, FlushPolicy, LogConfig};
use crate::storage::log::OpenOptions;
use crate::storage::{FileLayer, MappingBudget, PartitionLog, StorageError as LogError};

/// The vote and the last purged log id, beside the log.
pub const STATE_FILE: &str = "quorum-state";
/// A blank entry (a new leader's first).
pub const KIND_BLANK: u8 = 0;
/// An application payload.
pub const KIND_NORMAL: u8 = 1;
/// A membership change.
pub const KIND_MEMBERSHIP: u8 = 2;
/// Mappings the quorum's log may hold at once (a small log of a few segments).
const MAPPINGS_MAX: usize = 16;
/// Bytes read from the log per read call when openraft asks for entries.
const READ_BYTES_MAX: usize = 1 << 20;

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// Builds the engine's configuration for the quorum's log: nothing is
/// deleted by retention, and an interval flush of 0 ms makes every append
/// due for the flush that [`LogStore`] runs after it, outside the log's lock
/// (the engine's interval flush), so readers never wait for an fsync.
pub fn log_config(segment_bytes_max: u64) -> LogConfig {
    LogConfig {
        segment_bytes_max,
        segment_ms_max: u64::MAX / 2,
        retention_bytes: None,
        retention_ms: None,
        flush_policy: FlushPolicy::IntervalMs(0),
        preallocate_step_bytes: segment_bytes_max.clamp(4096, 1 << 20),
        cleanup_policy: CleanupPolicy::DELETE,
        ..LogConfig::default()
    }
}

/// The entry as one record batch at its index and term.
pub fn encode_entry(entry: &Entry<TypeConfig>) -> Result<Bytes, String> {
    let mut value = Vec::new();
    match &entry.payload {
        EntryPayload::Blank => value.push(KIND_BLANK),
        EntryPayload::Normal(Payload(payload)) => {
            value.reserve(1 + payload.len());
            value.push(KIND_NORMAL);
            value.extend_from_slice(payload);
        }
        EntryPayload::Membership(membership) => {
            value.push(KIND_MEMBERSHIP);
            let body = bincode::serialize(membership).map_err(|e| e.to_string())?;
            value.extend_from_slice(&body);
        }
    }
    let index = i64::try_from(entry.log_id.index).map_err(|_| "index past i64".to_string())?;
    let term = i32::try_from(entry.log_id.leader_id.term).map_err(|_| {
        format!(
            "term {} does not fit a leader epoch",
            entry.log_id.leader_id.term
        )
    })?;
    let mut builder = BatchBuilder::with_capacity(value.len() + 16);
    builder.push(&Record {
        key: None,
        value: Some(Bytes::from(value)),
        headers: Vec::new(),
        timestamp: crate::now_ms(),
    });
    let mut batch = builder.build().to_vec();
    assign_offset_and_epoch(&mut batch, index, term);
    Ok(Bytes::from(batch))
}

/// The entry a stored batch holds.
pub fn decode_entry(batch: &Bytes) -> Result<Entry<TypeConfig>, String> {
    let header = protocol::batch::BatchHeader::new(batch).map_err(|e| e.to_string())?;
    let index = u64::try_from(header.base_offset()).map_err(|_| "negative offset".to_string())?;
    let term = u64::try_from(header.partition_leader_epoch())
        .map_err(|_| "negative leader epoch".to_string())?;
    let records = decode_records(batch).map_err(|e| e.to_string())?;
    let [record] = records.as_slice() else {
        return Err(format!(
            "entry {index} has {} records, not 1",
            records.len()
        ));
    };
    let value = record.value.as_deref().unwrap_or_default();
    let payload = match value.split_first() {
        Some((&KIND_BLANK, [])) => EntryPayload::Blank,
        Some((&KIND_NORMAL, payload)) => EntryPayload::Normal(Payload(payload.to_vec())),
        Some((&KIND_MEMBERSHIP, body)) => EntryPayload::Membership(
            bincode::deserialize(body).map_err(|e| format!("entry {index}: {e}"))?,
        ),
        _ => return Err(format!("entry {index} has an unknown kind")),
    };
    Ok(Entry {
        log_id: log_id(term, index),
        payload,
    })
}

pub fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, NodeId::default()), index)
}

/// What [`STATE_FILE`] holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersistedState {
    pub vote: Option<Vote<NodeId>>,
    pub last_purged: Option<LogId<NodeId>>,
}

impl PersistedState {
    /// `key: value` lines, readable by a person.
    fn encode(&self) -> String {
        let mut text = String::from("version: 0\n");
        if let Some(vote) = &self.vote {
            text.push_str(&format!("term: {}\n", vote.leader_id.term));
            if let Some(voted_for) = vote.leader_id.voted_for {
                text.push_str(&format!("voted_for: {voted_for}\n"));
            }
            text.push_str(&format!("committed: {}\n", vote.committed));
        }
        if let Some(purged) = &self.last_purged {
            text.push_str(&format!("last_purged_index: {}\n", purged.index));
            text.push_str(&format!("last_purged_term: {}\n", purged.leader_id.term));
        }
        text
    }

    fn decode(text: &str) -> Result<PersistedState, String> {
        let mut fields = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (key, value) = line
                .split_once(':')
                .ok_or_else(|| format!("line {line:?} is not key: value"))?;
            fields.insert(key.trim(), value.trim());
        }
        if fields.get("version") != Some(&"0") {
            return Err("unknown or missing version".to_string());
        }
        let number = |key: &str| -> Result<Option<u64>, String> {
            fields
                .get(key)
                .map(|v| v.parse::<u64>().map_err(|e| format!("{key}: {e}")))
                .transpose()
        };
        let vote = match number("term")? {
            None => None,
            Some(term) => {
                let committed = match fields.get("committed") {
                    Some(&"true") => true,
                    Some(&"false") | None => false,
                    Some(other) => return Err(format!("committed: {other:?}")),
                };
                let mut leader_id = openraft::LeaderId::new(term, 0);
                leader_id.voted_for = number("voted_for")?;
                Some(Vote {
                    leader_id,
                    committed,
                })
            }
        };
        let last_purged = match (number("last_purged_index")?, number("last_purged_term")?) {
            (Some(index), Some(term)) => Some(log_id(term, index)),
            (None, None) => None,
            _ => return Err("last purged index without term or the reverse".to_string()),
        };
        Ok(PersistedState { vote, last_purged })
    }
}

/// The log and the state file, shared by the store and its readers.
pub struct LogShared {
    dir: PathBuf,
    files: FileLayer,
    log: Mutex<PartitionLog>,
    state: Mutex<PersistedState>,
}

fn io_error(context: &str, error: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::error(format!("{context}: {error}"))).into()
}

fn read_error(context: &str, error: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::error(format!("{context}: {error}"))).into()
}

impl LogShared {
    /// Opens the log in `dir` (recovering it) and reads the state file. Every
    /// file goes through `files` (fault injection in tests).
    pub fn open(
        dir: &Path,
        segment_bytes_max: u64,
        files: FileLayer,
    ) -> Result<Arc<LogShared>, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let state_path = dir.join(STATE_FILE);
        let state = match std::fs::read_to_string(&state_path) {
            Ok(text) => PersistedState::decode(&text)
                .map_err(|e| format!("{}: {e}", state_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PersistedState::default(),
            Err(e) => return Err(format!("read {}: {e}", state_path.display())),
        };
        let start = state
            .last_purged
            .map_or(0, |purged| purged.index as i64 + 1);
        let options = OpenOptions {
            recovery_point: None,
            log_start_offset: Some(start),
            clean_shutdown: false,
            cleaner_offset: None,
        };
        let (mut log, report) = PartitionLog::open(
            dir,
            log_config(segment_bytes_max),
            files.clone(),
            MappingBudget::new(MAPPINGS_MAX),
            options,
        )
        .map_err(|e| format!("open the log in {}: {e}", dir.display()))?;
        tracing::info!(dir = %dir.display(), ?report, log_start_offset = log.log_start_offset(),
            log_end_offset = log.log_end_offset(), "opened the metadata log");
        // A purge whose state file was written but whose log start did not
        // move before a crash is finished here.
        if log.log_start_offset() < start {
            if start <= log.log_end_offset() {
                log.set_log_start_offset(start)
            } else {
                log.truncate_fully_and_start_at(start)
            }
            .map_err(|e| format!("finish a purge in {}: {e}", dir.display()))?;
            drop(log.take_doomed());
        }
        Ok(Arc::new(LogShared {
            dir: dir.to_path_buf(),
            files,
            log: Mutex::new(log),
            state: Mutex::new(state),
        }))
    }

    pub fn log(&self) -> MutexGuard<'_, PartitionLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> MutexGuard<'_, PersistedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the state file atomically with `change` applied, then keeps it.
    fn save_state(&self, change: impl FnOnce(&mut PersistedState)) -> std::io::Result<()> {
        let mut state = self.state();
        let mut next = state.clone();
        change(&mut next);
        self.files
            .write_atomically(&self.dir.join(STATE_FILE), next.encode().as_bytes())?;
        *state = next;
        Ok(())
    }

    /// The entries present in `[start, end)`: those purged or past the log
    /// end are left out (openraft then sends a snapshot, or waits).
    fn entries(&self, start: u64, end: u64) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let mut entries = Vec::new();
        let log = self.log();
        let start = start.max(log.log_start_offset() as u64);
        let end = end.min(log.log_end_offset() as u64);
        let mut next = start;
        while next < end {
            let info = log
                .read(next as i64, READ_BYTES_MAX, end as i64, true)
                .map_err(|e| read_error(&format!("read entry {next}"), e))?;
            if info.records.is_empty() {
                return Err(read_error(
                    "read",
                    format!("no entry at {next} below the log end"),
                ));
            }
            for batch in protocol::batch::batches(&info.records) {
                let entry = decode_entry(&batch).map_err(|e| read_error("decode", e))?;
                if entry.log_id.index != next {
                    return Err(read_error(
                        "read",
                        format!("entry {} where {next} was expected", entry.log_id.index),
                    ));
                }
                next += 1;
                entries.push(entry);
                if next >= end {
                    break;
                }
            }
        }
        Ok(entries)
    }

    /// The log id of the last entry, if the log holds any.
    fn last_log_id(&self) -> StorageResult<Option<LogId<NodeId>>> {
        let (start, end) = {
            let log = self.log();
            (log.log_start_offset(), log.log_end_offset())
        };
        if end <= start {
            return Ok(None);
        }
        let last = self.entries(end as u64 - 1, end as u64)?;
        Ok(last.last().map(|entry| entry.log_id))
    }

    /// Flushes and closes the log at shutdown.
    pub fn close(&self) {
        if let Err(error) = self.log().close() {
            tracing::warn!(dir = %self.dir.display(), %error, "closing the metadata log");
        }
    }
}

/// openraft's log storage over [`LogShared`].
pub struct LogStore {
    shared: Arc<LogShared>,
}

impl LogStore {
    pub fn new(shared: Arc<LogShared>) -> LogStore {
        LogStore { shared }
    }
}

/// A reader for openraft's replication tasks.
pub struct LogReader {
    shared: Arc<LogShared>,
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e + 1,
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let (start, end) = bounds(&range);
        self.shared.entries(start, end)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let (start, end) = bounds(&range);
        self.shared.entries(start, end)
    }
}

/// Runs blocking log work (appends, fsyncs, truncations) off the runtime's
/// worker threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> StorageResult<T> + Send + 'static,
) -> StorageResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| io_error("log task", e))?
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id = self.shared.state().last_purged;
        let last_log_id = self.shared.last_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let shared = self.shared.clone();
        let vote = *vote;
        blocking(move || {
            shared
                .save_state(|state| state.vote = Some(vote))
                .map_err(|e| StorageIOError::write_vote(AnyError::error(e)).into())
        })
        .await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(self.shared.state().vote)
    }

    /// Appends the entries, then fsyncs once for all of them before
    /// reporting them flushed. The call returns after the fsync: the next
    /// write must not overtake this one anyway.
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let batches = entries
            .into_iter()
            .map(|entry| {
                encode_entry(&entry)
                    .map_err(|e| StorageIOError::write_log_entry(entry.log_id, AnyError::error(e)))
            })
            .collect::<Result<Vec<Bytes>, _>>()?;
        let shared = self.shared.clone();
        let result = blocking(move || {
            let flush = {
                let mut log = shared.log();
                for batch in &batches {
                    log.append_as_follower(batch)
                        .map_err(|e| io_error("append", e))?;
                }
                // Due whatever the wall clock did since the append.
                log.begin_flush_if_due(i64::MAX)
            };
            // openraft sends no other write until this one returns, so the
            // fsync covers exactly what was just appended.
            if let Some(mut flush) = flush {
                let outcome = flush.run();
                let mut log = shared.log();
                log.complete_flush(flush, outcome)
                    .map_err(|e| io_error("flush", e))?;
                assert!(
                    log.recovery_point() == log.log_end_offset(),
                    "every appended entry is flushed before it is reported so"
                );
            }
            Ok(())
        })
        .await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(error) => callback.log_io_completed(Err(std::io::Error::other(error.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        tracing::info!(%log_id, "truncating the metadata log");
        let shared = self.shared.clone();
        blocking(move || {
            let mut log = shared.log();
            log.truncate_to(log_id.index as i64)
                .map_err(|e| io_error("truncate", e))?;
            assert!(
                log.log_end_offset() as u64 <= log_id.index,
                "truncation keeps nothing at or past the conflict"
            );
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let shared = self.shared.clone();
        blocking(move || {
            // The state file first: a crash before the log start moves is
            // finished on the next open, never leaving a hole.
            shared
                .save_state(|state| state.last_purged = Some(log_id))
                .map_err(|e| io_error("save the last purged log id", e))?;
            let start = log_id.index as i64 + 1;
            let mut log = shared.log();
            let result = if start <= log.log_end_offset() {
                log.set_log_start_offset(start)
            } else {
                // A snapshot past the whole log was installed: none of it stays.
                log.truncate_fully_and_start_at(start)
            };
            result.map_err(|e: LogError| io_error("purge", e))?;
            assert!(
                log.log_start_offset() >= start,
                "the purge moved the log start"
            );
            let doomed = log.take_doomed();
            drop(log);
            // The purged segments' files are unlinked after the lock.
            drop(doomed);
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_batches() {
        // Each kind of entry decodes to itself from its stored batch, at its index and term.
        let membership = openraft::Membership::new(
            vec![std::collections::BTreeSet::from([1, 2])],
            std::collections::BTreeMap::from([(3, openraft::BasicNode::new("127.0.0.1:9"))]),
        );
        for payload in [
            EntryPayload::Blank,
            EntryPayload::Normal(Payload(b"hello".to_vec())),
            EntryPayload::Normal(Payload(Vec::new())),
            EntryPayload::Membership(membership),
        ] {
            let entry = Entry {
                log_id: log_id(7, 42),
                payload,
            };
            let batch = encode_entry(&entry).unwrap();
            let header = protocol::batch::BatchHeader::new(&batch).unwrap();
            assert_eq!(
                (header.base_offset(), header.partition_leader_epoch()),
                (42, 7)
            );
            let decoded = decode_entry(&batch).unwrap();
            assert_eq!(decoded.log_id, entry.log_id);
            assert_eq!(
                format!("{:?}", decoded.payload),
                format!("{:?}", entry.payload)
            );
        }
    }

    /// Cases per property test of the entry codec.
    const CODEC_CASES: u32 = 256;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: CODEC_CASES, failure_persistence: None, ..Default::default() })]

        #[test]
        fn any_payload_round_trips_at_any_index_and_term(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            index in 0u64..(i64::MAX as u64),
            term in 0u64..(i32::MAX as u64),
        ) {
            // decode(encode(entry)) == entry, with the index and term in the batch header.
            let entry = Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(Payload(payload.clone())) };
            let batch = encode_entry(&entry).unwrap();
            let decoded = decode_entry(&batch).unwrap();
            proptest::prop_assert_eq!(decoded.log_id, entry.log_id);
            match decoded.payload {
                EntryPayload::Normal(Payload(bytes)) => proptest::prop_assert_eq!(bytes, payload),
                other => proptest::prop_assert!(false, "decoded {:?}", other),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_entry_decoder(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            // Bytes from the disk may be anything; decoding them is an error or an entry.
            let _ = decode_entry(&Bytes::from(bytes));
        }
    }

    #[test]
    fn term_past_a_leader_epoch_is_refused() {
        // A term that does not fit partitionLeaderEpoch cannot be stored silently truncated.
        let entry = Entry {
            log_id: log_id(i32::MAX as u64 + 1, 0),
            payload: EntryPayload::<TypeConfig>::Blank,
        };
        assert!(encode_entry(&entry).is_err());
    }

    #[test]
    fn state_file_round_trips_and_rejects_garbage() {
        // The vote and last purged id survive the text form; malformed text is an error.
        let mut vote = Vote::new(9, 2);
        vote.commit();
        let state = PersistedState {
            vote: Some(vote),
            last_purged: Some(log_id(4, 100)),
        };
        assert_eq!(PersistedState::decode(&state.encode()).unwrap(), state);
        let empty = PersistedState::default();
        assert_eq!(PersistedState::decode(&empty.encode()).unwrap(), empty);
        for bad in [
            "",
            "version: 1\n",
            "version: 0\nterm: x\n",
            "version: 0\nlast_purged_index: 3\n",
        ] {
            assert!(PersistedState::decode(bad).is_err(), "{bad:?}");
        }
    }
}
