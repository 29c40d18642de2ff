//! Record batch compression, shared with the broker: the codecs live in the
//! protocol crate, re-exported here under the client's name for them.

pub use protocol::compression::*;
