//! The `loadgen` binary against the real broker: what it reports matches
//! what it was asked to do, with each client, in each mode.

use std::path::Path;
use std::process::Command;

use tests::BrokerProcess;

/// Runs loadgen with `args` and returns the JSON it wrote.
fn loadgen(args: &[&str], json: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .expect("run loadgen");
    assert!(
        output.status.success(),
        "loadgen {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(json).expect("loadgen wrote its JSON")
}

/// The first number after `"key":` in `json`.
fn figure(json: &str, key: &str) -> f64 {
    let pattern = format!("\"{key}\":");
    let start = json
        .find(&pattern)
        .unwrap_or_else(|| panic!("{key} in {json}"))
        + pattern.len();
    let end = json[start..]
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .map_or(json.len(), |i| start + i);
    json[start..end]
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {json}"))
}

#[test]
fn produce_then_consume_counts_every_message_with_each_client() {
    // Each client produces exactly --count messages without errors, with
    // latency figures, and a consume of the topic reads every one back.
    const COUNT: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let json = dir.path().join("out.json");
    for client in ["ours", "rdkafka"] {
        let topic = format!("loadgen-{client}");
        let common = [
            "--brokers",
            broker.addr.as_str(),
            "--topic",
            &topic,
            "--partitions",
            "3",
            "--message-size",
            "200",
            "--client",
            client,
        ];
        let count = COUNT.to_string();
        let produce = [
            &["produce"][..],
            &common,
            &["--count", &count, "--acks", "all", "--idempotence"],
        ]
        .concat();
        let out = loadgen(&produce, &json);
        assert_eq!(figure(&out, "messages") as usize, COUNT, "{client}: {out}");
        assert_eq!(figure(&out, "errors"), 0.0, "{client}: {out}");
        assert_eq!(
            figure(&out, "bytes") as usize,
            COUNT * 200,
            "{client}: {out}"
        );
        assert!(figure(&out, "p50") > 0.0, "{client}: {out}");
        assert!(
            figure(&out, "max") >= figure(&out, "p99"),
            "{client}: {out}"
        );

        let consume = [&["consume"][..], &common, &["--count", &count]].concat();
        let out = loadgen(&consume, &json);
        assert_eq!(figure(&out, "messages") as usize, COUNT, "{client}: {out}");
        assert_eq!(
            figure(&out, "bytes") as usize,
            COUNT * 200,
            "{client}: {out}"
        );
    }
}

#[test]
fn open_loop_end_to_end_holds_the_target_rate() {
    // At a modest target rate every message sent is consumed, at that rate,
    // with end-to-end latency figures.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let json = dir.path().join("e2e.json");
    let out = loadgen(
        &[
            "end-to-end",
            "--brokers",
            &broker.addr,
            "--topic",
            "e2e",
            "--message-size",
            "100",
            "--rate",
            "5000",
            "--duration",
            "2",
        ],
        &json,
    );
    let messages = figure(&out, "messages");
    assert!((9_000.0..=10_000.0).contains(&messages), "{out}");
    assert_eq!(figure(&out, "errors"), 0.0, "{out}");
    assert!(figure(&out, "p99") > 0.0, "{out}");
}

#[test]
fn max_in_flight_reaches_each_client() {
    // A wider window still delivers every message with each client, and
    // each client refuses more than five requests in flight with
    // idempotence: the setting is what the client runs with.
    const COUNT: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let json = dir.path().join("window.json");
    for client in ["ours", "rdkafka"] {
        let topic = format!("window-{client}");
        let count = COUNT.to_string();
        let common = [
            "produce",
            "--brokers",
            broker.addr.as_str(),
            "--topic",
            &topic,
            "--message-size",
            "100",
            "--count",
            &count,
            "--client",
            client,
        ];
        let wide = [&common[..], &["--acks", "1", "--max-in-flight", "10"]].concat();
        let out = loadgen(&wide, &json);
        assert_eq!(figure(&out, "messages") as usize, COUNT, "{client}: {out}");
        assert_eq!(figure(&out, "errors"), 0.0, "{client}: {out}");
        assert!(out.contains("\"max_in_flight\":\"10\""), "{client}: {out}");

        let idempotent = [
            &common[..],
            &["--acks", "all", "--idempotence", "--max-in-flight", "6"],
        ]
        .concat();
        let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(&idempotent)
            .output()
            .expect("run loadgen");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{client}: {stderr}");
        assert!(
            stderr.contains("in.flight") || stderr.contains("in_flight"),
            "{client}: {stderr}"
        );
    }
}
