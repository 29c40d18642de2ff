//! Request and response headers, including the flexible (tagged-field)
//! versions, and helpers that encode a whole response frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

/// The fixed start of every request header, readable whatever the version:
/// enough to answer a request we cannot otherwise parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl HeaderPrefix {
    pub fn peek(frame: &[u8]) -> Option<HeaderPrefix> {
        if frame.len() < 8 {
            return None;
        }
        let mut buf = &frame[..8];
        Some(HeaderPrefix {
            api_key: buf.get_i16(),
            api_version: buf.get_i16(),
            correlation_id: buf.get_i32(),
        })
    }
}

#[derive(Debug, Error)]
pub enum HeaderError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("malformed request header: {0}")]
    Malformed(String),
}

/// Decodes the request header at the start of `frame`, leaving `frame` at the
/// request body. The caller must already know that the version is one we serve.
pub fn decode_request_header(frame: &mut Bytes) -> Result<(ApiKey, RequestHeader), HeaderError> {
    let prefix = HeaderPrefix::peek(frame).ok_or(HeaderError::TooShort(frame.len()))?;
    let api_key =
        ApiKey::try_from(prefix.api_key).map_err(|_| HeaderError::UnknownApiKey(prefix.api_key))?;
    let header_version = api_key.request_header_version(prefix.api_version);
    let header = RequestHeader::decode(frame, header_version)
        .map_err(|e| HeaderError::Malformed(e.to_string()))?;
    Ok((api_key, header))
}

/// Encodes a response frame: size prefix, response header (v0 or flexible v1
/// as the API and version require), body.
pub fn encode_response<R: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, EncodeError> {
    let header_version = api_key.response_header_version(api_version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_size = header
        .compute_size(header_version)
        .map_err(|e| EncodeError(e.to_string()))?;
    let body_size = body
        .compute_size(api_version)
        .map_err(|e| EncodeError(e.to_string()))?;
    let mut out = BytesMut::with_capacity(4 + header_size + body_size);
    out.put_u32((header_size + body_size) as u32);
    header
        .encode(&mut out, header_version)
        .map_err(|e| EncodeError(e.to_string()))?;
    body.encode(&mut out, api_version)
        .map_err(|e| EncodeError(e.to_string()))?;
    Ok(out.freeze())
}

fn request_header(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(api_version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.map(|c| c.to_string().into()))
}

/// Encodes a request frame (used by our client and by tests).
pub fn encode_request<R: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    body: &R,
) -> Result<Bytes, EncodeError> {
    let header_version = api_key.request_header_version(api_version);
    let header = request_header(api_key, api_version, correlation_id, client_id);
    let header_size = header
        .compute_size(header_version)
        .map_err(|e| EncodeError(e.to_string()))?;
    let body_size = body
        .compute_size(api_version)
        .map_err(|e| EncodeError(e.to_string()))?;
    let mut out = BytesMut::with_capacity(4 + header_size + body_size);
    out.put_u32((header_size + body_size) as u32);
    header
        .encode(&mut out, header_version)
        .map_err(|e| EncodeError(e.to_string()))?;
    body.encode(&mut out, api_version)
        .map_err(|e| EncodeError(e.to_string()))?;
    Ok(out.freeze())
}

/// Encodes a request frame in pieces, like [`encode_request`], with the
/// large byte fields passed as `zero_copy` (record sets of a Produce
/// request) included by reference instead of copied.
pub fn encode_request_chunks<R: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    body: &R,
    zero_copy: &[Bytes],
) -> Result<Vec<Bytes>, EncodeError> {
    let header_version = api_key.request_header_version(api_version);
    let header = request_header(api_key, api_version, correlation_id, client_id);
    encode_frame_chunks(&header, header_version, body, api_version, zero_copy)
}

/// Decodes a response frame body (size prefix already removed) for `api_key`
/// at `api_version`, returning the correlation id and the message.
pub fn decode_response<R: Decodable>(
    api_key: ApiKey,
    api_version: i16,
    mut frame: Bytes,
) -> Result<(i32, R), HeaderError> {
    let header_version = api_key.response_header_version(api_version);
    let header = ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| HeaderError::Malformed(e.to_string()))?;
    let body =
        R::decode(&mut frame, api_version).map_err(|e| HeaderError::Malformed(e.to_string()))?;
    Ok((header.correlation_id, body))
}

#[derive(Debug, Error)]
#[error("cannot encode message: {0}")]
pub struct EncodeError(pub String);

/// A response frame in pieces: the encoded parts, with the large byte
/// fields that were passed as `zero_copy` (e.g. record sets read from the
/// log) included by reference instead of copied.
pub fn encode_response_chunks<R: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &R,
    zero_copy: &[Bytes],
) -> Result<Vec<Bytes>, EncodeError> {
    let header_version = api_key.response_header_version(api_version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    encode_frame_chunks(&header, header_version, body, api_version, zero_copy)
}

/// A size-prefixed frame of `header` and `body` in pieces, `zero_copy`
/// fields by reference.
fn encode_frame_chunks<H: Encodable, R: Encodable>(
    header: &H,
    header_version: i16,
    body: &R,
    api_version: i16,
    zero_copy: &[Bytes],
) -> Result<Vec<Bytes>, EncodeError> {
    let err = encode_error;
    let header_size = header.compute_size(header_version).map_err(err)?;
    let body_size = body.compute_size(api_version).map_err(err)?;
    let mut out = crate::chunks::ChunkedBuf::new(zero_copy);
    out.put_u32((header_size + body_size) as u32);
    header.encode(&mut out, header_version).map_err(err)?;
    body.encode(&mut out, api_version).map_err(err)?;
    let chunks = out.finish();
    debug_assert_eq!(
        chunks.iter().map(Bytes::len).sum::<usize>(),
        4 + header_size + body_size
    );
    Ok(chunks)
}

fn encode_error(error: impl std::fmt::Display) -> EncodeError {
    EncodeError(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;

    #[test]
    fn chunked_produce_request_equals_the_copied_one_and_keeps_records_by_reference() {
        // The pieces concatenate to encode_request's frame, and the record
        // set is the caller's own memory, not a copy.
        use kafka_protocol::messages::produce_request::{
            PartitionProduceData, ProduceRequest, TopicProduceData,
        };
        use kafka_protocol::messages::TopicName;
        let records = Bytes::from(vec![7u8; 10_000]);
        let request = ProduceRequest::default().with_acks(1).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName("t".to_string().into()))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records.clone()))]),
        ]);
        for version in [3i16, 9, 12] {
            let copied = encode_request(ApiKey::Produce, version, 5, Some("c"), &request).unwrap();
            let chunks = encode_request_chunks(
                ApiKey::Produce,
                version,
                5,
                Some("c"),
                &request,
                std::slice::from_ref(&records),
            )
            .unwrap();
            assert_eq!(chunks.concat(), copied.to_vec(), "v{version}");
            assert!(
                chunks.iter().any(|c| c.as_ptr() == records.as_ptr()),
                "v{version}: records referenced"
            );
        }
    }

    #[test]
    fn request_header_round_trips_in_flexible_and_classic_versions() {
        // Headers v1 (Metadata v8) and v2 (Metadata v12, tagged fields) both decode back.
        for version in [8i16, 12] {
            let frame = encode_request(
                ApiKey::Metadata,
                version,
                42,
                Some("me"),
                &MetadataRequest::default(),
            )
            .unwrap();
            let mut body = frame.slice(4..);
            let (key, header) = decode_request_header(&mut body).unwrap();
            assert_eq!(key, ApiKey::Metadata);
            assert_eq!(header.request_api_version, version);
            assert_eq!(header.correlation_id, 42);
            assert_eq!(header.client_id.as_deref(), Some("me"));
            let decoded = MetadataRequest::decode(&mut body, version).unwrap();
            assert_eq!(decoded, MetadataRequest::default());
        }
    }

    #[test]
    fn short_or_unknown_headers_are_errors() {
        // A truncated header or an unknown api key is an error, not a panic.
        let mut short = Bytes::from_static(&[0, 3, 0]);
        assert!(decode_request_header(&mut short).is_err());
        let mut unknown = Bytes::from_static(&[0x7f, 0, 0, 1, 0, 0, 0, 1, 0, 0]);
        assert!(matches!(
            decode_request_header(&mut unknown),
            Err(HeaderError::UnknownApiKey(_))
        ));
    }
}
