//! openraft's state machine over the application's [`StateMachine`], and the
//! snapshot files.
//!
//! The application sees only payloads: blank and membership entries are
//! kept here (the last applied log id and the membership) and not passed on.
//! One lock covers applying an entry and taking a snapshot, so a snapshot's
//! state and its log id always agree.
//!
//! A snapshot is a file `<index>-<term>.snapshot` written atomically: a
//! header with openraft's snapshot meta, the application's bytes, and a
//! CRC-32C of everything before it. The newest two are kept, so a corrupt
//! newest one still leaves one to start from.

// openraft's traits fix the error type, `StorageError`, which is large; the
// helpers here return it as the traits do.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};

use crate::quorum::types::{NodeId, Payload, TypeConfig};
use crate::quorum::StateMachine;
use crate::storage::FileLayer;

/// Snapshot files end with this.
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Snapshot files kept on disk, newest first.
pub const SNAPSHOTS_KEPT: usize = 2;
const SNAPSHOT_MAGIC: &[u8; 4] = b"QSNP";
const SNAPSHOT_VERSION: u16 = 0;
/// Bound on the encoded snapshot meta (a membership of a few nodes).
const SNAPSHOT_META_BYTES_MAX: usize = 1 << 20;

type StorageResult<T> = Result<T, StorageError<NodeId>>;
type Meta = SnapshotMeta<NodeId, BasicNode>;

/// What has been applied, besides the application's own state.
#[derive(Debug, Clone, Default)]
struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

/// Shared by the state machine and its snapshot builders.
pub struct SmShared {
    app: Arc<dyn StateMachine>,
    dir: PathBuf,
    files: FileLayer,
    applied: Mutex<Applied>,
}

fn write_error(error: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, AnyError::error(error.to_string())).into()
}

fn read_error(error: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_snapshot(None, AnyError::error(error.to_string())).into()
}

/// The file name of a snapshot at `log_id`.
fn snapshot_file_name(log_id: &LogId<NodeId>) -> String {
    format!(
        "{}-{}{SNAPSHOT_SUFFIX}",
        log_id.index, log_id.leader_id.term
    )
}

/// The snapshot files in `dir` as `(index, term, path)`, newest first.
fn snapshot_files(dir: &Path) -> std::io::Result<Vec<(u64, u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SNAPSHOT_SUFFIX)) else {
            continue;
        };
        let Some((index, term)) = stem.split_once('-') else {
            continue;
        };
        if let (Ok(index), Ok(term)) = (index.parse(), term.parse()) {
            found.push((index, term, entry.path()));
        }
    }
    found.sort_by_key(|&(index, term, _)| std::cmp::Reverse((index, term)));
    Ok(found)
}

/// The bytes of a snapshot file.
pub fn encode_snapshot(meta: &Meta, data: &[u8]) -> Result<Vec<u8>, String> {
    let meta = bincode::serialize(meta).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(4 + 2 + 4 + meta.len() + 8 + data.len() + 4);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    out.extend_from_slice(data);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// The meta and data of a snapshot file; any damage is an error.
pub fn decode_snapshot(bytes: &[u8]) -> Result<(Meta, Vec<u8>), String> {
    let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
        return Err("too short".to_string());
    };
    let computed = crc32c::crc32c(body);
    if computed != u32::from_be_bytes(*crc) {
        return Err(format!("bad CRC: computed {computed:#x}"));
    }
    let mut rest = body;
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err("truncated".to_string());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    if take(4)? != SNAPSHOT_MAGIC {
        return Err("bad magic".to_string());
    }
    let version = u16::from_be_bytes(take(2)?.try_into().expect("2 bytes"));
    if version != SNAPSHOT_VERSION {
        return Err(format!("unknown version {version}"));
    }
    let meta_len = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
    if meta_len > SNAPSHOT_META_BYTES_MAX {
        return Err(format!("meta of {meta_len} bytes"));
    }
    let meta: Meta = bincode::deserialize(take(meta_len)?).map_err(|e| e.to_string())?;
    let data_len = u64::from_be_bytes(take(8)?.try_into().expect("8 bytes"));
    let data = take(usize::try_from(data_len).map_err(|_| "data length".to_string())?)?.to_vec();
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes", rest.len()));
    }
    Ok((meta, data))
}

impl SmShared {
    /// Restores the newest readable snapshot in `dir` into `app`, if any.
    /// Snapshot files are written through `files`.
    pub fn open(
        dir: &Path,
        app: Arc<dyn StateMachine>,
        files: FileLayer,
    ) -> Result<Arc<SmShared>, String> {
        let shared = SmShared {
            app,
            dir: dir.to_path_buf(),
            files,
            applied: Mutex::new(Applied::default()),
        };
        if let Some((meta, data)) = shared.newest_snapshot().map_err(|e| e.to_string())? {
            let last = meta.last_log_id.expect("stored snapshots have a log id");
            tracing::info!(snapshot = %meta, "restoring the newest metadata snapshot");
            shared.app.restore(last.index, &data);
            *shared.applied() = Applied {
                last_applied: Some(last),
                membership: meta.last_membership,
            };
        }
        Ok(Arc::new(shared))
    }

    /// The index of the last entry applied (of any kind).
    pub fn last_applied_index(&self) -> Option<u64> {
        self.applied().last_applied.map(|log_id| log_id.index)
    }

    fn applied(&self) -> MutexGuard<'_, Applied> {
        self.applied.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The newest snapshot file that reads back whole; damaged ones are
    /// skipped with a warning.
    fn newest_snapshot(&self) -> std::io::Result<Option<(Meta, Vec<u8>)>> {
        for (_, _, path) in snapshot_files(&self.dir)? {
            let bytes = std::fs::read(&path)?;
            match decode_snapshot(&bytes) {
                Ok((meta, data)) if meta.last_log_id.is_some() => return Ok(Some((meta, data))),
                Ok(_) => tracing::warn!(path = %path.display(), "snapshot without a log id"),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "skipping a damaged snapshot")
                }
            }
        }
        Ok(None)
    }

    /// Writes a snapshot file atomically and deletes all but the newest kept.
    fn store(&self, meta: &Meta, data: &[u8]) -> std::io::Result<()> {
        let last = meta.last_log_id.expect("a stored snapshot has a log id");
        let bytes = encode_snapshot(meta, data).map_err(std::io::Error::other)?;
        self.files
            .write_atomically(&self.dir.join(snapshot_file_name(&last)), &bytes)?;
        for (_, _, path) in snapshot_files(&self.dir)?.into_iter().skip(SNAPSHOTS_KEPT) {
            self.files.remove_file(&path)?;
        }
        Ok(())
    }
}

/// openraft's state machine over the application's.
pub struct QuorumStateMachine {
    shared: Arc<SmShared>,
}

impl QuorumStateMachine {
    pub fn new(shared: Arc<SmShared>) -> QuorumStateMachine {
        QuorumStateMachine { shared }
    }
}

/// Builds a snapshot of the application's state as of the last applied entry.
pub struct SnapshotBuilder {
    shared: Arc<SmShared>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let (meta, data) = {
                let applied = shared.applied();
                let (app_index, data) = shared.app.snapshot();
                let last_index = applied.last_applied.map(|id| id.index);
                assert!(
                    last_index.is_some_and(|last| app_index <= last) || app_index == 0,
                    "the state machine's snapshot at {app_index} is past the last applied entry {last_index:?}"
                );
                let meta = Meta {
                    last_log_id: applied.last_applied,
                    last_membership: applied.membership.clone(),
                    snapshot_id: applied
                        .last_applied
                        .map_or_else(|| "empty".to_string(), |id| snapshot_file_name(&id)),
                };
                (meta, data)
            };
            if meta.last_log_id.is_some() {
                shared.store(&meta, &data).map_err(write_error)?;
                tracing::info!(snapshot = %meta, bytes = data.len(), "built a metadata snapshot");
            }
            Ok(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            })
        })
        .await
        .map_err(write_error)?
    }
}

impl RaftStateMachine<TypeConfig> for QuorumStateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let applied = self.shared.applied();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<()>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut replies = Vec::new();
        let mut applied = self.shared.applied();
        for entry in entries {
            assert!(
                applied.last_applied < Some(entry.log_id),
                "entries are applied once, in order"
            );
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(Payload(payload)) => {
                    self.shared.app.apply(entry.log_id.index, &payload)
                }
                EntryPayload::Membership(membership) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), membership)
                }
            }
            applied.last_applied = Some(entry.log_id);
            replies.push(());
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let Some(last) = meta.last_log_id else {
            return Err(write_error("a snapshot without a log id"));
        };
        let data = snapshot.into_inner();
        let shared = self.shared.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || {
            // Durable first: a restart must find the state it replaces.
            shared.store(&meta, &data).map_err(write_error)?;
            let mut applied = shared.applied();
            shared.app.restore(last.index, &data);
            tracing::info!(snapshot = %meta, bytes = data.len(), "installed a metadata snapshot");
            *applied = Applied {
                last_applied: Some(last),
                membership: meta.last_membership,
            };
            Ok(())
        })
        .await
        .map_err(write_error)?
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let shared = self.shared.clone();
        let newest = tokio::task::spawn_blocking(move || shared.newest_snapshot())
            .await
            .map_err(read_error)?
            .map_err(read_error)?;
        Ok(newest.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, failure_persistence: None, ..Default::default() })]

        #[test]
        fn arbitrary_bytes_never_panic_the_snapshot_decoder(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            // A snapshot file may be damaged in any way; reading it is an error or a snapshot,
            // also when a matching CRC lets the damage reach the parsing behind it.
            let _ = decode_snapshot(&bytes);
            let mut with_crc = bytes.clone();
            with_crc.extend_from_slice(&crc32c::crc32c(&bytes).to_be_bytes());
            let _ = decode_snapshot(&with_crc);
            let mut framed = SNAPSHOT_MAGIC.to_vec();
            framed.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
            framed.extend_from_slice(&bytes);
            let crc = crc32c::crc32c(&framed);
            framed.extend_from_slice(&crc.to_be_bytes());
            let _ = decode_snapshot(&framed);
        }
    }

    #[test]
    fn snapshot_files_round_trip_and_reject_damage() {
        // A snapshot file decodes to its meta and data; any flipped bit or cut is refused.
        let meta = Meta {
            last_log_id: Some(crate::quorum::log_store::log_id(3, 17)),
            last_membership: StoredMembership::default(),
            snapshot_id: "17-3".to_string(),
        };
        let bytes = encode_snapshot(&meta, b"state").unwrap();
        let (decoded, data) = decode_snapshot(&bytes).unwrap();
        assert_eq!((decoded, data.as_slice()), (meta, &b"state"[..]));
        for cut in 0..bytes.len() {
            assert!(decode_snapshot(&bytes[..cut]).is_err());
        }
        for position in [0, 7, bytes.len() / 2, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x10;
            assert!(decode_snapshot(&damaged).is_err());
        }
    }
}
