//! What the replication tests check, on a cluster of real processes: an
//! oracle of acknowledged writes (an acknowledged record is committed; one
//! that failed or timed out is unknown, never absent), a reader of every
//! record of a partition through its leader, and a comparison of the
//! replicas' segment files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::Cluster;

/// How long a consumer may take to read a partition to its end.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Every send's outcome: acknowledged at `(partition, offset)`, or unknown.
#[derive(Debug, Default)]
pub struct Oracle {
    pub acked: BTreeMap<i32, BTreeMap<i64, String>>,
    pub unknown: Vec<String>,
    /// Acknowledgements of two records at one offset. Under `acks=all` there
    /// must be none; under `acks=1` a failover may lose acknowledged writes
    /// and give their offsets to others.
    pub conflicts: Vec<String>,
}

impl Oracle {
    pub fn acked_count(&self) -> usize {
        self.acked.values().map(BTreeMap::len).sum()
    }
}

#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Oracle>>);

impl ClientContext for Recorder {}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut oracle = self.0.lock().unwrap();
        match result {
            Ok(m) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                let previous = oracle
                    .acked
                    .entry(m.partition())
                    .or_default()
                    .insert(m.offset(), value.clone());
                if let Some(previous) = previous {
                    let conflict = format!(
                        "{}-{} offset {}: {previous} and {value}",
                        m.topic(),
                        m.partition(),
                        m.offset()
                    );
                    oracle.conflicts.push(conflict);
                }
            }
            Err((_, m)) => oracle
                .unknown
                .push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()),
        }
    }
}

/// A librdkafka producer with its defaults for durability (`acks=all`,
/// idempotence) that records every outcome in an [`Oracle`].
pub struct RecordingProducer {
    producer: BaseProducer<Recorder>,
    recorder: Recorder,
    topic: String,
}

impl RecordingProducer {
    pub fn new(bootstrap: &str, topic: &str, extra: &[(&str, &str)]) -> RecordingProducer {
        let recorder = Recorder::default();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .set("topic.metadata.refresh.interval.ms", "500");
        for (key, value) in extra {
            config.set(*key, *value);
        }
        let producer = config
            .create_with_context(recorder.clone())
            .expect("producer");
        RecordingProducer {
            producer,
            recorder,
            topic: topic.to_string(),
        }
    }

    /// Queues `value` for `partition`, waiting for room in the queue.
    pub fn send(&self, partition: i32, value: &str) {
        let mut record = BaseRecord::<(), str>::to(&self.topic)
            .payload(value)
            .partition(partition);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    self.producer.poll(Duration::from_millis(10));
                }
            }
        }
        self.producer.poll(Duration::ZERO);
    }

    /// How many sends have been acknowledged so far (by the delivery reports
    /// polled up to now).
    pub fn acked_count(&self) -> usize {
        self.recorder.0.lock().unwrap().acked_count()
    }

    /// Waits until every send has an outcome; returns the oracle.
    pub fn finish(self) -> Oracle {
        self.producer
            .flush(Duration::from_secs(120))
            .expect("every send has an outcome");
        std::mem::take(&mut *self.recorder.0.lock().unwrap())
    }
}

/// Every record of `topic`/`partition` from the log start to the high
/// watermark, read through the leader: `(offset, value)` in offset order.
pub fn read_partition(bootstrap: &str, topic: &str, partition: i32) -> Vec<(i64, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "replication-reader")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + READ_TIMEOUT;
    let (low, high) = loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
            Ok(marks) => break marks,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no watermarks for {topic}-{partition}: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(low))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    let mut next = low;
    while next < high {
        assert!(
            Instant::now() < deadline,
            "{topic}-{partition}: read to {next} of {high} within {READ_TIMEOUT:?}"
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                records.push((m.offset(), value));
                next = m.offset() + 1;
            }
            Some(Err(e)) => eprintln!("read {topic}-{partition}: {e}"),
            None => {}
        }
    }
    records
}

/// Checks a partition's records against the oracle: offsets strictly
/// increasing and dense, and each acknowledged record at its acknowledged
/// offset. Returns how many acknowledged records were checked.
pub fn check_partition(oracle: &Oracle, partition: i32, records: &[(i64, String)]) -> usize {
    assert!(
        oracle.conflicts.is_empty(),
        "offsets acknowledged for two records: {:?}",
        oracle.conflicts
    );
    for pair in records.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].0 + 1,
            "offsets of partition {partition} are not dense: {} then {}",
            pair[0].0,
            pair[1].0
        );
    }
    let by_offset: BTreeMap<i64, &String> = records.iter().map(|(o, v)| (*o, v)).collect();
    let acked = oracle.acked.get(&partition).cloned().unwrap_or_default();
    for (offset, value) in &acked {
        match by_offset.get(offset) {
            Some(found) => assert_eq!(
                *found, value,
                "partition {partition} offset {offset} holds another record than the acknowledged one"
            ),
            None => panic!("acknowledged record {value:?} at {partition}/{offset} is lost"),
        }
    }
    acked.len()
}

/// The record batches in a partition's segment files in `dir`, in order, as
/// bytes (the segments' preallocated tails left out).
pub fn segment_batches(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut batches = Vec::new();
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        let mut at = 0;
        while at + 12 <= bytes.len() {
            let length = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            if length <= 0 || at + 12 + length as usize > bytes.len() {
                break;
            }
            batches.push(bytes[at..at + 12 + length as usize].to_vec());
            at += 12 + length as usize;
        }
    }
    batches
}

/// Waits until every running replica of `topic`/`partition` holds the
/// same batches, byte for byte; panics after `timeout` with each node's count.
pub fn wait_for_identical_replicas(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let copies: Vec<(i32, Vec<Vec<u8>>)> = cluster
            .running_ids()
            .into_iter()
            .filter_map(|id| {
                // Only the nodes hosting a replica have its directory.
                let dir = cluster.data_dir(id).join(format!("{topic}-{partition}"));
                dir.is_dir().then(|| (id, segment_batches(&dir)))
            })
            .collect();
        if copies.windows(2).all(|pair| pair[0].1 == pair[1].1) {
            return;
        }
        if Instant::now() > deadline {
            let counts: Vec<String> = copies
                .iter()
                .map(|(id, batches)| format!("node {id}: {} batches", batches.len()))
                .collect();
            panic!(
                "replicas of {topic}-{partition} differ after {timeout:?}: {}",
                counts.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
