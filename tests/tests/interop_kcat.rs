//! kcat (Debian's, built on librdkafka 2.0.2) against the real broker: the
//! README's tour, run as a test. Old clients must work as well as new ones.

use std::process::Command;

use tests::{kcat, BrokerProcess};

#[test]
fn kcat_built_on_librdkafka_2_0_2_produces_consumes_and_lists_offsets() {
    // The whole kcat tour works: metadata, keyed produce, consume with offsets, offset queries.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &["--set", "num.partitions=1"]).unwrap();
    let b = broker.addr.as_str();
    let version = Command::new("kcat").arg("-V").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    eprintln!("{version}");

    let input: String = (0..50).map(|i| format!("key{i}:value {i}\n")).collect();
    kcat(&["-b", b, "-P", "-t", "tour", "-K:"], Some(&input));

    let metadata = kcat(&["-b", b, "-L", "-t", "tour"], None);
    assert!(
        metadata.contains("topic \"tour\" with 1 partitions"),
        "{metadata}"
    );

    let consumed = kcat(
        &[
            "-b",
            b,
            "-C",
            "-t",
            "tour",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%p|%o|%k|%s\n",
        ],
        None,
    );
    let lines: Vec<&str> = consumed.lines().collect();
    assert_eq!(lines.len(), 50, "{consumed}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, format!("0|{i}|key{i}|value {i}"));
    }

    // Offset queries: -2 earliest, -1 latest.
    let earliest = kcat(&["-b", b, "-Q", "-t", "tour:0:-2"], None);
    assert!(earliest.contains("offset 0"), "{earliest}");
    let latest = kcat(&["-b", b, "-Q", "-t", "tour:0:-1"], None);
    assert!(latest.contains("offset 50"), "{latest}");
}
