//! Connections to the brokers of one cluster and the metadata cache that says
//! which broker leads what.
//!
//! One [`Connection`] per broker address, opened on first use and replaced
//! when it breaks. Metadata refreshes ask any broker that answers: first the
//! brokers the last snapshot named, then the bootstrap servers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use protocol::messages::metadata_request::MetadataRequestTopic;
use protocol::messages::{MetadataRequest, TopicName};
use protocol::StrBytes;
use thiserror::Error;

use crate::connection::{Connection, ConnectionConfig, ConnectionError};
use crate::metadata::Metadata;

/// Where a cluster is and how to talk to it.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `host:port` of brokers to ask first; any one of them will do.
    pub bootstrap_servers: Vec<String>,
    /// Settings of each broker connection.
    pub connection: ConnectionConfig,
    /// Whether a Metadata request for an unknown topic may create it (when
    /// the broker allows auto-creation at all).
    pub allow_auto_topic_creation: bool,
}

/// Why the cluster could not be reached or asked.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterError {
    /// No bootstrap server was given.
    #[error("no bootstrap servers were given")]
    NoBootstrapServers,
    /// No broker answered.
    #[error("no broker answered (tried {tried:?}); last error: {last_error}")]
    NoBrokerReachable {
        /// The addresses tried.
        tried: Vec<String>,
        /// Why the last one failed.
        last_error: ConnectionError,
    },
    /// A broker the metadata does not name was asked for.
    #[error("broker {node_id} is not in the cluster metadata")]
    UnknownBroker {
        /// The node id asked for.
        node_id: i32,
    },
    /// A request to a broker failed.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
}

impl ClusterError {
    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClusterError::NoBootstrapServers => false,
            ClusterError::NoBrokerReachable { .. } | ClusterError::UnknownBroker { .. } => true,
            ClusterError::Connection(e) => e.is_retriable(),
        }
    }
}

/// A cluster: its connections and its metadata cache.
pub struct Cluster {
    config: ClusterConfig,
    metadata: RwLock<Arc<Metadata>>,
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    /// One lock per address, so two tasks never open two connections to the
    /// same broker and a slow connect to one broker does not hold up others.
    connecting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap_servers", &self.config.bootstrap_servers)
            .finish()
    }
}

impl Cluster {
    /// Reaches the cluster through its bootstrap servers and loads the broker
    /// list (no topics yet).
    pub async fn connect(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        if config.bootstrap_servers.is_empty() {
            return Err(ClusterError::NoBootstrapServers);
        }
        let cluster = Cluster {
            config,
            metadata: RwLock::new(Arc::new(Metadata::default())),
            connections: Mutex::new(HashMap::new()),
            connecting: Mutex::new(HashMap::new()),
        };
        cluster.refresh_metadata(&[]).await?;
        Ok(cluster)
    }

    /// The cluster's settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The current metadata snapshot.
    pub fn metadata(&self) -> Arc<Metadata> {
        self.metadata.read().expect("metadata lock").clone()
    }

    /// Asks for the metadata of `topics` (and the broker list) and merges it
    /// into the cache.
    pub async fn refresh_metadata(&self, topics: &[String]) -> Result<Arc<Metadata>, ClusterError> {
        let request = MetadataRequest::default()
            .with_topics(Some(
                topics
                    .iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect(),
            ))
            .with_allow_auto_topic_creation(self.config.allow_auto_topic_creation);
        let mut tried = Vec::new();
        let mut last_error = None;
        for addr in self.candidate_addresses() {
            let result = match self.connection_to(&addr).await {
                Ok(connection) => connection.call(&request).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(response) => {
                    let mut cache = self.metadata.write().expect("metadata lock");
                    let merged = Arc::new(cache.merged_with(&response));
                    *cache = merged.clone();
                    return Ok(merged);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "metadata request failed");
                    tried.push(addr);
                    last_error = Some(e);
                }
            }
        }
        Err(ClusterError::NoBrokerReachable {
            tried,
            last_error: last_error.unwrap_or(ConnectionError::Connect {
                addr: String::new(),
                reason: "no address to try".to_string(),
            }),
        })
    }

    /// Known brokers first (they are the live cluster), then the bootstrap list.
    fn candidate_addresses(&self) -> Vec<String> {
        let metadata = self.metadata();
        let mut brokers: Vec<_> = metadata.brokers.values().collect();
        brokers.sort_by_key(|b| b.node_id);
        let mut addresses: Vec<String> = brokers.iter().map(|b| b.addr()).collect();
        // Prefer addresses with an open connection.
        let open: Vec<String> = {
            let connections = self.connections.lock().expect("connections lock");
            addresses
                .iter()
                .filter(|a| connections.get(*a).is_some_and(|c| !c.is_closed()))
                .cloned()
                .collect()
        };
        addresses.retain(|a| !open.contains(a));
        let mut out = open;
        out.extend(addresses);
        for addr in &self.config.bootstrap_servers {
            if !out.contains(addr) {
                out.push(addr.clone());
            }
        }
        out
    }

    /// The connection to broker `node_id`, opened if needed.
    pub async fn broker_connection(&self, node_id: i32) -> Result<Arc<Connection>, ClusterError> {
        let addr = self
            .metadata()
            .brokers
            .get(&node_id)
            .map(|b| b.addr())
            .ok_or(ClusterError::UnknownBroker { node_id })?;
        Ok(self.connection_to(&addr).await?)
    }

    /// A connection to any broker that answers: an open one if there is one,
    /// else the known brokers, then the bootstrap servers, in turn. For
    /// requests any broker serves (Metadata, DescribeCluster, and the
    /// controller requests a broker forwards to its controller).
    pub async fn any_broker_connection(&self) -> Result<Arc<Connection>, ClusterError> {
        let mut tried = Vec::new();
        let mut last_error = None;
        for addr in self.candidate_addresses() {
            match self.connection_to(&addr).await {
                Ok(connection) => return Ok(connection),
                Err(e) => {
                    tried.push(addr);
                    last_error = Some(e);
                }
            }
        }
        Err(ClusterError::NoBrokerReachable {
            tried,
            last_error: last_error.unwrap_or(ConnectionError::Connect {
                addr: String::new(),
                reason: "no address to try".to_string(),
            }),
        })
    }

    /// The open connection to broker `node_id`, if there is one: never waits.
    pub fn open_broker_connection(&self, node_id: i32) -> Option<Arc<Connection>> {
        let addr = self.metadata().brokers.get(&node_id)?.addr();
        self.open_connection(&addr)
    }

    /// The connection to `addr`, opened if there is none or the last one broke.
    pub async fn connection_to(&self, addr: &str) -> Result<Arc<Connection>, ConnectionError> {
        if let Some(connection) = self.open_connection(addr) {
            return Ok(connection);
        }
        let lock = self
            .connecting
            .lock()
            .expect("connecting lock")
            .entry(addr.to_string())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        if let Some(connection) = self.open_connection(addr) {
            return Ok(connection);
        }
        let connection = Arc::new(Connection::connect(addr, &self.config.connection).await?);
        self.connections
            .lock()
            .expect("connections lock")
            .insert(addr.to_string(), connection.clone());
        Ok(connection)
    }

    fn open_connection(&self, addr: &str) -> Option<Arc<Connection>> {
        self.connections
            .lock()
            .expect("connections lock")
            .get(addr)
            .filter(|c| !c.is_closed())
            .cloned()
    }

    /// Closes every connection (outstanding requests fail).
    pub fn close(&self) {
        let connections: Vec<_> = self
            .connections
            .lock()
            .expect("connections lock")
            .drain()
            .map(|(_, c)| c)
            .collect();
        for connection in connections {
            connection.close("cluster closed");
        }
    }
}

/// A comma-separated `bootstrap.servers` list as addresses, blanks dropped.
pub fn bootstrap_list(bootstrap_servers: &str) -> Vec<String> {
    bootstrap_servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}
