//! The two admin calls the verifier makes itself, over the client's
//! connections: CreateTopics for a missing topic, and ListOffsets for the
//! range of each partition to read. Both speak only the Kafka protocol, so
//! they work against any Kafka-compatible cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use client::cluster::{Cluster, ClusterConfig};
use client::connection::ConnectionConfig;
use protocol::messages::create_topics_request::CreatableTopic;
use protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use protocol::messages::{BrokerId, CreateTopicsRequest, ListOffsetsRequest, TopicName};
use protocol::{ErrorCode, StrBytes};
use thiserror::Error;
use tokio::time::Instant;

/// How long to wait before asking again after a retriable answer (a topic
/// without leaders yet, a broker that is not the controller, a leader
/// change during ListOffsets).
pub const ADMIN_RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// How long the controller may take to create the topic before it answers
/// `REQUEST_TIMED_OUT` (the topic may still be created; the next round of
/// [`ensure_topic`] then finds it).
const CREATE_TOPICS_TIMEOUT_MS: i32 = 10_000;

/// ListOffsets versions we speak: from the first with a single offset per
/// partition to Kafka 4.1's newest, as the client's consumer does.
const LIST_OFFSETS_VERSIONS: (i16, i16) = (1, 10);

/// The ListOffsets timestamp that asks for the log start offset.
const EARLIEST_TIMESTAMP: i64 = -2;
/// The ListOffsets timestamp that asks for the log end offset (the high
/// watermark, with isolation level read-uncommitted).
const LATEST_TIMESTAMP: i64 = -1;

/// Why the topic could not be made ready or its offsets listed.
#[derive(Debug, Error)]
pub enum TopicError {
    #[error("cannot reach the cluster")]
    Cluster(#[from] client::cluster::ClusterError),
    #[error("creating topic {topic} failed with {code}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    CreateRejected {
        topic: String,
        code: ErrorCode,
        message: Option<String>,
    },
    #[error("topic {topic} was not ready within {waited:?}: {last_problem}")]
    NotReady {
        topic: String,
        waited: Duration,
        last_problem: String,
    },
    #[error("ListOffsets for {topic} did not succeed within {waited:?}: {last_problem}")]
    ListOffsets {
        topic: String,
        waited: Duration,
        last_problem: String,
    },
}

/// Connects to the cluster for admin calls, without creating topics
/// through Metadata requests. A cluster that does not answer yet (brokers
/// restarting in a fault test) is asked again until `timeout` passes.
pub async fn connect(
    bootstrap_servers: &str,
    request_timeout: Duration,
    timeout: Duration,
) -> Result<Cluster, TopicError> {
    let deadline = Instant::now() + timeout;
    let config = ClusterConfig {
        bootstrap_servers: client::cluster::bootstrap_list(bootstrap_servers),
        connection: ConnectionConfig {
            client_id: "verifier-admin".into(),
            request_timeout,
            ..ConnectionConfig::default()
        },
        allow_auto_topic_creation: false,
    };
    loop {
        match Cluster::connect(config.clone()).await {
            Ok(cluster) => return Ok(cluster),
            Err(e) if e.is_retriable() && Instant::now() + ADMIN_RETRY_INTERVAL < deadline => {
                tracing::debug!(error = %e, "the cluster does not answer yet; asking again");
                tokio::time::sleep(ADMIN_RETRY_INTERVAL).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Makes sure `topic` exists and every partition has a leader; creates it
/// with `partitions` and `replication_factor` if it is missing. Returns the
/// partition count, which is the existing one for a topic that was there.
pub async fn ensure_topic(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    timeout: Duration,
) -> Result<i32, TopicError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let names = [topic.to_string()];
    let mut last_problem = String::from("not asked yet");
    while Instant::now() < deadline {
        let metadata = match cluster.refresh_metadata(&names).await {
            Ok(metadata) => metadata,
            Err(e) if e.is_retriable() => {
                last_problem = e.to_string();
                tokio::time::sleep(ADMIN_RETRY_INTERVAL).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match metadata.topic(topic) {
            Some(t) if t.error.is_ok() && !t.partitions.is_empty() => {
                let leaderless = t
                    .partitions
                    .iter()
                    .filter(|p| p.leader_id.is_none())
                    .count();
                if leaderless == 0 {
                    return Ok(t.partition_count());
                }
                last_problem = format!("{leaderless} partition(s) without a leader");
            }
            Some(t) if t.error != ErrorCode::UNKNOWN_TOPIC_OR_PARTITION => {
                last_problem = format!("Metadata answered {}", t.error);
            }
            _ => {
                last_problem = format!("topic {topic} does not exist yet");
                create_topic(
                    cluster,
                    topic,
                    partitions,
                    replication_factor,
                    &mut last_problem,
                )
                .await?;
            }
        }
        tokio::time::sleep(ADMIN_RETRY_INTERVAL).await;
    }
    Err(TopicError::NotReady {
        topic: topic.to_string(),
        waited: started.elapsed(),
        last_problem,
    })
}

/// Sends CreateTopics to the controller if the metadata names one (older
/// Kafka accepts it only there; newer brokers forward it), else to any
/// broker. Retriable answers are left for the caller's next round.
async fn create_topic(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    last_problem: &mut String,
) -> Result<(), TopicError> {
    let metadata = cluster.metadata();
    let target = metadata
        .controller_id
        .filter(|id| metadata.brokers.contains_key(id))
        .or_else(|| metadata.brokers.keys().min().copied());
    let Some(target) = target else {
        *last_problem = "the metadata names no broker".into();
        return Ok(());
    };
    let connection = match cluster.broker_connection(target).await {
        Ok(connection) => connection,
        Err(e) => {
            *last_problem = format!("cannot reach broker {target}: {e}");
            return Ok(());
        }
    };
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)])
        .with_timeout_ms(CREATE_TOPICS_TIMEOUT_MS);
    let response = match connection.call(&request).await {
        Ok(response) => response,
        Err(e) => {
            *last_problem = format!("CreateTopics to broker {target}: {e}");
            return Ok(());
        }
    };
    let Some(result) = response.topics.first() else {
        *last_problem = format!("CreateTopics to broker {target} answered no topic");
        return Ok(());
    };
    let code = ErrorCode(result.error_code);
    if code.is_ok() || code == ErrorCode::TOPIC_ALREADY_EXISTS {
        return Ok(());
    }
    if code.is_retriable() || code == ErrorCode::NOT_CONTROLLER {
        *last_problem = format!("CreateTopics answered {code}");
        return Ok(());
    }
    Err(TopicError::CreateRejected {
        topic: topic.to_string(),
        code,
        message: result.error_message.as_ref().map(|m| m.to_string()),
    })
}

/// The log start and end offsets of partitions `0..partition_count`, asked
/// of each partition's leader; retried until every partition answered or
/// `timeout` passed.
pub async fn offset_ranges(
    cluster: &Cluster,
    topic: &str,
    partition_count: i32,
    timeout: Duration,
) -> Result<BTreeMap<i32, (i64, i64)>, TopicError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut earliest = BTreeMap::new();
    let mut latest = BTreeMap::new();
    let mut last_problem = String::from("not asked yet");
    let names = [topic.to_string()];
    while Instant::now() < deadline {
        let missing: Vec<i32> = (0..partition_count)
            .filter(|p| !earliest.contains_key(p) || !latest.contains_key(p))
            .collect();
        if missing.is_empty() {
            return Ok((0..partition_count)
                .map(|p| (p, (earliest[&p], latest[&p])))
                .collect());
        }
        let metadata = match cluster.refresh_metadata(&names).await {
            Ok(metadata) => metadata,
            Err(e) => {
                last_problem = e.to_string();
                tokio::time::sleep(ADMIN_RETRY_INTERVAL).await;
                continue;
            }
        };
        let mut by_leader: BTreeMap<i32, Vec<(i32, i32)>> = BTreeMap::new();
        for partition in missing {
            let leader = metadata
                .topic(topic)
                .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?))
                .and_then(|p| Some((p.leader_id?, p.leader_epoch)));
            match leader {
                Some((leader, epoch)) => by_leader
                    .entry(leader)
                    .or_default()
                    .push((partition, epoch)),
                None => last_problem = format!("partition {partition} has no leader"),
            }
        }
        for (leader, partitions) in by_leader {
            for (timestamp, into) in [
                (EARLIEST_TIMESTAMP, &mut earliest),
                (LATEST_TIMESTAMP, &mut latest),
            ] {
                match ask_leader(cluster, leader, topic, &partitions, timestamp, deadline).await {
                    Ok(answers) => {
                        for (partition, answer) in answers {
                            match answer {
                                Ok(offset) => {
                                    into.insert(partition, offset);
                                }
                                Err(code) => {
                                    last_problem = format!(
                                        "partition {partition}: ListOffsets answered {code}"
                                    )
                                }
                            }
                        }
                    }
                    Err(problem) => last_problem = problem,
                }
            }
        }
        if (0..partition_count).any(|p| !earliest.contains_key(&p) || !latest.contains_key(&p)) {
            tokio::time::sleep(ADMIN_RETRY_INTERVAL).await;
        }
    }
    Err(TopicError::ListOffsets {
        topic: topic.to_string(),
        waited: started.elapsed(),
        last_problem,
    })
}

/// One ListOffsets request to `leader` for `partitions` (with their leader
/// epochs, so a stale leader answers with an error instead of its offsets).
async fn ask_leader(
    cluster: &Cluster,
    leader: i32,
    topic: &str,
    partitions: &[(i32, i32)],
    timestamp: i64,
    give_up_at: Instant,
) -> Result<Vec<(i32, Result<i64, ErrorCode>)>, String> {
    let connection = cluster
        .broker_connection(leader)
        .await
        .map_err(|e| format!("cannot reach broker {leader}: {e}"))?;
    let version = connection
        .version_within::<ListOffsetsRequest>(LIST_OFFSETS_VERSIONS)
        .ok_or_else(|| format!("broker {leader} serves no ListOffsets version we speak"))?;
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(0)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|(partition, epoch)| {
                        ListOffsetsPartition::default()
                            .with_partition_index(*partition)
                            .with_current_leader_epoch(*epoch)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let response = connection
        .call_version(&request, version, Some(give_up_at))
        .await
        .map_err(|e| format!("ListOffsets to broker {leader}: {e}"))?;
    Ok(response
        .topics
        .into_iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partitions)
        .map(|p| {
            let code = ErrorCode(p.error_code);
            let answer = if code.is_ok() {
                Ok(p.offset)
            } else {
                Err(code)
            };
            (p.partition_index, answer)
        })
        .collect())
}
