//! Benchmarks: the `loadgen` tool (`src/bin/loadgen.rs`) and the
//! micro-benchmarks under `benches/`; and the `verifier` tool
//! (`src/bin/verifier.rs`), which checks a cluster for lost, duplicated,
//! reordered and phantom records.
//!
//! - [`stats`]: latency histograms (hdrhistogram) and per-second buckets.
//! - [`report`]: the progress line, the summary, `--json` and `--plot` output.
//! - [`baseline`]: what the machine does with no broker logic, for ratios.
//! - [`rdkafka_batch`]: librdkafka's batch consume call, which rust-rdkafka
//!   does not wrap.
//! - [`verify`]: the verifier's producer, reader and checker.

pub mod baseline;
pub mod rdkafka_batch;
pub mod report;
pub mod stats;
pub mod verify;
