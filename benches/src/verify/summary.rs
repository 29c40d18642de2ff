//! The report for people: a few lines of counts, then the first examples of
//! each anomaly. The JSON form is the [`Report`]'s serde serialization.

use std::fmt::{self, Display, Formatter};

use serde::Serialize;

use crate::verify::check::{Anomalies, Report, Verdict};

/// Examples printed per anomaly class in the human summary (the JSON has
/// up to [`crate::verify::check::EXAMPLES_MAX`]).
const SUMMARY_EXAMPLES_MAX: usize = 5;

impl Display for Report {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Clean => "CLEAN",
            Verdict::Anomalies => "ANOMALIES",
            Verdict::Incomplete => "INCOMPLETE (some partitions were not read to their end)",
        };
        writeln!(
            f,
            "verifier run {} on topic {}: {verdict}",
            self.run_id, self.topic
        )?;
        writeln!(
            f,
            "  sent {}: acknowledged {}, unknown {} ({} present, {} absent), refused before sending {}",
            self.sent,
            self.acknowledged,
            self.unknown,
            self.unknown_present,
            self.unknown_absent,
            self.not_sent
        )?;
        writeln!(
            f,
            "  consumed {} records: {} of this run, {} of other verifier runs",
            self.consumed, self.consumed_this_run, self.consumed_other_runs
        )?;
        if self.unverified > 0 {
            writeln!(
                f,
                "  unverified (beyond an incomplete read): {}",
                self.unverified
            )?;
        }
        anomaly_lines(f, "lost", &self.lost)?;
        anomaly_lines(f, "wrong offset", &self.wrong_offset)?;
        anomaly_lines(f, "duplicated", &self.duplicated)?;
        anomaly_lines(f, "reordered", &self.reordered)?;
        anomaly_lines(f, "phantom", &self.phantom)?;
        anomaly_lines(f, "offset regressions", &self.offset_regressions)?;
        for p in &self.partitions {
            writeln!(
                f,
                "  partition {}: offsets {}..{}, {} records read{}{}",
                p.partition,
                p.log_start_offset,
                p.end_offset,
                p.records,
                if p.offset_gaps > 0 {
                    format!(", {} offsets without a record", p.offset_gaps)
                } else {
                    String::new()
                },
                if p.complete {
                    ""
                } else {
                    ", NOT read to the end"
                }
            )?;
        }
        Ok(())
    }
}

fn anomaly_lines<T: Serialize>(
    f: &mut Formatter<'_>,
    name: &str,
    anomalies: &Anomalies<T>,
) -> fmt::Result {
    writeln!(f, "  {name}: {}", anomalies.count)?;
    for example in anomalies.examples.iter().take(SUMMARY_EXAMPLES_MAX) {
        let text = serde_json::to_string(example).map_err(|_| fmt::Error)?;
        writeln!(f, "    {text}")?;
    }
    if anomalies.count > SUMMARY_EXAMPLES_MAX as u64 {
        writeln!(
            f,
            "    ... and {} more",
            anomalies.count - SUMMARY_EXAMPLES_MAX as u64
        )?;
    }
    Ok(())
}
