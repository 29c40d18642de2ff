//! Broker configuration: defaults, a Kafka-style `key=value` properties file,
//! and command-line/environment overrides (applied by the binary).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::group::GroupConfig;
use crate::storage::{FlushPolicy, LogConfig};

/// Kafka's default `message.max.bytes`: the largest record batch a partition accepts.
pub const MESSAGE_BYTES_MAX_DEFAULT: usize = 1_048_588;
/// Bound on open client connections (`max.connections`).
pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// Requests one connection may have in flight before we stop reading from it.
pub const IN_FLIGHT_REQUESTS_MAX_DEFAULT: usize = 32;
/// Bound on one Fetch response (`fetch.max.bytes`), whatever the client asks.
pub const FETCH_RESPONSE_BYTES_MAX_DEFAULT: usize = 55 * 1024 * 1024;
/// Bound on `num.worker.threads`: far past any core count a broker uses.
pub const WORKER_THREADS_MAX: usize = 1_024;
/// Bound on the long-poll wait of a Fetch request.
pub const FETCH_WAIT_MS_MAX: u64 = 30_000;
/// Bound on the wait of an `acks=all` Produce request.
pub const PRODUCE_TIMEOUT_MS_MAX: u64 = 300_000;
/// Bound on partitions in one CreateTopics/CreatePartitions request.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;
/// Kafka's default `broker.session.timeout.ms`.
pub const BROKER_SESSION_TIMEOUT_MS_DEFAULT: i64 = 9_000;
/// Kafka's default `broker.heartbeat.interval.ms`.
pub const BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 2_000;
/// Kafka's default `leader.imbalance.check.interval.seconds`, in ms.
pub const LEADER_REBALANCE_INTERVAL_MS_DEFAULT: u64 = 300_000;
/// How often the log cleaner runs (`log.cleaner.interval.ms`); Kafka's
/// cleaner backs off this long (`log.cleaner.backoff.ms`) when idle.
pub const CLEANER_INTERVAL_MS_DEFAULT: u64 = 15_000;

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Host and port clients are told to connect to; defaults to the bound address.
    pub advertised_listener: Option<String>,
    pub cluster_id: Option<String>,
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    /// `default.replication.factor`: replicas of a topic created without a factor.
    pub default_replication_factor: i16,
    pub frame_bytes_max: usize,
    pub message_bytes_max: usize,
    pub connections_max: usize,
    pub in_flight_requests_max: usize,
    /// `num.worker.threads`: threads that run connections, replication and
    /// appends (`None`: one per core the process may use). Brokers sharing
    /// a machine each take their share of its cores.
    pub worker_threads: Option<usize>,
    pub fetch_response_bytes_max: usize,
    /// Live memory mappings across all partitions (sealed segments are unmapped past it).
    pub mappings_max: usize,
    pub log: LogConfig,
    pub flush_check_interval_ms: u64,
    pub retention_check_interval_ms: u64,
    /// How often the log cleaner looks for compacted logs to clean.
    pub cleaner_interval_ms: u64,
    /// The group coordinator and `__consumer_offsets` (see `docs/groups.md`).
    pub groups: GroupConfig,
    /// This node's controller listener (`--controller-listen`): Raft traffic,
    /// broker registrations and heartbeats. Needed in a cluster.
    pub controller_listen: Option<SocketAddr>,
    /// The controller quorum's voters (`--controller-voters ID@HOST:PORT,...`);
    /// empty for the single-node default. A node is a voter when listed.
    pub controller_voters: BTreeMap<i32, SocketAddr>,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub broker_session_timeout_ms: i64,
    /// `broker.heartbeat.interval.ms`: how often a broker heartbeats to the controller.
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.rack`: placement spreads a partition's replicas over racks.
    pub rack: Option<String>,
    /// `auto.leader.rebalance.enable` and `leader.imbalance.check.interval.seconds`:
    /// how often the active controller moves leaderships back to preferred
    /// replicas (`None`: never).
    pub leader_rebalance_interval_ms: Option<u64>,
    /// Partition replication (see `docs/replication.md`).
    pub replication: ReplicationSettings,
    /// `compression.type`: the codec batches are stored in when a topic sets none.
    pub compression_type: crate::recompress::CompressionType,
}

/// Replication settings, Kafka's names and defaults.
#[derive(Debug, Clone, Copy)]
pub struct ReplicationSettings {
    /// `min.insync.replicas`: the ISR size `acks=all` needs (topics may override).
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`: a follower not caught up this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `replica.fetch.wait.max.ms`: a follower's long-poll.
    pub fetch_wait_max_ms: i32,
    /// `replica.fetch.max.bytes`: per partition in one follower fetch.
    pub fetch_partition_bytes_max: i32,
    /// `replica.fetch.response.max.bytes`: a whole follower fetch response.
    pub fetch_response_bytes_max: i32,
    /// `replica.fetch.backoff.ms`: the pause after a failed follower fetch.
    pub fetch_backoff_ms: i64,
    /// `unclean.leader.election.enable`: whether a replica outside the ISR
    /// may lead when no ISR member is alive (topics may override).
    pub unclean_leader_election: bool,
    /// `follower.replication.throttled.rate`: bytes/s this broker fetches for
    /// the throttled replicas it follows (`None`: unlimited; see
    /// [`crate::replication::throttle`]).
    pub follower_throttle_bytes_per_s: Option<u64>,
    /// `leader.replication.throttled.rate`: bytes/s this broker sends to
    /// followers of the throttled replicas it leads (`None`: unlimited).
    pub leader_throttle_bytes_per_s: Option<u64>,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
            fetch_wait_max_ms: 500,
            fetch_partition_bytes_max: 1 << 20,
            fetch_response_bytes_max: 10 << 20,
            fetch_backoff_ms: 1_000,
            unclean_leader_election: false,
            follower_throttle_bytes_per_s: None,
            leader_throttle_bytes_per_s: None,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            data_dir: PathBuf::from("./data"),
            listen: "127.0.0.1:9092".parse().expect("valid address"),
            advertised_listener: None,
            cluster_id: None,
            auto_create_topics: true,
            default_partitions: 1,
            default_replication_factor: 1,
            frame_bytes_max: protocol::frame::FRAME_BYTES_MAX_DEFAULT,
            message_bytes_max: MESSAGE_BYTES_MAX_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            in_flight_requests_max: IN_FLIGHT_REQUESTS_MAX_DEFAULT,
            worker_threads: None,
            fetch_response_bytes_max: FETCH_RESPONSE_BYTES_MAX_DEFAULT,
            mappings_max: 8192,
            log: LogConfig::default(),
            flush_check_interval_ms: 50,
            retention_check_interval_ms: 30_000,
            cleaner_interval_ms: CLEANER_INTERVAL_MS_DEFAULT,
            groups: GroupConfig::default(),
            controller_listen: None,
            controller_voters: BTreeMap::new(),
            broker_session_timeout_ms: BROKER_SESSION_TIMEOUT_MS_DEFAULT,
            broker_heartbeat_interval_ms: BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT,
            rack: None,
            leader_rebalance_interval_ms: Some(LEADER_REBALANCE_INTERVAL_MS_DEFAULT),
            replication: ReplicationSettings::default(),
            compression_type: crate::recompress::CompressionType::Producer,
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected key=value")]
    Syntax { path: PathBuf, line: usize },
    #[error("invalid value {value:?} for {key}: {reason}")]
    Value {
        key: String,
        value: String,
        reason: String,
    },
    #[error("unknown config key {0}")]
    UnknownKey(String),
}

/// Parses a Java-style properties file: `key=value` lines, `#` comments.
pub fn parse_properties(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut out = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .or_else(|| line.split_once(':'))
            .ok_or(ConfigError::Syntax {
                path: path.to_owned(),
                line: index + 1,
            })?;
        out.insert(key.trim().to_string(), value.trim().to_string());
    }
    Ok(out)
}

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.parse::<T>().map_err(|e| ConfigError::Value {
        key: key.to_string(),
        value: value.to_string(),
        reason: e.to_string(),
    })
}

fn parse_in_range<T>(
    key: &str,
    value: &str,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    let n: T = parse(key, value)?;
    if !range.contains(&n) {
        return Err(ConfigError::Value {
            key: key.into(),
            value: value.into(),
            reason: format!("must be in {}..={}", range.start(), range.end()),
        });
    }
    Ok(n)
}

/// `-1` means "no limit" for Kafka's retention settings.
fn parse_limit(key: &str, value: &str) -> Result<Option<u64>, ConfigError> {
    let n: i64 = parse(key, value)?;
    Ok(if n < 0 { None } else { Some(n as u64) })
}

impl BrokerConfig {
    /// Applies one setting, named as in Kafka's `server.properties` where Kafka has one.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "node.id" | "broker.id" => self.node_id = parse(key, value)?,
            "log.dirs" | "log.dir" | "data.dir" => self.data_dir = PathBuf::from(value),
            "listeners" | "listen" => {
                let addr = value.rsplit("://").next().unwrap_or(value);
                self.listen = parse(key, addr)?;
            }
            "controller.listener" | "controller.listen" => {
                let addr = value.rsplit("://").next().unwrap_or(value);
                self.controller_listen = Some(parse(key, addr)?);
            }
            "controller.quorum.voters" | "controller.voters" => {
                self.controller_voters =
                    crate::quorum::QuorumConfig::parse_voters(value).map_err(|reason| {
                        ConfigError::Value {
                            key: key.into(),
                            value: value.into(),
                            reason,
                        }
                    })?;
            }
            "broker.rack" => self.rack = Some(value.to_string()),
            "auto.leader.rebalance.enable" => {
                let enabled: bool = parse(key, value)?;
                self.leader_rebalance_interval_ms =
                    match (enabled, self.leader_rebalance_interval_ms) {
                        (false, _) => None,
                        (true, Some(ms)) => Some(ms),
                        (true, None) => Some(LEADER_REBALANCE_INTERVAL_MS_DEFAULT),
                    };
            }
            "leader.imbalance.check.interval.seconds" => {
                let seconds: u64 = parse_in_range(key, value, 1..=86_400)?;
                if self.leader_rebalance_interval_ms.is_some() {
                    self.leader_rebalance_interval_ms = Some(seconds * 1000);
                }
            }
            "broker.session.timeout.ms" => {
                self.broker_session_timeout_ms =
                    parse_in_range(key, value, 100..=i64::from(i32::MAX))?
            }
            "min.insync.replicas" => {
                self.replication.min_insync_replicas = parse_in_range(key, value, 1..=1_000)?
            }
            "replica.lag.time.max.ms" => {
                self.replication.replica_lag_time_max_ms =
                    parse_in_range(key, value, 10..=i64::from(i32::MAX))?
            }
            "replica.fetch.wait.max.ms" => {
                self.replication.fetch_wait_max_ms = parse_in_range(key, value, 0..=60_000)?
            }
            "replica.fetch.max.bytes" => {
                self.replication.fetch_partition_bytes_max =
                    parse_in_range(key, value, 1024..=1 << 30)?
            }
            "replica.fetch.response.max.bytes" => {
                self.replication.fetch_response_bytes_max =
                    parse_in_range(key, value, 1024..=1 << 30)?
            }
            "replica.fetch.backoff.ms" => {
                self.replication.fetch_backoff_ms = parse_in_range(key, value, 0..=600_000)?
            }
            // Kafka's range; its Long.MAX_VALUE, the default, is unlimited.
            "follower.replication.throttled.rate" => {
                let rate: i64 = parse_in_range(key, value, 0..=i64::MAX)?;
                self.replication.follower_throttle_bytes_per_s =
                    (rate != i64::MAX).then_some(rate as u64);
            }
            "leader.replication.throttled.rate" => {
                let rate: i64 = parse_in_range(key, value, 0..=i64::MAX)?;
                self.replication.leader_throttle_bytes_per_s =
                    (rate != i64::MAX).then_some(rate as u64);
            }
            // Accepted for kafka-reassign-partitions, which sets and clears it:
            // a broker has one log dir, so no replica moves between dirs to throttle.
            "replica.alter.log.dirs.io.max.bytes.per.second" => {
                parse_in_range::<i64>(key, value, 0..=i64::MAX)?;
            }
            "unclean.leader.election.enable" => {
                self.replication.unclean_leader_election = parse(key, value)?
            }
            "broker.heartbeat.interval.ms" => {
                self.broker_heartbeat_interval_ms = parse_in_range(key, value, 10..=3_600_000)?
            }
            "advertised.listeners" | "advertised.listener" => {
                let addr = value.rsplit("://").next().unwrap_or(value);
                self.advertised_listener = Some(addr.to_string());
            }
            "cluster.id" => self.cluster_id = Some(value.to_string()),
            "auto.create.topics.enable" => self.auto_create_topics = parse(key, value)?,
            "num.partitions" => {
                let n: i32 = parse(key, value)?;
                if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&n) {
                    return Err(ConfigError::Value {
                        key: key.into(),
                        value: value.into(),
                        reason: format!("must be in 1..={PARTITIONS_PER_TOPIC_MAX}"),
                    });
                }
                self.default_partitions = n;
            }
            "default.replication.factor" => {
                let n: i16 = parse(key, value)?;
                if n < 1 {
                    return Err(ConfigError::Value {
                        key: key.into(),
                        value: value.into(),
                        reason: "must be at least 1".into(),
                    });
                }
                self.default_replication_factor = n;
            }
            "socket.request.max.bytes" => self.frame_bytes_max = parse(key, value)?,
            "message.max.bytes" => self.message_bytes_max = parse(key, value)?,
            "compression.type" => {
                self.compression_type = crate::recompress::CompressionType::parse(value)
                    .ok_or_else(|| ConfigError::Value {
                        key: key.into(),
                        value: value.into(),
                        reason: format!(
                            "must be one of {}",
                            crate::recompress::CompressionType::NAMES.join(", ")
                        ),
                    })?
            }
            "max.connections" => self.connections_max = parse(key, value)?,
            "max.in.flight.requests.per.connection" => {
                self.in_flight_requests_max = parse::<usize>(key, value)?.max(1)
            }
            "num.worker.threads" => {
                self.worker_threads = Some(parse_in_range(key, value, 1..=WORKER_THREADS_MAX)?)
            }
            "fetch.max.bytes" => self.fetch_response_bytes_max = parse(key, value)?,
            "log.mappings.max" => self.mappings_max = parse::<usize>(key, value)?.max(16),
            "log.segment.bytes" => self.log.segment_bytes_max = parse(key, value)?,
            "log.roll.ms" => self.log.segment_ms_max = parse(key, value)?,
            "log.roll.hours" => self.log.segment_ms_max = parse::<u64>(key, value)? * 3_600_000,
            "log.index.interval.bytes" => self.log.index_interval_bytes = parse(key, value)?,
            "log.index.size.max.bytes" => self.log.segment_index_bytes_max = parse(key, value)?,
            "log.retention.bytes" => self.log.retention_bytes = parse_limit(key, value)?,
            "log.retention.ms" => self.log.retention_ms = parse_limit(key, value)?,
            "log.retention.hours" => {
                self.log.retention_ms = parse_limit(key, value)?.map(|h| h * 3_600_000)
            }
            "log.flush.policy" => self.log.flush_policy = parse_flush_policy(key, value)?,
            "log.retention.check.interval.ms" => {
                self.retention_check_interval_ms = parse(key, value)?
            }
            "log.cleaner.interval.ms" => {
                self.cleaner_interval_ms = parse_in_range(key, value, 1..=u64::MAX)?
            }
            "offsets.topic.num.partitions" => {
                self.groups.offsets_topic_partitions =
                    parse_in_range(key, value, 1..=PARTITIONS_PER_TOPIC_MAX)?
            }
            "offsets.topic.replication.factor" => {
                self.groups.offsets_topic_replication_factor = parse_in_range(key, value, 1..=100)?
            }
            "offsets.commit.timeout.ms" => {
                self.groups.offsets_commit_timeout_ms = parse_in_range(key, value, 1..=600_000)?
            }
            "offsets.topic.segment.bytes" => {
                self.groups.offsets_topic_segment_bytes =
                    parse_in_range(key, value, 14..=i32::MAX as u64)?
            }
            "offsets.retention.minutes" => {
                let minutes: i64 = parse_in_range(key, value, 1..=i64::MAX / 60_000)?;
                self.groups.offsets_retention_ms = minutes * 60_000;
            }
            "offsets.retention.check.interval.ms" => {
                self.groups.offsets_retention_check_interval_ms =
                    parse_in_range(key, value, 1..=u64::MAX)?
            }
            "offset.metadata.max.bytes" => {
                // A metadata string is stored with an i16 length.
                self.groups.offset_metadata_bytes_max =
                    parse_in_range(key, value, 0..=i16::MAX as usize)?
            }
            "group.min.session.timeout.ms" => {
                self.groups.session_timeout_ms_min = parse_in_range(key, value, 1..=i32::MAX)?
            }
            "group.max.session.timeout.ms" => {
                self.groups.session_timeout_ms_max = parse_in_range(key, value, 1..=i32::MAX)?
            }
            "group.initial.rebalance.delay.ms" => {
                self.groups.initial_rebalance_delay_ms = parse_in_range(key, value, 0..=i32::MAX)?
            }
            "group.max.size" => {
                self.groups.group_members_max = parse_in_range(key, value, 1..=usize::MAX)?
            }
            _ => return Err(ConfigError::UnknownKey(key.to_string())),
        }
        Ok(())
    }

    pub fn load_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        for (key, value) in parse_properties(path)? {
            self.set(&key, &value)?;
        }
        Ok(())
    }
}

/// `every-batch`, `interval:<ms>` (or a bare number of ms), or `on-roll`.
pub fn parse_flush_policy(key: &str, value: &str) -> Result<FlushPolicy, ConfigError> {
    match value {
        "every-batch" | "always" => Ok(FlushPolicy::EveryBatch),
        "on-roll" | "roll" => Ok(FlushPolicy::OnRoll),
        other => {
            let ms = other.strip_prefix("interval:").unwrap_or(other);
            Ok(FlushPolicy::IntervalMs(parse(key, ms)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_file_overrides_defaults() {
        // Kafka-style keys in a properties file land in the config.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        std::fs::write(
            &path,
            "# comment\nnode.id=7\nlisteners=PLAINTEXT://127.0.0.1:19092\nnum.partitions=4\n\
             auto.create.topics.enable=false\nlog.flush.policy=every-batch\nlog.retention.bytes=-1\n\
             num.worker.threads=1\n",
        )
        .unwrap();
        let mut config = BrokerConfig::default();
        config.load_file(&path).unwrap();
        assert_eq!(config.node_id, 7);
        assert_eq!(config.listen.port(), 19092);
        assert_eq!(config.default_partitions, 4);
        assert!(!config.auto_create_topics);
        assert!(matches!(config.log.flush_policy, FlushPolicy::EveryBatch));
        assert_eq!(config.log.retention_bytes, None);
        assert_eq!(config.worker_threads, Some(1));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        // A typo in a config file is reported, not silently ignored.
        let mut config = BrokerConfig::default();
        assert!(matches!(
            config.set("no.such.key", "1"),
            Err(ConfigError::UnknownKey(_))
        ));
        assert!(config.set("num.partitions", "0").is_err());
        assert!(config.set("node.id", "abc").is_err());
        assert!(config.set("num.worker.threads", "0").is_err());
        assert!(config.set("num.worker.threads", "1025").is_err());
    }

    #[test]
    fn cluster_keys_use_kafkas_names() {
        // Controller voters, sessions, racks and the leader rebalance parse as Kafka spells them.
        let mut config = BrokerConfig::default();
        config
            .set(
                "controller.quorum.voters",
                "1@127.0.0.1:9093,2@127.0.0.1:9094",
            )
            .unwrap();
        config
            .set("controller.listener", "CONTROLLER://127.0.0.1:9093")
            .unwrap();
        config.set("broker.session.timeout.ms", "3000").unwrap();
        config.set("broker.rack", "eu-1a").unwrap();
        config
            .set("leader.imbalance.check.interval.seconds", "10")
            .unwrap();
        assert_eq!(config.controller_voters.len(), 2);
        assert_eq!(
            config.controller_listen,
            Some("127.0.0.1:9093".parse().unwrap())
        );
        assert_eq!(config.broker_session_timeout_ms, 3000);
        assert_eq!(config.rack.as_deref(), Some("eu-1a"));
        assert_eq!(config.leader_rebalance_interval_ms, Some(10_000));
        config.set("auto.leader.rebalance.enable", "false").unwrap();
        assert_eq!(config.leader_rebalance_interval_ms, None);
        assert!(config.set("controller.quorum.voters", "1@nowhere").is_err());
        assert!(config.set("broker.session.timeout.ms", "5").is_err());
    }

    #[test]
    fn group_coordinator_keys_use_kafkas_names() {
        // Kafka's group settings land in the coordinator config; out-of-range values are refused.
        let mut config = BrokerConfig::default();
        assert_eq!(config.groups.offsets_topic_partitions, 50);
        assert_eq!(config.groups.offsets_retention_ms, 7 * 24 * 60 * 60 * 1000);
        config.set("offsets.topic.num.partitions", "3").unwrap();
        config.set("offsets.retention.minutes", "2").unwrap();
        config.set("group.min.session.timeout.ms", "500").unwrap();
        config
            .set("group.initial.rebalance.delay.ms", "3000")
            .unwrap();
        config.set("group.max.size", "10").unwrap();
        assert_eq!(config.groups.offsets_topic_partitions, 3);
        assert_eq!(config.groups.offsets_retention_ms, 120_000);
        assert_eq!(config.groups.session_timeout_ms_min, 500);
        assert_eq!(config.groups.initial_rebalance_delay_ms, 3000);
        assert_eq!(config.groups.group_members_max, 10);
        assert!(config.set("offsets.topic.num.partitions", "0").is_err());
        assert!(config.set("offset.metadata.max.bytes", "40000").is_err());
    }
}
