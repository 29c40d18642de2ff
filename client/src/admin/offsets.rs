//! The calls to partitions' leaders, following leader changes: ListOffsets
//! and DeleteRecords.

use std::collections::BTreeMap;
use std::time::Duration;

use protocol::messages::BrokerId;
use tokio::time::Instant;

use super::error::check;
use super::routing::{timeout_ms, LeaderItem};
use super::types::*;
use super::{topic_name, Admin, AdminError, ItemResults};
use crate::consumer::TopicPartition;

/// ListOffsets versions we speak (v7 added `MaxTimestamp`).
const LIST_OFFSETS_VERSIONS: (i16, i16) = crate::consumer::list_offsets::LIST_OFFSETS_VERSIONS;

impl Admin {
    /// Looks up offsets of partitions (ListOffsets, to each partition's
    /// leader): the log start, the log end, the largest timestamp, or the
    /// first offset at or after a time. Leader changes are followed until
    /// `timeout`; a partition that does not exist fails at once with
    /// `UNKNOWN_TOPIC_OR_PARTITION`.
    pub async fn list_offsets(
        &self,
        partitions: &[(TopicPartition, OffsetSpec)],
        timeout: Duration,
    ) -> Result<ItemResults<TopicPartition, ListedOffset>, AdminError> {
        let answers = self
            .leader_items(
                "ListOffsets",
                timeout,
                partitions,
                |leader, share, deadline| async move {
                    self.list_offsets_from(leader, &share, deadline).await
                },
            )
            .await;
        Ok(answers)
    }

    async fn list_offsets_from(
        &self,
        leader: i32,
        wanted: &[LeaderItem<OffsetSpec>],
        deadline: Instant,
    ) -> Result<ItemResults<TopicPartition, ListedOffset>, AdminError> {
        use protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
        use protocol::messages::ListOffsetsRequest;
        let connection = self.cluster.broker_connection(leader).await?;
        let version = connection
            .version_within::<ListOffsetsRequest>(LIST_OFFSETS_VERSIONS)
            .ok_or_else(|| AdminError::Unsupported {
                operation: "ListOffsets",
                reason: format!(
                    "{} serves no ListOffsets version in {LIST_OFFSETS_VERSIONS:?}",
                    connection.addr()
                ),
            })?;
        let mut out = BTreeMap::new();
        let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
        for (tp, spec, epoch) in wanted {
            if *spec == OffsetSpec::MaxTimestamp && version < 7 {
                out.insert(
                    tp.clone(),
                    Err(AdminError::Unsupported {
                        operation: "ListOffsets",
                        reason: format!(
                            "MaxTimestamp needs v7; {} serves v{version}",
                            connection.addr()
                        ),
                    }),
                );
                continue;
            }
            topics.entry(&tp.topic).or_default().push(
                ListOffsetsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_current_leader_epoch(*epoch)
                    .with_timestamp(spec.wire_timestamp()),
            );
        }
        if topics.is_empty() {
            return Ok(out);
        }
        let specs: BTreeMap<&TopicPartition, OffsetSpec> =
            wanted.iter().map(|(tp, spec, _)| (tp, *spec)).collect();
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(0)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        ListOffsetsTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let request = if version >= 10 {
            request.with_timeout_ms(timeout_ms(deadline))
        } else {
            request
        };
        let response = connection
            .call_version(&request, version, Some(deadline))
            .await?;
        for topic in response.topics {
            for p in topic.partitions {
                let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                let by_time = matches!(
                    specs.get(&tp),
                    Some(OffsetSpec::Timestamp(_) | OffsetSpec::MaxTimestamp)
                );
                let result = check(p.error_code, |code| AdminError::Partition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    code,
                    message: None,
                })
                .map(|()| ListedOffset {
                    offset: p.offset,
                    timestamp: (by_time && p.timestamp >= 0).then_some(p.timestamp),
                    leader_epoch: (p.leader_epoch >= 0).then_some(p.leader_epoch),
                });
                out.insert(tp, result);
            }
        }
        Ok(out)
    }
}

impl Admin {
    /// Deletes the records of partitions before an offset (DeleteRecords,
    /// to each partition's leader): the partition's log start offset moves
    /// up to `before`, so consumers and ListOffsets no longer see the
    /// records below it, and their segments go from the disk.
    /// [`DELETE_TO_HIGH_WATERMARK`] (-1) deletes every record up to the
    /// high watermark. Each partition answers its new low watermark (log
    /// start offset); an offset above the high watermark is refused with
    /// `OFFSET_OUT_OF_RANGE`. Leader changes are followed until `timeout`;
    /// a partition that does not exist fails at once with
    /// `UNKNOWN_TOPIC_OR_PARTITION`.
    pub async fn delete_records(
        &self,
        before: &[(TopicPartition, i64)],
        timeout: Duration,
    ) -> Result<ItemResults<TopicPartition, DeletedRecords>, AdminError> {
        let answers = self
            .leader_items(
                "DeleteRecords",
                timeout,
                before,
                |leader, share, deadline| async move {
                    self.delete_records_from(leader, &share, deadline).await
                },
            )
            .await;
        Ok(answers)
    }

    async fn delete_records_from(
        &self,
        leader: i32,
        wanted: &[LeaderItem<i64>],
        deadline: Instant,
    ) -> Result<ItemResults<TopicPartition, DeletedRecords>, AdminError> {
        use protocol::messages::delete_records_request::{
            DeleteRecordsPartition, DeleteRecordsTopic,
        };
        use protocol::messages::DeleteRecordsRequest;
        let connection = self.cluster.broker_connection(leader).await?;
        let mut topics: BTreeMap<&str, Vec<DeleteRecordsPartition>> = BTreeMap::new();
        for (tp, before, _) in wanted {
            topics.entry(&tp.topic).or_default().push(
                DeleteRecordsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_offset(*before),
            );
        }
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(timeout_ms(deadline))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        DeleteRecordsTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let response = connection
            .call_version(
                &request,
                connection.version_for::<DeleteRecordsRequest>()?,
                Some(deadline),
            )
            .await?;
        let mut out = BTreeMap::new();
        for topic in response.topics {
            for p in topic.partitions {
                let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                let result = check(p.error_code, |code| AdminError::Partition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    code,
                    message: None,
                })
                .map(|()| DeletedRecords {
                    low_watermark: p.low_watermark,
                });
                out.insert(tp, result);
            }
        }
        Ok(out)
    }
}
