//! The idempotent producer's identity and the decisions around it.
//!
//! InitProducerId hands out a producer id and epoch; every batch carries
//! them and a per-partition base sequence. The broker refuses a sequence
//! that is not the next one (OUT_OF_ORDER_SEQUENCE_NUMBER) and recognises a
//! batch it already has (DUPLICATE_SEQUENCE_NUMBER, or the original offset).
//! When the client can no longer know what the broker has for a partition
//! (a sequenced batch failed for good, or the broker reports a gap at the
//! very next sequence), it bumps the epoch and starts every partition's
//! sequences again from 0, as the Java client does for idempotent producers.

use protocol::messages::{InitProducerIdRequest, ProducerId};
use protocol::ErrorCode;

use crate::cluster::{Cluster, ClusterError};
use crate::connection::ConnectionError;

/// A producer id and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// The producer id the broker assigned.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i16,
}

/// The first InitProducerId version that can bump an existing epoch (KIP-360).
const INIT_PRODUCER_ID_BUMP_VERSION_MIN: i16 = 3;

/// Why InitProducerId failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InitProducerIdError {
    /// The broker answered with an error code.
    #[error("InitProducerId answered {code}")]
    Broker {
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
    },
    /// No broker could be reached.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The request failed on its connection.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
}

impl InitProducerIdError {
    /// Whether asking again may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            InitProducerIdError::Broker { code } => code.is_retriable(),
            InitProducerIdError::Cluster(e) => e.is_retriable(),
            InitProducerIdError::Connection(e) => e.is_retriable(),
        }
    }
}

/// Whether any broker we can reach serves InitProducerId.
pub async fn broker_supports_idempotence(cluster: &Cluster) -> Result<bool, ClusterError> {
    let connection = any_connection(cluster).await?;
    Ok(connection
        .api_versions()
        .supports(protocol::messages::ApiKey::InitProducerId))
}

async fn any_connection(
    cluster: &Cluster,
) -> Result<std::sync::Arc<crate::connection::Connection>, ClusterError> {
    let metadata = cluster.metadata();
    let mut addresses: Vec<String> = metadata.brokers.values().map(|b| b.addr()).collect();
    addresses.sort();
    addresses.extend(cluster.config().bootstrap_servers.iter().cloned());
    let mut last_error = None;
    for addr in &addresses {
        match cluster.connection_to(addr).await {
            Ok(connection) => return Ok(connection),
            Err(e) => last_error = Some(e),
        }
    }
    Err(ClusterError::NoBrokerReachable {
        tried: addresses,
        last_error: last_error.unwrap_or(ConnectionError::Connect {
            addr: String::new(),
            reason: "no address to try".to_string(),
        }),
    })
}

/// Asks for a producer id. With `current`, asks to bump its epoch where the
/// broker can (InitProducerId v3+); otherwise asks for a fresh id.
pub async fn init_producer_id(
    cluster: &Cluster,
    current: Option<ProducerIdentity>,
) -> Result<ProducerIdentity, InitProducerIdError> {
    let connection = any_connection(cluster).await?;
    let version = connection.version_for::<InitProducerIdRequest>()?;
    let (producer_id, producer_epoch) = match current {
        Some(identity) if version >= INIT_PRODUCER_ID_BUMP_VERSION_MIN => {
            (identity.producer_id, identity.producer_epoch)
        }
        _ => (-1, -1),
    };
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(i32::MAX)
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch);
    let response = connection.call_version(&request, version, None).await?;
    let code = ErrorCode(response.error_code);
    if !code.is_ok() {
        return Err(InitProducerIdError::Broker { code });
    }
    Ok(ProducerIdentity {
        producer_id: response.producer_id.0,
        producer_epoch: response.producer_epoch,
    })
}

/// What to do with a batch the broker refused for a sequence reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceVerdict {
    /// An earlier batch of the partition failed and will be retried first;
    /// retry this one after it, unchanged.
    RetryInOrder,
    /// The broker's state and ours disagree at the very next sequence: bump
    /// the epoch, re-number, then retry.
    BumpEpochAndRetry,
}

/// The Java client's rule for OUT_OF_ORDER_SEQUENCE_NUMBER and
/// UNKNOWN_PRODUCER_ID on an idempotent (non-transactional) producer: a batch
/// that is not the next after what was acknowledged is retried as is (an
/// earlier batch is being retried and must land first); one that is the
/// next means the broker lost or never had what we think it has, and only
/// a new epoch gets the partition going again. Positions are sequence
/// numbers that never wrap; `acked_positions` counts those acknowledged.
pub fn sequence_verdict(position: i64, acked_positions: i64) -> SequenceVerdict {
    if position == acked_positions {
        SequenceVerdict::BumpEpochAndRetry
    } else {
        SequenceVerdict::RetryInOrder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_behind_a_failed_batch_is_retried_in_order() {
        // Batch at position 10 while only 0..5 were acked: an earlier batch is still to be retried.
        assert_eq!(sequence_verdict(10, 5), SequenceVerdict::RetryInOrder);
    }

    #[test]
    fn out_of_order_at_the_next_sequence_bumps_the_epoch() {
        // The broker refuses exactly the next position: its state differs from ours.
        assert_eq!(sequence_verdict(5, 5), SequenceVerdict::BumpEpochAndRetry);
        assert_eq!(sequence_verdict(0, 0), SequenceVerdict::BumpEpochAndRetry);
        let past_wrap = i64::from(i32::MAX) + 1;
        assert_eq!(
            sequence_verdict(past_wrap, past_wrap),
            SequenceVerdict::BumpEpochAndRetry
        );
    }
}
