#!/usr/bin/env bash
# The Kafka listener against the gRPC path, in one run on one release
# broker build (docs/performance.md, "Kafka protocol"). Usage, from the
# repository's root after `cargo build --release -p brooklet`, with
# confluent-kafka installed (python3 -m pip install confluent-kafka==2.16.1):
#
#   benches/scripts/kafka_vs_grpc.sh OUT_DIR [SCRATCH_DIR] [ROUNDS]
#
# Measures the disk (`bench disk`), then ROUNDS (default 3) rounds of four
# workloads, each on a fresh broker (127.0.0.1:7171, Kafka on :7192, metrics
# on :9171) with a 4-partition topic: durable produce of 1 KiB and of 100 B
# records for 8 s, each followed by reading back what it wrote, once through
# `brooklet bench produce` / `bench consume` (gRPC, 4 producers, 1
# consumer) and once through benches/scripts/kafka_bench.py (confluent-kafka,
# acks=all, idempotent, the same linger and batch size), the two
# alternating which goes first; then the disk again. Each bench's JSON goes
# to OUT_DIR/<round>-<protocol>-<workload>.json, the broker's CPU to
# OUT_DIR/notes.txt; the end prints medians and the Kafka/gRPC ratios.
# SCRATCH_DIR (default ./brooklet-perf) must be on the disk to measure.
set -u
B=${B:-target/release/brooklet}
KB=${KB:-$(dirname "$0")/kafka_bench.py}
OUT=$1; mkdir -p "$OUT"
S=${2:-brooklet-perf}; mkdir -p "$S"
ROUNDS=${3:-3}
U="--broker http://127.0.0.1:7171"
K=127.0.0.1:7192
M=127.0.0.1:9171
KAFKA_PRODUCERS=${KAFKA_PRODUCERS:-1}
metric() { curl -s $M/metrics | awk -v n="$1" '$1 == n {print $2}'; }
cpu() { metric brooklet_process_cpu_seconds_total; }
serve() { rm -rf $S/data; $B serve --data-dir $S/data --listen 127.0.0.1:7171 --metrics-listen $M --kafka-listen $K --log-level warn & PID=$!;
  for i in $(seq 200); do curl -sf $M/readyz >/dev/null && break; sleep 0.05; done; }
stop() { kill $PID; wait $PID 2>/dev/null; }
note() { echo "$1=$2" >> $OUT/notes.txt; }
diff_cpu() { python3 -c "print(round($2 - $1, 3))"; }
: > $OUT/notes.txt

# One workload: SIZE-byte records produced for 8 s, then read back, over
# PROTOCOL (grpc or kafka), on a fresh broker.
workload() {
  local round=$1 proto=$2 size=$3 name=$2-$3 c0 c1
  local tune=""; [ "$size" -lt 1024 ] && tune="--linger-ms 5 --batch-bytes 65536"
  serve; $B topic create t $U --partitions 4 >/dev/null
  c0=$(cpu)
  if [ "$proto" = grpc ]; then
    $B bench produce $U --topic t --partitions 4 --producers 4 --record-size "$size" $tune --duration 8 --json > "$OUT/$round-$name-produce.json"
  else
    python3 "$KB" produce --bootstrap $K --topic t --producers "$KAFKA_PRODUCERS" --record-size "$size" $tune --duration 8 --json > "$OUT/$round-$name-produce.json"
  fi
  c1=$(cpu); note "$round-$name-produce-broker-cpu" "$(diff_cpu "$c0" "$c1")"
  if [ "$proto" = grpc ]; then
    $B bench consume $U --topic t --json > "$OUT/$round-$name-consume.json"
  else
    python3 "$KB" consume --bootstrap $K --topic t --json > "$OUT/$round-$name-consume.json"
  fi
  note "$round-$name-consume-broker-cpu" "$(diff_cpu "$c1" "$(cpu)")"
  stop
}

$B bench disk --dir "$S" --json > "$OUT/disk.json"
for round in $(seq "$ROUNDS"); do
  for size in 1024 100; do
    if [ $((round % 2)) = 1 ]; then order="grpc kafka"; else order="kafka grpc"; fi
    for proto in $order; do
      echo "== round $round: $proto, $size B" >&2
      workload "$round" "$proto" "$size"
    done
  done
done
$B bench disk --dir "$S" --json > "$OUT/disk_end.json"

python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
notes = dict(l.strip().split("=", 1) for l in open(f"{out}/notes.txt") if "=" in l)
def load(r, proto, size, what):
    d = json.load(open(f"{out}/{r}-{proto}-{size}-{what}.json"))
    broker = float(notes[f"{r}-{proto}-{size}-{what}-broker-cpu"])
    return d["records_per_sec"], d["mb_per_sec"], broker / d["records"] * 1e6, d.get("cpu_us_per_record")
for name in ["disk", "disk_end"]:
    d = json.load(open(f"{out}/{name}.json"))
    print(f"{name}: {d['seq_fdatasync_mb_per_sec']:.0f} MB/s synced sequential; 4 KiB append+fdatasync "
          f"p50 {d['fdatasync_p50_us']:.0f} us, p99 {d['fdatasync_p99_us']:.0f} us")
print("workload        | kafka rec/s (MB/s)   | grpc rec/s (MB/s)    | kafka/grpc per round     | median | broker us/rec kafka, grpc | client us/rec kafka, grpc")
for size in (1024, 100):
    for what in ("produce", "consume"):
        k = [load(r, "kafka", size, what) for r in range(1, rounds + 1)]
        g = [load(r, "grpc", size, what) for r in range(1, rounds + 1)]
        ratios = [a[0] / b[0] for a, b in zip(k, g)]
        med = lambda xs, i: statistics.median(x[i] for x in xs)
        print(f"{what} {size:>4} B".ljust(16)
              + f"| {med(k, 0):>9,.0f} ({med(k, 1):6.1f}) | {med(g, 0):>9,.0f} ({med(g, 1):6.1f}) "
              + f"| {', '.join(f'{x:.2f}' for x in ratios):<24} | {statistics.median(ratios):.2f}   "
              + f"| {med(k, 2):.2f}, {med(g, 2):.2f}".ljust(28)
              + f"| {med(k, 3):.2f}, {med(g, 3):.2f}")
EOF
