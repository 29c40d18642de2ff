//! Clusters of real broker processes on loopback: membership, replica
//! placement, failover of partition leaders and of the controller, brokers
//! joining and leaving, and real clients following leadership changes.
//!
//! Followers do not replicate data yet, so these tests check metadata only,
//! never that records survive a leader change. Every test prints the recovery
//! times it measured (`cargo test ... -- --nocapture` shows them).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use tests::cluster::FAST_FAILURE_SETTINGS;
use tests::{Cluster, ClusterView};

/// The `broker.session.timeout.ms` of `FAST_FAILURE_SETTINGS`.
const SESSION_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a metadata change may take to reach every broker once decided
/// (a metadata log round trip and a heartbeat, with slack for a loaded machine).
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the voters may take to elect a new controller after the leader
/// died: the Raft lease and election timeouts (1.5-2.7 s, docs/controller.md) with slack.
const CONTROLLER_FAILOVER_BOUND: Duration = Duration::from_secs(10);
/// How long the partitions of a `kill -9`'d broker may stay with it as leader:
/// the session timeout, then the fencing decision and its propagation.
const LEADER_FAILOVER_BOUND: Duration = Duration::from_secs(3 + 5);
/// How long after a controlled shutdown's exit its leaderships may still show:
/// shorter than the session timeout, so it is the shutdown that moved them,
/// not fencing.
const CONTROLLED_SHUTDOWN_VISIBLE_BOUND: Duration = Duration::from_secs(2);
/// INVALID_REPLICATION_FACTOR.
const INVALID_REPLICATION_FACTOR: i16 = 38;

fn start(voters: usize, broker_only: usize) -> Cluster {
    let cluster =
        Cluster::start(voters, broker_only, FAST_FAILURE_SETTINGS).expect("cluster starts");
    assert_eq!(
        SESSION_TIMEOUT.as_millis().to_string(),
        FAST_FAILURE_SETTINGS[0].rsplit('=').next().unwrap(),
        "SESSION_TIMEOUT matches the settings"
    );
    cluster
}

/// Waits until every node agrees on the brokers `expected` and on a controller among `voters`.
fn wait_for_membership(cluster: &Cluster, expected: &[i32]) -> ClusterView {
    let voters = cluster.voter_ids();
    cluster.wait_for_agreement(
        &format!("every node lists brokers {expected:?} and one controller"),
        PROPAGATION_TIMEOUT,
        |view| view.broker_ids() == expected && voters.contains(&view.controller_id),
    )
}

/// Creates `topic` through node `via` and waits until every node shows all its
/// partitions with a leader.
fn create_and_wait(
    cluster: &Cluster,
    via: i32,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
) -> ClusterView {
    let code = cluster
        .create_topic(via, topic, partitions, replication_factor)
        .expect("CreateTopics answered");
    assert_eq!(
        code, 0,
        "CreateTopics {topic} x{replication_factor} via node {via}"
    );
    cluster.wait_for_agreement(
        &format!("every node shows {topic} with {partitions} led partitions"),
        PROPAGATION_TIMEOUT,
        |view| {
            let p = view.partitions(topic);
            p.len() == partitions as usize && p.iter().all(|p| p.leader >= 0)
        },
    )
}

/// Each partition has `factor` distinct replicas, the ISR is the replica set,
/// and the leader is the first replica.
fn assert_fully_replicated(view: &ClusterView, topic: &str, factor: usize) {
    for p in view.partitions(topic) {
        let replicas: BTreeSet<i32> = p.replicas.iter().copied().collect();
        assert_eq!(replicas.len(), factor, "{topic}-{}: {view}", p.partition);
        assert_eq!(p.replicas.len(), factor, "{topic}-{}: {view}", p.partition);
        let isr: BTreeSet<i32> = p.isr.iter().copied().collect();
        assert_eq!(
            isr, replicas,
            "{topic}-{}: ISR = replicas: {view}",
            p.partition
        );
        assert_eq!(p.leader, p.replicas[0], "{topic}-{}: {view}", p.partition);
        assert_eq!(p.error_code, 0, "{topic}-{}: {view}", p.partition);
    }
}

/// The brokers leading at least one partition of `topic`.
fn leaders(view: &ClusterView, topic: &str) -> BTreeSet<i32> {
    view.partitions(topic).iter().map(|p| p.leader).collect()
}

/// A broker that leads a partition of `topic` and is not the controller.
fn leader_not_controller(view: &ClusterView, topic: &str) -> i32 {
    *leaders(view, topic)
        .iter()
        .find(|&&b| b != view.controller_id)
        .unwrap_or_else(|| panic!("every partition of {topic} led by the controller:\n{view}"))
}

#[test]
fn three_combined_nodes_agree_on_brokers_controller_and_replica_placement() {
    // Three voters see one broker list and one controller; factor 3 spreads replicas and leaders, factor 4 is refused.
    let cluster = start(3, 0);
    let view = wait_for_membership(&cluster, &[1, 2, 3]);
    assert_eq!(view.cluster_id.as_deref(), Some("harness-cluster"));
    let via = *cluster
        .node_ids()
        .iter()
        .find(|&&id| id != view.controller_id)
        .unwrap();
    let view = create_and_wait(&cluster, via, "spread", 6, 3);
    assert_fully_replicated(&view, "spread", 3);
    for broker in [1, 2, 3] {
        let led = view.led_by(broker).len();
        assert_eq!(led, 2, "each broker leads 2 of the 6 partitions:\n{view}");
    }
    assert!(view
        .partitions("spread")
        .iter()
        .all(|p| p.leader_epoch >= 0));

    let code = cluster.create_topic(via, "too-wide", 1, 4).unwrap();
    assert_eq!(code, INVALID_REPLICATION_FACTOR, "factor 4 on 3 brokers");
    // Every node answers the same, and the refused topic exists nowhere.
    let agreed = cluster.wait_for_agreement(
        "every node gives the same Metadata",
        PROPAGATION_TIMEOUT,
        |v| v.partitions("spread").len() == 6,
    );
    assert_eq!(agreed, view);
    assert!(!agreed.topics.contains_key("too-wide"), "{agreed}");
}

#[test]
fn controller_leader_kill9_elects_a_new_controller_and_topics_can_still_be_created() {
    // kill -9 of the active controller: the other voters elect one of themselves, and CreateTopics keeps working.
    let mut cluster = start(3, 0);
    wait_for_membership(&cluster, &[1, 2, 3]);
    let before = create_and_wait(&cluster, 1, "before-failover", 3, 3);
    let old = before.controller_id;
    let survivors: Vec<i32> = [1, 2, 3].into_iter().filter(|&b| b != old).collect();
    let asked = survivors[0];
    let led = before.led_by(old);
    assert!(
        !led.is_empty(),
        "the controller leads a partition too:\n{before}"
    );

    cluster.kill9(old);
    let killed_at = Instant::now();
    let elected = cluster.wait_for(
        asked,
        &format!("a controller other than the killed node {old}"),
        CONTROLLER_FAILOVER_BOUND,
        |v| v.controller_id != old && survivors.contains(&v.controller_id),
    );
    let election = killed_at.elapsed();
    eprintln!(
        "controller failover: node {old} killed, node {} controller after {election:?}",
        elected.controller_id
    );

    // Right after the election the killed node may still be within its session, so
    // it may be given replicas; only the answer and the topic's existence are checked.
    let view = create_and_wait(&cluster, asked, "after-failover", 3, 1);
    assert_eq!(view.controller_id, elected.controller_id);

    // The new controller gives the old one a full session before fencing it,
    // so its partitions move a session timeout after the election.
    let fenced = cluster.wait_for_agreement(
        &format!("the survivors drop the killed node {old} and re-lead its partitions"),
        CONTROLLER_FAILOVER_BOUND + LEADER_FAILOVER_BOUND,
        |v| v.broker_ids() == survivors && v.led_by(old).is_empty(),
    );
    eprintln!(
        "controller failover: node {old} fenced and its {} partitions re-led {:?} after the kill",
        led.len(),
        killed_at.elapsed()
    );
    assert_eq!(fenced.controller_id, elected.controller_id);
    for (topic, partition) in &led {
        let (was, now) = (
            before.partition(topic, *partition),
            fenced.partition(topic, *partition),
        );
        assert!(survivors.contains(&now.leader), "{fenced}");
        assert!(now.leader_epoch > was.leader_epoch, "{fenced}");
    }

    // The new controller places replicas on live brokers only.
    let code = cluster.create_topic(asked, "three-of-two", 1, 3).unwrap();
    assert_eq!(
        code, INVALID_REPLICATION_FACTOR,
        "factor 3 on 2 live brokers"
    );
    let view = create_and_wait(&cluster, survivors[1], "on-survivors", 4, 2);
    assert_fully_replicated(&view, "on-survivors", 2);
    for p in view.partitions("on-survivors") {
        assert!(!p.replicas.contains(&old), "{view}");
    }
}

#[test]
fn broker_kill9_loses_its_leaderships_within_the_session_timeout_and_rejoins_after_restart() {
    // kill -9 of a leader that is not the controller: fenced, its partitions re-elected from the ISR, listed again after a restart.
    let mut cluster = start(3, 0);
    wait_for_membership(&cluster, &[1, 2, 3]);
    let before = create_and_wait(&cluster, 1, "moves", 6, 3);
    let victim = leader_not_controller(&before, "moves");
    let controller = before.controller_id;
    let survivors: Vec<i32> = [1, 2, 3].into_iter().filter(|&b| b != victim).collect();
    let led = before.led_by(victim);
    assert!(!led.is_empty());

    cluster.kill9(victim);
    let killed_at = Instant::now();
    let after = cluster.wait_for(
        controller,
        &format!("every partition node {victim} led has another leader, and it is unlisted"),
        LEADER_FAILOVER_BOUND,
        |v| {
            !v.brokers.contains_key(&victim)
                && led.iter().all(|(topic, partition)| {
                    let now = v.partition(topic, *partition);
                    survivors.contains(&now.leader)
                })
        },
    );
    let failover = killed_at.elapsed();
    eprintln!(
        "leader failover: node {victim} killed, its {} partitions re-led after {failover:?} \
         (session timeout {SESSION_TIMEOUT:?})",
        led.len()
    );
    for (topic, partition) in &led {
        let (old, new) = (
            before.partition(topic, *partition),
            after.partition(topic, *partition),
        );
        assert!(
            new.leader_epoch > old.leader_epoch,
            "{topic}-{partition}: the leader epoch grows with the leader change:\n{after}"
        );
        assert!(
            !new.isr.contains(&victim),
            "{topic}-{partition} ISR:\n{after}"
        );
        assert!(
            new.isr.contains(&new.leader),
            "{topic}-{partition}:\n{after}"
        );
    }
    // Partitions it did not lead keep their leader.
    for p in before.partitions("moves") {
        if p.leader != victim {
            assert_eq!(after.partition("moves", p.partition).leader, p.leader);
        }
    }
    cluster.wait_for_agreement(
        "both survivors give the same Metadata",
        PROPAGATION_TIMEOUT,
        |v| v.broker_ids() == survivors,
    );

    let restarted_at = Instant::now();
    cluster.restart(victim);
    wait_for_membership(&cluster, &[1, 2, 3]);
    eprintln!(
        "leader failover: node {victim} listed again {:?} after its restart",
        restarted_at.elapsed()
    );
}

#[test]
fn broker_only_nodes_are_listed_and_a_topic_of_factor_five_uses_all_five_brokers() {
    // 3 voters + 2 broker-only nodes: five brokers listed, the controller a voter, factor 5 on all of them.
    let cluster = start(3, 2);
    let view = wait_for_membership(&cluster, &[1, 2, 3, 4, 5]);
    assert!([1, 2, 3].contains(&view.controller_id), "{view}");
    let view = create_and_wait(&cluster, 5, "five", 5, 5);
    assert_fully_replicated(&view, "five", 5);
    assert_eq!(
        leaders(&view, "five"),
        BTreeSet::from([1, 2, 3, 4, 5]),
        "{view}"
    );
}

#[test]
fn a_broker_added_to_a_running_cluster_is_used_by_topics_created_afterwards() {
    // Scale-out: a fourth (broker-only) node joins three running nodes, none restarted, and factor 4 uses it.
    let mut cluster = start(3, 0);
    wait_for_membership(&cluster, &[1, 2, 3]);
    let pids: Vec<u32> = [1, 2, 3].iter().map(|&id| cluster.pid(id)).collect();
    let code = cluster.create_topic(1, "before-scale-out", 1, 4).unwrap();
    assert_eq!(code, INVALID_REPLICATION_FACTOR, "factor 4 on 3 brokers");

    let added_at = Instant::now();
    let added = cluster.add_broker();
    assert_eq!(added, 4);
    wait_for_membership(&cluster, &[1, 2, 3, 4]);
    eprintln!(
        "scale-out: node {added} started and listed by every node after {:?}",
        added_at.elapsed()
    );
    let view = create_and_wait(&cluster, added, "after-scale-out", 4, 4);
    assert_fully_replicated(&view, "after-scale-out", 4);
    assert!(leaders(&view, "after-scale-out").contains(&added), "{view}");
    let still: Vec<u32> = [1, 2, 3].iter().map(|&id| cluster.pid(id)).collect();
    assert_eq!(pids, still, "the first three nodes kept running");
}

#[test]
fn sigterm_exits_zero_after_moving_the_brokers_leaderships_away() {
    // SIGTERM is a controlled shutdown: exit 0, and no partition lists the broker as leader, before any session expiry.
    let mut cluster = start(3, 0);
    wait_for_membership(&cluster, &[1, 2, 3]);
    let before = create_and_wait(&cluster, 1, "drain", 6, 3);
    let leaving = leader_not_controller(&before, "drain");
    let controller = before.controller_id;
    let led = before.led_by(leaving);

    let code = cluster.terminate(leaving);
    let exited_at = Instant::now();
    assert_eq!(code, 0, "output:\n{}", cluster.output(leaving));
    let after = cluster.wait_for(
        controller,
        &format!("no partition led by node {leaving}, which shut down"),
        CONTROLLED_SHUTDOWN_VISIBLE_BOUND,
        |v| {
            v.led_by(leaving).is_empty()
                && v.partitions("drain").iter().all(|p| p.leader >= 0)
                && !v.brokers.contains_key(&leaving)
        },
    );
    eprintln!(
        "controlled shutdown: node {leaving} led {} partitions; none {:?} after its exit",
        led.len(),
        exited_at.elapsed()
    );
    for (topic, partition) in &led {
        assert!(
            after.partition(topic, *partition).leader_epoch
                > before.partition(topic, *partition).leader_epoch,
            "{topic}-{partition}:\n{after}"
        );
    }
}

/// How long a client may take to see a new leader after a `kill -9`: the
/// failover itself and a few metadata refreshes.
const CLIENT_FOLLOW_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn librdkafka_metadata_follows_a_partition_leader_kill9() {
    // librdkafka, bootstrapped with the whole cluster, sees the brokers and leaders, and the new leader after a kill -9.
    let mut cluster = start(3, 0);
    wait_for_membership(&cluster, &[1, 2, 3]);
    let before = create_and_wait(&cluster, 1, "follow-rdkafka", 3, 3);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .unwrap();
    let client_leader = |partition: i32| -> Option<(Vec<i32>, i32)> {
        let metadata = producer
            .client()
            .fetch_metadata(Some("follow-rdkafka"), Duration::from_secs(5))
            .ok()?;
        let mut brokers: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
        brokers.sort();
        let topic = metadata.topics().first()?;
        let p = topic.partitions().iter().find(|p| p.id() == partition)?;
        Some((brokers, p.leader()))
    };
    let victim = leader_not_controller(&before, "follow-rdkafka");
    let (_, partition) = before.led_by(victim)[0].clone();
    let (brokers, leader) = client_leader(partition).expect("librdkafka fetches metadata");
    assert_eq!(brokers, vec![1, 2, 3]);
    assert_eq!(
        leader, victim,
        "librdkafka's leader is the cluster's:\n{before}"
    );

    cluster.kill9(victim);
    let killed_at = Instant::now();
    let new_leader = loop {
        if let Some((brokers, leader)) = client_leader(partition) {
            if leader >= 0 && leader != victim {
                assert!(!brokers.contains(&victim), "{brokers:?}");
                break leader;
            }
        }
        assert!(
            killed_at.elapsed() < CLIENT_FOLLOW_TIMEOUT,
            "librdkafka still sees node {victim} leading partition {partition}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "librdkafka: partition {partition} led by node {new_leader} instead of {victim} after {:?}",
        killed_at.elapsed()
    );
    let survivor = if victim == 1 { 2 } else { 1 };
    let view = cluster.view(survivor).unwrap();
    assert_eq!(
        view.partition("follow-rdkafka", partition).leader,
        new_leader,
        "librdkafka's new leader is the cluster's:\n{view}"
    );
}

#[test]
fn kafka_python_metadata_follows_a_partition_leader_kill9() {
    // kafka-python's admin client, living through a kill -9 of a partition leader, sees the new leader.
    let mut cluster = start(3, 0);
    wait_for_membership(&cluster, &[1, 2, 3]);
    let before = create_and_wait(&cluster, 1, "follow-python", 3, 3);
    let victim = leader_not_controller(&before, "follow-python");
    let (_, partition) = before.led_by(victim)[0].clone();

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join("kafka_python_cluster_metadata.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(cluster.bootstrap())
        .arg("follow-python")
        .arg(partition.to_string())
        .arg(CLIENT_FOLLOW_TIMEOUT.as_secs().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut read_line = || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    };
    assert_eq!(read_line(), "brokers 1 2 3");
    assert_eq!(read_line(), format!("leader {partition} {victim}"));

    cluster.kill9(victim);
    let killed_at = Instant::now();
    writeln!(child.stdin.take().unwrap(), "killed").unwrap();
    let new = read_line();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success() && rest.contains("kafka-python follows the leader ok"),
        "script failed: {new}\n{rest}\nstderr:\n{stderr}"
    );
    eprintln!(
        "kafka-python: {new} (was {victim}) after {:?}",
        killed_at.elapsed()
    );
    let new_leader: i32 = new.rsplit(' ').next().unwrap().parse().unwrap();
    let survivor = if victim == 1 { 2 } else { 1 };
    let view = cluster.view(survivor).unwrap();
    assert_eq!(
        view.partition("follow-python", partition).leader,
        new_leader,
        "kafka-python's new leader is the cluster's:\n{view}"
    );
}

/// How soon a broker restarted after a controlled shutdown may serve again:
/// less than a session timeout, since it was fenced and nothing waits on its session.
const RESTART_AFTER_SHUTDOWN_BOUND: Duration = Duration::from_secs(2);

#[test]
fn a_broker_restarted_after_a_controlled_shutdown_serves_again_within_a_session_timeout() {
    // After SIGTERM the broker is fenced, so its next incarnation registers at once, as in Kafka (a fenced broker has no valid session).
    let mut cluster = start(3, 0);
    let view = wait_for_membership(&cluster, &[1, 2, 3]);
    let leaving = *[1, 2, 3]
        .iter()
        .find(|&&b| b != view.controller_id)
        .unwrap();
    assert_eq!(cluster.terminate(leaving), 0);
    let restarted_at = Instant::now();
    cluster.restart(leaving);
    let serving = restarted_at.elapsed();
    eprintln!("restart after a controlled shutdown: node {leaving} serving after {serving:?}");
    assert!(
        serving < RESTART_AFTER_SHUTDOWN_BOUND,
        "node {leaving} took {serving:?} (session timeout {SESSION_TIMEOUT:?}); its log:\n{}",
        cluster.output(leaving)
    );
}
