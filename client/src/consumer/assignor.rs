//! Client-side partition assignment, computed by the group's leader: the
//! `range`, `roundrobin` and `cooperative-sticky` assignors, under the names
//! and with the results of the Java client's (so a group may mix our members
//! with Java and librdkafka ones).
//!
//! Members are ordered as the Java client orders them: static members (with
//! a `group.instance.id`) first, by instance id, then dynamic members by
//! member id.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::consumer::codec::{Assignment, Subscription};

/// How partitions move in a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RebalanceProtocol {
    /// Every member gives up every partition before rejoining.
    Eager,
    /// Members keep their partitions while rejoining and give up only those
    /// that move to another member (KIP-429), after which the group
    /// rebalances once more to hand them out.
    Cooperative,
}

/// A partition assignor (`partition.assignment.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssignmentStrategy {
    /// Per topic, consecutive ranges of partitions to members in order.
    Range,
    /// All partitions, one at a time, to members in turn.
    RoundRobin,
    /// Balanced, keeping as many partitions where they are as it can, with
    /// the incremental (cooperative) protocol.
    CooperativeSticky,
}

impl AssignmentStrategy {
    /// The protocol name in JoinGroup, as every Kafka client names it.
    pub fn name(self) -> &'static str {
        match self {
            AssignmentStrategy::Range => "range",
            AssignmentStrategy::RoundRobin => "roundrobin",
            AssignmentStrategy::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// The strategy of a `partition.assignment.strategy` name (`range`, `roundrobin`, `cooperative-sticky`).
    pub fn from_name(name: &str) -> Option<AssignmentStrategy> {
        match name {
            "range" => Some(AssignmentStrategy::Range),
            "roundrobin" => Some(AssignmentStrategy::RoundRobin),
            "cooperative-sticky" => Some(AssignmentStrategy::CooperativeSticky),
            _ => None,
        }
    }

    /// Whether the strategy rebalances eagerly or cooperatively.
    pub fn rebalance_protocol(self) -> RebalanceProtocol {
        match self {
            AssignmentStrategy::Range | AssignmentStrategy::RoundRobin => RebalanceProtocol::Eager,
            AssignmentStrategy::CooperativeSticky => RebalanceProtocol::Cooperative,
        }
    }

    /// The user data this assignor adds to a subscription: the Java
    /// cooperative-sticky assignor sends the generation (an `i32`) for
    /// members that read subscriptions older than v2.
    pub fn subscription_user_data(self, generation_id: i32) -> Option<Bytes> {
        match self {
            AssignmentStrategy::CooperativeSticky => {
                Some(Bytes::copy_from_slice(&generation_id.to_be_bytes()))
            }
            _ => None,
        }
    }

    /// Computes every member's assignment. `partition_counts` holds the
    /// topics that exist; subscribed topics missing from it are skipped.
    /// Every member gets an entry, possibly empty.
    pub fn assign(
        self,
        members: &[MemberSubscription],
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Assignment> {
        let ordered = ordered_members(members);
        let mut result: BTreeMap<String, BTreeSet<(String, i32)>> = members
            .iter()
            .map(|m| (m.member_id.clone(), BTreeSet::new()))
            .collect();
        match self {
            AssignmentStrategy::Range => range(&ordered, partition_counts, &mut result),
            AssignmentStrategy::RoundRobin => round_robin(&ordered, partition_counts, &mut result),
            AssignmentStrategy::CooperativeSticky => {
                sticky(&ordered, partition_counts, &mut result);
                remove_partitions_changing_owner(&ordered, &mut result);
            }
        }
        result
            .into_iter()
            .map(|(member, partitions)| {
                let mut assignment = Assignment::default();
                for (topic, partition) in partitions {
                    assignment
                        .partitions
                        .entry(topic)
                        .or_default()
                        .push(partition);
                }
                (member, assignment)
            })
            .collect()
    }
}

/// One member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member's id.
    pub member_id: String,
    /// The member's static id, if it has one.
    pub group_instance_id: Option<String>,
    /// What the member asked for.
    pub subscription: Subscription,
}

impl MemberSubscription {
    fn subscribes_to(&self, topic: &str) -> bool {
        self.subscription.topics.iter().any(|t| t == topic)
    }

    /// The generation its owned partitions are from: the v2 field, or the
    /// cooperative-sticky user data for older subscriptions.
    fn generation(&self) -> i32 {
        if self.subscription.generation_id >= 0 {
            return self.subscription.generation_id;
        }
        match self.subscription.user_data.as_deref() {
            Some(&[a, b, c, d]) => i32::from_be_bytes([a, b, c, d]),
            _ => -1,
        }
    }
}

/// Java's `MemberInfo` order: static members by instance id, then dynamic
/// members by member id.
fn ordered_members(members: &[MemberSubscription]) -> Vec<&MemberSubscription> {
    let mut ordered: Vec<&MemberSubscription> = members.iter().collect();
    ordered.sort_by(|a, b| match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    });
    ordered
}

type Partitions = BTreeMap<String, BTreeSet<(String, i32)>>;

fn subscribed_topics<'a>(
    members: &[&'a MemberSubscription],
    partition_counts: &'a BTreeMap<String, i32>,
) -> impl Iterator<Item = (&'a String, i32)> {
    let wanted: BTreeSet<&String> = members
        .iter()
        .flat_map(|m| m.subscription.topics.iter())
        .collect();
    partition_counts
        .iter()
        .filter(move |(topic, count)| wanted.contains(topic) && **count > 0)
        .map(|(topic, count)| (topic, *count))
}

fn range(
    members: &[&MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
    result: &mut Partitions,
) {
    for (topic, count) in subscribed_topics(members, partition_counts) {
        let consumers: Vec<&&MemberSubscription> =
            members.iter().filter(|m| m.subscribes_to(topic)).collect();
        let consumer_count = consumers.len() as i32;
        let per_consumer = count / consumer_count;
        let extra = count % consumer_count;
        for (i, member) in consumers.iter().enumerate() {
            let i = i as i32;
            let start = per_consumer * i + i.min(extra);
            let length = per_consumer + i32::from(i < extra);
            let owned = result.get_mut(&member.member_id).expect("every member");
            for partition in start..start + length {
                owned.insert((topic.clone(), partition));
            }
        }
    }
}

fn round_robin(
    members: &[&MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
    result: &mut Partitions,
) {
    if members.is_empty() {
        return;
    }
    let mut next = 0usize;
    for (topic, count) in subscribed_topics(members, partition_counts) {
        for partition in 0..count {
            // Someone subscribes to the topic (that is why it is listed), so
            // this finds a member within one turn around the circle.
            while !members[next % members.len()].subscribes_to(topic) {
                next += 1;
            }
            let member = members[next % members.len()];
            next += 1;
            result
                .get_mut(&member.member_id)
                .expect("every member")
                .insert((topic.clone(), partition));
        }
    }
}

/// Who owned what before this rebalance, after discarding claims that no
/// longer hold: topics the member left or that shrank, and partitions two
/// members claim (the newer generation wins; a tie voids both claims).
fn previous_owners(
    members: &[&MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<(String, i32), String> {
    let mut claims: BTreeMap<(String, i32), Vec<(i32, &str)>> = BTreeMap::new();
    for member in members {
        for (topic, partitions) in &member.subscription.owned_partitions {
            let count = partition_counts.get(topic).copied().unwrap_or(0);
            if !member.subscribes_to(topic) {
                continue;
            }
            for &partition in partitions.iter().filter(|p| (0..count).contains(*p)) {
                claims
                    .entry((topic.clone(), partition))
                    .or_default()
                    .push((member.generation(), &member.member_id));
            }
        }
    }
    claims
        .into_iter()
        .filter_map(|(partition, mut claimants)| {
            claimants.sort_by_key(|claim| std::cmp::Reverse(claim.0));
            let winner = claimants[0];
            let tied = claimants.get(1).is_some_and(|second| second.0 == winner.0);
            (!tied).then(|| (partition, winner.1.to_string()))
        })
        .collect()
}

/// Balanced and sticky: every member keeps what it validly owned, the rest
/// goes to the least-loaded eligible members, then partitions move from the
/// most to the least loaded until no eligible member has two fewer.
fn sticky(
    members: &[&MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
    result: &mut Partitions,
) {
    if members.is_empty() {
        return;
    }
    let position: BTreeMap<&str, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.member_id.as_str(), i))
        .collect();
    let owners = previous_owners(members, partition_counts);
    let mut unassigned: Vec<(String, i32)> = Vec::new();
    for (topic, count) in subscribed_topics(members, partition_counts) {
        for partition in 0..count {
            let key = (topic.clone(), partition);
            match owners.get(&key) {
                Some(owner) => {
                    result
                        .get_mut(owner)
                        .expect("owner is a member")
                        .insert(key);
                }
                None => unassigned.push(key),
            }
        }
    }
    // First trim every member to the most any member may hold when all
    // subscribe alike, so that a member that owned everything does not keep
    // it while the balancing below moves partitions one at a time.
    let total: usize = result.values().map(BTreeSet::len).sum::<usize>() + unassigned.len();
    let ceiling = total.div_ceil(members.len());
    for member in members {
        let owned = result.get_mut(&member.member_id).expect("every member");
        while owned.len() > ceiling {
            let last = owned.iter().next_back().cloned().expect("non-empty");
            owned.remove(&last);
            unassigned.push(last);
        }
    }
    unassigned.sort();
    let load = |result: &Partitions, member: &MemberSubscription| result[&member.member_id].len();
    for (topic, partition) in unassigned {
        let target = members
            .iter()
            .filter(|m| m.subscribes_to(&topic))
            .min_by_key(|m| (load(result, m), position[m.member_id.as_str()]))
            .expect("someone subscribes to a listed topic");
        result
            .get_mut(&target.member_id)
            .expect("every member")
            .insert((topic, partition));
    }
    // Moves each take one partition from a member to one with at least two
    // fewer, so the sum of squared loads drops with every move: this ends.
    let move_bound = total * members.len() + 1;
    for _ in 0..move_bound {
        let mut by_load: Vec<&&MemberSubscription> = members.iter().collect();
        by_load.sort_by_key(|m| {
            (
                std::cmp::Reverse(load(result, m)),
                position[m.member_id.as_str()],
            )
        });
        let mut moved = false;
        'search: for from in &by_load {
            let from_load = load(result, from);
            let candidates: Vec<(String, i32)> =
                result[&from.member_id].iter().rev().cloned().collect();
            for key in candidates {
                let to = members
                    .iter()
                    .filter(|m| m.subscribes_to(&key.0) && load(result, m) + 1 < from_load)
                    .min_by_key(|m| (load(result, m), position[m.member_id.as_str()]));
                if let Some(to) = to {
                    result
                        .get_mut(&from.member_id)
                        .expect("member")
                        .remove(&key);
                    result.get_mut(&to.member_id).expect("member").insert(key);
                    moved = true;
                    break 'search;
                }
            }
        }
        if !moved {
            return;
        }
    }
}

/// The cooperative protocol's rule: a partition that another member owns
/// right now is not handed to its new owner in this rebalance. Its old owner
/// sees it missing from its assignment, revokes it, and rejoins; the next
/// rebalance hands it out.
fn remove_partitions_changing_owner(members: &[&MemberSubscription], result: &mut Partitions) {
    let mut owned_by: BTreeMap<(String, i32), &str> = BTreeMap::new();
    for member in members {
        for (topic, partitions) in &member.subscription.owned_partitions {
            for partition in partitions {
                owned_by.insert((topic.clone(), *partition), &member.member_id);
            }
        }
    }
    for (member, partitions) in result.iter_mut() {
        partitions.retain(|key| owned_by.get(key).is_none_or(|owner| *owner == member));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            group_instance_id: None,
            subscription: Subscription {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                generation_id: -1,
                ..Subscription::default()
            },
        }
    }

    fn owning(
        mut m: MemberSubscription,
        generation: i32,
        owned: &[(&str, i32)],
    ) -> MemberSubscription {
        m.subscription.generation_id = generation;
        for (topic, partition) in owned {
            m.subscription
                .owned_partitions
                .entry(topic.to_string())
                .or_default()
                .push(*partition);
        }
        m
    }

    fn counts(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
        topics.iter().map(|(t, c)| (t.to_string(), *c)).collect()
    }

    /// `member -> ["t0", "t1", ...]` for compact comparisons.
    fn flat(result: &BTreeMap<String, Assignment>) -> BTreeMap<String, Vec<String>> {
        result
            .iter()
            .map(|(member, assignment)| {
                let list = assignment
                    .partitions
                    .iter()
                    .flat_map(|(topic, ps)| ps.iter().map(move |p| format!("{topic}{p}")))
                    .collect();
                (member.clone(), list)
            })
            .collect()
    }

    fn expect(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        entries
            .iter()
            .map(|(m, ps)| (m.to_string(), ps.iter().map(|p| p.to_string()).collect()))
            .collect()
    }

    #[test]
    fn range_gives_consecutive_ranges_with_the_extra_partitions_first() {
        // Java's RangeAssignorTest: 2 consumers, 2 topics of 3 partitions -> 2+1 of each.
        let members = [member("c0", &["t", "u"]), member("c1", &["t", "u"])];
        let result = AssignmentStrategy::Range.assign(&members, &counts(&[("t", 3), ("u", 3)]));
        assert_eq!(
            flat(&result),
            expect(&[("c0", &["t0", "t1", "u0", "u1"]), ("c1", &["t2", "u2"])])
        );
    }

    #[test]
    fn range_assigns_each_topic_among_its_own_subscribers_only() {
        // Java's testMultipleConsumersMixedTopics: t1 (3) to c0,c1,c2; t2 (2) to c1 only.
        let members = [
            member("c0", &["t1"]),
            member("c1", &["t1", "t2"]),
            member("c2", &["t1"]),
        ];
        let result = AssignmentStrategy::Range.assign(&members, &counts(&[("t1", 3), ("t2", 2)]));
        assert_eq!(
            flat(&result),
            expect(&[
                ("c0", &["t10"]),
                ("c1", &["t11", "t20", "t21"]),
                ("c2", &["t12"])
            ])
        );
    }

    #[test]
    fn range_with_more_members_than_partitions_leaves_the_last_ones_empty() {
        // Three members, two partitions: the third member gets an empty assignment, not none.
        let members = [
            member("a", &["t"]),
            member("b", &["t"]),
            member("c", &["t"]),
        ];
        let result = AssignmentStrategy::Range.assign(&members, &counts(&[("t", 2)]));
        assert_eq!(
            flat(&result),
            expect(&[("a", &["t0"]), ("b", &["t1"]), ("c", &[])])
        );
    }

    #[test]
    fn static_members_sort_before_dynamic_ones_by_instance_id() {
        // Java's MemberInfo order decides who gets the first range.
        let mut z = member("z-member", &["t"]);
        z.group_instance_id = Some("instance-1".into());
        let a = member("a-member", &["t"]);
        let result = AssignmentStrategy::Range.assign(&[a, z], &counts(&[("t", 4)]));
        assert_eq!(
            flat(&result),
            expect(&[("a-member", &["t2", "t3"]), ("z-member", &["t0", "t1"])])
        );
    }

    #[test]
    fn round_robin_deals_partitions_in_turn_across_topics() {
        // Java's RoundRobinAssignorTest.testTwoConsumersTwoTopicsSixPartitions.
        let members = [member("c0", &["t1", "t2"]), member("c1", &["t1", "t2"])];
        let result =
            AssignmentStrategy::RoundRobin.assign(&members, &counts(&[("t1", 3), ("t2", 3)]));
        assert_eq!(
            flat(&result),
            expect(&[
                ("c0", &["t10", "t12", "t21"]),
                ("c1", &["t11", "t20", "t22"])
            ])
        );
    }

    #[test]
    fn round_robin_skips_members_not_subscribed_to_the_topic() {
        // Java's testMultipleConsumersMixedTopics: t1 (3) to all, t2 (2) only to c1.
        let members = [
            member("c0", &["t1"]),
            member("c1", &["t1", "t2"]),
            member("c2", &["t1"]),
        ];
        let result =
            AssignmentStrategy::RoundRobin.assign(&members, &counts(&[("t1", 3), ("t2", 2)]));
        assert_eq!(
            flat(&result),
            expect(&[
                ("c0", &["t10"]),
                ("c1", &["t11", "t20", "t21"]),
                ("c2", &["t12"])
            ])
        );
    }

    #[test]
    fn unknown_topics_and_missing_members_are_handled() {
        // A subscribed topic without metadata is skipped; no members, no assignment.
        let members = [member("a", &["t", "missing"])];
        for strategy in [
            AssignmentStrategy::Range,
            AssignmentStrategy::RoundRobin,
            AssignmentStrategy::CooperativeSticky,
        ] {
            let result = strategy.assign(&members, &counts(&[("t", 2)]));
            assert_eq!(
                flat(&result),
                expect(&[("a", &["t0", "t1"])]),
                "{strategy:?}"
            );
            assert!(strategy.assign(&[], &counts(&[("t", 2)])).is_empty());
        }
    }

    fn assert_balanced_and_complete(result: &BTreeMap<String, Assignment>, total: usize) {
        let loads: Vec<usize> = result.values().map(Assignment::partition_count).collect();
        let all: BTreeSet<(String, i32)> = result
            .values()
            .flat_map(|a| {
                a.partitions
                    .iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            })
            .collect();
        assert_eq!(
            all.len(),
            loads.iter().sum::<usize>(),
            "a partition twice: {result:?}"
        );
        assert_eq!(all.len(), total, "{result:?}");
        assert!(
            loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1,
            "unbalanced: {loads:?}"
        );
    }

    #[test]
    fn sticky_first_assignment_is_balanced() {
        // No one owns anything: 12 partitions over 3 members, 4 each.
        let members = [
            member("a", &["t"]),
            member("b", &["t"]),
            member("c", &["t"]),
        ];
        let result = AssignmentStrategy::CooperativeSticky.assign(&members, &counts(&[("t", 12)]));
        assert_balanced_and_complete(&result, 12);
    }

    #[test]
    fn cooperative_sticky_moves_only_what_must_move_and_withholds_it_for_one_round() {
        // a owned all 12; b and c join. a keeps 4 and loses 8, which nobody gets until a revoked them.
        let all: Vec<(&str, i32)> = (0..12).map(|p| ("t", p)).collect();
        let members = [
            owning(member("a", &["t"]), 1, &all),
            member("b", &["t"]),
            member("c", &["t"]),
        ];
        let first = AssignmentStrategy::CooperativeSticky.assign(&members, &counts(&[("t", 12)]));
        assert_eq!(first["a"].partition_count(), 4);
        assert_eq!(
            first["b"].partition_count(),
            0,
            "withheld while a still owns them"
        );
        assert_eq!(first["c"].partition_count(), 0);
        // Second round: a owns its 4, b and c own nothing yet; the other 8 are free now.
        let kept: Vec<(&str, i32)> = first["a"].partitions["t"]
            .iter()
            .map(|p| ("t", *p))
            .collect();
        let members = [
            owning(member("a", &["t"]), 2, &kept),
            owning(member("b", &["t"]), 2, &[]),
            owning(member("c", &["t"]), 2, &[]),
        ];
        let second = AssignmentStrategy::CooperativeSticky.assign(&members, &counts(&[("t", 12)]));
        assert_balanced_and_complete(&second, 12);
        assert_eq!(second["a"], first["a"], "a keeps what it kept");
    }

    #[test]
    fn sticky_keeps_survivors_partitions_when_a_member_leaves() {
        // c leaves: a and b keep their 4 each and split c's 4 between them.
        let members = [
            owning(
                member("a", &["t"]),
                3,
                &[("t", 0), ("t", 1), ("t", 2), ("t", 3)],
            ),
            owning(
                member("b", &["t"]),
                3,
                &[("t", 4), ("t", 5), ("t", 6), ("t", 7)],
            ),
        ];
        let result = AssignmentStrategy::CooperativeSticky.assign(&members, &counts(&[("t", 12)]));
        assert_balanced_and_complete(&result, 12);
        for (member, range) in [("a", 0..4), ("b", 4..8)] {
            for p in range {
                assert!(
                    result[member].partitions["t"].contains(&p),
                    "{member} lost t{p}"
                );
            }
        }
    }

    #[test]
    fn sticky_resolves_double_claims_by_generation_and_voids_ties() {
        // a (gen 5) and b (gen 4) both claim t0: a keeps it. Both claim t1 in gen 5... only a and c do: nobody keeps it by claim.
        let members = [
            owning(member("a", &["t"]), 5, &[("t", 0), ("t", 1)]),
            owning(member("b", &["t"]), 4, &[("t", 0)]),
            owning(member("c", &["t"]), 5, &[("t", 1)]),
        ];
        let owners = previous_owners(&ordered_members(&members), &counts(&[("t", 3)]));
        assert_eq!(
            owners.get(&("t".to_string(), 0)).map(String::as_str),
            Some("a")
        );
        assert_eq!(owners.get(&("t".to_string(), 1)), None);
    }

    #[test]
    fn sticky_balances_mixed_subscriptions_within_what_each_member_may_take() {
        // b subscribes to u only; a and c take t; everything is assigned once.
        let members = [
            member("a", &["t", "u"]),
            member("b", &["u"]),
            member("c", &["t"]),
        ];
        let result =
            AssignmentStrategy::CooperativeSticky.assign(&members, &counts(&[("t", 4), ("u", 2)]));
        let total: usize = result.values().map(Assignment::partition_count).sum();
        assert_eq!(total, 6);
        assert!(result["b"].partitions.keys().all(|t| t == "u"));
        assert!(result["c"].partitions.keys().all(|t| t == "t"));
        assert_balanced_and_complete(&result, 6);
    }

    #[test]
    fn names_and_protocols_match_the_other_clients() {
        // The JoinGroup protocol names are the ones Java and librdkafka use.
        for strategy in [
            AssignmentStrategy::Range,
            AssignmentStrategy::RoundRobin,
            AssignmentStrategy::CooperativeSticky,
        ] {
            assert_eq!(
                AssignmentStrategy::from_name(strategy.name()),
                Some(strategy)
            );
        }
        assert_eq!(AssignmentStrategy::from_name("sticky"), None);
        assert_eq!(
            AssignmentStrategy::CooperativeSticky.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        assert_eq!(
            AssignmentStrategy::Range.rebalance_protocol(),
            RebalanceProtocol::Eager
        );
    }
}
