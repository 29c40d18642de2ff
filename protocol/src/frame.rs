//! Kafka framing: every request and response is an `i32` byte count followed
//! by that many bytes. The size is bounded so a bad or hostile peer cannot
//! make us allocate without limit.

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
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

/// Bound on the pieces handed to one `writev`.
pub const WRITE_SLICES_MAX: usize = 64;

/// Writes `chunks` in order with vectored writes: one system call for a
/// whole frame (or several responses) in the common case, whatever the
/// number of pieces, and no piece copied.
pub async fn write_all_chunks<W: AsyncWrite + Unpin>(
    socket: &mut W,
    chunks: &[Bytes],
) -> std::io::Result<()> {
    let mut index = 0;
    let mut offset = 0;
    while index < chunks.len() {
        let slices: Vec<std::io::IoSlice<'_>> = chunks[index..]
            .iter()
            .take(WRITE_SLICES_MAX)
            .enumerate()
            .map(|(i, chunk)| std::io::IoSlice::new(if i == 0 { &chunk[offset..] } else { chunk }))
            .collect();
        let mut written = socket.write_vectored(&slices).await?;
        if written == 0 && slices.iter().any(|s| !s.is_empty()) {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while index < chunks.len() && written >= chunks[index].len() - offset {
            written -= chunks[index].len() - offset;
            index += 1;
            offset = 0;
        }
        offset += written;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    /// Writes `chunks` with `write_all_chunks` and returns what the other
    /// end of the connection read.
    async fn written_through_a_socket(chunks: &[Bytes]) -> Vec<u8> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (_, mut write_half) = client.unwrap().into_split();
        let (mut server, _) = server.unwrap();
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut server, &mut received)
                .await
                .unwrap();
            received
        });
        write_all_chunks(&mut write_half, chunks).await.unwrap();
        write_half.shutdown().await.unwrap();
        drop(write_half);
        reader.await.unwrap()
    }

    fn numbered_chunks(lengths: impl IntoIterator<Item = usize>) -> Vec<Bytes> {
        lengths
            .into_iter()
            .enumerate()
            .map(|(i, len)| Bytes::from((0..len).map(|j| (i * 31 + j) as u8).collect::<Vec<_>>()))
            .collect()
    }

    #[tokio::test]
    async fn chunked_frames_arrive_whole_and_in_order_through_partial_writes() {
        // Pieces larger than the socket buffers go out over many partial
        // vectored writes; the reader sees exactly their concatenation.
        let chunks = numbered_chunks([0usize, 5, 3 << 20, 0, 17, 2 << 20, 1]);
        assert_eq!(written_through_a_socket(&chunks).await, chunks.concat());
    }

    #[tokio::test]
    async fn more_pieces_than_one_writev_takes_go_out_in_order() {
        // Past WRITE_SLICES_MAX pieces the frame takes several writev calls.
        let chunks = numbered_chunks((0..3 * WRITE_SLICES_MAX + 5).map(|i| i % 7 * 100));
        assert_eq!(written_through_a_socket(&chunks).await, chunks.concat());
    }

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
