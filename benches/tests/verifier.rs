//! The `verifier` binary against a real broker: a correct broker gets a
//! clean report, and a history claiming an acknowledgement the log does not
//! hold gets a lost record and exit status 1.

use std::path::Path;
use std::process::{Command, Output};

use tests::BrokerProcess;

/// Runs the verifier with `args`.
fn verifier(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verifier"))
        .args(args)
        .output()
        .expect("run the verifier")
}

/// The report the verifier wrote to `path`.
fn report(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("the verifier wrote its JSON report");
    serde_json::from_str(&text).expect("the report is JSON")
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_run_against_a_correct_broker_reports_every_acknowledged_record_and_no_anomaly() {
    // 2,000 sends to 3 partitions are all acknowledged, found in order, and the run exits 0.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let json = dir.path().join("report.json");
    let history = dir.path().join("history.jsonl");
    let output = verifier(&[
        "run",
        "--brokers",
        &broker.addr,
        "--topic",
        "verified",
        "--partitions",
        "3",
        "--count",
        "2000",
        "--read-timeout",
        "15",
        "--json",
        json.to_str().unwrap(),
        "--history",
        history.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let report = report(&json);
    assert_eq!(report["verdict"], "clean", "{report}");
    assert_eq!(report["sent"], 2000, "{report}");
    assert_eq!(report["acknowledged"], 2000, "{report}");
    assert_eq!(report["consumed_this_run"], 2000, "{report}");
    for class in [
        "lost",
        "wrong_offset",
        "duplicated",
        "reordered",
        "phantom",
        "offset_regressions",
    ] {
        assert_eq!(report[class]["count"], 0, "{class}: {report}");
    }
    let partitions = report["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3, "{report}");
    for partition in partitions {
        assert_eq!(partition["complete"], true, "{report}");
        assert_eq!(partition["offset_gaps"], 0, "{report}");
    }
    let lines = std::fs::read_to_string(&history).unwrap().lines().count();
    assert_eq!(lines, 1 + 2000, "a header and one line per send");
}

#[test]
fn a_check_of_an_acknowledgement_the_log_lacks_reports_it_lost_and_exits_1() {
    // A history forged with one acknowledgement too many stands for a lost write; check finds it.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let history = dir.path().join("history.jsonl");
    let output = verifier(&[
        "produce",
        "--brokers",
        &broker.addr,
        "--topic",
        "forged",
        "--partitions",
        "1",
        "--count",
        "100",
        "--history",
        history.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let mut text = std::fs::read_to_string(&history).unwrap();
    text.push_str("{\"partition\":0,\"sequence\":100,\"outcome\":\"acked\",\"offset\":100}\n");
    std::fs::write(&history, text).unwrap();

    let json = dir.path().join("report.json");
    let output = verifier(&[
        "check",
        "--brokers",
        &broker.addr,
        "--history",
        history.to_str().unwrap(),
        "--read-timeout",
        "15",
        // The forged acknowledgement is past the log end, which no wait mends.
        "--settle-timeout",
        "0.2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let report = report(&json);
    assert_eq!(report["verdict"], "anomalies", "{report}");
    assert_eq!(report["acknowledged"], 101, "{report}");
    assert_eq!(report["lost"]["count"], 1, "{report}");
    assert_eq!(report["lost"]["examples"][0]["sequence"], 100, "{report}");
    assert_eq!(report["consumed_this_run"], 100, "{report}");
}
