//! Partition replication as state machines without I/O (events in, commands
//! out), the way `group/coordinator.rs` is: no clock, socket, file or random
//! number inside, so a deterministic simulation can drive the same code.
//!
//! - [`leader`]: the leader side of one partition: each follower's progress,
//!   the in-sync replica set (ISR) and the changes to propose for it, the
//!   high watermark, and the `acks=all` requests waiting for it.
//!
//! The runtime that fetches, appends and keeps time around these machines
//! is not built yet (see `docs/cluster.md`).

pub mod follower;
pub mod leader;
