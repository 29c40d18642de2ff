//! A Kafka-compatible log broker.
//!
//! - [`config`]: settings, defaults and the properties-file format;
//!   [`dynamic_config`]: the settings that change at run time (dynamic broker configs).
//! - [`server`]: `listener` accepts and bounds connections, `connection` turns a
//!   socket into ordered request/response frames, `dispatch` maps an API key to
//!   a handler.
//! - [`handlers`]: one file per API family (produce, fetch, metadata, topics, groups, ...).
//! - [`group`]: the group coordinator: consumer groups and committed offsets in
//!   `__consumer_offsets` (a state machine per offsets partition, and its runtime).
//! - [`metadata`]: the metadata image (brokers, topics, partitions) built
//!   from committed records, and the deltas that drive local actions.
//! - [`controller`]: the only writer of metadata: decides requests against
//!   the image and commits records.
//! - [`replica_manager`] and [`partition`]: the partitions this broker hosts,
//!   and each one's serving state (role, leader epoch, high watermark) over its log.
//! - [`replication`]: partition replication: the leader and follower sides as
//!   state machines without I/O, and the runtime around them (replica
//!   fetchers, ISR proposals); [`peer`]: a Kafka-request connection to another node.
//! - [`topics`]: topic rules (names, configs) and topics found on disk;
//!   [`recompress`]: a topic's `compression.type` applied to produced batches.
//! - [`ids`]: newtypes for broker ids, epochs and offsets; [`errors`]: where
//!   internal errors become Kafka error codes.
//! - [`quorum`]: the replicated metadata log (openraft over a log of our
//!   storage engine), its controller listener and snapshots.
//! - [`storage`]: the segment log engine: mmap segments, indexes, recovery,
//!   retention, checkpoints.
//!
//! [`run`] starts a broker and serves until the shutdown future completes.

pub mod config;
pub mod controller;
pub mod dynamic_config;
pub mod errors;
mod fsutil;
pub mod group;
pub mod handlers;
pub mod ids;
pub mod lease;
pub mod lifecycle;
pub mod metadata;
pub mod partition;
pub mod peer;
pub mod producer_ids;
pub mod producer_state;
pub mod quorum;
pub mod recompress;
pub mod replica_manager;
pub mod replication;
pub mod server;
pub mod storage;
pub mod topics;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::controller::{Controller, ControllerConfig};
use crate::group::GroupCoordinator;
use crate::ids::BrokerId;
use crate::metadata::{MetadataImage, MetadataLoader, MetadataPublisher};
use crate::producer_ids::ProducerIdAllocator;
use crate::quorum::{Quorum, QuorumConfig};
use crate::replica_manager::ReplicaManager;
use crate::storage::LogManager;

/// The name of the listener clients connect to.
pub const CLIENT_LISTENER_NAME: &str = "PLAINTEXT";

/// Shared state of a running broker.
pub struct Broker {
    /// The configuration the broker started with; see [`Broker::effective_config`]
    /// for the settings dynamic broker configs may change.
    pub config: BrokerConfig,
    /// `config` with the dynamic broker configs applied.
    effective_config: Arc<std::sync::RwLock<Arc<BrokerConfig>>>,
    pub cluster_id: String,
    pub logs: Arc<LogManager>,
    /// The cluster as this broker knows it; handlers read [`Broker::image`].
    pub metadata: Arc<MetadataLoader>,
    /// Where metadata changes are submitted (forwarded to the active controller).
    pub controller: Arc<Controller>,
    /// The partitions this broker hosts.
    pub replicas: Arc<ReplicaManager>,
    pub producer_ids: ProducerIdAllocator,
    /// Consumer groups and committed offsets.
    pub groups: Arc<GroupCoordinator>,
    /// What this broker has sent of throttled replicas to followers, within
    /// `leader.replication.throttled.rate` (see [`replication::throttle`]).
    pub leader_throttle: Arc<replication::throttle::SharedThrottle>,
    advertised_host: String,
    advertised_port: i32,
    /// The controller listener's bound address, in a cluster.
    controller_address: Option<SocketAddr>,
    /// This broker's epoch (the offset of its registration); -1 before it registers.
    broker_epoch: std::sync::atomic::AtomicI64,
    /// Cancelled when shutdown begins; long waits end early on it.
    pub shutdown: CancellationToken,
}

impl Broker {
    /// Opens the broker's state under `config.data_dir` (logs, the metadata
    /// quorum and its image, producer ids, groups); nothing is served to
    /// clients yet and the broker is not registered: see [`Broker::join`].
    pub async fn open(config: BrokerConfig) -> anyhow::Result<Broker> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        // Nodes started with the same voters belong to the same cluster.
        let cluster_id = config.cluster_id.clone().or_else(|| {
            (!config.controller_voters.is_empty())
                .then(|| cluster_id_of_voters(&config.controller_voters))
        });
        let cluster_id =
            load_or_write_meta(&config.data_dir, config.node_id, cluster_id.as_deref())?;
        let logs = Arc::new(
            LogManager::open(&config.data_dir, config.log.clone(), config.mappings_max)
                .context("cannot open the logs")?,
        );
        let node = BrokerId(config.node_id);
        let replicas = Arc::new(ReplicaManager::new(
            node,
            logs.clone(),
            config.log.clone(),
            config.replication,
        ));
        let groups = Arc::new(GroupCoordinator::new(
            config.groups.clone(),
            config.message_bytes_max,
        ));
        let metadata = Arc::new(MetadataLoader::default());
        let effective_config = Arc::new(std::sync::RwLock::new(Arc::new(config.clone())));
        metadata.set_publishers(vec![
            Arc::new(dynamic_config::DynamicConfigPublisher::new(
                config.clone(),
                effective_config.clone(),
                replicas.clone(),
            )) as Arc<dyn MetadataPublisher>,
            replicas.clone() as Arc<dyn MetadataPublisher>,
            Arc::new(GroupsPublisher {
                groups: groups.clone(),
                replicas: replicas.clone(),
            }),
        ]);
        let shutdown = CancellationToken::new();
        let clustered = !config.controller_voters.is_empty();
        // Without cluster flags: a quorum of this process alone, no listener.
        let voters = if clustered {
            config.controller_voters.clone()
        } else {
            BTreeMap::from([(config.node_id, config.listen)])
        };
        let listener = match config.controller_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for the controller"))?,
            ),
            None => None,
        };
        let controller_address = listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let quorum_config = QuorumConfig::new(
            config.node_id,
            voters.clone(),
            controller_address,
            config.data_dir.join(quorum::METADATA_LOG_DIR_NAME),
        );
        let slot: controller::service::ControllerSlot = Default::default();
        let quorum = Quorum::start_on(
            quorum_config,
            listener,
            metadata.clone(),
            Some(controller::service::frame_handler(slot.clone())),
            shutdown.clone(),
        )
        .await
        .context("cannot start the metadata quorum")?;
        let controller = Arc::new(Controller::new(
            ControllerConfig {
                default_partitions: config.default_partitions,
                default_replication_factor: config.default_replication_factor,
                session_timeout_ms: config.broker_session_timeout_ms,
                voters,
                leader_rebalance_interval: config
                    .leader_rebalance_interval_ms
                    .map(Duration::from_millis),
                unclean_leader_election: config.replication.unclean_leader_election,
            },
            metadata.clone(),
            quorum,
        ));
        let _ = slot.set(Arc::downgrade(&controller));
        // The active controller's session timer; it acts only while this
        // node leads the quorum, and stops with the broker.
        tokio::spawn(controller.clone().run_sessions(shutdown.clone()));
        if !clustered {
            adopt_legacy_topics(&controller, &logs, node).await?;
        }
        let (advertised_host, advertised_port) = match &config.advertised_listener {
            Some(addr) => split_host_port(addr)?,
            None => (
                config.listen.ip().to_string(),
                i32::from(config.listen.port()),
            ),
        };
        Ok(Broker {
            config,
            effective_config,
            cluster_id,
            logs,
            metadata,
            controller,
            replicas,
            producer_ids: ProducerIdAllocator::default(),
            groups,
            leader_throttle: Arc::default(),
            broker_epoch: std::sync::atomic::AtomicI64::new(-1),
            advertised_host,
            advertised_port,
            controller_address,
            shutdown,
        })
    }

    /// The broker's settings now: its configuration with the dynamic broker
    /// configs committed so far applied over it.
    pub fn effective_config(&self) -> Arc<BrokerConfig> {
        self.effective_config
            .read()
            .expect("effective config lock")
            .clone()
    }

    /// Registers with the controller with the client address `host:port`
    /// and waits until this broker is caught up and unfenced; returns the
    /// registration and the broker epoch.
    pub async fn join(
        &self,
        host: &str,
        port: i32,
    ) -> anyhow::Result<(lifecycle::Registration, i64)> {
        let registration = lifecycle::registration(self, host, port, uuid::Uuid::new_v4());
        let epoch = lifecycle::join(self, registration.clone(), &self.shutdown).await?;
        Ok((registration, epoch))
    }

    /// This broker's epoch, as its last registration got it.
    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn set_broker_epoch(&self, epoch: i64) {
        self.broker_epoch
            .store(epoch, std::sync::atomic::Ordering::Release);
    }

    pub fn advertised(&self) -> (String, i32) {
        (self.advertised_host.clone(), self.advertised_port)
    }

    pub fn node_id(&self) -> BrokerId {
        BrokerId(self.config.node_id)
    }

    /// This node's controller listener, in a cluster.
    pub fn controller_address(&self) -> Option<SocketAddr> {
        self.controller_address
    }

    /// The cluster as of the last metadata change applied here.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }
}

/// Bound on a controlled shutdown (leaderships moved away) before stopping anyway.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the single-node quorum may take to elect itself at start.
const QUORUM_START_TIMEOUT: Duration = Duration::from_secs(30);

/// The single-node default: waits until this node leads its one-voter
/// quorum and every committed entry is applied; then, on a fresh metadata
/// log, adopts the topics the data dir holds (a data dir written before the
/// metadata log existed).
async fn adopt_legacy_topics(
    controller: &Controller,
    logs: &LogManager,
    node: BrokerId,
) -> anyhow::Result<()> {
    let mut leader = controller.quorum().watch_leader();
    tokio::time::timeout(
        QUORUM_START_TIMEOUT,
        leader.wait_for(|l| *l == Some(node.0)),
    )
    .await
    .context("the metadata quorum elected no leader in time")?
    .context("the metadata quorum stopped")?;
    // An empty entry: once it is applied, so is everything before it.
    let marker = controller
        .commit(Vec::new())
        .await
        .map_err(|e| anyhow::anyhow!("the metadata log does not commit: {}", e.message))?;
    let image = controller.metadata().image();
    if image.topic_count() == 0 && image.brokers().next().is_none() {
        let mut adopted = topics::bootstrap_records(logs, node)?;
        if let Some(next) = producer_ids::legacy_next_producer_id(logs.data_dir())? {
            adopted.push(metadata::MetadataRecord::ProducerIds {
                broker: node,
                next_producer_id: next,
            });
        }
        if !adopted.is_empty() {
            tracing::info!(records = adopted.len(), %marker, "adopting the topics of a data dir written before the metadata log");
            controller
                .commit(adopted)
                .await
                .map_err(|e| anyhow::anyhow!("cannot adopt the topics on disk: {}", e.message))?;
        }
    }
    Ok(())
}

/// Tells the group coordinator when the offsets topic's partitions arrive.
struct GroupsPublisher {
    groups: Arc<GroupCoordinator>,
    replicas: Arc<ReplicaManager>,
}

impl MetadataPublisher for GroupsPublisher {
    fn publish(&self, _image: &Arc<MetadataImage>, delta: &metadata::MetadataDelta) {
        if let Some(topic) = delta
            .created_topics
            .iter()
            .find(|t| t.name == group::OFFSETS_TOPIC)
        {
            let local = self.replicas.topic_partitions(group::OFFSETS_TOPIC);
            self.groups
                .offsets_topic_created(topic.partitions.len(), &local);
            return;
        }
        // Leadership of an offsets partition moved: its groups load where it leads now.
        for change in &delta.partitions {
            if change.topic.name != group::OFFSETS_TOPIC || change.previous.is_none() {
                continue;
            }
            let leads = self
                .replicas
                .get(group::OFFSETS_TOPIC, change.index)
                .is_some_and(|p| p.is_leader());
            let led = change
                .previous
                .as_ref()
                .is_some_and(|p| p.leader == self.replicas.node());
            if leads && !led {
                self.groups.loading(change.index);
                let groups = self.groups.clone();
                let index = change.index;
                // Loading reads the partition's log: off the metadata path.
                std::thread::spawn(move || groups.become_leader(index));
            } else if led && !leads {
                self.groups.resign(change.index);
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs a broker until `shutdown` completes, then stops accepting, finishes
/// in-flight requests, flushes every log, writes checkpoints and returns.
pub async fn run(config: BrokerConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    // The logs are recovered before the port opens.
    let mut broker = Broker::open(config).await?;
    let listener = TcpListener::bind(broker.config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", broker.config.listen))?;
    let bound = listener.local_addr()?;
    (broker.advertised_host, broker.advertised_port) = match &broker.config.advertised_listener {
        Some(addr) => split_host_port(addr)?,
        None if bound.ip().is_unspecified() => ("127.0.0.1".to_string(), i32::from(bound.port())),
        None => (bound.ip().to_string(), i32::from(bound.port())),
    };
    let broker = Arc::new(broker);
    // Clients are served once the controller has unfenced this broker.
    let (host, port) = broker.advertised();
    let joined = tokio::select! {
        joined = broker.join(&host, port) => Some(joined?),
        _ = &mut shutdown => None,
    };
    let Some((registration, epoch)) = joined else {
        tracing::info!("shut down before joining the cluster");
        broker.shutdown.cancel();
        broker.controller.quorum().clone().shutdown().await;
        let logs = broker.logs.clone();
        tokio::task::spawn_blocking(move || logs.shutdown()).await??;
        return Ok(());
    };
    let heartbeats_stop = CancellationToken::new();
    let heartbeats = tokio::spawn(lifecycle::heartbeat_loop(
        broker.clone(),
        epoch,
        registration,
        heartbeats_stop.clone(),
    ));
    tracing::info!(
        node_id = broker.config.node_id,
        cluster_id = %broker.cluster_id,
        data_dir = %broker.config.data_dir.display(),
        topics = broker.image().topic_count(),
        broker_epoch = epoch,
        controller = ?broker.controller_address(),
        "listening on {bound}"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let background = spawn_background(broker.clone());
    let replication = replication::runtime::spawn(broker.clone(), broker.shutdown.clone());
    let group_timers = GroupCoordinator::start(&broker);
    let server = tokio::spawn(server::listener::serve(listener, broker.clone(), stop_rx));
    (&mut shutdown).await;
    tracing::info!("shutting down");
    // Leaderships move away first, while this broker still serves.
    heartbeats_stop.cancel();
    let _ = heartbeats.await;
    lifecycle::controlled_shutdown(&broker, epoch, CONTROLLED_SHUTDOWN_TIMEOUT).await;
    broker.shutdown.cancel();
    let _ = stop_tx.send(true);
    server.await.context("server task failed")??;
    // The metadata log closes cleanly; its token was cancelled above.
    broker.controller.quorum().clone().shutdown().await;
    background.abort();
    let _ = background.await;
    for task in replication {
        let _ = task.await;
    }
    // The timer task ends on the shutdown token; abort covers a blocking tick.
    group_timers.abort();
    let _ = group_timers.await;
    let shutting_down = broker.clone();
    tokio::task::spawn_blocking(move || {
        for partition in shutting_down.replicas.all() {
            partition.snapshot_producer_state();
        }
        if let Err(e) = shutting_down.replicas.write_high_watermarks() {
            tracing::error!(error = %e, "cannot checkpoint the high watermarks");
        }
        shutting_down.logs.shutdown()
    })
    .await
    .context("shutdown task failed")?
    .context("flushing logs at shutdown")?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Periodic work: interval flushes, checkpoints, retention, log cleaning.
fn spawn_background(broker: Arc<Broker>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut flush_tick = tokio::time::interval(Duration::from_millis(
            broker.config.flush_check_interval_ms.max(1),
        ));
        let mut retention_tick = tokio::time::interval(Duration::from_millis(
            broker.config.retention_check_interval_ms.max(1),
        ));
        let mut cleaner_tick = tokio::time::interval(Duration::from_millis(
            broker.config.cleaner_interval_ms.max(1),
        ));
        flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        retention_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        cleaner_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let cleaning = Arc::new(std::sync::atomic::AtomicBool::new(false));
        loop {
            tokio::select! {
                _ = flush_tick.tick() => {
                    let logs = broker.logs.clone();
                    let result = tokio::task::spawn_blocking(move || {
                        logs.flush_due(now_ms())?;
                        logs.write_checkpoints()
                    }).await;
                    if let Ok(Err(e)) = result {
                        tracing::error!(error = %e, "periodic flush failed");
                    }
                }
                _ = retention_tick.tick() => {
                    let broker = broker.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        broker.logs.retention_pass_below(now_ms(), &|tp| high_watermark_of(&broker, tp))
                    }).await;
                }
                _ = cleaner_tick.tick() => {
                    // A cleaning can take long: it runs on its own blocking thread,
                    // not awaited here, so flushes are never delayed; one at a time.
                    use std::sync::atomic::Ordering;
                    if !cleaning.swap(true, Ordering::AcqRel) {
                        let broker = broker.clone();
                        let cleaning = cleaning.clone();
                        tokio::task::spawn_blocking(move || {
                            broker.logs.clean_pass_below(now_ms(), &|tp| high_watermark_of(&broker, tp));
                            cleaning.store(false, Ordering::Release);
                        });
                    }
                }
            }
        }
    })
}

/// A hosted partition's high watermark: where retention and compaction
/// stop. A log no partition serves (yet) is left alone.
fn high_watermark_of(broker: &Broker, tp: &storage::TopicPartition) -> i64 {
    broker
        .replicas
        .get(&tp.topic, tp.partition)
        .map_or(0, |p| p.high_watermark())
}

fn split_host_port(addr: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("advertised listener {addr:?} is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("advertised listener {addr:?} has a bad port"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), i32::from(port)))
}

/// Reads `meta.properties` (cluster id and node id), or writes it on first start.
/// A data dir written by another node id is refused: it holds another broker's data.
fn load_or_write_meta(
    data_dir: &Path,
    node_id: i32,
    cluster_id: Option<&str>,
) -> anyhow::Result<String> {
    let path = data_dir.join("meta.properties");
    if path.exists() {
        let props = config::parse_properties(&path)?;
        let stored_node: i32 = props
            .get("node.id")
            .context("meta.properties has no node.id")?
            .parse()
            .context("meta.properties has a bad node.id")?;
        anyhow::ensure!(
            stored_node == node_id,
            "data dir {} belongs to node {stored_node}, not {node_id}",
            data_dir.display()
        );
        let stored_cluster = props
            .get("cluster.id")
            .context("meta.properties has no cluster.id")?;
        if let Some(wanted) = cluster_id {
            anyhow::ensure!(
                wanted == stored_cluster,
                "data dir {} belongs to cluster {stored_cluster}, not {wanted}",
                data_dir.display()
            );
        }
        return Ok(stored_cluster.clone());
    }
    let cluster_id = cluster_id.map_or_else(
        || base64_url(uuid::Uuid::new_v4().as_bytes()),
        str::to_string,
    );
    let text = format!("version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n");
    fsutil::write_atomically(&path, text.as_bytes())?;
    Ok(cluster_id)
}

/// The cluster id of a cluster whose `cluster.id` is not set: the same on
/// every node given the same voters, in Kafka's form (16 bytes, base64).
fn cluster_id_of_voters(voters: &BTreeMap<i32, SocketAddr>) -> String {
    let text: String = voters
        .iter()
        .map(|(id, addr)| format!("{id}@{addr},"))
        .collect();
    let mut bytes = Vec::with_capacity(16);
    for seed in 0u32..4 {
        let crc = crc32c::crc32c_append(seed.wrapping_mul(0x9E37_79B9), text.as_bytes());
        bytes.extend_from_slice(&crc.to_be_bytes());
    }
    base64_url(&bytes)
}

/// Base64 (URL alphabet, no padding), the form Kafka gives cluster ids.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_look_like_kafkas() {
        // 16 bytes give 22 base64 characters, as Kafka's cluster ids have.
        let id = base64_url(uuid::Uuid::new_v4().as_bytes());
        assert_eq!(id.len(), 22);
        assert_eq!(base64_url(b"Man"), "TWFu");
        assert_eq!(base64_url(b"Ma"), "TWE");
    }

    async fn open(dir: &Path) -> Broker {
        let broker = Broker::open(BrokerConfig {
            data_dir: dir.to_path_buf(),
            ..BrokerConfig::default()
        })
        .await
        .unwrap();
        let (host, port) = broker.advertised();
        broker.join(&host, port).await.unwrap();
        broker
    }

    async fn close(broker: Broker) {
        broker.controller.quorum().clone().shutdown().await;
        let logs = broker.logs.clone();
        drop(broker);
        tokio::task::spawn_blocking(move || logs.shutdown())
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn topics_and_their_epochs_survive_a_restart_in_the_metadata_log() {
        // The metadata log, not the directories, is what a restarted broker knows.
        let dir = tempfile::tempdir().unwrap();
        let broker = open(dir.path()).await;
        let created = broker
            .controller
            .create_topic(
                controller::NewTopic {
                    name: "kept".into(),
                    partitions: 3,
                    replication_factor: 1,
                    configs: [("retention.ms".to_string(), "60000".to_string())].into(),
                    ..Default::default()
                },
                false,
            )
            .await
            .unwrap();
        let epoch_before = broker.image().broker(broker.node_id()).unwrap().epoch;
        close(broker).await;
        let broker = open(dir.path()).await;
        let image = broker.image();
        let topic = image.topic("kept").expect("the topic survives");
        assert_eq!(topic.id, created.id);
        assert_eq!(topic.partitions.len(), 3);
        assert_eq!(
            topic.configs.get("retention.ms").map(String::as_str),
            Some("60000")
        );
        assert!(broker.replicas.get("kept", 2).unwrap().is_leader());
        let epoch_after = image.broker(broker.node_id()).unwrap().epoch;
        assert!(
            epoch_after > epoch_before,
            "a restart registers anew: {epoch_before} -> {epoch_after}"
        );
        close(broker).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn producer_ids_stay_unique_across_restarts_and_past_an_older_data_dirs_block() {
        // Blocks come from the metadata log; an older data dir's block file is honoured once.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(producer_ids::LEGACY_BLOCK_FILE), "5000\n").unwrap();
        let broker = open(dir.path()).await;
        let first = broker.producer_ids.allocate(&broker).await.unwrap();
        let second = broker.producer_ids.allocate(&broker).await.unwrap();
        assert_eq!((first, second), (5000, 5001));
        close(broker).await;
        let broker = open(dir.path()).await;
        let after_restart = broker.producer_ids.allocate(&broker).await.unwrap();
        assert_eq!(after_restart, 5000 + producer_ids::PRODUCER_ID_BLOCK_SIZE);
        close(broker).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_data_dir_from_before_the_metadata_log_keeps_its_topics() {
        // Topics on disk (ids in partition.metadata, configs in topic-configs) are adopted once.
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        {
            let logs = LogManager::open(dir.path(), storage::LogConfig::default(), 64).unwrap();
            for partition in 0..2 {
                let tp = storage::TopicPartition::new("old", partition);
                logs.create_with_topic_id(&tp, storage::LogConfig::default(), id)
                    .unwrap();
            }
            logs.shutdown().unwrap();
            std::fs::write(dir.path().join("topic-configs"), "old retention.ms=1234\n").unwrap();
        }
        let broker = open(dir.path()).await;
        let image = broker.image();
        let topic = image.topic("old").expect("adopted");
        assert_eq!((topic.id, topic.partitions.len()), (id, 2));
        assert_eq!(
            topic.configs.get("retention.ms").map(String::as_str),
            Some("1234")
        );
        assert!(broker.replicas.get("old", 1).unwrap().is_leader());
        close(broker).await;
        // The second start reads the metadata log; nothing is adopted twice.
        let broker = open(dir.path()).await;
        assert_eq!(broker.image().topic("old").unwrap().id, id);
        close(broker).await;
    }

    #[test]
    fn nodes_given_the_same_voters_share_a_cluster_id() {
        // Without cluster.id, the voters name the cluster; other voters, another cluster.
        let voters = |text: &str| crate::quorum::QuorumConfig::parse_voters(text).unwrap();
        let a = cluster_id_of_voters(&voters("1@127.0.0.1:9001,2@127.0.0.1:9002"));
        assert_eq!(
            a,
            cluster_id_of_voters(&voters("2@127.0.0.1:9002,1@127.0.0.1:9001"))
        );
        assert_ne!(
            a,
            cluster_id_of_voters(&voters("1@127.0.0.1:9001,2@127.0.0.1:9003"))
        );
        assert_eq!(a.len(), 22);
    }

    #[test]
    fn data_dir_of_another_node_is_refused() {
        // Starting node 2 on node 1's data would serve the wrong broker's data.
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_write_meta(dir.path(), 1, None).unwrap();
        assert_eq!(load_or_write_meta(dir.path(), 1, None).unwrap(), id);
        assert!(load_or_write_meta(dir.path(), 2, None).is_err());
    }
}
