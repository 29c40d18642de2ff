//! The replication calls: partition reassignments and leader elections,
//! controller requests.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::error::check;
use super::routing::timeout_ms;
use super::types::*;
use super::{broker_ids, topic_name, Admin, AdminError, ItemResults};
use crate::connection::Connection;
use crate::consumer::TopicPartition;

impl Admin {
    /// Starts moving partitions to new replica sets, or cancels a move with
    /// `None` (AlterPartitionReassignments, to the controller). A partition's
    /// `Ok` means the move was accepted, not that it finished: see
    /// [`Admin::list_partition_reassignments`].
    pub async fn alter_partition_reassignments(
        &self,
        reassignments: &[(TopicPartition, Option<Vec<i32>>)],
        timeout: Duration,
    ) -> Result<ItemResults<TopicPartition, ()>, AdminError> {
        use protocol::messages::alter_partition_reassignments_request::{
            ReassignablePartition, ReassignableTopic,
        };
        use protocol::messages::AlterPartitionReassignmentsRequest;
        let items = reassignments.to_vec();
        self.controller_items(
            "AlterPartitionReassignments",
            timeout,
            items,
            |connection, batch, deadline| async move {
                let mut topics: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
                for (tp, replicas) in &batch {
                    topics.entry(&tp.topic).or_default().push(
                        ReassignablePartition::default()
                            .with_partition_index(tp.partition)
                            .with_replicas(replicas.as_deref().map(broker_ids)),
                    );
                }
                let request = AlterPartitionReassignmentsRequest::default()
                    .with_timeout_ms(timeout_ms(deadline))
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(topic, partitions)| {
                                ReassignableTopic::default()
                                    .with_name(topic_name(topic))
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    );
                let response = connection
                    .call_version(
                        &request,
                        connection.version_for::<AlterPartitionReassignmentsRequest>()?,
                        Some(deadline),
                    )
                    .await?;
                check(response.error_code, |code| AdminError::Rejected {
                    operation: "AlterPartitionReassignments",
                    code,
                    message: response.error_message.as_ref().map(|m| m.to_string()),
                })?;
                Ok(response
                    .responses
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(|p| {
                            let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                            let result = check(p.error_code, |code| AdminError::Partition {
                                topic: tp.topic.clone(),
                                partition: tp.partition,
                                code,
                                message: p.error_message.as_ref().map(|m| m.to_string()),
                            });
                            (tp, result)
                        })
                    })
                    .collect())
            },
        )
        .await
    }

    /// The reassignments in progress, of the given partitions or (`None`)
    /// of all (ListPartitionReassignments, to the controller). A partition
    /// whose move finished is absent.
    pub async fn list_partition_reassignments(
        &self,
        partitions: Option<&[TopicPartition]>,
        timeout: Duration,
    ) -> Result<BTreeMap<TopicPartition, OngoingReassignment>, AdminError> {
        use protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
        use protocol::messages::ListPartitionReassignmentsRequest;
        let topics = partitions.map(|partitions| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for tp in partitions {
                by_topic.entry(&tp.topic).or_default().push(tp.partition);
            }
            by_topic
                .into_iter()
                .map(|(topic, indexes)| {
                    ListPartitionReassignmentsTopics::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(indexes)
                })
                .collect::<Vec<_>>()
        });
        self.retrying("ListPartitionReassignments", timeout, |deadline| {
            let topics = topics.clone();
            async move {
                let connection = self.controller_connection().await?;
                let request = ListPartitionReassignmentsRequest::default()
                    .with_timeout_ms(timeout_ms(deadline))
                    .with_topics(topics);
                let response = connection
                    .call_version(
                        &request,
                        connection.version_for::<ListPartitionReassignmentsRequest>()?,
                        Some(deadline),
                    )
                    .await?;
                check(response.error_code, |code| AdminError::Rejected {
                    operation: "ListPartitionReassignments",
                    code,
                    message: response.error_message.as_ref().map(|m| m.to_string()),
                })?;
                Ok(response
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(|p| {
                            (
                                TopicPartition::new(t.name.0.to_string(), p.partition_index),
                                OngoingReassignment {
                                    replicas: p.replicas.iter().map(|b| b.0).collect(),
                                    adding_replicas: p
                                        .adding_replicas
                                        .iter()
                                        .map(|b| b.0)
                                        .collect(),
                                    removing_replicas: p
                                        .removing_replicas
                                        .iter()
                                        .map(|b| b.0)
                                        .collect(),
                                },
                            )
                        })
                    })
                    .collect())
            }
        })
        .await
    }

    /// Elects leaders (ElectLeaders, to the controller): the preferred
    /// replica, or (unclean) any live replica of a partition without a
    /// leader. `None` means every partition the controller has. A partition
    /// whose leader is already the one asked for answers
    /// `ELECTION_NOT_NEEDED` (84), as in Kafka.
    pub async fn elect_leaders(
        &self,
        election: ElectionType,
        partitions: Option<&[TopicPartition]>,
        timeout: Duration,
    ) -> Result<ItemResults<TopicPartition, ()>, AdminError> {
        match partitions {
            Some(partitions) => {
                let items = partitions.iter().map(|tp| (tp.clone(), ())).collect();
                self.controller_items(
                    "ElectLeaders",
                    timeout,
                    items,
                    |connection, batch, deadline| async move {
                        let wanted: Vec<TopicPartition> =
                            batch.into_iter().map(|(tp, ())| tp).collect();
                        elect_leaders_once(&connection, election, Some(&wanted), deadline).await
                    },
                )
                .await
            }
            None => {
                self.retrying("ElectLeaders", timeout, |deadline| async move {
                    let connection = self.controller_connection().await?;
                    elect_leaders_once(&connection, election, None, deadline).await
                })
                .await
            }
        }
    }
}

/// One ElectLeaders request and its per-partition answers.
async fn elect_leaders_once(
    connection: &Connection,
    election: ElectionType,
    partitions: Option<&[TopicPartition]>,
    deadline: Instant,
) -> Result<ItemResults<TopicPartition, ()>, AdminError> {
    use protocol::messages::elect_leaders_request::TopicPartitions;
    use protocol::messages::ElectLeadersRequest;
    let version = connection.version_for::<ElectLeadersRequest>()?;
    if version == 0 && election != ElectionType::Preferred {
        return Err(AdminError::Unsupported {
            operation: "ElectLeaders",
            reason: format!(
                "{} serves only v0, which elects preferred leaders only",
                connection.addr()
            ),
        });
    }
    let topic_partitions = partitions.map(|partitions| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        by_topic
            .into_iter()
            .map(|(topic, indexes)| {
                TopicPartitions::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(indexes)
            })
            .collect()
    });
    let request = ElectLeadersRequest::default()
        .with_topic_partitions(topic_partitions)
        .with_timeout_ms(timeout_ms(deadline));
    let request = if version >= 1 {
        request.with_election_type(election.code())
    } else {
        request
    };
    let response = connection
        .call_version(&request, version, Some(deadline))
        .await?;
    check(response.error_code, |code| AdminError::Rejected {
        operation: "ElectLeaders",
        code,
        message: None,
    })?;
    Ok(response
        .replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result.iter().map(|p| {
                let tp = TopicPartition::new(t.topic.0.to_string(), p.partition_id);
                let result = check(p.error_code, |code| AdminError::Partition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    code,
                    message: p.error_message.as_ref().map(|m| m.to_string()),
                });
                (tp, result)
            })
        })
        .collect())
}
