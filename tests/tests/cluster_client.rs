//! Our Rust client on a cluster of real processes through the loss of a
//! broker: the idempotent `acks=all` producer retries onto the new leaders
//! without a duplicate or a gap, and a group consumer follows its group to
//! a new coordinator, keeps its committed offsets and reads everything.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use client::{AutoOffsetReset, Compression, Consumer, ConsumerConfig};
use protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
use tests::cluster::FAST_FAILURE_SETTINGS;
use tests::{Cluster, RawConnection};

const TOPIC: &str = "ledger";
const GROUP: &str = "bookkeepers";
const PARTITIONS: i32 = 3;
const FIRST_WAVE: usize = 300;
const SECOND_WAVE: usize = 300;
/// Bound on consuming everything, a failover included.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(90);
const ISR_FULL_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether every offset `0..end` of every partition was processed.
fn covers(processed: &BTreeSet<(i32, i64)>, end: i64) -> bool {
    (0..PARTITIONS).all(|p| (0..end).all(|o| processed.contains(&(p, o))))
}

fn coordinator(cluster: &Cluster, via: i32) -> i32 {
    let mut conn = RawConnection::connect(&cluster.client_addr(via)).unwrap();
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    loop {
        let request = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![GROUP.into()]);
        let response: FindCoordinatorResponse =
            conn.call(ApiKey::FindCoordinator, 4, &request).unwrap();
        let found = &response.coordinators[0];
        if found.error_code == 0 {
            return found.node_id.0;
        }
        assert!(Instant::now() < deadline, "no coordinator: {found:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn our_producer_and_group_consumer_carry_on_through_kill9_of_the_groups_coordinator() {
    // The coordinator's broker also leads partitions: both the writes and the group must move.
    let mut settings = FAST_FAILURE_SETTINGS.to_vec();
    settings.extend(["min.insync.replicas=2", "replica.lag.time.max.ms=2000"]);
    let mut cluster = Cluster::start(3, 0, &settings).expect("cluster starts");
    assert_eq!(cluster.create_topic(1, TOPIC, PARTITIONS, 3).unwrap(), 0);
    cluster.wait_for_agreement("the topic with full ISRs", ISR_FULL_TIMEOUT, |v| {
        let p = v.partitions(TOPIC);
        p.len() == PARTITIONS as usize && p.iter().all(|p| p.isr.len() == 3)
    });
    let bootstrap = cluster.bootstrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        tests::produce_numbered(&bootstrap, TOPIC, PARTITIONS, FIRST_WAVE, Compression::None)
            .await
            .unwrap();
    });
    let mut config = ConsumerConfig::new(&bootstrap).with_group(GROUP);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.enable_auto_commit = false;
    config.session_timeout = Duration::from_secs(6);
    config.heartbeat_interval = Duration::from_millis(300);
    config.max_poll_records = 50;
    let consumer = runtime.block_on(async {
        let consumer = Consumer::connect(config).await.unwrap();
        consumer.subscribe(&[TOPIC]).unwrap();
        consumer
    });
    let mut processed = BTreeSet::new();
    runtime.block_on(async {
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        while processed.len() < FIRST_WAVE {
            assert!(Instant::now() < deadline, "stuck at {}", processed.len());
            let records = consumer.poll(Duration::from_millis(100)).await.unwrap();
            if !records.is_empty() {
                processed.extend(records.iter().map(|r| (r.partition, r.offset)));
                // Refused while __consumer_offsets is below min.insync.replicas: the next goes.
                let _ = consumer.commit_sync().await;
            }
        }
    });
    // The commits the kill must not lose are on every replica of their partition.
    cluster.wait_for_agreement("__consumer_offsets fully in sync", CONSUME_TIMEOUT, |v| {
        let p = v.partitions("__consumer_offsets");
        !p.is_empty() && p.iter().all(|p| p.isr.len() == 3)
    });
    runtime.block_on(async {
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        while let Err(e) = consumer.commit_sync().await {
            assert!(Instant::now() < deadline, "the commit before the kill: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let victim = coordinator(&cluster, 1);
    let view = cluster.view(victim).unwrap();
    eprintln!(
        "killing node {victim}, the group's coordinator, leading {:?}",
        view.led_by(victim)
    );
    cluster.kill9(victim);
    let end = (FIRST_WAVE + SECOND_WAVE) as i64;
    let mut commit_errors = 0;
    runtime.block_on(async {
        tests::produce_numbered(
            &bootstrap,
            TOPIC,
            PARTITIONS,
            SECOND_WAVE,
            Compression::None,
        )
        .await
        .unwrap();
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        while !covers(&processed, end) {
            assert!(
                Instant::now() < deadline,
                "stuck at {} of {} after the kill",
                processed.len(),
                end * PARTITIONS as i64
            );
            let records = consumer.poll(Duration::from_millis(100)).await.unwrap();
            if records.is_empty() {
                continue;
            }
            processed.extend(records.iter().map(|r| (r.partition, r.offset)));
            // While the group moves, a commit may be refused; the records come again.
            if let Err(e) = consumer.commit_sync().await {
                eprintln!("commit during the failover: {e}");
                commit_errors += 1;
            }
        }
    });
    assert!(
        processed.iter().all(|(_, offset)| *offset < end),
        "no offset beyond what was produced: the producer wrote no duplicate"
    );
    let survivor = cluster
        .running_ids()
        .into_iter()
        .find(|id| *id != victim)
        .unwrap();
    let moved_to = coordinator(&cluster, survivor);
    assert_ne!(moved_to, victim, "the group moved to another coordinator");
    runtime.block_on(async {
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        while consumer.commit_sync().await.is_err() {
            assert!(Instant::now() < deadline, "a final commit goes through");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut raw = RawConnection::connect(&cluster.client_addr(moved_to)).unwrap();
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    let committed = tests::committed_offsets(&mut raw, GROUP, TOPIC, &partitions).unwrap();
    assert_eq!(committed, vec![end; PARTITIONS as usize]);
    eprintln!(
        "consumed {} records, {commit_errors} commits refused during the failover",
        processed.len()
    );
    runtime.block_on(consumer.close()).unwrap();
}
