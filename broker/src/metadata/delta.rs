//! What changed between two metadata images: the input of every local
//! action a broker takes (creating or deleting logs, leading, following).
//! Unchanged topics are found by pointer (`Arc::ptr_eq`), so a diff costs
//! the number of topics plus the size of what changed.

use std::sync::Arc;

use crate::ids::BrokerId;
use crate::metadata::image::{MetadataImage, TopicImage};
use crate::metadata::records::PartitionRegistration;

/// A partition that is new, or whose registration changed.
#[derive(Debug, Clone)]
pub struct PartitionDelta {
    pub topic: Arc<TopicImage>,
    pub index: i32,
    /// The registration before, or `None` for a new partition.
    pub previous: Option<PartitionRegistration>,
}

impl PartitionDelta {
    pub fn current(&self) -> &PartitionRegistration {
        self.topic
            .partition(self.index)
            .expect("a delta names partitions of its image")
    }
}

#[derive(Debug, Default)]
pub struct MetadataDelta {
    /// Topics in the new image that the old did not have (by id).
    pub created_topics: Vec<Arc<TopicImage>>,
    /// Topics of the old image that the new does not have (by id).
    pub deleted_topics: Vec<Arc<TopicImage>>,
    /// New and changed partitions, created topics' partitions included.
    pub partitions: Vec<PartitionDelta>,
    /// Topics (already existing) whose config overrides changed.
    pub changed_configs: Vec<Arc<TopicImage>>,
    /// Brokers registered, re-registered, fenced, unfenced or unregistered.
    pub changed_brokers: Vec<BrokerId>,
    /// Whether any dynamic broker config (of a broker or the cluster default) changed.
    pub changed_broker_configs: bool,
}

impl MetadataDelta {
    pub fn between(old: &MetadataImage, new: &MetadataImage) -> MetadataDelta {
        let mut delta = MetadataDelta::default();
        for topic in new.topics() {
            let before = old.topic_by_id(topic.id);
            match before {
                Some(before) if Arc::ptr_eq(before, topic) => {}
                Some(before) => {
                    if before.configs != topic.configs {
                        delta.changed_configs.push(topic.clone());
                    }
                    for (index, current) in topic.partitions.iter().enumerate() {
                        let previous = before.partitions.get(index);
                        if previous != Some(current) {
                            delta.partitions.push(PartitionDelta {
                                topic: topic.clone(),
                                index: index as i32,
                                previous: previous.cloned(),
                            });
                        }
                    }
                }
                None => {
                    delta.created_topics.push(topic.clone());
                    delta
                        .partitions
                        .extend((0..topic.partitions.len()).map(|index| PartitionDelta {
                            topic: topic.clone(),
                            index: index as i32,
                            previous: None,
                        }));
                }
            }
        }
        delta.deleted_topics = old
            .topics()
            .filter(|t| new.topic_by_id(t.id).is_none())
            .cloned()
            .collect();
        for broker in new.brokers() {
            if old
                .broker(broker.id)
                .is_none_or(|b| !Arc::ptr_eq(b, broker))
            {
                delta.changed_brokers.push(broker.id);
            }
        }
        delta.changed_brokers.extend(
            old.brokers()
                .filter(|b| new.broker(b.id).is_none())
                .map(|b| b.id),
        );
        delta.changed_broker_configs = !old.same_broker_configs(new);
        delta
    }

    pub fn is_empty(&self) -> bool {
        self.created_topics.is_empty()
            && self.deleted_topics.is_empty()
            && self.partitions.is_empty()
            && self.changed_configs.is_empty()
            && self.changed_brokers.is_empty()
            && !self.changed_broker_configs
    }
}
