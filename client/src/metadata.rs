//! The client's picture of the cluster: brokers, topics, partitions and their
//! leaders, as the last Metadata response described them.
//!
//! A [`Metadata`] value is immutable; a refresh builds a new one (see
//! [`crate::cluster::Cluster`]) and readers keep whichever snapshot they hold.

use std::collections::HashMap;
use std::time::Instant;

use protocol::messages::MetadataResponse;
use protocol::ErrorCode;
use uuid::Uuid;

/// A broker as the cluster advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// The broker's node id.
    pub node_id: i32,
    /// The host to connect to.
    pub host: String,
    /// The port to connect to.
    pub port: i32,
}

impl BrokerAddress {
    /// `host:port`, ready to connect to.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// The partition's index.
    pub partition: i32,
    /// `None` while the partition has no leader.
    pub leader_id: Option<i32>,
    /// The leader epoch (-1 when the broker does not say).
    pub leader_epoch: i32,
    /// The partition's error code in the Metadata response.
    pub error: ErrorCode,
    /// Every replica's node id, the preferred leader first.
    pub replica_nodes: Vec<i32>,
    /// The in-sync replicas' node ids.
    pub isr_nodes: Vec<i32>,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// The topic's name.
    pub name: String,
    /// Nil when the broker does not send topic ids (Metadata before v10).
    pub topic_id: Uuid,
    /// `NONE`, or why the topic could not be described (e.g. `UNKNOWN_TOPIC_OR_PARTITION`).
    pub error: ErrorCode,
    /// Indexed by partition number.
    pub partitions: Vec<PartitionMetadata>,
}

impl TopicMetadata {
    /// How many partitions the topic has.
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }
}

/// A snapshot of cluster metadata.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// The cluster's id, if the brokers report one.
    pub cluster_id: Option<String>,
    /// The controller's node id, if one is named.
    pub controller_id: Option<i32>,
    /// The brokers, by node id.
    pub brokers: HashMap<i32, BrokerAddress>,
    /// The topics asked for, by name.
    pub topics: HashMap<String, TopicMetadata>,
    /// When the response this snapshot came from arrived.
    pub updated_at: Instant,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            cluster_id: None,
            controller_id: None,
            brokers: HashMap::new(),
            topics: HashMap::new(),
            updated_at: Instant::now(),
        }
    }
}

impl Metadata {
    /// Builds the snapshot that results from applying `response` to `self`:
    /// brokers are replaced, topics in the response replace their old entries,
    /// and topics the response does not mention are kept.
    pub fn merged_with(&self, response: &MetadataResponse) -> Metadata {
        let brokers = response
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id.0,
                    BrokerAddress {
                        node_id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                    },
                )
            })
            .collect();
        let mut topics = self.topics.clone();
        for topic in &response.topics {
            let Some(name) = topic.name.as_ref() else {
                continue;
            };
            let mut partitions: Vec<PartitionMetadata> = topic
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    leader_id: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                    leader_epoch: p.leader_epoch,
                    error: ErrorCode(p.error_code),
                    replica_nodes: p.replica_nodes.iter().map(|n| n.0).collect(),
                    isr_nodes: p.isr_nodes.iter().map(|n| n.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            // A response with holes in the partition numbers would make
            // indexing by partition wrong; treat such a topic as unusable.
            let dense = partitions
                .iter()
                .enumerate()
                .all(|(i, p)| p.partition == i as i32);
            let error = ErrorCode(topic.error_code);
            let entry = TopicMetadata {
                name: name.0.to_string(),
                topic_id: topic.topic_id,
                error: if dense {
                    error
                } else {
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                },
                partitions: if dense { partitions } else { Vec::new() },
            };
            topics.insert(entry.name.clone(), entry);
        }
        Metadata {
            cluster_id: response.cluster_id.as_ref().map(|c| c.to_string()),
            controller_id: (response.controller_id.0 >= 0).then_some(response.controller_id.0),
            brokers,
            topics,
            updated_at: Instant::now(),
        }
    }

    /// The metadata of `name`, if it was asked for.
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.get(name)
    }

    /// The partition count of a topic that was described without error.
    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        self.topics
            .get(topic)
            .filter(|t| t.error.is_ok() && !t.partitions.is_empty())
            .map(TopicMetadata::partition_count)
    }

    /// The leader of a partition, if it has one whose address we know.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<&BrokerAddress> {
        let topic = self.topics.get(topic)?;
        let partition = topic.partitions.get(usize::try_from(partition).ok()?)?;
        self.brokers.get(&partition.leader_id?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use protocol::messages::{BrokerId, TopicName};
    use protocol::StrBytes;

    fn response(topic: &str, leaders: &[i32]) -> MetadataResponse {
        MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(9092)])
            .with_topics(vec![MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))
                .with_partitions(
                    leaders
                        .iter()
                        .enumerate()
                        .rev()
                        .map(|(i, leader)| {
                            MetadataResponsePartition::default()
                                .with_partition_index(i as i32)
                                .with_leader_id(BrokerId(*leader))
                        })
                        .collect(),
                )])
    }

    #[test]
    fn merge_keeps_other_topics_and_orders_partitions() {
        // A refresh of one topic leaves the others alone; partitions are indexed by number.
        let first = Metadata::default().merged_with(&response("a", &[1, 1]));
        let second = first.merged_with(&response("b", &[1, -1, 1]));
        assert_eq!(second.partition_count("a"), Some(2));
        assert_eq!(second.partition_count("b"), Some(3));
        assert_eq!(second.leader("b", 0).unwrap().addr(), "127.0.0.1:9092");
        assert!(second.leader("b", 1).is_none(), "leader -1 means no leader");
        assert!(second.leader("b", 3).is_none());
        assert!(second.leader("missing", 0).is_none());
    }
}
