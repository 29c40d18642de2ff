//! The controller's decisions on topics: a request and the current image in,
//! the records to commit (or a Kafka error) out. No I/O: ids and the image
//! are given, so every decision is a function of its arguments.

use std::collections::{BTreeMap, BTreeSet};

use protocol::ErrorCode;
use uuid::Uuid;

use crate::controller::placement::{assign_replicas, rack_alternating};
use crate::controller::ControllerConfig;
use crate::ids::BrokerId;
use crate::metadata::{MetadataImage, MetadataRecord, PartitionRegistration};
use crate::storage::LogConfig;
use crate::topics::{log_config_for, validate_topic_name, TopicError};

/// A topic to create, as CreateTopics or auto-creation asks for it.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    pub name: String,
    /// `-1`: `num.partitions`.
    pub partitions: i32,
    /// `-1`: `default.replication.factor`.
    pub replication_factor: i16,
    /// Explicit replicas per partition; empty to let the controller place them.
    pub assignments: Vec<Vec<BrokerId>>,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreatedTopic {
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
}

fn live_broker_ids(image: &MetadataImage) -> Vec<BrokerId> {
    image.live_brokers().map(|b| b.id).collect()
}

/// Checks explicit assignments: every partition has distinct replicas on
/// live brokers, and all have the same count.
fn check_assignments(
    image: &MetadataImage,
    assignments: &[Vec<BrokerId>],
) -> Result<i16, TopicError> {
    let live: BTreeSet<BrokerId> = live_broker_ids(image).into_iter().collect();
    let factor = assignments[0].len();
    for (index, replicas) in assignments.iter().enumerate() {
        let distinct: BTreeSet<BrokerId> = replicas.iter().copied().collect();
        if replicas.is_empty() || distinct.len() != replicas.len() || replicas.len() != factor {
            return Err(TopicError::new(
                ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                format!("partition {index}: replicas {replicas:?} must be distinct and as many as the other partitions'"),
            ));
        }
        if let Some(unknown) = replicas.iter().find(|b| !live.contains(b)) {
            return Err(TopicError::new(
                ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                format!("partition {index}: broker {unknown} is not a live broker"),
            ));
        }
    }
    Ok(factor as i16)
}

/// The replicas of `partitions` new partitions of factor `replication_factor`.
fn place(
    image: &MetadataImage,
    partitions: i32,
    replication_factor: i16,
    start: usize,
) -> Result<Vec<Vec<BrokerId>>, TopicError> {
    let live = live_broker_ids(image);
    if replication_factor < 1 || replication_factor as usize > live.len() {
        return Err(TopicError::new(
            ErrorCode::INVALID_REPLICATION_FACTOR,
            format!(
                "replication factor {replication_factor} is larger than the {} available broker{}",
                live.len(),
                if live.len() == 1 { "" } else { "s" }
            ),
        ));
    }
    let brokers: Vec<(BrokerId, Option<String>)> = image
        .live_brokers()
        .map(|b| (b.id, b.rack.clone()))
        .collect();
    Ok(assign_replicas(
        &rack_alternating(&brokers),
        partitions,
        replication_factor as usize,
        start,
    ))
}

fn check_partition_count(partitions: i32) -> Result<(), TopicError> {
    if !(1..=crate::config::PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
        return Err(TopicError::new(
            ErrorCode::INVALID_PARTITIONS,
            format!(
                "partition count {partitions} is outside 1..={}",
                crate::config::PARTITIONS_PER_TOPIC_MAX
            ),
        ));
    }
    Ok(())
}

/// Records that create `topic` with id `id`.
pub fn create_topic(
    image: &MetadataImage,
    topic: &NewTopic,
    config: &ControllerConfig,
    id: Uuid,
) -> Result<(Vec<MetadataRecord>, CreatedTopic), TopicError> {
    validate_topic_name(&topic.name)?;
    let (replicas, replication_factor) = if !topic.assignments.is_empty() {
        let factor = check_assignments(image, &topic.assignments)?;
        check_partition_count(topic.assignments.len() as i32)?;
        (topic.assignments.clone(), factor)
    } else {
        let partitions = match topic.partitions {
            -1 => config.default_partitions,
            n => n,
        };
        check_partition_count(partitions)?;
        let factor = match topic.replication_factor {
            -1 => config.default_replication_factor,
            n => n,
        };
        // Start each topic where the previous one left off, so leaders spread.
        let start = image.topics().map(|t| t.partitions.len()).sum();
        (place(image, partitions, factor, start)?, factor)
    };
    log_config_for(&LogConfig::default(), &topic.configs)?;
    if image.topic(&topic.name).is_some() {
        return Err(TopicError::new(
            ErrorCode::TOPIC_ALREADY_EXISTS,
            format!("topic {} already exists", topic.name),
        ));
    }
    let mut records = Vec::with_capacity(replicas.len() + topic.configs.len() + 1);
    records.push(MetadataRecord::Topic {
        name: topic.name.clone(),
        id,
    });
    for (index, replicas) in replicas.iter().enumerate() {
        records.push(MetadataRecord::Partition {
            topic_id: id,
            partition: index as i32,
            registration: PartitionRegistration::new(replicas.clone()),
        });
    }
    for (key, value) in &topic.configs {
        records.push(MetadataRecord::TopicConfig {
            topic_id: id,
            key: key.clone(),
            value: Some(value.clone()),
        });
    }
    let created = CreatedTopic {
        id,
        partitions: replicas.len() as i32,
        replication_factor,
    };
    Ok((records, created))
}

/// Records that delete topic `name`; its id is returned.
pub fn delete_topic(
    image: &MetadataImage,
    name: &str,
) -> Result<(Vec<MetadataRecord>, Uuid), TopicError> {
    let topic = image.topic(name).ok_or_else(|| {
        TopicError::new(
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic {name} does not exist"),
        )
    })?;
    Ok((vec![MetadataRecord::RemoveTopic { id: topic.id }], topic.id))
}

/// Records that grow topic `name` to `total` partitions, placed like its
/// first partition's replication factor (or as `assignments` say).
pub fn create_partitions(
    image: &MetadataImage,
    name: &str,
    total: i32,
    assignments: &[Vec<BrokerId>],
) -> Result<Vec<MetadataRecord>, TopicError> {
    let topic = image.topic(name).ok_or_else(|| {
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
    let added = total - current;
    let replicas = if assignments.is_empty() {
        let factor = topic.partitions.first().map_or(1, |p| p.replicas.len()) as i16;
        place(image, added, factor, current as usize)?
    } else {
        if assignments.len() as i32 != added {
            return Err(TopicError::new(
                ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                format!(
                    "{} assignments for {added} new partitions",
                    assignments.len()
                ),
            ));
        }
        check_assignments(image, assignments)?;
        assignments.to_vec()
    };
    Ok(replicas
        .into_iter()
        .enumerate()
        .map(|(i, replicas)| MetadataRecord::Partition {
            topic_id: topic.id,
            partition: current + i as i32,
            registration: PartitionRegistration::new(replicas),
        })
        .collect())
}

/// One change of an IncrementalAlterConfigs request to a topic's overrides
/// (Kafka's operations SET, DELETE, APPEND and SUBTRACT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    Set {
        key: String,
        value: String,
    },
    /// Removes the override: the broker's default applies again.
    Delete {
        key: String,
    },
    /// Adds an element to a list-valued config (`cleanup.policy`).
    Append {
        key: String,
        value: String,
    },
    /// Removes an element from a list-valued config.
    Subtract {
        key: String,
        value: String,
    },
}

impl ConfigChange {
    pub fn key(&self) -> &str {
        match self {
            ConfigChange::Set { key, .. }
            | ConfigChange::Delete { key }
            | ConfigChange::Append { key, .. }
            | ConfigChange::Subtract { key, .. } => key,
        }
    }

    /// Whether `configs` (a topic's overrides) shows this change made.
    pub fn is_applied(&self, configs: &BTreeMap<String, String>) -> bool {
        let listed = |key: &str, value: &str| {
            configs
                .get(key)
                .is_some_and(|list| list.split(',').any(|v| v.trim() == value))
        };
        match self {
            ConfigChange::Set { key, value } => configs.get(key) == Some(value),
            ConfigChange::Delete { key } => !configs.contains_key(key),
            ConfigChange::Append { key, value } => listed(key, value),
            ConfigChange::Subtract { key, value } => !listed(key, value),
        }
    }
}

/// Topic configs whose value is a list, which APPEND and SUBTRACT may change,
/// with Kafka's default for a topic that does not override it.
const LIST_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    (crate::replication::throttle::LEADER_THROTTLED_REPLICAS, ""),
    (
        crate::replication::throttle::FOLLOWER_THROTTLED_REPLICAS,
        "",
    ),
];

/// Records that change topic `name`'s config overrides as `changes` say,
/// after checking the result as CreateTopics checks a new topic's configs.
/// Answers the new overrides.
pub fn alter_topic_configs(
    image: &MetadataImage,
    name: &str,
    changes: &[ConfigChange],
) -> Result<(Vec<MetadataRecord>, BTreeMap<String, String>), TopicError> {
    let topic = image.topic(name).ok_or_else(|| {
        TopicError::new(
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic {name} does not exist"),
        )
    })?;
    let mut configs = topic.configs.clone();
    for change in changes {
        let key = change.key().to_string();
        match change {
            ConfigChange::Set { value, .. } => {
                configs.insert(key, value.clone());
            }
            ConfigChange::Delete { .. } => {
                configs.remove(&key);
            }
            ConfigChange::Append { value, .. } | ConfigChange::Subtract { value, .. } => {
                let Some(&(_, default)) = LIST_CONFIGS.iter().find(|(k, _)| *k == key) else {
                    return Err(TopicError::new(
                        ErrorCode::INVALID_CONFIG,
                        format!("{key} is not a list: only SET and DELETE apply to it"),
                    ));
                };
                let current = configs.get(&key).map_or(default, String::as_str);
                let mut list: Vec<&str> = current
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .collect();
                if matches!(change, ConfigChange::Append { .. }) {
                    if !list.contains(&value.as_str()) {
                        list.push(value);
                    }
                } else {
                    list.retain(|v| v != value);
                }
                let joined = list.join(",");
                configs.insert(key, joined);
            }
        }
    }
    log_config_for(&LogConfig::default(), &configs)?;
    let mut records = Vec::new();
    let keys: BTreeSet<&String> = configs.keys().chain(topic.configs.keys()).collect();
    for key in keys {
        let (old, new) = (topic.configs.get(key), configs.get(key));
        if old != new {
            records.push(MetadataRecord::TopicConfig {
                topic_id: topic.id,
                key: key.clone(),
                value: new.cloned(),
            });
        }
    }
    Ok((records, configs))
}

/// Records that change the dynamic broker configs of `scope` (a broker, or
/// `None` for the cluster-wide default) as `changes` say, after checking the
/// result as a broker would apply it ([`crate::dynamic_config::validate`]).
pub fn alter_broker_configs(
    image: &MetadataImage,
    scope: Option<BrokerId>,
    changes: &[ConfigChange],
) -> Result<Vec<MetadataRecord>, TopicError> {
    let current = image.broker_configs(scope);
    let mut configs = current.clone();
    for change in changes {
        match change {
            ConfigChange::Set { key, value } => {
                configs.insert(key.clone(), value.clone());
            }
            ConfigChange::Delete { key } => {
                configs.remove(key);
            }
            ConfigChange::Append { key, .. } | ConfigChange::Subtract { key, .. } => {
                // A read-only key is refused as such first.
                crate::dynamic_config::check_dynamic([key.as_str()])?;
                return Err(TopicError::new(
                    ErrorCode::INVALID_CONFIG,
                    format!("{key} is not a list: only SET and DELETE apply to it"),
                ));
            }
        }
    }
    crate::dynamic_config::validate(&configs)?;
    let keys: BTreeSet<&String> = configs.keys().chain(current.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|key| configs.get(*key) != current.get(*key))
        .map(|key| MetadataRecord::BrokerConfig {
            broker: scope,
            key: key.clone(),
            value: configs.get(key).cloned(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Offset;

    fn image_with_topic(configs: &[(&str, &str)]) -> (MetadataImage, Uuid) {
        let id = Uuid::from_u128(7);
        let mut records = vec![
            MetadataRecord::Topic {
                name: "t".into(),
                id,
            },
            MetadataRecord::Partition {
                topic_id: id,
                partition: 0,
                registration: PartitionRegistration::new(vec![BrokerId(1)]),
            },
        ];
        for (key, value) in configs {
            records.push(MetadataRecord::TopicConfig {
                topic_id: id,
                key: key.to_string(),
                value: Some(value.to_string()),
            });
        }
        (MetadataImage::empty().apply(Offset(0), &records).0, id)
    }

    fn set(key: &str, value: &str) -> ConfigChange {
        ConfigChange::Set {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn config_changes_become_one_record_per_changed_key() {
        // SET, DELETE, APPEND and SUBTRACT give the overrides Kafka would, and records only for what changed.
        let (image, id) = image_with_topic(&[("retention.ms", "1000"), ("segment.bytes", "2048")]);
        let changes = [
            set("retention.ms", "1000"),
            ConfigChange::Delete {
                key: "segment.bytes".into(),
            },
            ConfigChange::Append {
                key: "cleanup.policy".into(),
                value: "compact".into(),
            },
        ];
        let (records, configs) = alter_topic_configs(&image, "t", &changes).unwrap();
        assert_eq!(configs.get("cleanup.policy").unwrap(), "delete,compact");
        assert_eq!(
            records,
            vec![
                MetadataRecord::TopicConfig {
                    topic_id: id,
                    key: "cleanup.policy".into(),
                    value: Some("delete,compact".into()),
                },
                MetadataRecord::TopicConfig {
                    topic_id: id,
                    key: "segment.bytes".into(),
                    value: None,
                },
            ]
        );
        assert!(changes.iter().all(|c| c.is_applied(&configs)));
        let subtract = [ConfigChange::Subtract {
            key: "cleanup.policy".into(),
            value: "delete".into(),
        }];
        let (image, _) = image_with_topic(&[("cleanup.policy", "compact,delete")]);
        let (_, configs) = alter_topic_configs(&image, "t", &subtract).unwrap();
        assert_eq!(configs.get("cleanup.policy").unwrap(), "compact");
    }

    #[test]
    fn bad_config_changes_get_kafkas_errors() {
        // Unknown keys, bad values and list operations on plain configs are INVALID_CONFIG; unknown topics are named.
        let (image, _) = image_with_topic(&[]);
        let code = |name: &str, change: ConfigChange| {
            alter_topic_configs(&image, name, &[change])
                .unwrap_err()
                .code
        };
        assert_eq!(code("t", set("no.such", "1")), ErrorCode::INVALID_CONFIG);
        assert_eq!(
            code("t", set("retention.ms", "soon")),
            ErrorCode::INVALID_CONFIG
        );
        let append = ConfigChange::Append {
            key: "retention.ms".into(),
            value: "1".into(),
        };
        assert_eq!(code("t", append), ErrorCode::INVALID_CONFIG);
        assert_eq!(
            code("other", set("retention.ms", "1")),
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        );
    }

    #[test]
    fn throttled_replica_lists_are_taken_as_kafka_validates_them() {
        // kafka-reassign-partitions' lists, '*' and an empty list are set; a malformed one is INVALID_CONFIG; APPEND adds a pair.
        let (image, _) = image_with_topic(&[]);
        let leader = crate::replication::throttle::LEADER_THROTTLED_REPLICAS;
        let follower = crate::replication::throttle::FOLLOWER_THROTTLED_REPLICAS;
        for value in ["0:1,0:2", "*", ""] {
            let (_, configs) = alter_topic_configs(&image, "t", &[set(leader, value)]).unwrap();
            assert_eq!(configs.get(leader).map(String::as_str), Some(value));
        }
        let err = alter_topic_configs(&image, "t", &[set(follower, "0-3")]).unwrap_err();
        assert_eq!(err.code, ErrorCode::INVALID_CONFIG);
        assert!(err.message.contains("must be the literal '*'"), "{err:?}");
        let (image, _) = image_with_topic(&[(follower, "0:3")]);
        let append = ConfigChange::Append {
            key: follower.into(),
            value: "1:3".into(),
        };
        let (_, configs) = alter_topic_configs(&image, "t", &[append]).unwrap();
        assert_eq!(configs.get(follower).unwrap(), "0:3,1:3");
        let delete = ConfigChange::Delete { key: leader.into() };
        let (records, _) = alter_topic_configs(&image, "t", &[delete]).unwrap();
        assert!(records.is_empty(), "deleting an unset list changes nothing");
    }
}
