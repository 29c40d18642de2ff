//! Figures of the cluster's control plane, measured on real broker
//! processes (a benchmark, not a test): the time to elect a new controller
//! after kill -9 of the active one, the time from a broker's kill -9 to its
//! partitions' new leaders in Metadata, the time and the controller's memory
//! to create 10,000 partitions (replication factor 3) on 3 nodes, and the
//! metadata log's size and a restart's time after that.
//!
//! Usage: `cluster_figures [ROUNDS]` (default 5), with `BROKER_BIN` naming
//! the broker binary (benches/scripts/cluster-figures.sh builds both in
//! release). Prints one line per figure.

use std::time::{Duration, Instant};

use tests::cluster::FAST_FAILURE_SETTINGS;
use tests::Cluster;

/// Bound on any one wait; a figure past it is a failure, not a measurement.
const WAIT_TIMEOUT: Duration = Duration::from_secs(60);
const TOPICS: usize = 100;
const PARTITIONS_PER_TOPIC: i32 = 100;

fn summary(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64;
    println!(
        "{name}: n={} min={:.0} ms median={:.0} ms mean={:.0} ms max={:.0} ms",
        samples.len(),
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        mean,
        ms(samples[samples.len() - 1])
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let meta = e.metadata().ok();
                    match meta {
                        Some(m) if m.is_dir() => dir_bytes(&e.path()),
                        Some(m) => m.len(),
                        None => 0,
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(5), |a| a.parse())?;
    println!(
        "settings: {} (3 voters, combined mode, loopback)",
        FAST_FAILURE_SETTINGS.join(" ")
    );
    let mut cluster = Cluster::start(3, 0, FAST_FAILURE_SETTINGS)?;
    let any_running = |cluster: &Cluster, not: i32| {
        *cluster
            .running_ids()
            .iter()
            .find(|&&id| id != not)
            .expect("two nodes keep running")
    };

    // Controller failover.
    let mut elections = Vec::new();
    for _ in 0..rounds {
        let view = cluster.wait_for_agreement("a controller", WAIT_TIMEOUT, |v| {
            v.controller_id >= 0 && v.broker_ids().len() == 3
        });
        let killed = view.controller_id;
        let observer = any_running(&cluster, killed);
        let started = Instant::now();
        cluster.kill9(killed);
        cluster.wait_for(observer, "a new controller", WAIT_TIMEOUT, |v| {
            v.controller_id >= 0 && v.controller_id != killed
        });
        elections.push(started.elapsed());
        cluster.restart(killed);
    }
    summary(
        "new controller after kill -9 of the active one",
        &mut elections,
    );

    // Partition leader failover.
    cluster.create_topic(1, "figures", 12, 3)?;
    let mut failovers = Vec::new();
    for _ in 0..rounds {
        let view = cluster.wait_for_agreement("all brokers lead", WAIT_TIMEOUT, |v| {
            v.broker_ids().len() == 3 && !v.partitions("figures").is_empty()
        });
        let victim = view
            .broker_ids()
            .into_iter()
            .find(|&b| b != view.controller_id && !view.led_by(b).is_empty())
            .unwrap_or_else(|| {
                view.broker_ids()
                    .into_iter()
                    .find(|&b| b != view.controller_id)
                    .expect("a non-controller broker")
            });
        let observer = any_running(&cluster, victim);
        let started = Instant::now();
        cluster.kill9(victim);
        cluster.wait_for(observer, "new leaders", WAIT_TIMEOUT, |v| {
            v.led_by(victim).is_empty() && !v.broker_ids().contains(&victim)
        });
        failovers.push(started.elapsed());
        cluster.restart(victim);
    }
    summary(
        "partitions re-led in Metadata after kill -9 of their leader",
        &mut failovers,
    );

    // 10,000 partitions.
    let view =
        cluster.wait_for_agreement("three brokers", WAIT_TIMEOUT, |v| v.broker_ids().len() == 3);
    let controller = view.controller_id;
    let rss_before = rss_kib(cluster.pid(controller));
    let started = Instant::now();
    for t in 0..TOPICS {
        let code =
            cluster.create_topic(controller, &format!("many-{t}"), PARTITIONS_PER_TOPIC, 3)?;
        anyhow::ensure!(code == 0, "creating many-{t} answered {code}");
    }
    let created = started.elapsed();
    let total = TOPICS as i32 * PARTITIONS_PER_TOPIC;
    println!(
        "created {total} partitions (replication factor 3) in {TOPICS} CreateTopics: {:.1} s ({:.0} partitions/s)",
        created.as_secs_f64(),
        f64::from(total) / created.as_secs_f64()
    );
    let observer = any_running(&cluster, controller);
    let agreed = Instant::now();
    cluster.wait_for(observer, "every partition everywhere", WAIT_TIMEOUT, |v| {
        v.partitions(&format!("many-{}", TOPICS - 1)).len() == PARTITIONS_PER_TOPIC as usize
    });
    println!(
        "last topic visible on another broker {:.0} ms after the last create",
        agreed.elapsed().as_secs_f64() * 1000.0
    );
    let rss_after = rss_kib(cluster.pid(controller));
    println!(
        "controller resident memory: {} MiB before, {} MiB after (+{} MiB)",
        rss_before / 1024,
        rss_after / 1024,
        rss_after.saturating_sub(rss_before) / 1024
    );
    for id in cluster.running_ids() {
        println!(
            "node {id}: metadata log dir {} KiB",
            dir_bytes(&cluster.data_dir(id).join("__cluster_metadata-0")) / 1024
        );
    }
    let restarted = view
        .broker_ids()
        .into_iter()
        .find(|&b| b != controller)
        .expect("a non-controller broker");
    cluster.terminate(restarted);
    let started = Instant::now();
    cluster.restart(restarted);
    println!(
        "restart of node {restarted} after 10,000 partitions: serving after {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
