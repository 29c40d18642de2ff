//! Consumer groups with librdkafka (through `rdkafka`) against the real broker
//! binary: the range and cooperative-sticky assignors sharing partitions,
//! survivors taking over from members that leave (close → LeaveGroup) or die
//! (kcat, also librdkafka, killed with SIGKILL: only its session timeout
//! tells the coordinator), and committed offsets surviving broker restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tests::{BrokerProcess, RawConnection, GROUP_SETTLE_TIMEOUT};

/// Session timeout of every member: the coordinator's minimum by default.
const SESSION_TIMEOUT_MS: &str = "6000";
const PARTITIONS: i32 = 6;
const MESSAGES_PER_PARTITION: usize = 100;
/// How long one poll of one consumer may block in the polling loops.
const POLL_SLICE: Duration = Duration::from_millis(50);

/// Records what each rebalance did to this consumer.
#[derive(Default)]
struct Recorder {
    /// Partitions revoked by each revocation, in order.
    revocations: Mutex<Vec<BTreeSet<i32>>>,
    assignments: Mutex<usize>,
}

impl ClientContext for Recorder {}

impl ConsumerContext for Recorder {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => self
                .revocations
                .lock()
                .unwrap()
                .push(list.elements().iter().map(|e| e.partition()).collect()),
            Rebalance::Assign(_) => *self.assignments.lock().unwrap() += 1,
            Rebalance::Error(_) => {}
        }
    }
}

/// A subscribed group member with the messages it has consumed.
struct Member {
    name: &'static str,
    consumer: BaseConsumer<Recorder>,
    consumed: Vec<(i32, i64)>,
}

impl Member {
    fn join(addr: &str, group: &str, topic: &str, assignor: &str, name: &'static str) -> Member {
        Self::join_with(addr, group, topic, assignor, name, true)
    }

    /// `auto_commit`: librdkafka commits positions every 200 ms and when partitions are revoked.
    fn join_with(
        addr: &str,
        group: &str,
        topic: &str,
        assignor: &str,
        name: &'static str,
        auto_commit: bool,
    ) -> Member {
        let consumer: BaseConsumer<Recorder> = ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("group.id", group)
            .set("client.id", name)
            .set("partition.assignment.strategy", assignor)
            .set("session.timeout.ms", SESSION_TIMEOUT_MS)
            .set("heartbeat.interval.ms", "500")
            .set("auto.offset.reset", "earliest")
            .set(
                "enable.auto.commit",
                if auto_commit { "true" } else { "false" },
            )
            .set("auto.commit.interval.ms", "200")
            .set("enable.partition.eof", "false")
            .create_with_context(Recorder::default())
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        Member {
            name,
            consumer,
            consumed: Vec::new(),
        }
    }

    fn poll_once(&mut self) {
        if let Some(result) = self.consumer.poll(POLL_SLICE) {
            match result {
                Ok(message) => self.consumed.push((message.partition(), message.offset())),
                // Commits or fetches interrupted by a rebalance are retried by librdkafka.
                Err(e) => eprintln!("{}: consumer error (retried): {e}", self.name),
            }
        }
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.consumer
            .assignment()
            .expect("assignment")
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect()
    }
}

/// Polls every member until `done` holds for their assignments, or panics after the timeout.
fn poll_until(
    members: &mut [&mut Member],
    what: &str,
    mut done: impl FnMut(&[BTreeSet<i32>]) -> bool,
) {
    let deadline = Instant::now() + GROUP_SETTLE_TIMEOUT;
    loop {
        for member in members.iter_mut() {
            member.poll_once();
        }
        let assignments: Vec<BTreeSet<i32>> = members.iter().map(|m| m.assignment()).collect();
        if done(&assignments) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {GROUP_SETTLE_TIMEOUT:?}; assignments {assignments:?}"
        );
    }
}

/// Every partition is owned by exactly one of the members, and each has some.
fn shared_by_all(assignments: &[BTreeSet<i32>]) -> bool {
    let total: usize = assignments.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = assignments.iter().flatten().copied().collect();
    total == PARTITIONS as usize
        && union.len() == PARTITIONS as usize
        && assignments.iter().all(|a| !a.is_empty())
}

/// Partitions that `members` together own, checking they do not overlap.
fn owned(assignments: &[BTreeSet<i32>]) -> Option<BTreeSet<i32>> {
    let total: usize = assignments.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = assignments.iter().flatten().copied().collect();
    (union.len() == total).then_some(union)
}

fn setup(broker: &BrokerProcess, topic: &str) {
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    tests::create_topic(&mut conn, topic, PARTITIONS);
    let values: Vec<String> = (0..MESSAGES_PER_PARTITION)
        .map(|i| format!("value-{i}"))
        .collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    for partition in 0..PARTITIONS {
        let (error, _) =
            tests::produce_to(&mut conn, topic, partition, tests::batch_of(&values), -1).unwrap();
        assert_eq!(error, 0);
    }
}

/// A kcat group member in its own process, so that it can die without a goodbye.
fn kcat_member(addr: &str, group: &str, topic: &str, assignor: &str) -> Child {
    Command::new("kcat")
        .args(["-b", addr, "-G", group, "-q", "-o", "beginning"])
        .args(["-X", &format!("partition.assignment.strategy={assignor}")])
        .args(["-X", &format!("session.timeout.ms={SESSION_TIMEOUT_MS}")])
        .args(["-X", "heartbeat.interval.ms=500"])
        .arg(topic)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kcat is installed (.ci/run installs it)")
}

/// Members of the group as the coordinator sees them, with their assigned partitions.
fn described_members(
    conn: &mut RawConnection,
    group: &str,
) -> (String, BTreeMap<String, BTreeSet<i32>>) {
    let described = tests::describe_group(conn, group).unwrap();
    let members = described
        .members
        .iter()
        .map(|m| {
            let partitions = tests::consumer_assignment(&m.member_assignment)
                .unwrap()
                .into_iter()
                .map(|(_, p)| p)
                .collect();
            (m.client_id.as_str().to_string(), partitions)
        })
        .collect();
    (described.group_state.as_str().to_string(), members)
}

/// Polls `polled` (librdkafka serves rebalances from `poll`, so a member that
/// is not polled never rejoins) until the coordinator describes the group as
/// Stable with `count` members.
fn wait_for_stable_members(
    conn: &mut RawConnection,
    group: &str,
    count: usize,
    polled: &mut [&mut Member],
) -> BTreeMap<String, BTreeSet<i32>> {
    let mut last = None;
    let settled = tests::wait_until(GROUP_SETTLE_TIMEOUT, || {
        for member in polled.iter_mut() {
            member.poll_once();
        }
        let (state, members) = described_members(conn, group);
        let done = state == "Stable" && members.len() == count;
        last = Some((state, members));
        done
    });
    let (state, members) = last.unwrap();
    assert!(
        settled,
        "group {group} did not become Stable with {count} members: {state} {members:?}"
    );
    members
}

fn kill9(child: &mut Child) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    child.wait().expect("reap kcat");
}

#[test]
fn range_assignor_shares_partitions_and_survivors_take_over_from_leaving_and_dead_members() {
    // Range: 6 partitions go 6 → 3/3 → 2/2/2; a SIGKILLed member's share returns after its session timeout, a closed one's at once.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let (group, topic) = ("range-group", "range-topic");
    setup(&broker, topic);
    let mut conn = RawConnection::connect(&broker.addr).unwrap();

    let mut a = Member::join(&broker.addr, group, topic, "range", "member-a");
    poll_until(&mut [&mut a], "A owns all partitions", |s| {
        s[0].len() == PARTITIONS as usize
    });
    let mut b = Member::join(&broker.addr, group, topic, "range", "member-b");
    poll_until(&mut [&mut a, &mut b], "A and B share the partitions", |s| {
        shared_by_all(s) && s[0].len() == 3
    });
    let members = wait_for_stable_members(&mut conn, group, 2, &mut [&mut a, &mut b]);
    assert_eq!(
        members.values().map(BTreeSet::len).collect::<Vec<_>>(),
        vec![3, 3],
        "{members:?}"
    );

    // A third member in another process: range gives each two.
    let mut c = kcat_member(&broker.addr, group, topic, "range");
    poll_until(
        &mut [&mut a, &mut b],
        "A and B give up a partition each to C",
        |s| s[0].len() == 2 && s[1].len() == 2 && owned(s).is_some(),
    );
    let members = wait_for_stable_members(&mut conn, group, 3, &mut [&mut a, &mut b]);
    let kcat_share: BTreeSet<i32> = members
        .iter()
        .find(|(client, _)| !client.starts_with("member-"))
        .map(|(_, partitions)| partitions.clone())
        .expect("the kcat member is described");
    assert_eq!(kcat_share.len(), 2, "{members:?}");

    // C dies without a LeaveGroup: the coordinator notices at its session timeout.
    let died = Instant::now();
    kill9(&mut c);
    poll_until(
        &mut [&mut a, &mut b],
        "A and B take over the dead member's partitions",
        shared_by_all,
    );
    let takeover = died.elapsed();
    assert!(
        takeover >= Duration::from_millis(5_000),
        "the takeover waited for the session timeout, not {takeover:?}"
    );
    let survivors: BTreeSet<i32> = a.assignment().union(&b.assignment()).copied().collect();
    assert!(kcat_share.is_subset(&survivors));
    assert!(broker.wait_for_output("session expired"));

    // B closes (LeaveGroup): A gets everything without waiting for a session timeout.
    let left = Instant::now();
    drop(b);
    poll_until(
        &mut [&mut a],
        "A takes over the leaving member's partitions",
        |s| s[0].len() == PARTITIONS as usize,
    );
    assert!(
        left.elapsed() < Duration::from_millis(5_000),
        "a leave is not a timeout: {:?}",
        left.elapsed()
    );
    assert!(broker.wait_for_output("member left"));

    // A reads whatever was not committed before, so the group's committed offsets reach the end.
    let everything = vec![MESSAGES_PER_PARTITION as i64; PARTITIONS as usize];
    let all_partitions: Vec<i32> = (0..PARTITIONS).collect();
    let committed = tests::wait_until(GROUP_SETTLE_TIMEOUT, || {
        a.poll_once();
        tests::committed_offsets(&mut conn, group, topic, &all_partitions).unwrap() == everything
    });
    assert!(
        committed,
        "committed {:?}",
        tests::committed_offsets(&mut conn, group, topic, &all_partitions).unwrap()
    );
    let (state, members) = described_members(&mut conn, group);
    assert_eq!((state.as_str(), members.len()), ("Stable", 1));
}

#[test]
fn cooperative_sticky_assignor_moves_only_the_partitions_that_must_move() {
    // Cooperative-sticky: joins and departures revoke only what moves; survivors keep their partitions and gain the departed ones.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let (group, topic) = ("sticky-group", "sticky-topic");
    setup(&broker, topic);
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let assignor = "cooperative-sticky";

    let mut a = Member::join(&broker.addr, group, topic, assignor, "member-a");
    poll_until(&mut [&mut a], "A owns all partitions", |s| {
        s[0].len() == PARTITIONS as usize
    });
    let mut b = Member::join(&broker.addr, group, topic, assignor, "member-b");
    poll_until(&mut [&mut a, &mut b], "A and B share the partitions", |s| {
        shared_by_all(s) && s[0].len() == 3
    });
    // A gave up exactly the three partitions B now has, never its whole assignment.
    let a_revoked: Vec<BTreeSet<i32>> = a.consumer.context().revocations.lock().unwrap().clone();
    assert_eq!(
        a_revoked,
        vec![b.assignment()],
        "A's revocations: {a_revoked:?}"
    );
    let (a_before, b_before) = (a.assignment(), b.assignment());

    // A third member (kcat, same assignor) takes one partition from each.
    let mut c = kcat_member(&broker.addr, group, topic, assignor);
    poll_until(
        &mut [&mut a, &mut b],
        "C takes a partition from A and from B",
        |s| s[0].len() == 2 && s[1].len() == 2 && owned(s).is_some(),
    );
    assert!(
        a.assignment().is_subset(&a_before),
        "sticky: A only lost partitions"
    );
    assert!(
        b.assignment().is_subset(&b_before),
        "sticky: B only lost partitions"
    );
    wait_for_stable_members(&mut conn, group, 3, &mut [&mut a, &mut b]);
    let (a_with_c, b_with_c) = (a.assignment(), b.assignment());
    let b_revocations_before = b.consumer.context().revocations.lock().unwrap().len();

    // C dies; after its session timeout A and B get its partitions and keep their own.
    kill9(&mut c);
    poll_until(
        &mut [&mut a, &mut b],
        "A and B take over the dead member's partitions",
        shared_by_all,
    );
    assert!(a_with_c.is_subset(&a.assignment()), "A kept its partitions");
    assert!(b_with_c.is_subset(&b.assignment()), "B kept its partitions");
    assert_eq!(
        b.consumer.context().revocations.lock().unwrap().len(),
        b_revocations_before,
        "taking over revokes nothing from the survivors"
    );

    // B leaves; A keeps its partitions and gains B's.
    let a_before = a.assignment();
    drop(b);
    poll_until(&mut [&mut a], "A owns all partitions again", |s| {
        s[0].len() == PARTITIONS as usize
    });
    assert!(a_before.is_subset(&a.assignment()));
    let members = wait_for_stable_members(&mut conn, group, 1, &mut [&mut a]);
    assert_eq!(members.values().next().unwrap().len(), PARTITIONS as usize);
    assert!(
        *a.consumer.context().assignments.lock().unwrap() >= 4,
        "one assignment per rebalance"
    );
    assert!(
        a.consumed.len() >= MESSAGES_PER_PARTITION * 3,
        "A consumed {}",
        a.consumed.len()
    );
}

#[test]
fn committed_offsets_survive_broker_restarts_and_a_new_member_resumes_from_them() {
    // Offsets committed by a group (and by a consumer that only assigns) are read back after a clean restart and after kill -9.
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let (group, topic) = ("restart-group", "restart-topic");
    setup(&broker, topic);
    let all_partitions: Vec<i32> = (0..PARTITIONS).collect();

    // A member reads everything, then commits the end of every partition but partition 2, rewound to 42.
    let mut a = Member::join_with(&broker.addr, group, topic, "range", "member-a", false);
    poll_until(&mut [&mut a], "A owns all partitions", |s| {
        s[0].len() == PARTITIONS as usize
    });
    let deadline = Instant::now() + GROUP_SETTLE_TIMEOUT;
    while a.consumed.len() < PARTITIONS as usize * MESSAGES_PER_PARTITION {
        assert!(
            Instant::now() < deadline,
            "consumed only {}",
            a.consumed.len()
        );
        a.poll_once();
    }
    let mut commit = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        let offset = if partition == 2 {
            42
        } else {
            MESSAGES_PER_PARTITION as i64
        };
        commit
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .unwrap();
    }
    a.consumer
        .commit(&commit, CommitMode::Sync)
        .expect("commit");
    drop(a);

    // A consumer with manual assignment commits as a "simple" group (generation -1, no member id).
    let simple: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", "simple-group")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(7))
        .unwrap();
    simple.assign(&assignment).unwrap();
    simple
        .commit(&assignment, CommitMode::Sync)
        .expect("simple commit");
    drop(simple);

    let mut expected = vec![MESSAGES_PER_PARTITION as i64; PARTITIONS as usize];
    expected[2] = 42;
    let check = |broker: &BrokerProcess, when: &str| {
        let mut conn = RawConnection::connect(&broker.addr).unwrap();
        tests::wait_for_group_coordinator(&mut conn, group).unwrap();
        assert_eq!(
            tests::committed_offsets(&mut conn, group, topic, &all_partitions).unwrap(),
            expected,
            "{when}"
        );
        assert_eq!(
            tests::committed_offsets(&mut conn, "simple-group", topic, &[0, 1]).unwrap(),
            vec![7, -1],
            "{when}"
        );
        let described = tests::describe_group(&mut conn, group).unwrap();
        assert_eq!(described.group_state.as_str(), "Empty", "{when}: A closed");
    };
    check(&broker, "before any restart");
    assert_eq!(broker.terminate().unwrap(), 0);
    broker.restart().unwrap();
    check(&broker, "after a clean restart");
    assert!(broker.wait_for_output("loaded groups and offsets"));
    broker.kill9().unwrap();
    broker.restart().unwrap();
    check(&broker, "after kill -9");

    // A new member resumes where the group left off: only partition 2's offsets 42..100.
    let mut b = Member::join(&broker.addr, group, topic, "range", "member-b");
    let deadline = Instant::now() + GROUP_SETTLE_TIMEOUT;
    while b.consumed.len() < MESSAGES_PER_PARTITION - 42 {
        assert!(
            Instant::now() < deadline,
            "consumed only {:?}",
            b.consumed.len()
        );
        b.poll_once();
    }
    // Nothing else shows up.
    let quiet_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet_until {
        b.poll_once();
    }
    let expected_resume: Vec<(i32, i64)> = (42..MESSAGES_PER_PARTITION as i64)
        .map(|o| (2, o))
        .collect();
    assert_eq!(b.consumed, expected_resume);
}
