//! The atomic swap of cleaned segments, and how recovery finishes or discards
//! a swap that a crash interrupted.
//!
//! The cleaner writes the compacted copy of a group of consecutive sealed
//! segments, whose first base offset is `B`, to `B.log.cleaned`,
//! `B.index.cleaned` and `B.timeindex.cleaned`, and fsyncs them. Then, under
//! the log's lock:
//!
//! 1. `commit`: each `.cleaned` file is renamed to `.swap`, the index files
//!    first and the log last, and the directory is fsynced. The rename of
//!    `B.log.cleaned` to `B.log.swap` is the commit point.
//! 2. The replaced segments other than `B` are removed. Readers' mappings keep
//!    the unlinked inodes, and so their `Bytes`, alive.
//! 3. `finish`: each `.swap` file is renamed over `B`'s file, the log last,
//!    and the directory is fsynced.
//!
//! A crash anywhere leaves either the old segments or the new one, because
//! `resolve_interrupted` runs before a log's segments are loaded:
//!
//! - Every `*.cleaned` file is removed: the swap never committed, and the old
//!   segments are all still there.
//! - Every `*.index.swap` and `*.timeindex.swap` file is removed; indexes are
//!   rebuilt below.
//! - A `B.log.swap` file means the swap committed. Every segment whose base
//!   offset lies in `[B, end of the swap's data)` is removed (`B` itself by
//!   the rename), `B.log.swap` is renamed to `B.log`, and `B`'s indexes are
//!   rebuilt from the log. A replaced segment past the end of the swap's data
//!   (its batches were all cleaned away) may survive the crash: it holds only
//!   records newer than the swap's, which is a less compacted log, never a
//!   wrong one.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use protocol::batch::{BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES};

use crate::storage::file::FileLayer;
use crate::storage::segment::{segment_file_name, SegmentPaths, LOG_FILE_SUFFIX};

/// Suffix of a cleaned copy still being written or not yet committed.
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";
/// Suffix of a committed cleaned copy not yet renamed into place.
pub(crate) const SWAP_SUFFIX: &str = "swap";

/// Renames the cleaned copy at `base_offset` to its swap names, the log last
/// (the commit point), and fsyncs the directory.
pub(crate) fn commit(dir: &Path, files: &FileLayer, base_offset: i64) -> io::Result<()> {
    let cleaned = SegmentPaths::new(dir, base_offset, Some(CLEANED_SUFFIX));
    let swap = SegmentPaths::new(dir, base_offset, Some(SWAP_SUFFIX));
    for (from, to) in cleaned.all().into_iter().zip(swap.all()) {
        files.rename(from, to)?;
    }
    files.sync_dir(dir)
}

/// Renames the committed swap at `base_offset` over the segment's files, the
/// log last, and fsyncs the directory.
pub(crate) fn finish(dir: &Path, files: &FileLayer, base_offset: i64) -> io::Result<()> {
    let swap = SegmentPaths::new(dir, base_offset, Some(SWAP_SUFFIX));
    let target = SegmentPaths::new(dir, base_offset, None);
    for (from, to) in swap.all().into_iter().zip(target.all()) {
        files.rename(from, to)?;
    }
    files.sync_dir(dir)
}

/// Removes the cleaned copy at `base_offset`, if any (an abandoned pass).
pub(crate) fn discard(dir: &Path, files: &FileLayer, base_offset: i64) -> io::Result<()> {
    for path in SegmentPaths::new(dir, base_offset, Some(CLEANED_SUFFIX)).all() {
        files.remove_file(path)?;
    }
    Ok(())
}

/// `(base offset, suffix)` of a segment file name such as `00000000000000000042.log`.
fn parse_segment_file(name: &str) -> Option<(i64, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, suffix))
}

/// The offset after the last batch of a segment file, walking batch headers
/// only (the file was fsynced before its swap committed). An unreadable batch
/// ends the walk.
fn data_end_offset(path: &Path, base_offset: i64) -> io::Result<i64> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut position = 0u64;
    let mut end_offset = base_offset;
    let mut header = [0u8; BATCH_HEADER_BYTES];
    // Bounded by the file: each step advances by at least one batch header.
    while position + BATCH_HEADER_BYTES as u64 <= len {
        file.read_exact_at(&mut header, position)?;
        let Ok(batch) = BatchHeader::new(&header) else {
            break;
        };
        let minimum = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
        if batch.batch_length() < minimum || batch.base_offset() < end_offset {
            break;
        }
        let Some(next_offset) = batch
            .base_offset()
            .checked_add(i64::from(batch.last_offset_delta()) + 1)
        else {
            break;
        };
        end_offset = next_offset;
        position += batch.total_bytes() as u64;
    }
    Ok(end_offset)
}

/// Finishes or discards the swaps a crash interrupted in `dir`, as described
/// in the module docs. Returns the base offsets of the segments it swapped
/// in, whose indexes the caller must rebuild.
pub(crate) fn resolve_interrupted(dir: &Path, files: &FileLayer) -> io::Result<Vec<i64>> {
    let mut committed = Vec::new();
    let mut log_bases = Vec::new();
    let mut leftovers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(&format!(".{CLEANED_SUFFIX}")) {
            leftovers.push(path);
        } else if let Some(stem) = name.strip_suffix(&format!(".{SWAP_SUFFIX}")) {
            match parse_segment_file(stem) {
                Some((base, LOG_FILE_SUFFIX)) => committed.push(base),
                _ => leftovers.push(path),
            }
        } else if let Some((base, LOG_FILE_SUFFIX)) = parse_segment_file(name) {
            log_bases.push(base);
        }
    }
    let changed = !leftovers.is_empty() || !committed.is_empty();
    for path in leftovers {
        tracing::warn!(path = %path.display(), "removing a cleaned segment whose swap never committed");
        files.remove_file(&path)?;
    }
    committed.sort_unstable();
    for &base in &committed {
        let swap = SegmentPaths::new(dir, base, Some(SWAP_SUFFIX));
        let end_offset = data_end_offset(&swap.log, base)?;
        for &replaced in log_bases.iter().filter(|&&b| b > base && b < end_offset) {
            for path in SegmentPaths::new(dir, replaced, None).all() {
                files.remove_file(path)?;
            }
        }
        let target = SegmentPaths::new(dir, base, None);
        files.remove_file(&target.index)?;
        files.remove_file(&target.time_index)?;
        files.rename(&swap.log, &target.log)?;
        tracing::warn!(
            segment = %segment_file_name(base, LOG_FILE_SUFFIX),
            end_offset,
            "finished a cleaned segment swap that a crash interrupted"
        );
    }
    if changed {
        files.sync_dir(dir)?;
    }
    Ok(committed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_file_names_parse_with_their_suffixes() {
        // Proves the recovery scan tells segment logs, indexes and temporary copies apart by name.
        assert_eq!(
            parse_segment_file("00000000000000000042.log"),
            Some((42, "log"))
        );
        assert_eq!(
            parse_segment_file("00000000000000000042.log"),
            Some((42, LOG_FILE_SUFFIX))
        );
        assert_eq!(
            parse_segment_file("00000000000000000007.timeindex"),
            Some((7, "timeindex"))
        );
        assert_eq!(parse_segment_file("leader-epoch-checkpoint"), None);
        assert_eq!(parse_segment_file("42.log"), None);
    }
}
