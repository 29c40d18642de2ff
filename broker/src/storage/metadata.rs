//! `partition.metadata`: the topic id of a partition directory, in Kafka's format:
//!
//! ```text
//! version: 0
//! topic_id: <22 characters of URL-safe base64, no padding>
//! ```

use std::path::Path;

use crate::storage::error::StorageError;
use crate::storage::file::FileLayer;

pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// Larger metadata files are refused rather than read.
const PARTITION_METADATA_BYTES_MAX: u64 = 4096;

const BASE64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Encodes 16 bytes as Kafka prints a `Uuid`: URL-safe base64 without padding.
pub fn encode_topic_id(id: [u8; 16]) -> String {
    let mut out = String::with_capacity(22);
    for chunk in id.chunks(3) {
        let mut buffer = [0u8; 3];
        buffer[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from(buffer[0]) << 16 | u32::from(buffer[1]) << 8 | u32::from(buffer[2]);
        let characters = chunk.len() + 1;
        for i in 0..characters {
            let index = (bits >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(BASE64_URL[index as usize]));
        }
    }
    out
}

/// Decodes what [`encode_topic_id`] writes; `None` for anything else.
pub fn decode_topic_id(text: &str) -> Option<[u8; 16]> {
    let text = text.trim().trim_end_matches('=');
    if text.len() != 22 {
        return None;
    }
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    let mut out = Vec::with_capacity(16);
    for byte in text.bytes() {
        let value = BASE64_URL.iter().position(|&c| c == byte)? as u32;
        bits = bits << 6 | value;
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            out.push((bits >> bit_count) as u8);
            bits &= (1 << bit_count) - 1;
        }
    }
    out.try_into().ok()
}

/// Writes `partition.metadata` into a partition directory, atomically.
pub fn write_partition_metadata(
    files: &FileLayer,
    dir: &Path,
    topic_id: [u8; 16],
) -> Result<(), StorageError> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let text = format!("version: 0\ntopic_id: {}\n", encode_topic_id(topic_id));
    files
        .write_atomically(&path, text.as_bytes())
        .map_err(|error| StorageError::io(format!("write {}", path.display()), error))
}

/// Reads the topic id from a partition directory; `None` if there is no file.
pub fn read_partition_metadata(dir: &Path) -> Result<Option<[u8; 16]>, StorageError> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let corrupt = |reason: &str| StorageError::CorruptFile {
        path: path.display().to_string(),
        reason: reason.to_string(),
    };
    match std::fs::metadata(&path) {
        Ok(metadata) if metadata.len() > PARTITION_METADATA_BYTES_MAX => {
            return Err(corrupt("too large"))
        }
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::io(format!("stat {}", path.display()), error)),
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|error| StorageError::io(format!("read {}", path.display()), error))?;
    let mut version = None;
    let mut topic_id = None;
    for line in text.lines() {
        if let Some((key, value)) = line.split_once(':') {
            match key.trim() {
                "version" => version = Some(value.trim().to_string()),
                "topic_id" => topic_id = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    if version.as_deref() != Some("0") {
        return Err(corrupt("missing or unknown version"));
    }
    let id = topic_id.ok_or_else(|| corrupt("missing topic_id"))?;
    decode_topic_id(&id)
        .map(Some)
        .ok_or_else(|| corrupt("topic_id is not 22 characters of URL-safe base64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_id_round_trips_through_partition_metadata() {
        // Proves partition.metadata holds the topic id in Kafka's format and reads it back.
        let dir = tempfile::tempdir().expect("tempdir");
        let id = *uuid::Uuid::new_v4().as_bytes();
        write_partition_metadata(&FileLayer::real(), dir.path(), id).expect("write");
        let text = std::fs::read_to_string(dir.path().join(PARTITION_METADATA_FILE)).unwrap();
        assert!(text.starts_with("version: 0\ntopic_id: "));
        assert_eq!(read_partition_metadata(dir.path()).expect("read"), Some(id));
    }

    #[test]
    fn topic_id_encoding_matches_kafka() {
        // Proves the encoding equals Java's Base64 URL encoder without padding, as Kafka's Uuid.toString.
        let id = [
            0x7d, 0x2c, 0x11, 0x8e, 0xa3, 0x4f, 0x4a, 0x60, 0x9b, 0x08, 0xff, 0xfe, 0x01, 0x02,
            0x03, 0x04,
        ];
        assert_eq!(encode_topic_id(id), "fSwRjqNPSmCbCP_-AQIDBA");
        assert_eq!(decode_topic_id("fSwRjqNPSmCbCP_-AQIDBA"), Some(id));
        assert_eq!(decode_topic_id("short"), None);
        assert_eq!(decode_topic_id("fSwRjqNPSmCbCP_-AQID!A"), None);
    }
}
