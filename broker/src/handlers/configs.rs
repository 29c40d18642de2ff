//! DescribeConfigs for topics (their overrides over the broker defaults) and
//! for brokers (their settings and where each comes from, with Kafka's
//! synonyms); IncrementalAlterConfigs and AlterConfigs for topics and for
//! brokers' dynamic settings (see [`crate::dynamic_config`]), through the
//! controller; ListConfigResources, the resources that have configs.

use std::sync::Arc;

use bytes::Bytes;
use protocol::messages::alter_configs_response::AlterConfigsResourceResponse as AlterConfigsResult;
use protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use protocol::messages::incremental_alter_configs_request::AlterableConfig;
use protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalAlterConfigsResult;
use protocol::messages::list_config_resources_response::ConfigResource;
use protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ListConfigResourcesRequest,
    ListConfigResourcesResponse,
};
use protocol::{ErrorCode, StrBytes};

use crate::controller::{
    ConfigChange, Controller, CONFIG_OPERATION_APPEND, CONFIG_OPERATION_DELETE,
    CONFIG_OPERATION_SET, CONFIG_OPERATION_SUBTRACT, CONFIG_RESOURCE_BROKER, CONFIG_RESOURCE_TOPIC,
};
use crate::ids::BrokerId;
use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::storage::FlushPolicy;
use crate::topics::TopicError;
use crate::Broker;

/// Kafka's config resource types beside topics and brokers, as
/// ListConfigResources names them.
const CONFIG_RESOURCE_BROKER_LOGGER: i8 = 8;
const CONFIG_RESOURCE_CLIENT_METRICS: i8 = 16;
const CONFIG_RESOURCE_GROUP: i8 = 32;

/// Kafka's config sources.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// Kafka's config types (DescribeConfigs v3+).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;

struct Entry {
    name: &'static str,
    value: String,
    source: i8,
    config_type: i8,
    read_only: bool,
    /// Every value the setting has, by precedence: (name, value, source).
    synonyms: Vec<(&'static str, String, i8)>,
}

/// The broker setting a topic config falls back to, by Kafka's names.
fn broker_synonym(topic_key: &str) -> Option<&'static str> {
    Some(match topic_key {
        "retention.ms" => "log.retention.ms",
        "retention.bytes" => "log.retention.bytes",
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        "max.message.bytes" => "message.max.bytes",
        "compression.type" => "compression.type",
        "min.insync.replicas" => "min.insync.replicas",
        "cleanup.policy" => "log.cleanup.policy",
        "unclean.leader.election.enable" => "unclean.leader.election.enable",
        _ => return None,
    })
}

fn ms(value: Option<u64>) -> String {
    value.map_or("-1".to_string(), |v| v.to_string())
}

fn topic_entries(
    broker: &Broker,
    configs: &std::collections::BTreeMap<String, String>,
) -> Vec<Entry> {
    let settings = broker.effective_config();
    let log = &settings.log;
    // A setting without an override takes the broker's, whose source says
    // where the broker's comes from.
    let broker_sources: std::collections::BTreeMap<&str, i8> =
        broker_entries(broker, Some(broker.config.node_id))
            .into_iter()
            .map(|e| (e.name, e.source))
            .collect();
    let defaults: [(&'static str, String, i8); 15] = [
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
            settings.message_bytes_max.to_string(),
            TYPE_INT,
        ),
        ("message.timestamp.type", "CreateTime".into(), TYPE_STRING),
        (
            "compression.type",
            settings.compression_type.to_string(),
            TYPE_STRING,
        ),
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
            settings.replication.unclean_leader_election.to_string(),
            TYPE_BOOLEAN,
        ),
        (
            "min.insync.replicas",
            settings.replication.min_insync_replicas.to_string(),
            TYPE_INT,
        ),
        (
            crate::replication::throttle::LEADER_THROTTLED_REPLICAS,
            String::new(),
            TYPE_LIST,
        ),
        (
            crate::replication::throttle::FOLLOWER_THROTTLED_REPLICAS,
            String::new(),
            TYPE_LIST,
        ),
    ];
    defaults
        .into_iter()
        .map(|(name, default, config_type)| {
            let inherited = broker_synonym(name)
                .and_then(|b| broker_sources.get(b))
                .copied()
                .unwrap_or(SOURCE_DEFAULT);
            let mut synonyms = Vec::new();
            if let Some(value) = configs.get(name) {
                synonyms.push((name, value.clone(), SOURCE_TOPIC));
            }
            synonyms.push((
                broker_synonym(name).unwrap_or(name),
                default.clone(),
                inherited,
            ));
            match configs.get(name) {
                Some(value) => Entry {
                    name,
                    value: value.clone(),
                    source: SOURCE_TOPIC,
                    config_type,
                    read_only: false,
                    synonyms,
                },
                None => Entry {
                    name,
                    value: default,
                    source: inherited,
                    config_type,
                    read_only: false,
                    synonyms,
                },
            }
        })
        .collect()
}

/// A broker setting's value as `config` has it, by Kafka's name.
fn broker_settings(config: &crate::config::BrokerConfig) -> Vec<(&'static str, String, i8)> {
    let c = config;
    let flush = match c.log.flush_policy {
        FlushPolicy::EveryBatch => "every-batch".to_string(),
        FlushPolicy::IntervalMs(ms) => format!("interval:{ms}"),
        FlushPolicy::OnRoll => "on-roll".to_string(),
    };
    let r = &c.replication;
    vec![
        ("node.id", c.node_id.to_string(), TYPE_INT),
        ("broker.id", c.node_id.to_string(), TYPE_INT),
        ("log.dirs", c.data_dir.display().to_string(), TYPE_STRING),
        (
            "listeners",
            format!("PLAINTEXT://{}", c.listen),
            TYPE_STRING,
        ),
        (
            "advertised.listeners",
            format!(
                "PLAINTEXT://{}",
                c.advertised_listener
                    .clone()
                    .unwrap_or_else(|| c.listen.to_string())
            ),
            TYPE_STRING,
        ),
        (
            "broker.rack",
            c.rack.clone().unwrap_or_default(),
            TYPE_STRING,
        ),
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            TYPE_BOOLEAN,
        ),
        ("num.partitions", c.default_partitions.to_string(), TYPE_INT),
        (
            "default.replication.factor",
            c.default_replication_factor.to_string(),
            TYPE_INT,
        ),
        (
            "min.insync.replicas",
            r.min_insync_replicas.to_string(),
            TYPE_INT,
        ),
        (
            "unclean.leader.election.enable",
            r.unclean_leader_election.to_string(),
            TYPE_BOOLEAN,
        ),
        (
            "replica.lag.time.max.ms",
            r.replica_lag_time_max_ms.to_string(),
            TYPE_LONG,
        ),
        (
            "message.max.bytes",
            c.message_bytes_max.to_string(),
            TYPE_INT,
        ),
        (
            "compression.type",
            c.compression_type.to_string(),
            TYPE_STRING,
        ),
        (
            "socket.request.max.bytes",
            c.frame_bytes_max.to_string(),
            TYPE_INT,
        ),
        (
            "log.segment.bytes",
            c.log.segment_bytes_max.to_string(),
            TYPE_INT,
        ),
        ("log.roll.ms", c.log.segment_ms_max.to_string(), TYPE_LONG),
        ("log.retention.ms", ms(c.log.retention_ms), TYPE_LONG),
        ("log.retention.bytes", ms(c.log.retention_bytes), TYPE_LONG),
        (
            "log.cleanup.policy",
            c.log.cleanup_policy.to_string(),
            TYPE_LIST,
        ),
        (
            "log.retention.check.interval.ms",
            c.retention_check_interval_ms.to_string(),
            TYPE_LONG,
        ),
        ("log.flush.policy", flush, TYPE_STRING),
        (
            "follower.replication.throttled.rate",
            r.follower_throttle_bytes_per_s
                .unwrap_or(i64::MAX as u64)
                .to_string(),
            TYPE_LONG,
        ),
        (
            "leader.replication.throttled.rate",
            r.leader_throttle_bytes_per_s
                .unwrap_or(i64::MAX as u64)
                .to_string(),
            TYPE_LONG,
        ),
        (
            // Not a field of the configuration: the dynamic value, or Kafka's default.
            "replica.alter.log.dirs.io.max.bytes.per.second",
            i64::MAX.to_string(),
            TYPE_LONG,
        ),
        (
            "broker.session.timeout.ms",
            c.broker_session_timeout_ms.to_string(),
            TYPE_INT,
        ),
        (
            "broker.heartbeat.interval.ms",
            c.broker_heartbeat_interval_ms.to_string(),
            TYPE_INT,
        ),
    ]
}

/// A broker's settings (`node`), or (`None`) the cluster-wide dynamic
/// defaults alone, as Kafka describes the default broker resource. A setting
/// set dynamically is `DYNAMIC_BROKER_CONFIG` or `DYNAMIC_DEFAULT_BROKER_CONFIG`;
/// one whose value differs from the built-in default was given in the
/// broker's configuration (`STATIC_BROKER_CONFIG`); the rest are
/// `DEFAULT_CONFIG`. Only the dynamic ones are writable.
fn broker_entries(broker: &Broker, node: Option<i32>) -> Vec<Entry> {
    let image = broker.image();
    let built_in = broker_settings(&crate::config::BrokerConfig::default());
    let configured = broker_settings(&broker.config);
    let effective = broker_settings(&broker.effective_config());
    let mut entries = Vec::with_capacity(effective.len());
    for (index, (name, value, config_type)) in effective.into_iter().enumerate() {
        let (_, default, _) = &built_in[index];
        let (_, configured, _) = &configured[index];
        // Clients are told the address the broker resolved at start.
        let configured = match name {
            "advertised.listeners" => {
                let (host, port) = broker.advertised();
                format!("PLAINTEXT://{host}:{port}")
            }
            _ => configured.clone(),
        };
        let is_static = if name == "advertised.listeners" {
            broker.config.advertised_listener.is_some()
        } else {
            configured != *default
        };
        let mut synonyms = Vec::new();
        if let Some(node) = node {
            if let Some(v) = image.broker_configs(Some(BrokerId(node))).get(name) {
                synonyms.push((name, v.clone(), SOURCE_DYNAMIC_BROKER));
            }
        }
        if let Some(v) = image.broker_configs(None).get(name) {
            synonyms.push((name, v.clone(), SOURCE_DYNAMIC_DEFAULT_BROKER));
        }
        if node.is_none() {
            // The default resource shows the cluster-wide dynamic settings only.
            if let Some((_, value, source)) = synonyms.first().cloned() {
                entries.push(Entry {
                    name,
                    value,
                    source,
                    config_type,
                    read_only: false,
                    synonyms,
                });
            }
            continue;
        }
        if is_static {
            synonyms.push((name, configured.clone(), SOURCE_STATIC_BROKER));
        }
        let default = match name {
            // Without a setting, the address the broker resolved at start.
            "advertised.listeners" => configured.clone(),
            _ => default.clone(),
        };
        synonyms.push((name, default, SOURCE_DEFAULT));
        let (_, shown, source) = synonyms[0].clone();
        let value = match name {
            // No field of the configuration: its value is the first synonym's.
            "replica.alter.log.dirs.io.max.bytes.per.second" => shown,
            "advertised.listeners" => configured,
            _ => value,
        };
        entries.push(Entry {
            name,
            value,
            source,
            config_type,
            read_only: !crate::dynamic_config::is_dynamic(name),
            synonyms,
        });
    }
    entries
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
            CONFIG_RESOURCE_TOPIC => image
                .topic(&name)
                .map(|t| topic_entries(broker, &t.configs))
                .ok_or((
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("topic {name} does not exist"),
                )),
            CONFIG_RESOURCE_BROKER if name.is_empty() => Ok(broker_entries(broker, None)),
            CONFIG_RESOURCE_BROKER if name == broker.config.node_id.to_string() => {
                Ok(broker_entries(broker, Some(broker.config.node_id)))
            }
            CONFIG_RESOURCE_BROKER => Err((
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
                        let synonyms = if req.include_synonyms {
                            e.synonyms
                                .into_iter()
                                .map(|(name, value, source)| {
                                    DescribeConfigsSynonym::default()
                                        .with_name(StrBytes::from_static_str(name))
                                        .with_value(Some(StrBytes::from_string(value)))
                                        .with_source(source)
                                })
                                .collect()
                        } else {
                            Vec::new()
                        };
                        DescribeConfigsResourceResult::default()
                            .with_name(StrBytes::from_static_str(e.name))
                            .with_value(Some(StrBytes::from_string(e.value)))
                            .with_read_only(e.read_only)
                            .with_config_source(e.source)
                            .with_is_sensitive(false)
                            .with_config_type(e.config_type)
                            .with_synonyms(synonyms)
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

/// A resource's changes, or the error its whole resource gets.
type Changes = Result<Vec<ConfigChange>, TopicError>;

/// The changes an IncrementalAlterConfigs resource asks for. A key named
/// twice, an unknown operation or a missing value is an invalid request.
fn incremental_changes(configs: &[AlterableConfig]) -> Changes {
    let mut seen = std::collections::BTreeSet::new();
    let mut changes = Vec::with_capacity(configs.len());
    for config in configs {
        let key = config.name.to_string();
        if !seen.insert(key.clone()) {
            return Err(TopicError::new(
                ErrorCode::INVALID_REQUEST,
                format!("duplicate config key {key}"),
            ));
        }
        let value = || {
            config.value.as_ref().map(|v| v.to_string()).ok_or_else(|| {
                TopicError::new(
                    ErrorCode::INVALID_REQUEST,
                    format!("a null value is not allowed for {key}"),
                )
            })
        };
        changes.push(match config.config_operation {
            CONFIG_OPERATION_SET => ConfigChange::Set {
                value: value()?,
                key,
            },
            CONFIG_OPERATION_DELETE => ConfigChange::Delete { key },
            CONFIG_OPERATION_APPEND => ConfigChange::Append {
                value: value()?,
                key,
            },
            CONFIG_OPERATION_SUBTRACT => ConfigChange::Subtract {
                value: value()?,
                key,
            },
            other => {
                return Err(TopicError::new(
                    ErrorCode::INVALID_REQUEST,
                    format!("unknown config operation {other} for {key}"),
                ))
            }
        });
    }
    Ok(changes)
}

/// The scope a BROKER resource names: a broker id, or the cluster-wide
/// default (an empty name). A broker takes changes of its own id or the
/// default, as Kafka's brokers do (`node_id`); the controller listener, which
/// receives them forwarded, passes `None` and takes any id.
fn broker_scope(node_id: Option<i32>, name: &str) -> Result<Option<BrokerId>, TopicError> {
    if name.is_empty() {
        return Ok(None);
    }
    let id: i32 = name.parse().ok().filter(|id| *id >= 0).ok_or_else(|| {
        TopicError::new(
            ErrorCode::INVALID_REQUEST,
            format!("broker resource name {name:?} is not a broker id"),
        )
    })?;
    match node_id {
        Some(node) if node != id => Err(TopicError::new(
            ErrorCode::INVALID_REQUEST,
            format!("Unexpected broker id, expected {node}, but received {id}"),
        )),
        _ => Ok(Some(BrokerId(id))),
    }
}

/// Applies each resource's changes through the controller: topic config
/// overrides are metadata, seen by every broker once committed. `node_id` is
/// this broker's (for broker resources); the controller listener, which only
/// receives forwarded topic changes, passes `None`.
pub async fn answer_incremental_alter_configs(
    controller: &Controller,
    node_id: Option<i32>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for resource in req.resources {
        let name = resource.resource_name.to_string();
        let outcome = match (resource.resource_type, node_id) {
            (CONFIG_RESOURCE_TOPIC, _) => match incremental_changes(&resource.configs) {
                Ok(changes) => {
                    controller
                        .alter_topic_configs(&name, changes, req.validate_only)
                        .await
                }
                Err(e) => Err(e),
            },
            (CONFIG_RESOURCE_BROKER, _) => match broker_scope(node_id, &name)
                .and_then(|scope| Ok((scope, incremental_changes(&resource.configs)?)))
            {
                Ok((scope, changes)) => {
                    controller
                        .alter_broker_configs(scope, changes, req.validate_only)
                        .await
                }
                Err(e) => Err(e),
            },
            (other, _) => Err(TopicError::new(
                ErrorCode::INVALID_REQUEST,
                format!("resource type {other} cannot be altered"),
            )),
        };
        let result = IncrementalAlterConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        responses.push(match outcome {
            Ok(()) => result.with_error_code(ErrorCode::NONE.code()),
            Err(e) => result
                .with_error_code(e.code.code())
                .with_error_message(Some(StrBytes::from_string(e.message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

pub fn incremental_alter_configs(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: IncrementalAlterConfigsRequest = request.decode(&mut body)?;
    let broker = broker.clone();
    let responder = request.responder();
    Ok(Reply::Later(Box::pin(async move {
        let response =
            answer_incremental_alter_configs(&broker.controller, Some(broker.config.node_id), req)
                .await;
        responder
            .respond(&response)
            .expect("incremental alter configs response encodes")
    })))
}

/// AlterConfigs (the API before IncrementalAlterConfigs): a topic's
/// overrides become exactly the given set; overrides not named are removed.
pub fn alter_configs(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: AlterConfigsRequest = request.decode(&mut body)?;
    let broker = broker.clone();
    let responder = request.responder();
    Ok(Reply::Later(Box::pin(async move {
        let node_id = broker.config.node_id;
        let mut responses = Vec::with_capacity(req.resources.len());
        for resource in req.resources {
            let name = resource.resource_name.to_string();
            let outcome = match resource.resource_type {
                CONFIG_RESOURCE_TOPIC => match replacement(&broker, &name, &resource.configs) {
                    Ok(changes) => {
                        broker
                            .controller
                            .alter_topic_configs(&name, changes, req.validate_only)
                            .await
                    }
                    Err(e) => Err(e),
                },
                CONFIG_RESOURCE_BROKER => {
                    match broker_scope(Some(node_id), &name)
                        .map(|scope| (scope, broker_replacement(&broker, scope, &resource.configs)))
                    {
                        Ok((scope, Ok(changes))) => {
                            broker
                                .controller
                                .alter_broker_configs(scope, changes, req.validate_only)
                                .await
                        }
                        Ok((_, Err(e))) | Err(e) => Err(e),
                    }
                }
                other => Err(TopicError::new(
                    ErrorCode::INVALID_REQUEST,
                    format!("resource type {other} cannot be altered"),
                )),
            };
            let result = AlterConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name);
            responses.push(match outcome {
                Ok(()) => result.with_error_code(ErrorCode::NONE.code()),
                Err(e) => result
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            });
        }
        let response = AlterConfigsResponse::default().with_responses(responses);
        responder
            .respond(&response)
            .expect("alter configs response encodes")
    })))
}

/// The changes that make the dynamic configs of broker scope `scope` exactly
/// `configs` (AlterConfigs replaces them all).
fn broker_replacement(
    broker: &Broker,
    scope: Option<BrokerId>,
    configs: &[protocol::messages::alter_configs_request::AlterableConfig],
) -> Changes {
    replacing(configs, broker.image().broker_configs(scope).keys())
}

/// The changes that make topic `name`'s overrides exactly `configs`.
fn replacement(
    broker: &Broker,
    name: &str,
    configs: &[protocol::messages::alter_configs_request::AlterableConfig],
) -> Changes {
    let image = broker.image();
    let topic = image.topic(name).ok_or_else(|| {
        TopicError::new(
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic {name} does not exist"),
        )
    })?;
    replacing(configs, topic.configs.keys())
}

/// The changes that replace the settings whose keys are `existing` with
/// exactly `configs`: each named key set (or deleted, for a null value), every
/// other existing key deleted. A key named twice is refused.
fn replacing<'a>(
    configs: &[protocol::messages::alter_configs_request::AlterableConfig],
    existing: impl Iterator<Item = &'a String>,
) -> Changes {
    let mut changes = Vec::with_capacity(configs.len());
    let mut named = std::collections::BTreeSet::new();
    for config in configs {
        let key = config.name.to_string();
        if !named.insert(key.clone()) {
            return Err(TopicError::new(
                ErrorCode::INVALID_REQUEST,
                format!("duplicate config key {key}"),
            ));
        }
        changes.push(match &config.value {
            Some(value) => ConfigChange::Set {
                key,
                value: value.to_string(),
            },
            None => ConfigChange::Delete { key },
        });
    }
    for key in existing.filter(|k| !named.contains(*k)) {
        changes.push(ConfigChange::Delete { key: key.clone() });
    }
    Ok(changes)
}

/// The resource types ListConfigResources lists at `version`, as Kafka's
/// `ListConfigResourcesRequest.supportedResourceTypes` has them: version 0
/// (the former ListClientMetricsResources) client-metrics subscriptions
/// alone; version 1 also topics, brokers, broker loggers and groups.
fn listable_resource_types(version: i16) -> &'static [i8] {
    if version == 0 {
        &[CONFIG_RESOURCE_CLIENT_METRICS]
    } else {
        &[
            CONFIG_RESOURCE_TOPIC,
            CONFIG_RESOURCE_BROKER,
            CONFIG_RESOURCE_BROKER_LOGGER,
            CONFIG_RESOURCE_CLIENT_METRICS,
            CONFIG_RESOURCE_GROUP,
        ]
    }
}

/// ListConfigResources (KIP-1142): the resources of the types asked for
/// (every type the version knows when none is named), in Kafka's order:
/// groups, client-metrics subscriptions, broker loggers, brokers, topics.
/// Every live broker is a broker and a broker-logger resource, every topic
/// (the internal one too) a topic resource. Groups are listed when they have
/// dynamic group configs and client-metrics resources are subscriptions
/// (KIP-714); this broker keeps neither, so those types list nothing. A type
/// the version does not know fails the whole request with
/// `UNSUPPORTED_VERSION`, as Kafka's broker answers.
pub fn list_config_resources(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: ListConfigResourcesRequest = request.decode(&mut body)?;
    let response = answer_list_config_resources(broker, request.version(), &req.resource_types);
    Ok(Reply::Now(request.respond(&response)?))
}

fn answer_list_config_resources(
    broker: &Broker,
    version: i16,
    asked: &[i8],
) -> ListConfigResourcesResponse {
    let listable = listable_resource_types(version);
    let types = if asked.is_empty() { listable } else { asked };
    if types.iter().any(|t| !listable.contains(t)) {
        return ListConfigResourcesResponse::default()
            .with_error_code(ErrorCode::UNSUPPORTED_VERSION.code());
    }
    let image = broker.image();
    let resource = |resource_type: i8, name: String| {
        ConfigResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name))
    };
    let brokers = || {
        image
            .live_brokers()
            .filter(|b| b.client_endpoint().is_some())
            .map(|b| b.id.0.to_string())
    };
    let mut resources = Vec::new();
    if types.contains(&CONFIG_RESOURCE_BROKER_LOGGER) {
        resources.extend(brokers().map(|id| resource(CONFIG_RESOURCE_BROKER_LOGGER, id)));
    }
    if types.contains(&CONFIG_RESOURCE_BROKER) {
        resources.extend(brokers().map(|id| resource(CONFIG_RESOURCE_BROKER, id)));
    }
    if types.contains(&CONFIG_RESOURCE_TOPIC) {
        resources.extend(
            image
                .topics()
                .map(|t| resource(CONFIG_RESOURCE_TOPIC, t.name.clone())),
        );
    }
    ListConfigResourcesResponse::default()
        .with_error_code(ErrorCode::NONE.code())
        .with_config_resources(resources)
}
