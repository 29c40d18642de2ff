//! Where requests go and how calls retry: the controller connection, the
//! retry loop of whole calls, the per-item loop of controller calls, and
//! the per-partition loop of calls to partition leaders.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::ErrorCode;
use tokio::time::Instant;

use super::{Admin, AdminError, ItemResults};
use crate::connection::Connection;
use crate::consumer::TopicPartition;
use std::fmt::Display;
use std::future::Future;

/// `NOT_CONTROLLER`: the broker asked is not (or no longer) the controller;
/// the item goes again to the controller a fresh Metadata names.
const NOT_CONTROLLER: ErrorCode = ErrorCode(41);

impl Admin {
    /// The connection for controller requests: the controller the last
    /// Metadata named, else any broker (which forwards to its controller).
    pub(super) async fn controller_connection(&self) -> Result<Arc<Connection>, AdminError> {
        if let Some(id) = self.cluster.metadata().controller_id.filter(|id| *id >= 0) {
            match self.cluster.broker_connection(id).await {
                Ok(connection) => return Ok(connection),
                Err(e) => {
                    tracing::debug!(controller = id, error = %e, "controller unreachable; asking any broker")
                }
            }
        }
        Ok(self.cluster.any_broker_connection().await?)
    }

    /// Runs `attempt` until it succeeds, fails for good, or `timeout`
    /// passes; between attempts it backs off and refreshes the metadata (a
    /// new controller, new leaders).
    pub(super) async fn retrying<T, F, Fut>(
        &self,
        operation: &'static str,
        timeout: Duration,
        mut attempt: F,
    ) -> Result<T, AdminError>
    where
        F: FnMut(Instant) -> Fut,
        Fut: Future<Output = Result<T, AdminError>>,
    {
        let deadline = Instant::now() + timeout;
        let mut attempts = 0u32;
        let mut last_error = None;
        // Bounded by the deadline: no attempt starts after it, and each is cut off at it.
        loop {
            attempts += 1;
            match tokio::time::timeout_at(deadline, attempt(deadline)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if e.is_retriable() => {
                    tracing::debug!(operation, attempts, error = %e, "retrying");
                    last_error = Some(e);
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => break,
            }
            let delay = self.backoff.delay(attempts, &mut rand::thread_rng());
            if Instant::now() + delay >= deadline {
                break;
            }
            tokio::time::sleep(delay).await;
            if let Ok(Err(e)) =
                tokio::time::timeout_at(deadline, self.cluster.refresh_metadata(&[])).await
            {
                last_error = Some(e.into());
            }
        }
        Err(AdminError::Timeout {
            operation,
            timeout,
            last_error: last_error.map(Box::new),
        })
    }

    /// A controller request on several items: sends the pending items to
    /// the controller, keeps each answer, and sends again (after a backoff
    /// and a metadata refresh) the items answered `NOT_CONTROLLER` or not
    /// at all because the request failed retriably. Items still pending at
    /// `timeout` fail with [`AdminError::Timeout`].
    pub(super) async fn controller_items<K, T, V, F, Fut>(
        &self,
        operation: &'static str,
        timeout: Duration,
        items: Vec<(K, T)>,
        mut send: F,
    ) -> Result<ItemResults<K, V>, AdminError>
    where
        K: Ord + Clone + Display,
        T: Clone,
        F: FnMut(Arc<Connection>, Vec<(K, T)>, Instant) -> Fut,
        Fut: Future<Output = Result<ItemResults<K, V>, AdminError>>,
    {
        let deadline = Instant::now() + timeout;
        let mut pending: BTreeMap<K, T> = items.into_iter().collect();
        let mut done: ItemResults<K, V> = BTreeMap::new();
        let mut last_error: Option<AdminError> = None;
        let mut attempts = 0u32;
        // Bounded by the deadline, as in `retrying`.
        while !pending.is_empty() {
            attempts += 1;
            let batch: Vec<(K, T)> = pending
                .iter()
                .map(|(k, t)| (k.clone(), t.clone()))
                .collect();
            let round = async {
                let connection = self.controller_connection().await?;
                send(connection, batch, deadline).await
            };
            match tokio::time::timeout_at(deadline, round).await {
                Ok(Ok(mut answers)) => {
                    let keys: Vec<K> = pending.keys().cloned().collect();
                    for key in keys {
                        match answers.remove(&key) {
                            Some(Err(e)) if e.code() == Some(NOT_CONTROLLER) => {
                                last_error = Some(e)
                            }
                            Some(result) => {
                                pending.remove(&key);
                                done.insert(key, result);
                            }
                            None => {
                                pending.remove(&key);
                                let item = key.to_string();
                                done.insert(
                                    key,
                                    Err(AdminError::MissingResult { operation, item }),
                                );
                            }
                        }
                    }
                }
                Ok(Err(e)) if e.is_retriable() => {
                    tracing::debug!(operation, attempts, error = %e, "retrying");
                    last_error = Some(e);
                }
                // A whole-request failure that a retry cannot fix fails the call.
                Ok(Err(e)) => return Err(e),
                Err(_) => break,
            }
            if pending.is_empty() {
                break;
            }
            let delay = self.backoff.delay(attempts, &mut rand::thread_rng());
            if Instant::now() + delay >= deadline {
                break;
            }
            tokio::time::sleep(delay).await;
            if let Ok(Err(e)) =
                tokio::time::timeout_at(deadline, self.cluster.refresh_metadata(&[])).await
            {
                last_error = Some(e.into());
            }
        }
        if !pending.is_empty() && done.is_empty() {
            return Err(AdminError::Timeout {
                operation,
                timeout,
                last_error: last_error.map(Box::new),
            });
        }
        for key in pending.into_keys() {
            done.insert(
                key,
                Err(AdminError::Timeout {
                    operation,
                    timeout,
                    last_error: last_error.clone().map(Box::new),
                }),
            );
        }
        Ok(done)
    }
}

/// One partition of a leader request, as [`Admin::leader_items`] hands it
/// to the request's sender: the partition, what the caller asked of it, and
/// the leader epoch the metadata gave (for requests that carry one).
pub(super) type LeaderItem<T> = (TopicPartition, T, i32);

impl Admin {
    /// A request on partitions that only their leaders serve (ListOffsets,
    /// DeleteRecords): groups the pending partitions by the leader the
    /// metadata names, sends each leader its share at the same time, keeps
    /// each answer, and after a backoff and a metadata refresh sends again
    /// the partitions answered with a retriable code (a leader moved) or
    /// left unanswered by a retriable failure of the request. A partition
    /// the metadata does not know fails at once with
    /// `UNKNOWN_TOPIC_OR_PARTITION`; partitions still pending at `timeout`
    /// fail with [`AdminError::Timeout`] carrying their last error.
    pub(super) async fn leader_items<T, V, F, Fut>(
        &self,
        operation: &'static str,
        timeout: Duration,
        items: &[(TopicPartition, T)],
        send: F,
    ) -> ItemResults<TopicPartition, V>
    where
        T: Clone,
        F: Fn(i32, Vec<LeaderItem<T>>, Instant) -> Fut,
        Fut: Future<Output = Result<ItemResults<TopicPartition, V>, AdminError>>,
    {
        let deadline = Instant::now() + timeout;
        let mut done: ItemResults<TopicPartition, V> = BTreeMap::new();
        let mut pending: BTreeMap<TopicPartition, T> = items.iter().cloned().collect();
        let mut last_errors: BTreeMap<TopicPartition, AdminError> = BTreeMap::new();
        let topics: Vec<String> = pending
            .keys()
            .map(|tp| tp.topic.clone())
            .collect::<std::collections::BTreeSet<_>>()
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
                let mut by_leader: BTreeMap<i32, Vec<LeaderItem<T>>> = BTreeMap::new();
                for (tp, wanted) in &pending {
                    match leader_of(&metadata, tp) {
                        Ok((leader, epoch)) => by_leader.entry(leader).or_default().push((
                            tp.clone(),
                            wanted.clone(),
                            epoch,
                        )),
                        Err(e) if e.code() == Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION) => {
                            done.insert(tp.clone(), Err(e));
                        }
                        Err(e) => {
                            last_errors.insert(tp.clone(), e);
                        }
                    }
                }
                for tp in done.keys() {
                    pending.remove(tp);
                }
                let send = &send;
                let asks = by_leader.into_iter().map(|(leader, share)| async move {
                    let partitions: Vec<TopicPartition> =
                        share.iter().map(|(tp, _, _)| tp.clone()).collect();
                    (partitions, send(leader, share, deadline).await)
                });
                for (partitions, answer) in futures::future::join_all(asks).await {
                    match answer {
                        Ok(mut answers) => {
                            for tp in partitions {
                                let result = answers.remove(&tp).unwrap_or_else(|| {
                                    Err(AdminError::MissingResult {
                                        operation,
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
                            for tp in partitions {
                                last_errors.insert(tp, e.clone());
                            }
                        }
                        Err(e) => {
                            for tp in partitions {
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
                    operation,
                    timeout,
                    last_error,
                }),
            );
        }
        done
    }
}

/// A partition's leader and leader epoch in `metadata`, or why there is
/// none: `UNKNOWN_TOPIC_OR_PARTITION` when the topic or the partition does
/// not exist (final for the caller), else the code to retry on (no leader
/// yet, or the topic's error).
fn leader_of(
    metadata: &crate::metadata::Metadata,
    tp: &TopicPartition,
) -> Result<(i32, i32), AdminError> {
    let error = |code| AdminError::Partition {
        topic: tp.topic.clone(),
        partition: tp.partition,
        code,
        message: None,
    };
    let topic = metadata
        .topic(&tp.topic)
        .ok_or_else(|| error(ErrorCode::LEADER_NOT_AVAILABLE))?;
    if !topic.error.is_ok() {
        return Err(error(topic.error));
    }
    let partition = usize::try_from(tp.partition)
        .ok()
        .and_then(|p| topic.partitions.get(p))
        .ok_or_else(|| error(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION))?;
    match partition.leader_id {
        Some(leader) => Ok((leader, partition.leader_epoch)),
        None => Err(error(ErrorCode::LEADER_NOT_AVAILABLE)),
    }
}

/// The broker-side `timeout_ms` for a request that must be answered by
/// `deadline`: what is left of it, at least 1 ms, at most `i32::MAX`.
pub(super) fn timeout_ms(deadline: Instant) -> i32 {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .as_millis();
    i32::try_from(left).unwrap_or(i32::MAX).max(1)
}
