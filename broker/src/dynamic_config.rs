//! Dynamic broker configs, as Kafka's `DynamicBrokerConfig` has them: the
//! settings that may change while brokers run, set with IncrementalAlterConfigs
//! or AlterConfigs on a BROKER resource, committed through the controller as
//! metadata records (so they persist and reach every broker), and applied by
//! each broker over its static configuration.
//!
//! A broker's effective setting is, by precedence: its own dynamic value
//! (`DYNAMIC_BROKER_CONFIG`), the cluster-wide dynamic default
//! (`DYNAMIC_DEFAULT_BROKER_CONFIG`), its configuration file or flags
//! (`STATIC_BROKER_CONFIG`), the built-in default (`DEFAULT_CONFIG`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use protocol::ErrorCode;

use crate::config::BrokerConfig;
use crate::ids::BrokerId;
use crate::metadata::{MetadataDelta, MetadataImage, MetadataPublisher};
use crate::replica_manager::ReplicaManager;
use crate::topics::TopicError;

/// The settings that may change at run time, each applied where the broker
/// reads it: the produce path (`message.max.bytes`, `compression.type`), the
/// topics' log defaults (`log.retention.*`, `log.segment.bytes`,
/// `log.roll.ms`), the partitions' leaders (`min.insync.replicas`), the
/// replication throttles (the leaders' fetch answers and the replica
/// fetchers, see [`crate::replication::throttle`]).
/// `replica.alter.log.dirs.io.max.bytes.per.second` is kept and shown only:
/// a broker has one log dir, so no replica moves between dirs.
pub const DYNAMIC_BROKER_CONFIGS: &[&str] = &[
    "compression.type",
    "follower.replication.throttled.rate",
    "leader.replication.throttled.rate",
    "log.retention.bytes",
    "log.retention.ms",
    "log.roll.ms",
    "log.segment.bytes",
    "message.max.bytes",
    "min.insync.replicas",
    "replica.alter.log.dirs.io.max.bytes.per.second",
];

pub fn is_dynamic(key: &str) -> bool {
    DYNAMIC_BROKER_CONFIGS.contains(&key)
}

/// Checks dynamic settings `configs` (of one scope) as a broker would apply
/// them: every key dynamic (Kafka's `INVALID_REQUEST` "Cannot update these
/// configs dynamically" otherwise), every value valid (`INVALID_CONFIG`).
pub fn validate(configs: &BTreeMap<String, String>) -> Result<(), TopicError> {
    check_dynamic(configs.keys().map(String::as_str))?;
    let mut config = BrokerConfig::default();
    for (key, value) in configs {
        config
            .set(key, value)
            .map_err(|e| TopicError::new(ErrorCode::INVALID_CONFIG, e.to_string()))?;
    }
    Ok(())
}

/// Refuses keys that cannot change at run time, naming them as Kafka does.
pub fn check_dynamic<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<(), TopicError> {
    let fixed: Vec<&str> = keys.into_iter().filter(|k| !is_dynamic(k)).collect();
    if fixed.is_empty() {
        return Ok(());
    }
    Err(TopicError::new(
        ErrorCode::INVALID_REQUEST,
        format!(
            "Cannot update these configs dynamically: Set({})",
            fixed.join(", ")
        ),
    ))
}

/// `static_config` with the dynamic settings of `image` applied: the
/// cluster-wide defaults, then this broker's own.
pub fn effective(static_config: &BrokerConfig, image: &MetadataImage) -> BrokerConfig {
    let mut config = static_config.clone();
    let node = BrokerId(static_config.node_id);
    for scope in [None, Some(node)] {
        for (key, value) in image.broker_configs(scope) {
            if let Err(e) = config.set(key, value) {
                // The controller validated it; a newer broker's setting, perhaps.
                tracing::warn!(key, value, error = %e, "dynamic broker config does not apply");
            }
        }
    }
    config
}

/// Where a dynamic setting's value for broker `node` comes from, if any:
/// (value, its source, as DescribeConfigs names it).
pub fn dynamic_value<'a>(
    image: &'a MetadataImage,
    node: BrokerId,
    key: &str,
) -> Vec<(&'a str, DynamicSource)> {
    let mut found = Vec::new();
    if let Some(value) = image.broker_configs(Some(node)).get(key) {
        found.push((value.as_str(), DynamicSource::Broker));
    }
    if let Some(value) = image.broker_configs(None).get(key) {
        found.push((value.as_str(), DynamicSource::ClusterDefault));
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynamicSource {
    Broker,
    ClusterDefault,
}

/// Keeps the broker's effective configuration current: on every committed
/// change of dynamic broker configs, recomputes it and hands the log
/// defaults and replication settings to the replica manager. Runs before the
/// replica manager's own publisher, so topics created in the same batch see
/// the new defaults.
pub struct DynamicConfigPublisher {
    static_config: BrokerConfig,
    effective: Arc<RwLock<Arc<BrokerConfig>>>,
    replicas: Arc<ReplicaManager>,
}

impl DynamicConfigPublisher {
    pub fn new(
        static_config: BrokerConfig,
        effective: Arc<RwLock<Arc<BrokerConfig>>>,
        replicas: Arc<ReplicaManager>,
    ) -> Self {
        DynamicConfigPublisher {
            static_config,
            effective,
            replicas,
        }
    }
}

impl MetadataPublisher for DynamicConfigPublisher {
    fn publish(&self, image: &Arc<MetadataImage>, delta: &MetadataDelta) {
        if !delta.changed_broker_configs {
            return;
        }
        let config = Arc::new(effective(&self.static_config, image));
        tracing::info!(
            cluster = ?image.broker_configs(None),
            broker = ?image.broker_configs(Some(BrokerId(self.static_config.node_id))),
            "dynamic broker configs applied"
        );
        *self.effective.write().expect("effective config lock") = config.clone();
        self.replicas
            .set_defaults(config.log.clone(), config.replication, image);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Offset;
    use crate::metadata::MetadataRecord;

    fn record(broker: Option<i32>, key: &str, value: &str) -> MetadataRecord {
        MetadataRecord::BrokerConfig {
            broker: broker.map(BrokerId),
            key: key.into(),
            value: Some(value.into()),
        }
    }

    #[test]
    fn a_brokers_own_value_wins_over_the_cluster_default_over_its_file() {
        // Precedence: dynamic per-broker, dynamic default, static; other brokers' values do not apply.
        let mut config = BrokerConfig {
            node_id: 1,
            ..BrokerConfig::default()
        };
        config.set("log.retention.ms", "1000").unwrap();
        config.set("message.max.bytes", "5000").unwrap();
        let image = MetadataImage::empty()
            .apply(
                Offset(0),
                &[
                    record(None, "log.retention.ms", "2000"),
                    record(None, "min.insync.replicas", "2"),
                    record(Some(1), "log.retention.ms", "3000"),
                    record(Some(2), "message.max.bytes", "9"),
                    record(None, "follower.replication.throttled.rate", "1000"),
                    record(Some(1), "leader.replication.throttled.rate", "2000"),
                ],
            )
            .0;
        let effective = effective(&config, &image);
        assert_eq!(effective.log.retention_ms, Some(3000));
        assert_eq!(effective.replication.min_insync_replicas, 2);
        assert_eq!(effective.message_bytes_max, 5000);
        assert_eq!(
            effective.replication.follower_throttle_bytes_per_s,
            Some(1000)
        );
        assert_eq!(
            effective.replication.leader_throttle_bytes_per_s,
            Some(2000)
        );
        assert_eq!(
            dynamic_value(&image, BrokerId(1), "log.retention.ms"),
            vec![
                ("3000", DynamicSource::Broker),
                ("2000", DynamicSource::ClusterDefault)
            ]
        );
    }

    #[test]
    fn read_only_keys_and_bad_values_get_kafkas_errors() {
        // A static-only key is INVALID_REQUEST naming it; a bad value of a dynamic key is INVALID_CONFIG.
        let configs = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let err =
            validate(&configs(&[("log.dirs", "/x"), ("message.max.bytes", "1")])).unwrap_err();
        assert_eq!(err.code, ErrorCode::INVALID_REQUEST);
        assert!(err
            .message
            .contains("Cannot update these configs dynamically: Set(log.dirs)"));
        let err = validate(&configs(&[("compression.type", "brotli")])).unwrap_err();
        assert_eq!(err.code, ErrorCode::INVALID_CONFIG);
        let err = validate(&configs(&[("leader.replication.throttled.rate", "fast")])).unwrap_err();
        assert_eq!(err.code, ErrorCode::INVALID_CONFIG);
        let err = validate(&configs(&[(
            "replica.alter.log.dirs.io.max.bytes.per.second",
            "-1",
        )]))
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::INVALID_CONFIG);
        validate(&configs(&[
            ("compression.type", "zstd"),
            ("leader.replication.throttled.rate", "1000"),
            ("follower.replication.throttled.rate", "9223372036854775807"),
            ("replica.alter.log.dirs.io.max.bytes.per.second", "0"),
        ]))
        .unwrap();
    }
}
