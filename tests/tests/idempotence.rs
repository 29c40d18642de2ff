//! Idempotent producers on the real broker: a retried batch is answered with
//! its original offsets and appended once, gaps and fenced epochs are refused,
//! and all of it holds across restarts, clean or not.

use bytes::Bytes;
use protocol::batch::{BatchBuilder, Record};
use protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use protocol::ErrorCode;
use tests::{create_topic, produce_to, BrokerProcess, RawConnection};

fn init_producer_id(conn: &mut RawConnection, existing: Option<(i64, i16)>) -> (i64, i16) {
    let (id, epoch) = existing.unwrap_or((-1, -1));
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch);
    let response: InitProducerIdResponse = conn.call(ApiKey::InitProducerId, 4, &request).unwrap();
    assert_eq!(response.error_code, 0);
    (response.producer_id.0, response.producer_epoch)
}

fn idempotent_batch(producer_id: i64, epoch: i16, first_sequence: i32, values: &[&str]) -> Bytes {
    let mut builder = BatchBuilder::new().idempotent(producer_id, epoch, first_sequence);
    for v in values {
        builder.push(&Record {
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: vec![],
            timestamp: tests::now_ms(),
        });
    }
    builder.build()
}

/// Every value in partition 0 of `topic`, in offset order.
fn values(conn: &mut RawConnection, topic: &str) -> Vec<String> {
    let records = tests::fetch_partition(conn, topic, 0, 0).unwrap();
    protocol::batch::batches(&records)
        .flat_map(|b| protocol::batch::decode_records(&b).unwrap())
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

#[test]
fn retried_batch_gets_its_original_offset_and_is_stored_once() {
    // Sending the same (producer, epoch, sequence) twice appends once and answers the first offset twice.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "once", 1);
    let (id, epoch) = init_producer_id(&mut conn, None);
    let first = idempotent_batch(id, epoch, 0, &["a", "b"]);
    assert_eq!(
        produce_to(&mut conn, "once", 0, first.clone(), -1).unwrap(),
        (0, 0)
    );
    let second = idempotent_batch(id, epoch, 2, &["c"]);
    assert_eq!(
        produce_to(&mut conn, "once", 0, second.clone(), -1).unwrap(),
        (0, 2)
    );
    // Retries of both answer with the original offsets.
    assert_eq!(produce_to(&mut conn, "once", 0, first, -1).unwrap(), (0, 0));
    assert_eq!(
        produce_to(&mut conn, "once", 0, second, -1).unwrap(),
        (0, 2)
    );
    assert_eq!(values(&mut conn, "once"), vec!["a", "b", "c"]);
}

#[test]
fn sequence_gap_and_fenced_epoch_are_refused() {
    // A gap answers OUT_OF_ORDER_SEQUENCE_NUMBER; after an epoch bump the old epoch answers INVALID_PRODUCER_EPOCH.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "strict", 1);
    let (id, epoch) = init_producer_id(&mut conn, None);
    assert_eq!(
        produce_to(
            &mut conn,
            "strict",
            0,
            idempotent_batch(id, epoch, 0, &["a"]),
            -1
        )
        .unwrap()
        .0,
        0
    );
    let (error, _) = produce_to(
        &mut conn,
        "strict",
        0,
        idempotent_batch(id, epoch, 5, &["gap"]),
        -1,
    )
    .unwrap();
    assert_eq!(error, ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER.code());
    let (same_id, bumped) = init_producer_id(&mut conn, Some((id, epoch)));
    assert_eq!((same_id, bumped), (id, epoch + 1));
    assert_eq!(
        produce_to(
            &mut conn,
            "strict",
            0,
            idempotent_batch(id, bumped, 0, &["b"]),
            -1
        )
        .unwrap(),
        (0, 1)
    );
    let (error, _) = produce_to(
        &mut conn,
        "strict",
        0,
        idempotent_batch(id, epoch, 1, &["zombie"]),
        -1,
    )
    .unwrap();
    assert_eq!(error, ErrorCode::INVALID_PRODUCER_EPOCH.code());
    assert_eq!(values(&mut conn, "strict"), vec!["a", "b"]);
}

#[test]
fn duplicates_are_still_recognised_after_clean_and_unclean_restarts() {
    // Producer state survives SIGTERM (snapshot) and kill -9 (rebuilt from the log); producer ids stay unique.
    let dir = tempfile::tempdir().unwrap();
    let mut broker =
        BrokerProcess::start(dir.path(), &["--set", "log.flush.policy=every-batch"]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "durable", 1);
    let (id, epoch) = init_producer_id(&mut conn, None);
    let first = idempotent_batch(id, epoch, 0, &["a"]);
    assert_eq!(
        produce_to(&mut conn, "durable", 0, first.clone(), -1).unwrap(),
        (0, 0)
    );
    drop(conn);
    assert_eq!(broker.terminate().unwrap(), 0);
    broker.restart().unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    assert_eq!(
        produce_to(&mut conn, "durable", 0, first, -1).unwrap(),
        (0, 0),
        "duplicate after clean restart"
    );
    let second = idempotent_batch(id, epoch, 1, &["b"]);
    assert_eq!(
        produce_to(&mut conn, "durable", 0, second.clone(), -1).unwrap(),
        (0, 1)
    );
    drop(conn);
    broker.kill9().unwrap();
    broker.restart().unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    assert_eq!(
        produce_to(&mut conn, "durable", 0, second, -1).unwrap(),
        (0, 1),
        "duplicate after kill -9"
    );
    let (error, _) = produce_to(
        &mut conn,
        "durable",
        0,
        idempotent_batch(id, epoch, 3, &["gap"]),
        -1,
    )
    .unwrap();
    assert_eq!(error, ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER.code());
    assert_eq!(values(&mut conn, "durable"), vec!["a", "b"]);
    let (new_id, _) = init_producer_id(&mut conn, None);
    assert_ne!(new_id, id, "producer ids are not reused across restarts");
}

#[test]
fn librdkafka_with_idempotence_produces_every_record_once() {
    // rdkafka with enable.idempotence=true delivers 20,000 records, each exactly once and in order.
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    create_topic(&mut conn, "rd-idem", 1);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .create()
        .unwrap();
    const COUNT: usize = 20_000;
    for i in 0..COUNT {
        let value = format!("r{i}");
        loop {
            match producer.send(
                BaseRecord::<(), _>::to("rd-idem")
                    .payload(&value)
                    .partition(0),
            ) {
                Ok(()) => break,
                Err((e, _))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    producer.poll(std::time::Duration::from_millis(10));
                }
                Err((e, _)) => panic!("send failed: {e}"),
            }
        }
    }
    producer.flush(std::time::Duration::from_secs(60)).unwrap();
    let stored = values(&mut conn, "rd-idem");
    let expected: Vec<String> = (0..COUNT).map(|i| format!("r{i}")).collect();
    assert_eq!(stored.len(), COUNT);
    assert_eq!(stored, expected);
}
