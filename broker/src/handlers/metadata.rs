//! Metadata: brokers, the cluster id, the controller, and topics with their
//! partitions, all from this broker's metadata image. Requested topics that
//! do not exist are created through the controller when auto-creation is on,
//! and the answer waits for them.

use std::sync::Arc;

use bytes::Bytes;
use protocol::messages::metadata_request::MetadataRequestTopic;
use protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use protocol::{ErrorCode, StrBytes};
use uuid::Uuid;

use crate::controller::NewTopic;
use crate::metadata::{MetadataImage, TopicImage};
use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::Broker;

/// Kafka's value for "authorized operations not requested".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

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
    if let Some(topic) = image.topic(name) {
        return describe_topic(broker, image, topic);
    }
    let code = match crate::topics::validate_topic_name(name) {
        Err(e) => e.code,
        Ok(()) => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
    };
    error_topic(Some(name), Uuid::nil(), code)
}

fn error_topic(name: Option<&str>, id: Uuid, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n.to_string()))))
        .with_topic_id(id)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn describe_topic(
    broker: &Broker,
    image: &MetadataImage,
    topic: &TopicImage,
) -> MetadataResponseTopic {
    let ids = |brokers: &[crate::ids::BrokerId]| brokers.iter().map(|b| BrokerId(b.0)).collect();
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, registration)| {
            let index = index as i32;
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
            if local_offline {
                offline.push(broker.node_id());
            }
            let code = if local_offline && registration.leader == broker.node_id() {
                ErrorCode::KAFKA_STORAGE_ERROR
            } else if !live(&registration.leader) {
                ErrorCode::LEADER_NOT_AVAILABLE
            } else {
                ErrorCode::NONE
            };
            MetadataResponsePartition::default()
                .with_error_code(code.code())
                .with_partition_index(index)
                .with_leader_id(BrokerId(registration.leader.0))
                .with_leader_epoch(registration.leader_epoch.0)
                .with_replica_nodes(ids(&registration.replicas))
                .with_isr_nodes(ids(&registration.isr))
                .with_offline_replicas(ids(&offline))
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
