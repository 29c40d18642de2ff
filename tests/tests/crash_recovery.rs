//! `kill -9` of the broker under load, then a restart: nothing the flush
//! policy promised is lost, and the broker serves everything it recovered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tests::{create_topic, BrokerProcess, RawConnection};

/// Acknowledged (value, offset) pairs, in acknowledgement order.
#[derive(Clone, Default)]
struct Acks(Arc<Mutex<Vec<(String, i64)>>>);

impl ClientContext for Acks {}
impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(message) = result {
            let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            self.0.lock().unwrap().push((value, message.offset()));
        }
    }
}

/// How many acknowledged records to wait for before pulling the plug.
const ACKED_BEFORE_KILL: usize = 20_000;

fn kill_under_acks_1_load_loses_nothing_acknowledged(flush_policy: &str) {
    let dir = tempfile::tempdir().unwrap();
    let setting = format!("log.flush.policy={flush_policy}");
    // Small segments so that the crash lands on a log of several segments.
    let mut broker = BrokerProcess::start(
        dir.path(),
        &["--set", &setting, "--set", "log.segment.bytes=262144"],
    )
    .unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "crash", 1);
    drop(conn);
    let acks = Acks::default();
    let producer: ThreadedProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("acks", "1")
        .set("enable.idempotence", "false")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "5000")
        .create_with_context(acks.clone())
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let value = format!("record-{i:08}-{}", "p".repeat(64));
                match producer.send(
                    BaseRecord::<(), _>::to("crash")
                        .payload(&value)
                        .partition(0),
                ) {
                    Ok(()) => i += 1,
                    Err(_) => {
                        producer.poll(Duration::from_millis(5));
                    }
                }
            }
            // Let outstanding deliveries fail or succeed before the producer drops.
            let _ = producer.flush(Duration::from_secs(10));
        })
    };
    assert!(
        tests::wait_until(Duration::from_secs(120), || acks.0.lock().unwrap().len()
            >= ACKED_BEFORE_KILL),
        "the producer got {} acks",
        acks.0.lock().unwrap().len()
    );
    broker.kill9().unwrap();
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let acknowledged = acks.0.lock().unwrap().clone();
    assert!(acknowledged.len() >= ACKED_BEFORE_KILL);

    broker.restart().unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let mut stored: Vec<(i64, String)> = Vec::new();
    let mut offset = 0;
    loop {
        let records = tests::fetch_partition(&mut conn, "crash", 0, offset).unwrap();
        if records.is_empty() {
            break;
        }
        for batch in protocol::batch::batches(&records) {
            for record in protocol::batch::decode_records(&batch).unwrap() {
                if record.offset >= offset {
                    stored.push((
                        record.offset,
                        String::from_utf8(record.value.unwrap().to_vec()).unwrap(),
                    ));
                }
            }
        }
        offset = stored.last().map_or(offset, |(o, _)| o + 1);
    }
    // Offsets after recovery are dense from 0.
    for (i, (o, _)) in stored.iter().enumerate() {
        assert_eq!(*o, i as i64, "dense offsets after recovery");
    }
    // Every acknowledged record is there, at the offset it was acknowledged with.
    for (value, offset) in &acknowledged {
        let found = stored.get(*offset as usize).map(|(_, v)| v);
        assert_eq!(found, Some(value), "acknowledged record at offset {offset}");
    }
    eprintln!(
        "{flush_policy}: {} acknowledged before kill -9, {} recovered",
        acknowledged.len(),
        stored.len()
    );
}

#[test]
fn kill_9_under_acks_1_loses_no_acknowledged_record_with_flush_every_batch() {
    // With every batch fsynced before its ack, every ack survives kill -9 and a restart.
    kill_under_acks_1_load_loses_nothing_acknowledged("every-batch");
}

#[test]
fn kill_9_under_acks_1_loses_no_acknowledged_record_with_interval_flush() {
    // A process crash (not a power cut) keeps the page cache: with interval flushing, acked writes survive too.
    kill_under_acks_1_load_loses_nothing_acknowledged("interval:1000");
}
