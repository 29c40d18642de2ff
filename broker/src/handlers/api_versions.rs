//! ApiVersions: the table of APIs and version ranges this broker serves.
//!
//! The ranges are those of Apache Kafka 4.1.0's message definitions (the
//! schemas `kafka-protocol` is generated from), restricted to the APIs we
//! implement, so clients that infer a broker version from this table see a
//! consistent one.

use std::sync::Arc;

use bytes::Bytes;
use protocol::header::encode_response;
use protocol::messages::api_versions_response::ApiVersion;
use protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteGroupsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeGroupsRequest, DescribeQuorumRequest, ElectLeadersRequest, FetchRequest,
    FindCoordinatorRequest, HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest,
    SyncGroupRequest, UnregisterBrokerRequest,
};
use protocol::{ErrorCode, Message};

use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::Broker;

fn range<M: Message>(key: ApiKey) -> (i16, i16, i16) {
    (key as i16, M::VERSIONS.min, M::VERSIONS.max)
}

/// Every API we serve with its version range.
pub fn supported_apis() -> Vec<(i16, i16, i16)> {
    vec![
        range::<ProduceRequest>(ApiKey::Produce),
        range::<FetchRequest>(ApiKey::Fetch),
        range::<ListOffsetsRequest>(ApiKey::ListOffsets),
        range::<OffsetForLeaderEpochRequest>(ApiKey::OffsetForLeaderEpoch),
        range::<MetadataRequest>(ApiKey::Metadata),
        range::<OffsetCommitRequest>(ApiKey::OffsetCommit),
        range::<OffsetFetchRequest>(ApiKey::OffsetFetch),
        range::<FindCoordinatorRequest>(ApiKey::FindCoordinator),
        range::<JoinGroupRequest>(ApiKey::JoinGroup),
        range::<HeartbeatRequest>(ApiKey::Heartbeat),
        range::<LeaveGroupRequest>(ApiKey::LeaveGroup),
        range::<SyncGroupRequest>(ApiKey::SyncGroup),
        range::<DescribeGroupsRequest>(ApiKey::DescribeGroups),
        range::<ListGroupsRequest>(ApiKey::ListGroups),
        range::<ApiVersionsRequest>(ApiKey::ApiVersions),
        range::<CreateTopicsRequest>(ApiKey::CreateTopics),
        range::<DeleteTopicsRequest>(ApiKey::DeleteTopics),
        range::<DescribeConfigsRequest>(ApiKey::DescribeConfigs),
        range::<protocol::messages::AlterConfigsRequest>(ApiKey::AlterConfigs),
        range::<protocol::messages::IncrementalAlterConfigsRequest>(
            ApiKey::IncrementalAlterConfigs,
        ),
        range::<protocol::messages::AlterReplicaLogDirsRequest>(ApiKey::AlterReplicaLogDirs),
        range::<protocol::messages::DescribeLogDirsRequest>(ApiKey::DescribeLogDirs),
        range::<CreatePartitionsRequest>(ApiKey::CreatePartitions),
        range::<protocol::messages::DeleteRecordsRequest>(ApiKey::DeleteRecords),
        range::<InitProducerIdRequest>(ApiKey::InitProducerId),
        range::<DeleteGroupsRequest>(ApiKey::DeleteGroups),
        range::<OffsetDeleteRequest>(ApiKey::OffsetDelete),
        range::<DescribeQuorumRequest>(ApiKey::DescribeQuorum),
        range::<DescribeClusterRequest>(ApiKey::DescribeCluster),
        range::<ElectLeadersRequest>(ApiKey::ElectLeaders),
        range::<UnregisterBrokerRequest>(ApiKey::UnregisterBroker),
        range::<protocol::messages::AlterPartitionReassignmentsRequest>(
            ApiKey::AlterPartitionReassignments,
        ),
        range::<protocol::messages::ListPartitionReassignmentsRequest>(
            ApiKey::ListPartitionReassignments,
        ),
        range::<protocol::messages::ListConfigResourcesRequest>(ApiKey::ListConfigResources),
        range::<protocol::messages::DescribeTopicPartitionsRequest>(
            ApiKey::DescribeTopicPartitions,
        ),
    ]
}

pub fn supported_range(api_key: i16) -> Option<(i16, i16)> {
    supported_apis()
        .into_iter()
        .find(|(key, _, _)| *key == api_key)
        .map(|(_, min, max)| (min, max))
}

fn api_keys() -> Vec<ApiVersion> {
    supported_apis()
        .into_iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

pub fn handle(
    _broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let _req: ApiVersionsRequest = request.decode(&mut body)?;
    let response = ApiVersionsResponse::default()
        .with_error_code(ErrorCode::NONE.code())
        .with_api_keys(api_keys());
    Ok(Reply::Now(request.respond(&response)?))
}

/// The answer to an ApiVersions request newer than we know: version 0 of the
/// response, `UNSUPPORTED_VERSION`, and our ranges (KIP-511).
pub fn unsupported_version_response(correlation_id: i32) -> Result<Bytes, DispatchError> {
    let response = ApiVersionsResponse::default()
        .with_error_code(ErrorCode::UNSUPPORTED_VERSION.code())
        .with_api_keys(api_keys());
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &response).map_err(|e| {
        DispatchError::Encode {
            api: ApiKey::ApiVersions,
            reason: e.to_string(),
        }
    })
}
