//! DeleteRecords: moves partitions' log start offsets up on their leaders,
//! so that everything below is gone for consumers (and its segments for the
//! disk). The answer is each partition's new log start offset (Kafka's low
//! watermark); followers follow it through the log start offset of their
//! fetch answers.

use std::sync::Arc;

use bytes::Bytes;
use protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use protocol::ErrorCode;

use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: DeleteRecordsRequest = request.decode(&mut body)?;
    let image = broker.image();
    let mut moved = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let found = image.topic(topic.name.0.as_str());
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let outcome = match found {
                    None => Err(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
                    // Kafka refuses to delete records of its internal topics.
                    Some(t) if crate::topics::is_internal(&t.name) => {
                        Err(ErrorCode::INVALID_TOPIC_EXCEPTION)
                    }
                    Some(t) => broker
                        .replicas
                        .leader_partition(t, p.partition_index)
                        .and_then(|partition| partition.delete_records_before(p.offset)),
                };
                let result =
                    DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                match outcome {
                    Ok(low_watermark) => {
                        moved = true;
                        result
                            .with_low_watermark(low_watermark)
                            .with_error_code(ErrorCode::NONE.code())
                    }
                    Err(code) => result.with_low_watermark(-1).with_error_code(code.code()),
                }
            })
            .collect();
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    let response = DeleteRecordsResponse::default().with_topics(topics);
    if !moved {
        return Ok(Reply::Now(request.respond(&response)?));
    }
    // The new log start offsets are checkpointed before the answer, so that
    // deleted records do not come back after a crash.
    let logs = broker.logs.clone();
    let responder = request.responder();
    Ok(Reply::Later(Box::pin(async move {
        let written = tokio::task::spawn_blocking(move || logs.write_checkpoints()).await;
        if let Ok(Err(e)) = written {
            tracing::warn!(error = %e, "cannot checkpoint log start offsets after DeleteRecords");
        }
        responder
            .respond(&response)
            .expect("delete records response encodes")
    })))
}
