//! The checker on hand-made histories and logs: one test per anomaly class,
//! and the outcomes the oracle must accept.

use bytes::Bytes;

use crate::verify::check::{check, ConsumedLog, ConsumedRecord, PartitionRead, Verdict};
use crate::verify::history::{encode_value, History, Outcome, RunId, Send, SendId};

const RUN: RunId = RunId(0x5eed);

fn acked(partition: i32, sequence: u64, offset: i64) -> Send {
    Send {
        partition,
        sequence,
        outcome: Outcome::Acked {
            offset: Some(offset),
        },
    }
}

fn unknown(partition: i32, sequence: u64) -> Send {
    Send {
        partition,
        sequence,
        outcome: Outcome::Unknown {
            error: "delivery timed out".into(),
        },
    }
}

fn history(partition_count: i32, sends: Vec<Send>) -> History {
    History {
        run_id: RUN,
        topic: "verified".into(),
        partition_count,
        sends,
    }
}

fn value(partition: i32, sequence: u64) -> Option<Bytes> {
    Some(encode_value(
        RUN,
        SendId {
            partition,
            sequence,
        },
        64,
    ))
}

/// A complete read of `partition` holding `records` (offset, value), with
/// the log ending right after the last one.
fn read(partition: i32, records: Vec<(i64, Option<Bytes>)>) -> PartitionRead {
    let end_offset = records.iter().map(|(o, _)| o + 1).max().unwrap_or(0);
    PartitionRead {
        partition,
        log_start_offset: 0,
        end_offset,
        complete: true,
        records: records
            .into_iter()
            .map(|(offset, value)| ConsumedRecord { offset, value })
            .collect(),
    }
}

fn log(partitions: Vec<PartitionRead>) -> ConsumedLog {
    ConsumedLog { partitions }
}

#[test]
fn every_acked_record_at_its_offset_in_order_is_clean() {
    // The log a correct cluster leaves: the report is clean, with the counts.
    let h = history(
        2,
        vec![
            acked(0, 0, 0),
            acked(1, 0, 0),
            acked(0, 1, 1),
            acked(1, 1, 1),
        ],
    );
    let l = log(vec![
        read(0, vec![(0, value(0, 0)), (1, value(0, 1))]),
        read(1, vec![(0, value(1, 0)), (1, value(1, 1))]),
    ]);
    let report = check(&h, &l);
    assert_eq!(report.verdict, Verdict::Clean, "{report}");
    assert_eq!(report.acknowledged, 4);
    assert_eq!(report.consumed_this_run, 4);
    assert_eq!(report.anomaly_count(), 0);
    assert!(report.partitions.iter().all(|p| p.offset_gaps == 0));
}

#[test]
fn an_acked_record_missing_from_the_log_is_lost() {
    // Acknowledged, then gone: reported lost with its acknowledged offset.
    let h = history(1, vec![acked(0, 0, 0), acked(0, 1, 1), acked(0, 2, 2)]);
    let l = log(vec![read(0, vec![(0, value(0, 0)), (2, value(0, 2))])]);
    let report = check(&h, &l);
    assert_eq!(report.verdict, Verdict::Anomalies);
    assert_eq!(report.lost.count, 1);
    assert_eq!(report.lost.examples[0].sequence, 1);
    assert_eq!(report.lost.examples[0].acked_offset, Some(1));
    assert_eq!(
        report.lost.examples[0].at_acked_offset.as_deref(),
        Some("no record read there")
    );
    assert_eq!(report.anomaly_count(), 1, "{report}");
    assert_eq!(report.partitions[0].offset_gaps, 1);
}

#[test]
fn a_lost_record_names_the_send_that_took_its_offset() {
    // A new leader restarting at offset 0 acknowledges offset 0 twice; the loss says so.
    let h = history(1, vec![acked(0, 0, 0), acked(0, 1, 0)]);
    let l = log(vec![read(0, vec![(0, value(0, 1))])]);
    let report = check(&h, &l);
    assert_eq!(report.lost.count, 1, "{report}");
    let lost = &report.lost.examples[0];
    assert_eq!((lost.sequence, lost.acked_offset), (0, Some(0)));
    assert_eq!(
        lost.at_acked_offset.as_deref(),
        Some("send 0/1 of this run")
    );
    assert_eq!(report.anomaly_count(), 1);
}

#[test]
fn an_acked_record_at_another_offset_is_a_wrong_offset() {
    // Send 1, acknowledged at offset 0, sits at 1 behind send 0: two records claimed offset 0.
    let h = history(1, vec![acked(0, 0, 0), acked(0, 1, 0)]);
    let l = log(vec![read(0, vec![(0, value(0, 0)), (1, value(0, 1))])]);
    let report = check(&h, &l);
    assert_eq!(report.wrong_offset.count, 1, "{report}");
    let wrong = &report.wrong_offset.examples[0];
    assert_eq!((wrong.sequence, wrong.acked_offset), (1, Some(0)));
    assert_eq!(
        wrong.at_acked_offset.as_deref(),
        Some("send 0/0 of this run")
    );
    assert_eq!(report.anomaly_count(), 1);
}

#[test]
fn a_record_in_a_partition_it_was_not_sent_to_is_a_wrong_offset() {
    // A send found in another partition is misplaced even when unacknowledged.
    let h = history(2, vec![unknown(0, 0)]);
    let l = log(vec![read(0, vec![]), read(1, vec![(0, value(0, 0))])]);
    let report = check(&h, &l);
    assert_eq!(report.wrong_offset.count, 1, "{report}");
    assert_eq!(report.verdict, Verdict::Anomalies);
}

#[test]
fn a_record_stored_twice_is_duplicated() {
    // A send at two offsets is one duplicate, and not also a reordering or a wrong offset.
    let h = history(1, vec![acked(0, 0, 0), acked(0, 1, 1)]);
    let l = log(vec![read(
        0,
        vec![(0, value(0, 0)), (1, value(0, 1)), (2, value(0, 0))],
    )]);
    let report = check(&h, &l);
    assert_eq!(report.duplicated.count, 1, "{report}");
    assert_eq!(report.duplicated.examples[0].found_at.len(), 2);
    assert_eq!(report.anomaly_count(), 1);
}

#[test]
fn an_unknown_record_stored_twice_is_duplicated_too() {
    // Unknown means "at most once", not "any number of times".
    let h = history(1, vec![unknown(0, 0)]);
    let l = log(vec![read(0, vec![(0, value(0, 0)), (1, value(0, 0))])]);
    let report = check(&h, &l);
    assert_eq!(report.duplicated.count, 1, "{report}");
}

#[test]
fn a_later_send_before_an_earlier_one_is_reordered() {
    // Sequence 1 before sequence 0 of a partition is caught by order alone, without offsets.
    let h = history(
        1,
        vec![
            Send {
                partition: 0,
                sequence: 0,
                outcome: Outcome::Acked { offset: None },
            },
            Send {
                partition: 0,
                sequence: 1,
                outcome: Outcome::Acked { offset: None },
            },
        ],
    );
    let l = log(vec![read(0, vec![(0, value(0, 1)), (1, value(0, 0))])]);
    let report = check(&h, &l);
    assert_eq!(report.reordered.count, 1, "{report}");
    let reordered = &report.reordered.examples[0];
    assert_eq!(
        (
            reordered.offset,
            reordered.sequence,
            reordered.after_sequence
        ),
        (1, 0, 1)
    );
    assert_eq!(report.anomaly_count(), 1);
}

#[test]
fn records_nobody_sent_are_phantoms() {
    // A send never made, a send refused before queueing, and a foreign value are phantoms.
    let h = history(
        1,
        vec![
            acked(0, 0, 0),
            Send {
                partition: 0,
                sequence: 1,
                outcome: Outcome::NotSent {
                    error: "buffer exhausted".into(),
                },
            },
        ],
    );
    let l = log(vec![read(
        0,
        vec![
            (0, value(0, 0)),
            (1, value(0, 1)),
            (2, value(0, 9)),
            (3, Some(Bytes::from_static(b"hello"))),
        ],
    )]);
    let report = check(&h, &l);
    assert_eq!(report.phantom.count, 3, "{report}");
    assert_eq!(report.anomaly_count(), 3);
}

#[test]
fn records_of_other_verifier_runs_are_ignored() {
    // A reused topic holds earlier runs' records: counted, not anomalies.
    let h = history(1, vec![acked(0, 0, 1)]);
    let other = encode_value(
        RunId(1),
        SendId {
            partition: 0,
            sequence: 0,
        },
        64,
    );
    let l = log(vec![read(0, vec![(0, Some(other)), (1, value(0, 0))])]);
    let report = check(&h, &l);
    assert_eq!(report.verdict, Verdict::Clean, "{report}");
    assert_eq!(report.consumed_other_runs, 1);
}

#[test]
fn an_unknown_record_that_appeared_is_fine() {
    // A timed-out send that was written after all is correct.
    let h = history(1, vec![acked(0, 0, 0), unknown(0, 1), acked(0, 2, 2)]);
    let l = log(vec![read(
        0,
        vec![(0, value(0, 0)), (1, value(0, 1)), (2, value(0, 2))],
    )]);
    let report = check(&h, &l);
    assert_eq!(report.verdict, Verdict::Clean, "{report}");
    assert_eq!((report.unknown_present, report.unknown_absent), (1, 0));
}

#[test]
fn an_unknown_record_that_is_absent_is_fine() {
    // A timed-out send that was never written is correct too.
    let h = history(1, vec![acked(0, 0, 0), unknown(0, 1), acked(0, 2, 1)]);
    let l = log(vec![read(0, vec![(0, value(0, 0)), (1, value(0, 2))])]);
    let report = check(&h, &l);
    assert_eq!(report.verdict, Verdict::Clean, "{report}");
    assert_eq!((report.unknown_present, report.unknown_absent), (0, 1));
}

#[test]
fn a_decreasing_offset_is_an_offset_regression() {
    // Offset 1 read again after offset 1 is a regression (and here a duplicate as well).
    let h = history(1, vec![acked(0, 0, 0), acked(0, 1, 1)]);
    let l = log(vec![read(
        0,
        vec![(0, value(0, 0)), (1, value(0, 1)), (1, value(0, 1))],
    )]);
    let report = check(&h, &l);
    assert_eq!(report.offset_regressions.count, 1, "{report}");
    assert_eq!(report.duplicated.count, 1);
}

#[test]
fn an_acked_record_beyond_an_incomplete_read_is_unverified_not_lost() {
    // A read cut short by its timeout cannot prove a loss past its reach.
    let h = history(1, vec![acked(0, 0, 0), acked(0, 1, 1)]);
    let mut partial = read(0, vec![(0, value(0, 0))]);
    partial.end_offset = 2;
    partial.complete = false;
    let report = check(&h, &log(vec![partial]));
    assert_eq!(report.verdict, Verdict::Incomplete, "{report}");
    assert_eq!((report.lost.count, report.unverified), (0, 1));
}

#[test]
fn a_partition_not_read_at_all_makes_the_check_incomplete() {
    // Every partition of the topic must be read before the check is clean.
    let h = history(2, vec![acked(0, 0, 0)]);
    let report = check(&h, &log(vec![read(0, vec![(0, value(0, 0))])]));
    assert_eq!(report.verdict, Verdict::Incomplete, "{report}");
}

#[test]
fn the_report_lists_a_bounded_number_of_examples() {
    // Ten thousand losses are counted in full but listed only EXAMPLES_MAX times.
    let sends = (0..10_000).map(|i| acked(0, i, i as i64)).collect();
    let report = check(&history(1, sends), &log(vec![read(0, vec![])]));
    assert_eq!(report.lost.count, 10_000);
    assert_eq!(
        report.lost.examples.len(),
        crate::verify::check::EXAMPLES_MAX
    );
}
