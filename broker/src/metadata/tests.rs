//! The image changes only by applying records, and the delta between two
//! images names exactly what changed.

use uuid::Uuid;

use super::*;
use crate::ids::{BrokerId, LeaderEpoch, PartitionEpoch};

fn topic_records(name: &str, id: Uuid, replicas: &[&[i32]]) -> Vec<MetadataRecord> {
    let mut records = vec![MetadataRecord::Topic {
        name: name.to_string(),
        id,
    }];
    for (index, replicas) in replicas.iter().enumerate() {
        records.push(MetadataRecord::Partition {
            topic_id: id,
            partition: index as i32,
            registration: PartitionRegistration::new(
                replicas.iter().map(|b| BrokerId(*b)).collect(),
            ),
        });
    }
    records
}

fn register(id: i32) -> MetadataRecord {
    MetadataRecord::RegisterBroker {
        id: BrokerId(id),
        incarnation: Uuid::new_v4(),
        endpoints: vec![Endpoint {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9000 + id as u16,
        }],
        rack: None,
        fenced: true,
    }
}

#[test]
fn a_topic_and_its_partitions_appear_after_their_records() {
    // Topic then partition records build the topic; lookups by name and id agree.
    let id = Uuid::new_v4();
    let (image, errors) =
        MetadataImage::empty().apply(Offset(0), &topic_records("t", id, &[&[1, 2], &[2, 1]]));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(image.offset(), Offset(0));
    let topic = image.topic("t").unwrap();
    assert_eq!(image.topic_by_id(id).unwrap().name, "t");
    assert_eq!(topic.partitions.len(), 2);
    assert_eq!(topic.partition(1).unwrap().leader, BrokerId(2));
    assert_eq!(
        topic.partition(1).unwrap().isr,
        vec![BrokerId(2), BrokerId(1)]
    );
    assert!(topic.partition(2).is_none());
}

#[test]
fn a_leader_change_bumps_both_epochs_and_an_isr_change_only_the_partition_epoch() {
    // Leader epoch counts leaders; partition epoch counts every change.
    let id = Uuid::new_v4();
    let (image, _) =
        MetadataImage::empty().apply(Offset(0), &topic_records("t", id, &[&[1, 2, 3]]));
    let shrink = MetadataRecord::PartitionChange {
        topic_id: id,
        partition: 0,
        leader: None,
        isr: Some(vec![BrokerId(1), BrokerId(2)]),
        replicas: None,
    };
    let (image, _) = image.apply(Offset(2), &[shrink]);
    let p = image.topic("t").unwrap().partition(0).unwrap().clone();
    assert_eq!(
        (p.leader_epoch, p.partition_epoch),
        (LeaderEpoch(0), PartitionEpoch(1))
    );
    let elect = MetadataRecord::PartitionChange {
        topic_id: id,
        partition: 0,
        leader: Some(BrokerId(2)),
        isr: None,
        replicas: None,
    };
    let (image, _) = image.apply(Offset(3), &[elect]);
    let p = image.topic("t").unwrap().partition(0).unwrap();
    assert_eq!(p.leader, BrokerId(2));
    assert_eq!(
        (p.leader_epoch, p.partition_epoch),
        (LeaderEpoch(1), PartitionEpoch(2))
    );
}

#[test]
fn records_that_do_not_fit_are_reported_and_skipped() {
    // A partition of an unknown topic, a duplicate topic, a gap in partition numbers.
    let id = Uuid::new_v4();
    let (image, _) = MetadataImage::empty().apply(Offset(0), &topic_records("t", id, &[&[1]]));
    let bad = vec![
        MetadataRecord::Partition {
            topic_id: Uuid::new_v4(),
            partition: 0,
            registration: PartitionRegistration::new(vec![BrokerId(1)]),
        },
        MetadataRecord::Topic {
            name: "t".into(),
            id: Uuid::new_v4(),
        },
        MetadataRecord::Partition {
            topic_id: id,
            partition: 5,
            registration: PartitionRegistration::new(vec![BrokerId(1)]),
        },
        MetadataRecord::FenceBroker { id: BrokerId(9) },
    ];
    let (next, errors) = image.apply(Offset(2), &bad);
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert_eq!(next.topic("t").unwrap().partitions.len(), 1);
    assert_eq!(next.offset(), Offset(2));
}

#[test]
fn brokers_register_fence_and_unfence() {
    // A broker registers fenced, is live once unfenced, and its epoch is the record's offset.
    let (image, _) = MetadataImage::empty().apply(Offset(10), &[register(1)]);
    let (image, _) = image.apply(Offset(11), &[register(2)]);
    assert_eq!(image.broker(BrokerId(2)).unwrap().epoch, 11);
    assert_eq!(image.live_brokers().count(), 0);
    let (image, _) = image.apply(
        Offset(12),
        &[MetadataRecord::UnfenceBroker { id: BrokerId(1) }],
    );
    let live: Vec<_> = image.live_brokers().map(|b| b.id).collect();
    assert_eq!(live, vec![BrokerId(1)]);
    let (image, _) = image.apply(
        Offset(13),
        &[MetadataRecord::UnregisterBroker { id: BrokerId(1) }],
    );
    assert!(image.broker(BrokerId(1)).is_none());
}

#[test]
fn the_delta_names_exactly_what_changed() {
    // Created and deleted topics, changed partitions and configs, changed brokers; nothing else.
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut records = topic_records("a", a, &[&[1], &[1]]);
    records.extend(topic_records("b", b, &[&[1]]));
    records.push(register(1));
    let (old, _) = MetadataImage::empty().apply(Offset(0), &records);
    let c = Uuid::new_v4();
    let mut changes = vec![
        MetadataRecord::PartitionChange {
            topic_id: a,
            partition: 1,
            leader: None,
            isr: Some(vec![]),
            replicas: None,
        },
        MetadataRecord::TopicConfig {
            topic_id: a,
            key: "retention.ms".into(),
            value: Some("1000".into()),
        },
        MetadataRecord::RemoveTopic { id: b },
        MetadataRecord::UnfenceBroker { id: BrokerId(1) },
    ];
    changes.extend(topic_records("c", c, &[&[1]]));
    let (new, errors) = old.apply(old.offset().next(), &changes);
    assert!(errors.is_empty(), "{errors:?}");
    let delta = MetadataDelta::between(&old, &new);
    let names = |ts: &[Arc<TopicImage>]| ts.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&delta.created_topics), vec!["c"]);
    assert_eq!(names(&delta.deleted_topics), vec!["b"]);
    assert_eq!(names(&delta.changed_configs), vec!["a"]);
    let partitions: Vec<_> = delta
        .partitions
        .iter()
        .map(|p| (p.topic.name.clone(), p.index, p.previous.is_some()))
        .collect();
    assert_eq!(
        partitions,
        vec![("a".into(), 1, true), ("c".into(), 0, false)]
    );
    assert_eq!(delta.changed_brokers, vec![BrokerId(1)]);
    assert!(MetadataDelta::between(&new, &new).is_empty());
}

#[test]
fn record_batches_and_snapshots_round_trip() {
    // What the metadata log and its snapshots store decodes to what was written.
    let id = Uuid::new_v4();
    let mut records = topic_records("t", id, &[&[1, 2], &[2, 1]]);
    records.push(register(1));
    records.push(MetadataRecord::TopicConfig {
        topic_id: id,
        key: "retention.ms".into(),
        value: None,
    });
    let bytes = records::encode_batch(&records);
    assert_eq!(records::decode_batch(&bytes).unwrap(), records);
    for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            records::decode_batch(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let (image, _) = MetadataImage::empty().apply(Offset(7), &records);
    let restored = MetadataImage::from_snapshot(image.to_snapshot());
    assert_eq!(restored.to_snapshot(), image.to_snapshot());
    assert_eq!(restored.topic_by_id(id).unwrap().partitions.len(), 2);
    assert_eq!(restored.offset(), Offset(7));
}

#[test]
fn producer_id_blocks_only_move_forward() {
    // A block committed late never hands out ids below one committed earlier.
    let (image, _) = MetadataImage::empty().apply(
        Offset(0),
        &[MetadataRecord::ProducerIds {
            broker: BrokerId(1),
            next_producer_id: 2000,
        }],
    );
    let (image, _) = image.apply(
        Offset(1),
        &[MetadataRecord::ProducerIds {
            broker: BrokerId(2),
            next_producer_id: 1000,
        }],
    );
    assert_eq!(image.next_producer_id(), 2000);
    let restored = MetadataImage::from_snapshot(image.to_snapshot());
    assert_eq!(restored.next_producer_id(), 2000);
}
