//! Partition reassignment decisions (AlterPartitionReassignments), as
//! Kafka's KRaft controller makes them: a reassignment to target replicas
//! `T` of a partition with replicas `R` sets the replicas to `T` followed by
//! `R - T`, and records which replicas are being added (`T - R`) and
//! removed (`R - T`). The added replicas start as followers and catch up;
//! once every target replica is in the ISR the reassignment completes: the
//! replicas become `T`, the removed ones leave the ISR, and if the leader is
//! among them the first target replica in the ISR leads. Cancelling goes
//! back to `R`.

use std::collections::BTreeSet;

use protocol::ErrorCode;
use uuid::Uuid;

use crate::ids::BrokerId;
use crate::metadata::{MetadataImage, MetadataRecord, PartitionRegistration, Reassignment};

/// What a partition is asked to do: move to these replicas, or cancel (`None`).
pub type Request = Option<Vec<BrokerId>>;

/// The records for one partition's request (reassignment start, or
/// cancellation, and its completion if it is complete at once), or why not.
pub fn alter(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    request: &Request,
) -> Result<Vec<MetadataRecord>, (ErrorCode, String)> {
    let topic = image.topic(topic).ok_or((
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
        "no such topic".to_string(),
    ))?;
    let registration = topic.partition(partition).ok_or((
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
        "no such partition".to_string(),
    ))?;
    let ongoing = image.reassignment(topic.id, partition);
    let Some(target) = request else {
        let ongoing = ongoing.ok_or((
            ErrorCode::NO_REASSIGNMENT_IN_PROGRESS,
            "no reassignment of this partition is in progress".to_string(),
        ))?;
        return Ok(cancel(image, topic.id, partition, registration, ongoing));
    };
    let distinct: BTreeSet<BrokerId> = target.iter().copied().collect();
    if target.is_empty() || distinct.len() != target.len() {
        return Err((
            ErrorCode::INVALID_REPLICA_ASSIGNMENT,
            "the target replicas must be distinct and at least one".to_string(),
        ));
    }
    if let Some(unknown) = target.iter().find(|b| image.broker(**b).is_none()) {
        return Err((
            ErrorCode::INVALID_REPLICA_ASSIGNMENT,
            format!("broker {unknown} is not registered"),
        ));
    }
    let current = &registration.replicas;
    // The replicas before any reassignment: a new target replaces the one in
    // progress, measured from where the partition started, so that a later
    // cancel still goes back there.
    let original: Vec<BrokerId> = current
        .iter()
        .copied()
        .filter(|r| ongoing.is_none_or(|o| !o.adding.contains(r)))
        .collect();
    if ongoing.is_none() && *target == *current {
        return Ok(Vec::new());
    }
    // Brokers the replaced reassignment was adding that the new target does
    // not want: neither original nor target, they leave at once.
    let dropped: Vec<BrokerId> = current
        .iter()
        .copied()
        .filter(|r| !original.contains(r) && !target.contains(r))
        .collect();
    let adding: Vec<BrokerId> = target
        .iter()
        .copied()
        .filter(|b| !original.contains(b))
        .collect();
    let removing: Vec<BrokerId> = current
        .iter()
        .copied()
        .filter(|b| !target.contains(b) && !dropped.contains(b))
        .collect();
    let replicas: Vec<BrokerId> = target.iter().chain(removing.iter()).copied().collect();
    let (leader, isr) = without(image, registration, &replicas, &dropped);
    let reassignment = Reassignment { adding, removing };
    let in_progress = !(reassignment.adding.is_empty() && reassignment.removing.is_empty());
    let mut records = vec![MetadataRecord::PartitionChange {
        topic_id: topic.id,
        partition,
        leader: (leader != registration.leader).then_some(leader),
        isr: (isr != registration.isr).then_some(isr.clone()),
        replicas: Some(replicas.clone()),
    }];
    if in_progress || ongoing.is_some() {
        records.push(MetadataRecord::Reassignment {
            topic_id: topic.id,
            partition,
            reassignment: in_progress.then(|| reassignment.clone()),
        });
    }
    if in_progress {
        let started = PartitionRegistration {
            replicas,
            isr,
            leader,
            ..registration.clone()
        };
        records.extend(complete_if_ready(
            image,
            topic.id,
            partition,
            &started,
            &reassignment,
        ));
    }
    Ok(records)
}

/// The records completing every reassignment in `image` that is ready:
/// all of its target replicas are in the ISR. For after an ISR change.
pub fn completions(image: &MetadataImage) -> Vec<MetadataRecord> {
    image
        .reassignments()
        .filter_map(|((topic_id, partition), reassignment)| {
            let registration = image.topic_by_id(*topic_id)?.partition(*partition)?;
            Some(complete_if_ready(
                image,
                *topic_id,
                *partition,
                registration,
                reassignment,
            ))
        })
        .flatten()
        .collect()
}

fn complete_if_ready(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    registration: &PartitionRegistration,
    reassignment: &Reassignment,
) -> Vec<MetadataRecord> {
    let target: Vec<BrokerId> = registration
        .replicas
        .iter()
        .copied()
        .filter(|r| !reassignment.removing.contains(r))
        .collect();
    if !target.iter().all(|r| registration.isr.contains(r)) {
        return Vec::new();
    }
    finish(
        image,
        topic_id,
        partition,
        registration,
        target,
        &reassignment.removing,
    )
}

fn cancel(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    registration: &PartitionRegistration,
    ongoing: &Reassignment,
) -> Vec<MetadataRecord> {
    let original: Vec<BrokerId> = registration
        .replicas
        .iter()
        .copied()
        .filter(|r| !ongoing.adding.contains(r))
        .collect();
    finish(
        image,
        topic_id,
        partition,
        registration,
        original,
        &ongoing.adding,
    )
}

/// Records that leave `replicas` as the partition's replicas, drop `gone`
/// from its ISR, move the leadership off a gone leader, and end the reassignment.
fn finish(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    registration: &PartitionRegistration,
    replicas: Vec<BrokerId>,
    gone: &[BrokerId],
) -> Vec<MetadataRecord> {
    let (leader, isr) = without(image, registration, &replicas, gone);
    vec![
        MetadataRecord::PartitionChange {
            topic_id,
            partition,
            leader: (leader != registration.leader).then_some(leader),
            isr: (isr != registration.isr).then_some(isr),
            replicas: Some(replicas),
        },
        MetadataRecord::Reassignment {
            topic_id,
            partition,
            reassignment: None,
        },
    ]
}

/// The partition's leader and ISR once the brokers `gone` leave it and its
/// replicas become `replicas`: the leader stays unless it left, else the
/// first replica in the ISR on a live broker leads (none if there is none).
fn without(
    image: &MetadataImage,
    registration: &PartitionRegistration,
    replicas: &[BrokerId],
    gone: &[BrokerId],
) -> (BrokerId, Vec<BrokerId>) {
    let isr: Vec<BrokerId> = registration
        .isr
        .iter()
        .copied()
        .filter(|r| !gone.contains(r))
        .collect();
    let leader = if replicas.contains(&registration.leader) && isr.contains(&registration.leader) {
        registration.leader
    } else {
        replicas
            .iter()
            .copied()
            .find(|r| isr.contains(r) && image.broker(*r).is_some_and(|b| !b.fenced))
            .unwrap_or(BrokerId::NONE)
    };
    let isr = if isr.is_empty() {
        // Nobody left in sync: keep the ISR as it was, as fencing does, so
        // that the last holders of the data stay the ones eligible.
        registration.isr.clone()
    } else {
        isr
    };
    (leader, isr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Offset;
    use crate::metadata::Endpoint;

    const TOPIC: Uuid = Uuid::from_u128(9);

    fn ids(brokers: &[i32]) -> Vec<BrokerId> {
        brokers.iter().map(|b| BrokerId(*b)).collect()
    }

    /// Brokers 1..=5, topic "t" with one partition on 1, 2, 3 (all in sync, 1 leads).
    fn image() -> MetadataImage {
        let mut records: Vec<MetadataRecord> = (1..=5)
            .map(|id| MetadataRecord::RegisterBroker {
                id: BrokerId(id),
                incarnation: Uuid::from_u128(id as u128),
                endpoints: vec![Endpoint {
                    name: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: 9000 + id as u16,
                }],
                rack: None,
                fenced: false,
            })
            .collect();
        records.push(MetadataRecord::Topic {
            name: "t".into(),
            id: TOPIC,
        });
        records.push(MetadataRecord::Partition {
            topic_id: TOPIC,
            partition: 0,
            registration: PartitionRegistration::new(ids(&[1, 2, 3])),
        });
        apply(&MetadataImage::empty(), &records)
    }

    fn apply(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
        let (next, errors) = image.apply(Offset(image.offset().0 + 1), records);
        assert!(errors.is_empty(), "{errors:?}");
        next
    }

    fn registration(image: &MetadataImage) -> PartitionRegistration {
        image.topic("t").unwrap().partition(0).unwrap().clone()
    }

    fn set_isr(image: &MetadataImage, isr: &[i32]) -> MetadataImage {
        apply(
            image,
            &[MetadataRecord::PartitionChange {
                topic_id: TOPIC,
                partition: 0,
                leader: None,
                isr: Some(ids(isr)),
                replicas: None,
            }],
        )
    }

    #[test]
    fn a_reassignment_adds_the_new_replica_first_and_drops_the_old_once_it_is_in_sync() {
        // 1, 2, 3 -> 4, 2, 3: 4 joins and catches up; then 1 (the leader) goes and 4 leads.
        let image = image();
        let records = alter(&image, "t", 0, &Some(ids(&[4, 2, 3]))).unwrap();
        let moving = apply(&image, &records);
        assert_eq!(registration(&moving).replicas, ids(&[4, 2, 3, 1]));
        assert_eq!(
            moving.reassignment(TOPIC, 0),
            Some(&Reassignment {
                adding: ids(&[4]),
                removing: ids(&[1]),
            })
        );
        assert!(completions(&moving).is_empty(), "4 is not in sync yet");
        let caught_up = set_isr(&moving, &[1, 2, 3, 4]);
        let done = apply(&caught_up, &completions(&caught_up));
        let p = registration(&done);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (ids(&[4, 2, 3]), ids(&[2, 3, 4]), BrokerId(4))
        );
        assert!(done.reassignment(TOPIC, 0).is_none());
    }

    #[test]
    fn cancelling_goes_back_to_the_original_replicas() {
        // The added replica leaves the replicas and the ISR; the leader stays.
        let image = image();
        let moving = apply(
            &image,
            &alter(&image, "t", 0, &Some(ids(&[4, 2, 3]))).unwrap(),
        );
        let caught_up = set_isr(&moving, &[1, 2, 4]);
        let cancelled = apply(&caught_up, &alter(&caught_up, "t", 0, &None).unwrap());
        let p = registration(&cancelled);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (ids(&[2, 3, 1]), ids(&[1, 2]), BrokerId(1))
        );
        assert!(cancelled.reassignment(TOPIC, 0).is_none());
        assert_eq!(
            alter(&cancelled, "t", 0, &None).unwrap_err().0,
            ErrorCode::NO_REASSIGNMENT_IN_PROGRESS
        );
    }

    #[test]
    fn a_shrink_whose_targets_are_in_sync_completes_at_once_and_bad_targets_are_refused() {
        // 1, 2, 3 -> 2, 3 needs no catching up; unknown or repeated brokers are refused.
        let image = image();
        let done = apply(&image, &alter(&image, "t", 0, &Some(ids(&[2, 3]))).unwrap());
        let p = registration(&done);
        assert_eq!((p.replicas.clone(), p.leader), (ids(&[2, 3]), BrokerId(2)));
        assert!(done.reassignment(TOPIC, 0).is_none());
        for bad in [ids(&[2, 2]), ids(&[7]), Vec::new()] {
            assert_eq!(
                alter(&image, "t", 0, &Some(bad)).unwrap_err().0,
                ErrorCode::INVALID_REPLICA_ASSIGNMENT
            );
        }
    }

    #[test]
    fn a_new_target_replaces_the_one_in_progress_and_drops_the_unwanted_newcomer() {
        // 1, 2, 3 -> 4, 2, 3 is under way when the target becomes 5, 2, 3:
        // 4 (neither original nor wanted) leaves at once, 5 is added, 1 still
        // goes once 5 is in sync.
        let image = image();
        let moving = apply(
            &image,
            &alter(&image, "t", 0, &Some(ids(&[4, 2, 3]))).unwrap(),
        );
        let four_in_sync = set_isr(&moving, &[1, 2, 3, 4]);
        // The completion of 4's move is not applied: the new target comes first.
        let replaced = apply(
            &four_in_sync,
            &alter(&four_in_sync, "t", 0, &Some(ids(&[5, 2, 3]))).unwrap(),
        );
        let p = registration(&replaced);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (ids(&[5, 2, 3, 1]), ids(&[1, 2, 3]), BrokerId(1))
        );
        assert_eq!(
            replaced.reassignment(TOPIC, 0),
            Some(&Reassignment {
                adding: ids(&[5]),
                removing: ids(&[1]),
            })
        );
        assert!(completions(&replaced).is_empty(), "5 is not in sync yet");
        let caught_up = set_isr(&replaced, &[1, 2, 3, 5]);
        let done = apply(&caught_up, &completions(&caught_up));
        let p = registration(&done);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (ids(&[5, 2, 3]), ids(&[2, 3, 5]), BrokerId(5))
        );
        assert!(done.reassignment(TOPIC, 0).is_none());
    }

    #[test]
    fn after_a_replacement_cancel_and_the_original_target_go_back_where_the_partition_started() {
        let image = image();
        let first = apply(
            &image,
            &alter(&image, "t", 0, &Some(ids(&[4, 2, 3]))).unwrap(),
        );
        let second = apply(
            &first,
            &alter(&first, "t", 0, &Some(ids(&[4, 5, 3]))).unwrap(),
        );
        assert_eq!(
            second.reassignment(TOPIC, 0),
            Some(&Reassignment {
                adding: ids(&[4, 5]),
                removing: ids(&[2, 1]),
            })
        );
        let cancelled = apply(&second, &alter(&second, "t", 0, &None).unwrap());
        let p = registration(&cancelled);
        assert_eq!(
            (p.replicas.clone(), p.leader),
            (ids(&[3, 2, 1]), BrokerId(1))
        );
        assert!(cancelled.reassignment(TOPIC, 0).is_none());
        // Asking for the original replicas ends the reassignment the same way,
        // in the order asked for.
        let back = apply(
            &second,
            &alter(&second, "t", 0, &Some(ids(&[1, 2, 3]))).unwrap(),
        );
        let p = registration(&back);
        assert_eq!(
            (p.replicas.clone(), p.leader),
            (ids(&[1, 2, 3]), BrokerId(1))
        );
        assert!(back.reassignment(TOPIC, 0).is_none());
    }

    #[test]
    fn a_replacement_that_drops_the_leader_hands_over_to_an_in_sync_replica() {
        // 4 was added, caught up and became leader; the new target drops it.
        let image = image();
        let moving = apply(
            &image,
            &alter(&image, "t", 0, &Some(ids(&[4, 2, 3]))).unwrap(),
        );
        let led_by_four = apply(
            &moving,
            &[MetadataRecord::PartitionChange {
                topic_id: TOPIC,
                partition: 0,
                leader: Some(BrokerId(4)),
                isr: Some(ids(&[4, 2, 3, 1])),
                replicas: None,
            }],
        );
        let replaced = apply(
            &led_by_four,
            &alter(&led_by_four, "t", 0, &Some(ids(&[2, 3, 5]))).unwrap(),
        );
        let p = registration(&replaced);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (ids(&[2, 3, 5, 1]), ids(&[2, 3, 1]), BrokerId(2))
        );
    }
}
