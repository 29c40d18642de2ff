//! Tests of the storage engine through its public API: log behaviour, the two
//! mmap hazards, crash recovery, a model-based property test, and the manager.

mod crash;
mod hazards;
mod log_basics;
mod manager;
mod model;

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
