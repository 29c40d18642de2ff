//! Dynamic broker configs on real broker processes: IncrementalAlterConfigs
//! and AlterConfigs on BROKER resources (a broker id, and the cluster-wide
//! default with an empty name) are committed, survive a restart, are
//! described with their sources and synonyms, and take effect (the batch
//! size limit, `min.insync.replicas`, the retention default of topics
//! without their own); read-only settings, bad values, another broker's id
//! and `validate_only` are answered as Kafka answers them.

use std::time::Duration;

use protocol::messages::alter_configs_request::{
    AlterConfigsResource as LegacyResource, AlterableConfig as LegacyConfig,
};
use protocol::messages::describe_configs_request::DescribeConfigsResource;
use protocol::messages::describe_configs_response::DescribeConfigsResult;
use protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, ApiKey, DescribeConfigsRequest,
    DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use protocol::{ErrorCode, StrBytes};
use tests::{batch_of, produce_to, BrokerProcess, RawConnection};

/// How long retention may take to act on a changed default: a few of the
/// retention checks the test broker runs every 200 ms.
const RETENTION_TIMEOUT: Duration = Duration::from_secs(20);

const BROKER: i8 = 4;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// IncrementalAlterConfigs of one BROKER resource: (operation, key, value)
/// changes; answers (error code, message).
fn alter(
    conn: &mut RawConnection,
    name: &str,
    changes: &[(i8, &str, Option<&str>)],
    validate_only: bool,
) -> (i16, String) {
    let request = IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(BROKER)
            .with_resource_name(StrBytes::from_string(name.into()))
            .with_configs(
                changes
                    .iter()
                    .map(|(op, key, value)| {
                        AlterableConfig::default()
                            .with_name(StrBytes::from_string(key.to_string()))
                            .with_config_operation(*op)
                            .with_value(value.map(|v| StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )]);
    let response: IncrementalAlterConfigsResponse = conn
        .call(ApiKey::IncrementalAlterConfigs, 1, &request)
        .unwrap();
    let r = &response.responses[0];
    (
        r.error_code,
        r.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

fn set(conn: &mut RawConnection, name: &str, key: &str, value: &str) -> (i16, String) {
    alter(conn, name, &[(0, key, Some(value))], false)
}

/// DescribeConfigs v4 of a BROKER resource, with synonyms.
fn describe(conn: &mut RawConnection, name: &str) -> DescribeConfigsResult {
    let request = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(BROKER)
            .with_resource_name(StrBytes::from_string(name.into()))]);
    let response: DescribeConfigsResponse =
        conn.call(ApiKey::DescribeConfigs, 4, &request).unwrap();
    response.results.into_iter().next().unwrap()
}

/// A setting as described: (value, source, synonyms as (source, value)).
type Described = (String, i8, Vec<(i8, String)>);

fn entry(result: &DescribeConfigsResult, key: &str) -> Option<Described> {
    result
        .configs
        .iter()
        .find(|c| c.name.as_str() == key)
        .map(|c| {
            (
                c.value.as_ref().unwrap().to_string(),
                c.config_source,
                c.synonyms
                    .iter()
                    .map(|s| (s.source, s.value.as_ref().unwrap().to_string()))
                    .collect(),
            )
        })
}

#[test]
fn broker_and_default_settings_are_described_with_sources_and_synonyms_and_survive_a_restart() {
    // A per-broker value wins over the cluster default, which wins over the file; each shows its
    // source and the synonyms beneath it; validate_only changes nothing; a restart keeps them.
    let dir = tempfile::tempdir().unwrap();
    let mut broker =
        BrokerProcess::start(dir.path(), &["--set", "log.retention.ms=86400000"]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();

    assert_eq!(set(&mut conn, "", "log.retention.ms", "7200000").0, 0);
    assert_eq!(set(&mut conn, "1", "log.retention.ms", "3600000").0, 0);
    assert_eq!(
        alter(
            &mut conn,
            "1",
            &[(0, "compression.type", Some("zstd"))],
            true
        )
        .0,
        0
    );
    let described = describe(&mut conn, "1");
    assert_eq!(described.error_code, 0);
    assert_eq!(
        entry(&described, "log.retention.ms").unwrap(),
        (
            "3600000".to_string(),
            SOURCE_DYNAMIC_BROKER,
            vec![
                (SOURCE_DYNAMIC_BROKER, "3600000".to_string()),
                (SOURCE_DYNAMIC_DEFAULT_BROKER, "7200000".to_string()),
                (SOURCE_STATIC_BROKER, "86400000".to_string()),
                (SOURCE_DEFAULT, "604800000".to_string()),
            ]
        )
    );
    let compression = entry(&described, "compression.type").unwrap();
    assert_eq!(
        (compression.0.as_str(), compression.1),
        ("producer", SOURCE_DEFAULT)
    );
    // The default resource shows the cluster-wide dynamic settings alone.
    let defaults = describe(&mut conn, "");
    assert_eq!(defaults.error_code, 0);
    let names: Vec<&str> = defaults.configs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["log.retention.ms"]);
    assert_eq!(
        entry(&defaults, "log.retention.ms").unwrap().1,
        SOURCE_DYNAMIC_DEFAULT_BROKER
    );

    broker.terminate().unwrap();
    broker.restart().unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let described = describe(&mut conn, "1");
    assert_eq!(
        entry(&described, "log.retention.ms").unwrap().0,
        "3600000",
        "the dynamic value survives a restart"
    );
    // Deleting the broker's value uncovers the cluster default.
    assert_eq!(
        alter(&mut conn, "1", &[(1, "log.retention.ms", None)], false).0,
        0
    );
    let described = describe(&mut conn, "1");
    let retention = entry(&described, "log.retention.ms").unwrap();
    assert_eq!(
        (retention.0.as_str(), retention.1),
        ("7200000", SOURCE_DYNAMIC_DEFAULT_BROKER)
    );
}

#[test]
fn read_only_settings_bad_values_and_other_brokers_get_kafkas_errors() {
    // log.dirs is INVALID_REQUEST "Cannot update these configs dynamically"; a bad value is INVALID_CONFIG;
    // another broker's id is INVALID_REQUEST; a list operation is INVALID_CONFIG; nothing is changed by any.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    for name in ["1", ""] {
        let (code, message) = set(&mut conn, name, "log.dirs", "/elsewhere");
        assert_eq!(code, ErrorCode::INVALID_REQUEST.code(), "{message}");
        assert!(
            message.contains("Cannot update these configs dynamically"),
            "{message}"
        );
    }
    let (code, message) = set(&mut conn, "1", "compression.type", "brotli");
    assert_eq!(code, ErrorCode::INVALID_CONFIG.code(), "{message}");
    let (code, message) = set(&mut conn, "7", "message.max.bytes", "2000");
    assert_eq!(code, ErrorCode::INVALID_REQUEST.code(), "{message}");
    let (code, message) = set(&mut conn, "one", "message.max.bytes", "2000");
    assert_eq!(code, ErrorCode::INVALID_REQUEST.code(), "{message}");
    let (code, message) = alter(&mut conn, "1", &[(2, "log.retention.ms", Some("1"))], false);
    assert_eq!(code, ErrorCode::INVALID_CONFIG.code(), "{message}");
    let described = describe(&mut conn, "1");
    assert!(described
        .configs
        .iter()
        .all(|c| c.config_source != SOURCE_DYNAMIC_BROKER));
    let read_only: Vec<_> = described
        .configs
        .iter()
        .filter(|c| !c.read_only)
        .map(|c| c.name.to_string())
        .collect();
    assert!(
        read_only.contains(&"message.max.bytes".to_string()),
        "{read_only:?}"
    );
    assert!(
        !read_only.contains(&"log.dirs".to_string()),
        "{read_only:?}"
    );
}

#[test]
fn dynamic_settings_take_effect_on_produce_and_alter_configs_replaces_them() {
    // message.max.bytes refuses a larger batch at once; min.insync.replicas=2 refuses acks=all on a
    // one-broker cluster; AlterConfigs replaces the broker's whole dynamic set, lifting both.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    tests::create_topic(&mut conn, "limited", 1);
    let big = "x".repeat(3000);
    assert_eq!(
        produce_to(&mut conn, "limited", 0, batch_of(&[&big]), 1)
            .unwrap()
            .0,
        0
    );

    assert_eq!(set(&mut conn, "1", "message.max.bytes", "2000").0, 0);
    assert_eq!(
        produce_to(&mut conn, "limited", 0, batch_of(&[&big]), 1)
            .unwrap()
            .0,
        ErrorCode::MESSAGE_TOO_LARGE.code()
    );
    assert_eq!(set(&mut conn, "", "min.insync.replicas", "2").0, 0);
    assert_eq!(
        produce_to(&mut conn, "limited", 0, batch_of(&["small"]), -1)
            .unwrap()
            .0,
        ErrorCode::NOT_ENOUGH_REPLICAS.code()
    );

    // AlterConfigs: broker 1's dynamic set becomes exactly {compression.type=gzip}.
    let request = AlterConfigsRequest::default().with_resources(vec![LegacyResource::default()
        .with_resource_type(BROKER)
        .with_resource_name(StrBytes::from_static_str("1"))
        .with_configs(vec![LegacyConfig::default()
            .with_name(StrBytes::from_static_str("compression.type"))
            .with_value(Some(StrBytes::from_static_str("gzip")))])]);
    let response: AlterConfigsResponse = conn.call(ApiKey::AlterConfigs, 2, &request).unwrap();
    assert_eq!(response.responses[0].error_code, 0);
    assert_eq!(
        produce_to(&mut conn, "limited", 0, batch_of(&[&big]), 1)
            .unwrap()
            .0,
        0
    );
    let described = describe(&mut conn, "1");
    assert_eq!(
        entry(&described, "message.max.bytes").unwrap().1,
        SOURCE_DEFAULT
    );
    assert_eq!(entry(&described, "compression.type").unwrap().0, "gzip");
    // The cluster default still holds min.insync.replicas=2.
    assert_eq!(
        produce_to(&mut conn, "limited", 0, batch_of(&["small"]), -1)
            .unwrap()
            .0,
        ErrorCode::NOT_ENOUGH_REPLICAS.code()
    );
}

#[test]
fn a_dynamic_retention_default_applies_to_topics_without_their_own() {
    // log.retention.ms=1 as the cluster default deletes old segments of a topic without retention.ms,
    // and leaves a topic with its own retention.ms alone.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(
        dir.path(),
        &[
            "--set",
            "log.retention.check.interval.ms=200,log.segment.bytes=1024",
        ],
    )
    .unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    tests::create_topic(&mut conn, "inherits", 1);
    tests::create_topic(&mut conn, "keeps", 1);
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("keeps"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str("-1")))]),
    ]);
    let response: IncrementalAlterConfigsResponse = conn
        .call(ApiKey::IncrementalAlterConfigs, 1, &request)
        .unwrap();
    assert_eq!(response.responses[0].error_code, 0);
    let value = "x".repeat(300);
    for topic in ["inherits", "keeps"] {
        for _ in 0..20 {
            assert_eq!(
                produce_to(&mut conn, topic, 0, batch_of(&[&value]), 1)
                    .unwrap()
                    .0,
                0
            );
        }
        assert_eq!(tests::earliest_offset(&mut conn, topic).1, 0);
    }
    assert_eq!(set(&mut conn, "", "log.retention.ms", "1").0, 0);
    assert!(
        tests::wait_until(RETENTION_TIMEOUT, || tests::earliest_offset(
            &mut conn, "inherits"
        )
        .1 > 0),
        "log.retention.ms=1 deleted nothing within {RETENTION_TIMEOUT:?}"
    );
    assert_eq!(tests::earliest_offset(&mut conn, "keeps").1, 0);
}
