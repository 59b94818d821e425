"""librdkafka (through confluent-kafka) against Brooklet's Kafka listener:
its admin client creates, describes, alters (IncrementalAlterConfigs and
AlterConfigs) and deletes topics and lists groups by type; its producer
sends batches with each compression codec and a repeated header name, read
back intact. Prints one line per step; any failure raises (non-zero exit).

Usage: python3 admin_librdkafka.py 127.0.0.1:PORT
"""
import sys

from confluent_kafka import Consumer, ConsumerGroupType, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

addr = sys.argv[1]
common = {"bootstrap.servers": addr, "socket.timeout.ms": 8000}
admin = AdminClient(common)


def outcome(future):
    try:
        future.result(timeout=8)
        return "ok"
    except KafkaException as e:
        return e.args[0].name()


created = admin.create_topics([
    NewTopic("events", 3, 1, config={"retention.ms": "1234", "cleanup.policy": "delete"}),
    NewTopic("wide", 1, 3),
    NewTopic("odd", 1, 1, config={"segment.bytes": "1024"}),
], operation_timeout=5)
for name, future in sorted(created.items()):
    print("create", name, outcome(future))
dry = admin.create_topics([NewTopic("dry", 2, 1)], validate_only=True)
print("validate-only dry", outcome(dry["dry"]))
print("topics", sorted(admin.list_topics(timeout=8).topics))

resources = [ConfigResource(ResourceType.TOPIC, "events"), ConfigResource(ResourceType.BROKER, "0")]
for resource, future in admin.describe_configs(resources).items():
    configs = future.result(timeout=8)
    keys = ["retention.ms", "retention.bytes"] if resource.restype == ResourceType.TOPIC else ["num.partitions"]
    print("describe", resource.name, [(k, configs[k].value, configs[k].source) for k in keys])



def topic_configs(name):
    resource = ConfigResource(ResourceType.TOPIC, name)
    configs = admin.describe_configs([resource])[resource].result(timeout=8)
    return sorted((k, c.value) for k, c in configs.items() if c.source == 1)


def incremental(restype, name, entries, **kwargs):
    ops = {"SET": AlterConfigOpType.SET, "DELETE": AlterConfigOpType.DELETE,
           "APPEND": AlterConfigOpType.APPEND, "SUBTRACT": AlterConfigOpType.SUBTRACT}
    resource = ConfigResource(restype, name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=ops[op]) for k, op, v in entries])
    return outcome(admin.incremental_alter_configs([resource], **kwargs)[resource])


T = ResourceType.TOPIC
print("incremental", incremental(T, "events", [("retention.ms", "SET", "5000"), ("cleanup.policy", "APPEND", "compact"),
                                               ("retention.bytes", "DELETE", None)]), topic_configs("events"))
print("incremental unknown key", incremental(T, "events", [("retention.ms", "SET", "1"), ("segment.bytes", "SET", "1")]),
      topic_configs("events"))
print("incremental validate-only",
      incremental(T, "events", [("cleanup.policy", "SUBTRACT", "compact")], validate_only=True),
      topic_configs("events"))
print("incremental missing topic", incremental(T, "missing", [("retention.ms", "SET", "1")]))
print("incremental broker", incremental(ResourceType.BROKER, "0", [("num.partitions", "SET", "3")]))
# AlterConfigs replaces the topic's whole config.
replaced = ConfigResource(T, "events", set_config={"retention.ms": "7000"})
print("alter", outcome(admin.alter_configs([replaced])[replaced]), topic_configs("events"))

headers = [("a", b"1"), ("b", b"x"), ("a", b"2")]
for codec in ["gzip", "snappy", "lz4", "zstd"]:
    producer = Producer({**common, "compression.type": codec, "linger.ms": 20})
    for i in range(10):
        producer.produce("events", key=codec.encode(), value=f"{codec} {i} ".encode() * 30, headers=headers,
                         partition=0)
    assert producer.flush(10) == 0, codec
consumer = Consumer({**common, "group.id": "readers", "enable.auto.commit": False})
consumer.assign([TopicPartition("events", 0, 0)])
got = []
while len(got) < 40:
    m = consumer.poll(8)
    assert m is not None, f"only {len(got)} records"
    assert m.error() is None, m.error()
    got.append(m)
consumer.close()
expected = [f"{codec} {i} ".encode() * 30 for codec in ["gzip", "snappy", "lz4", "zstd"] for i in range(10)]
assert [m.value() for m in got] == expected
assert [m.offset() for m in got] == list(range(40))
assert all(m.headers() == headers for m in got), got[0].headers()
print("consumed", len(got))
# A commit from outside any group: a classic group without members.
consumer = Consumer({**common, "group.id": "readers", "enable.auto.commit": False})
consumer.commit(offsets=[TopicPartition("events", 0, 40)], asynchronous=False)
consumer.close()


def listed(types):
    r = admin.list_consumer_groups(types=types, request_timeout=8).result()
    assert not r.errors, r.errors
    return sorted((g.group_id, g.type.name, g.is_simple_consumer_group) for g in r.valid)


print("groups", listed(set()))
print("groups classic", listed({ConsumerGroupType.CLASSIC}))
print("groups consumer", listed({ConsumerGroupType.CONSUMER}))

deleted = admin.delete_topics(["events", "missing"], operation_timeout=5)
for name, future in sorted(deleted.items()):
    print("delete", name, outcome(future))
print("topics", sorted(admin.list_topics(timeout=8).topics))
