//! Compression of a record batch's records section, as Kafka frames it:
//! `lz4` is the LZ4 *frame* format (64 KiB independent blocks, as the Java
//! client writes it), `zstd` a zstd frame. The batch header stays
//! uncompressed; its attribute bits name the codec.

use std::io::{Read, Write};

use thiserror::Error;

/// Codecs the producer can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Lz4,
    Zstd,
}

/// zstd level 3, zstd's and Kafka's default.
pub const ZSTD_LEVEL: i32 = 3;

/// Bound on what one decompressed records section may grow to, so a small
/// hostile frame cannot make us allocate without limit.
pub const DECOMPRESSED_BYTES_MAX: usize = 128 * 1024 * 1024;

impl Compression {
    /// The batch attribute bits for this codec.
    pub fn attribute_bits(self) -> i16 {
        self.to_protocol().attribute_bits()
    }

    pub fn to_protocol(self) -> protocol::batch::Compression {
        match self {
            Compression::None => protocol::batch::Compression::None,
            Compression::Lz4 => protocol::batch::Compression::Lz4,
            Compression::Zstd => protocol::batch::Compression::Zstd,
        }
    }

    /// Kafka's name for the codec (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = CompressionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(CompressionError::UnsupportedCodec {
                name: other.to_string(),
            }),
        }
    }
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CompressionError {
    #[error("compression codec {name:?} is not supported (none, lz4, zstd)")]
    UnsupportedCodec { name: String },
    #[error("{codec} failed on {input_bytes} bytes: {reason}")]
    Codec {
        codec: &'static str,
        input_bytes: usize,
        reason: String,
    },
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

/// Decompresses a records section written by [`compress`] or any Kafka client.
pub fn decompress(compression: Compression, data: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let failed = |reason: String| CompressionError::Codec {
        codec: compression.name(),
        input_bytes: data.len(),
        reason,
    };
    let mut out = Vec::new();
    let limit = DECOMPRESSED_BYTES_MAX as u64 + 1;
    match compression {
        Compression::None => return Ok(data.to_vec()),
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
    if out.len() > DECOMPRESSED_BYTES_MAX {
        return Err(CompressionError::TooLarge {
            codec: compression.name(),
            limit_bytes: DECOMPRESSED_BYTES_MAX,
        });
    }
    Ok(out)
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
        // decompress(compress(x)) == x, and lz4/zstd make repetitive data smaller.
        let data = sample();
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
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
    fn lz4_output_is_a_standard_frame() {
        // Kafka's lz4 is the LZ4 frame format: magic 0x184D2204, then FLG version 01.
        let packed = compress(Compression::Lz4, b"hello hello hello").unwrap();
        assert_eq!(&packed[..4], &0x184D_2204u32.to_le_bytes());
        assert_eq!(packed[4] >> 6, 0b01);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        // Bytes that are no frame of the codec give a typed error.
        for codec in [Compression::Lz4, Compression::Zstd] {
            assert!(decompress(codec, b"definitely not compressed").is_err());
        }
        assert!("gzip".parse::<Compression>().is_err());
        assert_eq!("zstd".parse::<Compression>().unwrap(), Compression::Zstd);
    }
}
