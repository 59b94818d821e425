//! Consumer-group and time-lookup RPCs at the gRPC level: what any client
//! sees of membership, fencing and offsets by time.

use std::time::Duration;

use brooklet_broker::Config;
use brooklet_proto::v1 as pb;
use brooklet_tests::TestBroker;
use tonic::Code;

fn produce(topic: &str, partition: u32, timestamps: &[i64], value_len: usize) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: topic.into(),
        records: timestamps
            .iter()
            .map(|ts| pb::ProduceRecord {
                partition: Some(partition),
                value: vec![b'v'; value_len].into(),
                timestamp_ms: Some(*ts),
                ..Default::default()
            })
            .collect(),
        acks: pb::Durability::Durable.into(),
        ..Default::default()
    }
}

/// The answer by brute force: the first offset whose timestamp is >= t.
fn expected(all: &[i64], t: i64) -> (u64, Option<i64>) {
    match all.iter().position(|ts| *ts >= t) {
        Some(i) => (i as u64, Some(all[i])),
        None => (all.len() as u64, None),
    }
}

#[tokio::test]
async fn offsets_by_time_match_a_full_scan_across_batches_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path()).await;
    // These timestamps are from 1970: keep them whatever their age.
    let config = [("retention.ms".to_owned(), "-1".to_owned())].into();
    broker
        .admin()
        .create_topic(pb::CreateTopicRequest { name: "clock".into(), partitions: 2, config })
        .await
        .unwrap();
    // 64 batches of 20 records of 1 KiB (about 1.3 MiB, several index
    // intervals), timestamps mostly rising with some out of order.
    let mut all = Vec::new();
    for batch in 0..64i64 {
        let ts: Vec<i64> = (0..20i64)
            .map(|i| 1_000_000 + batch * 1_000 + i * 10 - if i % 7 == 3 { 1_500 } else { 0 })
            .collect();
        broker.producer().produce(produce("clock", 0, &ts, 1024)).await.unwrap();
        all.extend(ts);
    }

    let probes: Vec<i64> =
        [0, 999_000, 1_000_000, 1_000_005, 1_017_333, 1_031_190, 1_063_190, 1_063_191, 9_999_999]
            .into_iter()
            .chain((0..64).map(|b| 1_000_000 + b * 1_000 + 35))
            .collect();
    let check = |broker: &TestBroker| {
        let mut consumer = broker.consumer();
        let probes = probes.clone();
        let all = all.clone();
        async move {
            for t in probes {
                let resp = consumer
                    .list_offsets(pb::ListOffsetsRequest {
                        topic: "clock".into(),
                        partitions: vec![0, 1],
                        timestamp_ms: t,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let p0 = &resp.offsets[0];
                assert_eq!((p0.offset, p0.timestamp_ms), expected(&all, t), "timestamp {t}");
                let p1 = &resp.offsets[1];
                assert_eq!(
                    (p1.partition, p1.offset, p1.timestamp_ms),
                    (1, 0, None),
                    "an empty partition answers its end"
                );
            }
        }
    };
    check(&broker).await;
    let broker = broker.restart().await;
    check(&broker).await;

    // Appends after the restart extend the recovered index.
    broker.producer().produce(produce("clock", 0, &[5_000_000, 5_000_001], 10)).await.unwrap();
    let resp = broker
        .consumer()
        .list_offsets(pb::ListOffsetsRequest {
            topic: "clock".into(),
            partitions: vec![0],
            timestamp_ms: 4_000_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((resp.offsets[0].offset, resp.offsets[0].timestamp_ms), (all.len() as u64, Some(5_000_000)));

    let err = broker
        .consumer()
        .list_offsets(pb::ListOffsetsRequest { topic: "clock".into(), partitions: vec![2], timestamp_ms: 0 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("partitions[0]"), "{}", err.message());
    broker.shutdown().await;
}

fn heartbeat(
    group: &str,
    member_id: &str,
    epoch: i32,
    owned: &[pb::TopicPartitions],
) -> pb::HeartbeatRequest {
    pb::HeartbeatRequest {
        group: group.into(),
        member_id: member_id.into(),
        member_epoch: epoch,
        topics: if member_id.is_empty() { vec!["jobs".into()] } else { vec![] },
        owned: owned.to_vec(),
        client_id: "test".into(),
        session_timeout_ms: 0,
    }
}

fn count(tps: &[pb::TopicPartitions]) -> usize {
    tps.iter().map(|t| t.partitions.len()).sum()
}

#[tokio::test]
async fn membership_assignment_fencing_and_description() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.core.groups.heartbeat_interval = Duration::from_millis(100);
    // The members below heartbeat only when the test does, and ask for the
    // default session: one no pause of a loaded machine between two steps
    // can outlast (the broker's own default is 10 s).
    config.core.groups.default_session_timeout = Duration::from_secs(120);
    let broker = TestBroker::start_with(config).await;
    broker.create_topic("jobs", 4).await;
    broker.producer().produce(produce("jobs", 0, &[1, 2, 3], 1)).await.unwrap();
    let mut groups = broker.groups();

    let a = groups.heartbeat(heartbeat("g", "", 0, &[])).await.unwrap().into_inner();
    assert_eq!(count(&a.assignment), 4, "no rebalance delay: the first member gets every partition at once");
    let b = groups.heartbeat(heartbeat("g", "", 0, &[])).await.unwrap().into_inner();
    assert_eq!(count(&b.assignment), 0, "nothing is free until the first member releases");

    // a learns it must give two up, releases them, and reports it.
    let a = groups
        .heartbeat(heartbeat("g", &a.member_id, a.member_epoch, &a.assignment))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count(&a.assignment), 2);
    assert!(a.heartbeat_interval_ms <= 100);
    let a = groups
        .heartbeat(heartbeat("g", &a.member_id, a.member_epoch, &a.assignment))
        .await
        .unwrap()
        .into_inner();
    let b = groups.heartbeat(heartbeat("g", &b.member_id, b.member_epoch, &[])).await.unwrap().into_inner();
    assert_eq!(count(&b.assignment), 2, "released partitions move");

    let described =
        groups.describe_group(pb::DescribeGroupRequest { group: "g".into() }).await.unwrap().into_inner();
    assert_eq!(described.members.len(), 2);
    assert!(described.members.iter().all(|m| count(&m.assignment) == 2 && m.client_id == "test"));
    assert!(described.members.iter().all(|m| m.host.starts_with("127.0.0.1:")));
    assert_eq!(described.partitions.len(), 4);
    let p0 = described.partitions.iter().find(|p| p.partition == 0).unwrap();
    assert_eq!((p0.committed_offset, p0.high_watermark, p0.lag), (None, 3, 3));
    assert!(!p0.member_id.is_empty());

    // Commits: the owner may, a non-owner may not, an outsider may not while
    // the group has members.
    let owner = if p0.member_id == a.member_id { &a } else { &b };
    let other = if p0.member_id == a.member_id { &b } else { &a };
    let commit = |member: &pb::HeartbeatResponse| pb::CommitOffsetsRequest {
        group: "g".into(),
        offsets: vec![pb::PartitionOffset { topic: "jobs".into(), partition: 0, offset: 2, metadata: None }],
        member_id: member.member_id.clone(),
        member_epoch: member.member_epoch,
    };
    groups.commit_offsets(commit(owner)).await.unwrap();
    let err = groups.commit_offsets(commit(other)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("does not own jobs/0"), "{}", err.message());
    let outsider = pb::CommitOffsetsRequest { member_id: String::new(), member_epoch: 0, ..commit(owner) };
    let err = groups.commit_offsets(outsider).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let stale = pb::CommitOffsetsRequest { member_epoch: owner.member_epoch + 10, ..commit(owner) };
    assert_eq!(groups.commit_offsets(stale).await.unwrap_err().code(), Code::FailedPrecondition);

    let described =
        groups.describe_group(pb::DescribeGroupRequest { group: "g".into() }).await.unwrap().into_inner();
    let p0 = described.partitions.iter().find(|p| p.partition == 0).unwrap();
    assert_eq!((p0.committed_offset, p0.lag), (Some(2), 1));

    // Reset and delete wait for the members to leave.
    let reset = pb::ResetOffsetsRequest {
        group: "g".into(),
        topic: "jobs".into(),
        to: Some(pb::reset_offsets_request::To::Earliest(true)),
    };
    assert_eq!(groups.reset_offsets(reset.clone()).await.unwrap_err().code(), Code::FailedPrecondition);
    let del = pb::DeleteGroupRequest { group: "g".into() };
    assert_eq!(groups.delete_group(del.clone()).await.unwrap_err().code(), Code::FailedPrecondition);

    for m in [&a, &b] {
        let left = groups.heartbeat(heartbeat("g", &m.member_id, -1, &[])).await.unwrap().into_inner();
        assert_eq!(left.member_epoch, -1);
    }
    // A member that left is fenced.
    assert_eq!(groups.commit_offsets(commit(owner)).await.unwrap_err().code(), Code::FailedPrecondition);

    let listed = groups.list_groups(pb::ListGroupsRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.groups.len(), 1);
    assert_eq!((listed.groups[0].state(), listed.groups[0].members), (pb::GroupState::Empty, 0));

    let reset = groups.reset_offsets(reset).await.unwrap().into_inner();
    assert_eq!(reset.offsets.len(), 4);
    assert!(reset.offsets.iter().all(|o| o.offset == 0));
    let latest = pb::ResetOffsetsRequest {
        to: Some(pb::reset_offsets_request::To::Latest(true)),
        ..Default::default()
    };
    let latest = groups
        .reset_offsets(pb::ResetOffsetsRequest { group: "g".into(), topic: "jobs".into(), ..latest })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.offsets.iter().find(|o| o.partition == 0).unwrap().offset, 3);

    groups.delete_group(del.clone()).await.unwrap();
    assert_eq!(groups.delete_group(del).await.unwrap_err().code(), Code::NotFound);
    let err = groups.describe_group(pb::DescribeGroupRequest { group: "g".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    broker.shutdown().await;
}

#[tokio::test]
async fn bad_heartbeats_are_rejected() {
    let broker = TestBroker::start().await;
    broker.create_topic("jobs", 1).await;
    let mut groups = broker.groups();
    let no_topics = pb::HeartbeatRequest { topics: vec![], ..heartbeat("g", "", 0, &[]) };
    let err = groups.heartbeat(no_topics).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("topics"), "{}", err.message());
    let short = pb::HeartbeatRequest { session_timeout_ms: 5, ..heartbeat("g", "", 0, &[]) };
    let err = groups.heartbeat(short).await.unwrap_err();
    assert!(
        err.message().contains("session_timeout_ms") && err.message().contains("1000"),
        "{}",
        err.message()
    );
    let err = groups.heartbeat(heartbeat("", "", 0, &[])).await.unwrap_err();
    assert!(err.message().contains("group"), "{}", err.message());
    broker.shutdown().await;
}
