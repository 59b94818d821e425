//! `brooklet bench produce`, and the producers `e2e` runs too: N tasks, one
//! client `Producer` each, sending pooled random values, timing each record
//! from its `send` to its acknowledgement.
//!
//! A producer task sends; a collector task beside it awaits the deliveries,
//! so an acknowledgement is timed when it arrives rather than when the
//! sender gets round to it. Between them a bounded channel, and a [`Window`]
//! of `--max-in-flight` permits: the sender takes one before each send and
//! the collector gives it back once it has seen the record acknowledged, so
//! at most that many records are sent and not yet acknowledged, and a slow
//! broker slows the sender.
//!
//! The collector awaits the deliveries queued together as one [`Run`],
//! which costs the load generator about a third less CPU per record than a
//! future per delivery: the load generator shares the machine with the
//! broker it measures.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use anyhow::{Context, ensure};
use brooklet_client::{Admin, Delivery, Error as ClientError, NewTopic, ProducerRecord};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::load::{self, Budget, Limit, Pacer, Pool};
use super::report::{self, Latency, Meter, Progress, Summary};
use super::{AckMode, BrokerArgs, Connect, MAX_BATCH_BYTES, ProduceArgs, ProducerOpts};

/// How long a run lasts without `--records` or `--duration`.
pub const DEFAULT_RUN: Limit = Limit::Duration(Duration::from_secs(10));
/// Deliveries handed from a sender to its collector at once.
const ACK_QUEUE: usize = 1024;
/// Most producers one run may start.
const MAX_PRODUCERS: u32 = 1024;
/// Distinct keys sent, when records have keys: enough to spread them over
/// any partition count.
const KEY_POOL_SIZE: usize = 1024;

/// Validated producer settings.
#[derive(Debug, Clone)]
pub struct ProducerPlan {
    /// How to reach the broker.
    pub connect: Connect,
    pub topic: String,
    /// The topic's partition count, once known.
    pub partitions: u32,
    pub producers: u32,
    pub record_size: usize,
    pub key_size: usize,
    pub linger: Duration,
    pub batch_bytes: usize,
    pub acks: AckMode,
    /// Total records a second, if throttled.
    pub rate: Option<f64>,
    pub max_in_flight: usize,
    /// Write the send time (µs since the Unix epoch) into the first 8 bytes
    /// of each value, for `e2e`.
    pub stamp: bool,
}

impl ProducerPlan {
    /// Checks the flags; `partitions` is filled in by [`ensure_topic`].
    pub fn new(opts: &ProducerOpts, broker: &BrokerArgs, stamp: bool) -> anyhow::Result<ProducerPlan> {
        super::check_count("--producers", u64::from(opts.producers), u64::from(MAX_PRODUCERS))?;
        if let Some(p) = opts.partitions {
            ensure!(p >= 1, "--partitions must be at least 1");
        }
        let max_record = super::max_record_bytes();
        let min_size = if stamp { 8 } else { 1 };
        ensure!(
            (min_size..=max_record).contains(&opts.record_size),
            "--record-size must be {min_size} to {max_record} bytes (the broker's default record limit), got {}",
            opts.record_size
        );
        ensure!(
            opts.record_size + opts.key_size <= max_record,
            "--record-size plus --key-size must be at most {max_record} bytes (the broker's default record \
             limit), got {}",
            opts.record_size + opts.key_size
        );
        super::check_size("--batch-bytes", opts.batch_bytes, MAX_BATCH_BYTES)?;
        ensure!(opts.linger_ms <= 60_000, "--linger-ms must be at most 60000, got {}", opts.linger_ms);
        if let Some(rate) = opts.rate {
            ensure!(rate.is_finite() && rate > 0.0, "--rate must be above 0 records/s, got {rate}");
        }
        super::check_count("--max-in-flight", opts.max_in_flight as u64, 1 << 20)?;
        Ok(ProducerPlan {
            connect: Connect::new(broker)?,
            topic: opts.topic.clone(),
            partitions: 0,
            producers: opts.producers,
            record_size: opts.record_size,
            key_size: opts.key_size,
            linger: Duration::from_millis(opts.linger_ms),
            batch_bytes: opts.batch_bytes,
            acks: opts.acks,
            rate: opts.rate,
            max_in_flight: opts.max_in_flight,
            stamp,
        })
    }

    /// The settings, for the summary.
    pub fn config(&self) -> Vec<(&'static str, Value)> {
        let mut config = vec![
            ("topic", self.topic.clone().into()),
            ("partitions", self.partitions.into()),
            ("producers", self.producers.into()),
            ("record_size", self.record_size.into()),
            ("key_size", self.key_size.into()),
            ("acks", self.acks.name().into()),
            ("linger_ms", u64::try_from(self.linger.as_millis()).unwrap_or(u64::MAX).into()),
            ("batch_bytes", self.batch_bytes.into()),
            ("rate", self.rate.map_or(Value::Null, Value::from)),
            ("max_in_flight", self.max_in_flight.into()),
        ];
        config.extend(self.connect.config());
        config
    }

    /// Bytes of one record: key and value.
    fn record_bytes(&self) -> u64 {
        (self.record_size + self.key_size) as u64
    }

    /// What the latency measures.
    pub fn latency_what(&self) -> String {
        format!("send to {} ack", self.acks.name())
    }
}

/// Creates `topic` with `partitions` (or `default`) partitions if it does not
/// exist, and returns its partition count.
pub async fn ensure_topic(
    admin: &Admin,
    topic: &str,
    partitions: Option<u32>,
    default: u32,
) -> anyhow::Result<u32> {
    let wanted = partitions.unwrap_or(default).max(1);
    match admin.create_topic(topic, NewTopic::new(wanted)).await {
        Ok(info) => return Ok(info.partitions),
        Err(ClientError::TopicExists { .. }) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create topic {topic:?}")),
    }
    let existing = admin.describe_topic(topic).await?.info.partitions;
    if partitions.is_some_and(|p| p != existing) {
        let partitions = crate::cmd::count(existing.into(), "partition");
        let them = if existing == 1 { "it" } else { "them" };
        eprintln!("bench: topic {topic:?} exists with {partitions}; using {them}");
    }
    Ok(existing)
}

/// What the producers did.
#[derive(Debug)]
pub struct Produced {
    /// Records handed to `send`.
    pub sent: u64,
    /// Records acknowledged (equal to `sent` with `--acks none`, where
    /// nothing is awaited).
    pub acked: u64,
    /// The most records one producer had sent and not seen acknowledged, at
    /// any send; `None` with `--acks none`.
    pub max_in_flight: Option<u64>,
    /// `send` to acknowledgement, µs; `None` with `--acks none`.
    pub ack_latency: Option<Histogram<u64>>,
}

/// Runs `plan.producers` producers until `budget` runs out; `meter` counts
/// acknowledged records (sent ones with `--acks none`).
pub async fn run_producers(
    plan: Arc<ProducerPlan>,
    budget: Arc<Budget>,
    meter: Arc<Meter>,
) -> anyhow::Result<Produced> {
    let pools = Arc::new(Pools {
        values: Pool::new(plan.record_size),
        keys: (plan.key_size > 0).then(|| keys(plan.key_size)),
    });
    let mut tasks = JoinSet::new();
    for index in 0..plan.producers {
        tasks.spawn(produce(
            Arc::clone(&plan),
            index,
            Arc::clone(&pools),
            Arc::clone(&budget),
            Arc::clone(&meter),
        ));
    }
    let done = load::join_all(tasks, &budget).await?;
    let ack_latency = match plan.acks {
        AckMode::None => None,
        _ => Some(report::merge(done.iter().filter_map(|p| p.ack_latency.as_ref()))?),
    };
    Ok(Produced {
        sent: done.iter().map(|p| p.sent).sum(),
        acked: done.iter().map(|p| p.acked).sum(),
        max_in_flight: done.iter().filter_map(|p| p.max_in_flight).max(),
        ack_latency,
    })
}

#[derive(Debug)]
struct Pools {
    values: Pool,
    keys: Option<Vec<bytes::Bytes>>,
}

/// Distinct random keys of `size` bytes.
fn keys(size: usize) -> Vec<bytes::Bytes> {
    (0..KEY_POOL_SIZE)
        .map(|_| {
            let mut key = vec![0u8; size];
            fastrand::fill(&mut key);
            bytes::Bytes::from(key)
        })
        .collect()
}

/// Records a producer claims from the budget at once, when not paced.
const CLAIM_CHUNK: u64 = 64;

/// One producer: sends until the budget runs out, then closes the producer,
/// which waits for every buffered record.
async fn produce(
    plan: Arc<ProducerPlan>,
    index: u32,
    pools: Arc<Pools>,
    budget: Arc<Budget>,
    meter: Arc<Meter>,
) -> anyhow::Result<Produced> {
    let producer = plan
        .connect
        .producer()
        .linger(plan.linger)
        .max_batch_bytes(plan.batch_bytes)
        .acks(plan.acks.durability())
        .build()?;
    let record_bytes = plan.record_bytes();
    // With `--acks none` nothing is awaited, so there is no window.
    let (acks, collector, window) = if plan.acks == AckMode::None {
        (None, None, None)
    } else {
        let (tx, rx) = mpsc::channel(ACK_QUEUE);
        let window = Arc::new(Window::new(plan.max_in_flight));
        let collector = tokio::spawn(collect(
            rx,
            Arc::clone(&window),
            Arc::clone(&meter),
            record_bytes,
            Arc::clone(&budget),
        ));
        (Some(tx), Some(collector), Some(window))
    };
    // The most records sent and not yet acknowledged, seen after a send.
    let mut max_in_flight = 0;
    let mut pacer = Pacer::new(plan.rate.map(|rate| rate / f64::from(plan.producers)));
    let mut sent = 0u64;
    let mut failure = None;
    // Records claimed from the budget and not sent yet. Claimed a few at a
    // time (a duration-limited run overshoots by at most that many records
    // per producer), so the budget's clock is not read for every record.
    let mut claimed = 0;
    loop {
        if claimed == 0 {
            claimed = budget.claim(if pacer.is_some() { 1 } else { CLAIM_CHUNK });
            if claimed == 0 {
                break;
            }
        }
        claimed -= 1;
        if let Some(pacer) = &mut pacer {
            tokio::select! {
                () = pacer.wait(budget.deadline()) => {}
                () = budget.aborted() => break,
            }
        }
        let template = pools.values.get(sent).expect("record sizes are at least 1");
        let value = if plan.stamp { load::stamped(template) } else { template.clone() };
        let mut record = ProducerRecord::new(value);
        // Keyless records go where the client's sticky partitioner puts
        // them: one batch at a time, as applications' keyless records do.
        if let Some(keys) = &pools.keys {
            record = record.key(keys[(sent % keys.len() as u64) as usize].clone());
        }
        if let Some(window) = &window {
            // The permit goes back once the record is acknowledged.
            match window.permits.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(_) => tokio::select! {
                    biased;
                    permit = window.permits.acquire() => match permit {
                        Ok(permit) => permit.forget(),
                        // The collector stopped: a record failed, and it says why.
                        Err(_) => break,
                    },
                    () = budget.aborted() => break,
                },
            }
        }
        let started = Instant::now();
        let delivery = tokio::select! {
            biased;
            sent = producer.send(&plan.topic, record) => sent,
            () = budget.aborted() => break,
        };
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        sent += 1;
        if let Some(window) = &window {
            max_in_flight = max_in_flight.max(sent - window.acked.load(Ordering::Acquire));
        }
        match &acks {
            Some(acks) => {
                if acks.send((started, delivery)).await.is_err() {
                    // The collector stopped: a record failed, and it says why.
                    break;
                }
            }
            // The delivery is dropped unawaited: the record is still sent.
            None => meter.add(1, record_bytes),
        }
    }
    drop(acks);
    if let Some(e) = failure {
        budget.abort();
        return Err(
            anyhow::Error::new(e).context(format!("producer {index} could not send to {:?}", plan.topic))
        );
    }
    if budget.is_aborted() {
        // A record failed somewhere: closing would wait for every buffered
        // batch to fail in turn, a request timeout each. Dropped, the
        // producer gives up on them in the background.
        drop(producer);
    } else {
        producer.close().await.with_context(|| format!("producer {index} could not close"))?;
    }
    let (acked, ack_latency) = match collector {
        Some(collector) => {
            let (acked, hist) = collector.await.context("a delivery collector failed")??;
            (acked, Some(hist))
        }
        None => (sent, None),
    };
    Ok(Produced { sent, acked, max_in_flight: window.map(|_| max_in_flight), ack_latency })
}

/// One producer's records sent and not yet acknowledged: at most
/// `--max-in-flight`, one permit each.
#[derive(Debug)]
struct Window {
    permits: Semaphore,
    /// Records the collector has seen acknowledged. Counted before their
    /// permits go back, so a sender that got a permit back also sees its
    /// record counted here, and `sent - acked` never overstates the records
    /// in flight.
    acked: AtomicU64,
}

impl Window {
    fn new(max_in_flight: usize) -> Window {
        Window { permits: Semaphore::new(max_in_flight), acked: AtomicU64::new(0) }
    }

    /// `records` were acknowledged: their permits go back to the sender.
    fn release(&self, records: usize) {
        self.acked.fetch_add(records as u64, Ordering::Release);
        self.permits.add_permits(records);
    }
}

/// Closes the window when the collector ends, however it ends, so that a
/// sender waiting for a permit stops instead of waiting forever.
struct CloseOnDrop(Arc<Window>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.permits.close();
    }
}

/// Awaits the deliveries of one producer, timing each from its `send` and
/// giving its permit back to the window as soon as it resolves. The first
/// failed record aborts the run.
async fn collect(
    mut deliveries: mpsc::Receiver<(Instant, Delivery)>,
    window: Arc<Window>,
    meter: Arc<Meter>,
    record_bytes: u64,
    budget: Arc<Budget>,
) -> anyhow::Result<(u64, Histogram<u64>)> {
    let _close = CloseOnDrop(Arc::clone(&window));
    let mut hist = report::histogram();
    let mut pending = FuturesUnordered::<Run>::new();
    let mut open = true;
    let mut acked = 0u64;
    while open || !pending.is_empty() {
        tokio::select! {
            // Completions first, so each is timed as soon as it resolves.
            biased;
            Some(outcome) = pending.next(), if !pending.is_empty() => match outcome {
                Ok(latencies) => {
                    let records = latencies.len() as u64;
                    acked += records;
                    meter.add(records, records * record_bytes);
                    for latency in latencies {
                        report::record(&mut hist, latency);
                    }
                }
                Err(e) => {
                    budget.abort();
                    return Err(anyhow::Error::new(e).context("a record was not acknowledged"));
                }
            },
            // The window bounds what the channel holds, so the collector
            // always takes what is there: a delivery is timed only once
            // taken.
            next = deliveries.recv(), if open => match next {
                Some(first) => {
                    // Whatever else is queued joins the same run.
                    let mut run = vec![first];
                    while run.len() < MAX_RUN {
                        match deliveries.try_recv() {
                            Ok(delivery) => run.push(delivery),
                            Err(_) => break,
                        }
                    }
                    pending.push(Run { pending: run, latencies: Vec::new(), window: Arc::clone(&window) });
                }
                None => open = false,
            },
            // Another producer failed; its error is the one reported.
            () = budget.aborted() => break,
        }
    }
    Ok((acked, hist))
}

/// Most deliveries one [`Run`] holds.
const MAX_RUN: usize = 256;

/// Deliveries that reached the collector together, awaited as one future.
/// Each poll times every delivery it finds resolved, just as a future per
/// delivery would be timed when polled, without a task and a wake-up per
/// record: deliveries sent back to back mostly share a batch and resolve
/// together. Their permits go back to the window at once, not when the
/// whole run has resolved. Resolves with their latencies once all have, or
/// with the first failure.
struct Run {
    pending: Vec<(Instant, Delivery)>,
    latencies: Vec<Duration>,
    window: Arc<Window>,
}

impl Future for Run {
    type Output = Result<Vec<Duration>, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let run = &mut *self;
        let mut now = None;
        let mut i = 0;
        let before = run.latencies.len();
        while i < run.pending.len() {
            match Pin::new(&mut run.pending[i].1).poll(cx) {
                Poll::Pending => i += 1,
                Poll::Ready(Ok(_)) => {
                    let (started, _) = run.pending.swap_remove(i);
                    let now = *now.get_or_insert_with(Instant::now);
                    run.latencies.push(now - started);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        if run.latencies.len() > before {
            run.window.release(run.latencies.len() - before);
        }
        if run.pending.is_empty() {
            Poll::Ready(Ok(std::mem::take(&mut run.latencies)))
        } else {
            Poll::Pending
        }
    }
}

/// `brooklet bench produce`.
pub async fn run(args: ProduceArgs, broker: &BrokerArgs) -> anyhow::Result<()> {
    let limit = args.run.limit(Some(DEFAULT_RUN))?.unwrap_or(DEFAULT_RUN);
    let mut plan = ProducerPlan::new(&args.producer, broker, false)?;
    let admin = plan.connect.admin()?;
    plan.partitions = ensure_topic(&admin, &plan.topic, args.producer.partitions, plan.producers).await?;
    let plan = Arc::new(plan);

    let meter = Arc::new(Meter::default());
    let progress = Progress::start("produce", vec![("", Arc::clone(&meter))]);
    let started = Instant::now();
    let budget = Budget::start(Some(limit));
    let produced = run_producers(Arc::clone(&plan), budget, meter).await;
    let elapsed = started.elapsed();
    progress.finish().await;
    let produced = produced?;

    let latency = match produced.ack_latency {
        Some(hist) => Latency::Measured { what: plan.latency_what(), hist },
        None => Latency::NotMeasured("--acks none: deliveries are not awaited".to_owned()),
    };
    let mut summary = Summary {
        bench: "produce",
        config: plan.config(),
        records: produced.acked,
        bytes: produced.acked * plan.record_bytes(),
        elapsed,
        latency,
        extra: Vec::new(),
    };
    summary.extra("sent", produced.sent);
    summary.extra("max_in_flight_observed", produced.max_in_flight.map_or(Value::Null, Value::from));
    summary.print(args.json)
}
