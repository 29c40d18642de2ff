//! The checker: a run's history and the log read back in, a report out. No
//! I/O, so every anomaly class is tested with hand-made histories and logs.
//!
//! The oracle, per send:
//! - acknowledged: present exactly once, at its acknowledged offset;
//! - unknown (no acknowledgement): present at most once, or absent;
//! - never sent (refused before queueing): absent.
//!
//! and per partition, in offset order: this run's records appear in send
//! order (the idempotent producer's guarantee), offsets strictly increase,
//! and every record is a send of this run or of another verifier run.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde::Serialize;

use crate::verify::history::{parse_value, History, Outcome, RunId, SendId, ValueOrigin};

/// Bound on the examples a report lists per anomaly class; the counts are
/// always complete.
pub const EXAMPLES_MAX: usize = 50;

/// One record as the consumer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub offset: i64,
    pub value: Option<Bytes>,
}

/// What was read of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRead {
    pub partition: i32,
    /// The log start offset when reading began (ListOffsets earliest).
    pub log_start_offset: i64,
    /// The offset reading had to reach: the high watermark when reading
    /// began (ListOffsets latest).
    pub end_offset: i64,
    /// Whether reading reached `end_offset` before the read timeout; when
    /// false, acknowledged records the read did not reach are unverified
    /// rather than lost.
    pub complete: bool,
    /// Records in the order the consumer returned them.
    pub records: Vec<ConsumedRecord>,
}

/// Everything read back from the topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumedLog {
    pub partitions: Vec<PartitionRead>,
}

/// Where a record sits in the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// An acknowledged record that is not in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lost {
    pub partition: i32,
    pub sequence: u64,
    pub acked_offset: Option<i64>,
    /// What the log holds at the acknowledged offset instead. Another send
    /// of this run there means the offset was acknowledged twice, as when a
    /// new leader's log restarts below what the old one acknowledged.
    pub at_acked_offset: Option<String>,
}

/// A record found somewhere other than where it belongs: an acknowledged
/// record not at its acknowledged offset, or any record of this run in a
/// partition it was not sent to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WrongOffset {
    pub partition: i32,
    pub sequence: u64,
    pub acked_offset: Option<i64>,
    pub found_at: Vec<Position>,
    /// What the log holds at the acknowledged offset instead: another send
    /// of this run (two records claimed one offset), a foreign value, or
    /// nothing that was read.
    pub at_acked_offset: Option<String>,
}

/// A send that appears more than once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplicated {
    pub partition: i32,
    pub sequence: u64,
    pub found_at: Vec<Position>,
}

/// A record that comes after a record sent later to the same partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reordered {
    pub partition: i32,
    pub offset: i64,
    pub sequence: u64,
    /// The highest sequence of the partition seen at a lower offset.
    pub after_sequence: u64,
}

/// A record that no send of this run (or of another verifier run) explains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Phantom {
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
}

/// An offset that does not increase within a partition, in the order the
/// consumer returned the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OffsetRegression {
    pub partition: i32,
    pub offset: i64,
    pub previous_offset: i64,
}

/// One class of anomaly: how many, and the first [`EXAMPLES_MAX`] of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomalies<T> {
    pub count: u64,
    pub examples: Vec<T>,
}

impl<T> Default for Anomalies<T> {
    fn default() -> Self {
        Anomalies {
            count: 0,
            examples: Vec::new(),
        }
    }
}

impl<T> Anomalies<T> {
    fn push(&mut self, anomaly: T) {
        self.count += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(anomaly);
        }
    }
}

/// One partition as read, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionSummary {
    pub partition: i32,
    pub log_start_offset: i64,
    pub end_offset: i64,
    pub complete: bool,
    pub records: u64,
    /// Offsets between the log start and the end that no record was read
    /// at. Zero for a topic only idempotent producers wrote; compaction
    /// and transaction markers leave gaps legitimately, so this is not an
    /// anomaly.
    pub offset_gaps: u64,
}

/// The overall verdict, which decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every check held over a complete read.
    Clean,
    /// At least one anomaly.
    Anomalies,
    /// No anomaly in what was read, but some partition was not read to its
    /// end, so acknowledged records there are unverified.
    Incomplete,
}

/// The result of checking a history against the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub run_id: RunId,
    pub topic: String,
    pub verdict: Verdict,
    pub sent: u64,
    pub acknowledged: u64,
    pub unknown: u64,
    pub not_sent: u64,
    /// Records read, of any origin.
    pub consumed: u64,
    /// Records of this run read (duplicates counted each time).
    pub consumed_this_run: u64,
    /// Records of other verifier runs read (ignored).
    pub consumed_other_runs: u64,
    /// Unknown sends that are in the log: fine, the write happened.
    pub unknown_present: u64,
    /// Unknown sends that are not in the log: fine, the write did not happen.
    pub unknown_absent: u64,
    /// Acknowledged sends beyond what an incomplete read reached.
    pub unverified: u64,
    pub lost: Anomalies<Lost>,
    pub wrong_offset: Anomalies<WrongOffset>,
    pub duplicated: Anomalies<Duplicated>,
    pub reordered: Anomalies<Reordered>,
    pub phantom: Anomalies<Phantom>,
    pub offset_regressions: Anomalies<OffsetRegression>,
    pub partitions: Vec<PartitionSummary>,
}

impl Report {
    /// The number of anomalies of every class together.
    pub fn anomaly_count(&self) -> u64 {
        self.lost.count
            + self.wrong_offset.count
            + self.duplicated.count
            + self.reordered.count
            + self.phantom.count
            + self.offset_regressions.count
    }
}

/// Checks `history` against `log`: which acknowledged records are lost, at
/// the wrong offset, duplicated or out of order, and which records in the
/// log were never sent. Sends without an acknowledgement may be present or
/// absent. Pure: the same inputs always give the same report.
pub fn check(history: &History, log: &ConsumedLog) -> Report {
    let run_id = history.run_id;
    let outcomes: HashMap<SendId, &Outcome> =
        history.sends.iter().map(|s| (s.id(), &s.outcome)).collect();
    let mut reads: Vec<&PartitionRead> = log.partitions.iter().collect();
    reads.sort_by_key(|r| r.partition);

    let mut report = Report {
        run_id,
        topic: history.topic.clone(),
        verdict: Verdict::Clean,
        sent: 0,
        acknowledged: 0,
        unknown: 0,
        not_sent: 0,
        consumed: 0,
        consumed_this_run: 0,
        consumed_other_runs: 0,
        unknown_present: 0,
        unknown_absent: 0,
        unverified: 0,
        lost: Anomalies::default(),
        wrong_offset: Anomalies::default(),
        duplicated: Anomalies::default(),
        reordered: Anomalies::default(),
        phantom: Anomalies::default(),
        offset_regressions: Anomalies::default(),
        partitions: Vec::new(),
    };

    // Where each send of this run was found, and what every read offset holds.
    let mut found: HashMap<SendId, Vec<Position>> = HashMap::new();
    let mut at_position: HashMap<Position, ValueOrigin> = HashMap::new();
    for read in &reads {
        let summary = scan_partition(
            read,
            run_id,
            &outcomes,
            &mut report,
            &mut found,
            &mut at_position,
        );
        report.partitions.push(summary);
    }

    let read_of: BTreeMap<i32, &PartitionRead> = reads.iter().map(|r| (r.partition, *r)).collect();
    for send in &history.sends {
        report.sent += 1;
        let id = send.id();
        let copies = found.get(&id).map_or(&[][..], Vec::as_slice);
        if copies.len() > 1 {
            report.duplicated.push(Duplicated {
                partition: id.partition,
                sequence: id.sequence,
                found_at: copies.to_vec(),
            });
        }
        match &send.outcome {
            Outcome::Acked { offset } => {
                report.acknowledged += 1;
                if copies.is_empty() {
                    if reached(read_of.get(&id.partition).copied(), *offset) {
                        report.lost.push(Lost {
                            partition: id.partition,
                            sequence: id.sequence,
                            acked_offset: *offset,
                            at_acked_offset: offset.map(|o| {
                                describe(at_position.get(&Position {
                                    partition: id.partition,
                                    offset: o,
                                }))
                            }),
                        });
                    } else {
                        report.unverified += 1;
                    }
                    continue;
                }
                let misplaced = copies.iter().any(|p| p.partition != id.partition);
                let at_ack = offset.map(|o| Position {
                    partition: id.partition,
                    offset: o,
                });
                let missing_from_ack = at_ack.is_some_and(|at| !copies.contains(&at));
                if misplaced || missing_from_ack {
                    report.wrong_offset.push(WrongOffset {
                        partition: id.partition,
                        sequence: id.sequence,
                        acked_offset: *offset,
                        found_at: copies.to_vec(),
                        at_acked_offset: at_ack
                            .filter(|_| missing_from_ack)
                            .map(|at| describe(at_position.get(&at))),
                    });
                }
            }
            Outcome::Unknown { .. } => {
                report.unknown += 1;
                if copies.is_empty() {
                    report.unknown_absent += 1;
                } else {
                    report.unknown_present += 1;
                    if copies.iter().any(|p| p.partition != id.partition) {
                        report.wrong_offset.push(WrongOffset {
                            partition: id.partition,
                            sequence: id.sequence,
                            acked_offset: None,
                            found_at: copies.to_vec(),
                            at_acked_offset: None,
                        });
                    }
                }
            }
            // Its copies were reported as phantoms while scanning.
            Outcome::NotSent { .. } => report.not_sent += 1,
        }
    }

    // A partition of the history that was not read at all is an incomplete read.
    let all_read =
        (0..history.partition_count).all(|p| read_of.get(&p).is_some_and(|r| r.complete));
    report.verdict = if report.anomaly_count() > 0 {
        Verdict::Anomalies
    } else if !all_read || report.unverified > 0 {
        Verdict::Incomplete
    } else {
        Verdict::Clean
    };
    report
}

/// Scans one partition in read order: offsets, origins, send order and
/// phantoms; records where each of this run's sends was found.
fn scan_partition(
    read: &PartitionRead,
    run_id: RunId,
    outcomes: &HashMap<SendId, &Outcome>,
    report: &mut Report,
    found: &mut HashMap<SendId, Vec<Position>>,
    at_position: &mut HashMap<Position, ValueOrigin>,
) -> PartitionSummary {
    let partition = read.partition;
    let mut previous_offset: Option<i64> = None;
    let mut highest_sequence: Option<u64> = None;
    let mut offset_gaps = 0u64;
    let mut expected_next = read.log_start_offset;
    for record in &read.records {
        report.consumed += 1;
        let position = Position {
            partition,
            offset: record.offset,
        };
        if let Some(previous) = previous_offset.filter(|p| record.offset <= *p) {
            report.offset_regressions.push(OffsetRegression {
                partition,
                offset: record.offset,
                previous_offset: previous,
            });
        } else {
            offset_gaps += record.offset.saturating_sub(expected_next).max(0) as u64;
            expected_next = record.offset + 1;
            previous_offset = Some(record.offset);
        }
        let origin = parse_value(run_id, record.value.as_deref());
        at_position.insert(position, origin);
        let id = match origin {
            ValueOrigin::ThisRun(id) => id,
            ValueOrigin::OtherRun(_) => {
                report.consumed_other_runs += 1;
                continue;
            }
            ValueOrigin::Foreign => {
                report.phantom.push(Phantom {
                    partition,
                    offset: record.offset,
                    reason: "not a verifier value".into(),
                });
                continue;
            }
        };
        report.consumed_this_run += 1;
        match outcomes.get(&id) {
            None => {
                report.phantom.push(Phantom {
                    partition,
                    offset: record.offset,
                    reason: format!(
                        "send {}/{} of this run was never made",
                        id.partition, id.sequence
                    ),
                });
                continue;
            }
            Some(Outcome::NotSent { .. }) => report.phantom.push(Phantom {
                partition,
                offset: record.offset,
                reason: format!(
                    "send {}/{} was refused before it was queued",
                    id.partition, id.sequence
                ),
            }),
            Some(_) => {}
        }
        let copies = found.entry(id).or_default();
        copies.push(position);
        // Order is judged on first copies only, so that a duplicate counts
        // once (as a duplicate) rather than also as a reordering.
        if copies.len() == 1 && id.partition == partition {
            match highest_sequence {
                Some(highest) if id.sequence < highest => report.reordered.push(Reordered {
                    partition,
                    offset: record.offset,
                    sequence: id.sequence,
                    after_sequence: highest,
                }),
                _ => highest_sequence = Some(id.sequence),
            }
        }
    }
    if read.complete {
        offset_gaps += read.end_offset.saturating_sub(expected_next).max(0) as u64;
    }
    PartitionSummary {
        partition,
        log_start_offset: read.log_start_offset,
        end_offset: read.end_offset,
        complete: read.complete,
        records: read.records.len() as u64,
        offset_gaps,
    }
}

/// Whether the read of a partition covered `acked_offset`: a complete read
/// covers everything; an incomplete one only what it reached.
fn reached(read: Option<&PartitionRead>, acked_offset: Option<i64>) -> bool {
    let Some(read) = read else {
        return false;
    };
    if read.complete {
        return true;
    }
    let last_read = read.records.iter().map(|r| r.offset).max();
    matches!((acked_offset, last_read), (Some(acked), Some(last)) if acked <= last)
}

/// What the log held at a position, in words.
fn describe(origin: Option<&ValueOrigin>) -> String {
    match origin {
        None => "no record read there".into(),
        Some(ValueOrigin::ThisRun(id)) => {
            format!("send {}/{} of this run", id.partition, id.sequence)
        }
        Some(ValueOrigin::OtherRun(run)) => format!("a record of run {run}"),
        Some(ValueOrigin::Foreign) => "a value that is not the verifier's".into(),
    }
}
