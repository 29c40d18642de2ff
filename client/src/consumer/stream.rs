//! [`RecordStream`]: the consumer's records as a [`futures::Stream`], one
//! record at a time.
//!
//! The stream keeps no records of its own: it hands out the records the
//! consumer collected (see `undelivered`) one by one, and while there are
//! none it drives one round of `poll`'s work, kept across `poll_next`
//! calls. Dropping `next()` or the stream therefore loses nothing: the
//! round in progress is cancel-safe, and records not yet yielded stay in
//! the consumer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;

use crate::consumer::error::PollError;
use crate::consumer::record::ConsumerRecord;
use crate::consumer::Consumer;

/// How long one round of the stream waits for records before it starts
/// the next (each round does the group work, as a `poll` does).
pub const STREAM_POLL_TIMEOUT: Duration = Duration::from_secs(1);

/// One round of `poll`'s work under the consumer's lock: the next record
/// collected, if any, after at most one `poll` round.
type Round<'a> =
    Pin<Box<dyn Future<Output = Result<Option<ConsumerRecord>, PollError>> + Send + 'a>>;

enum State<'a> {
    /// Between rounds.
    Idle,
    Polling(Round<'a>),
    /// A round panicked; the stream has ended.
    Ended,
}

/// The records of a [`Consumer`] as a [`futures::Stream`]; see
/// [`Consumer::stream`]. Items are `Ok(record)`, or a [`PollError`] where
/// `poll` would have returned one (the stream goes on after it). The
/// stream does not end.
#[must_use = "streams do nothing unless polled"]
pub struct RecordStream<'a> {
    consumer: &'a Consumer,
    state: State<'a>,
}

impl<'a> RecordStream<'a> {
    pub(crate) fn new(consumer: &'a Consumer) -> RecordStream<'a> {
        RecordStream {
            consumer,
            state: State::Idle,
        }
    }
}

impl std::fmt::Debug for RecordStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Idle => "idle",
            State::Polling(_) => "polling",
            State::Ended => "ended",
        };
        f.debug_struct("RecordStream")
            .field("state", &state)
            .finish()
    }
}

impl Stream for RecordStream<'_> {
    type Item = Result<ConsumerRecord, PollError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match std::mem::replace(&mut self.state, State::Ended) {
                State::Idle => {
                    // The common case: a record waits and nobody else polls.
                    if let Ok(mut inner) = self.consumer.inner.try_lock() {
                        if let Some(record) = inner.pop_record() {
                            self.state = State::Idle;
                            return Poll::Ready(Some(Ok(record)));
                        }
                    }
                    let consumer = self.consumer;
                    self.state = State::Polling(Box::pin(async move {
                        let mut inner = consumer.inner.lock().await;
                        if let Some(record) = inner.pop_record() {
                            return Ok(Some(record));
                        }
                        let filled = inner.fill(STREAM_POLL_TIMEOUT).await;
                        inner.publish();
                        filled?;
                        Ok(inner.pop_record())
                    }));
                }
                State::Polling(mut round) => match round.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.state = State::Polling(round);
                        return Poll::Pending;
                    }
                    Poll::Ready(result) => {
                        self.state = State::Idle;
                        match result {
                            Ok(Some(record)) => return Poll::Ready(Some(Ok(record))),
                            Err(error) => return Poll::Ready(Some(Err(error))),
                            // A round that timed out with nothing is
                            // followed by the next.
                            Ok(None) => {}
                        }
                    }
                },
                State::Ended => return Poll::Ready(None),
            }
        }
    }
}
