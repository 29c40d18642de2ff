//! The commit lane: every commit of a consumer (sync, async, auto-commit,
//! before a revocation, on close) is queued here and sent in the order it
//! was made, by one task per group.
//!
//! Queuing is synchronous, so `commit_async` is a plain function that
//! returns with its commit already in line: it never waits for the
//! coordinator, and a later commit can neither overtake nor be overtaken
//! by it. The lane task puts one commit at a time on the coordinator
//! connection; a single-attempt (async) commit's answer is awaited beside
//! the lane, so async commits are pipelined, while a retrying (sync)
//! commit holds the lane until it is answered or gives up, so nothing made
//! after it can land before it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::consumer::coordinator::{Group, Member};
use crate::consumer::error::CommitError;
use crate::consumer::offsets;
use crate::consumer::record::{OffsetAndMetadata, TopicPartition};

/// Bound on commits queued and not yet on the coordinator connection; a
/// commit made while this many wait fails at once with
/// [`CommitError::TooManyQueued`].
pub const COMMITS_QUEUED_MAX: usize = 1024;

/// How a queued commit is sent.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Attempts {
    /// Once; the outcome of that attempt is the commit's.
    Once,
    /// Retrying retriable errors until this much time has passed.
    RetryFor(Duration),
}

struct Job {
    offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    member: Member,
    attempts: Attempts,
    reply: oneshot::Sender<Result<(), CommitError>>,
}

/// The sending end of a group's commit lane.
pub(crate) struct CommitLane {
    jobs: mpsc::Sender<Job>,
}

impl CommitLane {
    /// Starts the lane task of `group`; it ends once the lane is dropped
    /// and every queued commit has been sent.
    pub fn start(group: Arc<Group>) -> CommitLane {
        let (jobs, receiver) = mpsc::channel(COMMITS_QUEUED_MAX);
        tokio::spawn(run(group, receiver));
        CommitLane { jobs }
    }

    /// Queues a commit and returns its outcome as a future. Synchronous:
    /// the commit is in line when this returns, whether or not the future
    /// is ever awaited.
    pub fn queue(
        &self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        member: Member,
        attempts: Attempts,
    ) -> CommitFuture {
        if offsets.is_empty() {
            return CommitFuture::ready(Ok(()));
        }
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            offsets,
            member,
            attempts,
            reply,
        };
        match self.jobs.try_send(job) {
            Ok(()) => CommitFuture {
                state: State::Queued(outcome),
            },
            Err(mpsc::error::TrySendError::Full(_)) => {
                CommitFuture::ready(Err(CommitError::TooManyQueued {
                    queued_max: COMMITS_QUEUED_MAX,
                }))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                CommitFuture::ready(Err(CommitError::Closed))
            }
        }
    }
}

async fn run(group: Arc<Group>, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.recv().await {
        let Job {
            offsets,
            member,
            attempts,
            reply,
        } = job;
        match attempts {
            Attempts::Once => {
                // On the connection before the next job starts; answered
                // beside the lane.
                let answer = offsets::commit_once(group.clone(), offsets, member).await;
                tokio::spawn(async move {
                    let _ = reply.send(answer.await);
                });
            }
            Attempts::RetryFor(timeout) => {
                let result = offsets::commit_sync(&group, &offsets, &member, timeout).await;
                let _ = reply.send(result);
            }
        }
    }
}

/// The outcome of a commit: await it, or drop it to ignore the outcome
/// (the commit is sent either way).
#[must_use = "a commit is sent whether or not this is awaited; await it to learn its outcome"]
pub struct CommitFuture {
    state: State,
}

enum State {
    Ready(Option<Result<(), CommitError>>),
    Queued(oneshot::Receiver<Result<(), CommitError>>),
}

impl CommitFuture {
    pub(crate) fn ready(result: Result<(), CommitError>) -> Self {
        CommitFuture {
            state: State::Ready(Some(result)),
        }
    }
}

impl std::fmt::Debug for CommitFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Ready(_) => "ready",
            State::Queued(_) => "queued",
        };
        f.debug_struct("CommitFuture")
            .field("state", &state)
            .finish()
    }
}

impl Future for CommitFuture {
    type Output = Result<(), CommitError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Ready(result) => {
                Poll::Ready(result.take().expect("CommitFuture polled after completion"))
            }
            State::Queued(outcome) => match Pin::new(outcome).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(result)) => Poll::Ready(result),
                // The lane ended without answering: the consumer is gone.
                Poll::Ready(Err(_)) => Poll::Ready(Err(CommitError::Closed)),
            },
        }
    }
}
