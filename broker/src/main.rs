//! The `broker` binary: parse the command line, set up logging, run.

use std::path::PathBuf;

use anyhow::Context;
use broker::config::BrokerConfig;
use clap::Parser;

/// A Kafka-compatible log broker. With no arguments: a single-node broker on
/// 127.0.0.1:9092 with its data in ./data.
#[derive(Parser, Debug)]
#[command(name = "broker", version)]
struct Cli {
    /// This broker's id.
    #[arg(long, env = "BROKER_NODE_ID")]
    node_id: Option<i32>,
    /// Where logs and checkpoints live.
    #[arg(long, env = "BROKER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (the log line says which).
    #[arg(long, env = "BROKER_LISTEN")]
    listen: Option<String>,
    /// HOST:PORT that clients are told to connect to.
    #[arg(long, env = "BROKER_ADVERTISED_LISTENER")]
    advertised_listener: Option<String>,
    /// This node's controller listener, HOST:PORT (needed in a cluster).
    #[arg(long, env = "BROKER_CONTROLLER_LISTEN")]
    controller_listen: Option<String>,
    /// The controller quorum's voters, ID@HOST:PORT,...; this node is a voter
    /// when its --node-id is listed, otherwise a broker-only node.
    #[arg(long, env = "BROKER_CONTROLLER_VOTERS")]
    controller_voters: Option<String>,
    /// A properties file (Kafka-style `key=value` lines); command-line flags win over it.
    #[arg(long, env = "BROKER_CONFIG")]
    config: Option<PathBuf>,
    /// Any config key as `KEY=VALUE`, e.g. `--set auto.create.topics.enable=false`; repeatable.
    #[arg(
        long = "set",
        value_name = "KEY=VALUE",
        env = "BROKER_SET",
        value_delimiter = ','
    )]
    settings: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let mut config = BrokerConfig::default();
    if let Some(path) = &cli.config {
        config.load_file(path)?;
    }
    for setting in &cli.settings {
        let (key, value) = setting
            .split_once('=')
            .with_context(|| format!("--set {setting:?} is not KEY=VALUE"))?;
        config.set(key.trim(), value.trim())?;
    }
    if let Some(node_id) = cli.node_id {
        config.node_id = node_id;
    }
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = &cli.listen {
        config.set("listen", listen)?;
    }
    if let Some(listen) = &cli.controller_listen {
        config.set("controller.listener", listen)?;
    }
    if let Some(voters) = &cli.controller_voters {
        config.set("controller.quorum.voters", voters)?;
    }
    if let Some(advertised) = cli.advertised_listener {
        config.advertised_listener = Some(advertised);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.worker_threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    tracing::info!(
        worker_threads = runtime.metrics().num_workers(),
        "runtime started"
    );
    runtime.block_on(broker::run(config, shutdown_signal()))
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("received SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
    }
}
