//! Checkpoint files in Kafka's text format, written atomically.
//!
//! Offsets per partition (`recovery-point-offset-checkpoint`,
//! `log-start-offset-checkpoint`):
//!
//! ```text
//! 0
//! <count>
//! <topic> <partition> <offset>
//! ```
//!
//! The leader-epoch checkpoint has the same shape with `<epoch> <start_offset>`
//! lines. Each file is written to a temp file, fsynced, renamed over the old
//! one, and the directory fsynced (see [`FileLayer::write_atomically`]).

use std::collections::BTreeMap;
use std::path::Path;

use crate::storage::error::StorageError;
use crate::storage::file::FileLayer;
use crate::storage::manager::TopicPartition;

/// The only checkpoint format version.
pub const CHECKPOINT_VERSION: u32 = 0;
/// A checkpoint larger than this is refused rather than read into memory.
pub const CHECKPOINT_BYTES_MAX: u64 = 256 << 20;

fn corrupt(path: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::CorruptFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads the entry lines of a checkpoint; `None` if the file does not exist.
fn read_lines(path: &Path) -> Result<Option<Vec<String>>, StorageError> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::io(format!("stat {}", path.display()), error)),
    };
    if metadata.len() > CHECKPOINT_BYTES_MAX {
        return Err(corrupt(
            path,
            format!("{} bytes is too large", metadata.len()),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|error| StorageError::io(format!("read {}", path.display()), error))?;
    let mut lines = text.lines();
    let version = lines
        .next()
        .ok_or_else(|| corrupt(path, "missing version"))?;
    if version.trim() != CHECKPOINT_VERSION.to_string() {
        return Err(corrupt(path, format!("unknown version {version:?}")));
    }
    let count: usize = lines
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| corrupt(path, "missing or bad entry count"))?;
    let entries: Vec<String> = lines
        .filter(|line| !line.trim().is_empty())
        .map(str::to_string)
        .collect();
    if entries.len() != count {
        return Err(corrupt(
            path,
            format!("header says {count} entries, found {}", entries.len()),
        ));
    }
    Ok(Some(entries))
}

fn render(lines: impl ExactSizeIterator<Item = String>) -> String {
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", lines.len());
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// Reads a per-partition offset checkpoint; a missing file is empty.
pub fn read_offsets(path: &Path) -> Result<BTreeMap<TopicPartition, i64>, StorageError> {
    let mut offsets = BTreeMap::new();
    for line in read_lines(path)?.unwrap_or_default() {
        // Topic names cannot contain spaces, so the last two fields are numbers.
        let mut fields = line.rsplitn(3, ' ');
        let (Some(offset), Some(partition), Some(topic)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(corrupt(path, format!("bad line {line:?}")));
        };
        let offset: i64 = offset
            .parse()
            .map_err(|_| corrupt(path, format!("bad offset in {line:?}")))?;
        let partition: i32 = partition
            .parse()
            .map_err(|_| corrupt(path, format!("bad partition in {line:?}")))?;
        offsets.insert(
            TopicPartition {
                topic: topic.to_string(),
                partition,
            },
            offset,
        );
    }
    Ok(offsets)
}

/// Writes a per-partition offset checkpoint atomically.
pub fn write_offsets(
    files: &FileLayer,
    path: &Path,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<(), StorageError> {
    let text = render(
        offsets
            .iter()
            .map(|(tp, offset)| format!("{} {} {offset}", tp.topic, tp.partition)),
    );
    files
        .write_atomically(path, text.as_bytes())
        .map_err(|error| StorageError::io(format!("write {}", path.display()), error))
}

/// Reads a leader-epoch checkpoint: `(epoch, start_offset)` pairs in file order.
pub fn read_epochs(path: &Path) -> Result<Vec<(i32, i64)>, StorageError> {
    let mut epochs = Vec::new();
    for line in read_lines(path)?.unwrap_or_default() {
        let mut fields = line.split_whitespace();
        let parsed = (
            fields.next().and_then(|f| f.parse::<i32>().ok()),
            fields.next().and_then(|f| f.parse::<i64>().ok()),
            fields.next(),
        );
        let (Some(epoch), Some(start_offset), None) = parsed else {
            return Err(corrupt(path, format!("bad line {line:?}")));
        };
        epochs.push((epoch, start_offset));
    }
    Ok(epochs)
}

/// Writes a leader-epoch checkpoint atomically.
pub fn write_epochs(
    files: &FileLayer,
    path: &Path,
    epochs: &[(i32, i64)],
) -> Result<(), StorageError> {
    let text = render(
        epochs
            .iter()
            .map(|(epoch, start_offset)| format!("{epoch} {start_offset}")),
    );
    files
        .write_atomically(path, text.as_bytes())
        .map_err(|error| StorageError::io(format!("write {}", path.display()), error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_checkpoint_round_trips_in_kafka_format() {
        // Proves the offsets checkpoint is Kafka's text format and reads back what was written.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("recovery-point-offset-checkpoint");
        let mut offsets = BTreeMap::new();
        offsets.insert(
            TopicPartition {
                topic: "orders".into(),
                partition: 3,
            },
            42,
        );
        offsets.insert(
            TopicPartition {
                topic: "a-b".into(),
                partition: 0,
            },
            7,
        );
        write_offsets(&FileLayer::real(), &path, &offsets).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "0\n2\na-b 0 7\norders 3 42\n");
        assert_eq!(read_offsets(&path).expect("read"), offsets);
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn missing_checkpoint_reads_as_empty_and_garbage_is_an_error() {
        // Proves a missing file is empty and a malformed one is reported, not trusted.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x");
        assert!(read_offsets(&path).expect("missing").is_empty());
        std::fs::write(&path, "0\n2\nt 0 1\n").expect("write");
        assert!(matches!(
            read_offsets(&path),
            Err(StorageError::CorruptFile { .. })
        ));
        std::fs::write(&path, "0\n1\n3 x\n").expect("write");
        assert!(read_epochs(&path).is_err());
    }
}
