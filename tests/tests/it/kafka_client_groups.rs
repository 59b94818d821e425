//! Kafka's classic consumer groups with librdkafka and kafkajs:
//! confluent-kafka consumers (`tests/kafka/librdkafka_groups.py`) resume
//! from commits, split partitions with eager and cooperative assignors,
//! survive a member killed without closing, and a static member
//! (`group.instance.id`) killed and restarted gets its partitions back
//! without a rebalance; kcat's balanced consumer reads
//! and commits; librdkafka's admin client lists, describes and deletes
//! groups and lists their offsets; kafkajs consumers
//! (`tests/kafka/kafkajs_groups.js`) resume from commits and split
//! partitions, and one takes over when the other leaves; kafkajs's admin
//! client resets a group's offsets. Brooklet's own
//! tools show the same groups.
//!
//! The script prints one fact a line; where the test looks at the group
//! while the consumers are live, the script waits for a line on its stdin.

use std::process::Stdio;

use brooklet_client::{Admin, GroupState};
use brooklet_proto::v1 as pb;
use brooklet_tests::{
    KafkaClient, TestBroker, eventually, finish, kafka_client_available, kafka_script, next_line, pipes,
    record, rest, start_kafka,
};
use tokio::io::AsyncWriteExt;
use tokio::process::Child;

/// `librdkafka_groups.py MODE ADDR TOPIC GROUP [ARG]`, stdin and stdout piped.
fn script(mode: &str, addr: &str, topic: &str, group: &str, arg: Option<&str>) -> Child {
    let mut args = vec!["librdkafka_groups.py", mode, addr, topic, group];
    args.extend(arg);
    kafka_script("python3", &args)
}

/// `node kafkajs_groups.js MODE ADDR TOPIC GROUP`, stdin and stdout piped.
fn kafkajs(mode: &str, addr: &str, topic: &str, group: &str) -> Child {
    kafka_script("node", &["kafkajs_groups.js", mode, addr, topic, group])
}

/// Runs a script that needs no input to its end; its stdout lines.
async fn run(mode: &str, addr: &str, topic: &str, group: &str) -> Vec<String> {
    let done = finish(script(mode, addr, topic, group, None)).await;
    assert!(
        done.success,
        "librdkafka_groups.py {mode} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        done.code, done.stdout, done.stderr
    );
    done.stdout.lines().map(str::to_owned).collect()
}

/// (partition, committed offset, lag) of each partition `describe` shows.
async fn positions(admin: &Admin, group: &str) -> Vec<(u32, Option<u64>, u64)> {
    let d = admin.describe_group(group).await.unwrap();
    assert_eq!((d.state, d.members.len()), (GroupState::Empty, 0), "every member left: {d:?}");
    d.partitions.iter().map(|p| (p.partition, p.committed_offset, p.lag)).collect()
}

#[tokio::test]
async fn librdkafka_consumers_resume_from_commits_made_on_close_and_explicitly() {
    if !kafka_client_available(KafkaClient::ConfluentKafka).await {
        return;
    }
    let (_dir, broker, addr, admin) = start_kafka().await;
    broker.create_topic("orders", 1).await;
    let out = run("resume", &addr, "orders", "billing").await;
    let first: Vec<String> = (0..10).map(|i| format!("{i}:a{i}")).collect();
    let second: Vec<String> = (0..5).map(|i| format!("{}:b{i}", 10 + i)).collect();
    assert_eq!(
        out,
        [
            format!("first {}", first.join(" ")),
            format!("second {} committed [15]", second.join(" ")),
            "third 15:c0".to_owned(),
        ],
        "each consumer reads only what came after the previous one's commit"
    );
    // The third consumer committed nothing: its record is the group's lag.
    assert_eq!(positions(&admin, "billing").await, [(0, Some(15), 1)]);
    broker.shutdown().await;
}

/// Two consumers with `strategy` split a topic; describe shows them and
/// `protocol` while they are live; one closes and the other takes over.
async fn split_and_take_over(strategy: &str, protocol: &str) {
    let (_dir, broker, addr, admin) = start_kafka().await;
    let (topic, group) = (format!("events-{protocol}"), format!("readers-{protocol}"));
    broker.create_topic(&topic, 4).await;
    let (mut stdin, mut lines, child) = pipes(script("split", &addr, &topic, &group, Some(strategy)));
    assert_eq!(next_line(&mut lines).await, "split 2 2 disjoint True");

    let d = eventually("the group to be described as stable with two members", || async {
        let d = admin.describe_group(&group).await.ok()?;
        (d.state == GroupState::Stable && d.members.len() == 2).then_some(d)
    })
    .await;
    assert_eq!(
        (d.kind, d.protocol_type.as_str(), d.protocol.as_str()),
        (Some("kafka-classic"), "consumer", protocol)
    );
    let mut owned: Vec<(String, u32)> = Vec::new();
    for m in &d.members {
        assert_eq!((m.topics.as_slice(), m.assignment.len()), ([topic.clone()].as_slice(), 2), "{m:?}");
        owned.extend(m.assignment.iter().cloned());
    }
    owned.sort();
    assert_eq!(owned, (0..4).map(|p| (topic.clone(), p)).collect::<Vec<_>>(), "disjoint, all four");

    stdin.write_all(b"go\n").await.unwrap();
    stdin.flush().await.unwrap();
    let after: Vec<String> = (0..4).map(|p| format!("after-{group}-{p}")).collect();
    assert_eq!(
        rest(lines, child).await,
        ["after close a owns 4".to_owned(), format!("a read {}", after.join(" ")), "done".to_owned()]
    );
    assert_eq!(positions(&admin, &group).await, (0..4).map(|p| (p, Some(1), 0)).collect::<Vec<_>>());
    broker.shutdown().await;
}

#[tokio::test]
async fn librdkafka_consumers_split_and_take_over_with_the_eager_assignors() {
    if !kafka_client_available(KafkaClient::ConfluentKafka).await {
        return;
    }
    split_and_take_over("range,roundrobin", "range").await;
}

#[tokio::test]
async fn librdkafka_consumers_split_and_take_over_with_cooperative_sticky() {
    if !kafka_client_available(KafkaClient::ConfluentKafka).await {
        return;
    }
    split_and_take_over("cooperative-sticky", "cooperative-sticky").await;
}

#[tokio::test]
async fn a_killed_librdkafka_consumer_leaves_after_its_session_timeout() {
    if !kafka_client_available(KafkaClient::ConfluentKafka).await {
        return;
    }
    let (_dir, broker, addr, admin) = start_kafka().await;
    broker.create_topic("tasks", 4).await;
    let out = run("killed", &addr, "tasks", "workers").await;
    let after: Vec<String> = (0..4).map(|p| format!("after-workers-{p}")).collect();
    assert_eq!(
        out,
        [
            "split with victim 2".to_owned(),
            "after kill a owns 4".to_owned(),
            format!("a read {}", after.join(" ")),
            "done".to_owned(),
        ]
    );
    assert_eq!(positions(&admin, "workers").await, (0..4).map(|p| (p, Some(1), 0)).collect::<Vec<_>>());
    broker.shutdown().await;
}

#[tokio::test]
async fn a_restarted_static_librdkafka_consumer_gets_its_partitions_back_without_a_rebalance() {
    if !kafka_client_available(KafkaClient::ConfluentKafka).await {
        return;
    }
    let (_dir, broker, addr, admin) = start_kafka().await;
    broker.create_topic("jobs", 4).await;
    let (mut stdin, mut lines, child) = pipes(script("static", &addr, "jobs", "static-workers", None));
    assert_eq!(next_line(&mut lines).await, "split 2 2 read True");
    let before = eventually("the static group to be stable with two members", || async {
        let d = admin.describe_group("static-workers").await.ok()?;
        (d.state == GroupState::Stable && d.members.len() == 2).then_some(d)
    })
    .await;
    // Describe names each static member's instance id.
    let mut instances: Vec<Option<&str>> =
        before.members.iter().map(|m| m.group_instance_id.as_deref()).collect();
    instances.sort();
    assert_eq!(instances, [Some("static-workers-a"), Some("static-workers-b")]);

    stdin.write_all(b"restart\n").await.unwrap();
    stdin.flush().await.unwrap();
    assert_eq!(next_line(&mut lines).await, "restarted b owns the same partitions True");
    assert_eq!(next_line(&mut lines).await, "restarted b read only what came after True");
    assert_eq!(next_line(&mut lines).await, "a kept True revoked since the split 0");
    let after = admin.describe_group("static-workers").await.unwrap();
    assert_eq!((after.state, after.epoch), (GroupState::Stable, before.epoch), "no rebalance: {after:?}");
    let ids = |d: &brooklet_client::GroupDescription| -> Vec<String> {
        d.members.iter().map(|m| m.member_id.clone()).collect()
    };
    let (old, new) = (ids(&before), ids(&after));
    assert_eq!(new.len(), 2);
    assert_eq!(old.iter().filter(|id| new.contains(id)).count(), 1, "b has a new member id, a the same");
    let owned = |d: &brooklet_client::GroupDescription| -> Vec<Vec<(String, u32)>> {
        let mut owned: Vec<Vec<(String, u32)>> = d.members.iter().map(|m| m.assignment.clone()).collect();
        owned.sort();
        owned
    };
    assert_eq!(owned(&after), owned(&before), "the same partitions, owned the same way");

    stdin.write_all(b"end\n").await.unwrap();
    stdin.flush().await.unwrap();
    assert_eq!(rest(lines, child).await, ["done"]);
    // Every record was read once: a committed 3 on its partitions, b each
    // record it read. Static members do not leave on close: their sessions
    // end them.
    let d = admin.describe_group("static-workers").await.unwrap();
    let committed: Vec<(u32, Option<u64>)> =
        d.partitions.iter().map(|p| (p.partition, p.committed_offset)).collect();
    assert_eq!(committed, (0..4).map(|p| (p, Some(3))).collect::<Vec<_>>());
    broker.shutdown().await;
}

/// Produces `values[i]` to partition `i % 3` of `clicks` over gRPC.
async fn produce_clicks(broker: &TestBroker, values: &[String]) {
    let records = values.iter().zip(0u32..).map(|(v, i)| record(v, Some(i % 3))).collect();
    let request = pb::ProduceRequest { topic: "clicks".into(), records, ..Default::default() };
    broker.producer().produce(request).await.unwrap();
}

/// kcat's balanced consumer in `group` until the end of `clicks`: what it
/// read, one `partition offset value` a line, sorted.
async fn kcat_reads(addr: &str, group: &str) -> Vec<String> {
    let child = tokio::process::Command::new("kcat")
        .args(["-b", addr, "-G", group, "-X", "auto.offset.reset=earliest", "-e"])
        .args(["-f", "%p %o %s\\n", "clicks"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kcat starts");
    let done = finish(child).await;
    assert!(
        done.success && done.stderr.contains(&format!("Group {group} rebalanced")),
        "kcat failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        done.code,
        done.stdout,
        done.stderr
    );
    let mut read: Vec<String> = done.stdout.lines().map(str::to_owned).collect();
    read.sort();
    read
}

#[tokio::test]
async fn kcat_balanced_consumer_reads_commits_on_exit_and_resumes() {
    if !kafka_client_available(KafkaClient::Kcat).await {
        return;
    }
    let (_dir, broker, addr, admin) = start_kafka().await;
    broker.create_topic("clicks", 3).await;
    let first: Vec<String> = (0..9).map(|i| format!("c{i}")).collect();
    produce_clicks(&broker, &first).await;
    let mut expected: Vec<String> = (0..9).map(|i| format!("{} {} c{i}", i % 3, i / 3)).collect();
    expected.sort();
    assert_eq!(kcat_reads(&addr, "kcat-readers").await, expected);
    // kcat commits what it read when it closes the consumer ...
    assert_eq!(positions(&admin, "kcat-readers").await, (0..3).map(|p| (p, Some(3), 0)).collect::<Vec<_>>());

    // ... and the next run resumes there.
    let second: Vec<String> = (0..3).map(|i| format!("d{i}")).collect();
    produce_clicks(&broker, &second).await;
    assert_eq!(kcat_reads(&addr, "kcat-readers").await, ["0 3 d0", "1 3 d1", "2 3 d2"]);
    assert_eq!(positions(&admin, "kcat-readers").await, (0..3).map(|p| (p, Some(4), 0)).collect::<Vec<_>>());
    broker.shutdown().await;
}

#[tokio::test]
async fn librdkafka_admin_lists_describes_and_deletes_groups_and_lists_their_offsets() {
    if !kafka_client_available(KafkaClient::ConfluentKafka).await {
        return;
    }
    let (_dir, broker, addr, _admin) = start_kafka().await;
    broker.create_topic("audit", 2).await;
    let offsets = "[('audit', 0, 3), ('audit', 1, 3)]";
    assert_eq!(
        run("admin", &addr, "audit", "auditors").await,
        [
            "live list [('auditors', 'STABLE', False)]".to_owned(),
            "live describe ('STABLE', 'range', False, [('watched', True, '/127.0.0.1', [('audit', 0), ('audit', 1)])])"
                .to_owned(),
            format!("live offsets {offsets}"),
            "live delete NON_EMPTY_GROUP".to_owned(),
            // Once empty, the group keeps its protocol type while it has
            // offsets: librdkafka does not take it for a simple group.
            "left list [('auditors', 'EMPTY', False)]".to_owned(),
            "left describe EMPTY []".to_owned(),
            format!("left offsets {offsets}"),
            "left delete ok".to_owned(),
            "deleted list []".to_owned(),
            "deleted describe DEAD".to_owned(),
            "deleted offsets []".to_owned(),
        ]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn kafkajs_consumers_resume_from_commits_made_by_autocommit_and_explicitly() {
    if !kafka_client_available(KafkaClient::Kafkajs).await {
        return;
    }
    let (_dir, broker, addr, admin) = start_kafka().await;
    broker.create_topic("payments", 1).await;
    let (_stdin, lines, child) = pipes(kafkajs("resume", &addr, "payments", "ledger"));
    let first: Vec<String> = (0..10).map(|i| format!("{i}:a{i}")).collect();
    let second: Vec<String> = (0..5).map(|i| format!("{}:b{i}", 10 + i)).collect();
    assert_eq!(
        rest(lines, child).await,
        [
            format!("first {} committed [10]", first.join(" ")),
            format!("second {} committed [15]", second.join(" ")),
            "third 15:c0".to_owned(),
        ],
        "each consumer reads only what came after the previous one's commit"
    );
    // The third consumer committed nothing: its record is the group's lag.
    assert_eq!(positions(&admin, "ledger").await, [(0, Some(15), 1)]);
    broker.shutdown().await;
}

#[tokio::test]
async fn kafkajs_admin_resets_a_group_to_the_earliest_and_latest_offsets() {
    if !kafka_client_available(KafkaClient::Kafkajs).await {
        return;
    }
    let (_dir, broker, addr, admin) = start_kafka().await;
    broker.create_topic("refunds", 1).await;
    let (_stdin, lines, child) = pipes(kafkajs("reset", &addr, "refunds", "auditors"));
    // kafkajs resets by committing Kafka's logical offsets -2 and -1: the
    // group's offsets become the log's start and end.
    assert_eq!(
        rest(lines, child).await,
        ["read 0:r0 1:r1 2:r2", "earliest committed [0]", "again 0:r0 1:r1 2:r2", "latest committed [3]",]
    );
    assert_eq!(positions(&admin, "auditors").await, [(0, Some(3), 0)]);
    broker.shutdown().await;
}

#[tokio::test]
async fn kafkajs_consumers_split_a_topic_and_one_takes_over_when_the_other_leaves() {
    if !kafka_client_available(KafkaClient::Kafkajs).await {
        return;
    }
    let (_dir, broker, addr, admin) = start_kafka().await;
    broker.create_topic("jobs", 4).await;
    let (mut stdin, mut lines, child) = pipes(kafkajs("split", &addr, "jobs", "runners"));
    assert_eq!(next_line(&mut lines).await, "split 2 2 disjoint true");

    let d = eventually("the group to be described as stable with two members", || async {
        let d = admin.describe_group("runners").await.ok()?;
        (d.state == GroupState::Stable && d.members.len() == 2).then_some(d)
    })
    .await;
    // kafkajs's default assignor, named as kafkajs names it.
    assert_eq!(
        (d.kind, d.protocol_type.as_str(), d.protocol.as_str()),
        (Some("kafka-classic"), "consumer", "RoundRobinAssigner")
    );
    let mut owned: Vec<(String, u32)> = Vec::new();
    for m in &d.members {
        assert_eq!((m.topics.as_slice(), m.assignment.len()), (["jobs".to_owned()].as_slice(), 2), "{m:?}");
        owned.extend(m.assignment.iter().cloned());
    }
    owned.sort();
    assert_eq!(owned, (0..4).map(|p| ("jobs".to_owned(), p)).collect::<Vec<_>>(), "disjoint, all four");

    stdin.write_all(b"go\n").await.unwrap();
    stdin.flush().await.unwrap();
    let after: Vec<String> = (0..4).map(|p| format!("after-runners-{p}")).collect();
    assert_eq!(
        rest(lines, child).await,
        ["after leave a owns 4".to_owned(), format!("a read {}", after.join(" ")), "done".to_owned()]
    );
    assert_eq!(positions(&admin, "runners").await, (0..4).map(|p| (p, Some(1), 0)).collect::<Vec<_>>());
    broker.shutdown().await;
}
