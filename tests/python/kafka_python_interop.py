"""kafka-python against the broker, with default settings beyond bootstrap_servers.

Usage: kafka_python_interop.py HOST:PORT. Exits non-zero with a message on any mismatch.
"""

import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

COUNT = 2000
PARTITIONS = 3


def main(bootstrap):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic("py-interop", num_partitions=PARTITIONS, replication_factor=1,
                                  topic_configs={"retention.ms": "3600000"})])
    assert "py-interop" in admin.list_topics(), admin.list_topics()
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "py-interop")])
    text = repr(configs)
    assert "retention.ms" in text and "3600000" in text, text

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    futures = []
    for i in range(COUNT):
        futures.append(producer.send("py-interop", key=b"k%d" % i, value=b"v%d" % i))
    producer.flush()
    delivered = {}
    for i, f in enumerate(futures):
        meta = f.get(timeout=30)
        delivered[b"k%d" % i] = (meta.partition, meta.offset)
    producer.close()

    partitions = [TopicPartition("py-interop", p) for p in range(PARTITIONS)]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=10000)
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    seen = {}
    deadline = time.time() + 60
    while len(seen) < COUNT and time.time() < deadline:
        for tp, records in consumer.poll(timeout_ms=1000).items():
            for r in records:
                assert r.value == b"v" + r.key[1:], r
                assert delivered[r.key] == (r.partition, r.offset), (r, delivered[r.key])
                seen[r.key] = (r.partition, r.offset)
    assert len(seen) == COUNT, "consumed %d of %d" % (len(seen), COUNT)

    ends = consumer.end_offsets(partitions)
    begins = consumer.beginning_offsets(partitions)
    per_partition = {p: 0 for p in range(PARTITIONS)}
    for (p, _) in delivered.values():
        per_partition[p] += 1
    for tp in partitions:
        assert begins[tp] == 0, begins
        assert ends[tp] == per_partition[tp.partition], (ends, per_partition)
    by_time = consumer.offsets_for_times({partitions[0]: 0})
    assert by_time[partitions[0]].offset == 0, by_time
    consumer.close()
    admin.delete_topics(["py-interop"])
    assert "py-interop" not in admin.list_topics()
    admin.close()
    print("kafka-python interop ok: %d records over %d partitions" % (COUNT, PARTITIONS))


if __name__ == "__main__":
    main(sys.argv[1])
