//! The broker's lease on its leaderships: how long the controller cannot
//! yet have fenced it.
//!
//! The active controller fences a broker it has not heard from for
//! `broker.session.timeout.ms` (a new active controller first gives every
//! broker a full session), and only then elects other leaders for its
//! partitions. So a heartbeat sent at `t` and answered "not fenced" means no
//! controller can have fenced this broker before `t + session`: until then
//! its leaderships are its own, unless metadata it has not seen yet moved
//! them for another reason, which the leader epochs fence. Once the lease
//! lapses (the broker was paused, starved, or cut off from the controller),
//! another broker may already lead its partitions, and a record it appended
//! now could still reach that new leader's log through a follower that has
//! not heard of the change yet. So a leader whose lease has lapsed appends
//! nothing (`NOT_LEADER_OR_FOLLOWER`, retriable) until a heartbeat renews it
//! or metadata tells it who leads.
//!
//! Clocks: the broker measures from when it *sent* the heartbeat, on its
//! monotonic clock, which runs on through a SIGSTOP; the controller measures
//! from when it *received* it, which is later. A broker that never joined a
//! controller (some unit tests) holds no lease and is not held to one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Lease {
    origin: Instant,
    /// Nanoseconds after `origin` at which the lease lapses.
    expires_ns: AtomicU64,
    enforced: AtomicBool,
}

impl Default for Lease {
    fn default() -> Self {
        Lease::new()
    }
}

impl Lease {
    /// A lease not enforced until its first renewal.
    pub fn new() -> Lease {
        Lease {
            origin: Instant::now(),
            expires_ns: AtomicU64::new(0),
            enforced: AtomicBool::new(false),
        }
    }

    /// A heartbeat sent at `sent_at` was answered "not fenced": the lease
    /// runs until `sent_at + session`, unless it already runs longer.
    pub fn renew(&self, sent_at: Instant, session: Duration) {
        let until = self.nanos(sent_at.saturating_duration_since(self.origin) + session);
        self.expires_ns.fetch_max(until, Ordering::AcqRel);
        self.enforced.store(true, Ordering::Release);
    }

    /// The controller answered that this broker is fenced.
    pub fn revoke(&self) {
        self.expires_ns.store(0, Ordering::Release);
        self.enforced.store(true, Ordering::Release);
    }

    /// Whether this broker may still act as the leader it believes it is.
    pub fn holds(&self) -> bool {
        self.holds_at(Instant::now())
    }

    fn holds_at(&self, now: Instant) -> bool {
        if !self.enforced.load(Ordering::Acquire) {
            return true;
        }
        let now = self.nanos(now.saturating_duration_since(self.origin));
        now < self.expires_ns.load(Ordering::Acquire)
    }

    fn nanos(&self, since_origin: Duration) -> u64 {
        u64::try_from(since_origin.as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_secs(3);

    #[test]
    fn a_broker_that_never_joined_is_not_held_to_a_lease() {
        let lease = Lease::new();
        assert!(lease.holds_at(Instant::now() + Duration::from_secs(3600)));
    }

    #[test]
    fn the_lease_runs_a_session_from_when_the_heartbeat_was_sent() {
        let lease = Lease::new();
        let sent = Instant::now();
        lease.renew(sent, SESSION);
        assert!(lease.holds_at(sent + SESSION - Duration::from_millis(1)));
        assert!(!lease.holds_at(sent + SESSION));
        // A later heartbeat extends it; an answer to an older one never shortens it.
        lease.renew(sent + Duration::from_secs(2), SESSION);
        lease.renew(sent, SESSION);
        assert!(lease.holds_at(sent + Duration::from_secs(4)));
        assert!(!lease.holds_at(sent + Duration::from_secs(5)));
    }

    #[test]
    fn a_fenced_answer_ends_the_lease_until_the_next_renewal() {
        let lease = Lease::new();
        let sent = Instant::now();
        lease.renew(sent, SESSION);
        lease.revoke();
        assert!(!lease.holds_at(sent));
        lease.renew(sent + Duration::from_secs(1), SESSION);
        assert!(lease.holds_at(sent + Duration::from_secs(2)));
    }
}
