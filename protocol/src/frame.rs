//! Kafka framing: every request and response is an `i32` byte count followed
//! by that many bytes. The size is bounded so a bad or hostile peer cannot
//! make us allocate without limit.

use tokio_util::codec::LengthDelimitedCodec;

/// Default bound on one frame, as Kafka's `socket.request.max.bytes` (100 MiB).
pub const FRAME_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;

/// A codec that splits a byte stream into frames of at most `frame_bytes_max`
/// bytes (the size prefix excluded) and prefixes outgoing frames with their size.
/// A larger or negative size prefix is an `InvalidData` error.
pub fn frame_codec(frame_bytes_max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(frame_bytes_max)
        .new_codec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    #[test]
    fn oversized_and_negative_sizes_are_errors() {
        // A size prefix over the bound, or negative as an i32, is refused before allocating.
        let mut codec = frame_codec(1024);
        let mut buf = BytesMut::from(&2048u32.to_be_bytes()[..]);
        assert!(codec.decode(&mut buf).is_err());
        let mut codec = frame_codec(1024);
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert!(codec.decode(&mut buf).is_err());
    }

    #[test]
    fn frames_split_on_their_size_prefix() {
        // Two frames back to back come out as two payloads.
        let mut codec = frame_codec(1024);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&3u32.to_be_bytes());
        buf.extend_from_slice(b"abc");
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.extend_from_slice(b"d");
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"abc");
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"d");
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }
}
