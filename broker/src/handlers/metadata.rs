//! Metadata: brokers, the cluster id, the controller, and topics with their
//! partitions, all from this broker's metadata image. Requested topics that
//! do not exist are created through the controller when auto-creation is on,
//! and the answer waits for them.
//!
//! DescribeTopicPartitions (KIP-966's API, which Kafka 4.x's admin client and
//! tools use to describe topics): the same partitions from the same image, in
//! pages of at most `response_partition_limit` partitions, each page ending
//! with a cursor (topic and partition index) that the next request resumes at.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use protocol::messages::describe_topic_partitions_response::{
    self, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use protocol::messages::metadata_request::MetadataRequestTopic;
use protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, MetadataRequest,
    MetadataResponse, TopicName,
};
use protocol::{ErrorCode, StrBytes};
use uuid::Uuid;

use crate::controller::NewTopic;
use crate::metadata::{MetadataImage, PartitionRegistration, TopicImage};
use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::Broker;

/// Kafka's value for "authorized operations not requested".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
/// Bitfield of the operations on a topic (READ, WRITE, CREATE, DELETE, ALTER,
/// DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS), which DescribeTopicPartitions
/// always reports: there are no ACLs, so all of them, as Kafka reports
/// without an authorizer.
const TOPIC_AUTHORIZED_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// The most partitions one DescribeTopicPartitions answer holds, whatever the
/// request asks for (Kafka's `max.request.partition.size.limit` default).
const DESCRIBE_TOPIC_PARTITIONS_LIMIT_MAX: i32 = 2000;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: MetadataRequest = request.decode(&mut body)?;
    let version = request.version();
    // Version 0 uses an empty list for "all topics"; later versions use null.
    let wanted = match req.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(list),
    };
    let allow_auto_create = if version >= 4 {
        req.allow_auto_topic_creation
    } else {
        true
    };
    let image = broker.image();
    let to_create: Vec<String> = wanted
        .iter()
        .flatten()
        .filter_map(|w| w.name.as_ref().map(|n| n.0.to_string()))
        .filter(|name| may_auto_create(broker, &image, name, allow_auto_create))
        .collect();
    if to_create.is_empty() {
        let response = answer(broker, &image, wanted.as_deref());
        return Ok(Reply::Now(request.respond(&response)?));
    }
    let broker = broker.clone();
    let responder = request.responder();
    Ok(Reply::Later(Box::pin(async move {
        for name in to_create {
            let wanted = NewTopic {
                name: name.clone(),
                partitions: -1,
                replication_factor: -1,
                ..Default::default()
            };
            match broker.controller.create_topic(wanted, false).await {
                // Another request may have created it meanwhile: it is described below.
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::TOPIC_ALREADY_EXISTS => {}
                Err(e) => tracing::warn!(topic = name, error = %e.message, "auto-creation failed"),
            }
        }
        let response = answer(&broker, &broker.image(), wanted.as_deref());
        // Encoding our own response cannot fail for a version we decoded.
        responder
            .respond(&response)
            .expect("metadata response encodes")
    })))
}

/// A topic that a Metadata request asks for, does not exist, and may be created.
fn may_auto_create(broker: &Broker, image: &MetadataImage, name: &str, allowed: bool) -> bool {
    allowed
        && broker.config.auto_create_topics
        && image.topic(name).is_none()
        && crate::topics::validate_topic_name(name).is_ok()
        // Internal topics are created by the broker when it needs them, never on request.
        && !crate::topics::is_internal(name)
}

fn answer(
    broker: &Broker,
    image: &MetadataImage,
    wanted: Option<&[MetadataRequestTopic]>,
) -> MetadataResponse {
    let topics = match wanted {
        None => image
            .topics()
            .map(|t| describe_topic(broker, image, t))
            .collect(),
        Some(list) => list
            .iter()
            .map(|wanted| match &wanted.name {
                Some(name) => lookup_by_name(broker, image, name.0.as_str()),
                None => match image.topic_by_id(wanted.topic_id) {
                    Some(topic) => describe_topic(broker, image, topic),
                    None => error_topic(None, wanted.topic_id, ErrorCode::UNKNOWN_TOPIC_ID),
                },
            })
            .collect(),
    };
    let brokers = image
        .live_brokers()
        .filter_map(|b| {
            let endpoint = b.client_endpoint()?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id.0))
                    .with_host(StrBytes::from_string(endpoint.host.clone()))
                    .with_port(i32::from(endpoint.port))
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.controller.active_id().unwrap_or(-1)))
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn lookup_by_name(broker: &Broker, image: &MetadataImage, name: &str) -> MetadataResponseTopic {
    match image.topic(name) {
        Some(topic) => describe_topic(broker, image, topic),
        None => error_topic(Some(name), Uuid::nil(), unknown_topic_error(name)),
    }
}

/// The error for a topic name the image does not have: its own fault if it
/// is no valid name, otherwise `UNKNOWN_TOPIC_OR_PARTITION`.
fn unknown_topic_error(name: &str) -> ErrorCode {
    match crate::topics::validate_topic_name(name) {
        Err(e) => e.code,
        Ok(()) => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
    }
}

fn error_topic(name: Option<&str>, id: Uuid, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n.to_string()))))
        .with_topic_id(id)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// One partition as Metadata and DescribeTopicPartitions describe it.
struct PartitionView<'a> {
    index: i32,
    registration: &'a PartitionRegistration,
    /// Replicas on fenced or unknown brokers, and this broker's own when its log is offline.
    offline: Vec<crate::ids::BrokerId>,
    /// Metadata's partition error: `LEADER_NOT_AVAILABLE` when the leader is
    /// not live, `KAFKA_STORAGE_ERROR` when this broker leads an offline log.
    error: ErrorCode,
    /// Whether the leader is a registered broker (fenced or not).
    leader_registered: bool,
}

fn partition_view<'a>(
    broker: &Broker,
    image: &MetadataImage,
    topic: &TopicImage,
    index: i32,
    registration: &'a PartitionRegistration,
) -> PartitionView<'a> {
    let live = |b: &crate::ids::BrokerId| image.broker(*b).is_some_and(|r| !r.fenced);
    let mut offline: Vec<_> = registration
        .replicas
        .iter()
        .filter(|b| !live(b))
        .copied()
        .collect();
    // This broker's own replica is offline when its log is.
    let local_offline = broker
        .replicas
        .get(&topic.name, index)
        .is_some_and(|p| p.is_offline());
    if local_offline && !offline.contains(&broker.node_id()) {
        offline.push(broker.node_id());
    }
    let error = if local_offline && registration.leader == broker.node_id() {
        ErrorCode::KAFKA_STORAGE_ERROR
    } else if !live(&registration.leader) {
        ErrorCode::LEADER_NOT_AVAILABLE
    } else {
        ErrorCode::NONE
    };
    PartitionView {
        index,
        registration,
        offline,
        error,
        leader_registered: image.broker(registration.leader).is_some(),
    }
}

/// The partitions of `topic` from index `first` on, in index order.
fn partition_views<'a>(
    broker: &'a Broker,
    image: &'a MetadataImage,
    topic: &'a TopicImage,
    first: usize,
) -> impl Iterator<Item = PartitionView<'a>> + 'a {
    topic
        .partitions
        .iter()
        .enumerate()
        .skip(first)
        .map(move |(index, registration)| {
            partition_view(broker, image, topic, index as i32, registration)
        })
}

fn broker_ids(brokers: &[crate::ids::BrokerId]) -> Vec<BrokerId> {
    brokers.iter().map(|b| BrokerId(b.0)).collect()
}

fn describe_topic(
    broker: &Broker,
    image: &MetadataImage,
    topic: &TopicImage,
) -> MetadataResponseTopic {
    let partitions = partition_views(broker, image, topic, 0)
        .map(|view| {
            MetadataResponsePartition::default()
                .with_error_code(view.error.code())
                .with_partition_index(view.index)
                .with_leader_id(BrokerId(view.registration.leader.0))
                .with_leader_epoch(view.registration.leader_epoch.0)
                .with_replica_nodes(broker_ids(&view.registration.replicas))
                .with_isr_nodes(broker_ids(&view.registration.isr))
                .with_offline_replicas(broker_ids(&view.offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(ErrorCode::NONE.code())
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// DescribeTopicPartitions: the requested topics (every topic when the list is
/// empty) in name order, from the request's cursor on, until the partition
/// limit is reached; the answer's cursor names the first partition left out.
/// Unknown names get `UNKNOWN_TOPIC_OR_PARTITION` (when listed by name); a
/// cursor whose topic is not among the listed ones, or whose partition index
/// is negative, is `INVALID_REQUEST` for every listed topic, as in Kafka.
pub fn describe_topic_partitions(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: DescribeTopicPartitionsRequest = request.decode(&mut body)?;
    let image = broker.image();
    let response = match page_of_topics(broker, &image, &req) {
        Ok(response) => response,
        Err(code) => {
            let topics = req
                .topics
                .iter()
                .map(|t| {
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(code.code())
                        .with_name(Some(t.name.clone()))
                })
                .collect();
            DescribeTopicPartitionsResponse::default().with_topics(topics)
        }
    };
    Ok(Reply::Now(request.respond(&response)?))
}

fn page_of_topics(
    broker: &Broker,
    image: &MetadataImage,
    req: &DescribeTopicPartitionsRequest,
) -> Result<DescribeTopicPartitionsResponse, ErrorCode> {
    let all_topics = req.topics.is_empty();
    let cursor = req
        .cursor
        .as_ref()
        .map(|c| (c.topic_name.0.as_str(), c.partition_index));
    let cursor_topic = cursor.map_or("", |(name, _)| name);
    // Sorted and without duplicates, from the cursor's topic on.
    let names: BTreeSet<&str> = if all_topics {
        image
            .topics()
            .map(|t| t.name.as_str())
            .filter(|name| *name >= cursor_topic)
            .collect()
    } else {
        req.topics
            .iter()
            .map(|t| t.name.0.as_str())
            .filter(|name| *name >= cursor_topic)
            .collect()
    };
    if let Some((topic, index)) = cursor {
        if (!all_topics && !names.contains(topic)) || index < 0 {
            return Err(ErrorCode::INVALID_REQUEST);
        }
    }
    let limit = req
        .response_partition_limit
        .clamp(1, DESCRIBE_TOPIC_PARTITIONS_LIMIT_MAX) as usize;
    let mut remaining = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if remaining == 0 {
            // Every partition of the topics before is in; the next page starts here.
            next_cursor = Some((name, 0));
            break;
        }
        let Some(topic) = image.topic(name) else {
            // Listing every topic only names existing ones; a listed unknown name is an error.
            if !all_topics {
                topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(unknown_topic_error(name).code())
                        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                        .with_is_internal(crate::topics::is_internal(name))
                        .with_topic_authorized_operations(TOPIC_AUTHORIZED_OPERATIONS),
                );
            }
            continue;
        };
        let first = match cursor {
            Some((cursor_topic, index)) if cursor_topic == name => index as usize,
            _ => 0,
        };
        let partitions: Vec<_> = partition_views(broker, image, topic, first)
            .take(remaining)
            .map(|view| describe_partition(&view))
            .collect();
        let count = partitions.len();
        let end = first.saturating_add(count);
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(ErrorCode::NONE.code())
                .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
                .with_topic_id(topic.id)
                .with_is_internal(topic.is_internal())
                .with_partitions(partitions)
                .with_topic_authorized_operations(TOPIC_AUTHORIZED_OPERATIONS),
        );
        if end < topic.partitions.len() {
            next_cursor = Some((name, end as i32));
            break;
        }
        remaining -= count;
    }
    Ok(DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor.map(|(name, index)| {
            describe_topic_partitions_response::Cursor::default()
                .with_topic_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_partition_index(index)
        })))
}

fn describe_partition(view: &PartitionView<'_>) -> DescribeTopicPartitionsResponsePartition {
    // Kafka names no leader when it is not a registered broker, and no
    // partition error: a client reads the leader and the offline replicas.
    let leader = if view.leader_registered {
        view.registration.leader.0
    } else {
        -1
    };
    DescribeTopicPartitionsResponsePartition::default()
        .with_error_code(ErrorCode::NONE.code())
        .with_partition_index(view.index)
        .with_leader_id(BrokerId(leader))
        .with_leader_epoch(view.registration.leader_epoch.0)
        .with_replica_nodes(broker_ids(&view.registration.replicas))
        .with_isr_nodes(broker_ids(&view.registration.isr))
        // There are no eligible leader replicas (KIP-966) without ELR support.
        .with_eligible_leader_replicas(Some(Vec::new()))
        .with_last_known_elr(Some(Vec::new()))
        .with_offline_replicas(broker_ids(&view.offline))
}
