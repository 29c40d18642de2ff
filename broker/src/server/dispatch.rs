//! Maps a request frame to its handler by API key and version.
//!
//! A frame whose header cannot be read, or whose body does not decode, is an
//! error: the connection closes with a log line, as Kafka does, because no
//! response can be encoded for a request we could not understand. ApiVersions
//! is the exception every client relies on: a version newer than ours gets a
//! v0 answer with `UNSUPPORTED_VERSION` and our ranges, so the client can
//! retry with one we speak (KIP-511).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use protocol::header::{decode_request_header, encode_response, HeaderPrefix};
use protocol::messages::{ApiKey, RequestHeader};
use protocol::{Decodable, Encodable};
use thiserror::Error;

use crate::handlers;
use crate::Broker;

/// What a handler gives back for one request.
pub enum Reply {
    /// The encoded response frame, ready to write.
    Now(Bytes),
    /// A response frame in pieces, large record sets included by reference.
    Chunks(Vec<Bytes>),
    /// A response that must wait (`acks=all`, a JoinGroup in a rebalance).
    Later(BoxFuture<'static, Bytes>),
    /// A response in pieces that must wait (long-poll fetch).
    LaterChunks(BoxFuture<'static, Vec<Bytes>>),
    /// No response at all (`acks=0` produce).
    Nothing,
}

#[derive(Debug, Error)]
pub enum DispatchError {
    #[error("malformed request header: {0}")]
    Header(#[from] protocol::header::HeaderError),
    #[error("api key {api_key} version {api_version} is not supported")]
    Unsupported { api_key: i16, api_version: i16 },
    #[error("malformed {api:?} v{version} request: {reason}")]
    Body {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode {api:?} response: {reason}")]
    Encode { api: ApiKey, reason: String },
}

/// The request being handled: what a handler needs besides its body.
pub struct Request {
    pub api: ApiKey,
    pub header: RequestHeader,
    /// The client's address, as DescribeGroups reports it.
    pub peer: std::net::SocketAddr,
}

impl Request {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }

    pub fn decode<T: Decodable>(&self, body: &mut Bytes) -> Result<T, DispatchError> {
        T::decode(body, self.version()).map_err(|e| DispatchError::Body {
            api: self.api,
            version: self.version(),
            reason: e.to_string(),
        })
    }

    /// Encodes `response`, keeping the `zero_copy` byte fields (record sets) by reference.
    pub fn respond_chunks<T: Encodable>(
        &self,
        response: &T,
        zero_copy: &[Bytes],
    ) -> Result<Vec<Bytes>, DispatchError> {
        self.responder().respond_chunks(response, zero_copy)
    }

    pub fn respond<T: Encodable>(&self, response: &T) -> Result<Bytes, DispatchError> {
        self.responder().respond(response)
    }

    /// What encoding this request's response takes, without the request's
    /// bytes. The header's strings are slices of the request frame, and a
    /// slice keeps the connection's whole read buffer alive: a reply that
    /// waits should hold this instead, so the next receive can reuse that
    /// buffer rather than allocate (and fault in) a new one.
    pub fn responder(&self) -> Responder {
        Responder {
            api: self.api,
            version: self.version(),
            correlation_id: self.header.correlation_id,
        }
    }
}

/// Encodes responses to one request (see [`Request::responder`]).
#[derive(Debug, Clone, Copy)]
pub struct Responder {
    api: ApiKey,
    version: i16,
    correlation_id: i32,
}

impl Responder {
    /// Encodes `response`, keeping the `zero_copy` byte fields (record sets) by reference.
    pub fn respond_chunks<T: Encodable>(
        &self,
        response: &T,
        zero_copy: &[Bytes],
    ) -> Result<Vec<Bytes>, DispatchError> {
        protocol::header::encode_response_chunks(
            self.api,
            self.version,
            self.correlation_id,
            response,
            zero_copy,
        )
        .map_err(|e| DispatchError::Encode {
            api: self.api,
            reason: e.to_string(),
        })
    }

    pub fn respond<T: Encodable>(&self, response: &T) -> Result<Bytes, DispatchError> {
        encode_response(self.api, self.version, self.correlation_id, response).map_err(|e| {
            DispatchError::Encode {
                api: self.api,
                reason: e.to_string(),
            }
        })
    }
}

pub fn dispatch(
    broker: &Arc<Broker>,
    peer: std::net::SocketAddr,
    mut frame: Bytes,
) -> Result<Reply, DispatchError> {
    let prefix =
        HeaderPrefix::peek(&frame).ok_or(protocol::header::HeaderError::TooShort(frame.len()))?;
    let supported = handlers::api_versions::supported_range(prefix.api_key);
    let in_range = supported.is_some_and(|(min, max)| (min..=max).contains(&prefix.api_version));
    if !in_range {
        if prefix.api_key == ApiKey::ApiVersions as i16 && prefix.api_version >= 0 {
            return Ok(Reply::Now(
                handlers::api_versions::unsupported_version_response(prefix.correlation_id)?,
            ));
        }
        return Err(DispatchError::Unsupported {
            api_key: prefix.api_key,
            api_version: prefix.api_version,
        });
    }
    let (api, header) = decode_request_header(&mut frame)?;
    let request = Request { api, header, peer };
    let body = frame;
    if creates_offsets_topic(api) && !broker.groups.has_offsets_topic() {
        return defer_until_offsets_topic(broker, request, body);
    }
    route(broker, request, body)
}

/// Group requests that need `__consumer_offsets`, which the first of them
/// creates (as FindCoordinator does).
fn creates_offsets_topic(api: ApiKey) -> bool {
    matches!(
        api,
        ApiKey::JoinGroup
            | ApiKey::SyncGroup
            | ApiKey::Heartbeat
            | ApiKey::LeaveGroup
            | ApiKey::OffsetCommit
            | ApiKey::DeleteGroups
            | ApiKey::OffsetDelete
    )
}

/// Serves a group request once the controller has created the offsets
/// topic. The body is decoded first, so that a malformed request still
/// closes the connection at once.
fn defer_until_offsets_topic(
    broker: &Arc<Broker>,
    request: Request,
    body: Bytes,
) -> Result<Reply, DispatchError> {
    use protocol::messages::{
        DeleteGroupsRequest, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
        OffsetCommitRequest, OffsetDeleteRequest, SyncGroupRequest,
    };
    let mut check = body.clone();
    match request.api {
        ApiKey::JoinGroup => request.decode::<JoinGroupRequest>(&mut check).map(drop),
        ApiKey::SyncGroup => request.decode::<SyncGroupRequest>(&mut check).map(drop),
        ApiKey::Heartbeat => request.decode::<HeartbeatRequest>(&mut check).map(drop),
        ApiKey::LeaveGroup => request.decode::<LeaveGroupRequest>(&mut check).map(drop),
        ApiKey::OffsetCommit => request.decode::<OffsetCommitRequest>(&mut check).map(drop),
        ApiKey::DeleteGroups => request.decode::<DeleteGroupsRequest>(&mut check).map(drop),
        ApiKey::OffsetDelete => request.decode::<OffsetDeleteRequest>(&mut check).map(drop),
        _ => Ok(()),
    }?;
    let broker = broker.clone();
    Ok(Reply::LaterChunks(Box::pin(async move {
        handlers::coordinator::ensure_offsets_topic(&broker).await;
        match route(&broker, request, body) {
            Ok(reply) => reply.into_future().await.unwrap_or_default(),
            Err(e) => {
                // The body decoded above; only encoding our own response can fail here.
                tracing::error!(error = %e, "cannot answer a deferred group request");
                Vec::new()
            }
        }
    })))
}

fn route(broker: &Arc<Broker>, request: Request, body: Bytes) -> Result<Reply, DispatchError> {
    let api = request.api;
    match api {
        ApiKey::ApiVersions => handlers::api_versions::handle(broker, &request, body),
        ApiKey::Metadata => handlers::metadata::handle(broker, &request, body),
        ApiKey::DescribeTopicPartitions => {
            handlers::metadata::describe_topic_partitions(broker, &request, body)
        }
        ApiKey::Produce => handlers::produce::handle(broker, request, body),
        ApiKey::Fetch => handlers::fetch::handle(broker, request, body),
        ApiKey::ListOffsets => handlers::list_offsets::handle(broker, &request, body),
        ApiKey::OffsetForLeaderEpoch => {
            handlers::offset_for_leader_epoch::handle(broker, &request, body)
        }
        ApiKey::CreateTopics => handlers::topics::create_topics(broker, &request, body),
        ApiKey::DeleteTopics => handlers::topics::delete_topics(broker, &request, body),
        ApiKey::CreatePartitions => handlers::topics::create_partitions(broker, &request, body),
        ApiKey::DeleteRecords => handlers::delete_records::handle(broker, &request, body),
        ApiKey::FindCoordinator => handlers::coordinator::find_coordinator(broker, &request, body),
        ApiKey::JoinGroup => handlers::groups::join_group(broker, request, body),
        ApiKey::SyncGroup => handlers::groups::sync_group(broker, request, body),
        ApiKey::Heartbeat => handlers::groups::heartbeat(broker, &request, body),
        ApiKey::LeaveGroup => handlers::groups::leave_group(broker, &request, body),
        ApiKey::OffsetCommit => handlers::groups::offset_commit(broker, request, body),
        ApiKey::OffsetFetch => handlers::groups::offset_fetch(broker, &request, body),
        ApiKey::ListGroups => handlers::groups::list_groups(broker, &request, body),
        ApiKey::DescribeGroups => handlers::groups::describe_groups(broker, &request, body),
        ApiKey::DeleteGroups => handlers::groups::delete_groups(broker, request, body),
        ApiKey::OffsetDelete => handlers::groups::offset_delete(broker, request, body),
        ApiKey::InitProducerId => handlers::producer_id::handle(broker, &request, body),
        ApiKey::DescribeConfigs => handlers::configs::describe_configs(broker, &request, body),
        ApiKey::AlterConfigs => handlers::configs::alter_configs(broker, &request, body),
        ApiKey::IncrementalAlterConfigs => {
            handlers::configs::incremental_alter_configs(broker, &request, body)
        }
        ApiKey::ListConfigResources => {
            handlers::configs::list_config_resources(broker, &request, body)
        }
        ApiKey::DescribeLogDirs => handlers::log_dirs::describe_log_dirs(broker, &request, body),
        ApiKey::AlterReplicaLogDirs => {
            handlers::log_dirs::alter_replica_log_dirs(broker, &request, body)
        }
        ApiKey::DescribeCluster => handlers::cluster::describe_cluster(broker, &request, body),
        ApiKey::DescribeQuorum => handlers::cluster::describe_quorum(broker, &request, body),
        ApiKey::UnregisterBroker => handlers::cluster::unregister_broker(broker, &request, body),
        ApiKey::ElectLeaders => handlers::cluster::elect_leaders(broker, &request, body),
        ApiKey::AlterPartitionReassignments => {
            handlers::cluster::alter_partition_reassignments(broker, &request, body)
        }
        ApiKey::ListPartitionReassignments => {
            handlers::cluster::list_partition_reassignments(broker, &request, body)
        }
        other => Err(DispatchError::Unsupported {
            api_key: other as i16,
            api_version: request.version(),
        }),
    }
}
