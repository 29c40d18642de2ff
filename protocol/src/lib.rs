//! The Kafka wire protocol as this project speaks it.
//!
//! - [`frame`]: size-prefixed frames with a bounded maximum (a tokio-util codec).
//! - [`header`]: request/response headers, flexible versions, frame encoding helpers.
//! - [`batch`]: record batch v2: zero-copy header view, CRC-32C validation,
//!   in-place offset assignment, a builder and a record decoder for clients.
//! - [`compression`]: the batch codecs (gzip, snappy, lz4, zstd), bounded on decompression.
//! - [`chunks`]: an encode buffer that keeps record sets by reference (zero-copy responses).
//! - [`error`]: Kafka error codes and whether each is retriable.
//! - [`messages`]: the API message schemas, re-exported from `kafka-protocol`;
//!   record sets inside them stay `Bytes` slices of the received frame.

pub mod batch;
pub mod chunks;
pub mod compression;
pub mod error;
pub mod frame;
pub mod header;
pub mod varint;

pub use error::ErrorCode;
pub use kafka_protocol::messages;
pub use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes, VersionRange};
pub use kafka_protocol::ResponseError;
