//! Consumer groups on a cluster of real broker processes: each group is
//! coordinated by the leader of its `__consumer_offsets` partition, wherever
//! that is, and clients find it there, join, consume and commit; committed
//! offsets survive the coordinator's crash.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tests::cluster::FAST_FAILURE_SETTINGS;
use tests::{Cluster, RawConnection};

/// How long a consumer may take to join, be assigned and read everything.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(30);
const RECORDS: usize = 30;
const TOPIC: &str = "grouped";

/// The coordinator each of `groups` has, as node 1 answers FindCoordinator.
fn coordinators(cluster: &Cluster, groups: &[String]) -> Vec<i32> {
    let mut conn = RawConnection::connect(&cluster.client_addr(1)).unwrap();
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    loop {
        let request = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(groups.iter().map(|g| g.clone().into()).collect());
        let response: FindCoordinatorResponse =
            conn.call(ApiKey::FindCoordinator, 4, &request).unwrap();
        if response.coordinators.iter().all(|c| c.error_code == 0) {
            return response.coordinators.iter().map(|c| c.node_id.0).collect();
        }
        assert!(Instant::now() < deadline, "no coordinators: {response:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn groups_coordinated_by_different_brokers_consume_and_commit() {
    // FindCoordinator names each offsets partition's leader; groups on every broker join, read and commit there.
    let cluster = Cluster::start(3, 0, FAST_FAILURE_SETTINGS).expect("cluster starts");
    assert_eq!(cluster.create_topic(1, TOPIC, 3, 1).unwrap(), 0);
    cluster.wait_for_agreement("the topic everywhere", CONSUME_TIMEOUT, |v| {
        v.partitions(TOPIC).len() == 3 && v.broker_ids().len() == 3
    });
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .create()
        .unwrap();
    for i in 0..RECORDS {
        let value = format!("record-{i}");
        producer
            .send(
                BaseRecord::<(), _>::to(TOPIC)
                    .payload(&value)
                    .partition((i % 3) as i32),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    // Pick groups whose coordinators are on at least two different brokers.
    let candidates: Vec<String> = (0..12).map(|i| format!("group-{i}")).collect();
    let found = coordinators(&cluster, &candidates);
    let mut seen = BTreeSet::new();
    let groups: Vec<(String, i32)> = candidates
        .into_iter()
        .zip(found)
        .filter(|(_, node)| seen.insert(*node))
        .collect();
    assert!(
        groups.len() >= 2,
        "offsets partitions spread over the brokers: {groups:?}"
    );

    for (group, coordinator) in &groups {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap())
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[TOPIC]).unwrap();
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        let mut values = BTreeSet::new();
        while values.len() < RECORDS {
            assert!(
                Instant::now() < deadline,
                "group {group} (coordinator {coordinator}) read {} of {RECORDS}",
                values.len()
            );
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                values.insert(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
            }
        }
        consumer.commit_consumer_state(CommitMode::Sync).unwrap();
        let mut wanted = TopicPartitionList::new();
        for partition in 0..3 {
            wanted.add_partition(TOPIC, partition);
        }
        let committed = consumer
            .committed_offsets(wanted, Duration::from_secs(10))
            .unwrap();
        let total: i64 = committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                other => panic!(
                    "group {group}: partition {} committed {other:?}",
                    e.partition()
                ),
            })
            .sum();
        assert_eq!(
            total, RECORDS as i64,
            "group {group} committed every record read"
        );
        eprintln!("group {group}: coordinator {coordinator}, read and committed {RECORDS} records");
    }
}

#[test]
fn committed_offsets_survive_kill9_of_the_groups_coordinator() {
    // __consumer_offsets has three replicas: a commit is answered once the ISR has it,
    // so the coordinator's crash moves the group to a broker that knows its offsets.
    let mut settings = FAST_FAILURE_SETTINGS.to_vec();
    settings.extend(["replica.lag.time.max.ms=2000", "min.insync.replicas=2"]);
    let mut cluster = Cluster::start(3, 0, &settings).expect("cluster starts");
    assert_eq!(cluster.create_topic(1, TOPIC, 3, 3).unwrap(), 0);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .create()
        .unwrap();
    for i in 0..RECORDS {
        let value = format!("record-{i}");
        producer
            .send(
                BaseRecord::<(), _>::to(TOPIC)
                    .payload(&value)
                    .partition((i % 3) as i32),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let group = "survivor".to_string();
    let coordinator = coordinators(&cluster, std::slice::from_ref(&group))[0];
    // A commit is acknowledged once its ISR (at least min.insync.replicas) has it.
    cluster.wait_for_agreement("__consumer_offsets fully in sync", CONSUME_TIMEOUT, |v| {
        let p = v.partitions("__consumer_offsets");
        !p.is_empty() && p.iter().all(|p| p.isr.len() == 3)
    });
    let view = cluster.view(1).unwrap();
    assert!(
        view.partitions("__consumer_offsets")
            .iter()
            .all(|p| p.replicas.len() == 3),
        "__consumer_offsets is replicated three times:\n{view}"
    );
    let bootstrap = cluster.bootstrap();
    let consumer_config = || {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false");
        config
    };
    {
        let consumer: BaseConsumer = consumer_config().create().unwrap();
        consumer.subscribe(&[TOPIC]).unwrap();
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        let mut read = 0;
        while read < RECORDS {
            assert!(Instant::now() < deadline, "read {read} of {RECORDS}");
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(200)) {
                read += 1;
            }
        }
        // Refused (COORDINATOR_NOT_AVAILABLE) while the ISR is below the minimum: retried.
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        while let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            assert!(Instant::now() < deadline, "the commit goes through: {e}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    cluster.kill9(coordinator);
    let survivor = cluster.running_ids()[0];
    let moved = Instant::now();
    let deadline = moved + CONSUME_TIMEOUT;
    loop {
        let mut conn = RawConnection::connect(&cluster.client_addr(survivor)).unwrap();
        let request = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![group.clone().into()]);
        let response: FindCoordinatorResponse =
            conn.call(ApiKey::FindCoordinator, 4, &request).unwrap();
        let found = &response.coordinators[0];
        if found.error_code == 0 && found.node_id.0 != coordinator {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group's coordinator never moved: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("the group's coordinator moved within {:?}", moved.elapsed());
    let consumer: BaseConsumer = consumer_config().create().unwrap();
    let mut wanted = TopicPartitionList::new();
    for partition in 0..3 {
        wanted.add_partition(TOPIC, partition);
    }
    // The new coordinator answers NOT_COORDINATOR until its image has the move: retried.
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let committed = loop {
        match consumer.committed_offsets(wanted.clone(), Duration::from_secs(10)) {
            Ok(committed) => break committed,
            Err(e) => {
                assert!(Instant::now() < deadline, "committed offsets: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let total: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            other => panic!(
                "partition {} committed {other:?} after the move",
                e.partition()
            ),
        })
        .sum();
    assert_eq!(
        total, RECORDS as i64,
        "every commit survived the coordinator's crash"
    );
}
