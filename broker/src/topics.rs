//! The topics this broker hosts: names, ids, partitions and per-topic config
//! overrides. With one broker this registry is the cluster metadata; the
//! controller quorum replaces its source of truth later, not its interface.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use protocol::ErrorCode;
use uuid::Uuid;

use crate::partition::Partition;
use crate::storage::{LogConfig, LogManager, TopicPartition};

/// Kafka's bound on topic names (so `<topic>-<partition>` fits a file name).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Leader epoch of every partition on a single broker (no leader changes yet).
pub const SINGLE_NODE_LEADER_EPOCH: i32 = 0;
/// File in the data dir that keeps per-topic config overrides.
const TOPIC_CONFIGS_FILE: &str = "topic-configs";

/// Topics the broker keeps for itself: clients cannot produce to, create or delete them.
pub fn is_internal(name: &str) -> bool {
    name == crate::group::OFFSETS_TOPIC
}

pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<Arc<Partition>>,
    pub configs: BTreeMap<String, String>,
}

impl Topic {
    pub fn is_internal(&self) -> bool {
        is_internal(&self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError {
    pub code: ErrorCode,
    pub message: String,
}

impl TopicError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        TopicError {
            code,
            message: message.into(),
        }
    }
}

pub struct TopicRegistry {
    logs: Arc<LogManager>,
    default_log_config: LogConfig,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    configs_path: PathBuf,
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

impl TopicRegistry {
    /// Rebuilds the registry from the partitions the log manager found on disk.
    pub fn load(logs: Arc<LogManager>, default_log_config: LogConfig) -> anyhow::Result<Self> {
        let configs_path = logs.data_dir().join(TOPIC_CONFIGS_FILE);
        let stored_configs = read_topic_configs(&configs_path)?;
        let mut by_topic: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
        for tp in logs.partitions() {
            by_topic.entry(tp.topic.clone()).or_default().push(tp);
        }
        let mut topics = HashMap::new();
        for (name, mut tps) in by_topic {
            tps.sort();
            let configs = stored_configs.get(&name).cloned().unwrap_or_default();
            // The storage engine opens every log with the defaults; topic overrides are ours.
            let log_config = log_config_for(&default_log_config, &configs)
                .map_err(|e| anyhow::anyhow!("topic {name}: {}", e.message))?;
            let mut partitions = Vec::new();
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
                let id = {
                    let mut log = log.lock().expect("fresh lock");
                    if !configs.is_empty() {
                        log.set_config(log_config.clone())?;
                    }
                    log.topic_id()
                };
                let id = match (topic_id, id) {
                    (None, Some(id)) => id,
                    (Some(known), Some(id)) if known == id => id,
                    (Some(known), Some(id)) => {
                        anyhow::bail!("partition {tp:?} has topic id {id}, others have {known}")
                    }
                    (_, None) => anyhow::bail!("partition {tp:?} has no partition.metadata"),
                };
                topic_id = Some(id);
                partitions.push(Arc::new(Partition::new(
                    name.clone(),
                    tp.partition,
                    id,
                    SINGLE_NODE_LEADER_EPOCH,
                    log,
                )));
            }
            let Some(id) = topic_id else { continue };
            topics.insert(
                name.clone(),
                Arc::new(Topic {
                    name,
                    id,
                    partitions,
                    configs,
                }),
            );
        }
        Ok(TopicRegistry {
            logs,
            default_log_config,
            topics: RwLock::new(topics),
            configs_path,
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().expect("topics lock").get(name).cloned()
    }

    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .find(|t| t.id == id)
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self
            .topics
            .read()
            .expect("topics lock")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let topic = self.get(topic)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| topic.partitions.get(i).cloned())
    }

    /// Creates a topic with `partitions` partitions. With `validate_only`, checks and returns
    /// without creating anything.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        validate_topic_name(name)?;
        if !(1..=crate::config::PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(TopicError::new(
                ErrorCode::INVALID_PARTITIONS,
                format!(
                    "partition count {partitions} is outside 1..={}",
                    crate::config::PARTITIONS_PER_TOPIC_MAX
                ),
            ));
        }
        let log_config = log_config_for(&self.default_log_config, &configs)?;
        let mut topics = self.topics.write().expect("topics lock");
        if topics.contains_key(name) {
            return Err(TopicError::new(
                ErrorCode::TOPIC_ALREADY_EXISTS,
                format!("topic {name} already exists"),
            ));
        }
        let id = Uuid::new_v4();
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.to_string(),
                id,
                partitions: Vec::new(),
                configs,
            }));
        }
        let mut created = Vec::new();
        for index in 0..partitions {
            let tp = TopicPartition {
                topic: name.to_string(),
                partition: index,
            };
            let log = self
                .logs
                .create_with_topic_id(&tp, log_config.clone(), id)
                .map_err(|e| TopicError::new(ErrorCode::KAFKA_STORAGE_ERROR, e.to_string()))?;
            created.push(Arc::new(Partition::new(
                name.to_string(),
                index,
                id,
                SINGLE_NODE_LEADER_EPOCH,
                log,
            )));
        }
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id,
            partitions: created,
            configs,
        });
        topics.insert(name.to_string(), topic.clone());
        self.persist_configs(&topics)?;
        tracing::info!(topic = name, partitions, %id, "created topic");
        Ok(topic)
    }

    pub fn delete(&self, name: &str) -> Result<Uuid, TopicError> {
        let mut topics = self.topics.write().expect("topics lock");
        let topic = topics.remove(name).ok_or_else(|| {
            TopicError::new(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic {name} does not exist"),
            )
        })?;
        for partition in &topic.partitions {
            let tp = TopicPartition {
                topic: name.to_string(),
                partition: partition.index,
            };
            self.logs
                .delete(&tp)
                .map_err(|e| TopicError::new(ErrorCode::KAFKA_STORAGE_ERROR, e.to_string()))?;
        }
        self.persist_configs(&topics)?;
        tracing::info!(topic = name, "deleted topic");
        Ok(topic.id)
    }

    /// Grows a topic to `total` partitions.
    pub fn create_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let mut topics = self.topics.write().expect("topics lock");
        let topic = topics.get(name).cloned().ok_or_else(|| {
            TopicError::new(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic {name} does not exist"),
            )
        })?;
        let current = topic.partitions.len() as i32;
        if total <= current {
            return Err(TopicError::new(
                ErrorCode::INVALID_PARTITIONS,
                format!("topic {name} has {current} partitions; the new count must be larger"),
            ));
        }
        if total > crate::config::PARTITIONS_PER_TOPIC_MAX {
            return Err(TopicError::new(
                ErrorCode::INVALID_PARTITIONS,
                format!(
                    "partition count {total} exceeds {}",
                    crate::config::PARTITIONS_PER_TOPIC_MAX
                ),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let log_config = log_config_for(&self.default_log_config, &topic.configs)?;
        let mut partitions = topic.partitions.clone();
        for index in current..total {
            let tp = TopicPartition {
                topic: name.to_string(),
                partition: index,
            };
            let log = self
                .logs
                .create_with_topic_id(&tp, log_config.clone(), topic.id)
                .map_err(|e| TopicError::new(ErrorCode::KAFKA_STORAGE_ERROR, e.to_string()))?;
            partitions.push(Arc::new(Partition::new(
                name.to_string(),
                index,
                topic.id,
                SINGLE_NODE_LEADER_EPOCH,
                log,
            )));
        }
        topics.insert(
            name.to_string(),
            Arc::new(Topic {
                name: name.to_string(),
                id: topic.id,
                partitions,
                configs: topic.configs.clone(),
            }),
        );
        tracing::info!(topic = name, from = current, to = total, "added partitions");
        Ok(())
    }

    fn persist_configs(&self, topics: &HashMap<String, Arc<Topic>>) -> Result<(), TopicError> {
        let mut text = String::new();
        let mut names: Vec<_> = topics.keys().collect();
        names.sort();
        for name in names {
            for (key, value) in &topics[name].configs {
                text.push_str(&format!("{name} {key}={value}\n"));
            }
        }
        crate::fsutil::write_atomically(&self.configs_path, text.as_bytes())
            .map_err(|e| TopicError::new(ErrorCode::KAFKA_STORAGE_ERROR, e.to_string()))
    }
}

fn read_topic_configs(
    path: &std::path::Path,
) -> anyhow::Result<HashMap<String, BTreeMap<String, String>>> {
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
