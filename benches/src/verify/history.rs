//! What the producer side of a verifier run did: every record it tried to
//! send, and what the cluster said about each. Also the format of the
//! records' values, which name their own send, and the history file (JSON
//! lines) that lets a separate `check` run verify the log later.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The first word of every value the verifier writes, with the format's
/// version: a value without it was not written by a verifier.
pub const VALUE_MAGIC: &str = "vrf1";

/// The bytes of a value beyond its self-description are filled with this,
/// so that `--message-size` can make records as large as a workload's.
const VALUE_FILLER: u8 = b'.';

/// Names one verifier run, so that records of earlier runs on the same
/// topic are told apart from this run's. Written as 16 hex digits in values,
/// files and reports alike (a JSON number would lose digits in readers that
/// hold numbers as doubles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct RunId(pub u64);

impl From<RunId> for String {
    fn from(run_id: RunId) -> String {
        run_id.to_string()
    }
}

impl TryFrom<String> for RunId {
    type Error = std::num::ParseIntError;
    fn try_from(text: String) -> Result<RunId, Self::Error> {
        u64::from_str_radix(&text, 16).map(RunId)
    }
}

impl RunId {
    /// A run id that another run is very unlikely to have: the wall clock in
    /// nanoseconds mixed with the process id.
    pub fn generate() -> RunId {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        RunId(nanos ^ (u64::from(std::process::id()) << 40))
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One send of a run: the partition it was sent to and its place in that
/// partition's send order (0, 1, 2, ...). The idempotent producer keeps a
/// partition's records in send order, so `sequence` is also the order in
/// which they must appear in the partition's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SendId {
    pub partition: i32,
    pub sequence: u64,
}

/// What the cluster said about one send. Only an acknowledgement is taken
/// as proof of a write, and only a refusal before the record was queued as
/// proof that it was not: everything else (timeouts, errors after the
/// record went out) may or may not have been written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged with acks=all: the record must be in the log, at
    /// `offset` when the acknowledgement carried one (an idempotent retry
    /// answered `DUPLICATE_SEQUENCE_NUMBER` carries none).
    Acked { offset: Option<i64> },
    /// Sent (or possibly sent) without an acknowledgement: it may or may not
    /// be in the log, and either is correct.
    Unknown { error: String },
    /// Refused by the producer before it was queued, so it never left this
    /// process: finding it in the log would be a phantom.
    NotSent { error: String },
}

/// One send and its outcome, as a line of the history file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    pub partition: i32,
    pub sequence: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Send {
    pub fn id(&self) -> SendId {
        SendId {
            partition: self.partition,
            sequence: self.sequence,
        }
    }
}

/// Every send of one run, in the order the run made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub run_id: RunId,
    pub topic: String,
    /// The topic's partition count when the run produced; the checker reads
    /// every one of them.
    pub partition_count: i32,
    pub sends: Vec<Send>,
}

/// The first line of a history file.
#[derive(Debug, Serialize, Deserialize)]
struct HistoryHeader {
    format: String,
    run_id: RunId,
    topic: String,
    partition_count: i32,
}

/// Why a history file could not be written or read.
#[derive(Debug, Error)]
pub enum HistoryError {
    #[error("history I/O")]
    Io(#[from] std::io::Error),
    #[error("history line {line}: {reason}")]
    BadLine { line: usize, reason: String },
    #[error("the history file is empty (no header line)")]
    Empty,
    #[error("history format {found:?} is not {VALUE_MAGIC:?}")]
    UnknownFormat { found: String },
}

impl History {
    /// Per partition, the offset after the highest acknowledged offset: the
    /// log end the cluster must reach, since it acknowledged everything
    /// below it.
    pub fn acknowledged_end_offsets(&self) -> BTreeMap<i32, i64> {
        let mut ends = BTreeMap::new();
        for send in &self.sends {
            if let Outcome::Acked {
                offset: Some(offset),
            } = send.outcome
            {
                let end = ends.entry(send.partition).or_insert(0);
                *end = (*end).max(offset + 1);
            }
        }
        ends
    }

    /// Writes the history as JSON lines: a header, then one line per send.
    pub fn write_to(&self, out: impl Write) -> Result<(), HistoryError> {
        let mut out = std::io::BufWriter::new(out);
        let header = HistoryHeader {
            format: VALUE_MAGIC.to_string(),
            run_id: self.run_id,
            topic: self.topic.clone(),
            partition_count: self.partition_count,
        };
        serde_json::to_writer(&mut out, &header).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        for send in &self.sends {
            serde_json::to_writer(&mut out, send).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        Ok(())
    }

    /// Reads a history that [`History::write_to`] wrote.
    pub fn read_from(input: impl BufRead) -> Result<History, HistoryError> {
        let mut lines = input.lines().enumerate();
        let (_, first) = lines.next().ok_or(HistoryError::Empty)?;
        let header: HistoryHeader =
            serde_json::from_str(&first?).map_err(|e| HistoryError::BadLine {
                line: 1,
                reason: e.to_string(),
            })?;
        if header.format != VALUE_MAGIC {
            return Err(HistoryError::UnknownFormat {
                found: header.format,
            });
        }
        let mut sends = Vec::new();
        for (index, line) in lines {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let send = serde_json::from_str(&line).map_err(|e| HistoryError::BadLine {
                line: index + 1,
                reason: e.to_string(),
            })?;
            sends.push(send);
        }
        Ok(History {
            run_id: header.run_id,
            topic: header.topic,
            partition_count: header.partition_count,
            sends,
        })
    }
}

/// The value of send `id` of run `run_id`: `vrf1 <run id> <partition>
/// <sequence> `, filled to `size_bytes` when that is longer.
pub fn encode_value(run_id: RunId, id: SendId, size_bytes: usize) -> Bytes {
    let head = format!("{VALUE_MAGIC} {run_id} {} {} ", id.partition, id.sequence);
    let mut value = BytesMut::with_capacity(size_bytes.max(head.len()));
    value.put_slice(head.as_bytes());
    value.put_bytes(VALUE_FILLER, size_bytes.saturating_sub(head.len()));
    value.freeze()
}

/// What a consumed value says about where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueOrigin {
    /// Written by the run being checked, as send `SendId`.
    ThisRun(SendId),
    /// Written by another verifier run (an earlier one on the same topic).
    OtherRun(RunId),
    /// Not a verifier value at all (or a damaged one).
    Foreign,
}

/// Where a consumed value came from, seen from run `run_id`.
pub fn parse_value(run_id: RunId, value: Option<&[u8]>) -> ValueOrigin {
    let Some(text) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
        return ValueOrigin::Foreign;
    };
    let mut words = text.splitn(5, ' ');
    let (Some(VALUE_MAGIC), Some(run), Some(partition), Some(sequence), Some(rest)) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        return ValueOrigin::Foreign;
    };
    let run_digits = run.len();
    let parsed = (
        u64::from_str_radix(run, 16),
        partition.parse::<i32>(),
        sequence.parse::<u64>(),
    );
    let (Ok(run), Ok(partition), Ok(sequence)) = parsed else {
        return ValueOrigin::Foreign;
    };
    // A value whose filler is not all filler was damaged on the way, and no
    // longer proves it is the record that was sent.
    if run_digits != 16 || rest.bytes().any(|b| b != VALUE_FILLER) {
        return ValueOrigin::Foreign;
    }
    if RunId(run) != run_id {
        return ValueOrigin::OtherRun(RunId(run));
    }
    ValueOrigin::ThisRun(SendId {
        partition,
        sequence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_names_its_own_send_whatever_its_size() {
        // encode_value and parse_value round-trip, with and without filler.
        let run = RunId(0xabc);
        let id = SendId {
            partition: 7,
            sequence: 123_456,
        };
        for size in [0, 10, 40, 1000] {
            let value = encode_value(run, id, size);
            assert!(value.len() >= size);
            assert_eq!(parse_value(run, Some(&value)), ValueOrigin::ThisRun(id));
            assert_eq!(
                parse_value(RunId(1), Some(&value)),
                ValueOrigin::OtherRun(run)
            );
        }
    }

    #[test]
    fn damaged_and_foreign_values_are_not_taken_for_sends() {
        // Anything but an intact verifier value is foreign.
        let run = RunId(1);
        let id = SendId {
            partition: 0,
            sequence: 1,
        };
        let mut damaged = encode_value(run, id, 64).to_vec();
        *damaged.last_mut().unwrap() = b'x';
        for value in [
            None,
            Some(&b"hello"[..]),
            Some(&damaged[..]),
            Some(&b"vrf1 0000000000000001 0 1"[..]),
            Some(&b"vrf1 zz 0 1 "[..]),
        ] {
            assert_eq!(parse_value(run, value), ValueOrigin::Foreign, "{value:?}");
        }
    }

    #[test]
    fn the_acknowledged_end_is_past_the_highest_acknowledged_offset() {
        // Unknown sends and acknowledgements without an offset do not count.
        let send = |partition, outcome| Send {
            partition,
            sequence: 0,
            outcome,
        };
        let history = History {
            run_id: RunId(1),
            topic: "t".into(),
            partition_count: 3,
            sends: vec![
                send(0, Outcome::Acked { offset: Some(4) }),
                send(0, Outcome::Acked { offset: Some(2) }),
                send(1, Outcome::Acked { offset: None }),
                send(
                    2,
                    Outcome::Unknown {
                        error: "timed out".into(),
                    },
                ),
            ],
        };
        assert_eq!(history.acknowledged_end_offsets(), BTreeMap::from([(0, 5)]));
    }

    #[test]
    fn a_history_survives_its_file() {
        // write_to then read_from gives back the same history.
        let history = History {
            run_id: RunId(42),
            topic: "t".into(),
            partition_count: 2,
            sends: vec![
                Send {
                    partition: 0,
                    sequence: 0,
                    outcome: Outcome::Acked { offset: Some(5) },
                },
                Send {
                    partition: 1,
                    sequence: 0,
                    outcome: Outcome::Acked { offset: None },
                },
                Send {
                    partition: 0,
                    sequence: 1,
                    outcome: Outcome::Unknown {
                        error: "timed out".into(),
                    },
                },
                Send {
                    partition: 1,
                    sequence: 1,
                    outcome: Outcome::NotSent {
                        error: "buffer".into(),
                    },
                },
            ],
        };
        let mut file = Vec::new();
        history.write_to(&mut file).unwrap();
        assert_eq!(History::read_from(&file[..]).unwrap(), history);
    }
}
