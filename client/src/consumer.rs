//! The polling [`Consumer`]: keeps a position per assigned partition, fetches
//! from all of them concurrently, and commits positions for its group through
//! [`Admin`]. It has no background task; all work happens inside `poll`.

use std::collections::btree_map::Entry as BTreeEntry;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use brooklet_proto::v1;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};

use crate::admin::{Admin, CommittedOffset, PartitionOffsets, TopicDescription};
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

/// Where to read a partition from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Offset {
    /// The first offset still in the log.
    Earliest,
    /// The high watermark: only records appended from now on.
    Latest,
    /// This offset.
    At(u64),
    /// The consumer group's committed offset, or [`Offset::Earliest`] when
    /// the group has committed none for the partition. Requires a group.
    Committed,
}

/// Configures a [`Consumer`].
#[derive(Debug, Clone)]
pub struct ConsumerBuilder {
    conn: ConnectionConfig,
    group: Option<String>,
    max_wait: Duration,
    max_bytes: u32,
}

impl ConsumerBuilder {
    /// Joins consumer group `group`: positions start from its committed
    /// offsets and [`Consumer::commit`] stores them. The group only names
    /// offsets; partitions are still assigned by hand.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// How long a fetch waits for records when every assigned partition is
    /// caught up (default 500 ms, at most 60 s).
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

    /// Builds the consumer, with no partitions assigned. It connects on its
    /// first call, so this succeeds while the broker is down.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] for an unusable endpoint;
    /// [`Error::InvalidArgument`] for a `max_wait` above 60 s, a group id
    /// that is empty or longer than 255 bytes, or a zero timeout.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn build(self) -> Result<Consumer> {
        if self.max_wait > MAX_WAIT_LIMIT {
            return Err(Error::InvalidArgument {
                message: format!(
                    "max_wait {:?} exceeds the broker's limit of {MAX_WAIT_LIMIT:?}",
                    self.max_wait
                ),
            });
        }
        if let Some(group) = &self.group
            && (group.is_empty() || group.len() > MAX_GROUP_LEN)
        {
            return Err(Error::InvalidArgument {
                message: format!(
                    "group id {group:?} is {} bytes; it must be 1 to {MAX_GROUP_LEN}",
                    group.len()
                ),
            });
        }
        Ok(Consumer {
            admin: Admin { conn: self.conn.connect()? },
            group: self.group,
            max_wait: self.max_wait,
            max_bytes: self.max_bytes,
            topics: BTreeMap::new(),
        })
    }
}

/// Reads records from the partitions assigned to it.
///
/// ```no_run
/// # async fn example() -> brooklet_client::Result<()> {
/// use brooklet_client::{Consumer, Offset};
///
/// let mut consumer = Consumer::builder("http://127.0.0.1:7070").group("billing").build()?;
/// consumer.assign_all("orders").await?;
/// consumer.seek("orders", 0, Offset::Latest)?;
/// loop {
///     for record in consumer.poll().await? {
///         println!("{}/{} @{}: {:?}", record.topic, record.partition, record.offset, record.value);
///     }
///     consumer.commit().await?;
/// }
/// # }
/// ```
///
/// # Positions
/// Each assigned partition has a position: the offset of the next record
/// `poll` returns. A newly assigned partition starts at [`Offset::Committed`]
/// when the consumer has a group, else at [`Offset::Earliest`]; `seek` moves
/// it. Symbolic offsets are resolved against the broker on the next `poll`.
///
/// If a position falls below the log start (retention deleted the records),
/// `poll` moves it to the log start, logs a warning and carries on; records
/// in between are lost to this consumer. A position above the high
/// watermark (the topic was re-created, say) is an
/// [`Error::OffsetOutOfRange`] until the caller seeks.
#[derive(Debug)]
pub struct Consumer {
    admin: Admin,
    group: Option<String>,
    max_wait: Duration,
    max_bytes: u32,
    /// Positions by topic and partition. Ordered maps keep the order of
    /// fetches, and of the records `poll` returns, stable.
    topics: BTreeMap<String, BTreeMap<u32, Position>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Where to start, resolved against the broker on the next poll.
    Pending(Offset),
    /// The next offset to fetch, and whether the last fetch reached the high
    /// watermark (so waiting for new records is the right thing to do).
    At { offset: u64, caught_up: bool },
}

/// The outcome of one partition's fetch.
#[derive(Debug)]
struct Fetched {
    topic: String,
    partition: u32,
    offset: u64,
    result: Result<v1::FetchResponse>,
}

impl Consumer {
    /// Configures a consumer for the broker at `endpoint` (`http://host:port`,
    /// or just `host:port`).
    pub fn builder(endpoint: impl Into<String>) -> ConsumerBuilder {
        ConsumerBuilder {
            conn: ConnectionConfig::new(endpoint.into()),
            group: None,
            max_wait: DEFAULT_MAX_WAIT,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// Adds `partitions` of `topic` to the assignment. Partitions already
    /// assigned keep their position. Nothing is checked until the next
    /// `poll`, which fails for a topic or partition that does not exist.
    pub fn assign(&mut self, topic: &str, partitions: &[u32]) {
        let start = self.default_start();
        let positions = self.topics.entry(topic.to_owned()).or_default();
        for &partition in partitions {
            positions.entry(partition).or_insert(Position::Pending(start));
        }
    }

    /// Assigns every partition of `topic`.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], or the broker being unreachable.
    pub async fn assign_all(&mut self, topic: &str) -> Result<()> {
        let description = self.admin.describe_topic(topic).await?;
        let partitions: Vec<u32> = description.partitions.iter().map(|p| p.partition).collect();
        self.assign(topic, &partitions);
        Ok(())
    }

    /// Removes every partition of `topic` from the assignment.
    pub fn unassign(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// Moves the position of `topic`/`partition`, assigning the partition if
    /// it is not assigned yet. The offset is resolved on the next `poll`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for [`Offset::Committed`] on a consumer
    /// without a group.
    pub fn seek(&mut self, topic: &str, partition: u32, offset: Offset) -> Result<()> {
        if offset == Offset::Committed && self.group.is_none() {
            return Err(no_group("seek to Offset::Committed"));
        }
        let position = match offset {
            Offset::At(offset) => Position::At { offset, caught_up: false },
            symbolic => Position::Pending(symbolic),
        };
        self.topics.entry(topic.to_owned()).or_default().insert(partition, position);
        Ok(())
    }

    /// The offset of the next record `poll` will return from
    /// `topic`/`partition`; `None` if the partition is not assigned or its
    /// start is not resolved yet.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        match self.topics.get(topic)?.get(&partition)? {
            Position::At { offset, .. } => Some(*offset),
            Position::Pending(_) => None,
        }
    }

    /// Fetches records from every assigned partition and advances their
    /// positions past the records returned.
    ///
    /// Partitions are fetched concurrently. When any is behind, `poll` fetches
    /// without waiting and returns what all of them had. When all are caught
    /// up, it waits up to `max_wait` and returns the first records to arrive,
    /// or an empty `Vec` if none did.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when nothing is assigned or a partition
    /// does not exist; [`Error::TopicNotFound`];
    /// [`Error::OffsetOutOfRange`] for a position above the high watermark;
    /// [`Error::Unavailable`] or [`Error::Timeout`]. On error no position
    /// moves (except a reset to the log start, see the type's docs), so the
    /// next `poll` fetches the same records again.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>> {
        if self.topics.values().all(BTreeMap::is_empty) {
            return Err(Error::InvalidArgument {
                message: "no partitions assigned: call assign, assign_all or seek first".to_owned(),
            });
        }
        self.resolve_pending().await?;
        let behind = self
            .topics
            .values()
            .flat_map(BTreeMap::values)
            .any(|p| matches!(p, Position::At { caught_up: false, .. }));
        if behind {
            let fetched = futures::future::join_all(self.fetches(Duration::ZERO)).await;
            let records = self.apply(fetched).await?;
            if !records.is_empty() {
                return Ok(records);
            }
        }
        // Every partition is caught up: wait on all of them and return the
        // first records to arrive. Dropping the other fetches cancels them;
        // their positions have not moved, so nothing is lost.
        let mut waiting: FuturesUnordered<_> = self.fetches(self.max_wait).into_iter().collect();
        while let Some(fetched) = waiting.next().await {
            let records = self.apply(vec![fetched]).await?;
            if !records.is_empty() {
                return Ok(records);
            }
        }
        Ok(Vec::new())
    }

    /// Commits the current position of every assigned partition for the
    /// consumer's group. Partitions whose start is not resolved yet are
    /// skipped.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the consumer has no group; otherwise as
    /// [`Admin::commit_offsets`].
    pub async fn commit(&self) -> Result<()> {
        let Some(group) = self.group.as_deref() else {
            return Err(no_group("commit"));
        };
        let offsets: Vec<CommittedOffset> = self
            .topics
            .iter()
            .flat_map(|(topic, positions)| {
                positions.iter().filter_map(move |(&partition, position)| match *position {
                    Position::At { offset, .. } => {
                        Some(CommittedOffset::new(topic.as_str(), partition, offset))
                    }
                    Position::Pending(_) => None,
                })
            })
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        self.admin.commit_offsets(group, &offsets).await
    }

    /// Turns the consumer into a stream of records, polling as needed.
    ///
    /// An error is yielded as an item and the stream goes on, polling again
    /// when asked for the next item; stop on the errors you cannot handle.
    /// The stream ends only when dropped.
    pub fn into_stream(self) -> impl Stream<Item = Result<ConsumerRecord>> + Send + Unpin + 'static {
        let stream =
            futures::stream::unfold((self, VecDeque::new()), |(mut consumer, mut buffered)| async move {
                loop {
                    if let Some(record) = buffered.pop_front() {
                        return Some((Ok(record), (consumer, buffered)));
                    }
                    match consumer.poll().await {
                        Ok(records) => buffered.extend(records),
                        Err(err) => return Some((Err(err), (consumer, buffered))),
                    }
                }
            });
        Box::pin(stream)
    }

    fn default_start(&self) -> Offset {
        if self.group.is_some() { Offset::Committed } else { Offset::Earliest }
    }

    /// Resolves every symbolic position with one `DescribeTopic` and at most
    /// one `FetchOffsets` per topic.
    async fn resolve_pending(&mut self) -> Result<()> {
        let pending: Vec<(String, u32, Offset)> = self
            .topics
            .iter()
            .flat_map(|(topic, positions)| {
                positions.iter().filter_map(move |(&partition, position)| match *position {
                    Position::Pending(offset) => Some((topic.clone(), partition, offset)),
                    Position::At { .. } => None,
                })
            })
            .collect();
        let mut descriptions = HashMap::new();
        let mut committed: HashMap<String, Vec<CommittedOffset>> = HashMap::new();
        for (topic, partition, offset) in pending {
            let start = match offset {
                Offset::At(offset) => offset,
                Offset::Earliest => {
                    partition_bounds(&self.admin, &mut descriptions, &topic, partition)
                        .await?
                        .log_start_offset
                }
                Offset::Latest => {
                    partition_bounds(&self.admin, &mut descriptions, &topic, partition).await?.high_watermark
                }
                Offset::Committed => {
                    let Some(group) = self.group.as_deref() else {
                        return Err(no_group("start from Offset::Committed"));
                    };
                    let offsets = match committed.entry(topic.clone()) {
                        Entry::Occupied(entry) => entry.into_mut(),
                        Entry::Vacant(entry) => {
                            entry.insert(self.admin.fetch_offsets(group, Some(&topic)).await?)
                        }
                    };
                    match offsets.iter().find(|o| o.partition == partition) {
                        Some(committed) => committed.offset,
                        None => {
                            partition_bounds(&self.admin, &mut descriptions, &topic, partition)
                                .await?
                                .log_start_offset
                        }
                    }
                }
            };
            self.set_position(&topic, partition, start, false);
        }
        Ok(())
    }

    /// One fetch per assigned, resolved partition, owning what it needs so
    /// the consumer stays free while they run.
    fn fetches(&self, wait: Duration) -> Vec<impl Future<Output = Fetched> + Send + use<>> {
        let mut fetches = Vec::new();
        for (topic, positions) in &self.topics {
            for (&partition, position) in positions {
                if let Position::At { offset, .. } = *position {
                    let conn = self.admin.conn.clone();
                    fetches.push(fetch(conn, topic.clone(), partition, offset, self.max_bytes, wait));
                }
            }
        }
        fetches
    }

    /// Turns fetch outcomes into records and moves positions past them. Any
    /// error other than a recoverable out-of-range returns before a position
    /// moves.
    async fn apply(&mut self, fetched: Vec<Fetched>) -> Result<Vec<ConsumerRecord>> {
        let mut records = Vec::new();
        let mut advances = Vec::new();
        for Fetched { topic, partition, offset, result } in fetched {
            match result {
                Ok(response) => {
                    let fetched = records_from_batches(&topic, partition, offset, response.batches);
                    let next = fetched.last().map_or(offset, |r| r.offset + 1);
                    advances.push((topic, partition, next, next >= response.high_watermark));
                    records.extend(fetched);
                }
                Err(Error::OffsetOutOfRange { .. }) => {
                    self.recover_out_of_range(&topic, partition, offset).await?
                }
                Err(err) => return Err(err),
            }
        }
        for (topic, partition, next, caught_up) in advances {
            self.set_position(&topic, partition, next, caught_up);
        }
        Ok(records)
    }

    /// Handles an OUT_OF_RANGE fetch: below the log start, resets to it;
    /// above the high watermark, fails. The bounds come from `DescribeTopic`
    /// rather than from the broker's message, whose wording is not a contract.
    async fn recover_out_of_range(&mut self, topic: &str, partition: u32, offset: u64) -> Result<()> {
        let bounds = partition_bounds(&self.admin, &mut HashMap::new(), topic, partition).await?;
        if offset < bounds.log_start_offset {
            tracing::warn!(
                topic,
                partition,
                offset,
                log_start_offset = bounds.log_start_offset,
                "position is below the log start (records were deleted); resetting to the earliest offset"
            );
            self.set_position(topic, partition, bounds.log_start_offset, false);
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

    /// Sets a position, if the partition is still assigned.
    fn set_position(&mut self, topic: &str, partition: u32, offset: u64, caught_up: bool) {
        if let Some(positions) = self.topics.get_mut(topic)
            && let BTreeEntry::Occupied(mut entry) = positions.entry(partition)
        {
            entry.insert(Position::At { offset, caught_up });
        }
    }
}

/// The error for a group operation on a consumer without a group.
fn no_group(what: &str) -> Error {
    Error::InvalidArgument {
        message: format!("{what} needs a consumer group: set one with ConsumerBuilder::group"),
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

/// Fetches `topic`/`partition` from `offset`, retrying while the broker is
/// unreachable.
async fn fetch(
    conn: Connection,
    topic: String,
    partition: u32,
    offset: u64,
    max_bytes: u32,
    wait: Duration,
) -> Fetched {
    let request = v1::FetchRequest {
        topic: topic.clone(),
        partition,
        offset,
        max_bytes,
        max_wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
    };
    let opts = CallOptions { topic: Some(&topic), retry: true, wait, ..CallOptions::new(Op::Fetch) };
    let result = conn
        .call(opts, request, |req| {
            let mut client = conn.consumer();
            async move { client.fetch(req).await }
        })
        .await;
    Fetched { topic, partition, offset, result }
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

    #[tokio::test]
    async fn builder_checks_limits() {
        let err = Consumer::builder("b:1").max_wait(Duration::from_secs(61)).build().err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
        let err = Consumer::builder("b:1").group("").build().err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
        let err = Consumer::builder("b:1").group("g".repeat(256)).build().err();
        assert!(matches!(err, Some(Error::InvalidArgument { .. })), "{err:?}");
        assert!(Consumer::builder("b:1").group("g".repeat(255)).build().is_ok());
    }

    #[tokio::test]
    async fn new_partitions_start_from_committed_with_a_group_else_earliest() {
        let mut with_group = consumer(Some("g"));
        with_group.assign("t", &[0, 1]);
        assert_eq!(with_group.topics["t"][&1], Position::Pending(Offset::Committed));
        let mut without = consumer(None);
        without.assign("t", &[0]);
        assert_eq!(without.topics["t"][&0], Position::Pending(Offset::Earliest));
        assert_eq!(without.position("t", 0), None);
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
    }

    #[tokio::test]
    async fn commit_with_nothing_resolved_sends_nothing() {
        let mut c = consumer(Some("g"));
        c.assign("t", &[0]);
        // The endpoint refuses connections, so reaching the broker would fail.
        c.commit().await.expect("nothing to commit");
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

    fn fetched(partition: u32, offset: u64, result: Result<v1::FetchResponse>) -> Fetched {
        Fetched { topic: "t".to_owned(), partition, offset, result }
    }

    #[tokio::test]
    async fn apply_advances_past_the_records_and_tracks_catching_up() {
        let mut c = consumer(None);
        c.seek("t", 0, Offset::At(5)).expect("seek");
        c.seek("t", 1, Offset::At(0)).expect("seek");
        let records = c
            .apply(vec![fetched(0, 5, Ok(response(5, 3, 100))), fetched(1, 0, Ok(response(0, 2, 2)))])
            .await
            .expect("apply");
        let offsets: Vec<_> = records.iter().map(|r| (r.partition, r.offset)).collect();
        assert_eq!(offsets, [(0, 5), (0, 6), (0, 7), (1, 0), (1, 1)]);
        assert_eq!(c.topics["t"][&0], Position::At { offset: 8, caught_up: false });
        assert_eq!(c.topics["t"][&1], Position::At { offset: 2, caught_up: true });
    }

    #[tokio::test]
    async fn an_error_moves_no_position() {
        let mut c = consumer(None);
        c.seek("t", 0, Offset::At(0)).expect("seek");
        c.seek("t", 1, Offset::At(0)).expect("seek");
        let err = c
            .apply(vec![
                fetched(0, 0, Ok(response(0, 3, 3))),
                fetched(1, 0, Err(Error::TopicNotFound { topic: "t".into() })),
            ])
            .await
            .err();
        assert!(matches!(err, Some(Error::TopicNotFound { .. })), "{err:?}");
        assert_eq!(c.position("t", 0), Some(0));
    }

    #[tokio::test]
    async fn a_fetch_for_an_unassigned_partition_moves_nothing() {
        let mut c = consumer(None);
        c.seek("t", 0, Offset::At(0)).expect("seek");
        let fetched_before_unassign = fetched(0, 0, Ok(response(0, 1, 1)));
        c.unassign("t");
        c.apply(vec![fetched_before_unassign]).await.expect("apply");
        assert_eq!(c.position("t", 0), None);
    }
}
