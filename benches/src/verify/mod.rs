//! The verifier: produces with acks=all while recording every
//! acknowledgement, reads every partition back, and reports lost,
//! wrong-offset, duplicated, reordered and phantom records. It speaks only
//! the Kafka protocol (through the `client` crate), so it checks any
//! Kafka-compatible cluster. `docs/verifier.md` describes the command.
//!
//! - [`history`]: what was sent and what the cluster said (the oracle's
//!   input), the self-describing record values, the history file.
//! - [`check`]: the pure checker, history and log in, [`Report`] out.
//! - [`produce`]: the producer side (idempotent, acks=all, bounded in flight).
//! - [`read`]: the consumer side (every partition up to its high watermark).
//! - [`topic`]: CreateTopics and ListOffsets over the client's connections.
//! - [`summary`]: the human form of the report.

pub mod check;
pub mod history;
pub mod produce;
pub mod read;
pub mod summary;
pub mod topic;

#[cfg(test)]
mod tests;

pub use check::{check, ConsumedLog, ConsumedRecord, PartitionRead, Report, Verdict};
pub use history::{History, Outcome, RunId, Send, SendId};
