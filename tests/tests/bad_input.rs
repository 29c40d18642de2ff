//! Bad input gets a clear answer and loses nothing: each test sends the
//! broker something wrong over a raw connection, checks the answer (a Kafka
//! error code or a closed connection), and then checks that other
//! connections and earlier writes are unaffected.

use bytes::Bytes;
use protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest,
    MetadataResponse, TopicName,
};
use protocol::{ErrorCode, StrBytes};
use tests::{BrokerProcess, RawConnection};

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;

fn batch(values: &[&str]) -> Bytes {
    tests::batch_of(values)
}

fn produce(conn: &mut RawConnection, topic: &str, records: Bytes) -> (i16, i64) {
    tests::produce_to(conn, topic, 0, records, -1).unwrap()
}

/// Reads partition 0 of `topic` from offset 0 and returns the raw record set.
fn fetch_all(conn: &mut RawConnection, topic: &str) -> (i16, i64, Bytes) {
    use protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let request = FetchRequest::default()
        .with_replica_id(protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(10 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(10 << 20)])]);
    let response: FetchResponse = conn.call(ApiKey::Fetch, FETCH_VERSION, &request).unwrap();
    let p = &response.responses[0].partitions[0];
    (
        p.error_code,
        p.high_watermark,
        p.records.clone().unwrap_or_default(),
    )
}

/// Starts a broker with a topic `t` holding one good batch of 3 records.
fn broker_with_one_good_batch(extra: &[&str]) -> (tempfile::TempDir, BrokerProcess, Bytes) {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), extra).unwrap();
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    tests::create_topic(&mut conn, "t", 1);
    let good = batch(&["a", "b", "c"]);
    assert_eq!(produce(&mut conn, "t", good.clone()), (0, 0));
    (dir, broker, good)
}

/// The earlier batch is still served intact, at offset 0, on a new connection.
fn assert_earlier_write_intact(broker: &BrokerProcess, good: &Bytes) {
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let (error, high_watermark, records) = fetch_all(&mut conn, "t");
    assert_eq!(error, 0);
    assert_eq!(
        high_watermark, 3,
        "nothing beyond the good batch was appended"
    );
    let decoded = protocol::batch::decode_records(&records).unwrap();
    let expected = protocol::batch::decode_records(good).unwrap();
    assert_eq!(decoded, expected);
}

#[test]
fn oversized_frame_closes_only_that_connection() {
    // A size prefix over socket.request.max.bytes closes that connection; others go on.
    let (_dir, broker, good) =
        broker_with_one_good_batch(&["--set", "socket.request.max.bytes=65536"]);
    let mut bystander = RawConnection::connect(&broker.addr).unwrap();
    let mut bad = RawConnection::connect(&broker.addr).unwrap();
    bad.send_raw(&(1u32 << 20).to_be_bytes()).unwrap();
    bad.send_raw(&[0u8; 1024]).unwrap();
    assert!(
        bad.is_closed_by_peer(),
        "oversized frame must close the connection"
    );
    let _: ApiVersionsResponse = bystander
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .unwrap();
    assert_earlier_write_intact(&broker, &good);
    assert!(
        broker.wait_for_output("bad frame"),
        "a log line names the reason"
    );
}

#[test]
fn malformed_request_closes_the_connection_with_a_log_line() {
    // A body that does not decode closes the connection; the broker keeps serving.
    let (_dir, broker, good) = broker_with_one_good_batch(&[]);
    let mut bad = RawConnection::connect(&broker.addr).unwrap();
    // Metadata v12 header, then a body that claims a huge compact array and ends.
    let mut frame = Vec::new();
    let body: &[u8] = &[
        0, 3, 0, 12, 0, 0, 0, 7, 0, 3, b'b', b'a', b'd', 0, 0xff, 0xff, 0xff, 0x0f,
    ];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    bad.send_raw(&frame).unwrap();
    assert!(bad.is_closed_by_peer());
    assert!(broker.wait_for_output("bad request"));
    assert_earlier_write_intact(&broker, &good);
}

#[test]
fn api_versions_newer_than_ours_answers_unsupported_version_with_our_ranges() {
    // KIP-511: a too-new ApiVersions gets a v0 answer with UNSUPPORTED_VERSION and the ranges.
    let (_dir, broker, _good) = broker_with_one_good_batch(&[]);
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let mut frame = Vec::new();
    let body: &[u8] = &[0, 18, 0, 99, 0, 0, 0, 5, 0, 1, b'x', 0];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    conn.send_raw(&frame).unwrap();
    let response = conn.read_frame().unwrap().expect("a response, not a close");
    let (correlation_id, parsed): (i32, ApiVersionsResponse) =
        protocol::header::decode_response(ApiKey::ApiVersions, 0, response).unwrap();
    assert_eq!(correlation_id, 5);
    assert_eq!(parsed.error_code, ErrorCode::UNSUPPORTED_VERSION.code());
    let produce = parsed
        .api_keys
        .iter()
        .find(|k| k.api_key == 0)
        .expect("Produce listed");
    assert!(produce.max_version >= PRODUCE_VERSION);
    // The same connection then works at a version we know.
    let ok: ApiVersionsResponse = conn
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .unwrap();
    assert_eq!(ok.error_code, 0);
}

#[test]
fn unsupported_api_version_closes_the_connection_and_others_go_on() {
    // A Produce version we do not serve cannot be answered in its own format: the
    // connection closes with a log line, as Kafka does, and nothing is appended.
    let (_dir, broker, good) = broker_with_one_good_batch(&[]);
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let mut frame = Vec::new();
    let body: &[u8] = &[0, 0, 0, 99, 0, 0, 0, 9, 0, 0];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    conn.send_raw(&frame).unwrap();
    assert!(conn.is_closed_by_peer());
    assert!(broker.wait_for_output("not supported"));
    assert_earlier_write_intact(&broker, &good);
}

#[test]
fn bad_crc_is_rejected_as_corrupt_message_and_appends_nothing() {
    // One flipped bit in the records fails the CRC: CORRUPT_MESSAGE, no append.
    let (_dir, broker, good) = broker_with_one_good_batch(&[]);
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let mut raw = batch(&["x", "y"]).to_vec();
    let last = raw.len() - 1;
    raw[last] ^= 0x40;
    let (error, base_offset) = produce(&mut conn, "t", Bytes::from(raw));
    assert_eq!(error, ErrorCode::CORRUPT_MESSAGE.code());
    assert_eq!(base_offset, -1);
    assert_earlier_write_intact(&broker, &good);
}

#[test]
fn bad_length_and_wrong_magic_are_rejected_as_corrupt_message() {
    // A batch length past the data and a magic byte of 1 are both CORRUPT_MESSAGE.
    let (_dir, broker, good) = broker_with_one_good_batch(&[]);
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let mut long = batch(&["x"]).to_vec();
    long[8..12].copy_from_slice(&(10_000i32).to_be_bytes());
    assert_eq!(
        produce(&mut conn, "t", Bytes::from(long)).0,
        ErrorCode::CORRUPT_MESSAGE.code()
    );
    let mut magic = batch(&["x"]).to_vec();
    magic[16] = 1;
    assert_eq!(
        produce(&mut conn, "t", Bytes::from(magic)).0,
        ErrorCode::CORRUPT_MESSAGE.code()
    );
    let truncated = batch(&["x", "y", "z"]).slice(..40);
    assert_eq!(
        produce(&mut conn, "t", truncated).0,
        ErrorCode::CORRUPT_MESSAGE.code()
    );
    assert_earlier_write_intact(&broker, &good);
}

#[test]
fn oversized_batch_answers_message_too_large() {
    // A batch over message.max.bytes is refused with MESSAGE_TOO_LARGE and not appended.
    let (_dir, broker, good) = broker_with_one_good_batch(&["--set", "message.max.bytes=4096"]);
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let big = "v".repeat(8192);
    let (error, _) = produce(&mut conn, "t", batch(&[&big]));
    assert_eq!(error, ErrorCode::MESSAGE_TOO_LARGE.code());
    assert_earlier_write_intact(&broker, &good);
}

#[test]
fn unknown_topic_with_auto_creation_off_answers_unknown_topic_or_partition() {
    // With auto-creation off, Metadata and Produce for a missing topic say so and create nothing.
    let (_dir, broker, good) =
        broker_with_one_good_batch(&["--set", "auto.create.topics.enable=false"]);
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("missing")))),
        ]))
        .with_allow_auto_topic_creation(true);
    let response: MetadataResponse = conn.call(ApiKey::Metadata, 12, &request).unwrap();
    assert_eq!(
        response.topics[0].error_code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
    );
    let (error, _) = produce(&mut conn, "missing", batch(&["x"]));
    assert_eq!(error, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code());
    let again: MetadataResponse = conn.call(ApiKey::Metadata, 12, &request).unwrap();
    assert_eq!(
        again.topics[0].error_code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
    );
    assert_earlier_write_intact(&broker, &good);
}

#[test]
fn garbage_instead_of_a_header_closes_the_connection() {
    // A frame too short for a request header is refused with a close, not a panic.
    let (_dir, broker, good) = broker_with_one_good_batch(&[]);
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    conn.send_raw(&[0, 0, 0, 3, 1, 2, 3]).unwrap();
    assert!(conn.is_closed_by_peer());
    assert_earlier_write_intact(&broker, &good);
}
