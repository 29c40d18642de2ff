//! Idempotent producer state of one partition: for each producer id, its
//! epoch and the sequence ranges of its last five batches, so that a retried
//! batch is recognised (and answered with its original offsets) instead of
//! being appended twice, and a gap in sequences is refused.
//!
//! A pure state machine: batches in, verdicts out. The partition persists it
//! as snapshots (`<offset>.snapshot` beside the segments) and rebuilds it
//! from the log after a restart.

use std::collections::{HashMap, VecDeque};

use protocol::batch::BatchHeader;
use protocol::ErrorCode;

/// Batches remembered per producer, as Kafka (and its clients' in-flight limit of 5).
pub const BATCHES_PER_PRODUCER: usize = 5;
/// Producers remembered per partition; the least recently active are forgotten past it.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;
/// Producer id and epoch of a batch written without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;

/// One batch's place in a producer's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSequence {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchSequence>,
    /// Offset of the producer's latest batch, to forget the least recently active first.
    pub last_offset: i64,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Append it.
    Append,
    /// Already in the log: answer with these offsets and append nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceError {
    pub code: ErrorCode,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

/// The sequence fields of one batch header.
#[derive(Debug, Clone, Copy)]
pub struct BatchIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub first_sequence: i32,
    pub last_sequence: i32,
}

impl BatchIdentity {
    pub fn of(header: &BatchHeader<'_>) -> Option<BatchIdentity> {
        if header.producer_id() < 0 {
            return None;
        }
        let first_sequence = header.base_sequence();
        // Sequences wrap at i32::MAX back to 0, as in Kafka.
        let last_sequence = if first_sequence < 0 {
            first_sequence
        } else {
            ((i64::from(first_sequence) + i64::from(header.last_offset_delta()))
                % (i64::from(i32::MAX) + 1)) as i32
        };
        Some(BatchIdentity {
            producer_id: header.producer_id(),
            producer_epoch: header.producer_epoch(),
            first_sequence,
            last_sequence,
        })
    }
}

fn in_sequence(last: i32, next: i32) -> bool {
    next == last.wrapping_add(1) || (last == i32::MAX && next == 0)
}

impl ProducerStateTable {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Decides what to do with a batch from an idempotent producer, without changing state.
    pub fn check(&self, batch: &BatchIdentity) -> Result<Verdict, SequenceError> {
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // Unknown producer (new, or forgotten after retention): accept any sequence, as Kafka does.
            return Ok(Verdict::Append);
        };
        if batch.producer_epoch < entry.epoch {
            return Err(SequenceError {
                code: ErrorCode::INVALID_PRODUCER_EPOCH,
            });
        }
        if batch.producer_epoch > entry.epoch {
            // A new epoch starts its sequences again at 0.
            if batch.first_sequence != 0 && entry.epoch != NO_PRODUCER_EPOCH {
                return Err(SequenceError {
                    code: ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
                });
            }
            return Ok(Verdict::Append);
        }
        if let Some(dup) = entry.batches.iter().find(|b| {
            b.first_sequence == batch.first_sequence && b.last_sequence == batch.last_sequence
        }) {
            return Ok(Verdict::Duplicate {
                base_offset: dup.base_offset,
                last_offset: dup.last_offset,
            });
        }
        let last = entry.batches.back().map_or(-1, |b| b.last_sequence);
        if entry.batches.is_empty() || in_sequence(last, batch.first_sequence) {
            Ok(Verdict::Append)
        } else {
            Err(SequenceError {
                code: ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
            })
        }
    }

    /// Records an appended batch (from a produce, or replayed from the log).
    pub fn record(&mut self, batch: &BatchIdentity, base_offset: i64, last_offset: i64) {
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: batch.producer_epoch,
                batches: VecDeque::with_capacity(BATCHES_PER_PRODUCER),
                last_offset,
            });
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        assert!(
            entry
                .batches
                .back()
                .is_none_or(|b| b.last_offset < base_offset),
            "producer batches are recorded in offset order"
        );
        if entry.batches.len() == BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchSequence {
            first_sequence: batch.first_sequence,
            last_sequence: batch.last_sequence,
            base_offset,
            last_offset,
        });
        entry.last_offset = last_offset;
        if self.producers.len() > PRODUCERS_PER_PARTITION_MAX {
            self.forget_least_recent();
        }
    }

    /// Replays a batch read back from the log (recovery).
    pub fn replay(&mut self, header: &BatchHeader<'_>) {
        if let Some(identity) = BatchIdentity::of(header) {
            self.record(&identity, header.base_offset(), header.last_offset());
        }
    }

    /// Drops everything at or above `offset` (log truncation): simplest correct
    /// answer is to forget batches past it; producers with none left are forgotten.
    pub fn truncate_to(&mut self, offset: i64) {
        self.producers.retain(|_, entry| {
            entry.batches.retain(|b| b.last_offset < offset);
            entry.last_offset = entry.batches.back().map_or(-1, |b| b.last_offset);
            !entry.batches.is_empty()
        });
    }

    fn forget_least_recent(&mut self) {
        if let Some((&oldest, _)) = self.producers.iter().min_by_key(|(_, e)| e.last_offset) {
            self.producers.remove(&oldest);
        }
    }

    /// Serialises the table: `count`, then per producer `id epoch n (first last base lastoff)*n`,
    /// all big-endian, followed by a CRC-32C of everything before it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let entry = &self.producers[&id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            out.extend_from_slice(&(entry.batches.len() as u8).to_be_bytes());
            for b in &entry.batches {
                out.extend_from_slice(&b.first_sequence.to_be_bytes());
                out.extend_from_slice(&b.last_sequence.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses [`ProducerStateTable::encode`] output; `None` for anything damaged.
    pub fn decode(bytes: &[u8]) -> Option<ProducerStateTable> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut cursor = body;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, rest) = cursor.split_at_checked(n)?;
            cursor = rest;
            Some(head)
        };
        let count = u32::from_be_bytes(take(4)?.try_into().ok()?);
        let mut table = ProducerStateTable::default();
        for _ in 0..count {
            let id = i64::from_be_bytes(take(8)?.try_into().ok()?);
            let epoch = i16::from_be_bytes(take(2)?.try_into().ok()?);
            let n = take(1)?[0] as usize;
            if n > BATCHES_PER_PRODUCER {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchSequence {
                    first_sequence: i32::from_be_bytes(take(4)?.try_into().ok()?),
                    last_sequence: i32::from_be_bytes(take(4)?.try_into().ok()?),
                    base_offset: i64::from_be_bytes(take(8)?.try_into().ok()?),
                    last_offset: i64::from_be_bytes(take(8)?.try_into().ok()?),
                });
            }
            let last_offset = batches.back().map_or(-1, |b| b.last_offset);
            table.producers.insert(
                id,
                ProducerEntry {
                    epoch,
                    batches,
                    last_offset,
                },
            );
        }
        cursor.is_empty().then_some(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_id: i64, epoch: i16, first: i32, count: i32) -> BatchIdentity {
        BatchIdentity {
            producer_id,
            producer_epoch: epoch,
            first_sequence: first,
            last_sequence: ((i64::from(first) + i64::from(count) - 1) % (i64::from(i32::MAX) + 1))
                as i32,
        }
    }

    #[test]
    fn retried_batch_is_a_duplicate_with_its_original_offsets() {
        // The same producer, epoch and sequence range answers with the first append's offsets.
        let mut table = ProducerStateTable::default();
        let b = batch(7, 0, 0, 3);
        assert_eq!(table.check(&b), Ok(Verdict::Append));
        table.record(&b, 100, 102);
        assert_eq!(
            table.check(&b),
            Ok(Verdict::Duplicate {
                base_offset: 100,
                last_offset: 102
            })
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        // A retry older than five batches is no longer recognised and is out of order.
        let mut table = ProducerStateTable::default();
        for i in 0..6 {
            let b = batch(1, 0, i * 10, 10);
            assert_eq!(table.check(&b), Ok(Verdict::Append));
            table.record(&b, i64::from(i) * 10, i64::from(i) * 10 + 9);
        }
        assert_eq!(
            table.check(&batch(1, 0, 0, 10)),
            Err(SequenceError {
                code: ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER
            })
        );
        assert!(matches!(
            table.check(&batch(1, 0, 10, 10)),
            Ok(Verdict::Duplicate { .. })
        ));
    }

    #[test]
    fn gap_is_out_of_order_and_old_epoch_is_fenced() {
        // Skipping a sequence or writing with an older epoch is refused.
        let mut table = ProducerStateTable::default();
        table.record(&batch(1, 3, 0, 5), 0, 4);
        assert_eq!(
            table.check(&batch(1, 3, 6, 1)).unwrap_err().code,
            ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER
        );
        assert_eq!(
            table.check(&batch(1, 2, 5, 1)).unwrap_err().code,
            ErrorCode::INVALID_PRODUCER_EPOCH
        );
        assert_eq!(table.check(&batch(1, 3, 5, 1)), Ok(Verdict::Append));
        // A new epoch must start at sequence 0.
        assert_eq!(
            table.check(&batch(1, 4, 5, 1)).unwrap_err().code,
            ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER
        );
        assert_eq!(table.check(&batch(1, 4, 0, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn sequence_wraps_from_max_to_zero() {
        // After i32::MAX the next sequence is 0.
        let mut table = ProducerStateTable::default();
        table.record(&batch(1, 0, i32::MAX, 1), 0, 0);
        assert_eq!(table.check(&batch(1, 0, 0, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn snapshot_round_trips_and_rejects_damage() {
        // decode(encode(t)) == t, and a flipped bit is detected.
        let mut table = ProducerStateTable::default();
        for p in 0..20 {
            for i in 0..7 {
                table.record(
                    &batch(p, 1, i * 2, 2),
                    p * 100 + i64::from(i) * 2,
                    p * 100 + i64::from(i) * 2 + 1,
                );
            }
        }
        let bytes = table.encode();
        assert_eq!(ProducerStateTable::decode(&bytes), Some(table));
        let mut damaged = bytes.clone();
        damaged[10] ^= 1;
        assert_eq!(ProducerStateTable::decode(&damaged), None);
        assert_eq!(ProducerStateTable::decode(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn truncation_forgets_batches_past_the_offset() {
        // After a log truncation, a batch past the new end is no longer a duplicate.
        let mut table = ProducerStateTable::default();
        table.record(&batch(1, 0, 0, 5), 0, 4);
        table.record(&batch(1, 0, 5, 5), 5, 9);
        table.truncate_to(5);
        assert_eq!(table.check(&batch(1, 0, 5, 5)), Ok(Verdict::Append));
    }
}
