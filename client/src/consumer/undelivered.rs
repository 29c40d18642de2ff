//! Records taken from the fetch buffer but not yet handed to the
//! application.
//!
//! `poll` collects its records (moving the partitions' positions past them)
//! before its last await, a yield to the runtime. Were the records only on
//! the stack of `poll`'s future, dropping that future there would drop
//! them with their positions already moved, and the next commit would skip
//! them. They wait here instead, and the next `poll` (or the record
//! stream) hands them out before anything else.
//!
//! Until a record is handed out, its partition's *delivered* position
//! stays before it: commits and `Consumer::position` use that. A call that
//! changes the assignment or the positions (`seek`, `pause`, `assign`,
//! `unsubscribe`, `close`) first puts every partition back at its
//! delivered position and drops the records waiting here (a rewind); the
//! fetched data beyond is then stale, and fetched again.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::consumer::record::{ConsumerRecord, TopicPartition};
use crate::consumer::state::Position;

/// One partition with records waiting.
#[derive(Debug)]
struct Waiting {
    topic: Arc<str>,
    partition: i32,
    /// The position before its first waiting record: where it goes back to.
    delivered: Position,
    /// How many of its records wait.
    records: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Undelivered {
    records: VecDeque<ConsumerRecord>,
    /// The partitions with records in `records`; few, so a vector.
    partitions: Vec<Waiting>,
}

impl Undelivered {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Keeps the records one collect took; `before` holds the position of
    /// each of their partitions before them.
    pub fn keep(&mut self, records: Vec<ConsumerRecord>, before: Vec<(TopicPartition, Position)>) {
        assert!(
            self.records.is_empty() && self.partitions.is_empty(),
            "records are collected only once the last ones were handed out"
        );
        for record in &records {
            match self
                .partitions
                .iter_mut()
                .find(|w| w.partition == record.partition && w.topic == record.topic)
            {
                Some(waiting) => waiting.records += 1,
                None => {
                    let delivered = before
                        .iter()
                        .find(|(tp, _)| {
                            tp.partition == record.partition && tp.topic == *record.topic
                        })
                        .map(|(_, position)| *position)
                        .expect("a collected partition's earlier position is known");
                    assert!(
                        delivered.offset <= record.offset,
                        "{}-{}: position {} past its first collected record {}",
                        record.topic,
                        record.partition,
                        delivered.offset,
                        record.offset
                    );
                    self.partitions.push(Waiting {
                        topic: record.topic.clone(),
                        partition: record.partition,
                        delivered,
                        records: 1,
                    });
                }
            }
        }
        self.records = VecDeque::from(records);
    }

    /// Hands out every waiting record.
    pub fn take_all(&mut self) -> Vec<ConsumerRecord> {
        self.partitions.clear();
        Vec::from(std::mem::take(&mut self.records))
    }

    /// Hands out the oldest waiting record.
    pub fn pop(&mut self) -> Option<ConsumerRecord> {
        let record = self.records.pop_front()?;
        let index = self
            .partitions
            .iter()
            .position(|w| w.partition == record.partition && w.topic == record.topic)
            .expect("a waiting record's partition is counted");
        let waiting = &mut self.partitions[index];
        waiting.records -= 1;
        if waiting.records == 0 {
            // Its partition's position (which may be past control batches
            // or compaction gaps after the record) is delivered now.
            self.partitions.swap_remove(index);
        } else {
            waiting.delivered = Position {
                offset: record.offset + 1,
                leader_epoch: record.leader_epoch,
            };
        }
        Some(record)
    }

    /// The delivered position of `tp`, if it has records waiting.
    pub fn position_of(&self, tp: &TopicPartition) -> Option<Position> {
        self.partitions
            .iter()
            .find(|w| w.partition == tp.partition && *w.topic == *tp.topic)
            .map(|w| w.delivered)
    }

    /// Drops the waiting records; returns the delivered position of each of
    /// their partitions, to put it back there.
    pub fn rewind(&mut self) -> Vec<(TopicPartition, Position)> {
        self.records.clear();
        self.partitions
            .drain(..)
            .map(|w| (TopicPartition::new(&*w.topic, w.partition), w.delivered))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::record::TimestampType;

    fn record(topic: &Arc<str>, partition: i32, offset: i64) -> ConsumerRecord {
        ConsumerRecord {
            topic: topic.clone(),
            partition,
            offset,
            timestamp: 0,
            timestamp_type: TimestampType::CreateTime,
            key: None,
            value: None,
            headers: Vec::new(),
            leader_epoch: Some(3),
        }
    }

    fn at(offset: i64) -> Position {
        Position {
            offset,
            leader_epoch: None,
        }
    }

    #[test]
    fn delivered_position_follows_each_record_handed_out() {
        // A partition stays at its earlier position until its records go, one by one; then it has none here.
        let topic: Arc<str> = Arc::from("t");
        let tp0 = TopicPartition::new("t", 0);
        let tp1 = TopicPartition::new("t", 1);
        let mut undelivered = Undelivered::default();
        undelivered.keep(
            vec![
                record(&topic, 0, 10),
                record(&topic, 1, 4),
                record(&topic, 0, 12),
            ],
            vec![(tp0.clone(), at(9)), (tp1.clone(), at(4))],
        );
        assert_eq!(undelivered.position_of(&tp0), Some(at(9)));
        assert_eq!(undelivered.pop().unwrap().offset, 10);
        assert_eq!(undelivered.position_of(&tp0).unwrap().offset, 11);
        assert_eq!(undelivered.position_of(&tp1), Some(at(4)));
        assert_eq!(undelivered.pop().unwrap().offset, 4);
        assert_eq!(undelivered.position_of(&tp1), None);
        let rewound = undelivered.rewind();
        assert_eq!(rewound.len(), 1);
        assert_eq!(rewound[0].0, tp0);
        assert_eq!(rewound[0].1.offset, 11);
        assert!(undelivered.is_empty());
        assert_eq!(undelivered.position_of(&tp0), None);
    }

    #[test]
    fn take_all_hands_out_everything_in_order() {
        // Records come out in the order they were collected, and no partition is left waiting.
        let topic: Arc<str> = Arc::from("t");
        let tp0 = TopicPartition::new("t", 0);
        let mut undelivered = Undelivered::default();
        undelivered.keep(
            vec![record(&topic, 0, 1), record(&topic, 0, 2)],
            vec![(tp0.clone(), at(0))],
        );
        let offsets: Vec<i64> = undelivered.take_all().iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [1, 2]);
        assert!(undelivered.is_empty());
        assert_eq!(undelivered.position_of(&tp0), None);
        assert!(undelivered.rewind().is_empty());
    }
}
