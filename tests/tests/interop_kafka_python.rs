//! kafka-python, a second client implementation, against the real broker:
//! `tests/python/kafka_python_interop.py` does the talking and asserts.

use std::process::Command;

use tests::BrokerProcess;

#[test]
fn kafka_python_admin_produce_consume_and_offsets_work_with_defaults() {
    // kafka-python with only bootstrap_servers creates a topic, produces, consumes and lists offsets.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/kafka_python_interop.py"
    );
    let output = Command::new("python3")
        .arg(script)
        .arg(&broker.addr)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kafka-python interop failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nbroker:\n{}",
        broker.output()
    );
    assert!(stdout.contains("kafka-python interop ok"), "{stdout}");
}
