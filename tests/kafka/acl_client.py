"""kafka-python (and confluent-kafka's admin client where kafka-python
hides a per-resource error) against a broker with `--auth required` and
ACLs: each Kafka operation as a user, over SASL_PLAINTEXT. Prints one line
per step, `STEP: ok DETAIL` or `STEP: ERROR` (kafka-python's error class,
or librdkafka's error name), and carries on after a failed step (the test
compares the lines).

usage: acl_client.py BOOTSTRAP setup|check
  setup: as the superuser (ADMIN_USER / ADMIN_PASSWORD), writes a record to
         each topic and commits offsets for the groups the checks use.
  check: as alice (ALICE_PASSWORD), and bob (BOB_PASSWORD) for the
         idempotent producer, every operation once.
"""
import os
import re
import sys
import uuid

import kafka.errors as Errors
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource
from kafka.admin import OffsetSpec
from kafka.structs import OffsetAndMetadata

bootstrap, mode = sys.argv[1:3]
# Timeouts stay well below the test's deadline.
TIMEOUTS = dict(request_timeout_ms=5000)


def sasl(user, password):
    return dict(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256" if user == "bob" else "PLAIN",
        sasl_plain_username=user,
        sasl_plain_password=password,
        **TIMEOUTS,
    )


class Refused(Exception):
    """An error a client returns instead of raising: its name."""


def step(name, run):
    try:
        detail = run()
        print(f"{name}: ok{'' if detail is None else ' ' + str(detail)}", flush=True)
    except Errors.KafkaError as e:
        # A generic error wrapping a broker's: the broker's (kafka-python
        # wraps InitProducerId's so).
        wrapped = re.search(r"\[Error \d+\] (\w+)", str(e)) if type(e) is Errors.KafkaError else None
        print(f"{name}: {wrapped.group(1) if wrapped else type(e).__name__}", flush=True)
    except KafkaException as e:
        print(f"{name}: {e.args[0].name()}", flush=True)
    except Refused as e:
        print(f"{name}: {e}", flush=True)


def produce(creds, topic, **extra):
    producer = KafkaProducer(max_block_ms=5000, **creds, **extra)
    try:
        producer.send(topic, uuid.uuid4().hex.encode()).get(timeout=10)
    finally:
        producer.close(timeout=5)


def consumer(creds, **extra):
    return KafkaConsumer(consumer_timeout_ms=5000, **creds, **extra)


if mode == "setup":
    admin_creds = sasl(os.environ["ADMIN_USER"], os.environ["ADMIN_PASSWORD"])
    for topic in ["acl-read", "acl-write", "acl-secret"]:
        produce(admin_creds, topic)
    for group in ["g-describe", "g-read", "g-secret"]:
        c = consumer(admin_creds, group_id=group, enable_auto_commit=False)
        c.commit({TopicPartition("acl-read", 0): OffsetAndMetadata(1, "", -1)})
        c.close()
    print("setup: ok", flush=True)
    sys.exit(0)

alice = sasl("alice", os.environ["ALICE_PASSWORD"])
bob = sasl("bob", os.environ["BOB_PASSWORD"])
admin = KafkaAdminClient(**alice)
ck_admin = AdminClient({
    "bootstrap.servers": bootstrap,
    "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanisms": "PLAIN",
    "sasl.username": "alice",
    "sasl.password": os.environ["ALICE_PASSWORD"],
})


def metadata():
    c = consumer(alice)
    try:
        return " ".join(sorted(t for t in c.topics() if t.startswith("acl-")))
    finally:
        c.close()


def fetch():
    c = consumer(alice)
    try:
        tp = TopicPartition("acl-write", 0)
        c.assign([tp])
        c.seek(tp, 0)
        records = c.poll(timeout_ms=5000, max_records=1)
        return sum(len(r) for r in records.values())
    finally:
        c.close()


def list_offsets():
    tp = TopicPartition("acl-secret", 0)
    return admin.list_partition_offsets({tp: OffsetSpec.LATEST})[tp].offset


def join():
    c = consumer(alice, group_id="g-describe", enable_auto_commit=False)
    try:
        c.subscribe(["acl-read"])
        for _ in range(10):
            c.poll(timeout_ms=1000)
            if c.assignment():
                return " ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(c.assignment()))
        raise AssertionError("no assignment")
    finally:
        c.close()


def commit(group, topic):
    c = consumer(alice, group_id=group, enable_auto_commit=False)
    try:
        c.commit({TopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)})
    finally:
        c.close()


def describe_configs(resource_type, name):
    resource = ConfigResource(resource_type, name)
    return len(ck_admin.describe_configs([resource], request_timeout=10)[resource].result()) > 0


def alter_configs():
    resource = ConfigResource("topic", "acl-read", set_config={"retention.ms": "600000"})
    ck_admin.alter_configs([resource], request_timeout=10)[resource].result()


def list_groups():
    return " ".join(sorted(g["group_id"] for g in admin.list_groups() if g["group_id"].startswith("g-")))


def describe_groups():
    described = admin.describe_groups(["g-secret"])["g-secret"]
    if described["error"]:
        raise Refused(described["error"])
    return described["group_state"]


def delete_groups():
    outcome = admin.delete_groups(["g-read"])["g-read"]
    if outcome != "OK":
        raise Refused(outcome)


step("metadata", metadata)
step("produce-describable", lambda: produce(alice, "acl-read"))
step("produce-hidden", lambda: produce(alice, "acl-secret"))
step("fetch", fetch)
step("list-offsets", list_offsets)
step("join", join)
step("commit-group", lambda: commit("g-describe", "acl-read"))
step("commit-topic", lambda: commit("g-read", "acl-write"))
step("create-topic", lambda: admin.create_topics({"acl-new": {"num_partitions": 1}}) and None)
step("delete-topic", lambda: admin.delete_topics(["acl-doomed"]) and None)
step("describe-configs", lambda: describe_configs("topic", "acl-secret"))
step("alter-configs", alter_configs)
step("describe-broker-configs", lambda: describe_configs("broker", "0"))
step("list-groups", list_groups)
step("describe-groups", describe_groups)
step("delete-groups", delete_groups)
step("idempotent-producer", lambda: produce(bob, "acl-write", enable_idempotence=True))
admin.close()
