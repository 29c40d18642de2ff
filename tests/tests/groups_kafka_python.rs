//! kafka-python consumer groups against the real broker:
//! `tests/python/kafka_python_groups.py` does the talking and asserts.

use std::process::Command;

use tests::BrokerProcess;

#[test]
fn kafka_python_consumers_share_partitions_commit_and_resume() {
    // Two KafkaConsumers of one group split the partitions and commit; a third resumes from the commits; admin lists, describes and deletes the group.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/kafka_python_groups.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&broker.addr)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kafka-python groups failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nbroker:\n{}",
        broker.output()
    );
    assert!(stdout.contains("kafka-python groups ok"), "{stdout}");
    eprintln!("{stdout}");
}
