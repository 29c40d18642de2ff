//! FindCoordinator: which broker coordinates a consumer group. With one broker
//! it is this one; with replication it becomes the leader of the group's
//! `__consumer_offsets` partition.

use std::sync::Arc;

use bytes::Bytes;
use protocol::messages::find_coordinator_response::Coordinator;
use protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use protocol::{ErrorCode, StrBytes};

use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::Broker;

const KEY_TYPE_GROUP: i8 = 0;
/// Transactions are not offered, so there is no transaction coordinator.
const COORDINATOR_NOT_AVAILABLE: ErrorCode = ErrorCode(15);

pub fn find_coordinator(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: FindCoordinatorRequest = request.decode(&mut body)?;
    let (host, port) = broker.advertised();
    let answer = |key: StrBytes| {
        if req.key_type == KEY_TYPE_GROUP {
            Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(broker.config.node_id))
                .with_host(StrBytes::from_string(host.clone()))
                .with_port(port)
                .with_error_code(ErrorCode::NONE.code())
        } else {
            Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::default())
                .with_port(-1)
                .with_error_code(COORDINATOR_NOT_AVAILABLE.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "transactions are not supported",
                )))
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
