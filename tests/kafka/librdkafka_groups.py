"""librdkafka (through confluent-kafka) consumer groups against Brooklet's
Kafka listener. One scenario per run; each prints what it saw, one fact a
line, and any failure raises (non-zero exit). Every wait polls for a
condition with a deadline.

Usage: python3 librdkafka_groups.py MODE 127.0.0.1:PORT TOPIC GROUP [ARG]
  resume    a consumer subscribes, reads and commits when it closes (auto
            commit); a second one resumes from there and commits
            explicitly; a third one resumes from that commit
  split     a consumer (assignor ARG) owns a 4-partition topic, a second
            one joins and they split it; after a line on stdin, the second
            closes and the first owns all four again and reads new records
  killed    two consumers split a 4-partition topic; one is a child process
            that exits without closing, and once its session times out the
            other owns all four and reads new records
  static    two static consumers (group.instance.id) split a 4-partition
            topic; after a line on stdin, the second (a child process) is
            killed and restarted with the same instance id: it gets the same
            partitions back, resumes from its commits, and the first is
            never revoked; after another line, the first commits and closes
  admin     while a consumer of a 2-partition topic is live, the admin
            client lists and describes the group and lists its committed
            offsets, and cannot delete it; again once it left, then deletes
            it
  victim    (used by killed) a consumer that prints its assignment and exits
            at once, without closing, when a line arrives on stdin
  static-victim  (used by static) the same with instance id ARG; it prints
            each record it reads, after committing it
"""
import os
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

mode, addr, topic, group = sys.argv[1:5]
arg = sys.argv[5] if len(sys.argv) > 5 else None
DEADLINE = 20  # seconds; the Rust test allows more
common = {"bootstrap.servers": addr, "socket.timeout.ms": 10000}
if os.environ.get("RDKAFKA_DEBUG"):
    # For a manual run: librdkafka logs what it sends, e.g. `cgrp,protocol`.
    common["debug"] = os.environ["RDKAFKA_DEBUG"]


def consumer(name, on_revoke=None, **extra):
    c = Consumer({
        **common,
        "group.id": group,
        "client.id": name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 200,
        "fetch.wait.max.ms": 100,
        **extra,
    })
    if on_revoke:
        c.subscribe([topic], on_revoke=on_revoke)
    else:
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


def produce(values, partition=0):
    producer = Producer(common)
    for v in values:
        producer.produce(topic, value=v.encode(), partition=partition)
    assert producer.flush(10) == 0, "every record delivered"


def read(c, n):
    got = []
    deadline = time.monotonic() + DEADLINE
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.append(m)
    assert len(got) == n, f"read {len(got)} of {n}"
    return got


def committed(c, partitions):
    return [tp.offset for tp in c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)]


def show(got):
    return " ".join(f"{m.offset()}:{m.value().decode()}" for m in got)


class Member(threading.Thread):
    """One consumer, polled by its own thread: each must poll to rejoin."""

    def __init__(self, name, **extra):
        super().__init__(daemon=True)
        self.revokes = 0
        self.consumer = consumer(name, on_revoke=self.revoked, **extra)
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
                m = self.consumer.poll(0.1)
                assigned = {tp.partition for tp in self.consumer.assignment()}
                with self.lock:
                    self.assigned = assigned
                    if m is not None:
                        assert m.error() is None, m.error()
                        self.values.append(m.value().decode())
                if self.commit.is_set():
                    self.consumer.commit(asynchronous=False)
                    self.commit.clear()
                    self.committed.set()
            self.consumer.close()
        except Exception as e:  # reported by the main thread
            self.error = e

    def revoked(self, _consumer, _partitions):
        with self.lock:
            self.revokes += 1

    def revoke_count(self):
        with self.lock:
            return self.revokes

    def read_values(self):
        if self.error:
            raise self.error
        with self.lock:
            return sorted(self.values)

    def owned(self):
        if self.error:
            raise self.error
        with self.lock:
            return set(self.assigned)

    def read_count(self):
        if self.error:
            raise self.error
        with self.lock:
            return len(self.values)

    def read_after(self, n):
        """Waits for the n records produced after the takeover."""
        def after():
            if self.error:
                raise self.error
            with self.lock:
                got = sorted(v for v in self.values if v.startswith(f"after-{group}-"))
            return len(got) == n and got
        return wait_for("the records produced after", after)

    def finish(self):
        """Commits what it read, then closes."""
        self.commit.set()
        wait_for("the commit", lambda: self.committed.is_set() or self.error)
        self.close()

    def close(self):
        self.stop.set()
        self.join(timeout=DEADLINE)
        assert not self.is_alive(), "closed in time"
        if self.error:
            raise self.error


def take_over(a, how):
    """`a` ends up owning every partition and reads what is produced next."""
    wait_for("a to own every partition", lambda: a.owned() == {0, 1, 2, 3})
    print(f"after {how} a owns", len(a.owned()))
    for p in range(4):
        produce([f"after-{group}-{p}"], partition=p)
    print("a read", " ".join(a.read_after(4)))
    a.finish()
    print("done")


if mode == "resume":
    produce([f"a{i}" for i in range(10)])
    # Auto commit on an interval longer than the test: the commit that
    # counts is the one made on close.
    first = consumer("first", **{"enable.auto.commit": True, "auto.commit.interval.ms": 600000})
    got = read(first, 10)
    first.close()
    print("first", show(got))
    produce([f"b{i}" for i in range(5)])
    second = consumer("second")
    got = read(second, 5)
    second.commit(asynchronous=False)
    print("second", show(got), "committed", committed(second, [0]))
    second.close()
    produce(["c0"])
    third = consumer("third")
    got = read(third, 1)
    third.close()
    print("third", show(got))

elif mode == "split":
    extra = {"partition.assignment.strategy": arg}
    a = Member("member-a", **extra)
    a.start()
    # b joins a group that a already owns whole: a gives up half.
    wait_for("a to own every partition", lambda: a.owned() == {0, 1, 2, 3})
    b = Member("member-b", **extra)
    b.start()

    def split():
        pa, pb = a.owned(), b.owned()
        return len(pa) == 2 and len(pb) == 2 and pa | pb == {0, 1, 2, 3} and (pa, pb)

    pa, pb = wait_for("the partitions to be split", split)
    print("split", len(pa), len(pb), "disjoint", pa.isdisjoint(pb))
    sys.stdout.flush()
    sys.stdin.readline()
    b.close()
    take_over(a, "close")

elif mode == "killed":
    victim = subprocess.Popen(
        [sys.executable, __file__, "victim", addr, topic, group],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    a = Member("member-a")
    a.start()
    # The victim prints its assignment whenever it changes.
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(victim.stdout), daemon=True)
    reader.start()

    def split():
        pa = a.owned()
        pv = seen[-1].split() if seen else []
        return len(pa) == 2 and pv == ["assigned", "2"] and pa
    wait_for("the partitions to be split with the victim", split)
    print("split with victim", len(a.owned()))
    victim.stdin.write("die\n")
    victim.stdin.flush()
    assert victim.wait(timeout=DEADLINE) == 7, "the victim exited without closing"
    take_over(a, "kill")

elif mode == "victim":
    c = consumer("victim")
    # The parent's line ends this process at once: no close, no leave,
    # no commit, as if it were killed.
    threading.Thread(target=lambda: (sys.stdin.readline(), os._exit(7)), daemon=True).start()
    last = None
    while True:
        c.poll(0.1)
        n = len(c.assignment())
        if n != last:
            print("assigned", n, flush=True)
            last = n

elif mode == "static":
    # Static members' sessions outlast a restart of the child.
    static = {"session.timeout.ms": 15000}
    a = Member("member-a", **static, **{"group.instance.id": f"{group}-a"})
    a.start()
    # a leads: it is alone when the group forms.
    wait_for("a to own every partition", lambda: a.owned() == {0, 1, 2, 3})

    def start_victim():
        child = subprocess.Popen(
            [sys.executable, __file__, "static-victim", addr, topic, group, f"{group}-b"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        lines = []
        threading.Thread(target=lambda: lines.extend(line.strip() for line in child.stdout), daemon=True).start()
        return child, lines

    def assigned(lines):
        now = [line for line in lines if line.startswith("assigned")]
        return now[-1].split()[1:] if now else []

    def got(lines):
        return sorted(line.split()[1] for line in lines if line.startswith("got"))

    b, b_lines = start_victim()

    def split():
        pa, pb = a.owned(), assigned(b_lines)
        return len(pa) == 2 and len(pb) == 2 and (pa, pb)

    pa, pb = wait_for("the partitions to be split with the static victim", split)
    revokes = a.revoke_count()
    before = [f"before-{p}-{i}" for p in range(4) for i in range(2)]
    for p in range(4):
        produce([f"before-{p}-{i}" for i in range(2)], partition=p)
    mine = sorted(f"before-{p}-{i}" for p in pa for i in range(2))
    wait_for("a to read its records", lambda: a.read_values() == mine)
    wait_for("b to read and commit its records", lambda: len(got(b_lines)) == 4)
    print("split", len(pa), len(pb), "read", sorted(a.read_values() + got(b_lines)) == sorted(before))
    sys.stdout.flush()
    sys.stdin.readline()

    b.stdin.write("die\n")
    b.stdin.flush()
    assert b.wait(timeout=DEADLINE) == 7, "the victim exited without closing"
    b, b_lines = start_victim()
    wait_for("the restarted b to be assigned", lambda: assigned(b_lines))
    print("restarted b owns the same partitions", assigned(b_lines) == pb)
    for p in range(4):
        produce([f"after-{group}-{p}"], partition=p)
    mine = sorted(mine + [f"after-{group}-{p}" for p in pa])
    wait_for("a to read the records after", lambda: a.read_values() == mine)
    theirs = sorted(f"after-{group}-{p}" for p in pb)
    wait_for("b to read the records after", lambda: len(got(b_lines)) == 2)
    print("restarted b read only what came after", got(b_lines) == theirs)
    print("a kept", a.owned() == pa, "revoked since the split", a.revoke_count() - revokes)
    sys.stdout.flush()
    sys.stdin.readline()
    b.stdin.write("die\n")
    b.stdin.flush()
    assert b.wait(timeout=DEADLINE) == 7
    a.finish()
    print("done")

elif mode == "static-victim":
    c = consumer("static-victim", **{"session.timeout.ms": 15000, "group.instance.id": arg})
    threading.Thread(target=lambda: (sys.stdin.readline(), os._exit(7)), daemon=True).start()
    last = None
    while True:
        m = c.poll(0.1)
        if m is not None:
            assert m.error() is None, m.error()
            c.commit(message=m, asynchronous=False)
            print("got", m.value().decode(), flush=True)
        now = " ".join(str(p) for p in sorted(tp.partition for tp in c.assignment()))
        if now != last:
            print("assigned", now, flush=True)
            last = now

elif mode == "admin":
    # A topic of two partitions, three records in each.
    produce([f"v{i}" for i in range(3)], partition=0)
    produce([f"v{i}" for i in range(3, 6)], partition=1)
    admin = AdminClient(common)
    m = Member("watched")
    m.start()
    wait_for("an assignment", lambda: m.owned() == {0, 1})
    wait_for("six records", lambda: m.read_count() == 6)
    m.commit.set()
    wait_for("the commit", lambda: m.committed.is_set() or m.error)

    def listed():
        r = admin.list_consumer_groups(request_timeout=10).result()
        assert not r.errors, r.errors
        return [(g.group_id, g.state.name, g.is_simple_consumer_group) for g in r.valid if g.group_id == group]

    def described():
        d = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
        members = [
            (x.client_id, x.member_id.startswith(x.client_id + "-"), x.host,
             sorted((tp.topic, tp.partition) for tp in x.assignment.topic_partitions))
            for x in d.members
        ]
        return d.state.name, d.partition_assignor, d.is_simple_consumer_group, members

    def deleted():
        try:
            admin.delete_consumer_groups([group], request_timeout=10)[group].result()
            return "ok"
        except KafkaException as e:
            return e.args[0].name()

    def offsets():
        request = [ConsumerGroupTopicPartitions(group)]
        r = admin.list_consumer_group_offsets(request, request_timeout=10)[group].result()
        return [(tp.topic, tp.partition, tp.offset) for tp in r.topic_partitions]

    print("live list", listed())
    print("live describe", described())
    print("live offsets", offsets())
    print("live delete", deleted())
    m.close()
    print("left list", listed())
    state, _, _, members = described()
    print("left describe", state, members)
    print("left offsets", offsets())
    print("left delete", deleted())
    print("deleted list", listed())
    print("deleted describe", described()[0])
    print("deleted offsets", offsets())

else:
    raise SystemExit(f"unknown mode {mode}")
