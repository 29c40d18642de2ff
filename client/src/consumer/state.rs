//! The consumer's assignment: per partition its position (the offset of the
//! next record `poll` returns), whether it is paused, and what must happen
//! before it can be fetched (look up the committed offset, reset by
//! `auto_offset_reset`, wait out a retry backoff).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::time::Instant;

use crate::consumer::record::{OffsetAndMetadata, TopicPartition};

/// The offset of the next record to return, with the leader epoch of the
/// record before it (for commits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub offset: i64,
    pub leader_epoch: Option<i32>,
}

/// Where a reset moves the position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
}

impl OffsetReset {
    /// The ListOffsets timestamp that asks for this offset.
    pub fn list_offsets_timestamp(self) -> i64 {
        match self {
            OffsetReset::Earliest => -2,
            OffsetReset::Latest => -1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PartitionState {
    pub topic: Arc<str>,
    pub position: Option<Position>,
    pub paused: bool,
    /// The committed offset must be looked up (group consumers, on assignment).
    pub awaiting_committed: bool,
    /// A reset to run (ListOffsets) before fetching.
    pub reset: Option<OffsetReset>,
    /// No fetch or offset lookup before this (backoff after an error).
    pub retry_at: Option<Instant>,
    pub high_watermark: Option<i64>,
}

impl PartitionState {
    fn new(topic: &str, awaiting_committed: bool, reset: Option<OffsetReset>) -> Self {
        PartitionState {
            topic: Arc::from(topic),
            position: None,
            paused: false,
            awaiting_committed,
            reset,
            retry_at: None,
            high_watermark: None,
        }
    }

    /// Ready to fetch: a known position, not paused, nothing pending.
    pub fn fetchable(&self, now: Instant) -> bool {
        self.position.is_some()
            && !self.paused
            && !self.awaiting_committed
            && self.reset.is_none()
            && self.retry_at.is_none_or(|at| at <= now)
    }

    pub fn seek(&mut self, offset: i64) {
        self.position = Some(Position {
            offset,
            leader_epoch: None,
        });
        self.awaiting_committed = false;
        self.reset = None;
        self.retry_at = None;
    }
}

/// The assigned partitions, ordered.
#[derive(Debug, Clone, Default)]
pub struct AssignmentState {
    partitions: BTreeMap<TopicPartition, PartitionState>,
}

impl AssignmentState {
    pub fn get(&self, tp: &TopicPartition) -> Option<&PartitionState> {
        self.partitions.get(tp)
    }

    pub fn get_mut(&mut self, tp: &TopicPartition) -> Option<&mut PartitionState> {
        self.partitions.get_mut(tp)
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, &PartitionState)> {
        self.partitions.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&TopicPartition, &mut PartitionState)> {
        self.partitions.iter_mut()
    }

    /// Adds partitions (those already assigned keep their state). New ones
    /// first look up their committed offset when `committed` is set (the
    /// reset policy applies after that, if nothing is committed), else
    /// start with `reset` pending.
    pub fn add(
        &mut self,
        partitions: &[TopicPartition],
        committed: bool,
        reset: Option<OffsetReset>,
    ) {
        let reset = if committed { None } else { reset };
        for tp in partitions {
            self.partitions
                .entry(tp.clone())
                .or_insert_with(|| PartitionState::new(&tp.topic, committed, reset));
        }
    }

    pub fn remove(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.partitions.remove(tp);
        }
    }

    pub fn clear(&mut self) {
        self.partitions.clear();
    }

    /// What a commit of the current positions sends: one entry per
    /// partition with a position.
    #[cfg(test)]
    pub fn positions(&self) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        self.positions_of(self.partitions.keys())
    }

    pub fn positions_of<'a>(
        &self,
        partitions: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        partitions
            .into_iter()
            .filter_map(|tp| {
                let position = self.partitions.get(tp)?.position?;
                Some((
                    tp.clone(),
                    OffsetAndMetadata {
                        offset: position.offset,
                        leader_epoch: position.leader_epoch,
                        metadata: String::new(),
                    },
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partitions_with_a_position_and_nothing_pending_are_fetchable() {
        // Paused, awaiting a committed offset, resetting or backing off: not fetched.
        let now = Instant::now();
        let tp = TopicPartition::new("t", 0);
        let mut state = AssignmentState::default();
        state.add(std::slice::from_ref(&tp), true, None);
        let partition = state.get_mut(&tp).unwrap();
        assert!(!partition.fetchable(now));
        partition.seek(5);
        assert!(partition.fetchable(now));
        partition.paused = true;
        assert!(!partition.fetchable(now));
        partition.paused = false;
        partition.retry_at = Some(now + std::time::Duration::from_secs(1));
        assert!(!partition.fetchable(now));
        partition.seek(7);
        assert!(partition.fetchable(now), "a seek clears the backoff");
        assert_eq!(state.positions()[&tp].offset, 7);
    }

    #[test]
    fn adding_an_assigned_partition_again_keeps_its_position() {
        // A cooperative rebalance re-lists kept partitions; their positions stay.
        let tp = TopicPartition::new("t", 1);
        let mut state = AssignmentState::default();
        state.add(
            std::slice::from_ref(&tp),
            false,
            Some(OffsetReset::Earliest),
        );
        state.get_mut(&tp).unwrap().seek(42);
        state.add(std::slice::from_ref(&tp), true, None);
        assert_eq!(state.get(&tp).unwrap().position.unwrap().offset, 42);
        state.remove(std::slice::from_ref(&tp));
        assert!(state.is_empty());
    }
}
