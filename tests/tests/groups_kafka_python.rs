//! kafka-python consumer groups against the real broker:
//! `tests/python/kafka_python_groups.py` does the talking and asserts.

use tests::BrokerProcess;

#[test]
fn kafka_python_consumers_share_partitions_commit_and_resume() {
    // Two KafkaConsumers of one group split the partitions and commit; a third resumes from the commits; admin lists, describes and deletes the group.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let stdout =
        tests::run_python_script(&broker, "kafka_python_groups.py", "kafka-python groups ok");
    eprintln!("{stdout}");
}
