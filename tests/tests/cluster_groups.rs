//! Consumer groups on a cluster of real broker processes: each group is
//! coordinated by the leader of its `__consumer_offsets` partition, wherever
//! that is, and clients find it there, join, consume and commit.
//!
//! Followers do not replicate yet, so a broker's loss is not tested here.

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
