//! The producer side of a run: idempotent sends with acks=all, round robin
//! over the partitions, each record's value naming its send, and every
//! delivery report written into the run's [`History`].

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::{Acks, Producer, ProducerConfig, ProducerRecord, SendError};
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::verify::history::{encode_value, History, Outcome, RunId, SendId};

/// Default bound on records sent and not yet reported on. Enough to fill
/// the five batches per partition an idempotent producer keeps in flight
/// at small record sizes, small enough that a stalled cluster does not
/// pile up work.
pub const IN_FLIGHT_RECORDS_DEFAULT: usize = 1_000;

/// Bound on the sends of one run: the history keeps one entry per send in
/// memory (about 50 bytes each), so a run with no count at a high rate
/// stops here rather than growing without limit.
pub const SENDS_MAX: u64 = 10_000_000;

/// How long past the delivery timeout the run waits for the last reports.
/// The producer reports every record within its delivery timeout; this
/// margin only covers a producer that breaks that promise, whose records
/// are then recorded as unknown.
const REPORT_WAIT_MARGIN: Duration = Duration::from_secs(10);

/// What to produce and how.
#[derive(Debug, Clone)]
pub struct ProduceSettings {
    pub bootstrap_servers: String,
    pub topic: String,
    pub partition_count: i32,
    /// Stop after this many sends...
    pub count: Option<u64>,
    /// ...or after this long, whichever comes first (and always at
    /// [`SENDS_MAX`]).
    pub duration: Option<Duration>,
    /// Sends per second; as fast as the in-flight bound allows when absent.
    pub rate: Option<f64>,
    /// Bound on records sent and not yet reported on.
    pub in_flight_max: usize,
    /// Size of each value (at least its self-description, about 40 bytes).
    pub message_bytes: usize,
    /// The producer's `delivery_timeout`: a record without an
    /// acknowledgement by then is reported, and recorded as unknown.
    pub delivery_timeout: Duration,
    /// The producer's `request_timeout`.
    pub request_timeout: Duration,
}

/// Why the producer side could not run at all. Failures of single sends
/// are not errors: they go into the history.
#[derive(Debug, Error)]
pub enum ProduceRunError {
    #[error("cannot connect the producer")]
    Connect(#[from] client::ConnectError),
    #[error("the cluster gave the producer no producer id (no InitProducerId): the verifier needs idempotence, whose ordering and no-duplicate guarantees it checks")]
    NotIdempotent,
    #[error("bad settings: {0}")]
    Settings(String),
}

/// Produces until the count, the duration or `stop` ends the run, then
/// waits for every delivery report. Every send made is in the history,
/// with what the cluster said about it.
pub async fn produce(
    settings: &ProduceSettings,
    run_id: RunId,
    stop: impl Future<Output = ()>,
) -> Result<History, ProduceRunError> {
    validate(settings)?;
    let mut config = ProducerConfig::new(&settings.bootstrap_servers);
    config.client_id = format!("verifier-{run_id}");
    config.acks = Acks::All;
    config.enable_idempotence = true;
    config.delivery_timeout = settings.delivery_timeout;
    config.request_timeout = settings.request_timeout;
    config.max_block = settings.delivery_timeout;
    let producer = Producer::connect(config).await?;
    if producer.identity().is_none() {
        return Err(ProduceRunError::NotIdempotent);
    }

    let partition_count = settings.partition_count;
    let count = settings.count.unwrap_or(SENDS_MAX).min(SENDS_MAX);
    let started = Instant::now();
    let ends_at = settings.duration.map(|d| started + d);
    let permits = Arc::new(Semaphore::new(settings.in_flight_max));
    // Indexed by send number; a callback fills in its own entry.
    let outcomes: Arc<Mutex<Vec<Option<Outcome>>>> = Arc::new(Mutex::new(Vec::new()));
    let mut ids: Vec<SendId> = Vec::new();
    let mut next_sequence = vec![0u64; partition_count as usize];
    tokio::pin!(stop);

    for index in 0..count {
        if ends_at.is_some_and(|end| Instant::now() >= end) {
            break;
        }
        let scheduled = settings
            .rate
            .map(|rate| started + Duration::from_secs_f64(index as f64 / rate));
        let permit = tokio::select! {
            biased;
            () = &mut stop => break,
            () = sleep_until_opt(ends_at) => break,
            permit = async {
                if let Some(at) = scheduled {
                    tokio::time::sleep_until(at).await;
                }
                permits.clone().acquire_owned().await
            } => permit.expect("the in-flight semaphore is never closed"),
        };
        let partition = (index % partition_count as u64) as i32;
        let id = SendId {
            partition,
            sequence: next_sequence[partition as usize],
        };
        next_sequence[partition as usize] += 1;
        let slot = ids.len();
        ids.push(id);
        outcomes.lock().expect("outcomes lock").push(None);
        let record = ProducerRecord::new(settings.topic.as_str())
            .with_partition(partition)
            .with_value(encode_value(run_id, id, settings.message_bytes));
        let reports = outcomes.clone();
        let sent = producer
            .send_with_callback(record, move |result| {
                let outcome = match result {
                    Ok(metadata) => Outcome::Acked {
                        offset: metadata.offset,
                    },
                    Err(e) => Outcome::Unknown {
                        error: e.to_string(),
                    },
                };
                reports.lock().expect("outcomes lock")[slot] = Some(outcome);
                drop(permit);
            })
            .await;
        if let Err(e) = sent {
            // The record was not queued, so it never left this process.
            outcomes.lock().expect("outcomes lock")[slot] = Some(Outcome::NotSent {
                error: e.to_string(),
            });
            if matches!(e, SendError::SenderStopped { .. } | SendError::Closed) {
                tracing::error!(error = %e, "the producer stopped; ending the run");
                break;
            }
        }
    }

    let report_wait = settings.delivery_timeout + settings.request_timeout + REPORT_WAIT_MARGIN;
    if tokio::time::timeout(report_wait, producer.flush())
        .await
        .is_err()
    {
        tracing::warn!(
            ?report_wait,
            "some delivery reports did not come; their sends are unknown"
        );
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().expect("outcomes lock"));
    assert_eq!(outcomes.len(), ids.len(), "one outcome slot per send");
    let sends = ids
        .into_iter()
        .zip(outcomes)
        .map(|(id, outcome)| crate::verify::history::Send {
            partition: id.partition,
            sequence: id.sequence,
            outcome: outcome.unwrap_or_else(|| Outcome::Unknown {
                error: format!("no delivery report within {report_wait:?} of the end of the run"),
            }),
        })
        .collect();
    Ok(History {
        run_id,
        topic: settings.topic.clone(),
        partition_count,
        sends,
    })
}

fn validate(settings: &ProduceSettings) -> Result<(), ProduceRunError> {
    let problem = if settings.partition_count < 1 {
        Some("the topic needs at least one partition".to_string())
    } else if settings.in_flight_max == 0 {
        Some("the in-flight bound must be at least 1".to_string())
    } else if settings.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        Some("the rate must be a positive number".to_string())
    } else {
        None
    };
    problem.map_or(Ok(()), |p| Err(ProduceRunError::Settings(p)))
}

/// Sleeps until `at`, or forever when there is no `at`.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
