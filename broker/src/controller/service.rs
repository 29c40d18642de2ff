//! What the controller listener serves besides Raft: the Kafka requests
//! brokers send the active controller (BrokerRegistration, BrokerHeartbeat,
//! and the changes they forward: CreateTopics, DeleteTopics,
//! CreatePartitions, IncrementalAlterConfigs). A node that is not the active controller answers
//! `NOT_CONTROLLER`; the sender finds the leader and retries.

use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use protocol::messages::broker_registration_request::Listener;
use protocol::messages::delete_topics_response::DeletableTopicResult;
use protocol::messages::{
    ApiKey, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerRegistrationRequest,
    BrokerRegistrationResponse, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DeleteTopicsResponse,
};
use protocol::{Decodable, Encodable, StrBytes};

use crate::controller::membership::{Heartbeat, Registration};
use crate::controller::Controller;
use crate::ids::BrokerId;
use crate::metadata::Endpoint;
use crate::quorum::FrameHandler;

/// Where the controller is found once it exists (the quorum's listener starts first).
pub type ControllerSlot = Arc<OnceLock<Weak<Controller>>>;

/// The handler the quorum's controller listener hands non-Raft frames to.
pub fn frame_handler(slot: ControllerSlot) -> FrameHandler {
    Arc::new(move |frame: Bytes| {
        let slot = slot.clone();
        Box::pin(async move {
            let controller = slot.get().and_then(Weak::upgrade)?;
            match serve(&controller, frame).await {
                Ok(response) => Some(response),
                Err(reason) => {
                    tracing::warn!(%reason, "closing a controller connection: bad request");
                    None
                }
            }
        })
    })
}

fn decode<T: Decodable>(body: &mut Bytes, version: i16) -> Result<T, String> {
    T::decode(body, version).map_err(|e| e.to_string())
}

fn respond<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, String> {
    protocol::header::encode_response(api, version, correlation_id, body).map_err(|e| e.to_string())
}

async fn serve(controller: &Controller, mut frame: Bytes) -> Result<Bytes, String> {
    let (api, header) =
        protocol::header::decode_request_header(&mut frame).map_err(|e| e.to_string())?;
    let version = header.request_api_version;
    let correlation_id = header.correlation_id;
    let supported = match api {
        ApiKey::BrokerRegistration => 0..=4,
        ApiKey::BrokerHeartbeat => 0..=1,
        ApiKey::CreateTopics => 2..=7,
        ApiKey::DeleteTopics => 1..=6,
        ApiKey::CreatePartitions => 0..=3,
        ApiKey::DescribeQuorum => 0..=2,
        ApiKey::UnregisterBroker => 0..=0,
        ApiKey::AllocateProducerIds => 0..=0,
        ApiKey::ElectLeaders => 0..=2,
        ApiKey::AlterPartition => 2..=3,
        ApiKey::AlterPartitionReassignments => 0..=1,
        ApiKey::IncrementalAlterConfigs => 0..=1,
        _ => return Err(format!("{api:?} is not served on the controller listener")),
    };
    if !supported.contains(&version) {
        return Err(format!("{api:?} v{version} is not supported"));
    }
    let body = &mut frame;
    match api {
        ApiKey::BrokerRegistration => {
            let request: BrokerRegistrationRequest = decode(body, version)?;
            let response = match controller.register(registration_from(&request)).await {
                Ok(epoch) => BrokerRegistrationResponse::default().with_broker_epoch(epoch),
                Err(code) => BrokerRegistrationResponse::default()
                    .with_error_code(code.code())
                    .with_broker_epoch(-1),
            };
            respond(api, version, correlation_id, &response)
        }
        ApiKey::BrokerHeartbeat => {
            let request: BrokerHeartbeatRequest = decode(body, version)?;
            let heartbeat = Heartbeat {
                id: BrokerId(request.broker_id.0),
                broker_epoch: request.broker_epoch,
                current_metadata_offset: request.current_metadata_offset,
                want_fence: request.want_fence,
                want_shutdown: request.want_shut_down,
            };
            let response = match controller.heartbeat(heartbeat).await {
                Ok(reply) => BrokerHeartbeatResponse::default()
                    .with_is_caught_up(reply.is_caught_up)
                    .with_is_fenced(reply.is_fenced)
                    .with_should_shut_down(reply.should_shut_down),
                Err(code) => BrokerHeartbeatResponse::default()
                    .with_error_code(code.code())
                    .with_is_fenced(true),
            };
            respond(api, version, correlation_id, &response)
        }
        ApiKey::CreateTopics => {
            let request: CreateTopicsRequest = decode(body, version)?;
            // Forwarded by brokers, __consumer_offsets included.
            let response =
                crate::handlers::topics::answer_create_topics(controller, request, true).await;
            respond(api, version, correlation_id, &response)
        }
        ApiKey::DeleteTopics => {
            let request: DeleteTopicsRequest = decode(body, version)?;
            let mut responses = Vec::new();
            for name in request.topic_names {
                let result = DeletableTopicResult::default().with_name(Some(name.clone()));
                responses.push(match controller.delete_topic(name.0.as_str()).await {
                    Ok(id) => result.with_topic_id(id),
                    Err(e) => result
                        .with_error_code(e.code.code())
                        .with_error_message(Some(StrBytes::from_string(e.message))),
                });
            }
            respond(
                api,
                version,
                correlation_id,
                &DeleteTopicsResponse::default().with_responses(responses),
            )
        }
        ApiKey::CreatePartitions => {
            let request: CreatePartitionsRequest = decode(body, version)?;
            let response =
                crate::handlers::topics::answer_create_partitions(controller, &request).await;
            respond(api, version, correlation_id, &response)
        }
        ApiKey::DescribeQuorum => {
            let _: protocol::messages::DescribeQuorumRequest = decode(body, version)?;
            let response = crate::handlers::cluster::describe(controller.quorum());
            respond(api, version, correlation_id, &response)
        }
        ApiKey::UnregisterBroker => {
            let request: protocol::messages::UnregisterBrokerRequest = decode(body, version)?;
            let code = match controller.unregister(BrokerId(request.broker_id.0)).await {
                Ok(()) => 0,
                Err(code) => code.code(),
            };
            let response =
                protocol::messages::UnregisterBrokerResponse::default().with_error_code(code);
            respond(api, version, correlation_id, &response)
        }
        ApiKey::ElectLeaders => {
            let request: protocol::messages::ElectLeadersRequest = decode(body, version)?;
            let response = controller
                .elect_leaders(request, version)
                .await
                .unwrap_or_else(|code| {
                    protocol::messages::ElectLeadersResponse::default().with_error_code(code.code())
                });
            respond(api, version, correlation_id, &response)
        }
        ApiKey::AlterPartition => {
            let request: protocol::messages::AlterPartitionRequest = decode(body, version)?;
            let response = controller
                .alter_partition(request)
                .await
                .unwrap_or_else(|code| {
                    protocol::messages::AlterPartitionResponse::default()
                        .with_error_code(code.code())
                });
            respond(api, version, correlation_id, &response)
        }
        ApiKey::AlterPartitionReassignments => {
            let request: protocol::messages::AlterPartitionReassignmentsRequest =
                decode(body, version)?;
            let response = controller
                .alter_partition_reassignments(request, version)
                .await
                .unwrap_or_else(|code| {
                    protocol::messages::AlterPartitionReassignmentsResponse::default()
                        .with_error_code(code.code())
                });
            respond(api, version, correlation_id, &response)
        }
        ApiKey::IncrementalAlterConfigs => {
            let request: protocol::messages::IncrementalAlterConfigsRequest =
                decode(body, version)?;
            // Forwarded by brokers: topic configs only.
            let response = crate::handlers::configs::answer_incremental_alter_configs(
                controller, None, request,
            )
            .await;
            respond(api, version, correlation_id, &response)
        }
        ApiKey::AllocateProducerIds => {
            let request: protocol::messages::AllocateProducerIdsRequest = decode(body, version)?;
            let response = match controller
                .allocate_producer_ids(BrokerId(request.broker_id.0), request.broker_epoch)
                .await
            {
                Ok((start, len)) => protocol::messages::AllocateProducerIdsResponse::default()
                    .with_producer_id_start(protocol::messages::ProducerId(start))
                    .with_producer_id_len(len),
                Err(code) => protocol::messages::AllocateProducerIdsResponse::default()
                    .with_error_code(code.code())
                    .with_producer_id_start(protocol::messages::ProducerId(-1)),
            };
            respond(api, version, correlation_id, &response)
        }
        _ => unreachable!("checked above"),
    }
}

/// A BrokerRegistration request for `registration`.
pub fn registration_request(registration: &Registration) -> BrokerRegistrationRequest {
    BrokerRegistrationRequest::default()
        .with_broker_id(protocol::messages::BrokerId(registration.id.0))
        .with_incarnation_id(registration.incarnation)
        .with_rack(registration.rack.clone().map(StrBytes::from_string))
        .with_listeners(
            registration
                .endpoints
                .iter()
                .map(|e| {
                    Listener::default()
                        .with_name(StrBytes::from_string(e.name.clone()))
                        .with_host(StrBytes::from_string(e.host.clone()))
                        .with_port(e.port)
                })
                .collect(),
        )
}

fn registration_from(request: &BrokerRegistrationRequest) -> Registration {
    Registration {
        id: BrokerId(request.broker_id.0),
        incarnation: request.incarnation_id,
        endpoints: request
            .listeners
            .iter()
            .map(|l| Endpoint {
                name: l.name.to_string(),
                host: l.host.to_string(),
                port: l.port,
            })
            .collect(),
        rack: request.rack.as_ref().map(|r| r.to_string()),
    }
}
