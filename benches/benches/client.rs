//! The client's producer batching over loopback against an embedded broker:
//! how many 100-byte records a second one `Producer` gets acknowledged when
//! records are sent back to back and batched per partition (written acks,
//! so the disk's sync is not what is measured), at two linger settings.

use std::time::Duration;

use brooklet_benches::random_values;
use brooklet_broker::EmbeddedBroker;
use brooklet_client::{Admin, Durability, NewTopic, Producer, ProducerRecord};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const RECORDS: usize = 10_000;

fn batching(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let broker = rt.block_on(EmbeddedBroker::start()).expect("start");
    rt.block_on(async {
        Admin::connect(broker.endpoint()).expect("admin").create_topic("bench", NewTopic::new(4)).await
    })
    .expect("topic");
    let values = random_values(RECORDS, 100);
    let mut group = c.benchmark_group("client/produce_batched");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for linger_ms in [0u64, 5] {
        let producer = rt.block_on(async {
            Producer::builder(broker.endpoint())
                .linger(Duration::from_millis(linger_ms))
                .acks(Durability::Written)
                .build()
                .expect("producer")
        });
        group.bench_with_input(BenchmarkId::new("linger_ms", linger_ms), &values, |b, values| {
            b.to_async(&rt).iter(|| async {
                let mut deliveries = Vec::with_capacity(values.len());
                for (i, v) in values.iter().enumerate() {
                    let record = ProducerRecord::new(v.clone()).partition((i % 4) as u32);
                    deliveries.push(producer.send("bench", record).await.expect("send"));
                }
                for d in deliveries {
                    d.await.expect("acknowledged");
                }
            });
        });
    }
    group.finish();
    rt.block_on(broker.shutdown()).expect("shutdown");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(5));
    targets = batching
}
criterion_main!(benches);
