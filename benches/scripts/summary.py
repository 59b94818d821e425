"""Prints the runs of benches/scripts/targets.sh against the targets of
docs/performance.md: python3 benches/scripts/summary.py OUT_DIR [OUT_DIR...]"""
import json, sys, os
runs = sys.argv[1:]
def J(r, n):
    p = f'{r}/{n}.json'
    return json.load(open(p)) if os.path.exists(p) and os.path.getsize(p) > 0 else None
def notes(r):
    d = {}
    for l in open(f'{r}/notes.txt'):
        k, v = l.strip().split('=', 1); d[k] = float(v)
    return d
for r in runs:
    n = notes(r); g = lambda x: J(r, x)
    disk, disk_end = g('disk'), g('disk_end')
    st1k, st100, st100e = g('st1k'), g('st100'), g('st100_end')
    w1, w2, w3, co, h100, h1k, sh100, sh1k = (g(x) for x in ['w1','w2','w3','co','h100','h1k','sh100','sh1k'])
    print(f"== {r}")
    print(f" disk: {disk['seq_fdatasync_mb_per_sec']:.0f} MB/s; fdatasync p50/p99 {disk['fdatasync_p50_us']}/{disk['fdatasync_p99_us']} us; end {disk_end and disk_end['seq_fdatasync_mb_per_sec']:.0f} MB/s p99 {disk_end and disk_end['fdatasync_p99_us']}")
    print(f" storage 1k: {st1k['mb_per_sec']:.1f} MB/s p99 {st1k['latency_ms']['p99']}; 100B: {st100['records_per_sec']/1e3:.0f} k/s; end {st100e and st100e['records_per_sec']/1e3:.0f} k/s")
    print(f" W1: {w1['mb_per_sec']:.1f} MB/s = {w1['mb_per_sec']/st1k['mb_per_sec']:.2f} x storage; broker cpu us/rec {n['w1_broker_cpu']/w1['records']*1e6:.2f}")
    print(f" W2: {w2['records_per_sec']/1e3:.0f} k/s = {w2['records_per_sec']/st100['records_per_sec']:.2f} x storage ({w2['records_per_sec']/st100e['records_per_sec'] if st100e else 0:.2f} end); gen cpu {w2['cpu_us_per_record']:.2f} broker {n['w2_broker_cpu']/w2['records']*1e6:.2f} us/rec")
    print(f" W3 100p: {w3['records_per_sec']/1e3:.0f} k/s = {w3['records_per_sec']/w2['records_per_sec']:.2f} of W2")
    print(f" consume: {co['records_per_sec']/1e6:.2f} M/s; consumer {co['cpu_us_per_record']:.3f} broker {n['co_broker_cpu']/co['records']*1e6:.3f} us/rec")
    print(f" RSS idle {n['idle_rss']/1e6:.1f} MB loaded {n['loaded_rss']/1e6:.0f} MB")
    if h100 and sh100:
        print(f" half 100B: rate {n['half100']:.0f} got {h100['records_per_sec']/1e3:.0f} k/s p50 {h100['latency_ms']['p50']} p99 {h100['latency_ms']['p99']} ms; engine at same rate, batch {n['batch100']:.0f} B: p50 {sh100['latency_ms']['p50']} p99 {sh100['latency_ms']['p99']} ms ({sh100['records_per_sec']/1e3:.0f} k/s) -> ratio {h100['latency_ms']['p99']/sh100['latency_ms']['p99']:.2f}; vs disk p99 {h100['latency_ms']['p99']*1000/disk['fdatasync_p99_us']:.1f}x")
    if h1k and sh1k:
        print(f" half 1k: rate {n['half1k']:.0f} got {h1k['records_per_sec']/1e3:.0f} k/s p50 {h1k['latency_ms']['p50']} p99 {h1k['latency_ms']['p99']} ms; engine same rate batch {n['batch1k']:.0f} B: p50 {sh1k['latency_ms']['p50']} p99 {sh1k['latency_ms']['p99']} ms -> ratio {h1k['latency_ms']['p99']/sh1k['latency_ms']['p99']:.2f}; vs disk p99 {h1k['latency_ms']['p99']*1000/disk['fdatasync_p99_us']:.1f}x")
