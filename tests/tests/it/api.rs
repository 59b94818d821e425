//! The gRPC API, driven with the generated clients: what any client in any
//! language sees.

use std::collections::BTreeSet;

use brooklet_proto::v1 as pb;
use brooklet_tests::{DEADLINE, TestBroker, offsets_and_values, record};
use futures::StreamExt;
use tonic::Code;

fn fetch(topic: &str, partition: u32, offset: u64) -> pb::FetchRequest {
    pb::FetchRequest { topic: topic.into(), partition, offset, max_bytes: 0, max_wait_ms: 0 }
}

#[tokio::test]
async fn produce_and_fetch_round_trip_with_keys_headers_and_timestamps() {
    let broker = TestBroker::start().await;
    broker.create_topic("events", 3).await;
    let records = vec![
        pb::ProduceRecord {
            partition: Some(2),
            key: Some("k1".into()),
            value: "v1".into(),
            headers: vec![
                pb::Header { name: "h".into(), value: "1".into() },
                pb::Header { name: "h".into(), value: "2".into() },
            ],
            timestamp_ms: Some(1_234),
        },
        pb::ProduceRecord { partition: Some(2), value: "".into(), ..Default::default() },
        pb::ProduceRecord { partition: Some(0), value: "v3".into(), ..Default::default() },
    ];
    let before =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let resp = broker
        .producer()
        .produce(pb::ProduceRequest { acks: 0, topic: "events".into(), records, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let acks: Vec<_> = resp.acks.iter().map(|a| (a.partition, a.base_offset, a.record_count)).collect();
    assert_eq!(acks, vec![(0, 0, 1), (2, 0, 2)]);
    assert_eq!(resp.durability(), pb::Durability::Durable, "acks are durable by default");

    let written = broker
        .producer()
        .produce(pb::ProduceRequest {
            topic: "events".into(),
            records: vec![record("w", Some(1))],
            acks: pb::Durability::Written.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(written.durability(), pb::Durability::Written, "the response says which guarantee it carries");
    let fired = broker
        .producer()
        .produce(pb::ProduceRequest {
            topic: "events".into(),
            records: vec![record("n", Some(1))],
            acks: pb::Durability::None.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fired.durability(), pb::Durability::Written, "fire and forget is appended as written");

    let got = broker.consumer().fetch(fetch("events", 2, 0)).await.unwrap().into_inner();
    assert_eq!(got.high_watermark, 2);
    assert_eq!(got.log_start_offset, 0);
    let records: Vec<_> = got.batches.iter().flat_map(|b| b.records.clone()).collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(records[0].value, "v1");
    assert_eq!(records[0].timestamp_ms, 1_234);
    let headers: Vec<_> = records[0].headers.iter().map(|h| (h.name.as_str(), &h.value[..])).collect();
    assert_eq!(headers, vec![("h", &b"1"[..]), ("h", &b"2"[..])]);
    assert_eq!(records[1].key, None);
    assert!(records[1].value.is_empty());
    assert!(records[1].timestamp_ms >= before, "absent timestamps take the append time");
    broker.shutdown().await;
}

#[tokio::test]
async fn keyed_records_land_on_the_kafka_partition_and_keyless_spread() {
    let broker = TestBroker::start().await;
    broker.create_topic("keys", 8).await;
    for key in ["alpha", "beta", "gamma", "delta"] {
        let expected = brooklet_proto::partitioner::partition_for_key(key.as_bytes(), 8);
        for _ in 0..2 {
            let resp = broker
                .producer()
                .produce(pb::ProduceRequest {
                    acks: 0,
                    topic: "keys".into(),
                    records: vec![pb::ProduceRecord {
                        key: Some(key.to_owned().into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(resp.acks[0].partition, expected, "key {key}");
        }
    }
    let mut used = BTreeSet::new();
    for _ in 0..8 {
        let resp = broker
            .producer()
            .produce(pb::ProduceRequest {
                acks: 0,
                topic: "keys".into(),
                records: vec![record("x", None), record("y", None)],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.acks.len(), 1, "a request's keyless records form one batch");
        used.insert(resp.acks[0].partition);
    }
    assert_eq!(used.len(), 8, "keyless requests rotate over every partition");
    broker.shutdown().await;
}

#[tokio::test]
async fn concurrent_producers_get_unique_contiguous_offsets() {
    let broker = TestBroker::start().await;
    broker.create_topic("busy", 1).await;
    let mut tasks = Vec::new();
    for producer in 0..8 {
        let mut client = broker.producer();
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..25 {
                let records = (0..3).map(|j| record(&format!("{producer}-{i}-{j}"), Some(0))).collect();
                let ack = client
                    .produce(pb::ProduceRequest {
                        acks: 0,
                        topic: "busy".into(),
                        records,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .acks[0];
                offsets.extend(ack.base_offset..ack.base_offset + u64::from(ack.record_count));
            }
            offsets
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..600).collect::<Vec<u64>>());

    // Every acknowledged record is readable at its offset, each exactly once.
    let mut consumer = broker.consumer();
    let mut offset = 0;
    let mut values = BTreeSet::new();
    while offset < 600 {
        let got = consumer.fetch(fetch("busy", 0, offset)).await.unwrap().into_inner();
        for (o, v) in offsets_and_values(&got.batches) {
            assert_eq!(o, offset);
            assert!(values.insert(v));
            offset += 1;
        }
    }
    assert_eq!(values.len(), 600);
    broker.shutdown().await;
}

#[tokio::test]
async fn fetch_from_the_middle_of_a_batch_starts_at_that_offset() {
    let broker = TestBroker::start().await;
    broker.create_topic("mid", 1).await;
    let records = (0..10).map(|i| record(&i.to_string(), Some(0))).collect();
    broker
        .producer()
        .produce(pb::ProduceRequest { acks: 0, topic: "mid".into(), records, ..Default::default() })
        .await
        .unwrap();
    let records = (10..15).map(|i| record(&i.to_string(), Some(0))).collect();
    broker
        .producer()
        .produce(pb::ProduceRequest { acks: 0, topic: "mid".into(), records, ..Default::default() })
        .await
        .unwrap();

    let got = broker.consumer().fetch(fetch("mid", 0, 7)).await.unwrap().into_inner();
    let expected: Vec<_> = (7..15).map(|i| (i, i.to_string())).collect();
    assert_eq!(offsets_and_values(&got.batches), expected);

    // max_bytes bounds the response but never below one batch.
    let small = pb::FetchRequest { max_bytes: 1, ..fetch("mid", 0, 3) };
    let got = broker.consumer().fetch(small).await.unwrap().into_inner();
    let expected: Vec<_> = (3..10).map(|i| (i, i.to_string())).collect();
    assert_eq!(offsets_and_values(&got.batches), expected);
    broker.shutdown().await;
}

#[tokio::test]
async fn long_poll_fetch_wakes_when_data_arrives() {
    let broker = TestBroker::start().await;
    broker.create_topic("wait", 1).await;
    let mut consumer = broker.consumer();
    // A wait far longer than the test: only the append can end it.
    let waiting = tokio::spawn(async move {
        consumer.fetch(pb::FetchRequest { max_wait_ms: 60_000, ..fetch("wait", 0, 0) }).await
    });
    // If the fetch reaches the broker after the append it returns at once;
    // the log's own tests pin down the waiting case deterministically.
    let mut producer = broker.producer();
    producer
        .produce(pb::ProduceRequest {
            acks: 0,
            topic: "wait".into(),
            records: vec![record("hello", Some(0))],
            ..Default::default()
        })
        .await
        .unwrap();
    // The fetch asked to wait 60 s; the deadline is shorter, so only the
    // append can have ended it in time.
    let got = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("woken by the append")
        .unwrap()
        .unwrap()
        .into_inner();
    assert_eq!(offsets_and_values(&got.batches), vec![(0, "hello".to_owned())]);

    // A fetch at the high watermark with no wait returns empty at once.
    let empty = broker.consumer().fetch(fetch("wait", 0, 1)).await.unwrap().into_inner();
    assert!(empty.batches.is_empty());
    assert_eq!(empty.high_watermark, 1);
    broker.shutdown().await;
}

#[tokio::test]
async fn subscribe_streams_existing_then_live_records() {
    let broker = TestBroker::start().await;
    broker.create_topic("live", 2).await;
    let mut producer = broker.producer();
    producer
        .produce(pb::ProduceRequest {
            acks: 0,
            topic: "live".into(),
            records: vec![record("old", Some(1))],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut stream = broker
        .consumer()
        .subscribe(pb::SubscribeRequest { topic: "live".into(), partition: 1, offset: 0, max_bytes: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    for i in 0..5 {
        producer
            .produce(pb::ProduceRequest {
                acks: 0,
                topic: "live".into(),
                records: vec![record(&format!("new{i}"), Some(1))],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    while seen.len() < 6 {
        let msg = stream.next().await.expect("stream stays open").expect("no error");
        seen.extend(offsets_and_values(&msg.batches));
    }
    let expected: Vec<_> = std::iter::once("old".to_owned())
        .chain((0..5).map(|i| format!("new{i}")))
        .enumerate()
        .map(|(o, v)| (o as u64, v))
        .collect();
    assert_eq!(seen, expected);
    drop(stream);
    broker.shutdown().await;
}

#[tokio::test]
async fn restart_keeps_records_topics_and_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path()).await;
    broker.create_topic("durable", 2).await;
    for i in 0..3 {
        let records = (0..4).map(|j| record(&format!("{i}.{j}"), Some(i % 2))).collect();
        broker
            .producer()
            .produce(pb::ProduceRequest { acks: 0, topic: "durable".into(), records, ..Default::default() })
            .await
            .unwrap();
    }
    broker
        .groups()
        .commit_offsets(pb::CommitOffsetsRequest {
            member_id: String::new(),
            member_epoch: 0,
            group: "g".into(),
            offsets: vec![pb::PartitionOffset {
                topic: "durable".into(),
                partition: 0,
                offset: 5,
                metadata: Some("m".into()),
            }],
        })
        .await
        .unwrap();
    let topic_id =
        broker.admin().describe_topic(pb::DescribeTopicRequest { name: "durable".into() }).await.unwrap();
    let topic_id = topic_id.into_inner().topic.unwrap().topic_id;

    let broker = broker.restart().await;
    let described = broker
        .admin()
        .describe_topic(pb::DescribeTopicRequest { name: "durable".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.topic.unwrap().topic_id, topic_id);
    let hws: Vec<_> =
        described.partitions.iter().map(|p| (p.partition, p.log_start_offset, p.high_watermark)).collect();
    assert_eq!(hws, vec![(0, 0, 8), (1, 0, 4)]);
    let got = broker.consumer().fetch(fetch("durable", 0, 0)).await.unwrap().into_inner();
    let values: Vec<_> = offsets_and_values(&got.batches).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, vec!["0.0", "0.1", "0.2", "0.3", "2.0", "2.1", "2.2", "2.3"]);
    let offsets = broker
        .groups()
        .fetch_offsets(pb::FetchOffsetsRequest { group: "g".into(), topic: String::new() })
        .await
        .unwrap()
        .into_inner()
        .offsets;
    assert_eq!(offsets.len(), 1);
    assert_eq!((offsets[0].partition, offsets[0].offset, offsets[0].metadata.as_deref()), (0, 5, Some("m")));

    // New appends continue from the recovered high watermark.
    let ack = broker
        .producer()
        .produce(pb::ProduceRequest {
            acks: 0,
            topic: "durable".into(),
            records: vec![record("after", Some(1))],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .acks[0];
    assert_eq!(ack.base_offset, 4);
    broker.shutdown().await;
}

#[tokio::test]
async fn large_produce_batches_are_split_in_storage_but_served_whole() {
    let broker = TestBroker::start().await;
    broker.create_topic("big", 1).await;
    // 6 records of 900 KiB exceed one stored value; they are one produce batch.
    let value = vec![b'x'; 900 << 10];
    let records = (0..6)
        .map(|i| pb::ProduceRecord {
            partition: Some(0),
            value: [vec![i], value.clone()].concat().into(),
            ..Default::default()
        })
        .collect();
    let ack = broker
        .producer()
        .produce(pb::ProduceRequest { acks: 0, topic: "big".into(), records, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ack.acks[0].base_offset, ack.acks[0].record_count), (0, 6));
    let mut offset = 0;
    let mut consumer = broker.consumer();
    while offset < 6 {
        let got = consumer.fetch(fetch("big", 0, offset)).await.unwrap().into_inner();
        for b in &got.batches {
            for r in &b.records {
                assert_eq!(b.base_offset + u64::from(r.offset_delta), offset);
                assert_eq!(r.value[0] as u64, offset);
                assert_eq!(r.value.len(), (900 << 10) + 1);
                offset += 1;
            }
        }
    }
    broker.shutdown().await;
}

async fn expect_code<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    needles: &[&str],
) {
    let status = result.expect_err("request must be rejected");
    assert_eq!(status.code(), code, "{status:?}");
    for needle in needles {
        assert!(status.message().contains(needle), "`{}` should mention `{needle}`", status.message());
    }
}

#[tokio::test]
async fn bad_input_is_rejected_with_a_clear_error_and_changes_nothing() {
    let broker = TestBroker::start().await;
    let mut admin = broker.admin();
    let create = |name: &str, partitions| pb::CreateTopicRequest {
        name: name.into(),
        partitions,
        config: Default::default(),
    };
    for name in ["", ".", "..", "has space", "slash/no", &"x".repeat(250)] {
        expect_code(admin.create_topic(create(name, 1)).await, Code::InvalidArgument, &["name"]).await;
    }
    expect_code(
        admin.create_topic(create("many", 1025)).await,
        Code::InvalidArgument,
        &["partitions", "1024"],
    )
    .await;
    let bad_config = pb::CreateTopicRequest {
        config: [("no.such".to_owned(), "1".to_owned())].into(),
        ..create("cfg", 1)
    };
    expect_code(
        admin.create_topic(bad_config).await,
        Code::InvalidArgument,
        &["no.such", "max.message.bytes"],
    )
    .await;
    let bad_value = pb::CreateTopicRequest {
        config: [("max.message.bytes".to_owned(), "-1".to_owned())].into(),
        ..create("cfg", 1)
    };
    expect_code(admin.create_topic(bad_value).await, Code::InvalidArgument, &["max.message.bytes"]).await;
    assert!(admin.list_topics(pb::ListTopicsRequest {}).await.unwrap().into_inner().topics.is_empty());

    broker.create_topic("t", 2).await;
    expect_code(admin.create_topic(create("t", 1)).await, Code::AlreadyExists, &["t"]).await;
    expect_code(
        admin.describe_topic(pb::DescribeTopicRequest { name: "nope".into() }).await,
        Code::NotFound,
        &["nope"],
    )
    .await;
    expect_code(
        admin.delete_topic(pb::DeleteTopicRequest { name: "nope".into() }).await,
        Code::NotFound,
        &["nope"],
    )
    .await;

    let mut producer = broker.producer();
    let produce = |records| pb::ProduceRequest { acks: 0, topic: "t".into(), records, ..Default::default() };
    expect_code(
        producer
            .produce(pb::ProduceRequest {
                acks: 0,
                topic: "nope".into(),
                records: vec![record("a", None)],
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["nope"],
    )
    .await;
    // A valid record before an invalid one: nothing of the request is appended.
    expect_code(
        producer.produce(produce(vec![record("ok", Some(0)), record("bad", Some(2))])).await,
        Code::InvalidArgument,
        &["records[1].partition", "2"],
    )
    .await;
    let huge =
        pb::ProduceRecord { partition: Some(1), value: vec![0; (1 << 20) + 1].into(), ..Default::default() };
    expect_code(
        producer.produce(produce(vec![record("ok", Some(1)), huge])).await,
        Code::InvalidArgument,
        &["records[1]", "1048576"],
    )
    .await;
    expect_code(producer.produce(produce(vec![])).await, Code::InvalidArgument, &["records"]).await;
    let described =
        admin.describe_topic(pb::DescribeTopicRequest { name: "t".into() }).await.unwrap().into_inner();
    assert!(described.partitions.iter().all(|p| p.high_watermark == 0), "rejected requests appended nothing");

    broker.producer().produce(produce(vec![record("a", Some(0)), record("b", Some(0))])).await.unwrap();
    let mut consumer = broker.consumer();
    expect_code(
        consumer.fetch(fetch("t", 0, 3)).await,
        Code::OutOfRange,
        &["offset 3", "log start offset is 0", "high watermark is 2"],
    )
    .await;
    expect_code(consumer.fetch(fetch("t", 5, 0)).await, Code::InvalidArgument, &["partition", "5"]).await;
    expect_code(consumer.fetch(fetch("nope", 0, 0)).await, Code::NotFound, &["nope"]).await;
    expect_code(
        consumer.fetch(pb::FetchRequest { max_wait_ms: 600_000, ..fetch("t", 0, 0) }).await,
        Code::InvalidArgument,
        &["max_wait_ms", "60000"],
    )
    .await;
    let sub = consumer
        .subscribe(pb::SubscribeRequest { topic: "t".into(), partition: 0, offset: 9, max_bytes: 0 })
        .await;
    expect_code(sub, Code::OutOfRange, &["offset 9"]).await;

    let mut groups = broker.groups();
    let commit = |group: &str, partition, offset| pb::CommitOffsetsRequest {
        member_id: String::new(),
        member_epoch: 0,
        group: group.into(),
        offsets: vec![pb::PartitionOffset { topic: "t".into(), partition, offset, metadata: None }],
    };
    expect_code(groups.commit_offsets(commit("", 0, 1)).await, Code::InvalidArgument, &["group"]).await;
    expect_code(
        groups.commit_offsets(commit(&"g".repeat(256), 0, 1)).await,
        Code::InvalidArgument,
        &["group", "255"],
    )
    .await;
    expect_code(
        groups.commit_offsets(commit("g", 9, 1)).await,
        Code::InvalidArgument,
        &["offsets[0].partition"],
    )
    .await;
    expect_code(groups.commit_offsets(commit("g", 0, 3)).await, Code::OutOfRange, &["high watermark is 2"])
        .await;
    let fetched = groups
        .fetch_offsets(pb::FetchOffsetsRequest { group: "g".into(), topic: String::new() })
        .await
        .unwrap();
    assert!(fetched.into_inner().offsets.is_empty(), "rejected commits stored nothing");
    broker.shutdown().await;
}

#[tokio::test]
async fn deleting_a_topic_removes_its_data_and_offsets_and_ends_waiting_reads() {
    let broker = TestBroker::start().await;
    broker.create_topic("gone", 1).await;
    broker
        .producer()
        .produce(pb::ProduceRequest {
            acks: 0,
            topic: "gone".into(),
            records: vec![record("x", Some(0))],
            ..Default::default()
        })
        .await
        .unwrap();
    broker
        .groups()
        .commit_offsets(pb::CommitOffsetsRequest {
            member_id: String::new(),
            member_epoch: 0,
            group: "g".into(),
            offsets: vec![pb::PartitionOffset {
                topic: "gone".into(),
                partition: 0,
                offset: 1,
                metadata: None,
            }],
        })
        .await
        .unwrap();
    let mut consumer = broker.consumer();
    let waiting = tokio::spawn(async move {
        consumer.fetch(pb::FetchRequest { max_wait_ms: 60_000, ..fetch("gone", 0, 1) }).await
    });
    // The fetch may reach the broker after the delete; it then fails at once
    // with the same code.
    broker.admin().delete_topic(pb::DeleteTopicRequest { name: "gone".into() }).await.unwrap();
    let status = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("ended by the delete")
        .unwrap()
        .expect_err("deleted topic");
    assert_eq!(status.code(), Code::NotFound);

    broker.create_topic("gone", 1).await;
    let described =
        broker.admin().describe_topic(pb::DescribeTopicRequest { name: "gone".into() }).await.unwrap();
    assert_eq!(described.into_inner().partitions[0].high_watermark, 0, "a re-created topic starts empty");
    let offsets = broker
        .groups()
        .fetch_offsets(pb::FetchOffsetsRequest { group: "g".into(), topic: "gone".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(offsets.offsets.is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn health_reports_serving() {
    let broker = TestBroker::start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(broker.channel());
    let resp = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(resp.into_inner().status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
    broker.shutdown().await;
}

/// grpcurl and `buf curl` find the API through reflection, whichever version
/// they speak.
#[tokio::test]
async fn reflection_lists_every_service_in_v1_and_v1alpha() {
    use tonic_reflection::pb::{v1, v1alpha};
    let broker = TestBroker::start().await;
    let expected = [
        "brooklet.v1.AdminService",
        "brooklet.v1.ConsumerService",
        "brooklet.v1.GroupService",
        "brooklet.v1.ProducerService",
        "grpc.health.v1.Health",
    ];

    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(broker.channel());
    let mut responses =
        client.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("v1 reflection answered something else");
    };
    let names: BTreeSet<_> = list.service.into_iter().map(|s| s.name).collect();
    for name in expected {
        assert!(names.contains(name), "v1 reflection lists {name}: {names:?}");
    }

    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(broker.channel());
    let mut responses =
        client.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("v1alpha reflection answered something else");
    };
    let names: BTreeSet<_> = list.service.into_iter().map(|s| s.name).collect();
    for name in expected {
        assert!(names.contains(name), "v1alpha reflection lists {name}: {names:?}");
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn a_topics_flush_mode_sets_the_guarantee_of_requests_that_name_none() {
    let broker = TestBroker::start().await;
    let mut admin = broker.admin();
    let config = [("flush.mode".to_owned(), "written".to_owned())].into();
    admin.create_topic(pb::CreateTopicRequest { name: "fast".into(), partitions: 1, config }).await.unwrap();
    broker.create_topic("safe", 1).await;
    let mut producer = broker.producer();
    for (topic, acks, expected) in [
        ("fast", pb::Durability::Unspecified, pb::Durability::Written),
        ("fast", pb::Durability::Durable, pb::Durability::Durable),
        ("safe", pb::Durability::Unspecified, pb::Durability::Durable),
        ("safe", pb::Durability::Written, pb::Durability::Written),
    ] {
        let resp = producer
            .produce(pb::ProduceRequest {
                topic: topic.into(),
                records: vec![record("x", None)],
                acks: acks.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.durability(), expected, "{topic} with {acks:?}");
    }
    let bad = pb::CreateTopicRequest {
        name: "bad".into(),
        partitions: 1,
        config: [("flush.mode".to_owned(), "sometimes".to_owned())].into(),
    };
    expect_code(admin.create_topic(bad).await, Code::InvalidArgument, &["flush.mode", "durable, written"])
        .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn an_idempotent_produce_with_a_producer_id_never_issued_is_refused() {
    let broker = TestBroker::start().await;
    broker.create_topic("orders", 1).await;
    let request = |producer_id| pb::ProduceRequest {
        topic: "orders".into(),
        records: vec![record("paid", Some(0))],
        producer_id,
        base_sequences: [(0, 0)].into(),
        ..Default::default()
    };
    let refused = broker.producer().produce(request(987_654_321)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("InitProducerId"), "{}", refused.message());
    let fetched = broker.consumer().fetch(fetch("orders", 0, 0)).await.unwrap().into_inner();
    assert_eq!(fetched.high_watermark, 0, "nothing was appended");

    let issued = broker.producer().init_producer_id(pb::InitProducerIdRequest {}).await.unwrap().into_inner();
    let acked = broker.producer().produce(request(issued.producer_id)).await.unwrap().into_inner();
    assert_eq!(acked.acks[0].base_offset, 0);
    broker.shutdown().await;
}

/// A broker whose storage cannot open fails to start, and says why: an
/// embedded broker returns the error from `start_with` (it does not start
/// listening and then reset every connection).
#[tokio::test]
async fn a_second_broker_on_the_same_data_directory_fails_to_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestBroker::start_in(dir.path()).await;
    let err = brooklet_broker::EmbeddedBroker::start_with(brooklet_broker::Config::new(dir.path()))
        .await
        .expect_err("the data directory is in use");
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(chain.contains(&dir.path().display().to_string()), "names the directory: {chain}");
    assert!(
        chain.contains("another broker is using the data directory")
            && chain.contains("its database is locked"),
        "says why: {chain}"
    );
    assert!(!chain.contains("Os {"), "no debug output: {chain}");
    first.shutdown().await;
}
