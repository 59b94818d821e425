#!/usr/bin/env python3
"""Brooklet's Kafka listener under load from confluent-kafka (librdkafka):
the Kafka counterpart of `brooklet bench produce` / `bench consume`.

  kafka_bench.py produce --bootstrap HOST:PORT --topic T --record-size B
                         [--duration S] [--linger-ms MS] [--batch-bytes B]
                         [--producers N] [--json]
      N producer processes (one librdkafka producer each) send random,
      incompressible values without keys for S seconds with acks=all (so
      each acknowledged record is durable: flushed and fdatasync'd),
      idempotent, batching as a tuned producer does; then wait for every
      acknowledgement. Throughput counts acknowledged records from the first
      send to the last acknowledgement.
  kafka_bench.py consume --bootstrap HOST:PORT --topic T [--json]
      One consumer, every partition assigned (no consumer group), reads from
      the log start to where each partition ended when it started.
  kafka_bench.py kcat-produce --bootstrap HOST:PORT --topic T --record-size B
                              [--duration S] [--linger-ms MS] [--batch-bytes B]
      The same as produce through kcat (C, librdkafka, no Python per record):
      one `kcat -P` with the same producer settings reads records, one per
      line, from a pipe this script fills for S seconds; throughput counts
      from kcat's start to its exit (every record acknowledged), and the
      topic's end offsets must then add up to the records sent.
  kafka_bench.py kcat-consume --bootstrap HOST:PORT --topic T --record-size B
                              [--json]
      The same as consume through `kcat -C -e` with a tuned consumer's
      queue settings; throughput counts from kcat's start to its exit, and
      the records it printed (one line each) must be every record in the
      topic. Megabytes count B bytes a record (kcat prints no values).

Prints a summary, or one JSON object with --json: records, seconds,
records_per_sec, mb_per_sec (10^6 bytes of key + value), cpu_seconds and
cpu_us_per_record (this script's processes: Python and librdkafka; for the
kcat commands, kcat's alone).
Compression stays off: the broker takes uncompressed batches. The topic
should exist (say `brooklet topic create T --partitions 4`).
"""
import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import threading
import time

import confluent_kafka as ck

# Every wait is bounded: a broker that stops answering fails the bench.
TIMEOUT_S = 60
KCAT = os.environ.get("KCAT", "kcat")


def cpu_seconds(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def producer_config(args):
    return {
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "none",
        "linger.ms": args.linger_ms,
        "batch.size": args.batch_bytes,
        "batch.num.messages": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 256 * 1024,
        "message.timeout.ms": TIMEOUT_S * 1000,
        # Only failures come back to Python: a callback per record would
        # measure the interpreter.
        "delivery.report.only.error": True,
    }


def produce_one(args, out):
    """One producer process: sends for args.duration seconds, then waits for
    every acknowledgement; puts (records, bytes, first send, last ack, cpu)
    on `out`."""
    failed = []
    config = producer_config(args)
    config["on_delivery"] = lambda err, _msg: failed.append(err)
    producer = ck.Producer(config)
    values = [os.urandom(args.record_size) for _ in range(1024)]
    produce, poll = producer.produce, producer.poll
    sent = 0
    start = time.monotonic()
    stop = start + args.duration
    while True:
        # Check the clock every 1,000 records, not on each.
        for v in values:
            while True:
                try:
                    produce(args.topic, v)
                    break
                except BufferError:
                    # The local queue is full: wait for acknowledgements to
                    # drain it.
                    poll(0.005)
            sent += 1
        poll(0)
        if time.monotonic() >= stop:
            break
    left = producer.flush(TIMEOUT_S)
    end = time.monotonic()
    if left or failed:
        sys.exit(f"{left} records unacknowledged, {len(failed)} failed: {failed[:3]}")
    out.put((sent, sent * args.record_size, start, end, cpu_seconds(resource.RUSAGE_SELF)))


def run_produce(args):
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=produce_one, args=(args, out)) for _ in range(args.producers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(args.duration + 2 * TIMEOUT_S)
        if p.exitcode != 0:
            sys.exit(f"a producer process failed ({p.exitcode})")
    results = [out.get(timeout=TIMEOUT_S) for _ in procs]
    records = sum(r[0] for r in results)
    size = sum(r[1] for r in results)
    seconds = max(r[3] for r in results) - min(r[2] for r in results)
    cpu = sum(r[4] for r in results)
    return summary("produce", records, size, seconds, cpu)


def run_consume(args):
    consumer = ck.Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            # Required by the client; assigned partitions never join a group.
            "group.id": "brooklet-kafka-bench",
            "enable.auto.commit": False,
            # 1 MiB per partition, as `bench consume --fetch-bytes`;
            # otherwise librdkafka's defaults.
            "max.partition.fetch.bytes": 1 << 20,
        }
    )
    remaining = topic_spans(args, consumer)
    total = sum(remaining.values())
    cpu0 = cpu_seconds(resource.RUSAGE_SELF)
    start = time.monotonic()
    consumer.assign([ck.TopicPartition(args.topic, p, ck.OFFSET_BEGINNING) for p in remaining])
    records = size = 0
    deadline = start + TIMEOUT_S * 10
    while records < total:
        if time.monotonic() > deadline:
            sys.exit(f"read {records} of {total} records before the deadline")
        # Small batches: a batch call waits until it is full (or times out).
        for m in consumer.consume(num_messages=1000, timeout=0.1):
            if m.error():
                sys.exit(f"consume failed: {m.error()}")
            if remaining.get(m.partition(), 0) > 0:
                remaining[m.partition()] -= 1
                records += 1
                size += len(m)
    seconds = time.monotonic() - start
    cpu = cpu_seconds(resource.RUSAGE_SELF) - cpu0
    consumer.close()
    return summary("consume", records, size, seconds, cpu)


def topic_spans(args, consumer):
    """{partition: records} of the topic's non-empty partitions."""
    topic = consumer.list_topics(args.topic, timeout=TIMEOUT_S).topics[args.topic]
    if topic.error is not None:
        sys.exit(f"topic {args.topic}: {topic.error}")
    spans = {}
    for p in topic.partitions:
        low, high = consumer.get_watermark_offsets(ck.TopicPartition(args.topic, p), timeout=TIMEOUT_S)
        if high > low:
            spans[p] = high - low
    return spans


def metadata_consumer(args):
    return ck.Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "brooklet-kafka-bench",
            "enable.auto.commit": False,
        }
    )


def kcat_options(config):
    return [a for k, v in config.items() for a in ("-X", f"{k}={str(v).lower() if isinstance(v, bool) else v}")]


def start_kcat(command, seconds, **pipes):
    """Starts kcat with a watchdog that kills it after `seconds`, so a
    broker that stops answering fails the bench rather than stalling it."""
    proc = subprocess.Popen([KCAT] + command, **pipes)
    watchdog = threading.Timer(seconds, proc.kill)
    watchdog.start()
    return proc, watchdog


def wait_kcat(proc, watchdog, what):
    code = proc.wait()
    watchdog.cancel()
    if code != 0:
        sys.exit(f"kcat {what} failed (exit status {code}; -9 when killed at the deadline)")


def run_kcat_produce(args):
    config = producer_config(args)
    del config["delivery.report.only.error"]
    # kcat -P sends each line as one record: values are random bytes
    # without the newline.
    lines = b"".join(os.urandom(args.record_size).replace(b"\n", b"\0") + b"\n" for _ in range(1024))
    cpu0 = cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc, watchdog = start_kcat(
        ["-P", "-b", args.bootstrap, "-t", args.topic, "-q"] + kcat_options(config),
        args.duration + TIMEOUT_S * 2,
        stdin=subprocess.PIPE,
    )
    stop = start + args.duration
    sent = 0
    try:
        while time.monotonic() < stop:
            proc.stdin.write(lines)
            sent += 1024
        proc.stdin.close()
    except BrokenPipeError:
        pass
    wait_kcat(proc, watchdog, "-P")
    end = time.monotonic()
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu0
    consumer = metadata_consumer(args)
    stored = sum(topic_spans(args, consumer).values())
    consumer.close()
    if stored != sent:
        sys.exit(f"sent {sent} records, the topic holds {stored}")
    return summary("kcat produce", sent, sent * args.record_size, end - start, cpu)


def run_kcat_consume(args):
    consumer = metadata_consumer(args)
    spans = topic_spans(args, consumer)
    consumer.close()
    total = sum(spans.values())
    # Read far ahead, as a consumer tuned for throughput does; 1 MiB per
    # partition per fetch, as `bench consume --fetch-bytes`.
    config = {
        "max.partition.fetch.bytes": 1 << 20,
        "queued.min.messages": 1_000_000,
        "queued.max.messages.kbytes": 256 * 1024,
        "fetch.wait.max.ms": 100,
    }
    cpu0 = cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    # Every partition assigned, no group; one line per record.
    proc, watchdog = start_kcat(
        ["-C", "-b", args.bootstrap, "-t", args.topic, "-o", "beginning", "-e", "-q", "-f", "\n"]
        + kcat_options(config),
        TIMEOUT_S * 10,
        stdout=subprocess.PIPE,
    )
    records = 0
    while chunk := proc.stdout.read(1 << 20):
        records += chunk.count(b"\n")
    wait_kcat(proc, watchdog, "-C")
    seconds = time.monotonic() - start
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu0
    if records != total:
        sys.exit(f"kcat read {records} of {total} records")
    # kcat prints no value here: every record has --record-size bytes.
    return summary("kcat consume", records, records * args.record_size, seconds, cpu)


def summary(what, records, size, seconds, cpu):
    return {
        "bench": f"kafka {what}",
        "record_size": size // records if records else None,
        "records": records,
        "seconds": round(seconds, 3),
        "records_per_sec": records / seconds,
        "mb_per_sec": size / seconds / 1e6,
        "cpu_seconds": round(cpu, 3),
        "cpu_us_per_record": cpu / records * 1e6 if records else None,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["produce", "consume", "kcat-produce", "kcat-consume"])
    parser.add_argument("--bootstrap", required=True, help="the broker's Kafka listener, HOST:PORT")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--record-size", type=int, default=100, help="bytes of each value (produce; kcat-consume counts it)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of sending (produce)")
    parser.add_argument("--linger-ms", type=float, default=5.0, help="librdkafka linger.ms (produce)")
    parser.add_argument("--batch-bytes", type=int, default=256 * 1024, help="librdkafka batch.size (produce)")
    parser.add_argument("--producers", type=int, default=1, help="producer processes (produce)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.record_size < 1 or args.duration <= 0 or args.producers < 1:
        parser.error("--record-size, --duration and --producers must be positive")
    run = {
        "produce": run_produce,
        "consume": run_consume,
        "kcat-produce": run_kcat_produce,
        "kcat-consume": run_kcat_consume,
    }[args.what]
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['bench']}: {result['records']} records in {result['seconds']} s: "
            f"{result['records_per_sec']:,.0f} records/s, {result['mb_per_sec']:.1f} MB/s, "
            f"{result['cpu_us_per_record']:.2f} µs CPU per record"
        )


if __name__ == "__main__":
    main()
