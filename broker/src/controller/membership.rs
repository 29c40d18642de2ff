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
    /// `unclean.leader.election.enable`, for topics that do not set it.
    pub unclean_leader_election: bool,
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
    /// This controller heard from the broker (not only assumed a session at
    /// activation). Only a heard session refuses another incarnation: a
    /// restarted lone broker that is also its own new controller must not
    /// wait a session timeout for its own old registration.
    heard: bool,
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
                        heard: false,
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
            // A fenced registration leads nothing: a new incarnation may
            // replace it at once (a restart after a controlled shutdown), as
            // Kafka holds a fenced broker to have no valid session.
            let heard = self.sessions.get(&id).is_some_and(|s| s.heard);
            if !existing.fenced && heard && self.session_is_live(id, now_ms) {
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
                heard: true,
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
            let scratch = scratch_apply(image, &records);
            records.extend(self.unclean_elections(&scratch, None, false));
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
                heard: false,
            });
            if !broker.fenced && now_ms > session.last_contact_ms + self.config.session_timeout_ms {
                expired.push(broker.id);
            }
        }
        let mut records = fence(image, &expired, &self.shutting_down());
        if !records.is_empty() {
            let scratch = scratch_apply(image, &records);
            records.extend(self.unclean_elections(&scratch, None, false));
        }
        records
    }

    /// Unclean leader elections: every leaderless partition none of whose
    /// ISR members is live gets the first live replica (in replica order,
    /// not shutting down) as leader, with an ISR of that replica alone, as
    /// Kafka does. Records acknowledged by the lost ISR may be gone: only
    /// partitions whose topic sets `unclean.leader.election.enable` (or the
    /// broker default) take part, unless `forced` (ElectLeaders UNCLEAN).
    /// `only` limits it to those topic-partitions.
    pub fn unclean_elections(
        &self,
        image: &MetadataImage,
        only: Option<&[(String, i32)]>,
        forced: bool,
    ) -> Vec<MetadataRecord> {
        let ineligible = self.shutting_down();
        let mut records = Vec::new();
        for topic in image.topics() {
            let allowed = forced
                || crate::topics::unclean_leader_election_for(
                    self.config.unclean_leader_election,
                    &topic.configs,
                );
            if !allowed {
                continue;
            }
            for (index, partition) in topic.partitions.iter().enumerate() {
                let index = index as i32;
                if !partition.leader.is_none()
                    || only.is_some_and(|only| {
                        !only
                            .iter()
                            .any(|(name, p)| *name == topic.name && *p == index)
                    })
                    || partition
                        .isr
                        .iter()
                        .any(|r| may_lead(image, *r, &ineligible))
                {
                    continue;
                }
                let Some(leader) = partition
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| may_lead(image, *r, &ineligible))
                else {
                    continue;
                };
                tracing::warn!(topic = %topic.name, partition = index, %leader, "unclean leader election: acknowledged records may be lost");
                records.push(MetadataRecord::PartitionChange {
                    topic_id: topic.id,
                    partition: index,
                    leader: Some(leader),
                    isr: Some(vec![leader]),
                    replicas: None,
                });
            }
        }
        records
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
    /// broker: the end of the earliest session of a live broker of `image`;
    /// `None` when none is live. Fenced brokers are left out, or a silent
    /// fenced broker would keep the timer due forever.
    pub fn next_deadline_ms(&self, image: &MetadataImage) -> Option<i64> {
        image
            .live_brokers()
            .filter_map(|b| self.sessions.get(&b.id))
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
            heard: true,
        });
        // Requests may be handled out of order; contact time never goes back.
        session.last_contact_ms = session.last_contact_ms.max(now_ms);
        session.heard = true;
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
pub(crate) fn scratch_apply(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
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

#[cfg(test)]
mod tests {
    //! Decisions are checked by applying their records to the image with
    //! `MetadataImage::apply`, as every broker does, and reading the result.

    use super::*;
    use crate::ids::{LeaderEpoch, PartitionEpoch};

    const SESSION_MS: i64 = 9_000;

    fn membership() -> Membership {
        Membership::new(MembershipConfig {
            session_timeout_ms: SESSION_MS,
            unclean_leader_election: false,
        })
    }

    fn incarnation(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn topic_id(name: &str) -> Uuid {
        Uuid::from_u128(name.bytes().fold(7u128, |h, b| h * 31 + b as u128))
    }

    fn ids(brokers: &[i32]) -> Vec<BrokerId> {
        brokers.iter().map(|b| BrokerId(*b)).collect()
    }

    fn registration(id: i32, incarnation_n: u128) -> Registration {
        Registration {
            id: BrokerId(id),
            incarnation: incarnation(incarnation_n),
            endpoints: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9000 + id as u16,
            }],
            rack: None,
        }
    }

    /// Builds an image through records: brokers (id, fenced), then topics
    /// whose partitions are (replicas, ISR, leader) with epochs at zero.
    struct ImageBuilder {
        records: Vec<MetadataRecord>,
    }

    impl ImageBuilder {
        fn new() -> ImageBuilder {
            ImageBuilder {
                records: Vec::new(),
            }
        }

        fn broker(mut self, id: i32, fenced: bool) -> ImageBuilder {
            let reg = registration(id, id as u128);
            self.records.push(MetadataRecord::RegisterBroker {
                id: reg.id,
                incarnation: reg.incarnation,
                endpoints: reg.endpoints,
                rack: None,
                fenced,
            });
            self
        }

        fn topic(mut self, name: &str, partitions: &[(&[i32], &[i32], i32)]) -> ImageBuilder {
            let id = topic_id(name);
            self.records.push(MetadataRecord::Topic {
                name: name.into(),
                id,
            });
            for (index, (replicas, isr, leader)) in partitions.iter().enumerate() {
                self.records.push(MetadataRecord::Partition {
                    topic_id: id,
                    partition: index as i32,
                    registration: PartitionRegistration {
                        replicas: ids(replicas),
                        isr: ids(isr),
                        leader: BrokerId(*leader),
                        leader_epoch: LeaderEpoch::INITIAL,
                        partition_epoch: PartitionEpoch::INITIAL,
                    },
                });
            }
            self
        }

        fn build(self) -> MetadataImage {
            apply(&MetadataImage::empty(), &self.records)
        }
    }

    /// Commits a decision's records as one batch after the image's offset.
    fn apply(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
        let (next, errors) = image.apply(image.offset().next(), records);
        assert!(
            errors.is_empty(),
            "records do not fit the image: {errors:?}"
        );
        next
    }

    fn partition(image: &MetadataImage, topic: &str, index: i32) -> PartitionRegistration {
        image
            .topic(topic)
            .and_then(|t| t.partition(index))
            .unwrap_or_else(|| panic!("no partition {topic}-{index}"))
            .clone()
    }

    /// (leader, ISR, leader epoch, partition epoch) of a partition.
    fn state(image: &MetadataImage, topic: &str, index: i32) -> (i32, Vec<i32>, i32, i32) {
        let p = partition(image, topic, index);
        (
            p.leader.0,
            p.isr.iter().map(|b| b.0).collect(),
            p.leader_epoch.0,
            p.partition_epoch.0,
        )
    }

    fn fenced(image: &MetadataImage, id: i32) -> bool {
        image.broker(BrokerId(id)).expect("registered").fenced
    }

    fn heartbeat(image: &MetadataImage, id: i32) -> Heartbeat {
        Heartbeat {
            id: BrokerId(id),
            broker_epoch: image.broker(BrokerId(id)).expect("registered").epoch,
            current_metadata_offset: image.offset().0,
            want_fence: false,
            want_shutdown: false,
        }
    }

    #[test]
    fn registered_broker_starts_fenced_and_is_unfenced_by_a_heartbeat_once_caught_up() {
        // Registration makes a fenced broker whose epoch is its record's offset; catching up unfences it.
        let mut m = membership();
        let image = ImageBuilder::new().broker(1, false).build();
        let records = m.register(&image, &registration(2, 20), 0).unwrap();
        let image = apply(&image, &records);
        let epoch = image.broker(BrokerId(2)).unwrap().epoch;
        assert_eq!(epoch, image.offset().0);
        assert!(fenced(&image, 2));

        let behind = Heartbeat {
            current_metadata_offset: epoch - 1,
            ..heartbeat(&image, 2)
        };
        let (records, reply) = m.heartbeat(&image, &behind, 1_000).unwrap();
        assert!(records.is_empty());
        assert_eq!(
            reply,
            HeartbeatReply {
                is_caught_up: false,
                is_fenced: true,
                should_shut_down: false
            }
        );

        let (records, reply) = m.heartbeat(&image, &heartbeat(&image, 2), 2_000).unwrap();
        assert_eq!(
            records,
            vec![MetadataRecord::UnfenceBroker { id: BrokerId(2) }]
        );
        assert!(reply.is_caught_up && !reply.is_fenced && !reply.should_shut_down);
        assert!(!fenced(&apply(&image, &records), 2));
    }

    #[test]
    fn a_caught_up_broker_that_wants_to_stay_fenced_is_not_unfenced() {
        // want_fence keeps a caught-up fenced broker fenced, and fences a live one.
        let mut m = membership();
        let image = ImageBuilder::new()
            .broker(1, true)
            .broker(2, false)
            .topic("t", &[(&[2, 1], &[2], 2)])
            .build();
        m.reset(&image, 0);
        let wants_fence = Heartbeat {
            want_fence: true,
            ..heartbeat(&image, 1)
        };
        let (records, reply) = m.heartbeat(&image, &wants_fence, 1).unwrap();
        assert!(records.is_empty() && reply.is_fenced && reply.is_caught_up);

        let wants_fence = Heartbeat {
            want_fence: true,
            ..heartbeat(&image, 2)
        };
        let (records, reply) = m.heartbeat(&image, &wants_fence, 1).unwrap();
        assert!(reply.is_fenced);
        let image = apply(&image, &records);
        assert!(fenced(&image, 2));
        assert_eq!(state(&image, "t", 0), (-1, vec![2], 1, 1));
    }

    #[test]
    fn a_broker_silent_past_the_session_timeout_is_fenced_and_its_partitions_get_new_leaders_from_the_isr(
    ) {
        // Expiry fences the silent broker, elects the first live ISR replica, bumps each epoch by one.
        let mut m = membership();
        let image = ImageBuilder::new()
            .broker(1, false)
            .broker(2, false)
            .broker(3, false)
            .topic(
                "t",
                &[
                    (&[1, 2, 3], &[1, 2, 3], 1), // led by 1: 2 takes over
                    (&[1, 3, 2], &[1, 2], 1),    // 3 is not in sync: 2 takes over
                    (&[3, 1, 2], &[3, 1, 2], 3), // followed by 1: it leaves the ISR
                    (&[2, 3], &[2, 3], 2),       // not a replica: untouched
                ],
            )
            .build();
        m.reset(&image, 0);
        for id in [2, 3] {
            let (records, _) = m.heartbeat(&image, &heartbeat(&image, id), 5_000).unwrap();
            assert!(records.is_empty());
        }
        assert_eq!(m.next_deadline_ms(&image), Some(SESSION_MS + 1));
        assert!(
            m.expire(&image, SESSION_MS).is_empty(),
            "the session still holds"
        );

        let records = m.expire(&image, SESSION_MS + 1);
        assert_eq!(records[0], MetadataRecord::FenceBroker { id: BrokerId(1) });
        let image = apply(&image, &records);
        assert!(fenced(&image, 1) && !fenced(&image, 2) && !fenced(&image, 3));
        assert_eq!(state(&image, "t", 0), (2, vec![2, 3], 1, 1));
        assert_eq!(state(&image, "t", 1), (2, vec![2], 1, 1));
        assert_eq!(state(&image, "t", 2), (3, vec![3, 2], 0, 1));
        assert_eq!(state(&image, "t", 3), (2, vec![2, 3], 0, 0));
        assert!(
            m.expire(&image, SESSION_MS + 1).is_empty(),
            "a fenced broker is not fenced again"
        );
        // Nor does it keep the timer due: the next deadline is a live broker's.
        assert_eq!(m.next_deadline_ms(&image), Some(5_000 + SESSION_MS + 1));
    }

    #[test]
    fn a_partition_whose_only_isr_member_is_fenced_becomes_leaderless_keeps_it_in_the_isr_and_gets_it_back_when_it_returns(
    ) {
        // The last ISR member stays in the ISR when fenced, and leads again once unfenced.
        let mut m = membership();
        let image = ImageBuilder::new()
            .broker(1, false)
            .broker(2, false)
            .topic("t", &[(&[1, 2], &[1], 1)])
            .build();
        m.reset(&image, 0);
        m.heartbeat(&image, &heartbeat(&image, 2), SESSION_MS)
            .unwrap();
        let image = apply(&image, &m.expire(&image, SESSION_MS + 1));
        assert!(fenced(&image, 1));
        assert_eq!(state(&image, "t", 0), (-1, vec![1], 1, 1));
        assert!(
            elect_leaderless(&image).is_empty(),
            "2 is live but out of sync: no unclean election"
        );

        let (records, reply) = m
            .heartbeat(&image, &heartbeat(&image, 1), SESSION_MS + 2)
            .unwrap();
        assert!(!reply.is_fenced);
        let image = apply(&image, &records);
        assert!(!fenced(&image, 1));
        assert_eq!(state(&image, "t", 0), (1, vec![1], 2, 2));
    }

    #[test]
    fn brokers_fenced_together_do_not_inherit_each_others_partitions() {
        // Two brokers expiring at once: neither is chosen to lead what the other gives up.
        let mut m = membership();
        let image = ImageBuilder::new()
            .broker(1, false)
            .broker(2, false)
            .broker(3, false)
            .topic("t", &[(&[1, 2, 3], &[1, 2, 3], 1), (&[2, 1], &[2, 1], 2)])
            .build();
        m.reset(&image, 0);
        m.heartbeat(&image, &heartbeat(&image, 3), SESSION_MS)
            .unwrap();
        let image = apply(&image, &m.expire(&image, SESSION_MS + 1));
        assert!(fenced(&image, 1) && fenced(&image, 2));
        assert_eq!(state(&image, "t", 0), (3, vec![3], 1, 2));
        // 1 leaves the ISR (2 remains), then 2 is its last member and stays.
        assert_eq!(state(&image, "t", 1), (-1, vec![2], 1, 2));
    }

    #[test]
    fn a_stale_broker_epoch_or_an_unknown_broker_is_refused() {
        // Heartbeats must name the current registration of a registered broker.
        let mut m = membership();
        let image = ImageBuilder::new().broker(1, false).build();
        m.reset(&image, 0);
        let stale = Heartbeat {
            broker_epoch: heartbeat(&image, 1).broker_epoch - 1,
            ..heartbeat(&image, 1)
        };
        assert_eq!(
            m.heartbeat(&image, &stale, 1),
            Err(ErrorCode::STALE_BROKER_EPOCH)
        );
        let unknown = Heartbeat {
            id: BrokerId(7),
            ..heartbeat(&image, 1)
        };
        assert_eq!(
            m.heartbeat(&image, &unknown, 1),
            Err(ErrorCode::BROKER_ID_NOT_REGISTERED)
        );
        assert_eq!(
            m.unregister(&image, BrokerId(7)),
            Err(ErrorCode::BROKER_ID_NOT_REGISTERED)
        );
    }

    #[test]
    fn a_registration_with_another_incarnation_is_refused_while_the_session_lives_and_accepted_after(
    ) {
        // Two processes may not share an id; a restart replaces the old one once its session expires.
        let mut m = membership();
        let image = ImageBuilder::new()
            .broker(1, false)
            .broker(2, false)
            .topic("t", &[(&[1, 2], &[1, 2], 1)])
            .build();
        m.reset(&image, 0);
        m.heartbeat(&image, &heartbeat(&image, 1), 0).unwrap();
        assert_eq!(
            m.register(&image, &registration(1, 99), SESSION_MS),
            Err(ErrorCode::DUPLICATE_BROKER_REGISTRATION)
        );
        m.heartbeat(&image, &heartbeat(&image, 2), SESSION_MS)
            .unwrap();

        // The timer has not fenced 1 yet: the new registration moves its leadership itself.
        let records = m
            .register(&image, &registration(1, 99), SESSION_MS + 1)
            .unwrap();
        let old_epoch = image.broker(BrokerId(1)).unwrap().epoch;
        let image = apply(&image, &records);
        let broker = image.broker(BrokerId(1)).unwrap();
        assert_eq!(broker.incarnation, incarnation(99));
        assert!(broker.fenced && broker.epoch > old_epoch);
        assert_eq!(state(&image, "t", 0), (2, vec![2], 1, 1));
        let (_, reply) = m
            .heartbeat(&image, &heartbeat(&image, 1), SESSION_MS + 2)
            .unwrap();
        assert!(!reply.is_fenced);
    }

    #[test]
    fn a_new_controller_accepts_a_new_incarnation_it_has_not_heard_the_old_one_from() {
        // A restarted lone broker is also a new controller: its old session was only assumed.
        let image = ImageBuilder::new().broker(1, false).build();
        let mut m = membership();
        m.reset(&image, 0);
        assert!(m.register(&image, &registration(1, 99), 10).is_ok());
    }

    #[test]
    fn a_fenced_broker_is_replaced_by_a_new_incarnation_at_once() {
        // A restart after a controlled shutdown need not wait out the old session.
        let image = ImageBuilder::new().broker(1, true).build();
        let mut m = membership();
        m.reset(&image, 0);
        m.heartbeat(&image, &heartbeat(&image, 1), 0).unwrap();
        assert!(m.register(&image, &registration(1, 99), 1).is_ok());
    }

    #[test]
    fn a_retried_registration_is_idempotent() {
        // The same incarnation again commits nothing and keeps its epoch.
        let mut m = membership();
        let image = MetadataImage::empty();
        let image = apply(&image, &m.register(&image, &registration(1, 5), 0).unwrap());
        let epoch = image.broker(BrokerId(1)).unwrap().epoch;
        assert_eq!(m.register(&image, &registration(1, 5), 100), Ok(Vec::new()));
        assert_eq!(image.broker(BrokerId(1)).unwrap().epoch, epoch);
        // Once live, the retry's renewed session refuses another incarnation past the first one's end.
        let (unfenced, _) = m.heartbeat(&image, &heartbeat(&image, 1), 100).unwrap();
        let image = apply(&image, &unfenced);
        assert!(!image.broker(BrokerId(1)).unwrap().fenced);
        assert_eq!(
            m.register(&image, &registration(1, 6), SESSION_MS + 50),
            Err(ErrorCode::DUPLICATE_BROKER_REGISTRATION)
        );
    }

    #[test]
    fn controlled_shutdown_moves_leaderships_away_and_answers_should_shut_down_once_none_are_left()
    {
        // want_shutdown: leaderships move first; only then is the broker fenced and told to stop.
        let mut m = membership();
        let image = ImageBuilder::new()
            .broker(1, false)
            .broker(2, false)
            .topic("t", &[(&[1, 2], &[1, 2], 1), (&[2, 1], &[2, 1], 2)])
            .build();
        m.reset(&image, 0);
        let leaving = Heartbeat {
            want_shutdown: true,
            ..heartbeat(&image, 1)
        };
        let (records, reply) = m.heartbeat(&image, &leaving, 10).unwrap();
        assert!(!reply.should_shut_down && !reply.is_fenced);
        let image = apply(&image, &records);
        assert_eq!(state(&image, "t", 0), (2, vec![2], 1, 1));
        assert_eq!(state(&image, "t", 1), (2, vec![2], 0, 1));
        assert!(
            m.preferred_leader_elections(&image, None).is_empty(),
            "a broker shutting down is not elected back"
        );

        let (records, reply) = m.heartbeat(&image, &leaving, 20).unwrap();
        assert!(reply.should_shut_down && reply.is_fenced);
        assert_eq!(
            records,
            vec![MetadataRecord::FenceBroker { id: BrokerId(1) }]
        );
        let image = apply(&image, &records);
        assert!(fenced(&image, 1));
        // Fenced, it is told to stop at once, and not unfenced though caught up.
        let leaving = Heartbeat {
            want_shutdown: true,
            ..heartbeat(&image, 1)
        };
        let (records, reply) = m.heartbeat(&image, &leaving, 30).unwrap();
        assert!(records.is_empty() && reply.should_shut_down && reply.is_fenced);
    }

    #[test]
    fn a_broker_in_controlled_shutdown_is_not_elected_for_a_leaderless_partition() {
        // Unfencing another broker elects leaders, but never one that is shutting down.
        let mut m = membership();
        let image = ImageBuilder::new()
            .broker(1, false)
            .broker(2, true)
            .topic("t", &[(&[1, 2], &[1, 2], -1)])
            .build();
        m.reset(&image, 0);
        let leaving = Heartbeat {
            want_shutdown: true,
            ..heartbeat(&image, 1)
        };
        let (records, reply) = m.heartbeat(&image, &leaving, 1).unwrap();
        // 1 leads nothing, so it leaves the ISR, is fenced and may stop.
        assert!(reply.should_shut_down);
        let image = apply(&image, &records);
        assert_eq!(state(&image, "t", 0), (-1, vec![2], 0, 1));
        let (records, _) = m.heartbeat(&image, &heartbeat(&image, 2), 2).unwrap();
        let image = apply(&image, &records);
        assert_eq!(state(&image, "t", 0), (2, vec![2], 1, 2));
    }

    #[test]
    fn a_new_active_controller_fences_nobody_before_a_full_session_passes() {
        // reset gives every registered broker a whole session from the activation time.
        let mut m = membership();
        let image = ImageBuilder::new()
            .broker(1, false)
            .broker(2, false)
            .topic("t", &[(&[1, 2], &[1, 2], 1)])
            .build();
        m.reset(&image, 50_000);
        assert_eq!(m.next_deadline_ms(&image), Some(50_000 + SESSION_MS + 1));
        assert!(m.expire(&image, 50_000 + SESSION_MS).is_empty());
        let records = m.expire(&image, 50_000 + SESSION_MS + 1);
        let image = apply(&image, &records);
        assert!(fenced(&image, 1) && fenced(&image, 2));
        // One change: 1 leaves the ISR with its leadership; 2 is then the last member.
        assert_eq!(state(&image, "t", 0), (-1, vec![2], 1, 1));
    }

    #[test]
    fn preferred_election_moves_leadership_back_to_the_first_replica_only_when_it_is_live_and_in_the_isr(
    ) {
        // The first replica leads again if it may; otherwise nothing changes.
        let image = ImageBuilder::new()
            .broker(1, false)
            .broker(2, false)
            .broker(3, true)
            .topic(
                "t",
                &[
                    (&[1, 2], &[1, 2], 2), // back to 1
                    (&[1, 2], &[2], 2),    // 1 out of sync: stays
                    (&[3, 2], &[3, 2], 2), // 3 fenced: stays
                    (&[2, 1], &[2, 1], 2), // already preferred
                ],
            )
            .topic("u", &[(&[1, 2], &[1, 2], 2)])
            .build();
        let records = preferred_leader_elections(&image, None);
        let after = apply(&image, &records);
        assert_eq!(records.len(), 2);
        assert_eq!(state(&after, "t", 0), (1, vec![1, 2], 1, 1));
        assert_eq!(state(&after, "t", 1), (2, vec![2], 0, 0));
        assert_eq!(state(&after, "t", 2), (2, vec![3, 2], 0, 0));
        assert_eq!(state(&after, "t", 3), (2, vec![2, 1], 0, 0));
        assert_eq!(state(&after, "u", 0), (1, vec![1, 2], 1, 1));

        let only = [("u".to_string(), 0), ("nope".to_string(), 3)];
        let records = preferred_leader_elections(&image, Some(&only));
        let after = apply(&image, &records);
        assert_eq!(records.len(), 1);
        assert_eq!(state(&after, "t", 0), (2, vec![1, 2], 0, 0));
        assert_eq!(state(&after, "u", 0), (1, vec![1, 2], 1, 1));
    }

    #[test]
    fn unregister_moves_leaderships_and_removes_the_broker() {
        // Unregistering is fencing plus removal, in one batch.
        let mut m = membership();
        let image = ImageBuilder::new()
            .broker(1, false)
            .broker(2, false)
            .topic("t", &[(&[1, 2], &[1, 2], 1), (&[1], &[1], 1)])
            .build();
        m.reset(&image, 0);
        let records = m.unregister(&image, BrokerId(1)).unwrap();
        assert_eq!(
            records.last(),
            Some(&MetadataRecord::UnregisterBroker { id: BrokerId(1) })
        );
        let image = apply(&image, &records);
        assert!(image.broker(BrokerId(1)).is_none());
        assert_eq!(state(&image, "t", 0), (2, vec![2], 1, 1));
        // Its only holder is gone: leaderless, and the ISR keeps naming it.
        assert_eq!(state(&image, "t", 1), (-1, vec![1], 1, 1));
        assert_eq!(m.next_deadline_ms(&image), Some(SESSION_MS + 1));
    }

    #[test]
    fn unclean_election_picks_a_live_replica_outside_the_isr_only_where_allowed() {
        // Broker 2, the whole ISR, is fenced; broker 1 is live but out of sync.
        // Topic "risky" allows unclean elections, "safe" does not, unless forced.
        let image = ImageBuilder::new()
            .broker(1, false)
            .broker(2, true)
            .topic("risky", &[(&[2, 1], &[2], -1)])
            .topic("safe", &[(&[2, 1], &[2], -1)])
            .build();
        let image = apply(
            &image,
            &[MetadataRecord::TopicConfig {
                topic_id: topic_id("risky"),
                key: "unclean.leader.election.enable".into(),
                value: Some("true".into()),
            }],
        );
        let m = membership();
        let after = apply(&image, &m.unclean_elections(&image, None, false));
        let risky = partition(&after, "risky", 0);
        assert_eq!((risky.leader, risky.isr.clone()), (BrokerId(1), ids(&[1])));
        assert_eq!(risky.leader_epoch, LeaderEpoch(1));
        assert!(partition(&after, "safe", 0).leader.is_none());
        let only = [("safe".to_string(), 0)];
        let forced = apply(&image, &m.unclean_elections(&image, Some(&only), true));
        assert_eq!(partition(&forced, "safe", 0).leader, BrokerId(1));
        assert!(partition(&forced, "risky", 0).leader.is_none(), "not named");
    }
}
