//! ListOffsets: earliest, latest, max-timestamp, and the first offset at or
//! after a timestamp.

use std::sync::Arc;

use bytes::Bytes;
use protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use protocol::ErrorCode;

use crate::partition::Partition;
use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::Broker;

/// Special timestamps of ListOffsets, as Kafka defines them.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
pub const LATEST_TIERED_TIMESTAMP: i64 = -5;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: ListOffsetsRequest = request.decode(&mut body)?;
    let mut topics = Vec::with_capacity(req.topics.len());
    let image = broker.image();
    for topic in req.topics {
        let found = image.topic(topic.name.0.as_str());
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let partition = found
                    .ok_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
                    .and_then(|t| broker.replicas.leader_partition(t, p.partition_index));
                match partition {
                    Err(code) => ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code.code())
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1),
                    Ok(partition) => lookup(&partition, p.partition_index, p.timestamp),
                }
            })
            .collect();
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    let response = ListOffsetsResponse::default().with_topics(topics);
    Ok(Reply::Now(request.respond(&response)?))
}

fn lookup(partition: &Partition, index: i32, timestamp: i64) -> ListOffsetsPartitionResponse {
    let base = ListOffsetsPartitionResponse::default()
        .with_partition_index(index)
        .with_leader_epoch(partition.leader_epoch().0);
    if partition.is_offline() {
        return base
            .with_error_code(ErrorCode::KAFKA_STORAGE_ERROR.code())
            .with_timestamp(-1)
            .with_offset(-1);
    }
    let (offset, found_timestamp) = match timestamp {
        LATEST_TIMESTAMP | LATEST_TIERED_TIMESTAMP => (partition.high_watermark(), -1),
        EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => (partition.log_start_offset(), -1),
        MAX_TIMESTAMP => match partition.max_timestamp_and_offset() {
            Some((ts, offset)) => (offset, ts),
            None => (-1, -1),
        },
        ts if ts >= 0 => match partition.offset_for_timestamp(ts) {
            // Only committed offsets are visible to consumers.
            Some((offset, found)) if offset < partition.high_watermark() => (offset, found),
            _ => (-1, -1),
        },
        _ => {
            return base
                .with_error_code(ErrorCode::INVALID_REQUEST.code())
                .with_timestamp(-1)
                .with_offset(-1)
        }
    };
    base.with_error_code(ErrorCode::NONE.code())
        .with_timestamp(found_timestamp)
        .with_offset(offset)
}
