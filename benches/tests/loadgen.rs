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

#[test]
fn results_table_puts_each_run_beside_its_baseline() {
    // The standard workloads' table, built from real runs' JSON: the
    // baselines, a produce/consume row with its ratios, and a row in each
    // open-loop table (linger 0 and the default linger) at the rate asked for.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]).unwrap();
    let out = dir.path().join("results");
    std::fs::create_dir_all(&out).unwrap();
    let disk = dir.path().to_str().unwrap();
    let baseline = loadgen(
        &[
            "baseline",
            "--dir",
            disk,
            "--megabytes",
            "8",
            "--stall-seconds",
            "0.2",
        ],
        &out.join("baseline.json"),
    );
    let run = |command: &str, extra: &[&str], json: &str| {
        let mut args = vec![
            command,
            "--brokers",
            broker.addr.as_str(),
            "--topic",
            "table",
            "--message-size",
            "100",
        ];
        args.extend_from_slice(extra);
        loadgen(&args, &out.join(json));
    };
    run(
        "produce",
        &["--count", "5000"],
        "produce-p1-s100-acks1-ours.json",
    );
    run(
        "consume",
        &["--count", "5000"],
        "consume-p1-s100-acks1-ours.json",
    );
    let open_loop = ["--rate", "20000", "--count", "10000"];
    let linger_0 = [&open_loop[..], &["--linger-ms", "0"]].concat();
    run("produce", &linger_0, "latency-p1-s100-acks1-ours.json");
    run("produce", &open_loop, "lingered-p1-s100-acks1-ours.json");

    let table = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/results-table.py"
        ))
        .arg(&out)
        .output()
        .expect("run results-table.py");
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("Baselines: raw sequential write"), "{table}");
    // One stall figure per core the probe ran on (the cores this process
    // may use, which a CPU quota does not change).
    let cores = baseline.matches("\"cpu\":").count();
    assert!(cores > 0, "{baseline}");
    let stalls = table
        .lines()
        .find(|l| l.starts_with("Core stalls"))
        .unwrap_or_else(|| panic!("no core stalls in {table}"));
    assert_eq!(stalls.matches("% of its time").count(), cores, "{stalls}");
    // The produce/consume row: both sides filled in, each with its ratio.
    let row = table
        .lines()
        .find(|l| l.starts_with("| 1 part, 100 B,"))
        .unwrap_or_else(|| panic!("no workload row in {table}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cells.len(), 12, "{row}");
    assert_eq!(cells[2], "ours", "{row}");
    let baseline = |name: &str| -> f64 {
        let at = table
            .find(name)
            .unwrap_or_else(|| panic!("{name} in {table}"))
            + name.len();
        let number: String = table[at..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        number.parse().unwrap()
    };
    let number = |cell: &str| -> f64 { cell.replace(',', "").parse().unwrap() };
    for (mb_per_s, ratio, name) in [
        (cells[4], cells[5], "loopback into a file"),
        (cells[9], cells[10], "file over loopback"),
    ] {
        assert!(number(mb_per_s) > 0.0, "{row}");
        let expected = number(mb_per_s) / baseline(name);
        assert!(
            (number(ratio) - expected).abs() < 0.01,
            "{row} against {name}: {table}"
        );
    }
    // Each open-loop table has its run, at the target rate.
    for title in ["(linger 0,", "default linger"] {
        let at = table
            .find(title)
            .unwrap_or_else(|| panic!("no {title} table in {table}"));
        let rows: Vec<&str> = table[at..]
            .lines()
            .skip_while(|l| !l.starts_with("|---"))
            .skip(1)
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert_eq!(rows.len(), 1, "{table}");
        assert!(rows[0].starts_with("| 100 B | ours | 20,000 |"), "{table}");
    }
}
