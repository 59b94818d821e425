"""kafka-python over TLS against Brooklet's Kafka listener: produces 10
records and reads them back with security_protocol=SSL, trusting CAFILE and,
for mutual TLS, presenting CERTFILE with KEYFILE. Prints `roundtrip 10`;
any failure raises (non-zero exit), a refused handshake included.

Usage: python3 tls_client.py 127.0.0.1:PORT TOPIC CAFILE [CERTFILE KEYFILE]
"""
import sys

from kafka import KafkaConsumer, KafkaProducer

addr, topic, cafile = sys.argv[1], sys.argv[2], sys.argv[3]
ssl = dict(security_protocol="SSL", ssl_cafile=cafile, ssl_check_hostname=True)
if len(sys.argv) > 5:
    ssl.update(ssl_certfile=sys.argv[4], ssl_keyfile=sys.argv[5])
# A refused handshake fails the bootstrap in 8 s rather than the 30 s default.
timeouts = dict(request_timeout_ms=8000, bootstrap_timeout_ms=8000)

producer = KafkaProducer(bootstrap_servers=addr, acks="all", max_block_ms=8000, **ssl, **timeouts)
sent = [producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode()) for i in range(10)]
producer.flush(timeout=10)
offsets = [f.get(timeout=10).offset for f in sent]
assert offsets == list(range(10)), offsets
producer.close(timeout=5)

consumer = KafkaConsumer(
    topic,
    bootstrap_servers=addr,
    auto_offset_reset="earliest",
    group_id=None,
    enable_auto_commit=False,
    consumer_timeout_ms=8000,
    fetch_max_wait_ms=200,
    **ssl,
    **timeouts,
)
values = []
for record in consumer:
    values.append(record.value.decode())
    if len(values) == 10:
        break
consumer.close()
assert values == [f"v{i}" for i in range(10)], values
print("roundtrip", len(values))
