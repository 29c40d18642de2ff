"""kafka-python consumer groups against the broker.

1. Two KafkaConsumers with one group_id share the partitions of a topic,
   consume everything between them and commit; after they close, a third
   consumer of the group resumes from the committed offsets.
2. The admin client lists and describes the group, deletes offsets
   (refused for a topic a live member subscribes to), commits offsets for a
   group without members, and deletes groups.
3. Static membership (group_instance_id): a static member that restarts gets
   its partitions back without the other member being rebalanced; an admin
   removes it by instance id.

Usage: kafka_python_groups.py HOST:PORT. Exits non-zero with a message on any mismatch.
"""

import sys
import time

import kafka.errors as Errors
from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import MemberToRemove, NewTopic
from kafka.structs import OffsetAndMetadata

TOPIC = "py-groups"
GROUP = "py-group"
STATIC_TOPIC = "py-static"
STATIC_GROUP = "py-static-group"
PARTITIONS = 4
FIRST = 400
SECOND = 40
# Bound on each wait for the group to settle or messages to arrive.
TIMEOUT_S = 90


def consumer(bootstrap, name, topic=TOPIC, group=GROUP, listener=None, **extra):
    settings = dict(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=name,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    settings.update(extra)
    c = KafkaConsumer(**settings)
    c.subscribe([topic], listener=listener)
    return c


def produce(bootstrap, topic, start, count):
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    futures = [producer.send(topic, key=b"k%d" % i, value=b"v%d" % i) for i in range(start, start + count)]
    producer.flush()
    for f in futures:
        f.get(timeout=30)
    producer.close()


def poll_into(c, seen, owner):
    for tp, records in c.poll(timeout_ms=200).items():
        for r in records:
            seen.setdefault(r.key, []).append((owner, tp.partition, r.offset))


# The admin client, for describing the groups when a wait times out.
ADMIN = None


def state_report(consumers):
    """What each consumer owns and what the broker says of the groups: printed
    when a wait times out, so that a failure explains itself."""
    lines = ["%s owns %s" % (name, sorted(partitions_of(c))) for name, c in consumers]
    for group in (GROUP, STATIC_GROUP):
        try:
            lines.append("%s: %r" % (group, describe(ADMIN, group)))
        except Exception as e:  # the report must not hide the timeout
            lines.append("%s: describe failed: %r" % (group, e))
    return "\n".join(lines)


def wait(what, condition, *consumers, seen=None):
    deadline = time.time() + TIMEOUT_S
    while not condition():
        if time.time() >= deadline:
            raise AssertionError("timed out waiting for %s\n%s" % (what, state_report(consumers)))
        for name, c in consumers:
            if seen is None:
                c.poll(timeout_ms=200)
            else:
                poll_into(c, seen, name)


def partitions_of(c):
    return {tp.partition for tp in c.assignment()}


def shared(c1, c2):
    a1, a2 = partitions_of(c1), partitions_of(c2)
    return bool(a1) and bool(a2) and not (a1 & a2) and len(a1 | a2) == PARTITIONS


def group_ids(admin):
    return {g["group_id"] for g in admin.list_groups()}


def describe(admin, group):
    return admin.describe_groups([group])[group]


class Recorder(ConsumerRebalanceListener):
    """Counts the rebalance callbacks a consumer gets."""

    def __init__(self):
        self.revoked = 0
        self.assigned = 0

    def on_partitions_revoked(self, revoked):
        self.revoked += 1

    def on_partitions_assigned(self, assigned):
        self.assigned += 1


def dynamic_members(bootstrap, admin):
    produce(bootstrap, TOPIC, 0, FIRST)
    c1 = consumer(bootstrap, "py-c1")
    seen = {}
    wait("c1's assignment", lambda: len(c1.assignment()) == PARTITIONS, ("c1", c1), seen=seen)
    c2 = consumer(bootstrap, "py-c2")
    wait("the partitions to be shared", lambda: shared(c1, c2), ("c1", c1), ("c2", c2), seen=seen)
    a1 = partitions_of(c1)
    print("c1 owns %s, c2 owns %s" % (sorted(a1), sorted(partitions_of(c2))))

    # Between them they read every message (c1 may have read some before c2 joined).
    wait("every message", lambda: len(seen) == FIRST, ("c1", c1), ("c2", c2), seen=seen)
    late = [(k, hits) for k, hits in seen.items()
            for owner, p, _ in hits[-1:] if (owner == "c1") != (p in a1)]
    assert not late, "last reads come from the partition's owner: %r" % late[:5]
    c1.commit()
    c2.commit()
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    committed = {tp.partition: c1.committed(tp) for tp in tps}
    ends = c1.end_offsets(tps)
    assert all(committed[tp.partition] == ends[tp] for tp in tps), (committed, ends)
    print("committed %s" % committed)

    assert GROUP in group_ids(admin), admin.list_groups()
    described = describe(admin, GROUP)
    assert described["group_state"] == "Stable", described
    assert described["protocol_type"] == "consumer", described
    assert len(described["members"]) == 2, described
    # A live member subscribes to the topic: its offsets stay.
    refused = admin.delete_group_offsets(GROUP, [TopicPartition(TOPIC, 0)])
    assert refused[TopicPartition(TOPIC, 0)] is Errors.GroupSubscribedToTopicError, refused
    c1.close()
    c2.close()

    # A new member resumes from the committed offsets: only the new messages arrive.
    produce(bootstrap, TOPIC, FIRST, SECOND)
    c3 = consumer(bootstrap, "py-c3")
    resumed = {}
    wait("the new messages", lambda: len(resumed) == SECOND, ("c3", c3), seen=resumed)
    end = time.time() + 2
    while time.time() < end:
        poll_into(c3, resumed, "c3")
    old = [k for k in resumed if int(k[1:]) < FIRST]
    assert not old, "already committed messages came back: %r" % old[:5]
    assert len(resumed) == SECOND, len(resumed)
    c3.commit()
    c3.close()

    offsets = admin.list_group_offsets(GROUP)[GROUP]
    total = sum(meta.offset for tp, meta in offsets.items() if tp.topic == TOPIC)
    assert total == FIRST + SECOND, offsets
    assert describe(admin, GROUP)["group_state"] == "Empty"

    # Without members, offsets can be deleted, set by an admin (generation -1), and the group deleted.
    deleted = admin.delete_group_offsets(GROUP, [TopicPartition(TOPIC, 0)])
    assert deleted[TopicPartition(TOPIC, 0)] is Errors.NoError, deleted
    altered = admin.alter_group_offsets("py-admin-group", {TopicPartition(TOPIC, 1): OffsetAndMetadata(5, "set by admin", -1)})
    assert altered[TopicPartition(TOPIC, 1)] is Errors.NoError, altered
    admin_offsets = admin.list_group_offsets("py-admin-group")["py-admin-group"]
    assert admin_offsets[TopicPartition(TOPIC, 1)].offset == 5, admin_offsets
    assert admin_offsets[TopicPartition(TOPIC, 1)].metadata == "set by admin", admin_offsets
    result = admin.delete_groups([GROUP, "py-admin-group", "py-no-such-group"])
    assert result[GROUP] == "OK" and result["py-admin-group"] == "OK", result
    assert result["py-no-such-group"] == "GroupIdNotFoundError", result
    assert GROUP not in group_ids(admin)


def static_members(bootstrap, admin):
    admin.create_topics([NewTopic(STATIC_TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
    listener = Recorder()
    s1 = consumer(bootstrap, "py-s1", STATIC_TOPIC, STATIC_GROUP, group_instance_id="static-1",
                  session_timeout_ms=30000)
    s2 = consumer(bootstrap, "py-s2", STATIC_TOPIC, STATIC_GROUP, listener=listener,
                  group_instance_id="static-2", session_timeout_ms=30000)
    wait("the static members to share", lambda: shared(s1, s2), ("s1", s1), ("s2", s2))
    before = describe(admin, STATIC_GROUP)
    assert before["group_state"] == "Stable", before
    first_id = {m["group_instance_id"]: m["member_id"] for m in before["members"]}["static-1"]
    s1_partitions = partitions_of(s1)
    callbacks = (listener.revoked, listener.assigned)
    # A static member closes without leaving; its replacement takes its place, no rebalance.
    s1.close()
    s1 = consumer(bootstrap, "py-s1", STATIC_TOPIC, STATIC_GROUP, group_instance_id="static-1",
                  session_timeout_ms=30000)
    wait("the restarted static member's partitions", lambda: partitions_of(s1) == s1_partitions,
         ("s1", s1), ("s2", s2))
    end = time.time() + 2
    while time.time() < end:
        s2.poll(timeout_ms=200)
    after = describe(admin, STATIC_GROUP)
    ids = {m["group_instance_id"]: m["member_id"] for m in after["members"]}
    assert ids["static-1"] != first_id, (first_id, after)
    assert (listener.revoked, listener.assigned) == callbacks, "s2 was not rebalanced"
    # An administrator removes the static member by instance id; s2 takes over at once.
    s1.close()
    removed = admin.remove_group_members(STATIC_GROUP, [MemberToRemove(group_instance_id="static-1")])
    assert list(removed.values()) == [Errors.NoError], removed
    wait("s2 to own every partition", lambda: len(partitions_of(s2)) == PARTITIONS, ("s2", s2))
    s2.close()
    print("static member restarted without a rebalance; removed by instance id")


def main(bootstrap):
    global ADMIN
    admin = ADMIN = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
    dynamic_members(bootstrap, admin)
    static_members(bootstrap, admin)
    admin.close()
    print("kafka-python groups ok: %d + %d messages over %d partitions" % (FIRST, SECOND, PARTITIONS))


if __name__ == "__main__":
    main(sys.argv[1])
