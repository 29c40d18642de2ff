//! The controller's decisions on brokers: registration, heartbeats, fencing
//! of silent brokers, unfencing of caught-up ones, controlled shutdown,
//! unregistration, and leader elections (of leaderless partitions and of
//! preferred leaders). No I/O: the current image and the time in
//! milliseconds in, the records to commit and the replies out. Incarnation
//! ids come from the broker, so every decision is a function of its
//! arguments.
//!
//! What only the active controller knows (when each broker was last heard
//! from, which asked to shut down) lives in [`Membership`], in memory; a new
//! active controller starts from [`Membership::reset`], giving every broker a
//! full session. Everything else is read from the image.
//!
//! The rules follow Kafka's KRaft controller (`ClusterControlManager`,
//! `BrokerHeartbeatManager`, `ReplicationControlManager`); comments name the
//! places where this one differs.

use std::collections::{BTreeMap, BTreeSet};

use protocol::ErrorCode;
use uuid::Uuid;

use crate::ids::BrokerId;
use crate::metadata::{Endpoint, MetadataImage, MetadataRecord, PartitionRegistration};

/// Membership settings (Kafka's names in the docs).
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// `broker.session.timeout.ms`: a broker silent for longer is fenced
    /// (Kafka's default is 9000).
    pub session_timeout_ms: i64,
}

/// A BrokerRegistration request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub id: BrokerId,
    /// Random per process start: tells a restart from a retried registration.
    pub incarnation: Uuid,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
}

/// A BrokerHeartbeat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub id: BrokerId,
    /// The epoch the broker's registration was answered with.
    pub broker_epoch: i64,
    /// The offset of the last metadata record the broker has applied.
    pub current_metadata_offset: i64,
    /// The broker asks to be (or stay) fenced, e.g. while it is not ready to serve.
    pub want_fence: bool,
    /// The broker asks for a controlled shutdown.
    pub want_shutdown: bool,
}

/// The BrokerHeartbeat response, as of the records decided with it being applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The broker has applied the metadata log up to its own registration.
    pub is_caught_up: bool,
    pub is_fenced: bool,
    /// The controlled shutdown is over: the broker leads nothing and may stop.
    pub should_shut_down: bool,
}

/// What the active controller knows of one broker beyond the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Session {
    /// The last registration or heartbeat (or the controller's activation).
    last_contact_ms: i64,
    /// The broker asked for a controlled shutdown; it may no longer be
    /// elected leader, and stays so until it registers again.
    shutting_down: bool,
}

/// The active controller's view of broker sessions, and its decisions on them.
#[derive(Debug, Clone)]
pub struct Membership {
    config: MembershipConfig,
    sessions: BTreeMap<BrokerId, Session>,
}

impl Membership {
    pub fn new(config: MembershipConfig) -> Membership {
        assert!(
            config.session_timeout_ms > 0,
            "broker.session.timeout.ms must be positive, not {}",
            config.session_timeout_ms
        );
        Membership {
            config,
            sessions: BTreeMap::new(),
        }
    }

    /// A new active controller: every registered broker gets a full session
    /// from `now_ms` before it can be fenced, and nobody is shutting down
    /// until it says so again in a heartbeat.
    pub fn reset(&mut self, image: &MetadataImage, now_ms: i64) {
        self.sessions = image
            .brokers()
            .map(|b| {
                (
                    b.id,
                    Session {
                        last_contact_ms: now_ms,
                        shutting_down: false,
                    },
                )
            })
            .collect();
    }

    /// BrokerRegistration. A new broker, or a new incarnation of one whose
    /// session has expired, gets a `RegisterBroker { fenced: true }` record:
    /// its broker epoch is the offset at which that record is committed. A
    /// retry (the registered incarnation again) needs no record. Either way,
    /// once the records (if any) are applied, answer the broker's epoch from
    /// the image. Another incarnation while the registered one's session is
    /// live is refused with `DUPLICATE_BROKER_REGISTRATION`, as in Kafka: two
    /// processes must not share an id.
    pub fn register(
        &mut self,
        image: &MetadataImage,
        registration: &Registration,
        now_ms: i64,
    ) -> Result<Vec<MetadataRecord>, ErrorCode> {
        let id = registration.id;
        if id.is_none() {
            return Err(ErrorCode::INVALID_REQUEST);
        }
        if let Some(existing) = image.broker(id) {
            if existing.incarnation == registration.incarnation {
                // A retry whose answer was lost: the same process, same epoch.
                self.touch(id, now_ms);
                return Ok(Vec::new());
            }
            if self.session_is_live(id, now_ms) {
                return Err(ErrorCode::DUPLICATE_BROKER_REGISTRATION);
            }
        }
        let mut records = vec![MetadataRecord::RegisterBroker {
            id,
            incarnation: registration.incarnation,
            endpoints: registration.endpoints.clone(),
            rack: registration.rack.clone(),
            fenced: true,
        }];
        if image.broker(id).is_some_and(|b| !b.fenced) {
            // The old incarnation expired but the timer has not fenced it
            // yet: the fenced registration replaces it in the same batch as
            // its leaderships move, so a fenced broker never leads.
            let scratch = scratch_apply(image, &records);
            records.extend(remove_broker(&scratch, id, &self.shutting_down()));
        }
        self.sessions.insert(
            id,
            Session {
                last_contact_ms: now_ms,
                shutting_down: false,
            },
        );
        Ok(records)
    }

    /// BrokerHeartbeat. Refused with `BROKER_ID_NOT_REGISTERED` for an
    /// unknown broker and `STALE_BROKER_EPOCH` for an epoch other than its
    /// registration's. Otherwise it renews the session, then:
    /// - `want_shutdown` starts (or continues) a controlled shutdown: the
    ///   broker's leaderships move away and it leaves every ISR; once it
    ///   leads nothing it is fenced and `should_shut_down` is answered;
    /// - `want_fence` fences a live broker (its leaderships move away);
    /// - a fenced broker that has applied the log up to its registration
    ///   ("caught up") is unfenced, and the leaderless partitions it can
    ///   lead get a leader.
    pub fn heartbeat(
        &mut self,
        image: &MetadataImage,
        heartbeat: &Heartbeat,
        now_ms: i64,
    ) -> Result<(Vec<MetadataRecord>, HeartbeatReply), ErrorCode> {
        let id = heartbeat.id;
        let broker = image
            .broker(id)
            .ok_or(ErrorCode::BROKER_ID_NOT_REGISTERED)?;
        if heartbeat.broker_epoch != broker.epoch {
            return Err(ErrorCode::STALE_BROKER_EPOCH);
        }
        let session = self.touch(id, now_ms);
        session.shutting_down |= heartbeat.want_shutdown;
        let shutting_down = session.shutting_down;
        let is_caught_up = heartbeat.current_metadata_offset >= broker.epoch;
        let mut reply = HeartbeatReply {
            is_caught_up,
            is_fenced: broker.fenced,
            should_shut_down: false,
        };
        let ineligible = self.shutting_down();
        let mut records = Vec::new();
        if shutting_down {
            if broker.fenced {
                // Kafka: a fenced broker leads nothing and may stop at once.
                reply.should_shut_down = true;
            } else if leads_any(image, id) {
                records = remove_broker(image, id, &ineligible);
            } else {
                // The last leaderships moved in an earlier decision: fence
                // it (and drop it from any ISR left) so it may stop.
                records = remove_broker(image, id, &ineligible);
                records.push(MetadataRecord::FenceBroker { id });
                reply.is_fenced = true;
                reply.should_shut_down = true;
            }
        } else if heartbeat.want_fence {
            if !broker.fenced {
                records = fence(image, &[id], &ineligible);
                reply.is_fenced = true;
            }
        } else if broker.fenced && is_caught_up {
            records.push(MetadataRecord::UnfenceBroker { id });
            let scratch = scratch_apply(image, &records);
            records.extend(elect_leaderless_except(&scratch, &ineligible));
            reply.is_fenced = false;
        }
        Ok((records, reply))
    }

    /// The timer: every live broker silent for more than
    /// `session_timeout_ms` is fenced, its leaderships move away and it
    /// leaves every ISR (but stays in one it is the last member of). Brokers
    /// this controller has never seen get a full session from `now_ms`.
    pub fn expire(&mut self, image: &MetadataImage, now_ms: i64) -> Vec<MetadataRecord> {
        self.sessions.retain(|id, _| image.broker(*id).is_some());
        let mut expired = Vec::new();
        for broker in image.brokers() {
            let session = *self.sessions.entry(broker.id).or_insert(Session {
                last_contact_ms: now_ms,
                shutting_down: false,
            });
            if !broker.fenced && now_ms > session.last_contact_ms + self.config.session_timeout_ms {
                expired.push(broker.id);
            }
        }
        fence(image, &expired, &self.shutting_down())
    }

    /// UnregisterBroker: the broker's leaderships move away and it leaves
    /// every ISR (but one it is the last member of, as for fencing), then it
    /// is removed. `BROKER_ID_NOT_REGISTERED` if it is not registered.
    pub fn unregister(
        &mut self,
        image: &MetadataImage,
        id: BrokerId,
    ) -> Result<Vec<MetadataRecord>, ErrorCode> {
        if image.broker(id).is_none() {
            return Err(ErrorCode::BROKER_ID_NOT_REGISTERED);
        }
        let mut records = remove_broker(image, id, &self.shutting_down());
        records.push(MetadataRecord::UnregisterBroker { id });
        self.sessions.remove(&id);
        Ok(records)
    }

    /// The earliest time at which [`Membership::expire`] could fence a
    /// broker it knows of (fenced or not: it only fences live ones, but a
    /// session is cheap to wake up for); `None` with no broker.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.sessions
            .values()
            .map(|s| s.last_contact_ms + self.config.session_timeout_ms + 1)
            .min()
    }

    /// [`elect_leaderless`], leaving out brokers in a controlled shutdown:
    /// what the active controller runs after unfencing.
    pub fn elect_leaderless(&self, image: &MetadataImage) -> Vec<MetadataRecord> {
        elect_leaderless_except(image, &self.shutting_down())
    }

    /// [`preferred_leader_elections`], leaving out brokers in a controlled
    /// shutdown: what the active controller runs for ElectLeaders and the
    /// automatic rebalance.
    pub fn preferred_leader_elections(
        &self,
        image: &MetadataImage,
        only: Option<&[(String, i32)]>,
    ) -> Vec<MetadataRecord> {
        preferred_except(image, only, &self.shutting_down())
    }

    /// Brokers in a controlled shutdown: they may not be elected leader.
    pub fn shutting_down(&self) -> BTreeSet<BrokerId> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.shutting_down)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether `id`'s last contact is recent enough that its session holds
    /// (Kafka: `last_contact + timeout >= now`).
    fn session_is_live(&self, id: BrokerId, now_ms: i64) -> bool {
        self.sessions
            .get(&id)
            .is_some_and(|s| s.last_contact_ms + self.config.session_timeout_ms >= now_ms)
    }

    fn touch(&mut self, id: BrokerId, now_ms: i64) -> &mut Session {
        let session = self.sessions.entry(id).or_insert(Session {
            last_contact_ms: now_ms,
            shutting_down: false,
        });
        // Requests may be handled out of order; contact time never goes back.
        session.last_contact_ms = session.last_contact_ms.max(now_ms);
        session
    }
}

/// Records that fence `brokers` together: first every `FenceBroker`, so
/// that none of them is chosen to lead a partition another one gives up,
/// then each one's leaderships move away.
fn fence(
    image: &MetadataImage,
    brokers: &[BrokerId],
    ineligible: &BTreeSet<BrokerId>,
) -> Vec<MetadataRecord> {
    let mut records: Vec<MetadataRecord> = brokers
        .iter()
        .map(|id| MetadataRecord::FenceBroker { id: *id })
        .collect();
    let mut scratch = scratch_apply(image, &records);
    for id in brokers {
        let moves = remove_broker(&scratch, *id, ineligible);
        scratch = scratch_apply(&scratch, &moves);
        records.extend(moves);
    }
    records
}

/// `image` with `records` applied, for the next step of a decision whose
/// records are committed as one batch. The offsets are placeholders: no
/// decision reads the broker epochs of records it has just made.
fn scratch_apply(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
    if records.is_empty() {
        return image.clone();
    }
    let (next, errors) = image.apply(image.offset().next(), records);
    assert!(
        errors.is_empty(),
        "the controller decided records that do not fit its image: {errors:?}"
    );
    next
}

fn leads_any(image: &MetadataImage, broker: BrokerId) -> bool {
    image
        .topics()
        .any(|t| t.partitions.iter().any(|p| p.leader == broker))
}

/// Whether `broker` may be elected: registered, not fenced, not ineligible.
fn may_lead(image: &MetadataImage, broker: BrokerId, ineligible: &BTreeSet<BrokerId>) -> bool {
    !ineligible.contains(&broker) && image.broker(broker).is_some_and(|b| !b.fenced)
}

/// The first replica, in replica order, that is in `isr` and may lead.
fn first_eligible(
    image: &MetadataImage,
    partition: &PartitionRegistration,
    isr: &[BrokerId],
    ineligible: &BTreeSet<BrokerId>,
) -> BrokerId {
    partition
        .replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && may_lead(image, *r, ineligible))
        .unwrap_or(BrokerId::NONE)
}

/// PartitionChange records for every partition `broker` leads: the new
/// leader is the first replica (in replica order) that is in the ISR, live
/// (registered, not fenced) and not `broker`, or `BrokerId::NONE` when there
/// is none (only ISR members may lead: no unclean election). `broker` also
/// leaves the ISR of every partition, led or followed, as in Kafka's
/// `handleBrokerFenced`, so that `acks=all` writes stop waiting for it at
/// once; except where it is the last member: that ISR keeps it (and the
/// partition, if it led it, becomes leaderless), so the last holder of the
/// data stays the one eligible to lead again.
pub fn move_leaderships_away(image: &MetadataImage, broker: BrokerId) -> Vec<MetadataRecord> {
    remove_broker(image, broker, &BTreeSet::new())
}

fn remove_broker(
    image: &MetadataImage,
    broker: BrokerId,
    ineligible: &BTreeSet<BrokerId>,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            let in_isr = partition.isr.contains(&broker);
            if !in_isr && partition.leader != broker {
                continue;
            }
            let without: Vec<BrokerId> = partition
                .isr
                .iter()
                .copied()
                .filter(|r| *r != broker)
                .collect();
            let isr = if without.is_empty() {
                partition.isr.clone()
            } else {
                without
            };
            let leader = if partition.leader == broker {
                let mut ineligible = ineligible.clone();
                ineligible.insert(broker);
                first_eligible(image, partition, &isr, &ineligible)
            } else {
                partition.leader
            };
            assert!(
                leader.is_none() || isr.contains(&leader),
                "leader {leader} of {}-{index} is outside its ISR {isr:?}",
                topic.name
            );
            let leader_changed = leader != partition.leader;
            let isr_changed = isr != partition.isr;
            if leader_changed || isr_changed {
                records.push(MetadataRecord::PartitionChange {
                    topic_id: topic.id,
                    partition: index as i32,
                    leader: leader_changed.then_some(leader),
                    isr: isr_changed.then_some(isr),
                    replicas: None,
                });
            }
        }
    }
    records
}

/// PartitionChange records giving a leader to every partition whose leader
/// is `BrokerId::NONE`, when one of its ISR members is live: the first such
/// in replica order. For after an unfencing; on the active controller use
/// [`Membership::elect_leaderless`], which also leaves out brokers in a
/// controlled shutdown.
pub fn elect_leaderless(image: &MetadataImage) -> Vec<MetadataRecord> {
    elect_leaderless_except(image, &BTreeSet::new())
}

fn elect_leaderless_except(
    image: &MetadataImage,
    ineligible: &BTreeSet<BrokerId>,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            if !partition.leader.is_none() {
                continue;
            }
            let leader = first_eligible(image, partition, &partition.isr, ineligible);
            if !leader.is_none() {
                records.push(MetadataRecord::PartitionChange {
                    topic_id: topic.id,
                    partition: index as i32,
                    leader: Some(leader),
                    isr: None,
                    replicas: None,
                });
            }
        }
    }
    records
}

/// Preferred leader election (ElectLeaders PREFERRED, and the automatic
/// leader rebalance): every partition whose first replica (its preferred
/// leader) is live, in the ISR and not the leader gets it back as leader.
/// `only` limits it to those topic-partitions (unknown ones are skipped).
/// On the active controller use [`Membership::preferred_leader_elections`],
/// which also leaves out brokers in a controlled shutdown.
pub fn preferred_leader_elections(
    image: &MetadataImage,
    only: Option<&[(String, i32)]>,
) -> Vec<MetadataRecord> {
    preferred_except(image, only, &BTreeSet::new())
}

fn preferred_except(
    image: &MetadataImage,
    only: Option<&[(String, i32)]>,
    ineligible: &BTreeSet<BrokerId>,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            let index = index as i32;
            if only.is_some_and(|only| {
                !only
                    .iter()
                    .any(|(name, p)| *name == topic.name && *p == index)
            }) {
                continue;
            }
            let Some(&preferred) = partition.replicas.first() else {
                continue;
            };
            if preferred != partition.leader
                && partition.isr.contains(&preferred)
                && may_lead(image, preferred, ineligible)
            {
                records.push(MetadataRecord::PartitionChange {
                    topic_id: topic.id,
                    partition: index,
                    leader: Some(preferred),
                    isr: None,
                    replicas: None,
                });
            }
        }
    }
    records
}
