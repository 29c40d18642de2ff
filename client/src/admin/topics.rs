//! Creating and deleting topics and adding partitions: controller requests.

use std::time::Duration;

use protocol::StrBytes;

use super::error::check;
use super::routing::timeout_ms;
use super::types::*;
use super::{broker_ids, single, topic_name, Admin, AdminError, ItemResults};

impl Admin {
    /// Creates topics (CreateTopics, to the controller). Each topic's answer
    /// is its id and layout, or its error (`TOPIC_ALREADY_EXISTS`,
    /// `INVALID_REPLICATION_FACTOR`, `INVALID_CONFIG`, ...).
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
        timeout: Duration,
    ) -> Result<ItemResults<String, CreatedTopic>, AdminError> {
        use protocol::messages::create_topics_request::{
            CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
        };
        use protocol::messages::CreateTopicsRequest;
        let items = topics.iter().map(|t| (t.name.clone(), t.clone())).collect();
        self.controller_items(
            "CreateTopics",
            timeout,
            items,
            |connection, batch, deadline| async move {
                let request = CreateTopicsRequest::default()
                    .with_timeout_ms(timeout_ms(deadline))
                    .with_topics(
                        batch
                            .iter()
                            .map(|(_, t)| {
                                CreatableTopic::default()
                                    .with_name(topic_name(&t.name))
                                    .with_num_partitions(t.partitions.unwrap_or(-1))
                                    .with_replication_factor(t.replication_factor.unwrap_or(-1))
                                    .with_assignments(
                                        t.assignments
                                            .iter()
                                            .map(|(partition, replicas)| {
                                                CreatableReplicaAssignment::default()
                                                    .with_partition_index(*partition)
                                                    .with_broker_ids(broker_ids(replicas))
                                            })
                                            .collect(),
                                    )
                                    .with_configs(
                                        t.configs
                                            .iter()
                                            .map(|(name, value)| {
                                                CreatableTopicConfig::default()
                                                    .with_name(StrBytes::from_string(name.clone()))
                                                    .with_value(Some(StrBytes::from_string(
                                                        value.clone(),
                                                    )))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    );
                let response = connection
                    .call_version(
                        &request,
                        connection.version_for::<CreateTopicsRequest>()?,
                        Some(deadline),
                    )
                    .await?;
                Ok(response
                    .topics
                    .into_iter()
                    .map(|t| {
                        let name = t.name.0.to_string();
                        let result = check(t.error_code, |code| AdminError::Topic {
                            topic: name.clone(),
                            code,
                            message: t.error_message.as_ref().map(|m| m.to_string()),
                        })
                        .map(|()| CreatedTopic {
                            name: name.clone(),
                            topic_id: t.topic_id,
                            partitions: t.num_partitions,
                            replication_factor: t.replication_factor,
                        });
                        (name, result)
                    })
                    .collect())
            },
        )
        .await
    }

    /// Creates one topic; its error, if any, as [`AdminError::Topic`].
    pub async fn create_topic(
        &self,
        topic: NewTopic,
        timeout: Duration,
    ) -> Result<CreatedTopic, AdminError> {
        let name = topic.name.clone();
        single(
            self.create_topics(&[topic], timeout).await?,
            &name,
            "CreateTopics",
        )
    }

    /// Deletes topics by name (DeleteTopics, to the controller).
    pub async fn delete_topics(
        &self,
        topics: &[&str],
        timeout: Duration,
    ) -> Result<ItemResults<String, ()>, AdminError> {
        use protocol::messages::delete_topics_request::DeleteTopicState;
        use protocol::messages::DeleteTopicsRequest;
        let items = topics.iter().map(|t| (t.to_string(), ())).collect();
        self.controller_items(
            "DeleteTopics",
            timeout,
            items,
            |connection, batch, deadline| async move {
                let version = connection.version_for::<DeleteTopicsRequest>()?;
                let names = batch.iter().map(|(name, ())| topic_name(name));
                // v6 names topics in `topics` (by name or id), older versions in `topic_names`.
                let request = if version >= 6 {
                    DeleteTopicsRequest::default().with_topics(
                        names
                            .map(|name| DeleteTopicState::default().with_name(Some(name)))
                            .collect(),
                    )
                } else {
                    DeleteTopicsRequest::default().with_topic_names(names.collect())
                }
                .with_timeout_ms(timeout_ms(deadline));
                let response = connection
                    .call_version(&request, version, Some(deadline))
                    .await?;
                Ok(response
                    .responses
                    .into_iter()
                    .filter_map(|t| {
                        let name = t.name?.0.to_string();
                        let result = check(t.error_code, |code| AdminError::Topic {
                            topic: name.clone(),
                            code,
                            message: t.error_message.as_ref().map(|m| m.to_string()),
                        });
                        Some((name, result))
                    })
                    .collect())
            },
        )
        .await
    }

    /// Deletes one topic; its error, if any, as [`AdminError::Topic`].
    pub async fn delete_topic(&self, topic: &str, timeout: Duration) -> Result<(), AdminError> {
        single(
            self.delete_topics(&[topic], timeout).await?,
            topic,
            "DeleteTopics",
        )
    }

    /// Grows topics to more partitions (CreatePartitions, to the controller).
    pub async fn create_partitions(
        &self,
        partitions: &[NewPartitions],
        timeout: Duration,
    ) -> Result<ItemResults<String, ()>, AdminError> {
        use protocol::messages::create_partitions_request::{
            CreatePartitionsAssignment, CreatePartitionsTopic,
        };
        use protocol::messages::CreatePartitionsRequest;
        let items = partitions
            .iter()
            .map(|p| (p.topic.clone(), p.clone()))
            .collect();
        self.controller_items(
            "CreatePartitions",
            timeout,
            items,
            |connection, batch, deadline| async move {
                let request = CreatePartitionsRequest::default()
                    .with_timeout_ms(timeout_ms(deadline))
                    .with_topics(
                        batch
                            .iter()
                            .map(|(_, p)| {
                                CreatePartitionsTopic::default()
                                    .with_name(topic_name(&p.topic))
                                    .with_count(p.total_count)
                                    .with_assignments(p.assignments.as_ref().map(|all| {
                                        all.iter()
                                            .map(|replicas| {
                                                CreatePartitionsAssignment::default()
                                                    .with_broker_ids(broker_ids(replicas))
                                            })
                                            .collect()
                                    }))
                            })
                            .collect(),
                    );
                let response = connection
                    .call_version(
                        &request,
                        connection.version_for::<CreatePartitionsRequest>()?,
                        Some(deadline),
                    )
                    .await?;
                Ok(response
                    .results
                    .into_iter()
                    .map(|t| {
                        let name = t.name.0.to_string();
                        let result = check(t.error_code, |code| AdminError::Topic {
                            topic: name.clone(),
                            code,
                            message: t.error_message.as_ref().map(|m| m.to_string()),
                        });
                        (name, result)
                    })
                    .collect())
            },
        )
        .await
    }
}
