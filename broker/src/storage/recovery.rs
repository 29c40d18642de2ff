//! Loading a partition's segments, with recovery after an unclean stop.
//!
//! After a clean shutdown every segment is trusted: its end is found by
//! walking batch headers from its last offset-index entry, nothing is
//! CRC-checked, and the report shows zero bytes scanned. After an unclean
//! stop, every segment from the one holding the recovery point onwards is
//! scanned batch by batch (length, magic, CRC-32C, offsets continuing); the
//! segment is cut at the first invalid batch, its indexes are rebuilt, and any
//! later segment that no longer continues the offsets is deleted. A zero
//! `batch_length` (preallocated space) is the normal end of the data.
//!
//! Before anything is loaded, a cleaner swap that a crash interrupted is
//! finished or discarded (`swap.rs`), and the indexes of a segment it swapped
//! in are rebuilt. In a compacted log (`offsets_may_skip`) offsets must
//! increase but may skip: the cleaner removed the batches in between.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use crate::storage::config::LogConfig;
use crate::storage::file::FileLayer;
use crate::storage::mapping::MappingBudget;
use crate::storage::segment::{
    Segment, DELETED_SUFFIX, INDEX_FILE_SUFFIX, LOG_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX,
};
use crate::storage::swap;

/// What opening logs found and fixed. Summed over partitions by the `LogManager`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Whether the clean-shutdown marker was present (no scan needed).
    pub clean_shutdown: bool,
    /// Segments validated batch by batch.
    pub segments_scanned: u64,
    /// Bytes of valid batches validated by those scans.
    pub bytes_scanned: u64,
    /// Bytes cut off at an invalid batch (including the preallocated space after it).
    pub bytes_truncated: u64,
    /// Whole segments deleted because they no longer continued the log.
    pub segments_deleted: u64,
    /// Cleaner swaps that a crash interrupted after their commit, finished on load.
    pub swaps_completed: u64,
}

impl RecoveryReport {
    pub(crate) fn add(&mut self, other: &RecoveryReport) {
        self.segments_scanned += other.segments_scanned;
        self.bytes_scanned += other.bytes_scanned;
        self.bytes_truncated += other.bytes_truncated;
        self.segments_deleted += other.segments_deleted;
        self.swaps_completed += other.swaps_completed;
    }
}

/// Suffixes of files left behind by an interrupted write; removed on load.
const LEFTOVER_SUFFIXES: [&str; 3] = ["tmp", "truncating", DELETED_SUFFIX];

fn parse_base_offset(stem: &str) -> Option<i64> {
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse::<i64>().ok()
}

/// Where and how [`load_segments`] loads a log.
pub(crate) struct LoadOptions {
    /// Segments holding or past this offset are scanned after an unclean stop.
    pub(crate) recovery_point: i64,
    /// Nothing is scanned (except segments a finished swap brought in).
    pub(crate) clean_shutdown: bool,
    /// The base offset of the empty segment created in an empty directory.
    pub(crate) empty_base_offset: i64,
    /// The log was compacted: offsets may skip between batches and segments.
    pub(crate) offsets_may_skip: bool,
}

/// Opens every segment in `dir`; recovers those past the recovery point
/// unless after a clean shutdown. Creates an empty segment if there is none.
pub(crate) fn load_segments(
    dir: &Path,
    config: &LogConfig,
    files: &FileLayer,
    budget: &MappingBudget,
    options: &LoadOptions,
) -> io::Result<(BTreeMap<i64, Segment>, RecoveryReport)> {
    let LoadOptions {
        recovery_point,
        clean_shutdown,
        empty_base_offset,
        offsets_may_skip,
    } = *options;
    let mut report = RecoveryReport {
        clean_shutdown,
        ..RecoveryReport::default()
    };
    let swapped_in = swap::resolve_interrupted(dir, files)?;
    report.swaps_completed = swapped_in.len() as u64;
    let mut bases = Vec::new();
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let (Some(stem), Some(suffix)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        if LEFTOVER_SUFFIXES.contains(&suffix) {
            orphans.push(path.clone());
            continue;
        }
        match (parse_base_offset(stem), suffix) {
            (Some(base), LOG_FILE_SUFFIX) => bases.push(base),
            (Some(base), INDEX_FILE_SUFFIX | TIME_INDEX_FILE_SUFFIX) => {
                let log = dir.join(format!("{stem}.{LOG_FILE_SUFFIX}"));
                if !log.exists() {
                    tracing::warn!(path = %path.display(), base, "removing index without a log");
                    orphans.push(path.clone());
                }
            }
            _ => {}
        }
    }
    for orphan in orphans {
        files.remove_file(&orphan)?;
    }
    bases.sort_unstable();
    if bases.is_empty() {
        bases.push(empty_base_offset.max(0));
    }
    let last_base = *bases.last().expect("at least one segment");
    let mut segments = BTreeMap::new();
    for &base in &bases {
        let segment = Segment::open(
            dir,
            base,
            config,
            files,
            budget,
            base == last_base,
            offsets_may_skip,
        )?;
        segments.insert(base, segment);
    }
    for base in swapped_in {
        if let Some(segment) = segments.get_mut(&base) {
            // Its old indexes were removed; rebuild them (and re-validate the data).
            segment.recover()?;
        }
    }
    if !clean_shutdown {
        for segment in segments.values_mut() {
            let holds_recovery_point =
                segment.base_offset() <= recovery_point && recovery_point < segment.next_offset();
            if !(holds_recovery_point || segment.base_offset() >= recovery_point) {
                continue;
            }
            let outcome = segment.recover()?;
            report.segments_scanned += 1;
            report.bytes_scanned += outcome.bytes_scanned;
            report.bytes_truncated += outcome.bytes_truncated;
            if let Some(reason) = outcome.invalid {
                tracing::warn!(
                    segment = %segment.log_path().display(),
                    %reason,
                    kept_bytes = segment.size_bytes(),
                    dropped_bytes = outcome.bytes_truncated,
                    next_offset = segment.next_offset(),
                    "recovery truncated the segment at an invalid batch"
                );
            }
        }
    }
    // Offsets must continue from segment to segment; cut the log at the first break.
    let mut expected = None;
    let mut broken_at = None;
    for segment in segments.values() {
        if let Some(expected) = expected {
            let continues = if offsets_may_skip {
                segment.base_offset() >= expected
            } else {
                segment.base_offset() == expected
            };
            if !continues {
                broken_at = Some(segment.base_offset());
                break;
            }
        }
        expected = Some(segment.next_offset());
    }
    if let Some(first_dropped) = broken_at {
        let dropped: Vec<i64> = segments.range(first_dropped..).map(|(&b, _)| b).collect();
        for base in dropped {
            let segment = segments.remove(&base).expect("listed segment");
            tracing::warn!(
                segment = %segment.log_path().display(),
                bytes = segment.size_bytes(),
                "deleting a segment that does not continue the log's offsets"
            );
            report.segments_deleted += 1;
            segment.delete()?;
        }
    }
    Ok((segments, report))
}
