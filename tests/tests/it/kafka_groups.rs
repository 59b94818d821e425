//! Kafka's classic consumer groups: kafka-python consumers join, split
//! partitions, commit and resume against the broker (`tests/kafka/groups.py`),
//! and the same groups as Brooklet's own tools show them.
//!
//! The script prints one fact a line; where the test must look at the group
//! while the consumers are live, the script waits for a line on its stdin.

use std::process::Stdio;

use brooklet_client::{GroupState, ResetTo};
use brooklet_proto::v1 as pb;
use brooklet_tests::{
    DEADLINE, KafkaClient, eventually, finish, kafka_client_available, kafka_script, next_line, pipes, rest,
    start_kafka,
};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};

/// `groups.py MODE ADDR TOPIC GROUP`, its stdin and stdout piped.
fn script(mode: &str, addr: &str, topic: &str, group: &str) -> Child {
    kafka_script("python3", &["groups.py", mode, addr, topic, group])
}

/// Tells a waiting script to go on.
async fn go(stdin: &mut ChildStdin) {
    stdin.write_all(b"go\n").await.unwrap();
    stdin.flush().await.unwrap();
}

#[tokio::test]
async fn a_kafka_consumer_resumes_from_its_groups_committed_offsets() {
    if !kafka_client_available(KafkaClient::KafkaPython).await {
        return;
    }
    let (_dir, broker, addr, admin) = start_kafka().await;
    let done = finish(script("resume", &addr, "orders", "billing")).await;
    assert!(done.success, "groups.py failed:\nstdout:\n{}\nstderr:\n{}", done.stdout, done.stderr);
    let first: Vec<String> = (0..10).map(|i| format!("{i}:a{i}")).collect();
    let second: Vec<String> = (0..5).map(|i| format!("{}:b{i}", 10 + i)).collect();
    assert_eq!(
        done.stdout.lines().collect::<Vec<_>>(),
        [format!("first {}", first.join(" ")), format!("second {}", second.join(" "))],
        "the second consumer reads only what came after the first one's commit"
    );

    // Brooklet's tools see the Kafka group and its position.
    let d = admin.describe_group("billing").await.unwrap();
    assert_eq!((d.state, d.members.len(), d.kind), (GroupState::Empty, 0, None));
    let p = &d.partitions[0];
    assert_eq!((p.topic.as_str(), p.committed_offset, p.high_watermark, p.lag), ("orders", Some(15), 15, 0));
    // An empty Kafka group's offsets can be reset.
    let reset = admin.reset_offsets("billing", "orders", ResetTo::Offset(12)).await.unwrap();
    assert_eq!(reset[0].offset, 12);
    let fetched = admin.fetch_offsets("billing", None).await.unwrap();
    assert_eq!(fetched[0].offset, 12);
    broker.shutdown().await;
}

#[tokio::test]
async fn kafka_consumers_split_partitions_and_one_takes_over_when_the_other_leaves() {
    if !kafka_client_available(KafkaClient::KafkaPython).await {
        return;
    }
    let (_dir, broker, addr, admin) = start_kafka().await;
    broker.create_topic("events", 4).await;
    let (mut stdin, mut lines, child) = pipes(script("split", &addr, "events", "readers"));
    assert_eq!(next_line(&mut lines).await, "split 2 2 disjoint True");

    // While both are live, describe shows a stable Kafka group, each member
    // owning the two partitions its leader assigned it.
    let d = eventually("the group to be described as stable with two members", || async {
        let d = admin.describe_group("readers").await.ok()?;
        (d.state == GroupState::Stable && d.members.len() == 2).then_some(d)
    })
    .await;
    assert_eq!(
        (d.kind, d.protocol_type.as_str(), d.protocol.as_str()),
        (Some("kafka-classic"), "consumer", "range")
    );
    let mut owned: Vec<(String, u32)> = Vec::new();
    for m in &d.members {
        assert_eq!(m.topics, ["events"], "{m:?}");
        assert_eq!(m.assignment.len(), 2, "{m:?}");
        assert!(m.client_id.starts_with("member-") && m.member_id.starts_with(&m.client_id), "{m:?}");
        owned.extend(m.assignment.iter().cloned());
    }
    owned.sort();
    assert_eq!(owned, (0..4).map(|p| ("events".to_owned(), p)).collect::<Vec<_>>());
    assert!(d.partitions.iter().all(|p| p.member_id.is_some()), "{:?}", d.partitions);
    let listed = admin.list_groups().await.unwrap();
    assert!(listed.iter().any(|g| g.group == "readers" && g.members == 2), "{listed:?}");
    // `brooklet group describe` lines its member table up, however long the
    // Kafka clients' member ids are.
    let cli = tokio::process::Command::new(brooklet_tests::brooklet_bin())
        .args(["group", "describe", "readers", "--broker", &broker.endpoint()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let described = finish(cli).await;
    assert!(described.success, "{described:?}");
    let table: Vec<&str> =
        described.stdout.lines().skip_while(|l| !l.starts_with("MEMBER")).take(3).collect();
    let column = table[0].find("ASSIGNMENT").expect("a header");
    for (row, m) in table[1..].iter().zip(&d.members) {
        assert!(row.contains(&m.member_id), "{row}");
        assert!(row[column..].starts_with("events/"), "the assignment starts under its header: {table:?}");
    }

    go(&mut stdin).await;
    let out = rest(lines, child).await;
    assert_eq!(
        out,
        [
            "after leave a owns 4",
            "a read after-readers-0 after-readers-1 after-readers-2 after-readers-3",
            "done"
        ]
    );
    let d = admin.describe_group("readers").await.unwrap();
    assert_eq!((d.state, d.members.len()), (GroupState::Empty, 0), "both left");
    let committed: Vec<(u32, Option<u64>, u64)> =
        d.partitions.iter().map(|p| (p.partition, p.committed_offset, p.lag)).collect();
    assert_eq!(committed, (0..4).map(|p| (p, Some(1), 0)).collect::<Vec<_>>());
    broker.shutdown().await;
}

fn grpc_heartbeat(group: &str, member_id: &str, member_epoch: i32) -> pb::HeartbeatRequest {
    pb::HeartbeatRequest {
        group: group.into(),
        member_id: member_id.into(),
        member_epoch,
        topics: if member_epoch == 0 { vec!["jobs".into()] } else { vec![] },
        owned: vec![],
        client_id: "grpc-member".into(),
        session_timeout_ms: 0,
    }
}

#[tokio::test]
async fn a_group_in_use_by_grpc_members_refuses_kafka_members_and_the_reverse() {
    if !kafka_client_available(KafkaClient::KafkaPython).await {
        return;
    }
    let (_dir, broker, addr, _admin) = start_kafka().await;
    broker.create_topic("jobs", 2).await;
    let mut groups = broker.groups();
    let grpc = groups.heartbeat(grpc_heartbeat("shared", "", 0)).await.unwrap().into_inner();

    let (mut stdin, mut lines, child) = pipes(script("conflict", &addr, "jobs", "shared"));
    assert_eq!(next_line(&mut lines).await, "refused InconsistentGroupProtocolError");

    // The gRPC member leaves: the Kafka consumer may join now.
    groups.heartbeat(grpc_heartbeat("shared", &grpc.member_id, -1)).await.unwrap();
    go(&mut stdin).await;
    assert_eq!(next_line(&mut lines).await, "joined 2");

    // While it is live, a gRPC member is refused, with a message naming both.
    let err = groups.heartbeat(grpc_heartbeat("shared", "", 0)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let message = err.message();
    assert!(message.contains("Kafka classic") && message.contains("broker-assigned (gRPC)"), "{message}");
    // The Rust client's consumer fails with that message rather than
    // retrying its heartbeat for ever.
    let mut consumer = brooklet_client::Consumer::builder(broker.endpoint()).group("shared").build().unwrap();
    consumer.subscribe(&["jobs"]).unwrap();
    let polled = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Err(e) = consumer.poll().await {
                return e;
            }
        }
    })
    .await
    .expect("the consumer fails instead of retrying");
    let brooklet_client::Error::FailedPrecondition { message } = &polled else { panic!("{polled:?}") };
    assert!(message.contains("Kafka classic"), "{message}");
    drop(consumer);

    go(&mut stdin).await;
    assert_eq!(rest(lines, child).await, ["done"]);
    // It left: the group is free for gRPC members again.
    groups.heartbeat(grpc_heartbeat("shared", "", 0)).await.unwrap();
    broker.shutdown().await;
}
