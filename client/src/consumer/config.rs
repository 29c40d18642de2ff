//! Consumer settings, with the Java client's names and defaults where it has them.

use std::time::Duration;

use crate::consumer::assignor::{AssignmentStrategy, RebalanceProtocol};
use crate::error::ConfigError;

/// What to do when a partition has no committed offset, or its position is
/// out of the log's range (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    /// Start at the log start offset.
    Earliest,
    /// Start at the log end offset: only records written from now on.
    #[default]
    Latest,
    /// Fail `poll` with a typed error naming the partition.
    None,
}

impl std::str::FromStr for AutoOffsetReset {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "earliest" => Ok(AutoOffsetReset::Earliest),
            "latest" => Ok(AutoOffsetReset::Latest),
            "none" | "error" => Ok(AutoOffsetReset::None),
            other => Err(ConfigError::Invalid {
                setting: "auto_offset_reset",
                reason: format!("{other:?} is not earliest, latest or none"),
            }),
        }
    }
}

/// Settings of a [`crate::Consumer`]. Build one with [`ConsumerConfig::new`]
/// and change fields as needed.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `bootstrap.servers`: `host:port` of brokers to reach the cluster through.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`, sent in every request header. Default `rust-consumer`.
    pub client_id: String,
    /// `group.id`: needed for `subscribe` and for committed offsets. Default none.
    pub group_id: Option<String>,
    /// `group.instance.id`: makes this a static member (KIP-345). A static
    /// member that restarts within the session timeout gets its partitions
    /// back without a rebalance, and does not leave the group on close.
    pub group_instance_id: Option<String>,
    /// `enable.auto.commit`: commit the position of every partition (what
    /// `poll` returned) every `auto_commit_interval`, before partitions are
    /// revoked, and on close. Default on; without a `group_id` it does nothing.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`. Default 5 s.
    pub auto_commit_interval: Duration,
    /// `enable.auto.offset.store` (librdkafka's name): what a commit of the
    /// consumer's offsets (`commit_sync`, `commit_async`, auto-commit, the
    /// commit before a revocation and on close) covers. On (the default),
    /// the position after the last record `poll` returned. Off, only the
    /// offsets the application stored with `Consumer::store_offset` or
    /// `Consumer::store_record`, which is how an at-least-once pipeline
    /// commits records it has finished with, not those merely handed out.
    pub enable_auto_offset_store: bool,
    /// `auto.offset.reset`. Default latest.
    pub auto_offset_reset: AutoOffsetReset,
    /// `session.timeout.ms`: the coordinator removes a member it has not
    /// heard from for this long. Default 45 s.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`: how often the background task heartbeats.
    /// Default 3 s.
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms`: the longest time between two `poll` calls
    /// before the member leaves the group so its partitions move on; also
    /// the rebalance timeout in JoinGroup. Default 5 min.
    pub max_poll_interval: Duration,
    /// `max.poll.records`: the most records one `poll` returns. Default 500.
    pub max_poll_records: usize,
    /// `fetch.min.bytes`: the broker answers a fetch once it has this much.
    /// Default 1.
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes`: bound on one fetch response. Default 50 MiB. On
    /// loopback, a few MiB can cost less CPU per record (the response stays
    /// in cache while it is checked and parsed, which matters most when
    /// other processes compete for the cache); over a network keep it
    /// large, as one fetch per broker is in flight at a time.
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes`: bound on one partition in a fetch
    /// response (a larger first batch is still returned). Default 1 MiB. A
    /// partition buffers up to two responses: the one `poll` reads and the
    /// next, fetched meanwhile.
    pub max_partition_fetch_bytes: i32,
    /// `fetch.max.wait.ms`: how long the broker may hold a fetch waiting for
    /// `fetch_min_bytes`. Default 500 ms.
    pub fetch_max_wait: Duration,
    /// `partition.assignment.strategy`, in order of preference. The group
    /// uses the rebalance protocol every listed assignor supports: eager as
    /// long as `Range` or `RoundRobin` is listed. Default `[Range,
    /// CooperativeSticky]`, as the Java client.
    pub partition_assignment_strategy: Vec<AssignmentStrategy>,
    /// `request.timeout.ms`: how long to wait for one response. Default 30 s.
    pub request_timeout: Duration,
    /// `default.api.timeout.ms`: bound on `commit_sync`, `committed` and
    /// `close`. Default 60 s.
    pub default_api_timeout: Duration,
    /// `retry.backoff.ms`: the first retry's delay. Default 100 ms.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the longest retry delay. Default 1 s.
    pub retry_backoff_max: Duration,
    /// `metadata.max.age.ms`: metadata older than this is refreshed (and a
    /// leader that sees a subscribed topic grow starts a rebalance). Default 5 min.
    pub metadata_max_age: Duration,
    /// `socket.connection.setup.timeout.ms`: bound on connecting. Default 10 s.
    pub connect_timeout: Duration,
    /// `allow.auto.create.topics`: subscribing to a missing topic creates it
    /// where the broker allows. Default true.
    pub allow_auto_create_topics: bool,
    /// `check.crcs`: verify every fetched batch's CRC-32C. Default true.
    pub check_crcs: bool,
}

impl ConsumerConfig {
    /// Defaults with `bootstrap_servers` taken from a comma-separated list.
    pub fn new(bootstrap_servers: &str) -> Self {
        ConsumerConfig {
            bootstrap_servers: crate::cluster::bootstrap_list(bootstrap_servers),
            client_id: "rust-consumer".to_string(),
            group_id: None,
            group_instance_id: None,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            enable_auto_offset_store: true,
            auto_offset_reset: AutoOffsetReset::Latest,
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            max_poll_records: 500,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
            partition_assignment_strategy: vec![
                AssignmentStrategy::Range,
                AssignmentStrategy::CooperativeSticky,
            ],
            request_timeout: Duration::from_secs(30),
            default_api_timeout: Duration::from_secs(60),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            metadata_max_age: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            allow_auto_create_topics: true,
            check_crcs: true,
        }
    }

    /// The same settings in group `group_id`.
    pub fn with_group(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }

    /// Whether offsets are committed automatically: `enable_auto_commit` in a group.
    pub fn auto_commit(&self) -> bool {
        self.enable_auto_commit && self.group_id.is_some()
    }

    /// The rebalance protocol the configured assignors share: cooperative
    /// only if every one of them supports it.
    pub fn rebalance_protocol(&self) -> RebalanceProtocol {
        self.partition_assignment_strategy
            .iter()
            .map(|s| s.rebalance_protocol())
            .min()
            .unwrap_or(RebalanceProtocol::Eager)
    }

    /// Sets one setting by its Java property name (`group.id`,
    /// `auto.offset.reset`, `enable.auto.commit`, `session.timeout.ms`,
    /// ...; the names in the field docs). An unknown name or a value that
    /// does not parse is an error naming the property; combinations are
    /// checked by [`validate`](Self::validate), as `connect` does.
    pub fn set(&mut self, name: &str, value: &str) -> Result<&mut Self, ConfigError> {
        use crate::properties::{boolean, invalid, millis, number, unknown};
        let optional = |value: &str| {
            let value = value.trim();
            (!value.is_empty()).then(|| value.to_string())
        };
        match name {
            "bootstrap.servers" => {
                self.bootstrap_servers = crate::cluster::bootstrap_list(value);
            }
            "client.id" => self.client_id = value.to_string(),
            "group.id" => self.group_id = optional(value),
            "group.instance.id" => self.group_instance_id = optional(value),
            "enable.auto.commit" => self.enable_auto_commit = boolean(name, value)?,
            "auto.commit.interval.ms" => self.auto_commit_interval = millis(name, value)?,
            "enable.auto.offset.store" => self.enable_auto_offset_store = boolean(name, value)?,
            "auto.offset.reset" => {
                self.auto_offset_reset = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(name, value, "not earliest, latest or none"))?
            }
            "session.timeout.ms" => self.session_timeout = millis(name, value)?,
            "heartbeat.interval.ms" => self.heartbeat_interval = millis(name, value)?,
            "max.poll.interval.ms" => self.max_poll_interval = millis(name, value)?,
            "max.poll.records" => self.max_poll_records = number(name, value)?,
            "fetch.min.bytes" => self.fetch_min_bytes = number(name, value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = number(name, value)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = number(name, value)?,
            "fetch.max.wait.ms" => self.fetch_max_wait = millis(name, value)?,
            "partition.assignment.strategy" => {
                self.partition_assignment_strategy = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        // The Java class names name the same assignors.
                        let short = match s.rsplit('.').next().unwrap_or(s) {
                            "RangeAssignor" => "range",
                            "RoundRobinAssignor" => "roundrobin",
                            "CooperativeStickyAssignor" => "cooperative-sticky",
                            other => other,
                        };
                        AssignmentStrategy::from_name(short).ok_or_else(|| {
                            invalid(
                                name,
                                value,
                                format!("{s:?} is not range, roundrobin or cooperative-sticky"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            "request.timeout.ms" => self.request_timeout = millis(name, value)?,
            "default.api.timeout.ms" => self.default_api_timeout = millis(name, value)?,
            "retry.backoff.ms" => self.retry_backoff = millis(name, value)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = millis(name, value)?,
            "metadata.max.age.ms" => self.metadata_max_age = millis(name, value)?,
            "socket.connection.setup.timeout.ms" => self.connect_timeout = millis(name, value)?,
            "allow.auto.create.topics" => self.allow_auto_create_topics = boolean(name, value)?,
            "check.crcs" => self.check_crcs = boolean(name, value)?,
            _ => return Err(unknown(name)),
        }
        Ok(self)
    }

    /// A config from Java-style properties (`bootstrap.servers` required),
    /// the rest at their defaults; see [`set`](Self::set).
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        properties: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        crate::properties::build(properties, ConsumerConfig::new, |config, name, value| {
            config.set(name, value).map(|_| ())
        })
    }

    /// Rejects settings that cannot work together, as the Java client does.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |setting: &'static str, reason: String| Err(ConfigError::Invalid { setting, reason });
        if self.bootstrap_servers.is_empty() {
            return invalid("bootstrap_servers", "no server given".into());
        }
        if self.group_id.as_deref() == Some("") {
            return invalid("group_id", "must not be empty".into());
        }
        if self.group_instance_id.is_some() && self.group_id.is_none() {
            return invalid("group_instance_id", "needs a group_id".into());
        }
        if self.group_instance_id.as_deref() == Some("") {
            return invalid("group_instance_id", "must not be empty".into());
        }
        if self.heartbeat_interval >= self.session_timeout {
            return invalid(
                "heartbeat_interval",
                format!(
                    "{:?} must be below session_timeout {:?}",
                    self.heartbeat_interval, self.session_timeout
                ),
            );
        }
        if self.heartbeat_interval.is_zero() {
            return invalid("heartbeat_interval", "must be above zero".into());
        }
        if self.max_poll_records == 0 {
            return invalid("max_poll_records", "must be at least 1".into());
        }
        if self.fetch_max_bytes <= 0 || self.max_partition_fetch_bytes <= 0 {
            return invalid(
                "fetch_max_bytes",
                "fetch_max_bytes and max_partition_fetch_bytes must be positive".into(),
            );
        }
        if self.fetch_min_bytes < 0 {
            return invalid("fetch_min_bytes", "must not be negative".into());
        }
        if self.partition_assignment_strategy.is_empty() {
            return invalid(
                "partition_assignment_strategy",
                "name at least one assignor".into(),
            );
        }
        if self.auto_commit() && self.auto_commit_interval.is_zero() {
            return invalid("auto_commit_interval", "must be above zero".into());
        }
        for (name, value) in [
            ("session_timeout", self.session_timeout),
            ("max_poll_interval", self.max_poll_interval),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() || value.as_millis() > i32::MAX as u128 {
                return invalid(name, format!("{value:?} does not fit in i32 milliseconds"));
            }
        }
        if self.retry_backoff > self.retry_backoff_max {
            return invalid(
                "retry_backoff",
                format!(
                    "{:?} exceeds retry_backoff_max {:?}",
                    self.retry_backoff, self.retry_backoff_max
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_java_clients_and_valid() {
        // The Java consumer's defaults pass validation.
        let config = ConsumerConfig::new("a:9092, b:9092");
        assert_eq!(config.bootstrap_servers, ["a:9092", "b:9092"]);
        assert_eq!(config.fetch_max_bytes, 50 * 1024 * 1024);
        assert_eq!(config.max_partition_fetch_bytes, 1024 * 1024);
        assert_eq!(config.max_poll_records, 500);
        assert_eq!(config.rebalance_protocol(), RebalanceProtocol::Eager);
        config.validate().unwrap();
        assert!(!config.auto_commit(), "no group, no auto-commit");
        assert!(config.with_group("g").auto_commit());
    }

    #[test]
    fn impossible_combinations_are_rejected() {
        // Heartbeats slower than the session, an instance id without a group, zero poll records.
        let mut config = ConsumerConfig::new("a:9092").with_group("g");
        config.heartbeat_interval = config.session_timeout;
        assert!(config.validate().is_err());
        let mut config = ConsumerConfig::new("a:9092");
        config.group_instance_id = Some("i".into());
        assert!(config.validate().is_err());
        let mut config = ConsumerConfig::new("a:9092");
        config.max_poll_records = 0;
        assert!(config.validate().is_err());
        let mut config = ConsumerConfig::new("a:9092");
        config.partition_assignment_strategy.clear();
        assert!(config.validate().is_err());
    }

    #[test]
    fn cooperative_only_when_every_assignor_supports_it() {
        // One eager assignor in the list makes the whole group eager.
        let mut config = ConsumerConfig::new("a:9092");
        config.partition_assignment_strategy = vec![AssignmentStrategy::CooperativeSticky];
        assert_eq!(config.rebalance_protocol(), RebalanceProtocol::Cooperative);
        config
            .partition_assignment_strategy
            .push(AssignmentStrategy::RoundRobin);
        assert_eq!(config.rebalance_protocol(), RebalanceProtocol::Eager);
        assert_eq!(
            "error".parse::<AutoOffsetReset>().unwrap(),
            AutoOffsetReset::None
        );
        assert!("newest".parse::<AutoOffsetReset>().is_err());
    }

    #[test]
    fn java_property_names_set_the_typed_fields() {
        // The Java client's names set the same fields as the typed builder; bad names and values are errors naming the property.
        let config = ConsumerConfig::from_properties([
            ("bootstrap.servers", "a:9092"),
            ("group.id", "billing"),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("session.timeout.ms", "10000"),
            ("max.poll.records", "50"),
            (
                "partition.assignment.strategy",
                "org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
            ),
        ])
        .unwrap();
        assert_eq!(config.group_id.as_deref(), Some("billing"));
        assert_eq!(config.auto_offset_reset, AutoOffsetReset::Earliest);
        assert!(!config.enable_auto_commit);
        assert!(!config.enable_auto_offset_store);
        assert_eq!(config.session_timeout, Duration::from_secs(10));
        assert_eq!(config.max_poll_records, 50);
        assert_eq!(
            config.partition_assignment_strategy,
            [AssignmentStrategy::CooperativeSticky]
        );
        config.validate().unwrap();
        let mut config = ConsumerConfig::new("a:9092");
        assert_eq!(
            config.set("group", "g").unwrap_err(),
            ConfigError::UnknownProperty {
                name: "group".into()
            }
        );
        for (name, value) in [
            ("auto.offset.reset", "smallest"),
            ("session.timeout.ms", "soon"),
            ("partition.assignment.strategy", "range,sticky"),
            ("enable.auto.commit", "1"),
        ] {
            match config.set(name, value) {
                Err(ConfigError::InvalidProperty { name: named, .. }) => assert_eq!(named, name),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
    }
}
