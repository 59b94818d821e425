//! A real broker over loopback gRPC.
//!
//! - `broker/start_to_first_request`: an embedded broker from nothing to its
//!   first answered request (a new temporary directory, sled open, bind,
//!   connect, ListTopics). What a test waits for to get its own broker.
//! - `broker/start_and_shutdown`: the same plus a graceful shutdown (final
//!   sync, sled closed, directory removed).
//! - `broker/produce`: one produce request → acknowledgement, 100-byte
//!   records, per batch size and ack mode: the network and gRPC cost on top of
//!   `storage/append`.
//! - `broker/fetch`: one fetch of a stored batch: the network and gRPC cost on
//!   top of `storage/read`.

use std::time::Duration;

use brooklet_benches::random_values;
use brooklet_broker::EmbeddedBroker;
use brooklet_proto::v1 as pb;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pb::admin_service_client::AdminServiceClient;
use pb::consumer_service_client::ConsumerServiceClient;
use pb::producer_service_client::ProducerServiceClient;
use tonic::transport::Channel;

const RECORD_BYTES: usize = 100;

async fn connect(broker: &EmbeddedBroker) -> Channel {
    Channel::from_shared(broker.endpoint()).expect("endpoint").connect().await.expect("connect")
}

fn records(n: usize) -> Vec<pb::ProduceRecord> {
    random_values(n, RECORD_BYTES)
        .into_iter()
        .map(|value| pb::ProduceRecord { partition: Some(0), value, ..Default::default() })
        .collect()
}

fn start(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Start to first answered request only: the shutdown after each
    // iteration (a final sync and closing sled) is left out of the time.
    c.bench_function("broker/start_to_first_request", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = std::time::Instant::now();
                let broker = EmbeddedBroker::start().await.expect("start");
                let mut admin = AdminServiceClient::new(connect(&broker).await);
                admin.list_topics(pb::ListTopicsRequest {}).await.expect("first request");
                total += started.elapsed();
                broker.shutdown().await.expect("shutdown");
            }
            total
        });
    });
    c.bench_function("broker/start_and_shutdown", |b| {
        b.to_async(&rt).iter(|| async {
            let broker = EmbeddedBroker::start().await.expect("start");
            let mut admin = AdminServiceClient::new(connect(&broker).await);
            admin.list_topics(pb::ListTopicsRequest {}).await.expect("first request");
            broker.shutdown().await.expect("shutdown");
        });
    });
}

fn produce_and_fetch(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let broker = rt.block_on(EmbeddedBroker::start()).expect("start");
    let channel = rt.block_on(connect(&broker));
    let create = pb::CreateTopicRequest { name: "bench".into(), partitions: 1, config: Default::default() };
    rt.block_on(AdminServiceClient::new(channel.clone()).create_topic(create)).expect("topic");

    let mut group = c.benchmark_group("broker/produce");
    for n in [1, 64, 1024] {
        let batch = records(n);
        group.throughput(Throughput::Bytes((n * RECORD_BYTES) as u64));
        for (name, acks) in [("written", pb::Durability::Written), ("durable", pb::Durability::Durable)] {
            group.bench_with_input(BenchmarkId::new(name, n), &batch, |b, batch| {
                let client = ProducerServiceClient::new(channel.clone());
                b.to_async(&rt).iter(|| {
                    let mut client = client.clone();
                    let request = pb::ProduceRequest {
                        topic: "bench".into(),
                        records: batch.clone(),
                        acks: acks.into(),
                        ..Default::default()
                    };
                    async move { client.produce(request).await.expect("produce") }
                });
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("broker/fetch");
    for n in [1, 64, 1024] {
        let request =
            pb::ProduceRequest { topic: "bench".into(), records: records(n), acks: 0, ..Default::default() };
        let acked =
            rt.block_on(ProducerServiceClient::new(channel.clone()).produce(request)).expect("produce");
        let offset = acked.into_inner().acks[0].base_offset;
        group.throughput(Throughput::Bytes((n * RECORD_BYTES) as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            let client = ConsumerServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
            b.to_async(&rt).iter(|| {
                let mut client = client.clone();
                let request = pb::FetchRequest {
                    topic: "bench".into(),
                    partition: 0,
                    offset,
                    max_bytes: (n * RECORD_BYTES) as u32,
                    max_wait_ms: 0,
                };
                async move { client.fetch(request).await.expect("fetch") }
            });
        });
    }
    group.finish();
    rt.block_on(broker.shutdown()).expect("shutdown");
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = start, produce_and_fetch
}
criterion_main!(benches);
