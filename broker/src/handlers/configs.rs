//! DescribeConfigs for topics (their overrides over the broker defaults) and
//! for the broker itself (the basics a client or operator looks at).

use std::sync::Arc;

use bytes::Bytes;
use protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use protocol::{ErrorCode, StrBytes};

use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::storage::FlushPolicy;
use crate::Broker;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's config sources.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// Kafka's config types (DescribeConfigs v3+).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;

struct Entry {
    name: &'static str,
    value: String,
    source: i8,
    config_type: i8,
}

fn ms(value: Option<u64>) -> String {
    value.map_or("-1".to_string(), |v| v.to_string())
}

fn topic_entries(
    broker: &Broker,
    configs: &std::collections::BTreeMap<String, String>,
) -> Vec<Entry> {
    let log = &broker.config.log;
    let defaults: [(&'static str, String, i8); 12] = [
        (
            "cleanup.policy",
            log.cleanup_policy.to_string(),
            TYPE_STRING,
        ),
        ("retention.ms", ms(log.retention_ms), TYPE_LONG),
        ("retention.bytes", ms(log.retention_bytes), TYPE_LONG),
        ("segment.bytes", log.segment_bytes_max.to_string(), TYPE_INT),
        ("segment.ms", log.segment_ms_max.to_string(), TYPE_LONG),
        (
            "max.message.bytes",
            broker.config.message_bytes_max.to_string(),
            TYPE_INT,
        ),
        ("message.timestamp.type", "CreateTime".into(), TYPE_STRING),
        (
            "min.cleanable.dirty.ratio",
            log.min_cleanable_dirty_ratio.to_string(),
            TYPE_DOUBLE,
        ),
        (
            "delete.retention.ms",
            log.delete_retention_ms.to_string(),
            TYPE_LONG,
        ),
        (
            "min.compaction.lag.ms",
            log.min_compaction_lag_ms.to_string(),
            TYPE_LONG,
        ),
        (
            "unclean.leader.election.enable",
            broker
                .config
                .replication
                .unclean_leader_election
                .to_string(),
            TYPE_BOOLEAN,
        ),
        (
            "min.insync.replicas",
            broker.config.replication.min_insync_replicas.to_string(),
            TYPE_INT,
        ),
    ];
    defaults
        .into_iter()
        .map(|(name, default, config_type)| match configs.get(name) {
            Some(value) => Entry {
                name,
                value: value.clone(),
                source: SOURCE_TOPIC,
                config_type,
            },
            None => Entry {
                name,
                value: default,
                source: SOURCE_DEFAULT,
                config_type,
            },
        })
        .collect()
}

fn broker_entries(broker: &Broker) -> Vec<Entry> {
    let c = &broker.config;
    let flush = match c.log.flush_policy {
        FlushPolicy::EveryBatch => "every-batch".to_string(),
        FlushPolicy::IntervalMs(ms) => format!("interval:{ms}"),
        FlushPolicy::OnRoll => "on-roll".to_string(),
    };
    let entry = |name, value: String, config_type| Entry {
        name,
        value,
        source: SOURCE_STATIC_BROKER,
        config_type,
    };
    vec![
        entry("node.id", c.node_id.to_string(), TYPE_INT),
        entry("log.dirs", c.data_dir.display().to_string(), TYPE_STRING),
        entry(
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            TYPE_BOOLEAN,
        ),
        entry("num.partitions", c.default_partitions.to_string(), TYPE_INT),
        entry("default.replication.factor", "1".into(), TYPE_INT),
        entry(
            "message.max.bytes",
            c.message_bytes_max.to_string(),
            TYPE_INT,
        ),
        entry(
            "socket.request.max.bytes",
            c.frame_bytes_max.to_string(),
            TYPE_INT,
        ),
        entry(
            "log.segment.bytes",
            c.log.segment_bytes_max.to_string(),
            TYPE_INT,
        ),
        entry("log.retention.ms", ms(c.log.retention_ms), TYPE_LONG),
        entry("log.retention.bytes", ms(c.log.retention_bytes), TYPE_LONG),
        entry("log.flush.policy", flush, TYPE_STRING),
    ]
}

pub fn describe_configs(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: DescribeConfigsRequest = request.decode(&mut body)?;
    let mut results = Vec::with_capacity(req.resources.len());
    let image = broker.image();
    for resource in req.resources {
        let name = resource.resource_name.to_string();
        let entries = match resource.resource_type {
            RESOURCE_TOPIC => image
                .topic(&name)
                .map(|t| topic_entries(broker, &t.configs))
                .ok_or((
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("topic {name} does not exist"),
                )),
            RESOURCE_BROKER if name.is_empty() || name == broker.config.node_id.to_string() => {
                Ok(broker_entries(broker))
            }
            RESOURCE_BROKER => Err((
                ErrorCode::INVALID_REQUEST,
                format!("this is broker {}, not {name}", broker.config.node_id),
            )),
            other => Err((
                ErrorCode::INVALID_REQUEST,
                format!("resource type {other} is not supported"),
            )),
        };
        let result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        results.push(match entries {
            Ok(entries) => {
                // Null, or an empty list, asks for every config.
                let keys = resource
                    .configuration_keys
                    .as_ref()
                    .filter(|keys| !keys.is_empty());
                let configs = entries
                    .into_iter()
                    .filter(|e| keys.is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name)))
                    .map(|e| {
                        DescribeConfigsResourceResult::default()
                            .with_name(StrBytes::from_static_str(e.name))
                            .with_value(Some(StrBytes::from_string(e.value)))
                            .with_read_only(resource.resource_type == RESOURCE_BROKER)
                            .with_config_source(e.source)
                            .with_is_sensitive(false)
                            .with_config_type(e.config_type)
                    })
                    .collect();
                result
                    .with_error_code(ErrorCode::NONE.code())
                    .with_configs(configs)
            }
            Err((code, message)) => result
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    let response = DescribeConfigsResponse::default().with_results(results);
    Ok(Reply::Now(request.respond(&response)?))
}
