"""kafka-python's admin client changes topic configs (IncrementalAlterConfigs) and
reads the broker's own settings (DescribeConfigs of a BROKER resource).

Usage: kafka_python_configs.py HOST:PORT. Exits non-zero with a message on any mismatch.
"""

import sys

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.admin._configs import AlterConfigOp

TOPIC = "py-configs"


def topic_configs(admin):
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC)],
                                       config_filter="all")
    return described["topic"][TOPIC]


def alter(admin, configs, name=TOPIC, resource_type=ConfigResourceType.TOPIC, validate_only=False,
          incremental=True):
    result = admin.alter_configs([ConfigResource(resource_type, name, configs)],
                                 validate_only=validate_only, raise_on_unknown=False,
                                 incremental=incremental)
    return result[resource_type.name.lower()][name]


def main(bootstrap):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1,
                                  topic_configs={"retention.ms": "3600000"})])

    assert alter(admin, {"retention.ms": "1000",
                         "cleanup.policy": (AlterConfigOp.APPEND, "compact")}) == "OK"
    configs = topic_configs(admin)
    assert configs["retention.ms"]["value"] == "1000", configs["retention.ms"]
    assert configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG", configs["retention.ms"]
    assert configs["cleanup.policy"]["value"] == "delete,compact", configs["cleanup.policy"]

    assert alter(admin, {"cleanup.policy": (AlterConfigOp.SUBTRACT, "delete"),
                         "retention.ms": (AlterConfigOp.DELETE, None)}) == "OK"
    configs = topic_configs(admin)
    assert configs["cleanup.policy"]["value"] == "compact", configs["cleanup.policy"]
    # Without its override the topic takes the broker's log.retention.ms, set in its configuration.
    assert configs["retention.ms"]["config_source"] == "STATIC_BROKER_CONFIG", configs["retention.ms"]
    assert configs["retention.ms"]["value"] == "86400000", configs["retention.ms"]

    # validate_only checks and changes nothing.
    assert alter(admin, {"segment.bytes": "1048576"}, validate_only=True) == "OK"
    assert topic_configs(admin)["segment.bytes"]["config_source"] == "DEFAULT_CONFIG"

    unknown = alter(admin, {"no.such.config": "1"})
    assert "InvalidConfig" in unknown, unknown
    bad = alter(admin, {"retention.ms": "soon"})
    assert "InvalidConfig" in bad, bad
    not_a_list = alter(admin, {"retention.ms": (AlterConfigOp.APPEND, "5")})
    assert "InvalidConfig" in not_a_list, not_a_list
    missing = alter(admin, {"retention.ms": "1"}, name="py-no-such-topic")
    assert "UnknownTopicOrPartition" in missing, missing

    # AlterConfigs (not incremental) answers the same errors.
    unknown = alter(admin, {"no.such.config": "1"}, incremental=False)
    assert "InvalidConfig" in unknown, unknown
    missing = alter(admin, {"retention.ms": "1"}, name="py-no-such-topic", incremental=False)
    assert "UnknownTopicOrPartition" in missing, missing

    # The broker's settings are read-only while it runs.
    node = 1  # the test broker's node.id
    refused = alter(admin, {"log.dirs": "/elsewhere"}, name=str(node),
                    resource_type=ConfigResourceType.BROKER)
    assert "InvalidRequest" in refused, refused
    broker = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, str(node))],
                                    config_filter="all")["broker"][str(node)]
    assert broker["advertised.listeners"]["value"] == "PLAINTEXT://" + bootstrap, broker["advertised.listeners"]
    assert broker["num.partitions"]["value"] == "1", broker["num.partitions"]
    assert broker["num.partitions"]["config_source"] == "DEFAULT_CONFIG", broker["num.partitions"]
    assert broker["log.retention.ms"]["config_source"] == "STATIC_BROKER_CONFIG", broker["log.retention.ms"]
    assert broker["log.retention.ms"]["value"] == "86400000", broker["log.retention.ms"]
    print("kafka-python configs ok")


if __name__ == "__main__":
    main(sys.argv[1])
