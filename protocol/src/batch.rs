//! Record batch v2 (magic 2): a zero-copy view of the 61-byte header, validation
//! (lengths, magic, CRC-32C), in-place offset assignment, and a builder.
//!
//! Layout (big-endian), offsets in bytes from the start of the batch:
//!
//! ```text
//!  0 base_offset i64          27 base_timestamp i64
//!  8 batch_length i32         35 max_timestamp i64
//! 12 partition_leader_epoch   43 producer_id i64
//! 16 magic i8                 51 producer_epoch i16
//! 17 crc u32                  53 base_sequence i32
//! 21 attributes i16           57 records_count i32
//! 23 last_offset_delta i32    61 records...
//! ```
//!
//! `batch_length` counts the bytes after itself, so a batch occupies
//! `12 + batch_length` bytes. The CRC covers `attributes` to the end, so the
//! broker may rewrite `base_offset` and `partition_leader_epoch` without
//! recomputing it.

use crate::varint::{put_varlong, read_varlong, varlong_len, VarintError};
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Size of the fixed batch header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `batch_length` ends: `base_offset` and `batch_length` itself.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only record batch format this project stores.
pub const MAGIC_V2: i8 = 2;

/// Byte positions of the v2 batch header fields.
pub const OFFSET_BASE_OFFSET: usize = 0;
pub const OFFSET_BATCH_LENGTH: usize = 8;
pub const OFFSET_LEADER_EPOCH: usize = 12;
pub const OFFSET_MAGIC: usize = 16;
pub const OFFSET_CRC: usize = 17;
pub const OFFSET_ATTRIBUTES: usize = 21;
pub const OFFSET_LAST_OFFSET_DELTA: usize = 23;
pub const OFFSET_BASE_TIMESTAMP: usize = 27;
pub const OFFSET_MAX_TIMESTAMP: usize = 35;
pub const OFFSET_PRODUCER_ID: usize = 43;
pub const OFFSET_PRODUCER_EPOCH: usize = 51;
pub const OFFSET_BASE_SEQUENCE: usize = 53;
pub const OFFSET_RECORDS_COUNT: usize = 57;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Why a batch was rejected. Every variant maps to `CORRUPT_MESSAGE` on the
/// wire, except where the broker decides otherwise (size limits).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error("batch truncated: {available} bytes available, header needs {needed}")]
    Truncated { available: usize, needed: usize },
    #[error("batch length {batch_length} is impossible (minimum {minimum})")]
    BadLength { batch_length: i32, minimum: i32 },
    #[error("magic {magic} is not supported (only 2)")]
    BadMagic { magic: i8 },
    #[error("crc mismatch at base offset {base_offset}: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        base_offset: i64,
        stored: u32,
        computed: u32,
    },
    #[error("last offset delta {last_offset_delta} does not fit records count {records_count}")]
    BadOffsetDelta {
        last_offset_delta: i32,
        records_count: i32,
    },
}

/// Compression codec, from the low three attribute bits. Passed through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    Unknown(u8),
}

impl Compression {
    pub fn from_attributes(attributes: i16) -> Self {
        match (attributes & ATTR_COMPRESSION_MASK) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }

    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
            Compression::Unknown(bits) => i16::from(bits) & ATTR_COMPRESSION_MASK,
        }
    }
}

fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}
fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}
fn read_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// A zero-copy view of one batch header. Construction only checks that the
/// 61 header bytes are present; call [`BatchHeader::validate`] before trusting it.
#[derive(Clone, Copy)]
pub struct BatchHeader<'a> {
    bytes: &'a [u8],
}

impl<'a> BatchHeader<'a> {
    /// Views the batch that starts at `bytes[0]`. `bytes` may hold more after it.
    pub fn new(bytes: &'a [u8]) -> Result<Self, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated {
                available: bytes.len(),
                needed: BATCH_HEADER_BYTES,
            });
        }
        Ok(BatchHeader { bytes })
    }

    pub fn base_offset(&self) -> i64 {
        read_i64(self.bytes, OFFSET_BASE_OFFSET)
    }
    pub fn batch_length(&self) -> i32 {
        read_i32(self.bytes, OFFSET_BATCH_LENGTH)
    }
    /// Total bytes of this batch on the wire and on disk.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length().max(0) as usize
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        read_i32(self.bytes, OFFSET_LEADER_EPOCH)
    }
    pub fn magic(&self) -> i8 {
        self.bytes[OFFSET_MAGIC] as i8
    }
    pub fn crc(&self) -> u32 {
        read_i32(self.bytes, OFFSET_CRC) as u32
    }
    pub fn attributes(&self) -> i16 {
        read_i16(self.bytes, OFFSET_ATTRIBUTES)
    }
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes())
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & ATTR_TIMESTAMP_TYPE != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & ATTR_CONTROL != 0
    }
    pub fn last_offset_delta(&self) -> i32 {
        read_i32(self.bytes, OFFSET_LAST_OFFSET_DELTA)
    }
    /// `base_offset + last_offset_delta`, saturating: headers come from the network.
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }
    pub fn base_timestamp(&self) -> i64 {
        read_i64(self.bytes, OFFSET_BASE_TIMESTAMP)
    }
    pub fn max_timestamp(&self) -> i64 {
        read_i64(self.bytes, OFFSET_MAX_TIMESTAMP)
    }
    pub fn producer_id(&self) -> i64 {
        read_i64(self.bytes, OFFSET_PRODUCER_ID)
    }
    pub fn producer_epoch(&self) -> i16 {
        read_i16(self.bytes, OFFSET_PRODUCER_EPOCH)
    }
    pub fn base_sequence(&self) -> i32 {
        read_i32(self.bytes, OFFSET_BASE_SEQUENCE)
    }
    pub fn records_count(&self) -> i32 {
        read_i32(self.bytes, OFFSET_RECORDS_COUNT)
    }

    /// Checks the header fields and the CRC. `bytes` must hold the whole batch.
    pub fn validate(&self) -> Result<(), BatchError> {
        let batch_length = self.batch_length();
        let minimum = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
        if batch_length < minimum {
            return Err(BatchError::BadLength {
                batch_length,
                minimum,
            });
        }
        let total = self.total_bytes();
        if self.bytes.len() < total {
            return Err(BatchError::Truncated {
                available: self.bytes.len(),
                needed: total,
            });
        }
        if self.magic() != MAGIC_V2 {
            return Err(BatchError::BadMagic {
                magic: self.magic(),
            });
        }
        let records_count = self.records_count();
        let last_offset_delta = self.last_offset_delta();
        // Producers write dense batches (count == delta + 1); compaction may
        // leave fewer records than the delta spans, never more.
        if last_offset_delta < 0
            || records_count < 0
            || i64::from(records_count) > i64::from(last_offset_delta) + 1
        {
            return Err(BatchError::BadOffsetDelta {
                last_offset_delta,
                records_count,
            });
        }
        let computed = crc32c::crc32c(&self.bytes[OFFSET_ATTRIBUTES..total]);
        let stored = self.crc();
        if computed != stored {
            return Err(BatchError::BadCrc {
                base_offset: self.base_offset(),
                stored,
                computed,
            });
        }
        Ok(())
    }
}

/// Summary of a validated record set (one or more batches back to back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSetInfo {
    pub batch_count: usize,
    /// Sum of `last_offset_delta + 1` over the batches: offsets the set will take.
    pub offset_count: i64,
    pub max_timestamp: i64,
    /// Largest single batch, in bytes.
    pub max_batch_bytes: usize,
}

/// Validates every batch of a record set without decoding records.
/// The set must consist of whole batches with nothing trailing.
pub fn validate_record_set(bytes: &[u8]) -> Result<RecordSetInfo, BatchError> {
    let mut info = RecordSetInfo {
        batch_count: 0,
        offset_count: 0,
        max_timestamp: -1,
        max_batch_bytes: 0,
    };
    let mut rest = bytes;
    while !rest.is_empty() {
        let header = BatchHeader::new(rest)?;
        header.validate()?;
        let total = header.total_bytes();
        info.batch_count += 1;
        info.offset_count += i64::from(header.last_offset_delta()) + 1;
        info.max_timestamp = info.max_timestamp.max(header.max_timestamp());
        info.max_batch_bytes = info.max_batch_bytes.max(total);
        rest = &rest[total..];
    }
    Ok(info)
}

/// Rewrites the broker-owned header fields of a batch in place. Both lie
/// outside the CRC, so the batch stays valid.
pub fn assign_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "batch header must be present"
    );
    batch[OFFSET_BASE_OFFSET..OFFSET_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Iterates the batches of a record set, yielding each as a `Bytes` slice
/// (no copy). Stops at the first incomplete batch; validation is separate.
pub fn batches(record_set: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut position = 0usize;
    std::iter::from_fn(move || {
        let rest = record_set.get(position..)?;
        let header = BatchHeader::new(rest).ok()?;
        let total = header.total_bytes();
        if header.batch_length() < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32
            || rest.len() < total
        {
            return None;
        }
        let batch = record_set.slice(position..position + total);
        position += total;
        Some(batch)
    })
}

/// One record to put in a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch (CreateTime).
    pub timestamp: i64,
}

/// One record read back out of an uncompressed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Builds an uncompressed v2 batch (the producer side; the broker never uses it).
///
/// Records are encoded once, straight into the buffer that becomes the batch:
/// the buffer starts with room for the header, which `build` fills in place.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    /// `BATCH_HEADER_BYTES` of room for the header, then the records.
    buf: BytesMut,
    count: i32,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// A builder whose buffer has room for `records_bytes` of records before
    /// it has to grow.
    pub fn with_capacity(records_bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(BATCH_HEADER_BYTES + records_bytes);
        buf.resize(BATCH_HEADER_BYTES, 0);
        BatchBuilder {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            base_timestamp: None,
            max_timestamp: -1,
            buf,
            count: 0,
        }
    }

    /// Marks the batch as idempotent: producer id, epoch and first sequence.
    pub fn idempotent(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch will take once built.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the batch can take before its buffer has to grow.
    pub fn capacity_bytes(&self) -> usize {
        self.buf.capacity()
    }

    pub fn push(&mut self, record: &Record) {
        let base_timestamp = *self.base_timestamp.get_or_insert(record.timestamp);
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        let timestamp_delta = record.timestamp - base_timestamp;
        let key = record.key.as_deref();
        let value = record.value.as_deref();
        let header_count = record.headers.len() as i32;
        let body_len = 1
            + varlong_len(timestamp_delta)
            + varlong_len(i64::from(self.count))
            + nullable_len(key)
            + nullable_len(value)
            + varlong_len(i64::from(header_count))
            + record
                .headers
                .iter()
                .map(|(name, value)| {
                    nullable_len(Some(name.as_bytes())) + nullable_len(value.as_deref())
                })
                .sum::<usize>();
        let buf = &mut self.buf;
        buf.reserve(varlong_len(body_len as i64) + body_len);
        let before = buf.len();
        put_varint(buf, body_len as i32);
        let body_start = buf.len();
        buf.put_i8(0); // record attributes, unused
        put_varlong(buf, timestamp_delta);
        put_varint(buf, self.count);
        put_nullable(buf, key);
        put_nullable(buf, value);
        put_varint(buf, header_count);
        for (name, value) in &record.headers {
            put_nullable(buf, Some(name.as_bytes()));
            put_nullable(buf, value.as_deref());
        }
        debug_assert_eq!(
            buf.len() - body_start,
            body_len,
            "record length computed ahead"
        );
        debug_assert!(buf.len() > before);
        self.count += 1;
    }

    /// Finishes the batch with base offset 0 and leader epoch -1, as a producer sends it.
    pub fn build(self) -> Bytes {
        self.build_with(Compression::None.attribute_bits())
    }

    fn build_with(self, attributes: i16) -> Bytes {
        let mut out = self.buf;
        let total = out.len();
        let base_timestamp = self.base_timestamp.unwrap_or(-1);
        let mut header = &mut out[..BATCH_HEADER_BYTES];
        header.put_i64(0);
        header.put_i32((total - LOG_OVERHEAD_BYTES) as i32);
        header.put_i32(-1);
        header.put_i8(MAGIC_V2);
        header.put_u32(0); // crc, filled below
        header.put_i16(attributes);
        header.put_i32((self.count - 1).max(0));
        header.put_i64(base_timestamp);
        header.put_i64(self.max_timestamp);
        header.put_i64(self.producer_id);
        header.put_i16(self.producer_epoch);
        header.put_i32(self.base_sequence);
        header.put_i32(self.count);
        debug_assert!(header.is_empty(), "the header fills its room exactly");
        let crc = crc32c::crc32c(&out[OFFSET_ATTRIBUTES..]);
        out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }
}

/// Decodes the records of one uncompressed batch. Compressed batches are
/// returned as an error: decompress their records section first
/// ([`crate::compression`]).
pub fn decode_records(batch: &Bytes) -> Result<Vec<DecodedRecord>, RecordDecodeError> {
    let header = BatchHeader::new(batch).map_err(RecordDecodeError::Batch)?;
    header.validate().map_err(RecordDecodeError::Batch)?;
    if header.compression() != Compression::None {
        return Err(RecordDecodeError::Compressed(header.compression()));
    }
    let mut cursor = Cursor {
        buf: batch.slice(BATCH_HEADER_BYTES..header.total_bytes()),
        position: 0,
    };
    let mut records = Vec::with_capacity(header.records_count().max(0) as usize);
    for _ in 0..header.records_count() {
        let length = cursor.varint()?;
        let start = cursor.position;
        let _attributes = cursor.byte()?;
        let timestamp_delta = cursor.varlong()?;
        let offset_delta = cursor.varint()?;
        let key = cursor.nullable()?;
        let value = cursor.nullable()?;
        let header_count = cursor.varint()?;
        let mut headers = Vec::new();
        for _ in 0..header_count.max(0) {
            let name = cursor.nullable()?.unwrap_or_default();
            let value = cursor.nullable()?;
            headers.push((String::from_utf8_lossy(&name).into_owned(), value));
        }
        if cursor.position - start != length.max(0) as usize {
            return Err(RecordDecodeError::Malformed("record length mismatch"));
        }
        records.push(DecodedRecord {
            offset: header.base_offset() + i64::from(offset_delta),
            timestamp: header.base_timestamp() + timestamp_delta,
            key,
            value,
            headers,
        });
    }
    Ok(records)
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordDecodeError {
    #[error(transparent)]
    Batch(BatchError),
    #[error("batch is compressed with {0:?}")]
    Compressed(Compression),
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}

struct Cursor {
    buf: Bytes,
    position: usize,
}

impl Cursor {
    fn byte(&mut self) -> Result<u8, RecordDecodeError> {
        let b = *self
            .buf
            .get(self.position)
            .ok_or(RecordDecodeError::Malformed("record truncated"))?;
        self.position += 1;
        Ok(b)
    }
    fn varlong(&mut self) -> Result<i64, RecordDecodeError> {
        read_varlong(&self.buf, &mut self.position).map_err(|e| match e {
            VarintError::Truncated => RecordDecodeError::Malformed("record truncated"),
            VarintError::TooLong => RecordDecodeError::Malformed("varint too long"),
        })
    }
    fn varint(&mut self) -> Result<i32, RecordDecodeError> {
        let v = self.varlong()?;
        i32::try_from(v).map_err(|_| RecordDecodeError::Malformed("varint out of range"))
    }
    fn nullable(&mut self) -> Result<Option<Bytes>, RecordDecodeError> {
        let length = self.varint()?;
        if length < 0 {
            return Ok(None);
        }
        let end = self.position + length as usize;
        if end > self.buf.len() {
            return Err(RecordDecodeError::Malformed("field past end of batch"));
        }
        let out = self.buf.slice(self.position..end);
        self.position = end;
        Ok(Some(out))
    }
}

/// Bytes a nullable length-prefixed field takes.
fn nullable_len(value: Option<&[u8]>) -> usize {
    match value {
        None => 1,
        Some(bytes) => varlong_len(bytes.len() as i64) + bytes.len(),
    }
}

fn put_varint(buf: &mut BytesMut, value: i32) {
    put_varlong(buf, i64::from(value));
}

fn put_nullable(buf: &mut BytesMut, value: Option<&[u8]>) {
    match value {
        None => put_varint(buf, -1),
        Some(bytes) => {
            put_varint(buf, bytes.len() as i32);
            buf.extend_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(count: usize) -> Bytes {
        let mut builder = BatchBuilder::new();
        for i in 0..count {
            builder.push(&Record {
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(vec![i as u8; i * 3])),
                headers: vec![("h".into(), Some(Bytes::from_static(b"v")))],
                timestamp: 1_700_000_000_000 + i as i64,
            });
        }
        builder.build()
    }

    #[test]
    fn built_batch_validates_and_reports_its_header() {
        // A freshly built batch passes validation and its header says what was put in.
        let batch = sample(5);
        let header = BatchHeader::new(&batch).unwrap();
        header.validate().unwrap();
        assert_eq!(header.records_count(), 5);
        assert_eq!(header.last_offset_delta(), 4);
        assert_eq!(header.total_bytes(), batch.len());
        assert_eq!(header.max_timestamp(), 1_700_000_000_004);
        assert_eq!(header.compression(), Compression::None);
    }

    #[test]
    fn flipped_bit_in_records_fails_crc() {
        // Any change to CRC-covered bytes is detected.
        let mut raw = sample(3).to_vec();
        let last = raw.len() - 1;
        raw[last] ^= 0x01;
        let err = BatchHeader::new(&raw).unwrap().validate().unwrap_err();
        assert!(matches!(err, BatchError::BadCrc { .. }), "{err:?}");
    }

    #[test]
    fn assigning_offset_and_epoch_keeps_crc_valid() {
        // base_offset and partition_leader_epoch lie outside the CRC.
        let mut raw = sample(3).to_vec();
        assign_offset_and_epoch(&mut raw, 1234, 7);
        let header = BatchHeader::new(&raw).unwrap();
        header.validate().unwrap();
        assert_eq!(header.base_offset(), 1234);
        assert_eq!(header.last_offset(), 1236);
        assert_eq!(header.partition_leader_epoch(), 7);
    }

    #[test]
    fn wrong_magic_and_short_length_are_rejected() {
        // Magic other than 2 and a length below the header are refused.
        let mut raw = sample(1).to_vec();
        raw[OFFSET_MAGIC] = 1;
        assert!(matches!(
            BatchHeader::new(&raw).unwrap().validate(),
            Err(BatchError::BadMagic { magic: 1 })
        ));
        let mut raw = sample(1).to_vec();
        raw[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(
            BatchHeader::new(&raw).unwrap().validate(),
            Err(BatchError::BadLength { .. })
        ));
    }

    #[test]
    fn extreme_header_values_are_rejected_without_overflow() {
        // A last offset delta of i32::MAX or a base offset near i64::MAX never overflows.
        let mut raw = sample(1).to_vec();
        raw[OFFSET_LAST_OFFSET_DELTA..OFFSET_LAST_OFFSET_DELTA + 4]
            .copy_from_slice(&i32::MAX.to_be_bytes());
        raw[OFFSET_RECORDS_COUNT..OFFSET_RECORDS_COUNT + 4]
            .copy_from_slice(&i32::MAX.to_be_bytes());
        raw[OFFSET_BASE_OFFSET..OFFSET_BASE_OFFSET + 8].copy_from_slice(&i64::MAX.to_be_bytes());
        let header = BatchHeader::new(&raw).unwrap();
        assert_eq!(header.last_offset(), i64::MAX);
        assert!(header.validate().is_err(), "the CRC no longer matches");
        let _ = validate_record_set(&raw);
    }

    #[test]
    fn record_set_with_trailing_garbage_is_rejected() {
        // A record set must be whole batches; a partial trailing batch is corrupt.
        let mut raw = sample(2).to_vec();
        raw.extend_from_slice(&[0u8; 20]);
        assert!(validate_record_set(&raw).is_err());
        let two = [sample(2).to_vec(), sample(3).to_vec()].concat();
        let info = validate_record_set(&two).unwrap();
        assert_eq!(info.batch_count, 2);
        assert_eq!(info.offset_count, 5);
    }

    proptest! {
        #[test]
        fn records_round_trip_through_a_batch(
            records in proptest::collection::vec(
                (proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
                 proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
                 0i64..1_000_000,
                 proptest::collection::vec(
                     ("[a-z]{0,8}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20))),
                     0..3)),
                1..200)
        ) {
            // decode(build(records)) gives back the same keys, values, headers,
            // timestamps and dense offsets; the buffer is sized ahead correctly.
            let mut builder = BatchBuilder::new();
            let input: Vec<Record> = records.into_iter().map(|(k, v, ts, headers)| Record {
                key: k.map(Bytes::from),
                value: v.map(Bytes::from),
                headers: headers.into_iter().map(|(n, v)| (n, v.map(Bytes::from))).collect(),
                timestamp: 1_600_000_000_000 + ts,
            }).collect();
            for r in &input { builder.push(r); }
            let size = builder.size_bytes();
            let batch = builder.build();
            prop_assert_eq!(batch.len(), size);
            let decoded = decode_records(&batch).unwrap();
            prop_assert_eq!(decoded.len(), input.len());
            for (i, (d, r)) in decoded.iter().zip(&input).enumerate() {
                prop_assert_eq!(d.offset, i as i64);
                prop_assert_eq!(&d.key, &r.key);
                prop_assert_eq!(&d.value, &r.value);
                prop_assert_eq!(d.timestamp, r.timestamp);
                prop_assert_eq!(&d.headers, &r.headers);
            }
        }

        #[test]
        fn validation_never_panics_on_arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            // Bytes from the network never cause a panic.
            let _ = validate_record_set(&raw);
            let _ = decode_records(&Bytes::from(raw));
        }
    }
}
