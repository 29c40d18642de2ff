//! ListOffsets to each partition's leader, following leader changes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use protocol::messages::BrokerId;
use protocol::ErrorCode;
use tokio::time::Instant;

use super::error::check;
use super::routing::timeout_ms;
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
        let deadline = Instant::now() + timeout;
        let mut done: ItemResults<TopicPartition, ListedOffset> = BTreeMap::new();
        let mut pending: BTreeMap<TopicPartition, OffsetSpec> =
            partitions.iter().cloned().collect();
        let mut last_errors: BTreeMap<TopicPartition, AdminError> = BTreeMap::new();
        let topics: Vec<String> = pending
            .keys()
            .map(|tp| tp.topic.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut attempt = 0u32;
        // Bounded by the deadline: each round either finishes partitions or
        // waits a backoff, and none starts after the deadline.
        while !pending.is_empty() {
            attempt += 1;
            let metadata =
                match tokio::time::timeout_at(deadline, self.cluster.refresh_metadata(&topics))
                    .await
                {
                    Ok(Ok(metadata)) => Some(metadata),
                    Ok(Err(e)) => {
                        for tp in pending.keys() {
                            last_errors.insert(tp.clone(), AdminError::Cluster(e.clone()));
                        }
                        None
                    }
                    Err(_) => break,
                };
            if let Some(metadata) = metadata {
                let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, OffsetSpec, i32)>> =
                    BTreeMap::new();
                for (tp, spec) in &pending {
                    let topic = metadata.topic(&tp.topic);
                    let unknown = |code| AdminError::Partition {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        code,
                        message: None,
                    };
                    match topic {
                        None => {
                            last_errors
                                .insert(tp.clone(), unknown(ErrorCode::LEADER_NOT_AVAILABLE));
                        }
                        Some(t) if t.error == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION => {
                            done.insert(
                                tp.clone(),
                                Err(unknown(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)),
                            );
                        }
                        Some(t) if !t.error.is_ok() => {
                            last_errors.insert(tp.clone(), unknown(t.error));
                        }
                        Some(t) => match usize::try_from(tp.partition)
                            .ok()
                            .and_then(|p| t.partitions.get(p))
                        {
                            None => {
                                done.insert(
                                    tp.clone(),
                                    Err(unknown(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)),
                                );
                            }
                            Some(p) => match p.leader_id {
                                Some(leader) => by_leader.entry(leader).or_default().push((
                                    tp.clone(),
                                    *spec,
                                    p.leader_epoch,
                                )),
                                None => {
                                    last_errors.insert(
                                        tp.clone(),
                                        unknown(ErrorCode::LEADER_NOT_AVAILABLE),
                                    );
                                }
                            },
                        },
                    }
                }
                for tp in done.keys() {
                    pending.remove(tp);
                }
                let asks = by_leader.into_iter().map(|(leader, wanted)| async move {
                    let answer = self.list_offsets_from(leader, &wanted, deadline).await;
                    (wanted, answer)
                });
                for (wanted, answer) in futures::future::join_all(asks).await {
                    match answer {
                        Ok(mut answers) => {
                            for (tp, _, _) in wanted {
                                let result = answers.remove(&tp).unwrap_or_else(|| {
                                    Err(AdminError::MissingResult {
                                        operation: "ListOffsets",
                                        item: tp.to_string(),
                                    })
                                });
                                match result {
                                    Err(e) if e.is_retriable() => {
                                        last_errors.insert(tp, e);
                                    }
                                    other => {
                                        pending.remove(&tp);
                                        done.insert(tp, other);
                                    }
                                }
                            }
                        }
                        Err(e) if e.is_retriable() => {
                            for (tp, _, _) in wanted {
                                last_errors.insert(tp, e.clone());
                            }
                        }
                        Err(e) => {
                            for (tp, _, _) in wanted {
                                pending.remove(&tp);
                                done.insert(tp, Err(e.clone()));
                            }
                        }
                    }
                }
            }
            if pending.is_empty() {
                break;
            }
            let delay = self.backoff.delay(attempt, &mut rand::thread_rng());
            if Instant::now() + delay >= deadline {
                break;
            }
            tokio::time::sleep(delay).await;
        }
        for tp in pending.into_keys() {
            let last_error = last_errors.remove(&tp).map(Box::new);
            done.insert(
                tp,
                Err(AdminError::Timeout {
                    operation: "ListOffsets",
                    timeout,
                    last_error,
                }),
            );
        }
        Ok(done)
    }

    async fn list_offsets_from(
        &self,
        leader: i32,
        wanted: &[(TopicPartition, OffsetSpec, i32)],
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
