//! The log and storage layers alone, in-process, no network: appending a
//! batch (as a produce request does) and reading it back, at several batch
//! sizes of 100-byte records. `written` isolates the encode + sled insert
//! path; `durable` adds the group-commit flush and fdatasync, so it measures
//! the disk as much as Brooklet. `storage/read_by_log_length` reads one
//! batch at spread-out offsets of logs of 1,000 to 300,000 batches: a fetch
//! seeks by key, so its time must not grow with the log's length.

use std::collections::BTreeMap;
use std::time::Duration;

use brooklet_benches::random_values;
use brooklet_core::{Acks, Core, CoreConfig, FetchOpts, NewRecord};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const RECORD_BYTES: usize = 100;
const BATCH_SIZES: [usize; 3] = [1, 64, 1024];

fn open(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Core {
    let _guard = rt.enter();
    Core::open(&CoreConfig::new(dir), None, &TaskTracker::new()).expect("the core opens")
}

fn batch(n: usize) -> Vec<NewRecord> {
    random_values(n, RECORD_BYTES)
        .into_iter()
        .map(|value| NewRecord { partition: Some(0), value: Some(value), ..NewRecord::default() })
        .collect()
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let core = open(&rt, dir.path());
    let log = core.log();
    rt.block_on(log.create_topic("bench", 1, BTreeMap::new())).expect("topic");
    let mut group = c.benchmark_group("storage/append");
    for n in BATCH_SIZES {
        let records = batch(n);
        group.throughput(Throughput::Bytes((n * RECORD_BYTES) as u64));
        for (name, acks) in [("written", Acks::Written), ("durable", Acks::Durable)] {
            group.bench_with_input(BenchmarkId::new(name, n), &records, |b, records| {
                b.to_async(&rt).iter(|| async {
                    log.produce("bench", records.clone(), Some(acks), None).await.expect("append");
                });
            });
        }
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let core = open(&rt, dir.path());
    let log = core.log();
    rt.block_on(log.create_topic("bench", 1, BTreeMap::new())).expect("topic");
    let mut group = c.benchmark_group("storage/read");
    let cancel = CancellationToken::new();
    for n in BATCH_SIZES {
        // 64 batches of n records; each iteration reads one batch from the middle.
        let mut bases = Vec::new();
        for _ in 0..64 {
            let (acked, _) =
                rt.block_on(log.produce("bench", batch(n), Some(Acks::Durable), None)).expect("append");
            bases.push(acked[0].base_offset);
        }
        let opts = FetchOpts { max_bytes: n * RECORD_BYTES, max_wait: Duration::ZERO };
        group.throughput(Throughput::Bytes((n * RECORD_BYTES) as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            let mut i = 0;
            b.to_async(&rt).iter(|| {
                i = (i + 1) % bases.len();
                let offset = bases[i];
                let (log, cancel) = (&log, &cancel);
                async move {
                    let fetched = log.fetch("bench", 0, offset, opts, cancel).await.expect("fetch");
                    assert!(!fetched.batches.is_empty());
                }
            });
        });
    }
    group.finish();
}

/// Log lengths, in one-record batches, for `storage/read_by_log_length`.
const LOG_LENGTHS: [u64; 3] = [1_000, 30_000, 300_000];

fn read_by_log_length(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let core = open(&rt, dir.path());
    let log = core.log();
    let cancel = CancellationToken::new();
    let opts = FetchOpts { max_bytes: RECORD_BYTES, max_wait: Duration::ZERO };
    let mut group = c.benchmark_group("storage/read_by_log_length");
    for len in LOG_LENGTHS {
        let topic = format!("len{len}");
        rt.block_on(async {
            log.create_topic(&topic, 1, BTreeMap::new()).await.expect("topic");
            let record = batch(1);
            for i in 0..len {
                // Records are readable once durable: the last append waits
                // for that, and publishes every record before it too.
                let acks = if i + 1 == len { Acks::Durable } else { Acks::Written };
                log.produce(&topic, record.clone(), Some(acks), None).await.expect("append");
            }
        });
        group.bench_function(BenchmarkId::from_parameter(len), |b| {
            let mut i = 0u64;
            b.to_async(&rt).iter(|| {
                // Offsets spread over the whole log (a stride coprime with
                // every length), not one hot spot.
                i = (i + 7_919) % len;
                let (log, cancel, topic) = (&log, &cancel, topic.as_str());
                async move {
                    let fetched = log.fetch(topic, 0, i, opts, cancel).await.expect("fetch");
                    assert_eq!(fetched.batches.first().map(|b| b.base_offset()), Some(i));
                }
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = append, read, read_by_log_length
}
criterion_main!(benches);
