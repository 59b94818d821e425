"""confluent-kafka (librdkafka) against Brooklet's Kafka listener, driven by
tests/tests/it/kafka_clients.rs.

  produce ADDR TOPIC [--idempotent]
      Reads records from stdin, one JSON object a line:
      {"key": str|null, "value": str|null, "headers": [[name, str|null]],
       "timestamp": ms, "partition": n} (all but "value" optional), produces
      them in order with acks=all and Kafka's default partitioner for keyed
      records (murmur2), and prints one JSON line per record, in send order:
      {"key", "partition", "offset"}.
  consume ADDR TOPIC PARTITION COUNT
      Reads COUNT records of PARTITION from its first offset (an assigned
      partition, no consumer group) and prints each as a JSON line:
      {"partition", "offset", "key", "value", "headers", "timestamp",
       "timestamp_type"}; then {"low", "high"}, the partition's bounds.
  transactions ADDR
      A transactional producer's init_transactions, which the broker
      refuses: prints {"error", "fatal", "retriable", "message"} of the
      error it raised.

Keys, values and header values are UTF-8 text. Every wait has a deadline
well below the test's; any failure exits non-zero with the reason.
"""
import json
import sys
import time

import confluent_kafka as ck

# Below the calling test's deadline (30 s), so a hang is reported here.
DEADLINE_S = 20

COMMON = {
    "broker.address.family": "v4",
    "socket.timeout.ms": 10000,
    "api.version.request.timeout.ms": 10000,
}


def text(b):
    return None if b is None else b.decode()


def raw(s):
    return None if s is None else s.encode()


def produce(addr, topic, idempotent):
    records = [json.loads(line) for line in sys.stdin if line.strip()]
    producer = ck.Producer(
        {
            **COMMON,
            "bootstrap.servers": addr,
            "acks": "all",
            "enable.idempotence": idempotent,
            # librdkafka's default (consistent_random) hashes keys with
            # CRC32; murmur2_random is Kafka's default partitioner.
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "message.timeout.ms": DEADLINE_S * 1000 - 5000,
        }
    )
    delivered = [None] * len(records)
    failed = []

    def report(i):
        def on_delivery(err, msg):
            if err is not None:
                failed.append(f"record {i}: {err}")
            delivered[i] = (msg.partition(), msg.offset())

        return on_delivery

    for i, r in enumerate(records):
        extra = {}
        if "partition" in r:
            extra["partition"] = r["partition"]
        if "timestamp" in r:
            extra["timestamp"] = r["timestamp"]
        producer.produce(
            topic,
            key=raw(r.get("key")),
            value=raw(r["value"]),
            headers=[(n, raw(v)) for n, v in r.get("headers", [])],
            on_delivery=report(i),
            **extra,
        )
        # Serve delivery reports as they come, so the queue never fills.
        producer.poll(0)
    left = producer.flush(DEADLINE_S - 5)
    if left:
        sys.exit(f"{left} records still undelivered after {DEADLINE_S - 5} s")
    if failed:
        sys.exit("not delivered: " + "; ".join(failed))
    for r, (partition, offset) in zip(records, delivered):
        print(json.dumps({"key": r.get("key"), "partition": partition, "offset": offset}))


def consume(addr, topic, partition, count):
    consumer = ck.Consumer(
        {
            **COMMON,
            "bootstrap.servers": addr,
            # The client requires a group id, but an assigned partition
            # without committed offsets never uses the group.
            "group.id": "brooklet-tests-unused",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    consumer.assign([ck.TopicPartition(topic, partition, ck.OFFSET_BEGINNING)])
    deadline = time.monotonic() + DEADLINE_S - 5
    got = []
    while len(got) < count:
        if time.monotonic() > deadline:
            sys.exit(f"read {len(got)} of {count} records before the deadline")
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            sys.exit(f"consume failed: {msg.error()}")
        got.append(msg)
    tp = ck.TopicPartition(topic, partition)
    low, high = consumer.get_watermark_offsets(tp, timeout=DEADLINE_S - 5)
    consumer.close()
    kinds = {ck.TIMESTAMP_CREATE_TIME: "create", ck.TIMESTAMP_LOG_APPEND_TIME: "append"}
    for m in got:
        kind, ts = m.timestamp()
        print(
            json.dumps(
                {
                    "partition": m.partition(),
                    "offset": m.offset(),
                    "key": text(m.key()),
                    "value": text(m.value()),
                    "headers": [[n, text(v)] for n, v in m.headers() or []],
                    "timestamp": ts,
                    "timestamp_type": kinds.get(kind, "none"),
                }
            )
        )
    print(json.dumps({"low": low, "high": high}))


def transactions(addr):
    producer = ck.Producer({**COMMON, "bootstrap.servers": addr, "transactional.id": "tx-1"})
    try:
        producer.init_transactions(DEADLINE_S - 5)
    except ck.KafkaException as e:
        err = e.args[0]
        print(json.dumps({"error": err.name(), "fatal": err.fatal(), "retriable": err.retriable(),
                          "message": err.str()}))
        return
    sys.exit("init_transactions succeeded")


def main(args):
    if len(args) >= 3 and args[0] == "produce":
        produce(args[1], args[2], "--idempotent" in args[3:])
    elif len(args) == 5 and args[0] == "consume":
        consume(args[1], args[2], int(args[3]), int(args[4]))
    elif len(args) == 2 and args[0] == "transactions":
        transactions(args[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
