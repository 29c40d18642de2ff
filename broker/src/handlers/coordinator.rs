//! FindCoordinator: which broker coordinates a consumer group. The
//! coordinator of a group is the leader of partition `hash(group) % N` of
//! `__consumer_offsets` (see `group::partition_for`); with one broker that is
//! this one, once the partition is loaded. The first lookup creates the topic,
//! as in Kafka.

use std::sync::Arc;

use bytes::Bytes;
use protocol::messages::find_coordinator_response::Coordinator;
use protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use protocol::{ErrorCode, StrBytes};

use crate::group::error_codes::COORDINATOR_NOT_AVAILABLE;
use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::Broker;

const KEY_TYPE_GROUP: i8 = 0;

pub fn find_coordinator(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: FindCoordinatorRequest = request.decode(&mut body)?;
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
            return unavailable(COORDINATOR_NOT_AVAILABLE, "transactions are not supported");
        }
        match broker
            .groups
            .coordinator_status(&broker.topics, key.as_str())
        {
            Ok(_partition) => Coordinator::default()
                .with_key(key.clone())
                .with_node_id(BrokerId(broker.config.node_id))
                .with_host(StrBytes::from_string(host.clone()))
                .with_port(port)
                .with_error_code(ErrorCode::NONE.code()),
            Err(code) => unavailable(code, "the group's coordinator is not ready"),
        }
    };
    // Versions 0-3 ask for one key; 4 and later for a list.
    let response = if request.version() >= 4 {
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
    };
    Ok(Reply::Now(request.respond(&response)?))
}
