//! What a caller sends ([`ProducerRecord`]), what it gets back
//! ([`RecordMetadata`]), and the future that carries it ([`DeliveryFuture`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::ProduceError;

/// Bytes a record may take in a batch beyond its key, value and header
/// contents: length, attributes, timestamp delta, offset delta, key and
/// value lengths and header count, each at its largest varint size.
pub const RECORD_OVERHEAD_BYTES_MAX: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
/// Bytes a header may take beyond its name and value: their two lengths.
pub const HEADER_OVERHEAD_BYTES_MAX: usize = 5 + 5;

/// A record to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The topic to write to.
    pub topic: String,
    /// `None` lets the partitioner choose: by key hash, or sticky without a key.
    pub partition: Option<i32>,
    /// The key (`None`: null); it picks the partition unless one is set.
    pub key: Option<Bytes>,
    /// The value (`None`: null, a tombstone).
    pub value: Option<Bytes>,
    /// The headers, by name, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the Unix epoch (CreateTime); `None` means now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record for `topic` with no key, value or headers yet.
    pub fn new(topic: impl Into<String>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            ..ProducerRecord::default()
        }
    }

    /// Sets the value.
    pub fn with_value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header (`None`: a null value).
    pub fn with_header(mut self, name: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push((name.into(), value));
        self
    }

    /// Sets the record's timestamp, in ms since the epoch (else the time of `send`).
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }

    /// Sends the record to this partition, whatever its key.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// An upper bound on the bytes this record takes in an uncompressed batch;
    /// what `buffer_memory` and `batch_size` count.
    pub fn size_bytes_max(&self) -> usize {
        let field = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        RECORD_OVERHEAD_BYTES_MAX
            + field(&self.key)
            + field(&self.value)
            + self
                .headers
                .iter()
                .map(|(name, value)| HEADER_OVERHEAD_BYTES_MAX + name.len() + field(value))
                .sum::<usize>()
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition the record went to.
    pub partition: i32,
    /// The record's offset. `None` with `acks=0` (there is no response), and
    /// when the broker acknowledged a retried batch as a duplicate of one
    /// written earlier without telling its offset (DUPLICATE_SEQUENCE_NUMBER).
    pub offset: Option<i64>,
    /// The record's timestamp: its CreateTime, or the broker's append time
    /// when the topic uses LogAppendTime.
    pub timestamp: i64,
}

/// Resolves once the record is delivered or has definitely failed; every
/// record accepted by `send` gets exactly one report.
#[derive(Debug)]
pub struct DeliveryFuture {
    pub(crate) receiver: oneshot::Receiver<Result<RecordMetadata, ProduceError>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProduceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver).poll(cx).map(|result| {
            result.unwrap_or_else(|_| {
                Err(ProduceError::SenderStopped {
                    reason: "the record's report was dropped unsent".to_string(),
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_bound_covers_the_encoded_record() {
        // The estimate is never below what the record really takes in a batch.
        let record = ProducerRecord::new("t")
            .with_key("key")
            .with_value(vec![7u8; 300])
            .with_header("h", Some(Bytes::from_static(b"v")))
            .with_timestamp(1_700_000_000_000);
        let mut builder = protocol::batch::BatchBuilder::new();
        let empty = builder.size_bytes();
        builder.push(&protocol::batch::Record {
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record.headers.clone(),
            timestamp: 1_700_000_000_000,
        });
        assert!(builder.size_bytes() - empty <= record.size_bytes_max());
    }
}
