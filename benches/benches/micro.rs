//! Micro-benchmarks of the hot paths (criterion): CRC-32C, batch header
//! validation, frame decoding, Produce and Fetch request codecs (both ways),
//! Fetch response encode and decode, and segment append and read.
//!
//! Run: `cargo bench -p benches --bench micro`.

use std::hint::black_box;

use broker::storage::{FlushPolicy, LogConfig, LogManager, TopicPartition};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use protocol::batch::{validate_record_set, BatchBuilder, Record};
use protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ProduceRequest, TopicName,
};
use protocol::{Decodable, StrBytes};
use tokio_util::codec::Decoder;

/// A batch of `records` records of `value_bytes` each.
fn batch(records: usize, value_bytes: usize) -> Bytes {
    let mut builder = BatchBuilder::new();
    for i in 0..records {
        builder.push(&Record {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![b'v'; value_bytes])),
            headers: vec![],
            timestamp: 1_700_000_000_000 + i as i64,
        });
    }
    builder.build()
}

fn crc(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32c");
    for size in [1024usize, 16 * 1024, 1024 * 1024] {
        let data = vec![0xabu8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, data| {
            b.iter(|| crc32c::crc32c(black_box(data)))
        });
    }
    group.finish();
}

fn validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_validate");
    for (records, value) in [(10usize, 100usize), (16, 1000), (160, 100)] {
        let data = batch(records, value);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("records", format!("{records}x{value}B")),
            &data,
            |b, data| b.iter(|| validate_record_set(black_box(data)).unwrap()),
        );
    }
    group.finish();
}

fn produce_request(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

fn codecs(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    let records = batch(16, 1000);
    let frame = protocol::header::encode_request(
        ApiKey::Produce,
        9,
        1,
        Some("bench"),
        &produce_request("bench", records.clone()),
    )
    .unwrap();
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("frame_decode_16KiB", |b| {
        let mut codec = protocol::frame::frame_codec(protocol::frame::FRAME_BYTES_MAX_DEFAULT);
        b.iter(|| {
            let mut buf = BytesMut::from(&frame[..]);
            black_box(codec.decode(&mut buf).unwrap().unwrap())
        })
    });
    let body = frame.slice(4..);
    group.bench_function("produce_request_decode_16KiB", |b| {
        b.iter(|| {
            let mut body = body.clone();
            let (_, header) = protocol::header::decode_request_header(&mut body).unwrap();
            black_box(ProduceRequest::decode(&mut body, header.request_api_version).unwrap())
        })
    });
    let request = produce_request("bench", records.clone());
    group.bench_function("produce_request_encode_16KiB", |b| {
        b.iter(|| {
            black_box(
                protocol::header::encode_request(ApiKey::Produce, 9, 1, Some("bench"), &request)
                    .unwrap(),
            )
        })
    });
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("bench")))
            .with_partitions(
                (0..8)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(1000)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )]);
    let fetch_frame =
        protocol::header::encode_request(ApiKey::Fetch, 12, 1, Some("bench"), &fetch).unwrap();
    group.throughput(Throughput::Bytes(fetch_frame.len() as u64));
    group.bench_function("fetch_request_decode_8_partitions", |b| {
        b.iter(|| {
            let mut body = fetch_frame.slice(4..);
            let (_, header) = protocol::header::decode_request_header(&mut body).unwrap();
            black_box(FetchRequest::decode(&mut body, header.request_api_version).unwrap())
        })
    });
    group.bench_function("fetch_request_encode_8_partitions", |b| {
        b.iter(|| {
            black_box(
                protocol::header::encode_request(ApiKey::Fetch, 12, 1, Some("bench"), &fetch)
                    .unwrap(),
            )
        })
    });
    let big_records = Bytes::from(
        [
            batch(16, 1000).to_vec(),
            batch(16, 1000).to_vec(),
            batch(16, 1000).to_vec(),
            batch(16, 1000).to_vec(),
        ]
        .concat(),
    );
    let response = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("bench")))
        .with_partitions(
            (0..8)
                .map(|p| {
                    PartitionData::default()
                        .with_partition_index(p)
                        .with_high_watermark(5000)
                        .with_records(Some(big_records.clone()))
                })
                .collect(),
        )]);
    group.throughput(Throughput::Bytes(big_records.len() as u64 * 8));
    group.bench_function("fetch_response_encode_8x64KiB", |b| {
        b.iter(|| {
            black_box(protocol::header::encode_response(ApiKey::Fetch, 12, 1, &response).unwrap())
        })
    });
    // What a consumer does with each response: the record sets stay
    // references into the frame, so this is the cost of the framing around them.
    let response_frame =
        protocol::header::encode_response(ApiKey::Fetch, 12, 1, &response).unwrap();
    group.bench_function("fetch_response_decode_8x64KiB", |b| {
        b.iter(|| {
            let (_, decoded): (i32, FetchResponse) =
                protocol::header::decode_response(ApiKey::Fetch, 12, response_frame.slice(4..))
                    .unwrap();
            black_box(decoded)
        })
    });
    group.finish();
}

fn segment(c: &mut Criterion) {
    let mut group = c.benchmark_group("segment");
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_policy: FlushPolicy::OnRoll,
        retention_ms: None,
        segment_bytes_max: 256 << 20,
        ..LogConfig::default()
    };
    let manager = LogManager::open(dir.path(), config.clone(), 1024).unwrap();
    let log = manager
        .create(
            &TopicPartition {
                topic: "bench".into(),
                partition: 0,
            },
            config,
        )
        .unwrap();
    for (records, value) in [(1usize, 1000usize), (16, 1000)] {
        let data = batch(records, value);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(BenchmarkId::new("append", data.len()), &data, |b, data| {
            b.iter(|| {
                log.lock()
                    .unwrap()
                    .append(black_box(data), 0, 1_700_000_000_000)
                    .unwrap()
            })
        });
    }
    let end = log.lock().unwrap().log_end_offset();
    group.throughput(Throughput::Bytes(1 << 20));
    group.bench_function("read_1MiB", |b| {
        let mut offset = 0;
        b.iter(|| {
            let log = log.lock().unwrap();
            let read = log.read(offset, 1 << 20, end, true).unwrap();
            offset = (offset + 1000) % (end - 100);
            black_box(read.records.len())
        })
    });
    group.finish();
    manager.shutdown().unwrap();
}

criterion_group!(benches, crc, validation, codecs, segment);
criterion_main!(benches);
