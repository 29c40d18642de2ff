//! A broker's life in the cluster, as Kafka's brokers live it: register with
//! the active controller (a new incarnation per process start), catch up
//! with the metadata log up to the registration, heartbeat until the
//! controller unfences it, keep heartbeating, and at shutdown ask for a
//! controlled shutdown so its leaderships move away first.

use std::sync::Arc;
use std::time::Duration;

use protocol::ErrorCode;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use crate::controller::membership::Registration;
use crate::controller::membership::{Heartbeat, HeartbeatReply};
use crate::controller::CONTROLLER_LISTENER_NAME;
use crate::ids::Offset;
use crate::metadata::Endpoint;
use crate::Broker;

/// Backoff between failed registrations or heartbeats (no controller yet).
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// This process's registration: its client endpoint, and its controller
/// listener (where a broker-only node receives the metadata log).
pub fn registration(broker: &Broker, host: &str, port: i32, incarnation: Uuid) -> Registration {
    let mut endpoints = vec![Endpoint {
        name: crate::CLIENT_LISTENER_NAME.to_string(),
        host: host.to_string(),
        port: u16::try_from(port).unwrap_or(0),
    }];
    if let Some(addr) = broker.controller_address() {
        endpoints.push(Endpoint {
            name: CONTROLLER_LISTENER_NAME.to_string(),
            host: addr.ip().to_string(),
            port: addr.port(),
        });
    }
    Registration {
        id: broker.node_id(),
        incarnation,
        endpoints,
        rack: broker.config.rack.clone(),
    }
}

/// Registers (retrying until a controller answers), waits until this
/// broker's metadata has caught up with its registration, then heartbeats
/// until it is unfenced. Returns the broker epoch.
pub async fn join(
    broker: &Broker,
    registration: Registration,
    shutdown: &CancellationToken,
) -> anyhow::Result<i64> {
    let mut backoff = RETRY_BACKOFF_MIN;
    let epoch = loop {
        match broker.controller.register(registration.clone()).await {
            Ok(epoch) => break epoch,
            Err(code) => {
                tracing::debug!(%code, "registration not accepted yet; retrying");
                if code == ErrorCode::DUPLICATE_BROKER_REGISTRATION {
                    tracing::info!("the previous incarnation's session is still live; waiting for it to expire");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => anyhow::bail!("shut down before registering"),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
    };
    tracing::info!(broker_epoch = epoch, "registered with the controller");
    broker.set_broker_epoch(epoch);
    let mut applied = broker.metadata.watch_applied();
    tokio::select! {
        _ = shutdown.cancelled() => anyhow::bail!("shut down before catching up"),
        caught_up = applied.wait_for(|offset| *offset >= Offset(epoch)) => { caught_up?; }
    }
    let mut backoff = RETRY_BACKOFF_MIN;
    loop {
        match heartbeat(broker, epoch, false).await {
            Ok(reply) if !reply.is_fenced => break,
            Ok(_) => {}
            Err(code) => tracing::debug!(%code, "heartbeat not accepted yet; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => anyhow::bail!("shut down before being unfenced"),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
    }
    tracing::info!(broker_epoch = epoch, "unfenced: serving as a live broker");
    Ok(epoch)
}

/// One heartbeat; its answer renews or ends the broker's lease on its
/// leaderships ([`crate::lease`]).
async fn heartbeat(
    broker: &Broker,
    epoch: i64,
    want_shutdown: bool,
) -> Result<HeartbeatReply, ErrorCode> {
    let sent_at = std::time::Instant::now();
    let reply = broker
        .controller
        .heartbeat(Heartbeat {
            id: broker.node_id(),
            broker_epoch: epoch,
            current_metadata_offset: broker.image().offset().0,
            want_fence: false,
            want_shutdown,
        })
        .await;
    match &reply {
        Ok(reply) if reply.is_fenced => broker.replicas.lease().revoke(),
        Ok(_) => broker.replicas.lease().renew(
            sent_at,
            Duration::from_millis(broker.config.broker_session_timeout_ms.max(0) as u64),
        ),
        // No answer: the lease runs out on its own.
        Err(_) => {}
    }
    reply
}

/// Heartbeats every `broker.heartbeat.interval.ms` until `stop`. A broker
/// the controller fenced (it was silent too long) is unfenced by a later
/// heartbeat once caught up; one whose registration was replaced
/// (`STALE_BROKER_EPOCH`) registers anew.
pub async fn heartbeat_loop(
    broker: Arc<Broker>,
    mut epoch: i64,
    mut registration: Registration,
    stop: CancellationToken,
) {
    let interval = Duration::from_millis(broker.config.broker_heartbeat_interval_ms);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match heartbeat(&broker, epoch, false).await {
            Ok(reply) if reply.is_fenced => {
                tracing::warn!(
                    broker_epoch = epoch,
                    "the controller has fenced this broker; heartbeating until unfenced"
                );
            }
            Ok(_) => {}
            Err(ErrorCode::STALE_BROKER_EPOCH) | Err(ErrorCode::BROKER_ID_NOT_REGISTERED) => {
                registration.incarnation = Uuid::new_v4();
                match join(&broker, registration.clone(), &stop).await {
                    Ok(new_epoch) => epoch = new_epoch,
                    Err(_) => return,
                }
            }
            Err(code) => tracing::debug!(%code, "heartbeat failed"),
        }
    }
}

/// Asks the controller to move this broker's leaderships away and fence it,
/// waiting at most `limit`. Best effort: a broker that cannot reach a
/// controller just stops, and its session expires.
pub async fn controlled_shutdown(broker: &Broker, epoch: i64, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let interval = Duration::from_millis(broker.config.broker_heartbeat_interval_ms.min(200));
    while let Some(left) = deadline.checked_duration_since(tokio::time::Instant::now()) {
        match tokio::time::timeout(left, heartbeat(broker, epoch, true)).await {
            Ok(Ok(reply)) if reply.should_shut_down => {
                tracing::info!("controlled shutdown: leaderships moved away");
                return;
            }
            Ok(_) => {}
            Err(_) => break,
        }
        tokio::time::sleep(interval).await;
    }
    tracing::warn!("controlled shutdown did not complete in {limit:?}; stopping anyway");
}
