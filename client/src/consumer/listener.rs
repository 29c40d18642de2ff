//! The rebalance listener: callbacks `poll` makes when partitions are taken
//! away from or given to this consumer, from the application's own task,
//! so it can commit (or store) its progress before a partition moves on,
//! and position a partition it receives.
//!
//! The callbacks are synchronous; the [`RebalanceContext`] they get reads
//! and moves positions, and queues a commit that the consumer performs (and
//! waits for) as soon as the callback returns, before the partitions are
//! given up.

use std::collections::BTreeMap;

use crate::consumer::record::{OffsetAndMetadata, TopicPartition};
use crate::consumer::state::AssignmentState;

/// Callbacks on rebalances, called from within `poll` (and `close`,
/// `unsubscribe`).
///
/// - `on_partitions_revoked`: the partitions are still assigned and their
///   positions readable; a commit queued here completes before they go.
///   With the eager protocol every partition is revoked at the start of a
///   rebalance; with the cooperative one only those that move.
/// - `on_partitions_assigned`: the partitions are assigned; `seek` here to
///   start from offsets stored elsewhere. With the cooperative protocol only
///   the newly added partitions are listed.
/// - `on_partitions_lost`: the member lost its generation (session expired,
///   fenced): the partitions may already belong to someone else, and a
///   commit cannot succeed. The default calls `on_partitions_revoked`, as the
///   Java client does; commits queued from it are dropped.
pub trait RebalanceListener: Send {
    /// Called before the consumer gives `partitions` up in a rebalance (commit their offsets here).
    fn on_partitions_revoked(
        &mut self,
        _consumer: &mut RebalanceContext<'_>,
        _partitions: &[TopicPartition],
    ) {
    }

    /// Called once the consumer got `partitions` in a rebalance, before their records are fetched (seek here).
    fn on_partitions_assigned(
        &mut self,
        _consumer: &mut RebalanceContext<'_>,
        _partitions: &[TopicPartition],
    ) {
    }

    /// Called when the consumer lost `partitions` without a rebalance to give them up in (its membership expired); see the trait's docs.
    fn on_partitions_lost(
        &mut self,
        consumer: &mut RebalanceContext<'_>,
        partitions: &[TopicPartition],
    ) {
        self.on_partitions_revoked(consumer, partitions);
    }
}

/// What a rebalance callback may do with the consumer.
pub struct RebalanceContext<'a> {
    pub(crate) assignment: &'a mut AssignmentState,
    pub(crate) commit: Option<BTreeMap<TopicPartition, OffsetAndMetadata>>,
}

impl<'a> RebalanceContext<'a> {
    pub(crate) fn new(assignment: &'a mut AssignmentState) -> Self {
        RebalanceContext {
            assignment,
            commit: None,
        }
    }

    /// Every partition assigned right now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment.partitions()
    }

    /// The offset of the next record `poll` would return for `partition`.
    pub fn position(&self, partition: &TopicPartition) -> Option<i64> {
        self.assignment
            .get(partition)
            .and_then(|s| s.position)
            .map(|p| p.offset)
    }

    /// Moves the position of an assigned partition (ignored for others).
    pub fn seek(&mut self, partition: &TopicPartition, offset: i64) {
        if let Some(state) = self.assignment.get_mut(partition) {
            state.seek(offset);
        }
    }

    /// Queues a commit of `offsets`, performed when the callback returns
    /// (replacing an earlier one queued by the same callback).
    pub fn commit(&mut self, offsets: BTreeMap<TopicPartition, OffsetAndMetadata>) {
        self.commit = Some(offsets);
    }

    /// Queues a commit of the positions of `partitions` (what `poll` has
    /// returned of them).
    pub fn commit_positions(&mut self, partitions: &[TopicPartition]) {
        self.commit = Some(self.assignment.positions_of(partitions));
    }
}
