//! Produce: validate each partition's record set (headers and CRCs only; a
//! record is decoded only on a compacted topic, to refuse one without a key,
//! and a batch is recompressed only when the topic's `compression.type` names
//! a codec other than the batch's), append it as leader, and answer by `acks`: at once
//! for 0 and 1, and for `all` once the high watermark covers the batch
//! (every in-sync replica has it), the ISR is too small, or time is up.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::batch::{validate_record_set, BatchError};
use protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use protocol::{ErrorCode, StrBytes};

use crate::errors::KafkaErrorCode;
use crate::handlers::redirect;
use crate::partition::{AppendError, Appended, Partition};
use crate::recompress::{self, CompressionType};
use crate::replication::leader::Refusal;
use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::Broker;

/// One partition's outcome, plus what `acks=all` must wait for.
struct Outcome {
    response: PartitionProduceResponse,
    /// With `acks=all`: the partition and the offset the high watermark must pass.
    wait_for: Option<(Arc<Partition>, i64)>,
}

fn failed(index: i32, code: ErrorCode, message: impl Into<String>) -> Outcome {
    let message = message.into();
    Outcome {
        response: PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(code.code())
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1)
            .with_error_message(Some(message.into())),
        wait_for: None,
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    request: Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: ProduceRequest = request.decode(&mut body)?;
    let acks = req.acks;
    let acks_valid = matches!(acks, -1..=1);
    let now_ms = crate::now_ms();
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let mut waits = Vec::new();
    let image = broker.image();
    let settings = broker.effective_config();
    for topic_data in req.topic_data {
        let topic = if request.version() >= 13 {
            image.topic_by_id(topic_data.topic_id)
        } else {
            image.topic(topic_data.name.0.as_str())
        };
        let unknown = if request.version() >= 13 {
            ErrorCode::UNKNOWN_TOPIC_ID
        } else {
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let outcome = if !acks_valid {
                failed(
                    data.index,
                    ErrorCode::INVALID_REQUIRED_ACKS,
                    format!("acks must be -1, 0 or 1, not {acks}"),
                )
            } else {
                match topic.map(|t| (t, broker.replicas.leader_partition(t, data.index))) {
                    None => failed(data.index, unknown, "unknown topic or partition"),
                    Some((_, Err(code))) => failed(
                        data.index,
                        code,
                        format!("partition {} is not led by this broker", data.index),
                    ),
                    Some((t, Ok(_))) if t.is_internal() => failed(
                        data.index,
                        ErrorCode::INVALID_TOPIC_EXCEPTION,
                        "internal topics are written by the broker only",
                    ),
                    Some((t, Ok(partition))) => {
                        let max = t
                            .configs
                            .get("max.message.bytes")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(settings.message_bytes_max);
                        let compacted = t
                            .configs
                            .get("cleanup.policy")
                            .and_then(|v| crate::storage::CleanupPolicy::parse(v))
                            .unwrap_or(broker.config.log.cleanup_policy)
                            .compact;
                        let compression = crate::topics::compression_type_for(
                            settings.compression_type,
                            &t.configs,
                        );
                        let rules = Rules {
                            message_bytes_max: max,
                            compacted,
                            compression,
                        };
                        append(&partition, data.records, acks, &rules, now_ms)
                    }
                }
            };
            if let Some(wait) = outcome.wait_for.clone() {
                waits.push(wait);
            }
            partitions.push(outcome.response);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_topic_id(topic_data.topic_id)
                .with_partition_responses(partitions),
        );
    }
    if acks == 0 {
        return Ok(Reply::Nothing);
    }
    let response = with_current_leaders(
        &image,
        request.version(),
        ProduceResponse::default().with_responses(topics),
    );
    if waits.is_empty() {
        return Ok(Reply::Now(request.respond(&response)?));
    }
    let timeout_ms = (req.timeout_ms.max(0) as u64).min(crate::config::PRODUCE_TIMEOUT_MS_MAX);
    let timeout = Duration::from_millis(timeout_ms);
    // Registered now, so that the leader's state machine counts them at once.
    let waits: Vec<_> = waits
        .into_iter()
        .map(|(partition, last_offset)| {
            let answer = partition.wait_for_replication(last_offset, now_ms + timeout_ms as i64);
            (partition, answer)
        })
        .collect();
    // What waits must not hold slices of the request frame (its topic names,
    // the header's client id): they would keep the connection's read buffer
    // from being reused for the next request (see `Request::responder`).
    let responder = request.responder();
    let mut response = response;
    for topic in &mut response.responses {
        topic.name = TopicName(StrBytes::from_string(topic.name.0.as_str().to_owned()));
    }
    Ok(Reply::Later(Box::pin(async move {
        let mut response = response;
        let deadline = tokio::time::Instant::now() + timeout;
        for (partition, answer) in waits {
            let code = match tokio::time::timeout_at(deadline, answer).await {
                Ok(Ok(code)) => code,
                // The partition went away (deleted, or moved off this broker).
                Ok(Err(_)) => ErrorCode::NOT_LEADER_OR_FOLLOWER,
                Err(_) => ErrorCode::REQUEST_TIMED_OUT,
            };
            if code != ErrorCode::NONE {
                mark_failed(&mut response, &partition, code);
            }
        }
        // Encoding our own response cannot fail for a version we decoded.
        responder
            .respond(&response)
            .expect("produce response encodes")
    })))
}

/// KIP-951: partitions refused for leadership name their current leader,
/// and the response lists those leaders' endpoints.
fn with_current_leaders(
    image: &crate::metadata::MetadataImage,
    version: i16,
    mut response: ProduceResponse,
) -> ProduceResponse {
    use protocol::messages::produce_response::{LeaderIdAndEpoch, NodeEndpoint};
    let mut leaders = std::collections::BTreeSet::new();
    for topic in &mut response.responses {
        let found = if version >= 13 {
            image.topic_by_id(topic.topic_id)
        } else {
            image.topic(topic.name.0.as_str())
        };
        let Some(found) = found else { continue };
        for p in &mut topic.partition_responses {
            if !redirect::redirects(p.error_code) {
                continue;
            }
            if let Some((leader, epoch)) = redirect::current_leader(found, p.index) {
                p.current_leader = LeaderIdAndEpoch::default()
                    .with_leader_id(protocol::messages::BrokerId(leader.0))
                    .with_leader_epoch(epoch.0);
                leaders.insert(leader);
            }
        }
    }
    response.node_endpoints = redirect::endpoints(image, &leaders)
        .into_iter()
        .map(|(id, host, port, rack)| {
            NodeEndpoint::default()
                .with_node_id(protocol::messages::BrokerId(id))
                .with_host(host.into())
                .with_port(port)
                .with_rack(rack.map(Into::into))
        })
        .collect();
    response
}

/// Sets `code` on `partition`'s answer: the batch is in the leader's log but
/// not acknowledged as replicated.
fn mark_failed(response: &mut ProduceResponse, partition: &Partition, code: ErrorCode) {
    for topic in &mut response.responses {
        if topic.name.0.as_str() != partition.topic && topic.topic_id != partition.topic_id {
            continue;
        }
        for p in &mut topic.partition_responses {
            if p.index == partition.index {
                p.error_code = code.code();
            }
        }
    }
}

/// What a topic's configs ask of a record set before it is appended.
struct Rules {
    /// `max.message.bytes`: the largest batch, as stored.
    message_bytes_max: usize,
    /// Compacted topics refuse records without a key.
    compacted: bool,
    /// `compression.type`: the codec batches are stored in.
    compression: CompressionType,
}

fn append(
    partition: &Arc<Partition>,
    records: Option<Bytes>,
    acks: i16,
    rules: &Rules,
    now_ms: i64,
) -> Outcome {
    let message_bytes_max = rules.message_bytes_max;
    let index = partition.index;
    let Some(records) = records else {
        return failed(index, ErrorCode::CORRUPT_MESSAGE, "record set is null");
    };
    let info = match validate_record_set(&records) {
        Ok(info) => info,
        Err(e) => {
            tracing::warn!(topic = %partition.topic, partition = index, error = %e, "rejected corrupt batch");
            return failed(index, ErrorCode::CORRUPT_MESSAGE, e.to_string());
        }
    };
    if info.batch_count == 0 {
        return failed(
            index,
            ErrorCode::CORRUPT_MESSAGE,
            BatchError::Truncated {
                available: 0,
                needed: protocol::batch::BATCH_HEADER_BYTES,
            }
            .to_string(),
        );
    }
    if info.max_batch_bytes > message_bytes_max {
        return failed(
            index,
            ErrorCode::MESSAGE_TOO_LARGE,
            format!(
                "batch of {} bytes exceeds max.message.bytes {message_bytes_max}",
                info.max_batch_bytes
            ),
        );
    }
    // The only per-record work on this path, paid only when the topic names
    // a codec and a batch is in another; `producer` appends what it received.
    let records = match rules.compression {
        CompressionType::Producer => records,
        CompressionType::Codec(codec) => {
            match recompress::recompress_record_set(&records, codec, message_bytes_max) {
                Ok(None) => records,
                Ok(Some(recompressed)) => recompressed,
                Err(e) => {
                    tracing::debug!(topic = %partition.topic, partition = index, error = %e, "refused batch on recompression");
                    return failed(index, e.error_code(), e.to_string());
                }
            }
        }
    };
    if rules.compacted {
        if let Some(refused) = keyless_records(partition, &records) {
            return refused;
        }
    }
    if acks == -1 {
        match partition.check_acks_all() {
            Ok(()) => {}
            Err(Refusal::NotEnoughReplicas) => {
                return failed(
                    index,
                    ErrorCode::NOT_ENOUGH_REPLICAS,
                    "fewer in-sync replicas than min.insync.replicas",
                )
            }
            Err(Refusal::TooManyWaiting) => {
                return failed(
                    index,
                    ErrorCode::REQUEST_TIMED_OUT,
                    "too many acks=all requests are waiting on this partition",
                )
            }
        }
    }
    match partition.append_as_leader(&records, now_ms) {
        Ok(Appended::New(appended)) => Outcome {
            response: PartitionProduceResponse::default()
                .with_index(index)
                .with_error_code(ErrorCode::NONE.code())
                .with_base_offset(appended.base_offset)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(appended.log_start_offset),
            wait_for: (acks == -1).then(|| (partition.clone(), appended.last_offset)),
        },
        Ok(Appended::Duplicate {
            base_offset,
            log_start_offset,
        }) => Outcome {
            // A retry of a batch already in the log: the original offsets, nothing appended.
            response: PartitionProduceResponse::default()
                .with_index(index)
                .with_error_code(ErrorCode::NONE.code())
                .with_base_offset(base_offset)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(log_start_offset),
            wait_for: (acks == -1).then(|| (partition.clone(), base_offset)),
        },
        Err(AppendError::Sequence { code }) => {
            tracing::debug!(topic = %partition.topic, partition = index, %code, "refused producer batch");
            failed(
                index,
                code,
                format!("producer sequence check failed: {code}"),
            )
        }
        Err(e @ AppendError::Storage(_)) => {
            tracing::error!(topic = %partition.topic, partition = index, error = %e, "append failed");
            failed(index, e.error_code(), e.to_string())
        }
        Err(e) => failed(index, e.error_code(), e.to_string()),
    }
}

/// Record errors reported per partition at most (Kafka shows the first few too).
const RECORD_ERRORS_MAX: usize = 100;

/// A compacted topic keeps the latest record of each key, so a record without
/// a key cannot be kept: the whole record set is refused with
/// `INVALID_RECORD`, naming each keyless record by its index in its batch
/// (KIP-467). Compressed batches are not looked into: the broker decompresses
/// only to recompress (a topic with `compression.type=uncompressed` has its
/// batches decompressed by the time they get here).
fn keyless_records(partition: &Partition, records: &Bytes) -> Option<Outcome> {
    let message = format!(
        "Compacted topic cannot accept message without key in topic partition {}-{}.",
        partition.topic, partition.index
    );
    let mut errors = Vec::new();
    let mut total = 0usize;
    for batch in protocol::batch::batches(records) {
        // The record set was validated: only a compressed batch fails here.
        let Ok(decoded) = protocol::batch::decode_records(&batch) else {
            continue;
        };
        for (index, record) in decoded.iter().enumerate() {
            if record.key.is_some() {
                continue;
            }
            total += 1;
            if errors.len() < RECORD_ERRORS_MAX {
                errors.push(
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(index as i32)
                        .with_batch_index_error_message(Some(message.clone().into())),
                );
            }
        }
    }
    if errors.is_empty() {
        return None;
    }
    tracing::debug!(topic = %partition.topic, partition = partition.index, total, "refused records without a key");
    let mut refused = failed(partition.index, ErrorCode::INVALID_RECORD, message);
    refused.response.record_errors = errors;
    Some(refused)
}

#[cfg(test)]
mod tests {
    use protocol::batch::{BatchBuilder, Record};
    use protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use protocol::messages::ApiKey;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::server::dispatch::dispatch;

    #[tokio::test]
    async fn a_waiting_acks_all_reply_lets_go_of_the_request_frame() {
        // A reply that waits (acks=all) must not hold slices of the request
        // frame: they would pin the connection's read buffer, so that every
        // next receive allocates and faults in fresh memory.
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(
            Broker::open(BrokerConfig {
                data_dir: dir.path().to_path_buf(),
                ..BrokerConfig::default()
            })
            .await
            .unwrap(),
        );
        let (host, port) = broker.advertised();
        broker.join(&host, port).await.unwrap();
        broker
            .controller
            .create_topic(
                crate::controller::NewTopic {
                    name: "t".into(),
                    partitions: 1,
                    replication_factor: 1,
                    ..Default::default()
                },
                false,
            )
            .await
            .unwrap();
        let mut batch = BatchBuilder::new();
        batch.push(&Record {
            key: None,
            value: Some(Bytes::from_static(b"value")),
            headers: vec![],
            timestamp: 1,
        });
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch.build()))])]);
        let framed =
            protocol::header::encode_request(ApiKey::Produce, 9, 7, Some("client"), &request)
                .unwrap();
        // The frame as the connection hands it over: without the length prefix.
        let frame = framed.slice(4..);
        drop(framed);
        let peer = "127.0.0.1:1".parse().unwrap();
        let reply = dispatch(&broker, peer, frame.clone()).unwrap();
        let Reply::Later(answer) = reply else {
            panic!("acks=all answers once the high watermark has passed");
        };
        assert!(
            frame.is_unique(),
            "the waiting reply still holds the request's bytes"
        );
        let answer = answer.await.slice(4..);
        let (correlation_id, response): (i32, ProduceResponse) =
            protocol::header::decode_response(ApiKey::Produce, 9, answer).unwrap();
        assert_eq!(correlation_id, 7);
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(response.responses[0].name.0.as_str(), "t");
        assert_eq!(partition.error_code, 0);
        assert_eq!(partition.base_offset, 0);
    }
}
