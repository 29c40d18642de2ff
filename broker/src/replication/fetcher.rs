//! Replica fetchers: the runtime of the follower side. One task per leader
//! broker fetches every partition this broker follows from that leader,
//! over a connection of its own, with Kafka's Fetch (replica id and broker
//! epoch, each partition's fetch offset, last fetched epoch and current
//! leader epoch), and hands each partition's answer to its state machine
//! ([`crate::partition::Partition::apply_fetch`]). The replicas a topic's
//! `follower.replication.throttled.replicas` names on this broker are
//! fetched within `follower.replication.throttled.rate` while they are out
//! of sync (see [`super::throttle`]), so moving data does not starve the
//! replication of live traffic.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use protocol::messages::{ApiKey, FetchRequest, FetchResponse};
use protocol::ErrorCode;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::ids::BrokerId;
use crate::partition::Partition;
use crate::peer::PeerConnection;
use crate::replication::follower::{FetchAnswer, FetchPosition};
use crate::replication::throttle::{self, SharedThrottle};
use crate::Broker;

/// The Fetch version followers send: topic ids and the replica state (KIP-903).
const FETCH_VERSION: i16 = 15;
/// Beyond the long-poll, how long a fetch may take before the connection is dropped.
const FETCH_TIMEOUT_EXTRA: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the supervisor looks again even without a change.
const SUPERVISE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a fetcher with nothing to fetch waits for work before it stops.
const IDLE_FETCHER_LINGER: Duration = Duration::from_secs(5);
/// The longest pause between fetch rounds while every partition backs off.
const IDLE_WAIT_MAX: Duration = Duration::from_millis(100);
const CLIENT_ID: &str = "replica-fetcher";

/// Runs a fetcher task for each leader this broker follows partitions of,
/// until `shutdown`.
pub async fn run(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut tasks: HashMap<BrokerId, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let changed = broker.replicas.followers_changed().notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        tasks.retain(|_, task| !task.is_finished());
        let leaders: std::collections::BTreeSet<BrokerId> = broker
            .replicas
            .all()
            .iter()
            .filter_map(|p| p.following())
            .collect();
        for leader in leaders {
            tasks.entry(leader).or_insert_with(|| {
                tokio::spawn(fetch_from(broker.clone(), leader, shutdown.clone()))
            });
        }
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(SUPERVISE_INTERVAL) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    for (_, task) in tasks {
        task.abort();
        let _ = task.await;
    }
}

/// The client listener of `leader`, from the metadata image.
async fn leader_address(broker: &Broker, leader: BrokerId) -> Option<SocketAddr> {
    let image = broker.image();
    let endpoint = image.broker(leader)?.client_endpoint()?.clone();
    let mut found = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
        .await
        .ok()?;
    found.next()
}

/// Fetches from `leader` until no partition follows it any more.
async fn fetch_from(broker: Arc<Broker>, leader: BrokerId, shutdown: CancellationToken) {
    let settings = broker.replicas.settings();
    let backoff = Duration::from_millis(settings.fetch_backoff_ms.clamp(10, 1_000) as u64);
    let mut connection: Option<PeerConnection> = None;
    let throttle = SharedThrottle::default();
    tracing::info!(%leader, "replica fetcher started");
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let followed: Vec<Arc<Partition>> = broker
            .replicas
            .all()
            .into_iter()
            .filter(|p| p.following() == Some(leader))
            .collect();
        if followed.is_empty() {
            // Linger a while before stopping: a partition arriving meanwhile
            // (a leadership moving back) is fetched at once, without waiting
            // for the supervisor to notice that this task ended.
            let changed = broker.replicas.followers_changed().notified();
            tokio::select! {
                _ = changed => continue,
                _ = tokio::time::sleep(IDLE_FETCHER_LINGER) => {}
                _ = shutdown.cancelled() => return,
            }
            if broker
                .replicas
                .all()
                .iter()
                .any(|p| p.following() == Some(leader))
            {
                continue;
            }
            tracing::info!(%leader, "replica fetcher stopped: nothing follows this leader");
            return;
        }
        // The rate is a dynamic broker config: the throttle follows its changes.
        let rate = broker.replicas.settings().follower_throttle_bytes_per_s;
        let now_ms = crate::now_ms();
        let throttled = throttled_here(&broker, &followed);
        let over_budget = !throttle.has_budget(rate);
        let positions: Vec<(Arc<Partition>, FetchPosition)> = followed
            .into_iter()
            .filter(|p| !(over_budget && throttled.get(&(p.topic_id, p.index)) == Some(&true)))
            .filter_map(|p| {
                let (from, position) = p.fetch_position(now_ms)?;
                (from == leader).then_some((p, position))
            })
            .collect();
        if positions.is_empty() {
            // Every partition backs off (or just changed role): look again soon.
            let changed = broker.replicas.followers_changed().notified();
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(IDLE_WAIT_MAX) => {}
                _ = shutdown.cancelled() => return,
            }
            continue;
        }
        if connection.is_none() {
            let opened = match leader_address(&broker, leader).await {
                Some(addr) => PeerConnection::connect(
                    addr,
                    CLIENT_ID,
                    settings.fetch_response_bytes_max.max(0) as usize + (1 << 20),
                    CONNECT_TIMEOUT,
                )
                .await
                .map_err(|e| e.to_string()),
                None => Err("no client listener known".to_string()),
            };
            match opened {
                Ok(opened) => connection = Some(opened),
                Err(e) => {
                    tracing::debug!(%leader, error = %e, "cannot connect to the leader");
                    pause(backoff, &shutdown).await;
                    continue;
                }
            }
        }
        let open = connection.as_mut().expect("connected above");
        let request = fetch_request(&broker, &positions);
        let timeout =
            Duration::from_millis(settings.fetch_wait_max_ms.max(0) as u64) + FETCH_TIMEOUT_EXTRA;
        let answered = tokio::select! {
            answered = open.call::<_, FetchResponse>(ApiKey::Fetch, FETCH_VERSION, &request, timeout) => answered,
            _ = shutdown.cancelled() => return,
        };
        let response = match answered {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(%leader, error = %e, "follower fetch failed");
                connection = None;
                pause(backoff, &shutdown).await;
                continue;
            }
        };
        if response.error_code != 0 {
            tracing::debug!(%leader, code = %ErrorCode(response.error_code), "follower fetch refused");
            pause(backoff, &shutdown).await;
            continue;
        }
        throttle.spend(rate, throttled_bytes(&response, &throttled));
        apply(&positions, response);
    }
}

/// The partitions of `followed` whose topic's
/// `follower.replication.throttled.replicas` names this broker's replica,
/// with whether that replica is out of sync (only those wait for the
/// throttle; every byte of them all counts against it).
fn throttled_here(
    broker: &Broker,
    followed: &[Arc<Partition>],
) -> std::collections::HashMap<(Uuid, i32), bool> {
    let image = broker.image();
    let me = broker.node_id();
    followed
        .iter()
        .filter_map(|p| {
            let topic = image.topic_by_id(p.topic_id)?;
            if !throttle::is_throttled(
                &topic.configs,
                throttle::FOLLOWER_THROTTLED_REPLICAS,
                p.index,
                me,
            ) {
                return None;
            }
            let in_sync = topic
                .partition(p.index)
                .is_some_and(|registration| registration.isr.contains(&me));
            Some(((p.topic_id, p.index), !in_sync))
        })
        .collect()
}

fn throttled_bytes(
    response: &FetchResponse,
    throttled: &std::collections::HashMap<(Uuid, i32), bool>,
) -> u64 {
    response
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(move |p| throttled.contains_key(&(t.topic_id, p.partition_index)))
        })
        .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
        .sum()
}

async fn pause(backoff: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(backoff) => {}
        _ = shutdown.cancelled() => {}
    }
}

fn fetch_request(broker: &Broker, positions: &[(Arc<Partition>, FetchPosition)]) -> FetchRequest {
    let settings = broker.replicas.settings();
    let mut topics: BTreeMap<Uuid, Vec<FetchPartition>> = BTreeMap::new();
    for (partition, position) in positions {
        topics.entry(partition.topic_id).or_default().push(
            FetchPartition::default()
                .with_partition(partition.index)
                .with_current_leader_epoch(position.current_leader_epoch.0)
                .with_fetch_offset(position.fetch_offset)
                .with_last_fetched_epoch(position.last_fetched_epoch)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(settings.fetch_partition_bytes_max),
        );
    }
    FetchRequest::default()
        .with_replica_state(
            ReplicaState::default()
                .with_replica_id(protocol::messages::BrokerId(broker.node_id().0))
                .with_replica_epoch(broker.broker_epoch()),
        )
        .with_max_wait_ms(settings.fetch_wait_max_ms)
        .with_min_bytes(1)
        .with_max_bytes(settings.fetch_response_bytes_max)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(topic_id, partitions)| {
                    FetchTopic::default()
                        .with_topic_id(topic_id)
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// Hands each partition's answer to its follower state machine.
fn apply(positions: &[(Arc<Partition>, FetchPosition)], response: FetchResponse) {
    let now_ms = crate::now_ms();
    let by_key: HashMap<(Uuid, i32), &(Arc<Partition>, FetchPosition)> = positions
        .iter()
        .map(|entry| ((entry.0.topic_id, entry.0.index), entry))
        .collect();
    for topic in response.responses {
        for data in topic.partitions {
            let Some((partition, position)) = by_key.get(&(topic.topic_id, data.partition_index))
            else {
                continue;
            };
            let diverging = &data.diverging_epoch;
            let answer = FetchAnswer {
                error: ErrorCode(data.error_code),
                high_watermark: data.high_watermark,
                log_start_offset: data.log_start_offset,
                diverging_epoch: (diverging.epoch >= 0 || diverging.end_offset >= 0)
                    .then_some((diverging.epoch, diverging.end_offset)),
                records: data.records.unwrap_or_default(),
            };
            if answer.error != ErrorCode::NONE {
                tracing::debug!(topic = %partition.topic, partition = partition.index, code = %answer.error, "the leader refused a follower fetch");
            }
            partition.apply_fetch(position, answer, now_ms);
        }
    }
}
