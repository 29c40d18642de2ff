//! AlterPartition decisions: a partition leader proposes a new ISR, made
//! from the partition epoch it knows; the controller commits it only if
//! that epoch is still current (KIP-497), the proposer still leads in the
//! same leader epoch, and every replica it adds is eligible (registered in
//! its current incarnation, unfenced, not shutting down: KIP-903).

use std::collections::BTreeSet;

use protocol::messages::alter_partition_request::PartitionData;
use protocol::messages::{alter_partition_response, AlterPartitionRequest, AlterPartitionResponse};
use protocol::ErrorCode;

use crate::ids::BrokerId;
use crate::metadata::{MetadataImage, MetadataRecord};

/// The records to commit and the answer to give once they are committed.
pub fn alter_partition(
    image: &MetadataImage,
    shutting_down: &BTreeSet<BrokerId>,
    request: &AlterPartitionRequest,
) -> (Vec<MetadataRecord>, AlterPartitionResponse) {
    let proposer = BrokerId(request.broker_id.0);
    let current = image.broker(proposer);
    if current.is_none_or(|b| request.broker_epoch >= 0 && b.epoch != request.broker_epoch) {
        let response =
            AlterPartitionResponse::default().with_error_code(ErrorCode::STALE_BROKER_EPOCH.code());
        return (Vec::new(), response);
    }
    let mut records = Vec::new();
    let mut decided = BTreeSet::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for data in &topic.partitions {
            let answer = alter_partition_response::PartitionData::default()
                .with_partition_index(data.partition_index);
            // One change per partition and request: a second would be made
            // from a partition epoch the first has already moved past.
            if !decided.insert((topic.topic_id, data.partition_index)) {
                partitions.push(answer.with_error_code(ErrorCode::INVALID_UPDATE_VERSION.code()));
                continue;
            }
            match decide(image, shutting_down, proposer, topic.topic_id, data) {
                Ok((record, isr)) => {
                    let registration = image
                        .topic_by_id(topic.topic_id)
                        .and_then(|t| t.partition(data.partition_index))
                        .expect("decided on a known partition");
                    records.push(record);
                    partitions.push(
                        answer
                            .with_leader_id(protocol::messages::BrokerId(registration.leader.0))
                            .with_leader_epoch(registration.leader_epoch.0)
                            .with_isr(
                                isr.iter()
                                    .map(|b| protocol::messages::BrokerId(b.0))
                                    .collect(),
                            )
                            .with_partition_epoch(registration.partition_epoch.next().0),
                    );
                }
                Err(code) => partitions.push(answer.with_error_code(code.code())),
            }
        }
        topics.push(
            alter_partition_response::TopicData::default()
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    (
        records,
        AlterPartitionResponse::default().with_topics(topics),
    )
}

fn decide(
    image: &MetadataImage,
    shutting_down: &BTreeSet<BrokerId>,
    proposer: BrokerId,
    topic_id: uuid::Uuid,
    data: &PartitionData,
) -> Result<(MetadataRecord, Vec<BrokerId>), ErrorCode> {
    let topic = image
        .topic_by_id(topic_id)
        .ok_or(ErrorCode::UNKNOWN_TOPIC_ID)?;
    let registration = topic
        .partition(data.partition_index)
        .ok_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)?;
    if registration.leader != proposer {
        return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER);
    }
    if data.leader_epoch != registration.leader_epoch.0 {
        return Err(ErrorCode::FENCED_LEADER_EPOCH);
    }
    if data.partition_epoch != registration.partition_epoch.0 {
        return Err(ErrorCode::INVALID_UPDATE_VERSION);
    }
    // Version 3 names each member with its broker epoch; earlier ones list ids.
    let proposed: Vec<(BrokerId, i64)> = if data.new_isr_with_epochs.is_empty() {
        data.new_isr.iter().map(|b| (BrokerId(b.0), -1)).collect()
    } else {
        data.new_isr_with_epochs
            .iter()
            .map(|b| (BrokerId(b.broker_id.0), b.broker_epoch))
            .collect()
    };
    let isr: BTreeSet<BrokerId> = proposed.iter().map(|(b, _)| *b).collect();
    if isr.len() != proposed.len()
        || !isr.contains(&proposer)
        || !isr.iter().all(|b| registration.replicas.contains(b))
    {
        return Err(ErrorCode::INVALID_REQUEST);
    }
    for (member, epoch) in &proposed {
        if registration.isr.contains(member) {
            continue;
        }
        let eligible = image.broker(*member).is_some_and(|b| {
            !b.fenced && (*epoch < 0 || b.epoch == *epoch) && !shutting_down.contains(member)
        });
        if !eligible {
            return Err(ErrorCode::INELIGIBLE_REPLICA);
        }
    }
    // Replica order, as Kafka keeps it.
    let isr: Vec<BrokerId> = registration
        .replicas
        .iter()
        .copied()
        .filter(|r| isr.contains(r))
        .collect();
    Ok((
        MetadataRecord::PartitionChange {
            topic_id,
            partition: data.partition_index,
            leader: None,
            isr: Some(isr.clone()),
            replicas: None,
        },
        isr,
    ))
}

#[cfg(test)]
mod tests {
    use protocol::messages::alter_partition_request::{BrokerState, TopicData};
    use uuid::Uuid;

    use super::*;
    use crate::metadata::records::{Endpoint, PartitionRegistration};

    const TOPIC: Uuid = Uuid::from_u128(7);

    /// Brokers 1..=3 (broker 3 fenced when asked), one partition led by 1
    /// with replicas 1, 2, 3 and ISR 1, 2 at partition epoch 1.
    fn image(fence_3: bool) -> MetadataImage {
        let mut records = Vec::new();
        for id in 1..=3 {
            records.push(MetadataRecord::RegisterBroker {
                id: BrokerId(id),
                incarnation: Uuid::from_u128(id as u128),
                endpoints: vec![Endpoint {
                    name: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: 9000 + id as u16,
                }],
                rack: None,
                fenced: false,
            });
        }
        records.push(MetadataRecord::Topic {
            name: "t".into(),
            id: TOPIC,
        });
        records.push(MetadataRecord::Partition {
            topic_id: TOPIC,
            partition: 0,
            registration: PartitionRegistration::new(vec![BrokerId(1), BrokerId(2), BrokerId(3)]),
        });
        let (image, errors) = MetadataImage::empty().apply(crate::ids::Offset(1), &records);
        assert!(errors.is_empty());
        let mut change = vec![MetadataRecord::PartitionChange {
            topic_id: TOPIC,
            partition: 0,
            leader: None,
            isr: Some(vec![BrokerId(1), BrokerId(2)]),
            replicas: None,
        }];
        if fence_3 {
            change.push(MetadataRecord::FenceBroker { id: BrokerId(3) });
        }
        let (image, errors) = image.apply(crate::ids::Offset(2), &change);
        assert!(errors.is_empty());
        image
    }

    fn request(isr: &[i32], partition_epoch: i32) -> AlterPartitionRequest {
        AlterPartitionRequest::default()
            .with_broker_id(protocol::messages::BrokerId(1))
            .with_broker_epoch(1)
            .with_topics(vec![TopicData::default()
                .with_topic_id(TOPIC)
                .with_partitions(vec![PartitionData::default()
                    .with_partition_index(0)
                    .with_leader_epoch(0)
                    .with_partition_epoch(partition_epoch)
                    .with_new_isr_with_epochs(
                        isr.iter()
                            .map(|b| {
                                BrokerState::default()
                                    .with_broker_id(protocol::messages::BrokerId(*b))
                                    .with_broker_epoch(-1)
                            })
                            .collect(),
                    )])])
    }

    fn code(response: &AlterPartitionResponse) -> ErrorCode {
        ErrorCode(response.topics[0].partitions[0].error_code)
    }

    #[test]
    fn a_current_proposal_is_committed_and_answered_with_the_next_partition_epoch() {
        // The leader re-adds broker 3, which caught up: one PartitionChange, epoch 1 -> 2.
        let (records, response) =
            alter_partition(&image(false), &BTreeSet::new(), &request(&[1, 2, 3], 1));
        assert_eq!(code(&response), ErrorCode::NONE);
        assert_eq!(response.topics[0].partitions[0].partition_epoch, 2);
        assert_eq!(
            records,
            vec![MetadataRecord::PartitionChange {
                topic_id: TOPIC,
                partition: 0,
                leader: None,
                isr: Some(vec![BrokerId(1), BrokerId(2), BrokerId(3)]),
                replicas: None,
            }]
        );
    }

    #[test]
    fn a_proposal_from_a_stale_partition_epoch_is_refused() {
        // Made before the ISR changed to 1, 2: committing it would undo that change.
        let (records, response) =
            alter_partition(&image(false), &BTreeSet::new(), &request(&[1], 0));
        assert!(records.is_empty());
        assert_eq!(code(&response), ErrorCode::INVALID_UPDATE_VERSION);
    }

    #[test]
    fn a_fenced_or_shutting_down_replica_cannot_join_the_isr() {
        // A fenced broker may be dead; one shutting down is about to be.
        let (records, response) =
            alter_partition(&image(true), &BTreeSet::new(), &request(&[1, 2, 3], 1));
        assert!(records.is_empty());
        assert_eq!(code(&response), ErrorCode::INELIGIBLE_REPLICA);
        let shutting_down = BTreeSet::from([BrokerId(3)]);
        let (_, response) = alter_partition(&image(false), &shutting_down, &request(&[1, 2, 3], 1));
        assert_eq!(code(&response), ErrorCode::INELIGIBLE_REPLICA);
        // Shrinking away from an ineligible broker is always allowed.
        let (records, response) =
            alter_partition(&image(true), &BTreeSet::new(), &request(&[1], 1));
        assert_eq!(code(&response), ErrorCode::NONE);
        assert_eq!(records.len(), 1);
    }

    #[test]
    fn only_the_leader_in_its_current_epoch_may_propose_an_isr_with_itself_in_it() {
        // Another broker, or an ISR without the leader, is refused.
        let image = image(false);
        let mut other = request(&[1, 2], 1);
        other.broker_id = protocol::messages::BrokerId(2);
        other.broker_epoch = -1;
        let (_, response) = alter_partition(&image, &BTreeSet::new(), &other);
        assert_eq!(code(&response), ErrorCode::NOT_LEADER_OR_FOLLOWER);
        let (_, response) = alter_partition(&image, &BTreeSet::new(), &request(&[2, 3], 1));
        assert_eq!(code(&response), ErrorCode::INVALID_REQUEST);
        let mut stale = request(&[1, 2], 1);
        stale.broker_epoch = 99;
        let (_, response) = alter_partition(&image, &BTreeSet::new(), &stale);
        assert_eq!(
            ErrorCode(response.error_code),
            ErrorCode::STALE_BROKER_EPOCH
        );
    }
}
