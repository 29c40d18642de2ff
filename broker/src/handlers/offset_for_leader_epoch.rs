//! OffsetForLeaderEpoch (KIP-101, KIP-320): the end offset of a leader epoch
//! in the leader's log, from its leader-epoch cache. Consumers ask it after a
//! leader change to check that the position they hold was not truncated away.

use std::sync::Arc;

use bytes::Bytes;
use protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use protocol::ErrorCode;

use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: OffsetForLeaderEpochRequest = request.decode(&mut body)?;
    let image = broker.image();
    let topics = req
        .topics
        .into_iter()
        .map(|topic| {
            let found = image.topic(topic.topic.0.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let partition = match found
                        .ok_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
                        .and_then(|t| broker.replicas.leader_partition(t, p.partition))
                    {
                        Ok(partition) => partition,
                        Err(code) => return answer.with_error_code(code.code()),
                    };
                    let current = partition.leader_epoch().0;
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch != current {
                        let code = if p.current_leader_epoch < current {
                            ErrorCode::FENCED_LEADER_EPOCH
                        } else {
                            ErrorCode::UNKNOWN_LEADER_EPOCH
                        };
                        return answer.with_error_code(code.code());
                    }
                    match partition.end_offset_for_epoch(p.leader_epoch) {
                        Some((epoch, end_offset)) => {
                            answer.with_leader_epoch(epoch).with_end_offset(end_offset)
                        }
                        // Kafka's UNDEFINED: no such epoch and none before it.
                        None => answer,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    let response = OffsetForLeaderEpochResponse::default().with_topics(topics);
    Ok(Reply::Now(request.respond(&response)?))
}
