//! Fetch: read whole batches as zero-copy slices of the mapped segments, up
//! to the high watermark, within the request's byte limits; wait for appends
//! (`max_wait_ms`/`min_bytes`) when there is not yet enough to return.
//!
//! A follower's fetch (a replica id) reads up to the log end and wakes on
//! appends; the leader first checks the follower's last fetched epoch
//! against its own log (KIP-320: a diverging epoch answers where to
//! truncate, and nothing else), then records the follower's progress. The
//! replicas a topic's `leader.replication.throttled.replicas` names on this
//! broker count against `leader.replication.throttled.rate`; once it is
//! spent, a follower outside the ISR gets no records for them (see
//! [`crate::replication::throttle`]).
//!
//! Fetch sessions (KIP-227) are not kept: every response carries session id
//! 0, which tells clients to send full fetch requests, as Kafka does when its
//! session cache is full.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use protocol::ErrorCode;
use tokio::sync::watch;
use uuid::Uuid;

use crate::errors::KafkaErrorCode;
use crate::handlers::redirect;
use crate::partition::{Partition, ReadBound};
use crate::replication::throttle::{self, SharedThrottle};
use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::Broker;

/// One requested partition, resolved.
struct Wanted {
    topic_slot: usize,
    index: i32,
    partition: Result<Arc<Partition>, ErrorCode>,
    fetch_offset: i64,
    current_leader_epoch: i32,
    partition_max_bytes: usize,
    /// For a follower: `(epoch, end offset)` where its log diverges from ours.
    diverging: Option<(i32, i64)>,
    /// The partition's leader and epoch in the image, named in a refusal (KIP-951).
    current_leader: Option<(crate::ids::BrokerId, crate::ids::LeaderEpoch)>,
    /// For a follower's fetch of a leader-throttled replica: whether the
    /// follower is outside the ISR (and so waits when the rate is spent).
    leader_throttled: Option<bool>,
}

struct Plan {
    version: i16,
    isolation_committed: bool,
    bound: ReadBound,
    response_bytes_max: usize,
    topics: Vec<(TopicName, Uuid)>,
    wanted: Vec<Wanted>,
    /// The client endpoints of the wanted partitions' leaders (KIP-951).
    leader_endpoints: Vec<redirect::NodeEndpoint>,
    /// The leader's throttle and its rate, when it limits this fetch.
    leader_throttle: Option<(Arc<SharedThrottle>, u64)>,
}

impl Plan {
    /// Counts the records of leader-throttled replicas sent in a response.
    fn spend_throttled(&self, bytes: usize) {
        if let Some((throttle, rate)) = &self.leader_throttle {
            throttle.spend(Some(*rate), bytes as u64);
        }
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    request: Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: FetchRequest = request.decode(&mut body)?;
    let version = request.version();
    let (replica_id, replica_epoch) = if version >= 15 {
        (
            req.replica_state.replica_id.0,
            req.replica_state.replica_epoch,
        )
    } else {
        (req.replica_id.0, -1)
    };
    let plan = resolve(broker, &req, version, replica_id, replica_epoch);
    let min_bytes = req.min_bytes.max(0) as usize;
    let wait = Duration::from_millis(
        (req.max_wait_ms.max(0) as u64).min(crate::config::FETCH_WAIT_MS_MAX),
    );
    // Subscribe before the first read so that no append between the read and
    // the wait goes unnoticed.
    let mut watches: Vec<watch::Receiver<i64>> = plan
        .wanted
        .iter()
        .filter_map(|w| w.partition.as_ref().ok())
        .map(|p| {
            // Followers wait for appends; consumers for committed data.
            let mut rx = match plan.bound {
                ReadBound::LogEnd => p.watch_log_end(),
                ReadBound::HighWatermark => p.watch_high_watermark(),
            };
            rx.borrow_and_update();
            rx
        })
        .collect();
    let (response, bytes, errors, throttled) = read_all(&plan);
    if bytes >= min_bytes || errors || wait.is_zero() || watches.is_empty() {
        plan.spend_throttled(throttled);
        return Ok(Reply::Chunks(respond(&request, &response)?));
    }
    let shutdown = broker.shutdown.clone();
    Ok(Reply::LaterChunks(Box::pin(async move {
        let deadline = tokio::time::Instant::now() + wait;
        let mut response = response;
        let mut throttled = throttled;
        loop {
            let changed =
                futures::future::select_all(watches.iter_mut().map(|rx| Box::pin(rx.changed())));
            // A shutting-down broker answers waiting fetches with what it has.
            let woken = tokio::select! {
                woken = tokio::time::timeout_at(deadline, changed) => woken,
                _ = shutdown.cancelled() => break,
            };
            let keep_waiting = matches!(woken, Ok((Ok(()), _, _)));
            drop(woken);
            if !keep_waiting {
                break;
            }
            for rx in &mut watches {
                rx.borrow_and_update();
            }
            let (again, bytes, errors, again_throttled) = read_all(&plan);
            response = again;
            throttled = again_throttled;
            if bytes >= min_bytes || errors {
                break;
            }
        }
        plan.spend_throttled(throttled);
        // Encoding our own response cannot fail for a version we decoded.
        respond(&request, &response).expect("fetch response encodes")
    })))
}

/// Encodes a fetch response with its record sets by reference: they are
/// slices of the mapped segments and go to the socket without a copy.
fn respond(request: &Request, response: &FetchResponse) -> Result<Vec<Bytes>, DispatchError> {
    let record_sets: Vec<Bytes> = response
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.records.clone())
        .collect();
    request.respond_chunks(response, &record_sets)
}

fn resolve(
    broker: &Arc<Broker>,
    req: &FetchRequest,
    version: i16,
    replica_id: i32,
    replica_epoch: i64,
) -> Plan {
    let mut topics = Vec::new();
    let mut wanted = Vec::new();
    let image = broker.image();
    let now_ms = crate::now_ms();
    // A follower's progress counts only from a live broker in its current
    // incarnation (KIP-903): a restarted broker that lost its disk must not
    // be counted with what its previous self had.
    let follower = (replica_id >= 0)
        .then_some(crate::ids::BrokerId(replica_id))
        .filter(|id| {
            image
                .broker(*id)
                .is_some_and(|b| !b.fenced && (replica_epoch < 0 || b.epoch == replica_epoch))
        });
    for fetch_topic in &req.topics {
        let (topic, unknown) = if version >= 13 {
            (
                image.topic_by_id(fetch_topic.topic_id),
                ErrorCode::UNKNOWN_TOPIC_ID,
            )
        } else {
            (
                image.topic(fetch_topic.topic.0.as_str()),
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            )
        };
        let slot = topics.len();
        topics.push((fetch_topic.topic.clone(), fetch_topic.topic_id));
        for p in &fetch_topic.partitions {
            let partition = topic
                .ok_or(unknown)
                .and_then(|t| broker.replicas.leader_partition(t, p.partition));
            let current_leader = topic.and_then(|t| redirect::current_leader(t, p.partition));
            let leader_throttled = match (topic, follower) {
                (Some(t), Some(follower))
                    if throttle::is_throttled(
                        &t.configs,
                        throttle::LEADER_THROTTLED_REPLICAS,
                        p.partition,
                        broker.node_id(),
                    ) =>
                {
                    Some(
                        !t.partition(p.partition)
                            .is_some_and(|r| r.isr.contains(&follower)),
                    )
                }
                _ => None,
            };
            let mut diverging = None;
            if let (Ok(partition), true) = (&partition, replica_id >= 0) {
                if version >= 12 {
                    diverging = partition.diverging_epoch(p.last_fetched_epoch, p.fetch_offset);
                }
                if let (None, Some(follower)) = (diverging, follower) {
                    partition.follower_fetched(follower, p.fetch_offset, now_ms);
                }
            }
            wanted.push(Wanted {
                topic_slot: slot,
                index: p.partition,
                partition,
                fetch_offset: p.fetch_offset,
                current_leader_epoch: p.current_leader_epoch,
                partition_max_bytes: p.partition_max_bytes.max(0) as usize,
                diverging,
                current_leader,
                leader_throttled,
            });
        }
    }
    let leaders = wanted
        .iter()
        .filter_map(|w| w.current_leader.map(|(leader, _)| leader))
        .collect();
    let leader_throttle = broker
        .replicas
        .settings()
        .leader_throttle_bytes_per_s
        .filter(|_| wanted.iter().any(|w| w.leader_throttled.is_some()))
        .map(|rate| (broker.leader_throttle.clone(), rate));
    Plan {
        leader_endpoints: redirect::endpoints(&image, &leaders),
        leader_throttle,
        version,
        isolation_committed: req.isolation_level == 1,
        bound: if replica_id >= 0 {
            ReadBound::LogEnd
        } else {
            ReadBound::HighWatermark
        },
        response_bytes_max: (req.max_bytes.max(0) as usize)
            .min(broker.config.fetch_response_bytes_max),
        topics,
        wanted,
    }
}

/// Reads every wanted partition once. Returns the response, the record bytes
/// in it, whether any partition answered with an error, and the record bytes
/// of leader-throttled replicas in it.
fn read_all(plan: &Plan) -> (FetchResponse, usize, bool, usize) {
    let mut responses: Vec<FetchableTopicResponse> = plan
        .topics
        .iter()
        .map(|(name, id)| {
            FetchableTopicResponse::default()
                .with_topic(name.clone())
                .with_topic_id(*id)
        })
        .collect();
    let mut remaining = plan.response_bytes_max;
    let mut total = 0usize;
    let mut throttled = 0usize;
    let mut errors = false;
    let mut named_leaders = std::collections::BTreeSet::new();
    for w in &plan.wanted {
        let mut data = read_one(plan, w, &mut remaining, total == 0);
        if let (true, Some((leader, epoch))) =
            (redirect::redirects(data.error_code), w.current_leader)
        {
            data.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader.0))
                .with_leader_epoch(epoch.0);
            named_leaders.insert(leader.0);
        }
        // An error or a diverging epoch is answered at once, without waiting.
        if data.error_code != 0 || w.diverging.is_some() {
            errors = true;
        }
        let bytes = data.records.as_ref().map_or(0, |r| r.len());
        total += bytes;
        if w.leader_throttled.is_some() {
            throttled += bytes;
        }
        responses[w.topic_slot].partitions.push(data);
    }
    let node_endpoints = plan
        .leader_endpoints
        .iter()
        .filter(|(id, ..)| named_leaders.contains(id))
        .map(|(id, host, port, rack)| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(*id))
                .with_host(host.clone().into())
                .with_port(*port)
                .with_rack(rack.clone().map(Into::into))
        })
        .collect();
    let response = FetchResponse::default()
        .with_error_code(ErrorCode::NONE.code())
        .with_session_id(0)
        .with_responses(responses)
        .with_node_endpoints(node_endpoints);
    (response, total, errors, throttled)
}

fn read_one(plan: &Plan, w: &Wanted, remaining: &mut usize, first: bool) -> PartitionData {
    let base = PartitionData::default()
        .with_partition_index(w.index)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_aborted_transactions(plan.isolation_committed.then(Vec::new))
        .with_records(Some(Bytes::new()));
    let partition = match &w.partition {
        Ok(p) => p,
        Err(code) => return base.with_error_code(code.code()),
    };
    let with_offsets = |data: PartitionData| {
        let hw = partition.high_watermark();
        data.with_high_watermark(hw)
            .with_last_stable_offset(hw)
            .with_log_start_offset(partition.log_start_offset())
    };
    if plan.version >= 9
        && w.current_leader_epoch >= 0
        && w.current_leader_epoch != partition.leader_epoch().0
    {
        let code = if w.current_leader_epoch < partition.leader_epoch().0 {
            ErrorCode::FENCED_LEADER_EPOCH
        } else {
            ErrorCode::UNKNOWN_LEADER_EPOCH
        };
        return with_offsets(base.with_error_code(code.code()));
    }
    if let Some((epoch, end_offset)) = w.diverging {
        return with_offsets(base).with_error_code(0).with_diverging_epoch(
            EpochEndOffset::default()
                .with_epoch(epoch)
                .with_end_offset(end_offset),
        );
    }
    // A follower outside the ISR waits while the leader's throttle is spent.
    if w.leader_throttled == Some(true)
        && plan
            .leader_throttle
            .as_ref()
            .is_some_and(|(throttle, rate)| !throttle.has_budget(Some(*rate)))
    {
        return with_offsets(base).with_error_code(ErrorCode::NONE.code());
    }
    let max_bytes = w.partition_max_bytes.min(*remaining);
    match partition.read(w.fetch_offset, max_bytes, plan.bound, first) {
        Ok(read) => {
            *remaining = remaining.saturating_sub(read.records.len());
            with_offsets(base)
                .with_error_code(ErrorCode::NONE.code())
                .with_records(Some(read.records))
        }
        Err(e) => with_offsets(base).with_error_code(e.error_code().code()),
    }
}
