//! Membership rounds with the coordinator: joining (JoinGroup with the
//! `MEMBER_ID_REQUIRED` round trip, the leader's assignment, SyncGroup),
//! heartbeats on a background task, and LeaveGroup.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use protocol::messages::join_group_request::JoinGroupRequestProtocol;
use protocol::messages::leave_group_request::MemberIdentity;
use protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use protocol::{ErrorCode, StrBytes};
use tokio::time::Instant;

use crate::consumer::assignor::{AssignmentStrategy, MemberSubscription};
use crate::consumer::codec::{Assignment, Subscription, CONSUMER_PROTOCOL_TYPE};
use crate::consumer::codes;
use crate::consumer::coordinator::{CallError, Group, Member, Phase};
use crate::consumer::error::GroupError;

/// Versions we speak of each API (Kafka 4.1's ranges, as the broker's).
pub const JOIN_GROUP_VERSIONS: (i16, i16) = (0, 9);
pub const SYNC_GROUP_VERSIONS: (i16, i16) = (0, 5);
pub const HEARTBEAT_VERSIONS: (i16, i16) = (0, 4);
pub const LEAVE_GROUP_VERSIONS: (i16, i16) = (0, 5);

/// A JoinGroup may wait for the whole rebalance (the rebalance timeout);
/// its response gets this much longer, as in the Java client.
pub const JOIN_GROUP_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// The subscription version we send (the newest; the assignment layout is
/// the same in every version).
const SUBSCRIPTION_VERSION: i16 = 3;

/// What a member asks for in a join round.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    pub topics: Vec<String>,
    /// Partitions kept through the rebalance (cooperative protocol only).
    pub owned: BTreeMap<String, Vec<i32>>,
    /// The generation `owned` is from.
    pub owned_generation: i32,
}

/// A finished join round.
#[derive(Debug, Clone)]
pub struct Joined {
    pub generation_id: i32,
    pub member_id: String,
    pub strategy: AssignmentStrategy,
    pub assignment: Assignment,
    /// As leader: the partition counts the assignment was computed from, so
    /// a later change can start a rebalance.
    pub partition_counts: Option<BTreeMap<String, i32>>,
}

/// Why a join round ended without an assignment.
#[derive(Debug, Clone)]
pub enum JoinFailure {
    /// The member id or generation became invalid while it still owned
    /// partitions (cooperative): they are lost; start a new round.
    MembershipLost {
        code: ErrorCode,
    },
    Fatal(GroupError),
}

/// Joins the group: JoinGroup (again after `MEMBER_ID_REQUIRED`), the
/// leader's assignment, SyncGroup; retried through coordinator moves and
/// rebalances until it ends with an assignment or a failure that needs the
/// consumer (lost partitions, fatal errors). Runs across `poll` calls.
pub async fn join(group: Arc<Group>, plan: JoinPlan) -> Result<Joined, JoinFailure> {
    let backoff = group.backoff();
    let config = group.config.clone();
    let join_timeout = config.max_poll_interval + JOIN_GROUP_TIMEOUT_MARGIN;
    let mut attempt = 0u32;
    let owns_partitions = plan.owned.values().any(|p| !p.is_empty());
    loop {
        if attempt > 0 {
            let delay = backoff.delay(attempt, &mut rand::thread_rng());
            tokio::time::sleep(delay).await;
        }
        attempt += 1;
        let member_id = group.state().member_id.clone();
        let protocols: Vec<JoinGroupRequestProtocol> = config
            .partition_assignment_strategy
            .iter()
            .map(|strategy| {
                let subscription = Subscription {
                    topics: plan.topics.clone(),
                    user_data: strategy.subscription_user_data(plan.owned_generation),
                    owned_partitions: plan.owned.clone(),
                    generation_id: plan.owned_generation,
                    rack_id: None,
                };
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(strategy.name()))
                    .with_metadata(subscription.encode(SUBSCRIPTION_VERSION))
            })
            .collect();
        let build = |version: i16| {
            let mut request = JoinGroupRequest::default()
                .with_group_id(GroupId(group.group_id_str()))
                .with_session_timeout_ms(config.session_timeout.as_millis() as i32)
                .with_rebalance_timeout_ms(config.max_poll_interval.as_millis() as i32)
                .with_member_id(StrBytes::from_string(member_id.clone()))
                .with_protocol_type(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE))
                .with_protocols(protocols.clone());
            if version >= 5 {
                request = request.with_group_instance_id(
                    config.group_instance_id.clone().map(StrBytes::from_string),
                );
            }
            request
        };
        let response = match group
            .call::<JoinGroupRequest>(JOIN_GROUP_VERSIONS, build, join_timeout)
            .await
        {
            Ok(response) => response,
            Err(CallError::Retriable(reason)) => {
                tracing::debug!(group = %group.group_id, %reason, "JoinGroup failed; retrying");
                continue;
            }
            Err(CallError::Fatal(error)) => return Err(JoinFailure::Fatal(error)),
        };
        let code = ErrorCode(response.error_code);
        match code {
            ErrorCode::NONE => {}
            codes::MEMBER_ID_REQUIRED => {
                // KIP-394: join again, at once, with the id the coordinator chose.
                group.state().member_id = response.member_id.to_string();
                attempt = 0;
                continue;
            }
            codes::UNKNOWN_MEMBER_ID | codes::ILLEGAL_GENERATION => {
                {
                    let mut state = group.state();
                    state.member_id.clear();
                    state.generation_id = -1;
                }
                if owns_partitions {
                    return Err(JoinFailure::MembershipLost { code });
                }
                attempt = 0;
                continue;
            }
            code if codes::coordinator_moved(code) => {
                group.coordinator_unknown(None, &code.to_string());
                continue;
            }
            code if code == codes::COORDINATOR_LOAD_IN_PROGRESS
                || code == codes::REBALANCE_IN_PROGRESS =>
            {
                continue;
            }
            code => return Err(JoinFailure::Fatal(group.rejected("JoinGroup", code))),
        }
        let generation_id = response.generation_id;
        let member_id = response.member_id.to_string();
        let protocol = response
            .protocol_name
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let Some(strategy) = AssignmentStrategy::from_name(&protocol)
            .filter(|s| config.partition_assignment_strategy.contains(s))
        else {
            return Err(JoinFailure::Fatal(GroupError::UnknownProtocol {
                group: group.group_id.clone(),
                protocol,
            }));
        };
        group.state().member_id = member_id.clone();
        let leader = response.leader.as_str() == member_id && !response.skip_assignment;
        let (assignments, partition_counts) = if leader {
            match leader_assignment(&group, strategy, &response.members).await {
                Ok((assignments, counts)) => (assignments, Some(counts)),
                Err(LeaderError::Fatal(error)) => return Err(JoinFailure::Fatal(error)),
                Err(LeaderError::Retriable(reason)) => {
                    tracing::debug!(group = %group.group_id, %reason, "cannot compute the assignment; rejoining");
                    continue;
                }
            }
        } else {
            (Vec::new(), None)
        };
        let build = |version: i16| {
            let mut request = SyncGroupRequest::default()
                .with_group_id(GroupId(group.group_id_str()))
                .with_generation_id(generation_id)
                .with_member_id(StrBytes::from_string(member_id.clone()))
                .with_assignments(assignments.clone());
            if version >= 3 {
                request = request.with_group_instance_id(
                    config.group_instance_id.clone().map(StrBytes::from_string),
                );
            }
            if version >= 5 {
                request = request
                    .with_protocol_type(Some(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE)))
                    .with_protocol_name(Some(StrBytes::from_static_str(strategy.name())));
            }
            request
        };
        let response = match group
            .call::<SyncGroupRequest>(SYNC_GROUP_VERSIONS, build, join_timeout)
            .await
        {
            Ok(response) => response,
            Err(CallError::Retriable(reason)) => {
                tracing::debug!(group = %group.group_id, %reason, "SyncGroup failed; rejoining");
                continue;
            }
            Err(CallError::Fatal(error)) => return Err(JoinFailure::Fatal(error)),
        };
        let code = ErrorCode(response.error_code);
        match code {
            ErrorCode::NONE => {}
            codes::REBALANCE_IN_PROGRESS => {
                attempt = 0;
                continue;
            }
            codes::UNKNOWN_MEMBER_ID | codes::ILLEGAL_GENERATION => {
                {
                    let mut state = group.state();
                    if code == codes::UNKNOWN_MEMBER_ID {
                        state.member_id.clear();
                    }
                    state.generation_id = -1;
                }
                if owns_partitions {
                    return Err(JoinFailure::MembershipLost { code });
                }
                attempt = 0;
                continue;
            }
            code if codes::coordinator_moved(code) => {
                group.coordinator_unknown(None, &code.to_string());
                continue;
            }
            code if code == codes::COORDINATOR_LOAD_IN_PROGRESS => continue,
            code => return Err(JoinFailure::Fatal(group.rejected("SyncGroup", code))),
        }
        let assignment = Assignment::decode(&response.assignment).map_err(|error| {
            JoinFailure::Fatal(GroupError::Codec {
                group: group.group_id.clone(),
                error,
            })
        })?;
        tracing::debug!(
            group = %group.group_id,
            generation_id,
            %member_id,
            leader,
            protocol = strategy.name(),
            partitions = assignment.partition_count(),
            "joined the group"
        );
        return Ok(Joined {
            generation_id,
            member_id,
            strategy,
            assignment,
            partition_counts,
        });
    }
}

enum LeaderError {
    Retriable(String),
    Fatal(GroupError),
}

type LeaderAssignment = (Vec<SyncGroupRequestAssignment>, BTreeMap<String, i32>);

/// The leader's work: decode every member's subscription, look up the
/// partition counts of every subscribed topic, run the assignor.
async fn leader_assignment(
    group: &Group,
    strategy: AssignmentStrategy,
    members: &[protocol::messages::join_group_response::JoinGroupResponseMember],
) -> Result<LeaderAssignment, LeaderError> {
    let mut subscriptions = Vec::with_capacity(members.len());
    for member in members {
        let subscription = Subscription::decode(&member.metadata).map_err(|error| {
            LeaderError::Fatal(GroupError::Codec {
                group: group.group_id.clone(),
                error,
            })
        })?;
        subscriptions.push(MemberSubscription {
            member_id: member.member_id.to_string(),
            group_instance_id: member.group_instance_id.as_ref().map(|i| i.to_string()),
            subscription,
        });
    }
    let topics: BTreeSet<String> = subscriptions
        .iter()
        .flat_map(|m| m.subscription.topics.iter().cloned())
        .collect();
    let topics: Vec<String> = topics.into_iter().collect();
    let metadata = group
        .cluster
        .refresh_metadata(&topics)
        .await
        .map_err(|e| LeaderError::Retriable(e.to_string()))?;
    let partition_counts: BTreeMap<String, i32> = topics
        .iter()
        .filter_map(|t| metadata.partition_count(t).map(|count| (t.clone(), count)))
        .collect();
    let assignment = strategy.assign(&subscriptions, &partition_counts);
    let assignments = assignment
        .into_iter()
        .map(|(member_id, assignment)| {
            SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member_id))
                .with_assignment(assignment.encode(SUBSCRIPTION_VERSION))
        })
        .collect();
    Ok((assignments, partition_counts))
}

/// Heartbeats while the member is in a stable generation; records what the
/// answers mean for `poll`; leaves the group when `poll` has not been
/// called for `max_poll_interval`. Ends when `group.stop` is cancelled.
pub async fn heartbeat_loop(group: Arc<Group>) {
    let config = group.config.clone();
    let backoff = group.backoff();
    let mut failures = 0u32;
    let mut next = Instant::now() + config.heartbeat_interval;
    loop {
        tokio::select! {
            _ = group.stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let injected = group
            .injected_heartbeat_panic
            .lock()
            .expect("injected panic lock")
            .take();
        if let Some(message) = injected {
            panic!("{message}");
        }
        next = Instant::now() + config.heartbeat_interval;
        let (member, last_poll) = {
            let state = group.state();
            if state.phase != Phase::Stable {
                continue;
            }
            (
                Member {
                    generation_id: state.generation_id,
                    member_id: state.member_id.clone(),
                    group_instance_id: config.group_instance_id.clone(),
                },
                state.last_poll,
            )
        };
        if last_poll.elapsed() > config.max_poll_interval {
            tracing::warn!(
                group = %group.group_id,
                max_poll_interval = ?config.max_poll_interval,
                "poll was not called within max_poll_interval; leaving the group so its partitions move to other members"
            );
            if config.group_instance_id.is_none() {
                let _ = leave(&group, &member, "consumer poll timeout has expired").await;
            }
            group.lose_membership(
                &member,
                codes::UNKNOWN_MEMBER_ID,
                "max_poll_interval exceeded",
            );
            continue;
        }
        let build = |version: i16| {
            let mut request = HeartbeatRequest::default()
                .with_group_id(GroupId(group.group_id_str()))
                .with_generation_id(member.generation_id)
                .with_member_id(StrBytes::from_string(member.member_id.clone()));
            if version >= 3 {
                request = request.with_group_instance_id(
                    member.group_instance_id.clone().map(StrBytes::from_string),
                );
            }
            request
        };
        let timeout = config.request_timeout.min(config.session_timeout);
        let code = match group
            .call::<HeartbeatRequest>(HEARTBEAT_VERSIONS, build, timeout)
            .await
        {
            Ok(response) => ErrorCode(response.error_code),
            Err(CallError::Retriable(reason)) => {
                failures += 1;
                tracing::debug!(group = %group.group_id, %reason, "heartbeat failed");
                next = Instant::now() + backoff.delay(failures, &mut rand::thread_rng());
                continue;
            }
            Err(CallError::Fatal(error)) => {
                group.fail(error);
                continue;
            }
        };
        match code {
            ErrorCode::NONE => failures = 0,
            codes::REBALANCE_IN_PROGRESS => {
                failures = 0;
                group.request_rejoin(&member, "the group is rebalancing");
            }
            code if codes::membership_invalid(code) => {
                group.lose_membership(&member, code, "heartbeat refused");
            }
            codes::FENCED_INSTANCE_ID => {
                group.fail(group.rejected("Heartbeat", code));
            }
            code if codes::coordinator_retriable(code) => {
                failures += 1;
                if codes::coordinator_moved(code) {
                    group.coordinator_unknown(None, &code.to_string());
                }
                next = Instant::now() + backoff.delay(failures, &mut rand::thread_rng());
            }
            code => {
                failures += 1;
                tracing::warn!(group = %group.group_id, %code, "unexpected heartbeat error");
                next = Instant::now() + backoff.delay(failures, &mut rand::thread_rng());
            }
        }
    }
}

/// LeaveGroup for `member` (one attempt, bounded by the request timeout).
pub async fn leave(group: &Group, member: &Member, reason: &str) -> Result<(), CallError> {
    if member.member_id.is_empty() {
        return Ok(());
    }
    let build = |version: i16| {
        let request = LeaveGroupRequest::default().with_group_id(GroupId(group.group_id_str()));
        if version >= 3 {
            let mut identity = MemberIdentity::default()
                .with_member_id(StrBytes::from_string(member.member_id.clone()))
                .with_group_instance_id(
                    member.group_instance_id.clone().map(StrBytes::from_string),
                );
            if version >= 5 {
                identity = identity.with_reason(Some(StrBytes::from_string(reason.to_string())));
            }
            request.with_members(vec![identity])
        } else {
            request.with_member_id(StrBytes::from_string(member.member_id.clone()))
        }
    };
    let response = group
        .call::<LeaveGroupRequest>(LEAVE_GROUP_VERSIONS, build, group.config.request_timeout)
        .await?;
    let code = ErrorCode(response.error_code);
    if !code.is_ok() {
        tracing::debug!(group = %group.group_id, %code, "LeaveGroup answered an error");
    }
    Ok(())
}
