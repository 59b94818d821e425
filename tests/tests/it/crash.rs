//! Crash safety: producers with durable acks against the real binary,
//! `kill -9` at a random moment, restart, and check that every acknowledged
//! record is there at the offset it was acknowledged with, that offsets are
//! contiguous, and that nothing half-written is served.
//!
//! 20 cycles by default; `BROOKLET_CRASH_CYCLES=N` runs more.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use brooklet_client::{Admin, NewTopic, Producer, ProducerRecord};
use brooklet_proto::v1 as pb;
use brooklet_tests::{BrokerProcess, DEADLINE, ReservedPort};
use parking_lot::Mutex;
use tonic::transport::Channel;

const PARTITIONS: u32 = 4;
const PRODUCERS: usize = 3;

/// (partition, offset) → value of every acknowledged record.
type Acked = Arc<Mutex<BTreeMap<(u32, u64), String>>>;

#[tokio::test]
async fn acknowledged_records_survive_kill_9() {
    let cycles: usize =
        std::env::var("BROOKLET_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed = fastrand::u64(..);
    println!("crash test: {cycles} cycles, seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let acked: Acked = Arc::default();
    // Every broker of the test listens on this one port, reserved for the
    // whole test. An aborted producer still sends the records it had
    // buffered, for as long as its request timeout: to the next broker on
    // the same data, or nowhere (connections are refused between a kill and
    // the restart), never to a broker of another test that the OS gave a
    // port freed by the kill.
    let port = ReservedPort::new();

    let broker = BrokerProcess::start_on(dir.path(), port.addr()).await;
    Admin::connect(broker.endpoint.clone())
        .unwrap()
        .create_topic("crash", NewTopic::new(PARTITIONS))
        .await
        .unwrap();
    let mut broker = Some(broker);

    for cycle in 0..cycles {
        let running = broker.take().expect("a broker runs");
        // Kill once the producers have had this many acknowledgements (at
        // least one, so every cycle writes), mid-stream.
        let kill_after = acked.lock().len() + rng.usize(1..400);
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| tokio::spawn(produce(running.endpoint.clone(), acked.clone(), format!("c{cycle}-p{p}"))))
            .collect();
        let acks = acked.clone();
        brooklet_tests::eventually("enough acknowledgements", || {
            let enough = acks.lock().len() >= kill_after;
            async move { enough.then_some(()) }
        })
        .await;
        running.kill().await;
        for p in producers {
            p.abort();
        }

        let restarted = BrokerProcess::start_on(dir.path(), port.addr()).await;
        let snapshot = acked.lock().clone();
        verify(&restarted.endpoint, &snapshot, cycle).await;
        broker = Some(restarted);
    }
    broker.take().expect("a broker runs").terminate().await;
    drop(port);
}

/// Sends records until aborted, recording each acknowledged one. It stops
/// at its first failure, so its requests wait as long as the harness waits
/// for anything: a durable write slowed down by a busy machine is not one.
async fn produce(endpoint: String, acked: Acked, tag: String) {
    let producer = Producer::builder(endpoint)
        .linger(Duration::from_millis(1))
        .request_timeout(DEADLINE)
        .build()
        .expect("producer builds");
    let mut pending = futures::stream::FuturesUnordered::new();
    for seq in 0u64.. {
        let value = format!("{tag}-{seq}");
        let record = ProducerRecord::new(value.clone()).partition((seq % u64::from(PARTITIONS)) as u32);
        let Ok(delivery) = producer.send("crash", record).await else { return };
        pending.push(async move { (delivery.await, value) });
        // Keep a bounded window of records in flight.
        while pending.len() >= 64 {
            use futures::StreamExt;
            let Some((result, value)) = pending.next().await else { break };
            match result {
                Ok(meta) => {
                    let offset = meta.offset.expect("a durable ack carries its offset");
                    let previous = acked.lock().insert((meta.partition, offset), value);
                    assert!(previous.is_none(), "two records acknowledged at {}/{offset}", meta.partition);
                }
                Err(_) => return,
            }
        }
    }
}

/// Reads every partition from the start and checks the acknowledged records.
async fn verify(endpoint: &str, acked: &BTreeMap<(u32, u64), String>, cycle: usize) {
    let channel = Channel::from_shared(endpoint.to_owned()).unwrap().connect().await.unwrap();
    let mut consumer =
        pb::consumer_service_client::ConsumerServiceClient::new(channel).max_decoding_message_size(64 << 20);
    for partition in 0..PARTITIONS {
        let mut stored = BTreeMap::new();
        let mut offset = 0;
        loop {
            let request = pb::FetchRequest {
                topic: "crash".into(),
                partition,
                offset,
                max_bytes: 1 << 20,
                max_wait_ms: 0,
            };
            let got = tokio::time::timeout(DEADLINE, consumer.fetch(request))
                .await
                .expect("fetch answers")
                .unwrap_or_else(|s| panic!("cycle {cycle}: fetch {partition}@{offset} failed: {s}"))
                .into_inner();
            if got.batches.is_empty() {
                assert_eq!(
                    offset, got.high_watermark,
                    "cycle {cycle}: partition {partition} ends at its high watermark"
                );
                break;
            }
            for batch in got.batches {
                for r in batch.records {
                    let o = batch.base_offset + u64::from(r.offset_delta);
                    assert_eq!(o, offset, "cycle {cycle}: offsets of partition {partition} are contiguous");
                    stored.insert(o, String::from_utf8(r.value.to_vec()).expect("values are UTF-8"));
                    offset += 1;
                }
            }
        }
        for ((p, o), value) in acked.range((partition, 0)..(partition + 1, 0)) {
            assert_eq!(
                stored.get(o),
                Some(value),
                "cycle {cycle}: acknowledged record {p}/{o} is missing or different after kill -9"
            );
        }
    }
}
