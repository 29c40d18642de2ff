//! Topic rules (names, config overrides, internal topics) and the topics a
//! data directory holds on disk. Which topics exist is decided by the
//! controller and known from the metadata image; this file only checks
//! requests against Kafka's rules and reads what an older data dir holds.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use protocol::ErrorCode;

use crate::ids::BrokerId;
use crate::metadata::{MetadataImage, MetadataRecord, PartitionRegistration};
use crate::storage::{LogConfig, LogManager, TopicPartition};

/// Kafka's bound on topic names (so `<topic>-<partition>` fits a file name).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// File in the data dir that keeps per-topic config overrides.
const TOPIC_CONFIGS_FILE: &str = "topic-configs";

/// Topics the broker keeps for itself: clients cannot produce to, create or delete them.
pub fn is_internal(name: &str) -> bool {
    name == crate::group::OFFSETS_TOPIC
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError {
    pub code: ErrorCode,
    pub message: String,
}

impl TopicError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        TopicError {
            code,
            message: message.into(),
        }
    }
}

pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let bad = |why: &str| {
        Err(TopicError::new(
            ErrorCode::INVALID_TOPIC_EXCEPTION,
            format!("topic name {name:?} is invalid: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are reserved");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return bad("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Applies topic-level overrides to the broker's log defaults.
pub fn log_config_for(
    defaults: &LogConfig,
    configs: &BTreeMap<String, String>,
) -> Result<LogConfig, TopicError> {
    let mut config = defaults.clone();
    for (key, value) in configs {
        let invalid = |why: &str| {
            TopicError::new(
                ErrorCode::INVALID_CONFIG,
                format!("invalid value {value:?} for {key}: {why}"),
            )
        };
        let number = || value.parse::<i64>().map_err(|_| invalid("not a number"));
        match key.as_str() {
            "retention.ms" => {
                let n = number()?;
                config.retention_ms = (n >= 0).then_some(n as u64);
            }
            "retention.bytes" => {
                let n = number()?;
                config.retention_bytes = (n >= 0).then_some(n as u64);
            }
            "segment.bytes" => {
                let n = number()?;
                if n < 14 {
                    return Err(invalid("must be at least 14"));
                }
                config.segment_bytes_max = n as u64;
            }
            "segment.ms" => {
                let n = number()?;
                if n < 1 {
                    return Err(invalid("must be positive"));
                }
                config.segment_ms_max = n as u64;
            }
            "max.message.bytes" => {
                if number()? < 0 {
                    return Err(invalid("must not be negative"));
                }
            }
            "cleanup.policy" => {
                config.cleanup_policy = crate::storage::CleanupPolicy::parse(value)
                    .ok_or_else(|| invalid("must be delete, compact, or compact,delete"))?;
            }
            "min.cleanable.dirty.ratio" => {
                let ratio: f64 = value.parse().map_err(|_| invalid("not a number"))?;
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(invalid("must be between 0 and 1"));
                }
                config.min_cleanable_dirty_ratio = ratio;
            }
            "delete.retention.ms" => {
                let n = number()?;
                if n < 0 {
                    return Err(invalid("must not be negative"));
                }
                config.delete_retention_ms = n as u64;
            }
            "min.compaction.lag.ms" => {
                let n = number()?;
                if n < 0 {
                    return Err(invalid("must not be negative"));
                }
                config.min_compaction_lag_ms = n as u64;
            }
            "min.insync.replicas" => {
                if !(1..=1_000).contains(&number()?) {
                    return Err(invalid("must be between 1 and 1000"));
                }
            }
            "unclean.leader.election.enable" => {
                if value.parse::<bool>().is_err() {
                    return Err(invalid("must be true or false"));
                }
            }
            "compression.type" => {
                if crate::recompress::CompressionType::parse(value).is_none() {
                    return Err(invalid(&format!(
                        "must be one of {}",
                        crate::recompress::CompressionType::NAMES.join(", ")
                    )));
                }
            }
            crate::replication::throttle::LEADER_THROTTLED_REPLICAS
            | crate::replication::throttle::FOLLOWER_THROTTLED_REPLICAS => {
                crate::replication::throttle::ThrottledReplicas::parse(value)
                    .map_err(|why| invalid(&why))?;
            }
            "message.timestamp.type" => {
                if value != "CreateTime" {
                    return Err(invalid("only 'CreateTime' is supported"));
                }
            }
            _ => {
                return Err(TopicError::new(
                    ErrorCode::INVALID_CONFIG,
                    format!("unknown or unsupported topic config {key}"),
                ))
            }
        }
    }
    Ok(config)
}

/// A topic's `min.insync.replicas`: its override, else the broker's.
pub fn min_insync_replicas_for(broker_default: usize, configs: &BTreeMap<String, String>) -> usize {
    configs
        .get("min.insync.replicas")
        .and_then(|v| v.parse().ok())
        .unwrap_or(broker_default)
}

/// A topic's `compression.type`: its override, else the broker's.
pub fn compression_type_for(
    broker_default: crate::recompress::CompressionType,
    configs: &BTreeMap<String, String>,
) -> crate::recompress::CompressionType {
    configs
        .get(crate::recompress::COMPRESSION_TYPE)
        .and_then(|v| crate::recompress::CompressionType::parse(v))
        .unwrap_or(broker_default)
}

/// A topic's `unclean.leader.election.enable`: its override, else the broker's.
pub fn unclean_leader_election_for(
    broker_default: bool,
    configs: &BTreeMap<String, String>,
) -> bool {
    configs
        .get("unclean.leader.election.enable")
        .and_then(|v| v.parse().ok())
        .unwrap_or(broker_default)
}

/// Records that describe the topics a data directory written before the
/// metadata log existed holds (each partition led by this broker, epochs at
/// their start), so the first start with a metadata log adopts that data.
/// Partitions must be numbered densely and agree on their topic id.
pub fn bootstrap_records(logs: &LogManager, node: BrokerId) -> anyhow::Result<Vec<MetadataRecord>> {
    let stored_configs = read_topic_configs(&logs.data_dir().join(TOPIC_CONFIGS_FILE))?;
    let mut by_topic: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
    for tp in logs.partitions() {
        by_topic.entry(tp.topic.clone()).or_default().push(tp);
    }
    let mut records = Vec::new();
    for (name, mut tps) in by_topic {
        tps.sort();
        let configs = stored_configs.get(&name).cloned().unwrap_or_default();
        log_config_for(&LogConfig::default(), &configs)
            .map_err(|e| anyhow::anyhow!("topic {name}: {}", e.message))?;
        let mut topic_id = None;
        for (expected, tp) in tps.iter().enumerate() {
            if tp.partition != expected as i32 {
                anyhow::bail!(
                    "topic {name} is missing partition {expected} on disk (found {})",
                    tp.partition
                );
            }
            let log = logs
                .get(tp)
                .ok_or_else(|| anyhow::anyhow!("partition {tp:?} vanished while loading"))?;
            let id = log.lock().expect("fresh lock").topic_id();
            topic_id = Some(match (topic_id, id) {
                (None, Some(id)) => id,
                (Some(known), Some(id)) if known == id => id,
                (Some(known), Some(id)) => {
                    anyhow::bail!("partition {tp:?} has topic id {id}, others have {known}")
                }
                (_, None) => anyhow::bail!("partition {tp:?} has no partition.metadata"),
            });
        }
        let Some(id) = topic_id else { continue };
        records.push(MetadataRecord::Topic { name, id });
        for tp in &tps {
            records.push(MetadataRecord::Partition {
                topic_id: id,
                partition: tp.partition,
                registration: PartitionRegistration::new(vec![node]),
            });
        }
        for (key, value) in configs {
            records.push(MetadataRecord::TopicConfig {
                topic_id: id,
                key,
                value: Some(value),
            });
        }
    }
    Ok(records)
}

/// Keeps the topic config overrides of `image` in the data dir, where
/// [`bootstrap_records`] finds them.
pub fn write_topic_configs(data_dir: &Path, image: &MetadataImage) -> std::io::Result<()> {
    let mut text = String::new();
    for topic in image.topics() {
        for (key, value) in &topic.configs {
            text.push_str(&format!("{} {key}={value}\n", topic.name));
        }
    }
    crate::fsutil::write_atomically(&data_dir.join(TOPIC_CONFIGS_FILE), text.as_bytes())
}

fn read_topic_configs(path: &Path) -> anyhow::Result<HashMap<String, BTreeMap<String, String>>> {
    let mut out: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (topic, setting) = line
            .split_once(' ')
            .ok_or_else(|| anyhow::anyhow!("malformed line in {}: {line:?}", path.display()))?;
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("malformed line in {}: {line:?}", path.display()))?;
        out.entry(topic.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        // Legal characters and length are enforced as Kafka does.
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "has space", "slash/inside", &"x".repeat(250)] {
            let err = validate_topic_name(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::INVALID_TOPIC_EXCEPTION, "{bad:?}");
        }
    }

    #[test]
    fn topic_overrides_change_the_log_config() {
        // retention.ms=-1 means unlimited; unknown keys are refused.
        let defaults = LogConfig::default();
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "-1".to_string());
        configs.insert("segment.bytes".to_string(), "1048576".to_string());
        let config = log_config_for(&defaults, &configs).unwrap();
        assert_eq!(config.retention_ms, None);
        assert_eq!(config.segment_bytes_max, 1_048_576);
        configs.insert("no.such".to_string(), "1".to_string());
        assert_eq!(
            log_config_for(&defaults, &configs).unwrap_err().code,
            ErrorCode::INVALID_CONFIG
        );
    }

    #[test]
    fn compaction_configs_map_into_the_log_config() {
        // cleanup.policy=compact and the cleaner's settings reach the LogConfig; bad values are refused.
        let defaults = LogConfig::default();
        let configs: BTreeMap<String, String> = [
            ("cleanup.policy", "compact,delete"),
            ("min.cleanable.dirty.ratio", "0.25"),
            ("delete.retention.ms", "1000"),
            ("min.compaction.lag.ms", "500"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = log_config_for(&defaults, &configs).unwrap();
        assert_eq!(
            config.cleanup_policy,
            crate::storage::CleanupPolicy::COMPACT_DELETE
        );
        assert_eq!(config.min_cleanable_dirty_ratio, 0.25);
        assert_eq!(config.delete_retention_ms, 1000);
        assert_eq!(config.min_compaction_lag_ms, 500);
        for (key, bad) in [
            ("cleanup.policy", "shred"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("delete.retention.ms", "-1"),
        ] {
            let configs = BTreeMap::from([(key.to_string(), bad.to_string())]);
            assert_eq!(
                log_config_for(&defaults, &configs).unwrap_err().code,
                ErrorCode::INVALID_CONFIG,
                "{key}={bad}"
            );
        }
    }
}
