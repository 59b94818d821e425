//! The stored batch format alone, no I/O: encoding a batch of records (CRC
//! included) as the produce path does before taking the partition lock, and
//! decoding one (CRC check, zero-copy record slices) as a fetch does.

use std::time::Duration;

use brooklet_benches::random_values;
use brooklet_storage::{EncodedBatch, Record, decode_batch};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const RECORD_BYTES: usize = 100;

fn records(n: usize) -> Vec<Record> {
    random_values(n, RECORD_BYTES)
        .into_iter()
        .enumerate()
        .map(|(i, value)| Record {
            offset_delta: i as u32,
            timestamp_ms: 1_700_000_000_000,
            value: Some(value),
            ..Record::default()
        })
        .collect()
}

fn codec(c: &mut Criterion) {
    let mut encode = c.benchmark_group("batch/encode");
    for n in [1, 64, 1024] {
        let batch = records(n);
        encode.throughput(Throughput::Elements(n as u64));
        encode.bench_with_input(BenchmarkId::from_parameter(n), &batch, |b, batch| {
            b.iter(|| EncodedBatch::encode(batch, None).stored_len());
        });
    }
    encode.finish();

    let mut decode = c.benchmark_group("batch/decode");
    for n in [1, 64, 1024] {
        let value = Bytes::from(EncodedBatch::encode(&records(n), None).into_value(0));
        decode.throughput(Throughput::Elements(n as u64));
        decode.bench_with_input(BenchmarkId::from_parameter(n), &value, |b, value| {
            b.iter(|| decode_batch(value.clone()).expect("valid batch").1.len());
        });
    }
    decode.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = codec
}
criterion_main!(benches);
