//! Our admin client (`client::Admin`) against real broker processes: topics
//! created (with configs and explicit assignments), described, grown and
//! deleted; the cluster described; offsets listed earliest, latest and by
//! time; records deleted before an offset; configs described; every refusal
//! a typed error with its Kafka code; bounded calls when the broker is gone;
//! and, on a 3-node cluster, a partition reassignment followed to its end,
//! records deleted on two leaders in one call, and preferred and unclean
//! leader elections.

use std::time::{Duration, Instant};

use client::admin::{
    AlterConfigOp, ConfigResource, ConfigSource, DeletedRecords, ElectionType, ListedOffset,
    NewPartitions, NewTopic, OffsetSpec, TopicDescription, DELETE_TO_HIGH_WATERMARK,
};
use client::{Admin, AdminConfig, AdminError, TopicPartition};
use protocol::ErrorCode;
use tests::cluster::{Cluster, FAST_FAILURE_SETTINGS};

/// Bound on each admin call in these tests.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on a state the cluster reaches on its own (a topic visible, a
/// reassignment done, a replica back in sync).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a settling condition is checked.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

const ELECTION_NOT_NEEDED: ErrorCode = ErrorCode(84);

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// Writes `count` records to partition 0 of `topic` and waits for their acknowledgements.
async fn produce(bootstrap: &str, topic: &str, count: usize) {
    let producer = client::Producer::connect(client::ProducerConfig::new(bootstrap))
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..count {
        let record = client::ProducerRecord::new(topic)
            .with_partition(0)
            .with_value(format!("v{i}"));
        deliveries.push(producer.send(record).await.unwrap());
    }
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.unwrap();
    }
}

/// The log start offset of each partition, as ListOffsets earliest answers it.
async fn earliest(admin: &Admin, partitions: &[TopicPartition]) -> Vec<i64> {
    let asked: Vec<_> = partitions
        .iter()
        .map(|tp| (tp.clone(), OffsetSpec::Earliest))
        .collect();
    let listed = admin.list_offsets(&asked, CALL_TIMEOUT).await.unwrap();
    partitions
        .iter()
        .map(|tp| listed[tp].as_ref().unwrap().offset)
        .collect()
}

/// Describes `topic` until `done` holds, at most [`SETTLE_TIMEOUT`].
async fn wait_for_topic(
    admin: &Admin,
    topic: &str,
    what: &str,
    done: impl Fn(&TopicDescription) -> bool,
) -> TopicDescription {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let described = admin.describe_topics(&[topic], CALL_TIMEOUT).await.unwrap();
        let last = described[topic].clone();
        if let Ok(description) = &last {
            if done(description) {
                return description.clone();
            }
        }
        assert!(Instant::now() < deadline, "{what}: last seen {last:?}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A topic's `retention.ms` as DescribeConfigs answers it: (value, source).
async fn topic_retention(
    admin: &Admin,
    topic: &ConfigResource,
) -> Option<(Option<String>, ConfigSource)> {
    let configs = admin
        .describe_configs(std::slice::from_ref(topic), CALL_TIMEOUT)
        .await
        .unwrap();
    configs[topic]
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.name == "retention.ms")
        .map(|c| (c.value.clone(), c.source))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_described_grown_and_deleted_with_typed_refusals() {
    // The topic lifecycle, configs (described and altered incrementally) and the cluster through
    // Admin; each refusal carries Kafka's code.
    let dir = tempfile::tempdir().unwrap();
    let broker = tests::BrokerProcess::start(dir.path(), &[]).unwrap();
    let admin = Admin::connect(AdminConfig::new(&broker.addr))
        .await
        .unwrap();

    let cluster = admin.describe_cluster(CALL_TIMEOUT).await.unwrap();
    assert_eq!(cluster.brokers.len(), 1, "{cluster:?}");
    let node = cluster.brokers[0].node_id;
    assert_eq!(
        format!("{}:{}", cluster.brokers[0].host, cluster.brokers[0].port),
        broker.addr
    );
    assert!(cluster.controller_id.is_some(), "{cluster:?}");

    // Two topics in one call: one by count with configs, one by assignment.
    let created = admin
        .create_topics(
            &[
                NewTopic::new("events", 3, 1)
                    .with_config("cleanup.policy", "compact")
                    .with_config("retention.ms", "3600000"),
                NewTopic::with_assignments("placed", vec![vec![node], vec![node]]),
            ],
            CALL_TIMEOUT,
        )
        .await
        .unwrap();
    let events = created["events"].as_ref().unwrap();
    assert_eq!((events.partitions, events.replication_factor), (3, 1));
    assert!(!events.topic_id.is_nil());
    assert_eq!(created["placed"].as_ref().unwrap().partitions, 2);

    // Creating it again is refused with TOPIC_ALREADY_EXISTS, as a typed error.
    let again = admin
        .create_topic(NewTopic::new("events", 3, 1), CALL_TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(&again, AdminError::Topic { topic, code, .. }
            if topic == "events" && *code == ErrorCode::TOPIC_ALREADY_EXISTS),
        "{again:?}"
    );
    assert!(!again.is_retriable());
    // A replication factor beyond the brokers is INVALID_REPLICATION_FACTOR.
    let too_many = admin
        .create_topic(NewTopic::new("wide", 1, 3), CALL_TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Some(ErrorCode(38)), "{too_many:?}");

    let described = wait_for_topic(&admin, "events", "events described", |t| {
        t.partitions.len() == 3
    })
    .await;
    assert!(!described.internal);
    assert_eq!(described.topic_id, events.topic_id);
    for (i, p) in described.partitions.iter().enumerate() {
        assert_eq!(p.partition, i as i32);
        assert_eq!(p.leader, Some(node));
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![node], vec![node])
        );
    }
    let missing = admin
        .describe_topics(&["nowhere"], CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        missing["nowhere"].as_ref().unwrap_err().code(),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
    );
    let listed = admin.list_topics(CALL_TIMEOUT).await.unwrap();
    assert!(
        listed.contains_key("events") && listed.contains_key("placed"),
        "{listed:?}"
    );

    // Configs: the topic's own settings are dynamic topic configs; the broker has its own.
    let configs = admin
        .describe_configs(
            &[
                ConfigResource::Topic("events".into()),
                ConfigResource::Broker(node),
                ConfigResource::Topic("nowhere".into()),
            ],
            CALL_TIMEOUT,
        )
        .await
        .unwrap();
    let topic_configs = configs[&ConfigResource::Topic("events".into())]
        .as_ref()
        .unwrap();
    let policy = topic_configs
        .iter()
        .find(|c| c.name == "cleanup.policy")
        .unwrap();
    assert_eq!(policy.value.as_deref(), Some("compact"));
    assert_eq!(policy.source, ConfigSource::DynamicTopicConfig);
    assert!(!configs[&ConfigResource::Broker(node)]
        .as_ref()
        .unwrap()
        .is_empty());
    assert_eq!(
        configs[&ConfigResource::Topic("nowhere".into())]
            .as_ref()
            .unwrap_err()
            .code(),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
    );

    // Incremental changes: retention.ms set, then removed again; a validate_only change and
    // the refusals (an unknown config, a bad value, a topic that does not exist) change nothing.
    let events = ConfigResource::Topic("events".into());
    let set = |value: &str| AlterConfigOp::Set {
        name: "retention.ms".into(),
        value: value.into(),
    };
    let delete = || AlterConfigOp::Delete {
        name: "retention.ms".into(),
    };
    let changed = admin
        .incremental_alter_configs(
            &[(events.clone(), vec![set("7200000")])],
            false,
            CALL_TIMEOUT,
        )
        .await
        .unwrap();
    assert!(changed[&events].is_ok(), "{changed:?}");
    let dynamic_7200000 = Some((Some("7200000".into()), ConfigSource::DynamicTopicConfig));
    assert_eq!(topic_retention(&admin, &events).await, dynamic_7200000);
    let nowhere = ConfigResource::Topic("nowhere".into());
    let refused = admin
        .incremental_alter_configs(
            &[
                (events.clone(), vec![set("soon")]),
                (nowhere.clone(), vec![delete()]),
            ],
            false,
            CALL_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        refused[&events].as_ref().unwrap_err().code(),
        Some(ErrorCode::INVALID_CONFIG)
    );
    assert_eq!(
        refused[&nowhere].as_ref().unwrap_err().code(),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
    );
    for validate_only in [true, false] {
        let deleted = admin
            .incremental_alter_configs(
                &[(events.clone(), vec![delete()])],
                validate_only,
                CALL_TIMEOUT,
            )
            .await
            .unwrap();
        assert!(deleted[&events].is_ok(), "{deleted:?}");
        let now = topic_retention(&admin, &events).await;
        if validate_only {
            assert_eq!(
                now, dynamic_7200000,
                "validate_only and refusals change nothing"
            );
        } else {
            assert_ne!(
                now.map(|(_, source)| source),
                Some(ConfigSource::DynamicTopicConfig),
                "retention.ms back to its default"
            );
        }
    }

    // Growing: 3 -> 5 partitions; shrinking is INVALID_PARTITIONS.
    let grown = admin
        .create_partitions(
            &[
                NewPartitions::increase_to("events", 5),
                NewPartitions::increase_to("placed", 1),
            ],
            CALL_TIMEOUT,
        )
        .await
        .unwrap();
    grown["events"].as_ref().unwrap();
    assert_eq!(
        grown["placed"].as_ref().unwrap_err().code(),
        Some(ErrorCode(37)),
        "{grown:?}"
    );
    wait_for_topic(&admin, "events", "events grown to 5", |t| {
        t.partitions.len() == 5
    })
    .await;

    // Deleting: gone from the metadata; deleting what is not there is UNKNOWN_TOPIC_OR_PARTITION.
    admin.delete_topic("placed", CALL_TIMEOUT).await.unwrap();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while admin
        .list_topics(CALL_TIMEOUT)
        .await
        .unwrap()
        .contains_key("placed")
    {
        assert!(Instant::now() < deadline, "placed still listed");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let gone = admin
        .delete_topic("placed", CALL_TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        gone.code(),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
        "{gone:?}"
    );
    admin.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_listed_earliest_latest_and_by_time() {
    // ListOffsets through Admin: 0 and 10 at the ends, the first record at or after a time, -1 past the last.
    let dir = tempfile::tempdir().unwrap();
    let broker = tests::BrokerProcess::start(dir.path(), &[]).unwrap();
    let admin = Admin::connect(AdminConfig::new(&broker.addr))
        .await
        .unwrap();
    admin
        .create_topic(NewTopic::new("timed", 1, 1), CALL_TIMEOUT)
        .await
        .unwrap();
    let base = tests::now_ms() - 60_000;
    let producer = client::Producer::connect(client::ProducerConfig::new(&broker.addr))
        .await
        .unwrap();
    // One record per batch: the broker answers a lookup by time with the
    // first batch whose largest timestamp reaches it (Kafka would look
    // inside the batch for the first such record).
    for i in 0..10 {
        let record = client::ProducerRecord::new("timed")
            .with_partition(0)
            .with_value(format!("v{i}"))
            .with_timestamp(base + i * 1_000);
        let delivery = producer.send(record).await.unwrap();
        producer.flush().await;
        delivery.await.unwrap();
    }

    let p0 = tp("timed", 0);
    let asked = [
        (p0.clone(), OffsetSpec::Earliest),
        (tp("timed", 7), OffsetSpec::Latest),
    ];
    let listed = admin.list_offsets(&asked, CALL_TIMEOUT).await.unwrap();
    assert_eq!(listed[&p0].as_ref().unwrap().offset, 0);
    // A partition that does not exist fails at once, not after the timeout.
    assert_eq!(
        listed[&tp("timed", 7)].as_ref().unwrap_err().code(),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
    );
    for (spec, offset, timestamp) in [
        (OffsetSpec::Latest, 10, None),
        (OffsetSpec::Timestamp(base + 4_500), 5, Some(base + 5_000)),
        (OffsetSpec::Timestamp(base), 0, Some(base)),
        (OffsetSpec::Timestamp(base + 60_000), -1, None),
        (OffsetSpec::MaxTimestamp, 9, Some(base + 9_000)),
    ] {
        let listed = admin
            .list_offsets(&[(p0.clone(), spec)], CALL_TIMEOUT)
            .await
            .unwrap();
        let ListedOffset {
            offset: got,
            timestamp: got_timestamp,
            ..
        } = listed[&p0].clone().unwrap();
        assert_eq!((got, got_timestamp), (offset, timestamp), "{spec:?}");
    }
    admin.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_deleted_before_an_offset_and_up_to_the_high_watermark() {
    // DeleteRecords through Admin: the log start moves to 4 then to the end; past the end and unknown partitions are refused with their codes.
    let dir = tempfile::tempdir().unwrap();
    let broker = tests::BrokerProcess::start(dir.path(), &[]).unwrap();
    let admin = Admin::connect(AdminConfig::new(&broker.addr))
        .await
        .unwrap();
    admin
        .create_topic(NewTopic::new("trimmed", 1, 1), CALL_TIMEOUT)
        .await
        .unwrap();
    produce(&broker.addr, "trimmed", 10).await;
    let p0 = tp("trimmed", 0);

    let deleted = admin
        .delete_records(&[(p0.clone(), 4), (tp("trimmed", 3), 1)], CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(deleted[&p0].as_ref().unwrap().low_watermark, 4);
    // A partition that does not exist fails at once, not after the timeout.
    assert_eq!(
        deleted[&tp("trimmed", 3)].as_ref().unwrap_err().code(),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
    );
    assert_eq!(earliest(&admin, std::slice::from_ref(&p0)).await, [4]);

    let past_the_end = admin
        .delete_records(&[(p0.clone(), 11)], CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        past_the_end[&p0].as_ref().unwrap_err().code(),
        Some(ErrorCode::OFFSET_OUT_OF_RANGE)
    );
    let everything = admin
        .delete_records(&[(p0.clone(), DELETE_TO_HIGH_WATERMARK)], CALL_TIMEOUT)
        .await
        .unwrap();
    let DeletedRecords { low_watermark, .. } = everything[&p0].clone().unwrap();
    assert_eq!(low_watermark, 10);
    assert_eq!(earliest(&admin, std::slice::from_ref(&p0)).await, [10]);
    admin.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_bounded_by_their_timeout_when_the_broker_is_gone() {
    // With the only broker killed, a call ends with AdminError::Timeout near its timeout instead of hanging.
    let dir = tempfile::tempdir().unwrap();
    let mut broker = tests::BrokerProcess::start(dir.path(), &[]).unwrap();
    let admin = Admin::connect(AdminConfig::new(&broker.addr))
        .await
        .unwrap();
    broker.kill9().unwrap();
    const TIMEOUT: Duration = Duration::from_secs(2);
    let started = Instant::now();
    let error = admin
        .create_topic(NewTopic::new("never", 1, 1), TIMEOUT)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            error,
            AdminError::Timeout {
                operation: "CreateTopics",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retriable());
    assert!(took < TIMEOUT + Duration::from_secs(1), "took {took:?}");
    let started = Instant::now();
    let error = admin.describe_cluster(TIMEOUT).await.unwrap_err();
    assert!(matches!(error, AdminError::Timeout { .. }), "{error:?}");
    assert!(started.elapsed() < TIMEOUT + Duration::from_secs(1));
    // Connecting to nothing fails as a typed cluster error, not a hang.
    let closed = Admin::connect(AdminConfig::new(&broker.addr))
        .await
        .unwrap_err();
    assert!(matches!(closed, AdminError::Cluster(_)), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reassignment_completes_and_leaders_are_elected_through_the_admin_client() {
    // On 3 nodes: [2,3] -> [3,1] is followed to its end; preferred and unclean elections answer as Kafka's do.
    let mut settings = FAST_FAILURE_SETTINGS.to_vec();
    // The controller must not move leaderships back on its own during the test.
    settings.push("auto.leader.rebalance.enable=false");
    let mut cluster = Cluster::start(1, 2, &settings).expect("cluster starts");
    let admin = Admin::connect(AdminConfig::new(&cluster.bootstrap()))
        .await
        .unwrap();
    let described = admin.describe_cluster(CALL_TIMEOUT).await.unwrap();
    let ids: Vec<i32> = described.brokers.iter().map(|b| b.node_id).collect();
    assert_eq!(ids, [1, 2, 3], "{described:?}");
    assert!(described.controller_id.is_some());

    for topic in ["moving", "electing"] {
        admin
            .create_topic(
                NewTopic::with_assignments(topic, vec![vec![2, 3]]),
                CALL_TIMEOUT,
            )
            .await
            .unwrap();
        wait_for_topic(&admin, topic, "both replicas in sync", |t| {
            t.partitions[0].isr.len() == 2 && t.partitions[0].leader == Some(2)
        })
        .await;
    }

    // Reassignment: accepted per partition, listed while in progress, done when the replicas are [3, 1].
    let moved = admin
        .alter_partition_reassignments(
            &[
                (tp("moving", 0), Some(vec![3, 1])),
                (tp("moving", 9), Some(vec![3, 1])),
            ],
            CALL_TIMEOUT,
        )
        .await
        .unwrap();
    moved[&tp("moving", 0)].as_ref().unwrap();
    assert_eq!(
        moved[&tp("moving", 9)].as_ref().unwrap_err().code(),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
        "{moved:?}"
    );
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let ongoing = admin
            .list_partition_reassignments(None, CALL_TIMEOUT)
            .await
            .unwrap();
        let description = &admin
            .describe_topics(&["moving"], CALL_TIMEOUT)
            .await
            .unwrap()["moving"];
        let p = &description.as_ref().unwrap().partitions[0];
        if ongoing.is_empty() && p.replicas == [3, 1] && p.isr.len() == 2 {
            break;
        }
        if let Some(ongoing) = ongoing.get(&tp("moving", 0)) {
            // While it runs, the replica set holds the old and the new replicas.
            assert!(ongoing.adding_replicas.contains(&1), "{ongoing:?}");
        }
        assert!(
            Instant::now() < deadline,
            "reassignment never finished: {p:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }

    // DeleteRecords of two partitions led by two brokers, in one call: each goes to its own leader.
    let leaders: Vec<Option<i32>> = {
        let described = admin
            .describe_topics(&["moving", "electing"], CALL_TIMEOUT)
            .await
            .unwrap();
        ["moving", "electing"]
            .iter()
            .map(|t| described[*t].as_ref().unwrap().partitions[0].leader)
            .collect()
    };
    assert_ne!(leaders[0], leaders[1], "{leaders:?}");
    let both = [tp("moving", 0), tp("electing", 0)];
    for topic in ["moving", "electing"] {
        produce(&cluster.bootstrap(), topic, 5).await;
    }
    let deleted = admin
        .delete_records(&[(both[0].clone(), 3), (both[1].clone(), 2)], CALL_TIMEOUT)
        .await
        .unwrap();
    let low_watermarks: Vec<i64> = both
        .iter()
        .map(|tp| deleted[tp].as_ref().unwrap().low_watermark)
        .collect();
    assert_eq!(low_watermarks, [3, 2], "{deleted:?}");
    assert_eq!(earliest(&admin, &both).await, [3, 2]);

    // Elections: the preferred replica leads already, and a partition with a leader needs no unclean one.
    let electing = [tp("electing", 0)];
    for election in [ElectionType::Preferred, ElectionType::Unclean] {
        let elected = admin
            .elect_leaders(election, Some(&electing), CALL_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(
            elected[&electing[0]].as_ref().unwrap_err().code(),
            Some(ELECTION_NOT_NEEDED),
            "{election:?}: {elected:?}"
        );
    }
    // A controlled shutdown of 2 moves the leadership to 3; once 2 is back in
    // sync, a preferred election gives it back.
    assert_eq!(cluster.terminate(2), 0);
    wait_for_topic(&admin, "electing", "3 leads", |t| {
        t.partitions[0].leader == Some(3)
    })
    .await;
    cluster.restart(2);
    wait_for_topic(&admin, "electing", "2 back in sync", |t| {
        t.partitions[0].isr.len() == 2
    })
    .await;
    let elected = admin
        .elect_leaders(ElectionType::Preferred, Some(&electing), CALL_TIMEOUT)
        .await
        .unwrap();
    elected[&electing[0]].as_ref().unwrap();
    wait_for_topic(&admin, "electing", "2 leads again", |t| {
        t.partitions[0].leader == Some(2)
    })
    .await;
    admin.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_listed_described_their_offsets_altered_and_deleted() {
    // A consumer group through Admin: listed and described with its member's partitions, its commits read, altered and deleted once it is empty, and the group deleted; refusals carry Kafka's codes.
    use client::{Consumer, ConsumerConfig, OffsetAndMetadata};
    use std::collections::BTreeMap;
    let topic = "grouped";
    let group = "admin-group";
    let (_dir, broker) = tests::broker_with_numbered_topic(topic, 2, 10).await;
    let admin = Admin::connect(AdminConfig::new(&broker.addr))
        .await
        .unwrap();
    let mut config = ConsumerConfig::new(&broker.addr).with_group(group);
    config.set("auto.offset.reset", "earliest").unwrap();
    config.set("enable.auto.commit", "false").unwrap();
    let consumer = Consumer::connect(config).await.unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut read = 0;
    while read < 20 {
        assert!(Instant::now() < deadline, "{read} records read");
        read += consumer.poll(POLL_INTERVAL).await.unwrap().len();
    }
    consumer.commit_sync().await.unwrap();

    let listed = admin.list_groups(CALL_TIMEOUT).await.unwrap();
    let ours = listed
        .iter()
        .find(|g| g.group_id == group)
        .unwrap_or_else(|| panic!("{group} not in {listed:?}"));
    assert_eq!(ours.protocol_type, "consumer");
    let described = admin.describe_groups(&[group], CALL_TIMEOUT).await.unwrap();
    let description = described[group].as_ref().unwrap();
    assert_eq!(description.state, "Stable");
    assert_eq!(description.protocol_type, "consumer");
    assert_eq!(description.protocol, "range");
    assert_eq!(description.members.len(), 1);
    assert_eq!(
        description.members[0].assignment,
        [tp(topic, 0), tp(topic, 1)]
    );
    let offsets = admin.list_group_offsets(group, CALL_TIMEOUT).await.unwrap();
    let committed: BTreeMap<TopicPartition, i64> = offsets
        .iter()
        .map(|(tp, o)| (tp.clone(), o.offset))
        .collect();
    assert_eq!(
        committed,
        BTreeMap::from([(tp(topic, 0), 10), (tp(topic, 1), 10)])
    );
    // A group with a member cannot be deleted.
    let refused = admin.delete_groups(&[group], CALL_TIMEOUT).await.unwrap();
    assert_eq!(
        refused[group].as_ref().unwrap_err().code(),
        Some(ErrorCode::NON_EMPTY_GROUP)
    );

    consumer.close().await.unwrap();
    let altered = admin
        .alter_group_offsets(
            group,
            &BTreeMap::from([(tp(topic, 0), OffsetAndMetadata::new(3))]),
            CALL_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(altered[&tp(topic, 0)], Ok(()));
    let removed = admin
        .delete_group_offsets(group, &[tp(topic, 1)], CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(removed[&tp(topic, 1)], Ok(()));
    let offsets = admin.list_group_offsets(group, CALL_TIMEOUT).await.unwrap();
    let committed: BTreeMap<TopicPartition, i64> = offsets
        .iter()
        .map(|(tp, o)| (tp.clone(), o.offset))
        .collect();
    assert_eq!(committed, BTreeMap::from([(tp(topic, 0), 3)]));

    let deleted = admin.delete_groups(&[group], CALL_TIMEOUT).await.unwrap();
    assert_eq!(deleted[group], Ok(()));
    let listed = admin.list_groups(CALL_TIMEOUT).await.unwrap();
    assert!(listed.iter().all(|g| g.group_id != group), "{listed:?}");
    let again = admin.delete_groups(&[group], CALL_TIMEOUT).await.unwrap();
    assert_eq!(
        again[group].as_ref().unwrap_err().code(),
        Some(ErrorCode::GROUP_ID_NOT_FOUND)
    );
}
