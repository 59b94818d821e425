"""kafka-python's admin client and compressing producers against Brooklet's
Kafka listener: topics created (with configs, validate-only, refused ones),
their configs described and altered (AlterConfigs and
IncrementalAlterConfigs), a group's offsets deleted (OffsetDelete) and
groups listed by type, records produced with each compression codec and a
repeated header name read back intact, topics deleted. Prints one line per
step; any failure raises (non-zero exit).

Usage: python3 admin.py 127.0.0.1:PORT
"""
import sys

import kafka.codec
import kafka.errors as Errors
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.structs import OffsetAndMetadata

addr = sys.argv[1]
# Timeouts stay well below the test's deadline (30 s).
timeouts = dict(request_timeout_ms=8000)
admin = KafkaAdminClient(bootstrap_servers=addr, **timeouts)

created = admin.create_topics({
    "orders": {"num_partitions": 3, "replication_factor": 1,
               "configs": {"retention.ms": "60000", "cleanup.policy": "compact,delete"}},
    "plain": {},
})
for t in created["topics"]:
    print("created", t["name"], t["error_code"], t["num_partitions"], t["replication_factor"],
          t["configs"]["retention.ms"]["value"])

admin.create_topics({"dry": {"num_partitions": 2}}, validate_only=True)
print("validate-only leaves", sorted(admin.list_topics()))


def refused(new_topics):
    try:
        admin.create_topics(new_topics)
    except Errors.KafkaError as e:
        return type(e).__name__
    raise AssertionError(f"{new_topics} was created")


print("again:", refused({"orders": {"num_partitions": 1}}))
print("replicated:", refused({"wide": {"num_partitions": 1, "replication_factor": 3}}))
print("unknown config:", refused({"odd": {"configs": {"segment.bytes": "1024"}}}))

described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "orders")], config_filter="all")
orders = described["topic"]["orders"]
for key in ["cleanup.policy", "retention.bytes", "retention.ms"]:
    print("config", key, orders[key]["value"], orders[key]["config_source"])
modified = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "orders")])
print("modified", sorted(modified["topic"]["orders"]))
broker = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "0")], config_filter="all")
print("broker num.partitions", broker["broker"]["0"]["num.partitions"]["value"])


def topic_configs(name):
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    return sorted((k, v["value"]) for k, v in described["topic"][name].items())


def alter(name, configs, **kwargs):
    result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)], **kwargs)
    return result["topic"][name]


# AlterConfigs (the legacy request: kafka-python sends the topic's other
# set configs along) and IncrementalAlterConfigs.
admin.create_topics({"tuned": {"num_partitions": 1, "configs": {"retention.ms": "60000"}}})
print("alter legacy", alter("tuned", {"retention.ms": "120000", "retention.bytes": "4096"}, incremental=False),
      topic_configs("tuned"))
print("alter incremental", alter("tuned", {"cleanup.policy": ("APPEND", "compact"), "retention.bytes": ("DELETE", None)},
                                 incremental=True), topic_configs("tuned"))
print("alter validate-only", alter("tuned", {"retention.ms": "1"}, incremental=True, validate_only=True),
      topic_configs("tuned"))
print("alter bad value", alter("tuned", {"retention.ms": "soon"}, incremental=True).split(":")[0],
      topic_configs("tuned"))
reset = admin.reset_configs([ConfigResource(ConfigResourceType.TOPIC, "tuned", configs=["cleanup.policy"])])
print("reset", reset["topic"]["tuned"], topic_configs("tuned"))
print("alter", alter("tuned", {"retention.ms": "90000", "cleanup.policy": ("APPEND", "compact")}, incremental=True),
      topic_configs("tuned"))

# OffsetDelete: offsets committed from outside any group, one deleted; a
# member subscribed to the topic keeps the group's offsets of it.
committed = {TopicPartition("orders", p): OffsetAndMetadata(0, "", -1) for p in range(3)}
print("commit", sorted(e.__name__ for e in admin.alter_group_offsets("tools", committed).values()))
deleted = admin.delete_group_offsets("tools", [TopicPartition("orders", 0), TopicPartition("orders", 9)])
print("offsets deleted", sorted((tp.partition, e.__name__) for tp, e in deleted.items()))
print("offsets left", sorted(tp.partition for tp in admin.list_group_offsets("tools")["tools"]))
try:
    admin.delete_group_offsets("nobody", [TopicPartition("orders", 0)])
    raise AssertionError("offsets of an unknown group were deleted")
except Errors.GroupIdNotFoundError:
    print("unknown group: GroupIdNotFoundError")
member = KafkaConsumer("orders", bootstrap_servers=addr, group_id="tools", enable_auto_commit=False,
                       consumer_timeout_ms=200, **timeouts)
for _ in range(40):
    member.poll(timeout_ms=200)
    if member.assignment():
        break
assert member.assignment(), "the member got no assignment"
deleted = admin.delete_group_offsets("tools", [TopicPartition("orders", 1)])
print("subscribed", sorted((tp.partition, e.__name__) for tp, e in deleted.items()))
member.close()


def listed(**kwargs):
    return sorted((g["group_id"], g["protocol_type"], g["group_type"]) for g in admin.list_groups(**kwargs))


print("groups classic", listed(types_filter=["classic"]))
print("groups consumer", listed(types_filter=["consumer"]))

# Compressed batches, a repeated header name in each record.
available = {
    "gzip": kafka.codec.has_gzip(),
    "snappy": kafka.codec.has_snappy(),
    "lz4": kafka.codec.has_lz4(),
    "zstd": kafka.codec.has_zstd(),
}
headers = [("a", b"1"), ("b", b"x"), ("a", b"2")]
for codec, has in available.items():
    if not has:
        print("codec", codec, "skipped: its python module is missing")
        continue
    topic = f"compressed-{codec}"
    admin.create_topics({topic: {"num_partitions": 1}})
    producer = KafkaProducer(bootstrap_servers=addr, compression_type=codec, linger_ms=20,
                             max_block_ms=8000, **timeouts)
    values = [(f"record {i} " * 40).encode() for i in range(30)]
    sent = [producer.send(topic, key=str(i).encode(), value=v, headers=headers) for i, v in enumerate(values)]
    producer.flush(timeout=10)
    offsets = [f.get(timeout=10).offset for f in sent]
    producer.close(timeout=5)
    assert offsets == list(range(30)), offsets
    consumer = KafkaConsumer(topic, bootstrap_servers=addr, auto_offset_reset="earliest", group_id=None,
                             enable_auto_commit=False, consumer_timeout_ms=8000, fetch_max_wait_ms=200,
                             **timeouts)
    got = []
    for m in consumer:
        got.append(m)
        if len(got) == len(values):
            break
    consumer.close()
    assert [m.value for m in got] == values, codec
    assert [m.key for m in got] == [str(i).encode() for i in range(30)], codec
    assert all(list(m.headers) == headers for m in got), [m.headers for m in got[:1]]
    print("codec", codec, "ok", len(got))

deleted = admin.delete_topics(["orders", "plain"])
print("deleted", sorted((t["name"], t["error_code"]) for t in deleted["topics"]))
try:
    admin.delete_topics(["orders"])
    raise AssertionError("a deleted topic was deleted again")
except Errors.UnknownTopicOrPartitionError:
    print("delete again: UnknownTopicOrPartitionError")
print("left", sorted(t for t in admin.list_topics() if not t.startswith("compressed-")))
admin.close()
