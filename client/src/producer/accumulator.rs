//! The record accumulator: per partition, a queue of batches waiting to be
//! sent, fed by `send` and drained by the sender task.
//!
//! A partition's queue holds, front to back: batches waiting for a retry (in
//! sequence order), closed batches, and at most one open batch at the back
//! that new records join until it reaches `batch_size`. A batch becomes
//! sendable when it is closed, when `linger` has passed since it was opened,
//! or while a flush or close is in progress.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::batch::Record;

use crate::producer::batch::{BatchOutcome, BatchShape, Delivery, ProducerBatch};
use crate::producer::partitioner::next_sticky_partition;
use crate::producer::supervisor::SenderExit;

/// The batches of one partition plus its sequence bookkeeping.
pub(crate) struct PartitionQueue {
    pub batches: VecDeque<ProducerBatch>,
    /// Batches of this partition handed to a connection and not yet answered.
    pub in_flight: usize,
    /// Of those, batches sent for the second time or later.
    pub retries_in_flight: usize,
    /// The sequence position the next new batch gets (idempotent producer):
    /// records sequenced so far in this epoch. Positions never wrap; the
    /// sequence on the wire is the position modulo 2^31.
    pub next_position: i64,
    /// Positions below this are acknowledged as written.
    pub acked_positions: i64,
    /// The size of the last batch closed or drained: a new batch starts with
    /// room for as much.
    pub last_shape: BatchShape,
}

impl PartitionQueue {
    fn new() -> Self {
        PartitionQueue {
            batches: VecDeque::new(),
            in_flight: 0,
            retries_in_flight: 0,
            next_position: 0,
            acked_positions: 0,
            last_shape: BatchShape::default(),
        }
    }

    fn open_batch(&self) -> Option<&ProducerBatch> {
        self.batches.back().filter(|b| !b.closed)
    }

    /// Puts a batch that is to be retried back in its place: before every
    /// batch with a higher sequence or none, so retries go out in order.
    pub fn reinsert_for_retry(&mut self, batch: ProducerBatch) {
        assert!(batch.closed, "only closed batches are retried");
        let position = if batch.has_sequence() {
            self.batches
                .iter()
                .position(|b| !b.has_sequence() || b.sequence_position > batch.sequence_position)
                .unwrap_or(self.batches.len())
        } else {
            0
        };
        self.batches.insert(position, batch);
    }
}

pub(crate) struct TopicQueues {
    /// The topic's name, shared with its batches.
    name: Arc<str>,
    pub partitions: Vec<PartitionQueue>,
    /// The partition keyless records stick to, and the batch they opened there.
    sticky: Option<(i32, u64)>,
}

/// What an append did, so `send` knows whether to wake the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    pub partition: i32,
    pub batch_id: u64,
    /// A batch was opened or closed: the sender has a new deadline or a full batch.
    pub wake_sender: bool,
}

pub(crate) struct Accumulator {
    pub topics: HashMap<Arc<str>, TopicQueues>,
    batch_size: usize,
    next_batch_id: u64,
    /// Ids of batches created and not yet reported on.
    incomplete: BTreeSet<u64>,
    /// While positive, every batch is sendable regardless of linger.
    pub flushes_in_progress: usize,
    /// Set when the producer is dropped: send everything, accept nothing.
    pub closing: bool,
    /// Batches with an outcome whose records have not been told yet. The
    /// sender reports them after letting go of the lock, so that record
    /// callbacks never run while `send` waits for the lock.
    pub finished: Vec<(ProducerBatch, BatchOutcome)>,
    /// Set once the sender task died: nothing is accepted any more.
    pub sender_stopped: bool,
    /// Shared with every batch: why the sender stopped, for a batch dropped
    /// without a report.
    pub exit: Arc<SenderExit>,
}

impl Accumulator {
    pub fn new(batch_size: usize) -> Self {
        Accumulator {
            topics: HashMap::new(),
            batch_size,
            next_batch_id: 1,
            incomplete: BTreeSet::new(),
            flushes_in_progress: 0,
            closing: false,
            finished: Vec::new(),
            sender_stopped: false,
            exit: Arc::default(),
        }
    }

    /// The queues of `topic`, with at least `partition_count` partitions;
    /// one map lookup when the topic is known.
    fn topic_mut<'a>(
        topics: &'a mut HashMap<Arc<str>, TopicQueues>,
        topic: &str,
        partition_count: i32,
    ) -> &'a mut TopicQueues {
        if !topics.contains_key(topic) {
            let name: Arc<str> = Arc::from(topic);
            let queues = TopicQueues {
                name: name.clone(),
                partitions: Vec::new(),
                sticky: None,
            };
            topics.insert(name, queues);
        }
        let queues = topics.get_mut(topic).expect("inserted above");
        // Partitions are only ever added to a topic, never removed.
        while queues.partitions.len() < partition_count as usize {
            queues.partitions.push(PartitionQueue::new());
        }
        queues
    }

    /// Adds a record to the open batch of `partition`, opening one if
    /// needed; `None` is a keyless record without an explicit partition,
    /// which goes to the sticky partition (KIP-480): the one whose batch it
    /// opened, while that batch is open and has room, else a new one.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        topic: &str,
        partition_count: i32,
        partition: Option<i32>,
        record: &Record,
        record_bytes: usize,
        delivery: Delivery,
        now: impl FnOnce() -> Instant,
    ) -> Appended {
        let batch_size = self.batch_size;
        let next_id = self.next_batch_id;
        let queues = Self::topic_mut(&mut self.topics, topic, partition_count);
        let keyless = partition.is_none();
        let partition = partition.unwrap_or_else(|| match queues.sticky {
            Some((sticky, batch_id)) if sticky < partition_count => {
                let still_open = queues.partitions[sticky as usize]
                    .open_batch()
                    .is_some_and(|b| b.id == batch_id && b.has_room(record_bytes, batch_size));
                if still_open {
                    sticky
                } else {
                    next_sticky_partition(Some(sticky), partition_count)
                }
            }
            _ => next_sticky_partition(None, partition_count),
        });
        assert!(
            (0..partition_count).contains(&partition),
            "partition checked by the caller"
        );
        let queue = &mut queues.partitions[partition as usize];
        let mut wake_sender = false;
        let fits = queue
            .open_batch()
            .is_some_and(|b| b.has_room(record_bytes, batch_size));
        let mut created = None;
        if !fits {
            if let Some(open) = queue.batches.back_mut().filter(|b| !b.closed) {
                open.closed = true;
                queue.last_shape = open.shape();
            }
            let shape = BatchShape {
                bytes: queue.last_shape.bytes.min(batch_size),
                ..queue.last_shape
            };
            queue.batches.push_back(ProducerBatch::with_capacity(
                next_id,
                queues.name.clone(),
                partition,
                now(),
                shape,
                self.exit.clone(),
            ));
            created = Some(next_id);
            wake_sender = true;
        }
        let batch = queue.batches.back_mut().expect("an open batch exists now");
        batch.append(record, record_bytes, delivery);
        if batch.size_bytes() >= batch_size {
            batch.closed = true;
            wake_sender = true;
            queue.last_shape = batch.shape();
        }
        let batch_id = batch.id;
        if keyless {
            queues.sticky = Some((partition, batch_id));
        }
        if let Some(id) = created {
            self.next_batch_id += 1;
            self.incomplete.insert(id);
        }
        Appended {
            partition,
            batch_id,
            wake_sender,
        }
    }

    /// The id of the newest batch so far (0 if none): a flush waits for
    /// every batch up to it.
    pub fn newest_batch_id(&self) -> u64 {
        self.next_batch_id - 1
    }

    /// Whether every batch with an id up to `batch_id` has been reported on.
    pub fn complete_up_to(&self, batch_id: u64) -> bool {
        self.incomplete
            .first()
            .is_none_or(|first| *first > batch_id)
    }

    /// Marks a batch as reported on.
    pub fn mark_complete(&mut self, batch_id: u64) {
        let removed = self.incomplete.remove(&batch_id);
        assert!(removed, "batch {batch_id} completed twice");
    }

    /// Marks every batch as reported on, after the sender died: those it
    /// held reported `SenderStopped` when they were dropped.
    pub fn forget_incomplete(&mut self) {
        assert!(
            self.sender_stopped,
            "only a dead sender leaves batches behind"
        );
        self.incomplete.clear();
    }

    /// Whether nothing is queued anywhere (in-flight batches are not counted).
    pub fn is_empty(&self) -> bool {
        self.topics
            .values()
            .all(|t| t.partitions.iter().all(|p| p.batches.is_empty()))
    }

    /// Whether `batch` (the front of its queue) may be sent at `now`, and if
    /// not yet, when it will be.
    pub fn sendable_at(&self, batch: &ProducerBatch, linger: Duration) -> Instant {
        let ready_at =
            if batch.closed || batch.is_sealed() || self.flushes_in_progress > 0 || self.closing {
                batch.created_at
            } else {
                batch.created_at + linger
            };
        match batch.retry_at {
            Some(retry_at) => retry_at.max(ready_at),
            None => ready_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(value_bytes: usize) -> Record {
        Record {
            key: None,
            value: Some(Bytes::from(vec![1u8; value_bytes])),
            headers: vec![],
            timestamp: 1,
        }
    }

    fn delivery() -> Delivery {
        let (delivery, receiver) = Delivery::channel(1);
        std::mem::forget(receiver);
        delivery
    }

    fn append(acc: &mut Accumulator, partition: Option<i32>, bytes: usize) -> Appended {
        acc.append(
            "t",
            4,
            partition,
            &record(bytes),
            bytes + 36,
            delivery(),
            Instant::now,
        )
    }

    #[test]
    fn records_fill_one_batch_until_batch_size_then_open_another() {
        // Batching by size: 1 KiB batch, 300-byte records -> three per batch, the fourth opens a new one.
        let mut acc = Accumulator::new(1024);
        let ids: Vec<u64> = (0..7)
            .map(|_| append(&mut acc, Some(0), 300).batch_id)
            .collect();
        assert_eq!(ids, [1, 1, 1, 2, 2, 2, 3]);
        let queue = &acc.topics["t"].partitions[0];
        assert_eq!(queue.batches.len(), 3);
        assert!(queue.batches[0].closed && queue.batches[1].closed && !queue.batches[2].closed);
        assert_eq!(queue.batches[0].record_count(), 3);
    }

    #[test]
    fn a_new_batch_has_room_for_as_much_as_the_last_one_without_growing() {
        // 10 KiB batches of 1 KiB records: the second batch's buffers are
        // allocated for the first one's size, not grown record by record.
        let mut acc = Accumulator::new(10 * 1024);
        let first = append(&mut acc, Some(2), 1000).batch_id;
        let queue = &acc.topics["t"].partitions[2];
        let empty = queue.batches[0].capacity().unwrap();
        assert!(empty.bytes < 2048, "nothing known yet: {empty:?}");
        while append(&mut acc, Some(2), 1000).batch_id == first {}
        let queue = &acc.topics["t"].partitions[2];
        let full = queue.batches[0].shape();
        assert!(full.records >= 9 && full.bytes > 9 * 1000, "{full:?}");
        assert_eq!(queue.last_shape, full);
        let room = queue.batches[1].capacity().unwrap();
        assert!(room.bytes >= full.bytes, "{room:?} for {full:?}");
        assert!(room.records >= full.records, "{room:?} for {full:?}");
        assert!(
            room.bytes <= 10 * 1024 + 64,
            "capped at batch_size: {room:?}"
        );
    }

    #[test]
    fn open_batch_becomes_sendable_only_after_linger() {
        // Linger: an open batch waits `linger` from its creation; a closed one is sendable at once.
        let mut acc = Accumulator::new(1 << 20);
        append(&mut acc, Some(1), 10);
        let linger = Duration::from_millis(50);
        let batch = &acc.topics["t"].partitions[1].batches[0];
        assert_eq!(acc.sendable_at(batch, linger), batch.created_at + linger);
        acc.flushes_in_progress = 1;
        let batch = &acc.topics["t"].partitions[1].batches[0];
        assert_eq!(
            acc.sendable_at(batch, linger),
            batch.created_at,
            "a flush overrides linger"
        );
        acc.flushes_in_progress = 0;
        acc.topics.get_mut("t").unwrap().partitions[1].batches[0].closed = true;
        let batch = &acc.topics["t"].partitions[1].batches[0];
        assert_eq!(acc.sendable_at(batch, linger), batch.created_at);
    }

    #[test]
    fn retry_backoff_delays_a_batch_past_its_linger() {
        // A batch waiting for a retry is not sendable before retry_at.
        let mut acc = Accumulator::new(1 << 20);
        append(&mut acc, Some(0), 10);
        let later = Instant::now() + Duration::from_secs(5);
        let batch = &mut acc.topics.get_mut("t").unwrap().partitions[0].batches[0];
        batch.closed = true;
        batch.retry_at = Some(later);
        let batch = &acc.topics["t"].partitions[0].batches[0];
        assert_eq!(acc.sendable_at(batch, Duration::ZERO), later);
    }

    #[test]
    fn keyless_records_stick_to_a_partition_until_its_batch_closes() {
        // KIP-480: the sticky partition holds while its batch is open, then moves elsewhere.
        let mut acc = Accumulator::new(1024);
        let a = append(&mut acc, None, 300);
        for _ in 0..2 {
            let next = append(&mut acc, None, 300);
            assert_eq!((next.partition, next.batch_id), (a.partition, a.batch_id));
        }
        // The batch is now full for another 300-byte record.
        let b = append(&mut acc, None, 300);
        assert_ne!(
            b.partition, a.partition,
            "a full sticky batch moves keyless records to another partition"
        );
        assert_ne!(a.batch_id, b.batch_id);
        assert_eq!(append(&mut acc, None, 300).partition, b.partition);
    }

    #[test]
    fn flush_target_is_complete_once_every_older_batch_is() {
        // complete_up_to(n) holds exactly when no batch with id <= n is outstanding.
        let mut acc = Accumulator::new(100);
        append(&mut acc, Some(0), 200);
        append(&mut acc, Some(1), 200);
        let target = acc.newest_batch_id();
        append(&mut acc, Some(2), 200);
        assert!(!acc.complete_up_to(target));
        acc.mark_complete(2);
        assert!(!acc.complete_up_to(target));
        acc.mark_complete(1);
        assert!(
            acc.complete_up_to(target),
            "batch 3 is newer than the flush"
        );
        assert!(!acc.complete_up_to(3));
    }

    #[test]
    fn retries_go_back_in_sequence_order_ahead_of_new_batches() {
        // A retried batch lands before higher sequences and unsequenced batches.
        let mut queue = PartitionQueue::new();
        let now = Instant::now();
        let identity = crate::producer::ProducerIdentity {
            producer_id: 1,
            producer_epoch: 0,
        };
        let batch = |id: u64, position: i64| {
            let mut b = ProducerBatch::new(id, Arc::from("t"), 0, now);
            b.closed = true;
            if position >= 0 {
                b.assign_sequence(identity, position);
            }
            b
        };
        queue.batches.push_back(batch(5, 20));
        queue.batches.push_back(batch(6, -1));
        queue.reinsert_for_retry(batch(4, 10));
        queue.reinsert_for_retry(batch(7, 30));
        let order: Vec<u64> = queue.batches.iter().map(|b| b.id).collect();
        assert_eq!(order, [4, 5, 7, 6]);
    }
}
