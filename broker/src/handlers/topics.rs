//! CreateTopics, DeleteTopics and CreatePartitions: each topic's change is
//! submitted to the controller, and the answer waits until it is committed
//! and applied here.

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

use crate::controller::{Controller, NewTopic};
use crate::ids::BrokerId;
use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::topics::TopicError;
use crate::Broker;

fn broker_ids(ids: &[protocol::messages::BrokerId]) -> Vec<BrokerId> {
    ids.iter().map(|b| BrokerId(b.0)).collect()
}

pub fn create_topics(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: CreateTopicsRequest = request.decode(&mut body)?;
    let broker = broker.clone();
    let responder = request.responder();
    Ok(Reply::Later(Box::pin(async move {
        let response = answer_create_topics(&broker.controller, req, false).await;
        // Encoding our own response cannot fail for a version we decoded.
        responder
            .respond(&response)
            .expect("create topics response encodes")
    })))
}

/// Creates each topic of a CreateTopics request through the controller. A
/// client may not create internal topics; a broker forwarding its own
/// (`__consumer_offsets`) to the active controller may.
pub async fn answer_create_topics(
    controller: &Controller,
    req: CreateTopicsRequest,
    internal_allowed: bool,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = if crate::topics::is_internal(&name) && !internal_allowed {
            Err(TopicError::new(
                ErrorCode::INVALID_TOPIC_EXCEPTION,
                format!("{name} is internal to the broker and created by it"),
            ))
        } else {
            let mut assignments = topic.assignments.clone();
            assignments.sort_by_key(|a| a.partition_index);
            let configs: BTreeMap<String, String> = topic
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect();
            let wanted = NewTopic {
                name,
                partitions: topic.num_partitions,
                replication_factor: topic.replication_factor,
                assignments: assignments
                    .iter()
                    .map(|a| broker_ids(&a.broker_ids))
                    .collect(),
                configs,
            };
            controller.create_topic(wanted, req.validate_only).await
        };
        results.push(match outcome {
            Ok(created) => result
                .with_topic_id(created.id)
                .with_error_code(ErrorCode::NONE.code())
                .with_num_partitions(created.partitions)
                .with_replication_factor(created.replication_factor),
            Err(e) => result
                .with_error_code(e.code.code())
                .with_error_message(Some(StrBytes::from_string(e.message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
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
    let broker = broker.clone();
    let responder = request.responder();
    Ok(Reply::Later(Box::pin(async move {
        let mut responses = Vec::with_capacity(wanted.len());
        for (name, id) in wanted {
            let name = match name {
                Some(name) => Some(name),
                None => broker.image().topic_by_id(id).map(|t| t.name.clone()),
            };
            let result = DeletableTopicResult::default()
                .with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))))
                .with_topic_id(id);
            let outcome = match &name {
                Some(name) if crate::topics::is_internal(name) => Err(TopicError::new(
                    ErrorCode::INVALID_TOPIC_EXCEPTION,
                    format!("{name} is internal to the broker and cannot be deleted"),
                )),
                Some(name) => broker
                    .controller
                    .delete_topic(name)
                    .await
                    .inspect(|_| broker.groups.topic_deleted(name)),
                None => Err(TopicError::new(
                    ErrorCode::UNKNOWN_TOPIC_ID,
                    format!("no topic has id {id}"),
                )),
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
        responder
            .respond(&response)
            .expect("delete topics response encodes")
    })))
}

pub fn create_partitions(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: CreatePartitionsRequest = request.decode(&mut body)?;
    let broker = broker.clone();
    let responder = request.responder();
    Ok(Reply::Later(Box::pin(async move {
        let response = answer_create_partitions(&broker.controller, &req).await;
        responder
            .respond(&response)
            .expect("create partitions response encodes")
    })))
}

/// Grows each topic of a CreatePartitions request through the controller.
pub async fn answer_create_partitions(
    controller: &Controller,
    req: &CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let assignments = topic
            .assignments
            .iter()
            .flatten()
            .map(|a| broker_ids(&a.broker_ids))
            .collect();
        let outcome = controller
            .create_partitions(
                topic.name.0.as_str(),
                topic.count,
                assignments,
                req.validate_only,
            )
            .await;
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        results.push(match outcome {
            Ok(()) => result.with_error_code(ErrorCode::NONE.code()),
            Err(e) => result
                .with_error_code(e.code.code())
                .with_error_message(Some(StrBytes::from_string(e.message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
