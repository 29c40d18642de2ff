//! A producer batch: records for one partition, from the first append to the
//! delivery report.
//!
//! While open, records go into a `protocol::batch::BatchBuilder`. When the
//! batch is first drained it gets its producer id, epoch and base sequence
//! and is *sealed*: built (records encoded once, straight into the buffer
//! that goes on the wire) and its records section compressed, once. Every
//! send (the first and each retry) hands out that same buffer, so a retry is
//! byte-identical; only when an epoch bump gave the batch a new sequence is
//! a copy made with the new header and CRC.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use protocol::batch::{
    BatchBuilder, Record, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, OFFSET_ATTRIBUTES,
    OFFSET_BASE_SEQUENCE, OFFSET_BATCH_LENGTH, OFFSET_CRC, OFFSET_PRODUCER_EPOCH,
    OFFSET_PRODUCER_ID,
};
use tokio::sync::oneshot;

use crate::compression::{compress, Compression, CompressionError};
use crate::error::ProduceError;
use crate::panic_message;
use crate::producer::idempotence::ProducerIdentity;
use crate::producer::record::RecordMetadata;
use crate::producer::supervisor::SenderExit;

/// "No producer id / epoch / sequence" on the wire.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;

/// The sequence on the wire for a sequence position: Kafka sequences wrap
/// from `i32::MAX` to 0, so this is the position modulo 2^31.
pub fn wire_sequence(position: i64) -> i32 {
    assert!(position >= 0, "sequence positions are non-negative");
    (position & i64::from(i32::MAX)) as i32
}

/// What a record's report is handed to.
pub(crate) enum Report {
    /// The record's [`DeliveryFuture`](crate::producer::DeliveryFuture).
    Future(oneshot::Sender<Result<RecordMetadata, ProduceError>>),
    /// A callback given to `send_with_callback`, run on the sender task.
    Callback(DeliveryCallback),
}

/// A delivery callback: runs once, on the producer's sender task, so it
/// should be quick.
pub type DeliveryCallback = Box<dyn FnOnce(Result<RecordMetadata, ProduceError>) + Send + Sync>;

/// Where one record's report goes.
pub(crate) struct Delivery {
    pub report: Report,
    pub timestamp: i64,
}

impl Delivery {
    /// A delivery reported through a oneshot channel; the receiver backs a
    /// `DeliveryFuture`.
    pub fn channel(
        timestamp: i64,
    ) -> (
        Delivery,
        oneshot::Receiver<Result<RecordMetadata, ProduceError>>,
    ) {
        let (sender, receiver) = oneshot::channel();
        let delivery = Delivery {
            report: Report::Future(sender),
            timestamp,
        };
        (delivery, receiver)
    }

    fn report(self, result: Result<RecordMetadata, ProduceError>) {
        match self.report {
            // The caller may have dropped the future: nobody wants the report.
            Report::Future(sender) => {
                let _ = sender.send(result);
            }
            Report::Callback(callback) => run_callback(callback, result),
        }
    }
}

/// Runs a delivery callback. A callback that panics is the application's
/// bug; caught here, it costs the application that one report, where
/// uncaught it would kill the sender task and with it every later report.
/// As the Java client does, the panic is logged and the sender carries on.
pub(crate) fn run_callback(
    callback: DeliveryCallback,
    result: Result<RecordMetadata, ProduceError>,
) {
    let run = std::panic::AssertUnwindSafe(|| callback(result));
    if let Err(payload) = std::panic::catch_unwind(run) {
        tracing::error!(panic = %panic_message(&*payload), "a delivery callback panicked; the producer carries on");
    }
}

struct Sealed {
    /// The whole batch as it goes on the wire, records section compressed.
    wire: Bytes,
    /// The producer id, epoch and base sequence `wire` carries.
    stamped: (i64, i16, i32),
}

/// How a batch ended: its base offset and log append time when written
/// (either may be unknown), or the error every record gets.
pub(crate) type BatchOutcome = Result<(Option<i64>, Option<i64>), ProduceError>;

/// The size of a batch in bytes (header included) and records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BatchShape {
    pub bytes: usize,
    pub records: usize,
}

pub(crate) struct ProducerBatch {
    pub id: u64,
    pub topic: Arc<str>,
    pub partition: i32,
    builder: Option<BatchBuilder>,
    sealed: Option<Sealed>,
    pub deliveries: Vec<Delivery>,
    /// Bytes of `buffer_memory` this batch holds until it completes.
    pub memory_bytes: usize,
    pub created_at: Instant,
    /// No more records may join (full, or drained at least once).
    pub closed: bool,
    /// How many times the batch was handed to a connection.
    pub attempts: u32,
    /// Not to be sent again before this (retry backoff).
    pub retry_at: Option<Instant>,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Assigned when the batch is first drained by an idempotent producer; a
    /// retry keeps it (unless an epoch bump re-numbers the partition).
    pub base_sequence: i32,
    /// The same as a position that never wraps (see `wire_sequence`); -1 without.
    pub sequence_position: i64,
    pub last_error: Option<crate::error::AttemptError>,
    /// Why the sender stopped, should this batch be dropped without a report.
    exit: Arc<SenderExit>,
}

impl Drop for ProducerBatch {
    /// A batch is reported on (`succeed` or `fail`) before it goes, except
    /// when the sender task died holding it: its records then get
    /// `SenderStopped`, so that no future waits forever.
    fn drop(&mut self) {
        if self.deliveries.is_empty() {
            return;
        }
        let error = self.exit.error();
        for delivery in self.deliveries.drain(..) {
            match delivery.report {
                Report::Future(sender) => {
                    let _ = sender.send(Err(error.clone()));
                }
                // A callback that panicked now would abort the process.
                Report::Callback(callback) if std::thread::panicking() => self.exit.defer(callback),
                Report::Callback(callback) => run_callback(callback, Err(error.clone())),
            }
        }
    }
}

impl ProducerBatch {
    #[cfg(test)]
    pub fn new(id: u64, topic: Arc<str>, partition: i32, now: Instant) -> Self {
        Self::with_capacity(
            id,
            topic,
            partition,
            now,
            BatchShape::default(),
            Arc::default(),
        )
    }

    /// A batch whose buffers start with room for `shape`, so that a batch
    /// like the partition's previous one fills without growing (and
    /// copying) its buffer on the way.
    pub fn with_capacity(
        id: u64,
        topic: Arc<str>,
        partition: i32,
        now: Instant,
        shape: BatchShape,
        exit: Arc<SenderExit>,
    ) -> Self {
        ProducerBatch {
            id,
            topic,
            partition,
            builder: Some(BatchBuilder::with_capacity(
                shape.bytes.saturating_sub(BATCH_HEADER_BYTES),
            )),
            sealed: None,
            deliveries: Vec::with_capacity(shape.records),
            memory_bytes: 0,
            created_at: now,
            closed: false,
            attempts: 0,
            retry_at: None,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            sequence_position: -1,
            last_error: None,
            exit,
        }
    }

    /// The batch's size so far.
    pub fn shape(&self) -> BatchShape {
        BatchShape {
            bytes: self.size_bytes(),
            records: self.deliveries.len(),
        }
    }

    /// Room before a buffer grows: (bytes, records); `None` once sealed.
    #[cfg(test)]
    pub fn capacity(&self) -> Option<BatchShape> {
        self.builder.as_ref().map(|builder| BatchShape {
            bytes: builder.capacity_bytes(),
            records: self.deliveries.capacity(),
        })
    }

    pub fn record_count(&self) -> i32 {
        self.deliveries.len() as i32
    }

    /// Uncompressed size while open; the encoded size once sealed.
    pub fn size_bytes(&self) -> usize {
        match (&self.builder, &self.sealed) {
            (Some(builder), _) => builder.size_bytes(),
            (None, Some(sealed)) => sealed.wire.len(),
            (None, None) => BATCH_HEADER_BYTES,
        }
    }

    /// Whether a record of `record_bytes` may join: the batch is open and
    /// either empty or still within `batch_size` with it.
    pub fn has_room(&self, record_bytes: usize, batch_size: usize) -> bool {
        !self.closed
            && self.builder.is_some()
            && (self.deliveries.is_empty() || self.size_bytes() + record_bytes <= batch_size)
    }

    pub fn append(&mut self, record: &Record, memory_bytes: usize, delivery: Delivery) {
        assert!(!self.closed, "append to a closed batch");
        let builder = self.builder.as_mut().expect("an open batch has a builder");
        builder.push(record);
        self.memory_bytes += memory_bytes;
        self.deliveries.push(delivery);
        assert_eq!(
            builder.len(),
            self.deliveries.len(),
            "one delivery per record"
        );
    }

    pub fn is_sealed(&self) -> bool {
        self.sealed.is_some()
    }

    /// Whether the batch carries a sequence number (it was drained by an
    /// idempotent producer and must keep its place in the partition's order).
    pub fn has_sequence(&self) -> bool {
        self.base_sequence != NO_SEQUENCE
    }

    /// Gives the batch its producer id, epoch and first sequence.
    pub fn assign_sequence(&mut self, identity: ProducerIdentity, position: i64) {
        self.producer_id = identity.producer_id;
        self.producer_epoch = identity.producer_epoch;
        self.sequence_position = position;
        self.base_sequence = wire_sequence(position);
    }

    /// The sequence position just past this batch's last record.
    pub fn sequence_end(&self) -> i64 {
        assert!(self.has_sequence(), "only sequenced batches have an end");
        self.sequence_position + i64::from(self.record_count())
    }

    /// The deadline of the delivery timeout.
    pub fn deadline(&self, delivery_timeout: Duration) -> Instant {
        self.created_at + delivery_timeout
    }

    /// Closes the batch and builds it with its current producer id, epoch
    /// and base sequence, compressing its records; once.
    pub fn seal(&mut self, compression: Compression) -> Result<(), CompressionError> {
        self.closed = true;
        if self.sealed.is_some() {
            return Ok(());
        }
        let builder = self
            .builder
            .take()
            .expect("an unsealed batch has a builder");
        let stamp = self.stamp();
        let wire = match compression {
            Compression::None => builder.idempotent(stamp.0, stamp.1, stamp.2).build(),
            codec => {
                let built = builder.build();
                let payload = compress(codec, &built[BATCH_HEADER_BYTES..])?;
                let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + payload.len());
                out.extend_from_slice(&built[..BATCH_HEADER_BYTES]);
                out.extend_from_slice(&payload);
                restamp(out, codec.attribute_bits(), stamp)
            }
        };
        self.sealed = Some(Sealed {
            wire,
            stamped: stamp,
        });
        Ok(())
    }

    fn stamp(&self) -> (i64, i16, i32) {
        (self.producer_id, self.producer_epoch, self.base_sequence)
    }

    /// The batch as it goes on the wire, with the current producer id, epoch
    /// and base sequence and a CRC over them.
    pub fn encode(&self) -> Bytes {
        let sealed = self.sealed.as_ref().expect("only sealed batches are sent");
        let stamp = self.stamp();
        if sealed.stamped == stamp {
            return sealed.wire.clone();
        }
        // The codec bits are already in the header.
        restamp(BytesMut::from(&sealed.wire[..]), 0, stamp)
    }

    /// Reports success to every record: offsets `base_offset + i`, or unknown.
    pub fn succeed(mut self, base_offset: Option<i64>, log_append_time: Option<i64>) {
        for (i, delivery) in std::mem::take(&mut self.deliveries).into_iter().enumerate() {
            let metadata = RecordMetadata {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: base_offset.map(|base| base + i as i64),
                timestamp: log_append_time.unwrap_or(delivery.timestamp),
            };
            delivery.report(Ok(metadata));
        }
    }

    /// Reports `error` to every record.
    pub fn fail(mut self, error: ProduceError) {
        for delivery in std::mem::take(&mut self.deliveries) {
            delivery.report(Err(error.clone()));
        }
    }
}

/// Finishes a batch's header in place: its length, codec bits (added to the
/// attributes), producer id, epoch and base sequence, and the CRC over them
/// and the records section.
fn restamp(mut batch: BytesMut, codec_bits: i16, stamp: (i64, i16, i32)) -> Bytes {
    let batch_length = (batch.len() - LOG_OVERHEAD_BYTES) as i32;
    batch[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4]
        .copy_from_slice(&batch_length.to_be_bytes());
    let attributes =
        i16::from_be_bytes([batch[OFFSET_ATTRIBUTES], batch[OFFSET_ATTRIBUTES + 1]]) | codec_bits;
    batch[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[OFFSET_PRODUCER_ID..OFFSET_PRODUCER_ID + 8].copy_from_slice(&stamp.0.to_be_bytes());
    batch[OFFSET_PRODUCER_EPOCH..OFFSET_PRODUCER_EPOCH + 2].copy_from_slice(&stamp.1.to_be_bytes());
    batch[OFFSET_BASE_SEQUENCE..OFFSET_BASE_SEQUENCE + 4].copy_from_slice(&stamp.2.to_be_bytes());
    let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    batch.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::batch::{decode_records, BatchHeader};

    fn record(i: usize) -> Record {
        Record {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![b'x'; 100 + i])),
            headers: vec![("h".to_string(), Some(Bytes::from_static(b"v")))],
            timestamp: 1_700_000_000_000 + i as i64,
        }
    }

    fn batch_of(
        count: usize,
    ) -> (
        ProducerBatch,
        Vec<oneshot::Receiver<Result<RecordMetadata, ProduceError>>>,
    ) {
        let mut batch = ProducerBatch::new(1, Arc::from("topic"), 3, Instant::now());
        let mut receivers = Vec::new();
        for i in 0..count {
            let (delivery, receiver) = Delivery::channel(0);
            batch.append(&record(i), 10, delivery);
            receivers.push(receiver);
        }
        (batch, receivers)
    }

    #[test]
    fn uncompressed_encoding_equals_the_protocol_builders_idempotent_batch() {
        // Patching producer id, epoch and sequence gives the same bytes as building them in.
        let (mut batch, _receivers) = batch_of(4);
        batch.seal(Compression::None).unwrap();
        batch.producer_id = 77;
        batch.producer_epoch = 3;
        batch.base_sequence = 40;
        let mut expected = BatchBuilder::new().idempotent(77, 3, 40);
        for i in 0..4 {
            expected.push(&record(i));
        }
        assert_eq!(batch.encode(), expected.build());
    }

    #[test]
    fn a_batch_sealed_with_its_sequence_is_sent_as_built_without_a_copy() {
        // Sequence assigned before sealing: every send hands out the same
        // buffer, equal to the protocol builder's idempotent batch.
        let (mut batch, _receivers) = batch_of(4);
        let identity = ProducerIdentity {
            producer_id: 77,
            producer_epoch: 3,
        };
        batch.assign_sequence(identity, 40);
        batch.seal(Compression::None).unwrap();
        let first = batch.encode();
        let again = batch.encode();
        assert_eq!(first.as_ptr(), again.as_ptr(), "a retry reuses the bytes");
        let mut expected = BatchBuilder::new().idempotent(77, 3, 40);
        for i in 0..4 {
            expected.push(&record(i));
        }
        assert_eq!(first, expected.build());
    }

    #[test]
    fn compressed_batches_validate_and_decompress_to_the_same_records() {
        // gzip, snappy, lz4 and zstd batches carry the codec bits, pass CRC validation, and hold the original records section.
        let (mut plain, _r) = batch_of(20);
        plain.seal(Compression::None).unwrap();
        let plain = plain.encode();
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let (mut batch, _r) = batch_of(20);
            batch.seal(codec).unwrap();
            let encoded = batch.encode();
            let header = BatchHeader::new(&encoded).unwrap();
            header.validate().unwrap();
            assert_eq!(header.compression(), codec.to_protocol());
            assert_eq!(header.records_count(), 20);
            assert!(
                encoded.len() < plain.len(),
                "{codec:?} did not shrink the batch"
            );
            let records =
                crate::compression::decompress(codec, &encoded[BATCH_HEADER_BYTES..]).unwrap();
            assert_eq!(&records[..], &plain[BATCH_HEADER_BYTES..]);
        }
    }

    #[test]
    fn re_encoding_with_a_new_sequence_keeps_the_batch_valid() {
        // A retry after an epoch bump gets a new sequence and a matching CRC.
        let (mut batch, _r) = batch_of(3);
        batch.seal(Compression::Zstd).unwrap();
        batch.producer_id = 5;
        batch.producer_epoch = 0;
        batch.base_sequence = 9;
        let first = batch.encode();
        batch.producer_epoch = 1;
        batch.base_sequence = 0;
        let second = batch.encode();
        let header = BatchHeader::new(&second).unwrap();
        header.validate().unwrap();
        assert_eq!((header.producer_epoch(), header.base_sequence()), (1, 0));
        assert_ne!(first, second);
        assert_eq!(first.len(), second.len());
    }

    #[test]
    fn decoded_uncompressed_batch_has_every_record_in_order() {
        // What goes on the wire decodes back to the appended records.
        let (mut batch, _r) = batch_of(5);
        batch.seal(Compression::None).unwrap();
        let decoded = decode_records(&batch.encode()).unwrap();
        let keys: Vec<_> = decoded.iter().map(|r| r.key.clone().unwrap()).collect();
        assert_eq!(
            keys,
            (0..5)
                .map(|i| Bytes::from(format!("key-{i}")))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn room_is_bounded_by_batch_size_except_for_the_first_record() {
        // A record that alone exceeds batch_size still gets a batch; a second one does not join it.
        let mut batch = ProducerBatch::new(1, Arc::from("t"), 0, Instant::now());
        assert!(batch.has_room(10_000, 100));
        let (delivery, _receiver) = Delivery::channel(0);
        batch.append(&record(0), 10, delivery);
        assert!(!batch.has_room(10_000, 100));
        assert!(batch.has_room(10, 10_000));
        batch.closed = true;
        assert!(!batch.has_room(10, 10_000));
    }

    #[test]
    fn success_reports_consecutive_offsets_and_failure_reaches_every_record() {
        // Record i of a batch written at base offset b gets offset b + i; a failure is reported to all.
        let (batch, receivers) = batch_of(3);
        batch.succeed(Some(100), None);
        let offsets: Vec<_> = receivers
            .into_iter()
            .map(|mut r| r.try_recv().unwrap().unwrap().offset)
            .collect();
        assert_eq!(offsets, [Some(100), Some(101), Some(102)]);
        let (batch, receivers) = batch_of(2);
        batch.fail(ProduceError::SenderStopped {
            reason: "test".to_string(),
        });
        for mut r in receivers {
            assert_eq!(
                r.try_recv().unwrap(),
                Err(ProduceError::SenderStopped {
                    reason: "test".to_string()
                })
            );
        }
    }

    #[test]
    fn sequences_wrap_from_i32_max_to_zero() {
        // Kafka's sequences wrap at i32::MAX; positions keep counting.
        assert_eq!(wire_sequence(5), 5);
        assert_eq!(wire_sequence(i64::from(i32::MAX)), i32::MAX);
        assert_eq!(wire_sequence(i64::from(i32::MAX) + 1), 0);
        assert_eq!(wire_sequence(i64::from(i32::MAX) + 4), 3);
        let mut batch = ProducerBatch::new(1, Arc::from("t"), 0, Instant::now());
        batch.assign_sequence(
            ProducerIdentity {
                producer_id: 9,
                producer_epoch: 2,
            },
            i64::from(i32::MAX) + 1,
        );
        assert_eq!((batch.base_sequence, batch.producer_epoch), (0, 2));
        assert_eq!(batch.sequence_end(), i64::from(i32::MAX) + 1);
    }
}
