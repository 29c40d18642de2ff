//! DescribeCluster (the live brokers and the active controller, from the
//! metadata image); DescribeQuorum (the metadata quorum's leader, epoch,
//! high watermark and replicas), UnregisterBroker, ElectLeaders and
//! AlterPartitionReassignments, answered by the active controller: another
//! node forwards them there; ListPartitionReassignments, from the image.

use std::sync::Arc;

use bytes::Bytes;
use protocol::messages::describe_cluster_response::DescribeClusterBroker;
use protocol::messages::describe_quorum_response::{PartitionData, ReplicaState, TopicData};
use protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest,
    DescribeQuorumResponse, TopicName,
};
use protocol::{ErrorCode, StrBytes};

use crate::quorum::{Quorum, ReplicaDescription};
use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::Broker;

/// Kafka's value for "authorized operations not requested".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
/// DescribeCluster's endpoint type for brokers (2 asks for controllers).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn describe_cluster(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: DescribeClusterRequest = request.decode(&mut body)?;
    let image = broker.image();
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.controller.active_id().unwrap_or(-1)))
        .with_endpoint_type(ENDPOINT_TYPE_BROKERS)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    if request.version() >= 1 && req.endpoint_type != ENDPOINT_TYPE_BROKERS {
        response = response
            .with_error_code(ErrorCode::UNSUPPORTED_VERSION.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "only broker endpoints are described",
            )));
    } else {
        let brokers = image
            .brokers()
            .filter(|b| !b.fenced || req.include_fenced_brokers)
            .filter_map(|b| {
                let endpoint = b.client_endpoint()?;
                Some(
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.id.0))
                        .with_host(StrBytes::from_string(endpoint.host.clone()))
                        .with_port(i32::from(endpoint.port))
                        .with_rack(b.rack.clone().map(StrBytes::from_string))
                        .with_is_fenced(b.fenced),
                )
            })
            .collect();
        response = response.with_brokers(brokers);
    }
    Ok(Reply::Now(request.respond(&response)?))
}

pub fn describe_quorum(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let _req: DescribeQuorumRequest = request.decode(&mut body)?;
    let quorum = broker.controller.quorum();
    if quorum.is_leader() || broker.controller.active_id().is_none() {
        return Ok(Reply::Now(request.respond(&describe(quorum))?));
    }
    let broker = broker.clone();
    let responder = request.responder();
    let version = request.version();
    Ok(Reply::Later(Box::pin(async move {
        let response = broker
            .controller
            .describe_quorum(version)
            .await
            .unwrap_or_else(|code| DescribeQuorumResponse::default().with_error_code(code.code()));
        // Encoding our own response cannot fail for a version we decoded.
        responder
            .respond(&response)
            .expect("describe quorum response encodes")
    })))
}

fn replica_state(replica: &ReplicaDescription) -> ReplicaState {
    ReplicaState::default()
        .with_replica_id(BrokerId(replica.node_id))
        .with_log_end_offset(replica.log_end_offset.unwrap_or(-1))
        .with_last_fetch_timestamp(replica.last_fetch_timestamp_ms.unwrap_or(-1))
        .with_last_caught_up_timestamp(replica.last_caught_up_timestamp_ms.unwrap_or(-1))
}

/// This node's view of the metadata quorum, as DescribeQuorum answers it.
pub fn describe(quorum: &Quorum) -> DescribeQuorumResponse {
    let description = quorum.describe();
    let (code, leader) = match description.leader {
        Some(leader) => (ErrorCode::NONE, leader),
        None => (ErrorCode::NOT_LEADER_OR_FOLLOWER, -1),
    };
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_error_code(code.code())
        .with_leader_id(BrokerId(leader))
        .with_leader_epoch(i32::try_from(description.leader_epoch).unwrap_or(i32::MAX))
        .with_high_watermark(description.high_watermark)
        .with_current_voters(description.voters.iter().map(replica_state).collect())
        .with_observers(description.learners.iter().map(replica_state).collect());
    DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(
            crate::quorum::METADATA_TOPIC_NAME,
        )))
        .with_partitions(vec![partition])])
}

/// Answers once `call` (the controller's work, forwarded when this node is
/// not the active controller) has finished.
fn answer_later<Resp, Fut>(
    broker: &Arc<Broker>,
    request: &Request,
    call: impl FnOnce(Arc<Broker>) -> Fut,
) -> Reply
where
    Resp: protocol::Encodable,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    let responder = request.responder();
    let answer = call(broker.clone());
    Reply::Later(Box::pin(async move {
        // Encoding our own response cannot fail for a version we decoded.
        responder
            .respond(&answer.await)
            .expect("a controller response encodes in the version it was asked in")
    }))
}

pub fn unregister_broker(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: protocol::messages::UnregisterBrokerRequest = request.decode(&mut body)?;
    Ok(answer_later(broker, request, |broker| async move {
        let code = match broker
            .controller
            .unregister(crate::ids::BrokerId(req.broker_id.0))
            .await
        {
            Ok(()) => ErrorCode::NONE,
            Err(code) => code,
        };
        protocol::messages::UnregisterBrokerResponse::default().with_error_code(code.code())
    }))
}

pub fn elect_leaders(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: protocol::messages::ElectLeadersRequest = request.decode(&mut body)?;
    let version = request.version();
    Ok(answer_later(broker, request, |broker| async move {
        broker
            .controller
            .elect_leaders(req, version)
            .await
            .unwrap_or_else(|code| {
                protocol::messages::ElectLeadersResponse::default().with_error_code(code.code())
            })
    }))
}

pub fn alter_partition_reassignments(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: protocol::messages::AlterPartitionReassignmentsRequest = request.decode(&mut body)?;
    let version = request.version();
    Ok(answer_later(broker, request, |broker| async move {
        broker
            .controller
            .alter_partition_reassignments(req, version)
            .await
            .unwrap_or_else(|code| {
                protocol::messages::AlterPartitionReassignmentsResponse::default()
                    .with_error_code(code.code())
            })
    }))
}

pub fn list_partition_reassignments(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    use protocol::messages::list_partition_reassignments_response::{
        OngoingPartitionReassignment, OngoingTopicReassignment,
    };
    let req: protocol::messages::ListPartitionReassignmentsRequest = request.decode(&mut body)?;
    let image = broker.image();
    let wanted: Option<Vec<(String, i32)>> = req.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(move |p| (t.name.0.to_string(), *p))
            })
            .collect()
    });
    let mut by_topic: std::collections::BTreeMap<String, Vec<OngoingPartitionReassignment>> =
        std::collections::BTreeMap::new();
    for ((topic_id, partition), reassignment) in image.reassignments() {
        let Some(topic) = image.topic_by_id(*topic_id) else {
            continue;
        };
        if wanted.as_ref().is_some_and(|w| {
            !w.iter()
                .any(|(name, p)| *name == topic.name && p == partition)
        }) {
            continue;
        }
        let Some(registration) = topic.partition(*partition) else {
            continue;
        };
        let ids =
            |brokers: &[crate::ids::BrokerId]| brokers.iter().map(|b| BrokerId(b.0)).collect();
        by_topic.entry(topic.name.clone()).or_default().push(
            OngoingPartitionReassignment::default()
                .with_partition_index(*partition)
                .with_replicas(ids(&registration.replicas))
                .with_adding_replicas(ids(&reassignment.adding))
                .with_removing_replicas(ids(&reassignment.removing)),
        );
    }
    let response = protocol::messages::ListPartitionReassignmentsResponse::default().with_topics(
        by_topic
            .into_iter()
            .map(|(name, partitions)| {
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions)
            })
            .collect(),
    );
    Ok(Reply::Now(request.respond(&response)?))
}
