//! Where a new partition's replicas go: spread evenly over the live
//! brokers, each partition led by a different broker in turn.

use crate::ids::BrokerId;

/// Replicas for `partitions` partitions of `replication_factor` replicas
/// each over `brokers` (sorted, distinct). Partition `p` starts at broker
/// `(start + p) mod n` and takes the next ones in order, so leaders (the
/// first replicas) rotate over the brokers and no broker holds two replicas
/// of one partition. `start` varies per topic so that small topics do not
/// all lead on the same broker.
pub fn assign_replicas(
    brokers: &[BrokerId],
    partitions: i32,
    replication_factor: usize,
    start: usize,
) -> Vec<Vec<BrokerId>> {
    assert!(
        (1..=brokers.len()).contains(&replication_factor),
        "replication factor {replication_factor} over {} brokers",
        brokers.len()
    );
    let n = brokers.len();
    (0..partitions as usize)
        .map(|p| {
            (0..replication_factor)
                .map(|r| brokers[(start + p + r) % n])
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaders_rotate_and_replicas_are_distinct() {
        // Six partitions of factor 2 over three brokers: each leads two, each holds four.
        let brokers = [BrokerId(1), BrokerId(2), BrokerId(3)];
        let assignment = assign_replicas(&brokers, 6, 2, 1);
        assert_eq!(assignment[0], vec![BrokerId(2), BrokerId(3)]);
        for b in &brokers {
            let leads = assignment.iter().filter(|r| r[0] == *b).count();
            let holds = assignment.iter().filter(|r| r.contains(b)).count();
            assert_eq!((leads, holds), (2, 4), "broker {b}");
        }
        assert!(assignment.iter().all(|r| r[0] != r[1]));
    }
}
