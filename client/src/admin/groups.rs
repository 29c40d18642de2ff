//! Consumer groups: listing, describing and deleting them (ListGroups to
//! every broker, DescribeGroups and DeleteGroups to each group's
//! coordinator), and their committed offsets (OffsetFetch, OffsetCommit as
//! a member outside any generation, as the Java `AdminClient` alters them,
//! and OffsetDelete).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest,
};
use protocol::{ErrorCode, StrBytes};
use tokio::time::Instant;

use super::error::check;
use super::{topic_name, Admin, AdminError, ItemResults};
use crate::connection::Connection;
use crate::consumer::codec::Assignment;
use crate::consumer::{OffsetAndMetadata, TopicPartition};

/// OffsetFetch versions with the single-group request layout.
const OFFSET_FETCH_VERSIONS: (i16, i16) = (1, 7);
const OFFSET_COMMIT_VERSIONS: (i16, i16) = (2, 9);

/// A group as ListGroups names it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// `consumer` for consumer groups; empty for a group with no members
    /// and only offsets.
    pub protocol_type: String,
    /// `Stable`, `Empty`, `PreparingRebalance`, ... (ListGroups v4+; empty
    /// from older brokers).
    pub state: String,
}

/// A group as DescribeGroups describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// `Stable`, `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Dead`.
    pub state: String,
    /// `consumer` for consumer groups.
    pub protocol_type: String,
    /// The protocol the group chose: for a consumer group, its assignor.
    pub protocol: String,
    /// The members, by member id.
    pub members: Vec<GroupMember>,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupMember {
    /// The id the coordinator gave the member.
    pub member_id: String,
    /// Its `group.instance.id`, for a static member.
    pub group_instance_id: Option<String>,
    /// Its `client.id`.
    pub client_id: String,
    /// Where it connects from.
    pub client_host: String,
    /// Its partitions, for a consumer group whose assignment decodes.
    pub assignment: Vec<TopicPartition>,
}

impl Admin {
    /// The connection to `group`'s coordinator (FindCoordinator through any
    /// broker); a retriable `AdminError::Group` while none is available.
    async fn group_coordinator(
        &self,
        group: &str,
        deadline: Instant,
    ) -> Result<Arc<Connection>, AdminError> {
        let connection = self.cluster.any_broker_connection().await?;
        let version = connection.version_for::<FindCoordinatorRequest>()?;
        let key = StrBytes::from_string(group.to_string());
        let mut request = FindCoordinatorRequest::default().with_key_type(0);
        request = if version >= 4 {
            request.with_coordinator_keys(vec![key])
        } else {
            request.with_key(key)
        };
        let response = connection
            .call_version(&request, version, Some(deadline))
            .await?;
        let (code, node_id, host, port) = if version >= 4 {
            let Some(c) = response.coordinators.first() else {
                return Err(AdminError::MissingResult {
                    operation: "FindCoordinator",
                    item: format!("group {group:?}"),
                });
            };
            (c.error_code, c.node_id.0, c.host.to_string(), c.port)
        } else {
            (
                response.error_code,
                response.node_id.0,
                response.host.to_string(),
                response.port,
            )
        };
        check(code, |code| AdminError::Group {
            group: group.to_string(),
            code,
            message: None,
        })?;
        match self.cluster.broker_connection(node_id).await {
            Ok(connection) => Ok(connection),
            // A coordinator the metadata does not know yet: by address.
            Err(_) => Ok(self
                .cluster
                .connection_to(&format!("{host}:{port}"))
                .await?),
        }
    }

    /// Every group any broker knows (ListGroups to each broker).
    pub async fn list_groups(&self, timeout: Duration) -> Result<Vec<GroupListing>, AdminError> {
        self.retrying("ListGroups", timeout, |deadline| async move {
            self.cluster.refresh_metadata(&[]).await?;
            let mut node_ids: Vec<i32> = self.cluster.metadata().brokers.keys().copied().collect();
            node_ids.sort_unstable();
            let mut groups: BTreeMap<String, GroupListing> = BTreeMap::new();
            for node_id in node_ids {
                let connection = self.cluster.broker_connection(node_id).await?;
                let response = connection
                    .call_version(
                        &ListGroupsRequest::default(),
                        connection.version_for::<ListGroupsRequest>()?,
                        Some(deadline),
                    )
                    .await?;
                check(response.error_code, |code| AdminError::Rejected {
                    operation: "ListGroups",
                    code,
                    message: None,
                })?;
                for group in response.groups {
                    let listing = GroupListing {
                        group_id: group.group_id.0.to_string(),
                        protocol_type: group.protocol_type.to_string(),
                        state: group.group_state.to_string(),
                    };
                    groups.insert(listing.group_id.clone(), listing);
                }
            }
            Ok(groups.into_values().collect())
        })
        .await
    }

    /// Describes each group: state, chosen protocol, members and their
    /// partitions (DescribeGroups to each group's coordinator). A group
    /// that does not exist is described as `Dead` with no members, as
    /// Kafka answers.
    pub async fn describe_groups(
        &self,
        groups: &[&str],
        timeout: Duration,
    ) -> Result<ItemResults<String, GroupDescription>, AdminError> {
        let mut results = BTreeMap::new();
        for group in groups {
            let result = self
                .retrying("DescribeGroups", timeout, |deadline| async move {
                    let connection = self.group_coordinator(group, deadline).await?;
                    let request = DescribeGroupsRequest::default()
                        .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
                    let response = connection
                        .call_version(
                            &request,
                            connection.version_for::<DescribeGroupsRequest>()?,
                            Some(deadline),
                        )
                        .await?;
                    let Some(described) = response.groups.into_iter().next() else {
                        return Err(AdminError::MissingResult {
                            operation: "DescribeGroups",
                            item: format!("group {group:?}"),
                        });
                    };
                    check(described.error_code, |code| AdminError::Group {
                        group: group.to_string(),
                        code,
                        message: described.error_message.as_ref().map(|m| m.to_string()),
                    })?;
                    let consumer = described.protocol_type.to_string() == "consumer";
                    let members = described
                        .members
                        .iter()
                        .map(|m| GroupMember {
                            member_id: m.member_id.to_string(),
                            group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                            client_id: m.client_id.to_string(),
                            client_host: m.client_host.to_string(),
                            assignment: if consumer {
                                assigned_partitions(&m.member_assignment)
                            } else {
                                Vec::new()
                            },
                        })
                        .collect();
                    Ok(GroupDescription {
                        group_id: group.to_string(),
                        state: described.group_state.to_string(),
                        protocol_type: described.protocol_type.to_string(),
                        protocol: described.protocol_data.to_string(),
                        members,
                    })
                })
                .await;
            results.insert(group.to_string(), result);
        }
        Ok(results)
    }

    /// Deletes each group and its committed offsets (DeleteGroups to each
    /// group's coordinator). A group with members is refused with
    /// `NON_EMPTY_GROUP`, one that does not exist with `GROUP_ID_NOT_FOUND`.
    pub async fn delete_groups(
        &self,
        groups: &[&str],
        timeout: Duration,
    ) -> Result<ItemResults<String, ()>, AdminError> {
        let mut results = BTreeMap::new();
        for group in groups {
            let result = self
                .retrying("DeleteGroups", timeout, |deadline| async move {
                    let connection = self.group_coordinator(group, deadline).await?;
                    let request = DeleteGroupsRequest::default()
                        .with_groups_names(vec![GroupId(StrBytes::from_string(group.to_string()))]);
                    let response = connection
                        .call_version(
                            &request,
                            connection.version_for::<DeleteGroupsRequest>()?,
                            Some(deadline),
                        )
                        .await?;
                    let Some(answer) = response
                        .results
                        .iter()
                        .find(|r| r.group_id.0.to_string() == *group)
                    else {
                        return Err(AdminError::MissingResult {
                            operation: "DeleteGroups",
                            item: format!("group {group:?}"),
                        });
                    };
                    check(answer.error_code, |code| AdminError::Group {
                        group: group.to_string(),
                        code,
                        message: None,
                    })
                })
                .await;
            results.insert(group.to_string(), result);
        }
        Ok(results)
    }

    /// The offsets `group` has committed, every partition it committed
    /// (OffsetFetch of all topics, to the group's coordinator).
    pub async fn list_group_offsets(
        &self,
        group: &str,
        timeout: Duration,
    ) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>, AdminError> {
        self.retrying("OffsetFetch", timeout, |deadline| async move {
            let connection = self.group_coordinator(group, deadline).await?;
            let Some(version) =
                connection.version_within::<OffsetFetchRequest>(OFFSET_FETCH_VERSIONS)
            else {
                return Err(AdminError::Unsupported {
                    operation: "OffsetFetch",
                    reason: format!(
                        "the coordinator serves no version in {OFFSET_FETCH_VERSIONS:?}"
                    ),
                });
            };
            let request = OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_topics(None);
            let response = connection
                .call_version(&request, version, Some(deadline))
                .await?;
            check(response.error_code, |code| AdminError::Group {
                group: group.to_string(),
                code,
                message: None,
            })?;
            let mut offsets = BTreeMap::new();
            for topic in &response.topics {
                for partition in &topic.partitions {
                    let tp =
                        TopicPartition::new(topic.name.0.to_string(), partition.partition_index);
                    check(partition.error_code, |code| AdminError::Partition {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        code,
                        message: None,
                    })?;
                    if partition.committed_offset < 0 {
                        continue;
                    }
                    let offset = OffsetAndMetadata {
                        offset: partition.committed_offset,
                        leader_epoch: (partition.committed_leader_epoch >= 0)
                            .then_some(partition.committed_leader_epoch),
                        metadata: partition
                            .metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                    };
                    offsets.insert(tp, offset);
                }
            }
            Ok(offsets)
        })
        .await
    }

    /// Sets `group`'s committed offsets (OffsetCommit outside any
    /// generation, as the Java `AdminClient` does). The coordinator
    /// refuses while the group has active members (`UNKNOWN_MEMBER_ID`
    /// for each partition): stop its consumers first.
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
        timeout: Duration,
    ) -> Result<ItemResults<TopicPartition, ()>, AdminError> {
        self.retrying("OffsetCommit", timeout, |deadline| async move {
            let connection = self.group_coordinator(group, deadline).await?;
            let Some(version) =
                connection.version_within::<OffsetCommitRequest>(OFFSET_COMMIT_VERSIONS)
            else {
                return Err(AdminError::Unsupported {
                    operation: "OffsetCommit",
                    reason: format!(
                        "the coordinator serves no version in {OFFSET_COMMIT_VERSIONS:?}"
                    ),
                });
            };
            let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
            for (tp, offset) in offsets {
                topics.entry(&tp.topic).or_default().push(
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(tp.partition)
                        .with_committed_offset(offset.offset)
                        .with_committed_leader_epoch(offset.leader_epoch.unwrap_or(-1))
                        .with_committed_metadata(Some(StrBytes::from_string(
                            offset.metadata.clone(),
                        ))),
                );
            }
            let request = OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(StrBytes::default())
                .with_retention_time_ms(-1)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(topic, partitions)| {
                            OffsetCommitRequestTopic::default()
                                .with_name(topic_name(topic))
                                .with_partitions(partitions)
                        })
                        .collect(),
                );
            let response = connection
                .call_version(&request, version, Some(deadline))
                .await?;
            let mut results: ItemResults<TopicPartition, ()> = BTreeMap::new();
            for topic in &response.topics {
                for partition in &topic.partitions {
                    let tp =
                        TopicPartition::new(topic.name.0.to_string(), partition.partition_index);
                    let code = ErrorCode(partition.error_code);
                    if code.is_retriable() {
                        // The coordinator moved or is loading: the whole call again.
                        return Err(AdminError::Group {
                            group: group.to_string(),
                            code,
                            message: None,
                        });
                    }
                    let result = check(partition.error_code, |code| AdminError::Partition {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        code,
                        message: None,
                    });
                    results.insert(tp, result);
                }
            }
            Ok(results)
        })
        .await
    }

    /// Deletes `group`'s committed offsets of `partitions` (OffsetDelete).
    /// The coordinator refuses a partition of a topic the group's active
    /// members subscribe to (`GROUP_SUBSCRIBED_TO_TOPIC`).
    pub async fn delete_group_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Result<ItemResults<TopicPartition, ()>, AdminError> {
        self.retrying("OffsetDelete", timeout, |deadline| async move {
            let connection = self.group_coordinator(group, deadline).await?;
            let mut topics: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
            for tp in partitions {
                topics.entry(&tp.topic).or_default().insert(tp.partition);
            }
            let request = OffsetDeleteRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(topic, partitions)| {
                            OffsetDeleteRequestTopic::default()
                                .with_name(topic_name(topic))
                                .with_partitions(
                                    partitions
                                        .into_iter()
                                        .map(|p| {
                                            OffsetDeleteRequestPartition::default()
                                                .with_partition_index(p)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let response = connection
                .call_version(
                    &request,
                    connection.version_for::<OffsetDeleteRequest>()?,
                    Some(deadline),
                )
                .await?;
            check(response.error_code, |code| AdminError::Group {
                group: group.to_string(),
                code,
                message: None,
            })?;
            let mut results: ItemResults<TopicPartition, ()> = BTreeMap::new();
            for topic in &response.topics {
                for partition in &topic.partitions {
                    let tp =
                        TopicPartition::new(topic.name.0.to_string(), partition.partition_index);
                    let result = check(partition.error_code, |code| AdminError::Partition {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        code,
                        message: None,
                    });
                    results.insert(tp, result);
                }
            }
            Ok(results)
        })
        .await
    }
}

/// The partitions in a consumer member's assignment bytes (none if they do
/// not decode: a description is still useful without them).
fn assigned_partitions(bytes: &bytes::Bytes) -> Vec<TopicPartition> {
    match Assignment::decode(bytes) {
        Ok(assignment) => assignment
            .partitions
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions
                    .iter()
                    .map(move |p| TopicPartition::new(topic.as_str(), *p))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}
