//! Describing the cluster, its topics and configs: requests any broker
//! (or, for a broker's configs, that broker) answers.

use std::collections::BTreeMap;
use std::time::Duration;

use protocol::messages::ApiKey;
use protocol::StrBytes;
use tokio::time::Instant;

use super::error::check;
use super::types::*;
use super::{topic_name, Admin, AdminError, ItemResults};

impl Admin {
    /// The cluster id, the controller and the brokers (DescribeCluster, or
    /// Metadata from brokers without it).
    pub async fn describe_cluster(
        &self,
        timeout: Duration,
    ) -> Result<ClusterDescription, AdminError> {
        use protocol::messages::{DescribeClusterRequest, MetadataRequest};
        self.retrying("DescribeCluster", timeout, |deadline| async move {
            let connection = self.cluster.any_broker_connection().await?;
            if connection.api_versions().supports(ApiKey::DescribeCluster) {
                let request = DescribeClusterRequest::default();
                let response = connection
                    .call_version(
                        &request,
                        connection.version_for::<DescribeClusterRequest>()?,
                        Some(deadline),
                    )
                    .await?;
                check(response.error_code, |code| AdminError::Rejected {
                    operation: "DescribeCluster",
                    code,
                    message: response.error_message.as_ref().map(|m| m.to_string()),
                })?;
                let mut brokers: Vec<_> = response
                    .brokers
                    .iter()
                    .map(|b| BrokerDescription {
                        node_id: b.broker_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.as_ref().map(|r| r.to_string()),
                        fenced: b.is_fenced,
                    })
                    .collect();
                brokers.sort_by_key(|b| b.node_id);
                return Ok(ClusterDescription {
                    cluster_id: Some(response.cluster_id.to_string()),
                    controller_id: (response.controller_id.0 >= 0)
                        .then_some(response.controller_id.0),
                    brokers,
                });
            }
            let request = MetadataRequest::default().with_allow_auto_topic_creation(false);
            let response = connection
                .call_version(
                    &request,
                    connection.version_for::<MetadataRequest>()?,
                    Some(deadline),
                )
                .await?;
            let mut brokers: Vec<_> = response
                .brokers
                .iter()
                .map(|b| BrokerDescription {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                    fenced: false,
                })
                .collect();
            brokers.sort_by_key(|b| b.node_id);
            Ok(ClusterDescription {
                cluster_id: response.cluster_id.as_ref().map(|c| c.to_string()),
                controller_id: (response.controller_id.0 >= 0).then_some(response.controller_id.0),
                brokers,
            })
        })
        .await
    }

    /// Every topic of the cluster with its partitions (Metadata for all
    /// topics), by name. Internal topics (`__consumer_offsets`) are included
    /// and marked.
    pub async fn list_topics(
        &self,
        timeout: Duration,
    ) -> Result<BTreeMap<String, TopicDescription>, AdminError> {
        let described = self.metadata_topics(None, timeout).await?;
        Ok(described
            .into_iter()
            .filter_map(|(name, result)| Some((name, result.ok()?)))
            .collect())
    }

    /// The named topics with their partitions, leaders, replicas and ISR
    /// (Metadata); a topic that does not exist is
    /// `Err(AdminError::Topic { code: UNKNOWN_TOPIC_OR_PARTITION, .. })`.
    pub async fn describe_topics(
        &self,
        topics: &[&str],
        timeout: Duration,
    ) -> Result<ItemResults<String, TopicDescription>, AdminError> {
        let names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let mut described = self.metadata_topics(Some(&names), timeout).await?;
        for name in names {
            described
                .entry(name.clone())
                .or_insert(Err(AdminError::MissingResult {
                    operation: "Metadata",
                    item: format!("topic {name:?}"),
                }));
        }
        Ok(described)
    }

    async fn metadata_topics(
        &self,
        topics: Option<&[String]>,
        timeout: Duration,
    ) -> Result<ItemResults<String, TopicDescription>, AdminError> {
        use protocol::messages::metadata_request::MetadataRequestTopic;
        use protocol::messages::MetadataRequest;
        self.retrying("Metadata", timeout, |deadline| async move {
            let connection = self.cluster.any_broker_connection().await?;
            let request = MetadataRequest::default()
                .with_allow_auto_topic_creation(false)
                .with_topics(topics.map(|names| {
                    names
                        .iter()
                        .map(|name| {
                            MetadataRequestTopic::default().with_name(Some(topic_name(name)))
                        })
                        .collect()
                }));
            let response = connection
                .call_version(
                    &request,
                    connection.version_for::<MetadataRequest>()?,
                    Some(deadline),
                )
                .await?;
            Ok(response
                .topics
                .into_iter()
                .filter_map(|t| {
                    let name = t.name?.0.to_string();
                    let result = check(t.error_code, |code| AdminError::Topic {
                        topic: name.clone(),
                        code,
                        message: None,
                    })
                    .map(|()| {
                        let mut partitions: Vec<_> = t
                            .partitions
                            .iter()
                            .map(|p| PartitionDescription {
                                partition: p.partition_index,
                                leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                                leader_epoch: p.leader_epoch,
                                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                                offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                            })
                            .collect();
                        partitions.sort_by_key(|p| p.partition);
                        TopicDescription {
                            name: name.clone(),
                            topic_id: t.topic_id,
                            internal: t.is_internal,
                            partitions,
                        }
                    });
                    Some((name, result))
                })
                .collect())
        })
        .await
    }

    /// The configs of topics and brokers (DescribeConfigs: a broker's to
    /// that broker, topics' to any broker).
    pub async fn describe_configs(
        &self,
        resources: &[ConfigResource],
        timeout: Duration,
    ) -> Result<ItemResults<ConfigResource, Vec<ConfigEntry>>, AdminError> {
        let requested: Vec<(ConfigResource, ())> =
            resources.iter().map(|r| (r.clone(), ())).collect();
        self.per_config_target(
            "DescribeConfigs",
            &requested,
            timeout,
            |target, group, deadline| async move {
                let resources: Vec<ConfigResource> =
                    group.iter().map(|(r, ())| r.clone()).collect();
                self.describe_configs_at(target, &resources, deadline).await
            },
        )
        .await
    }

    /// Changes configs of topics and brokers (IncrementalAlterConfigs: a
    /// broker's to that broker, topics' to any broker, which has the
    /// controller commit them): each resource's operations apply together
    /// or not at all. With `validate_only` the broker checks them and
    /// changes nothing. Unknown configs and bad values are refused with
    /// `INVALID_CONFIG`, unknown topics with `UNKNOWN_TOPIC_OR_PARTITION`.
    pub async fn incremental_alter_configs(
        &self,
        changes: &[(ConfigResource, Vec<AlterConfigOp>)],
        validate_only: bool,
        timeout: Duration,
    ) -> Result<ItemResults<ConfigResource, ()>, AdminError> {
        self.per_config_target(
            "IncrementalAlterConfigs",
            changes,
            timeout,
            |target, group, deadline| async move {
                self.alter_configs_at(target, &group, validate_only, deadline)
                    .await
            },
        )
        .await
    }

    /// Sends each target's share of `items` (a broker's resources to that
    /// broker, topics' to any broker) with `send`, retrying as
    /// [`Admin::retrying`] does, and gathers one result per resource.
    async fn per_config_target<I, V, F, Fut>(
        &self,
        operation: &'static str,
        items: &[(ConfigResource, I)],
        timeout: Duration,
        send: F,
    ) -> Result<ItemResults<ConfigResource, V>, AdminError>
    where
        I: Clone,
        V: Clone,
        F: Fn(Option<i32>, Vec<(ConfigResource, I)>, Instant) -> Fut + Copy,
        Fut: std::future::Future<Output = Result<ItemResults<ConfigResource, V>, AdminError>>,
    {
        let mut groups: BTreeMap<Option<i32>, Vec<(ConfigResource, I)>> = BTreeMap::new();
        for (resource, item) in items {
            let target = match resource {
                ConfigResource::Broker(id) => Some(*id),
                ConfigResource::Topic(_) => None,
            };
            groups
                .entry(target)
                .or_default()
                .push((resource.clone(), item.clone()));
        }
        let asks = groups.into_iter().map(|(target, group)| async move {
            let answer = self
                .retrying(operation, timeout, |deadline| {
                    send(target, group.clone(), deadline)
                })
                .await;
            (group, answer)
        });
        let mut out = BTreeMap::new();
        for (group, answer) in futures::future::join_all(asks).await {
            match answer {
                Ok(mut answers) => {
                    for (resource, _) in group {
                        let result = answers.remove(&resource).unwrap_or_else(|| {
                            Err(AdminError::MissingResult {
                                operation,
                                item: resource.to_string(),
                            })
                        });
                        out.insert(resource, result);
                    }
                }
                // One group failing whole fails its resources, not the others'.
                Err(e) => {
                    for (resource, _) in group {
                        out.insert(resource, Err(e.clone()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Where a config request goes: a broker's resources to that broker
    /// (`Some(id)`), topics' to any broker.
    async fn config_connection(
        &self,
        target: Option<i32>,
    ) -> Result<std::sync::Arc<crate::connection::Connection>, AdminError> {
        Ok(match target {
            Some(id) => self.cluster.broker_connection(id).await?,
            None => self.cluster.any_broker_connection().await?,
        })
    }

    async fn alter_configs_at(
        &self,
        target: Option<i32>,
        changes: &[(ConfigResource, Vec<AlterConfigOp>)],
        validate_only: bool,
        deadline: Instant,
    ) -> Result<ItemResults<ConfigResource, ()>, AdminError> {
        use protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        use protocol::messages::IncrementalAlterConfigsRequest;
        let connection = self.config_connection(target).await?;
        let request = IncrementalAlterConfigsRequest::default()
            .with_validate_only(validate_only)
            .with_resources(
                changes
                    .iter()
                    .map(|(r, ops)| {
                        AlterConfigsResource::default()
                            .with_resource_type(r.resource_type())
                            .with_resource_name(StrBytes::from_string(r.resource_name()))
                            .with_configs(
                                ops.iter()
                                    .map(|op| {
                                        AlterableConfig::default()
                                            .with_name(StrBytes::from_string(op.name().to_string()))
                                            .with_config_operation(op.code())
                                            .with_value(
                                                op.value()
                                                    .map(|v| StrBytes::from_string(v.to_string())),
                                            )
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let response = connection
            .call_version(
                &request,
                connection.version_for::<IncrementalAlterConfigsRequest>()?,
                Some(deadline),
            )
            .await?;
        let mut out = BTreeMap::new();
        for result in response.responses {
            let Some((resource, _)) = changes
                .iter()
                .find(|(r, _)| r.is(result.resource_type, &result.resource_name))
            else {
                continue;
            };
            let answer = check(result.error_code, |code| AdminError::Resource {
                resource: resource.clone(),
                code,
                message: result.error_message.as_ref().map(|m| m.to_string()),
            });
            out.insert(resource.clone(), answer);
        }
        Ok(out)
    }

    async fn describe_configs_at(
        &self,
        target: Option<i32>,
        resources: &[ConfigResource],
        deadline: Instant,
    ) -> Result<ItemResults<ConfigResource, Vec<ConfigEntry>>, AdminError> {
        use protocol::messages::describe_configs_request::DescribeConfigsResource;
        use protocol::messages::DescribeConfigsRequest;
        let connection = self.config_connection(target).await?;
        let request = DescribeConfigsRequest::default().with_resources(
            resources
                .iter()
                .map(|r| {
                    DescribeConfigsResource::default()
                        .with_resource_type(r.resource_type())
                        .with_resource_name(StrBytes::from_string(r.resource_name()))
                        .with_configuration_keys(None)
                })
                .collect(),
        );
        let response = connection
            .call_version(
                &request,
                connection.version_for::<DescribeConfigsRequest>()?,
                Some(deadline),
            )
            .await?;
        let mut out = BTreeMap::new();
        for result in response.results {
            let Some(resource) = resources
                .iter()
                .find(|r| r.is(result.resource_type, &result.resource_name))
            else {
                continue;
            };
            let answer = check(result.error_code, |code| AdminError::Resource {
                resource: resource.clone(),
                code,
                message: result.error_message.as_ref().map(|m| m.to_string()),
            })
            .map(|()| {
                result
                    .configs
                    .iter()
                    .map(|c| ConfigEntry {
                        name: c.name.to_string(),
                        value: c.value.as_ref().map(|v| v.to_string()),
                        source: ConfigSource::from_code(c.config_source),
                        read_only: c.read_only,
                        sensitive: c.is_sensitive,
                    })
                    .collect()
            });
            out.insert(resource.clone(), answer);
        }
        Ok(out)
    }
}
