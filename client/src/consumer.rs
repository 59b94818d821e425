//! The polling [`Consumer`]: keeps a position per partition it reads, fetches
//! from all of them concurrently, and commits positions for its group.
//!
//! Partitions come either from the application (`assign`, `seek`: no
//! background task, all work happens inside `poll`) or from the broker
//! (`subscribe`: the `membership` task heartbeats and owns the set of
//! partitions, `poll` only reads them). `positions` is the bookkeeping both
//! share; it never talks to the broker.
//!
//! A poll runs a *round* of fetches: a future that owns what it needs (the
//! [`Reader`], the long-polls), kept in the consumer until it ends, so a
//! `poll` dropped halfway (in a `select!`) leaves it for the next `poll` or
//! stream to resume. Its records go to the consumer's buffer, from which
//! `poll` and [`ConsumerStream`] hand them out, up to `max_poll_records` at
//! a time; only then do they count as delivered.

mod membership;
mod positions;

use std::borrow::BorrowMut;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use brooklet_proto::v1;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use self::membership::{Command, Handle, Settings, View};
use self::positions::{Position, Positions, Target};
use crate::admin::{Admin, CommittedOffset, PartitionOffsets, TopicDescription};
use crate::breaker::Breakers;
use crate::connection::{CallOptions, Connection, ConnectionConfig};
use crate::error::{Error, Op, Result};
use crate::record::{ConsumerRecord, records_from_batches};

/// Default time a fetch waits for records when there are none.
const DEFAULT_MAX_WAIT: Duration = Duration::from_millis(500);
/// The broker's limit on a fetch's wait.
const MAX_WAIT_LIMIT: Duration = Duration::from_secs(60);
/// Default bound on the record bytes of one partition's fetch.
const DEFAULT_MAX_BYTES: u32 = 1024 * 1024;
/// The broker's limit on a group id's length, in bytes.
const MAX_GROUP_LEN: usize = 255;
/// Default interval of automatic commits.
const DEFAULT_AUTO_COMMIT: Duration = Duration::from_secs(5);
/// Default client id, shown in `DescribeGroup`.
const DEFAULT_CLIENT_ID: &str = "brooklet-client";
/// Rebalance events kept for a receiver that has not read them yet; a
/// receiver further behind loses the oldest.
const EVENTS_CAPACITY: usize = 64;

/// What a subscribed consumer does about subscribed topics that do not
/// exist, as [`ConsumerBuilder::missing_topics`] sets it.
///
/// The broker assigns only partitions of topics that exist, so a member
/// subscribed to a missing topic joins its group and reads nothing of it
/// until the topic is created (then it gets its share at its next
/// heartbeat, with nothing to do on the application's side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum MissingTopics {
    /// Join anyway and log a warning naming the missing topics, repeated
    /// every 30 s while any is still missing.
    #[default]
    Warn,
    /// Do not join: [`Consumer::await_joined`],
    /// [`Consumer::await_assignment`] and [`Consumer::poll`] (and the
    /// stream) fail with [`Error::TopicNotFound`], and the consumer stops
    /// (a member that was already in the group, subscribing again to a
    /// missing topic, commits and leaves). Checked when the consumer
    /// subscribes; a topic deleted later is not noticed this way.
    Fail,
}

/// Where to read a partition from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Offset {
    /// The first offset still in the log.
    Earliest,
    /// The high watermark: only records appended from now on.
    Latest,
    /// This offset.
    At(u64),
    /// The consumer group's committed offset or, when the group has
    /// committed none for the partition, where
    /// [`ConsumerBuilder::auto_offset_reset`] says (the earliest offset by
    /// default). Requires a group.
    Committed,
}

/// Where a consumer starts on a partition its group has no committed offset
/// for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AutoOffsetReset {
    /// The first offset still in the log: read everything there is.
    #[default]
    Earliest,
    /// The high watermark: only records appended from now on.
    Latest,
    /// Neither: `poll` fails with [`Error::NoCommittedOffset`] naming the
    /// partition, until the application seeks it or the group's offsets are
    /// reset.
    Error,
}

/// A change in the partitions a subscribed consumer owns, as
/// [`Consumer::events`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RebalanceEvent {
    /// The broker granted these partitions: the consumer reads them from the
    /// group's committed offsets.
    Assigned(Vec<(String, u32)>),
    /// The consumer stopped reading these partitions: the broker moved them
    /// (their delivered positions were committed first, where the broker
    /// still allowed it), the session was lost, or the consumer closed or
    /// was dropped.
    Revoked(Vec<(String, u32)>),
}

/// A receiver of [`RebalanceEvent`]s, from [`Consumer::events`].
///
/// Events are kept for a receiver up to a bound (64); one that falls further
/// behind loses the oldest, with a warning in the log.
/// [`Consumer::assignment`] is always the current truth.
#[derive(Debug)]
pub struct RebalanceEvents {
    receiver: broadcast::Receiver<RebalanceEvent>,
}

impl RebalanceEvents {
    /// The next event; `None` once the consumer is closed or dropped.
    pub async fn recv(&mut self) -> Option<RebalanceEvent> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(RecvError::Closed) => return None,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "rebalance events receiver fell behind; the oldest events were dropped"
                    );
                }
            }
        }
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<RebalanceEvent> {
        loop {
            match self.receiver.try_recv() {
                Ok(event) => return Some(event),
                Err(TryRecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "rebalance events receiver fell behind; the oldest events were dropped"
                    );
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => return None,
            }
        }
    }

    /// The events as a stream, ending when the consumer is closed or dropped.
    pub fn into_stream(self) -> impl Stream<Item = RebalanceEvent> + Send + Unpin + 'static {
        Box::pin(futures::stream::unfold(self, |mut events| async move {
            events.recv().await.map(|event| (event, events))
        }))
    }
}

/// Configures a [`Consumer`].
#[derive(Debug, Clone)]
pub struct ConsumerBuilder {
    conn: ConnectionConfig,
    group: Option<String>,
    max_wait: Duration,
    max_bytes: u32,
    auto_commit: Option<Duration>,
    auto_offset_reset: AutoOffsetReset,
    session_timeout: Option<Duration>,
    client_id: String,
    max_poll_records: Option<usize>,
    missing_topics: MissingTopics,
}

impl ConsumerBuilder {
    /// Sets the consumer group `group`: positions start from its committed
    /// offsets and [`Consumer::commit`] stores them. With
    /// [`Consumer::subscribe`], the consumer joins the group and the broker
    /// assigns its partitions; otherwise the group only names offsets and
    /// partitions are assigned by hand.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// How long a fetch waits for records when every partition is caught up
    /// (default 500 ms, at most 60 s). A subscribed consumer that owns
    /// nothing yet waits this long for an assignment.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Bound on the record bytes one fetch returns per partition (default
    /// 1 MiB). The broker returns the first batch whole even when larger, so
    /// a fetch always makes progress.
    pub fn max_bytes(mut self, max_bytes: u32) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// How often a subscribed consumer commits the delivered positions of
    /// the partitions it owns, in the background (default every 5 s).
    /// `None` commits only on [`Consumer::commit`], on
    /// [`Consumer::close`] and before giving a partition up.
    pub fn auto_commit(mut self, every: Option<Duration>) -> Self {
        self.auto_commit = every;
        self
    }

    /// Where to start on a partition the group has no committed offset for
    /// (default [`AutoOffsetReset::Earliest`]).
    pub fn auto_offset_reset(mut self, reset: AutoOffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }

    /// How long the broker keeps a subscribed member without heartbeats
    /// before it gives the member's partitions to others (default: the
    /// broker's, 10 s unless configured otherwise; the broker refuses
    /// values outside its bounds, 1 s to 300 s by default). The consumer
    /// heartbeats well within it, as often as the broker asks.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = Some(timeout);
        self
    }

    /// Bound on the records one [`Consumer::poll`] returns (Kafka's
    /// `max.poll.records`; default: no bound beyond what one round of
    /// fetches returns, `max_bytes` per partition).
    ///
    /// Records fetched beyond it stay in the consumer and come first from
    /// the next `poll`, which fetches nothing until they are all returned:
    /// nothing is skipped, nothing is fetched twice. A record counts as
    /// delivered only once `poll` returns it, so a commit after a bounded
    /// poll commits exactly what was returned.
    pub fn max_poll_records(mut self, max: usize) -> Self {
        self.max_poll_records = Some(max);
        self
    }

    /// What a subscribed consumer does about subscribed topics that do not
    /// exist (default [`MissingTopics::Warn`]: join, read nothing of them
    /// until they exist, and log a warning every 30 s meanwhile).
    pub fn missing_topics(mut self, missing: MissingTopics) -> Self {
        self.missing_topics = missing;
        self
    }

    /// The client id the group shows for this member (default
    /// `brooklet-client`).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Time allowed for one call, retries included, on top of `max_wait` for
    /// fetches (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.conn.request_timeout = timeout;
        self
    }

    /// Time allowed to open the TCP connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.conn.connect_timeout = timeout;
        self
    }

    crate::connection::endpoint_settings!();

    /// Builds the consumer, reading nothing yet. It connects on its first
    /// call, so this succeeds while the broker is down.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] for an unusable endpoint;
    /// [`Error::InvalidArgument`] for a `max_wait` above 60 s, a group id
    /// that is empty or longer than 255 bytes, a zero timeout or
    /// auto-commit interval, a session timeout beyond `u32::MAX`
    /// milliseconds, or a `max_poll_records` of zero.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn build(self) -> Result<Consumer> {
        let invalid = |message: String| Err(Error::InvalidArgument { message });
        if self.max_wait > MAX_WAIT_LIMIT {
            return invalid(format!(
                "max_wait {:?} exceeds the broker's limit of {MAX_WAIT_LIMIT:?}",
                self.max_wait
            ));
        }
        if let Some(group) = &self.group
            && (group.is_empty() || group.len() > MAX_GROUP_LEN)
        {
            return invalid(format!(
                "group id {group:?} is {} bytes; it must be 1 to {MAX_GROUP_LEN}",
                group.len()
            ));
        }
        if self.max_poll_records == Some(0) {
            return invalid("max_poll_records must be at least 1".to_owned());
        }
        if self.auto_commit.is_some_and(|every| every.is_zero()) {
            return invalid("auto_commit must be a positive interval, or None to turn it off".to_owned());
        }
        if let Some(timeout) = self.session_timeout
            && (timeout.is_zero() || u32::try_from(timeout.as_millis()).is_err())
        {
            return invalid(format!(
                "session_timeout {timeout:?} must be above zero and at most {} ms",
                u32::MAX
            ));
        }
        let (events, _) = broadcast::channel(EVENTS_CAPACITY);
        let reader = Reader {
            admin: Admin { conn: self.conn.connect()? },
            group: self.group,
            max_wait: self.max_wait,
            max_bytes: self.max_bytes,
            auto_offset_reset: self.auto_offset_reset,
            positions: Arc::new(Mutex::new(Positions::default())),
        };
        Ok(Consumer {
            reader: Arc::new(reader),
            request_timeout: self.conn.request_timeout,
            auto_commit: self.auto_commit,
            session_timeout: self.session_timeout,
            client_id: self.client_id,
            max_poll_records: self.max_poll_records.unwrap_or(usize::MAX),
            missing_topics: self.missing_topics,
            events,
            membership: None,
            buffered: VecDeque::new(),
            fetching: Mutex::default(),
        })
    }
}

/// Reads records from partitions it assigns itself, or that its group
/// assigns it.
///
/// ```no_run
/// # async fn example() -> brooklet_client::Result<()> {
/// use brooklet_client::Consumer;
///
/// let mut consumer = Consumer::builder("http://127.0.0.1:7070").group("billing").build()?;
/// consumer.subscribe(&["orders"])?;
/// for _ in 0..100 {
///     for record in consumer.poll().await? {
///         println!("{}/{} @{}: {:?}", record.topic, record.partition, record.offset, record.value);
///     }
/// }
/// // Commits what was delivered and leaves, so the partitions move at once.
/// consumer.close().await?;
/// # Ok(())
/// # }
/// ```
///
/// Or as a [`Stream`] of records, with [`stream`](Consumer::stream) (which
/// borrows the consumer) or [`into_stream`](Consumer::into_stream) (which
/// owns it); either derefs to the consumer, so it can commit:
///
/// ```no_run
/// # async fn example() -> brooklet_client::Result<()> {
/// use brooklet_client::Consumer;
/// use futures::StreamExt;
///
/// let mut consumer = Consumer::builder("http://127.0.0.1:7070").group("billing").build()?;
/// consumer.subscribe(&["orders"])?;
/// let mut records = consumer.stream();
/// let mut handled = 0;
/// while let Some(record) = records.next().await {
///     let record = record?;
///     println!("{} @{}", record.partition, record.offset);
///     handled += 1;
///     if handled % 100 == 0 {
///         records.commit().await?; // exactly what the stream yielded
///     }
///     if handled == 1000 {
///         break;
///     }
/// }
/// drop(records);
/// consumer.close().await?; // commits the rest, leaves the group
/// # Ok(())
/// # }
/// ```
///
/// # Assigned by hand, or by the group
/// [`assign`](Consumer::assign), [`assign_all`](Consumer::assign_all) and
/// [`seek`](Consumer::seek) choose the partitions; a group, if set, only
/// names the committed offsets, and [`commit`](Consumer::commit) stores them
/// from outside the group, which the broker allows only while the group has
/// no live members: while another consumer is subscribed to the group, such
/// a commit fails with [`Error::FailedPrecondition`]. To read with others
/// and commit, subscribe.
///
/// [`subscribe`](Consumer::subscribe) instead makes the consumer a member of
/// its group: a background task heartbeats, and the broker spreads the
/// topics' partitions over the members, balanced and sticky. Partitions move
/// cooperatively: a member told to give one up commits what it delivered
/// from it, stops reading it, and tells the broker at once; only then does
/// the broker grant it to another member, which starts at that commit.
/// [`assignment`](Consumer::assignment) says what the consumer owns now, and
/// [`events`](Consumer::events) reports each change.
///
/// # Positions
/// Each partition has a position: the offset of the next record `poll`
/// returns. A new partition starts at [`Offset::Committed`] when the
/// consumer has a group (for a partition without a committed offset, where
/// [`ConsumerBuilder::auto_offset_reset`] says), else at
/// [`Offset::Earliest`]; `seek` moves it. Symbolic offsets are resolved
/// against the broker on the next `poll`.
///
/// If a position falls below the log start (retention deleted the records),
/// `poll` moves it to the log start, logs a warning and carries on; records
/// in between are lost to this consumer. A position above the high
/// watermark (the topic was re-created, say) is an
/// [`Error::OffsetOutOfRange`] until the caller seeks.
///
/// # Delivery: at least once
/// A record is *delivered* when `poll` returns it (or a
/// [`ConsumerStream`] yields it). Records fetched but not delivered yet
/// (beyond [`max_poll_records`](ConsumerBuilder::max_poll_records), or
/// ahead of what a stream yielded) wait in the consumer and are not
/// committed. Commits store the delivered position: the offset after the
/// last delivered record of each partition. A subscribed consumer commits
/// every [`auto_commit`](ConsumerBuilder::auto_commit) interval, on
/// [`commit`](Consumer::commit), before it gives up a partition, and on
/// [`close`](Consumer::close).
///
/// - A consumer that crashes, is dropped without `close`, or is cut off
///   from the broker for a whole session timeout leaves the records it
///   delivered after its last commit uncommitted: the member the broker
///   gives its partitions to (at once after a drop, which leaves the group;
///   at the session timeout otherwise) delivers them again, starting at the
///   last commit. Those records, and only those, are delivered again; none
///   is skipped.
/// - `close`, and a rebalance in which the old owner released the partition
///   itself, deliver nothing twice: the commit of exactly what was delivered
///   reaches the broker before the partition moves. A record fetched while
///   its partition was being revoked is dropped, not delivered.
/// - If the broker refuses such a commit (the member's session had already
///   expired, or the broker restarted, forgot the member, and another member
///   claimed the partition first), the partition's records since the last
///   commit are delivered again by its new owner; the next
///   [`commit`](Consumer::commit) (or `close`) reports those partitions as
///   an [`Error::FailedPrecondition`]. Until a member forgotten by a
///   restarted broker heartbeats again, it and the partition's new owner
///   may both read the partition.
///
/// What the application does with a record is up to it: to lose nothing,
/// finish with a record before the next `poll`, because the next commit may
/// cover it.
///
/// # Cancellation
/// Every `async` method may be dropped before it completes (a branch of
/// `tokio::select!` that lost, a `tokio::time::timeout`), with these
/// effects:
///
/// - [`poll`](Consumer::poll), and the `next()` of a [`ConsumerStream`],
///   are cancel-safe: a poll dropped halfway has delivered nothing and
///   loses nothing. Its fetches keep their place in the consumer, and the
///   next `poll` (or stream) resumes them and returns their records; no
///   record is skipped or returned twice. `poll` in a `select!` loop is
///   therefore fine.
/// - [`commit`](Consumer::commit) may or may not have committed when
///   dropped: a subscribed consumer's commit runs in its background task,
///   which finishes it once asked; an assigned-by-hand consumer's commit
///   call may or may not have reached the broker. Either way nothing is
///   lost, and committing again is harmless (the same offsets, or later
///   ones).
/// - [`close`](Consumer::close) takes the consumer: dropped halfway, the
///   consumer is gone as if dropped (see below), except that a subscribed
///   consumer whose close already reached its task still commits and
///   leaves.
/// - [`await_joined`](Consumer::await_joined),
///   [`await_assignment`](Consumer::await_assignment),
///   [`assign_all`](Consumer::assign_all) and [`RebalanceEvents::recv`]
///   are cancel-safe: they change nothing before they complete.
///
/// # Dropping
/// Dropping a subscribed consumer without [`close`](Consumer::close) leaves
/// its group without committing: its background task sends the leave (a
/// heartbeat with epoch -1) and ends, so the broker gives its partitions to
/// the other members at once, which deliver again what was delivered after
/// the last commit (committing it might lose records the application had
/// not finished with). The task runs on the Tokio runtime that `subscribe`
/// was called on, wherever the consumer is dropped; if that runtime has
/// shut down (or shuts down before the leave is sent, as at the end of
/// `main`), nothing is sent and the partitions move when the broker's
/// session timeout expires. Call `close` to commit and leave for certain.
#[derive(Debug)]
pub struct Consumer {
    /// What a round of fetches needs, shared with the round in flight.
    reader: Arc<Reader>,
    request_timeout: Duration,
    auto_commit: Option<Duration>,
    session_timeout: Option<Duration>,
    client_id: String,
    /// Bound on the records one `poll` returns; `usize::MAX` for none.
    max_poll_records: usize,
    missing_topics: MissingTopics,
    events: broadcast::Sender<RebalanceEvent>,
    /// The group task, once subscribed.
    membership: Option<Handle>,
    /// Records fetched but not delivered yet, in order, each with the lease
    /// it was read under: `poll` returns them before fetching again.
    buffered: VecDeque<(u64, ConsumerRecord)>,
    /// The round of fetches in flight, or the long-polls kept between
    /// rounds. A lock only so that the consumer stays `Sync`: it is used
    /// only through `&mut self`, so it is never contended.
    fetching: Mutex<Fetching>,
}

/// What a round of fetches reads with: the part of the consumer a round
/// needs, owned by the round so that it can outlive the `poll` that started
/// it.
#[derive(Debug)]
struct Reader {
    admin: Admin,
    group: Option<String>,
    max_wait: Duration,
    max_bytes: u32,
    auto_offset_reset: AutoOffsetReset,
    /// Positions by topic and partition. Shared with the group task, which
    /// adds and removes partitions while `poll` moves positions; see
    /// `membership` for why it is a lock.
    positions: Arc<Mutex<Positions>>,
}

/// How a round ended: its records (already filtered by lease, positions
/// moved past them), and the long-polls it leaves running.
struct RoundOutcome {
    long_polls: LongPolls,
    result: Result<Vec<(u64, ConsumerRecord)>>,
}

/// How `fetch_records` ended.
enum Fetch {
    /// Records arrived (positions already moved past them).
    Records(Vec<(u64, ConsumerRecord)>),
    /// The group task published a new assignment: fetch again, with the
    /// partitions it names.
    Changed,
    /// The round's wait is over, or every long-poll ended without records.
    Done,
}

/// The consumer's fetching state between calls.
#[derive(Default)]
struct Fetching {
    /// Long-polls left running by the last round; the next round takes them.
    idle: LongPolls,
    /// The round in flight, which owns the long-polls meanwhile. Left here
    /// when the `poll` awaiting it is dropped, for the next one to resume.
    round: Option<BoxFuture<'static, RoundOutcome>>,
}

impl std::fmt::Debug for Fetching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetching")
            .field("idle", &self.idle)
            .field("round_in_flight", &self.round.is_some())
            .finish()
    }
}

/// Long-polls of caught-up partitions. When one partition's records arrive
/// first, `poll` returns them and leaves the other partitions' fetches
/// running; a later `poll` takes their answers. Cancelling them instead
/// would reset an HTTP/2 stream per partition per poll, often one the broker
/// is already answering, and HTTP/2 closes a connection that sees too many
/// frames for streams it reset (an abuse guard), failing every call on it.
#[derive(Default)]
struct LongPolls {
    running: FuturesUnordered<BoxFuture<'static, Fetched>>,
    /// What each running fetch reads. A partition whose position moved, or
    /// whose lease changed, since its fetch began gets a new fetch; the old
    /// one's records are dropped when it ends (see `Consumer::apply`).
    targets: Vec<Target>,
}

impl std::fmt::Debug for LongPolls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LongPolls").field("targets", &self.targets).finish_non_exhaustive()
    }
}

impl LongPolls {
    fn is_running(&self, target: &Target) -> bool {
        self.targets.contains(target)
    }

    fn start(&mut self, fetch: BoxFuture<'static, Fetched>, target: Target) {
        self.targets.push(target);
        self.running.push(fetch);
    }

    fn finished(&mut self, fetched: &Fetched) {
        if let Some(i) = self.targets.iter().position(|t| *t == fetched.target) {
            self.targets.swap_remove(i);
        }
    }

    /// The fetches that have already ended.
    fn take_ready(&mut self) -> Vec<Fetched> {
        let mut ready = Vec::new();
        while let Some(Some(fetched)) = self.running.next().now_or_never() {
            self.finished(&fetched);
            ready.push(fetched);
        }
        ready
    }
}

/// The outcome of one partition's fetch.
#[derive(Debug)]
struct Fetched {
    target: Target,
    result: Result<v1::FetchResponse>,
}

impl Consumer {
    /// Configures a consumer for the broker at `endpoint` (`http://host:port`,
    /// or just `host:port`), or at the first reachable of a comma-separated
    /// list of endpoints (see [`ConsumerBuilder::endpoints`]).
    pub fn builder(endpoint: impl Into<String>) -> ConsumerBuilder {
        ConsumerBuilder {
            conn: ConnectionConfig::new(endpoint.into()),
            group: None,
            max_wait: DEFAULT_MAX_WAIT,
            max_bytes: DEFAULT_MAX_BYTES,
            auto_commit: Some(DEFAULT_AUTO_COMMIT),
            auto_offset_reset: AutoOffsetReset::Earliest,
            session_timeout: None,
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            max_poll_records: None,
            missing_topics: MissingTopics::Warn,
        }
    }

    /// The circuit breakers of the consumer's endpoints: their states, and a
    /// watch of them.
    pub fn breakers(&self) -> Breakers {
        self.reader.admin.conn.breakers()
    }

    /// Adds `partitions` of `topic` to the assignment. Partitions already
    /// assigned keep their position. Nothing is checked until the next
    /// `poll`, which fails for a topic or partition that does not exist.
    ///
    /// A subscribed consumer reads what its group assigns: there, this logs
    /// a warning and does nothing.
    pub fn assign(&mut self, topic: &str, partitions: &[u32]) {
        if self.membership.is_some() {
            tracing::warn!(
                topic,
                "assign ignored: the consumer is subscribed, its group assigns its partitions"
            );
            return;
        }
        let start = self.default_start();
        let mut positions = self.reader.positions.lock();
        for &partition in partitions {
            positions.assign(topic, partition, start);
        }
    }

    /// Assigns every partition of `topic`.
    ///
    /// This reads the partitions whatever the group's members read: with a
    /// [`group`](ConsumerBuilder::group), [`commit`](Consumer::commit)
    /// succeeds only while the group has no live members. To share the
    /// partitions with the group's members and commit as one of them, use
    /// [`subscribe`](Consumer::subscribe) instead.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], or the broker being unreachable;
    /// [`Error::InvalidArgument`] on a subscribed consumer.
    pub async fn assign_all(&mut self, topic: &str) -> Result<()> {
        if self.membership.is_some() {
            return Err(subscribed("assign_all"));
        }
        let description = self.reader.admin.describe_topic(topic).await?;
        let partitions: Vec<u32> = description.partitions.iter().map(|p| p.partition).collect();
        self.assign(topic, &partitions);
        Ok(())
    }

    /// Removes every partition of `topic` from the assignment. On a
    /// subscribed consumer, this logs a warning and does nothing.
    pub fn unassign(&mut self, topic: &str) {
        if self.membership.is_some() {
            tracing::warn!(
                topic,
                "unassign ignored: the consumer is subscribed, its group assigns its partitions"
            );
            return;
        }
        self.reader.positions.lock().remove_topic(topic);
        self.buffered.retain(|(_, record)| &*record.topic != topic);
    }

    /// Moves the position of `topic`/`partition`, assigning the partition if
    /// it is not assigned yet. The offset is resolved on the next `poll`.
    /// Records of the partition fetched but not yet returned are dropped,
    /// and the position counts as delivered: the next commit stores it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for [`Offset::Committed`] on a consumer
    /// without a group, or, on a subscribed consumer, for a partition it
    /// does not own.
    pub fn seek(&mut self, topic: &str, partition: u32, offset: Offset) -> Result<()> {
        if offset == Offset::Committed && self.reader.group.is_none() {
            return Err(no_group("seek to Offset::Committed"));
        }
        let position = match offset {
            Offset::At(offset) => Position::At { offset, caught_up: false },
            symbolic => Position::Pending(symbolic),
        };
        let mut positions = self.reader.positions.lock();
        // Checked under the same lock as the seek, so the group task cannot
        // revoke the partition in between.
        if self.membership.is_some() && positions.get(topic, partition).is_none() {
            return Err(Error::InvalidArgument {
                message: format!(
                    "cannot seek {topic}/{partition}: the group has not assigned it to this consumer"
                ),
            });
        }
        positions.seek(topic, partition, position);
        drop(positions);
        self.buffered.retain(|(_, record)| &*record.topic != topic || record.partition != partition);
        Ok(())
    }

    /// The offset of the next record `poll` will return from
    /// `topic`/`partition` (records already fetched and waiting in the
    /// consumer included): the offset after the last record delivered, which
    /// is what a commit would store. `None` if the partition is not assigned
    /// or its start is not resolved yet.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        let positions = self.reader.positions.lock();
        let slot = positions.get(topic, partition)?;
        match slot.position {
            Position::At { .. } => slot.delivered,
            Position::Pending(_) => None,
        }
    }

    /// Joins the consumer's group, subscribed to `topics`: from now on the
    /// broker assigns the partitions this consumer reads. Starts the
    /// consumer's background task, which heartbeats (the first one at once),
    /// applies assignments, commits and, on [`close`](Consumer::close),
    /// leaves. Calling it again replaces the topics; partitions of topics
    /// dropped are committed and released.
    ///
    /// Nothing is sent before this returns; errors from the broker (a
    /// session timeout outside its bounds, say) come from the next `poll`,
    /// [`await_joined`](Consumer::await_joined) or
    /// [`await_assignment`](Consumer::await_assignment).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without a group, with no topics or an
    /// empty topic name, or while partitions are assigned by hand.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        let Some(group) = self.reader.group.clone() else {
            return Err(no_group("subscribe"));
        };
        if topics.is_empty() || topics.iter().any(|t| t.is_empty()) {
            return Err(Error::InvalidArgument {
                message: format!("subscribe needs at least one topic, and no empty names; got {topics:?}"),
            });
        }
        let mut topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        topics.sort();
        topics.dedup();
        if let Some(handle) = &self.membership {
            handle.topics.send_replace(topics);
            return Ok(());
        }
        if !self.reader.positions.lock().is_empty() {
            return Err(Error::InvalidArgument {
                message: "partitions are assigned by hand: unassign them before subscribing, \
                          a consumer reads either what it assigns itself or what its group assigns it"
                    .to_owned(),
            });
        }
        let settings = Settings {
            group,
            client_id: self.client_id.clone(),
            session_timeout: self.session_timeout,
            auto_commit: self.auto_commit,
            request_timeout: self.request_timeout,
            missing_topics: self.missing_topics,
        };
        self.membership = Some(Handle::spawn(
            self.reader.admin.conn.clone(),
            settings,
            topics,
            Arc::clone(&self.reader.positions),
            self.events.clone(),
        ));
        Ok(())
    }

    /// The partitions the consumer reads now, ordered: for a subscribed
    /// consumer, what it owns in its group; otherwise what was assigned by
    /// hand.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        self.reader.positions.lock().partitions()
    }

    /// The id the broker gave this consumer in its group; `None` before the
    /// first heartbeat was answered, while rejoining, and for a consumer
    /// that is not subscribed.
    pub fn member_id(&self) -> Option<String> {
        self.membership.as_ref()?.view.borrow().member_id.clone()
    }

    /// Waits until the first heartbeat after [`subscribe`](Consumer::subscribe)
    /// (or after rejoining) is answered, and returns what the consumer owns
    /// then, which may be nothing: partitions still held by other members
    /// come in later answers.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the consumer is not subscribed, or the
    /// broker refused the subscription.
    pub async fn await_joined(&self) -> Result<Vec<(String, u32)>> {
        self.await_view(|view| view.member_id.is_some()).await
    }

    /// Waits until the consumer is a member of its group owning at least one
    /// partition, and returns what it owns.
    ///
    /// A member beyond the number of partitions owns nothing until another
    /// member leaves, so this can wait forever: bound it with
    /// `tokio::time::timeout`, or use [`await_joined`](Consumer::await_joined)
    /// and [`assignment`](Consumer::assignment).
    ///
    /// # Errors
    /// As [`await_joined`](Consumer::await_joined).
    pub async fn await_assignment(&self) -> Result<Vec<(String, u32)>> {
        self.await_view(|view| view.member_id.is_some() && !view.assignment.is_empty()).await
    }

    async fn await_view(&self, ready: impl Fn(&View) -> bool) -> Result<Vec<(String, u32)>> {
        let Some(handle) = &self.membership else {
            return Err(Error::InvalidArgument {
                message: "the consumer is not subscribed: call subscribe first".to_owned(),
            });
        };
        let mut view = handle.view.clone();
        let outcome = view
            .wait_for(|view| view.failed.is_some() || ready(view))
            .await
            .map(|view| (view.failed.clone(), view.assignment.clone()));
        match outcome {
            Ok((None, assignment)) => Ok(assignment),
            Ok((Some(err), _)) => Err(err),
            Err(_) => Err(handle.failure().unwrap_or(Error::Closed)),
        }
    }

    /// A receiver of the consumer's rebalance events from now on. Take it
    /// before [`subscribe`](Consumer::subscribe) to see the first
    /// assignment.
    pub fn events(&self) -> RebalanceEvents {
        RebalanceEvents { receiver: self.events.subscribe() }
    }

    /// Returns the next records from every partition the consumer reads,
    /// fetching them if none are waiting in the consumer.
    ///
    /// Records fetched by an earlier `poll` beyond
    /// [`max_poll_records`](ConsumerBuilder::max_poll_records) come first,
    /// without a fetch. Otherwise partitions are fetched concurrently. When
    /// any is behind, `poll` fetches without waiting and returns what all of
    /// them had. When all are caught up, it waits up to `max_wait` and
    /// returns the first records to arrive, or an empty `Vec` if none did.
    ///
    /// A subscribed consumer waits the same way for its assignment: one that
    /// owns nothing yet (the first `poll` after
    /// [`subscribe`](Consumer::subscribe), say) waits up to `max_wait` for
    /// partitions, and once they arrive reads them within the same `poll`,
    /// so a first `poll` on a group whose topic has records returns them. A
    /// change of assignment while `poll` waits does not end the wait either:
    /// the new partitions are fetched within it. So `poll` returns an empty
    /// `Vec` only when no records arrived within `max_wait` (or when the
    /// group task ended, which the next `poll` reports).
    ///
    /// # Cancel safety
    /// Cancel-safe: dropped before it completes (in `tokio::select!`, say),
    /// it has delivered nothing, and its fetches stay in the consumer for
    /// the next `poll` to resume; no record is lost, skipped or returned
    /// twice.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when nothing is assigned (and the consumer
    /// is not subscribed), when a partition does not exist, or when the
    /// broker refused the subscription; [`Error::TopicNotFound`];
    /// [`Error::FailedPrecondition`] when the group id is in use by live
    /// members of Kafka's classic group protocol;
    /// [`Error::OffsetOutOfRange`] for a position above the high watermark;
    /// [`Error::NoCommittedOffset`]; [`Error::Unavailable`] or
    /// [`Error::Timeout`]. On error no position moves (except a reset to the
    /// log start, see the type's docs), so the next `poll` fetches the same
    /// records again.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>> {
        let max = self.max_poll_records;
        futures::future::poll_fn(|cx| self.poll_records(cx, max)).await
    }

    /// Commits the delivered position of every partition the consumer reads,
    /// for its group: what `poll` returned and a stream yielded, not what was
    /// fetched beyond.
    ///
    /// A subscribed consumer commits as a member of its group: only the
    /// partitions it owns, only where the position moved since its last
    /// commit. If the broker refuses the commit as stale, the consumer
    /// heartbeats (which applies any revocation) and tries once more with
    /// what it still owns. An assigned-by-hand consumer commits from
    /// outside the group, every resolved partition (partitions whose start
    /// is not resolved yet are skipped), which the broker accepts only while
    /// the group has no live members.
    ///
    /// # Cancel safety
    /// Dropped before it completes, the commit may or may not have been
    /// made: a subscribed consumer's background task finishes a commit it
    /// was asked for. Committing again is harmless.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the consumer has no group;
    /// [`Error::FailedPrecondition`] if the broker refused the commit (for an
    /// assigned-by-hand consumer, because the group has live members: the
    /// message says to subscribe instead), or if since the last `commit` the
    /// consumer lost partitions with delivered records it could not commit
    /// (the error names them: another member will deliver those records
    /// again); otherwise as [`Admin::commit_offsets`].
    pub async fn commit(&self) -> Result<()> {
        let Some(group) = self.reader.group.as_deref() else {
            return Err(no_group("commit"));
        };
        if let Some(handle) = &self.membership {
            return handle.request(Command::Commit).await;
        }
        let offsets: Vec<CommittedOffset> =
            self.reader.positions.lock().delivered().into_iter().map(|c| c.offset).collect();
        if offsets.is_empty() {
            return Ok(());
        }
        match self.reader.admin.commit_offsets(group, &offsets).await {
            // Without a member id the broker refuses a commit for one reason
            // only: the group has live members.
            Err(Error::FailedPrecondition { message }) => Err(refused_outside_commit(group, &message)),
            outcome => outcome,
        }
    }

    /// Commits the delivered positions, then, for a subscribed consumer,
    /// leaves the group so its partitions move to the other members at once,
    /// and stops the background task. The consumer leaves even if the
    /// commit fails.
    ///
    /// # Cancel safety
    /// Dropped before it completes, the consumer is dropped too (see the
    /// type's docs on dropping: it still leaves its group); a subscribed
    /// consumer whose close already reached its background task still
    /// commits before leaving. For a consumer assigned by hand, close is a
    /// commit, which may or may not have been made.
    ///
    /// # Errors
    /// As [`commit`](Consumer::commit); for a subscribed consumer, also
    /// [`Error::Unavailable`] or [`Error::Timeout`] if the goodbye did not
    /// reach the broker (its partitions then move at the session timeout).
    pub async fn close(self) -> Result<()> {
        match &self.membership {
            Some(handle) => match handle.request(Command::Close).await {
                // A membership the broker refused has nothing to commit or leave.
                Err(_) if handle.view.borrow().failed.is_some() => Ok(()),
                outcome => outcome,
            },
            None if self.reader.group.is_some() => self.commit().await,
            None => Ok(()),
        }
    }

    /// The consumer's records as a [`Stream`], borrowing the consumer: once
    /// the stream is dropped, the consumer is usable again (to `poll`,
    /// `commit` or `close` it), and no record fetched for the stream is
    /// lost. The stream derefs to the consumer, so
    /// `stream.commit().await` commits what it yielded so far.
    ///
    /// See [`ConsumerStream`].
    pub fn stream(&mut self) -> ConsumerStream<&mut Consumer> {
        ConsumerStream { consumer: self }
    }

    /// The consumer's records as a [`Stream`] that owns the consumer: for a
    /// stream that must be `'static` (moved into a spawned task, say).
    /// [`ConsumerStream::close`] commits and leaves;
    /// [`into_inner`](ConsumerStream::into_inner) gives the consumer back.
    ///
    /// See [`ConsumerStream`].
    pub fn into_stream(self) -> ConsumerStream<Consumer> {
        ConsumerStream { consumer: self }
    }

    fn default_start(&self) -> Offset {
        if self.reader.group.is_some() { Offset::Committed } else { Offset::Earliest }
    }

    /// Hands out up to `max` buffered records, marking each as delivered;
    /// records of partitions no longer held under their lease are dropped.
    fn take_buffered(&mut self, max: usize) -> Vec<ConsumerRecord> {
        if self.buffered.is_empty() {
            return Vec::new();
        }
        let mut positions = self.reader.positions.lock();
        let mut records = Vec::new();
        while records.len() < max
            && let Some((lease, record)) = self.buffered.pop_front()
        {
            if positions.deliver(&record.topic, record.partition, lease, record.offset) {
                records.push(record);
            }
        }
        records
    }

    /// The one implementation of `poll` and of the stream: up to `max`
    /// buffered records, else the outcome of a round of fetches (started
    /// now, or resumed). Ready with an empty `Vec` when a round found no
    /// records. Everything that outlives a `Pending` is in the consumer, so
    /// dropping the caller loses nothing.
    fn poll_records(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Result<Vec<ConsumerRecord>>> {
        loop {
            let records = self.take_buffered(max);
            if !records.is_empty() {
                return Poll::Ready(Ok(records));
            }
            let fetching = self.fetching.get_mut();
            if fetching.round.is_none() {
                let changes = match &self.membership {
                    Some(handle) => {
                        if let Some(err) = handle.failure() {
                            return Poll::Ready(Err(err));
                        }
                        let mut view = handle.view.clone();
                        view.mark_unchanged();
                        Some(view)
                    }
                    None if self.reader.positions.lock().is_empty() => {
                        return Poll::Ready(Err(Error::InvalidArgument {
                            message:
                                "no partitions assigned: call subscribe, assign, assign_all or seek first"
                                    .to_owned(),
                        }));
                    }
                    None => None,
                };
                let reader = Arc::clone(&self.reader);
                let mut long_polls = std::mem::take(&mut fetching.idle);
                fetching.round = Some(Box::pin(async move {
                    let result = reader.round(&mut long_polls, changes).await;
                    RoundOutcome { long_polls, result }
                }));
            }
            let round = fetching.round.as_mut().expect("a round is in flight");
            let outcome = ready!(round.poll_unpin(cx));
            fetching.round = None;
            fetching.idle = outcome.long_polls;
            match outcome.result {
                Err(err) => return Poll::Ready(Err(err)),
                Ok(records) if records.is_empty() => return Poll::Ready(Ok(Vec::new())),
                // Handed out at the top of the loop.
                Ok(records) => self.buffered.extend(records),
            }
        }
    }
}

/// A [`Stream`] of a consumer's records, from [`Consumer::stream`]
/// (borrowing: `ConsumerStream<&mut Consumer>`) or
/// [`Consumer::into_stream`] (owning: `ConsumerStream<Consumer>`).
///
/// It derefs to the [`Consumer`], so everything the consumer does is at
/// hand while streaming: [`stream.commit().await`](Consumer::commit)
/// commits exactly what the stream yielded, and
/// [`assignment`](Consumer::assignment), [`seek`](Consumer::seek) and the
/// others work as on the consumer. An owning stream also
/// [`close`](ConsumerStream::close)s.
///
/// Records are yielded one at a time and count as delivered as each is
/// yielded: a commit covers only records the stream yielded, never ones
/// fetched ahead of them, which wait in the consumer (for the stream, or
/// for `poll` once the stream is dropped). Records of a partition revoked
/// before they were yielded are dropped. [`max_poll_records`] does not
/// apply: the stream fetches when none is waiting.
///
/// An error is yielded as an item and the stream goes on, polling again
/// when asked for the next item; stop on the errors you cannot handle. The
/// stream never ends by itself.
///
/// # Cancel safety
/// `next()` is cancel-safe, as [`Consumer::poll`] is: dropped before it
/// yields, it loses nothing.
///
/// # Dropping
/// Dropping a borrowing stream leaves the consumer as it was, records
/// fetched but not yielded included. Dropping an owning stream drops the
/// consumer (see [`Consumer`] on dropping: a subscribed consumer leaves its
/// group without committing); call [`close`](ConsumerStream::close) to
/// commit and leave, or [`into_inner`](ConsumerStream::into_inner) to keep
/// the consumer.
///
/// ```no_run
/// # async fn example() -> brooklet_client::Result<()> {
/// use brooklet_client::Consumer;
/// use futures::StreamExt;
///
/// let mut consumer = Consumer::builder("http://127.0.0.1:7070").group("billing").build()?;
/// consumer.subscribe(&["orders"])?;
/// let mut stream = consumer.into_stream();
/// let mut records = (&mut stream).take(100);
/// while let Some(record) = records.next().await {
///     println!("{:?}", record?.value);
/// }
/// stream.close().await?; // commits the 100 records, then leaves the group
/// # Ok(())
/// # }
/// ```
///
/// [`max_poll_records`]: ConsumerBuilder::max_poll_records
#[derive(Debug)]
pub struct ConsumerStream<C = Consumer> {
    consumer: C,
}

impl<C> ConsumerStream<C> {
    /// The consumer (or the borrow of it) back, with records fetched but
    /// not yielded still waiting in it.
    pub fn into_inner(self) -> C {
        self.consumer
    }
}

impl ConsumerStream<Consumer> {
    /// Closes the consumer: commits what the stream yielded and leaves the
    /// group, as [`Consumer::close`].
    ///
    /// # Errors
    /// As [`Consumer::close`].
    pub async fn close(self) -> Result<()> {
        self.consumer.close().await
    }
}

impl<C: BorrowMut<Consumer>> Deref for ConsumerStream<C> {
    type Target = Consumer;

    fn deref(&self) -> &Consumer {
        self.consumer.borrow()
    }
}

impl<C: BorrowMut<Consumer>> DerefMut for ConsumerStream<C> {
    fn deref_mut(&mut self) -> &mut Consumer {
        self.consumer.borrow_mut()
    }
}

impl<C: BorrowMut<Consumer> + Unpin> Stream for ConsumerStream<C> {
    type Item = Result<ConsumerRecord>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let consumer: &mut Consumer = self.get_mut().consumer.borrow_mut();
        match ready!(consumer.poll_records(cx, 1)) {
            Ok(mut records) => match records.pop() {
                Some(record) => Poll::Ready(Some(Ok(record))),
                None => {
                    // A round without records: start the next one, after
                    // letting other tasks run.
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            },
            Err(err) => Poll::Ready(Some(Err(err))),
        }
    }
}

impl Reader {
    /// One round of fetches, ending with records or once `max_wait` has
    /// passed: resolves symbolic positions, then fetches (see
    /// `fetch_records`). A subscribed consumer that owns nothing waits for
    /// an assignment; when its assignment changes, the round goes on with
    /// the new partitions, within the same wait. Positions move past the
    /// records returned only as the round ends, in the same step that
    /// returns them.
    async fn round(
        &self,
        long_polls: &mut LongPolls,
        mut changes: Option<watch::Receiver<View>>,
    ) -> Result<Vec<(u64, ConsumerRecord)>> {
        let deadline = Instant::now() + self.max_wait;
        loop {
            if self.positions.lock().is_empty() {
                // A member that owns nothing yet waits for an assignment (an
                // assigned-by-hand consumer without partitions never gets here).
                match tokio::time::timeout_at(deadline, assignment_changed(&mut changes)).await {
                    Ok(true) => continue,
                    // The wait is over, or the group task ended: the next
                    // poll reports why.
                    Ok(false) | Err(_) => return Ok(Vec::new()),
                }
            }
            self.resolve_pending().await?;
            match self.fetch_records(long_polls, &mut changes, deadline).await? {
                Fetch::Records(records) => return Ok(records),
                Fetch::Changed => {}
                Fetch::Done => return Ok(Vec::new()),
            }
        }
    }

    /// Answers of earlier long-polls first; then a fetch of every partition
    /// that is behind; then, with all caught up, a long-poll of each (until
    /// `deadline`) and the first records to arrive.
    async fn fetch_records(
        &self,
        long_polls: &mut LongPolls,
        changes: &mut Option<watch::Receiver<View>>,
        deadline: Instant,
    ) -> Result<Fetch> {
        let ready = long_polls.take_ready();
        if !ready.is_empty() {
            let records = self.apply(ready).await?;
            if !records.is_empty() {
                return Ok(Fetch::Records(records));
            }
        }
        let (targets, behind) = self.positions.lock().targets();
        let targets: Vec<Target> = targets.into_iter().filter(|t| !long_polls.is_running(t)).collect();
        if behind {
            let fetched = futures::future::join_all(self.fetches(targets, Duration::ZERO)).await;
            let records = self.apply(fetched).await?;
            if !records.is_empty() {
                return Ok(Fetch::Records(records));
            }
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Ok(Fetch::Done);
        }
        let (targets, _) = self.positions.lock().targets();
        for target in targets {
            if long_polls.is_running(&target) {
                continue;
            }
            let fetch = fetch(self.admin.conn.clone(), target.clone(), self.max_bytes, wait);
            long_polls.start(Box::pin(fetch), target);
        }
        loop {
            tokio::select! {
                fetched = long_polls.running.next() => {
                    let Some(fetched) = fetched else { return Ok(Fetch::Done) };
                    long_polls.finished(&fetched);
                    let records = self.apply(vec![fetched]).await?;
                    if !records.is_empty() {
                        return Ok(Fetch::Records(records));
                    }
                }
                alive = assignment_changed(changes) => {
                    return Ok(if alive { Fetch::Changed } else { Fetch::Done });
                }
                // Long-polls of an earlier round may outlast this one's
                // wait; they stay running for the next round.
                () = tokio::time::sleep_until(deadline) => return Ok(Fetch::Done),
            }
        }
    }

    /// Resolves every symbolic position with one `DescribeTopic` and at most
    /// one `FetchOffsets` per topic.
    async fn resolve_pending(&self) -> Result<()> {
        let unresolved = self.positions.lock().unresolved();
        let mut descriptions = HashMap::new();
        let mut committed: HashMap<String, Vec<CommittedOffset>> = HashMap::new();
        for u in unresolved {
            let (topic, partition) = (u.topic.as_str(), u.partition);
            let (start, from_commit) = match u.start {
                Offset::At(offset) => (offset, false),
                Offset::Earliest => (
                    partition_bounds(&self.admin, &mut descriptions, topic, partition)
                        .await?
                        .log_start_offset,
                    false,
                ),
                Offset::Latest => (
                    partition_bounds(&self.admin, &mut descriptions, topic, partition).await?.high_watermark,
                    false,
                ),
                Offset::Committed => {
                    let Some(group) = self.group.as_deref() else {
                        return Err(no_group("start from Offset::Committed"));
                    };
                    let offsets = match committed.entry(u.topic.clone()) {
                        Entry::Occupied(entry) => entry.into_mut(),
                        Entry::Vacant(entry) => {
                            entry.insert(self.admin.fetch_offsets(group, Some(topic)).await?)
                        }
                    };
                    match offsets.iter().find(|o| o.partition == partition) {
                        Some(committed) => (committed.offset, true),
                        None => {
                            let bounds = partition_bounds(&self.admin, &mut descriptions, topic, partition);
                            match self.auto_offset_reset {
                                AutoOffsetReset::Earliest => (bounds.await?.log_start_offset, false),
                                AutoOffsetReset::Latest => (bounds.await?.high_watermark, false),
                                AutoOffsetReset::Error => {
                                    return Err(Error::NoCommittedOffset {
                                        group: group.to_owned(),
                                        topic: u.topic.clone(),
                                        partition,
                                    });
                                }
                            }
                        }
                    }
                }
            };
            self.positions.lock().resolve(topic, partition, u.lease, start, from_commit);
        }
        Ok(())
    }

    /// One fetch per target, each owning what it needs.
    fn fetches(
        &self,
        targets: Vec<Target>,
        wait: Duration,
    ) -> Vec<impl Future<Output = Fetched> + Send + use<>> {
        targets
            .into_iter()
            .map(|target| fetch(self.admin.conn.clone(), target, self.max_bytes, wait))
            .collect()
    }

    /// Turns fetch outcomes into records and moves positions past them (not
    /// what was delivered: the consumer marks that as it hands records out).
    /// Any error other than a recoverable out-of-range returns before a
    /// position moves. Records of a partition revoked, or moved by a seek,
    /// since its fetch began are dropped.
    async fn apply(&self, fetched: Vec<Fetched>) -> Result<Vec<(u64, ConsumerRecord)>> {
        for f in &fetched {
            if let Err(err) = &f.result
                && !matches!(err, Error::OffsetOutOfRange { .. })
            {
                return Err(err.clone());
            }
        }
        for f in &fetched {
            if let Err(Error::OffsetOutOfRange { .. }) = &f.result {
                self.recover_out_of_range(&f.target).await?;
            }
        }
        let mut records = Vec::new();
        let mut positions = self.positions.lock();
        for Fetched { target, result } in fetched {
            let Ok(response) = result else { continue };
            let fetched =
                records_from_batches(&target.topic, target.partition, target.offset, response.batches);
            let next = fetched.last().map_or(target.offset, |r| r.offset + 1);
            if positions.advance(&target, next, next >= response.high_watermark) {
                records.extend(fetched.into_iter().map(|record| (target.lease, record)));
            }
        }
        Ok(records)
    }

    /// Handles an OUT_OF_RANGE fetch: below the log start, resets to it;
    /// above the high watermark, fails. The bounds come from `DescribeTopic`
    /// rather than from the broker's message, whose wording is not a contract.
    async fn recover_out_of_range(&self, target: &Target) -> Result<()> {
        let (topic, partition, offset) = (target.topic.as_str(), target.partition, target.offset);
        let bounds = partition_bounds(&self.admin, &mut HashMap::new(), topic, partition).await?;
        if self.positions.lock().get(topic, partition).is_none_or(|slot| slot.lease != target.lease) {
            // Revoked meanwhile: no longer this consumer's problem.
            return Ok(());
        }
        if offset < bounds.log_start_offset {
            tracing::warn!(
                topic,
                partition,
                offset,
                log_start_offset = bounds.log_start_offset,
                "position is below the log start (records were deleted); resetting to the earliest offset"
            );
            self.positions.lock().reset(target, bounds.log_start_offset);
            Ok(())
        } else if offset > bounds.high_watermark {
            Err(Error::OffsetOutOfRange {
                message: format!(
                    "{topic}/{partition}: position {offset} is above the high watermark {} (log start {})",
                    bounds.high_watermark, bounds.log_start_offset
                ),
            })
        } else {
            // The bounds moved back around the position since the fetch; the
            // next poll fetches it again.
            Ok(())
        }
    }
}

/// Resolves when the group task publishes a new membership view: `true`
/// while the task goes on, `false` once it ended or failed (the next poll
/// reports why). Never resolves without a task.
async fn assignment_changed(view: &mut Option<watch::Receiver<View>>) -> bool {
    match view {
        Some(view) => view.changed().await.is_ok() && view.borrow_and_update().failed.is_none(),
        None => std::future::pending().await,
    }
}

/// The error for a group operation on a consumer without a group.
fn no_group(what: &str) -> Error {
    Error::InvalidArgument {
        message: format!("{what} needs a consumer group: set one with ConsumerBuilder::group"),
    }
}

/// The error for a commit from outside `group` (an assigned-by-hand
/// consumer) that the broker refused because the group has live members.
/// The broker's own message asks for a member id and epoch, which this
/// client does not expose: say what to do instead.
fn refused_outside_commit(group: &str, broker_message: &str) -> Error {
    Error::FailedPrecondition {
        message: format!(
            "cannot commit for group {group:?} while it has live members: this consumer assigns its \
             partitions by hand (assign, assign_all, seek) and is not one of them. Call subscribe instead \
             of assign/assign_all to join the group and commit as a member, or commit only while the \
             group has no live members (broker: {broker_message})"
        ),
    }
}

/// The error for choosing partitions by hand on a subscribed consumer.
fn subscribed(what: &str) -> Error {
    Error::InvalidArgument {
        message: format!(
            "{what} is refused: the consumer is subscribed, so its group assigns its partitions"
        ),
    }
}

/// The bounds of `topic`/`partition`, describing each topic once per `cache`.
async fn partition_bounds(
    admin: &Admin,
    cache: &mut HashMap<String, TopicDescription>,
    topic: &str,
    partition: u32,
) -> Result<PartitionOffsets> {
    let description = match cache.entry(topic.to_owned()) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => entry.insert(admin.describe_topic(topic).await?),
    };
    description.partition(partition).copied().ok_or_else(|| Error::InvalidArgument {
        message: format!(
            "partition {partition} does not exist: topic {topic:?} has {} partitions",
            description.info.partitions
        ),
    })
}

/// Fetches `target`, retrying while the broker is unreachable.
async fn fetch(conn: Connection, target: Target, max_bytes: u32, wait: Duration) -> Fetched {
    let request = v1::FetchRequest {
        topic: target.topic.clone(),
        partition: target.partition,
        offset: target.offset,
        max_bytes,
        max_wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
    };
    let opts = CallOptions { topic: Some(&target.topic), retry: true, wait, ..CallOptions::new(Op::Fetch) };
    let result = conn
        .call(opts, request, |req| {
            let mut client = conn.consumer();
            async move { client.fetch(req).await }
        })
        .await;
    Fetched { target, result }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(group: Option<&str>) -> Consumer {
        let mut builder = Consumer::builder("127.0.0.1:1");
        if let Some(group) = group {
            builder = builder.group(group);
        }
        builder.build().expect("valid config")
    }

    fn slot_position(c: &Consumer, partition: u32) -> Option<Position> {
        c.reader.positions.lock().get("t", partition).map(|slot| slot.position)
    }

    fn target(c: &Consumer, partition: u32) -> Target {
        c.reader
            .positions
            .lock()
            .targets()
            .0
            .into_iter()
            .find(|t| t.partition == partition)
            .expect("resolved")
    }

    #[tokio::test]
    async fn builder_checks_limits() {
        let err = Consumer::builder("b:1").max_wait(Duration::from_secs(61)).build().err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
        let err = Consumer::builder("b:1").group("").build().err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
        let err = Consumer::builder("b:1").group("g".repeat(256)).build().err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
        assert!(Consumer::builder("b:1").group("g".repeat(255)).build().is_ok());
        let err = Consumer::builder("b:1").auto_commit(Some(Duration::ZERO)).build().err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
        let err = Consumer::builder("b:1").session_timeout(Duration::ZERO).build().err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
        assert!(
            Consumer::builder("b:1")
                .auto_commit(None)
                .session_timeout(Duration::from_secs(1))
                .build()
                .is_ok()
        );
    }

    #[tokio::test]
    async fn new_partitions_start_from_committed_with_a_group_else_earliest() {
        let mut with_group = consumer(Some("g"));
        with_group.assign("t", &[0, 1]);
        assert_eq!(slot_position(&with_group, 1), Some(Position::Pending(Offset::Committed)));
        let mut without = consumer(None);
        without.assign("t", &[0]);
        assert_eq!(slot_position(&without, 0), Some(Position::Pending(Offset::Earliest)));
        assert_eq!(without.position("t", 0), None);
        assert_eq!(without.assignment(), [("t".to_owned(), 0)]);
    }

    #[tokio::test]
    async fn assign_keeps_existing_positions_and_seek_moves_them() {
        let mut c = consumer(None);
        c.seek("t", 0, Offset::At(42)).expect("seek");
        c.assign("t", &[0, 1]);
        assert_eq!(c.position("t", 0), Some(42));
        assert_eq!(c.position("t", 1), None);
        c.seek("t", 0, Offset::Latest).expect("seek");
        assert_eq!(c.position("t", 0), None);
        c.unassign("t");
        assert_eq!(c.position("t", 0), None);
    }

    #[tokio::test]
    async fn group_operations_need_a_group() {
        let mut c = consumer(None);
        let err = c.seek("t", 0, Offset::Committed).err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
        c.seek("t", 0, Offset::At(1)).expect("seek");
        let err = c.commit().await.err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
        let err = c.subscribe(&["t"]).err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
        let err = c.await_joined().await.err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn subscribing_and_assigning_by_hand_exclude_each_other() {
        let mut c = consumer(Some("g"));
        assert!(matches!(c.subscribe(&[]), Err(Error::InvalidArgument { .. })));
        c.assign("t", &[0]);
        assert!(matches!(c.subscribe(&["t"]), Err(Error::InvalidArgument { .. })));
        c.unassign("t");
        c.subscribe(&["t", "t"]).expect("subscribe");
        c.assign("t", &[0]);
        assert!(c.assignment().is_empty(), "assign is ignored once subscribed");
        assert!(matches!(c.assign_all("t").await, Err(Error::InvalidArgument { .. })));
        let err = c.seek("t", 0, Offset::At(0)).err();
        assert!(
            matches!(err, Some(Error::InvalidArgument { .. })),
            "only owned partitions can be sought: {err:?}"
        );
        // Nothing owned: a poll waits for an assignment and returns nothing.
        let mut c = c;
        assert!(c.poll().await.expect("no error while unreachable").is_empty());
    }

    #[tokio::test]
    async fn commit_with_nothing_resolved_sends_nothing() {
        let mut c = consumer(Some("g"));
        c.assign("t", &[0]);
        // The endpoint refuses connections, so reaching the broker would fail.
        c.commit().await.expect("nothing to commit");
        c.close().await.expect("nothing to commit on close either");
    }

    #[tokio::test]
    async fn poll_without_assignment_is_an_error() {
        let mut c = consumer(None);
        let err = c.poll().await.err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
    }

    fn response(base_offset: u64, count: u32, high_watermark: u64) -> v1::FetchResponse {
        let records = (0..count)
            .map(|delta| v1::Record {
                offset_delta: delta,
                timestamp_ms: 0,
                key: None,
                value: bytes::Bytes::from_static(b"v"),
                headers: Vec::new(),
            })
            .collect();
        v1::FetchResponse {
            batches: vec![v1::RecordBatch { partition: 0, base_offset, records }],
            high_watermark,
            log_start_offset: 0,
        }
    }

    #[tokio::test]
    async fn apply_advances_past_the_records_and_tracks_catching_up() {
        let c = consumer(None);
        let mut c = c;
        c.seek("t", 0, Offset::At(5)).expect("seek");
        c.seek("t", 1, Offset::At(0)).expect("seek");
        let (t0, t1) = (target(&c, 0), target(&c, 1));
        let records = c
            .reader
            .apply(vec![
                Fetched { target: t0, result: Ok(response(5, 3, 100)) },
                Fetched { target: t1, result: Ok(response(0, 2, 2)) },
            ])
            .await
            .expect("apply");
        let offsets: Vec<_> = records.iter().map(|(_, r)| (r.partition, r.offset)).collect();
        assert_eq!(offsets, [(0, 5), (0, 6), (0, 7), (1, 0), (1, 1)]);
        assert_eq!(slot_position(&c, 0), Some(Position::At { offset: 8, caught_up: false }));
        assert_eq!(slot_position(&c, 1), Some(Position::At { offset: 2, caught_up: true }));
    }

    #[tokio::test]
    async fn an_error_moves_no_position() {
        let mut c = consumer(None);
        c.seek("t", 0, Offset::At(0)).expect("seek");
        c.seek("t", 1, Offset::At(0)).expect("seek");
        let (t0, t1) = (target(&c, 0), target(&c, 1));
        let err = c
            .reader
            .apply(vec![
                Fetched { target: t0, result: Ok(response(0, 3, 3)) },
                Fetched { target: t1, result: Err(Error::TopicNotFound { topic: "t".into() }) },
            ])
            .await
            .err();
        assert!(matches!(err, Some(Error::TopicNotFound { .. })), "{err:?}");
        assert_eq!(c.position("t", 0), Some(0));
    }

    #[tokio::test]
    async fn a_fetch_for_an_unassigned_partition_is_dropped() {
        let mut c = consumer(None);
        c.seek("t", 0, Offset::At(0)).expect("seek");
        let fetched_before_unassign = Fetched { target: target(&c, 0), result: Ok(response(0, 1, 1)) };
        c.unassign("t");
        let records = c.reader.apply(vec![fetched_before_unassign]).await.expect("apply");
        assert!(records.is_empty(), "records of a partition no longer read are not delivered");
        assert_eq!(c.position("t", 0), None);
    }

    /// Puts `count` records of `t`/`partition` from `offset` into the
    /// consumer's buffer, as a round of fetches would.
    async fn fetched(c: &mut Consumer, partition: u32, offset: u64, count: u32) {
        let fetched = Fetched { target: target(c, partition), result: Ok(response(offset, count, 1000)) };
        let records = c.reader.apply(vec![fetched]).await.expect("apply");
        c.buffered.extend(records);
    }

    fn delivered(c: &Consumer) -> Vec<(u32, u64)> {
        let positions = c.reader.positions.lock();
        positions.delivered().into_iter().map(|d| (d.offset.partition, d.offset.offset)).collect()
    }

    fn offsets(records: &[ConsumerRecord]) -> Vec<u64> {
        records.iter().map(|r| r.offset).collect()
    }

    #[tokio::test]
    async fn a_bounded_poll_returns_at_most_max_records_and_keeps_the_rest_for_the_next() {
        let err = Consumer::builder("b:1").max_poll_records(0).build().err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
        let mut c = Consumer::builder("127.0.0.1:1").max_poll_records(10).build().expect("valid config");
        c.seek("t", 0, Offset::At(0)).expect("seek");
        fetched(&mut c, 0, 0, 25).await;
        // Fetched, not delivered: a commit now would store the start.
        assert_eq!(delivered(&c), [(0, 0)]);
        assert_eq!(c.position("t", 0), Some(0));

        // Buffered records come without a fetch (the endpoint refuses
        // connections, so a fetch could not answer at once).
        let first = c.poll().now_or_never().expect("no fetch").expect("records");
        assert_eq!(offsets(&first), (0..10).collect::<Vec<_>>());
        assert_eq!(delivered(&c), [(0, 10)], "a commit stores exactly what was returned");
        assert_eq!(c.position("t", 0), Some(10));
        assert_eq!(slot_position(&c, 0), Some(Position::At { offset: 25, caught_up: false }));
        let second = c.poll().now_or_never().expect("no fetch").expect("records");
        assert_eq!(offsets(&second), (10..20).collect::<Vec<_>>());
        let third = c.poll().now_or_never().expect("no fetch").expect("records");
        assert_eq!(offsets(&third), (20..25).collect::<Vec<_>>());
        assert_eq!(delivered(&c), [(0, 25)]);
        assert!(c.buffered.is_empty());
    }

    #[tokio::test]
    async fn a_stream_delivers_one_record_at_a_time_and_leaves_the_rest_to_the_consumer() {
        let mut c = consumer(Some("g"));
        c.seek("t", 0, Offset::At(0)).expect("seek");
        fetched(&mut c, 0, 0, 5).await;
        {
            let mut stream = c.stream();
            for expected in 0..2 {
                let record = stream.next().now_or_never().expect("buffered").expect("endless").expect("ok");
                assert_eq!(record.offset, expected);
            }
            // The stream derefs to the consumer.
            assert_eq!(stream.assignment(), [("t".to_owned(), 0)]);
            assert_eq!(stream.position("t", 0), Some(2));
        }
        assert_eq!(delivered(&c), [(0, 2)], "only what the stream yielded counts as delivered");
        let rest = c.poll().now_or_never().expect("no fetch").expect("records");
        assert_eq!(offsets(&rest), [2, 3, 4], "nothing fetched for the stream is lost");

        // An owning stream gives its consumer back, buffered records included.
        fetched(&mut c, 0, 5, 2).await;
        let mut stream = c.into_stream();
        let record = stream.next().now_or_never().expect("buffered").expect("endless").expect("ok");
        assert_eq!(record.offset, 5);
        let mut c = stream.into_inner();
        let rest = c.poll().now_or_never().expect("no fetch").expect("records");
        assert_eq!(offsets(&rest), [6]);
    }

    #[tokio::test]
    async fn a_seek_drops_the_records_of_its_partition_waiting_in_the_consumer() {
        let mut c = consumer(None);
        c.seek("t", 0, Offset::At(0)).expect("seek");
        c.seek("t", 1, Offset::At(0)).expect("seek");
        fetched(&mut c, 0, 0, 3).await;
        fetched(&mut c, 1, 0, 3).await;
        c.seek("t", 0, Offset::At(1)).expect("seek");
        let records = c.poll().now_or_never().expect("no fetch").expect("records");
        let got: Vec<_> = records.iter().map(|r| (r.partition, r.offset)).collect();
        assert_eq!(got, [(1, 0), (1, 1), (1, 2)]);
        assert_eq!(c.position("t", 0), Some(1));
    }

    /// A poll dropped while its fetches wait (here, on a broker that refuses
    /// connections) leaves them in the consumer, and the next poll resumes
    /// the same round rather than starting another.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_poll_leaves_its_round_for_the_next_poll() {
        let (_reserved, addr) = crate::test_support::refusing_addr();
        let mut c = Consumer::builder(addr.to_string())
            .request_timeout(Duration::from_secs(5))
            .build()
            .expect("valid config");
        c.seek("t", 0, Offset::At(0)).expect("seek");
        let cancelled = tokio::time::timeout(Duration::from_millis(1), c.poll()).await;
        assert!(cancelled.is_err(), "the fetch cannot answer in time: {cancelled:?}");
        assert!(c.fetching.get_mut().round.is_some(), "the round outlives the cancelled poll");
        let err = c.poll().await.err();
        assert!(matches!(err, Some(Error::Unavailable { .. })), "{err:?}");
        assert!(c.fetching.get_mut().round.is_none(), "the round ended with the poll that saw it end");
        assert_eq!(c.position("t", 0), Some(0), "nothing moved");
    }

    #[test]
    fn consumers_and_their_streams_can_be_shared_and_sent() {
        fn send_sync<T: Send + Sync + 'static>() {}
        fn send_unpin<T: Send + Unpin>() {}
        send_sync::<Consumer>();
        send_sync::<ConsumerStream<Consumer>>();
        send_unpin::<ConsumerStream<&mut Consumer>>();
    }

    #[tokio::test]
    async fn events_end_when_the_consumer_is_dropped() {
        let c = consumer(Some("g"));
        let mut events = c.events();
        assert_eq!(events.try_recv(), None);
        drop(c);
        assert_eq!(events.recv().await, None);
    }
}
