//! The controller: the only writer of the cluster metadata. Request
//! handlers, the group runtime and each broker's lifecycle submit what they
//! need (create or delete a topic, add partitions, register, heartbeat); the
//! active controller (the quorum's leader) decides against the current
//! image, commits the records, and answers once they are applied. A node
//! that is not the active controller forwards the request to it as a Kafka
//! request on its controller listener, and answers once it has applied the
//! change itself, so the caller finds it in this node's image.
//!
//! - [`topics`]: decisions on topics, requests and image in, records out.
//! - [`placement`]: where new replicas go.
//! - [`membership`]: decisions on brokers (sessions, fencing) and leader elections.
//! - [`channel`]: the connection to the active controller.
//! - [`service`]: what the controller listener serves besides Raft.
//!
//! Decisions are taken one at a time (a decision reads the image its
//! predecessor left). Each decision's records are one entry of the metadata
//! log, proposed to the [`Quorum`]; in the single-node default the quorum is
//! this process alone.

pub mod channel;
pub mod isr;
pub mod membership;
pub mod placement;
pub mod reassign;
pub mod service;
pub mod topics;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use protocol::messages::{
    create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic},
    create_topics_request::{CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig},
    incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
    ApiKey, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerRegistrationResponse,
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, TopicName,
};
use protocol::ErrorCode;
use uuid::Uuid;

use crate::ids::{BrokerId, Offset};
use crate::metadata::records::encode_batch;
use crate::metadata::{MetadataImage, MetadataLoader, MetadataRecord};
use crate::quorum::{Quorum, QuorumError};
use crate::topics::TopicError;
use channel::ControllerChannel;
use membership::{Heartbeat, HeartbeatReply, Membership, MembershipConfig, Registration};
pub use topics::{ConfigChange, CreatedTopic, NewTopic};

/// How long a forwarded change may take to reach this node's image.
const FORWARDED_APPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on committing one entry of the metadata log.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the active controller looks for expired broker sessions.
const SESSION_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// The listener name a broker registers its controller listener under
/// (a broker-only node receives the metadata log there, as a learner).
pub const CONTROLLER_LISTENER_NAME: &str = "CONTROLLER";

/// Kafka's config resource type of a topic.
pub const CONFIG_RESOURCE_TOPIC: i8 = 2;
/// Kafka's config resource type of a broker.
pub const CONFIG_RESOURCE_BROKER: i8 = 4;
/// IncrementalAlterConfigs' operations, as Kafka numbers them.
pub const CONFIG_OPERATION_SET: i8 = 0;
pub const CONFIG_OPERATION_DELETE: i8 = 1;
pub const CONFIG_OPERATION_APPEND: i8 = 2;
pub const CONFIG_OPERATION_SUBTRACT: i8 = 3;

/// Controller settings (Kafka's names in the docs).
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `num.partitions`: partitions of a topic created without a count.
    pub default_partitions: i32,
    /// `default.replication.factor`: replicas of a topic created without a factor.
    pub default_replication_factor: i16,
    /// `broker.session.timeout.ms`.
    pub session_timeout_ms: i64,
    /// The voters' controller listeners, where requests are forwarded.
    pub voters: BTreeMap<i32, SocketAddr>,
    /// How often leaderships move back to preferred replicas (`None`: never).
    pub leader_rebalance_interval: Option<Duration>,
    /// `unclean.leader.election.enable`, for topics that do not set it.
    pub unclean_leader_election: bool,
}

pub struct Controller {
    config: ControllerConfig,
    metadata: Arc<MetadataLoader>,
    quorum: Quorum,
    /// Broker sessions (meaningful on the active controller), held while
    /// deciding and committing, so that decisions are taken one at a time.
    deciding: tokio::sync::Mutex<Membership>,
    channel: ControllerChannel,
    /// Which voter a broker-only node asks next while it knows no leader.
    next_voter: std::sync::atomic::AtomicUsize,
    /// This node leads the quorum and has started the broker sessions:
    /// registrations and heartbeats wait for it (they would be forgotten
    /// by the sessions' reset otherwise).
    active: std::sync::atomic::AtomicBool,
}

impl Controller {
    pub fn new(
        config: ControllerConfig,
        metadata: Arc<MetadataLoader>,
        quorum: Quorum,
    ) -> Controller {
        let membership = Membership::new(MembershipConfig {
            session_timeout_ms: config.session_timeout_ms,
            unclean_leader_election: config.unclean_leader_election,
        });
        Controller {
            channel: ControllerChannel::new(config.voters.clone()),
            config,
            metadata,
            quorum,
            deciding: tokio::sync::Mutex::new(membership),
            next_voter: std::sync::atomic::AtomicUsize::new(0),
            active: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    pub fn quorum(&self) -> &Quorum {
        &self.quorum
    }

    pub fn metadata(&self) -> &Arc<MetadataLoader> {
        &self.metadata
    }

    /// The active controller's id, if one is known.
    pub fn active_id(&self) -> Option<i32> {
        self.quorum.leader()
    }

    /// Decides against the current image and commits the records, unless
    /// `validate_only`; answers once they are applied here. Only on the
    /// active controller.
    async fn submit<T>(
        &self,
        validate_only: bool,
        decide: impl FnOnce(
            &mut Membership,
            &MetadataImage,
        ) -> Result<(Vec<MetadataRecord>, T), TopicError>,
    ) -> Result<T, TopicError> {
        let mut membership = self.deciding.lock().await;
        if !self.quorum.is_leader() {
            return Err(not_controller(self.quorum.leader()));
        }
        let (records, outcome) = decide(&mut membership, &self.metadata.image())?;
        if validate_only || records.is_empty() {
            return Ok(outcome);
        }
        self.commit(records).await?;
        Ok(outcome)
    }

    /// Commits records as one entry of the metadata log; returns its offset
    /// once it is applied here.
    pub async fn commit(&self, records: Vec<MetadataRecord>) -> Result<Offset, TopicError> {
        let proposed = self.quorum.propose(encode_batch(&records));
        match tokio::time::timeout(COMMIT_TIMEOUT, proposed).await {
            Ok(Ok(index)) => Ok(Offset(index as i64)),
            Ok(Err(QuorumError::NotLeader { leader })) => Err(not_controller(leader)),
            Ok(Err(e)) => Err(TopicError::new(
                ErrorCode::REQUEST_TIMED_OUT,
                format!("the metadata log did not commit: {e}"),
            )),
            // No quorum (a majority of voters is down or cut off).
            Err(_) => Err(TopicError::new(
                ErrorCode::REQUEST_TIMED_OUT,
                format!("the metadata log did not commit within {COMMIT_TIMEOUT:?}"),
            )),
        }
    }

    /// The active controller to forward to, or `None` when this node is it.
    /// A broker-only node that knows no leader yet (it receives the metadata
    /// log only once registered) asks the voters in turn; a voter forwards
    /// to the leader it knows.
    fn forward_to(&self) -> Result<Option<i32>, TopicError> {
        match self.quorum.leader() {
            Some(leader) if leader == self.quorum.node_id() => Ok(None),
            Some(leader) => Ok(Some(leader)),
            None if !self.config.voters.contains_key(&self.quorum.node_id()) => {
                let turn = self
                    .next_voter
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let voters: Vec<i32> = self.config.voters.keys().copied().collect();
                Ok(Some(voters[turn % voters.len()]))
            }
            None => Err(not_controller(None)),
        }
    }

    fn forward_failed(e: channel::ChannelError) -> TopicError {
        TopicError::new(ErrorCode::NOT_CONTROLLER, e.to_string())
    }

    /// Waits until this node's image satisfies `applied` (a forwarded change arrived).
    async fn await_image(
        &self,
        applied: impl Fn(&MetadataImage) -> bool,
    ) -> Result<(), TopicError> {
        let mut watch = self.metadata.watch_applied();
        let arrived = tokio::time::timeout(FORWARDED_APPLY_TIMEOUT, async {
            loop {
                if applied(&self.metadata.image()) {
                    return;
                }
                if watch.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        arrived.map_err(|_| {
            TopicError::new(
                ErrorCode::REQUEST_TIMED_OUT,
                "the change was committed but has not reached this broker yet",
            )
        })
    }

    pub async fn create_topic(
        &self,
        topic: NewTopic,
        validate_only: bool,
    ) -> Result<CreatedTopic, TopicError> {
        let Some(leader) = self.forward_to()? else {
            let id = Uuid::new_v4();
            return self
                .submit(validate_only, |_, image| {
                    topics::create_topic(image, &topic, &self.config, id)
                })
                .await;
        };
        let request = CreateTopicsRequest::default()
            .with_validate_only(validate_only)
            .with_timeout_ms(FORWARDED_APPLY_TIMEOUT.as_millis() as i32)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(topic.name.clone().into()))
                .with_num_partitions(if topic.assignments.is_empty() {
                    topic.partitions
                } else {
                    -1
                })
                .with_replication_factor(if topic.assignments.is_empty() {
                    topic.replication_factor
                } else {
                    -1
                })
                .with_assignments(
                    topic
                        .assignments
                        .iter()
                        .enumerate()
                        .map(|(i, replicas)| {
                            CreatableReplicaAssignment::default()
                                .with_partition_index(i as i32)
                                .with_broker_ids(
                                    replicas
                                        .iter()
                                        .map(|b| protocol::messages::BrokerId(b.0))
                                        .collect(),
                                )
                        })
                        .collect(),
                )
                .with_configs(
                    topic
                        .configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(k.clone().into())
                                .with_value(Some(v.clone().into()))
                        })
                        .collect(),
                )]);
        let response: CreateTopicsResponse = self
            .channel
            .call(leader, ApiKey::CreateTopics, 7, &request)
            .await
            .map_err(Self::forward_failed)?;
        let result = single_result(response.topics, |r| {
            (r.error_code, r.error_message.as_ref())
        })?;
        if !validate_only {
            let id = result.topic_id;
            self.await_image(|image| image.topic_by_id(id).is_some())
                .await?;
        }
        Ok(CreatedTopic {
            id: result.topic_id,
            partitions: result.num_partitions,
            replication_factor: result.replication_factor,
        })
    }

    /// Deletes a topic; answers its id.
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, TopicError> {
        let Some(leader) = self.forward_to()? else {
            return self
                .submit(false, |_, image| topics::delete_topic(image, name))
                .await;
        };
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(FORWARDED_APPLY_TIMEOUT.as_millis() as i32)
            .with_topic_names(vec![TopicName(name.to_string().into())]);
        let response: DeleteTopicsResponse = self
            .channel
            .call(leader, ApiKey::DeleteTopics, 5, &request)
            .await
            .map_err(Self::forward_failed)?;
        let result = single_result(response.responses, |r| {
            (r.error_code, r.error_message.as_ref())
        })?;
        let id = self
            .metadata
            .image()
            .topic(name)
            .map(|t| t.id)
            .unwrap_or(result.topic_id);
        self.await_image(|image| image.topic(name).is_none_or(|t| t.id != id))
            .await?;
        Ok(id)
    }

    pub async fn create_partitions(
        &self,
        name: &str,
        total: i32,
        assignments: Vec<Vec<BrokerId>>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let Some(leader) = self.forward_to()? else {
            return self
                .submit(validate_only, |_, image| {
                    Ok((
                        topics::create_partitions(image, name, total, &assignments)?,
                        (),
                    ))
                })
                .await;
        };
        let request = CreatePartitionsRequest::default()
            .with_validate_only(validate_only)
            .with_timeout_ms(FORWARDED_APPLY_TIMEOUT.as_millis() as i32)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(TopicName(name.to_string().into()))
                .with_count(total)
                .with_assignments((!assignments.is_empty()).then(|| {
                    assignments
                        .iter()
                        .map(|r| {
                            CreatePartitionsAssignment::default().with_broker_ids(
                                r.iter()
                                    .map(|b| protocol::messages::BrokerId(b.0))
                                    .collect(),
                            )
                        })
                        .collect()
                }))]);
        let response: CreatePartitionsResponse = self
            .channel
            .call(leader, ApiKey::CreatePartitions, 3, &request)
            .await
            .map_err(Self::forward_failed)?;
        single_result(response.results, |r| {
            (r.error_code, r.error_message.as_ref())
        })?;
        if !validate_only {
            self.await_image(|image| {
                image
                    .topic(name)
                    .is_some_and(|t| t.partitions.len() as i32 >= total)
            })
            .await?;
        }
        Ok(())
    }

    /// Changes topic `name`'s config overrides (IncrementalAlterConfigs),
    /// unless `validate_only`; answers once the change is applied here.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<ConfigChange>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let Some(leader) = self.forward_to()? else {
            return self
                .submit(validate_only, |_, image| {
                    let (records, _) = topics::alter_topic_configs(image, name, &changes)?;
                    Ok((records, ()))
                })
                .await;
        };
        self.forward_config_changes(
            leader,
            CONFIG_RESOURCE_TOPIC,
            name.to_string(),
            &changes,
            validate_only,
        )
        .await?;
        if !validate_only {
            self.await_image(|image| {
                image
                    .topic(name)
                    .is_some_and(|t| changes.iter().all(|c| c.is_applied(&t.configs)))
            })
            .await?;
        }
        Ok(())
    }

    /// Changes the dynamic broker configs of `scope` (a broker, or `None`
    /// for the cluster-wide default), unless `validate_only`; answers once
    /// the change is applied here.
    pub async fn alter_broker_configs(
        &self,
        scope: Option<BrokerId>,
        changes: Vec<ConfigChange>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let Some(leader) = self.forward_to()? else {
            return self
                .submit(validate_only, |_, image| {
                    Ok((topics::alter_broker_configs(image, scope, &changes)?, ()))
                })
                .await;
        };
        self.forward_config_changes(
            leader,
            CONFIG_RESOURCE_BROKER,
            scope.map_or(String::new(), |b| b.0.to_string()),
            &changes,
            validate_only,
        )
        .await?;
        if !validate_only {
            self.await_image(|image| {
                let configs = image.broker_configs(scope);
                changes.iter().all(|c| c.is_applied(configs))
            })
            .await?;
        }
        Ok(())
    }

    /// Sends config `changes` of one resource to the active controller
    /// `leader` (IncrementalAlterConfigs) and answers its verdict.
    async fn forward_config_changes(
        &self,
        leader: i32,
        resource_type: i8,
        resource_name: String,
        changes: &[ConfigChange],
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let request = IncrementalAlterConfigsRequest::default()
            .with_validate_only(validate_only)
            .with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(resource_name.into())
                .with_configs(changes.iter().map(alterable_config).collect())]);
        let response: IncrementalAlterConfigsResponse = self
            .channel
            .call(leader, ApiKey::IncrementalAlterConfigs, 1, &request)
            .await
            .map_err(Self::forward_failed)?;
        single_result(response.responses, |r| {
            (r.error_code, r.error_message.as_ref())
        })?;
        Ok(())
    }

    /// BrokerRegistration: answers the broker epoch.
    pub async fn register(&self, registration: Registration) -> Result<i64, ErrorCode> {
        match self.forward_to() {
            Ok(None) => {}
            Ok(Some(leader)) => {
                let request = service::registration_request(&registration);
                let response: BrokerRegistrationResponse = self
                    .channel
                    .call(leader, ApiKey::BrokerRegistration, 0, &request)
                    .await
                    .map_err(|_| ErrorCode::NOT_CONTROLLER)?;
                return match response.error_code {
                    0 => Ok(response.broker_epoch),
                    code => Err(ErrorCode(code)),
                };
            }
            Err(e) => return Err(e.code),
        }
        let id = registration.id;
        let learner = registration
            .endpoints
            .iter()
            .find(|e| e.name == CONTROLLER_LISTENER_NAME)
            .filter(|_| !self.config.voters.contains_key(&id.0))
            .and_then(|e| format!("{}:{}", e.host, e.port).parse::<SocketAddr>().ok());
        self.ensure_active()?;
        self.submit(false, |membership, image| {
            let records = membership
                .register(image, &registration, crate::now_ms())
                .map_err(|code| TopicError::new(code, format!("broker {id} cannot register")))?;
            Ok((records, ()))
        })
        .await
        .map_err(|e| e.code)?;
        if let Some(addr) = learner {
            // A broker-only node receives the metadata log as a learner.
            if let Err(e) = self.quorum.add_learner(id.0, addr).await {
                tracing::warn!(broker = %id, error = %e, "cannot add the broker as a learner of the metadata log");
            }
        }
        self.metadata
            .image()
            .broker(id)
            .map(|b| b.epoch)
            .ok_or(ErrorCode::UNKNOWN_SERVER_ERROR)
    }

    /// BrokerHeartbeat.
    pub async fn heartbeat(&self, heartbeat: Heartbeat) -> Result<HeartbeatReply, ErrorCode> {
        match self.forward_to() {
            Ok(None) => {}
            Ok(Some(leader)) => {
                let request = BrokerHeartbeatRequest::default()
                    .with_broker_id(protocol::messages::BrokerId(heartbeat.id.0))
                    .with_broker_epoch(heartbeat.broker_epoch)
                    .with_current_metadata_offset(heartbeat.current_metadata_offset)
                    .with_want_fence(heartbeat.want_fence)
                    .with_want_shut_down(heartbeat.want_shutdown);
                // A controller that stopped answering (paused, cut off) must
                // not hold the heartbeat past the session the next controller
                // grants: the next heartbeat goes to whoever leads by then.
                let timeout = Duration::from_millis(
                    (self.config.session_timeout_ms / 2).clamp(500, 10_000) as u64,
                );
                let response: BrokerHeartbeatResponse = self
                    .channel
                    .call_within(leader, ApiKey::BrokerHeartbeat, 0, &request, timeout)
                    .await
                    .map_err(|_| ErrorCode::NOT_CONTROLLER)?;
                return match response.error_code {
                    0 => Ok(HeartbeatReply {
                        is_caught_up: response.is_caught_up,
                        is_fenced: response.is_fenced,
                        should_shut_down: response.should_shut_down,
                    }),
                    code => Err(ErrorCode(code)),
                };
            }
            Err(e) => return Err(e.code),
        }
        self.ensure_active()?;
        self.submit(false, |membership, image| {
            membership
                .heartbeat(image, &heartbeat, crate::now_ms())
                .map_err(|code| TopicError::new(code, "heartbeat refused"))
        })
        .await
        .map_err(|e| e.code)
    }

    /// UnregisterBroker: the broker's leaderships move away and it leaves
    /// the cluster's metadata (a broker-only node also leaves the quorum's learners).
    pub async fn unregister(&self, id: BrokerId) -> Result<(), ErrorCode> {
        match self.forward_to() {
            Ok(None) => {}
            Ok(Some(leader)) => {
                let request = protocol::messages::UnregisterBrokerRequest::default()
                    .with_broker_id(protocol::messages::BrokerId(id.0));
                let response: protocol::messages::UnregisterBrokerResponse = self
                    .channel
                    .call(leader, ApiKey::UnregisterBroker, 0, &request)
                    .await
                    .map_err(|_| ErrorCode::NOT_CONTROLLER)?;
                return match response.error_code {
                    0 => Ok(()),
                    code => Err(ErrorCode(code)),
                };
            }
            Err(e) => return Err(e.code),
        }
        self.submit(false, |membership, image| {
            let records = membership.unregister(image, id).map_err(|code| {
                TopicError::new(code, format!("broker {id} cannot be unregistered"))
            })?;
            Ok((records, ()))
        })
        .await
        .map_err(|e| e.code)?;
        if !self.config.voters.contains_key(&id.0) {
            if let Err(e) = self.quorum.remove_learner(id.0).await {
                tracing::debug!(broker = %id, error = %e, "not removed from the metadata log's learners");
            }
        }
        Ok(())
    }

    /// ElectLeaders: preferred elections move each named partition's
    /// leadership back to its first replica when that replica is live and in
    /// the ISR (all partitions when none are named). Unclean elections give
    /// a leaderless partition whose ISR is all gone its first live replica,
    /// whatever the topic's `unclean.leader.election.enable` says.
    pub async fn elect_leaders(
        &self,
        request: protocol::messages::ElectLeadersRequest,
        version: i16,
    ) -> Result<protocol::messages::ElectLeadersResponse, ErrorCode> {
        use protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
        match self.forward_to() {
            Ok(None) => {}
            Ok(Some(leader)) => {
                return self
                    .channel
                    .call(leader, ApiKey::ElectLeaders, version, &request)
                    .await
                    .map_err(|_| ErrorCode::NOT_CONTROLLER);
            }
            Err(e) => return Err(e.code),
        }
        const PREFERRED: i8 = 0;
        let wanted: Option<Vec<(String, i32)>> = request.topic_partitions.as_ref().map(|topics| {
            topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
                .collect()
        });
        let before = self.metadata.image();
        let only = wanted.clone();
        self.submit(false, |membership, image| {
            let records = if request.election_type == PREFERRED {
                membership.preferred_leader_elections(image, only.as_deref())
            } else {
                membership.unclean_elections(image, only.as_deref(), true)
            };
            Ok((records, ()))
        })
        .await
        .map_err(|e| e.code)?;
        let after = self.metadata.image();
        let named = wanted.unwrap_or_else(|| {
            after
                .topics()
                .flat_map(|t| (0..t.partitions.len() as i32).map(|p| (t.name.clone(), p)))
                .collect()
        });
        let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
        for (topic, partition) in named {
            let now = after.topic(&topic).and_then(|t| t.partition(partition));
            let was = before.topic(&topic).and_then(|t| t.partition(partition));
            let (code, message) = match (now, was) {
                (None, _) => (ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, "no such partition"),
                (Some(now), Some(was)) if request.election_type != PREFERRED => {
                    if !was.leader.is_none() {
                        (ErrorCode::ELECTION_NOT_NEEDED, "the partition has a leader")
                    } else if !now.leader.is_none() {
                        (ErrorCode::NONE, "")
                    } else {
                        (
                            ErrorCode::ELIGIBLE_LEADERS_NOT_AVAILABLE,
                            "no replica of the partition is live",
                        )
                    }
                }
                _ if request.election_type != PREFERRED => (
                    ErrorCode::ELIGIBLE_LEADERS_NOT_AVAILABLE,
                    "no replica of the partition is live",
                ),
                (Some(now), Some(was))
                    if now.leader == now.replicas[0] && was.leader != now.leader =>
                {
                    (ErrorCode::NONE, "")
                }
                (Some(now), _) if now.leader == now.replicas[0] => (
                    ErrorCode::ELECTION_NOT_NEEDED,
                    "the preferred replica leads already",
                ),
                _ => (
                    ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE,
                    "the preferred replica is not live or not in sync",
                ),
            };
            by_topic.entry(topic).or_default().push(
                PartitionResult::default()
                    .with_partition_id(partition)
                    .with_error_code(code.code())
                    .with_error_message((!message.is_empty()).then(|| message.into())),
            );
        }
        Ok(
            protocol::messages::ElectLeadersResponse::default().with_replica_election_results(
                by_topic
                    .into_iter()
                    .map(|(topic, results)| {
                        ReplicaElectionResult::default()
                            .with_topic(TopicName(topic.into()))
                            .with_partition_result(results)
                    })
                    .collect(),
            ),
        )
    }

    /// AllocateProducerIds: a block of producer ids for `broker`, committed
    /// before it is answered; `(first id, count)`.
    pub async fn allocate_producer_ids(
        &self,
        broker: BrokerId,
        broker_epoch: i64,
    ) -> Result<(i64, i32), ErrorCode> {
        match self.forward_to() {
            Ok(None) => {}
            Ok(Some(leader)) => {
                let request = protocol::messages::AllocateProducerIdsRequest::default()
                    .with_broker_id(protocol::messages::BrokerId(broker.0))
                    .with_broker_epoch(broker_epoch);
                let response: protocol::messages::AllocateProducerIdsResponse = self
                    .channel
                    .call(leader, ApiKey::AllocateProducerIds, 0, &request)
                    .await
                    .map_err(|_| ErrorCode::NOT_CONTROLLER)?;
                return match response.error_code {
                    0 => Ok((response.producer_id_start.0, response.producer_id_len)),
                    code => Err(ErrorCode(code)),
                };
            }
            Err(e) => return Err(e.code),
        }
        let block = crate::producer_ids::PRODUCER_ID_BLOCK_SIZE;
        self.submit(false, |_, image| {
            match image.broker(broker) {
                None => {
                    return Err(TopicError::new(
                        ErrorCode::BROKER_ID_NOT_REGISTERED,
                        "unknown broker",
                    ))
                }
                Some(b) if b.epoch != broker_epoch => {
                    return Err(TopicError::new(
                        ErrorCode::STALE_BROKER_EPOCH,
                        "stale broker epoch",
                    ))
                }
                Some(_) => {}
            }
            let start = image.next_producer_id();
            let record = MetadataRecord::ProducerIds {
                broker,
                next_producer_id: start + block,
            };
            Ok((vec![record], (start, block as i32)))
        })
        .await
        .map_err(|e| e.code)
    }

    /// AlterPartition: a leader's ISR proposals, committed if still current
    /// (see [`isr`]); answered once committed.
    pub async fn alter_partition(
        &self,
        request: protocol::messages::AlterPartitionRequest,
    ) -> Result<protocol::messages::AlterPartitionResponse, ErrorCode> {
        match self.forward_to() {
            Ok(None) => {}
            Ok(Some(leader)) => {
                return self
                    .channel
                    .call(leader, ApiKey::AlterPartition, 3, &request)
                    .await
                    .map_err(|_| ErrorCode::NOT_CONTROLLER);
            }
            Err(e) => return Err(e.code),
        }
        self.submit(false, |membership, image| {
            let (mut records, response) =
                isr::alter_partition(image, &membership.shutting_down(), &request);
            // A reassignment completes once all its target replicas are in sync.
            let after = membership::scratch_apply(image, &records);
            records.extend(reassign::completions(&after));
            Ok((records, response))
        })
        .await
        .map_err(|e| e.code)
    }

    /// AlterPartitionReassignments: starts or cancels each named
    /// partition's reassignment (see [`reassign`]); one decision per request.
    pub async fn alter_partition_reassignments(
        &self,
        request: protocol::messages::AlterPartitionReassignmentsRequest,
        version: i16,
    ) -> Result<protocol::messages::AlterPartitionReassignmentsResponse, ErrorCode> {
        use protocol::messages::alter_partition_reassignments_response::{
            ReassignablePartitionResponse, ReassignableTopicResponse,
        };
        match self.forward_to() {
            Ok(None) => {}
            Ok(Some(leader)) => {
                return self
                    .channel
                    .call(
                        leader,
                        ApiKey::AlterPartitionReassignments,
                        version,
                        &request,
                    )
                    .await
                    .map_err(|_| ErrorCode::NOT_CONTROLLER);
            }
            Err(e) => return Err(e.code),
        }
        let responses = self
            .submit(false, |_, image| {
                let mut records = Vec::new();
                let mut scratch = image.clone();
                let mut responses = Vec::new();
                for topic in &request.topics {
                    let mut partitions = Vec::new();
                    for p in &topic.partitions {
                        let target = p
                            .replicas
                            .as_ref()
                            .map(|r| r.iter().map(|b| BrokerId(b.0)).collect());
                        let answer = ReassignablePartitionResponse::default()
                            .with_partition_index(p.partition_index);
                        match reassign::alter(
                            &scratch,
                            topic.name.0.as_str(),
                            p.partition_index,
                            &target,
                        ) {
                            Ok(decided) => {
                                scratch = membership::scratch_apply(&scratch, &decided);
                                records.extend(decided);
                                partitions.push(answer);
                            }
                            Err((code, message)) => partitions.push(
                                answer
                                    .with_error_code(code.code())
                                    .with_error_message(Some(message.into())),
                            ),
                        }
                    }
                    responses.push(
                        ReassignableTopicResponse::default()
                            .with_name(topic.name.clone())
                            .with_partitions(partitions),
                    );
                }
                Ok((records, responses))
            })
            .await
            .map_err(|e| e.code)?;
        Ok(
            protocol::messages::AlterPartitionReassignmentsResponse::default()
                .with_allow_replication_factor_change(request.allow_replication_factor_change)
                .with_responses(responses),
        )
    }

    /// DescribeQuorum, asked of the active controller.
    pub async fn describe_quorum(
        &self,
        version: i16,
    ) -> Result<protocol::messages::DescribeQuorumResponse, ErrorCode> {
        match self.forward_to() {
            Ok(None) => Ok(crate::handlers::cluster::describe(&self.quorum)),
            Ok(Some(leader)) => self
                .channel
                .call(
                    leader,
                    ApiKey::DescribeQuorum,
                    version,
                    &protocol::messages::DescribeQuorumRequest::default(),
                )
                .await
                .map_err(|_| ErrorCode::NOT_CONTROLLER),
            Err(e) => Err(e.code),
        }
    }

    fn ensure_active(&self) -> Result<(), ErrorCode> {
        if self.active.load(std::sync::atomic::Ordering::Acquire) {
            Ok(())
        } else {
            Err(ErrorCode::NOT_CONTROLLER)
        }
    }

    /// The active controller's timer: on becoming active, every registered
    /// broker gets a full session; then brokers silent past
    /// `broker.session.timeout.ms` are fenced and their leaderships move.
    pub async fn run_sessions(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(SESSION_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut active = false;
        let mut next_rebalance = self
            .config
            .leader_rebalance_interval
            .map(|every| tokio::time::Instant::now() + every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let leads = self.quorum.is_leader();
            if !leads {
                active = false;
                self.active
                    .store(false, std::sync::atomic::Ordering::Release);
                continue;
            }
            if !active {
                // Everything the previous controller committed is applied
                // once an entry of ours is: then start the sessions.
                if self.commit(Vec::new()).await.is_err() {
                    continue;
                }
                let mut membership = self.deciding.lock().await;
                membership.reset(&self.metadata.image(), crate::now_ms());
                self.active
                    .store(true, std::sync::atomic::Ordering::Release);
                active = true;
                tracing::info!(
                    node = self.quorum.node_id(),
                    "this node is the active controller"
                );
                continue;
            }
            let expired = self
                .submit(false, |membership, image| {
                    Ok((membership.expire(image, crate::now_ms()), ()))
                })
                .await;
            if let Err(e) = expired {
                tracing::debug!(error = %e.message, "session check not committed");
            }
            if let (Some(at), Some(every)) = (next_rebalance, self.config.leader_rebalance_interval)
            {
                if tokio::time::Instant::now() >= at {
                    next_rebalance = Some(at + every);
                    // auto.leader.rebalance.enable: leaderships go back to preferred replicas.
                    let moved = self
                        .submit(false, |membership, image| {
                            let records = membership.preferred_leader_elections(image, None);
                            let count = records.len();
                            Ok((records, count))
                        })
                        .await;
                    if let Ok(count) = moved {
                        if count > 0 {
                            tracing::info!(
                                partitions = count,
                                "moved leaderships back to preferred replicas"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The one result a forwarded single-topic request got back, or its error.
/// A config change as IncrementalAlterConfigs carries it, for forwarding.
fn alterable_config(change: &ConfigChange) -> AlterableConfig {
    let (operation, value) = match change {
        ConfigChange::Set { value, .. } => (CONFIG_OPERATION_SET, Some(value)),
        ConfigChange::Delete { .. } => (CONFIG_OPERATION_DELETE, None),
        ConfigChange::Append { value, .. } => (CONFIG_OPERATION_APPEND, Some(value)),
        ConfigChange::Subtract { value, .. } => (CONFIG_OPERATION_SUBTRACT, Some(value)),
    };
    AlterableConfig::default()
        .with_name(change.key().to_string().into())
        .with_config_operation(operation)
        .with_value(value.map(|v| v.clone().into()))
}

fn single_result<R>(
    results: Vec<R>,
    error: impl Fn(&R) -> (i16, Option<&protocol::StrBytes>),
) -> Result<R, TopicError> {
    let result = results.into_iter().next().ok_or_else(|| {
        TopicError::new(
            ErrorCode::UNKNOWN_SERVER_ERROR,
            "the controller answered no result",
        )
    })?;
    match error(&result) {
        (0, _) => Ok(result),
        (code, message) => Err(TopicError::new(
            ErrorCode(code),
            message.map(|m| m.to_string()).unwrap_or_default(),
        )),
    }
}

fn not_controller(leader: Option<i32>) -> TopicError {
    TopicError::new(
        ErrorCode::NOT_CONTROLLER,
        match leader {
            Some(id) => format!("this node is not the active controller; {id} is"),
            None => "no active controller yet".to_string(),
        },
    )
}
