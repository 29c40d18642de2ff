//! Partition replication on a cluster of real broker processes: 3 brokers,
//! replication factor 3, `min.insync.replicas` 2, librdkafka producers with
//! `acks=all` and idempotence. After each fault, healed, every acknowledged
//! record is read back at its acknowledged offset, offsets are dense, the
//! ISR is full again within a named bound and every replica holds the same
//! batches, byte for byte.

use std::time::{Duration, Instant};

use tests::cluster::FAST_FAILURE_SETTINGS;
use tests::replication::{
    check_partition, read_partition, wait_for_identical_replicas, RecordingProducer,
};
use tests::Cluster;

const TOPIC: &str = "replicated";
/// How long the ISR may take to be full again once a fault is healed: a
/// restart (register, catch up on metadata, unfence) plus catching up.
const ISR_FULL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new leader may take to be elected after a kill -9: the
/// broker session timeout (3 s) plus an election.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long followers may take to hold the leader's whole log once writes stop.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

fn settings() -> Vec<&'static str> {
    let mut settings = FAST_FAILURE_SETTINGS.to_vec();
    settings.extend([
        "min.insync.replicas=2",
        "replica.lag.time.max.ms=2000",
        "replica.fetch.backoff.ms=100",
    ]);
    settings
}

fn start() -> Cluster {
    let cluster = Cluster::start(3, 0, &settings()).expect("cluster starts");
    assert_eq!(cluster.create_topic(1, TOPIC, 1, 3).unwrap(), 0);
    cluster.wait_for_agreement("the topic with a full ISR", ISR_FULL_TIMEOUT, |v| {
        v.partitions(TOPIC).len() == 1 && v.partition(TOPIC, 0).isr.len() == 3
    });
    cluster
}

fn leader(cluster: &Cluster) -> i32 {
    let any = cluster.running_ids()[0];
    cluster.view(any).unwrap().partition(TOPIC, 0).leader
}

fn wait_for_full_isr(cluster: &Cluster) {
    cluster.wait_for_agreement("the ISR full again", ISR_FULL_TIMEOUT, |v| {
        let p = v.partitions(TOPIC);
        !p.is_empty() && p[0].isr.len() == 3 && p[0].leader > 0
    });
}

#[test]
fn acknowledged_writes_survive_kill9_of_the_leader_and_every_replica_ends_identical() {
    // acks=all writes before, during and after the leader's crash are all read back once it rejoins.
    let mut cluster = start();
    let producer = RecordingProducer::new(&cluster.bootstrap(), TOPIC, &[]);
    for i in 0..2_000 {
        producer.send(0, &format!("before-{i}"));
    }
    let before = producer.finish();
    assert_eq!(
        before.acked_count(),
        2_000,
        "unknown: {:?}",
        before.unknown.len()
    );
    let old_leader = leader(&cluster);
    let producer = RecordingProducer::new(&cluster.bootstrap(), TOPIC, &[]);
    for i in 0..1_000 {
        producer.send(0, &format!("during-{i}"));
    }
    cluster.kill9(old_leader);
    let killed = Instant::now();
    for i in 1_000..3_000 {
        producer.send(0, &format!("during-{i}"));
    }
    let during = producer.finish();
    let view = cluster.wait_for(
        cluster.running_ids()[0],
        "a new leader from the ISR",
        FAILOVER_TIMEOUT,
        |v| {
            let p = v.partition(TOPIC, 0);
            p.leader > 0 && p.leader != old_leader
        },
    );
    let failed_over = killed.elapsed();
    assert!(view.partition(TOPIC, 0).isr.len() >= 2);
    cluster.restart(old_leader);
    let restarted = Instant::now();
    wait_for_full_isr(&cluster);
    let rejoined = restarted.elapsed();
    let records = read_partition(&cluster.bootstrap(), TOPIC, 0);
    let checked = check_partition(&before, 0, &records) + check_partition(&during, 0, &records);
    assert!(checked >= 2_000 + 2_000, "only {checked} acknowledged");
    wait_for_identical_replicas(&cluster, TOPIC, 0, CONVERGE_TIMEOUT);
    eprintln!(
        "kill -9 of the leader: {checked} acknowledged records checked, {} unknown; \
         every write sent during it settled and a new leader seen {:.2} s after the kill; ISR full {:.2} s after the restart",
        during.unknown.len(),
        failed_over.as_secs_f64(),
        rejoined.as_secs_f64()
    );
}

#[test]
fn acknowledged_writes_go_on_through_kill9_of_a_follower_which_catches_up_on_return() {
    // With one follower dead the ISR (2) still meets min.insync.replicas: acks=all
    // writes go on, and the restarted follower copies what it missed and rejoins.
    let mut cluster = start();
    let leader_id = leader(&cluster);
    let follower = cluster
        .node_ids()
        .into_iter()
        .find(|id| *id != leader_id)
        .unwrap();
    let producer = RecordingProducer::new(&cluster.bootstrap(), TOPIC, &[]);
    for i in 0..1_000 {
        producer.send(0, &format!("before-{i}"));
    }
    cluster.kill9(follower);
    for i in 0..3_000 {
        producer.send(0, &format!("during-{i}"));
    }
    let oracle = producer.finish();
    assert_eq!(
        oracle.acked_count(),
        4_000,
        "every write is acknowledged with two of three replicas: {} unknown",
        oracle.unknown.len()
    );
    cluster.restart(follower);
    let restarted = Instant::now();
    wait_for_full_isr(&cluster);
    let rejoined = restarted.elapsed();
    wait_for_identical_replicas(&cluster, TOPIC, 0, CONVERGE_TIMEOUT);
    let records = read_partition(&cluster.bootstrap(), TOPIC, 0);
    let checked = check_partition(&oracle, 0, &records);
    assert_eq!(checked, 4_000);
    eprintln!(
        "kill -9 of a follower: {checked} acknowledged records checked, {} unknown; \
         ISR full {:.2} s after the restart",
        oracle.unknown.len(),
        rejoined.as_secs_f64()
    );
}

#[test]
fn a_deposed_leaders_unreplicated_suffix_is_truncated_when_it_rejoins() {
    // acks=1 writes the old leader alone held are not acknowledged as
    // replicated; after its crash and return it holds exactly the new leader's log.
    let mut cluster = start();
    let producer = RecordingProducer::new(
        &cluster.bootstrap(),
        TOPIC,
        &[("acks", "1"), ("enable.idempotence", "false")],
    );
    let old_leader = leader(&cluster);
    for i in 0..20_000 {
        producer.send(0, &format!("fast-{i}"));
        if i == 15_000 {
            cluster.kill9(old_leader);
        }
    }
    drop(producer.finish());
    cluster.wait_for(
        cluster.running_ids()[0],
        "a new leader",
        FAILOVER_TIMEOUT,
        |v| {
            let p = v.partition(TOPIC, 0);
            p.leader > 0 && p.leader != old_leader
        },
    );
    // More writes in the new epoch, so the logs differ at the old leader's tail.
    let producer = RecordingProducer::new(&cluster.bootstrap(), TOPIC, &[]);
    for i in 0..500 {
        producer.send(0, &format!("after-{i}"));
    }
    let after = producer.finish();
    cluster.restart(old_leader);
    wait_for_full_isr(&cluster);
    wait_for_identical_replicas(&cluster, TOPIC, 0, CONVERGE_TIMEOUT);
    let records = read_partition(&cluster.bootstrap(), TOPIC, 0);
    assert_eq!(check_partition(&after, 0, &records), 500);
}

#[test]
fn acks_all_is_refused_below_min_insync_replicas_and_accepted_again_once_the_isr_recovers() {
    // With both followers gone the ISR is the leader alone: acks=all gets
    // NOT_ENOUGH_REPLICAS before anything is appended, acks=1 still works.
    // The one controller voter (node 1) hosts no replica, so it outlives the faults.
    let mut cluster = Cluster::start(1, 3, &settings()).expect("cluster starts");
    cluster.create_topic_on(1, TOPIC, &[2, 3, 4]);
    wait_for_full_isr(&cluster);
    let mut conn = tests::RawConnection::connect(&cluster.client_addr(2)).unwrap();
    for follower in [3, 4] {
        cluster.kill9(follower);
    }
    cluster.wait_for(2, "the ISR shrunk to the leader", ISR_FULL_TIMEOUT, |v| {
        v.partition(TOPIC, 0).isr == vec![2]
    });
    let (code, _) =
        tests::produce_to(&mut conn, TOPIC, 0, tests::batch_of(&["refused"]), -1).unwrap();
    assert_eq!(
        code,
        protocol::ErrorCode::NOT_ENOUGH_REPLICAS.code(),
        "acks=all below min.insync.replicas"
    );
    let (code, offset) =
        tests::produce_to(&mut conn, TOPIC, 0, tests::batch_of(&["accepted"]), 1).unwrap();
    assert_eq!(
        (code, offset),
        (0, 0),
        "acks=1 is not bound by min.insync.replicas"
    );
    for follower in [3, 4] {
        cluster.restart(follower);
    }
    wait_for_full_isr(&cluster);
    let (code, offset) =
        tests::produce_to(&mut conn, TOPIC, 0, tests::batch_of(&["replicated"]), -1).unwrap();
    assert_eq!((code, offset), (0, 1));
    wait_for_identical_replicas(&cluster, TOPIC, 0, CONVERGE_TIMEOUT);
}

#[test]
fn a_produce_or_fetch_sent_to_a_follower_names_the_current_leader_and_its_endpoint() {
    // KIP-951: the refusal carries the leader, its epoch and its address, so a
    // client redirects without refreshing its metadata first.
    use protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use protocol::messages::{
        ApiKey, BrokerId, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
    };
    let cluster = start();
    let view = cluster.view(1).unwrap();
    let partition = view.partition(TOPIC, 0);
    let follower = partition
        .replicas
        .iter()
        .copied()
        .find(|r| *r != partition.leader)
        .unwrap();
    let mut conn = tests::RawConnection::connect(&cluster.client_addr(follower)).unwrap();
    let name = || TopicName(protocol::StrBytes::from_static_str(TOPIC));
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(tests::batch_of(&["misdirected"])))])]);
    let answer: ProduceResponse = conn.call(ApiKey::Produce, 11, &produce).unwrap();
    let p = &answer.responses[0].partition_responses[0];
    assert_eq!(
        p.error_code,
        protocol::ErrorCode::NOT_LEADER_OR_FOLLOWER.code()
    );
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (partition.leader, partition.leader_epoch)
    );
    let endpoints: Vec<(i32, String)> = answer
        .node_endpoints
        .iter()
        .map(|e| (e.node_id.0, format!("{}:{}", e.host, e.port)))
        .collect();
    assert_eq!(
        endpoints,
        vec![(partition.leader, cluster.client_addr(partition.leader))]
    );
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(1 << 20)])]);
    let answer: FetchResponse = conn.call(ApiKey::Fetch, 12, &fetch).unwrap();
    let p = &answer.responses[0].partitions[0];
    assert_eq!(
        p.error_code,
        protocol::ErrorCode::NOT_LEADER_OR_FOLLOWER.code()
    );
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (partition.leader, partition.leader_epoch)
    );
}

#[test]
fn with_unclean_election_enabled_an_out_of_sync_replica_leads_once_the_whole_isr_is_gone() {
    // Broker 3 falls out of the ISR, then broker 2 (the ISR alone) dies: by default the
    // partition stays leaderless; with unclean election 3 leads on its return, and 2,
    // returning later, drops the suffix 3 never had.
    let mut settings = settings();
    settings.push("unclean.leader.election.enable=true");
    let mut cluster = Cluster::start(1, 3, &settings).expect("cluster starts");
    cluster.create_topic_on(1, TOPIC, &[2, 3]);
    cluster.wait_for_agreement("both replicas in sync", ISR_FULL_TIMEOUT, |v| {
        v.partitions(TOPIC)
            .first()
            .is_some_and(|p| p.isr.len() == 2)
    });
    let mut conn = tests::RawConnection::connect(&cluster.client_addr(2)).unwrap();
    let (code, _) = tests::produce_to(&mut conn, TOPIC, 0, tests::batch_of(&["both"]), -1).unwrap();
    assert_eq!(code, 0);
    cluster.kill9(3);
    cluster.wait_for(1, "the ISR shrunk to broker 2", ISR_FULL_TIMEOUT, |v| {
        v.partition(TOPIC, 0).isr == vec![2]
    });
    let (code, _) =
        tests::produce_to(&mut conn, TOPIC, 0, tests::batch_of(&["only-on-2"]), 1).unwrap();
    assert_eq!(code, 0);
    cluster.kill9(2);
    cluster.wait_for(1, "the partition leaderless", FAILOVER_TIMEOUT, |v| {
        v.partition(TOPIC, 0).leader < 0
    });
    cluster.restart(3);
    let view = cluster.wait_for_agreement("broker 3 elected uncleanly", FAILOVER_TIMEOUT, |v| {
        v.partition(TOPIC, 0).leader == 3
    });
    assert_eq!(view.partition(TOPIC, 0).isr, vec![3]);
    let mut conn = tests::RawConnection::connect(&cluster.client_addr(3)).unwrap();
    let (code, offset) =
        tests::produce_to(&mut conn, TOPIC, 0, tests::batch_of(&["after"]), 1).unwrap();
    assert_eq!(
        (code, offset),
        (0, 1),
        "broker 3's log ends where its ISR membership did"
    );
    cluster.restart(2);
    cluster.wait_for(1, "broker 2 back in the ISR", ISR_FULL_TIMEOUT, |v| {
        v.partition(TOPIC, 0).isr.len() == 2
    });
    wait_for_identical_replicas(&cluster, TOPIC, 0, CONVERGE_TIMEOUT);
    let records = read_partition(&cluster.bootstrap(), TOPIC, 0);
    let values: Vec<&str> = records.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, vec!["both", "after"]);
}

mod reassignment {
    use super::*;
    use protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use protocol::messages::{
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
        ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
    };
    use tests::replication::Oracle;

    pub const THROTTLE_BYTES_PER_S: u64 = 1_000_000;

    /// Brokers 1 (also the controller) to 4, within the follower
    /// replication throttle for every replica of the topic, and about 3 MB
    /// acknowledged on replicas 2 and 3 of it: at least two seconds of
    /// copying beyond the throttle's one-second burst.
    pub fn start() -> (Cluster, Oracle) {
        let mut settings = settings();
        let throttle = format!("follower.replication.throttled.rate={THROTTLE_BYTES_PER_S}");
        settings.push(&throttle);
        let cluster = Cluster::start(1, 3, &settings).expect("cluster starts");
        cluster.create_topic_on(1, TOPIC, &[2, 3]);
        throttle_every_replica(&cluster);
        cluster.wait_for_agreement("both replicas in sync", ISR_FULL_TIMEOUT, |v| {
            v.partitions(TOPIC)
                .first()
                .is_some_and(|p| p.isr.len() == 2)
        });
        let producer = RecordingProducer::new(&cluster.bootstrap(), TOPIC, &[]);
        let padding = "x".repeat(1_000);
        for i in 0..3_000 {
            producer.send(0, &format!("moved-{i}-{padding}"));
        }
        let oracle = producer.finish();
        assert_eq!(oracle.acked_count(), 3_000);
        (cluster, oracle)
    }

    /// Lists every replica of the topic as throttled on its followers
    /// (`follower.replication.throttled.replicas=*`), as the rate applies
    /// only to the replicas a topic lists.
    fn throttle_every_replica(cluster: &Cluster) {
        use protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        use protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
        let mut conn = tests::RawConnection::connect(&cluster.client_addr(1)).unwrap();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(protocol::StrBytes::from_static_str(TOPIC))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(protocol::StrBytes::from_static_str(
                        "follower.replication.throttled.replicas",
                    ))
                    .with_config_operation(0)
                    .with_value(Some(protocol::StrBytes::from_static_str("*")))]),
        ]);
        let answer: IncrementalAlterConfigsResponse = conn
            .call(ApiKey::IncrementalAlterConfigs, 1, &request)
            .unwrap();
        assert_eq!(answer.responses[0].error_code, 0, "{answer:?}");
    }

    /// Asks for partition 0 to move to `replicas` and checks that the
    /// controller accepted it.
    pub fn reassign(conn: &mut tests::RawConnection, replicas: &[i32]) {
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(TopicName(protocol::StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(0)
                    .with_replicas(Some(
                        replicas.iter().map(|b| BrokerId(*b)).collect(),
                    ))])]);
        let answer: AlterPartitionReassignmentsResponse = conn
            .call(ApiKey::AlterPartitionReassignments, 0, &request)
            .unwrap();
        assert_eq!(answer.error_code, 0);
        assert_eq!(
            answer.responses[0].partitions[0].error_code, 0,
            "{answer:?}"
        );
    }

    pub fn in_progress(conn: &mut tests::RawConnection) -> ListPartitionReassignmentsResponse {
        conn.call(
            ApiKey::ListPartitionReassignments,
            0,
            &ListPartitionReassignmentsRequest::default().with_timeout_ms(5_000),
        )
        .unwrap()
    }

    /// Whether ListPartitionReassignments shows partition 0 moving with these
    /// adding and removing replicas within `timeout`.
    pub fn listed_within(
        conn: &mut tests::RawConnection,
        adding: &[i32],
        removing: &[i32],
        timeout: Duration,
    ) -> bool {
        let ids = |brokers: &[i32]| brokers.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
        tests::wait_until(timeout, || {
            in_progress(conn).topics.first().is_some_and(|topic| {
                let moving = &topic.partitions[0];
                moving.adding_replicas == ids(adding) && moving.removing_replicas == ids(removing)
            })
        })
    }

    /// Waits until the partition's replicas are `replicas`, all in sync; then
    /// every broker left out has deleted its copy, the replicas are identical
    /// and every acknowledged record is there.
    pub fn wait_until_moved(
        cluster: &Cluster,
        oracle: &Oracle,
        replicas: &[i32],
        left_out: &[i32],
    ) {
        let view = cluster.wait_for_agreement("the reassignment complete", ISR_FULL_TIMEOUT, |v| {
            let p = v.partition(TOPIC, 0);
            p.replicas == replicas && p.isr.len() == replicas.len() && p.leader > 0
        });
        eprintln!("moved: {:?}", view.partition(TOPIC, 0));
        for &broker in left_out {
            assert!(
                tests::wait_until(CONVERGE_TIMEOUT, || {
                    !cluster.data_dir(broker).join(format!("{TOPIC}-0")).exists()
                }),
                "broker {broker} deletes the replica it no longer hosts"
            );
        }
        wait_for_identical_replicas(cluster, TOPIC, 0, CONVERGE_TIMEOUT);
        let records = read_partition(&cluster.bootstrap(), TOPIC, 0);
        assert_eq!(check_partition(oracle, 0, &records), 3_000);
    }
}

#[test]
fn a_reassignment_copies_the_partition_to_a_new_broker_and_then_drops_the_old_replica() {
    // 2, 3 -> 3, 4: broker 4 catches up as a follower, within the reassignment
    // throttle; once it is in sync broker 2's replica (the leader's) goes, 3 or 4
    // leads, and every record is still there.
    let (cluster, oracle) = reassignment::start();
    let mut conn = tests::RawConnection::connect(&cluster.client_addr(1)).unwrap();
    let started = std::time::Instant::now();
    reassignment::reassign(&mut conn, &[3, 4]);
    cluster.wait_for_agreement("the reassignment complete", ISR_FULL_TIMEOUT, |v| {
        let p = v.partition(TOPIC, 0);
        p.replicas == vec![3, 4] && p.isr.len() == 2
    });
    let took = started.elapsed();
    eprintln!(
        "reassignment of 3 MB at {} B/s completed within {took:?}",
        reassignment::THROTTLE_BYTES_PER_S
    );
    assert!(
        took >= Duration::from_millis(1_500),
        "the throttle bounds the copy: 3 MB at 1 MB/s with a 1 MB burst took {took:?}"
    );
    let listed = reassignment::in_progress(&mut conn);
    assert!(listed.topics.is_empty(), "nothing in progress: {listed:?}");
    reassignment::wait_until_moved(&cluster, &oracle, &[3, 4], &[2]);
}

#[test]
fn a_new_target_replaces_a_reassignment_in_progress() {
    // 2, 3 -> 3, 4 is still copying (throttled) when the target becomes 3, 1:
    // broker 4, no longer wanted, drops its partial copy at once, broker 1
    // catches up instead, and broker 2 goes once it has.
    let (cluster, oracle) = reassignment::start();
    let mut conn = tests::RawConnection::connect(&cluster.client_addr(1)).unwrap();
    reassignment::reassign(&mut conn, &[3, 4]);
    // 3 MB at 1 MB/s take more than a second to copy: this one is listed
    // as in progress (once the answering broker has the metadata entry).
    assert!(
        reassignment::listed_within(&mut conn, &[4], &[2], Duration::from_secs(1)),
        "3, 4 listed in progress"
    );
    reassignment::reassign(&mut conn, &[3, 1]);
    assert!(
        reassignment::listed_within(&mut conn, &[1], &[2], Duration::from_secs(1)),
        "the replacement listed in progress"
    );
    reassignment::wait_until_moved(&cluster, &oracle, &[3, 1], &[2, 4]);
}
