//! CreateTopics, DeleteTopics and CreatePartitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use protocol::messages::create_topics_response::CreatableTopicResult;
use protocol::messages::delete_topics_response::DeletableTopicResult;
use protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use protocol::{ErrorCode, StrBytes};
use uuid::Uuid;

use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::topics::TopicError;
use crate::Broker;

/// The only replication factor a single broker can honour.
const SINGLE_NODE_REPLICATION_FACTOR: i16 = 1;

pub fn create_topics(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: CreateTopicsRequest = request.decode(&mut body)?;
    let mut results = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = (|| -> Result<(Uuid, i32), TopicError> {
            if crate::topics::is_internal(&name) {
                return Err(TopicError {
                    code: ErrorCode::INVALID_TOPIC_EXCEPTION,
                    message: format!("{name} is internal to the broker and created by it"),
                });
            }
            let partitions = if !topic.assignments.is_empty() {
                for assignment in &topic.assignments {
                    if assignment
                        .broker_ids
                        .iter()
                        .any(|b| b.0 != broker.config.node_id)
                    {
                        return Err(TopicError {
                            code: ErrorCode::INVALID_REPLICATION_FACTOR,
                            message: format!("broker {} is the only broker", broker.config.node_id),
                        });
                    }
                }
                topic.assignments.len() as i32
            } else if topic.num_partitions == -1 {
                broker.config.default_partitions
            } else {
                topic.num_partitions
            };
            let replication_factor = topic.replication_factor;
            if replication_factor != -1 && replication_factor != SINGLE_NODE_REPLICATION_FACTOR {
                return Err(TopicError {
                    code: ErrorCode::INVALID_REPLICATION_FACTOR,
                    message: format!(
                        "replication factor {replication_factor} is larger than the 1 available broker"
                    ),
                });
            }
            let mut configs = BTreeMap::new();
            for config in &topic.configs {
                if let Some(value) = &config.value {
                    configs.insert(config.name.to_string(), value.to_string());
                }
            }
            let created = broker
                .topics
                .create(&name, partitions, configs, req.validate_only)?;
            Ok((created.id, partitions))
        })();
        results.push(match outcome {
            Ok((id, partitions)) => result
                .with_topic_id(id)
                .with_error_code(ErrorCode::NONE.code())
                .with_num_partitions(partitions)
                .with_replication_factor(SINGLE_NODE_REPLICATION_FACTOR),
            Err(e) => result
                .with_error_code(e.code.code())
                .with_error_message(Some(StrBytes::from_string(e.message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    let response = CreateTopicsResponse::default().with_topics(results);
    Ok(Reply::Now(request.respond(&response)?))
}

pub fn delete_topics(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: DeleteTopicsRequest = request.decode(&mut body)?;
    // Versions before 6 name topics in a plain list; 6 and later may name them by id.
    let wanted: Vec<(Option<String>, Uuid)> = if request.version() >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let name = match name {
            Some(name) => Some(name),
            None => broker.topics.get_by_id(id).map(|t| t.name.clone()),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))))
            .with_topic_id(id);
        let outcome = match &name {
            Some(name) if crate::topics::is_internal(name) => Err(TopicError {
                code: ErrorCode::INVALID_TOPIC_EXCEPTION,
                message: format!("{name} is internal to the broker and cannot be deleted"),
            }),
            Some(name) => broker
                .topics
                .delete(name)
                .inspect(|_| broker.groups.topic_deleted(name)),
            None => Err(TopicError {
                code: ErrorCode::UNKNOWN_TOPIC_ID,
                message: format!("no topic has id {id}"),
            }),
        };
        responses.push(match outcome {
            Ok(deleted_id) => result
                .with_topic_id(deleted_id)
                .with_error_code(ErrorCode::NONE.code()),
            Err(e) => result
                .with_error_code(e.code.code())
                .with_error_message(Some(StrBytes::from_string(e.message))),
        });
    }
    let response = DeleteTopicsResponse::default().with_responses(responses);
    Ok(Reply::Now(request.respond(&response)?))
}

pub fn create_partitions(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: CreatePartitionsRequest = request.decode(&mut body)?;
    let results = req
        .topics
        .iter()
        .map(|topic| {
            let outcome = broker.topics.create_partitions(
                topic.name.0.as_str(),
                topic.count,
                req.validate_only,
            );
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            match outcome {
                Ok(()) => result.with_error_code(ErrorCode::NONE.code()),
                Err(e) => result
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            }
        })
        .collect();
    let response = CreatePartitionsResponse::default().with_results(results);
    Ok(Reply::Now(request.respond(&response)?))
}
