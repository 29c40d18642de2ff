//! ListOffsets for position resets: the log start (`earliest`) or end
//! (`latest`) offset of partitions, asked of each partition's leader.

use std::collections::{BTreeMap, HashMap};

use protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
use protocol::{ErrorCode, StrBytes};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::consumer::record::TopicPartition;
use crate::consumer::state::OffsetReset;
use crate::metadata::Metadata;

/// ListOffsets versions we speak (Kafka 4.1's range).
pub const LIST_OFFSETS_VERSIONS: (i16, i16) = (1, 10);

/// The answer for one partition: its offset and the leader epoch of the
/// record before it, or the error to handle (retriable ones after a
/// metadata refresh).
pub type ListedOffset = Result<(i64, Option<i32>), ErrorCode>;

/// Looks up the reset offset of each partition. Partitions without a known
/// leader come back `LEADER_NOT_AVAILABLE`; a broker that cannot be asked
/// fails its partitions with `REQUEST_TIMED_OUT` (both retriable).
pub async fn list_offsets(
    cluster: &Cluster,
    metadata: &Metadata,
    partitions: &[(TopicPartition, OffsetReset)],
    give_up_at: Instant,
) -> BTreeMap<TopicPartition, ListedOffset> {
    let mut out = BTreeMap::new();
    let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, OffsetReset, i32)>> = BTreeMap::new();
    for (tp, reset) in partitions {
        let leader = metadata
            .topic(&tp.topic)
            .and_then(|t| t.partitions.get(usize::try_from(tp.partition).ok()?))
            .and_then(|p| Some((p.leader_id?, p.leader_epoch)));
        match leader {
            Some((leader, epoch)) => {
                by_leader
                    .entry(leader)
                    .or_default()
                    .push((tp.clone(), *reset, epoch))
            }
            None => {
                out.insert(tp.clone(), Err(ErrorCode::LEADER_NOT_AVAILABLE));
            }
        }
    }
    let lookups = by_leader.into_iter().map(|(leader, wanted)| async move {
        let result = ask_leader(cluster, leader, &wanted, give_up_at).await;
        (wanted, result)
    });
    for (wanted, result) in futures::future::join_all(lookups).await {
        match result {
            Ok(answers) => {
                for (tp, _, _) in wanted {
                    let answer = answers
                        .get(&tp)
                        .cloned()
                        .unwrap_or(Err(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION));
                    out.insert(tp, answer);
                }
            }
            Err(reason) => {
                tracing::debug!(%reason, "ListOffsets failed");
                for (tp, _, _) in wanted {
                    out.insert(tp, Err(ErrorCode::REQUEST_TIMED_OUT));
                }
            }
        }
    }
    out
}

async fn ask_leader(
    cluster: &Cluster,
    leader: i32,
    wanted: &[(TopicPartition, OffsetReset, i32)],
    give_up_at: Instant,
) -> Result<HashMap<TopicPartition, ListedOffset>, String> {
    let connection = cluster
        .broker_connection(leader)
        .await
        .map_err(|e| e.to_string())?;
    let version = connection
        .version_within::<ListOffsetsRequest>(LIST_OFFSETS_VERSIONS)
        .ok_or_else(|| {
            format!(
                "{} serves no ListOffsets version we speak",
                connection.addr()
            )
        })?;
    let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for (tp, reset, epoch) in wanted {
        topics.entry(&tp.topic).or_default().push(
            ListOffsetsPartition::default()
                .with_partition_index(tp.partition)
                .with_current_leader_epoch(*epoch)
                .with_timestamp(reset.list_offsets_timestamp()),
        );
    }
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(0)
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response = connection
        .call_version(&request, version, Some(give_up_at))
        .await
        .map_err(|e| e.to_string())?;
    let mut answers = HashMap::new();
    for topic in response.topics {
        for partition in topic.partitions {
            let tp = TopicPartition::new(topic.name.0.to_string(), partition.partition_index);
            let code = ErrorCode(partition.error_code);
            let answer = if code.is_ok() {
                Ok((
                    partition.offset,
                    (partition.leader_epoch >= 0).then_some(partition.leader_epoch),
                ))
            } else {
                Err(code)
            };
            answers.insert(tp, answer);
        }
    }
    Ok(answers)
}
