//! Reading the records of an uncompressed batch far enough to compact it (key,
//! whether the value is null, offset, timestamp), and writing the batch back
//! with fewer records. No I/O.
//!
//! A record (v2) is `length varint`, then `attributes i8, timestampDelta
//! varlong, offsetDelta varint, keyLength varint, key, valueLength varint,
//! value, headers`. The scanner stops after the value; the length prefix
//! delimits the rest. A rewritten batch keeps, as Kafka's cleaner does, its
//! base offset, `last_offset_delta` (so `records_count <= last_offset_delta +
//! 1`), leader epoch, producer id, epoch and base sequence, and attributes;
//! `records_count`, `batch_length`, `max_timestamp` (for CreateTime) and the
//! CRC are recomputed. Kept records are copied byte for byte, unless the batch
//! gets a delete horizon.
//!
//! **Delete horizon** (Kafka's KIP-534): the first time the cleaner keeps a
//! tombstone, it marks the batch with attribute bit [`DELETE_HORIZON_FLAG`]
//! and stores `now + delete.retention.ms` in the batch's `base_timestamp`.
//! Each record's timestamp delta is re-encoded against the new base (it may
//! become negative), so every record keeps its timestamp. A later cleaning
//! removes the tombstone once the horizon has passed.

use protocol::batch::{
    BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, OFFSET_ATTRIBUTES, OFFSET_BASE_TIMESTAMP,
    OFFSET_BATCH_LENGTH, OFFSET_CRC, OFFSET_MAX_TIMESTAMP, OFFSET_RECORDS_COUNT,
};
use protocol::varint::{put_varlong, read_varlong, VarintError, VARLONG_BYTES_MAX};
use thiserror::Error;

/// Attribute bit of a batch whose `base_timestamp` holds its delete horizon
/// (Kafka's `DELETE_HORIZON_FLAG_MASK`).
pub const DELETE_HORIZON_FLAG: i16 = 0x40;

/// The shortest possible record: a length and six one-byte fields.
const RECORD_BYTES_MIN: usize = 7;

/// Why the records of a batch could not be read. The batch's CRC was valid,
/// so a producer wrote it this way; the cleaner keeps such a batch untouched.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordScanError {
    #[error("record {index} is cut off at byte {position} of the records")]
    Truncated { index: usize, position: usize },
    #[error("record {index} has a varint longer than {VARLONG_BYTES_MAX} bytes")]
    VarintTooLong { index: usize },
    #[error("record {index} has a negative length {length}")]
    NegativeLength { index: usize, length: i64 },
    #[error("record {index} has offset delta {offset_delta}, not above {previous} and at most {last_offset_delta}")]
    OffsetDeltaOutOfOrder {
        index: usize,
        offset_delta: i64,
        previous: i64,
        last_offset_delta: i32,
    },
    #[error("{trailing} bytes follow the last of {records_count} records")]
    TrailingBytes { trailing: usize, records_count: i32 },
    #[error("the batch claims {records_count} records")]
    BadRecordsCount { records_count: i32 },
}

/// One record of a batch, as the cleaner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordSpan<'a> {
    pub(crate) offset: i64,
    pub(crate) timestamp: i64,
    /// `None` for a record without a key (the cleaner keeps those).
    pub(crate) key: Option<&'a [u8]>,
    /// A null value: the record deletes its key.
    pub(crate) is_tombstone: bool,
    /// The whole record, its length prefix included.
    bytes: &'a [u8],
    attributes: u8,
    /// Everything after the timestamp delta: offset delta, key, value, headers.
    after_timestamp: &'a [u8],
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
    index: usize,
}

impl<'a> Reader<'a> {
    fn truncated(&self) -> RecordScanError {
        RecordScanError::Truncated {
            index: self.index,
            position: self.position,
        }
    }

    fn byte(&mut self) -> Result<u8, RecordScanError> {
        let byte = *self
            .bytes
            .get(self.position)
            .ok_or_else(|| self.truncated())?;
        self.position += 1;
        Ok(byte)
    }

    fn varlong(&mut self) -> Result<i64, RecordScanError> {
        read_varlong(self.bytes, &mut self.position).map_err(|e| match e {
            VarintError::Truncated => self.truncated(),
            VarintError::TooLong => RecordScanError::VarintTooLong { index: self.index },
        })
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], RecordScanError> {
        let end = self
            .position
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.truncated())?;
        let taken = &self.bytes[self.position..end];
        self.position = end;
        Ok(taken)
    }

    /// A length-prefixed field; `None` for length -1 (null).
    fn nullable(&mut self) -> Result<Option<&'a [u8]>, RecordScanError> {
        match self.varlong()? {
            -1 => Ok(None),
            length if length < 0 => Err(RecordScanError::NegativeLength {
                index: self.index,
                length,
            }),
            length => {
                let length = usize::try_from(length).map_err(|_| self.truncated())?;
                self.take(length).map(Some)
            }
        }
    }
}

/// The records of one uncompressed batch, whose header and CRC the caller
/// checked. Damaged or hostile bytes give an error, never a panic.
pub(crate) fn scan_records(batch: &[u8]) -> Result<Vec<RecordSpan<'_>>, RecordScanError> {
    let header = BatchHeader::new(batch).map_err(|_| RecordScanError::Truncated {
        index: 0,
        position: 0,
    })?;
    let records_count = header.records_count();
    let records =
        &batch[BATCH_HEADER_BYTES.min(batch.len())..header.total_bytes().min(batch.len())];
    if records_count < 0 || records_count as usize > records.len() / RECORD_BYTES_MIN {
        return Err(RecordScanError::BadRecordsCount { records_count });
    }
    let mut spans = Vec::with_capacity(records_count as usize);
    let mut reader = Reader {
        bytes: records,
        position: 0,
        index: 0,
    };
    let mut previous_delta = -1i64;
    for index in 0..records_count as usize {
        reader.index = index;
        let start = reader.position;
        let length = reader.varlong()?;
        if length < 0 {
            return Err(RecordScanError::NegativeLength { index, length });
        }
        let body = reader.take(usize::try_from(length).map_err(|_| reader.truncated())?)?;
        let end = reader.position;
        let mut fields = Reader {
            bytes: body,
            position: 0,
            index,
        };
        let attributes = fields.byte()?;
        let timestamp_delta = fields.varlong()?;
        let after_timestamp = &body[fields.position..];
        let offset_delta = fields.varlong()?;
        if offset_delta <= previous_delta || offset_delta > i64::from(header.last_offset_delta()) {
            return Err(RecordScanError::OffsetDeltaOutOfOrder {
                index,
                offset_delta,
                previous: previous_delta,
                last_offset_delta: header.last_offset_delta(),
            });
        }
        previous_delta = offset_delta;
        let key = fields.nullable()?;
        let value = fields.nullable()?;
        spans.push(RecordSpan {
            offset: header.base_offset() + offset_delta,
            timestamp: header.base_timestamp().wrapping_add(timestamp_delta),
            key,
            is_tombstone: value.is_none(),
            bytes: &records[start..end],
            attributes,
            after_timestamp,
        });
    }
    if reader.position != records.len() {
        return Err(RecordScanError::TrailingBytes {
            trailing: records.len() - reader.position,
            records_count,
        });
    }
    Ok(spans)
}

/// The batch's delete horizon, if the cleaner set one.
pub(crate) fn delete_horizon_ms(header: &BatchHeader<'_>) -> Option<i64> {
    (header.attributes() & DELETE_HORIZON_FLAG != 0).then(|| header.base_timestamp())
}

/// `batch` with only the `kept` records (a non-empty subsequence of its
/// scanned records, in order). With `set_delete_horizon_ms`, the batch is
/// marked with that delete horizon and the timestamp deltas re-encoded.
pub(crate) fn rebuild_batch(
    batch: &[u8],
    kept: &[&RecordSpan<'_>],
    set_delete_horizon_ms: Option<i64>,
) -> Vec<u8> {
    assert!(
        !kept.is_empty(),
        "a batch without records is dropped, not rebuilt"
    );
    let header = BatchHeader::new(batch).expect("the caller scanned this batch");
    let mut out = Vec::with_capacity(header.total_bytes() + kept.len() * VARLONG_BYTES_MAX);
    out.extend_from_slice(&batch[..BATCH_HEADER_BYTES]);
    let mut attributes = header.attributes();
    if let Some(horizon) = set_delete_horizon_ms {
        attributes |= DELETE_HORIZON_FLAG;
        out[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        out[OFFSET_BASE_TIMESTAMP..OFFSET_BASE_TIMESTAMP + 8]
            .copy_from_slice(&horizon.to_be_bytes());
    }
    let base_timestamp = set_delete_horizon_ms.unwrap_or(header.base_timestamp());
    let mut body = Vec::new();
    for record in kept {
        if set_delete_horizon_ms.is_none() {
            out.extend_from_slice(record.bytes);
            continue;
        }
        body.clear();
        body.push(record.attributes);
        put_varlong(&mut body, record.timestamp.wrapping_sub(base_timestamp));
        body.extend_from_slice(record.after_timestamp);
        put_varlong(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
    }
    let max_timestamp = if header.is_log_append_time() {
        header.max_timestamp()
    } else {
        kept.iter()
            .map(|r| r.timestamp)
            .max()
            .expect("kept records")
    };
    out[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8]
        .copy_from_slice(&max_timestamp.to_be_bytes());
    out[OFFSET_RECORDS_COUNT..OFFSET_RECORDS_COUNT + 4]
        .copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD_BYTES).expect("batch fits i32");
    out[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&out[OFFSET_ATTRIBUTES..]);
    out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    let rebuilt = BatchHeader::new(&out).expect("header written above");
    assert_eq!(
        rebuilt.base_offset(),
        header.base_offset(),
        "base offset kept"
    );
    assert_eq!(
        rebuilt.last_offset_delta(),
        header.last_offset_delta(),
        "last offset delta kept"
    );
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use protocol::batch::{assign_offset_and_epoch, decode_records, BatchBuilder, Record};

    use super::*;

    fn sample() -> Vec<u8> {
        let mut builder = BatchBuilder::new().idempotent(77, 3, 1000);
        for (i, key) in ["a", "b", "a", "c"].iter().enumerate() {
            builder.push(&Record {
                key: Some(Bytes::from(key.to_string())),
                value: (i != 3).then(|| Bytes::from(vec![i as u8; 10 + i])),
                headers: vec![("h".into(), Some(Bytes::from_static(b"v")))],
                timestamp: 1_700_000_000_000 + i as i64 * 10,
            });
        }
        let mut batch = builder.build().to_vec();
        assign_offset_and_epoch(&mut batch, 500, 4);
        batch
    }

    #[test]
    fn scanner_reads_keys_offsets_timestamps_and_tombstones() {
        // Proves the key-only scanner agrees with the full record decoder.
        let batch = sample();
        let spans = scan_records(&batch).expect("scan");
        let decoded = decode_records(&Bytes::from(batch.clone())).expect("decode");
        assert_eq!(spans.len(), decoded.len());
        for (span, record) in spans.iter().zip(&decoded) {
            assert_eq!(span.offset, record.offset);
            assert_eq!(span.timestamp, record.timestamp);
            assert_eq!(span.key, record.key.as_deref());
            assert_eq!(span.is_tombstone, record.value.is_none());
        }
        assert!(spans[3].is_tombstone);
    }

    #[test]
    fn rebuilt_batch_keeps_offsets_and_producer_fields_and_validates() {
        // Proves a rebuilt batch is valid, keeps base offset, last offset delta and producer fields, and holds exactly the kept records.
        let batch = sample();
        let spans = scan_records(&batch).expect("scan");
        let kept = [&spans[1], &spans[2]];
        let rebuilt = rebuild_batch(&batch, &kept, None);
        let header = BatchHeader::new(&rebuilt).unwrap();
        header.validate().expect("valid");
        let original = BatchHeader::new(&batch).unwrap();
        assert_eq!(header.base_offset(), 500);
        assert_eq!(header.last_offset_delta(), 3);
        assert_eq!(header.records_count(), 2);
        assert_eq!(header.partition_leader_epoch(), 4);
        assert_eq!(header.producer_id(), original.producer_id());
        assert_eq!(header.producer_epoch(), original.producer_epoch());
        assert_eq!(header.base_sequence(), original.base_sequence());
        assert_eq!(header.max_timestamp(), 1_700_000_000_020);
        let decoded = decode_records(&Bytes::from(rebuilt)).expect("decode");
        let offsets: Vec<i64> = decoded.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![501, 502]);
        assert_eq!(decoded[1].value.as_deref(), Some(&[2u8; 12][..]));
    }

    #[test]
    fn delete_horizon_moves_the_base_timestamp_but_keeps_every_record_timestamp() {
        // Proves setting a delete horizon re-encodes timestamp deltas so decoded timestamps are unchanged.
        let batch = sample();
        let spans = scan_records(&batch).expect("scan");
        let kept: Vec<&RecordSpan<'_>> = spans.iter().collect();
        let horizon = 1_800_000_000_000;
        let rebuilt = rebuild_batch(&batch, &kept, Some(horizon));
        let header = BatchHeader::new(&rebuilt).unwrap();
        header.validate().expect("valid");
        assert_eq!(delete_horizon_ms(&header), Some(horizon));
        assert_eq!(delete_horizon_ms(&BatchHeader::new(&batch).unwrap()), None);
        let before = decode_records(&Bytes::from(batch.clone())).unwrap();
        let after = decode_records(&Bytes::from(rebuilt.clone())).unwrap();
        assert_eq!(before, after);
        // Rebuilding a marked batch again keeps the mark and the records.
        let spans = scan_records(&rebuilt).expect("scan");
        let again = rebuild_batch(&rebuilt, &[&spans[0]], None);
        let again_header = BatchHeader::new(&again).unwrap();
        again_header.validate().expect("valid");
        assert_eq!(delete_horizon_ms(&again_header), Some(horizon));
        assert_eq!(decode_records(&Bytes::from(again)).unwrap()[0], before[0]);
    }

    #[test]
    fn scanner_rejects_damaged_records_without_panicking() {
        // Proves a lying records count, a cut record or trailing bytes are errors, never panics.
        let batch = sample();
        let mut lying = batch.clone();
        lying[OFFSET_RECORDS_COUNT..OFFSET_RECORDS_COUNT + 4].copy_from_slice(&5i32.to_be_bytes());
        assert!(scan_records(&lying).is_err());
        let mut fewer = batch.clone();
        fewer[OFFSET_RECORDS_COUNT..OFFSET_RECORDS_COUNT + 4].copy_from_slice(&3i32.to_be_bytes());
        assert!(matches!(
            scan_records(&fewer),
            Err(RecordScanError::TrailingBytes { .. })
        ));
        for cut in [BATCH_HEADER_BYTES, BATCH_HEADER_BYTES + 3, batch.len() - 1] {
            let _ = scan_records(&batch[..cut]);
        }
        let mut garbage = batch.clone();
        for byte in &mut garbage[BATCH_HEADER_BYTES..] {
            *byte = 0xff;
        }
        assert!(scan_records(&garbage).is_err());
    }
}
