//! Fault tests on real processes: 3 brokers, replication factor 3,
//! `min.insync.replicas` 2, producers with `acks=all` and idempotence, and
//! faults injected while they produce: a paused leader (SIGSTOP), network cuts
//! (a follower, the leader from everyone, the Jepsen 2013 sequence), a rolling
//! restart and `kill -9` of the active controller.
//!
//! Cuts are real: the brokers run in network namespaces of their own
//! (`tests::netns`), and a cut drops every packet between two hosts, or
//! between a host and the test process, both ways. The oracle counts an
//! acknowledged record as committed and a failed or timed-out one as unknown,
//! never as absent (`tests::replication`, and the `verifier` binary in the
//! rolling-restart and controller scenarios). After each fault, healed: no
//! acknowledged record is lost, no offset holds two records, offsets are
//! dense, the ISR is full again within a named bound and every replica holds
//! the same batches, byte for byte. Recovery times are printed (`--nocapture`).
//!
//! `FAULT_SOAK=1` repeats every fault [`SOAK_ROUNDS`] times on one cluster
//! and produces longer between faults. Needs root and iproute2 for the
//! namespaces; see docs/replication.md, "Fault tests".

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use tests::cluster::FAST_FAILURE_SETTINGS;
use tests::netns::Network;
use tests::replication::{
    check_partition, read_partition, wait_for_identical_replicas, Oracle, RecordingProducer,
};
use tests::{Cluster, ClusterView, RawConnection};

const TOPIC: &str = "faults";
/// How long the ISR may take to be full again once a fault is healed: a
/// restart or an unfencing, catching up, and an AlterPartition committed.
const ISR_FULL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new leader (or a new controller) may take: a controller
/// election (about 3 s), a full session (3 s) that a new controller grants
/// every broker before fencing one, and the fencing batch itself.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the ISR may take to shrink after a cut: `replica.lag.time.max.ms`
/// (2 s), the leader's next lag check and the AlterPartition commit.
const ISR_SHRINK_TIMEOUT: Duration = Duration::from_secs(15);
/// How long acknowledgements may take to resume: librdkafka finding the new
/// leader (metadata refreshed every 500 ms) and retrying its batches.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long followers may take to hold the leader's whole log once healed.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How many more acknowledgements count as "writes go on".
const PROGRESS_RECORDS: usize = 200;
/// The same, under `FAULT_SOAK=1`: longer producing between faults.
const SOAK_PROGRESS_RECORDS: usize = 5_000;
/// How often each fault is repeated under `FAULT_SOAK=1`.
const SOAK_ROUNDS: usize = 5;
/// How long librdkafka waits for a response before it gives up on the
/// connection and retries elsewhere. A cut drops packets silently, so without
/// this a request sent to a cut-off leader hangs for librdkafka's default
/// 30 s (60 s for the socket) before the idempotent producer may retry it.
const CLIENT_REQUEST_TIMEOUT_MS: &str = "5000";
/// The pause between two sends of a workload: about 1,000 records a second,
/// enough to keep every fault busy and little enough to read back quickly.
const SEND_INTERVAL: Duration = Duration::from_millis(1);
/// The produce timeout of a probe sent to a stale or isolated leader: how
/// long that leader may wait for its high watermark before answering.
const PROBE_TIMEOUT_MS: i32 = 3_000;
/// The correlation id of a probe (one request per connection).
const PROBE_CORRELATION_ID: i32 = 1;
/// Produce version of the probes (as `tests::produce_to` speaks).
const PRODUCE_VERSION: i16 = 9;
/// Kafka's NOT_ENOUGH_REPLICAS.
const NOT_ENOUGH_REPLICAS: i16 = 19;
/// The verifier's producing rate in the scenarios that use it.
const VERIFIER_RATE: &str = "1000";
/// How long the verifier may take after SIGTERM: the reports still due
/// (bounded by its 30 s delivery timeout), then reading back and checking.
const VERIFIER_EXIT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the verifier may take to create its topic and start producing.
const VERIFIER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the harness polls a child process or a counter.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The fault tests' settings: fast failure detection, `min.insync.replicas`
/// 2, a follower out of the ISR after 2 s, quick refetches, no unclean
/// election (only an ISR member may lead), and no automatic preferred-leader
/// election, so that leadership stays where a failover put it and a
/// returning leader is seen to rejoin as a follower.
fn settings() -> Vec<&'static str> {
    let mut settings = FAST_FAILURE_SETTINGS.to_vec();
    settings.extend([
        "min.insync.replicas=2",
        "replica.lag.time.max.ms=2000",
        "replica.fetch.backoff.ms=100",
        "unclean.leader.election.enable=false",
        "auto.leader.rebalance.enable=false",
    ]);
    settings
}

fn soak() -> bool {
    std::env::var_os("FAULT_SOAK").is_some_and(|v| v == "1")
}

fn rounds() -> usize {
    if soak() {
        SOAK_ROUNDS
    } else {
        1
    }
}

fn progress_records() -> usize {
    if soak() {
        SOAK_PROGRESS_RECORDS
    } else {
        PROGRESS_RECORDS
    }
}

/// Seconds with two decimals, for the printed recovery times.
fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Creates `topic` with `partitions` partitions of 3 replicas through node
/// `via`, and waits until every node agrees that each ISR is full.
fn create_replicated(cluster: &Cluster, via: i32, topic: &str, partitions: i32) {
    assert_eq!(cluster.create_topic(via, topic, partitions, 3).unwrap(), 0);
    wait_for_full_isr(cluster, topic);
}

/// True when `topic` exists and each of its partitions has a leader and a full ISR.
fn isr_full(view: &ClusterView, topic: &str) -> bool {
    let partitions = view.partitions(topic);
    !partitions.is_empty()
        && partitions
            .iter()
            .all(|p| p.leader > 0 && p.isr.len() == p.replicas.len())
}

fn wait_for_full_isr(cluster: &Cluster, topic: &str) -> ClusterView {
    cluster.wait_for_agreement("every ISR full", ISR_FULL_TIMEOUT, |v| isr_full(v, topic))
}

/// A running node other than `than`.
fn another(cluster: &Cluster, than: i32) -> i32 {
    cluster
        .running_ids()
        .into_iter()
        .find(|id| *id != than)
        .expect("another running node")
}

/// When the faulty node `faulty` was the active controller `controller`,
/// waits until `observer` names another one and says so, for the printed
/// recovery times (a new controller grants every broker a full session
/// before it fences one, so the leader moves later than with a healthy one).
fn controller_change(
    cluster: &Cluster,
    observer: i32,
    controller: i32,
    faulty: i32,
    fault_at: Instant,
) -> String {
    if controller != faulty {
        return String::new();
    }
    let view = cluster.wait_for(observer, "a new controller", FAILOVER_TIMEOUT, |v| {
        v.controller_id > 0 && v.controller_id != faulty
    });
    format!(
        "it was the controller, node {} after {}; ",
        view.controller_id,
        secs(fault_at.elapsed())
    )
}

/// A librdkafka producer (`acks=all`, idempotence) sending numbered records
/// to partition 0 of a topic from a thread of its own until [`Workload::finish`].
struct Workload {
    topic: String,
    producer: Arc<RecordingProducer>,
    stop: StopOnDrop,
    thread: Option<JoinHandle<usize>>,
}

/// Tells the sending thread to stop, also when a test panics and drops its
/// workload, so that it does not go on sending to a cluster that is gone.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Workload {
    fn start(bootstrap: &str, topic: &str) -> Workload {
        let producer = Arc::new(RecordingProducer::new(
            bootstrap,
            topic,
            &[
                ("request.timeout.ms", CLIENT_REQUEST_TIMEOUT_MS),
                ("socket.timeout.ms", CLIENT_REQUEST_TIMEOUT_MS),
            ],
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (producer, stop) = (producer.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    producer.send(0, &format!("record-{sent}"));
                    sent += 1;
                    std::thread::sleep(SEND_INTERVAL);
                }
                sent
            })
        };
        Workload {
            topic: topic.to_string(),
            producer,
            stop: StopOnDrop(stop),
            thread: Some(thread),
        }
    }

    /// Waits until [`progress_records`] more records are acknowledged than
    /// now; returns how long that took. On a timeout the failure shows each
    /// node's Metadata and where their logs were saved.
    fn wait_for_progress(&self, cluster: &Cluster, description: &str) -> Duration {
        let started = Instant::now();
        let target = self.producer.acked_count() + progress_records();
        while self.producer.acked_count() < target {
            if started.elapsed() > PROGRESS_TIMEOUT {
                panic!(
                    "{description}: {} of {target} acknowledged within {PROGRESS_TIMEOUT:?}; \
                     a plain acks=all produce to the leader: {}; Metadata:\n{}\nbroker logs: {}",
                    self.producer.acked_count(),
                    leader_health(cluster, &self.topic),
                    describe(cluster),
                    save_logs(cluster)
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        started.elapsed()
    }

    fn acked(&self) -> usize {
        self.producer.acked_count()
    }

    /// Stops sending, waits for every outcome and returns the oracle and the
    /// number of records sent.
    fn finish(mut self) -> (Oracle, usize) {
        self.stop.0.store(true, Ordering::Relaxed);
        let sent = self
            .thread
            .take()
            .expect("running")
            .join()
            .expect("the sending thread does not panic");
        let producer = Arc::try_unwrap(self.producer)
            .unwrap_or_else(|_| panic!("the sending thread has ended"));
        (producer.finish(), sent)
    }
}

/// Reads partition 0 of `topic` back and checks it against the oracle (each acknowledged
/// record at its offset, offsets dense, no offset acknowledged twice), checks
/// that none of `never_acknowledged` is in the log, and waits until every
/// replica holds the same batches. Returns how many acknowledged records
/// were checked.
fn check_log(
    cluster: &Cluster,
    topic: &str,
    oracle: &Oracle,
    never_acknowledged: &[String],
) -> usize {
    let records = read_partition(&cluster.bootstrap(), topic, 0);
    let checked = check_partition(oracle, 0, &records);
    assert_eq!(checked, oracle.acked_count());
    assert!(checked > 0, "nothing was acknowledged");
    for probe in never_acknowledged {
        if let Some(at) = records.iter().position(|(_, value)| value == probe) {
            let around = &records[at.saturating_sub(3)..(at + 4).min(records.len())];
            panic!(
                "{probe:?}, written to a leader that could not have it committed, is in the \
                 log at offset {}; around it: {around:?}; broker logs: {}",
                records[at].0,
                save_logs(cluster)
            );
        }
    }
    wait_for_identical_replicas(cluster, topic, 0, CONVERGE_TIMEOUT);
    checked
}

/// What a plain (not idempotent) `acks=all` produce to `topic`-0's leader
/// gets, for a failure message: it tells a stalled client from a stalled leader.
fn leader_health(cluster: &Cluster, topic: &str) -> String {
    // The first node that answers (a paused or cut-off one does not).
    let Some((observer, view)) = cluster
        .running_ids()
        .into_iter()
        .find_map(|id| Some((id, cluster.view(id).ok()?)))
    else {
        return "no node answers Metadata".into();
    };
    let leader = view.partition(topic, 0).leader;
    if leader <= 0 {
        return format!("no leader (node {observer} says {leader})");
    }
    let started = Instant::now();
    let answer = RawConnection::connect(&cluster.client_addr(leader)).and_then(|mut conn| {
        tests::produce_to(&mut conn, topic, 0, tests::batch_of(&["health-probe"]), -1)
    });
    format!(
        "node {leader} answered {answer:?} in {}",
        secs(started.elapsed())
    )
}

/// Each running node's Metadata, for a failure message.
fn describe(cluster: &Cluster) -> String {
    cluster
        .running_ids()
        .into_iter()
        .map(|id| match cluster.view(id) {
            Ok(view) => format!("node {id}: {view}"),
            Err(e) => format!("node {id}: {e:#}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes every node's output to a file in the temp dir (the cluster's own
/// directory goes with it), for a failure message; returns where.
fn save_logs(cluster: &Cluster) -> String {
    let paths: Vec<String> = cluster
        .node_ids()
        .into_iter()
        .map(|id| {
            let path = std::env::temp_dir().join(format!(
                "cluster-faults-{}-node-{id}.log",
                std::process::id()
            ));
            match std::fs::write(&path, cluster.output(id)) {
                Ok(()) => path.display().to_string(),
                Err(e) => format!("node {id}: not saved: {e}"),
            }
        })
        .collect();
    paths.join(", ")
}

/// Sends an `acks=all` Produce of one record `value` to `topic`-0 without
/// waiting for the answer (the broker may be paused).
fn send_probe(conn: &mut RawConnection, topic: &str, value: &str) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(PROBE_TIMEOUT_MS)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(protocol::StrBytes::from_string(
                topic.to_string(),
            )))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(tests::batch_of(&[value])))])]);
    let frame = protocol::header::encode_request(
        ApiKey::Produce,
        PRODUCE_VERSION,
        PROBE_CORRELATION_ID,
        Some("fault-probe"),
        &request,
    )
    .unwrap();
    conn.send_raw(&frame).unwrap();
}

/// The answer to [`send_probe`]: the partition's error code, or why there is none.
fn probe_answer(conn: &mut RawConnection) -> Result<i16, String> {
    let body = match conn.read_frame() {
        Ok(Some(body)) => body,
        Ok(None) => return Err("connection closed".into()),
        Err(e) => return Err(format!("no answer: {e:#}")),
    };
    let (_, response): (i32, ProduceResponse) =
        protocol::header::decode_response(ApiKey::Produce, PRODUCE_VERSION, body)
            .map_err(|e| format!("undecodable answer: {e:#}"))?;
    Ok(response.responses[0].partition_responses[0].error_code)
}

/// Sends a probe and asserts it is not acknowledged; returns what it got.
fn assert_probe_refused(
    conn: &mut RawConnection,
    topic: &str,
    value: &str,
    context: &str,
) -> String {
    send_probe(conn, topic, value);
    let answer = probe_answer(conn);
    assert_ne!(
        answer,
        Ok(0),
        "{context}: acks=all {value:?} was acknowledged"
    );
    format!("{answer:?}")
}

/// Where the partition under fault is led from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// By a broker that is not the active controller: the fault costs the
    /// partition its leader and nothing else.
    NotController,
    /// By the active controller itself: the fault also costs the cluster its
    /// controller, and every broker must find the new one.
    Controller,
}

/// Creates `topic` (one partition, 3 replicas) led according to `placement`
/// as node `observer` sees the controller; returns its leader.
fn create_placed(cluster: &Cluster, observer: i32, topic: &str, placement: Placement) -> i32 {
    let controller = cluster.view(observer).unwrap().controller_id;
    assert!(controller > 0, "a controller is elected");
    let others: Vec<i32> = cluster
        .node_ids()
        .into_iter()
        .filter(|id| *id != controller)
        .collect();
    let replicas = match placement {
        Placement::NotController => vec![others[0], others[1], controller],
        Placement::Controller => vec![controller, others[0], others[1]],
    };
    create_on(cluster, observer, topic, &replicas);
    replicas[0]
}

/// Scenario 1: SIGSTOP of the leader until another is elected, then SIGCONT.
/// Each round has a topic of its own, led as `placement` says.
fn pause_the_leader(placement: Placement) {
    let cluster = Cluster::start(3, 0, &settings()).expect("cluster starts");
    for round in 0..rounds() {
        let topic = format!("{TOPIC}-{round}");
        let old_leader = create_placed(&cluster, 1, &topic, placement);
        let observer = another(&cluster, old_leader);
        let old_controller = cluster.view(observer).unwrap().controller_id;
        let workload = Workload::start(&cluster.bootstrap(), &topic);
        workload.wait_for_progress(&cluster, "acknowledgements before the pause");
        let mut stale = RawConnection::connect(&cluster.client_addr(old_leader)).unwrap();
        let paused_at = Instant::now();
        cluster.pause(old_leader);
        // The request waits in the paused broker's socket and is read when
        // it resumes, still believing it leads in its old epoch.
        let probe = format!("stale-epoch-probe-{round}");
        send_probe(&mut stale, &topic, &probe);
        let controller =
            controller_change(&cluster, observer, old_controller, old_leader, paused_at);
        cluster.wait_for(
            observer,
            "a new leader while the old one is paused",
            FAILOVER_TIMEOUT,
            |v| {
                let p = v.partition(&topic, 0);
                p.leader > 0 && p.leader != old_leader
            },
        );
        let new_leader_after = paused_at.elapsed();
        // Resumed as soon as it is deposed: librdkafka holds requests to the
        // paused broker (its connection stays open) and may not move on
        // until they time out, so producing is only waited for afterwards.
        let resumed_at = Instant::now();
        cluster.resume(old_leader);
        let answer = probe_answer(&mut stale);
        assert_ne!(
            answer,
            Ok(0),
            "the resumed old leader acknowledged {probe:?} in its stale epoch"
        );
        workload.wait_for_progress(&cluster, "acknowledgements after SIGCONT");
        let resumed_writes = resumed_at.elapsed();
        let view = wait_for_full_isr(&cluster, &topic);
        let rejoined_after = resumed_at.elapsed();
        assert_ne!(
            view.partition(&topic, 0).leader,
            old_leader,
            "the old leader rejoins as a follower"
        );
        let (oracle, sent) = workload.finish();
        let checked = check_log(&cluster, &topic, &oracle, &[probe]);
        eprintln!(
            "SIGSTOP ({placement:?}) round {round}: leader {old_leader} paused; {controller}new \
             leader after {}; stale probe answered {answer:?}; writes going on {} after \
             SIGCONT; ISR full {} after SIGCONT; {checked} acknowledged records checked of \
             {sent} sent, {} unknown",
            secs(new_leader_after),
            secs(resumed_writes),
            secs(rejoined_after),
            oracle.unknown.len()
        );
    }
}

#[test]
fn a_paused_leader_is_fenced_acknowledges_nothing_in_its_stale_epoch_and_rejoins_as_a_follower() {
    // SIGSTOP of a leader (not the controller) past the session timeout: a new leader takes over, a produce that waited in the paused leader's socket is not acknowledged nor kept, and no acknowledged record is lost.
    pause_the_leader(Placement::NotController);
}

#[test]
fn a_paused_leader_that_is_the_active_controller_loses_nothing_and_clients_carry_on() {
    // SIGSTOP of a leader that is also the active controller: the same guarantees, and producing goes on once a new leader is elected.
    pause_the_leader(Placement::Controller);
}

/// A cluster of 3 voters on a private network of 3 hosts.
fn start_on_network() -> Cluster {
    let network = Network::new(3).expect("a private network (needs root and iproute2)");
    Cluster::start_on(network, 3, 0, &settings()).expect("cluster starts")
}

#[test]
fn a_follower_cut_off_from_the_leader_leaves_the_isr_writes_go_on_and_it_rejoins_when_healed() {
    // A cut between the leader and one follower: the follower leaves the ISR after the lag time, acks=all writes go on with an ISR of 2, and healed it rejoins with the same log.
    let cluster = start_on_network();
    create_replicated(&cluster, 1, TOPIC, 1);
    let network = cluster.network();
    let workload = Workload::start(&cluster.bootstrap(), TOPIC);
    workload.wait_for_progress(&cluster, "acknowledgements before the cut");
    for round in 0..rounds() {
        let view = cluster.view(1).unwrap();
        let partition = view.partition(TOPIC, 0).clone();
        let leader = partition.leader;
        // A follower that is not the active controller, so that only the
        // replication link is cut and the leader still reaches the controller.
        let follower = *partition
            .replicas
            .iter()
            .find(|r| **r != leader && **r != view.controller_id)
            .expect("a follower that is not the controller");
        let cut_at = Instant::now();
        network.cut(leader as usize, follower as usize).unwrap();
        cluster.wait_for(
            leader,
            "the ISR without the cut-off follower",
            ISR_SHRINK_TIMEOUT,
            |v| {
                let p = v.partition(TOPIC, 0);
                p.leader == leader && p.isr.len() == 2 && !p.isr.contains(&follower)
            },
        );
        let shrunk_after = cut_at.elapsed();
        let acked_at_shrink = workload.acked();
        let progress = workload.wait_for_progress(&cluster, "acknowledgements with an ISR of 2");
        let healed_at = Instant::now();
        network.heal().unwrap();
        wait_for_full_isr(&cluster, TOPIC);
        let rejoined_after = healed_at.elapsed();
        eprintln!(
            "follower cut round {round}: node {follower} cut from leader {leader}; ISR shrank \
             after {}; {} more acknowledged with ISR 2 within {}; ISR full {} after healing",
            secs(shrunk_after),
            workload.acked() - acked_at_shrink,
            secs(progress),
            secs(rejoined_after)
        );
    }
    let (oracle, sent) = workload.finish();
    let checked = check_log(&cluster, TOPIC, &oracle, &[]);
    eprintln!(
        "follower cut: {checked} acknowledged records checked of {sent} sent, {} unknown",
        oracle.unknown.len()
    );
}

/// Scenario 3: the leader cut off from the other brokers and the test
/// process, then healed. Each round has a topic of its own, led as
/// `placement` says.
fn isolate_the_leader(placement: Placement) {
    let cluster = start_on_network();
    let network = cluster.network();
    for round in 0..rounds() {
        let topic = format!("{TOPIC}-{round}");
        let old_leader = create_placed(&cluster, 1, &topic, placement);
        let observer = another(&cluster, old_leader);
        let old_controller = cluster.view(observer).unwrap().controller_id;
        let workload = Workload::start(&cluster.bootstrap(), &topic);
        workload.wait_for_progress(&cluster, "acknowledgements before the cut");
        let isolated_at = Instant::now();
        network.isolate(old_leader as usize).unwrap();
        let controller =
            controller_change(&cluster, observer, old_controller, old_leader, isolated_at);
        cluster.wait_for(
            observer,
            "a new leader without the isolated one",
            FAILOVER_TIMEOUT,
            |v| {
                let p = v.partition(&topic, 0);
                p.leader > 0 && p.leader != old_leader
            },
        );
        let new_leader_after = isolated_at.elapsed();
        let resumed_writes =
            workload.wait_for_progress(&cluster, "acknowledgements from the new leader");
        // Only a client on the isolated host still reaches the old leader,
        // which still believes it leads with a full ISR: by now past the lag
        // time, its ISR shrink waits on a controller it cannot reach.
        let stream = network
            .connect_from(old_leader as usize, &cluster.client_addr(old_leader))
            .unwrap();
        let mut conn = RawConnection::from_stream(stream).unwrap();
        let probe = format!("isolated-leader-probe-{round}");
        let answer = assert_probe_refused(&mut conn, &topic, &probe, "the isolated old leader");
        let healed_at = Instant::now();
        network.heal().unwrap();
        let view = wait_for_full_isr(&cluster, &topic);
        let rejoined_after = healed_at.elapsed();
        assert_ne!(view.partition(&topic, 0).leader, old_leader);
        let (oracle, sent) = workload.finish();
        let checked = check_log(&cluster, &topic, &oracle, &[probe]);
        eprintln!(
            "leader isolated ({placement:?}) round {round}: leader {old_leader}; {controller}new \
             leader after {}, writes going on {} later; probe on the isolated leader answered \
             {answer}; ISR full {} after healing; {checked} acknowledged records checked of \
             {sent} sent, {} unknown",
            secs(new_leader_after),
            secs(resumed_writes),
            secs(rejoined_after),
            oracle.unknown.len()
        );
    }
}

#[test]
fn an_isolated_leader_acknowledges_nothing_a_new_leader_takes_over_and_the_old_one_truncates_when_healed(
) {
    // A leader (not the controller) cut off from the other brokers and from the test process: a new leader is elected, the old one (which cannot reach the controller to shrink its ISR) acknowledges no acks=all write, and healed it drops its uncommitted suffix and rejoins.
    isolate_the_leader(Placement::NotController);
}

#[test]
fn an_isolated_leader_that_is_the_active_controller_loses_nothing_and_clients_carry_on() {
    // A leader that is also the active controller cut off from everyone: the same guarantees, and producing goes on once a new leader is elected.
    isolate_the_leader(Placement::Controller);
}

/// Creates `topic` with one partition on exactly `replicas` (the first
/// leads) and waits until every node agrees that its ISR is full.
fn create_on(cluster: &Cluster, via: i32, topic: &str, replicas: &[i32]) {
    cluster.create_topic_on(via, topic, replicas);
    wait_for_full_isr(cluster, topic);
}

#[test]
fn with_the_isr_shrunk_to_the_leader_acks_all_is_refused_and_isolating_that_leader_loses_no_acknowledged_write(
) {
    // Jepsen's 2013 Kafka sequence: the followers cut off until the ISR is the leader alone, then the leader cut off from everyone; with min.insync.replicas 2 nothing was acknowledged meanwhile, no unclean election happens, and healed no acknowledged write is lost.
    // The one controller voter (node 1) hosts no replica: the leader must
    // reach the controller while cut off from its followers, or its ISR
    // could not shrink to itself.
    let network = Network::new(4).expect("a private network (needs root and iproute2)");
    let cluster = Cluster::start_on(network, 1, 3, &settings()).expect("cluster starts");
    let network = cluster.network();
    create_on(&cluster, 1, TOPIC, &[2, 3, 4]);
    let workload = Workload::start(&cluster.bootstrap(), TOPIC);
    workload.wait_for_progress(&cluster, "acknowledgements before the cuts");
    for round in 0..rounds() {
        let partition = cluster.view(1).unwrap().partition(TOPIC, 0).clone();
        let leader = partition.leader;
        let followers: Vec<i32> = partition
            .replicas
            .iter()
            .copied()
            .filter(|r| *r != leader)
            .collect();
        let cut_at = Instant::now();
        for follower in &followers {
            network.cut(leader as usize, *follower as usize).unwrap();
        }
        cluster.wait_for(
            leader,
            "the ISR shrunk to the leader alone",
            ISR_SHRINK_TIMEOUT,
            |v| v.partition(TOPIC, 0).isr == vec![leader],
        );
        let shrunk_after = cut_at.elapsed();
        let mut conn = RawConnection::connect(&cluster.client_addr(leader)).unwrap();
        send_probe(&mut conn, TOPIC, &format!("refused-probe-{round}"));
        assert_eq!(
            probe_answer(&mut conn),
            Ok(NOT_ENOUGH_REPLICAS),
            "acks=all with the ISR below min.insync.replicas"
        );
        let acked_at_isolation = workload.acked();
        let isolated_at = Instant::now();
        network.isolate(leader as usize).unwrap();
        let view = cluster.wait_for(1, "the isolated leader fenced", FAILOVER_TIMEOUT, |v| {
            v.partition(TOPIC, 0).leader != leader
        });
        let fenced_after = isolated_at.elapsed();
        let after = view.partition(TOPIC, 0).clone();
        assert_eq!(
            (after.leader, after.isr.clone()),
            (-1, vec![leader]),
            "only the last ISR member may lead: no unclean election"
        );
        // The isolated leader itself still refuses acks=all: its ISR is itself.
        let stream = network
            .connect_from(leader as usize, &cluster.client_addr(leader))
            .unwrap();
        let mut conn = RawConnection::from_stream(stream).unwrap();
        let answer = assert_probe_refused(
            &mut conn,
            TOPIC,
            &format!("isolated-probe-{round}"),
            "the isolated sole ISR member",
        );
        let acked_while_isolated = workload.acked() - acked_at_isolation;
        let healed_at = Instant::now();
        network.heal().unwrap();
        wait_for_full_isr(&cluster, TOPIC);
        let rejoined_after = healed_at.elapsed();
        eprintln!(
            "Jepsen 2013 round {round}: leader {leader}; ISR == [{leader}] after {}; isolated, \
             leader {} after {} (ISR {:?}); probe on it answered {answer}; {acked_while_isolated} \
             acknowledged meanwhile; ISR full {} after healing",
            secs(shrunk_after),
            after.leader,
            secs(fenced_after),
            after.isr,
            secs(rejoined_after)
        );
    }
    let (oracle, sent) = workload.finish();
    let checked = check_log(&cluster, TOPIC, &oracle, &[]);
    eprintln!(
        "Jepsen 2013: {checked} acknowledged records checked of {sent} sent, {} unknown",
        oracle.unknown.len()
    );
}

/// The `verifier` binary: `$VERIFIER_BIN`, or next to the broker binary
/// (`target/<profile>/verifier`, built by `./scripts/test` or
/// `cargo build -p benches --bin verifier`).
fn verifier_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("VERIFIER_BIN") {
        return PathBuf::from(path);
    }
    tests::broker_binary().with_file_name("verifier")
}

/// A `verifier run` producing to a topic of its own until [`Verifier::stop`],
/// its output in files (a pipe left unread could fill and stall it).
struct Verifier {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// What a finished verifier run said.
struct VerifierOutcome {
    code: i32,
    acknowledged: u64,
    summary: String,
}

impl Verifier {
    fn start(bootstrap: &str, topic: &str, partitions: i32) -> Verifier {
        let binary = verifier_binary();
        assert!(
            binary.exists(),
            "verifier not found at {} (build it with `cargo build -p benches --bin verifier` \
             or set VERIFIER_BIN)",
            binary.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(&binary)
            .args(["run", "--brokers", bootstrap, "--topic", topic])
            .args(["--partitions", &partitions.to_string()])
            .args(["--replication-factor", "3", "--rate", VERIFIER_RATE])
            // Ended by SIGTERM; the duration only bounds a run the test lost.
            .args(["--duration", "600"])
            .stdout(Stdio::from(
                std::fs::File::create(dir.path().join("stdout")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("stderr")).unwrap(),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let verifier = Verifier {
            child: Some(child),
            dir,
        };
        verifier.wait_for_stderr("producing to", VERIFIER_START_TIMEOUT);
        verifier
    }

    fn read(&self, name: &str) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.dir.path().join(name)) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    fn wait_for_stderr(&self, needle: &str, timeout: Duration) {
        let started = Instant::now();
        while !self.read("stderr").contains(needle) {
            assert!(
                started.elapsed() < timeout,
                "the verifier did not print {needle:?} within {timeout:?}:\n{}",
                self.read("stderr")
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// SIGTERM: producing ends, the run checks what it wrote; waits for it.
    fn stop(mut self) -> VerifierOutcome {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on the pid of a child we own has no memory effects.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > VERIFIER_EXIT_TIMEOUT {
                let _ = child.kill();
                panic!(
                    "the verifier did not finish within {VERIFIER_EXIT_TIMEOUT:?} of SIGTERM:\n{}",
                    self.read("stderr")
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        };
        let summary = self.read("stdout");
        // "  sent 2000: acknowledged 2000, unknown 0 (...)"
        let acknowledged = summary
            .split("acknowledged ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        VerifierOutcome {
            code: status.code().unwrap_or(-1),
            acknowledged,
            summary: format!("{summary}\nstderr:\n{}", self.read("stderr")),
        }
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Asserts a verifier run was clean and acknowledged something; returns the
/// number of acknowledged records it checked.
fn assert_clean(outcome: &VerifierOutcome, scenario: &str) -> u64 {
    assert_eq!(
        outcome.code, 0,
        "{scenario}: the verifier found anomalies or could not read everything:\n{}",
        outcome.summary
    );
    assert!(
        outcome.acknowledged > 0,
        "{scenario}: nothing acknowledged:\n{}",
        outcome.summary
    );
    outcome.acknowledged
}

/// Waits until every replica of every partition of `topic` holds the same batches.
fn wait_for_identical_topic(cluster: &Cluster, topic: &str, partitions: i32) {
    for partition in 0..partitions {
        wait_for_identical_replicas(cluster, topic, partition, CONVERGE_TIMEOUT);
    }
}

/// The verifier's topic in the rolling-restart and controller scenarios.
const VERIFIER_TOPIC: &str = "verified";
/// Its partitions: leaders on every broker.
const VERIFIER_PARTITIONS: i32 = 3;

#[test]
fn a_rolling_restart_of_every_broker_under_load_loses_no_acknowledged_write() {
    // SIGTERM of each broker in turn, restarted and waited for until every ISR is full, while the verifier produces: it finds nothing lost, duplicated or reordered.
    let mut cluster = Cluster::start(3, 0, &settings()).expect("cluster starts");
    create_replicated(&cluster, 1, TOPIC, 1);
    let verifier = Verifier::start(&cluster.bootstrap(), VERIFIER_TOPIC, VERIFIER_PARTITIONS);
    wait_for_full_isr(&cluster, VERIFIER_TOPIC);
    // A librdkafka workload beside the verifier shows writes going on
    // between restarts (the verifier reports only at its end).
    let workload = Workload::start(&cluster.bootstrap(), TOPIC);
    for round in 0..rounds() {
        for id in cluster.node_ids() {
            workload.wait_for_progress(&cluster, "acknowledgements before the next restart");
            let stopped_at = Instant::now();
            assert_eq!(cluster.terminate(id), 0, "SIGTERM exits cleanly");
            let stop_took = stopped_at.elapsed();
            cluster.restart(id);
            let serving_after = stopped_at.elapsed();
            wait_for_full_isr(&cluster, VERIFIER_TOPIC);
            eprintln!(
                "rolling restart round {round}: node {id} stopped in {}, serving again after {}, \
                 every ISR full after {}",
                secs(stop_took),
                secs(serving_after),
                secs(stopped_at.elapsed())
            );
        }
    }
    workload.wait_for_progress(&cluster, "acknowledgements after the last restart");
    let outcome = verifier.stop();
    let verified = assert_clean(&outcome, "rolling restart");
    wait_for_identical_topic(&cluster, VERIFIER_TOPIC, VERIFIER_PARTITIONS);
    let (oracle, sent) = workload.finish();
    let checked = check_log(&cluster, TOPIC, &oracle, &[]);
    eprintln!(
        "rolling restart: the verifier checked {verified} acknowledged records, clean; \
         librdkafka {checked} of {sent} sent, {} unknown",
        oracle.unknown.len()
    );
}

#[test]
fn kill9_of_the_active_controller_under_load_loses_no_acknowledged_write() {
    // kill -9 of the quorum leader while the verifier produces: another voter takes over, the dead node's partitions get new leaders, and once it is back every ISR is full and nothing acknowledged is lost.
    let mut cluster = Cluster::start(3, 0, &settings()).expect("cluster starts");
    create_replicated(&cluster, 1, TOPIC, 1);
    let verifier = Verifier::start(&cluster.bootstrap(), VERIFIER_TOPIC, VERIFIER_PARTITIONS);
    wait_for_full_isr(&cluster, VERIFIER_TOPIC);
    let workload = Workload::start(&cluster.bootstrap(), TOPIC);
    for round in 0..rounds() {
        workload.wait_for_progress(&cluster, "acknowledgements before the kill");
        let controller = cluster.view(1).unwrap().controller_id;
        assert!(controller > 0, "a controller is elected");
        let observer = another(&cluster, controller);
        let killed_at = Instant::now();
        cluster.kill9(controller);
        cluster.wait_for(observer, "a new controller", FAILOVER_TIMEOUT, |v| {
            v.controller_id > 0 && v.controller_id != controller
        });
        let new_controller_after = killed_at.elapsed();
        cluster.wait_for(
            observer,
            "every partition led by a live broker",
            FAILOVER_TIMEOUT,
            |v| {
                let partitions = v.partitions(VERIFIER_TOPIC);
                !partitions.is_empty()
                    && partitions
                        .iter()
                        .all(|p| p.leader > 0 && p.leader != controller)
            },
        );
        let new_leaders_after = killed_at.elapsed();
        let resumed_writes =
            workload.wait_for_progress(&cluster, "acknowledgements without the controller");
        let restarted_at = Instant::now();
        cluster.restart(controller);
        wait_for_full_isr(&cluster, VERIFIER_TOPIC);
        eprintln!(
            "controller kill -9 round {round}: node {controller}; new controller after {}, \
             its partitions led elsewhere after {}, librdkafka writes going on {} later; \
             every ISR full {} after the restart",
            secs(new_controller_after),
            secs(new_leaders_after),
            secs(resumed_writes),
            secs(restarted_at.elapsed())
        );
    }
    workload.wait_for_progress(&cluster, "acknowledgements after the restart");
    let outcome = verifier.stop();
    let verified = assert_clean(&outcome, "controller kill -9");
    wait_for_identical_topic(&cluster, VERIFIER_TOPIC, VERIFIER_PARTITIONS);
    let (oracle, sent) = workload.finish();
    let checked = check_log(&cluster, TOPIC, &oracle, &[]);
    eprintln!(
        "controller kill -9: the verifier checked {verified} acknowledged records, clean; \
         librdkafka {checked} of {sent} sent, {} unknown",
        oracle.unknown.len()
    );
}
