//! Figures of partition replication, measured on real broker processes (a
//! benchmark, not a test): the unavailability window of a partition after
//! kill -9 of its leader (from the kill to the first `acks=all` write the
//! new leader acknowledges, over many kills), and the rate at which a
//! restarted follower catches up a gigabyte it missed.
//!
//! Usage: `replication_figures [KILLS] [CATCH_UP_MIB]` (defaults 20 and
//! 1024), with `BROKER_BIN` naming the broker binary
//! (benches/scripts/replication-figures.sh builds both in release). Prints
//! one line per figure.

use std::time::{Duration, Instant};

use tests::cluster::FAST_FAILURE_SETTINGS;
use tests::{batch_of, produce_to, Cluster, RawConnection};

/// Bound on any one wait; a figure past it is a failure, not a measurement.
const WAIT_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between write attempts while the partition has no leader.
const RETRY_INTERVAL: Duration = Duration::from_millis(10);
const TOPIC: &str = "figures";
/// Records per batch and value size in the catch-up load: 1 MB batches.
const RECORDS_PER_BATCH: usize = 1_000;
const VALUE_BYTES: usize = 1_000;

fn summary(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64;
    let p90 = samples[(samples.len() * 9 / 10).min(samples.len() - 1)];
    println!(
        "{name}: n={} min={:.0} ms median={:.0} ms mean={:.0} ms p90={:.0} ms max={:.0} ms",
        samples.len(),
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        mean,
        ms(p90),
        ms(samples[samples.len() - 1])
    );
}

fn wait(what: &str, mut condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    while !condition() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what}: not within {WAIT_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn isr_full(cluster: &Cluster, any: i32) -> bool {
    cluster.view(any).is_ok_and(|v| {
        v.partitions(TOPIC)
            .first()
            .is_some_and(|p| p.isr.len() == 3 && p.leader > 0)
    })
}

/// One `acks=all` write through the partition's current leader, as `via` knows it.
fn write_once(cluster: &Cluster, via: i32, value: &str) -> bool {
    let Ok(view) = cluster.view(via) else {
        return false;
    };
    let Some(leader) = view.partitions(TOPIC).first().map(|p| p.leader) else {
        return false;
    };
    if leader <= 0 || !cluster.running_ids().contains(&leader) {
        return false;
    }
    let Ok(mut conn) = RawConnection::connect(&cluster.client_addr(leader)) else {
        return false;
    };
    matches!(
        produce_to(&mut conn, TOPIC, 0, batch_of(&[value]), -1),
        Ok((0, _))
    )
}

fn main() -> anyhow::Result<()> {
    let kills: usize = std::env::args().nth(1).map_or(Ok(20), |a| a.parse())?;
    let catch_up_mib: usize = std::env::args().nth(2).map_or(Ok(1024), |a| a.parse())?;
    let mut settings = FAST_FAILURE_SETTINGS.to_vec();
    settings.extend(["min.insync.replicas=2", "replica.lag.time.max.ms=10000"]);
    println!(
        "settings: {} (3 voters, combined mode, loopback; a topic of 1 partition, replication factor 3)",
        settings.join(" ")
    );
    let mut cluster = Cluster::start(3, 0, &settings)?;
    anyhow::ensure!(cluster.create_topic(1, TOPIC, 1, 3)? == 0, "topic created");
    wait("the ISR full", || isr_full(&cluster, 1))?;

    // Unavailability after kill -9 of the leader.
    // A kill of the node that is also the quorum's active controller takes
    // longer (a controller election first), so those are told apart.
    let mut windows = Vec::with_capacity(kills);
    let mut with_controller = Vec::new();
    let mut without_controller = Vec::new();
    for round in 0..kills {
        let leader = cluster.view(1)?.partition(TOPIC, 0).leader;
        let via = *cluster
            .running_ids()
            .iter()
            .find(|id| **id != leader)
            .expect("another node");
        // The partition takes writes before the kill (a node that just
        // restarted may still be catching up on the metadata).
        wait("a write before the kill", || {
            write_once(&cluster, via, "before")
        })?;
        let controller = cluster.metadata(via)?.controller_id.0;
        let killed = Instant::now();
        cluster.kill9(leader);
        wait("a write acknowledged by a new leader", || {
            let written = write_once(&cluster, via, "after");
            if !written {
                std::thread::sleep(RETRY_INTERVAL);
            }
            written
        })?;
        let window = killed.elapsed();
        windows.push(window);
        let role = if controller == leader {
            with_controller.push(window);
            " (also the active controller)"
        } else {
            without_controller.push(window);
            ""
        };
        eprintln!("kill {round}: leader {leader}{role}, writes again after {window:?}");
        cluster.restart(leader);
        wait("the ISR full again", || isr_full(&cluster, via))?;
    }
    summary(
        "unavailability after kill -9 of the leader (kill to the first acks=all write acknowledged)",
        &mut windows,
    );
    for (name, samples) in [
        (
            "of these, kills of a leader that was also the active controller",
            &mut with_controller,
        ),
        (
            "of these, kills of a leader that was not the controller",
            &mut without_controller,
        ),
    ] {
        if !samples.is_empty() {
            summary(name, samples);
        }
    }

    // A follower catching up what it missed.
    let leader = cluster.view(1)?.partition(TOPIC, 0).leader;
    let follower = *cluster
        .running_ids()
        .iter()
        .find(|id| **id != leader)
        .expect("a follower");
    cluster.terminate(follower);
    let value = "v".repeat(VALUE_BYTES);
    let values: Vec<&str> = (0..RECORDS_PER_BATCH).map(|_| value.as_str()).collect();
    let mut conn = RawConnection::connect(&cluster.client_addr(leader))?;
    let mut bytes = 0usize;
    let started = Instant::now();
    while bytes < catch_up_mib << 20 {
        let batch = batch_of(&values);
        bytes += batch.len();
        let (code, _) = produce_to(&mut conn, TOPIC, 0, batch, 1)?;
        anyhow::ensure!(code == 0, "produce answered {code}");
    }
    println!(
        "load while the follower was down: {:.0} MiB in {:.1} s (acks=1, one connection, 1 MB batches)",
        bytes as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );
    let restarted = Instant::now();
    cluster.restart(follower);
    let serving = Instant::now();
    wait("the follower back in the ISR", || {
        isr_full(&cluster, leader)
    })?;
    let caught_up = serving.elapsed();
    println!(
        "follower catch-up: {:.0} MiB in {:.1} s from serving to back in the ISR = {:.0} MB/s ({:.1} s restart before that)",
        bytes as f64 / (1 << 20) as f64,
        caught_up.as_secs_f64(),
        bytes as f64 / 1e6 / caught_up.as_secs_f64(),
        serving.duration_since(restarted).as_secs_f64()
    );
    Ok(())
}
