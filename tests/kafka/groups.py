"""kafka-python consumer groups against Brooklet's Kafka listener. One
scenario per run; each prints what it saw, one fact a line, and any failure
raises (non-zero exit). Every wait polls for a condition with a deadline.

Usage: python3 groups.py MODE 127.0.0.1:PORT TOPIC GROUP
  resume    a consumer reads and commits, closes; a second one in the group
            reads only what was produced after the commit
  split     two consumers split a 4-partition topic; after a line on stdin,
            one leaves and the other owns all four and reads new records
  conflict  a consumer joins a group whose live members are gRPC ones (it
            must be refused); with the group free, it joins, says so, and
            stays until a line on stdin
"""
import sys
import threading
import time

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

mode, addr, topic, group = sys.argv[1:5]
DEADLINE = 20  # seconds; the Rust test allows more
timeouts = dict(request_timeout_ms=10000)


def consumer(name, **extra):
    c = KafkaConsumer(
        bootstrap_servers=addr,
        group_id=group,
        client_id=name,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=200,
        fetch_max_wait_ms=100,
        **timeouts,
        **extra,
    )
    c.subscribe([topic])
    return c


def wait_for(what, check):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def produce(values, partition=None):
    producer = KafkaProducer(bootstrap_servers=addr, max_block_ms=8000, **timeouts)
    for v in values:
        producer.send(topic, value=v.encode(), partition=partition)
    producer.flush(timeout=10)
    producer.close(timeout=5)


def read(c, n):
    got = []
    deadline = time.monotonic() + DEADLINE
    while len(got) < n and time.monotonic() < deadline:
        for records in c.poll(timeout_ms=200).values():
            got.extend(records)
    assert len(got) == n, f"read {len(got)} of {n}"
    return got


if mode == "resume":
    produce([f"a{i}" for i in range(10)], partition=0)
    first = consumer("first")
    got = read(first, 10)
    first.commit()
    first.close()
    print("first", " ".join(f"{m.offset}:{m.value.decode()}" for m in got))
    produce([f"b{i}" for i in range(5)], partition=0)
    second = consumer("second")
    got = read(second, 5)
    second.commit()
    second.close()
    print("second", " ".join(f"{m.offset}:{m.value.decode()}" for m in got))

elif mode == "split":

    class Member(threading.Thread):
        """One consumer, polled by its own thread: each must poll to rejoin."""

        def __init__(self, name):
            super().__init__(daemon=True)
            self.consumer = consumer(name)
            self.lock = threading.Lock()
            self.assigned = set()
            self.values = []
            self.stop = threading.Event()
            self.commit = threading.Event()
            self.committed = threading.Event()
            self.error = None

        def run(self):
            try:
                while not self.stop.is_set():
                    batch = self.consumer.poll(timeout_ms=100)
                    with self.lock:
                        self.assigned = {tp.partition for tp in self.consumer.assignment()}
                        for records in batch.values():
                            self.values.extend(m.value.decode() for m in records)
                    if self.commit.is_set():
                        self.consumer.commit()
                        self.commit.clear()
                        self.committed.set()
                self.consumer.close()
            except Exception as e:  # reported by the main thread
                self.error = e

        def owned(self):
            if self.error:
                raise self.error
            with self.lock:
                return set(self.assigned)

    a, b = Member("member-a"), Member("member-b")
    a.start()
    b.start()

    def split():
        pa, pb = a.owned(), b.owned()
        return len(pa) == 2 and len(pb) == 2 and pa | pb == {0, 1, 2, 3} and (pa, pb)

    pa, pb = wait_for("the partitions to be split", split)
    print("split", len(pa), len(pb), "disjoint", pa.isdisjoint(pb))
    sys.stdout.flush()
    sys.stdin.readline()
    b.stop.set()
    b.join(timeout=DEADLINE)
    assert not b.is_alive(), "b closed"
    wait_for("a to own every partition", lambda: a.owned() == {0, 1, 2, 3})
    print("after leave a owns", len(a.owned()))
    for p in range(4):
        produce([f"after-{group}-{p}"], partition=p)

    def read_after():
        with a.lock:
            return sorted(v for v in a.values if v.startswith(f"after-{group}-"))

    got = wait_for("a to read what was produced after", lambda: len(read_after()) == 4 and read_after())
    print("a read", " ".join(got))
    a.commit.set()
    wait_for("a's commit", a.committed.is_set)
    a.stop.set()
    a.join(timeout=DEADLINE)
    print("done")

elif mode == "conflict":
    c = consumer("conflicted")
    refused = None
    deadline = time.monotonic() + DEADLINE
    while refused is None and time.monotonic() < deadline:
        try:
            c.poll(timeout_ms=200)
        except KafkaError as e:
            refused = type(e).__name__
    assert refused is not None, "a group with live gRPC members refuses a Kafka member"
    print("refused", refused)
    sys.stdout.flush()
    # The Rust side ends its member; then the group is free for this one.
    sys.stdin.readline()
    wait_for("an assignment", lambda: c.poll(timeout_ms=100) is not None and c.assignment())
    print("joined", len(c.assignment()))
    sys.stdout.flush()
    sys.stdin.readline()
    c.close()
    print("done")
else:
    raise SystemExit(f"unknown mode {mode}")
