#!/usr/bin/env bash
# One run of the targets script of docs/performance.md: the disk, the storage
# engine, and a broker on 127.0.0.1:7171 (metrics on :9171), each throughput
# workload on a fresh broker. Usage, from the repository's root after
# `cargo build --release -p brooklet`:
#
#   benches/scripts/targets.sh OUT_DIR [SCRATCH_DIR]
#
# Each bench's JSON goes to OUT_DIR/<name>.json, the broker's own figures to
# OUT_DIR/notes.txt; benches/scripts/summary.py OUT_DIR... prints them
# against the targets. SCRATCH_DIR (default ./brooklet-perf) must be on the
# disk to measure; it is emptied between workloads.
set -u
B=${B:-target/release/brooklet}
OUT=$1; mkdir -p "$OUT"
S=${2:-brooklet-perf}; mkdir -p "$S"
U="--broker http://127.0.0.1:7171"
M=127.0.0.1:9171
metric() { curl -s $M/metrics | awk -v n="$1" '$1 == n {print $2}'; }
cpu() { metric brooklet_process_cpu_seconds_total; }
rss() { metric brooklet_process_resident_memory_bytes; }
produces() { curl -s $M/metrics | awk '/^brooklet_requests_total\{rpc="brooklet.v1.ProducerService\/Produce",code="OK"\}/{s+=$2} END{print s+0}'; }
produced() { curl -s $M/metrics | awk '/^brooklet_records_produced_total/{s+=$2} END{print s+0}'; }
serve() { rm -rf $S/data; $B serve --data-dir $S/data --listen 127.0.0.1:7171 --metrics-listen $M --log-level warn "$@" & PID=$!;
  for i in $(seq 200); do curl -sf $M/readyz >/dev/null && break; sleep 0.05; done; }
stop() { kill $PID; wait $PID 2>/dev/null; }
js() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
note() { echo "$1=$2" >> $OUT/notes.txt; }
: > $OUT/notes.txt

$B bench disk --dir $S --json > $OUT/disk.json
$B bench storage --dir $S --record-size 1024 --batch-bytes 262144 --duration 5 --writers 4 --json > $OUT/st1k.json
$B bench storage --dir $S --record-size 100 --batch-bytes 65536 --duration 5 --writers 4 --json > $OUT/st100.json

serve; note idle_rss $(rss); c0=$(cpu)
$B bench produce $U --topic t1k --partitions 4 --producers 4 --record-size 1024 --duration 8 --json > $OUT/w1.json
note w1_broker_cpu $(python3 -c "print($(cpu)-$c0)"); stop

serve; c0=$(cpu)
$B bench produce $U --topic t100 --partitions 4 --producers 4 --record-size 100 --linger-ms 5 --batch-bytes 65536 --duration 8 --json > $OUT/w2.json
c1=$(cpu); note w2_broker_cpu $(python3 -c "print($c1-$c0)"); note loaded_rss $(rss)
$B bench consume $U --topic t100 --json > $OUT/co.json
note co_broker_cpu $(python3 -c "print($(cpu)-$c1)"); stop

serve
$B bench produce $U --topic t100p --partitions 100 --producers 4 --record-size 100 --linger-ms 5 --batch-bytes 65536 --duration 8 --json > $OUT/w3.json
stop

R2=$(js $OUT/w2.json "int(d['records_per_sec']/2)"); R1=$(js $OUT/w1.json "int(d['records_per_sec']/2)")
note half100 $R2; note half1k $R1
serve; p0=$(produces); r0=$(produced)
$B bench produce $U --topic h100 --partitions 4 --producers 4 --record-size 100 --linger-ms 1 --batch-bytes 65536 --rate $R2 --duration 8 --json > $OUT/h100.json
p1=$(produces); r1=$(produced)
$B bench produce $U --topic h1k --partitions 4 --producers 4 --record-size 1024 --linger-ms 1 --rate $R1 --duration 8 --json > $OUT/h1k.json
p2=$(produces); r2=$(produced); stop
# The engine at the same rates and with the batches the broker received.
B100=$(python3 -c "print(max(100, int(($r1-$r0)/($p1-$p0))*100))"); B1K=$(python3 -c "print(max(1024, int(($r2-$r1)/($p2-$p1))*1024))")
note batch100 $B100; note batch1k $B1K
$B bench storage --dir $S --record-size 100 --batch-bytes $B100 --writers 4 --rate $R2 --duration 8 --json > $OUT/sh100.json
$B bench storage --dir $S --record-size 1024 --batch-bytes $B1K --writers 4 --rate $R1 --duration 8 --json > $OUT/sh1k.json
$B bench storage --dir $S --record-size 100 --batch-bytes 65536 --duration 5 --writers 4 --json > $OUT/st100_end.json
$B bench disk --dir $S --json > $OUT/disk_end.json
