//! Compression of a record batch's records section, in the formats Kafka
//! clients write: the client compresses and decompresses with it, and the
//! broker when a topic's `compression.type` names a codec other than the
//! producer's. The batch header stays uncompressed; its attribute bits
//! name the codec.
//!
//! - `gzip`: a gzip stream (RFC 1952), as `java.util.zip.GZIPOutputStream`
//!   writes it. Reading accepts several concatenated members, as Java's
//!   `GZIPInputStream` does.
//! - `snappy`: two forms meet on the wire. The Java client wraps snappy in
//!   the framing of xerial's `SnappyOutputStream`: the 8-byte magic
//!   `\x82SNAPPY\0`, a version and a compatible version (4 bytes each,
//!   big-endian), then blocks of at most 32 KiB of input, each a 4-byte
//!   big-endian length and a raw snappy block. librdkafka writes one raw
//!   snappy block without framing. Both clients read both forms (xerial's
//!   `SnappyInputStream` falls back to a raw block when the magic is absent,
//!   and librdkafka checks for the magic), so we write the Java framing, the
//!   reference client's choice, and read either.
//! - `lz4`: the LZ4 *frame* format (64 KiB independent blocks, as the Java
//!   client writes it).
//! - `zstd`: a zstd frame.
//!
//! Every decompression is bounded by [`DECOMPRESSED_BYTES_MAX`]: a small
//! hostile or corrupt section fails with [`CompressionError::TooLarge`]
//! instead of making us allocate without limit.

use std::io::{Read, Write};

use thiserror::Error;

/// Codecs the producer can write and the consumer can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// zstd level 3, zstd's and Kafka's default.
pub const ZSTD_LEVEL: i32 = 3;

/// Bound on what one decompressed records section may grow to, so a small
/// hostile frame cannot make us allocate without limit.
pub const DECOMPRESSED_BYTES_MAX: usize = 128 * 1024 * 1024;

/// The magic that opens xerial's snappy framing (`SnappyCodec.MAGIC_HEADER`).
pub const SNAPPY_JAVA_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];

/// Magic, version and compatible version.
const SNAPPY_JAVA_HEADER_BYTES: usize = 16;

/// The framing version we write, and the oldest reader version it needs;
/// both 1, as xerial's `SnappyOutputStream` writes them.
const SNAPPY_JAVA_VERSION: i32 = 1;

/// Input bytes per snappy block in the Java framing: xerial's default block
/// size, which the Java client uses.
const SNAPPY_JAVA_BLOCK_BYTES: usize = 32 * 1024;

impl Compression {
    /// Every codec, `None` first.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The batch attribute bits for this codec.
    pub fn attribute_bits(self) -> i16 {
        self.to_protocol().attribute_bits()
    }

    pub fn to_protocol(self) -> crate::batch::Compression {
        match self {
            Compression::None => crate::batch::Compression::None,
            Compression::Gzip => crate::batch::Compression::Gzip,
            Compression::Snappy => crate::batch::Compression::Snappy,
            Compression::Lz4 => crate::batch::Compression::Lz4,
            Compression::Zstd => crate::batch::Compression::Zstd,
        }
    }

    /// The codec a batch's attribute bits name, or `None` for bits no
    /// Kafka version assigns.
    pub fn from_protocol(codec: crate::batch::Compression) -> Option<Compression> {
        match codec {
            crate::batch::Compression::None => Some(Compression::None),
            crate::batch::Compression::Gzip => Some(Compression::Gzip),
            crate::batch::Compression::Snappy => Some(Compression::Snappy),
            crate::batch::Compression::Lz4 => Some(Compression::Lz4),
            crate::batch::Compression::Zstd => Some(Compression::Zstd),
            crate::batch::Compression::Unknown(_) => None,
        }
    }

    /// Kafka's name for the codec (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = CompressionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|codec| codec.name() == s)
            .ok_or_else(|| CompressionError::UnsupportedCodec {
                name: s.to_string(),
            })
    }
}

/// Why a codec could not be named, or could not compress or decompress.
/// Reachable from the client's public API (`client::compression`), so
/// `#[non_exhaustive]`: a codec added later may bring its own failure.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompressionError {
    /// A codec name that is none of Kafka's.
    #[error("compression codec {name:?} is not supported (none, gzip, snappy, lz4, zstd)")]
    UnsupportedCodec { name: String },
    /// The codec refused the data (corrupt input, or an internal error).
    #[error("{codec} failed on {input_bytes} bytes: {reason}")]
    Codec {
        codec: &'static str,
        input_bytes: usize,
        reason: String,
    },
    /// The data inflates past [`DECOMPRESSED_BYTES_MAX`] (or the caller's bound).
    #[error("{codec} data decompresses past the bound of {limit_bytes} bytes")]
    TooLarge {
        codec: &'static str,
        limit_bytes: usize,
    },
}

/// Compresses `data` with `compression` (a copy for `None`).
pub fn compress(compression: Compression, data: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let failed = |reason: String| CompressionError::Codec {
        codec: compression.name(),
        input_bytes: data.len(),
        reason,
    };
    match compression {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            // The default level (6), as GZIPOutputStream and librdkafka use.
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 2 + 64),
                flate2::Compression::default(),
            );
            encoder.write_all(data).map_err(|e| failed(e.to_string()))?;
            encoder.finish().map_err(|e| failed(e.to_string()))
        }
        Compression::Snappy => snappy_java_compress(data).map_err(|e| failed(e.to_string())),
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(
                info,
                Vec::with_capacity(data.len() / 2 + 64),
            );
            encoder.write_all(data).map_err(|e| failed(e.to_string()))?;
            encoder.finish().map_err(|e| failed(e.to_string()))
        }
        Compression::Zstd => {
            zstd::bulk::compress(data, ZSTD_LEVEL).map_err(|e| failed(e.to_string()))
        }
    }
}

/// Decompresses a records section written by [`compress`] or any Kafka
/// client, to at most [`DECOMPRESSED_BYTES_MAX`] bytes.
pub fn decompress(compression: Compression, data: &[u8]) -> Result<Vec<u8>, CompressionError> {
    decompress_bounded(compression, data, DECOMPRESSED_BYTES_MAX)
}

/// Decompresses `data` to at most `limit_bytes` bytes; more is
/// [`CompressionError::TooLarge`], found before the excess is allocated.
pub fn decompress_bounded(
    compression: Compression,
    data: &[u8],
    limit_bytes: usize,
) -> Result<Vec<u8>, CompressionError> {
    let failed = |reason: String| CompressionError::Codec {
        codec: compression.name(),
        input_bytes: data.len(),
        reason,
    };
    let too_large = || CompressionError::TooLarge {
        codec: compression.name(),
        limit_bytes,
    };
    // Streams read one byte past the limit, to tell "exactly the limit"
    // from "more".
    let limit = limit_bytes as u64 + 1;
    let mut out = Vec::new();
    match compression {
        Compression::None => {
            if data.len() > limit_bytes {
                return Err(too_large());
            }
            return Ok(data.to_vec());
        }
        Compression::Gzip => {
            flate2::read::MultiGzDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| failed(e.to_string()))?;
        }
        Compression::Snappy => {
            return snappy_decompress(data, limit_bytes).map_err(|e| match e {
                SnappyFailure::TooLarge => too_large(),
                SnappyFailure::Codec(reason) => failed(reason),
            });
        }
        Compression::Lz4 => {
            lz4_flex::frame::FrameDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| failed(e.to_string()))?;
        }
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(data)
                .map_err(|e| failed(e.to_string()))?
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| failed(e.to_string()))?;
        }
    }
    if out.len() > limit_bytes {
        return Err(too_large());
    }
    Ok(out)
}

/// Snappy in xerial's framing (see the module docs), as the Java client
/// writes it.
fn snappy_java_compress(data: &[u8]) -> Result<Vec<u8>, snap::Error> {
    let blocks = data.len().div_ceil(SNAPPY_JAVA_BLOCK_BYTES);
    let mut out = Vec::with_capacity(
        SNAPPY_JAVA_HEADER_BYTES
            + blocks * (4 + snap::raw::max_compress_len(SNAPPY_JAVA_BLOCK_BYTES)),
    );
    out.extend_from_slice(&SNAPPY_JAVA_MAGIC);
    out.extend_from_slice(&SNAPPY_JAVA_VERSION.to_be_bytes());
    out.extend_from_slice(&SNAPPY_JAVA_VERSION.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for block in data.chunks(SNAPPY_JAVA_BLOCK_BYTES) {
        let length_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let start = out.len();
        out.resize(start + snap::raw::max_compress_len(block.len()), 0);
        let written = encoder.compress(block, &mut out[start..])?;
        out.truncate(start + written);
        // A block of at most 32 KiB compresses to well under 4 GiB.
        let written = u32::try_from(written).expect("a snappy block of 32 KiB fits in u32");
        out[length_at..start].copy_from_slice(&written.to_be_bytes());
    }
    Ok(out)
}

enum SnappyFailure {
    TooLarge,
    Codec(String),
}

/// Reads either snappy form: the Java framing when the section opens with
/// its magic, otherwise one raw block (librdkafka's form). Each raw block
/// states its decompressed length up front, so the bound is checked before
/// anything is allocated.
fn snappy_decompress(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, SnappyFailure> {
    let mut decoder = snap::raw::Decoder::new();
    let mut out = Vec::new();
    let mut append = |block: &[u8], out: &mut Vec<u8>| -> Result<(), SnappyFailure> {
        let length =
            snap::raw::decompress_len(block).map_err(|e| SnappyFailure::Codec(e.to_string()))?;
        if length > limit_bytes - out.len() {
            return Err(SnappyFailure::TooLarge);
        }
        let start = out.len();
        out.resize(start + length, 0);
        let written = decoder
            .decompress(block, &mut out[start..])
            .map_err(|e| SnappyFailure::Codec(e.to_string()))?;
        out.truncate(start + written);
        Ok(())
    };
    if !data.starts_with(&SNAPPY_JAVA_MAGIC) {
        append(data, &mut out)?;
        return Ok(out);
    }
    if data.len() < SNAPPY_JAVA_HEADER_BYTES {
        return Err(SnappyFailure::Codec(format!(
            "the snappy-java header needs {SNAPPY_JAVA_HEADER_BYTES} bytes, the section has {}",
            data.len()
        )));
    }
    // The versions say nothing we need: every xerial version writes the
    // same blocks, so they are not checked (nor does librdkafka).
    let mut rest = &data[SNAPPY_JAVA_HEADER_BYTES..];
    while !rest.is_empty() {
        let Some((length, tail)) = rest.split_first_chunk::<4>() else {
            return Err(SnappyFailure::Codec(format!(
                "a snappy-java block length needs 4 bytes, {} are left",
                rest.len()
            )));
        };
        let length = u32::from_be_bytes(*length) as usize;
        if length > tail.len() {
            return Err(SnappyFailure::Codec(format!(
                "a snappy-java block of {length} bytes runs past the section ({} bytes left)",
                tail.len()
            )));
        }
        append(&tail[..length], &mut out)?;
        rest = &tail[length..];
    }
    Ok(out)
}

/// Why a batch could not be put in another codec.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecompressError {
    #[error("the batch names compression codec bits {bits}, which no Kafka version assigns")]
    UnknownCodec { bits: u8 },
    #[error("the batch's records cannot be decompressed: {0}")]
    Decompress(CompressionError),
    #[error("the batch's records cannot be compressed: {0}")]
    Compress(CompressionError),
    #[error("the batch's records are malformed: {0}")]
    Records(String),
}

/// `batch` (one whole, validated v2 batch) with its records section in
/// `target`'s codec. Only the section changes: the header keeps its offset
/// delta, timestamps, producer id, epoch and sequence and its other
/// attribute bits, and the records keep their bytes; the codec bits, the
/// batch length and the CRC are rewritten. The records decompress to at most
/// `decompressed_bytes_max` bytes and must be exactly as many as the header
/// counts.
pub fn recompress_batch(
    batch: &[u8],
    target: Compression,
    decompressed_bytes_max: usize,
) -> Result<Vec<u8>, RecompressError> {
    use crate::batch::{
        BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, OFFSET_ATTRIBUTES,
        OFFSET_BATCH_LENGTH, OFFSET_CRC,
    };
    let header = BatchHeader::new(batch).map_err(|e| RecompressError::Records(e.to_string()))?;
    let total = header.total_bytes();
    if batch.len() < total {
        return Err(RecompressError::Records(format!(
            "the batch needs {total} bytes, {} are present",
            batch.len()
        )));
    }
    let source = match header.compression() {
        crate::batch::Compression::Unknown(bits) => {
            return Err(RecompressError::UnknownCodec { bits })
        }
        codec => Compression::from_protocol(codec).expect("every known codec maps"),
    };
    let records = decompress_bounded(
        source,
        &batch[BATCH_HEADER_BYTES..total],
        decompressed_bytes_max,
    )
    .map_err(RecompressError::Decompress)?;
    check_record_framing(&records, header.records_count()).map_err(RecompressError::Records)?;
    let packed = compress(target, &records).map_err(RecompressError::Compress)?;
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + packed.len());
    out.extend_from_slice(&batch[..BATCH_HEADER_BYTES]);
    out.extend_from_slice(&packed);
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD_BYTES).map_err(|_| {
        RecompressError::Records(format!("{} bytes do not fit one batch", out.len()))
    })?;
    out[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = (header.attributes() & !0x07) | target.attribute_bits();
    out[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[OFFSET_ATTRIBUTES..]);
    out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Checks that `records` is exactly `count` length-prefixed records, so a
/// section that decompressed to something else is refused rather than
/// stored under a new CRC that would vouch for it.
fn check_record_framing(records: &[u8], count: i32) -> Result<(), String> {
    let mut position = 0usize;
    for n in 0..count.max(0) {
        let length = crate::varint::read_varlong(records, &mut position)
            .map_err(|e| format!("record {n}: bad length: {e:?}"))?;
        position = usize::try_from(length)
            .ok()
            .and_then(|l| position.checked_add(l))
            .filter(|end| *end <= records.len())
            .ok_or_else(|| format!("record {n} of {length} bytes runs past the records"))?;
    }
    if position != records.len() {
        return Err(format!(
            "{} bytes follow the {count} records the header counts",
            records.len() - position
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips_and_shrinks_repetitive_data() {
        // decompress(compress(x)) == x for every codec, and the real codecs make repetitive data smaller.
        let data = sample();
        for codec in Compression::ALL {
            let packed = compress(codec, &data).unwrap();
            assert_eq!(decompress(codec, &packed).unwrap(), data, "{codec:?}");
            if codec != Compression::None {
                assert!(
                    packed.len() < data.len() / 4,
                    "{codec:?}: {} bytes",
                    packed.len()
                );
            }
        }
    }

    #[test]
    fn every_codec_round_trips_empty_and_tiny_sections() {
        // Edge sizes: nothing, one byte, and one byte either side of a snappy-java block.
        for codec in Compression::ALL {
            for size in [
                0,
                1,
                SNAPPY_JAVA_BLOCK_BYTES - 1,
                SNAPPY_JAVA_BLOCK_BYTES,
                SNAPPY_JAVA_BLOCK_BYTES + 1,
            ] {
                let data: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
                let packed = compress(codec, &data).unwrap();
                assert_eq!(
                    decompress(codec, &packed).unwrap(),
                    data,
                    "{codec:?} {size}"
                );
            }
        }
    }

    #[test]
    fn lz4_output_is_a_standard_frame() {
        // Kafka's lz4 is the LZ4 frame format: magic 0x184D2204, then FLG version 01.
        let packed = compress(Compression::Lz4, b"hello hello hello").unwrap();
        assert_eq!(&packed[..4], &0x184D_2204u32.to_le_bytes());
        assert_eq!(packed[4] >> 6, 0b01);
    }

    #[test]
    fn gzip_output_is_a_gzip_stream_and_concatenated_members_are_read() {
        // gzip magic 1f 8b, deflate (8); two members back to back read as their concatenation.
        let first = compress(Compression::Gzip, b"first member ").unwrap();
        assert_eq!(&first[..3], &[0x1f, 0x8b, 8]);
        let second = compress(Compression::Gzip, b"second member").unwrap();
        let joined = [first, second].concat();
        assert_eq!(
            decompress(Compression::Gzip, &joined).unwrap(),
            b"first member second member"
        );
    }

    #[test]
    fn snappy_output_uses_the_java_framing_in_32_kib_blocks() {
        // Magic, version 1, compatible 1, then length-prefixed raw blocks of at most 32 KiB input.
        let data = sample();
        let packed = compress(Compression::Snappy, &data).unwrap();
        assert_eq!(packed[..8], SNAPPY_JAVA_MAGIC);
        assert_eq!(packed[8..16], [0, 0, 0, 1, 0, 0, 0, 1]);
        let mut rest = &packed[16..];
        let mut blocks = 0;
        while !rest.is_empty() {
            let length = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let block = &rest[4..4 + length];
            assert!(snap::raw::decompress_len(block).unwrap() <= SNAPPY_JAVA_BLOCK_BYTES);
            rest = &rest[4 + length..];
            blocks += 1;
        }
        assert_eq!(blocks, data.len().div_ceil(SNAPPY_JAVA_BLOCK_BYTES));
    }

    #[test]
    fn raw_snappy_as_librdkafka_writes_it_is_read_too() {
        // librdkafka writes one raw snappy block without framing; it decodes to the same bytes.
        let data = sample();
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_ne!(raw[..8], SNAPPY_JAVA_MAGIC);
        assert_eq!(decompress(Compression::Snappy, &raw).unwrap(), data);
    }

    #[test]
    fn decompression_past_the_bound_is_too_large_for_every_codec() {
        // A section that inflates beyond the limit fails with TooLarge instead of allocating it.
        let data = vec![0u8; 100_000];
        for codec in Compression::ALL {
            let packed = compress(codec, &data).unwrap();
            assert_eq!(
                decompress_bounded(codec, &packed, data.len()).unwrap(),
                data,
                "{codec:?} at the bound"
            );
            assert_eq!(
                decompress_bounded(codec, &packed, data.len() - 1),
                Err(CompressionError::TooLarge {
                    codec: codec.name(),
                    limit_bytes: data.len() - 1
                }),
                "{codec:?} past the bound"
            );
        }
    }

    #[test]
    fn a_raw_snappy_block_claiming_a_huge_length_is_refused_before_allocating() {
        // The varint length prefix says 4 GiB - 1; the bound rejects it up front.
        let claim = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(matches!(
            decompress(Compression::Snappy, &claim),
            Err(CompressionError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_is_an_error_and_a_cut_section_never_decodes_whole() {
        // Bytes that are no frame of the codec give a typed error; a frame cut short never panics nor reads whole
        // (lz4_flex quietly ends a frame cut at a block boundary; the batch CRC and record count catch that).
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(
                matches!(
                    decompress(codec, b"definitely not compressed"),
                    Err(CompressionError::Codec { .. })
                ),
                "{codec:?}"
            );
            let data = sample();
            let packed = compress(codec, &data).unwrap();
            for cut in [1, packed.len() / 2] {
                if let Ok(partial) = decompress(codec, &packed[..cut]) {
                    assert!(partial.len() < data.len(), "{codec:?} cut at {cut}");
                }
            }
            // Only part of an end mark or trailer is missing: no panic, whatever the codec makes of it.
            let _ = decompress(codec, &packed[..packed.len() - 1]);
        }
        // A Java-framed section whose block length runs past the end.
        let mut framed = compress(Compression::Snappy, b"short").unwrap();
        framed[16..20].copy_from_slice(&1_000u32.to_be_bytes());
        assert!(decompress(Compression::Snappy, &framed).is_err());
    }

    fn sample_batch(n: usize) -> bytes::Bytes {
        let mut builder = crate::batch::BatchBuilder::new().idempotent(77, 3, 40);
        for i in 0..n {
            builder.push(&crate::batch::Record {
                key: Some(bytes::Bytes::from(format!("key-{i}"))),
                value: Some(bytes::Bytes::from(format!("value-{i} ").repeat(20))),
                headers: vec![("h".into(), Some(bytes::Bytes::from_static(b"v")))],
                timestamp: 1_000 + i as i64,
            });
        }
        builder.build()
    }

    #[test]
    fn recompression_keeps_the_header_and_records_in_every_codec() {
        // Uncompressed -> each codec -> uncompressed gives back the same bytes; between, the codec bits and a valid CRC.
        use crate::batch::BatchHeader;
        let original = sample_batch(50);
        for codec in Compression::ALL.into_iter().skip(1) {
            let packed = recompress_batch(&original, codec, DECOMPRESSED_BYTES_MAX).unwrap();
            let header = BatchHeader::new(&packed).unwrap();
            header.validate().unwrap();
            let before = BatchHeader::new(&original).unwrap();
            assert_eq!(header.compression(), codec.to_protocol());
            assert!(packed.len() < original.len(), "{codec:?}");
            assert_eq!(header.last_offset_delta(), before.last_offset_delta());
            assert_eq!(header.base_timestamp(), before.base_timestamp());
            assert_eq!(header.max_timestamp(), before.max_timestamp());
            assert_eq!(header.producer_id(), before.producer_id());
            assert_eq!(header.producer_epoch(), before.producer_epoch());
            assert_eq!(header.base_sequence(), before.base_sequence());
            assert_eq!(header.records_count(), before.records_count());
            let back =
                recompress_batch(&packed, Compression::None, DECOMPRESSED_BYTES_MAX).unwrap();
            assert_eq!(back, original.to_vec(), "{codec:?}");
        }
    }

    #[test]
    fn a_section_that_does_not_decompress_or_frame_is_refused() {
        // Garbage under the gzip bits, a count that disagrees with the records, unknown codec bits, a tight bound.
        use crate::batch::{OFFSET_ATTRIBUTES, OFFSET_RECORDS_COUNT};
        let original = sample_batch(3);
        let mut garbage = original.to_vec();
        garbage[OFFSET_ATTRIBUTES + 1] = 1;
        assert!(matches!(
            recompress_batch(&garbage, Compression::Zstd, DECOMPRESSED_BYTES_MAX),
            Err(RecompressError::Decompress(_))
        ));
        let mut miscounted = original.to_vec();
        miscounted[OFFSET_RECORDS_COUNT + 3] = 2;
        assert!(matches!(
            recompress_batch(&miscounted, Compression::Zstd, DECOMPRESSED_BYTES_MAX),
            Err(RecompressError::Records(_))
        ));
        let mut unknown = original.to_vec();
        unknown[OFFSET_ATTRIBUTES + 1] = 6;
        assert_eq!(
            recompress_batch(&unknown, Compression::Zstd, DECOMPRESSED_BYTES_MAX),
            Err(RecompressError::UnknownCodec { bits: 6 })
        );
        assert!(matches!(
            recompress_batch(&original, Compression::Zstd, 10),
            Err(RecompressError::Decompress(
                CompressionError::TooLarge { .. }
            ))
        ));
    }

    #[test]
    fn codec_names_parse_as_kafka_spells_them() {
        // compression.type values map to codecs and back; anything else is UnsupportedCodec.
        for codec in Compression::ALL {
            assert_eq!(codec.name().parse::<Compression>().unwrap(), codec);
            assert_eq!(Compression::from_protocol(codec.to_protocol()), Some(codec));
        }
        assert!(matches!(
            "brotli".parse::<Compression>(),
            Err(CompressionError::UnsupportedCodec { .. })
        ));
    }
}
