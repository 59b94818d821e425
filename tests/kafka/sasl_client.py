"""Produces one record and reads it back over SASL_PLAINTEXT, or over
SASL_SSL when the environment variable SASL_CAFILE names the CA to trust.

usage: sasl_client.py kafka-python|confluent BOOTSTRAP MECHANISM USER TOPIC
The password is read from the environment variable SASL_PASSWORD.
Prints `ok VALUE` on success; on failure prints `failed: ERROR` and exits 1.
"""
import os
import sys
import uuid

client, bootstrap, mechanism, user, topic = sys.argv[1:6]
password = os.environ["SASL_PASSWORD"]
value = uuid.uuid4().hex
cafile = os.environ.get("SASL_CAFILE")


def kafka_python():
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    common = dict(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_SSL" if cafile else "SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_plain_username=user,
        sasl_plain_password=password,
        request_timeout_ms=20000,
    )
    if cafile:
        common.update(ssl_cafile=cafile, ssl_check_hostname=True)
    producer = KafkaProducer(**common)
    meta = producer.send(topic, value.encode()).get(timeout=20)
    producer.close()
    consumer = KafkaConsumer(consumer_timeout_ms=20000, **common)
    tp = TopicPartition(topic, meta.partition)
    consumer.assign([tp])
    consumer.seek(tp, meta.offset)
    for message in consumer:
        return message.value.decode()
    raise RuntimeError("no record read back")


def confluent():
    from confluent_kafka import Consumer, Producer, TopicPartition

    common = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL" if cafile else "SASL_PLAINTEXT",
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }
    if cafile:
        common["ssl.ca.location"] = cafile
    errors = []
    producer = Producer({**common, "message.timeout.ms": 20000, "error_cb": errors.append})
    delivered = []
    producer.produce(topic, value.encode(), on_delivery=lambda err, msg: delivered.append((err, msg)))
    producer.flush(25)
    if not delivered or delivered[0][0] is not None:
        raise RuntimeError(f"not delivered: {delivered} {errors}")
    msg = delivered[0][1]
    consumer = Consumer({**common, "group.id": "sasl-" + value})
    consumer.assign([TopicPartition(topic, msg.partition(), msg.offset())])
    try:
        got = consumer.poll(20)
        if got is None or got.error():
            raise RuntimeError(f"no record read back: {got and got.error()}")
        return got.value().decode()
    finally:
        consumer.close()


try:
    got = kafka_python() if client == "kafka-python" else confluent()
    if got != value:
        raise RuntimeError(f"read {got!r}, sent {value!r}")
    print("ok", got)
except Exception as e:  # noqa: BLE001 - the test reads the failure
    print(f"failed: {type(e).__name__}: {e}")
    sys.exit(1)
