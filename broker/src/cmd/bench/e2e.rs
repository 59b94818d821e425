//! `brooklet bench e2e`: producers and consumers at once. Each value starts
//! with the time it was sent (µs since the Unix epoch, big-endian); a
//! consumer subtracts it from the time it received the record. Both ends run
//! in this process, so they read the same clock.
//!
//! Consumers start at each partition's high watermark, before the producers
//! start, so they see exactly this run's records. Once the producers are
//! done, the consumers read until they have as many records as were
//! acknowledged; if none arrives for a whole request timeout, the run fails
//! rather than wait forever.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure};
use brooklet_client::Offset;
use hdrhistogram::Histogram;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::load::{self, Budget};
use super::produce::{self, DEFAULT_RUN, ProducerPlan};
use super::report::{self, Latency, Meter, Progress, Summary};
use super::{BrokerArgs, Connect, E2eArgs};
use crate::cmd::count;

/// Most consumers one run may start.
const MAX_CONSUMERS: u32 = 1024;
/// How long a caught-up consumer's fetch waits for new records: short, so
/// consumers notice promptly that the run is over.
const FETCH_WAIT: Duration = Duration::from_millis(100);

/// What one consumer received.
#[derive(Debug)]
struct Received {
    records: u64,
    bytes: u64,
    latency: Histogram<u64>,
}

/// `brooklet bench e2e`.
pub async fn run(args: E2eArgs, broker: &BrokerArgs) -> anyhow::Result<()> {
    let limit = args.run.limit(Some(DEFAULT_RUN))?.unwrap_or(DEFAULT_RUN);
    super::check_count("--consumers", u64::from(args.consumers), u64::from(MAX_CONSUMERS))?;
    let mut plan = ProducerPlan::new(&args.producer, broker, true)?;
    let admin = plan.connect.admin()?;
    let default_partitions = plan.producers.max(args.consumers);
    plan.partitions =
        produce::ensure_topic(&admin, &plan.topic, args.producer.partitions, default_partitions).await?;
    ensure!(
        args.consumers <= plan.partitions,
        "--consumers {} exceeds the {} of topic {:?}: each consumer needs one",
        args.consumers,
        count(plan.partitions.into(), "partition"),
        plan.topic
    );
    let plan = Arc::new(plan);
    let described = admin.describe_topic(&plan.topic).await?;
    let starts: Vec<(u32, u64)> =
        described.partitions.iter().map(|p| (p.partition, p.high_watermark)).collect();

    let sent_meter = Arc::new(Meter::default());
    let received_meter = Arc::new(Meter::default());
    let progress = Progress::start(
        "e2e",
        vec![("acked", Arc::clone(&sent_meter)), ("received", Arc::clone(&received_meter))],
    );
    // The records the consumers must receive, known once the producers end.
    let (target, target_rx) = watch::channel(None);
    let started = Instant::now();
    let consumer_budget = Budget::start(None);
    let mut consumers = JoinSet::new();
    for share in load::deal(&starts, args.consumers as usize) {
        let receiver = Receiver {
            connect: plan.connect.clone(),
            topic: plan.topic.clone(),
            budget: Arc::clone(&consumer_budget),
            meter: Arc::clone(&received_meter),
            target: target_rx.clone(),
        };
        consumers.spawn(receiver.receive(share));
    }

    let producer_budget = Budget::start(Some(limit));
    let produced = produce::run_producers(Arc::clone(&plan), producer_budget, Arc::clone(&sent_meter)).await;
    let produced = match produced {
        Ok(produced) => produced,
        Err(e) => {
            consumer_budget.abort();
            let _ = load::join_all(consumers, &consumer_budget).await;
            progress.finish().await;
            return Err(e);
        }
    };
    target.send_replace(Some(produced.acked));
    let received = wait_for_consumers(
        consumers,
        &consumer_budget,
        &received_meter,
        produced.acked,
        plan.connect.timeout,
    )
    .await;
    let elapsed = started.elapsed();
    progress.finish().await;
    let received = received?;

    let hist = report::merge(received.iter().map(|r| &r.latency))?;
    let mut summary = Summary {
        bench: "e2e",
        config: {
            let mut config = plan.config();
            config.push(("consumers", args.consumers.into()));
            config
        },
        records: received.iter().map(|r| r.records).sum(),
        bytes: received.iter().map(|r| r.bytes).sum(),
        elapsed,
        latency: Latency::Measured { what: "send to receive, by the stamp in each value".to_owned(), hist },
        extra: Vec::new(),
    };
    summary.extra("sent", produced.sent);
    summary.extra("acked", produced.acked);
    summary
        .extra("max_in_flight_observed", produced.max_in_flight.map_or(serde_json::Value::Null, Into::into));
    match &produced.ack_latency {
        Some(hist) => summary.extra_latency("ack_latency_ms", &plan.latency_what(), hist),
        None => summary.extra("ack_latency_ms", serde_json::Value::Null),
    }
    summary.print(args.json)
}

/// Waits for the consumers to receive `target` records. Fails if none
/// arrives for `stall`.
async fn wait_for_consumers(
    mut consumers: JoinSet<anyhow::Result<Received>>,
    budget: &Arc<Budget>,
    meter: &Meter,
    target: u64,
    stall: Duration,
) -> anyhow::Result<Vec<Received>> {
    let mut last = meter.records();
    let mut done = Vec::new();
    let mut checks = tokio::time::interval_at(Instant::now() + stall, stall);
    loop {
        tokio::select! {
            joined = consumers.join_next() => match joined {
                None => break,
                Some(Ok(Ok(received))) => done.push(received),
                Some(Ok(Err(e))) => {
                    budget.abort();
                    let _ = load::join_all(consumers, budget).await;
                    return Err(e);
                }
                Some(Err(e)) => {
                    budget.abort();
                    let _ = load::join_all(consumers, budget).await;
                    bail!("a consumer task failed: {e}");
                }
            },
            _ = checks.tick() => {
                let now = meter.records();
                if now == last {
                    budget.abort();
                    let _ = load::join_all(consumers, budget).await;
                    bail!(
                        "consumers received {now} of the {} acknowledged; none arrived for {:.0} s",
                        count(target, "record"),
                        stall.as_secs_f64()
                    );
                }
                last = now;
            }
        }
    }
    Ok(done)
}

/// One consumer's settings.
#[derive(Debug)]
struct Receiver {
    connect: Connect,
    topic: String,
    budget: Arc<Budget>,
    meter: Arc<Meter>,
    /// Records all consumers must receive, once the producers are done.
    target: watch::Receiver<Option<u64>>,
}

impl Receiver {
    /// Reads its partitions from the given offsets until every consumer
    /// together has received the target.
    async fn receive(self, starts: Vec<(u32, u64)>) -> anyhow::Result<Received> {
        let mut received = Received { records: 0, bytes: 0, latency: report::histogram() };
        let mut consumer = self.connect.consumer().max_wait(FETCH_WAIT).build()?;
        for &(partition, offset) in &starts {
            consumer.seek(&self.topic, partition, Offset::At(offset))?;
        }
        loop {
            if self.target.borrow().is_some_and(|target| self.meter.records() >= target) {
                break;
            }
            let polled = tokio::select! {
                polled = consumer.poll() => polled?,
                () = self.budget.aborted() => break,
            };
            let now = load::now_us();
            let mut bytes = 0;
            for record in &polled {
                bytes += (record.value.len() + record.key.as_ref().map_or(0, |k| k.len())) as u64;
                if let Some(stamp) = load::stamp_of(&record.value) {
                    report::record(&mut received.latency, Duration::from_micros(now.saturating_sub(stamp)));
                }
            }
            received.records += polled.len() as u64;
            received.bytes += bytes;
            self.meter.add(polled.len() as u64, bytes);
        }
        Ok(received)
    }
}
