//! The controller listener's framing of openraft's RPCs: Kafka frames (a
//! 4-byte size, a request header v1, a body) with private API keys above
//! Kafka's range, and bodies in bincode (openraft's types are serde types).
//!
//! A response frame is a size, a correlation id (response header v0) and a
//! bincode body: `Result<response, openraft error>`, so a remote Raft error
//! reaches the caller as openraft's `RemoteError`.

use bincode::Options;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// AppendEntries (replication and heartbeats).
pub const API_KEY_APPEND_ENTRIES: i16 = 10_000;
/// RequestVote.
pub const API_KEY_VOTE: i16 = 10_001;
/// One chunk of an InstallSnapshot.
pub const API_KEY_INSTALL_SNAPSHOT: i16 = 10_002;
/// The only version of each of the above.
pub const API_VERSION: i16 = 0;

/// Bound on one controller frame, either way (the size prefix excluded). An
/// AppendEntries holds at most `APPEND_ENTRIES_MAX` entries of at most
/// `ENTRY_PAYLOAD_BYTES_MAX` each, and a snapshot chunk `SNAPSHOT_CHUNK_BYTES`.
pub const FRAME_BYTES_MAX: usize = 64 << 20;
/// Bound on one proposed payload.
pub const ENTRY_PAYLOAD_BYTES_MAX: usize = 1 << 20;
/// Bound on the entries openraft puts in one AppendEntries.
pub const APPEND_ENTRIES_MAX: u64 = 32;
/// Size of the chunks a snapshot is sent in.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 4 << 20;
/// Bound on the client id a request header may carry.
const CLIENT_ID_BYTES_MAX: usize = 256;

const _: () = assert!(
    ENTRY_PAYLOAD_BYTES_MAX as u64 * APPEND_ENTRIES_MAX + (1 << 20) <= FRAME_BYTES_MAX as u64
        && SNAPSHOT_CHUNK_BYTES + (1 << 20) <= FRAME_BYTES_MAX as u64,
    "the largest RPC must fit one frame"
);

/// Whether `api_key` is one of the quorum's own RPCs (anything else on the
/// controller listener goes to the application's handler).
pub fn is_raft_api_key(api_key: i16) -> bool {
    matches!(
        api_key,
        API_KEY_APPEND_ENTRIES | API_KEY_VOTE | API_KEY_INSTALL_SNAPSHOT
    )
}

#[derive(Debug, Error)]
pub enum WireError {
    #[error("frame of {0} bytes is too short for its header")]
    TooShort(usize),
    #[error("client id of {0} bytes is malformed or too long")]
    BadClientId(i16),
    #[error("api key {api_key} version {api_version} is not a quorum RPC")]
    Unsupported { api_key: i16, api_version: i16 },
    #[error("body does not decode: {0}")]
    Body(String),
    #[error("frame of {size} bytes exceeds the bound {limit}")]
    TooLarge { size: usize, limit: usize },
}

/// The request header v1 fields the listener needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub correlation_id: i32,
}

fn codec() -> impl Options {
    bincode::DefaultOptions::new().with_limit(FRAME_BYTES_MAX as u64)
}

/// A request frame, size prefix included.
pub fn encode_request<T: Serialize>(
    api_key: i16,
    correlation_id: i32,
    client_id: &str,
    body: &T,
) -> Result<Bytes, WireError> {
    assert!(
        client_id.len() <= CLIENT_ID_BYTES_MAX,
        "our own client id is short"
    );
    let body = codec()
        .serialize(body)
        .map_err(|e| WireError::Body(e.to_string()))?;
    let size = 2 + 2 + 4 + 2 + client_id.len() + body.len();
    if size > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge {
            size,
            limit: FRAME_BYTES_MAX,
        });
    }
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_u32(size as u32);
    out.put_i16(api_key);
    out.put_i16(API_VERSION);
    out.put_i32(correlation_id);
    out.put_i16(client_id.len() as i16);
    out.put_slice(client_id.as_bytes());
    out.put_slice(&body);
    Ok(out.freeze())
}

/// Reads the request header of a frame (size prefix already removed),
/// leaving `frame` at the body.
pub fn decode_request_header(frame: &mut Bytes) -> Result<RequestHeader, WireError> {
    if frame.len() < 10 {
        return Err(WireError::TooShort(frame.len()));
    }
    let api_key = frame.get_i16();
    let api_version = frame.get_i16();
    let correlation_id = frame.get_i32();
    if !is_raft_api_key(api_key) || api_version != API_VERSION {
        return Err(WireError::Unsupported {
            api_key,
            api_version,
        });
    }
    let client_id_len = frame.get_i16();
    if client_id_len > 0 {
        let len = client_id_len as usize;
        if len > CLIENT_ID_BYTES_MAX || len > frame.len() {
            return Err(WireError::BadClientId(client_id_len));
        }
        frame.advance(len);
    } else if client_id_len < -1 {
        return Err(WireError::BadClientId(client_id_len));
    }
    Ok(RequestHeader {
        api_key,
        correlation_id,
    })
}

/// Decodes a body; the whole rest of the frame must be the body.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    codec()
        .deserialize(body)
        .map_err(|e| WireError::Body(e.to_string()))
}

/// A response frame, size prefix included.
pub fn encode_response<T: Serialize>(correlation_id: i32, body: &T) -> Result<Bytes, WireError> {
    let body = codec()
        .serialize(body)
        .map_err(|e| WireError::Body(e.to_string()))?;
    let size = 4 + body.len();
    if size > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge {
            size,
            limit: FRAME_BYTES_MAX,
        });
    }
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_u32(size as u32);
    out.put_i32(correlation_id);
    out.put_slice(&body);
    Ok(out.freeze())
}

/// Splits a response frame (size prefix already removed) into its
/// correlation id and decoded body.
pub fn decode_response<T: DeserializeOwned>(mut frame: Bytes) -> Result<(i32, T), WireError> {
    if frame.len() < 4 {
        return Err(WireError::TooShort(frame.len()));
    }
    let correlation_id = frame.get_i32();
    Ok((correlation_id, decode_body(&frame)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_and_skips_the_client_id() {
        // A request decodes to the header fields and body it was encoded with.
        let frame = encode_request(API_KEY_VOTE, 7, "quorum-3", &(5u64, "x".to_string())).unwrap();
        let mut rest = frame.slice(4..);
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            rest.len()
        );
        let header = decode_request_header(&mut rest).unwrap();
        assert_eq!(
            header,
            RequestHeader {
                api_key: API_KEY_VOTE,
                correlation_id: 7
            }
        );
        let body: (u64, String) = decode_body(&rest).unwrap();
        assert_eq!(body, (5, "x".to_string()));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, failure_persistence: None, ..Default::default() })]

        #[test]
        fn arbitrary_frames_never_panic_the_decoders(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            // A peer may send anything: each decoder answers an error or a value.
            let mut frame = Bytes::from(bytes.clone());
            if decode_request_header(&mut frame).is_ok() {
                let _ = decode_body::<openraft::raft::AppendEntriesRequest<crate::quorum::types::TypeConfig>>(&frame);
                let _ = decode_body::<openraft::raft::VoteRequest<u64>>(&frame);
            }
            let _ = decode_response::<Result<openraft::raft::VoteResponse<u64>, openraft::error::RaftError<u64>>>(Bytes::from(bytes));
        }
    }

    #[test]
    fn truncated_or_garbage_frames_are_errors_not_panics() {
        // Every prefix of a valid frame, and random bytes, decode to an error or a value, never a panic.
        let frame = encode_request(API_KEY_APPEND_ENTRIES, 1, "c", &vec![1u8; 100]).unwrap();
        for len in 4..frame.len() {
            let mut rest = frame.slice(4..len);
            if decode_request_header(&mut rest).is_ok() {
                assert!(decode_body::<Vec<u8>>(&rest).is_err());
            }
        }
        let mut garbage = Bytes::from_static(&[0x27, 0x10, 0, 0, 0, 0, 0, 1, 0x7f, 0xff, 1]);
        assert!(decode_request_header(&mut garbage).is_err());
        // A length prefix claiming far more elements than bytes is refused.
        let huge = [0xfcu8, 0xff, 0xff, 0xff, 0xff];
        assert!(decode_body::<Vec<u64>>(&huge).is_err());
    }
}
