//! Decoding a fetched record set (record batches v2, back to back) into
//! [`ConsumerRecord`]s.
//!
//! - Keys, values and header values are `Bytes` slices of the record set (or,
//!   for compressed batches, of the decompressed records section): no
//!   per-record copy, and no allocation for records without headers.
//! - Control batches (transaction markers) are skipped, as are records below
//!   the fetch offset: the broker answers from the start of the batch that
//!   holds the fetch offset, which may begin earlier.
//! - Compacted batches may hold fewer records than `last_offset_delta + 1`
//!   and have gaps between offsets; the next fetch offset is always one past
//!   the last offset of the last whole batch, not one past the last record.
//! - gzip, snappy (either framing), lz4 and zstd batches are decompressed
//!   (see [`crate::compression`]). A batch whose codec bits name no codec
//!   ends the record set with [`RecordError::UnsupportedCompression`], and
//!   one that does not decompress with [`RecordError::Decompression`]; both
//!   name the batch's offsets, so the application can seek past it, and
//!   neither is dropped silently.
//! - A trailing partial batch (cut by the fetch byte limit) is ignored; the
//!   next fetch starts at it.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use protocol::batch::{BatchHeader, Compression as BatchCompression, BATCH_HEADER_BYTES};
use protocol::varint::{self, VarintError};
use thiserror::Error;

use crate::compression::{decompress, Compression, CompressionError};
use crate::consumer::record::{ConsumerRecord, Header, TimestampType};

/// Why a batch of a fetched record set could not be turned into records.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The batch's attribute bits name a codec this client does not know.
    #[error("batch at offsets {base_offset}..={last_offset} is compressed with {codec}, which this client does not decode")]
    UnsupportedCompression {
        /// The codec bits, as found.
        codec: String,
        /// The offset of the batch's first record.
        base_offset: i64,
        /// The offset of the batch's last record.
        last_offset: i64,
    },
    /// The batch header or CRC is invalid.
    #[error("corrupt batch at offset {base_offset}: {reason}")]
    CorruptBatch {
        /// The offset of the batch's first record.
        base_offset: i64,
        /// What went wrong, in words.
        reason: String,
    },
    /// The compressed records section does not decompress: it is corrupt,
    /// or it inflates past [`crate::compression::DECOMPRESSED_BYTES_MAX`].
    #[error(
        "cannot decompress the {codec} batch at offsets {base_offset}..={last_offset}: {error}"
    )]
    Decompression {
        /// The codec, by name.
        codec: &'static str,
        /// The offset of the batch's first record.
        base_offset: i64,
        /// The offset of the batch's last record.
        last_offset: i64,
        /// What the codec said.
        #[source]
        error: CompressionError,
    },
    /// A record inside an otherwise valid batch does not parse.
    #[error("malformed record in the batch at offset {base_offset}: {reason}")]
    MalformedRecord {
        /// The offset of the batch's first record.
        base_offset: i64,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl RecordError {
    /// The offset one past the batch that failed: where to `seek` to skip it.
    pub fn next_offset(&self) -> Option<i64> {
        match self {
            RecordError::UnsupportedCompression { last_offset, .. }
            | RecordError::Decompression { last_offset, .. } => Some(last_offset.saturating_add(1)),
            _ => None,
        }
    }
}

/// What decoding one partition's record set produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOutcome {
    /// Where the next fetch of this partition starts: one past the last whole
    /// batch decoded, or the fetch offset when there was none. When `error`
    /// is set, no further than the start of the failed batch.
    pub next_offset: i64,
    /// The batch that stopped decoding (its offset, never below the fetch
    /// offset); the records before it were decoded.
    pub error: Option<(i64, RecordError)>,
}

/// Decodes every whole batch of `record_set` at once, appending the records
/// at or above `fetch_offset` to `out`.
pub fn decode_record_set(
    topic: &Arc<str>,
    partition: i32,
    fetch_offset: i64,
    record_set: &Bytes,
    check_crcs: bool,
    out: &mut Vec<ConsumerRecord>,
) -> DecodeOutcome {
    let mut records = FetchedRecords::prepare(fetch_offset, record_set, check_crcs);
    records.read_into(topic, partition, fetch_offset, usize::MAX, out);
    DecodeOutcome {
        next_offset: records.next_offset,
        error: records.error,
    }
}

/// One batch ready to be read: header fields, and the records section
/// (decompressed if it was compressed).
#[derive(Debug, Clone)]
struct PreparedBatch {
    base_offset: i64,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    log_append_time: bool,
    leader_epoch: Option<i32>,
    records_count: i32,
    section: Bytes,
}

/// A partition's fetched records: prepared batch by batch when the fetch
/// arrives (CRC checked, decompressed, control batches and batches wholly
/// below the fetch offset dropped), then read record by record, straight
/// into the vector `poll` returns, as many at a time as `poll` wants. A
/// record is materialised once, where the application gets it.
#[derive(Debug, Clone)]
pub struct FetchedRecords {
    batches: VecDeque<PreparedBatch>,
    /// Read position within the front batch's section.
    position: usize,
    /// Records of the front batch read so far.
    read_in_batch: i32,
    /// Offset delta of the last record read in the front batch.
    previous_delta: i32,
    /// Where the next fetch starts once every batch is read (see
    /// [`DecodeOutcome::next_offset`]).
    pub next_offset: i64,
    /// What stopped preparing or reading, with the offset where it stopped;
    /// set once every record before it was read.
    pub error: Option<(i64, RecordError)>,
    pending_error: Option<(i64, RecordError)>,
    /// Bytes held by decompressed sections (beyond the fetched bytes).
    pub decompressed_bytes: usize,
}

impl FetchedRecords {
    /// Checks and decompresses every whole batch of `record_set`; records
    /// themselves are parsed later, by `read_into`.
    pub fn prepare(fetch_offset: i64, record_set: &Bytes, check_crcs: bool) -> FetchedRecords {
        let mut prepared = FetchedRecords {
            batches: VecDeque::new(),
            position: 0,
            read_in_batch: 0,
            previous_delta: -1,
            next_offset: fetch_offset,
            error: None,
            pending_error: None,
            decompressed_bytes: 0,
        };
        for batch in protocol::batch::batches(record_set) {
            let header = match BatchHeader::new(&batch) {
                Ok(header) => header,
                Err(_) => break,
            };
            let base_offset = header.base_offset();
            // Saturating: a hostile base offset must not overflow.
            let last_offset = base_offset.saturating_add(i64::from(header.last_offset_delta()));
            let at = base_offset.max(fetch_offset);
            let validated = if header.last_offset_delta() == i32::MAX {
                // `BatchHeader::validate` adds one to this in i32 (an
                // overflow); no real batch comes near it.
                Err(format!("last offset delta {} is impossible", i32::MAX))
            } else if check_crcs {
                header.validate().map_err(|e| e.to_string())
            } else {
                validate_without_crc(&header)
            };
            if let Err(reason) = validated {
                prepared.stop(
                    at,
                    RecordError::CorruptBatch {
                        base_offset,
                        reason,
                    },
                );
                break;
            }
            if last_offset < fetch_offset || header.is_control() {
                prepared.next_offset = prepared.next_offset.max(last_offset.saturating_add(1));
                continue;
            }
            let codec = match Compression::from_protocol(header.compression()) {
                Some(Compression::None) => None,
                Some(codec) => Some(codec),
                None => {
                    let BatchCompression::Unknown(bits) = header.compression() else {
                        unreachable!("every named codec maps to a Compression");
                    };
                    let codec = format!("unknown codec {bits}");
                    prepared.stop(at, unsupported(&codec, base_offset, last_offset));
                    break;
                }
            };
            let section = match codec {
                None => batch.slice(BATCH_HEADER_BYTES..header.total_bytes()),
                Some(codec) => {
                    match decompress(codec, &batch[BATCH_HEADER_BYTES..header.total_bytes()]) {
                        Ok(plain) => {
                            prepared.decompressed_bytes += plain.len();
                            Bytes::from(plain)
                        }
                        Err(e) => {
                            let error = RecordError::Decompression {
                                codec: codec.name(),
                                base_offset,
                                last_offset,
                                error: e,
                            };
                            prepared.stop(at, error);
                            break;
                        }
                    }
                }
            };
            prepared.batches.push_back(PreparedBatch {
                base_offset,
                last_offset_delta: header.last_offset_delta(),
                base_timestamp: header.base_timestamp(),
                max_timestamp: header.max_timestamp(),
                log_append_time: header.is_log_append_time(),
                leader_epoch: Some(header.partition_leader_epoch()).filter(|e| *e >= 0),
                records_count: header.records_count(),
                section,
            });
            prepared.next_offset = prepared.next_offset.max(last_offset.saturating_add(1));
        }
        if prepared.batches.is_empty() {
            prepared.error = prepared.pending_error.take();
        }
        prepared
    }

    /// Records the failure that ends the batches: the next fetch must not
    /// start past it, and it is reported once the batches before it are read.
    fn stop(&mut self, at: i64, error: RecordError) {
        self.next_offset = self.next_offset.min(at);
        self.pending_error = Some((at, error));
    }

    /// Where a fetch continuing after these records starts: `next_offset`,
    /// unless they end in an error (which comes first).
    pub fn resume_offset(&self) -> Option<i64> {
        (self.error.is_none() && self.pending_error.is_none()).then_some(self.next_offset)
    }

    /// Whether every record has been read.
    pub fn is_exhausted(&self) -> bool {
        self.batches.is_empty()
    }

    /// At most how many records are left (for sizing the output).
    pub fn remaining_records(&self) -> usize {
        let total: i64 = self
            .batches
            .iter()
            .map(|b| i64::from(b.records_count.max(0)))
            .sum();
        (total - i64::from(self.read_in_batch)).max(0) as usize
    }

    /// Parses up to `max` records at or above `min_offset` into `out` and
    /// returns how many it appended. A malformed record ends the reading:
    /// the records before it stay in `out`, `error` says where it stopped.
    pub fn read_into(
        &mut self,
        topic: &Arc<str>,
        partition: i32,
        min_offset: i64,
        max: usize,
        out: &mut Vec<ConsumerRecord>,
    ) -> usize {
        let mut appended = 0;
        // Offsets handed out only ever grow, even if a broker sent batches
        // out of order.
        let mut floor = min_offset;
        while appended < max {
            let Some(batch) = self.batches.front() else {
                break;
            };
            if self.read_in_batch >= batch.records_count {
                self.next_batch();
                continue;
            }
            match read_record(batch, &mut self.position, &mut self.previous_delta) {
                Ok(record) => {
                    self.read_in_batch += 1;
                    let offset = batch
                        .base_offset
                        .saturating_add(i64::from(record.offset_delta));
                    if offset < floor {
                        continue;
                    }
                    floor = offset.saturating_add(1);
                    out.push(ConsumerRecord {
                        topic: topic.clone(),
                        partition,
                        offset,
                        timestamp: if batch.log_append_time {
                            batch.max_timestamp
                        } else {
                            batch.base_timestamp.wrapping_add(record.timestamp_delta)
                        },
                        timestamp_type: if batch.log_append_time {
                            TimestampType::LogAppendTime
                        } else {
                            TimestampType::CreateTime
                        },
                        key: record.key,
                        value: record.value,
                        headers: record.headers,
                        leader_epoch: batch.leader_epoch,
                    });
                    appended += 1;
                }
                Err(reason) => {
                    let base_offset = batch.base_offset;
                    let at = out
                        .last()
                        .filter(|r| appended > 0 && r.partition == partition)
                        .map_or(base_offset.max(min_offset), |r| r.offset.saturating_add(1));
                    self.batches.clear();
                    self.pending_error = None;
                    self.next_offset = at;
                    self.error = Some((
                        at,
                        RecordError::MalformedRecord {
                            base_offset,
                            reason,
                        },
                    ));
                    return appended;
                }
            }
        }
        if self.batches.is_empty() && self.error.is_none() {
            self.error = self.pending_error.take();
        }
        appended
    }

    fn next_batch(&mut self) {
        self.batches.pop_front();
        self.position = 0;
        self.read_in_batch = 0;
        self.previous_delta = -1;
    }
}

fn unsupported(codec: &str, base_offset: i64, last_offset: i64) -> RecordError {
    RecordError::UnsupportedCompression {
        codec: codec.to_string(),
        base_offset,
        last_offset,
    }
}

/// The header checks of `BatchHeader::validate` without the CRC, for
/// `check_crcs = false`.
fn validate_without_crc(header: &BatchHeader<'_>) -> Result<(), String> {
    if header.magic() != protocol::batch::MAGIC_V2 {
        return Err(format!("magic {} is not supported", header.magic()));
    }
    let records_count = header.records_count();
    let last_offset_delta = header.last_offset_delta();
    if last_offset_delta < 0
        || records_count < 0
        || i64::from(records_count) > i64::from(last_offset_delta) + 1
    {
        return Err(format!(
            "last offset delta {last_offset_delta} does not fit records count {records_count}"
        ));
    }
    Ok(())
}

/// One record's fields, before the batch's offsets and timestamps apply.
struct RawRecord {
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<Header>,
}

/// Parses the record at `position` of a batch's section; every field is a
/// `Bytes` slice of the section.
#[inline]
fn read_record(
    batch: &PreparedBatch,
    position: &mut usize,
    previous_delta: &mut i32,
) -> Result<RawRecord, &'static str> {
    let section = &batch.section;
    let buf: &[u8] = section;
    let length = read_varint(buf, position)?;
    if length < 0 {
        return Err("negative record length");
    }
    let start = *position;
    let end = start
        .checked_add(length as usize)
        .filter(|end| *end <= buf.len())
        .ok_or("record past the end of the batch")?;
    // Record attributes: unused since magic 2.
    *position += 1;
    let timestamp_delta = read_varlong(buf, position)?;
    let offset_delta = read_varint(buf, position)?;
    if offset_delta <= *previous_delta || offset_delta > batch.last_offset_delta {
        return Err("offset delta out of order or past the last offset delta");
    }
    *previous_delta = offset_delta;
    let key = read_nullable(section, position, end)?;
    let value = read_nullable(section, position, end)?;
    let header_count = read_varint(buf, position)?;
    if header_count < 0 {
        return Err("negative header count");
    }
    let mut headers = Vec::new();
    for _ in 0..header_count {
        if *position >= end {
            return Err("header past the end of the record");
        }
        let name = read_nullable(section, position, end)?.ok_or("null header key")?;
        let value = read_nullable(section, position, end)?;
        headers.push(Header {
            key: String::from_utf8_lossy(&name).into_owned(),
            value,
        });
    }
    if *position != end {
        return Err("record length does not match its fields");
    }
    Ok(RawRecord {
        offset_delta,
        timestamp_delta,
        key,
        value,
        headers,
    })
}

#[inline]
fn read_varlong(buf: &[u8], position: &mut usize) -> Result<i64, &'static str> {
    varint::read_varlong(buf, position).map_err(|e| match e {
        VarintError::Truncated => "record truncated",
        VarintError::TooLong => "varint too long",
    })
}

#[inline]
fn read_varint(buf: &[u8], position: &mut usize) -> Result<i32, &'static str> {
    i32::try_from(read_varlong(buf, position)?).map_err(|_| "varint out of range")
}

#[inline]
fn read_nullable(
    section: &Bytes,
    position: &mut usize,
    end: usize,
) -> Result<Option<Bytes>, &'static str> {
    let length = read_varint(section, position)?;
    if length < 0 {
        return Ok(None);
    }
    let start = *position;
    let stop = start
        .checked_add(length as usize)
        .filter(|stop| *stop <= end)
        .ok_or("field past the end of the record")?;
    *position = stop;
    Ok(Some(section.slice(start..stop)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use protocol::varint::put_varlong;

    /// One record for [`encode_batch`]: offset delta, key, value, headers.
    pub(crate) struct TestRecord {
        pub offset_delta: i32,
        pub key: Option<&'static [u8]>,
        pub value: Option<Vec<u8>>,
        pub headers: Vec<(&'static str, Option<&'static [u8]>)>,
    }

    pub(crate) fn record(offset_delta: i32, value: &str) -> TestRecord {
        TestRecord {
            offset_delta,
            key: Some(b"k"),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
        }
    }

    fn put_bytes(buf: &mut BytesMut, value: Option<&[u8]>) {
        match value {
            None => put_varlong(buf, -1),
            Some(v) => {
                put_varlong(buf, v.len() as i64);
                buf.extend_from_slice(v);
            }
        }
    }

    /// A batch as a (possibly compacted, compressed or control) log would
    /// hold it: any offset deltas, `last_offset_delta` given separately.
    pub(crate) fn encode_batch(
        base_offset: i64,
        last_offset_delta: i32,
        records: &[TestRecord],
        codec_bits: i16,
        control: bool,
    ) -> Bytes {
        let mut section = BytesMut::new();
        for r in records {
            let mut body = BytesMut::new();
            body.put_i8(0);
            put_varlong(&mut body, i64::from(r.offset_delta)); // timestamp delta = offset delta
            put_varlong(&mut body, i64::from(r.offset_delta));
            put_bytes(&mut body, r.key);
            put_bytes(&mut body, r.value.as_deref());
            put_varlong(&mut body, r.headers.len() as i64);
            for (name, value) in &r.headers {
                put_bytes(&mut body, Some(name.as_bytes()));
                put_bytes(&mut body, *value);
            }
            put_varlong(&mut section, body.len() as i64);
            section.extend_from_slice(&body);
        }
        let codec =
            Compression::from_protocol(protocol::batch::Compression::from_attributes(codec_bits))
                .unwrap_or(Compression::None);
        let payload = crate::compression::compress(codec, &section).unwrap();
        let mut out = BytesMut::new();
        out.put_i64(base_offset);
        out.put_i32((BATCH_HEADER_BYTES - 12 + payload.len()) as i32);
        out.put_i32(5); // partition leader epoch
        out.put_i8(2);
        out.put_u32(0);
        out.put_i16(codec_bits | if control { 0x20 } else { 0 });
        out.put_i32(last_offset_delta);
        out.put_i64(1_000); // base timestamp
        out.put_i64(1_000 + i64::from(last_offset_delta));
        out.put_i64(-1);
        out.put_i16(-1);
        out.put_i32(-1);
        out.put_i32(records.len() as i32);
        out.extend_from_slice(&payload);
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }

    fn decode(fetch_offset: i64, set: &[Bytes]) -> (Vec<ConsumerRecord>, DecodeOutcome) {
        let topic: Arc<str> = Arc::from("t");
        let joined = Bytes::from(set.concat());
        let mut out = Vec::new();
        let outcome = decode_record_set(&topic, 3, fetch_offset, &joined, true, &mut out);
        (out, outcome)
    }

    fn offsets(records: &[ConsumerRecord]) -> Vec<i64> {
        records.iter().map(|r| r.offset).collect()
    }

    #[test]
    fn uncompressed_records_keep_their_fields() {
        // Offsets, timestamps, keys, values, headers and the leader epoch come back as written.
        let batch = encode_batch(
            10,
            1,
            &[
                TestRecord {
                    offset_delta: 0,
                    key: None,
                    value: None,
                    headers: vec![("trace", Some(b"abc")), ("empty", None)],
                },
                record(1, "second"),
            ],
            0,
            false,
        );
        let (records, outcome) = decode(10, &[batch]);
        assert_eq!(outcome.next_offset, 12);
        assert!(outcome.error.is_none());
        assert_eq!(offsets(&records), [10, 11]);
        assert_eq!(records[0].key, None);
        assert_eq!(records[0].value, None);
        assert_eq!(
            records[0].headers,
            [
                Header {
                    key: "trace".into(),
                    value: Some(Bytes::from_static(b"abc"))
                },
                Header {
                    key: "empty".into(),
                    value: None
                }
            ]
        );
        assert_eq!(records[1].value.as_deref(), Some(&b"second"[..]));
        assert_eq!(records[1].timestamp, 1_001);
        assert_eq!(records[1].timestamp_type, TimestampType::CreateTime);
        assert_eq!(records[1].leader_epoch, Some(5));
        assert_eq!(&*records[1].topic, "t");
        assert_eq!(records[1].partition, 3);
    }

    #[test]
    fn keys_and_values_are_slices_of_the_fetched_bytes_not_copies() {
        // Zero copy: every key and value of an uncompressed batch points into the record set.
        let topic: Arc<str> = Arc::from("t");
        let set = encode_batch(
            0,
            2,
            &[record(0, "a"), record(1, "bb"), record(2, "ccc")],
            0,
            false,
        );
        let range = set.as_ptr() as usize..set.as_ptr() as usize + set.len();
        let mut out = Vec::new();
        decode_record_set(&topic, 0, 0, &set, true, &mut out);
        assert_eq!(out.len(), 3);
        for record in &out {
            for field in [&record.key, &record.value] {
                let field = field.as_ref().unwrap();
                assert!(
                    range.contains(&(field.as_ptr() as usize)),
                    "copied: {field:?}"
                );
            }
        }
    }

    #[test]
    fn reading_in_pieces_resumes_where_it_stopped_across_batches() {
        // poll takes max_poll_records at a time: 4 reads of at most 3 give offsets 2..10 once, in order.
        let topic: Arc<str> = Arc::from("t");
        let first = encode_batch(
            0,
            4,
            &(0..5).map(|i| record(i, "x")).collect::<Vec<_>>(),
            0,
            false,
        );
        let second = encode_batch(
            5,
            4,
            &(0..5).map(|i| record(i, "y")).collect::<Vec<_>>(),
            3,
            false,
        );
        let set = Bytes::from([first, second].concat());
        let mut records = FetchedRecords::prepare(2, &set, true);
        assert_eq!(records.next_offset, 10);
        let mut out = Vec::new();
        let mut reads = Vec::new();
        let mut min_offset = 2;
        while !records.is_exhausted() {
            let got = records.read_into(&topic, 0, min_offset, 3, &mut out);
            reads.push(got);
            if let Some(last) = out.last() {
                min_offset = last.offset + 1;
            }
        }
        assert_eq!(offsets(&out), (2..10).collect::<Vec<_>>());
        assert_eq!(reads, [3, 3, 2]);
        assert!(records.error.is_none());
    }

    #[test]
    fn a_malformed_record_after_good_ones_stops_reading_there() {
        // The good batch's records are returned; the error marks where reading stopped.
        let topic: Arc<str> = Arc::from("t");
        let good = encode_batch(0, 1, &[record(0, "a"), record(1, "b")], 0, false);
        let mut bad = encode_batch(2, 0, &[record(0, "abc")], 0, false).to_vec();
        bad[BATCH_HEADER_BYTES] = 2;
        let crc = crc32c::crc32c(&bad[21..]);
        bad[17..21].copy_from_slice(&crc.to_be_bytes());
        let set = Bytes::from([good.to_vec(), bad].concat());
        let mut records = FetchedRecords::prepare(0, &set, true);
        let mut out = Vec::new();
        records.read_into(&topic, 0, 0, 100, &mut out);
        assert_eq!(offsets(&out), [0, 1]);
        assert!(records.is_exhausted());
        assert_eq!(records.next_offset, 2);
        assert!(matches!(
            records.error,
            Some((2, RecordError::MalformedRecord { base_offset: 2, .. }))
        ));
    }

    #[test]
    fn every_codec_decodes_like_uncompressed_batches() {
        // The codec changes the bytes on the wire, not the records read back: gzip, snappy, lz4, zstd.
        let records = || {
            (0..50)
                .map(|i| record(i, "payload payload payload"))
                .collect::<Vec<_>>()
        };
        let plain = decode(0, &[encode_batch(0, 49, &records(), 0, false)]).0;
        for codec in [1, 2, 3, 4] {
            let (decoded, outcome) = decode(0, &[encode_batch(0, 49, &records(), codec, false)]);
            assert!(outcome.error.is_none(), "{outcome:?}");
            assert_eq!(decoded, plain, "codec {codec}");
        }
    }

    #[test]
    fn a_raw_snappy_batch_as_librdkafka_writes_it_decodes() {
        // librdkafka's snappy is one raw block without the Java framing; its records read the same.
        let records: Vec<_> = (0..20)
            .map(|i| record(i, "raw snappy raw snappy"))
            .collect();
        let plain = encode_batch(0, 19, &records, 0, false);
        let raw = snap::raw::Encoder::new()
            .compress_vec(&plain[BATCH_HEADER_BYTES..])
            .unwrap();
        let mut batch = BytesMut::from(&plain[..BATCH_HEADER_BYTES]);
        batch.extend_from_slice(&raw);
        let batch_length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
        batch[21..23].copy_from_slice(&2i16.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        let (decoded, outcome) = decode(0, &[batch.freeze()]);
        assert!(outcome.error.is_none(), "{outcome:?}");
        assert_eq!(decoded, decode(0, &[plain]).0);
    }

    #[test]
    fn a_batch_that_does_not_decompress_is_a_typed_error_with_where_to_skip_to() {
        // Records before it are kept; the error names the codec, the offsets and the codec's failure.
        for (bits, name) in [(1, "gzip"), (2, "snappy"), (3, "lz4"), (4, "zstd")] {
            let first = encode_batch(0, 1, &[record(0, "a"), record(1, "b")], 0, false);
            // An uncompressed records section under a codec's bits does not decompress.
            let plain = encode_batch(
                2,
                2,
                &[record(0, "c"), record(1, "d"), record(2, "e")],
                0,
                false,
            );
            let mut second = BytesMut::from(&plain[..]);
            second[21..23].copy_from_slice(&(bits as i16).to_be_bytes());
            let crc = crc32c::crc32c(&second[21..]);
            second[17..21].copy_from_slice(&crc.to_be_bytes());
            let (records, outcome) = decode(0, &[first, second.freeze()]);
            assert_eq!(offsets(&records), [0, 1]);
            assert_eq!(outcome.next_offset, 2);
            let (at, error) = outcome.error.unwrap();
            assert_eq!(at, 2);
            let RecordError::Decompression {
                codec,
                base_offset: 2,
                last_offset: 4,
                error: CompressionError::Codec { .. },
            } = &error
            else {
                panic!("{name}: {error:?}");
            };
            assert_eq!(*codec, name);
            assert_eq!(error.next_offset(), Some(5));
            assert!(error.to_string().contains(name));
        }
    }

    #[test]
    fn unknown_codec_bits_are_a_typed_error_naming_them() {
        // Bits 5 name no codec: an UnsupportedCompression error, skippable by seek.
        let batch = encode_batch(2, 2, &[record(0, "c"), record(2, "e")], 5, false);
        let (records, outcome) = decode(0, &[batch]);
        assert!(records.is_empty());
        let (at, error) = outcome.error.unwrap();
        assert_eq!(at, 2);
        assert_eq!(
            error,
            RecordError::UnsupportedCompression {
                codec: "unknown codec 5".into(),
                base_offset: 2,
                last_offset: 4
            }
        );
        assert_eq!(error.next_offset(), Some(5));
    }

    #[test]
    fn control_batches_are_skipped_but_advance_the_next_offset() {
        // A transaction marker yields no record; the next fetch starts after it.
        let data = encode_batch(0, 0, &[record(0, "a")], 0, false);
        let marker = encode_batch(1, 0, &[record(0, "marker")], 0, true);
        let (records, outcome) = decode(0, &[data, marker]);
        assert_eq!(offsets(&records), [0]);
        assert_eq!(outcome.next_offset, 2);
    }

    #[test]
    fn compacted_batch_with_gaps_yields_survivors_and_moves_past_its_last_offset_delta() {
        // records_count < last_offset_delta + 1: offsets 100, 103, 104 survive of 100..=109.
        let batch = encode_batch(
            100,
            9,
            &[record(0, "a"), record(3, "b"), record(4, "c")],
            0,
            false,
        );
        let (records, outcome) = decode(100, &[batch]);
        assert_eq!(offsets(&records), [100, 103, 104]);
        assert_eq!(outcome.next_offset, 110);
    }

    #[test]
    fn records_below_the_fetch_offset_are_skipped() {
        // The broker answers from the batch holding the fetch offset, which may start earlier.
        let first = encode_batch(
            0,
            4,
            &(0..5).map(|i| record(i, "x")).collect::<Vec<_>>(),
            0,
            false,
        );
        let second = encode_batch(
            5,
            4,
            &(0..5).map(|i| record(i, "y")).collect::<Vec<_>>(),
            0,
            false,
        );
        let (records, outcome) = decode(7, &[first.clone(), second.clone()]);
        assert_eq!(offsets(&records), [7, 8, 9]);
        assert_eq!(outcome.next_offset, 10);
        let (records, _) = decode(3, &[first, second]);
        assert_eq!(offsets(&records), [3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn a_partial_trailing_batch_is_left_for_the_next_fetch() {
        // The fetch byte limit may cut the last batch; it is neither decoded nor skipped.
        let first = encode_batch(0, 1, &[record(0, "a"), record(1, "b")], 0, false);
        let second = encode_batch(2, 1, &[record(0, "c"), record(1, "d")], 0, false);
        let cut = second.slice(..second.len() - 3);
        let (records, outcome) = decode(0, &[first, cut]);
        assert_eq!(offsets(&records), [0, 1]);
        assert_eq!(outcome.next_offset, 2);
        assert!(outcome.error.is_none());
    }

    #[test]
    fn corrupt_batches_are_rejected_not_skipped() {
        // A flipped bit fails the CRC; the error says where, and nothing of that batch is returned.
        let good = encode_batch(0, 0, &[record(0, "a")], 0, false);
        let mut bad = encode_batch(1, 0, &[record(0, "b")], 0, false).to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let (records, outcome) = decode(0, &[good, Bytes::from(bad)]);
        assert_eq!(offsets(&records), [0]);
        assert_eq!(outcome.next_offset, 1);
        assert!(matches!(
            outcome.error,
            Some((1, RecordError::CorruptBatch { base_offset: 1, .. }))
        ));
    }

    #[test]
    fn a_corrupt_compressed_batch_is_rejected_before_decompressing() {
        let mut bad = encode_batch(0, 0, &[record(0, "a")], 4, false).to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let records = FetchedRecords::prepare(0, &Bytes::from(bad), true);
        assert!(matches!(
            records.error,
            Some((0, RecordError::CorruptBatch { base_offset: 0, .. }))
        ));
        assert_eq!(records.decompressed_bytes, 0);
    }

    #[test]
    fn records_that_lie_about_their_length_are_malformed() {
        // A record whose fields overrun its declared length is an error, never a panic.
        let batch = encode_batch(0, 0, &[record(0, "abc")], 0, false);
        let mut raw = batch.to_vec();
        // The record length varint is the first byte of the records section.
        raw[BATCH_HEADER_BYTES] = 2;
        let crc = crc32c::crc32c(&raw[21..]);
        raw[17..21].copy_from_slice(&crc.to_be_bytes());
        let (records, outcome) = decode(0, &[Bytes::from(raw)]);
        assert!(records.is_empty());
        assert!(matches!(
            outcome.error,
            Some((0, RecordError::MalformedRecord { .. }))
        ));
    }

    #[test]
    fn a_last_offset_delta_of_i32_max_is_corrupt_not_an_overflow() {
        // A hostile header at the integer limits is rejected, with and without CRC checks.
        let mut raw = encode_batch(i64::MAX - 1, 0, &[record(0, "a")], 0, false).to_vec();
        raw[23..27].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&raw[21..]);
        raw[17..21].copy_from_slice(&crc.to_be_bytes());
        let set = Bytes::from(raw);
        for check_crcs in [true, false] {
            let topic: Arc<str> = Arc::from("t");
            let mut out = Vec::new();
            let outcome = decode_record_set(&topic, 0, 0, &set, check_crcs, &mut out);
            assert!(out.is_empty());
            assert!(
                matches!(outcome.error, Some((_, RecordError::CorruptBatch { .. }))),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder() {
        // Bytes from the network never cause a panic, whatever they are.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let valid = encode_batch(
            0,
            2,
            &[record(0, "a"), record(1, "b"), record(2, "c")],
            0,
            false,
        );
        for round in 0..2_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut raw = valid.to_vec();
            let at = (seed as usize) % raw.len();
            raw[at] = (seed >> 32) as u8;
            if round % 2 == 0 {
                // Fix the CRC so the mutation reaches the record parser.
                let crc = crc32c::crc32c(&raw[21..]);
                raw[17..21].copy_from_slice(&crc.to_be_bytes());
            }
            let topic: Arc<str> = Arc::from("t");
            let mut out = Vec::new();
            let _ = decode_record_set(&topic, 0, 0, &Bytes::from(raw), round % 3 != 0, &mut out);
        }
    }
}
