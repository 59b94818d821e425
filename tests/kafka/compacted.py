"""kafka-python on a compacted topic: `produce` sends three batches, the
second with a tombstone (a null value); `consume` reads what compaction left,
one line per record: offset, key, value (None for null). Any failure raises.

Usage: python3 compacted.py produce|consume 127.0.0.1:PORT TOPIC
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

step, addr, topic = sys.argv[1], sys.argv[2], sys.argv[3]
timeouts = dict(request_timeout_ms=8000)

if step == "produce":
    producer = KafkaProducer(bootstrap_servers=addr, acks="all", max_block_ms=8000, **timeouts)
    batches = [[(b"a", b"1"), (b"b", b"1"), (b"a", b"2")], [(b"c", b"1"), (b"b", None)], [(b"a", b"3")]]
    for batch in batches:
        sent = [producer.send(topic, key=k, value=v, partition=0) for k, v in batch]
        producer.flush(timeout=10)
        print("sent", [f.get(timeout=10).offset for f in sent])
    producer.close(timeout=5)
else:
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=addr, group_id=None, enable_auto_commit=False,
                             consumer_timeout_ms=8000, fetch_max_wait_ms=200, **timeouts)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    end = consumer.end_offsets([tp])[tp]
    for m in consumer:
        print(m.offset, m.key.decode(), None if m.value is None else m.value.decode())
        if m.offset + 1 >= end:
            break
    consumer.close()
