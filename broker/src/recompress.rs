//! A topic's `compression.type`, and the leader's recompression of produced
//! batches into it, as Kafka's `LogValidator` does when the topic names a
//! codec other than the batch's.
//!
//! `producer` (the default) keeps whatever codec the producer chose: the
//! record set is appended as received, untouched. Any other value is a codec
//! every stored batch must use, so a batch in another codec is decompressed
//! and compressed again ([`protocol::compression::recompress_batch`]: only
//! the records section, the codec bits, the length and the CRC change; the
//! offset delta, timestamps, producer id, epoch, sequence and every record's
//! bytes are kept). Control batches are written by the broker, not
//! producers, and are left as they are.

use bytes::{Bytes, BytesMut};
use protocol::batch::{BatchHeader, BATCH_HEADER_BYTES};
use protocol::compression::{self, Compression, CompressionError, DECOMPRESSED_BYTES_MAX};
use protocol::ErrorCode;
use thiserror::Error;

use crate::errors::KafkaErrorCode;

/// Kafka's config name, at topic and broker level.
pub const COMPRESSION_TYPE: &str = "compression.type";

/// A value of `compression.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionType {
    /// Keep the producer's codec.
    #[default]
    Producer,
    /// Store every batch in this codec (`uncompressed` is `Compression::None`).
    Codec(Compression),
}

impl CompressionType {
    /// Every value Kafka accepts, as it spells them.
    pub const NAMES: [&'static str; 6] =
        ["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

    pub fn parse(value: &str) -> Option<CompressionType> {
        match value {
            "producer" => Some(CompressionType::Producer),
            "uncompressed" => Some(CompressionType::Codec(Compression::None)),
            // `none` is a producer's name for no codec, not a topic's.
            "none" => None,
            other => other.parse().ok().map(CompressionType::Codec),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CompressionType::Producer => "producer",
            CompressionType::Codec(Compression::None) => "uncompressed",
            CompressionType::Codec(codec) => codec.name(),
        }
    }
}

impl std::fmt::Display for CompressionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a record set could not be stored in the topic's codec.
#[derive(Debug, Error)]
pub enum RecompressError {
    #[error("batch {batch}: {source}")]
    Batch {
        batch: usize,
        source: compression::RecompressError,
    },
    #[error("batch {batch} is {bytes} bytes once recompressed, over max.message.bytes {limit}")]
    TooLarge {
        batch: usize,
        bytes: usize,
        limit: usize,
    },
}

impl KafkaErrorCode for RecompressError {
    fn error_code(&self) -> ErrorCode {
        use compression::RecompressError as Cause;
        match self {
            RecompressError::TooLarge { .. }
            | RecompressError::Batch {
                source: Cause::Decompress(CompressionError::TooLarge { .. }),
                ..
            } => ErrorCode::MESSAGE_TOO_LARGE,
            RecompressError::Batch {
                source: Cause::Compress(_),
                ..
            } => ErrorCode::UNKNOWN_SERVER_ERROR,
            RecompressError::Batch { .. } => ErrorCode::CORRUPT_MESSAGE,
        }
    }
}

/// The record set as the topic stores it: `None` when every batch already
/// uses `target` (the set is appended as received, without a copy), else a
/// new set in which each batch in another codec is recompressed. The set
/// must have been validated (whole batches, CRCs). Each recompressed batch
/// must fit `message_bytes_max`, as Kafka checks again after recompressing.
pub fn recompress_record_set(
    record_set: &Bytes,
    target: Compression,
    message_bytes_max: usize,
) -> Result<Option<Bytes>, RecompressError> {
    let needs = |batch: &Bytes| {
        BatchHeader::new(batch)
            .is_ok_and(|h| !h.is_control() && h.compression() != target.to_protocol())
    };
    if !protocol::batch::batches(record_set).any(|b| needs(&b)) {
        return Ok(None);
    }
    // Uncompressed, the records must fit the batch limit whole; for a codec
    // the general bound applies, and its output is checked against the limit.
    let decompressed_bytes_max = if target == Compression::None {
        message_bytes_max.saturating_sub(BATCH_HEADER_BYTES)
    } else {
        DECOMPRESSED_BYTES_MAX
    };
    let mut out = BytesMut::with_capacity(record_set.len());
    for (index, batch) in protocol::batch::batches(record_set).enumerate() {
        if !needs(&batch) {
            out.extend_from_slice(&batch);
            continue;
        }
        let recompressed = compression::recompress_batch(&batch, target, decompressed_bytes_max)
            .map_err(|source| RecompressError::Batch {
                batch: index,
                source,
            })?;
        if recompressed.len() > message_bytes_max {
            return Err(RecompressError::TooLarge {
                batch: index,
                bytes: recompressed.len(),
                limit: message_bytes_max,
            });
        }
        out.extend_from_slice(&recompressed);
    }
    Ok(Some(out.freeze()))
}

#[cfg(test)]
mod tests {
    use protocol::batch::{validate_record_set, BatchBuilder, Record};

    use super::*;

    fn batch_of(n: usize) -> Bytes {
        let mut builder = BatchBuilder::new().idempotent(77, 3, 40);
        for i in 0..n {
            builder.push(&Record {
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(format!("value-{i} ").repeat(20))),
                headers: vec![],
                timestamp: 1_000 + i as i64,
            });
        }
        builder.build()
    }

    #[test]
    fn compression_type_names_are_kafkas() {
        // The six values Kafka's topic config takes parse and print back; `none` and others are refused.
        for name in CompressionType::NAMES {
            assert_eq!(CompressionType::parse(name).unwrap().name(), name);
        }
        for bad in ["none", "brotli", "", "ZSTD"] {
            assert_eq!(CompressionType::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_set_already_in_the_target_codec_is_kept_as_received() {
        // No batch needs work: nothing is copied.
        assert!(
            recompress_record_set(&batch_of(5), Compression::None, 1 << 20)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn only_batches_in_another_codec_are_rewritten() {
        // A zstd batch then an uncompressed one, target zstd: the first is copied, the second recompressed.
        let zstd = recompress_record_set(&batch_of(3), Compression::Zstd, 1 << 20)
            .unwrap()
            .unwrap();
        let set = Bytes::from([zstd.to_vec(), batch_of(4).to_vec()].concat());
        let out = recompress_record_set(&set, Compression::Zstd, 1 << 20)
            .unwrap()
            .unwrap();
        validate_record_set(&out).unwrap();
        let batches: Vec<_> = protocol::batch::batches(&out).collect();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0], zstd);
        assert_eq!(
            BatchHeader::new(&batches[1]).unwrap().compression(),
            protocol::batch::Compression::Zstd
        );
    }

    #[test]
    fn a_batch_too_large_once_recompressed_is_message_too_large() {
        // Decompressing into an uncompressed topic may grow a batch past max.message.bytes; so may a codec.
        let packed = recompress_record_set(&batch_of(200), Compression::Gzip, 1 << 20)
            .unwrap()
            .unwrap();
        let err = recompress_record_set(&packed, Compression::None, packed.len() + 10).unwrap_err();
        assert_eq!(err.error_code(), ErrorCode::MESSAGE_TOO_LARGE, "{err}");
        let err = recompress_record_set(&batch_of(200), Compression::Lz4, 200).unwrap_err();
        assert!(matches!(err, RecompressError::TooLarge { .. }), "{err}");
        assert_eq!(err.error_code(), ErrorCode::MESSAGE_TOO_LARGE);
    }

    #[test]
    fn a_batch_that_does_not_decompress_is_corrupt() {
        // Garbage under the gzip bits is CORRUPT_MESSAGE, naming the batch.
        let mut garbage = batch_of(3).to_vec();
        garbage[protocol::batch::OFFSET_ATTRIBUTES + 1] = 1;
        let err =
            recompress_record_set(&Bytes::from(garbage), Compression::Zstd, 1 << 20).unwrap_err();
        assert_eq!(err.error_code(), ErrorCode::CORRUPT_MESSAGE, "{err}");
        assert!(err.to_string().starts_with("batch 0:"), "{err}");
    }
}
