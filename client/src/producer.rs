//! The batching [`Producer`]: `send` picks a partition and adds the record to
//! a batch in the [`accumulator`]; one background task per producer sends
//! ready batches and hands each record its acknowledgement. Partition counts
//! come from `DescribeTopic` through [`Admin`], cached per topic. The task
//! runs on the caller's runtime, or, with `flush_on_drop`, on a runtime and
//! thread of its own so that a drop can wait for it.

mod accumulator;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use brooklet_proto::v1;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt};
use parking_lot::{Condvar, Mutex};
use tokio::sync::{Notify, OnceCell, Semaphore, TryAcquireError, watch};
use tokio::time::Instant;

use self::accumulator::{Accumulator, Answer, BatchAck, Limits, Request};
use crate::admin::Admin;
use crate::breaker::Breakers;
use crate::connection::{CallOptions, Connection, ConnectionConfig};
use crate::error::{Error, Op, Result};
use crate::record::{Durability, ProducerRecord, RecordMetadata};

/// Default time a batch waits for more records.
const DEFAULT_LINGER: Duration = Duration::from_millis(5);
/// Default size at which a batch is sent without waiting.
const DEFAULT_MAX_BATCH_BYTES: usize = 256 * 1024;
/// Default bound on the bytes of records buffered and in flight.
const DEFAULT_BUFFER_BYTES: usize = 32 * 1024 * 1024;
/// Published as the low watermark once the producer gave up on its records,
/// so that `flush` returns, with [`Error::Closed`].
const GAVE_UP: u64 = u64::MAX;
/// Produce requests in flight at once, across all partitions.
const MAX_IN_FLIGHT_REQUESTS: usize = 16;
/// Batches in flight at once to one partition, for an idempotent producer
/// that has its producer id: the broker appends them in the order of their
/// sequence numbers whatever order they arrive in. Without idempotence (or
/// before the id is known) a partition has one batch in flight, so its
/// records cannot be reordered. Below the broker's memory of five batches
/// per producer and partition, so a retry is always recognised.
const MAX_IN_FLIGHT_PER_PARTITION: usize = 4;

/// A record's acknowledgement, returned by [`Producer::send`]: resolves with
/// where the record was written once the broker acknowledged its batch.
///
/// The records of a batch share one answer, so a delivery costs no channel
/// or allocation of its own.
#[derive(Debug)]
#[must_use = "a delivery tells whether the record was written"]
pub struct Delivery {
    answer: Answer,
    /// The record's place in its batch.
    index: u32,
    timestamp_ms: Option<i64>,
}

impl Future for Delivery {
    type Output = Result<RecordMetadata>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let (index, timestamp_ms) = (self.index, self.timestamp_ms);
        std::pin::Pin::new(&mut self.answer).poll(cx).map(|answer| match answer {
            Ok(Ok(ack)) => Ok(RecordMetadata {
                topic: ack.topic,
                partition: ack.partition,
                offset: ack.base_offset.map(|base| base + u64::from(index)),
                timestamp_ms,
                durability: ack.durability,
            }),
            Ok(Err(e)) => Err(e),
            // The batch dropped unanswered: the producer gave up on it (its
            // task stopped with its runtime, or `flush_on_drop` ran out),
            // and reported it.
            Err(_) => Err(Error::Closed),
        })
    }
}

/// Configures a [`Producer`].
#[derive(Debug, Clone)]
pub struct ProducerBuilder {
    conn: ConnectionConfig,
    linger: Duration,
    max_batch_bytes: usize,
    buffer_bytes: usize,
    acks: Durability,
    idempotent: bool,
    flush_on_drop: Option<Duration>,
}

impl ProducerBuilder {
    /// Whether the broker should recognise retried batches (default: yes).
    /// An idempotent producer numbers each partition's records, so a batch
    /// retried after its answer was lost is answered with its original
    /// offsets instead of being appended twice. Without it, a retry after a
    /// lost answer can write a batch twice.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// What the broker must guarantee before it acknowledges a batch
    /// (default [`Durability::Durable`]: on disk). [`Durability::Written`]
    /// answers sooner, but a broker crash can lose acknowledged records.
    /// [`Durability::None`] does not wait for the broker at all: a delivery
    /// resolves, without an offset, once its batch is handed to the
    /// connection, and failures are only logged.
    pub fn acks(mut self, acks: Durability) -> Self {
        self.acks = acks;
        self
    }

    /// How long a batch waits for more records before it is sent (default
    /// 5 ms). Zero sends each batch as soon as the sender gets to it.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// A batch is sent as soon as it holds this many bytes (default 256 KiB);
    /// it also bounds how many bytes one request carries. A record larger
    /// than this is sent in a request of its own.
    ///
    /// Keep it below the broker's record size limit: the broker refuses a
    /// whole request for one oversized record, so such a record should
    /// travel, and fail, alone.
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// Bound on the bytes of records buffered or in flight (default 32 MiB).
    /// When it is reached, `send` waits for space.
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes;
        self
    }

    /// Time allowed for one produce request or metadata lookup, retries
    /// included (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.conn.request_timeout = timeout;
        self
    }

    /// Time allowed to open the TCP connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.conn.connect_timeout = timeout;
        self
    }

    /// Makes dropping the last clone of the producer wait, up to `timeout`,
    /// for the records it still holds to be acknowledged, as
    /// [`close`](Producer::close) would; what is still pending then is given
    /// up: its deliveries fail with [`Error::Closed`] and the count is logged
    /// at error level. Off by default: see [Dropping](Producer#dropping)
    /// for what dropping does without it, and why.
    ///
    /// A safety net for paths that miss `close().await` (an early return, a
    /// `?`, a panic): it works whatever runtime the drop happens in, a
    /// current-thread one included, or outside any runtime, because the
    /// producer then runs its background task and its connection on a
    /// thread and runtime of its own instead of the caller's. The cost is
    /// that thread, and that the drop blocks the dropping thread, an async
    /// runtime's worker included, until the records are acknowledged or the
    /// timeout passes. A zero timeout does not wait: it gives up on the
    /// pending records at once and reports them.
    pub fn flush_on_drop(mut self, timeout: Duration) -> Self {
        self.flush_on_drop = Some(timeout);
        self
    }

    crate::connection::endpoint_settings!();

    /// Builds the producer and starts its background task. It connects on
    /// its first request, so this succeeds while the broker is down.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] for an unusable endpoint;
    /// [`Error::InvalidArgument`] for a zero size limit or timeout.
    ///
    /// # Panics
    /// Outside a Tokio runtime, unless [`flush_on_drop`](Self::flush_on_drop)
    /// is set; with it, if the OS refuses to start the producer's thread.
    pub fn build(self) -> Result<Producer> {
        if self.max_batch_bytes == 0 || self.buffer_bytes == 0 {
            return Err(Error::InvalidArgument {
                message: "max_batch_bytes and buffer_bytes must be greater than zero".to_owned(),
            });
        }
        // With flush_on_drop, the task and the connection's own tasks run on
        // a runtime of the producer's, on a thread of its own: a drop can
        // then block waiting for them whatever runtime it happens in (even a
        // current-thread one, which a blocked drop would stall) and after
        // the caller's runtime is gone.
        let runtime = self.flush_on_drop.map(|_| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the producer's runtime starts")
        });
        let conn = {
            let _enter = runtime.as_ref().map(tokio::runtime::Runtime::enter);
            self.conn.connect()?
        };
        let buffer_bytes = self.buffer_bytes.min(Semaphore::MAX_PERMITS);
        let (acked, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            admin: Admin { conn: conn.clone() },
            conn,
            acks: self.acks,
            idempotence: self.idempotent.then(|| Mutex::new(Idempotence::default())),
            buffer: Arc::new(Semaphore::new(buffer_bytes)),
            buffer_bytes,
            state: Mutex::new(Accumulator::new(Limits {
                linger: self.linger,
                max_batch_bytes: self.max_batch_bytes,
            })),
            acked,
            wake: Notify::new(),
            settled: Condvar::new(),
            flush_on_drop: self.flush_on_drop,
            partition_counts: Mutex::new(HashMap::new()),
        });
        // The guard is moved into the task before it first runs, so even a
        // task dropped unpolled reports what it leaves behind.
        let guard = TaskGuard { shared: Arc::clone(&shared) };
        let task = async move {
            let shared = Arc::clone(&guard.shared);
            run(shared).await;
            drop(guard);
        };
        match runtime {
            Some(runtime) => {
                std::thread::Builder::new()
                    .name("brooklet-producer".to_owned())
                    .spawn(move || runtime.block_on(task))
                    .expect("the producer's thread starts");
            }
            None => {
                tokio::spawn(task);
            }
        }
        Ok(Producer { handle: Arc::new(Handle { shared }) })
    }
}

/// Sends records to a broker in batches.
///
/// [`send`](Producer::send) adds a record to a per-partition batch and
/// returns a future that resolves once the broker has acknowledged that
/// batch. A batch is sent when it reaches `max_batch_bytes` or when its
/// `linger` expires; a request may carry batches of several partitions of
/// one topic, and up to 16 requests are in flight: one batch per partition,
/// or up to 4 per partition for an idempotent producer once it has its id
/// (the broker appends them in sequence order whatever order they arrive
/// in).
///
/// # Partitions
/// A record goes to its explicit partition if it has one, else to
/// `partition_for_key(key)` (Kafka's murmur2 mapping, the one the broker
/// uses), else to the topic's *sticky* partition: keyless records fill one
/// batch, and the next batch goes to another partition chosen at random.
/// Partition counts are looked up with `DescribeTopic` on a topic's first
/// send and cached; a send or batch failing with `TopicNotFound` or
/// `InvalidArgument` drops the cached count so the next send looks again.
///
/// # Ordering and delivery
/// A record joins the buffer when its `send` completes, and records of a
/// partition are appended in the order they joined. `send` returns a
/// [`Delivery`] to await later, so a loop of `send(..).await?` keeps order
/// and still batches; awaiting each delivery before the next send waits a
/// linger per record.
///
/// A produce request that fails with a connection error is retried until
/// the request timeout runs out. The producer is idempotent by default
/// ([`ProducerBuilder::idempotent`]): retries carry the same producer id and
/// sequence numbers, so a batch the broker appended before its answer was
/// lost is answered with its original offsets, never appended twice. After
/// a batch fails for good (its records report the error, e.g.
/// [`Error::Timeout`], and may or may not have been appended), the producer
/// starts a new producer id; the batches already sent after it to the same
/// partition fail too (the broker waits for the missing batch, then refuses
/// them as a sequence gap), so acknowledged records of a partition are in
/// the order they were sent.
/// Without idempotence, delivery is at least once:
/// a retry after a lost answer appends the batch again.
///
/// # Closing
/// Clones share one producer. [`close`](Producer::close) (on any clone)
/// refuses further records and waits until the buffered ones are
/// acknowledged or have failed. Await it before the program, or the runtime
/// the producer was built in, ends:
///
/// ```no_run
/// # async fn example() -> brooklet_client::Result<()> {
/// use brooklet_client::{Producer, ProducerRecord};
/// let producer = Producer::builder("http://127.0.0.1:7070").build()?;
/// for i in 0..1000 {
///     let _delivery = producer.send("orders", ProducerRecord::new(format!("order {i}"))).await?;
/// }
/// producer.close().await?; // every record acknowledged, or its delivery failed
/// # Ok(())
/// # }
/// ```
///
/// # Dropping
/// Dropping the last clone closes the producer too, but a drop cannot wait
/// for the broker. By default the records still pending are sent afterwards
/// by the background task, and their deliveries still resolve, **only while
/// the runtime the producer was built in keeps running**. When `main`
/// returns, its runtime shuts down and the task stops with it, before it
/// could send them; so do the records of a producer left to be dropped at
/// the end of a test. Such records are not lost silently: their deliveries
/// fail with [`Error::Closed`], and their count is logged with `tracing` at
/// error level (and written to stderr when no `tracing` subscriber is
/// installed, so that the loss shows even then). A batch that fails once no
/// delivery awaits it anymore, as when the broker is down after the
/// producer was dropped, is logged in the same way.
///
/// With [`ProducerBuilder::flush_on_drop`], dropping the last clone waits
/// instead, up to a timeout, until the pending records are acknowledged;
/// what is still pending then is reported in the same way.
///
/// Waiting is not the default because a drop that waits blocks the thread
/// it runs on (in async code a worker of the runtime, whose other tasks
/// wait with it) for as long as the broker takes, and because it can only
/// work if the producer sends from a thread of its own: the task of a
/// producer sharing a current-thread runtime with the drop would never run.
/// Every producer would pay for that thread to make up for a missing
/// `close().await`, so it is opt-in, a safety net for early returns and
/// panics. librdkafka (under rust-rdkafka) behaves alike: a producer
/// destroyed with messages outstanding does not deliver them but logs how
/// many there were, and expects `flush` to have been called; this producer
/// expects `close`.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer").field("conn", &self.handle.shared.conn).finish_non_exhaustive()
    }
}

/// Closes the producer when the last clone (or send future) is dropped.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.close();
        let Some(timeout) = shared.flush_on_drop else {
            // The task sends what is left; if the runtime stops first, its
            // guard reports what it could not.
            let pending = shared.state.lock().pending_records();
            if pending > 0 {
                tracing::debug!(
                    conn = ?shared.conn,
                    records = pending,
                    "producer dropped without close(): its records are sent in the background"
                );
            }
            return;
        };
        // The task runs on the producer's own thread (see `build`), so this
        // thread may block: nothing the task needs waits for it.
        let deadline = std::time::Instant::now().checked_add(timeout);
        {
            let mut state = shared.state.lock();
            while !state.is_finished() {
                match deadline {
                    Some(deadline) => {
                        if shared.settled.wait_until(&mut state, deadline).timed_out() {
                            break;
                        }
                    }
                    None => shared.settled.wait(&mut state),
                }
            }
        }
        let lost = shared.abandon();
        if lost > 0 {
            report_undelivered(
                lost,
                &format!(
                    "the producer was dropped and they were not acknowledged within its \
                     flush_on_drop timeout of {timeout:?} (those already sent may have been written)"
                ),
            );
        }
    }
}

/// Held by the producer's task. If the task is dropped before it finished
/// (its runtime shut down), it gives up on the records left, so that their
/// deliveries fail and `flush` returns, and reports them.
struct TaskGuard {
    shared: Arc<Shared>,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        let lost = self.shared.abandon();
        if lost > 0 {
            report_undelivered(
                lost,
                "the producer's runtime stopped before they were acknowledged (those already sent \
                 may have been written); await Producer::close() before the runtime ends, or set \
                 ProducerBuilder::flush_on_drop",
            );
        }
    }
}

/// Reports records the producer gave up on: an error event, and a line on
/// stderr when no `tracing` subscriber would show it (not when a subscriber
/// filters it out: that is a choice).
fn report_undelivered(records: usize, why: &str) {
    let (count, verb) =
        if records == 1 { ("1 record".to_owned(), "was") } else { (format!("{records} records"), "were") };
    tracing::error!(records, "{count} {verb} not delivered: {why}");
    if tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>()) {
        eprintln!("brooklet-client: error: {count} {verb} not delivered: {why}");
    }
}

/// What `send`, `flush` and the background task share.
struct Shared {
    conn: Connection,
    admin: Admin,
    acks: Durability,
    /// The producer id and each partition's next sequence number, when
    /// idempotent. A lock, not a channel: it is read and bumped once per
    /// request, never across an `.await`.
    idempotence: Option<Mutex<Idempotence>>,
    /// Buffer space in bytes: `send` takes a record's size before joining a
    /// batch, and the space returns when the batch is done. This is what
    /// bounds the producer's memory.
    buffer: Arc<Semaphore>,
    buffer_bytes: usize,
    /// A lock rather than a channel to the task, because `send` must pick a
    /// partition and join a batch in one step, and the task must see every
    /// partition's queue at once to build requests. Held only for
    /// bookkeeping, never across an await.
    state: Mutex<Accumulator>,
    /// The accumulator's low watermark, published after each completion so
    /// `flush` can wait for it.
    acked: watch::Sender<u64>,
    /// Wakes the task: a batch was started or filled, a flush was asked, or
    /// the producer closed.
    wake: Notify,
    /// Signalled, with `state`, after batches complete and when the
    /// producer gives up: a drop with `flush_on_drop` waits on it.
    settled: Condvar,
    /// How long the drop of the last clone waits for pending records; with
    /// it, the task has a thread and a runtime of its own.
    flush_on_drop: Option<Duration>,
    /// Partition counts by topic. A cell per topic lets one lookup serve all
    /// the sends that need it at once; the lock only guards the map.
    partition_counts: Mutex<HashMap<String, Arc<OnceCell<u32>>>>,
}

impl Producer {
    /// Configures a producer for the broker at `endpoint` (`http://host:port`,
    /// or just `host:port`), or at the first reachable of a comma-separated
    /// list of endpoints (see [`ProducerBuilder::endpoints`]).
    pub fn builder(endpoint: impl Into<String>) -> ProducerBuilder {
        ProducerBuilder {
            conn: ConnectionConfig::new(endpoint.into()),
            linger: DEFAULT_LINGER,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            acks: Durability::Durable,
            idempotent: true,
            flush_on_drop: None,
        }
    }

    /// The circuit breakers of the producer's endpoints: their states, and a
    /// watch of them.
    pub fn breakers(&self) -> Breakers {
        self.handle.shared.conn.breakers()
    }

    /// Adds `record` to a batch for `topic` and returns its [`Delivery`]: a
    /// future that resolves once the broker has acknowledged the batch, with
    /// where the record was written.
    ///
    /// Records join their partition's batch in the order their `send` calls
    /// complete, so awaiting `send` record by record keeps their order while
    /// the deliveries are awaited later, together. `send` waits only for the
    /// topic's partition count (on its first record for a topic) and for
    /// buffer space when the buffer is full.
    ///
    /// ```no_run
    /// # async fn example(producer: brooklet_client::Producer) -> brooklet_client::Result<()> {
    /// use brooklet_client::ProducerRecord;
    /// let mut deliveries = Vec::new();
    /// for i in 0..100 {
    ///     deliveries.push(producer.send("orders", ProducerRecord::new(format!("order {i}"))).await?);
    /// }
    /// for delivery in deliveries {
    ///     let written = delivery.await?;
    ///     println!("partition {} offset {:?}", written.partition, written.offset);
    /// }
    /// producer.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// From `send`: [`Error::TopicNotFound`]; [`Error::InvalidArgument`] for
    /// a partition the topic does not have; [`Error::Unavailable`] or
    /// [`Error::Timeout`] when the partition count could not be looked up;
    /// [`Error::Closed`] after [`close`](Producer::close). From the
    /// delivery: the broker's refusal of the batch ([`Error::InvalidArgument`]
    /// for an oversized record, …), [`Error::Unavailable`] or
    /// [`Error::Timeout`].
    pub async fn send(&self, topic: &str, record: ProducerRecord) -> Result<Delivery> {
        self.handle.shared.enqueue(topic, record).await
    }

    /// Waits until every record that joined the buffer before this call is
    /// acknowledged or has failed, sending their batches without waiting for
    /// the linger. Per-record failures go to the records' own futures.
    ///
    /// # Errors
    /// [`Error::Closed`] if the producer's task stopped with its runtime, and
    /// so gave up on the records.
    pub async fn flush(&self) -> Result<()> {
        let shared = &self.handle.shared;
        let target = shared.state.lock().request_flush();
        shared.wake.notify_one();
        let mut acked = shared.acked.subscribe();
        let low = *acked.wait_for(|&low| low >= target).await.map_err(|_| Error::Closed)?;
        if low == GAVE_UP { Err(Error::Closed) } else { Ok(()) }
    }

    /// Records sent and not yet acknowledged or failed: buffered, or waiting
    /// for the broker. What [`close`](Producer::close) would wait for.
    pub fn pending_records(&self) -> usize {
        self.handle.shared.state.lock().pending_records()
    }

    /// Refuses further records (on every clone) and waits until the buffered
    /// ones are acknowledged or have failed. Sends still waiting for buffer
    /// space fail with [`Error::Closed`].
    ///
    /// # Errors
    /// As [`flush`](Producer::flush).
    pub async fn close(self) -> Result<()> {
        self.handle.shared.close();
        self.flush().await
    }
}

impl Shared {
    /// Puts `record` in a batch, waiting for buffer space if need be, and
    /// returns where its acknowledgement will arrive.
    async fn enqueue(&self, topic: &str, record: ProducerRecord) -> Result<Delivery> {
        // Checked first so a closed producer answers at once, without a
        // metadata lookup that may wait for an unreachable broker.
        if self.buffer.is_closed() {
            return Err(Error::Closed);
        }
        let partitions = self.partitions_for(topic, record.partition).await?;
        // A record larger than the whole buffer takes all of it rather than
        // waiting forever.
        let size = record.size().min(self.buffer_bytes);
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        // Trying first keeps the common case free of awaits, so records
        // polled in order join in order.
        let permit = match Arc::clone(&self.buffer).try_acquire_many_owned(permits) {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(Error::Closed),
            Err(TryAcquireError::NoPermits) => {
                Arc::clone(&self.buffer).acquire_many_owned(permits).await.map_err(|_| Error::Closed)?
            }
        };
        let timestamp_ms = record.timestamp_ms;
        let slot = self.state.lock().append(topic, partitions, record, permit, Instant::now)?;
        if slot.wake {
            self.wake.notify_one();
        }
        Ok(Delivery { answer: slot.answer, index: slot.index, timestamp_ms })
    }

    /// The partition count of `topic`, checked against the record's explicit
    /// partition. A partition beyond the cached count looks the topic up
    /// again before failing, in case it was re-created larger.
    async fn partitions_for(&self, topic: &str, explicit: Option<u32>) -> Result<u32> {
        let count = self.partition_count(topic).await?;
        let Some(partition) = explicit.filter(|&p| p >= count) else {
            return Ok(count);
        };
        self.forget_partitions(topic);
        let count = self.partition_count(topic).await?;
        if partition >= count {
            return Err(Error::InvalidArgument {
                message: format!(
                    "partition {partition} does not exist: topic {topic:?} has {count} partitions (0 to {})",
                    count - 1
                ),
            });
        }
        Ok(count)
    }

    async fn partition_count(&self, topic: &str) -> Result<u32> {
        let cell = {
            let mut counts = self.partition_counts.lock();
            // Looking up before inserting spares a String allocation per send.
            match counts.get(topic) {
                Some(cell) => Arc::clone(cell),
                None => Arc::clone(counts.entry(topic.to_owned()).or_default()),
            }
        };
        if let Some(&count) = cell.get() {
            return Ok(count);
        }
        // The lookup's future is large (a whole gRPC call): boxed, it does not
        // make every `send` future that size, and so costly to move.
        let count = Box::pin(cell.get_or_try_init(|| async {
            let description = self.admin.describe_topic(topic).await?;
            match description.info.partitions {
                0 => Err(Error::protocol(Op::DescribeTopic, format!("topic {topic:?} has no partitions"))),
                n => Ok(n),
            }
        }))
        .await
        // An empty cell left for a topic that does not exist would stay
        // in the map forever.
        .inspect_err(|_| self.forget_partitions(topic))?;
        Ok(*count)
    }

    fn forget_partitions(&self, topic: &str) {
        self.partition_counts.lock().remove(topic);
    }

    fn close(&self) {
        self.state.lock().close();
        self.buffer.close();
        self.wake.notify_one();
    }

    /// Gives up on the records not yet done (see [`Accumulator::abandon`]),
    /// unless the producer finished, and returns how many there were. The
    /// task, if it still runs, stops without answering the requests in
    /// flight.
    fn abandon(&self) -> usize {
        let lost = {
            let mut state = self.state.lock();
            let lost = state.abandon();
            if state.is_abandoned() {
                self.acked.send_replace(GAVE_UP);
            }
            lost
        };
        self.buffer.close();
        self.wake.notify_one();
        self.settled.notify_all();
        lost
    }

    /// Hands out the outcome of a request, then frees its partitions. Replies
    /// go first so a record's future resolves before `flush` returns. A
    /// failure that no delivery awaits is reported here, or nowhere.
    fn finish(&self, request: Request, producer_id: Option<u64>, outcome: Result<v1::ProduceResponse>) {
        if let Err(err) = &outcome {
            if self.acks == Durability::None {
                let records: usize = request.batches.iter().map(|b| b.len).sum();
                tracing::warn!(
                    topic = %request.topic,
                    records,
                    error = %err,
                    "records sent with acks none were not written"
                );
            }
            self.reset_idempotence(producer_id);
            if err.invalidates_metadata() {
                self.forget_partitions(&request.topic);
            }
        }
        let keys: Vec<_> = request.batches.iter().map(|b| b.key()).collect();
        let topic = request.topic.clone();
        let unheard = {
            let mut state = self.state.lock();
            if state.is_abandoned() {
                // Counted and reported when the producer gave up on them:
                // the request is dropped, and its deliveries fail.
                return;
            }
            // Answered under the lock, so that a drop giving up on the
            // records meanwhile does not count records already answered.
            let unheard = deliver(request, &outcome);
            state.complete(&topic, &keys);
            self.acked.send_replace(state.low_watermark());
            unheard
        };
        self.settled.notify_all();
        if let Some((records, err)) = unheard {
            report_undelivered(records, &format!("{err} (topic {topic:?}; no delivery awaited them)"));
        }
    }
}

/// Answers each batch of `request` with its acknowledgement or error, and
/// returns how many records failed while no delivery awaited them anymore,
/// which nobody else would hear of, with the first such error. Dropping the
/// batches afterwards returns their buffer space.
fn deliver(request: Request, outcome: &Result<v1::ProduceResponse>) -> Option<(usize, Error)> {
    let topic: Arc<str> = request.topic.as_str().into();
    let mut unheard: Option<(usize, Error)> = None;
    for mut batch in request.batches {
        // Answered when sent (acks none).
        let Some(reply) = batch.reply.take() else { continue };
        let answer = match outcome {
            Err(err) => Err(err.clone()),
            Ok(response) => match response.acks.iter().find(|a| a.partition == batch.partition) {
                Some(ack) if ack.record_count as usize == batch.len => Ok(BatchAck {
                    topic: Arc::clone(&topic),
                    partition: batch.partition,
                    base_offset: Some(ack.base_offset),
                    durability: Durability::from_proto(response.durability),
                }),
                ack => Err(Error::protocol(
                    Op::Produce,
                    format!(
                        "{} records sent to partition {}, acknowledged {:?}",
                        batch.len,
                        batch.partition,
                        ack.map(|a| a.record_count)
                    ),
                )),
            },
        };
        if let Err(err) = &answer
            && !batch.is_awaited()
        {
            unheard.get_or_insert_with(|| (0, err.clone())).0 += batch.len;
        }
        // Every delivery dropped: nobody wants the answer.
        let _ = reply.send(answer);
    }
    unheard
}

/// Resolves the deliveries of a fire-and-forget request as it is sent: each
/// record was handed to the connection, without an offset.
fn answer_sent(request: &mut Request) {
    let topic: Arc<str> = request.topic.as_str().into();
    for batch in &mut request.batches {
        if let Some(reply) = batch.reply.take() {
            let _ = reply.send(Ok(BatchAck {
                topic: Arc::clone(&topic),
                partition: batch.partition,
                base_offset: None,
                durability: Durability::None,
            }));
        }
    }
}

/// An idempotent producer's id and the next sequence number of each of its
/// partitions.
#[derive(Debug, Default)]
struct Idempotence {
    producer_id: Option<u64>,
    next_sequence: HashMap<String, HashMap<u32, u64>>,
}

impl Shared {
    /// The producer id, asked of the broker once (and again after a reset).
    async fn producer_id(&self) -> Result<u64> {
        let Some(idempotence) = &self.idempotence else { return Ok(0) };
        if let Some(id) = idempotence.lock().producer_id {
            return Ok(id);
        }
        let opts = CallOptions { retry: true, ..CallOptions::new(Op::InitProducerId) };
        let response = self
            .conn
            .call(opts, v1::InitProducerIdRequest {}, |req| {
                let mut client = self.conn.producer();
                async move { client.init_producer_id(req).await }
            })
            .await?;
        let mut state = idempotence.lock();
        // Another request may have asked at the same time: keep the first id.
        Ok(*state.producer_id.get_or_insert(response.producer_id))
    }

    /// Numbers a request's batches under the current producer id: for
    /// each partition, the sequence of its first record. `None` when not
    /// idempotent, when no id is known yet, or when the current id is not
    /// `expected` (a reset came between reading the id and numbering).
    fn number(&self, request: &Request, expected: Option<u64>) -> Option<Numbering> {
        let mut state = self.idempotence.as_ref()?.lock();
        let producer_id = state.producer_id.filter(|id| expected.is_none_or(|e| e == *id))?;
        let sequences = match state.next_sequence.get_mut(&request.topic) {
            Some(sequences) => sequences,
            None => state.next_sequence.entry(request.topic.clone()).or_default(),
        };
        let mut base_sequences = BTreeMap::new();
        for batch in &request.batches {
            let next = sequences.entry(batch.partition).or_default();
            base_sequences.insert(batch.partition, *next);
            *next += batch.len as u64;
        }
        Some(Numbering { producer_id, base_sequences })
    }

    /// The producer id, if idempotent and known.
    fn current_producer_id(&self) -> Option<u64> {
        self.idempotence.as_ref()?.lock().producer_id
    }

    /// After a batch failed, the broker may or may not have it, so the
    /// sequence cannot go on: the next request starts a new producer id.
    /// Batches sent after it under the same id fail too (the broker waits
    /// for the missing one, then refuses them as a gap) and reset nothing
    /// once the id has changed; nor does a request that failed before it was
    /// numbered, which sent nothing under an id.
    fn reset_idempotence(&self, failed_id: Option<u64>) {
        if let Some(idempotence) = &self.idempotence {
            let mut state = idempotence.lock();
            if failed_id.is_some() && state.producer_id == failed_id {
                *state = Idempotence::default();
            }
        }
    }
}

/// A request's producer id and, per partition, the sequence number of its
/// first record.
#[derive(Debug)]
struct Numbering {
    producer_id: u64,
    base_sequences: BTreeMap<u32, u64>,
}

/// Sends one request, retrying while the broker is unreachable, and returns
/// it with the producer id it went under. With idempotence, retries carry
/// the same producer id and sequences, so the broker answers a batch it
/// already has with its original offsets.
///
/// `numbering` is given when the producer id was known as the request was
/// taken; otherwise the id is asked for first (the partitions then have one
/// batch in flight each, so numbering late keeps their order).
async fn produce(
    shared: Arc<Shared>,
    mut request: Request,
    numbering: Option<Numbering>,
) -> (Request, Option<u64>, Result<v1::ProduceResponse>) {
    let numbering = match numbering {
        Some(numbering) => Some(numbering),
        None => match shared.producer_id().await {
            Ok(id) => shared.number(&request, Some(id)),
            Err(e) => return (request, None, Err(e)),
        },
    };
    let records: Vec<v1::ProduceRecord> =
        request.batches.iter_mut().flat_map(|batch| std::mem::take(&mut batch.records)).collect();
    // Without a numbering (not idempotent, or a reset raced this request)
    // the request goes without a producer id.
    let (producer_id, base_sequences) = match numbering {
        Some(Numbering { producer_id, base_sequences }) => (Some(producer_id), base_sequences),
        None => (None, BTreeMap::new()),
    };
    let message = v1::ProduceRequest {
        topic: request.topic.clone(),
        records,
        acks: shared.acks.into_proto(),
        producer_id: producer_id.unwrap_or(0),
        producer_epoch: 0,
        base_sequences: base_sequences.into_iter().collect(),
    };
    let conn = &shared.conn;
    let opts = CallOptions { topic: Some(&request.topic), retry: true, ..CallOptions::new(Op::Produce) };
    let outcome = conn
        .call(opts, message, |req| {
            let mut client = conn.producer();
            async move { client.produce(req).await }
        })
        .await;
    (request, producer_id, outcome)
}

/// The producer's background task: sends ready batches, at most
/// [`MAX_IN_FLIGHT_REQUESTS`] requests at a time, until the producer is
/// closed and everything is done.
async fn run(shared: Arc<Shared>) {
    let mut in_flight = FuturesUnordered::new();
    // In-flight requests by the producer id they were numbered under when
    // taken (`None`: not numbered then).
    let mut taken_under: BTreeMap<Option<u64>, usize> = BTreeMap::new();
    loop {
        // Several batches per partition only while every request in flight
        // was numbered, when taken, under the current id: then a partition's
        // batches carry rising sequences of one id, which the broker puts in
        // order. A request still to be numbered, or one under an id a
        // failure dropped, may end up behind a newer batch of its partition,
        // so until those are done a partition takes a batch only when it has
        // none in flight.
        let current = shared.current_producer_id();
        let per_partition = match current {
            Some(id) if taken_under.keys().all(|k| *k == Some(id)) => MAX_IN_FLIGHT_PER_PARTITION,
            _ => 1,
        };
        let (requests, next_deadline) = {
            let mut state = shared.state.lock();
            if state.is_finished() {
                break;
            }
            // A partition gives one batch per drain: drain again for the
            // next ones, up to the limits.
            let now = Instant::now();
            let mut requests = Vec::new();
            loop {
                let capacity = MAX_IN_FLIGHT_REQUESTS - in_flight.len() - requests.len();
                let drained = state.drain(now, capacity, per_partition);
                if drained.requests.is_empty() {
                    break (requests, drained.next_deadline);
                }
                requests.extend(drained.requests);
            }
        };
        for mut request in requests {
            if shared.acks == Durability::None {
                answer_sent(&mut request);
            }
            // Numbered now, in the order taken, so a partition's batches
            // carry rising sequences.
            let numbering = shared.number(&request, None);
            let key = numbering.as_ref().map(|n| n.producer_id);
            *taken_under.entry(key).or_default() += 1;
            in_flight.push(produce(Arc::clone(&shared), request, numbering).map(move |done| (key, done)));
        }
        let linger = async {
            match next_deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((key, (request, producer_id, outcome))) = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(count) = taken_under.get_mut(&key) {
                    *count -= 1;
                    if *count == 0 {
                        taken_under.remove(&key);
                    }
                }
                shared.finish(request, producer_id, outcome);
            }
            () = shared.wake.notified() => {}
            () = linger => {}
        }
    }
    tracing::debug!(conn = ?shared.conn, "producer closed");
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    #[tokio::test]
    async fn zero_limits_are_refused() {
        let err = Producer::builder("127.0.0.1:1").max_batch_bytes(0).build().err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
        let err = Producer::builder("127.0.0.1:1").buffer_bytes(0).build().err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn an_idle_producer_flushes_and_closes_at_once() {
        let producer = Producer::builder("127.0.0.1:1").build().expect("valid config");
        producer.flush().await.expect("nothing to flush");
        let clone = producer.clone();
        producer.close().await.expect("nothing to wait for");
        let err = clone.send("t", ProducerRecord::new("v")).await.err();
        assert!(matches!(err, Some(Error::Closed)), "{err:?}");
    }

    #[tokio::test]
    async fn a_closed_producer_refuses_records_even_with_cached_metadata() {
        let producer = Producer::builder("127.0.0.1:1").build().expect("valid config");
        let shared = Arc::clone(&producer.handle.shared);
        let cell = Arc::new(OnceCell::new_with(Some(3)));
        shared.partition_counts.lock().insert("t".to_owned(), cell);
        shared.close();
        let err = producer.send("t", ProducerRecord::new("v")).await.err();
        assert!(matches!(err, Some(Error::Closed)), "{err:?}");
    }

    #[tokio::test]
    async fn an_unreachable_broker_fails_the_send() {
        let (_reserved, addr) = crate::test_support::refusing_addr();
        // A budget that the first, refused attempt cannot outlast even on a
        // loaded machine; the retries then end as unavailable.
        let producer = Producer::builder(addr.to_string())
            .request_timeout(Duration::from_secs(1))
            .build()
            .expect("valid config");
        let err = producer.send("t", ProducerRecord::new("v")).await.err();
        assert!(matches!(err, Some(Error::Unavailable { .. })), "{err:?}");
    }

    #[test]
    fn acks_are_matched_to_batches_by_partition() {
        let buffer = Arc::new(Semaphore::new(1 << 20));
        let mut acc = Accumulator::new(Limits { linger: Duration::ZERO, max_batch_bytes: 1 << 20 });
        let now = Instant::now();
        let mut replies = Vec::new();
        for p in [0, 1, 1] {
            let record = ProducerRecord::new("v").partition(p).timestamp_ms(5);
            replies.push(append(&mut acc, &buffer, 2, record, now));
        }
        let mut drained = acc.drain(now, 8, 1);
        let request = drained.requests.remove(0);
        let response = v1::ProduceResponse {
            acks: vec![
                v1::PartitionAck { partition: 0, base_offset: 10, record_count: 1, duplicate: false },
                v1::PartitionAck { partition: 1, base_offset: 20, record_count: 2, duplicate: false },
            ],
            durability: v1::Durability::Durable as i32,
        };
        deliver(request, &Ok(response));
        let got: Vec<_> = replies
            .into_iter()
            .map(|delivery| {
                let meta = delivery.now_or_never().expect("replied").expect("acknowledged");
                assert_eq!(&*meta.topic, "t");
                (meta.partition, meta.offset, meta.timestamp_ms, meta.durability)
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, Some(10), Some(5), Durability::Durable),
                (1, Some(20), Some(5), Durability::Durable),
                (1, Some(21), Some(5), Durability::Durable),
            ]
        );
    }

    #[test]
    fn a_short_ack_fails_its_batch_and_an_error_reaches_every_record() {
        let buffer = Arc::new(Semaphore::new(1 << 20));
        let mut acc = Accumulator::new(Limits { linger: Duration::ZERO, max_batch_bytes: 1 << 20 });
        let now = Instant::now();
        let mut replies = Vec::new();
        for _ in 0..2 {
            replies.push(append(&mut acc, &buffer, 1, ProducerRecord::new("v"), now));
        }
        let request = acc.drain(now, 8, 1).requests.remove(0);
        let response = v1::ProduceResponse {
            acks: vec![v1::PartitionAck { partition: 0, base_offset: 0, record_count: 1, duplicate: false }],
            durability: 0,
        };
        deliver(request, &Ok(response));
        for delivery in replies {
            let outcome = delivery.now_or_never().expect("replied");
            assert!(matches!(outcome, Err(Error::Broker { .. })), "{outcome:?}");
        }
    }

    #[test]
    fn deliveries_and_producers_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Delivery>();
        send_sync::<Producer>();
    }

    #[test]
    fn a_batch_dropped_unanswered_fails_its_deliveries_as_closed() {
        let buffer = Arc::new(Semaphore::new(1 << 20));
        let mut acc = Accumulator::new(Limits { linger: Duration::ZERO, max_batch_bytes: 1 << 20 });
        let now = Instant::now();
        let delivery = append(&mut acc, &buffer, 1, ProducerRecord::new("v"), now);
        drop(acc.drain(now, 8, 1));
        let outcome = delivery.now_or_never().expect("answered by the drop");
        assert!(matches!(outcome, Err(Error::Closed)), "{outcome:?}");
    }

    /// Error events seen by a subscriber, with their `records` field.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<(u64, String)>>>);

    impl Captured {
        /// Captures the error events of this thread until the guard drops.
        fn install(&self) -> tracing::subscriber::DefaultGuard {
            use tracing_subscriber::layer::SubscriberExt as _;
            tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
        }

        /// The `records` field of each error event reporting records not
        /// delivered.
        fn undelivered(&self) -> Vec<u64> {
            self.0.lock().iter().filter(|(_, m)| m.contains("not delivered")).map(|(n, _)| *n).collect()
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
        fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            struct Fields(u64, String);
            impl tracing::field::Visit for Fields {
                fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                    if field.name() == "records" {
                        self.0 = value;
                    }
                }
                fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                    if field.name() == "message" {
                        self.1 = format!("{value:?}");
                    }
                }
            }
            if *event.metadata().level() == tracing::Level::ERROR {
                let mut fields = Fields(0, String::new());
                event.record(&mut fields);
                self.0.lock().push((fields.0, fields.1));
            }
        }
    }

    /// Caches `topic`'s partition count, so sends need no broker.
    fn seed_partitions(producer: &Producer, topic: &str, partitions: u32) {
        let cell = Arc::new(OnceCell::new_with(Some(partitions)));
        producer.handle.shared.partition_counts.lock().insert(topic.to_owned(), cell);
    }

    /// `n` records to `t`, buffered for an hour unless something flushes them.
    async fn send_lingering(producer: &Producer, n: usize) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        for i in 0..n {
            let record = ProducerRecord::new(format!("{i}")).partition(0);
            deliveries.push(producer.send("t", record).await.expect("buffered"));
        }
        assert_eq!(producer.pending_records(), n);
        deliveries
    }

    /// A producer that holds its records (a linger of an hour) for topic
    /// `t` of one partition, whose broker is never reached.
    fn lingering_producer() -> Producer {
        let producer =
            Producer::builder("127.0.0.1:1").linger(Duration::from_secs(3600)).build().expect("valid config");
        seed_partitions(&producer, "t", 1);
        producer
    }

    fn current_thread_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
    }

    /// The user's report: records sent, the producer dropped without
    /// `close()` at the end of `main`, and the runtime shut down. The loss
    /// is reported, with its count, and the deliveries fail.
    #[test]
    fn records_left_when_the_runtime_stops_fail_and_are_reported() {
        let captured = Captured::default();
        let _log = captured.install();
        let runtime = current_thread_runtime();
        let deliveries = runtime.block_on(async {
            let producer = lingering_producer();
            send_lingering(&producer, 10).await
            // The producer is dropped here, as at the end of `main`.
        });
        assert_eq!(captured.undelivered(), Vec::<u64>::new(), "the runtime still runs: nothing is lost yet");
        drop(runtime);
        assert_eq!(captured.undelivered(), [10]);
        for delivery in deliveries {
            let outcome = delivery.now_or_never().expect("answered when the task stopped");
            assert!(matches!(outcome, Err(Error::Closed)), "{outcome:?}");
        }
    }

    /// A producer that outlives its runtime: reported once, when its task
    /// stops; afterwards it refuses records and `flush` fails, rather than
    /// waiting for a task that is gone.
    #[test]
    fn a_producer_outliving_its_runtime_reports_once_and_refuses_records() {
        let captured = Captured::default();
        let _log = captured.install();
        let runtime = current_thread_runtime();
        let producer = runtime.block_on(async {
            let producer = lingering_producer();
            drop(send_lingering(&producer, 3).await);
            producer
        });
        drop(runtime);
        assert_eq!(captured.undelivered(), [3]);
        assert_eq!(producer.pending_records(), 0);
        current_thread_runtime().block_on(async {
            let err = producer.flush().await.err();
            assert!(matches!(err, Some(Error::Closed)), "{err:?}");
            let err = producer.send("t", ProducerRecord::new("v")).await.err();
            assert!(matches!(err, Some(Error::Closed)), "{err:?}");
        });
        drop(producer);
        assert_eq!(captured.undelivered(), [3], "reported once");
    }

    /// `flush_on_drop` against a broker that never answers: the drop waits
    /// for the timeout, then gives up on the records and reports them.
    #[test]
    fn flush_on_drop_gives_up_after_its_timeout_and_reports_the_records() {
        let captured = Captured::default();
        let _log = captured.install();
        let runtime = current_thread_runtime();
        let (_reserved, addr) = runtime.block_on(async { crate::test_support::refusing_addr() });
        let deliveries = runtime.block_on(async {
            let producer = Producer::builder(addr.to_string())
                // Retries outlast the flush: the records cannot be written.
                .request_timeout(Duration::from_secs(600))
                .flush_on_drop(Duration::from_millis(50))
                .build()
                .expect("valid config");
            seed_partitions(&producer, "t", 1);
            let deliveries = send_lingering(&producer, 5).await;
            drop(producer);
            deliveries
        });
        assert_eq!(captured.undelivered(), [5]);
        runtime.block_on(async {
            for delivery in deliveries {
                let outcome = tokio::time::timeout(Duration::from_secs(30), delivery).await;
                assert!(matches!(outcome, Ok(Err(Error::Closed))), "{outcome:?}");
            }
        });
    }

    /// With `flush_on_drop` the producer needs no runtime of the caller's to
    /// be built or dropped; with nothing pending, the drop does not wait.
    #[test]
    fn flush_on_drop_builds_and_drops_outside_a_runtime() {
        let captured = Captured::default();
        let _log = captured.install();
        let producer =
            Producer::builder("127.0.0.1:1").flush_on_drop(Duration::from_secs(3600)).build().expect("valid");
        assert_eq!(producer.pending_records(), 0);
        drop(producer);
        assert_eq!(captured.undelivered(), Vec::<u64>::new());
    }

    /// A batch failing while its deliveries are dropped is reported, with
    /// the records of that batch only: one whose delivery is awaited is
    /// reported there.
    #[tokio::test]
    async fn a_failure_nobody_awaits_is_reported() {
        let captured = Captured::default();
        let _log = captured.install();
        let (_reserved, addr) = crate::test_support::refusing_addr();
        let producer = Producer::builder(addr.to_string())
            .request_timeout(Duration::from_millis(200))
            .build()
            .expect("valid config");
        seed_partitions(&producer, "t", 2);
        let awaited = producer.send("t", ProducerRecord::new("a").partition(0)).await.expect("buffered");
        for _ in 0..2 {
            let dropped = producer.send("t", ProducerRecord::new("b").partition(1)).await.expect("buffered");
            drop(dropped);
        }
        producer.flush().await.expect("every batch done");
        let outcome = awaited.await;
        assert!(matches!(outcome, Err(Error::Unavailable { .. } | Error::Timeout { .. })), "{outcome:?}");
        // Two records, in one batch or two.
        assert_eq!(captured.undelivered().iter().sum::<u64>(), 2, "{:?}", captured.undelivered());
        producer.close().await.expect("nothing left");
    }

    /// Appends `record` as `Shared::enqueue` does, without a broker.
    fn append(
        acc: &mut Accumulator,
        buffer: &Arc<Semaphore>,
        partitions: u32,
        record: ProducerRecord,
        now: Instant,
    ) -> Delivery {
        let permit = Arc::clone(buffer).try_acquire_many_owned(64).expect("room");
        let timestamp_ms = record.timestamp_ms;
        let slot = acc.append("t", partitions, record, permit, || now).expect("open");
        Delivery { answer: slot.answer, index: slot.index, timestamp_ms }
    }
}
