//! Kafka's own command-line tools (`kafka-tools` 4.x, run through their main
//! classes, as Kafka's `bin/*.sh` scripts do) against the real broker. Each
//! test checks what a user reads off the tool's output.

use std::time::{Duration, Instant};

use protocol::messages::alter_replica_log_dirs_request::{
    AlterReplicaLogDir, AlterReplicaLogDirTopic,
};
use protocol::messages::{
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, ApiKey, TopicName,
};
use protocol::{ErrorCode, StrBytes};
use tests::external::run_java;
use tests::{batch_of, produce_to, BrokerProcess, Cluster, RawConnection};

/// How long a tool that is run until a condition holds (a deleted topic
/// leaving the list) may keep being run, and a cluster may take to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const CONFIGS: &str = "org.apache.kafka.tools.ConfigCommand";
const CONSOLE_PRODUCER: &str = "org.apache.kafka.tools.ConsoleProducer";
const CONSOLE_CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";
const CONSUMER_GROUPS: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
const GET_OFFSETS: &str = "org.apache.kafka.tools.GetOffsetShell";
const PRODUCER_PERF: &str = "org.apache.kafka.tools.ProducerPerformance";
const CONSUMER_PERF: &str = "org.apache.kafka.tools.ConsumerPerformance";
const METADATA_QUORUM: &str = "org.apache.kafka.tools.MetadataQuorumCommand";
const LEADER_ELECTION: &str = "org.apache.kafka.tools.LeaderElectionCommand";
const LOG_DIRS: &str = "org.apache.kafka.tools.LogDirsCommand";
const DELETE_RECORDS: &str = "org.apache.kafka.tools.DeleteRecordsCommand";
const REASSIGN_PARTITIONS: &str = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";
const CLIENT_METRICS: &str = "org.apache.kafka.tools.ClientMetricsCommand";

/// Runs one of Kafka's tools with `args` (split at whitespace, as a shell
/// would split them) and returns what it printed on its standard output;
/// panics with everything it printed if it failed.
fn tool(main_class: &str, args: &str) -> String {
    tool_with_input(main_class, args, None)
}

fn tool_with_input(main_class: &str, args: &str, stdin: Option<&str>) -> String {
    let args: Vec<&str> = args.split_whitespace().collect();
    run_java(main_class, &args, stdin)
        .expect_success(&format!("{main_class} {args:?}"))
        .to_string()
}

/// The JSON document a tool printed as the last of its lines that start with `{`.
fn last_json_line(output: &str) -> serde_json::Value {
    let line = output
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in:\n{output}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Writes `contents` to `name` in `dir` and returns the file's path, for a tool's `--*-file` option.
fn write_file(dir: &std::path::Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_string()
}

/// The whitespace-separated columns of the line of `output` that starts with
/// `first` and has `second` as its second column (the tables of kafka-consumer-groups).
fn row<'a>(output: &'a str, first: &str, second: &str) -> Vec<&'a str> {
    output
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|columns| columns.len() > 2 && columns[0] == first && columns[1] == second)
        .unwrap_or_else(|| panic!("no row {first} {second} in:\n{output}"))
}

#[test]
fn kafka_topics_and_kafka_configs_create_describe_alter_and_delete_topics() {
    // kafka-topics creates, lists, describes, grows and deletes a topic; kafka-configs describes
    // the config it was created with.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let b = format!("--bootstrap-server {}", broker.addr);

    let created = tool(
        TOPICS,
        &format!("{b} --create --topic tools-topic --partitions 3 --replication-factor 1 --config retention.ms=3600000"),
    );
    assert!(created.contains("Created topic tools-topic."), "{created}");
    let listed = tool(TOPICS, &format!("{b} --list"));
    assert!(listed.lines().any(|l| l == "tools-topic"), "{listed}");

    let described = tool(TOPICS, &format!("{b} --describe --topic tools-topic"));
    assert!(described.contains("PartitionCount: 3"), "{described}");
    assert!(described.contains("ReplicationFactor: 1"), "{described}");
    assert!(described.contains("retention.ms=3600000"), "{described}");
    for partition in 0..3 {
        let line = format!("Partition: {partition}\tLeader: 1\tReplicas: 1\tIsr: 1");
        assert!(described.contains(&line), "{described}");
    }

    let configs = tool(
        CONFIGS,
        &format!("{b} --describe --entity-type topics --entity-name tools-topic"),
    );
    assert!(
        configs.contains("Dynamic configs for topic tools-topic are:"),
        "{configs}"
    );
    assert!(configs.contains("retention.ms=3600000"), "{configs}");

    tool(
        TOPICS,
        &format!("{b} --alter --topic tools-topic --partitions 5"),
    );
    let described = tool(TOPICS, &format!("{b} --describe --topic tools-topic"));
    assert!(described.contains("PartitionCount: 5"), "{described}");

    tool(TOPICS, &format!("{b} --delete --topic tools-topic"));
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let listed = tool(TOPICS, &format!("{b} --list"));
        if !listed.lines().any(|l| l == "tools-topic") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tools-topic still listed:\n{listed}"
        );
    }
}

#[test]
fn console_producer_and_consumer_round_trip_and_consumer_groups_show_lag_and_reset_it() {
    // Keyed lines through the console producer come back from the console consumer; a group that
    // read 10 of 20 shows lag 10 in kafka-consumer-groups, and a reset to the earliest offset
    // makes it 20; kafka-get-offsets gives both ends.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let b = format!("--bootstrap-server {}", broker.addr);
    tool(
        TOPICS,
        &format!("{b} --create --topic console --partitions 1"),
    );

    let lines: String = (0..20).map(|i| format!("key{i}:value-{i}\n")).collect();
    tool_with_input(
        CONSOLE_PRODUCER,
        &format!("{b} --topic console --reader-property parse.key=true --reader-property key.separator=:"),
        Some(&lines),
    );

    let latest = tool(GET_OFFSETS, &format!("{b} --topic console"));
    assert_eq!(latest.trim(), "console:0:20", "{latest}");
    let earliest = tool(GET_OFFSETS, &format!("{b} --topic console --time -2"));
    assert_eq!(earliest.trim(), "console:0:0", "{earliest}");

    // Ten records read in a group, at most ten a poll, so that the position the consumer commits
    // when it closes is where it stopped printing.
    let consumed = tool(
        CONSOLE_CONSUMER,
        &format!(
            "{b} --topic console --group console-group --from-beginning --max-messages 10 \
             --timeout-ms 30000 --command-property max.poll.records=10 \
             --formatter-property print.key=true --formatter-property print.offset=true"
        ),
    );
    let printed: Vec<&str> = consumed.lines().collect();
    assert_eq!(printed.len(), 10, "{consumed}");
    for (i, line) in printed.iter().enumerate() {
        assert_eq!(
            *line,
            format!("Offset:{i}\tkey{i}\tvalue-{i}"),
            "{consumed}"
        );
    }

    let groups = tool(CONSUMER_GROUPS, &format!("{b} --list"));
    assert!(groups.lines().any(|l| l == "console-group"), "{groups}");
    let described = tool(
        CONSUMER_GROUPS,
        &format!("{b} --describe --group console-group"),
    );
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
    let columns = row(&described, "console-group", "console");
    assert_eq!(&columns[2..6], ["0", "10", "20", "10"], "{described}");

    let reset = tool(
        CONSUMER_GROUPS,
        &format!(
            "{b} --reset-offsets --group console-group --topic console --to-earliest --execute"
        ),
    );
    // GROUP TOPIC PARTITION NEW-OFFSET
    let columns = row(&reset, "console-group", "console");
    assert_eq!(&columns[2..4], ["0", "0"], "{reset}");
    let described = tool(
        CONSUMER_GROUPS,
        &format!("{b} --describe --group console-group"),
    );
    let columns = row(&described, "console-group", "console");
    assert_eq!(&columns[2..6], ["0", "0", "20", "20"], "{described}");
}

#[test]
fn producer_and_consumer_perf_tests_report_every_record() {
    // kafka-producer-perf-test sends 2,000 records and kafka-consumer-perf-test reads them all.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let b = format!("--bootstrap-server {}", broker.addr);
    tool(TOPICS, &format!("{b} --create --topic perf --partitions 2"));

    let produced = tool(
        PRODUCER_PERF,
        &format!(
            "--topic perf --num-records 2000 --record-size 100 --throughput -1 \
             --command-property bootstrap.servers={}",
            broker.addr
        ),
    );
    assert!(produced.contains("2000 records sent"), "{produced}");

    let consumed = tool(
        CONSUMER_PERF,
        &format!("{b} --topic perf --num-records 2000 --timeout 30000"),
    );
    // A header, then start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, ...
    let figures: Vec<&str> = consumed
        .lines()
        .last()
        .unwrap_or_default()
        .split(", ")
        .collect();
    assert_eq!(figures.get(4), Some(&"2000"), "{consumed}");
}

#[test]
fn metadata_quorum_and_leader_election_work_on_three_brokers() {
    // On 3 brokers: kafka-metadata-quorum names the leader and the voters; kafka-leader-election
    // gives a partition back to its preferred leader after a restart moved the leadership away.
    let mut settings = tests::cluster::FAST_FAILURE_SETTINGS.to_vec();
    // The controller must not move leaderships back on its own during the test.
    settings.push("auto.leader.rebalance.enable=false");
    let mut cluster = Cluster::start(3, 0, &settings).expect("cluster starts");
    let b = format!("--bootstrap-server {}", cluster.bootstrap());

    let status = tool(METADATA_QUORUM, &format!("{b} describe --status"));
    let leader: i32 = status
        .lines()
        .find_map(|l| l.strip_prefix("LeaderId:"))
        .unwrap_or_else(|| panic!("no LeaderId in:\n{status}"))
        .trim()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&leader), "{status}");
    let voters = status
        .lines()
        .find(|l| l.starts_with("CurrentVoters:"))
        .unwrap_or_else(|| panic!("no CurrentVoters in:\n{status}"));
    for id in 1..=3 {
        assert!(voters.contains(&format!("\"id\": {id}")), "{status}");
    }
    let replication = tool(METADATA_QUORUM, &format!("{b} describe --replication"));
    assert!(replication.contains("Leader"), "{replication}");

    cluster.create_topic_on(1, "electing", &[1, 2]);
    cluster.wait_for(1, "electing in sync, led by 1", SETTLE_TIMEOUT, |view| {
        view.partitions("electing")
            .first()
            .is_some_and(|p| p.isr.len() == 2 && p.leader == 1)
    });
    let electing = "--election-type preferred --topic electing --partition 0";
    let not_needed = tool(LEADER_ELECTION, &format!("{b} {electing}"));
    assert!(
        not_needed.contains("Valid replica already elected for partitions electing-0"),
        "{not_needed}"
    );
    assert_eq!(cluster.terminate(1), 0);
    cluster.wait_for(2, "electing led by 2", SETTLE_TIMEOUT, |view| {
        view.partitions("electing")
            .first()
            .is_some_and(|p| p.leader == 2)
    });
    cluster.restart(1);
    cluster.wait_for(2, "1 back in sync", SETTLE_TIMEOUT, |view| {
        view.partitions("electing")
            .first()
            .is_some_and(|p| p.isr.len() == 2)
    });
    let elected = tool(LEADER_ELECTION, &format!("{b} {electing}"));
    assert!(
        elected.contains(
            "Successfully completed leader election (PREFERRED) for partitions electing-0"
        ),
        "{elected}"
    );
    cluster.wait_for(2, "electing led by 1 again", SETTLE_TIMEOUT, |view| {
        view.partitions("electing")
            .first()
            .is_some_and(|p| p.leader == 1)
    });
}

#[test]
fn log_dirs_shows_replica_sizes_and_delete_records_moves_the_earliest_offset() {
    // kafka-log-dirs reports the data dir as the broker's log dir, a size for the partition that
    // holds records and none for the empty one; kafka-delete-records deletes the first five
    // records, and kafka-get-offsets then gives 5 as the earliest offset and 10 as the latest.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let b = format!("--bootstrap-server {}", broker.addr);
    tool(TOPICS, &format!("{b} --create --topic logs --partitions 2"));
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let values: Vec<String> = (0..10).map(|i| format!("value-{i}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let (code, _) = produce_to(&mut conn, "logs", 0, batch_of(&values), -1).unwrap();
    assert_eq!(code, 0);

    let described = tool(LOG_DIRS, &format!("{b} --describe --topic-list logs"));
    assert!(
        described.contains("Received log directory information from brokers 1"),
        "{described}"
    );
    let json = last_json_line(&described);
    let brokers = json["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1, "{described}");
    assert_eq!(brokers[0]["broker"], 1, "{described}");
    let log_dirs = brokers[0]["logDirs"].as_array().unwrap();
    assert_eq!(log_dirs.len(), 1, "{described}");
    assert_eq!(log_dirs[0]["logDir"], dir.path().to_str().unwrap());
    assert!(log_dirs[0]["error"].is_null(), "{described}");
    let partition = |name: &str| {
        log_dirs[0]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["partition"] == name)
            .unwrap_or_else(|| panic!("no {name} in:\n{described}"))
            .clone()
    };
    let (written, empty) = (partition("logs-0"), partition("logs-1"));
    assert!(written["size"].as_i64().unwrap() > 0, "{described}");
    assert_eq!(empty["size"], 0, "{described}");
    for replica in [&written, &empty] {
        assert_eq!(replica["offsetLag"], 0, "{described}");
        assert_eq!(replica["isFuture"], false, "{described}");
    }

    let offsets = write_file(
        dir.path(),
        "delete-records.json",
        r#"{"partitions":[{"topic":"logs","partition":0,"offset":5}],"version":1}"#,
    );
    let deleted = tool(DELETE_RECORDS, &format!("{b} --offset-json-file {offsets}"));
    assert!(
        deleted.contains("partition: logs-0\tlow_watermark: 5"),
        "{deleted}"
    );
    let earliest = tool(
        GET_OFFSETS,
        &format!("{b} --topic logs --partitions 0 --time -2"),
    );
    assert_eq!(earliest.trim(), "logs:0:5", "{earliest}");
    let latest = tool(GET_OFFSETS, &format!("{b} --topic logs --partitions 0"));
    assert_eq!(latest.trim(), "logs:0:10", "{latest}");
}

#[test]
fn reassign_partitions_moves_a_partition_and_its_log_dirs_and_verify_reports_completion() {
    // On 3 brokers, a partition on brokers 1 and 2: kafka-reassign-partitions --generate proposes
    // brokers 2 and 3; --execute with that proposal, each replica's log dir named and both
    // throttles starts the move, sets the throttles, and retries AlterReplicaLogDirs until broker
    // 3 has its replica; --verify reports the partition and both replicas' dirs complete and
    // clears every throttle; kafka-topics shows the new replicas in sync, and every record reads
    // back in order.
    let cluster =
        Cluster::start(3, 0, tests::cluster::FAST_FAILURE_SETTINGS).expect("cluster starts");
    let b = format!("--bootstrap-server {}", cluster.bootstrap());
    cluster.create_topic_on(1, "moving", &[1, 2]);
    // Seen from broker 3, which is asked about the partition below.
    cluster.wait_for(3, "moving in sync on 1 and 2", SETTLE_TIMEOUT, |view| {
        view.partitions("moving")
            .first()
            .is_some_and(|p| p.isr.len() == 2)
    });
    let log_dir = |id: i32| cluster.data_dir(id).to_str().unwrap().to_string();

    // Broker 3 hosts no replica of it yet: Kafka answers REPLICA_NOT_AVAILABLE to a move there.
    let mut conn = RawConnection::connect(&cluster.client_addr(3)).unwrap();
    let request =
        AlterReplicaLogDirsRequest::default().with_dirs(vec![AlterReplicaLogDir::default()
            .with_path(StrBytes::from_string(log_dir(3)))
            .with_topics(vec![AlterReplicaLogDirTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("moving")))
                .with_partitions(vec![0])])]);
    let response: AlterReplicaLogDirsResponse =
        conn.call(ApiKey::AlterReplicaLogDirs, 2, &request).unwrap();
    assert_eq!(
        response.results[0].partitions[0].error_code,
        ErrorCode::REPLICA_NOT_AVAILABLE.code()
    );

    let lines: String = (0..50).map(|i| format!("value-{i}\n")).collect();
    tool_with_input(
        CONSOLE_PRODUCER,
        &format!("{b} --topic moving"),
        Some(&lines),
    );

    let files = tempfile::tempdir().unwrap();
    let topics = write_file(
        files.path(),
        "topics.json",
        r#"{"topics":[{"topic":"moving"}],"version":1}"#,
    );
    let generated = tool(
        REASSIGN_PARTITIONS,
        &format!("{b} --generate --topics-to-move-json-file {topics} --broker-list 2,3"),
    );
    assert!(
        generated.contains("Proposed partition reassignment configuration"),
        "{generated}"
    );
    let mut proposal = last_json_line(&generated);
    let partition = &mut proposal["partitions"][0];
    let replicas: Vec<i32> = partition["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_i64().unwrap() as i32)
        .collect();
    let mut sorted = replicas.clone();
    sorted.sort();
    assert_eq!(sorted, vec![2, 3], "{generated}");
    assert_eq!(partition["log_dirs"], serde_json::json!(["any", "any"]));
    partition["log_dirs"] = replicas.iter().map(|r| log_dir(*r)).collect();
    let reassignment = write_file(files.path(), "reassignment.json", &proposal.to_string());

    // Throttles high enough not to slow these 50 records down.
    let executed = tool(
        REASSIGN_PARTITIONS,
        &format!(
            "{b} --execute --reassignment-json-file {reassignment} \
             --throttle 50000000 --replica-alter-log-dirs-throttle 100000000"
        ),
    );
    assert!(
        executed.contains("Successfully started partition reassignment for moving-0"),
        "{executed}"
    );
    assert!(
        executed.contains("The inter-broker throttle limit was set to 50000000 B/s"),
        "{executed}"
    );
    assert!(
        executed.contains("The replica-alter-dir throttle limit was set to 100000000 B/s"),
        "{executed}"
    );
    // The replicas it moves from throttled on their leader, the one it moves to as a follower.
    let new_replica = replicas.iter().find(|r| **r != 1 && **r != 2).unwrap();
    let topic_configs = tool(
        CONFIGS,
        &format!("{b} --describe --entity-type topics --entity-name moving"),
    );
    assert!(
        topic_configs.contains("leader.replication.throttled.replicas=0:1,0:2 "),
        "{topic_configs}"
    );
    assert!(
        topic_configs.contains(&format!(
            "follower.replication.throttled.replicas=0:{new_replica} "
        )),
        "{topic_configs}"
    );
    let broker_configs = tool(
        CONFIGS,
        &format!("{b} --describe --entity-type brokers --entity-name {new_replica}"),
    );
    for rate in [
        "leader.replication.throttled.rate=50000000",
        "follower.replication.throttled.rate=50000000",
        "replica.alter.log.dirs.io.max.bytes.per.second=100000000",
    ] {
        assert!(broker_configs.contains(rate), "{broker_configs}");
    }
    for replica in &replicas {
        let started = format!(
            "Successfully started moving log directory to {} for replica moving-0 with broker {replica}",
            log_dir(*replica)
        );
        assert!(executed.contains(&started), "{executed}");
    }

    // Once it is done, --verify also clears the throttles of every broker and of the topic.
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let verified = loop {
        let verified = tool(
            REASSIGN_PARTITIONS,
            &format!("{b} --verify --reassignment-json-file {reassignment}"),
        );
        if verified.contains("Reassignment of partition moving-0 is completed.") {
            break verified;
        }
        assert!(
            Instant::now() < deadline,
            "the reassignment did not complete:\n{verified}"
        );
    };
    for replica in &replicas {
        let completed =
            format!("Reassignment of replica moving-0-{replica} completed successfully.");
        assert!(verified.contains(&completed), "{verified}");
    }
    assert!(
        verified.contains("Clearing broker-level throttles on brokers 1,2,3"),
        "{verified}"
    );
    assert!(
        verified.contains("Clearing topic-level throttles on topic moving"),
        "{verified}"
    );
    let topic_configs = tool(
        CONFIGS,
        &format!("{b} --describe --entity-type topics --entity-name moving"),
    );
    assert!(!topic_configs.contains("throttled"), "{topic_configs}");
    for id in 1..=3 {
        let broker_configs = tool(
            CONFIGS,
            &format!("{b} --describe --entity-type brokers --entity-name {id}"),
        );
        assert!(
            broker_configs.contains(&format!("Dynamic configs for broker {id} are:")),
            "{broker_configs}"
        );
        assert!(!broker_configs.contains("throttled"), "{broker_configs}");
        assert!(
            !broker_configs.contains("replica.alter"),
            "{broker_configs}"
        );
    }

    let expected = replicas
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(",");
    cluster.wait_for(
        2,
        "moving in sync on its new replicas",
        SETTLE_TIMEOUT,
        |view| {
            view.partitions("moving")
                .first()
                .is_some_and(|p| p.isr.len() == 2 && !p.isr.contains(&1))
        },
    );
    let described = tool(TOPICS, &format!("{b} --describe --topic moving"));
    assert!(
        described.contains(&format!("Replicas: {expected}\tIsr: ")),
        "{described}"
    );
    let isr_line = described
        .lines()
        .find(|l| l.contains("Partition: 0"))
        .unwrap_or_else(|| panic!("no partition 0 in:\n{described}"));
    let isr: Vec<&str> = isr_line
        .split("Isr: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .split(',')
        .collect();
    let mut isr_sorted = isr.clone();
    isr_sorted.sort();
    assert_eq!(isr_sorted, ["2", "3"], "{described}");

    let consumed = tool(
        CONSOLE_CONSUMER,
        &format!("{b} --topic moving --from-beginning --max-messages 50 --timeout-ms 30000"),
    );
    let expected_lines: Vec<String> = (0..50).map(|i| format!("value-{i}")).collect();
    assert_eq!(
        consumed.lines().collect::<Vec<_>>(),
        expected_lines,
        "{consumed}"
    );
}

/// The replication throttle of the throttle test, and the most a follower
/// fetches of a partition at once (so one fetch overdraws it by little).
const THROTTLE_BYTES_PER_S: u64 = 256 * 1024;
const REPLICA_FETCH_BYTES: u64 = 64 * 1024;

/// The size of broker `id`'s replica of partition 0 of `topic`, as its DescribeLogDirs answers.
fn replica_size(cluster: &Cluster, id: i32, topic: &str) -> Option<u64> {
    use protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
    let mut conn = RawConnection::connect(&cluster.client_addr(id)).ok()?;
    let request =
        DescribeLogDirsRequest::default()
            .with_topics(Some(vec![DescribableLogDirTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![0])]));
    let response: DescribeLogDirsResponse = conn.call(ApiKey::DescribeLogDirs, 4, &request).ok()?;
    let partition = response
        .results
        .first()?
        .topics
        .first()?
        .partitions
        .first()?;
    Some(partition.partition_size as u64)
}

/// The value of config `key` of resource (`resource_type`, `name`) as broker `id`'s DescribeConfigs answers it.
fn described_config(
    cluster: &Cluster,
    id: i32,
    resource_type: i8,
    name: &str,
    key: &str,
) -> Option<String> {
    use protocol::messages::describe_configs_request::DescribeConfigsResource;
    use protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
    let mut conn = RawConnection::connect(&cluster.client_addr(id)).ok()?;
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configuration_keys(Some(vec![StrBytes::from_string(key.to_string())]))]);
    let response: DescribeConfigsResponse = conn.call(ApiKey::DescribeConfigs, 4, &request).ok()?;
    let config = response.results.first()?.configs.first()?;
    config.value.as_ref().map(|v| v.to_string())
}

/// Moves partition 0 of `topic` from broker 1 to brokers 1 and 2 with
/// AlterPartitionReassignments and returns how long broker 2 took to hold
/// all `bytes` of it, polling its size.
fn time_copy_to_broker_2(cluster: &Cluster, topic: &str, bytes: u64) -> Duration {
    use protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use protocol::messages::{
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    };
    let mut conn = RawConnection::connect(&cluster.client_addr(1)).unwrap();
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(Some(vec![BrokerId(1), BrokerId(2)]))])]);
    let started = Instant::now();
    let answer: AlterPartitionReassignmentsResponse = conn
        .call(ApiKey::AlterPartitionReassignments, 0, &request)
        .unwrap();
    assert_eq!(
        answer.responses[0].partitions[0].error_code, 0,
        "{answer:?}"
    );
    assert!(
        tests::wait_until(SETTLE_TIMEOUT, || {
            replica_size(cluster, 2, topic).is_some_and(|size| size >= bytes)
        }),
        "broker 2 holds all {bytes} bytes of {topic} within {SETTLE_TIMEOUT:?}"
    );
    let took = started.elapsed();
    cluster.wait_for(1, "the new replica in sync", SETTLE_TIMEOUT, |view| {
        view.partitions(topic)
            .first()
            .is_some_and(|p| p.isr.contains(&2))
    });
    took
}

#[test]
fn a_throttle_set_with_kafka_configs_holds_a_reassignments_copy_to_its_rate() {
    // On 3 brokers, kafka-configs sets the leader and follower replication rates of every broker
    // to 256 KiB/s; then three partitions of 2 MB each gain a replica on broker 2. The one whose
    // topic lists no throttled replica copies faster than twice the rate. The one whose topic
    // lists its leader's replica (0:1) as leader-throttled, and the one whose topic lists its new
    // replica (0:2) as follower-throttled, each copy no faster than the rate allows (one second
    // of burst and one fetch beyond it), and no slower than a quarter of it.
    let mut settings = tests::cluster::FAST_FAILURE_SETTINGS.to_vec();
    let fetch_bytes = format!("replica.fetch.max.bytes={REPLICA_FETCH_BYTES}");
    settings.push(&fetch_bytes);
    let cluster = Cluster::start(3, 0, &settings).expect("cluster starts");
    let b = format!("--bootstrap-server {}", cluster.bootstrap());
    let mut conn = RawConnection::connect(&cluster.client_addr(1)).unwrap();
    let padding = "x".repeat(1_000);
    let values: Vec<&str> = (0..16).map(|_| padding.as_str()).collect();
    let topics = [
        ("unthrottled", None),
        (
            "leader-throttled",
            Some("leader.replication.throttled.replicas=[0:1]"),
        ),
        (
            "follower-throttled",
            Some("follower.replication.throttled.replicas=[0:2]"),
        ),
    ];
    for (topic, _) in topics {
        cluster.create_topic_on(1, topic, &[1]);
        for _ in 0..128 {
            let (code, _) = produce_to(&mut conn, topic, 0, batch_of(&values), 1).unwrap();
            assert_eq!(code, 0);
        }
    }
    let bytes = replica_size(&cluster, 1, "unthrottled").unwrap();
    assert!(bytes > 2_000_000, "{bytes} bytes written");

    let rate = THROTTLE_BYTES_PER_S;
    tool(
        CONFIGS,
        &format!(
            "{b} --alter --entity-type brokers --entity-default --add-config \
             leader.replication.throttled.rate={rate},follower.replication.throttled.rate={rate}"
        ),
    );
    for (topic, list) in topics {
        let Some(list) = list else { continue };
        tool(
            CONFIGS,
            &format!("{b} --alter --entity-type topics --entity-name {topic} --add-config {list}"),
        );
        let (key, value) = list.split_once('=').unwrap();
        let value = value.trim_matches(['[', ']']);
        let described = tool(
            CONFIGS,
            &format!("{b} --describe --entity-type topics --entity-name {topic}"),
        );
        assert!(
            described.contains(&format!("{key}={value} ")),
            "{described}"
        );
        // Brokers 1 and 2 have the rates once they have the list, committed after them.
        for id in [1, 2] {
            assert!(
                tests::wait_until(SETTLE_TIMEOUT, || {
                    described_config(&cluster, id, 2, topic, key).as_deref() == Some(value)
                }),
                "broker {id} has {topic}'s {key}"
            );
            let applied = described_config(
                &cluster,
                id,
                4,
                &id.to_string(),
                "leader.replication.throttled.rate",
            );
            assert_eq!(applied, Some(rate.to_string()), "broker {id}'s leader rate");
        }
    }

    let per_s = |took: Duration| bytes as f64 / took.as_secs_f64();
    // The token bucket lets one second's worth through at once, and a fetch may overdraw it.
    let least = Duration::from_secs_f64((bytes - rate - REPLICA_FETCH_BYTES) as f64 / rate as f64);
    for (topic, list) in topics {
        assert_eq!(replica_size(&cluster, 1, topic), Some(bytes));
        let took = time_copy_to_broker_2(&cluster, topic, bytes);
        eprintln!(
            "{topic}: {bytes} bytes copied in {took:?} ({:.0} B/s; the rate is {rate} B/s)",
            per_s(took)
        );
        if list.is_none() {
            assert!(
                per_s(took) > 2.0 * rate as f64,
                "without a listed replica the copy is not throttled: {took:?}"
            );
        } else {
            assert!(
                took >= least.mul_f64(0.8),
                "{topic}: the copy took {took:?}, the rate allows no less than {least:?}"
            );
            assert!(
                per_s(took) >= rate as f64 / 4.0,
                "{topic}: the copy moves at the rate, not slower: {took:?}"
            );
        }
    }
}

#[test]
fn kafka_configs_adds_and_deletes_topic_broker_and_default_broker_configs() {
    // kafka-configs --alter --add-config / --delete-config on a topic, on broker 1 and on the
    // cluster-wide broker default; --describe shows each change with Kafka's synonyms.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let b = format!("--bootstrap-server {}", broker.addr);
    tool(
        TOPICS,
        &format!("{b} --create --topic configured --partitions 1"),
    );

    let topic = "--entity-type topics --entity-name configured";
    tool(
        CONFIGS,
        &format!("{b} --alter {topic} --add-config compression.type=zstd,retention.ms=3600000"),
    );
    let described = tool(CONFIGS, &format!("{b} --describe {topic}"));
    assert!(described.contains("compression.type=zstd"), "{described}");
    assert!(described.contains("retention.ms=3600000"), "{described}");
    tool(
        CONFIGS,
        &format!("{b} --alter {topic} --delete-config retention.ms"),
    );
    let described = tool(CONFIGS, &format!("{b} --describe {topic}"));
    assert!(described.contains("compression.type=zstd"), "{described}");
    assert!(!described.contains("retention.ms=3600000"), "{described}");

    let one = "--entity-type brokers --entity-name 1";
    tool(
        CONFIGS,
        &format!("{b} --alter {one} --add-config message.max.bytes=2000000"),
    );
    let described = tool(CONFIGS, &format!("{b} --describe {one}"));
    assert!(
        described.contains("Dynamic configs for broker 1 are:"),
        "{described}"
    );
    assert!(
        described.contains("message.max.bytes=2000000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:message.max.bytes=2000000, DEFAULT_CONFIG:message.max.bytes=1048588}"),
        "{described}"
    );

    let default = "--entity-type brokers --entity-default";
    tool(
        CONFIGS,
        &format!("{b} --alter {default} --add-config log.retention.ms=7200000"),
    );
    let described = tool(CONFIGS, &format!("{b} --describe {default}"));
    assert!(
        described.contains("Default configs for brokers in the cluster are:"),
        "{described}"
    );
    assert!(
        described.contains("log.retention.ms=7200000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=7200000}"),
        "{described}"
    );
    let all = tool(CONFIGS, &format!("{b} --describe {one} --all"));
    assert!(all.contains("log.retention.ms=7200000"), "{all}");

    tool(
        CONFIGS,
        &format!("{b} --alter {one} --delete-config message.max.bytes"),
    );
    tool(
        CONFIGS,
        &format!("{b} --alter {default} --delete-config log.retention.ms"),
    );
    let described = tool(CONFIGS, &format!("{b} --describe {one}"));
    assert!(!described.contains("message.max.bytes="), "{described}");
    let described = tool(CONFIGS, &format!("{b} --describe {default}"));
    assert!(!described.contains("log.retention.ms="), "{described}");
}

#[test]
fn client_metrics_resources_are_listed_through_list_config_resources() {
    // kafka-client-metrics --list and --describe, and kafka-configs --describe of client-metrics
    // entities, ask ListConfigResources for client-metrics subscriptions: the broker keeps none,
    // so the list is empty and a named one does not exist.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let b = format!("--bootstrap-server {}", broker.addr);
    let listed = tool(CLIENT_METRICS, &format!("{b} --list"));
    assert_eq!(listed.trim(), "", "no subscriptions: {listed}");
    let described = tool(CLIENT_METRICS, &format!("{b} --describe --name sampled"));
    assert!(
        described.contains(
            "The client metric resource sampled doesn't exist and doesn't have dynamic config."
        ),
        "{described}"
    );
    let configs = tool(
        CONFIGS,
        &format!("{b} --describe --entity-type client-metrics --entity-name sampled"),
    );
    assert!(
        configs
            .contains("The client-metric 'sampled' doesn't exist and doesn't have dynamic config."),
        "{configs}"
    );
    let all = tool(
        CONFIGS,
        &format!("{b} --describe --entity-type client-metrics"),
    );
    assert_eq!(all.trim(), "", "no client-metrics resources: {all}");
}
