//! Metadata: brokers, the cluster id, and topics with their partitions,
//! creating requested topics on the fly when auto-creation is on.

use std::sync::Arc;

use bytes::Bytes;
use protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use protocol::{ErrorCode, StrBytes};
use uuid::Uuid;

use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::topics::Topic;
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
    let mut topics = Vec::new();
    match wanted {
        None => {
            for topic in broker.topics.all() {
                topics.push(describe_topic(broker, &topic));
            }
        }
        Some(list) => {
            for wanted in list {
                let entry = match wanted.name {
                    Some(name) => lookup_by_name(broker, name.0.as_str(), allow_auto_create),
                    None => match broker.topics.get_by_id(wanted.topic_id) {
                        Some(topic) => describe_topic(broker, &topic),
                        None => error_topic(None, wanted.topic_id, ErrorCode::UNKNOWN_TOPIC_ID),
                    },
                };
                topics.push(entry);
            }
        }
    }
    let (host, port) = broker.advertised();
    let response = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(broker.config.node_id))
            .with_host(StrBytes::from_string(host))
            .with_port(port)])
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    Ok(Reply::Now(request.respond(&response)?))
}

fn lookup_by_name(
    broker: &Arc<Broker>,
    name: &str,
    allow_auto_create: bool,
) -> MetadataResponseTopic {
    if let Some(topic) = broker.topics.get(name) {
        return describe_topic(broker, &topic);
    }
    let name_error = crate::topics::validate_topic_name(name).err();
    if let Some(e) = name_error {
        return error_topic(Some(name), Uuid::nil(), e.code);
    }
    // Internal topics are created by the broker when it needs them, never on request.
    if !(allow_auto_create && broker.config.auto_create_topics) || crate::topics::is_internal(name)
    {
        return error_topic(
            Some(name),
            Uuid::nil(),
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
        );
    }
    match broker.topics.create(
        name,
        broker.config.default_partitions,
        Default::default(),
        false,
    ) {
        Ok(topic) => describe_topic(broker, &topic),
        // Another request created it between our lookup and create: describe that one.
        Err(e) if e.code == ErrorCode::TOPIC_ALREADY_EXISTS => match broker.topics.get(name) {
            Some(topic) => describe_topic(broker, &topic),
            None => error_topic(Some(name), Uuid::nil(), ErrorCode::LEADER_NOT_AVAILABLE),
        },
        Err(e) => {
            tracing::warn!(topic = name, error = %e.message, "auto-creation failed");
            error_topic(Some(name), Uuid::nil(), e.code)
        }
    }
}

fn error_topic(name: Option<&str>, id: Uuid, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n.to_string()))))
        .with_topic_id(id)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn describe_topic(broker: &Arc<Broker>, topic: &Topic) -> MetadataResponseTopic {
    let node = BrokerId(broker.config.node_id);
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let code = if p.is_offline() {
                ErrorCode::KAFKA_STORAGE_ERROR
            } else {
                ErrorCode::NONE
            };
            MetadataResponsePartition::default()
                .with_error_code(code.code())
                .with_partition_index(p.index)
                .with_leader_id(node)
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
                .with_offline_replicas(if p.is_offline() { vec![node] } else { vec![] })
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
