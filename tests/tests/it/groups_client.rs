//! Consumer groups through the Rust client: subscribed consumers against a
//! real broker with short heartbeats, and the group admin calls.
//!
//! Every wait is on a condition with a deadline (`eventually`, `DEADLINE`);
//! consumers that must read at the same time run in spawned tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use brooklet_broker::Config;
use brooklet_client::{
    Admin, AutoOffsetReset, CommittedOffset, Consumer, Error, GroupDescription, GroupState, NewTopic,
    Producer, ProducerRecord, RebalanceEvent, ResetTo,
};
use brooklet_tests::{DEADLINE, Proxy, TestBroker, eventually};
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

mod consumer_api;

/// A session no test waits out: a partition that moves while its owner has
/// such a session moved because the owner handed it over.
const LONG_SESSION: Duration = Duration::from_secs(60);

/// A broker whose groups heartbeat every 100 ms and accept sessions down to
/// 200 ms, in a directory that lives as long as the returned guard.
async fn start() -> (tempfile::TempDir, TestBroker, Admin) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.core.groups.heartbeat_interval = Duration::from_millis(100);
    config.core.groups.min_session_timeout = Duration::from_millis(200);
    let broker = TestBroker::start_with(config).await;
    let admin = Admin::connect(broker.endpoint()).unwrap();
    (dir, broker, admin)
}

fn consumer(endpoint: &str, group: &str, session: Duration) -> Consumer {
    Consumer::builder(endpoint)
        .group(group)
        .session_timeout(session)
        .max_wait(Duration::from_millis(100))
        .client_id("groups-client-test")
        .build()
        .unwrap()
}

/// A consumer subscribed to `topic`.
fn member(endpoint: &str, group: &str, topic: &str, session: Duration) -> Consumer {
    let mut c = consumer(endpoint, group, session);
    c.subscribe(&[topic]).unwrap();
    c
}

/// Waits until `group` is stable with exactly `members` as its members,
/// their partition counts (sorted) are `counts`, and each consumer owns
/// what the broker says it owns.
async fn settled(admin: &Admin, group: &str, members: &[&Consumer], counts: &[usize]) -> GroupDescription {
    let what = format!("group {group} to settle with partition counts {counts:?}");
    eventually(&what, || async move {
        let d = admin.describe_group(group).await.ok()?;
        if d.state != GroupState::Stable || d.members.len() != members.len() {
            return None;
        }
        let mut got: Vec<usize> = d.members.iter().map(|m| m.assignment.len()).collect();
        got.sort_unstable();
        if got != counts {
            return None;
        }
        for c in members {
            let id = c.member_id()?;
            let m = d.members.iter().find(|m| m.member_id == id)?;
            if c.assignment() != m.assignment {
                return None;
            }
        }
        Some(d)
    })
    .await
}

/// Partition → owning member, as the broker describes it.
fn owners(d: &GroupDescription) -> BTreeMap<u32, String> {
    d.partitions.iter().map(|p| (p.partition, p.member_id.clone().expect("every partition owned"))).collect()
}

async fn produce(producer: &Producer, topic: &str, partition: u32, values: impl IntoIterator<Item = String>) {
    let mut deliveries = Vec::new();
    for v in values {
        deliveries.push(producer.send(topic, ProducerRecord::new(v).partition(partition)).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
}

fn values(records: &[brooklet_client::ConsumerRecord]) -> Vec<u64> {
    records.iter().map(|r| std::str::from_utf8(&r.value).unwrap().parse().unwrap()).collect()
}

/// Polls until `n` records arrived in total, within the deadline.
async fn poll_until(c: &mut Consumer, n: usize) -> Vec<brooklet_client::ConsumerRecord> {
    tokio::time::timeout(DEADLINE, async {
        let mut got = Vec::new();
        while got.len() < n {
            got.extend(c.poll().await.unwrap());
        }
        got
    })
    .await
    .expect("records arrive in time")
}

#[tokio::test]
async fn partitions_are_balanced_and_move_on_join_leave_and_session_timeout() {
    let (_dir, broker, admin) = start().await;
    let endpoint = broker.endpoint();
    admin.create_topic("jobs", NewTopic::new(6)).await.unwrap();

    let c1 = member(&endpoint, "g", "jobs", LONG_SESSION);
    let mut c1_events = c1.events();
    let c2 = member(&endpoint, "g", "jobs", LONG_SESSION);
    let c3 = member(&endpoint, "g", "jobs", LONG_SESSION);
    let three = settled(&admin, "g", &[&c1, &c2, &c3], &[2, 2, 2]).await;
    let all: BTreeSet<_> = [&c1, &c2, &c3].iter().flat_map(|c| c.assignment()).collect();
    assert_eq!(all.len(), 6, "every partition owned once");
    assert!(three.members.iter().all(|m| m.client_id == "groups-client-test" && m.topics == ["jobs"]));
    let summary = admin.list_groups().await.unwrap();
    let g = summary.iter().find(|s| s.group == "g").unwrap();
    assert_eq!((g.state, g.members), (GroupState::Stable, 3));
    // c1's events end with what it owns now.
    let mut c1_owned = BTreeSet::new();
    while let Some(event) = c1_events.try_recv() {
        match event {
            RebalanceEvent::Assigned(tps) => c1_owned.extend(tps),
            RebalanceEvent::Revoked(tps) => tps.iter().for_each(|tp| assert!(c1_owned.remove(tp))),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(c1_owned.into_iter().collect::<Vec<_>>(), c1.assignment());

    // A fourth member takes one partition from one of the others, and only that.
    let c4 = member(&endpoint, "g", "jobs", LONG_SESSION);
    let four = settled(&admin, "g", &[&c1, &c2, &c3, &c4], &[1, 1, 2, 2]).await;
    let (before, after) = (owners(&three), owners(&four));
    let moved: Vec<u32> = (0..6).filter(|p| before[p] != after[p]).collect();
    assert_eq!(moved.len(), 1, "one partition moved: {before:?} -> {after:?}");
    assert_eq!(after[&moved[0]], c4.member_id().unwrap(), "to the new member");

    // A clean leave moves c1's partitions at once: every session is 60 s,
    // longer than the deadline of `settled`.
    let c1_partitions = c1.assignment();
    c1.close().await.unwrap();
    let after_leave = settled(&admin, "g", &[&c2, &c3, &c4], &[2, 2, 2]).await;
    for (_, p) in &c1_partitions {
        assert!(after_leave.partitions[*p as usize].member_id.is_some(), "{p} was taken over");
    }

    // A member dropped without closing leaves (its task sends the leave),
    // or, failing that, its short session times out; either way its
    // partitions move. (`consumer_api` checks that the leave alone moves
    // them.) A session this short can also lapse while c5 is alive, if a
    // loaded machine delays its heartbeats: c5 then rejoins, and `settled`
    // waits for that. Nothing below depends on when c5's session ends, nor
    // on which id it had.
    let c5 = member(&endpoint, "g", "jobs", Duration::from_secs(1));
    let five = settled(&admin, "g", &[&c2, &c3, &c4, &c5], &[1, 1, 2, 2]).await;
    let others: BTreeSet<String> = [&c2, &c3, &c4].iter().filter_map(|c| c.member_id()).collect();
    let c5_id = five.members.iter().map(|m| &m.member_id).find(|id| !others.contains(*id)).unwrap().clone();
    drop(c5);
    let after_drop = settled(&admin, "g", &[&c2, &c3, &c4], &[2, 2, 2]).await;
    assert!(after_drop.members.iter().all(|m| m.member_id != c5_id));

    for c in [c2, c3, c4] {
        c.close().await.unwrap();
    }
    let d = admin.describe_group("g").await;
    assert!(matches!(d, Err(Error::GroupNotFound { .. })), "no members, no commits: {d:?}");
    broker.shutdown().await;
}

/// A member reading in its own task until told to stop, then closing; the
/// task returns what `close` did.
fn spawn_polling(
    mut c: Consumer,
    seen: Arc<Mutex<Vec<u64>>>,
) -> (Arc<AtomicBool>, JoinHandle<brooklet_client::Result<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            while !stop.load(Ordering::Relaxed) {
                let records = c.poll().await.unwrap();
                seen.lock().extend(values(&records));
            }
            c.close().await
        }
    });
    (stop, task)
}

#[tokio::test]
async fn records_produced_during_rebalances_are_delivered_exactly_once_when_members_leave_cleanly() {
    let (_dir, broker, admin) = start().await;
    let endpoint = broker.endpoint();
    admin.create_topic("stream", NewTopic::new(4)).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));

    // c1 polls; c2 reads through the stream, which delivers record by record.
    let c1 = member(&endpoint, "workers", "stream", LONG_SESSION);
    let c2 = member(&endpoint, "workers", "stream", LONG_SESSION);
    settled(&admin, "workers", &[&c1, &c2], &[2, 2]).await;
    let c2_id = c2.member_id().unwrap();
    let (c1_stop, c1_task) = spawn_polling(c1, Arc::clone(&seen));
    let c2_task = tokio::spawn({
        let seen = Arc::clone(&seen);
        async move {
            let mut stream = c2.into_stream();
            while let Some(record) = stream.next().await {
                seen.lock().extend(values(&[record.unwrap()]));
            }
        }
    });

    // A producer sending numbered records, a few at a time, until stopped.
    let producing = Arc::new(AtomicBool::new(true));
    let producer_task = tokio::spawn({
        let producing = Arc::clone(&producing);
        let producer = Producer::builder(&endpoint).linger(Duration::from_millis(1)).build().unwrap();
        async move {
            let mut next = 0u64;
            let mut pace = tokio::time::interval(Duration::from_millis(2));
            while producing.load(Ordering::Relaxed) {
                pace.tick().await;
                let mut deliveries = Vec::new();
                for _ in 0..4 {
                    let record = ProducerRecord::new(next.to_string()).partition((next % 4) as u32);
                    deliveries.push(producer.send("stream", record).await.unwrap());
                    next += 1;
                }
                for d in deliveries {
                    d.await.unwrap();
                }
            }
            producer.close().await.unwrap();
            next
        }
    });
    let grows_past = |n: usize| {
        let seen = Arc::clone(&seen);
        async move {
            eventually(&format!("{n} records delivered"), || {
                let seen = Arc::clone(&seen);
                async move { (seen.lock().len() >= n).then_some(()) }
            })
            .await
        }
    };
    grows_past(200).await;

    // A third member joins while records flow.
    let c3 = member(&endpoint, "workers", "stream", LONG_SESSION);
    let c3_id = eventually("c3 to join", || async { c3.member_id() }).await;
    let (c3_stop, c3_task) = spawn_polling(c3, Arc::clone(&seen));
    eventually("three members, stable", || async {
        let d = admin.describe_group("workers").await.ok()?;
        (d.state == GroupState::Stable && d.members.len() == 3).then_some(())
    })
    .await;
    let delivered = seen.lock().len();
    grows_past(delivered + 200).await;

    // c1 leaves cleanly while records flow.
    c1_stop.store(true, Ordering::Relaxed);
    c1_task.await.unwrap().unwrap();
    eventually("c2 and c3 to own two partitions each", || async {
        let d = admin.describe_group("workers").await.ok()?;
        let mut ids: Vec<&str> = d.members.iter().map(|m| m.member_id.as_str()).collect();
        ids.sort_unstable();
        let mut expected = [c2_id.as_str(), c3_id.as_str()];
        expected.sort_unstable();
        let balanced = d.members.iter().all(|m| m.assignment.len() == 2);
        (d.state == GroupState::Stable && ids == expected && balanced).then_some(())
    })
    .await;
    let delivered = seen.lock().len();
    grows_past(delivered + 200).await;

    producing.store(false, Ordering::Relaxed);
    let produced = producer_task.await.unwrap();
    eventually("every produced record to be delivered", || {
        let seen = Arc::clone(&seen);
        async move {
            let distinct: BTreeSet<u64> = seen.lock().iter().copied().collect();
            (distinct.len() as u64 == produced).then_some(())
        }
    })
    .await;
    let check_once = |seen: &[u64]| {
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for v in seen {
            *counts.entry(*v).or_default() += 1;
        }
        assert_eq!(counts.len() as u64, produced, "every record delivered");
        assert!(counts.keys().all(|v| *v < produced));
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    };
    check_once(&seen.lock());

    c3_stop.store(true, Ordering::Relaxed);
    c3_task.await.unwrap().unwrap();
    c2_task.abort();
    check_once(&seen.lock());
    broker.shutdown().await;
}

#[tokio::test]
async fn a_group_resumes_from_its_commits_and_a_fenced_member_cannot_commit() {
    let (_dir, broker, admin) = start().await;
    let endpoint = broker.endpoint();
    admin.create_topic("resume", NewTopic::new(2)).await.unwrap();
    let producer = Producer::builder(&endpoint).build().unwrap();
    for p in 0..2 {
        produce(&producer, "resume", p, (0..10).map(|i| (p as u64 * 10 + i).to_string())).await;
    }

    let mut first = member(&endpoint, "resumers", "resume", LONG_SESSION);
    let got = poll_until(&mut first, 20).await;
    assert_eq!(values(&got).into_iter().collect::<BTreeSet<_>>(), (0..20).collect());
    first.close().await.unwrap();
    let mut committed: Vec<_> = admin
        .fetch_offsets("resumers", Some("resume"))
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.partition, c.offset))
        .collect();
    committed.sort_unstable();
    assert_eq!(committed, [(0, 10), (1, 10)], "close committed what was delivered");

    for p in 0..2 {
        produce(&producer, "resume", p, (0..5).map(|i| (100 + p as u64 * 10 + i).to_string())).await;
    }
    let mut second = member(&endpoint, "resumers", "resume", LONG_SESSION);
    let got = poll_until(&mut second, 10).await;
    let expected: BTreeSet<u64> = (100..105).chain(110..115).collect();
    assert_eq!(values(&got).into_iter().collect::<BTreeSet<_>>(), expected, "only what was not committed");
    second.close().await.unwrap();

    // A member cut off from the broker for longer than its session is
    // removed; another takes its partitions; its own commit is refused.
    // Its session is short, so it may also lapse before the cut-off if the
    // machine is loaded: the member then rejoins (and will report what it
    // lost then too), which changes none of what is checked below.
    admin.create_topic("fenced", NewTopic::new(2)).await.unwrap();
    for p in 0..2 {
        produce(&producer, "fenced", p, (0..5).map(|i| i.to_string())).await;
    }
    let proxy = Proxy::start(&broker).await;
    let mut stale = Consumer::builder(&proxy.endpoint)
        .group("fenced-g")
        .session_timeout(Duration::from_secs(1))
        .auto_commit(None)
        .max_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut stale_events = stale.events();
    stale.subscribe(&["fenced"]).unwrap();
    poll_until(&mut stale, 10).await;
    let stale_id = eventually("stale to be a member", || async { stale.member_id() }).await;
    proxy.block(true);

    let taker = member(&endpoint, "fenced-g", "fenced", LONG_SESSION);
    let taker_id = eventually("taker to own both partitions", || async {
        let d = admin.describe_group("fenced-g").await.ok()?;
        let id = taker.member_id()?;
        let alone =
            d.members.len() == 1 && d.members[0].member_id == id && d.members[0].assignment.len() == 2;
        alone.then_some(id)
    })
    .await;
    assert_ne!(stale_id, taker_id);
    // The stale member, too, learns that its session is over (no heartbeat
    // answered for a whole session) before it can reach the broker again.
    // Then its commit is refused at once, without a call that a loaded
    // machine could make outlast the 1 s the short session leaves it.
    eventually("stale to know it lost its session", || async { stale.member_id().is_none().then_some(()) })
        .await;
    proxy.block(false);
    let err = stale.commit().await.unwrap_err();
    assert!(matches!(&err, Error::FailedPrecondition { message } if message.contains("fenced/")), "{err}");
    let committed = admin.fetch_offsets("fenced-g", Some("fenced")).await.unwrap();
    assert!(committed.is_empty(), "nothing the fenced member delivered was committed: {committed:?}");

    // The stale member dropped both partitions and rejoins as a new member.
    let mut revoked = BTreeSet::new();
    while let Some(event) = stale_events.try_recv() {
        if let RebalanceEvent::Revoked(tps) = event {
            revoked.extend(tps);
        }
    }
    assert_eq!(revoked.len(), 2, "both partitions revoked: {revoked:?}");
    settled(&admin, "fenced-g", &[&stale, &taker], &[1, 1]).await;

    // Outside commits are refused while the group has members.
    let err = admin.commit_offsets("fenced-g", &[CommittedOffset::new("fenced", 0, 1)]).await.unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition { .. }), "{err}");
    stale.close().await.unwrap();
    taker.close().await.unwrap();
    producer.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn members_beyond_the_partition_count_wait_and_take_over_from_a_leaver() {
    let (_dir, broker, admin) = start().await;
    let endpoint = broker.endpoint();
    admin.create_topic("few", NewTopic::new(2)).await.unwrap();
    let producer = Producer::builder(&endpoint).build().unwrap();
    for p in 0..2 {
        produce(&producer, "few", p, (0..3).map(|i| i.to_string())).await;
    }

    // A session the broker does not allow is refused for good, and said so.
    let mut refused = member(&endpoint, "few-g", "few", Duration::from_millis(50));
    let err =
        tokio::time::timeout(DEADLINE, refused.await_joined()).await.expect("answered in time").unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument { message } if message.contains("session_timeout_ms")),
        "{err}"
    );
    assert!(matches!(refused.poll().await, Err(Error::InvalidArgument { .. })));
    refused.close().await.unwrap();

    let members: Vec<Consumer> = (0..3).map(|_| member(&endpoint, "few-g", "few", LONG_SESSION)).collect();
    for m in &members {
        tokio::time::timeout(DEADLINE, m.await_joined()).await.expect("joined in time").unwrap();
    }
    settled(&admin, "few-g", &members.iter().collect::<Vec<_>>(), &[0, 1, 1]).await;
    let (mut owners, mut extras): (Vec<Consumer>, Vec<Consumer>) =
        members.into_iter().partition(|m| !m.assignment().is_empty());
    let mut extra = extras.pop().unwrap();
    assert!(extra.poll().await.unwrap().is_empty(), "an extra polls nothing, without error");
    let mut extra_events = extra.events();

    let leaver = owners.pop().unwrap();
    let freed = leaver.assignment();
    leaver.close().await.unwrap();
    let taken = tokio::time::timeout(DEADLINE, extra.await_assignment()).await.expect("in time").unwrap();
    assert_eq!(taken, freed, "the extra takes the leaver's partition");
    assert_eq!(
        tokio::time::timeout(DEADLINE, extra_events.recv()).await.unwrap(),
        Some(RebalanceEvent::Assigned(freed))
    );
    settled(&admin, "few-g", &[&owners[0], &extra], &[1, 1]).await;
    // The leaver committed nothing (it never polled): the extra reads from the start.
    assert_eq!(values(&poll_until(&mut extra, 3).await), [0, 1, 2]);

    extra.close().await.unwrap();
    owners.pop().unwrap().close().await.unwrap();
    producer.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn offsets_by_time_and_resetting_a_group_to_them() {
    let (_dir, broker, admin) = start().await;
    let endpoint = broker.endpoint();
    admin.create_topic("clock", NewTopic::new(2)).await.unwrap();
    // Five batches of five records per partition; record j of batch b is
    // stamped 1_000_000 + 1000 b + 10 j and lands at offset 5 b + j.
    let producer = Producer::builder(&endpoint).build().unwrap();
    for b in 0..5i64 {
        for p in 0..2u32 {
            let mut deliveries = Vec::new();
            for j in 0..5i64 {
                let record = ProducerRecord::new((5 * b + j).to_string())
                    .partition(p)
                    .timestamp_ms(1_000_000 + 1000 * b + 10 * j);
                deliveries.push(producer.send("clock", record).await.unwrap());
            }
            producer.flush().await.unwrap();
            for d in deliveries {
                d.await.unwrap();
            }
        }
    }
    for (t, offset, ts) in [
        (0, 0, Some(1_000_000)),
        (1_000_000, 0, Some(1_000_000)),
        (1_002_015, 12, Some(1_002_020)),
        (1_003_000, 15, Some(1_003_000)),
        (1_003_041, 20, Some(1_004_000)),
        (1_004_040, 24, Some(1_004_040)),
        (1_004_041, 25, None),
    ] {
        let found = admin.offsets_for_time("clock", t).await.unwrap();
        assert_eq!(found.len(), 2);
        for (p, f) in found.iter().enumerate() {
            assert_eq!((f.partition, f.offset, f.timestamp_ms), (p as u32, offset, ts), "time {t}");
        }
    }
    assert!(matches!(admin.offsets_for_time("nope", 0).await, Err(Error::TopicNotFound { .. })));

    // While the group has a member, its offsets can be neither reset nor deleted.
    let live = member(&endpoint, "timed", "clock", LONG_SESSION);
    tokio::time::timeout(DEADLINE, live.await_assignment()).await.expect("assigned in time").unwrap();
    let err = admin.reset_offsets("timed", "clock", ResetTo::Timestamp(1_002_015)).await.unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition { .. }), "{err}");
    let err = admin.delete_group("timed").await.unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition { .. }), "{err}");
    live.close().await.unwrap();

    let reset = admin.reset_offsets("timed", "clock", ResetTo::Timestamp(1_002_015)).await.unwrap();
    let offsets: Vec<_> = reset.iter().map(|o| (o.partition, o.offset)).collect();
    assert_eq!(offsets, [(0, 12), (1, 12)]);
    let d = admin.describe_group("timed").await.unwrap();
    assert_eq!((d.state, d.members.len()), (GroupState::Empty, 0));
    assert!(
        d.partitions.iter().all(|p| p.committed_offset == Some(12) && p.lag == 13 && p.member_id.is_none())
    );

    // The next member starts where the reset put the group.
    let mut next = member(&endpoint, "timed", "clock", LONG_SESSION);
    let got = poll_until(&mut next, 26).await;
    let mut first_by_partition = BTreeMap::new();
    for r in &got {
        first_by_partition.entry(r.partition).or_insert(r.offset);
    }
    assert_eq!(first_by_partition, BTreeMap::from([(0, 12), (1, 12)]));
    next.close().await.unwrap();

    let latest = admin.reset_offsets("timed", "clock", ResetTo::Latest).await.unwrap();
    assert!(latest.iter().all(|o| o.offset == 25));
    let err = admin.reset_offsets("timed", "clock", ResetTo::Offset(26)).await.unwrap_err();
    assert!(matches!(err, Error::OffsetOutOfRange { .. }), "{err}");

    // A group without a commit, whose consumers must not guess where to start.
    let mut strict = Consumer::builder(&endpoint)
        .group("strict")
        .auto_offset_reset(AutoOffsetReset::Error)
        .max_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    strict.subscribe(&["clock"]).unwrap();
    tokio::time::timeout(DEADLINE, strict.await_assignment()).await.expect("assigned in time").unwrap();
    let err = strict.poll().await.unwrap_err();
    assert!(
        matches!(&err, Error::NoCommittedOffset { group, topic, .. } if group == "strict" && topic == "clock"),
        "{err}"
    );
    strict.close().await.unwrap();

    admin.delete_group("timed").await.unwrap();
    assert!(matches!(admin.describe_group("timed").await, Err(Error::GroupNotFound { .. })));
    assert!(matches!(admin.delete_group("timed").await, Err(Error::GroupNotFound { .. })));
    // The broker forgets a group whose last member left at its next
    // session sweep, so the listing can lag a moment behind.
    eventually("the deleted group to leave the listing", || async {
        admin.list_groups().await.ok()?.iter().all(|g| g.group != "timed").then_some(())
    })
    .await;
    producer.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn members_are_readmitted_by_a_restarted_broker_and_read_on() {
    let (_dir, broker, _) = start().await;
    // Clients reach the broker through a proxy, so they can follow it to its
    // new port after the restart.
    let proxy = Proxy::start(&broker).await;
    let admin = Admin::connect(&proxy.endpoint).unwrap();
    admin.create_topic("restart", NewTopic::new(2)).await.unwrap();
    let producer = Producer::builder(&proxy.endpoint).build().unwrap();
    for p in 0..2 {
        produce(&producer, "restart", p, (0..10).map(|i| (p as u64 * 10 + i).to_string())).await;
    }
    let m1 = member(&proxy.endpoint, "restarted", "restart", LONG_SESSION);
    let m2 = member(&proxy.endpoint, "restarted", "restart", LONG_SESSION);
    settled(&admin, "restarted", &[&m1, &m2], &[1, 1]).await;
    let mut ids = vec![m1.member_id().unwrap(), m2.member_id().unwrap()];
    ids.sort();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (stop1, task1) = spawn_polling(m1, Arc::clone(&seen));
    let (stop2, task2) = spawn_polling(m2, Arc::clone(&seen));
    let delivered = |expected: BTreeSet<u64>| {
        let seen = Arc::clone(&seen);
        async move {
            eventually(&format!("{} records delivered", expected.len()), || {
                let seen = Arc::clone(&seen);
                let expected = expected.clone();
                async move {
                    let distinct: BTreeSet<u64> = seen.lock().iter().copied().collect();
                    expected.is_subset(&distinct).then_some(())
                }
            })
            .await
        }
    };
    delivered((0..20).collect()).await;

    // The restarted broker has forgotten the members; their next heartbeats
    // re-admit them under the same ids, and they read what comes next.
    // While no broker is up, the proxy drops every connection: the stopped
    // broker's port is free for the OS to give to a test running beside this
    // one, and a client the proxy sent there would stay with that broker.
    proxy.block(true);
    let broker = broker.restart().await;
    proxy.redirect(&broker);
    proxy.block(false);
    for p in 0..2 {
        produce(&producer, "restart", p, (0..10).map(|i| (100 + p as u64 * 10 + i).to_string())).await;
    }
    delivered((0..20).chain(100..120).collect()).await;
    eventually("both members back, one partition each", || async {
        let d = admin.describe_group("restarted").await.ok()?;
        let mut back: Vec<String> = d.members.iter().map(|m| m.member_id.clone()).collect();
        back.sort();
        let balanced = d.members.iter().all(|m| m.assignment.len() == 1);
        (d.state == GroupState::Stable && back == ids && balanced).then_some(())
    })
    .await;

    stop1.store(true, Ordering::Relaxed);
    stop2.store(true, Ordering::Relaxed);
    for task in [task1, task2] {
        // A member re-admitted after another took its partition could not
        // commit it, and says so on close.
        let closed = task.await.unwrap();
        assert!(matches!(closed, Ok(()) | Err(Error::FailedPrecondition { .. })), "{closed:?}");
    }
    producer.close().await.unwrap();
    broker.shutdown().await;
}
