//! One consumer group as the coordinator keeps it: state, generation,
//! members, the selected protocol, and its committed offsets. The methods
//! here keep the group's own invariants (leader is a member, static member
//! index matches the members); the rebalance protocol lives in `coordinator.rs`.
//!
//! `R` is how a waiting request is answered: a channel in the broker, a
//! plain id in tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use crate::group::messages::{JoinedMember, Protocol};
use crate::group::records;
use crate::storage::TopicPartition;

/// The consumer protocol type, whose metadata names the subscribed topics.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Kafka's group states, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members; may still hold committed offsets.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    Stable,
    /// Removed; about to leave the coordinator.
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// The states a group may enter this one from, as in Kafka.
    fn valid_previous(self) -> &'static [GroupState] {
        use GroupState::*;
        match self {
            Empty => &[PreparingRebalance],
            PreparingRebalance => &[Stable, CompletingRebalance, Empty],
            CompletingRebalance => &[PreparingRebalance],
            Stable => &[CompletingRebalance],
            Dead => &[Stable, PreparingRebalance, CompletingRebalance, Empty, Dead],
        }
    }
}

/// A committed offset held in memory (the latest record of its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    pub expire_timestamp_ms: Option<i64>,
}

impl CommittedOffset {
    pub fn to_value(&self) -> records::OffsetCommitValue {
        records::OffsetCommitValue {
            offset: self.offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata.clone(),
            commit_timestamp_ms: self.commit_timestamp_ms,
            expire_timestamp_ms: self.expire_timestamp_ms,
        }
    }

    pub fn from_value(value: records::OffsetCommitValue) -> Self {
        CommittedOffset {
            offset: value.offset,
            leader_epoch: value.leader_epoch,
            metadata: value.metadata,
            commit_timestamp_ms: value.commit_timestamp_ms,
            expire_timestamp_ms: value.expire_timestamp_ms,
        }
    }
}

#[derive(Debug)]
pub struct Member<R> {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// In the member's order of preference.
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    /// A JoinGroup waiting for the rebalance to complete.
    pub awaiting_join: Option<R>,
    /// A SyncGroup waiting for the leader's assignment.
    pub awaiting_sync: Option<R>,
    /// Joined but not yet through a completed rebalance: may expire while waiting.
    pub is_new: bool,
}

impl<R> Member<R> {
    pub fn metadata_for(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| &p.metadata)
    }

    /// The member's most preferred protocol among `candidates`.
    fn vote<'a>(&'a self, candidates: &BTreeSet<&str>) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|p| p.name.as_str())
            .find(|name| candidates.contains(name))
    }

    /// Whether the member's session timer may pass without a heartbeat: a
    /// member waiting in a rebalance is covered by the rebalance's own
    /// timeout, except a new one, which may vanish while it waits.
    pub fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }
}

/// How the coordinator waits for members during PreparingRebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinPhase {
    /// The first rebalance of an empty group: wait `delay_ms` more while new
    /// members keep arriving, up to `remaining_ms` in all.
    InitialDelay { delay_ms: i64, remaining_ms: i64 },
    /// Wait for every member to rejoin, at most the rebalance timeout.
    Rebalance,
}

#[derive(Debug)]
pub struct Group<R> {
    pub group_id: String,
    state: GroupState,
    /// When the group entered its current state (stored; the base of offset expiry once Empty).
    pub state_timestamp_ms: Option<i64>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    members: BTreeMap<String, Member<R>>,
    /// group.instance.id -> member id of the static members.
    static_members: HashMap<String, String>,
    /// Members told `ErrorCode::MEMBER_ID_REQUIRED` that have not joined with their id yet.
    pub pending_members: BTreeSet<String>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pub pending_sync_members: BTreeSet<String>,
    /// Set while the initial rebalance of a new group sees members arrive.
    pub new_member_added: bool,
    pub join_phase: Option<JoinPhase>,
    /// Topics the members subscribe to, when the protocol lets us know them.
    pub subscribed_topics: Option<BTreeSet<String>>,
    pub offsets: BTreeMap<TopicPartition, CommittedOffset>,
    /// Appends of this group's records not yet completed; offsets are not expired meanwhile.
    pub pending_writes: usize,
}

impl<R> Group<R> {
    pub fn new(group_id: String, now_ms: i64) -> Self {
        Group {
            group_id,
            state: GroupState::Empty,
            state_timestamp_ms: Some(now_ms),
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: BTreeSet::new(),
            pending_sync_members: BTreeSet::new(),
            new_member_added: false,
            join_phase: None,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
            pending_writes: 0,
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    pub fn transition_to(&mut self, state: GroupState, now_ms: i64) {
        assert!(
            state.valid_previous().contains(&self.state),
            "group {} cannot go from {} to {}",
            self.group_id,
            self.state.name(),
            state.name()
        );
        self.state = state;
        self.state_timestamp_ms = Some(now_ms);
    }

    /// Restores a loaded group's state without a transition (loading is not one).
    pub fn set_loaded_state(&mut self, state: GroupState, timestamp_ms: Option<i64>) {
        assert!(
            matches!(state, GroupState::Empty | GroupState::Stable),
            "a loaded group is Empty or Stable"
        );
        self.state = state;
        self.state_timestamp_ms = timestamp_ms;
    }

    pub fn members(&self) -> impl Iterator<Item = &Member<R>> {
        self.members.values()
    }

    pub fn members_mut(&mut self) -> impl Iterator<Item = &mut Member<R>> {
        self.members.values_mut()
    }

    pub fn member_ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    pub fn member(&self, member_id: &str) -> Option<&Member<R>> {
        self.members.get(member_id)
    }

    pub fn member_mut(&mut self, member_id: &str) -> Option<&mut Member<R>> {
        self.members.get_mut(member_id)
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub fn static_member_id(&self, group_instance_id: &str) -> Option<&str> {
        self.static_members
            .get(group_instance_id)
            .map(String::as_str)
    }

    pub fn static_member_count(&self) -> usize {
        self.static_members.len()
    }

    /// Adds a member; the first member fixes the group's protocol type and leads.
    pub fn add_member(&mut self, member: Member<R>) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        assert!(
            self.protocol_type.as_deref() == Some(member.protocol_type.as_str()),
            "a member's protocol type matches its group's"
        );
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        self.pending_members.remove(&member.member_id);
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member; a new leader is picked among the rest if it led.
    pub fn remove_member(&mut self, member_id: &str) -> Option<Member<R>> {
        let removed = self.members.remove(member_id);
        if let Some(member) = &removed {
            if let Some(instance) = &member.group_instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_members.remove(member_id);
        self.pending_sync_members.remove(member_id);
        assert!(
            self.leader_id
                .as_ref()
                .is_none_or(|l| self.members.contains_key(l)),
            "the leader is a member"
        );
        removed
    }

    /// Gives a static member a new member id (KIP-345), keeping its place,
    /// assignment and leadership. Returns the member's pending join and sync
    /// requests, which the caller answers `ErrorCode::FENCED_INSTANCE_ID`.
    pub fn replace_static_member(
        &mut self,
        group_instance_id: &str,
        old_member_id: &str,
        new_member_id: &str,
    ) -> (Option<R>, Option<R>) {
        let mut member = self
            .members
            .remove(old_member_id)
            .expect("a static member being replaced exists");
        let fenced = (member.awaiting_join.take(), member.awaiting_sync.take());
        member.member_id = new_member_id.to_string();
        self.members.insert(new_member_id.to_string(), member);
        if self.is_leader(old_member_id) {
            self.leader_id = Some(new_member_id.to_string());
        }
        self.static_members
            .insert(group_instance_id.to_string(), new_member_id.to_string());
        if self.pending_sync_members.remove(old_member_id) {
            self.pending_sync_members.insert(new_member_id.to_string());
        }
        fenced
    }

    /// Whether `member_id` is an older incarnation of a static member.
    pub fn is_static_member_fenced(
        &self,
        group_instance_id: Option<&str>,
        member_id: &str,
    ) -> bool {
        group_instance_id
            .and_then(|instance| self.static_member_id(instance))
            .is_some_and(|current| current != member_id)
    }

    /// Kafka's member check: a named instance must map to `member_id`
    /// (`ErrorCode::FENCED_INSTANCE_ID` otherwise), and the member must exist.
    pub fn validate_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), protocol::ErrorCode> {
        match group_instance_id {
            Some(instance) => match self.static_member_id(instance) {
                None => Err(protocol::ErrorCode::UNKNOWN_MEMBER_ID),
                Some(current) if current != member_id => {
                    Err(protocol::ErrorCode::FENCED_INSTANCE_ID)
                }
                Some(_) => Ok(()),
            },
            None if !self.has_member(member_id) => Err(protocol::ErrorCode::UNKNOWN_MEMBER_ID),
            None => Ok(()),
        }
    }

    /// Whether a member with this protocol type and these protocols may join:
    /// an empty group takes any non-empty set; otherwise the type must match
    /// and one of the protocols must be supported by every member.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.is(GroupState::Empty) || self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|p| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|q| q.name == p.name))
            })
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> BTreeSet<&str> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return BTreeSet::new();
        };
        let mut candidates: BTreeSet<&str> =
            first.protocols.iter().map(|p| p.name.as_str()).collect();
        for member in members {
            candidates.retain(|name| member.protocols.iter().any(|p| p.name == *name));
        }
        candidates
    }

    /// Kafka's selection: each member votes for its most preferred protocol
    /// that all members support, and the most votes win. Kafka leaves a tie to
    /// hash order; here the leader's preference order breaks it.
    pub fn select_protocol(&self) -> String {
        assert!(
            !self.members.is_empty(),
            "cannot select a protocol for an empty group"
        );
        let candidates = self.candidate_protocols();
        assert!(
            !candidates.is_empty(),
            "joining checks that the members share a protocol"
        );
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some(choice) = member.vote(&candidates) {
                *votes.entry(choice).or_default() += 1;
            }
        }
        let most = votes.values().copied().max().unwrap_or(0);
        let leader_order = self
            .leader_id
            .as_ref()
            .and_then(|l| self.members.get(l))
            .map(|l| {
                l.protocols
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        leader_order
            .into_iter()
            .chain(candidates.iter().copied())
            .find(|name| votes.get(name).copied() == Some(most))
            .expect("some candidate has the most votes")
            .to_string()
    }

    pub fn members_awaiting_join(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.awaiting_join.is_some())
            .count()
    }

    /// Every member has rejoined and no member is still fetching its id.
    pub fn all_members_joined(&self) -> bool {
        self.members_awaiting_join() == self.members.len() && self.pending_members.is_empty()
    }

    /// The longest rebalance timeout of the members: how long a rebalance may wait.
    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// If the leader has not rejoined, hands leadership to a member that has.
    /// False when no member has rejoined.
    pub fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some())
        {
            return true;
        }
        match self
            .members
            .values()
            .find(|m| m.awaiting_join.is_some())
            .map(|m| m.member_id.clone())
        {
            Some(joined) => {
                self.leader_id = Some(joined);
                true
            }
            None => false,
        }
    }

    /// Opens the next generation: CompletingRebalance with a selected
    /// protocol, or Empty when nobody is left.
    pub fn init_next_generation(&mut self, now_ms: i64) {
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition_to(GroupState::Empty, now_ms);
        } else {
            self.protocol_name = Some(self.select_protocol());
            self.transition_to(GroupState::CompletingRebalance, now_ms);
        }
        self.subscribed_topics = self.compute_subscribed_topics();
        self.pending_sync_members.clear();
    }

    /// The members with their metadata for the selected protocol (what the leader assigns from).
    pub fn current_member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata_for(protocol).cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// For consumer groups, the union of the members' subscribed topics;
    /// `None` when unknown (another protocol type, or metadata we cannot read).
    pub fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            let metadata = member.metadata_for(protocol)?;
            match records::subscription_topics(metadata) {
                Ok(names) => topics.extend(names),
                Err(e) => {
                    tracing::warn!(group = %self.group_id, error = %e, "cannot read a consumer subscription; subscribed topics unknown");
                    return None;
                }
            }
        }
        Some(topics)
    }

    /// Whether the group may be consuming `topic` (true when unknown).
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.subscribed_topics
            .as_ref()
            .is_none_or(|topics| topics.contains(topic))
    }

    /// The group's metadata record value, with `assignment` for each member.
    pub fn metadata_value(
        &self,
        assignment: &HashMap<String, Bytes>,
    ) -> records::GroupMetadataValue {
        let protocol = self.protocol_name.clone();
        records::GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: protocol.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms.unwrap_or(-1),
            members: self
                .members
                .values()
                .map(|m| records::MemberMetadataValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .and_then(|p| m.metadata_for(p))
                        .cloned()
                        .unwrap_or_default(),
                    assignment: assignment.get(&m.member_id).cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// The members' current assignments, keyed by member id.
    pub fn current_assignment(&self) -> HashMap<String, Bytes> {
        self.members
            .values()
            .map(|m| (m.member_id.clone(), m.assignment.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[&str]) -> Member<u64> {
        Member {
            member_id: id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: String::new(),
            rebalance_timeout_ms: 1000,
            session_timeout_ms: 1000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| Protocol {
                    name: p.to_string(),
                    metadata: Bytes::new(),
                })
                .collect(),
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            is_new: false,
        }
    }

    #[test]
    fn protocol_with_most_first_choices_among_common_ones_wins() {
        // Members vote for their preferred common protocol; the majority choice is selected.
        let mut group = Group::new("g".into(), 0);
        group.add_member(member("a", &["range", "roundrobin"]));
        group.add_member(member("b", &["roundrobin", "range"]));
        group.add_member(member("c", &["sticky", "roundrobin", "range"]));
        // Common: range, roundrobin. Votes: a->range, b->roundrobin, c->roundrobin.
        assert_eq!(group.select_protocol(), "roundrobin");
    }

    #[test]
    fn a_tie_goes_to_the_leaders_preference() {
        // With equal votes, the leader's order decides (deterministically, unlike Kafka's hash order).
        let mut group = Group::new("g".into(), 0);
        group.add_member(member("a", &["range", "roundrobin"]));
        group.add_member(member("b", &["roundrobin", "range"]));
        assert_eq!(group.leader_id.as_deref(), Some("a"));
        assert_eq!(group.select_protocol(), "range");
    }

    #[test]
    fn removing_the_leader_hands_leadership_to_a_remaining_member() {
        // The leader is always a member; removing it picks another, removing all leaves none.
        let mut group = Group::new("g".into(), 0);
        group.add_member(member("a", &["range"]));
        group.add_member(member("b", &["range"]));
        group.remove_member("a");
        assert_eq!(group.leader_id.as_deref(), Some("b"));
        group.remove_member("b");
        assert_eq!(group.leader_id, None);
    }

    #[test]
    fn a_member_must_share_a_protocol_with_every_member() {
        // Joining a non-empty group needs the same protocol type and a protocol all members have.
        let mut group = Group::new("g".into(), 0);
        group.add_member(member("a", &["range"]));
        group.transition_to(GroupState::PreparingRebalance, 1);
        let p = |name: &str| Protocol {
            name: name.into(),
            metadata: Bytes::new(),
        };
        assert!(group.supports_protocols("consumer", &[p("range")]));
        assert!(!group.supports_protocols("consumer", &[p("roundrobin")]));
        assert!(!group.supports_protocols("connect", &[p("range")]));
    }

    #[test]
    #[should_panic(expected = "cannot go from Empty to Stable")]
    fn invalid_state_transitions_are_refused() {
        // Kafka's transition table is enforced: Empty cannot become Stable directly.
        let mut group: Group<u64> = Group::new("g".into(), 0);
        group.transition_to(GroupState::Stable, 1);
    }
}
