//! Our Rust producer (`client::Producer`) against the real broker binary
//! when its background work panics: a delivery callback that panics, and
//! the sender task itself dying. No future may hang: every one resolves,
//! `flush` returns, and `send` says why it cannot queue any more. Each wait
//! is bounded, so a hang fails the test instead of stalling it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::{ProduceError, Producer, ProducerConfig, ProducerRecord, SendError};
use tests::BrokerProcess;

/// Bound on any one wait for a report, a flush or a send.
const REPORT_TIMEOUT: Duration = Duration::from_secs(15);

async fn producer(addr: &str, linger: Duration) -> Producer {
    let mut config = ProducerConfig::new(addr);
    config.linger = linger;
    Producer::connect(config).await.unwrap()
}

fn record(i: usize) -> ProducerRecord {
    ProducerRecord::new("panics")
        .with_partition(0)
        .with_value(format!("v{i}"))
}

async fn bounded<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(REPORT_TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {REPORT_TIMEOUT:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_delivery_callback_hangs_no_future_and_the_producer_carries_on() {
    // A callback that panics is caught: flush returns, the records around it are delivered, and later sends work.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    tests::create_topic_async(&broker.addr, "panics", 1).await;
    let producer = producer(&broker.addr, Duration::from_millis(5)).await;
    let before = bounded("send", producer.send(record(0))).await.unwrap();
    let called = Arc::new(AtomicUsize::new(0));
    let in_callback = called.clone();
    bounded(
        "send_with_callback",
        producer.send_with_callback(record(1), move |_| {
            in_callback.fetch_add(1, Ordering::SeqCst);
            panic!("a delivery callback panicked on purpose");
        }),
    )
    .await
    .unwrap();
    let beside = bounded("send", producer.send(record(2))).await.unwrap();
    bounded("flush after the panicking callback", producer.flush()).await;
    assert_eq!(called.load(Ordering::SeqCst), 1, "the callback ran once");
    let before = bounded("the report before", before).await.unwrap();
    let beside = bounded("the report beside", beside).await.unwrap();
    // Later records go on as if nothing happened.
    let after = bounded("send after", producer.send(record(3)))
        .await
        .unwrap();
    bounded("flush after", producer.flush()).await;
    let after = bounded("the report after", after).await.unwrap();
    assert_eq!(
        [before.offset, beside.offset, after.offset],
        [Some(0), Some(2), Some(3)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_sender_task_fails_every_queued_record_and_every_later_send_with_its_reason() {
    // With the sender task panicking, queued records' futures and callbacks get SenderStopped with the panic message, flush returns, and send refuses with the same reason.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    tests::create_topic_async(&broker.addr, "panics", 1).await;
    // A long linger keeps the records queued until the panic.
    let producer = producer(&broker.addr, Duration::from_secs(60)).await;
    let mut futures = Vec::new();
    for i in 0..10 {
        futures.push(bounded("send", producer.send(record(i))).await.unwrap());
    }
    let (report_tx, report_rx) = tokio::sync::oneshot::channel();
    bounded(
        "send_with_callback",
        producer.send_with_callback(record(10), move |result| {
            let _ = report_tx.send(result);
        }),
    )
    .await
    .unwrap();
    producer.inject_sender_panic("injected sender panic");
    let is_stopped_by_injection = |error: &ProduceError| matches!(error, ProduceError::SenderStopped { reason } if reason.contains("injected sender panic"));
    for future in futures {
        let error = bounded("a queued record's report", future)
            .await
            .unwrap_err();
        assert!(is_stopped_by_injection(&error), "{error:?}");
    }
    let error = bounded("the callback's report", report_rx)
        .await
        .unwrap()
        .unwrap_err();
    assert!(is_stopped_by_injection(&error), "{error:?}");
    bounded("flush after the sender died", producer.flush()).await;
    match bounded("send after the sender died", producer.send(record(11))).await {
        Err(SendError::SenderStopped { reason }) => {
            assert!(reason.contains("injected sender panic"), "{reason}")
        }
        other => panic!("expected SendError::SenderStopped, got {other:?}"),
    }
}
