//! Newtypes for the integers of cluster metadata that could be swapped by
//! mistake: a broker id is not a leader epoch, and neither is an offset.
//! Each wraps the fixed-width integer Kafka puts on the wire.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A broker's (node's) id, as given by `--node-id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BrokerId(pub i32);

impl BrokerId {
    /// "No broker", Kafka's `-1` (a partition without a leader).
    pub const NONE: BrokerId = BrokerId(-1);

    pub fn is_none(self) -> bool {
        self.0 < 0
    }
}

/// A partition's leader epoch: bumped every time its leader changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaderEpoch(pub i32);

impl LeaderEpoch {
    /// The epoch of a partition's first leader.
    pub const INITIAL: LeaderEpoch = LeaderEpoch(0);
    /// "Unknown", Kafka's `-1` on the wire.
    pub const UNKNOWN: LeaderEpoch = LeaderEpoch(-1);

    pub fn next(self) -> LeaderEpoch {
        LeaderEpoch(self.0.checked_add(1).expect("leader epoch overflow"))
    }
}

/// A partition's epoch: bumped on every change of its leader, ISR or replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionEpoch(pub i32);

impl PartitionEpoch {
    pub const INITIAL: PartitionEpoch = PartitionEpoch(0);

    pub fn next(self) -> PartitionEpoch {
        PartitionEpoch(self.0.checked_add(1).expect("partition epoch overflow"))
    }
}

/// An offset in a log: of a partition, or of the cluster metadata log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Offset(pub i64);

impl Offset {
    /// Before the first record.
    pub const NONE: Offset = Offset(-1);

    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

macro_rules! display_inner {
    ($($ty:ty),*) => {
        $(impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        })*
    };
}
display_inner!(BrokerId, LeaderEpoch, PartitionEpoch, Offset);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_only_move_forward_by_one() {
        // next() is the only way an epoch changes, and it never wraps silently.
        assert_eq!(LeaderEpoch::INITIAL.next(), LeaderEpoch(1));
        assert_eq!(PartitionEpoch(41).next(), PartitionEpoch(42));
        assert!(BrokerId::NONE.is_none() && !BrokerId(0).is_none());
        assert_eq!(Offset::NONE.next(), Offset(0));
    }
}
