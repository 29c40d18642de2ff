//! The records of the cluster metadata log. Each mirrors a Kafka KRaft
//! record of the same name (`RegisterBrokerRecord`, `TopicRecord`,
//! `PartitionRecord`, `PartitionChangeRecord`, ...); a controller decision is
//! a batch of them, committed as one entry of the metadata log and applied
//! atomically. On disk and on the wire a batch is `bincode`-encoded: the log
//! entry that holds it is checksummed by the storage engine.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{BrokerId, LeaderEpoch, PartitionEpoch};

/// A listener a broker serves clients on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// A broker as registered with the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: BrokerId,
    /// Random per process start: tells a restart from a retried registration.
    pub incarnation: Uuid,
    /// The metadata offset of the registration; a stale broker's requests carry an older one.
    pub epoch: i64,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is not offered to clients.
    pub fenced: bool,
}

impl BrokerRegistration {
    /// The endpoint clients connect to (the first listener).
    pub fn client_endpoint(&self) -> Option<&Endpoint> {
        self.endpoints.first()
    }
}

/// Where a partition lives and who leads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// `BrokerId::NONE` when no replica can lead.
    pub leader: BrokerId,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
}

impl PartitionRegistration {
    /// A new partition led by its first replica, with every replica in sync.
    pub fn new(replicas: Vec<BrokerId>) -> PartitionRegistration {
        assert!(!replicas.is_empty(), "a partition has at least one replica");
        PartitionRegistration {
            leader: replicas[0],
            isr: replicas.clone(),
            replicas,
            leader_epoch: LeaderEpoch::INITIAL,
            partition_epoch: PartitionEpoch::INITIAL,
        }
    }

    pub fn is_replica(&self, broker: BrokerId) -> bool {
        self.replicas.contains(&broker)
    }
}

/// A partition's reassignment in progress: its replicas (in the image) are
/// the target ones followed by those being removed; the ones being added
/// join as followers and catch up, and once every target replica is in the
/// ISR the removed ones go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    pub adding: Vec<BrokerId>,
    pub removing: Vec<BrokerId>,
}

/// One change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// A broker registers (or re-registers after a restart); its epoch is the record's offset.
    RegisterBroker {
        id: BrokerId,
        incarnation: Uuid,
        endpoints: Vec<Endpoint>,
        rack: Option<String>,
        fenced: bool,
    },
    UnregisterBroker {
        id: BrokerId,
    },
    FenceBroker {
        id: BrokerId,
    },
    UnfenceBroker {
        id: BrokerId,
    },
    Topic {
        name: String,
        id: Uuid,
    },
    /// A partition of a topic created just before (partitions are numbered densely).
    Partition {
        topic_id: Uuid,
        partition: i32,
        registration: PartitionRegistration,
    },
    /// A change of leader, ISR or replicas. Applying it bumps the partition
    /// epoch, and the leader epoch too when the leader changes.
    PartitionChange {
        topic_id: Uuid,
        partition: i32,
        leader: Option<BrokerId>,
        isr: Option<Vec<BrokerId>>,
        replicas: Option<Vec<BrokerId>>,
    },
    RemoveTopic {
        id: Uuid,
    },
    /// A block of producer ids handed to `broker`: ids below
    /// `next_producer_id` are taken, cluster-wide and for good.
    ProducerIds {
        broker: BrokerId,
        next_producer_id: i64,
    },
    /// Sets (`Some`) or removes (`None`) a topic config override.
    TopicConfig {
        topic_id: Uuid,
        key: String,
        value: Option<String>,
    },
    /// Starts (`Some`) or ends (`None`: completed or cancelled) a partition's
    /// reassignment. New variants go last: the encoding numbers them in order.
    Reassignment {
        topic_id: Uuid,
        partition: i32,
        reassignment: Option<Reassignment>,
    },
    /// Sets (`Some`) or removes (`None`) a dynamic broker config (Kafka's
    /// `ConfigRecord` for a BROKER resource): of one broker, or the
    /// cluster-wide default when `broker` is `None`.
    BrokerConfig {
        broker: Option<BrokerId>,
        key: String,
        value: Option<String>,
    },
}

/// Encodes a batch of records as one metadata log entry.
pub fn encode_batch(records: &[MetadataRecord]) -> Vec<u8> {
    bincode::serialize(records).expect("metadata records always encode")
}

/// Decodes a metadata log entry; damage is an error, never a panic.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<MetadataRecord>, bincode::Error> {
    use bincode::Options;
    // The same encoding as `bincode::serialize`, with allocations bounded by the input.
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(bytes.len() as u64)
        .deserialize(bytes)
}
