//! Changes to what the consumer reads (`subscribe`, `seek`, `pause`, ...)
//! made on `&self` while another task's `poll` holds the fetch state.
//!
//! Such a call applies its change at once when no `poll` runs. While one
//! does, the change waits here, in the order the calls were made, and the
//! `poll` applies it before it next collects or hands out records; the
//! call wakes that `poll` if it is waiting for fetches. `assign` and
//! `unsubscribe`, which must also send requests, wait for the fetch state
//! instead, and a waiting `poll` gives it up early for them
//! ([`Controls::want_fetch_state`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::consumer::listener::RebalanceListener;
use crate::consumer::record::TopicPartition;
use crate::consumer::state::OffsetReset;

/// Bound on the changes waiting for a `poll` to apply them; past it, the
/// calls that queue one are refused (`TooManyQueued`).
pub const CONTROLS_QUEUED_MAX: usize = 1024;

/// One change waiting for the holder of the fetch state.
pub(super) enum Control {
    Subscribe {
        topics: Vec<String>,
        /// `None` keeps the listener the consumer has.
        listener: Option<Box<dyn RebalanceListener>>,
    },
    Seek {
        partition: TopicPartition,
        offset: i64,
    },
    SeekTo {
        partitions: Vec<TopicPartition>,
        reset: OffsetReset,
    },
    SetPaused {
        partitions: Vec<TopicPartition>,
        paused: bool,
    },
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Subscribe { topics, listener } => f
                .debug_struct("Subscribe")
                .field("topics", topics)
                .field("listener", &listener.is_some())
                .finish(),
            Control::Seek { partition, offset } => f
                .debug_struct("Seek")
                .field("partition", partition)
                .field("offset", offset)
                .finish(),
            Control::SeekTo { partitions, reset } => f
                .debug_struct("SeekTo")
                .field("partitions", partitions)
                .field("reset", reset)
                .finish(),
            Control::SetPaused { partitions, paused } => f
                .debug_struct("SetPaused")
                .field("partitions", partitions)
                .field("paused", paused)
                .finish(),
        }
    }
}

/// The queue of changes, and what wakes a `poll` for them.
#[derive(Default)]
pub(super) struct Controls {
    queued: Mutex<VecDeque<Control>>,
    /// Wakes a `poll` waiting for fetches: a change was queued, or a call
    /// waits for the fetch state.
    pub(super) woken: Notify,
    /// Calls waiting for the fetch state (`assign`, `unsubscribe`).
    fetch_state_wanted: AtomicUsize,
}

impl Controls {
    /// Queues a change for the `poll` in progress and wakes it; `Err` with
    /// the bound when [`CONTROLS_QUEUED_MAX`] changes already wait.
    pub(super) fn queue(&self, control: Control) -> Result<(), usize> {
        {
            let mut queued = self.queued.lock().expect("consumer controls lock");
            if queued.len() >= CONTROLS_QUEUED_MAX {
                return Err(CONTROLS_QUEUED_MAX);
            }
            queued.push_back(control);
        }
        self.woken.notify_one();
        Ok(())
    }

    /// Every change queued so far, oldest first.
    pub(super) fn take(&self) -> VecDeque<Control> {
        std::mem::take(&mut *self.queued.lock().expect("consumer controls lock"))
    }

    /// Marks a call as waiting for the fetch state until the returned guard
    /// is dropped (whether the call got it or was itself dropped), and
    /// wakes a waiting `poll` so that it gives the state up.
    pub(super) fn want_fetch_state(&self) -> FetchStateWanted<'_> {
        self.fetch_state_wanted.fetch_add(1, Ordering::SeqCst);
        self.woken.notify_one();
        FetchStateWanted { controls: self }
    }

    /// Whether a call waits for the fetch state: `poll` then returns
    /// rather than wait for fetches.
    pub(super) fn fetch_state_wanted(&self) -> bool {
        self.fetch_state_wanted.load(Ordering::SeqCst) > 0
    }
}

/// See [`Controls::want_fetch_state`].
pub(super) struct FetchStateWanted<'a> {
    controls: &'a Controls,
}

impl Drop for FetchStateWanted<'_> {
    fn drop(&mut self) {
        self.controls
            .fetch_state_wanted
            .fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_come_out_in_order_and_the_queue_is_bounded() {
        // Queued seeks come out oldest first; past CONTROLS_QUEUED_MAX a change is refused with the bound.
        let controls = Controls::default();
        for offset in 0..CONTROLS_QUEUED_MAX as i64 {
            let partition = TopicPartition::new("t", 0);
            controls.queue(Control::Seek { partition, offset }).unwrap();
        }
        let partition = TopicPartition::new("t", 0);
        assert_eq!(
            controls.queue(Control::Seek {
                partition,
                offset: -1
            }),
            Err(CONTROLS_QUEUED_MAX)
        );
        let offsets: Vec<i64> = controls
            .take()
            .into_iter()
            .map(|c| match c {
                Control::Seek { offset, .. } => offset,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(offsets, (0..CONTROLS_QUEUED_MAX as i64).collect::<Vec<_>>());
        assert!(controls.take().is_empty());
    }

    #[test]
    fn the_fetch_state_is_wanted_while_a_guard_lives() {
        // want_fetch_state counts waiting calls until their guards drop, even a dropped call's.
        let controls = Controls::default();
        assert!(!controls.fetch_state_wanted());
        let first = controls.want_fetch_state();
        let second = controls.want_fetch_state();
        drop(first);
        assert!(controls.fetch_state_wanted());
        drop(second);
        assert!(!controls.fetch_state_wanted());
    }
}
