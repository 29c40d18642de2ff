//! What the admin calls take and what they answer: plain values, named in
//! Kafka's words, with broker ids as `i32` node ids as Metadata gives them.

use std::collections::BTreeMap;

use uuid::Uuid;

/// A topic to create: either a partition count and replication factor (the
/// controller places the replicas), or an explicit replica assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The topic's name.
    pub name: String,
    /// `None`: the broker's `num.partitions` (or the assignment's length).
    pub partitions: Option<i32>,
    /// `None`: the broker's `default.replication.factor` (or the assignment's).
    pub replication_factor: Option<i16>,
    /// Partition number to its replicas, the first the preferred leader.
    /// When set, `partitions` and `replication_factor` must be `None`.
    pub assignments: BTreeMap<i32, Vec<i32>>,
    /// Topic configs (`cleanup.policy`, `retention.ms`, ...).
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic of `partitions` partitions with `replication_factor` replicas each.
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions: Some(partitions),
            replication_factor: Some(replication_factor),
            assignments: BTreeMap::new(),
            configs: BTreeMap::new(),
        }
    }

    /// A topic whose replicas are placed as given: `assignments[p]` lists
    /// partition `p`'s replicas, preferred leader first.
    pub fn with_assignments(name: impl Into<String>, assignments: Vec<Vec<i32>>) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions: None,
            replication_factor: None,
            assignments: (0..).zip(assignments).collect(),
            configs: BTreeMap::new(),
        }
    }

    /// Adds a topic config.
    pub fn with_config(mut self, name: impl Into<String>, value: impl Into<String>) -> NewTopic {
        self.configs.insert(name.into(), value.into());
        self
    }
}

/// A topic the controller created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTopic {
    /// The topic's name.
    pub name: String,
    /// Nil from brokers before CreateTopics v7.
    pub topic_id: Uuid,
    /// -1 from brokers before CreateTopics v5.
    pub partitions: i32,
    /// -1 from brokers before CreateTopics v5.
    pub replication_factor: i16,
}

/// Partitions to add to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartitions {
    /// The topic to grow.
    pub topic: String,
    /// The partition count after the call (not the number added).
    pub total_count: i32,
    /// Replicas of each new partition, in partition order; `None` lets the
    /// controller place them.
    pub assignments: Option<Vec<Vec<i32>>>,
}

impl NewPartitions {
    /// Grows `topic` to `total_count` partitions, replicas placed by the controller.
    pub fn increase_to(topic: impl Into<String>, total_count: i32) -> NewPartitions {
        NewPartitions {
            topic: topic.into(),
            total_count,
            assignments: None,
        }
    }
}

/// A broker as DescribeCluster (or Metadata) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDescription {
    /// The broker's node id.
    pub node_id: i32,
    /// The host clients connect to.
    pub host: String,
    /// The port clients connect to.
    pub port: i32,
    /// The broker's rack, if it has one.
    pub rack: Option<String>,
    /// Fenced brokers are listed only by DescribeCluster v2 when asked for;
    /// this client does not ask, so this is false.
    pub fenced: bool,
}

/// The cluster: its id, its controller and its brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster's id, if the brokers report one.
    pub cluster_id: Option<String>,
    /// The broker clients send controller requests to (`None`: none known).
    pub controller_id: Option<i32>,
    /// Sorted by node id.
    pub brokers: Vec<BrokerDescription>,
}

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition's index.
    pub partition: i32,
    /// `None` while the partition has no leader.
    pub leader: Option<i32>,
    /// The leader epoch (-1 when the broker does not say).
    pub leader_epoch: i32,
    /// Every replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// Replicas whose log directory is offline.
    pub offline_replicas: Vec<i32>,
}

/// A topic as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic's name.
    pub name: String,
    /// The topic's id (nil from brokers before Metadata v10).
    pub topic_id: Uuid,
    /// Whether it is an internal topic (`__consumer_offsets`).
    pub internal: bool,
    /// Sorted by partition number.
    pub partitions: Vec<PartitionDescription>,
}

/// Which offset of a partition ListOffsets looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (the high watermark for a consumer).
    Latest,
    /// The offset of the record with the largest timestamp (ListOffsets v7+).
    MaxTimestamp,
    /// The first offset whose record's timestamp is at least this many
    /// milliseconds since the epoch; none (`offset` -1) if every record is older.
    Timestamp(i64),
}

impl OffsetSpec {
    /// The `timestamp` field ListOffsets carries for this spec.
    pub fn wire_timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::MaxTimestamp => -3,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

/// A partition's offset as ListOffsets answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// -1 when no record matches a timestamp lookup.
    pub offset: i64,
    /// The record's timestamp for timestamp lookups, else `None`.
    pub timestamp: Option<i64>,
    /// The leader epoch of the record at the offset, when the broker says.
    pub leader_epoch: Option<i32>,
}

/// The `before` offset of [`Admin::delete_records`](super::Admin::delete_records)
/// that deletes every record up to the partition's high watermark.
pub const DELETE_TO_HIGH_WATERMARK: i64 = -1;

/// What [`Admin::delete_records`](super::Admin::delete_records) left of a
/// partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeletedRecords {
    /// The partition's log start offset after the call: the first offset
    /// still readable.
    pub low_watermark: i64,
}

/// Something with configs: a topic or a broker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigResource {
    /// A topic, by name.
    Topic(String),
    /// A broker, by node id.
    Broker(i32),
}

impl ConfigResource {
    /// Kafka's `ConfigResource.Type` code.
    pub fn resource_type(&self) -> i8 {
        match self {
            ConfigResource::Topic(_) => 2,
            ConfigResource::Broker(_) => 4,
        }
    }

    /// The resource name on the wire (a broker's is its id).
    pub fn resource_name(&self) -> String {
        match self {
            ConfigResource::Topic(name) => name.clone(),
            ConfigResource::Broker(id) => id.to_string(),
        }
    }

    /// Whether a response's resource (type code and name) is this one.
    pub(crate) fn is(&self, resource_type: i8, name: &str) -> bool {
        self.resource_type() == resource_type && self.resource_name() == name
    }
}

impl std::fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigResource::Topic(name) => write!(f, "topic {name:?}"),
            ConfigResource::Broker(id) => write!(f, "broker {id}"),
        }
    }
}

/// One change to a config (IncrementalAlterConfigs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlterConfigOp {
    /// Sets the config to a value.
    Set {
        /// The config's name.
        name: String,
        /// The new value.
        value: String,
    },
    /// Removes the override: the config goes back to its default.
    Delete {
        /// The config's name.
        name: String,
    },
    /// Adds a value to a list config (e.g. `cleanup.policy`).
    Append {
        /// The config's name.
        name: String,
        /// The value to add.
        value: String,
    },
    /// Removes a value from a list config.
    Subtract {
        /// The config's name.
        name: String,
        /// The value to remove.
        value: String,
    },
}

impl AlterConfigOp {
    /// The config it changes.
    pub fn name(&self) -> &str {
        match self {
            AlterConfigOp::Set { name, .. }
            | AlterConfigOp::Delete { name }
            | AlterConfigOp::Append { name, .. }
            | AlterConfigOp::Subtract { name, .. } => name,
        }
    }

    /// The value it sets, adds or removes (none for a delete).
    pub fn value(&self) -> Option<&str> {
        match self {
            AlterConfigOp::Set { value, .. }
            | AlterConfigOp::Append { value, .. }
            | AlterConfigOp::Subtract { value, .. } => Some(value),
            AlterConfigOp::Delete { .. } => None,
        }
    }

    /// Kafka's `AlterConfigOp.OpType` code.
    pub fn code(&self) -> i8 {
        match self {
            AlterConfigOp::Set { .. } => 0,
            AlterConfigOp::Delete { .. } => 1,
            AlterConfigOp::Append { .. } => 2,
            AlterConfigOp::Subtract { .. } => 3,
        }
    }
}

/// Where a config's value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigSource {
    /// Set on the topic.
    DynamicTopicConfig,
    /// Set on this broker while it runs.
    DynamicBrokerConfig,
    /// Set for every broker while they run.
    DynamicDefaultBrokerConfig,
    /// From the broker's configuration file.
    StaticBrokerConfig,
    /// The default.
    DefaultConfig,
    /// A broker logger's level.
    DynamicBrokerLoggerConfig,
    /// A source this client has no name for, with its code.
    Unknown(i8),
}

impl ConfigSource {
    /// The source for Kafka's code (`Unknown` for one without a name here).
    pub fn from_code(code: i8) -> ConfigSource {
        match code {
            1 => ConfigSource::DynamicTopicConfig,
            2 => ConfigSource::DynamicBrokerConfig,
            3 => ConfigSource::DynamicDefaultBrokerConfig,
            4 => ConfigSource::StaticBrokerConfig,
            5 => ConfigSource::DefaultConfig,
            6 => ConfigSource::DynamicBrokerLoggerConfig,
            other => ConfigSource::Unknown(other),
        }
    }
}

/// One config of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The config's name (`retention.ms`, ...).
    pub name: String,
    /// `None` for sensitive configs and configs without a value.
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether it can be changed while the broker runs.
    pub read_only: bool,
    /// Whether the value is secret (the broker then sends none).
    pub sensitive: bool,
}

/// A reassignment in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OngoingReassignment {
    /// The replica set during the move (old and new replicas).
    pub replicas: Vec<i32>,
    /// Replicas being added.
    pub adding_replicas: Vec<i32>,
    /// Replicas being removed.
    pub removing_replicas: Vec<i32>,
}

/// Which leader ElectLeaders elects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// The first replica of the assignment, if it is in sync.
    Preferred,
    /// Any live replica, in sync or not, for a partition without a leader
    /// (records the new leader lacks are lost).
    Unclean,
}

impl ElectionType {
    /// The `election_type` field of ElectLeaders v1+.
    pub fn code(self) -> i8 {
        match self {
            ElectionType::Preferred => 0,
            ElectionType::Unclean => 1,
        }
    }
}
