//! The idempotent producer at the gRPC level: a retried batch whose answer
//! was lost is not appended twice, even across a broker restart, and a gap
//! in the sequence is refused.

use brooklet_proto::v1 as pb;
use brooklet_proto::v1::producer_service_client::ProducerServiceClient;
use brooklet_tests::{TestBroker, eventually, record};
use tonic::Code;
use tonic::transport::Channel;

fn request(producer_id: u64, partition: u32, base_sequence: u64, values: &[&str]) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: "orders".into(),
        records: values.iter().map(|v| record(v, Some(partition))).collect(),
        producer_id,
        base_sequences: [(partition, base_sequence)].into(),
        ..Default::default()
    }
}

async fn new_producer_id(producer: &mut ProducerServiceClient<Channel>) -> u64 {
    producer.init_producer_id(pb::InitProducerIdRequest {}).await.unwrap().into_inner().producer_id
}

/// A broker in `dir` with an `orders` topic of `partitions`, a producer
/// client, and a new producer id.
async fn start_producing(
    dir: &std::path::Path,
    partitions: u32,
) -> (TestBroker, ProducerServiceClient<Channel>, u64) {
    start_producing_with(brooklet_broker::Config::new(dir), partitions).await
}

/// As [`start_producing`], with `config`.
async fn start_producing_with(
    config: brooklet_broker::Config,
    partitions: u32,
) -> (TestBroker, ProducerServiceClient<Channel>, u64) {
    let broker = TestBroker::start_with(config).await;
    broker.create_topic("orders", partitions).await;
    let mut producer = broker.producer();
    let id = new_producer_id(&mut producer).await;
    (broker, producer, id)
}

async fn high_watermark(broker: &TestBroker, partition: u32) -> u64 {
    let d = broker.admin().describe_topic(pb::DescribeTopicRequest { name: "orders".into() }).await.unwrap();
    d.into_inner().partitions[partition as usize].high_watermark
}

#[tokio::test]
async fn retried_batches_are_answered_with_their_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut producer, id) = start_producing(dir.path(), 2).await;
    let other = new_producer_id(&mut producer).await;
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
    let overflow = producer.produce(request(id, 1, u64::MAX, &["y"])).await.unwrap_err();
    assert_eq!(overflow.code(), Code::InvalidArgument);
    assert!(overflow.message().contains("base_sequences[1]"), "{}", overflow.message());
    assert_eq!(high_watermark(&broker, 1).await, 0, "refused requests append nothing");

    // After a restart the broker still knows the batches it has.
    let broker = broker.restart().await;
    let mut producer = broker.producer();
    let retry = producer.produce(request(id, 0, 2, &["c"])).await.unwrap().into_inner().acks[0];
    assert_eq!((retry.base_offset, retry.duplicate), (2, true));
    let next = producer.produce(request(id, 0, 3, &["d"])).await.unwrap().into_inner().acks[0];
    assert_eq!((next.base_offset, next.duplicate), (4, false));
    let newer = new_producer_id(&mut producer).await;
    assert!(newer > other, "producer ids are never reused across restarts");
    broker.shutdown().await;
}

/// A batch large enough to be stored in many parts is still recognised when
/// retried after a restart, when the broker knows it only from the parts'
/// headers.
#[tokio::test]
async fn a_batch_stored_in_many_parts_is_recognised_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut producer, id) = start_producing(dir.path(), 1).await;
    // 40 records of 10 KB: 400 KB, stored in parts of at most 32 KiB.
    let value = "v".repeat(10_000);
    let values: Vec<&str> = (0..40).map(|_| value.as_str()).collect();
    let first = producer.produce(request(id, 0, 0, &values)).await.unwrap().into_inner().acks[0];
    assert_eq!((first.base_offset, first.record_count, first.duplicate), (0, 40, false));
    let fetch = pb::FetchRequest { topic: "orders".into(), ..Default::default() };
    let batches = broker.consumer().fetch(fetch).await.unwrap().into_inner().batches.len();
    // More parts than the 5 batches per producer the broker keeps for
    // matching retries in normal operation.
    assert!(batches > 5, "{batches} stored batches");

    let broker = broker.restart().await;
    let mut producer = broker.producer();
    let retry = producer.produce(request(id, 0, 0, &values)).await.unwrap().into_inner().acks[0];
    assert_eq!((retry.base_offset, retry.record_count, retry.duplicate), (0, 40, true));
    assert_eq!(high_watermark(&broker, 0).await, 40, "nothing appended twice");
    let next = producer.produce(request(id, 0, 40, &["after"])).await.unwrap().into_inner().acks[0];
    assert_eq!((next.base_offset, next.duplicate), (40, false));
    broker.shutdown().await;
}

/// The broker appends a batch, its answer is lost on the way, the client
/// retries: with the idempotent producer (the default) nothing is written
/// twice; without it, the retry writes the batch again.
#[tokio::test]
async fn a_lost_answer_and_a_retry_write_nothing_twice() {
    use brooklet_client::{Producer, ProducerRecord};
    use brooklet_tests::Proxy;

    let broker = TestBroker::start().await;
    broker.create_topic("orders", 2).await;
    let proxy = Proxy::start(&broker).await;

    for (idempotent, partition, expected_copies) in [(true, 0u32, 1usize), (false, 1, 2)] {
        let producer = Producer::builder(proxy.endpoint.clone())
            .idempotent(idempotent)
            .request_timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap();
        // A first record opens the connection and learns the topic.
        let warm = producer.send("orders", ProducerRecord::new("warm").partition(partition)).await.unwrap();
        warm.await.unwrap();

        proxy.mute(true);
        let delivery = producer
            .send("orders", ProducerRecord::new(format!("once-{idempotent}")).partition(partition))
            .await
            .unwrap();
        // The broker has it; the answer is being thrown away.
        let b = &broker;
        eventually("the broker to append the batch", || async move {
            (high_watermark(b, partition).await == 2).then_some(())
        })
        .await;
        // The connection breaks; the client retries on a new one.
        proxy.mute(false);
        proxy.cut();
        let written = tokio::time::timeout(brooklet_tests::DEADLINE, delivery)
            .await
            .expect("the retry is answered")
            .expect("the record is acknowledged");
        // Idempotent: the offset the first attempt got. Otherwise the retry
        // was appended again, after it.
        assert_eq!(written.offset, Some(if idempotent { 1 } else { 2 }), "idempotent: {idempotent}");

        let got = broker
            .consumer()
            .fetch(pb::FetchRequest {
                topic: "orders".into(),
                partition,
                offset: 0,
                max_bytes: 0,
                max_wait_ms: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let copies = brooklet_tests::offsets_and_values(&got.batches)
            .into_iter()
            .filter(|(_, v)| *v == format!("once-{idempotent}"))
            .count();
        assert_eq!(copies, expected_copies, "idempotent: {idempotent}");
        producer.close().await.unwrap();
    }
    broker.shutdown().await;
}

async fn sequence_waits(metrics: std::net::SocketAddr) -> f64 {
    let (_, _, body) = crate::metrics::get(metrics, "/metrics").await;
    crate::metrics::parse_exposition(&body)["brooklet_produce_sequence_waits_total"]
}

/// A broker in `dir` serving metrics, with a one-partition `orders` topic,
/// a producer client, and a new producer id.
async fn start_with_metrics(
    dir: &std::path::Path,
) -> (TestBroker, std::net::SocketAddr, ProducerServiceClient<Channel>, u64) {
    let mut config = brooklet_broker::Config::new(dir);
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let (broker, producer, id) = start_producing_with(config, 1).await;
    let metrics = broker.metrics_addr().expect("metrics are served");
    (broker, metrics, producer, id)
}

type Answer = Result<tonic::Response<pb::ProduceResponse>, tonic::Status>;

/// Sends `request`, ahead of an earlier batch of its producer, on a
/// connection of its own, and returns once the broker counts it waiting.
async fn send_ahead(
    broker: &TestBroker,
    metrics: std::net::SocketAddr,
    request: pb::ProduceRequest,
) -> tokio::task::JoinHandle<Answer> {
    let before = sequence_waits(metrics).await;
    let mut producer = broker.producer();
    let answer = tokio::spawn(async move { producer.produce(request).await });
    eventually("the batch to wait at the broker", || async {
        (sequence_waits(metrics).await > before).then_some(())
    })
    .await;
    answer
}

/// A producer's requests in flight together may reach the broker out of
/// order: a batch ahead of its predecessor waits for it, and the two are
/// appended in sequence order, for a producer the partition knows and for
/// its first batches too.
#[tokio::test]
async fn a_batch_that_overtakes_its_predecessor_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, metrics, mut producer, id) = start_with_metrics(dir.path()).await;

    for (first, second) in [((0, ["a", "b"]), (2, ["c"])), ((3, ["d", "e"]), (5, ["f"]))] {
        let later = send_ahead(&broker, metrics, request(id, 0, second.0, &second.1)).await;
        assert_eq!(high_watermark(&broker, 0).await, first.0, "the later batch is not appended ahead");
        let earlier = producer.produce(request(id, 0, first.0, &first.1)).await.unwrap().into_inner().acks[0];
        assert_eq!(earlier.base_offset, first.0);
        let later = later.await.unwrap().unwrap().into_inner().acks[0];
        assert_eq!((later.base_offset, later.duplicate), (second.0, false));
    }
    let fetch = pb::FetchRequest { topic: "orders".into(), ..Default::default() };
    let batches = broker.consumer().fetch(fetch).await.unwrap().into_inner().batches;
    let values: Vec<String> =
        brooklet_tests::offsets_and_values(&batches).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, ["a", "b", "c", "d", "e", "f"]);

    // A producer the partition does not know, whose earlier batches never
    // come (it was forgotten), is taken as new once the wait is over.
    let stranger = new_producer_id(&mut producer).await;
    let late = producer.produce(request(stranger, 0, 9, &["g"])).await.unwrap().into_inner().acks[0];
    assert_eq!((late.base_offset, late.duplicate), (6, false));
    broker.shutdown().await;
}

/// A batch waiting for its predecessor is refused as soon as its topic is
/// deleted, not appended to the deleted topic once the wait is over.
#[tokio::test]
async fn a_waiting_batch_fails_when_its_topic_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, metrics, mut producer, id) = start_with_metrics(dir.path()).await;
    producer.produce(request(id, 0, 0, &["a"])).await.unwrap();
    let waiting = send_ahead(&broker, metrics, request(id, 0, 5, &["f"])).await;
    broker.admin().delete_topic(pb::DeleteTopicRequest { name: "orders".into() }).await.unwrap();
    let err = waiting.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    broker.shutdown().await;
}
