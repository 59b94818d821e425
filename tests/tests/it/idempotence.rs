//! The idempotent producer at the gRPC level: a retried batch whose answer
//! was lost is not appended twice, even across a broker restart, and a gap
//! in the sequence is refused.

use brooklet_proto::v1 as pb;
use brooklet_tests::{TestBroker, record};
use tonic::Code;

fn request(producer_id: u64, partition: u32, base_sequence: u64, values: &[&str]) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: "orders".into(),
        records: values.iter().map(|v| record(v, Some(partition))).collect(),
        producer_id,
        base_sequences: [(partition, base_sequence)].into(),
        ..Default::default()
    }
}

async fn high_watermark(broker: &TestBroker, partition: u32) -> u64 {
    let d = broker.admin().describe_topic(pb::DescribeTopicRequest { name: "orders".into() }).await.unwrap();
    d.into_inner().partitions[partition as usize].high_watermark
}

#[tokio::test]
async fn retried_batches_are_answered_with_their_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path()).await;
    broker.create_topic("orders", 2).await;
    let mut producer = broker.producer();
    let id = producer.init_producer_id(pb::InitProducerIdRequest {}).await.unwrap().into_inner().producer_id;
    let other =
        producer.init_producer_id(pb::InitProducerIdRequest {}).await.unwrap().into_inner().producer_id;
    assert!(id > 0 && other != id);

    let first = producer.produce(request(id, 0, 0, &["a", "b"])).await.unwrap().into_inner().acks[0];
    assert_eq!((first.base_offset, first.duplicate), (0, false));
    // The same batch again, as a producer retries when its answer was lost.
    let again = producer.produce(request(id, 0, 0, &["a", "b"])).await.unwrap().into_inner().acks[0];
    assert_eq!((again.base_offset, again.record_count, again.duplicate), (0, 2, true));
    assert_eq!(high_watermark(&broker, 0).await, 2, "nothing appended twice");

    let next = producer.produce(request(id, 0, 2, &["c"])).await.unwrap().into_inner().acks[0];
    assert_eq!((next.base_offset, next.duplicate), (2, false));
    // Another producer's sequences are its own.
    let theirs = producer.produce(request(other, 0, 0, &["x"])).await.unwrap().into_inner().acks[0];
    assert_eq!((theirs.base_offset, theirs.duplicate), (3, false));

    let gap = producer.produce(request(id, 0, 7, &["d"])).await.unwrap_err();
    assert_eq!(gap.code(), Code::FailedPrecondition);
    assert!(gap.message().contains("expected sequence 3, got 7"), "{}", gap.message());

    let keyless =
        pb::ProduceRequest { records: vec![record("no partition", None)], ..request(id, 0, 3, &[]) };
    let err = producer.produce(keyless).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("records[0].partition"), "{}", err.message());
    let missing = pb::ProduceRequest { base_sequences: Default::default(), ..request(id, 1, 0, &["y"]) };
    let err = producer.produce(missing).await.unwrap_err();
    assert!(err.message().contains("base_sequences"), "{}", err.message());
    assert_eq!(high_watermark(&broker, 1).await, 0, "refused requests append nothing");

    // After a restart the broker still knows the batches it has.
    let broker = broker.restart().await;
    let mut producer = broker.producer();
    let retry = producer.produce(request(id, 0, 2, &["c"])).await.unwrap().into_inner().acks[0];
    assert_eq!((retry.base_offset, retry.duplicate), (2, true));
    let next = producer.produce(request(id, 0, 3, &["d"])).await.unwrap().into_inner().acks[0];
    assert_eq!((next.base_offset, next.duplicate), (4, false));
    let newer =
        producer.init_producer_id(pb::InitProducerIdRequest {}).await.unwrap().into_inner().producer_id;
    assert!(newer > other, "producer ids are never reused across restarts");
    broker.shutdown().await;
}
