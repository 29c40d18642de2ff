//! InitProducerId for idempotent (non-transactional) producers: a fresh
//! producer id with epoch 0, or, when a producer asks to bump its epoch after
//! a fatal sequence error (KIP-360), the same id with the next epoch.

use std::sync::Arc;

use bytes::Bytes;
use protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use protocol::ErrorCode;

use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: InitProducerIdRequest = request.decode(&mut body)?;
    let response = if req.transactional_id.is_some() {
        InitProducerIdResponse::default()
            .with_error_code(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    } else if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1
    {
        // Epoch bump of an existing producer: its old epoch is fenced from now on.
        InitProducerIdResponse::default()
            .with_error_code(ErrorCode::NONE.code())
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1)
    } else {
        match broker.producer_ids.allocate() {
            Ok(id) => InitProducerIdResponse::default()
                .with_error_code(ErrorCode::NONE.code())
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
            Err(e) => {
                tracing::error!(error = %e, "cannot persist the producer id block");
                InitProducerIdResponse::default()
                    .with_error_code(ErrorCode::KAFKA_STORAGE_ERROR.code())
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            }
        }
    };
    Ok(Reply::Now(request.respond(&response)?))
}
