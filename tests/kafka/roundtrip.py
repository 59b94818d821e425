"""kafka-python against Brooklet's Kafka listener: an idempotent producer
sends 100 keyed records, a consumer reads them back in order and asks for the
partition's bounds; then a plain producer's tombstone and timestamps, and an
offset found by time. Prints one line per record and a summary; any failure
raises (non-zero exit).

Usage: python3 roundtrip.py 127.0.0.1:PORT TOPIC
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

addr, topic = sys.argv[1], sys.argv[2]
# Timeouts stay well below the test's deadline (30 s); the API versions are
# auto-detected from ApiVersions.
timeouts = dict(request_timeout_ms=8000)

# kafka-python's defaults: acks=all makes it idempotent (InitProducerId,
# then batches with its producer id and sequences).
producer = KafkaProducer(bootstrap_servers=addr, acks="all", max_block_ms=8000, **timeouts)
sent = [
    producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), headers=[("n", str(i).encode())])
    for i in range(100)
]
producer.flush(timeout=10)
offsets = [f.get(timeout=10).offset for f in sent]
assert offsets == list(range(100)), offsets
producer.close(timeout=5)
print("produced", len(offsets))

consumer = KafkaConsumer(
    topic,
    bootstrap_servers=addr,
    auto_offset_reset="earliest",
    group_id=None,
    enable_auto_commit=False,
    consumer_timeout_ms=8000,
    fetch_max_wait_ms=200,
    **timeouts,
)
got = []
for m in consumer:
    got.append(m)
    if len(got) == 100:
        break
tp = TopicPartition(topic, 0)
begin = consumer.beginning_offsets([tp])[tp]
end = consumer.end_offsets([tp])[tp]
consumer.close()
for m in got:
    print(m.offset, m.key.decode(), m.value.decode(), dict(m.headers)["n"].decode())
print("consumed", len(got))
print("bounds", begin, end)

# A plain (non-idempotent, acks=1) producer: a null value (a tombstone) stays
# null, producer timestamps are kept, and offsets are found by time.
late = topic + "-by-time"
producer = KafkaProducer(bootstrap_servers=addr, acks=1, enable_idempotence=False, max_block_ms=8000, **timeouts)
producer.send(late, key=b"gone", value=None, timestamp_ms=1000).get(timeout=10)
producer.send(late, key=b"later", value=b"x", timestamp_ms=2000).get(timeout=10)
producer.close(timeout=5)
consumer = KafkaConsumer(bootstrap_servers=addr, group_id=None, enable_auto_commit=False, **timeouts)
tp = TopicPartition(late, 0)
found = consumer.offsets_for_times({tp: 1500})[tp]
consumer.assign([tp])
consumer.seek(tp, 0)
got = []
for _ in range(20):
    for records in consumer.poll(timeout_ms=500).values():
        got.extend(records)
    if len(got) >= 2:
        break
consumer.close()
for m in got:
    print("by-time", m.offset, m.key.decode(), m.value, m.timestamp)
print("found", found.offset, found.timestamp)
