#!/usr/bin/env bash
# Two broker builds under the same load, alternating, each workload on a
# fresh broker: W1 and W2 of targets.sh, then consuming W2. Prints, per run,
# throughput and the broker's CPU per record (its own metric); the consumer's
# CPU per record is the bench's. Usage:
#
#   GEN=target/release/brooklet benches/scripts/ab.sh BEFORE_BINARY AFTER_BINARY [SCRATCH_DIR]
#
# GEN is the load generator, the same for both (default: AFTER_BINARY);
# ORDER="after before" runs the second build first in each round.
set -u
BEFORE=$1
AFTER=$2
GEN=${GEN:-$AFTER}
W=${3:-brooklet-ab}; mkdir -p $W
U="--broker http://127.0.0.1:7171"
cpu() { curl -s 127.0.0.1:9171/metrics | awk '/^brooklet_process_cpu_seconds_total/{print $2}'; }
start() { rm -rf $W/data; $1 serve --data-dir $W/data --listen 127.0.0.1:7171 --metrics-listen 127.0.0.1:9171 --log-level warn & PID=$!;
  for i in $(seq 100); do curl -sf 127.0.0.1:9171/readyz >/dev/null && break; sleep 0.1; done; }
stop() { kill $PID; wait $PID 2>/dev/null; }
j() { python3 -c "import json,sys; d=json.load(sys.stdin); print(' '.join(str(d.get(k)) for k in sys.argv[1:]))" "$@"; }
for round in 1 2 3; do
 for name in ${ORDER:-before after}; do
  B=$BEFORE; [ $name = after ] && B=$AFTER
  start $B; c0=$(cpu)
  w1=$($GEN bench produce $U --topic t1k --partitions 4 --producers 4 --record-size 1024 --duration 8 --json 2>/dev/null | j records_per_sec mb_per_sec)
  c1=$(cpu); stop
  start $B; c2=$(cpu)
  w2=$($GEN bench produce $U --topic t100 --partitions 4 --producers 4 --record-size 100 --linger-ms 5 --batch-bytes 65536 --duration 8 --json 2>/dev/null | j records_per_sec records)
  c3=$(cpu)
  co=$($GEN bench consume $U --topic t100 --json 2>/dev/null | j records_per_sec records cpu_us_per_record)
  c4=$(cpu); stop
  set -- $w2; w2rec=$2; set -- $co; corec=$2
  echo "round $round $name | W1 rec/s MB/s: $w1 broker_cpu_s $(python3 -c "print(round($c1-$c0,2))") | W2 rec/s: ${w2%% *} broker_us/rec $(python3 -c "print(round(($c3-$c2)/$w2rec*1e6,3))") | consume rec/s records consumer_us/rec: $co broker_us/rec $(python3 -c "print(round(($c4-$c3)/$corec*1e6,3))")"
 done
done
