//! The coordinator's offset APIs: OffsetCommit (sync with retries, or one
//! async attempt that keeps its place in line) and OffsetFetch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use protocol::{ErrorCode, StrBytes};
use tokio::time::Instant;

use crate::connection::ConnectionError;
use crate::connection::{Connection, PendingResponse};
use crate::consumer::codes;
use crate::consumer::coordinator::{CallError, Group, Member};
use crate::consumer::error::{CommitError, OffsetFetchError, RetriableError};
use crate::consumer::record::{OffsetAndMetadata, TopicPartition};

/// Versions we speak of each API (Kafka 4.1's ranges, as the broker's).
pub const OFFSET_COMMIT_VERSIONS: (i16, i16) = (2, 9);
pub const OFFSET_FETCH_VERSIONS: (i16, i16) = (1, 9);

/// An OffsetCommit on its way to the coordinator.
pub struct InFlightCommit {
    pending: PendingResponse,
    version: i16,
    connection: Arc<Connection>,
    member: Member,
    request_timeout: Duration,
}

/// Why one commit attempt failed.
#[derive(Debug, Clone)]
enum AttemptError {
    Retriable(RetriableError),
    Final(CommitError),
}

fn commit_request(
    group: &Group,
    offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    member: &Member,
    version: i16,
) -> OffsetCommitRequest {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (tp, offset) in offsets {
        topics.entry(&tp.topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(offset.offset)
                .with_committed_leader_epoch(offset.leader_epoch.unwrap_or(-1))
                .with_committed_metadata(Some(StrBytes::from_string(offset.metadata.clone()))),
        );
    }
    let mut request = OffsetCommitRequest::default()
        .with_group_id(GroupId(group.group_id_str()))
        .with_generation_id_or_member_epoch(member.generation_id)
        .with_member_id(StrBytes::from_string(member.member_id.clone()))
        .with_retention_time_ms(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    if version >= 7 {
        request = request
            .with_group_instance_id(member.group_instance_id.clone().map(StrBytes::from_string));
    }
    request
}

/// Puts an OffsetCommit on the coordinator connection. Commits started one
/// after another go out, and are answered, in that order.
async fn start_commit(
    group: &Group,
    offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    member: &Member,
) -> Result<InFlightCommit, AttemptError> {
    let connection = group.coordinator().await.map_err(|e| match e {
        CallError::Retriable(cause) => AttemptError::Retriable(cause),
        CallError::Fatal(error) => AttemptError::Final(CommitError::Group(error)),
    })?;
    let Some(version) = connection.version_within::<OffsetCommitRequest>(OFFSET_COMMIT_VERSIONS)
    else {
        return Err(AttemptError::Final(CommitError::Group(
            group.unsupported::<OffsetCommitRequest>(&connection, OFFSET_COMMIT_VERSIONS),
        )));
    };
    let request = commit_request(group, offsets, member, version);
    let pending = connection
        .send_request(ApiKey::OffsetCommit, version, &request, true)
        .await
        .map_err(|e| {
            group.coordinator_unknown(Some(&connection), &e.to_string());
            AttemptError::Retriable(RetriableError::Connection(e))
        })?;
    Ok(InFlightCommit {
        pending,
        version,
        connection,
        member: member.clone(),
        request_timeout: group.config.request_timeout,
    })
}

/// Waits for a commit's answer and says what it means.
async fn finish_commit(group: &Group, commit: InFlightCommit) -> Result<(), AttemptError> {
    let InFlightCommit {
        pending,
        version,
        connection,
        member,
        request_timeout,
    } = commit;
    let frame = match pending.wait(Some(Instant::now() + request_timeout)).await {
        Ok(Some(frame)) => frame,
        Ok(None) => return Err(AttemptError::Retriable(RetriableError::NoAnswer)),
        Err(e) => {
            group.coordinator_unknown(Some(&connection), &e.to_string());
            return Err(AttemptError::Retriable(RetriableError::Connection(e)));
        }
    };
    let response: OffsetCommitResponse =
        match protocol::header::decode_response(ApiKey::OffsetCommit, version, frame) {
            Ok((_, response)) => response,
            Err(e) => {
                group.coordinator_unknown(Some(&connection), &e.to_string());
                return Err(AttemptError::Retriable(RetriableError::Connection(
                    ConnectionError::Decode {
                        addr: connection.addr().to_string(),
                        api: ApiKey::OffsetCommit,
                        version,
                        reason: e.to_string(),
                    },
                )));
            }
        };
    let mut retriable = None;
    for topic in &response.topics {
        for partition in &topic.partitions {
            let code = ErrorCode(partition.error_code);
            if code.is_ok() {
                continue;
            }
            if codes::coordinator_retriable(code) || code == ErrorCode::REQUEST_TIMED_OUT {
                if codes::coordinator_moved(code) {
                    group.coordinator_unknown(Some(&connection), &code.to_string());
                }
                retriable = Some(code);
                continue;
            }
            if codes::membership_invalid(code) {
                group.lose_membership(&member, code, "commit refused");
            }
            if codes::membership_invalid(code) || code == codes::REBALANCE_IN_PROGRESS {
                if code == codes::REBALANCE_IN_PROGRESS {
                    group.request_rejoin(&member, "commit saw a rebalance");
                }
                return Err(AttemptError::Final(CommitError::Rebalanced {
                    group: group.group_id.clone(),
                    code,
                }));
            }
            if code == codes::FENCED_INSTANCE_ID || code == codes::GROUP_AUTHORIZATION_FAILED {
                let error = group.rejected("OffsetCommit", code);
                if code == codes::FENCED_INSTANCE_ID {
                    group.fail(error.clone());
                }
                return Err(AttemptError::Final(CommitError::Group(error)));
            }
            return Err(AttemptError::Final(CommitError::Partition {
                topic: topic.name.0.to_string(),
                partition: partition.partition_index,
                code,
            }));
        }
    }
    match retriable {
        Some(code) => Err(AttemptError::Retriable(RetriableError::Code {
            api: "OffsetCommit",
            code,
        })),
        None => Ok(()),
    }
}

/// Commits `offsets` and waits for the answer, retrying retriable errors
/// until `timeout` passes.
pub async fn commit_sync(
    group: &Group,
    offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    member: &Member,
    timeout: Duration,
) -> Result<(), CommitError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let deadline = started + timeout;
    let backoff = group.backoff();
    let mut last_code = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = async {
            let commit = start_commit(group, offsets, member).await?;
            finish_commit(group, commit).await
        };
        let last_error = match tokio::time::timeout_at(deadline, outcome).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(AttemptError::Final(error))) => return Err(error),
            Ok(Err(AttemptError::Retriable(cause))) => cause,
            Err(_) => RetriableError::NoAnswer,
        };
        last_code = last_error.code().or(last_code);
        let delay = backoff.delay(attempt, &mut rand::thread_rng());
        if Instant::now() + delay >= deadline {
            return Err(CommitError::Timeout {
                waited: started.elapsed(),
                last_error,
                last_code,
            });
        }
        tracing::debug!(group = %group.group_id, %last_error, ?delay, "commit failed; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// Sends a commit once (no retries) and returns a future of its outcome.
/// The request is on the connection when this returns, so commits keep
/// their order.
pub async fn commit_once(
    group: Arc<Group>,
    offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    member: Member,
) -> impl std::future::Future<Output = Result<(), CommitError>> + Send {
    let started = match tokio::time::timeout(
        group.config.request_timeout,
        start_commit(&group, &offsets, &member),
    )
    .await
    {
        Ok(started) => started,
        Err(_) => Err(AttemptError::Retriable(RetriableError::NoAnswer)),
    };
    async move {
        let result = match started {
            Ok(commit) => finish_commit(&group, commit).await,
            Err(e) => Err(e),
        };
        result.map_err(|e| match e {
            AttemptError::Final(error) => error,
            AttemptError::Retriable(cause) => CommitError::Failed { cause },
        })
    }
}

/// The committed offsets of `partitions` (`None` where nothing is
/// committed), retrying retriable errors until `timeout` passes.
pub async fn fetch_committed(
    group: &Group,
    partitions: &[TopicPartition],
    timeout: Duration,
) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, OffsetFetchError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let backoff = group.backoff();
    let mut attempt = 0;
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    loop {
        attempt += 1;
        let build = |version: i16| {
            if version >= 8 {
                OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(group.group_id_str()))
                    .with_topics(Some(
                        by_topic
                            .iter()
                            .map(|(topic, partitions)| {
                                OffsetFetchRequestTopics::default()
                                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                                    .with_partition_indexes(partitions.clone())
                            })
                            .collect(),
                    ))])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(group.group_id_str()))
                    .with_topics(Some(
                        by_topic
                            .iter()
                            .map(|(topic, partitions)| {
                                OffsetFetchRequestTopic::default()
                                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                                    .with_partition_indexes(partitions.clone())
                            })
                            .collect(),
                    ))
            }
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let call = group.call::<OffsetFetchRequest>(
            OFFSET_FETCH_VERSIONS,
            build,
            group.config.request_timeout.min(remaining),
        );
        let last_error = match tokio::time::timeout_at(deadline, call).await {
            Err(_) => RetriableError::NoAnswer,
            Ok(Err(CallError::Fatal(error))) => return Err(error.into()),
            Ok(Err(CallError::Retriable(cause))) => cause,
            Ok(Ok(response)) => {
                let (code, entries) = committed_entries(&response);
                match classify_offset_fetch(group, code, &entries) {
                    Ok(()) => {
                        let mut out: BTreeMap<TopicPartition, Option<OffsetAndMetadata>> =
                            partitions.iter().map(|tp| (tp.clone(), None)).collect();
                        for entry in entries {
                            if entry.offset >= 0 && out.contains_key(&entry.tp) {
                                out.insert(
                                    entry.tp,
                                    Some(OffsetAndMetadata {
                                        offset: entry.offset,
                                        leader_epoch: (entry.leader_epoch >= 0)
                                            .then_some(entry.leader_epoch),
                                        metadata: entry.metadata,
                                    }),
                                );
                            }
                        }
                        return Ok(out);
                    }
                    Err(AttemptFetchError::Final(error)) => return Err(error),
                    Err(AttemptFetchError::Retriable(cause)) => cause,
                }
            }
        };
        let delay = backoff.delay(attempt, &mut rand::thread_rng());
        if Instant::now() + delay >= deadline {
            return Err(OffsetFetchError::Timeout {
                waited: started.elapsed(),
                last_error,
            });
        }
        tracing::debug!(group = %group.group_id, %last_error, ?delay, "OffsetFetch failed; retrying");
        tokio::time::sleep(delay).await;
    }
}

enum AttemptFetchError {
    Retriable(RetriableError),
    Final(OffsetFetchError),
}

fn classify_offset_fetch(
    group: &Group,
    code: ErrorCode,
    entries: &[CommittedEntry],
) -> Result<(), AttemptFetchError> {
    let check = |code: ErrorCode| -> Result<(), AttemptFetchError> {
        if code.is_ok() {
            return Ok(());
        }
        if codes::coordinator_retriable(code) || code == codes::UNSTABLE_OFFSET_COMMIT {
            if codes::coordinator_moved(code) {
                group.coordinator_unknown(None, &code.to_string());
            }
            return Err(AttemptFetchError::Retriable(RetriableError::Code {
                api: "OffsetFetch",
                code,
            }));
        }
        Err(AttemptFetchError::Final(OffsetFetchError::Group(
            group.rejected("OffsetFetch", code),
        )))
    };
    check(code)?;
    for entry in entries {
        match check(entry.code) {
            Err(AttemptFetchError::Final(_)) => {
                return Err(AttemptFetchError::Final(OffsetFetchError::Partition {
                    topic: entry.tp.topic.clone(),
                    partition: entry.tp.partition,
                    code: entry.code,
                }))
            }
            other => other?,
        }
    }
    Ok(())
}

/// One partition of an OffsetFetch answer.
struct CommittedEntry {
    tp: TopicPartition,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
    code: ErrorCode,
}

/// The group's error and its partitions: v8+ answers per group, older
/// versions at the top level.
fn committed_entries(response: &OffsetFetchResponse) -> (ErrorCode, Vec<CommittedEntry>) {
    // The per-group and top-level topic lists are distinct types with the
    // same fields.
    macro_rules! entries {
        ($topics:expr) => {
            $topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(move |p| CommittedEntry {
                        tp: TopicPartition::new(t.name.0.to_string(), p.partition_index),
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p
                            .metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        code: ErrorCode(p.error_code),
                    })
                })
                .collect()
        };
    }
    match response.groups.first() {
        Some(group) => (ErrorCode(group.error_code), entries!(group.topics)),
        None => (ErrorCode(response.error_code), entries!(response.topics)),
    }
}
