//! The group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, ListGroups, DescribeGroups, DeleteGroups and OffsetDelete.
//! Each handler turns its request (any version in our range) into the
//! coordinator's terms (`group::messages`) and the result back into the
//! response of that version; `group::GroupCoordinator` does the work.
//!
//! JoinGroup and SyncGroup may have to wait for the rest of the group; they
//! answer later, or `ErrorCode::NOT_COORDINATOR` when the broker shuts down first.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use protocol::messages::delete_groups_response::DeletableGroupResult;
use protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use protocol::messages::join_group_response::JoinGroupResponseMember;
use protocol::messages::leave_group_response::MemberResponse;
use protocol::messages::list_groups_response::ListedGroup as WireListedGroup;
use protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use protocol::{ErrorCode, StrBytes};

use crate::group::coordinator::GROUP_AUTHORIZED_OPERATIONS;
use crate::group::messages::*;
use crate::group::runtime::Pending;
use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::storage::TopicPartition;
use crate::Broker;

/// Kafka's value for "authorized operations not requested".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
/// The only group type this coordinator runs (KIP-848 groups are "consumer").
const CLASSIC_GROUP_TYPE: &str = "classic";

fn text(s: &StrBytes) -> String {
    s.as_str().to_string()
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn client_id(request: &Request) -> String {
    request
        .header
        .client_id
        .as_ref()
        .map(text)
        .unwrap_or_default()
}

/// Answers now when the coordinator did, otherwise once it does (or
/// `ErrorCode::NOT_COORDINATOR` at shutdown, so the client looks again after the restart).
fn reply_when_ready<T: protocol::Encodable + Send + 'static>(
    broker: &Arc<Broker>,
    request: Request,
    pending: Pending,
    encode: impl Fn(Option<Response>) -> T + Send + 'static,
) -> Result<Reply, DispatchError> {
    match pending {
        Pending::Ready(response) => Ok(Reply::Now(request.respond(&encode(Some(response)))?)),
        Pending::Waiting(answer) => {
            let shutdown = broker.shutdown.clone();
            let responder = request.responder();
            let future: BoxFuture<'static, Bytes> = Box::pin(async move {
                let response = tokio::select! {
                    answer = answer => answer.ok(),
                    _ = shutdown.cancelled() => None,
                };
                responder
                    .respond(&encode(response))
                    .expect("a group response encodes in the version it was asked in")
            });
            Ok(Reply::Later(future))
        }
    }
}

// ---- JoinGroup ----------------------------------------------------------------

pub fn join_group(
    broker: &Arc<Broker>,
    request: Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: JoinGroupRequest = request.decode(&mut body)?;
    let version = request.version();
    let join = JoinGroup {
        group_id: text(&req.group_id.0),
        member_id: text(&req.member_id),
        group_instance_id: req.group_instance_id.as_ref().map(text),
        client_id: client_id(&request),
        // Kafka reports the member's address with a leading slash, as Java's InetAddress prints it.
        client_host: format!("/{}", request.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        // Version 0 has no rebalance timeout; the session timeout served as both.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: text(&req.protocol_type),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| Protocol {
                name: text(&p.name),
                metadata: p.metadata,
            })
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
        reason: req.reason.as_ref().map(text),
    };
    let member_id = join.member_id.clone();
    let encode = move |response: Option<Response>| {
        let result = match response {
            Some(Response::JoinGroup(result)) => result,
            _ => JoinGroupResult::error(member_id.clone(), ErrorCode::NOT_COORDINATOR),
        };
        join_group_response(result, version)
    };
    match broker.groups.join_group(join) {
        Ok(pending) => reply_when_ready(broker, request, pending, encode),
        Err(code) => {
            let response = encode(Some(Response::JoinGroup(JoinGroupResult::error(
                text(&req.member_id),
                code,
            ))));
            Ok(Reply::Now(request.respond(&response)?))
        }
    }
}

fn join_group_response(result: JoinGroupResult, version: i16) -> JoinGroupResponse {
    // Before v7 the protocol name is not nullable: Kafka sends "" for none.
    let protocol_name = match result.protocol_name {
        None if version < 7 => Some(StrBytes::default()),
        other => other.map(str_bytes),
    };
    JoinGroupResponse::default()
        .with_error_code(result.error.code())
        .with_generation_id(result.generation_id)
        .with_protocol_type(result.protocol_type.map(str_bytes))
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(result.leader))
        .with_skip_assignment(result.skip_assignment)
        .with_member_id(str_bytes(result.member_id))
        .with_members(
            result
                .members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(m.group_instance_id.map(str_bytes))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}

// ---- SyncGroup ----------------------------------------------------------------

pub fn sync_group(
    broker: &Arc<Broker>,
    request: Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: SyncGroupRequest = request.decode(&mut body)?;
    let sync = SyncGroup {
        group_id: text(&req.group_id.0),
        generation_id: req.generation_id,
        member_id: text(&req.member_id),
        group_instance_id: req.group_instance_id.as_ref().map(text),
        protocol_type: req.protocol_type.as_ref().map(text),
        protocol_name: req.protocol_name.as_ref().map(text),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (text(&a.member_id), a.assignment))
            .collect(),
    };
    let encode = move |response: Option<Response>| {
        let result = match response {
            Some(Response::SyncGroup(result)) => result,
            _ => SyncGroupResult::error(ErrorCode::NOT_COORDINATOR),
        };
        sync_group_response(result)
    };
    match broker.groups.sync_group(sync) {
        Ok(pending) => reply_when_ready(broker, request, pending, encode),
        Err(code) => {
            // A loading coordinator has lost the rebalance in progress: the
            // member rejoins (older clients do not expect LOAD_IN_PROGRESS here).
            let code = if code == ErrorCode::COORDINATOR_LOAD_IN_PROGRESS {
                ErrorCode::REBALANCE_IN_PROGRESS
            } else {
                code
            };
            let response = encode(Some(Response::SyncGroup(SyncGroupResult::error(code))));
            Ok(Reply::Now(request.respond(&response)?))
        }
    }
}

fn sync_group_response(result: SyncGroupResult) -> SyncGroupResponse {
    // The protocol type and name exist from v5 on; encoding skips them before.
    SyncGroupResponse::default()
        .with_error_code(result.error.code())
        .with_protocol_type(result.protocol_type.map(str_bytes))
        .with_protocol_name(result.protocol_name.map(str_bytes))
        .with_assignment(result.assignment)
}

// ---- Heartbeat ----------------------------------------------------------------

pub fn heartbeat(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: HeartbeatRequest = request.decode(&mut body)?;
    let heartbeat = Heartbeat {
        group_id: text(&req.group_id.0),
        generation_id: req.generation_id,
        member_id: text(&req.member_id),
        group_instance_id: req.group_instance_id.as_ref().map(text),
    };
    let error = match broker.groups.heartbeat(heartbeat) {
        Ok(Pending::Ready(Response::Heartbeat(error))) => error,
        Ok(_) => ErrorCode::UNKNOWN_SERVER_ERROR,
        // While loading, Kafka answers heartbeats blindly: the group's state is not known yet.
        Err(code) if code == ErrorCode::COORDINATOR_LOAD_IN_PROGRESS => ErrorCode::NONE,
        Err(code) => code,
    };
    let response = HeartbeatResponse::default().with_error_code(error.code());
    Ok(Reply::Now(request.respond(&response)?))
}

// ---- LeaveGroup ---------------------------------------------------------------

pub fn leave_group(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: LeaveGroupRequest = request.decode(&mut body)?;
    let version = request.version();
    // Before v3 a request names one member; from v3 a batch.
    let members = if version >= 3 {
        req.members
            .iter()
            .map(|m| MemberIdentity {
                member_id: text(&m.member_id),
                group_instance_id: m.group_instance_id.as_ref().map(text),
                reason: m.reason.as_ref().map(text),
            })
            .collect()
    } else {
        vec![MemberIdentity {
            member_id: text(&req.member_id),
            group_instance_id: None,
            reason: None,
        }]
    };
    let leave = LeaveGroup {
        group_id: text(&req.group_id.0),
        members,
    };
    let result = match broker.groups.leave_group(leave) {
        Ok(Pending::Ready(Response::LeaveGroup(result))) => result,
        Ok(_) => LeaveGroupResult {
            error: ErrorCode::UNKNOWN_SERVER_ERROR,
            members: Vec::new(),
        },
        Err(code) => LeaveGroupResult {
            error: code,
            members: Vec::new(),
        },
    };
    let response = if version >= 3 {
        LeaveGroupResponse::default()
            .with_error_code(result.error.code())
            .with_members(
                result
                    .members
                    .into_iter()
                    .map(|(identity, error)| {
                        MemberResponse::default()
                            .with_member_id(str_bytes(identity.member_id))
                            .with_group_instance_id(identity.group_instance_id.map(str_bytes))
                            .with_error_code(error.code())
                    })
                    .collect(),
            )
    } else {
        // The one member's error is the response's error, as in Kafka.
        let error = if result.error.is_ok() {
            result.members.first().map_or(ErrorCode::NONE, |(_, e)| *e)
        } else {
            result.error
        };
        LeaveGroupResponse::default().with_error_code(error.code())
    };
    Ok(Reply::Now(request.respond(&response)?))
}

// ---- OffsetCommit -------------------------------------------------------------

pub fn offset_commit(
    broker: &Arc<Broker>,
    request: Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: OffsetCommitRequest = request.decode(&mut body)?;
    let version = request.version();
    let mut order = Vec::new();
    let mut refused = std::collections::HashMap::new();
    let mut offsets = Vec::new();
    let image = broker.image();
    for topic in &req.topics {
        let name = text(&topic.name.0);
        let known = image.topic(&name);
        for partition in &topic.partitions {
            let tp = TopicPartition::new(name.clone(), partition.partition_index);
            order.push(tp.clone());
            let exists = known.is_some_and(|t| t.partition(partition.partition_index).is_some());
            if !exists {
                refused.insert(tp, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
                continue;
            }
            offsets.push((
                tp,
                OffsetToCommit {
                    offset: partition.committed_offset,
                    leader_epoch: if version >= 6 {
                        partition.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: partition
                        .committed_metadata
                        .as_ref()
                        .map(text)
                        .unwrap_or_default(),
                },
            ));
        }
    }
    let commit = OffsetCommit {
        group_id: text(&req.group_id.0),
        generation_id: req.generation_id_or_member_epoch,
        member_id: text(&req.member_id),
        group_instance_id: req.group_instance_id.as_ref().map(text),
        retention_ms: (version <= 4 && req.retention_time_ms >= 0).then_some(req.retention_time_ms),
        group_id_not_found_supported: version >= 9,
        offsets,
    };
    let accepted: Vec<TopicPartition> = commit.offsets.iter().map(|(tp, _)| tp.clone()).collect();
    let encode = move |response: Option<Response>| {
        let mut errors: std::collections::HashMap<TopicPartition, ErrorCode> = match response {
            Some(Response::OffsetCommit(result)) => result.partitions.into_iter().collect(),
            _ => std::collections::HashMap::new(),
        };
        errors.extend(refused.iter().map(|(tp, e)| (tp.clone(), *e)));
        let topics = by_topic(&order, |tp| {
            let error = errors
                .get(tp)
                .copied()
                .unwrap_or(ErrorCode::NOT_COORDINATOR);
            OffsetCommitResponsePartition::default()
                .with_partition_index(tp.partition)
                .with_error_code(error.code())
        })
        .into_iter()
        .map(|(name, partitions)| {
            OffsetCommitResponseTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(partitions)
        })
        .collect();
        OffsetCommitResponse::default().with_topics(topics)
    };
    if commit.offsets.is_empty() {
        return Ok(Reply::Now(request.respond(&encode(None))?));
    }
    match broker.groups.offset_commit(commit) {
        Ok(pending) => reply_when_ready(broker, request, pending, encode),
        Err(code) => {
            let result = OffsetCommitResult {
                partitions: accepted.into_iter().map(|tp| (tp, code)).collect(),
            };
            Ok(Reply::Now(
                request.respond(&encode(Some(Response::OffsetCommit(result))))?,
            ))
        }
    }
}

// ---- OffsetFetch --------------------------------------------------------------

/// One group's part of an OffsetFetch: `None` topics means all of them.
struct FetchWanted {
    group_id: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
}

pub fn offset_fetch(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: OffsetFetchRequest = request.decode(&mut body)?;
    let version = request.version();
    // v8+ batches groups; earlier versions ask for one.
    let wanted: Vec<FetchWanted> = if version >= 8 {
        req.groups
            .iter()
            .map(|g| FetchWanted {
                group_id: text(&g.group_id.0),
                topics: g.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|t| (text(&t.name.0), t.partition_indexes.clone()))
                        .collect()
                }),
            })
            .collect()
    } else {
        vec![FetchWanted {
            group_id: text(&req.group_id.0),
            topics: req.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (text(&t.name.0), t.partition_indexes.clone()))
                    .collect()
            }),
        }]
    };
    let fetched: Vec<(String, Result<FetchedOffsets, ErrorCode>)> = wanted
        .iter()
        .map(|w| {
            let result = broker
                .groups
                .fetch_offsets(&w.group_id, w.topics.as_deref());
            (w.group_id.clone(), result)
        })
        .collect();
    let response = if version >= 8 {
        let groups = fetched
            .into_iter()
            .map(|(group_id, result)| {
                let (error, topics) = match result {
                    Ok(topics) => (ErrorCode::NONE, topics),
                    Err(code) => (code, Vec::new()),
                };
                OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(str_bytes(group_id)))
                    .with_error_code(error.code())
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(topic, offsets)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(str_bytes(topic)))
                                    .with_partitions(
                                        offsets
                                            .into_iter()
                                            .map(|o| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(o.partition)
                                                    .with_committed_offset(o.offset)
                                                    .with_committed_leader_epoch(o.leader_epoch)
                                                    .with_metadata(Some(str_bytes(o.metadata)))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        OffsetFetchResponse::default().with_groups(groups)
    } else {
        let (_, result) = fetched.into_iter().next().expect("one group before v8");
        let (error, topics) = match result {
            Ok(topics) => (ErrorCode::NONE, topics),
            // v1 has no top-level error: each asked-for partition carries it.
            Err(code) if version < 2 => (
                code,
                wanted[0]
                    .topics
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(topic, partitions)| {
                        let offsets = partitions
                            .into_iter()
                            .map(|partition| FetchedOffset {
                                partition,
                                offset: -1,
                                leader_epoch: -1,
                                metadata: String::new(),
                            })
                            .collect();
                        (topic, offsets)
                    })
                    .collect(),
            ),
            Err(code) => (code, Vec::new()),
        };
        let partition_error = if version < 2 { error } else { ErrorCode::NONE };
        OffsetFetchResponse::default()
            .with_error_code(error.code())
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, offsets)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(str_bytes(topic)))
                            .with_partitions(
                                offsets
                                    .into_iter()
                                    .map(|o| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(o.partition)
                                            .with_committed_offset(o.offset)
                                            .with_committed_leader_epoch(o.leader_epoch)
                                            .with_metadata(Some(str_bytes(o.metadata)))
                                            .with_error_code(partition_error.code())
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
    };
    Ok(Reply::Now(request.respond(&response)?))
}

// ---- ListGroups, DescribeGroups -------------------------------------------------

pub fn list_groups(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: ListGroupsRequest = request.decode(&mut body)?;
    let states: HashSet<String> = req
        .states_filter
        .iter()
        .map(|s| s.as_str().to_lowercase())
        .collect();
    let types: HashSet<String> = req
        .types_filter
        .iter()
        .map(|s| s.as_str().to_lowercase())
        .collect();
    let (error, groups) = broker.groups.list_groups();
    let classic_wanted = types.is_empty() || types.contains(CLASSIC_GROUP_TYPE);
    let groups = groups
        .into_iter()
        .filter(|g| {
            classic_wanted && (states.is_empty() || states.contains(&g.state.to_lowercase()))
        })
        .map(|g| {
            WireListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group_id)))
                .with_protocol_type(str_bytes(g.protocol_type))
                .with_group_state(StrBytes::from_static_str(g.state))
                .with_group_type(StrBytes::from_static_str(CLASSIC_GROUP_TYPE))
        })
        .collect();
    let response = ListGroupsResponse::default()
        .with_error_code(error.code())
        .with_groups(groups);
    Ok(Reply::Now(request.respond(&response)?))
}

pub fn describe_groups(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: DescribeGroupsRequest = request.decode(&mut body)?;
    let version = request.version();
    let authorized_operations = if req.include_authorized_operations {
        GROUP_AUTHORIZED_OPERATIONS
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let groups = req
        .groups
        .iter()
        .map(|group_id| {
            let described = DescribedGroup::default()
                .with_group_id(group_id.clone())
                .with_authorized_operations(authorized_operations);
            match broker.groups.describe_group(group_id.0.as_str()) {
                Ok(Some(description)) => described
                    .with_group_state(StrBytes::from_static_str(description.state))
                    .with_protocol_type(str_bytes(description.protocol_type))
                    .with_protocol_data(str_bytes(description.protocol_name))
                    .with_members(
                        description
                            .members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_group_instance_id(m.group_instance_id.map(str_bytes))
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
                // Kafka 4.x: v6+ says the group is not found; older versions see a Dead group.
                Ok(None) if version >= 6 => described
                    .with_error_code(ErrorCode::GROUP_ID_NOT_FOUND.code())
                    .with_error_message(Some(str_bytes(format!(
                        "Group {} not found.",
                        group_id.0.as_str()
                    )))),
                Ok(None) => described.with_group_state(StrBytes::from_static_str("Dead")),
                Err(code) => described.with_error_code(code.code()),
            }
        })
        .collect();
    let response = DescribeGroupsResponse::default().with_groups(groups);
    Ok(Reply::Now(request.respond(&response)?))
}

// ---- DeleteGroups, OffsetDelete -------------------------------------------------

pub fn delete_groups(
    broker: &Arc<Broker>,
    request: Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: DeleteGroupsRequest = request.decode(&mut body)?;
    let mut results = Vec::with_capacity(req.groups_names.len());
    let mut waiting = Vec::new();
    for group_id in &req.groups_names {
        match broker.groups.delete_group(text(&group_id.0)) {
            Ok(Pending::Ready(Response::DeleteGroup(error))) => {
                results.push((group_id.clone(), error))
            }
            Ok(Pending::Ready(_)) => {
                results.push((group_id.clone(), ErrorCode::UNKNOWN_SERVER_ERROR))
            }
            Ok(Pending::Waiting(answer)) => {
                waiting.push((results.len(), answer));
                results.push((group_id.clone(), ErrorCode::NOT_COORDINATOR));
            }
            Err(code) => results.push((group_id.clone(), code)),
        }
    }
    let encode = |results: Vec<(GroupId, ErrorCode)>| {
        DeleteGroupsResponse::default().with_results(
            results
                .into_iter()
                .map(|(group_id, error)| {
                    DeletableGroupResult::default()
                        .with_group_id(group_id)
                        .with_error_code(error.code())
                })
                .collect(),
        )
    };
    if waiting.is_empty() {
        return Ok(Reply::Now(request.respond(&encode(results))?));
    }
    let shutdown = broker.shutdown.clone();
    let responder = request.responder();
    Ok(Reply::Later(Box::pin(async move {
        let mut results = results;
        for (index, answer) in waiting {
            let response = tokio::select! {
                answer = answer => answer.ok(),
                _ = shutdown.cancelled() => None,
            };
            if let Some(Response::DeleteGroup(error)) = response {
                results[index].1 = error;
            }
        }
        responder
            .respond(&encode(results))
            .expect("a DeleteGroups response encodes")
    })))
}

pub fn offset_delete(
    broker: &Arc<Broker>,
    request: Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: OffsetDeleteRequest = request.decode(&mut body)?;
    let mut order = Vec::new();
    let mut refused = std::collections::HashMap::new();
    let mut partitions = Vec::new();
    let image = broker.image();
    for topic in &req.topics {
        let name = text(&topic.name.0);
        let known = image.topic(&name).is_some();
        for partition in &topic.partitions {
            let tp = TopicPartition::new(name.clone(), partition.partition_index);
            order.push(tp.clone());
            if known {
                partitions.push(tp);
            } else {
                refused.insert(tp, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
            }
        }
    }
    let delete = OffsetDelete {
        group_id: text(&req.group_id.0),
        partitions,
    };
    let encode = move |response: Option<Response>| {
        let result = match response {
            Some(Response::OffsetDelete(result)) => result,
            _ => OffsetDeleteResult {
                error: ErrorCode::NOT_COORDINATOR,
                partitions: Vec::new(),
            },
        };
        if !result.error.is_ok() {
            return OffsetDeleteResponse::default().with_error_code(result.error.code());
        }
        let mut errors: std::collections::HashMap<TopicPartition, ErrorCode> =
            result.partitions.into_iter().collect();
        errors.extend(refused.iter().map(|(tp, e)| (tp.clone(), *e)));
        let topics = by_topic(&order, |tp| {
            let error = errors.get(tp).copied().unwrap_or(ErrorCode::NONE);
            OffsetDeleteResponsePartition::default()
                .with_partition_index(tp.partition)
                .with_error_code(error.code())
        })
        .into_iter()
        .map(|(name, partitions)| {
            OffsetDeleteResponseTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(partitions)
        })
        .collect();
        OffsetDeleteResponse::default().with_topics(topics)
    };
    match broker.groups.offset_delete(delete) {
        Ok(pending) => reply_when_ready(broker, request, pending, encode),
        Err(code) => {
            let result = OffsetDeleteResult {
                error: code,
                partitions: Vec::new(),
            };
            Ok(Reply::Now(
                request.respond(&encode(Some(Response::OffsetDelete(result))))?,
            ))
        }
    }
}

/// Groups per-partition answers by topic, in request order: consecutive
/// partitions of one topic share an entry, as they came in the request.
fn by_topic<P>(
    order: &[TopicPartition],
    mut answer: impl FnMut(&TopicPartition) -> P,
) -> Vec<(String, Vec<P>)> {
    let mut topics: Vec<(String, Vec<P>)> = Vec::new();
    for tp in order {
        let partition = answer(tp);
        match topics.last_mut() {
            Some((name, partitions)) if *name == tp.topic => partitions.push(partition),
            _ => topics.push((tp.topic.clone(), vec![partition])),
        }
    }
    topics
}
