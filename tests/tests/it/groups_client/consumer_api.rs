//! The consumer's API as Rust code uses it: streams that commit and close,
//! dropping a member, bounded polls, missing topics, and committing by hand
//! while a group has members.
//!
//! Every wait is on a condition with a deadline (`eventually`, `DEADLINE`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use brooklet_client::{Admin, Consumer, Error, MissingTopics, NewTopic, Producer};
use brooklet_tests::{DEADLINE, eventually};
use futures::StreamExt;

use super::{LONG_SESSION, member, poll_until, produce, settled, start, values};

/// A session far longer than `DEADLINE`: a partition of such a member that
/// moves within the deadline moved because the member left, never because
/// its session timed out.
const VERY_LONG_SESSION: Duration = Duration::from_secs(120);

/// The group's committed offsets for `topic`, by partition.
async fn committed(admin: &Admin, group: &str, topic: &str) -> BTreeMap<u32, u64> {
    admin
        .fetch_offsets(group, Some(topic))
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.partition, c.offset))
        .collect()
}

/// The offset after the last of `offsets` per partition: what a commit of
/// exactly those records stores.
fn next_offsets(records: &[(u32, u64)]) -> BTreeMap<u32, u64> {
    let mut next = BTreeMap::new();
    for &(partition, offset) in records {
        let e = next.entry(partition).or_insert(0);
        *e = (*e).max(offset + 1);
    }
    next
}

/// A subscribed member that commits only when told.
fn manual_member(endpoint: &str, group: &str, topic: &str, session: Duration) -> Consumer {
    let mut c = Consumer::builder(endpoint)
        .group(group)
        .session_timeout(session)
        .auto_commit(None)
        .max_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

#[tokio::test]
async fn a_stream_commits_what_it_yielded_and_a_closed_stream_hands_over_at_once() {
    let (_dir, broker, admin) = start().await;
    let endpoint = broker.endpoint();
    admin.create_topic("streamed", NewTopic::new(2)).await.unwrap();
    let producer = Producer::builder(&endpoint).build().unwrap();
    for p in 0..2u32 {
        produce(&producer, "streamed", p, (0..75).map(|i| (u64::from(p) * 1000 + i).to_string())).await;
    }

    // A borrowing stream: 100 records, a commit through the stream, then the
    // consumer itself closes. More than 100 were fetched (each fetch reads
    // everything a partition has): only the 100 yielded are committed.
    let mut first = manual_member(&endpoint, "streamers", "streamed", LONG_SESSION);
    let mut yielded = Vec::new();
    {
        let mut stream = first.stream();
        tokio::time::timeout(DEADLINE, async {
            while yielded.len() < 100 {
                let record = stream.next().await.expect("the stream goes on").unwrap();
                yielded.push(record);
            }
        })
        .await
        .expect("100 records in time");
        stream.commit().await.unwrap();
    }
    let positions: Vec<(u32, u64)> = yielded.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(committed(&admin, "streamers", "streamed").await, next_offsets(&positions));
    first.close().await.unwrap();
    assert_eq!(
        committed(&admin, "streamers", "streamed").await.values().sum::<u64>(),
        100,
        "close committed nothing that was not yielded"
    );

    // An owning stream, as a spawned task would hold it: the next member
    // starts where the first one's commits say, takes the rest, and its
    // `close` commits it and leaves. The first member's session is long:
    // its partitions came at once because it closed.
    let second = manual_member(&endpoint, "streamers", "streamed", LONG_SESSION);
    let mut stream = second.into_stream();
    let rest: Vec<_> = tokio::time::timeout(DEADLINE, (&mut stream).take(50).collect::<Vec<_>>())
        .await
        .expect("the remaining 50 records in time")
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let all: BTreeSet<u64> = values(&yielded).into_iter().chain(values(&rest)).collect();
    let expected: BTreeSet<u64> = (0..75).chain(1000..1075).collect();
    assert_eq!(all, expected, "every record once, across the two members");
    assert_eq!(yielded.len() + rest.len(), 150);
    stream.close().await.unwrap();
    assert_eq!(committed(&admin, "streamers", "streamed").await, BTreeMap::from([(0, 75), (1, 75)]));
    assert!(matches!(admin.describe_group("streamers").await, Ok(d) if d.members.is_empty()));
    producer.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_dropped_member_leaves_so_the_survivor_takes_its_partitions_at_once() {
    let (_dir, broker, admin) = start().await;
    let endpoint = broker.endpoint();
    admin.create_topic("shared", NewTopic::new(4)).await.unwrap();
    let producer = Producer::builder(&endpoint).build().unwrap();
    for p in 0..4u32 {
        produce(&producer, "shared", p, (0..5).map(|i| (u64::from(p) * 100 + i).to_string())).await;
    }

    let mut survivor = manual_member(&endpoint, "droppers", "shared", VERY_LONG_SESSION);
    let mut dropped = manual_member(&endpoint, "droppers", "shared", VERY_LONG_SESSION);
    settled(&admin, "droppers", &[&survivor, &dropped], &[2, 2]).await;
    let dropped_partitions: BTreeSet<u32> = dropped.assignment().into_iter().map(|(_, p)| p).collect();
    let read_by_dropped = poll_until(&mut dropped, 10).await;
    let survivor_first = poll_until(&mut survivor, 10).await;

    // Dropped without close, with a session of 120 s: only its leave can
    // move its partitions within the deadline of `settled` (30 s).
    drop(dropped);
    let alone = settled(&admin, "droppers", &[&survivor], &[4]).await;
    assert_eq!(alone.members.len(), 1);
    // It left without committing: the survivor reads its partitions again
    // from the start (at least once; nothing is skipped).
    let taken_over = poll_until(&mut survivor, 10).await;
    let taken: BTreeSet<u32> = taken_over.iter().map(|r| r.partition).collect();
    assert_eq!(taken, dropped_partitions);
    assert_eq!(
        values(&taken_over).into_iter().collect::<BTreeSet<_>>(),
        values(&read_by_dropped).into_iter().collect::<BTreeSet<_>>()
    );
    assert!(survivor_first.iter().all(|r| !dropped_partitions.contains(&r.partition)));
    survivor.close().await.unwrap();
    producer.close().await.unwrap();
    broker.shutdown().await;
}

/// The README's consumer: a new member of a new group, over a topic that
/// already has records, gets them from its first `poll`. The assignment
/// arriving does not end that poll's wait: it reads the partitions it was
/// just given. The wait is long so that only an empty answer fails the
/// test, however slow the machine.
#[tokio::test]
async fn the_first_poll_of_a_new_member_returns_the_records_already_there() {
    let (_dir, broker, admin) = start().await;
    let endpoint = broker.endpoint();
    admin.create_topic("waiting", NewTopic::new(3)).await.unwrap();
    let producer = Producer::builder(&endpoint).build().unwrap();
    for partition in 0..3 {
        produce(&producer, "waiting", partition, (0..2).map(|i| (partition * 10 + i).to_string())).await;
    }
    producer.close().await.unwrap();

    let mut c =
        Consumer::builder(&endpoint).group("billing").max_wait(Duration::from_secs(30)).build().unwrap();
    c.subscribe(&["waiting"]).unwrap();
    let first = c.poll().await.unwrap();
    let mut got = values(&first);
    got.sort_unstable();
    assert_eq!(got, [0, 1, 10, 11, 20, 21], "the first poll returns every record already there");
    c.commit().await.unwrap();
    assert_eq!(committed(&admin, "billing", "waiting").await, BTreeMap::from([(0, 2), (1, 2), (2, 2)]));
    c.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_bounded_poll_returns_at_most_max_poll_records_and_a_commit_stores_exactly_those() {
    let (_dir, broker, admin) = start().await;
    let endpoint = broker.endpoint();
    admin.create_topic("bounded", NewTopic::new(1)).await.unwrap();
    let producer = Producer::builder(&endpoint).build().unwrap();
    produce(&producer, "bounded", 0, (0..25).map(|i| i.to_string())).await;

    let mut c = Consumer::builder(&endpoint)
        .group("bounded-g")
        .max_poll_records(10)
        .max_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    c.assign_all("bounded").await.unwrap();
    let mut got = Vec::new();
    let mut first_commit = None;
    tokio::time::timeout(DEADLINE, async {
        while got.len() < 25 {
            let records = c.poll().await.unwrap();
            assert!(records.len() <= 10, "a poll returned {} records", records.len());
            got.extend(values(&records));
            if first_commit.is_none() && !records.is_empty() {
                c.commit().await.unwrap();
                first_commit = Some(got.len() as u64);
            }
        }
    })
    .await
    .expect("25 records in time");
    assert_eq!(got, (0..25).collect::<Vec<u64>>(), "in order, none skipped, none twice");
    let first_commit = first_commit.unwrap();
    assert_eq!(committed(&admin, "bounded-g", "bounded").await.get(&0).copied(), Some(first_commit));
    c.commit().await.unwrap();
    assert_eq!(committed(&admin, "bounded-g", "bounded").await, BTreeMap::from([(0, 25)]));
    producer.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn subscribing_to_a_missing_topic_fails_when_told_to_and_otherwise_waits_for_it() {
    let (_dir, broker, admin) = start().await;
    let endpoint = broker.endpoint();
    admin.create_topic("present", NewTopic::new(1)).await.unwrap();

    let mut strict = Consumer::builder(&endpoint)
        .group("ghosts")
        .missing_topics(MissingTopics::Fail)
        .max_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    strict.subscribe(&["present", "absent"]).unwrap();
    let err =
        tokio::time::timeout(DEADLINE, strict.await_joined()).await.expect("answered in time").unwrap_err();
    assert!(matches!(&err, Error::TopicNotFound { topic } if topic == "absent"), "{err}");
    let err = strict.poll().await.unwrap_err();
    assert!(matches!(&err, Error::TopicNotFound { topic } if topic == "absent"), "{err}");
    let err = strict.stream().next().await.expect("an item").unwrap_err();
    assert!(matches!(&err, Error::TopicNotFound { .. }), "{err}");
    assert!(
        matches!(admin.describe_group("ghosts").await, Err(Error::GroupNotFound { .. })),
        "the consumer never joined"
    );
    strict.close().await.unwrap();

    // By default the consumer joins, owns nothing of the missing topic (and
    // warns), and gets its partitions once it is created.
    let patient = member(&endpoint, "patient", "later", LONG_SESSION);
    let joined =
        tokio::time::timeout(DEADLINE, patient.await_joined()).await.expect("joined in time").unwrap();
    assert!(joined.is_empty(), "{joined:?}");
    admin.create_topic("later", NewTopic::new(2)).await.unwrap();
    let owned = eventually("both partitions of the new topic", || async {
        (patient.assignment().len() == 2).then(|| patient.assignment())
    })
    .await;
    assert_eq!(owned, [("later".to_owned(), 0), ("later".to_owned(), 1)]);
    patient.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn committing_by_hand_while_the_group_has_members_says_to_subscribe() {
    let (_dir, broker, admin) = start().await;
    let endpoint = broker.endpoint();
    admin.create_topic("orders", NewTopic::new(2)).await.unwrap();
    let producer = Producer::builder(&endpoint).build().unwrap();
    for p in 0..2 {
        produce(&producer, "orders", p, (0..3).map(|i| i.to_string())).await;
    }
    let live = member(&endpoint, "billing", "orders", LONG_SESSION);
    tokio::time::timeout(DEADLINE, live.await_assignment()).await.expect("assigned in time").unwrap();

    // The README's old example: a group, partitions assigned by hand.
    let mut by_hand =
        Consumer::builder(&endpoint).group("billing").max_wait(Duration::from_millis(100)).build().unwrap();
    by_hand.assign_all("orders").await.unwrap();
    poll_until(&mut by_hand, 6).await;
    let err = by_hand.commit().await.unwrap_err();
    let Error::FailedPrecondition { message } = &err else { panic!("{err:?}") };
    assert!(message.contains("subscribe instead"), "{message}");
    assert!(message.contains("no live members"), "{message}");

    // Once the group has no live members, the same commit is accepted.
    live.close().await.unwrap();
    by_hand.commit().await.unwrap();
    assert_eq!(committed(&admin, "billing", "orders").await, BTreeMap::from([(0, 3), (1, 3)]));
    producer.close().await.unwrap();
    broker.shutdown().await;
}
