//! The metadata image: what a broker knows of the cluster (brokers, topics,
//! partitions), as of an offset of the metadata log. An image is immutable;
//! applying committed records makes a new one that shares every unchanged
//! topic with the old (`Arc`s), so an image per change is cheap and readers
//! never lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{BrokerId, Offset};
use crate::metadata::records::{
    BrokerRegistration, MetadataRecord, PartitionRegistration, Reassignment,
};

/// A topic as the metadata log describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    /// Indexed by partition number.
    pub partitions: Vec<PartitionRegistration>,
    /// Overrides of the broker's log defaults.
    pub configs: BTreeMap<String, String>,
}

impl TopicImage {
    pub fn partition(&self, index: i32) -> Option<&PartitionRegistration> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    pub fn is_internal(&self) -> bool {
        crate::topics::is_internal(&self.name)
    }
}

/// A record that does not fit the image it is applied to: the controller
/// never commits one, so this is a bug or damage, reported and skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("no topic has id {0}")]
    UnknownTopic(Uuid),
    #[error("topic {name} (or id {id}) already exists")]
    TopicExists { name: String, id: Uuid },
    #[error("topic {topic_id} has no partition {partition}")]
    UnknownPartition { topic_id: Uuid, partition: i32 },
    #[error("partition {partition} of topic {topic_id} is not the next one")]
    PartitionOutOfOrder { topic_id: Uuid, partition: i32 },
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
}

/// An image as plain data: what a metadata snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSnapshot {
    pub offset: Offset,
    pub next_producer_id: i64,
    pub brokers: Vec<BrokerRegistration>,
    pub topics: Vec<TopicImage>,
    /// Added after the first release of the format: a snapshot written
    /// before has none (see [`ImageSnapshot::decode`]).
    pub reassignments: Vec<(Uuid, i32, Reassignment)>,
    /// Dynamic broker configs: (broker, or `None` for the cluster default,
    /// key, value). Added in the third format.
    pub broker_configs: Vec<(Option<BrokerId>, String, String)>,
}

/// The snapshot format before dynamic broker configs existed.
#[derive(Deserialize)]
struct ImageSnapshotV2 {
    offset: Offset,
    next_producer_id: i64,
    brokers: Vec<BrokerRegistration>,
    topics: Vec<TopicImage>,
    reassignments: Vec<(Uuid, i32, Reassignment)>,
}

/// The snapshot format before reassignments existed.
#[derive(Deserialize)]
struct ImageSnapshotV1 {
    offset: Offset,
    next_producer_id: i64,
    brokers: Vec<BrokerRegistration>,
    topics: Vec<TopicImage>,
}

impl ImageSnapshot {
    /// Decodes a snapshot of any format.
    pub fn decode(bytes: &[u8]) -> Result<ImageSnapshot, bincode::Error> {
        bincode::deserialize::<ImageSnapshot>(bytes)
            .or_else(|error| {
                let v2: ImageSnapshotV2 = bincode::deserialize(bytes).map_err(|_| error)?;
                Ok(ImageSnapshot {
                    offset: v2.offset,
                    next_producer_id: v2.next_producer_id,
                    brokers: v2.brokers,
                    topics: v2.topics,
                    reassignments: v2.reassignments,
                    broker_configs: Vec::new(),
                })
            })
            .or_else(|error: bincode::Error| {
                let v1: ImageSnapshotV1 = bincode::deserialize(bytes).map_err(|_| error)?;
                Ok(ImageSnapshot {
                    offset: v1.offset,
                    next_producer_id: v1.next_producer_id,
                    brokers: v1.brokers,
                    topics: v1.topics,
                    reassignments: Vec::new(),
                    broker_configs: Vec::new(),
                })
            })
    }
}

#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    /// The offset of the last record applied (`Offset::NONE` for the empty image).
    offset: Option<Offset>,
    brokers: BTreeMap<BrokerId, Arc<BrokerRegistration>>,
    topics: BTreeMap<String, Arc<TopicImage>>,
    names_by_id: HashMap<Uuid, String>,
    /// The first producer id no broker has been given.
    next_producer_id: i64,
    /// Reassignments in progress, by topic id and partition.
    reassignments: BTreeMap<(Uuid, i32), Reassignment>,
    /// Dynamic broker configs: of one broker, or (`None`) the cluster default.
    broker_configs: BTreeMap<Option<BrokerId>, BTreeMap<String, String>>,
}

impl MetadataImage {
    pub fn empty() -> MetadataImage {
        MetadataImage::default()
    }

    pub fn offset(&self) -> Offset {
        self.offset.unwrap_or(Offset::NONE)
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&Arc<TopicImage>> {
        self.names_by_id.get(&id).and_then(|n| self.topics.get(n))
    }

    /// Every topic, by name.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicImage>> {
        self.topics.values()
    }

    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// The first producer id not handed out yet.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    pub fn broker(&self, id: BrokerId) -> Option<&Arc<BrokerRegistration>> {
        self.brokers.get(&id)
    }

    /// Every registered broker, fenced or not, by id.
    pub fn brokers(&self) -> impl Iterator<Item = &Arc<BrokerRegistration>> {
        self.brokers.values()
    }

    /// Registered brokers that are not fenced: those that may lead and are offered to clients.
    pub fn live_brokers(&self) -> impl Iterator<Item = &Arc<BrokerRegistration>> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// The image after a batch of records committed at `offset` (one entry
    /// of the metadata log). A record that does not fit is skipped and
    /// reported; the others apply.
    pub fn apply(
        &self,
        offset: Offset,
        records: &[MetadataRecord],
    ) -> (MetadataImage, Vec<ApplyError>) {
        assert!(
            offset > self.offset(),
            "batches apply in log order: {offset} after {}",
            self.offset()
        );
        let mut next = self.clone();
        let mut errors = Vec::new();
        for record in records {
            if let Err(e) = next.apply_one(offset, record) {
                errors.push(e);
            }
        }
        next.offset = Some(offset);
        (next, errors)
    }

    /// Moves the image's offset forward (a snapshot taken at a later blank
    /// or membership entry of the log stands for that entry).
    pub fn set_offset(&mut self, offset: Offset) {
        assert!(
            offset >= self.offset(),
            "an image's offset never moves back"
        );
        self.offset = (offset >= Offset(0)).then_some(offset);
    }

    /// The image's content, for a snapshot of the metadata log.
    pub fn to_snapshot(&self) -> ImageSnapshot {
        ImageSnapshot {
            offset: self.offset(),
            next_producer_id: self.next_producer_id,
            brokers: self.brokers.values().map(|b| (**b).clone()).collect(),
            topics: self.topics.values().map(|t| (**t).clone()).collect(),
            reassignments: self
                .reassignments
                .iter()
                .map(|((topic, partition), r)| (*topic, *partition, r.clone()))
                .collect(),
            broker_configs: self
                .broker_configs
                .iter()
                .flat_map(|(broker, configs)| {
                    configs.iter().map(|(k, v)| (*broker, k.clone(), v.clone()))
                })
                .collect(),
        }
    }

    /// The dynamic configs of broker `broker`, or (`None`) the cluster-wide
    /// default ones; empty when none are set.
    pub fn broker_configs(&self, broker: Option<BrokerId>) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.broker_configs.get(&broker).unwrap_or(&EMPTY)
    }

    /// Whether `other` has the same dynamic broker configs.
    pub fn same_broker_configs(&self, other: &MetadataImage) -> bool {
        self.broker_configs == other.broker_configs
    }

    /// The scopes that have dynamic broker configs: brokers, and `None` for
    /// the cluster default.
    pub fn broker_config_scopes(&self) -> impl Iterator<Item = Option<BrokerId>> + '_ {
        self.broker_configs.keys().copied()
    }

    /// The reassignment in progress of a partition, if any.
    pub fn reassignment(&self, topic_id: Uuid, partition: i32) -> Option<&Reassignment> {
        self.reassignments.get(&(topic_id, partition))
    }

    /// Every reassignment in progress: `((topic id, partition), reassignment)`.
    pub fn reassignments(&self) -> impl Iterator<Item = (&(Uuid, i32), &Reassignment)> {
        self.reassignments.iter()
    }

    /// The image a snapshot describes.
    pub fn from_snapshot(snapshot: ImageSnapshot) -> MetadataImage {
        let mut image = MetadataImage {
            offset: (snapshot.offset >= Offset(0)).then_some(snapshot.offset),
            next_producer_id: snapshot.next_producer_id,
            ..MetadataImage::default()
        };
        for broker in snapshot.brokers {
            image.brokers.insert(broker.id, Arc::new(broker));
        }
        for topic in snapshot.topics {
            image.names_by_id.insert(topic.id, topic.name.clone());
            image.topics.insert(topic.name.clone(), Arc::new(topic));
        }
        for (topic, partition, reassignment) in snapshot.reassignments {
            image.reassignments.insert((topic, partition), reassignment);
        }
        for (broker, key, value) in snapshot.broker_configs {
            image
                .broker_configs
                .entry(broker)
                .or_default()
                .insert(key, value);
        }
        image
    }

    fn apply_one(&mut self, offset: Offset, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::RegisterBroker {
                id,
                incarnation,
                endpoints,
                rack,
                fenced,
            } => {
                self.brokers.insert(
                    *id,
                    Arc::new(BrokerRegistration {
                        id: *id,
                        incarnation: *incarnation,
                        epoch: offset.0,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        fenced: *fenced,
                    }),
                );
            }
            MetadataRecord::UnregisterBroker { id } => {
                self.brokers
                    .remove(id)
                    .ok_or(ApplyError::UnknownBroker(*id))?;
            }
            MetadataRecord::FenceBroker { id } | MetadataRecord::UnfenceBroker { id } => {
                let broker = self
                    .brokers
                    .get_mut(id)
                    .ok_or(ApplyError::UnknownBroker(*id))?;
                Arc::make_mut(broker).fenced = matches!(record, MetadataRecord::FenceBroker { .. });
            }
            MetadataRecord::Topic { name, id } => {
                if self.topics.contains_key(name) || self.names_by_id.contains_key(id) {
                    return Err(ApplyError::TopicExists {
                        name: name.clone(),
                        id: *id,
                    });
                }
                self.names_by_id.insert(*id, name.clone());
                self.topics.insert(
                    name.clone(),
                    Arc::new(TopicImage {
                        name: name.clone(),
                        id: *id,
                        partitions: Vec::new(),
                        configs: BTreeMap::new(),
                    }),
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                registration,
            } => {
                let topic = self.topic_mut(*topic_id)?;
                if *partition != topic.partitions.len() as i32 {
                    return Err(ApplyError::PartitionOutOfOrder {
                        topic_id: *topic_id,
                        partition: *partition,
                    });
                }
                topic.partitions.push(registration.clone());
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                replicas,
            } => {
                let topic = self.topic_mut(*topic_id)?;
                let registration = usize::try_from(*partition)
                    .ok()
                    .and_then(|i| topic.partitions.get_mut(i))
                    .ok_or(ApplyError::UnknownPartition {
                        topic_id: *topic_id,
                        partition: *partition,
                    })?;
                if let Some(leader) = leader {
                    if *leader != registration.leader {
                        registration.leader = *leader;
                        registration.leader_epoch = registration.leader_epoch.next();
                    }
                }
                if let Some(isr) = isr {
                    registration.isr = isr.clone();
                }
                if let Some(replicas) = replicas {
                    registration.replicas = replicas.clone();
                }
                registration.partition_epoch = registration.partition_epoch.next();
            }
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                // Ids never go back, whatever order blocks were committed in.
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
            MetadataRecord::RemoveTopic { id } => {
                let name = self
                    .names_by_id
                    .remove(id)
                    .ok_or(ApplyError::UnknownTopic(*id))?;
                self.topics.remove(&name);
                self.reassignments.retain(|(topic, _), _| topic != id);
            }
            MetadataRecord::Reassignment {
                topic_id,
                partition,
                reassignment,
            } => {
                let topic = self
                    .topic_by_id(*topic_id)
                    .ok_or(ApplyError::UnknownTopic(*topic_id))?;
                if topic.partition(*partition).is_none() {
                    return Err(ApplyError::UnknownPartition {
                        topic_id: *topic_id,
                        partition: *partition,
                    });
                }
                match reassignment {
                    Some(r) => self
                        .reassignments
                        .insert((*topic_id, *partition), r.clone()),
                    None => self.reassignments.remove(&(*topic_id, *partition)),
                };
            }
            MetadataRecord::BrokerConfig { broker, key, value } => {
                let configs = self.broker_configs.entry(*broker).or_default();
                match value {
                    Some(value) => configs.insert(key.clone(), value.clone()),
                    None => configs.remove(key),
                };
                if configs.is_empty() {
                    self.broker_configs.remove(broker);
                }
            }
            MetadataRecord::TopicConfig {
                topic_id,
                key,
                value,
            } => {
                let topic = self.topic_mut(*topic_id)?;
                match value {
                    Some(value) => topic.configs.insert(key.clone(), value.clone()),
                    None => topic.configs.remove(key),
                };
            }
        }
        Ok(())
    }

    fn topic_mut(&mut self, id: Uuid) -> Result<&mut TopicImage, ApplyError> {
        let name = self
            .names_by_id
            .get(&id)
            .ok_or(ApplyError::UnknownTopic(id))?;
        let topic = self
            .topics
            .get_mut(name)
            .expect("every id names a topic of the image");
        Ok(Arc::make_mut(topic))
    }
}
