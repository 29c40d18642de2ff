"""kafka-python's view of a cluster across the loss of a partition leader.

Usage: kafka_python_cluster_metadata.py BOOTSTRAP TOPIC PARTITION TIMEOUT_S

Prints `leader P L` (L: the partition's leader as kafka-python sees it), then
waits for a line on stdin (the test kills L meanwhile), then asks the cluster
for metadata again until the partition has another leader, and prints
`new leader P M` and the ok line. One client lives through the change, as an
application would. Exits non-zero with a message on a timeout.
"""

import signal
import sys
import time

from kafka import KafkaAdminClient

# A bound on the whole run, so that a hung client fails the test instead of stalling it.
RUN_TIMEOUT_S = 120


def leader_of(admin, topic, partition):
    """The partition's leader in a fresh Metadata answer, or None if the cluster did not answer."""
    try:
        (described,) = admin.describe_topics([topic])
    except Exception as e:  # a dead broker in the connection pool: ask again
        print("describe_topics failed: %r" % (e,), file=sys.stderr)
        return None
    for p in described["partitions"]:
        if p["partition_index"] == partition:
            return p["leader_id"]
    return None


def main(bootstrap, topic, partition, timeout_s):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    brokers = sorted(b["broker_id"] for b in admin.describe_cluster()["brokers"])
    print("brokers %s" % " ".join(str(b) for b in brokers), flush=True)
    old = leader_of(admin, topic, partition)
    assert old is not None and old >= 0, "no leader for %s-%d" % (topic, partition)
    print("leader %d %d" % (partition, old), flush=True)

    sys.stdin.readline()
    deadline = time.monotonic() + timeout_s
    while True:
        leader = leader_of(admin, topic, partition)
        if leader is not None and leader >= 0 and leader != old:
            break
        if time.monotonic() > deadline:
            sys.exit("partition %d still led by %r after %ss" % (partition, leader, timeout_s))
        time.sleep(0.1)
    print("new leader %d %d" % (partition, leader), flush=True)
    admin.close()
    print("kafka-python follows the leader ok", flush=True)


if __name__ == "__main__":
    signal.alarm(RUN_TIMEOUT_S)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
