//! An encode buffer that keeps large byte fields by reference.
//!
//! kafka-protocol encodes a message by writing every field into one buffer,
//! which would copy each record set of a Fetch response. [`ChunkedBuf`] is
//! handed the record sets beforehand; when the encoder writes one of them (the
//! same memory, recognised by address and length), the buffer closes its
//! current chunk and appends the record set itself, so a response is a list of
//! small encoded chunks and the record sets as they were read from the log.

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Below this size a field is copied: a separate chunk would cost more than it saves.
const ZERO_COPY_BYTES_MIN: usize = 4096;

pub struct ChunkedBuf<'a> {
    done: Vec<Bytes>,
    done_bytes: usize,
    current: BytesMut,
    zero_copy: &'a [Bytes],
}

impl<'a> ChunkedBuf<'a> {
    pub fn new(zero_copy: &'a [Bytes]) -> Self {
        ChunkedBuf {
            done: Vec::with_capacity(2 * zero_copy.len() + 1),
            done_bytes: 0,
            current: BytesMut::with_capacity(256),
            zero_copy,
        }
    }

    /// The chunks, in order.
    pub fn finish(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.done.push(self.current.split().freeze());
        }
        self.done
    }

    fn referenced(&self, src: &[u8]) -> Option<&Bytes> {
        if src.len() < ZERO_COPY_BYTES_MIN {
            return None;
        }
        self.zero_copy
            .iter()
            .find(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len())
    }
}

// SAFETY: every method delegates to the `BytesMut` that holds the current
// chunk, which upholds `BufMut`'s contract; `put_slice` only adds whole chunks.
unsafe impl BufMut for ChunkedBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which is
        // the current `BytesMut`'s, as `BytesMut::advance_mut` requires.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if let Some(shared) = self.referenced(src).cloned() {
            if !self.current.is_empty() {
                let chunk = self.current.split().freeze();
                self.done_bytes += chunk.len();
                self.done.push(chunk);
            }
            self.done_bytes += shared.len();
            self.done.push(shared);
        } else {
            self.current.extend_from_slice(src);
        }
    }
}

impl ByteBufMut for ChunkedBuf<'_> {
    fn offset(&self) -> usize {
        self.done_bytes + self.current.len()
    }

    /// Gaps (used by record encoders, not by messages) stay inside the current chunk.
    fn seek(&mut self, offset: usize) {
        assert!(
            offset >= self.done_bytes,
            "cannot seek into a finished chunk"
        );
        self.current.resize(offset - self.done_bytes, 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        assert!(
            r.start >= self.done_bytes,
            "cannot rewrite a finished chunk"
        );
        &mut self.current[r.start - self.done_bytes..r.end - self.done_bytes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use crate::messages::{ApiKey, FetchResponse, TopicName};
    use crate::StrBytes;

    #[test]
    fn chunked_fetch_response_equals_the_copied_encoding_and_shares_the_records() {
        // The chunks concatenate to the ordinary encoding; record sets are the same memory, not copies.
        let records: Vec<Bytes> = (0..3u8)
            .map(|i| Bytes::from(vec![i; 10_000 + i as usize]))
            .collect();
        let small = Bytes::from_static(b"tiny");
        let mut partitions: Vec<PartitionData> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_records(Some(r.clone()))
            })
            .collect();
        partitions.push(
            PartitionData::default()
                .with_partition_index(9)
                .with_records(Some(small.clone())),
        );
        let response =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(partitions)]);
        for version in [4i16, 12, 16] {
            let copied =
                crate::header::encode_response(ApiKey::Fetch, version, 7, &response).unwrap();
            let mut shared = records.clone();
            shared.push(small.clone());
            let chunks = crate::header::encode_response_chunks(
                ApiKey::Fetch,
                version,
                7,
                &response,
                &shared,
            )
            .unwrap();
            assert_eq!(chunks.concat(), copied.to_vec(), "version {version}");
            for r in &records {
                assert!(chunks
                    .iter()
                    .any(|c| c.as_ptr() == r.as_ptr() && c.len() == r.len()));
            }
            assert!(
                !chunks.iter().any(|c| c.as_ptr() == small.as_ptr()),
                "small fields are copied"
            );
        }
    }
}
