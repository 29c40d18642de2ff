//! FindCoordinator: which broker coordinates a consumer group. The
//! coordinator of a group is the leader of partition `hash(group) % N` of
//! `__consumer_offsets` (see `group::partition_for`): this broker once the
//! partition is loaded when it leads it, otherwise the partition's leader
//! from the metadata image. The first lookup has the controller create the
//! topic, as in Kafka.

use std::sync::Arc;

use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::Broker;
use bytes::Bytes;
use protocol::messages::find_coordinator_response::Coordinator;
use protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use protocol::{ErrorCode, StrBytes};

const KEY_TYPE_GROUP: i8 = 0;

pub fn find_coordinator(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: FindCoordinatorRequest = request.decode(&mut body)?;
    let version = request.version();
    if req.key_type != KEY_TYPE_GROUP || broker.groups.has_offsets_topic() {
        return Ok(Reply::Now(request.respond(&answer(broker, &req, version))?));
    }
    // The first lookup asks the controller for the offsets topic and answers once it exists.
    let broker = broker.clone();
    let responder = request.responder();
    Ok(Reply::Later(Box::pin(async move {
        ensure_offsets_topic(&broker).await;
        // Encoding our own response cannot fail for a version we decoded.
        responder
            .respond(&answer(&broker, &req, version))
            .expect("find coordinator response encodes")
    })))
}

/// Has the controller create `__consumer_offsets` unless it exists; returns
/// once it exists here (or creating it failed, which is logged: the group
/// requests then answer `COORDINATOR_NOT_AVAILABLE`).
pub async fn ensure_offsets_topic(broker: &Broker) {
    if broker.groups.has_offsets_topic() {
        return;
    }
    let live = broker.image().brokers().filter(|b| !b.fenced).count();
    let wanted = broker.groups.offsets_topic(live);
    match broker.controller.create_topic(wanted, false).await {
        Ok(_) => {}
        Err(e) if e.code == ErrorCode::TOPIC_ALREADY_EXISTS => {}
        Err(e) => {
            tracing::error!(error = %e.message, "cannot create {}", crate::group::OFFSETS_TOPIC)
        }
    }
}

fn answer(broker: &Broker, req: &FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let (host, port) = broker.advertised();
    let answer = |key: StrBytes| {
        let unavailable = |code: ErrorCode, message: &'static str| {
            Coordinator::default()
                .with_key(key.clone())
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::default())
                .with_port(-1)
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_static_str(message)))
        };
        if req.key_type != KEY_TYPE_GROUP {
            // Transactions (and share groups) are not offered: no coordinator for them.
            return unavailable(
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                "transactions are not supported",
            );
        }
        match broker.groups.coordinator_status(key.as_str()) {
            Ok(_partition) => Coordinator::default()
                .with_key(key.clone())
                .with_node_id(BrokerId(broker.config.node_id))
                .with_host(StrBytes::from_string(host.clone()))
                .with_port(port)
                .with_error_code(ErrorCode::NONE.code()),
            Err(ErrorCode::NOT_COORDINATOR) => {
                // Another broker leads the group's offsets partition: name it.
                let leader = broker.groups.partition_of(key.as_str()).and_then(|index| {
                    let image = broker.image();
                    let leader = image
                        .topic(crate::group::OFFSETS_TOPIC)?
                        .partition(index)?
                        .leader;
                    let registration = image.broker(leader).filter(|b| !b.fenced)?;
                    let endpoint = registration.client_endpoint()?.clone();
                    Some((leader, endpoint))
                });
                match leader {
                    Some((id, endpoint)) => Coordinator::default()
                        .with_key(key.clone())
                        .with_node_id(BrokerId(id.0))
                        .with_host(StrBytes::from_string(endpoint.host))
                        .with_port(i32::from(endpoint.port))
                        .with_error_code(ErrorCode::NONE.code()),
                    None => unavailable(
                        ErrorCode::COORDINATOR_NOT_AVAILABLE,
                        "the group's offsets partition has no live leader",
                    ),
                }
            }
            Err(code) => unavailable(code, "the group's coordinator is not ready"),
        }
    };
    // Versions 0-3 ask for one key; 4 and later for a list.
    if version >= 4 {
        FindCoordinatorResponse::default()
            .with_coordinators(req.coordinator_keys.iter().cloned().map(answer).collect())
    } else {
        let single = answer(req.key.clone());
        FindCoordinatorResponse::default()
            .with_error_code(single.error_code)
            .with_error_message(single.error_message)
            .with_node_id(single.node_id)
            .with_host(single.host)
            .with_port(single.port)
    }
}
