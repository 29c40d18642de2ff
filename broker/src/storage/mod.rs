//! The storage engine: each partition is a log of segments on disk.
//!
//! Read from logical to physical:
//! - [`manager`]: all partition logs under one data directory, checkpoints, the
//!   clean-shutdown marker, and the shared [`MappingBudget`].
//! - [`log`]: one partition's log ([`PartitionLog`]): append, read, roll,
//!   truncate, flush, leader-epoch cache; [`retention`] and [`recovery`] beside it.
//! - [`cleaner`]: compaction of `cleanup.policy=compact` logs, with
//!   [`offset_map`] (the bounded key map), [`batch_filter`] (reading keys and
//!   rewriting batches) and [`swap`] (swapping cleaned segments in atomically,
//!   and finishing an interrupted swap on recovery).
//! - [`segment`]: one `.log` file with its `.index` and `.timeindex`.
//! - [`index`]: the sparse offset index and the time index.
//! - [`mapping`]: memory maps, their budget, and the `Bytes` owners handed to readers.
//!   The only module with `unsafe`, besides one `sync_file_range` call in [`file`].
//! - [`file`]: the file layer every allocation, write, fsync and resize goes
//!   through, with the bounded write descriptors of active segments, the
//!   writeback thread, and fault injection for tests.
//! - [`checkpoint`], [`epoch`], [`metadata`]: small files beside the logs.
//!
//! `docs/storage.md` describes the layout on disk and what each flush policy promises.

pub mod batch_filter;
pub mod checkpoint;
pub mod cleaner;
pub mod config;
pub mod epoch;
pub mod error;
pub mod file;
pub mod index;
pub mod log;
pub mod manager;
pub mod mapping;
pub mod metadata;
pub mod offset_map;
pub mod recovery;
pub mod retention;
pub mod segment;
pub(crate) mod spare;
pub mod swap;

#[cfg(test)]
mod tests;

pub use cleaner::{CleanOutcome, CleanStats, CleanerConfig, CleanerError};
pub use config::{CleanupPolicy, FlushPolicy, LogConfig};
pub use error::StorageError;
pub use file::{FaultInjector, FileLayer};
pub use log::{AppendInfo, PartitionLog, ReadInfo};
pub use manager::{CleanPassReport, LogManager, TopicPartition};
pub use mapping::MappingBudget;
pub use recovery::RecoveryReport;
pub use segment::DoomedSegment;
