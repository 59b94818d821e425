#!/usr/bin/env bash
# The Kafka listener against the gRPC path, in one run on one release
# broker build (docs/performance.md, "Kafka protocol"). Usage, from the
# repository's root after `cargo build --release -p brooklet`, with
# confluent-kafka (python3 -m pip install confluent-kafka==2.16.1) and kcat
# (apt-get install kcat) installed:
#
#   benches/scripts/kafka_vs_grpc.sh OUT_DIR [SCRATCH_DIR] [ROUNDS]
#
# Measures the disk (`bench disk`), then ROUNDS (default 3) rounds of six
# workloads, each on a fresh broker (127.0.0.1:7171, Kafka on :7192, metrics
# on :9171) with a 4-partition topic: durable produce of 1 KiB and of 100 B
# records for 8 s, each followed by reading back what it wrote, through
#   grpc:  `brooklet bench produce` (4 producers), then `bench consume`;
#   kafka: benches/scripts/kafka_bench.py produce (confluent-kafka, acks=all,
#          idempotent, the same linger and batch size), then its consume and
#          its kcat-consume (kcat: librdkafka from C), which of the two
#          first alternating by round;
#   kcat:  kafka_bench.py kcat-produce, then kcat-consume (kcat alone).
# The order of the three rotates by round: each goes first once in three.
# Each step's JSON goes to OUT_DIR/<round>-<protocol>-<size>-<step>.json;
# the broker's CPU per step (from /proc/PID/stat) and the load average
# before it go to OUT_DIR/notes.txt; the end prints medians and the
# Kafka/gRPC ratios. SCRATCH_DIR (default ./brooklet-perf) must be on the
# disk to measure.
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
TCK=$(getconf CLK_TCK)
# The broker's user + system CPU seconds.
cpu() { awk -v t="$TCK" '{print ($14 + $15) / t}' /proc/$PID/stat; }
serve() { rm -rf $S/data; $B serve --data-dir $S/data --listen 127.0.0.1:7171 --metrics-listen $M --kafka-listen $K --log-level warn & PID=$!;
  for i in $(seq 200); do curl -sf $M/readyz >/dev/null && break; sleep 0.05; done; }
stop() { kill $PID; wait $PID 2>/dev/null; }
note() { echo "$1=$2" >> $OUT/notes.txt; }
diff_cpu() { python3 -c "print(round($2 - $1, 3))"; }
load() { cut -d' ' -f1 /proc/loadavg; }
: > $OUT/notes.txt
note start-uptime "$(uptime)"

# One step: runs the command after FILE, its output to OUT/FILE.json, and
# notes the broker's CPU for it and the load before it.
step() {
  local file=$1 c0; shift
  note "$file-load" "$(load)"
  c0=$(cpu)
  "$@" > "$OUT/$file.json" || echo "!! $file failed" >&2
  note "$file-broker-cpu" "$(diff_cpu "$c0" "$(cpu)")"
}

# One workload: SIZE-byte records produced for 8 s, then read back, over
# PROTOCOL (grpc, kafka or kcat), on a fresh broker.
workload() {
  local round=$1 proto=$2 size=$3 f=$1-$2-$3 consumers
  local tune=""; [ "$size" -lt 1024 ] && tune="--linger-ms 5 --batch-bytes 65536"
  serve; $B topic create t $U --partitions 4 >/dev/null
  case $proto in
    grpc) step "$f-produce" $B bench produce $U --topic t --partitions 4 --producers 4 --record-size "$size" $tune --duration 8 --json
      step "$f-consume" $B bench consume $U --topic t --json ;;
    kafka) step "$f-produce" python3 "$KB" produce --bootstrap $K --topic t --producers "$KAFKA_PRODUCERS" --record-size "$size" $tune --duration 8 --json
      if [ $((round % 2)) = 1 ]; then consumers="py kcat"; else consumers="kcat py"; fi
      for c in $consumers; do
        if [ $c = py ]; then step "$f-consume" python3 "$KB" consume --bootstrap $K --topic t --json
        else step "$f-consume-kcat" python3 "$KB" kcat-consume --bootstrap $K --topic t --record-size "$size" --json; fi
      done ;;
    kcat) step "$f-produce" python3 "$KB" kcat-produce --bootstrap $K --topic t --record-size "$size" $tune --duration 8 --json
      step "$f-consume" python3 "$KB" kcat-consume --bootstrap $K --topic t --record-size "$size" --json ;;
  esac
  stop
}

$B bench disk --dir "$S" --json > "$OUT/disk.json"
for round in $(seq "$ROUNDS"); do
  case $((round % 3)) in
    1) order="grpc kafka kcat" ;;
    2) order="kafka kcat grpc" ;;
    0) order="kcat grpc kafka" ;;
  esac
  for size in 1024 100; do
    for proto in $order; do
      echo "== round $round: $proto, $size B" >&2
      workload "$round" "$proto" "$size"
    done
  done
done
$B bench disk --dir "$S" --json > "$OUT/disk_end.json"
note end-uptime "$(uptime)"

python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
notes = dict(l.strip().split("=", 1) for l in open(f"{out}/notes.txt") if "=" in l)
def load(r, proto, size, step):
    d = json.load(open(f"{out}/{r}-{proto}-{size}-{step}.json"))
    broker = float(notes[f"{r}-{proto}-{size}-{step}-broker-cpu"])
    return d["records_per_sec"], d["mb_per_sec"], broker / d["records"] * 1e6, d.get("cpu_us_per_record")
print("start:", notes["start-uptime"].strip())
print("end:  ", notes["end-uptime"].strip())
loads = [float(v) for k, v in notes.items() if k.endswith("-load")]
print(f"1-minute load average before each step: {min(loads):.2f} to {max(loads):.2f}, median {statistics.median(loads):.2f}")
for name in ["disk", "disk_end"]:
    d = json.load(open(f"{out}/{name}.json"))
    print(f"{name}: {d['seq_fdatasync_mb_per_sec']:.0f} MB/s synced sequential; 4 KiB append+fdatasync "
          f"p50 {d['fdatasync_p50_us']:.0f} us, p99 {d['fdatasync_p99_us']:.0f} us")
# Per step, its clients: (label, protocol, step file); gRPC's first.
clients = {
    "produce": [("grpc", "grpc", "produce"), ("confluent-kafka", "kafka", "produce"), ("kcat", "kcat", "produce")],
    "consume": [("grpc", "grpc", "consume"), ("confluent-kafka", "kafka", "consume"),
                ("kcat, c-k's records", "kafka", "consume-kcat"), ("kcat, kcat's records", "kcat", "consume")],
}
med = lambda xs, i: statistics.median(x[i] for x in xs)
print("workload       | client               | rec/s (MB/s)        | /grpc by round   | median | broker us/rec | client us/rec")
for size in (1024, 100):
    for what in ("produce", "consume"):
        base = None
        for label, proto, step in clients[what]:
            xs = [load(r, proto, size, step) for r in range(1, rounds + 1)]
            ratios = median = ""
            if base is None:
                base = xs
            else:
                rs = [a[0] / b[0] for a, b in zip(xs, base)]
                ratios, median = ", ".join(f"{x:.2f}" for x in rs), f"{statistics.median(rs):.2f}"
            print(f"{what} {size:>4} B".ljust(15) + f"| {label:<20} | {med(xs, 0):>10,.0f} ({med(xs, 1):5.1f}) "
                  + f"| {ratios:<16} | {median:<6} | {med(xs, 2):>13.3f} | {med(xs, 3):>13.3f}")
EOF
