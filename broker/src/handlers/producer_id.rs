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
    let refused = |code: ErrorCode| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        let response = refused(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        return Ok(Reply::Now(request.respond(&response)?));
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        // Epoch bump of an existing producer: its old epoch is fenced from now on.
        let response = InitProducerIdResponse::default()
            .with_error_code(ErrorCode::NONE.code())
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
        return Ok(Reply::Now(request.respond(&response)?));
    }
    // A fresh id may need a new block from the controller: answered once it is committed.
    let broker = broker.clone();
    let responder = request.responder();
    Ok(Reply::Later(Box::pin(async move {
        let response = match broker.producer_ids.allocate(&broker).await {
            Ok(id) => InitProducerIdResponse::default()
                .with_error_code(ErrorCode::NONE.code())
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
            Err(code) => {
                tracing::warn!(%code, "no producer id block from the controller");
                // Retriable for the client: the controller may be moving.
                refused(if code.is_retriable() {
                    code
                } else {
                    ErrorCode::COORDINATOR_NOT_AVAILABLE
                })
            }
        };
        responder
            .respond(&response)
            .expect("init producer id response encodes")
    })))
}
