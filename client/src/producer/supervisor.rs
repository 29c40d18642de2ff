//! The sender task's supervisor: what happens when the sender dies.
//!
//! The sender is a spawned task that nobody joins. Were it to die (a panic:
//! a bug of ours, since delivery callbacks run inside `catch_unwind`), its
//! queued batches would keep their reports' senders alive in the shared
//! accumulator: their futures would hang, `send` would go on accepting
//! records until the buffer is full, and `flush` would wait forever. So
//! the sender runs inside [`supervise`], which catches its panic and then:
//!
//! - records why, in the [`SenderExit`] every batch shares, so a batch the
//!   dead sender held (in flight, or on its stack) reports
//!   `ProduceError::SenderStopped { reason }` when it is dropped;
//! - fails every queued batch with that error, reports the batches that
//!   had an outcome already, and marks every batch complete, so `flush`
//!   returns;
//! - refuses every later `send` with `SendError::SenderStopped { reason }`
//!   (checked under the accumulator lock, so no record slips in after the
//!   sweep), and closes the buffer's semaphore, so a `send` waiting for
//!   room stops waiting.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;

use crate::error::ProduceError;
use crate::panic_message;
use crate::producer::batch::{DeliveryCallback, ProducerBatch};
use crate::producer::sender::Shared;

/// Why the sender task stopped, once it has; shared by the producer and
/// every batch.
#[derive(Default)]
pub(crate) struct SenderExit {
    state: Mutex<ExitState>,
}

#[derive(Default)]
struct ExitState {
    reason: Option<String>,
    /// Callbacks of batches dropped while their thread was panicking: run
    /// then, a callback that panicked too would abort the process, so the
    /// supervisor runs them once the panic is caught.
    deferred: Vec<DeliveryCallback>,
}

impl SenderExit {
    /// Why the sender stopped; `None` while it runs.
    pub fn reason(&self) -> Option<String> {
        self.state.lock().expect("sender exit lock").reason.clone()
    }

    /// The error for a record the sender cannot report on any more.
    pub fn error(&self) -> ProduceError {
        ProduceError::SenderStopped {
            reason: self.reason().unwrap_or_else(|| {
                "the sender task dropped the record without a report (its runtime shut down?)"
                    .to_string()
            }),
        }
    }

    fn stop(&self, reason: String) {
        let mut state = self.state.lock().expect("sender exit lock");
        state.reason.get_or_insert(reason);
    }

    /// Keeps a callback to run once the panic under way is caught.
    pub fn defer(&self, callback: DeliveryCallback) {
        self.state
            .lock()
            .expect("sender exit lock")
            .deferred
            .push(callback);
    }

    fn take_deferred(&self) -> Vec<DeliveryCallback> {
        std::mem::take(&mut self.state.lock().expect("sender exit lock").deferred)
    }
}

/// Runs the sender task; if it panics, fails everything it left so that
/// no future hangs (see the module docs).
pub(crate) async fn supervise(shared: Arc<Shared>, sender: impl Future<Output = ()>) {
    let mut sender = Box::pin(AssertUnwindSafe(sender).catch_unwind());
    let Err(payload) = sender.as_mut().await else {
        // A normal exit: the producer is gone and every batch was reported.
        return;
    };
    let reason = format!(
        "the producer's sender task panicked: {}",
        panic_message(&*payload)
    );
    tracing::error!(%reason, "producer sender task died; failing every undelivered record");
    // The sender may have died holding these locks. What it left half
    // changed in the accumulator is swept below; the identity is only read.
    shared.accumulator.clear_poison();
    shared.identity.clear_poison();
    shared.exit.stop(reason.clone());
    // Dropping the sender's state drops the batches it held (in flight or
    // waiting for a connection); each reports `SenderStopped` with the
    // reason now recorded.
    drop(sender);
    let error = ProduceError::SenderStopped { reason };
    {
        let mut accumulator = shared.accumulator.lock().expect("accumulator lock");
        accumulator.sender_stopped = true;
        let mut queued: Vec<ProducerBatch> = Vec::new();
        for queues in accumulator.topics.values_mut() {
            for queue in &mut queues.partitions {
                queued.extend(queue.batches.drain(..));
                queue.in_flight = 0;
                queue.retries_in_flight = 0;
            }
        }
        accumulator
            .finished
            .extend(queued.into_iter().map(|batch| (batch, Err(error.clone()))));
    }
    // Reports every finished batch (those the sender had not reported yet
    // keep their own outcome) and gives their memory back.
    shared.report_finished();
    // Batches dropped elsewhere were reported by their drop; none of them
    // is complete for `flush` yet.
    shared
        .accumulator
        .lock()
        .expect("accumulator lock")
        .forget_incomplete();
    shared.batch_completed.notify_waiters();
    shared.memory.close();
    for callback in shared.exit.take_deferred() {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| callback(Err(error.clone()))));
        if let Err(payload) = result {
            tracing::error!(panic = %panic_message(&*payload), "a delivery callback panicked");
        }
    }
}
