//! Where a new partition's replicas go: spread evenly over the live
//! brokers, each partition led by a different broker in turn, and over
//! racks when brokers have them (`broker.rack`).

use std::collections::BTreeMap;

use crate::ids::BrokerId;

/// The brokers in the order placement walks them: racks alternate (the
/// first broker of each rack, then the second of each, ...), so that
/// consecutive brokers, hence the replicas of one partition, sit on
/// different racks while there are racks left. Brokers without a rack form
/// a rack of their own; without any rack this is the brokers by id.
pub fn rack_alternating(brokers: &[(BrokerId, Option<String>)]) -> Vec<BrokerId> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<BrokerId>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack.entry(rack.as_deref()).or_default().push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort();
    }
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let order: Vec<BrokerId> = (0..deepest)
        .flat_map(|i| by_rack.values().filter_map(move |ids| ids.get(i).copied()))
        .collect();
    assert_eq!(order.len(), brokers.len(), "every broker placed once");
    order
}

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
    fn replicas_of_a_partition_land_on_different_racks() {
        // Two racks of three brokers, factor 2: every partition spans both racks.
        let rack = |r: &str| Some(r.to_string());
        let brokers = [
            (BrokerId(1), rack("a")),
            (BrokerId(2), rack("a")),
            (BrokerId(3), rack("a")),
            (BrokerId(4), rack("b")),
            (BrokerId(5), rack("b")),
            (BrokerId(6), rack("b")),
        ];
        let order = rack_alternating(&brokers);
        assert_eq!(order, [1, 4, 2, 5, 3, 6].map(BrokerId).to_vec());
        let rack_of = |b: BrokerId| brokers.iter().find(|(id, _)| *id == b).unwrap().1.clone();
        for replicas in assign_replicas(&order, 12, 2, 5) {
            assert_ne!(rack_of(replicas[0]), rack_of(replicas[1]), "{replicas:?}");
        }
        let no_racks = [
            (BrokerId(3), None),
            (BrokerId(1), None),
            (BrokerId(2), None),
        ];
        assert_eq!(
            rack_alternating(&no_racks),
            [1, 2, 3].map(BrokerId).to_vec()
        );
    }

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
