//! Tests of the metadata quorum: real openraft nodes in one process, talking
//! over TCP on 127.0.0.1, each with its own temporary directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::storage::file::CrashMode;
use crate::storage::FaultInjector;

/// Bound on waiting for a leader in a cluster of several voters.
const LEADER_WAIT: Duration = Duration::from_secs(15);
/// Bound on waiting for entries to be applied everywhere.
const APPLY_WAIT: Duration = Duration::from_secs(15);
/// A one-voter quorum must take proposals this soon after start.
const SINGLE_VOTER_READY_MAX: Duration = Duration::from_secs(2);
/// How often a wait re-checks its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Quick timeouts for tests that are not about timing.
const TEST_ELECTION_TIMEOUT_MS: (u64, u64) = (200, 400);
const TEST_HEARTBEAT_INTERVAL_MS: u64 = 50;

/// A state machine that keeps every payload applied, in order.
#[derive(Default)]
struct VecMachine {
    applied: Mutex<Vec<(u64, Vec<u8>)>>,
    restores: Mutex<u32>,
}

impl VecMachine {
    fn applied(&self) -> Vec<(u64, Vec<u8>)> {
        self.applied.lock().unwrap().clone()
    }

    fn restores(&self) -> u32 {
        *self.restores.lock().unwrap()
    }
}

impl StateMachine for VecMachine {
    fn apply(&self, index: u64, payload: &[u8]) {
        self.applied.lock().unwrap().push((index, payload.to_vec()));
    }

    fn snapshot(&self) -> (u64, Vec<u8>) {
        let applied = self.applied.lock().unwrap();
        let index = applied.last().map_or(0, |(index, _)| *index);
        (index, bincode::serialize(&*applied).unwrap())
    }

    fn restore(&self, _index: u64, snapshot: &[u8]) {
        *self.applied.lock().unwrap() = bincode::deserialize(snapshot).unwrap();
        *self.restores.lock().unwrap() += 1;
    }
}

/// One running node with what it needs to be restarted.
struct Node {
    quorum: Quorum,
    machine: Arc<VecMachine>,
    config: QuorumConfig,
}

fn test_config(node_id: i32, voters: &BTreeMap<i32, SocketAddr>, dir: &Path) -> QuorumConfig {
    let mut config = QuorumConfig::new(
        node_id,
        voters.clone(),
        None,
        dir.join(format!("node-{node_id}")),
    );
    config.election_timeout_ms = TEST_ELECTION_TIMEOUT_MS;
    config.heartbeat_interval_ms = TEST_HEARTBEAT_INTERVAL_MS;
    config
}

async fn start_node(config: QuorumConfig, listener: Option<TcpListener>) -> Node {
    let machine = Arc::new(VecMachine::default());
    let quorum = Quorum::start_on(
        config.clone(),
        listener,
        machine.clone(),
        None,
        CancellationToken::new(),
    )
    .await
    .expect("start quorum");
    Node {
        quorum,
        machine,
        config,
    }
}

/// Restarts a stopped node from its directory, on the same address.
async fn restart_node(config: QuorumConfig) -> Node {
    let listener = match config.listen {
        Some(addr) => Some(TcpListener::bind(addr).await.expect("rebind")),
        None => None,
    };
    start_node(config, listener).await
}

async fn bind_local() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

/// Starts `count` voters (ids 1..=count) with `adjust` applied to each config.
async fn start_voters(count: i32, dir: &Path, adjust: impl Fn(&mut QuorumConfig)) -> Vec<Node> {
    let mut listeners = Vec::new();
    let mut voters = BTreeMap::new();
    for id in 1..=count {
        let listener = bind_local().await;
        voters.insert(id, listener.local_addr().unwrap());
        listeners.push(listener);
    }
    let mut nodes = Vec::new();
    for (id, listener) in (1..=count).zip(listeners) {
        let mut config = test_config(id, &voters, dir);
        config.listen = Some(voters[&id]);
        adjust(&mut config);
        nodes.push(start_node(config, Some(listener)).await);
    }
    nodes
}

/// Waits until `condition` holds, failing the test after `timeout`.
async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits until exactly one of `nodes` leads and all of them name it; returns its position.
async fn wait_for_one_leader(nodes: &[&Node]) -> usize {
    wait_until("one agreed leader", LEADER_WAIT, || {
        let leaders: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].quorum.is_leader())
            .collect();
        leaders.len() == 1
            && nodes
                .iter()
                .all(|n| n.quorum.leader() == Some(nodes[leaders[0]].quorum.node_id()))
    })
    .await;
    (0..nodes.len())
        .find(|&i| nodes[i].quorum.is_leader())
        .expect("a leader")
}

async fn wait_applied(node: &Node, count: usize) {
    wait_until(
        &format!("node {} to apply {count} payloads", node.config.node_id),
        APPLY_WAIT,
        || node.machine.applied().len() >= count,
    )
    .await;
}

fn payload(i: usize) -> Vec<u8> {
    format!("payload-{i}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_voter_elects_itself_and_commits_without_a_network() {
    // A one-voter quorum with no listener leads and commits within the bound after start.
    let dir = tempfile::tempdir().unwrap();
    let voters = BTreeMap::from([(1, "127.0.0.1:9".parse().unwrap())]);
    let started = Instant::now();
    let node = start_node(test_config(1, &voters, dir.path()), None).await;
    let mut index = None;
    while index.is_none() {
        match node.quorum.propose(payload(0)).await {
            Ok(i) => index = Some(i),
            Err(QuorumError::NotLeader { .. }) => {
                assert!(
                    started.elapsed() < SINGLE_VOTER_READY_MAX,
                    "no leader in time"
                );
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Err(error) => panic!("propose failed: {error}"),
        }
    }
    let elapsed = started.elapsed();
    println!("single voter: first proposal committed {elapsed:?} after start");
    assert!(elapsed < SINGLE_VOTER_READY_MAX);
    let index = index.unwrap();
    assert_eq!(node.machine.applied(), vec![(index, payload(0))]);
    assert_eq!(node.quorum.leader(), Some(1));
    let description = node.quorum.describe();
    assert_eq!(description.leader, Some(1));
    assert_eq!(description.high_watermark, index as i64 + 1);
    assert_eq!(description.voters.len(), 1);
    node.quorum.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_elect_one_leader_and_apply_the_same_payloads_in_order() {
    // Every voter applies the leader's proposals, the same ones in the same order.
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_voters(3, dir.path(), |_| {}).await;
    let started = Instant::now();
    let leader = wait_for_one_leader(&nodes.iter().collect::<Vec<_>>()).await;
    println!(
        "three voters: leader {} agreed {:?} after start",
        leader + 1,
        started.elapsed()
    );
    let mut indexes = Vec::new();
    for i in 0..20 {
        indexes.push(
            nodes[leader]
                .quorum
                .propose(payload(i))
                .await
                .expect("propose"),
        );
    }
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "indexes increase");
    let expected: Vec<(u64, Vec<u8>)> = indexes
        .iter()
        .enumerate()
        .map(|(i, &index)| (index, payload(i)))
        .collect();
    assert_eq!(nodes[leader].machine.applied(), expected);
    for node in &nodes {
        wait_applied(node, 20).await;
        assert_eq!(node.machine.applied(), expected);
    }
    let description = nodes[leader].quorum.describe();
    assert_eq!(description.leader, Some(leader as i32 + 1));
    assert_eq!(description.voters.len(), 3);
    assert!(description.learners.is_empty());
    assert!(description.leader_epoch >= 1);
    assert_eq!(
        description.high_watermark,
        *indexes.last().unwrap() as i64 + 1
    );
    for node in nodes {
        node.quorum.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lowest_voter_initializes_the_cluster() {
    // Voters 2 and 3 started first stay pristine; voter 1 alone initializes, once, for all.
    let dir = tempfile::tempdir().unwrap();
    let mut listeners = BTreeMap::new();
    let mut voters = BTreeMap::new();
    for id in 1..=3 {
        let listener = bind_local().await;
        voters.insert(id, listener.local_addr().unwrap());
        listeners.insert(id, listener);
    }
    let mut nodes = Vec::new();
    for id in [3, 2, 1] {
        let mut config = test_config(id, &voters, dir.path());
        config.listen = Some(voters[&id]);
        let node = start_node(config, listeners.remove(&id)).await;
        let initialized = node.quorum.raft().is_initialized().await.unwrap();
        assert_eq!(
            initialized,
            id == 1,
            "voter {id} initialized: {initialized}"
        );
        nodes.push(node);
    }
    let leader = wait_for_one_leader(&nodes.iter().collect::<Vec<_>>()).await;
    nodes[leader]
        .quorum
        .propose(payload(0))
        .await
        .expect("propose");
    for node in &nodes {
        wait_applied(node, 1).await;
        let metrics = node.quorum.raft().metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voter_ids: Vec<NodeId> = membership.voter_ids().collect();
        assert_eq!(voter_ids, vec![1, 2, 3]);
        // The one initialization is the membership entry at index 0.
        assert_eq!(
            metrics.membership_config.log_id().map(|id| id.index),
            Some(0)
        );
    }
    for node in nodes {
        node.quorum.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposal_on_a_follower_is_refused_with_the_leader_id() {
    // A follower does not append; it names the leader instead.
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_voters(3, dir.path(), |_| {}).await;
    let leader = wait_for_one_leader(&nodes.iter().collect::<Vec<_>>()).await;
    let follower = (leader + 1) % 3;
    match nodes[follower].quorum.propose(payload(0)).await {
        Err(QuorumError::NotLeader { leader: named }) => assert_eq!(named, Some(leader as i32 + 1)),
        other => panic!("expected NotLeader, got {other:?}"),
    }
    assert!(nodes[follower].machine.applied().is_empty());
    for node in nodes {
        node.quorum.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_is_elected_and_commits_after_the_leader_stops() {
    // With the default timeouts, the two remaining voters elect a leader that commits.
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_voters(3, dir.path(), |config| {
        config.election_timeout_ms = ELECTION_TIMEOUT_MS_DEFAULT;
        config.heartbeat_interval_ms = HEARTBEAT_INTERVAL_MS_DEFAULT;
    })
    .await;
    let started = Instant::now();
    let first = wait_for_one_leader(&nodes.iter().collect::<Vec<_>>()).await;
    println!(
        "default timeouts: first leader after {:?}",
        started.elapsed()
    );
    for i in 0..5 {
        nodes[first]
            .quorum
            .propose(payload(i))
            .await
            .expect("propose");
    }
    let mut nodes: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let old = nodes[first].take().unwrap();
    let old_id = old.config.node_id;
    let stopped_at = Instant::now();
    old.quorum.shutdown().await;
    let rest: Vec<&Node> = nodes.iter().flatten().collect();
    wait_until("a new leader", LEADER_WAIT, || {
        rest.iter().any(|n| n.quorum.is_leader())
            && rest
                .iter()
                .all(|n| n.quorum.leader().is_some_and(|l| l != old_id))
    })
    .await;
    let elected = stopped_at.elapsed();
    let leader = rest.iter().find(|n| n.quorum.is_leader()).unwrap();
    leader
        .quorum
        .propose(payload(5))
        .await
        .expect("propose on the new leader");
    let committed = stopped_at.elapsed();
    println!(
        "default timeouts: new leader {} elected {elected:?} after the old one stopped, first commit after {committed:?}",
        leader.config.node_id
    );
    for node in &rest {
        wait_applied(node, 6).await;
        let payloads: Vec<Vec<u8>> = node.machine.applied().into_iter().map(|(_, p)| p).collect();
        assert_eq!(payloads, (0..6).map(payload).collect::<Vec<_>>());
    }
    for node in nodes.into_iter().flatten() {
        node.quorum.shutdown().await;
    }
}

/// The base offsets of the segment files in a log directory, ascending.
fn segment_bases(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    bases
}

fn snapshot_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(state_machine::SNAPSHOT_SUFFIX))
        .collect();
    names.sort();
    names
}

/// A one-voter config that snapshots every 10 entries, with tiny segments.
fn snapshotting_config(dir: &Path) -> QuorumConfig {
    let voters = BTreeMap::from([(1, "127.0.0.1:9".parse().unwrap())]);
    let mut config = test_config(1, &voters, dir);
    config.snapshot_every_entries = 10;
    config.segment_bytes_max = 512;
    config
}

/// Waits until no snapshot is due or being built and the log is purged up
/// to the newest snapshot: the files stop changing.
async fn wait_snapshots_settled(quorum: &Quorum, snapshot_every_entries: u64) {
    wait_until("no snapshot or purge under way", APPLY_WAIT, || {
        let metrics = quorum.raft().metrics().borrow().clone();
        let applied = metrics.last_applied.map_or(0, |id| id.index);
        let snapshot = metrics.snapshot.map_or(0, |id| id.index);
        applied - snapshot < snapshot_every_entries && metrics.purged == metrics.snapshot
    })
    .await;
}

async fn wait_leader(node: &Node) {
    wait_until("the single voter to lead", LEADER_WAIT, || {
        node.quorum.is_leader()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_voter_recovers_snapshot_and_log_without_reinitializing() {
    // After a restart the state is the snapshot plus the entries after it, and the log goes on.
    let dir = tempfile::tempdir().unwrap();
    let config = snapshotting_config(dir.path());
    let node = start_node(config.clone(), None).await;
    wait_leader(&node).await;
    for i in 0..25 {
        node.quorum.propose(payload(i)).await.expect("propose");
    }
    wait_until("a snapshot", APPLY_WAIT, || {
        !snapshot_names(&config.dir).is_empty()
    })
    .await;
    let before = node.machine.applied();
    let membership_before = node
        .quorum
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .clone();
    node.quorum.shutdown().await;
    assert!(snapshot_names(&config.dir).len() <= state_machine::SNAPSHOTS_KEPT);

    let node = restart_node(config.clone()).await;
    assert_eq!(
        node.machine.restores(),
        1,
        "the newest snapshot is restored at start"
    );
    wait_leader(&node).await;
    wait_applied(&node, 25).await;
    assert_eq!(node.machine.applied(), before);
    let membership_after = node
        .quorum
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .clone();
    assert_eq!(
        membership_after, membership_before,
        "no second initialization"
    );
    let index = node
        .quorum
        .propose(payload(25))
        .await
        .expect("propose after restart");
    assert!(index > before.last().unwrap().0);
    node.quorum.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_follower_catches_up_with_what_it_missed() {
    // A follower stopped while the others commit and snapshot comes back with the same state.
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_voters(3, dir.path(), |config| {
        config.snapshot_every_entries = 10;
        config.segment_bytes_max = 512;
    })
    .await;
    let leader = wait_for_one_leader(&nodes.iter().collect::<Vec<_>>()).await;
    for i in 0..15 {
        nodes[leader]
            .quorum
            .propose(payload(i))
            .await
            .expect("propose");
    }
    let follower = (leader + 1) % 3;
    wait_applied(&nodes[follower], 15).await;
    let mut nodes: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let stopped = nodes[follower].take().unwrap();
    let config = stopped.config.clone();
    stopped.quorum.shutdown().await;
    let leader_node = nodes[leader].as_ref().unwrap();
    for i in 15..40 {
        leader_node
            .quorum
            .propose(payload(i))
            .await
            .expect("propose");
    }
    let restarted = restart_node(config).await;
    assert_eq!(
        restarted.machine.restores(),
        1,
        "its own snapshot is restored at start"
    );
    wait_applied(&restarted, 40).await;
    assert_eq!(restarted.machine.applied(), leader_node.machine.applied());
    nodes[follower] = Some(restarted);
    for node in nodes.into_iter().flatten() {
        node.quorum.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_log_reaches_a_late_learner_as_a_snapshot() {
    // Below the snapshot the log is gone; a learner added later gets the snapshot, then the
    // log, and after a restart from its own files what it missed.
    let dir = tempfile::tempdir().unwrap();
    let config = snapshotting_config(dir.path());
    let leader = start_node(config.clone(), None).await;
    wait_leader(&leader).await;
    for i in 0..35 {
        leader.quorum.propose(payload(i)).await.expect("propose");
    }
    wait_snapshots_settled(&leader.quorum, config.snapshot_every_entries).await;
    let purged = leader
        .quorum
        .raft()
        .metrics()
        .borrow()
        .purged
        .map(|id| id.index);
    let purged = purged.expect("35 entries make at least one snapshot and purge");
    assert!(purged >= 10);
    let first_base = segment_bases(&config.dir)[0];
    assert!(
        first_base > 0 && first_base <= purged + 1,
        "segments wholly below {purged} are deleted, the one holding it stays: first is {first_base}"
    );

    let learner_listener = bind_local().await;
    let learner_addr = learner_listener.local_addr().unwrap();
    let mut learner_config = test_config(9, &config.voters, dir.path());
    learner_config.listen = Some(learner_addr);
    let learner = start_node(learner_config, Some(learner_listener)).await;
    leader
        .quorum
        .add_learner(9, learner_addr)
        .await
        .expect("add learner");
    wait_applied(&learner, 35).await;
    assert_eq!(
        learner.machine.restores(),
        1,
        "caught up through a snapshot"
    );
    assert_eq!(learner.machine.applied(), leader.machine.applied());
    assert_eq!(learner.quorum.leader(), Some(1));
    assert!(!learner.quorum.is_leader());
    // And it follows the log from there on.
    leader.quorum.propose(payload(35)).await.expect("propose");
    wait_applied(&learner, 36).await;
    assert_eq!(learner.machine.applied(), leader.machine.applied());
    let description = leader.quorum.describe();
    assert_eq!(description.learners.len(), 1);
    assert_eq!(description.learners[0].node_id, 9);
    assert!(description.learners[0].last_fetch_timestamp_ms.is_some());
    match learner.quorum.propose(payload(99)).await {
        Err(QuorumError::NotLeader { leader: Some(1) }) => {}
        other => panic!("a learner must refuse proposals, got {other:?}"),
    }
    // A restarted learner starts from its own files and is fed what it missed.
    let learner_config = learner.config.clone();
    learner.quorum.shutdown().await;
    for i in 36..40 {
        leader.quorum.propose(payload(i)).await.expect("propose");
    }
    let learner = restart_node(learner_config).await;
    assert_eq!(
        learner.machine.restores(),
        1,
        "its stored snapshot is restored"
    );
    wait_applied(&learner, 40).await;
    assert_eq!(learner.machine.applied(), leader.machine.applied());
    leader
        .quorum
        .remove_learner(9)
        .await
        .expect("remove learner");
    assert!(leader.quorum.describe().learners.is_empty());
    learner.quorum.shutdown().await;
    leader.quorum.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_final_entry_is_dropped_on_restart() {
    // Cutting the last bytes of the log loses exactly the last entry; the log goes on from there.
    let dir = tempfile::tempdir().unwrap();
    let voters = BTreeMap::from([(1, "127.0.0.1:9".parse().unwrap())]);
    let config = test_config(1, &voters, dir.path());
    let node = start_node(config.clone(), None).await;
    wait_leader(&node).await;
    for i in 0..5 {
        node.quorum.propose(payload(i)).await.expect("propose");
    }
    let before = node.machine.applied();
    node.quorum.shutdown().await;
    let last_base = *segment_bases(&config.dir).last().unwrap();
    let log_path: PathBuf = config.dir.join(format!("{last_base:020}.log"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&log_path)
        .unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len - 3).unwrap();
    drop(file);

    let node = restart_node(config).await;
    wait_leader(&node).await;
    wait_applied(&node, 4).await;
    let index = node
        .quorum
        .propose(payload(5))
        .await
        .expect("propose after restart");
    let applied = node.machine.applied();
    assert_eq!(&applied[..4], &before[..4]);
    assert_eq!(applied.len(), 5, "the torn payload is gone: {applied:?}");
    assert_eq!(applied[4], (index, payload(5)));
    node.quorum.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_listener_hands_other_frames_to_the_application() {
    // A frame with a Kafka api key reaches the handler and its answer comes back; garbage closes the connection.
    let dir = tempfile::tempdir().unwrap();
    let listener = bind_local().await;
    let addr = listener.local_addr().unwrap();
    let voters = BTreeMap::from([(1, addr)]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler: FrameHandler = {
        let seen = seen.clone();
        Arc::new(move |frame: Bytes| {
            seen.lock().unwrap().push(frame.clone());
            async move {
                let mut response = BytesMut::new();
                response.put_u32(4 + 3);
                response.put_slice(&frame[4..8]);
                response.put_slice(b"ack");
                Some(response.freeze())
            }
            .boxed()
        })
    };
    let quorum = Quorum::start_on(
        test_config(1, &voters, dir.path()),
        Some(listener),
        Arc::new(VecMachine::default()),
        Some(handler),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    // BrokerHeartbeat (63) v0, correlation id 77, no client id, a 2-byte body.
    let mut request = BytesMut::new();
    request.put_u32(2 + 2 + 4 + 2 + 2);
    request.put_i16(63);
    request.put_i16(0);
    request.put_i32(77);
    request.put_i16(-1);
    request.put_slice(b"hb");
    socket.write_all(&request).await.unwrap();
    let (read, mut write) = socket.into_split();
    let mut frames = tokio_util::codec::FramedRead::new(read, protocol::frame::frame_codec(1024));
    let response = tokio::time::timeout(APPLY_WAIT, frames.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&response[..], &[0, 0, 0, 77, b'a', b'c', b'k']);
    assert_eq!(&seen.lock().unwrap()[0][..], &request[4..]);
    // A raft api key with a body that does not decode closes the connection.
    let mut garbage = BytesMut::new();
    garbage.put_u32(2 + 2 + 4 + 2 + 3);
    garbage.put_i16(wire::API_KEY_VOTE);
    garbage.put_i16(0);
    garbage.put_i32(78);
    garbage.put_i16(-1);
    garbage.put_slice(&[0xff, 0xff, 0xff]);
    write.write_all(&garbage).await.unwrap();
    let end = tokio::time::timeout(APPLY_WAIT, frames.next())
        .await
        .unwrap();
    assert!(end.is_none_or(|r| r.is_err()), "the connection is closed");
    quorum.shutdown().await;
}

/// Seeds of the power-loss test (each also picks the crash mode).
const POWER_LOSS_SEEDS: u64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_proposals_survive_a_power_loss() {
    // Whatever a power loss does to unflushed bytes, every acknowledged payload is there after a restart.
    for seed in 1..=POWER_LOSS_SEEDS {
        let mode = match seed % 3 {
            0 => CrashMode::DropUnflushed,
            1 => CrashMode::TornTail,
            _ => CrashMode::FlipBit,
        };
        let dir = tempfile::tempdir().unwrap();
        let config = snapshotting_config(dir.path());
        let faults = FaultInjector::new();
        let machine = Arc::new(VecMachine::default());
        let quorum = Quorum::start_with_files(
            config.clone(),
            None,
            machine.clone(),
            None,
            CancellationToken::new(),
            FileLayer::with_faults(faults.clone()),
        )
        .await
        .expect("start");
        wait_until("the single voter to lead", LEADER_WAIT, || {
            quorum.is_leader()
        })
        .await;
        let count = 23 + seed as usize;
        for i in 0..count {
            quorum.propose(payload(i)).await.expect("propose");
        }
        // A real crash stops everything at once; here a snapshot being built
        // or a purge deleting segments would go on writing beside the
        // simulated power loss, so the crash waits until neither is due.
        wait_snapshots_settled(&quorum, config.snapshot_every_entries).await;
        let acknowledged = machine.applied();
        quorum.crash().await;
        faults
            .simulate_power_loss(&config.dir, mode, seed)
            .expect("simulate power loss");

        let node = restart_node(config).await;
        wait_leader(&node).await;
        wait_applied(&node, count).await;
        assert_eq!(
            node.machine.applied(),
            acknowledged,
            "seed {seed}, {mode:?}: the acknowledged payloads, in order"
        );
        node.quorum.shutdown().await;
    }
}

#[test]
fn controller_voters_parse_from_the_command_line_form() {
    // `ID@HOST:PORT,...` gives the voter map; malformed lists are refused with a reason.
    let voters =
        QuorumConfig::parse_voters("1@127.0.0.1:9093, 2@[::1]:9094,3@localhost:9095").unwrap();
    assert_eq!(voters.len(), 3);
    assert_eq!(voters[&1], "127.0.0.1:9093".parse::<SocketAddr>().unwrap());
    assert_eq!(voters[&2], "[::1]:9094".parse::<SocketAddr>().unwrap());
    assert_eq!(voters[&3].port(), 9095);
    for bad in [
        "",
        "1",
        "x@127.0.0.1:1",
        "-1@127.0.0.1:1",
        "1@127.0.0.1",
        "1@127.0.0.1:1,1@127.0.0.1:2",
    ] {
        assert!(QuorumConfig::parse_voters(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn split_vote_breaker_waits_a_random_election_timeout_and_resets_on_a_leader() {
    // Leaderless, it fires after a time within the range, then waits afresh; a leader resets it.
    let (min, max) = (30, 60);
    let mut breaker = SplitVoteBreaker::new((min, max));
    assert!(!breaker.should_elect(true), "not at once");
    let started = Instant::now();
    wait_until("the breaker to fire", LEADER_WAIT, || {
        breaker.should_elect(true)
    })
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(min),
        "fired after {waited:?}"
    );
    assert!(!breaker.should_elect(true), "a fresh wait after firing");
    assert!(!breaker.should_elect(false));
    assert!(!breaker.should_elect(true), "a leader seen resets the wait");
    for _ in 0..100 {
        let timeout = random_timeout(min, max);
        assert!(timeout >= Duration::from_millis(min) && timeout < Duration::from_millis(max));
    }
}
