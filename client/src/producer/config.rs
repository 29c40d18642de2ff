//! Producer settings, with the Java client's names and defaults where it has them.

use std::time::Duration;

use crate::compression::Compression;
use crate::error::ConfigError;

/// How many replicas must have a batch before the broker acknowledges it (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// `acks=0`: the broker sends no response; a batch counts as delivered
    /// once it is written to the socket, and its offset is unknown.
    None,
    /// `acks=1`: the leader has appended it.
    Leader,
    /// `acks=all` (`-1`): every in-sync replica has it.
    #[default]
    All,
}

impl Acks {
    /// The value on the wire.
    pub fn wire_value(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(ConfigError::Invalid {
                setting: "acks",
                reason: format!("{other:?} is not 0, 1 or all"),
            }),
        }
    }
}

/// The most requests an idempotent producer may have in flight per
/// connection: brokers keep the last five batches per producer and partition
/// to detect duplicates, so more could not be deduplicated.
pub const IDEMPOTENT_IN_FLIGHT_REQUESTS_MAX: usize = 5;

/// Settings of a [`crate::Producer`]. Build one with
/// [`ProducerConfig::new`] and change fields as needed.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `bootstrap.servers`: `host:port` of brokers to reach the cluster through.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`, sent in every request header.
    pub client_id: String,
    /// `acks`. Default `all`.
    pub acks: Acks,
    /// `enable.idempotence`: producer id, epoch and sequence numbers so that
    /// retries never write a batch twice. Default on; switched off with a
    /// warning when the broker does not serve InitProducerId. Needs `acks=all`.
    pub enable_idempotence: bool,
    /// `compression.type`: none, gzip, snappy, lz4 or zstd. Default none.
    pub compression: Compression,
    /// `linger.ms`: how long a batch that is not full waits for more records. Default 5 ms.
    pub linger: Duration,
    /// `batch.size`: a batch is sent once its records take this many bytes
    /// (uncompressed). A larger single record gets a batch of its own. Default 16 KiB.
    pub batch_size: usize,
    /// `buffer.memory`: bound on the bytes of records accepted and not yet
    /// delivered; `send` waits for room. Default 32 MiB.
    pub buffer_memory: usize,
    /// `max.block.ms`: how long `send` may wait for buffer room or topic
    /// metadata before failing. Default 60 s.
    pub max_block: Duration,
    /// `max.request.size`: bound on one record, and on the batches of one
    /// Produce request. Default 1 MiB.
    pub max_request_size: usize,
    /// `request.timeout.ms`: how long to wait for one response. Default 30 s.
    pub request_timeout: Duration,
    /// `delivery.timeout.ms`: bound on the time from `send` to the delivery
    /// report, retries included. Default 120 s.
    pub delivery_timeout: Duration,
    /// `retries`: how often a batch may be sent again after a retriable
    /// error (the delivery timeout bounds it too). Default `u32::MAX`.
    pub retries: u32,
    /// `retry.backoff.ms`: the first retry's delay. Default 100 ms.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the longest retry delay. Default 1 s.
    pub retry_backoff_max: Duration,
    /// `max.in.flight.requests.per.connection`. Default 5 (at most 5 with idempotence).
    pub max_in_flight_requests_per_connection: usize,
    /// `metadata.max.age.ms`: metadata older than this is refreshed. Default 5 min.
    pub metadata_max_age: Duration,
    /// `socket.connection.setup.timeout.ms`: bound on connecting. Default 10 s.
    pub connect_timeout: Duration,
}

impl ProducerConfig {
    /// Defaults with `bootstrap_servers` taken from a comma-separated list.
    pub fn new(bootstrap_servers: &str) -> Self {
        ProducerConfig {
            bootstrap_servers: crate::cluster::bootstrap_list(bootstrap_servers),
            client_id: "rust-producer".to_string(),
            acks: Acks::All,
            enable_idempotence: true,
            compression: Compression::None,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            max_block: Duration::from_secs(60),
            max_request_size: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(120),
            retries: u32::MAX,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            max_in_flight_requests_per_connection: IDEMPOTENT_IN_FLIGHT_REQUESTS_MAX,
            metadata_max_age: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Sets one setting by its Java property name (`acks`, `linger.ms`,
    /// `batch.size`, `compression.type`, `enable.idempotence`, ...; the
    /// names in the field docs). An unknown name or a value that does not
    /// parse is an error naming the property; combinations are checked by
    /// [`validate`](Self::validate), as `connect` does.
    pub fn set(&mut self, name: &str, value: &str) -> Result<&mut Self, ConfigError> {
        use crate::properties::{boolean, invalid, millis, number, unknown};
        match name {
            "bootstrap.servers" => {
                self.bootstrap_servers = crate::cluster::bootstrap_list(value);
            }
            "client.id" => self.client_id = value.to_string(),
            "acks" => {
                self.acks = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(name, value, "not 0, 1, -1 or all"))?
            }
            "enable.idempotence" => self.enable_idempotence = boolean(name, value)?,
            "compression.type" => {
                self.compression = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(name, value, "not none, gzip, snappy, lz4 or zstd"))?
            }
            "linger.ms" => self.linger = millis(name, value)?,
            "batch.size" => self.batch_size = number(name, value)?,
            "buffer.memory" => self.buffer_memory = number(name, value)?,
            "max.block.ms" => self.max_block = millis(name, value)?,
            "max.request.size" => self.max_request_size = number(name, value)?,
            "request.timeout.ms" => self.request_timeout = millis(name, value)?,
            "delivery.timeout.ms" => self.delivery_timeout = millis(name, value)?,
            "retries" => self.retries = number(name, value)?,
            "retry.backoff.ms" => self.retry_backoff = millis(name, value)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = millis(name, value)?,
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight_requests_per_connection = number(name, value)?
            }
            "metadata.max.age.ms" => self.metadata_max_age = millis(name, value)?,
            "socket.connection.setup.timeout.ms" => self.connect_timeout = millis(name, value)?,
            _ => return Err(unknown(name)),
        }
        Ok(self)
    }

    /// A config from Java-style properties (`bootstrap.servers` required),
    /// the rest at their defaults; see [`set`](Self::set).
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        properties: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        crate::properties::build(properties, ProducerConfig::new, |config, name, value| {
            config.set(name, value).map(|_| ())
        })
    }

    /// Checks the settings against each other, as the Java client does at construction.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |setting: &'static str, reason: String| Err(ConfigError::Invalid { setting, reason });
        if self.bootstrap_servers.is_empty() {
            return invalid("bootstrap_servers", "no server given".to_string());
        }
        if self.batch_size == 0 {
            return invalid("batch_size", "must be positive".to_string());
        }
        if self.buffer_memory < self.batch_size {
            return invalid(
                "buffer_memory",
                format!(
                    "{} is smaller than batch_size {}",
                    self.buffer_memory, self.batch_size
                ),
            );
        }
        if self.max_in_flight_requests_per_connection == 0 {
            return invalid(
                "max_in_flight_requests_per_connection",
                "must be positive".to_string(),
            );
        }
        if self.enable_idempotence {
            if self.acks != Acks::All {
                return invalid(
                    "acks",
                    format!(
                        "idempotence needs acks=all, not {:?}; set enable_idempotence = false",
                        self.acks
                    ),
                );
            }
            if self.max_in_flight_requests_per_connection > IDEMPOTENT_IN_FLIGHT_REQUESTS_MAX {
                return invalid(
                    "max_in_flight_requests_per_connection",
                    format!(
                        "{} exceeds {IDEMPOTENT_IN_FLIGHT_REQUESTS_MAX}, the most an idempotent producer may use",
                        self.max_in_flight_requests_per_connection
                    ),
                );
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
        if self.delivery_timeout < self.linger {
            return invalid(
                "delivery_timeout",
                format!(
                    "{:?} is shorter than linger {:?}",
                    self.delivery_timeout, self.linger
                ),
            );
        }
        if self.max_request_size <= protocol::batch::BATCH_HEADER_BYTES {
            return invalid(
                "max_request_size",
                "too small for one batch header".to_string(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_idempotent() {
        // The defaults pass validation, with idempotence and acks=all on.
        let config = ProducerConfig::new("a:1, b:2");
        assert_eq!(config.bootstrap_servers, ["a:1", "b:2"]);
        config.validate().unwrap();
        assert!(config.enable_idempotence);
        assert_eq!(config.acks, Acks::All);
    }

    #[test]
    fn idempotence_refuses_weaker_acks_and_more_than_five_in_flight() {
        // The two combinations the Java client rejects are rejected here too, naming the setting.
        let mut config = ProducerConfig::new("a:1");
        config.acks = Acks::Leader;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                setting: "acks",
                ..
            })
        ));
        config.enable_idempotence = false;
        config.validate().unwrap();
        let mut config = ProducerConfig::new("a:1");
        config.max_in_flight_requests_per_connection = 6;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                setting: "max_in_flight_requests_per_connection",
                ..
            })
        ));
    }

    #[test]
    fn java_property_names_set_the_typed_fields() {
        // The Java client's names set the same fields as the typed builder; bad names and values are errors naming the property.
        let config = ProducerConfig::from_properties([
            ("bootstrap.servers", "a:9092,b:9092"),
            ("acks", "1"),
            ("enable.idempotence", "false"),
            ("linger.ms", "25"),
            ("batch.size", "65536"),
            ("compression.type", "zstd"),
            ("retries", "3"),
            ("delivery.timeout.ms", "30000"),
        ])
        .unwrap();
        assert_eq!(config.bootstrap_servers, ["a:9092", "b:9092"]);
        assert_eq!(config.acks, Acks::Leader);
        assert!(!config.enable_idempotence);
        assert_eq!(config.linger, Duration::from_millis(25));
        assert_eq!(config.batch_size, 65536);
        assert_eq!(config.compression, Compression::Zstd);
        assert_eq!(config.retries, 3);
        assert_eq!(config.delivery_timeout, Duration::from_secs(30));
        config.validate().unwrap();
        let mut config = ProducerConfig::new("a:9092");
        assert_eq!(
            config.set("linger", "5").unwrap_err(),
            ConfigError::UnknownProperty {
                name: "linger".into()
            }
        );
        for (name, value) in [
            ("linger.ms", "-1"),
            ("batch.size", "big"),
            ("acks", "2"),
            ("compression.type", "brotli"),
            ("enable.idempotence", "yes"),
        ] {
            match config.set(name, value) {
                Err(ConfigError::InvalidProperty {
                    name: named,
                    value: given,
                    ..
                }) => {
                    assert_eq!((named.as_str(), given.as_str()), (name, value));
                }
                other => panic!("{name}={value}: {other:?}"),
            }
        }
        assert_eq!(
            ProducerConfig::from_properties([("acks", "all")]).unwrap_err(),
            ConfigError::MissingProperty {
                name: "bootstrap.servers"
            }
        );
    }
}
