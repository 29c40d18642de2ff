//! franz-go (github.com/twmb/franz-go: kgo and kadm, the versions in
//! `tests/go/go.mod`), a Go client written from the protocol alone, against
//! the real broker: `tests/go/main.go` does the talking and checks what it
//! sees; these tests check the broker's side of it.

use tests::external::run_franz;
use tests::{BrokerProcess, RawConnection};

#[test]
fn franz_go_admin_producer_codecs_and_consumer_group_work_with_defaults() {
    // kadm creates, describes, grows and deletes topics and reads configs and brokers; the
    // default producer (idempotent, acks=all) and one per codec write records that read back; a
    // group of two members reads every record once, its lag falls to 0, and its offsets are
    // moved and deleted, then the group; DeleteRecords moves a partition's start offset.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).unwrap();
    let sections = ["admin", "produce", "codecs", "group", "delete-records"];
    let output = run_franz(&broker.addr, &sections);
    let stdout = output.expect_success("franz-interop");
    for section in sections {
        assert!(
            stdout.contains(&format!("section {section} ok")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("franz-go ok"), "{stdout}");

    // The default producer is idempotent: its batches carry a producer id.
    let mut conn = RawConnection::connect(&broker.addr).unwrap();
    let records = tests::fetch_partition(&mut conn, "franz-produce", 0, 0).unwrap();
    let mut stored = 0;
    for batch in protocol::batch::batches(&records) {
        let header = protocol::batch::BatchHeader::new(&batch).unwrap();
        header.validate().unwrap();
        assert!(
            header.producer_id() >= 0,
            "a producer id on an idempotent batch"
        );
        stored += header.records_count();
    }
    assert_eq!(stored, 100, "every record of partition 0 stored once");
}
