//! A cluster of real broker processes on loopback: controller voters (combined
//! mode) and broker-only nodes, each with its own client and controller port
//! and data directory, all with the same `cluster.id` and `--controller-voters`.
//!
//! Tests observe the cluster through Metadata, normalised into a
//! [`ClusterView`] so that the answers of different brokers compare with `==`,
//! and wait on conditions over it with [`Cluster::wait_for`]. Every process is
//! killed when the `Cluster` is dropped, also when a test panics.
//!
//! [`Cluster::start_on`] runs the same cluster on a private [`Network`]
//! instead, node `n` in host `n`'s namespace, so that fault tests can cut its
//! links (see [`crate::netns`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

use crate::netns::Network;
use crate::{BrokerProcess, RawConnection, BROKER_START_TIMEOUT, BROKER_STOP_TIMEOUT};

/// How long a whole cluster may take to start: every node registered and unfenced.
pub const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a start is retried when a port picked for it was taken meanwhile
/// (by a test running in parallel).
const START_ATTEMPTS: usize = 3;
/// How often conditions on Metadata are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The Metadata version the harness asks with (the one with `controller_id`,
/// leader epochs and topic ids, before flexible-version tagged-field changes matter).
const METADATA_VERSION: i16 = 12;
/// The cluster id every node of a harness cluster is given.
const CLUSTER_ID: &str = "harness-cluster";
/// The failure detection the cluster tests use: a broker silent for 3 s is
/// fenced, and a live one heartbeats ten times per session.
pub const FAST_FAILURE_SETTINGS: &[&str] = &[
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=300",
];
/// The client port of a node in a network namespace, where it has the
/// namespace's ports to itself.
const NAMESPACE_CLIENT_PORT: u16 = 9092;
/// The controller port of a node in a network namespace.
const NAMESPACE_CONTROLLER_PORT: u16 = 9093;

struct Node {
    process: BrokerProcess,
    controller_addr: String,
    voter: bool,
}

/// A running cluster. Node ids are 1..=voters for the voters, then the
/// broker-only nodes, then nodes added later.
pub struct Cluster {
    // Declared before `dir` so the processes die before their data dirs go.
    nodes: BTreeMap<i32, Node>,
    // After `nodes`: the namespaces are removed once their processes are dead.
    network: Option<Network>,
    voters: String,
    settings: Vec<String>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `voters` combined nodes and `broker_only` broker-only nodes, each
    /// with `--set` of every `KEY=VALUE` in `settings`, and waits until every
    /// node serves clients (has logged `listening on`).
    pub fn start(voters: usize, broker_only: usize, settings: &[&str]) -> anyhow::Result<Cluster> {
        assert!(voters >= 1, "a cluster needs at least one controller voter");
        let mut attempt = 1;
        loop {
            match Self::try_start(voters, broker_only, settings) {
                Ok(cluster) => return Ok(cluster),
                Err(e) if attempt < START_ATTEMPTS && is_port_conflict(&e) => {
                    eprintln!("harness: cluster start attempt {attempt} lost a port race, retrying: {e:#}");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts the cluster of [`Cluster::start`] on `network`: node `n` runs
    /// in host `n`'s namespace and listens on that host's address, so
    /// `network` needs a host per node. The cluster owns the network and
    /// removes it when dropped; [`Cluster::network`] cuts and heals its links.
    pub fn start_on(
        network: Network,
        voters: usize,
        broker_only: usize,
        settings: &[&str],
    ) -> anyhow::Result<Cluster> {
        assert!(voters >= 1, "a cluster needs at least one controller voter");
        let count = voters + broker_only;
        assert!(
            network.hosts() >= count,
            "{count} nodes need as many hosts, the network has {}",
            network.hosts()
        );
        let addrs = (1..=count)
            .map(|host| {
                let ip = network.host_addr(host);
                (
                    format!("{ip}:{NAMESPACE_CLIENT_PORT}"),
                    format!("{ip}:{NAMESPACE_CONTROLLER_PORT}"),
                )
            })
            .collect();
        Self::start_at(addrs, Some(network), voters, settings)
    }

    fn try_start(voters: usize, broker_only: usize, settings: &[&str]) -> anyhow::Result<Cluster> {
        let count = voters + broker_only;
        let ports = free_ports(2 * count)?;
        let addrs = (0..count)
            .map(|i| {
                (
                    format!("127.0.0.1:{}", ports[2 * i]),
                    format!("127.0.0.1:{}", ports[2 * i + 1]),
                )
            })
            .collect();
        Self::start_at(addrs, None, voters, settings)
    }

    /// Starts node `i + 1` on `addrs[i]` (client, controller), the first
    /// `voters` of them voters, and waits until all serve.
    fn start_at(
        addrs: Vec<(String, String)>,
        network: Option<Network>,
        voters: usize,
        settings: &[&str],
    ) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let controller_addr = |i: usize| addrs[i].1.clone();
        let voter_list = (0..voters)
            .map(|i| format!("{}@{}", i + 1, controller_addr(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            network,
            voters: voter_list,
            settings: settings.iter().map(|s| s.to_string()).collect(),
            dir,
        };
        for (i, (client_addr, controller_addr)) in addrs.iter().enumerate() {
            let id = i as i32 + 1;
            cluster.launch(id, client_addr, controller_addr, i < voters)?;
        }
        let ids: Vec<i32> = cluster.nodes.keys().copied().collect();
        cluster.wait_serving(&ids, CLUSTER_START_TIMEOUT)?;
        Ok(cluster)
    }

    /// Starts node `id` without waiting for it.
    fn launch(
        &mut self,
        id: i32,
        client_addr: &str,
        controller_addr: &str,
        voter: bool,
    ) -> anyhow::Result<()> {
        let data_dir = self.data_dir(id);
        std::fs::create_dir_all(&data_dir)?;
        let mut args = vec![
            "--node-id".to_string(),
            id.to_string(),
            "--controller-listen".to_string(),
            controller_addr.to_string(),
            "--controller-voters".to_string(),
            self.voters.clone(),
            "--set".to_string(),
            format!("cluster.id={CLUSTER_ID}"),
        ];
        for setting in &self.settings {
            args.push("--set".to_string());
            args.push(setting.clone());
        }
        let wrapper = match &self.network {
            Some(network) => network.exec_prefix(id as usize),
            None => Vec::new(),
        };
        let process = BrokerProcess::launch_wrapped(&wrapper, &data_dir, client_addr, &args)?;
        self.nodes.insert(
            id,
            Node {
                process,
                controller_addr: controller_addr.to_string(),
                voter,
            },
        );
        Ok(())
    }

    /// The network the cluster runs on; panics for a cluster on loopback.
    pub fn network(&self) -> &Network {
        self.network
            .as_ref()
            .expect("a cluster started with Cluster::start_on")
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: i32) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// Waits until each of `ids` serves; fails at once, with its output, when
    /// one of them exits.
    fn wait_serving(&mut self, ids: &[i32], timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all_serving = true;
            for id in ids {
                let node = self.nodes.get_mut(id).context("unknown node")?;
                if let Some(code) = node.process.exit_code() {
                    bail!(
                        "node {id} exited with code {code} before serving; output:\n{}",
                        node.process.output()
                    );
                }
                all_serving &= node.process.is_serving();
            }
            if all_serving {
                return Ok(());
            }
            if Instant::now() > deadline {
                let waiting: Vec<String> = ids
                    .iter()
                    .filter(|id| !self.nodes[id].process.is_serving())
                    .map(|id| format!("node {id}:\n{}", self.nodes[id].process.output()))
                    .collect();
                bail!(
                    "not every node served within {timeout:?}; still waiting for:\n{}",
                    waiting.join("\n")
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Every node id, stopped or not.
    pub fn node_ids(&self) -> Vec<i32> {
        self.nodes.keys().copied().collect()
    }

    /// The nodes the harness has not stopped.
    pub fn running_ids(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|(_, node)| node.process.is_started())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The controller voters' ids.
    pub fn voter_ids(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|(_, node)| node.voter)
            .map(|(id, _)| *id)
            .collect()
    }

    fn node(&self, id: i32) -> &Node {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    fn node_mut(&mut self, id: i32) -> &mut Node {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    /// The node's client address, `127.0.0.1:PORT`.
    pub fn client_addr(&self, id: i32) -> String {
        self.node(id).process.addr.clone()
    }

    /// The node's controller listener address.
    pub fn controller_addr(&self, id: i32) -> String {
        self.node(id).controller_addr.clone()
    }

    /// The client addresses of the running nodes, comma-separated, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.running_ids()
            .into_iter()
            .map(|id| self.client_addr(id))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The process id of running node `id`.
    pub fn pid(&self, id: i32) -> u32 {
        self.node(id).process.pid()
    }

    /// Everything node `id` has printed (since its last start).
    pub fn output(&self, id: i32) -> String {
        self.node(id).process.output()
    }

    /// SIGKILL of node `id`: a crash, with no controlled shutdown.
    pub fn kill9(&mut self, id: i32) {
        self.node_mut(id)
            .process
            .kill9()
            .unwrap_or_else(|e| panic!("kill -9 of node {id}: {e:#}"));
    }

    /// SIGSTOP of node `id`: it stays alive but does nothing (a long GC pause,
    /// a stalled VM) until [`Cluster::resume`].
    pub fn pause(&self, id: i32) {
        self.signal(id, libc::SIGSTOP);
        // kill(2) only queues the signal: a broker running on the other core
        // may serve requests for a moment longer. Return once it is stopped,
        // so that what a test sends next waits in its socket.
        let pid = self.pid(id);
        let stopped = crate::wait_until(BROKER_STOP_TIMEOUT, || {
            let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                return false;
            };
            threads.filter_map(Result::ok).all(|thread| {
                std::fs::read_to_string(thread.path().join("stat"))
                    .ok()
                    .and_then(|stat| {
                        // The state follows the command name, which is in parentheses.
                        stat.rsplit_once(") ")?.1.chars().next()
                    })
                    .is_some_and(|state| state == 'T' || state == 't')
            })
        });
        assert!(stopped, "node {id} (pid {pid}) stopped after SIGSTOP");
    }

    /// SIGCONT of a node paused by [`Cluster::pause`].
    pub fn resume(&self, id: i32) {
        self.signal(id, libc::SIGCONT);
    }

    fn signal(&self, id: i32, signal: i32) {
        let pid = self.pid(id) as i32;
        // SAFETY: kill(2) on the pid of a child we own has no memory effects.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "signal {signal} to node {id} (pid {pid})");
    }

    /// SIGTERM of node `id` (a controlled shutdown); returns its exit code.
    pub fn terminate(&mut self, id: i32) -> i32 {
        self.node_mut(id)
            .process
            .terminate()
            .unwrap_or_else(|e| panic!("SIGTERM of node {id}: {e:#}"))
    }

    /// Starts stopped node `id` again with its ports and data dir, and waits
    /// until it serves (registered again and unfenced).
    pub fn restart(&mut self, id: i32) {
        let output = self.output(id);
        self.node_mut(id).process.restart().unwrap_or_else(|e| {
            panic!("restart of node {id}: {e:#}\nits output before:\n{output}")
        });
    }

    /// Starts one more broker-only node, joining the running cluster with the
    /// same voters, and waits until it serves; returns its id.
    pub fn add_broker(&mut self) -> i32 {
        assert!(
            self.network.is_none(),
            "adding a broker to a cluster on a network is not supported"
        );
        let id = self.nodes.keys().max().map_or(1, |max| max + 1);
        let mut attempt = 1;
        loop {
            let result = free_ports(2).and_then(|ports| {
                self.launch(
                    id,
                    &format!("127.0.0.1:{}", ports[0]),
                    &format!("127.0.0.1:{}", ports[1]),
                    false,
                )?;
                self.wait_serving(&[id], BROKER_START_TIMEOUT)
            });
            match result {
                Ok(()) => return id,
                Err(e) if attempt < START_ATTEMPTS && is_port_conflict(&e) => {
                    eprintln!("harness: adding node {id} lost a port race, retrying: {e:#}");
                    self.nodes.remove(&id);
                    let _ = std::fs::remove_dir_all(self.data_dir(id));
                    attempt += 1;
                }
                Err(e) => panic!("adding broker-only node {id}: {e:#}"),
            }
        }
    }

    /// Metadata (all topics) as node `id` answers it.
    pub fn metadata(&self, id: i32) -> anyhow::Result<MetadataResponse> {
        let mut conn = RawConnection::connect(&self.client_addr(id))
            .with_context(|| format!("connect to node {id}"))?;
        let request = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        conn.call(ApiKey::Metadata, METADATA_VERSION, &request)
    }

    /// Node `id`'s Metadata answer, normalised.
    pub fn view(&self, id: i32) -> anyhow::Result<ClusterView> {
        Ok(ClusterView::from_response(&self.metadata(id)?))
    }

    /// Polls node `id`'s Metadata until `condition` holds and returns that
    /// answer; panics after `timeout` with `description` and the last answer seen.
    pub fn wait_for(
        &self,
        id: i32,
        description: &str,
        timeout: Duration,
        mut condition: impl FnMut(&ClusterView) -> bool,
    ) -> ClusterView {
        let deadline = Instant::now() + timeout;
        let mut last: String;
        loop {
            match self.view(id) {
                Ok(view) if condition(&view) => return view,
                Ok(view) => last = view.to_string(),
                Err(e) => last = format!("error: {e:#}"),
            }
            if Instant::now() > deadline {
                panic!("{description}: not within {timeout:?}; node {id}'s last Metadata:\n{last}");
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Polls every running node until all give the same Metadata answer and
    /// `condition` holds on it; returns it. Panics after `timeout` with
    /// `description` and the last answer of each node.
    pub fn wait_for_agreement(
        &self,
        description: &str,
        timeout: Duration,
        mut condition: impl FnMut(&ClusterView) -> bool,
    ) -> ClusterView {
        let deadline = Instant::now() + timeout;
        loop {
            let views: Vec<(i32, anyhow::Result<ClusterView>)> = self
                .running_ids()
                .into_iter()
                .map(|id| (id, self.view(id)))
                .collect();
            if let Some(Ok(first)) = views.first().map(|(_, v)| v) {
                let agree = views
                    .iter()
                    .all(|(_, v)| matches!(v, Ok(view) if view == first));
                if agree && condition(first) {
                    return first.clone();
                }
            }
            if Instant::now() > deadline {
                let last: Vec<String> = views
                    .iter()
                    .map(|(id, v)| match v {
                        Ok(view) => format!("node {id}:\n{view}"),
                        Err(e) => format!("node {id}: error: {e:#}"),
                    })
                    .collect();
                panic!(
                    "{description}: not within {timeout:?}; last Metadata of each node:\n{}",
                    last.join("\n")
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// CreateTopics (v7) through node `via` of `topic` with one partition on
    /// exactly `replicas`, the first of which leads; panics on an error code.
    pub fn create_topic_on(&self, via: i32, topic: &str, replicas: &[i32]) {
        use protocol::messages::create_topics_request::{
            CreatableReplicaAssignment, CreatableTopic,
        };
        use protocol::messages::{BrokerId, CreateTopicsRequest, CreateTopicsResponse, TopicName};
        let mut conn = RawConnection::connect(&self.client_addr(via))
            .unwrap_or_else(|e| panic!("connect to node {via}: {e:#}"));
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(protocol::StrBytes::from_string(
                    topic.to_string(),
                )))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(vec![CreatableReplicaAssignment::default()
                    .with_partition_index(0)
                    .with_broker_ids(
                        replicas.iter().map(|b| BrokerId(*b)).collect(),
                    )])])
            .with_timeout_ms(5000);
        let response: CreateTopicsResponse = conn
            .call(ApiKey::CreateTopics, 7, &request)
            .unwrap_or_else(|e| panic!("CreateTopics through node {via}: {e:#}"));
        assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0]);
    }

    /// CreateTopics (v7) through node `id`; returns the topic's error code.
    pub fn create_topic(
        &self,
        id: i32,
        name: &str,
        partitions: i32,
        replication_factor: i16,
    ) -> anyhow::Result<i16> {
        use protocol::messages::create_topics_request::CreatableTopic;
        use protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
        let mut conn = RawConnection::connect(&self.client_addr(id))
            .with_context(|| format!("connect to node {id}"))?;
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(protocol::StrBytes::from_string(name.into())))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)])
            .with_timeout_ms(5000);
        let response: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 7, &request)?;
        let topic = response.topics.first().context("no topic in the answer")?;
        Ok(topic.error_code)
    }
}

/// `count` distinct free loopback ports. Each is bound to port 0 and released
/// only once all are picked, so the kernel cannot hand out one twice; another
/// process may still take one before the broker binds it, which the start
/// detects and retries.
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

fn is_port_conflict(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("Address already in use") || text.contains("AddrInUse")
}

/// One broker's Metadata answer, normalised so that answers compare with `==`:
/// brokers and partitions sorted, topics by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    /// The live (unfenced) brokers: id to `host:port`.
    pub brokers: BTreeMap<i32, String>,
    /// Topics answered without an error, each with its partitions in order.
    pub topics: BTreeMap<String, Vec<PartitionView>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub partition: i32,
    pub error_code: i16,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl ClusterView {
    pub fn from_response(response: &MetadataResponse) -> ClusterView {
        let brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        let topics = response
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| {
                let name = t.name.as_ref()?.0.to_string();
                let mut partitions: Vec<PartitionView> = t
                    .partitions
                    .iter()
                    .map(|p| PartitionView {
                        partition: p.partition_index,
                        error_code: p.error_code,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                        isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                Some((name, partitions))
            })
            .collect();
        ClusterView {
            cluster_id: response.cluster_id.as_ref().map(|s| s.to_string()),
            controller_id: response.controller_id.0,
            brokers,
            topics,
        }
    }

    /// The live brokers' ids, ascending.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.brokers.keys().copied().collect()
    }

    /// The partitions of `topic`, empty if the topic is not known.
    pub fn partitions(&self, topic: &str) -> &[PartitionView] {
        self.topics.get(topic).map_or(&[], Vec::as_slice)
    }

    /// Every `(topic, partition)` that `broker` leads.
    pub fn led_by(&self, broker: i32) -> Vec<(String, i32)> {
        self.topics
            .iter()
            .flat_map(|(name, partitions)| {
                partitions
                    .iter()
                    .filter(move |p| p.leader == broker)
                    .map(move |p| (name.clone(), p.partition))
            })
            .collect()
    }

    /// Partition `partition` of `topic`; panics when absent.
    pub fn partition(&self, topic: &str, partition: i32) -> &PartitionView {
        self.partitions(topic)
            .iter()
            .find(|p| p.partition == partition)
            .unwrap_or_else(|| panic!("no partition {topic}-{partition} in:\n{self}"))
    }
}

impl fmt::Display for ClusterView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cluster {:?}, controller {}, brokers {:?}",
            self.cluster_id,
            self.controller_id,
            self.broker_ids()
        )?;
        for (name, partitions) in &self.topics {
            for p in partitions {
                writeln!(
                    f,
                    "  {name}-{}: leader {} epoch {} replicas {:?} isr {:?}{}",
                    p.partition,
                    p.leader,
                    p.leader_epoch,
                    p.replicas,
                    p.isr,
                    if p.error_code == 0 {
                        String::new()
                    } else {
                        format!(" error {}", p.error_code)
                    }
                )?;
            }
        }
        Ok(())
    }
}
