//! What the consumer hands out: [`ConsumerRecord`]s grouped in
//! [`ConsumerRecords`], and the [`TopicPartition`] and
//! [`OffsetAndMetadata`] values the position and commit APIs take.
//!
//! Keys, values and header values are `Bytes` slices of the fetched frame
//! (or of the decompressed records section), so a record costs no copy of
//! its data; the topic name is one shared `Arc<str>` per partition.

use std::sync::Arc;

use bytes::Bytes;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition's index.
    pub partition: i32,
}

impl TopicPartition {
    /// The partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// An offset to commit (the offset of the *next* record to consume, as in
/// Kafka), with the leader epoch of the last consumed record and free-form
/// metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    /// The offset of the next record to read.
    pub offset: i64,
    /// The leader epoch of the record before `offset`, if known (sent as
    /// `committed_leader_epoch`; -1 on the wire when unknown).
    pub leader_epoch: Option<i32>,
    /// Free text stored with the offset.
    pub metadata: String,
}

impl OffsetAndMetadata {
    /// An offset (of the next record to read) without leader epoch or metadata.
    pub fn new(offset: i64) -> Self {
        OffsetAndMetadata {
            offset,
            leader_epoch: None,
            metadata: String::new(),
        }
    }
}

/// How a record's timestamp was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer (`message.timestamp.type=CreateTime`).
    CreateTime,
    /// Set by the broker when it appended the batch (`LogAppendTime`).
    LogAppendTime,
}

/// One record header. Kafka header keys are strings; values are bytes or null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub key: String,
    /// The header's value (`None`: null).
    pub value: Option<Bytes>,
}

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition's index.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Whether the timestamp is the producer's or the broker's.
    pub timestamp_type: TimestampType,
    /// The key (`None`: null).
    pub key: Option<Bytes>,
    /// The value (`None`: null, a tombstone).
    pub value: Option<Bytes>,
    /// The headers, in order.
    pub headers: Vec<Header>,
    /// The partition leader epoch the batch was written in, if the broker
    /// stamped one.
    pub leader_epoch: Option<i32>,
}

impl ConsumerRecord {
    /// The record's topic and partition.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&*self.topic, self.partition)
    }
}

/// The records one `poll` returned, in the order they were fetched (per
/// partition in offset order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerRecords {
    records: Vec<ConsumerRecord>,
}

impl ConsumerRecords {
    pub(crate) fn from_vec(records: Vec<ConsumerRecord>) -> Self {
        ConsumerRecords { records }
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records, in the order `poll` handed them out.
    pub fn iter(&self) -> std::slice::Iter<'_, ConsumerRecord> {
        self.records.iter()
    }

    /// The records of one partition, in offset order.
    pub fn records<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
    ) -> impl Iterator<Item = &'a ConsumerRecord> + 'a {
        self.records
            .iter()
            .filter(move |r| r.partition == partition && &*r.topic == topic)
    }

    /// The partitions that have records here, sorted.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        let mut out: Vec<TopicPartition> = Vec::new();
        for record in &self.records {
            if !out
                .iter()
                .any(|tp| tp.partition == record.partition && tp.topic == *record.topic)
            {
                out.push(record.topic_partition());
            }
        }
        out.sort();
        out
    }

    /// The records as a `Vec`.
    pub fn into_vec(self) -> Vec<ConsumerRecord> {
        self.records
    }
}

impl IntoIterator for ConsumerRecords {
    type Item = ConsumerRecord;
    type IntoIter = std::vec::IntoIter<ConsumerRecord>;
    fn into_iter(self) -> Self::IntoIter {
        self.records.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConsumerRecords {
    type Item = &'a ConsumerRecord;
    type IntoIter = std::slice::Iter<'a, ConsumerRecord>;
    fn into_iter(self) -> Self::IntoIter {
        self.records.iter()
    }
}
