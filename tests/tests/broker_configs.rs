//! Config changes on real broker processes: kafka-python's and librdkafka's
//! admin clients alter topic configs (IncrementalAlterConfigs, AlterConfigs),
//! the change takes effect (retention), a broker's own settings are described
//! and refused as read-only, and in a cluster a change made through any
//! broker is committed by the controller and seen by every broker.

use std::time::Duration;

use protocol::messages::describe_configs_request::DescribeConfigsResource;
use protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use protocol::messages::{
    ApiKey, DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use protocol::{ErrorCode, StrBytes};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use tests::{batch_of, produce_to, BrokerProcess, Cluster, RawConnection};

/// How long retention may take to act on a changed `retention.ms`: a few
/// of the retention checks the test broker runs every 200 ms.
const RETENTION_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a committed config change may take to reach every broker.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(20);

/// A topic config's value as DescribeConfigs v4 gives it: (error, value, source).
fn topic_config(conn: &mut RawConnection, topic: &str, key: &str) -> (i16, Option<String>, i8) {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configuration_keys(Some(vec![StrBytes::from_string(key.to_string())]))]);
    let response: DescribeConfigsResponse =
        conn.call(ApiKey::DescribeConfigs, 4, &request).unwrap();
    let result = &response.results[0];
    match result.configs.first() {
        Some(c) => (
            result.error_code,
            c.value.as_ref().map(|v| v.to_string()),
            c.config_source,
        ),
        None => (result.error_code, None, -1),
    }
}

#[test]
fn kafka_python_alters_topic_configs_incrementally_and_reads_the_brokers_settings() {
    // SET, APPEND, SUBTRACT, DELETE and validate_only as Kafka applies them; Kafka's errors; broker settings with their sources.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &["--set", "log.retention.ms=86400000"]).unwrap();
    tests::run_python_script(
        &broker,
        "kafka_python_configs.py",
        "kafka-python configs ok",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_alter_configs_replaces_overrides_and_a_shorter_retention_takes_effect() {
    // AlterConfigs (API 33) sets retention.ms=1 on a topic with data; retention then moves its log start.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(
        dir.path(),
        &["--set", "log.retention.check.interval.ms=200"],
    )
    .unwrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let topic = NewTopic::new("expiring", 1, TopicReplication::Fixed(1))
        .set("segment.bytes", "1024")
        .set("max.message.bytes", "2048");
    for result in admin.create_topics(&[topic], &options).await.unwrap() {
        result.unwrap();
    }
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let value = "x".repeat(300);
    for i in 0..20 {
        assert_eq!(
            produce_to(&mut conn, "expiring", 0, batch_of(&[&value]), 1).unwrap(),
            (0, i)
        );
    }
    assert_eq!(tests::earliest_offset(&mut conn, "expiring").1, 0);

    // AlterConfigs replaces the whole set: max.message.bytes goes back to its default.
    let alter = AlterConfig::new(ResourceSpecifier::Topic("expiring"))
        .set("retention.ms", "1")
        .set("segment.bytes", "1024");
    let results = admin.alter_configs(&[alter], &options).await.unwrap();
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert_eq!(
        topic_config(&mut conn, "expiring", "retention.ms"),
        (0, Some("1".to_string()), 1)
    );
    assert_eq!(
        topic_config(&mut conn, "expiring", "max.message.bytes").2,
        5
    );
    assert!(
        tests::wait_until(RETENTION_TIMEOUT, || tests::earliest_offset(
            &mut conn, "expiring"
        )
        .1 > 0),
        "retention.ms=1 deleted nothing within {RETENTION_TIMEOUT:?}"
    );
    // (The rdkafka crate reports no per-resource error of AlterConfigs: the
    // errors are checked with kafka-python.)
}

#[test]
fn a_config_change_through_any_broker_is_committed_by_the_controller_and_seen_by_all() {
    // IncrementalAlterConfigs sent to every node in turn is forwarded to the controller; every node describes the result.
    let cluster = Cluster::start(3, 0, tests::cluster::FAST_FAILURE_SETTINGS).unwrap();
    assert_eq!(cluster.create_topic(1, "shared-configs", 1, 3).unwrap(), 0);
    for (round, id) in cluster.node_ids().into_iter().enumerate() {
        let retention = format!("{}", 1_000_000 + round);
        let mut conn = RawConnection::connect(&cluster.client_addr(id)).unwrap();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("shared-configs"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(retention.clone())))]),
        ]);
        let response: IncrementalAlterConfigsResponse = conn
            .call(ApiKey::IncrementalAlterConfigs, 1, &request)
            .unwrap();
        assert_eq!(
            response.responses[0].error_code,
            ErrorCode::NONE.code(),
            "through node {id}: {:?}",
            response.responses[0]
        );
        // The node that answered has applied it already.
        assert_eq!(
            topic_config(&mut conn, "shared-configs", "retention.ms").1,
            Some(retention.clone())
        );
        for other in cluster.node_ids() {
            let mut conn = RawConnection::connect(&cluster.client_addr(other)).unwrap();
            assert!(
                tests::wait_until(PROPAGATION_TIMEOUT, || {
                    topic_config(&mut conn, "shared-configs", "retention.ms")
                        .1
                        .as_deref()
                        == Some(retention.as_str())
                }),
                "node {other} does not see retention.ms={retention}"
            );
        }
    }
}

#[test]
fn list_config_resources_lists_each_type_in_kafkas_order_and_refuses_unknown_types() {
    // ListConfigResources, advertised as versions 0-1: v1 with no type lists the broker as a
    // broker logger, then as a broker, then every topic; one type lists that type alone; client
    // metrics and groups list nothing; a type v1 does not know (ANY, 1) fails the whole request
    // with UNSUPPORTED_VERSION; v0 (ListClientMetricsResources) lists no subscriptions.
    use protocol::messages::{
        ApiVersionsRequest, ApiVersionsResponse, ListConfigResourcesRequest,
        ListConfigResourcesResponse,
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let versions: ApiVersionsResponse = conn
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .unwrap();
    let advertised = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ListConfigResources as i16)
        .map(|k| (k.min_version, k.max_version));
    assert_eq!(advertised, Some((0, 1)));
    tests::create_topic(&mut conn, "listed-b", 1);
    tests::create_topic(&mut conn, "listed-a", 2);

    let mut list = |version: i16, types: &[i8]| {
        let request = ListConfigResourcesRequest::default().with_resource_types(types.to_vec());
        let response: ListConfigResourcesResponse = conn
            .call(ApiKey::ListConfigResources, version, &request)
            .unwrap();
        let resources: Vec<(i8, String)> = response
            .config_resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.to_string()))
            .collect();
        (ErrorCode(response.error_code), resources)
    };
    let (code, all) = list(1, &[]);
    assert_eq!(code, ErrorCode::NONE);
    let topics: Vec<(i8, String)> = all.iter().filter(|(t, _)| *t == 2).cloned().collect();
    assert_eq!(
        all[..2],
        [(8, "1".to_string()), (4, "1".to_string())],
        "the broker, as a logger and as a broker, before the topics: {all:?}"
    );
    assert_eq!(all.len(), 2 + topics.len(), "{all:?}");
    for topic in ["listed-a", "listed-b"] {
        assert!(topics.contains(&(2, topic.to_string())), "{all:?}");
    }
    assert_eq!(list(1, &[2]), (ErrorCode::NONE, topics));
    assert_eq!(list(1, &[4]), (ErrorCode::NONE, vec![(4, "1".to_string())]));
    assert_eq!(list(1, &[16, 32]), (ErrorCode::NONE, vec![]));
    assert_eq!(list(1, &[2, 1]), (ErrorCode::UNSUPPORTED_VERSION, vec![]));
    assert_eq!(list(0, &[]), (ErrorCode::NONE, vec![]));
}
