//! Kafka's Java client (`kafka-clients` 4.x, the version in `tests/java/pom.xml`)
//! against the real broker: small programs in `tests/java/src` do the talking
//! and check what they see; these tests check the broker's side of it.

use tests::external::run_java;
use tests::{create_topic, fetch_partition, BrokerProcess, RawConnection};

/// The stored batches of one partition, each checked against its CRC.
fn stored_batches(addr: &str, topic: &str, partition: i32) -> Vec<bytes::Bytes> {
    let mut conn = RawConnection::connect(addr).unwrap();
    let records = fetch_partition(&mut conn, topic, partition, 0).unwrap();
    protocol::batch::batches(&records)
        .inspect(|batch| {
            protocol::batch::BatchHeader::new(batch)
                .unwrap()
                .validate()
                .unwrap()
        })
        .collect()
}

#[test]
fn java_producer_with_its_defaults_is_idempotent_and_its_records_read_back() {
    // The producer with only bootstrap.servers set (acks=all, idempotence on) writes 300 keyed
    // records over 3 partitions, dense and in order; its batches carry a producer id.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "java-defaults", 3);

    let output = run_java(
        "ProducerDefaults",
        &[&broker.addr, "java-defaults", "3", "300"],
        None,
    );
    let stdout = output.expect_success("ProducerDefaults");
    assert!(
        stdout.contains("acks=-1 enable.idempotence=true"),
        "{stdout}"
    );
    assert!(stdout.contains("consumed 300"), "{stdout}");
    assert!(stdout.contains("ProducerDefaults ok"), "{stdout}");

    let mut stored = 0;
    for partition in 0..3 {
        for batch in stored_batches(&broker.addr, "java-defaults", partition) {
            let header = protocol::batch::BatchHeader::new(&batch).unwrap();
            assert!(
                header.producer_id() >= 0,
                "an idempotent producer's batch has a producer id"
            );
            stored += header.records_count();
        }
    }
    assert_eq!(stored, 300, "every record stored once");
}

#[test]
fn java_producer_batches_of_every_codec_are_stored_intact_and_read_back() {
    // gzip, snappy, lz4 and zstd batches from the Java producer keep their codec and CRC on the
    // broker and decode on the Java consumer.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    for (codec, bits) in [("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4)] {
        let topic = format!("java-{codec}");
        create_topic(&mut conn, &topic, 1);
        let output = run_java(
            "ProducerDefaults",
            &[&broker.addr, &topic, "1", "200", codec],
            None,
        );
        let stdout = output.expect_success(&format!("ProducerDefaults with {codec}"));
        assert!(
            stdout.contains(&format!("compression.type={codec}")),
            "{stdout}"
        );
        assert!(stdout.contains("consumed 200"), "{stdout}");
        let batches = stored_batches(&broker.addr, &topic, 0);
        assert!(!batches.is_empty());
        for batch in batches {
            let header = protocol::batch::BatchHeader::new(&batch).unwrap();
            assert_eq!(header.attributes() & 0x07, bits, "{codec} batch attributes");
        }
    }
}

#[test]
fn java_consumer_group_shares_partitions_across_a_rebalance_and_commits() {
    // Three Java consumers in one group: one owns every partition, two join and the partitions are
    // shared, one leaves and the others take over from its commits; no record is read twice and
    // the committed offsets end at the log end.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_dir, broker) =
        runtime.block_on(tests::broker_with_numbered_topic("java-group-topic", 6, 50));
    let output = run_java(
        "GroupMembers",
        &[&broker.addr, "java-group-topic", "6", "50", "java-group"],
        None,
    );
    let stdout = output.expect_success("GroupMembers");
    assert!(stdout.contains("GroupMembers ok read=420"), "{stdout}");

    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let committed = tests::committed_offsets(
        &mut conn,
        "java-group",
        "java-group-topic",
        &[0, 1, 2, 3, 4, 5],
    )
    .unwrap();
    assert_eq!(committed, vec![70; 6], "committed at the log end");
}

#[test]
fn java_admin_client_manages_topics_configs_groups_and_offsets() {
    // AdminClient: topics created, refused twice, described, grown and deleted; a topic's configs;
    // the cluster; offsets earliest, latest, by time and of the largest timestamp; a group's
    // offsets listed, altered and deleted, then the group; records deleted; a topic's config set
    // and deleted incrementally; the broker's own settings.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let output = run_java(
        "AdminTour",
        &[
            &broker.addr,
            "topics",
            "configs",
            "cluster",
            "offsets",
            "groups",
            "delete-records",
            "alter-configs",
            "broker-configs",
        ],
        None,
    );
    let stdout = output.expect_success("AdminTour");
    for section in [
        "topics",
        "configs",
        "cluster",
        "offsets",
        "groups",
        "delete-records",
        "alter-configs",
        "broker-configs",
    ] {
        assert!(
            stdout.contains(&format!("section {section} ok")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("AdminTour ok"), "{stdout}");
}

#[test]
fn java_admin_client_describes_log_dirs_and_pages_through_topic_partitions() {
    // AdminClient: describeLogDirs names the data dir with the volume's sizes and a size for the
    // written partition, describeReplicaLogDirs finds the replica there, alterReplicaLogDirs
    // accepts only that dir; describeTopics pages through 30 partitions seven at a time
    // (DescribeTopicPartitions' cursor) with every leader and ISR right.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let output = run_java(
        "AdminTour",
        &[&broker.addr, "log-dirs", "topic-pages"],
        None,
    );
    let stdout = output.expect_success("AdminTour");
    assert!(
        stdout.contains(&format!("log-dirs dir {} written", dir.path().display())),
        "the log dir is the data dir: {stdout}"
    );
    for section in ["log-dirs", "topic-pages"] {
        assert!(
            stdout.contains(&format!("section {section} ok")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("AdminTour ok"), "{stdout}");
}

#[test]
fn java_admin_client_lists_config_resources_by_type() {
    // AdminClient: listConfigResources (ListConfigResources v1) lists the topics, the broker and
    // its loggers, each type alone when asked, and nothing for client metrics and groups;
    // listClientMetricsResources, its former name, lists nothing either.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let output = run_java("AdminTour", &[&broker.addr, "config-resources"], None);
    let stdout = output.expect_success("AdminTour");
    assert!(stdout.contains("section config-resources ok"), "{stdout}");
    assert!(stdout.contains("AdminTour ok"), "{stdout}");
}
