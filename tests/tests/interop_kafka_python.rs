//! kafka-python, a second client implementation, against the real broker:
//! `tests/python/kafka_python_interop.py` does the talking and asserts.

use tests::BrokerProcess;

#[test]
fn kafka_python_admin_produce_consume_and_offsets_work_with_defaults() {
    // kafka-python with only bootstrap_servers creates a topic, produces, consumes and lists offsets.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    tests::run_python_script(
        &broker,
        "kafka_python_interop.py",
        "kafka-python interop ok",
    );
}
