//! Tests of the storage engine through its public API: log behaviour, the two
//! mmap hazards, crash recovery, a model-based property test, the manager, and
//! compaction (scenarios, crashes during a swap, and a property test).

mod compaction;
mod compaction_crash;
mod compaction_model;
mod crash;
mod hazards;
mod log_basics;
mod manager;
mod model;
mod spare;
mod trim;

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use protocol::batch::{assign_offset_and_epoch, BatchBuilder, BatchHeader, Record};

use crate::storage::file::FileLayer;
use crate::storage::log::OpenOptions;
use crate::storage::{FlushPolicy, LogConfig, MappingBudget, PartitionLog};

/// A batch of `records` records with `value_bytes` bytes each, timestamp `timestamp`.
pub(super) fn batch(records: usize, value_bytes: usize, timestamp: i64) -> Bytes {
    let mut builder = BatchBuilder::new();
    for i in 0..records {
        let value: Vec<u8> = (0..value_bytes).map(|j| (i * 31 + j) as u8).collect();
        builder.push(&Record {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(value)),
            headers: Vec::new(),
            timestamp,
        });
    }
    builder.build()
}

/// The bytes a batch has once stored at `base_offset` under `epoch`.
pub(super) fn stored(batch: &[u8], base_offset: i64, epoch: i32) -> Vec<u8> {
    let mut copy = batch.to_vec();
    assign_offset_and_epoch(&mut copy, base_offset, epoch);
    copy
}

/// Small segments and indexes so that rolls and index growth happen in tests.
pub(super) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 16 * 1024,
        segment_ms_max: u64::MAX / 2,
        index_interval_bytes: 512,
        segment_index_bytes_max: 4096,
        retention_bytes: None,
        retention_ms: None,
        flush_policy: FlushPolicy::IntervalMs(1000),
        preallocate_step_bytes: 4096,
        ..LogConfig::default()
    }
}

pub(super) fn open_log(dir: &std::path::Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(
        dir,
        config,
        FileLayer::real(),
        MappingBudget::new(64),
        OpenOptions::default(),
    )
    .expect("open log")
    .0
}

/// Splits a record set into its batches.
pub(super) fn split_batches(records: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let header = BatchHeader::new(rest).expect("header");
        let total = header.total_bytes();
        out.push(rest[..total].to_vec());
        rest = &rest[total..];
    }
    out
}

/// Reads every batch from the log start to the end, one read call at a time.
pub(super) fn read_all(log: &PartitionLog) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let mut calls = 0;
    while offset < log.log_end_offset() {
        calls += 1;
        assert!(calls < 100_000, "read_all does not progress");
        let info = log.read(offset, 64 * 1024, i64::MAX, true).expect("read");
        assert!(
            !info.records.is_empty(),
            "read at {offset} returned nothing"
        );
        for batch in split_batches(&info.records) {
            let header = BatchHeader::new(&batch).expect("header");
            header.validate().expect("stored batch is valid");
            offset = header.last_offset() + 1;
            out.push(batch);
        }
    }
    out
}

/// A small tmpfs mounted for one test, unmounted on drop.
pub(super) struct Tmpfs {
    _dir: tempfile::TempDir,
    pub(super) path: PathBuf,
}

impl Tmpfs {
    pub(super) fn mount(bytes: u64) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().to_path_buf();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Tmpfs { _dir: dir, path })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// A scratch directory on a tmpfs of `bytes` if one can be mounted (fsync is
/// free there, which keeps fsync-heavy tests fast on a busy disk), else a
/// plain temporary directory.
pub(super) enum ScratchDir {
    Tmpfs(Tmpfs),
    Disk(tempfile::TempDir),
}

impl ScratchDir {
    pub(super) fn new(bytes: u64) -> ScratchDir {
        match Tmpfs::mount(bytes) {
            Ok(tmpfs) => ScratchDir::Tmpfs(tmpfs),
            Err(reason) => {
                println!("using a disk directory: {reason}");
                ScratchDir::Disk(tempfile::tempdir().expect("tempdir"))
            }
        }
    }

    pub(super) fn path(&self) -> &std::path::Path {
        match self {
            ScratchDir::Tmpfs(tmpfs) => &tmpfs.path,
            ScratchDir::Disk(dir) => dir.path(),
        }
    }
}
