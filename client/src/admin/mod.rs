//! The admin client: topics, partitions, the cluster, offsets, configs and
//! the replication calls (reassignments, leader elections), with typed
//! results and typed errors ([`AdminError`], carrying the Kafka error code).
//!
//! - Where requests go, as the Java `AdminClient` sends them: CreateTopics,
//!   DeleteTopics, CreatePartitions, ElectLeaders,
//!   AlterPartitionReassignments and ListPartitionReassignments to the
//!   controller the last Metadata named (in a KRaft cluster, a broker that
//!   forwards to the active controller; any live broker when none is
//!   named); ListOffsets and DeleteRecords to each partition's leader; DescribeConfigs of a
//!   broker to that broker; Metadata, DescribeCluster and topic configs to
//!   any broker.
//! - Every call takes a `timeout` that bounds it whole, retries included,
//!   and is sent as the broker-side `timeout_ms` where the request has one.
//!   Network errors and retriable error codes (`NOT_CONTROLLER`,
//!   `LEADER_NOT_AVAILABLE`, `NOT_LEADER_OR_FOLLOWER`, ...) are retried with
//!   backoff after a metadata refresh until it passes; then the call, or the
//!   items still pending, fail with [`AdminError::Timeout`] carrying the last
//!   error.
//! - Calls on several items (topics, partitions, resources) answer per item:
//!   `Ok(map)` with one `Result` per item, `Err` only when the call as a whole
//!   failed. The single-item forms (`create_topic`, `delete_topic`) fold the
//!   two.
//! - Where the calls live: `topics` (create and delete topics, add
//!   partitions), `describe` (cluster, topics, configs), `offsets`
//!   (ListOffsets, DeleteRecords), `replication` (reassignments, elections), `routing`
//!   (the controller connection and the retry loops), `error`, `types`.
//! - Every call is cancel-safe in the sense that dropping it leaves the
//!   client usable; whether a request that was already sent took effect is
//!   then unknown, as after a timeout.

mod describe;
mod error;
mod groups;
mod offsets;
mod replication;
mod routing;
mod topics;
mod types;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::messages::{BrokerId, TopicName};
use protocol::StrBytes;

use crate::backoff::Backoff;
use crate::cluster::{Cluster, ClusterConfig};
use crate::connection::ConnectionConfig;

pub use error::AdminError;
pub use groups::{GroupDescription, GroupListing, GroupMember};
pub use types::{
    AlterConfigOp, BrokerDescription, ClusterDescription, ConfigEntry, ConfigResource,
    ConfigSource, CreatedTopic, DeletedRecords, ElectionType, ListedOffset, NewPartitions,
    NewTopic, OffsetSpec, OngoingReassignment, PartitionDescription, TopicDescription,
    DELETE_TO_HIGH_WATERMARK,
};

/// Settings of the admin client. Names follow the Java client's.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `bootstrap.servers`: `host:port` of brokers to ask first.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`, sent in every request header.
    pub client_id: String,
    /// `socket.connection.setup.timeout.ms`: bound on connecting plus ApiVersions.
    pub connect_timeout: Duration,
    /// `request.timeout.ms`: bound on waiting for one response (a call's own
    /// timeout may end it sooner).
    pub request_timeout: Duration,
    /// `retry.backoff.ms`: the first retry's delay.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the longest retry delay.
    pub retry_backoff_max: Duration,
}

impl AdminConfig {
    /// Settings with the Java client's defaults; `bootstrap_servers` is
    /// comma-separated.
    pub fn new(bootstrap_servers: &str) -> AdminConfig {
        AdminConfig {
            bootstrap_servers: crate::cluster::bootstrap_list(bootstrap_servers),
            client_id: "rust-admin".to_string(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
        }
    }

    /// Sets one setting by its Java property name (`bootstrap.servers`,
    /// `client.id`, `request.timeout.ms`, `retry.backoff.ms`,
    /// `retry.backoff.max.ms`, `socket.connection.setup.timeout.ms`). An
    /// unknown name or a value that does not parse is an error naming the
    /// property.
    pub fn set(&mut self, name: &str, value: &str) -> Result<&mut Self, crate::ConfigError> {
        use crate::properties::{millis, unknown};
        match name {
            "bootstrap.servers" => {
                self.bootstrap_servers = crate::cluster::bootstrap_list(value);
            }
            "client.id" => self.client_id = value.to_string(),
            "request.timeout.ms" => self.request_timeout = millis(name, value)?,
            "retry.backoff.ms" => self.retry_backoff = millis(name, value)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = millis(name, value)?,
            "socket.connection.setup.timeout.ms" => self.connect_timeout = millis(name, value)?,
            _ => return Err(unknown(name)),
        }
        Ok(self)
    }

    /// A config from Java-style properties (`bootstrap.servers` required),
    /// the rest at their defaults; see [`set`](Self::set).
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        properties: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, crate::ConfigError> {
        crate::properties::build(properties, AdminConfig::new, |config, name, value| {
            config.set(name, value).map(|_| ())
        })
    }

    /// Rejects settings that cannot work.
    pub fn validate(&self) -> Result<(), AdminError> {
        let invalid = |setting, reason: &str| {
            Err(AdminError::Config {
                setting,
                reason: reason.to_string(),
            })
        };
        if self.bootstrap_servers.is_empty() {
            return invalid("bootstrap.servers", "no server given");
        }
        if self.request_timeout.is_zero() {
            return invalid("request.timeout.ms", "must be positive");
        }
        if self.retry_backoff > self.retry_backoff_max {
            return invalid("retry.backoff.ms", "exceeds retry.backoff.max.ms");
        }
        Ok(())
    }
}

/// The admin client. Cheap to clone: clones share connections and metadata.
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Arc<Cluster>,
    backoff: Backoff,
}

/// Per-item answers of a call, by item.
pub type ItemResults<K, V> = BTreeMap<K, Result<V, AdminError>>;

impl Admin {
    /// Reaches the cluster through its bootstrap servers.
    pub async fn connect(config: AdminConfig) -> Result<Admin, AdminError> {
        config.validate()?;
        let cluster = Cluster::connect(ClusterConfig {
            bootstrap_servers: config.bootstrap_servers.clone(),
            connection: ConnectionConfig {
                client_id: config.client_id.clone(),
                connect_timeout: config.connect_timeout,
                request_timeout: config.request_timeout,
                ..ConnectionConfig::default()
            },
            allow_auto_topic_creation: false,
        })
        .await?;
        Ok(Admin {
            cluster: Arc::new(cluster),
            backoff: Backoff::new(config.retry_backoff, config.retry_backoff_max),
        })
    }

    /// Closes every connection; calls in progress fail.
    pub fn close(&self) {
        self.cluster.close();
    }
}

/// The one item of a single-item call.
pub(super) fn single<V>(
    mut results: ItemResults<String, V>,
    name: &str,
    operation: &'static str,
) -> Result<V, AdminError> {
    results.remove(name).unwrap_or_else(|| {
        Err(AdminError::MissingResult {
            operation,
            item: format!("topic {name:?}"),
        })
    })
}

pub(super) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(super) fn broker_ids(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().copied().map(BrokerId).collect()
}

#[cfg(test)]
mod tests {
    use super::routing::timeout_ms;
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn config_validation_refuses_what_cannot_work() {
        // No bootstrap server, a zero request timeout, or a backoff above its maximum are Config errors.
        assert!(AdminConfig::new("a:1, b:2").validate().is_ok());
        assert_eq!(
            AdminConfig::new("a:1, b:2").bootstrap_servers,
            ["a:1", "b:2"]
        );
        assert!(matches!(
            AdminConfig::new("").validate(),
            Err(AdminError::Config {
                setting: "bootstrap.servers",
                ..
            })
        ));
        let mut config = AdminConfig::new("a:1");
        config.retry_backoff = Duration::from_secs(5);
        assert!(matches!(config.validate(), Err(AdminError::Config { .. })));
    }

    #[test]
    fn offset_specs_use_kafkas_sentinel_timestamps() {
        // Earliest -2, latest -1, max timestamp -3, a time is itself.
        assert_eq!(OffsetSpec::Earliest.wire_timestamp(), -2);
        assert_eq!(OffsetSpec::Latest.wire_timestamp(), -1);
        assert_eq!(OffsetSpec::MaxTimestamp.wire_timestamp(), -3);
        assert_eq!(
            OffsetSpec::Timestamp(1_700_000_000_000).wire_timestamp(),
            1_700_000_000_000
        );
    }

    #[tokio::test]
    async fn timeout_ms_is_what_is_left_and_never_zero() {
        // A deadline in the past still sends 1 ms; a far one is capped at i32::MAX.
        assert_eq!(timeout_ms(Instant::now()), 1);
        let far = Instant::now() + Duration::from_secs(10 * 365 * 24 * 3600);
        assert_eq!(timeout_ms(far), i32::MAX);
        let soon = timeout_ms(Instant::now() + Duration::from_secs(5));
        assert!((4_900..=5_000).contains(&soon), "{soon}");
    }
}
