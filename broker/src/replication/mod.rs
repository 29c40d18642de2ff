//! Partition replication. The leader and follower sides are state machines
//! without I/O (events in, commands out), the way `group/coordinator.rs`
//! is: no clock, socket, file or random number inside, so a deterministic
//! simulation can drive the same code. A thin runtime does the I/O.
//!
//! - [`leader`]: the leader side of one partition: each follower's progress,
//!   the in-sync replica set (ISR) and the changes to propose for it, the
//!   high watermark, and the `acks=all` requests waiting for it.
//! - [`follower`]: the follower side of one partition: where to fetch from,
//!   and what to do with the leader's answer (append, truncate on a
//!   diverging epoch, restart at the leader's log start, back off).
//! - [`fetcher`]: one task per leader broker fetching every partition this
//!   broker follows from it.
//! - [`throttle`]: the replication throttles of reassignments (which
//!   replicas, and the token bucket of their rate).
//! - [`runtime`]: the leaders' timer, the high watermark checkpoint, and the
//!   ISR proposals sent to the controller (AlterPartition).
//!
//! `docs/replication.md` describes the whole.

pub mod fetcher;
pub mod follower;
pub mod leader;
pub mod runtime;
pub mod throttle;
