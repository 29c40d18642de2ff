//! The replica manager owns the partitions this broker hosts (keyed by topic
//! and partition) and is the only code that turns a metadata delta into
//! local actions: create or delete a log, lead, follow, apply a topic's
//! config overrides, each with the epochs of the image. It also keeps the
//! high watermarks' checkpoint (`replication-offset-checkpoint`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use protocol::ErrorCode;
use tokio::sync::{mpsc, Notify};

use crate::config::ReplicationSettings;
use crate::ids::BrokerId;
use crate::lease::Lease;
use crate::metadata::{
    MetadataDelta, MetadataImage, MetadataPublisher, PartitionRegistration, TopicImage,
};
use crate::partition::{IsrProposal, Partition, ReplicationConfig, Role};
use crate::replication::follower::FollowerConfig;
use crate::replication::leader::LeaderConfig;
use crate::storage::{LogConfig, LogManager, TopicPartition};

/// The high watermarks' checkpoint file in the data dir.
pub const HIGH_WATERMARK_CHECKPOINT_FILE: &str = "replication-offset-checkpoint";
/// Bound on ISR proposals queued for the controller (one per partition at most).
const ISR_PROPOSALS_QUEUED_MAX: usize = 16_384;
/// Bound on `acks=all` requests waiting on one partition.
const WAITING_PRODUCES_PER_PARTITION_MAX: usize = 10_000;

pub struct ReplicaManager {
    node: BrokerId,
    logs: Arc<LogManager>,
    /// The log config of a topic without overrides (dynamic broker configs change it).
    default_log_config: RwLock<LogConfig>,
    /// Dynamic broker configs change these too.
    settings: RwLock<ReplicationSettings>,
    /// By topic name, then partition: the partitions this broker is a replica of.
    partitions: RwLock<HashMap<String, BTreeMap<i32, Arc<Partition>>>>,
    /// High watermarks as last checkpointed (read at start).
    checkpointed: BTreeMap<TopicPartition, i64>,
    proposals: mpsc::Sender<IsrProposal>,
    /// Taken once by the runtime that sends proposals to the controller.
    proposals_rx: Mutex<Option<mpsc::Receiver<IsrProposal>>>,
    /// Woken whenever a partition starts or stops following a leader.
    followers_changed: Notify,
    /// This broker's lease on its leaderships, renewed by its heartbeats.
    lease: Arc<Lease>,
}

impl ReplicaManager {
    pub fn new(
        node: BrokerId,
        logs: Arc<LogManager>,
        default_log_config: LogConfig,
        settings: ReplicationSettings,
    ) -> Self {
        let path = logs.data_dir().join(HIGH_WATERMARK_CHECKPOINT_FILE);
        let checkpointed = crate::storage::checkpoint::read_offsets(&path).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring a damaged high watermark checkpoint");
            BTreeMap::new()
        });
        let (proposals, proposals_rx) = mpsc::channel(ISR_PROPOSALS_QUEUED_MAX);
        ReplicaManager {
            node,
            logs,
            default_log_config: RwLock::new(default_log_config),
            settings: RwLock::new(settings),
            partitions: RwLock::new(HashMap::new()),
            checkpointed,
            proposals,
            proposals_rx: Mutex::new(Some(proposals_rx)),
            followers_changed: Notify::new(),
            lease: Arc::new(Lease::new()),
        }
    }

    pub fn settings(&self) -> ReplicationSettings {
        *self.settings.read().expect("settings lock")
    }

    fn default_log_config(&self) -> LogConfig {
        self.default_log_config
            .read()
            .expect("default log config lock")
            .clone()
    }

    /// New defaults from dynamic broker configs: every topic's log config
    /// and replication settings are worked out again over them.
    pub fn set_defaults(
        &self,
        log: LogConfig,
        settings: ReplicationSettings,
        image: &MetadataImage,
    ) {
        *self
            .default_log_config
            .write()
            .expect("default log config lock") = log;
        *self.settings.write().expect("settings lock") = settings;
        for topic in image.topics() {
            self.apply_configs(topic);
        }
    }

    /// This broker's lease on its leaderships (see [`crate::lease`]).
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The ISR proposals for the controller; `None` after the first call.
    pub fn take_isr_proposals(&self) -> Option<mpsc::Receiver<IsrProposal>> {
        self.proposals_rx.lock().expect("proposals lock").take()
    }

    /// Completes when some partition starts or stops following (register interest first).
    pub fn followers_changed(&self) -> &Notify {
        &self.followers_changed
    }

    /// The replication settings of a partition of `topic`.
    pub fn replication_config(&self, topic: &TopicImage) -> ReplicationConfig {
        let settings = self.settings();
        ReplicationConfig {
            leader: LeaderConfig {
                replica_lag_time_max_ms: settings.replica_lag_time_max_ms,
                min_insync_replicas: crate::topics::min_insync_replicas_for(
                    settings.min_insync_replicas,
                    &topic.configs,
                ),
                waiting_produces_max: WAITING_PRODUCES_PER_PARTITION_MAX,
            },
            follower: FollowerConfig {
                fetch_backoff_ms: settings.fetch_backoff_ms,
            },
        }
    }

    /// Writes every hosted partition's high watermark to the checkpoint file.
    pub fn write_high_watermarks(&self) -> Result<(), crate::storage::StorageError> {
        let offsets: BTreeMap<TopicPartition, i64> = self
            .all()
            .iter()
            .map(|p| {
                (
                    TopicPartition::new(p.topic.clone(), p.index),
                    p.high_watermark(),
                )
            })
            .collect();
        self.logs
            .write_offset_checkpoint(HIGH_WATERMARK_CHECKPOINT_FILE, &offsets)
    }

    /// This broker's id.
    pub fn node(&self) -> BrokerId {
        self.node
    }

    /// A partition hosted here, leader or follower.
    pub fn get(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .get(topic)
            .and_then(|p| p.get(&index))
            .cloned()
    }

    /// The partition to serve a client's request on: it must exist in the
    /// image and this broker must lead it.
    pub fn leader_partition(
        &self,
        topic: &TopicImage,
        index: i32,
    ) -> Result<Arc<Partition>, ErrorCode> {
        if topic.partition(index).is_none() {
            return Err(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
        }
        match self.get(&topic.name, index) {
            Some(partition) if partition.is_leader() => Ok(partition),
            _ => Err(ErrorCode::NOT_LEADER_OR_FOLLOWER),
        }
    }

    /// Every partition hosted here.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .values()
            .flat_map(|p| p.values().cloned())
            .collect()
    }

    /// The partitions of `topic` hosted here, by index.
    pub fn topic_partitions(&self, topic: &str) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .get(topic)
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    fn role_of(&self, registration: &PartitionRegistration) -> Role {
        Role {
            leader: registration.leader,
            leader_epoch: registration.leader_epoch,
            leads: registration.leader == self.node,
        }
    }

    /// Every hosted partition takes the role its registration in `image` gives.
    fn apply_roles(&self, topic: &TopicImage) {
        let config = self.replication_config(topic);
        let now_ms = crate::now_ms();
        for partition in self.topic_partitions(&topic.name) {
            if let Some(registration) = topic.partition(partition.index) {
                partition.apply_registration(registration, &config, now_ms);
            }
        }
    }

    fn remove_local(&self, topic: &str, index: i32) {
        let removed = {
            let mut partitions = self.partitions.write().expect("partitions lock");
            let removed = partitions.get_mut(topic).and_then(|p| p.remove(&index));
            if partitions.get(topic).is_some_and(BTreeMap::is_empty) {
                partitions.remove(topic);
            }
            removed
        };
        if removed.is_some() {
            let tp = TopicPartition::new(topic, index);
            if let Err(e) = self.logs.delete(&tp) {
                tracing::error!(partition = %tp, error = %e, "cannot delete the log");
            }
        }
    }

    /// The local partition for a registration naming this broker: the one
    /// hosted already, a log found on disk for the same topic id, or a new log.
    fn ensure_local(&self, topic: &TopicImage, index: i32, role: Role) -> Option<Arc<Partition>> {
        if let Some(existing) = self.get(&topic.name, index) {
            if existing.topic_id == topic.id {
                return Some(existing);
            }
            // A topic of the same name was deleted and made anew.
            self.remove_local(&topic.name, index);
        }
        let tp = TopicPartition::new(topic.name.clone(), index);
        let defaults = self.default_log_config();
        let log_config = match crate::topics::log_config_for(&defaults, &topic.configs) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(partition = %tp, error = %e.message, "topic configs do not apply; using the defaults");
                defaults
            }
        };
        let log = match self.logs.get(&tp) {
            Some(log) => {
                let stored = log.lock().expect("log lock").topic_id();
                if stored == Some(topic.id) {
                    Some(log)
                } else {
                    tracing::warn!(partition = %tp, ?stored, wanted = %topic.id, "deleting the log of an earlier topic of the same name");
                    if let Err(e) = self.logs.delete(&tp) {
                        tracing::error!(partition = %tp, error = %e, "cannot delete the stale log");
                        return None;
                    }
                    None
                }
            }
            None => None,
        };
        let log = match log {
            Some(log) => {
                if !topic.configs.is_empty() {
                    if let Err(e) = log.lock().expect("log lock").set_config(log_config) {
                        tracing::error!(partition = %tp, error = %e, "cannot apply topic configs");
                    }
                }
                log
            }
            None => match self.logs.create_with_topic_id(&tp, log_config, topic.id) {
                Ok(log) => log,
                Err(e) => {
                    tracing::error!(partition = %tp, error = %e, "cannot create the log");
                    return None;
                }
            },
        };
        let high_watermark = self.checkpointed.get(&tp).copied().unwrap_or(0);
        let partition = Arc::new(Partition::new(
            topic.name.clone(),
            index,
            topic.id,
            self.node,
            role,
            log,
            high_watermark,
            self.proposals.clone(),
            self.lease.clone(),
        ));
        self.partitions
            .write()
            .expect("partitions lock")
            .entry(topic.name.clone())
            .or_default()
            .insert(index, partition.clone());
        Some(partition)
    }

    fn apply_configs(&self, topic: &TopicImage) {
        let config = match crate::topics::log_config_for(&self.default_log_config(), &topic.configs)
        {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(topic = %topic.name, error = %e.message, "topic configs do not apply");
                return;
            }
        };
        for partition in self.topic_partitions(&topic.name) {
            if let Err(e) = partition.set_log_config(config.clone()) {
                tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "cannot apply topic configs");
            }
        }
        // `min.insync.replicas` may have changed.
        self.apply_roles(topic);
    }
}

impl MetadataPublisher for ReplicaManager {
    fn publish(&self, image: &Arc<MetadataImage>, delta: &MetadataDelta) {
        for topic in &delta.deleted_topics {
            for index in 0..topic.partitions.len() as i32 {
                if self
                    .get(&topic.name, index)
                    .is_some_and(|p| p.topic_id == topic.id)
                {
                    self.remove_local(&topic.name, index);
                }
            }
            tracing::info!(topic = %topic.name, id = %topic.id, "deleted topic");
        }
        for topic in &delta.created_topics {
            tracing::info!(topic = %topic.name, partitions = topic.partitions.len(), id = %topic.id, "created topic");
        }
        let now_ms = crate::now_ms();
        let mut followers_changed = false;
        for change in &delta.partitions {
            let registration = change.current();
            let (topic, index) = (&change.topic, change.index);
            if registration.is_replica(self.node) {
                let role = self.role_of(registration);
                if let Some(partition) = self.ensure_local(topic, index, role) {
                    let following = partition.following();
                    partition.apply_registration(
                        registration,
                        &self.replication_config(topic),
                        now_ms,
                    );
                    followers_changed |= following != partition.following();
                }
            } else if self.get(&topic.name, index).is_some() {
                // Moved away from this broker.
                self.remove_local(&topic.name, index);
                followers_changed = true;
            }
        }
        if followers_changed || !delta.deleted_topics.is_empty() {
            self.followers_changed.notify_waiters();
        }
        for topic in &delta.changed_configs {
            self.apply_configs(topic);
        }
        if !(delta.changed_configs.is_empty()
            && delta.created_topics.is_empty()
            && delta.deleted_topics.is_empty())
        {
            if let Err(e) = crate::topics::write_topic_configs(self.logs.data_dir(), image) {
                tracing::error!(error = %e, "cannot write the topic configs file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use protocol::batch::{BatchBuilder, Record};
    use uuid::Uuid;

    use super::*;
    use crate::ids::{LeaderEpoch, Offset};
    use crate::metadata::MetadataRecord;
    use crate::partition::AppendError;

    const ME: BrokerId = BrokerId(1);

    struct Fixture {
        _dir: tempfile::TempDir,
        logs: Arc<LogManager>,
        replicas: ReplicaManager,
        image: Arc<MetadataImage>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let logs = Arc::new(LogManager::open(dir.path(), LogConfig::default(), 64).unwrap());
            let replicas = ReplicaManager::new(
                ME,
                logs.clone(),
                LogConfig::default(),
                ReplicationSettings::default(),
            );
            Fixture {
                _dir: dir,
                logs,
                replicas,
                image: Arc::new(MetadataImage::empty()),
            }
        }

        fn apply(&mut self, records: &[MetadataRecord]) {
            let (next, errors) = self.image.apply(self.image.offset().next(), records);
            assert!(errors.is_empty(), "{errors:?}");
            let next = Arc::new(next);
            self.replicas
                .publish(&next, &MetadataDelta::between(&self.image, &next));
            self.image = next;
        }
    }

    fn topic(name: &str, id: Uuid, replicas: &[&[i32]]) -> Vec<MetadataRecord> {
        let mut records = vec![MetadataRecord::Topic {
            name: name.into(),
            id,
        }];
        for (i, r) in replicas.iter().enumerate() {
            records.push(MetadataRecord::Partition {
                topic_id: id,
                partition: i as i32,
                registration: PartitionRegistration::new(r.iter().map(|b| BrokerId(*b)).collect()),
            });
        }
        records
    }

    fn batch() -> Bytes {
        let mut batch = BatchBuilder::new();
        batch.push(&Record {
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
            timestamp: 1,
        });
        batch.build()
    }

    #[test]
    fn only_partitions_naming_this_broker_get_a_local_log() {
        // Partition 0 is led here, 1 follows broker 2, 2 lives elsewhere entirely.
        let mut f = Fixture::new();
        f.apply(&topic("t", Uuid::new_v4(), &[&[1, 2], &[2, 1], &[2, 3]]));
        assert!(f.replicas.get("t", 0).unwrap().is_leader());
        assert!(!f.replicas.get("t", 1).unwrap().is_leader());
        assert!(f.replicas.get("t", 2).is_none());
        assert_eq!(f.logs.partitions().len(), 2);
        let image_topic = f.image.topic("t").unwrap().clone();
        assert!(f.replicas.leader_partition(&image_topic, 0).is_ok());
        for (index, code) in [
            (1, ErrorCode::NOT_LEADER_OR_FOLLOWER),
            (2, ErrorCode::NOT_LEADER_OR_FOLLOWER),
            (3, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
        ] {
            assert_eq!(
                f.replicas.leader_partition(&image_topic, index).err(),
                Some(code)
            );
        }
    }

    #[test]
    fn a_follower_refuses_appends_and_a_new_leader_appends_in_its_epoch() {
        // The role and leader epoch come from the image; batches carry the epoch.
        let mut f = Fixture::new();
        let id = Uuid::new_v4();
        f.apply(&topic("t", id, &[&[2, 1]]));
        let partition = f.replicas.get("t", 0).unwrap();
        match partition.append_as_leader(&batch(), 1) {
            Err(AppendError::NotLeader { leader }) => assert_eq!(leader, BrokerId(2)),
            other => panic!("a follower appended: {other:?}"),
        }
        f.apply(&[MetadataRecord::PartitionChange {
            topic_id: id,
            partition: 0,
            leader: Some(ME),
            isr: None,
            replicas: None,
        }]);
        let same = f.replicas.get("t", 0).unwrap();
        assert!(
            Arc::ptr_eq(&partition, &same),
            "the log is kept across a role change"
        );
        assert_eq!(same.leader_epoch(), LeaderEpoch(1));
        same.append_as_leader(&batch(), 1).unwrap();
        let read = same
            .read(0, 1 << 20, crate::partition::ReadBound::LogEnd, true)
            .unwrap();
        let header = protocol::batch::BatchHeader::new(&read.records).unwrap();
        assert_eq!(header.partition_leader_epoch(), 1);
    }

    #[test]
    fn deleting_a_topic_deletes_its_logs_and_a_new_topic_of_that_name_starts_empty() {
        // The new topic has another id: the old log must not be adopted.
        let mut f = Fixture::new();
        let old = Uuid::new_v4();
        f.apply(&topic("t", old, &[&[1]]));
        f.replicas
            .get("t", 0)
            .unwrap()
            .append_as_leader(&batch(), 1)
            .unwrap();
        f.apply(&[MetadataRecord::RemoveTopic { id: old }]);
        assert!(f.replicas.get("t", 0).is_none());
        assert!(f.logs.partitions().is_empty());
        let new = Uuid::new_v4();
        f.apply(&topic("t", new, &[&[1]]));
        let partition = f.replicas.get("t", 0).unwrap();
        assert_eq!(partition.topic_id, new);
        assert_eq!(partition.log_end_offset(), 0);
        assert_eq!(f.image.offset(), Offset(2));
    }
}
