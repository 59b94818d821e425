//! Partition logs: topics and their partitions, offset assignment on append,
//! reads of offset ranges, and waiting for new data.
//!
//! Appends to one partition are serialised by that partition's lock, so
//! offsets never collide; different partitions append in parallel. Each
//! partition publishes its high watermark on a `watch` channel, which wakes
//! waiting fetches and subscriptions without polling.
//!
//! The log never encodes sled keys or batch bytes: see `storage`.

mod producers;
mod topic_config;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use brooklet_storage::{
    EncodedBatch, GroupCommit, Header, ProducerSeq, Record, Space, Storage, StoredRecords,
    TIME_INDEX_INTERVAL, TimeIndexEntry, TopicMeta, TopicStore, encode_parts, error_chain,
};

use crate::config::Limits;
use crate::error::{Error, ProducerRefusal, Result};

pub use topic_config::TopicConfig;

/// A record as a producer sends it, before the broker gives it an offset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewRecord {
    /// Target partition; `None` lets the broker pick.
    pub partition: Option<u32>,
    /// Producer timestamp; `None` takes the broker's append time.
    pub timestamp_ms: Option<i64>,
    /// Optional key.
    pub key: Option<Bytes>,
    /// Payload; `None` is a null value (a tombstone in a compacted topic),
    /// distinct from an empty one.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
}

/// What an append waits for before it is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Acks {
    /// Flushed and fdatasync'd (by group commit): survives a crash or power loss.
    #[default]
    Durable,
    /// In the storage engine, acknowledged before its sync; readable once
    /// the sync the append requested completes. A crash before that sync
    /// can lose it.
    Written,
}

impl NewRecord {
    /// Its size as the record size limit counts it.
    pub fn size(&self) -> usize {
        brooklet_storage::record_size(self.key.as_deref(), self.value.as_deref(), &self.headers)
    }
}

/// The outcome of appending one partition's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Partition.
    pub partition: u32,
    /// Offset of the batch's first record.
    pub base_offset: u64,
    /// Number of records.
    pub record_count: u32,
    /// Their size (key + value + headers, as the size limit counts it).
    pub bytes: u64,
    /// The batch was a retry of one already appended: these are its
    /// original offsets and nothing was appended now.
    pub duplicate: bool,
}

/// One topic's records in [`Log::produce_many`].
#[derive(Clone, Debug, Default)]
pub struct ProduceRequest {
    /// Topic name.
    pub topic: String,
    /// Records, as [`Log::produce`] takes them.
    pub records: Vec<NewRecord>,
    /// The idempotent producer's claim, if any.
    pub producer: Option<Idempotence>,
}

/// What [`Log::produce_many`] did.
#[derive(Debug)]
pub struct ProducedMany {
    /// For each request, in order: its batches, or why nothing of it was
    /// appended.
    pub results: Vec<Result<Vec<Appended>>>,
    /// Whether the appended batches met the acks asked for. An error means
    /// none of them is acknowledged (the records may still be stored).
    pub settled: Result<()>,
}

/// An idempotent producer's claim on a produce request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Idempotence {
    /// The producer's id, from [`Log::new_producer_id`].
    pub producer_id: u64,
    /// Its epoch, as issued with the id.
    pub producer_epoch: u16,
    /// For each partition of the request, the sequence number of its first
    /// record.
    pub base_sequences: BTreeMap<u32, u64>,
    /// What a batch ahead of the producer's next sequence gets.
    pub gaps: SequenceGaps,
}

/// What happens to an idempotent batch whose base sequence is ahead of the
/// one its partition expects next from the producer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SequenceGaps {
    /// It waits (a while) for the batches before it: a protocol whose
    /// requests can overtake each other in flight needs this.
    #[default]
    Wait,
    /// It is refused at once with [`ProducerRefusal::SequenceGap`]: for a
    /// protocol that answers a connection's requests in order, a gap means
    /// earlier batches were lost. A producer the partition does not know
    /// is still taken as new, at any sequence.
    Refuse,
}

/// An idempotent producer's identity, as issued by [`Log::new_producer_id`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerId {
    /// The id: never issued twice, across restarts too.
    pub id: u64,
    /// The epoch of the id; 0 for an id just issued.
    pub epoch: u16,
}

/// What a fetch may return and how long it may wait.
#[derive(Clone, Copy, Debug)]
pub struct FetchOpts {
    /// Upper bound on returned stored bytes (one batch is always returned).
    pub max_bytes: usize,
    /// How long to wait when the offset is the high watermark.
    pub max_wait: Duration,
}

/// Records read from a partition, with its bounds at the time of the read.
#[derive(Clone, Debug, PartialEq)]
pub struct Fetched {
    /// Batches in offset order, their records in their stored encoding;
    /// the first record is at the requested offset (or, in a compacted gap,
    /// the next one after it).
    pub batches: Vec<StoredRecords>,
    /// Next offset to be written.
    pub high_watermark: u64,
    /// First offset in the log.
    pub log_start: u64,
}

/// A partition's offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionState {
    /// Partition.
    pub partition: u32,
    /// First offset in the log.
    pub log_start: u64,
    /// Next offset to be written.
    pub high_watermark: u64,
}

/// A topic's description.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// The topic id, fixed at creation: a new topic of the same name gets
    /// another (Kafka's topic ids are these 16 bytes).
    pub id: Uuid,
    /// Partition count.
    pub partitions: u32,
    /// Configuration.
    pub config: BTreeMap<String, String>,
}

/// Every topic of the broker.
#[derive(Debug)]
pub struct Log {
    storage: Storage,
    commit: GroupCommit,
    /// Where a written-acks produce waits for its sync before its records
    /// become readable; shutdown waits for these tasks.
    tasks: TaskTracker,
    /// The guarantee of a produce that names none, for topics without a
    /// `flush.mode`.
    default_acks: Acks,
    limits: Limits,
    /// Read on every request, written only by create and delete; a lock and
    /// not an actor because lookups must not wait on a queue.
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Idempotent batches that arrived ahead of an earlier one and waited.
    sequence_waits: AtomicU64,
    /// No producer id above this was ever issued: the id generator's value
    /// at open (ids issued before are below it), raised by each new id.
    max_producer_id: AtomicU64,
}

#[derive(Debug)]
struct Topic {
    /// `meta.id`, parsed.
    id: Uuid,
    /// Name, id and partition count never change; the config map in it is
    /// the one at open or creation, and `settings` holds the current one.
    meta: TopicMeta,
    /// Replaced whole when the topic's config is altered; read per request.
    settings: RwLock<Settings>,
    store: TopicStore,
    partitions: Vec<Partition>,
    /// Rotates the partition that a request's keyless records go to.
    next_keyless: AtomicU32,
    /// Cancelled when the topic is deleted, to end waiting reads.
    deleted: CancellationToken,
}

/// A topic's configuration, as stored and as parsed.
#[derive(Debug)]
struct Settings {
    entries: BTreeMap<String, String>,
    parsed: TopicConfig,
}

#[derive(Debug)]
struct Partition {
    /// The lock serialises appends to the partition; it is held across the
    /// (synchronous) storage write so that batches are stored in offset
    /// order, and never across an `.await`.
    writer: Mutex<Writer>,
    /// Published after each append; readers never read past it.
    high_watermark: watch::Sender<u64>,
    log_start: AtomicU64,
    /// Bytes of stored batches, for `retention.bytes`.
    stored_bytes: AtomicU64,
    /// The high watermark at the last compaction: a partition with nothing
    /// new is not compacted again.
    compacted_to: AtomicU64,
    /// Notified after each idempotent producer's append, for batches that
    /// arrived ahead of it.
    sequenced: Notify,
}

impl Log {
    /// Opens every stored topic and recovers each partition's bounds. Starts
    /// the group-commit flusher on `tasks`; it ends when the log is dropped,
    /// and the database closes with it.
    pub(crate) fn open(
        storage: Storage,
        limits: Limits,
        default_acks: Acks,
        tasks: &TaskTracker,
    ) -> Result<Log> {
        let mut topics = BTreeMap::new();
        for meta in storage.load_topics()? {
            let store = storage.topic_store(&meta)?;
            let mut partitions = Vec::with_capacity(meta.partitions as usize);
            for p in 0..meta.partitions {
                let bounds = store.bounds(p)?;
                let writer = recover_time_index(&store, p, bounds.next_offset)?;
                // One pass over the batch headers: what `retention.bytes`
                // needs, paid once per start.
                let mut stored = 0;
                for entry in store.headers(p, 0, bounds.next_offset)? {
                    stored += entry?.1 as u64;
                }
                partitions.push(Partition::new(bounds.log_start, stored, writer));
            }
            let config = TopicConfig::parse(&meta.config, &limits)?;
            tracing::debug!(topic = %meta.name, partitions = meta.partitions, "opened topic");
            let id = Uuid::parse_str(&meta.id).map_err(|e| Error::FailedPrecondition {
                reason: format!(
                    "topic `{}` has a stored id `{}` that is not a UUID: {e}",
                    meta.name, meta.id
                ),
            })?;
            topics.insert(meta.name.clone(), Arc::new(Topic::new(id, meta, config, store, partitions)));
        }
        let commit = storage.group_commit(tasks);
        let max_producer_id = AtomicU64::new(storage.generate_id()?);
        Ok(Log {
            storage,
            commit,
            tasks: tasks.clone(),
            limits,
            default_acks,
            topics: RwLock::new(topics),
            sequence_waits: AtomicU64::new(0),
            max_producer_id,
        })
    }

    /// The group commit that makes this log's writes durable.
    pub(crate) fn group_commit(&self) -> GroupCommit {
        self.commit.clone()
    }

    /// The limits every request is held to.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Creates a topic; it is on disk when this returns.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: BTreeMap<String, String>,
    ) -> Result<TopicInfo> {
        let info = self.create_topic_written(name, partitions, config)?;
        self.sync().await?;
        Ok(info)
    }

    fn create_topic_written(
        &self,
        name: &str,
        partitions: u32,
        config: BTreeMap<String, String>,
    ) -> Result<TopicInfo> {
        let partitions = partitions.max(1);
        let parsed = self.check_new_topic(name, partitions, &config)?;
        let mut topics = self.topics.write();
        if topics.contains_key(name) {
            return Err(Error::TopicExists { topic: name.to_owned() });
        }
        let id = Uuid::new_v4();
        let meta = TopicMeta { name: name.to_owned(), id: id.to_string(), partitions, config };
        let store = self.storage.create_topic(&meta)?;
        let parts = (0..partitions).map(|_| Partition::new(0, 0, Writer::default())).collect();
        let topic = Arc::new(Topic::new(id, meta, parsed, store, parts));
        let info = topic.info();
        topics.insert(name.to_owned(), topic);
        tracing::info!(topic = name, partitions, "created topic");
        Ok(info)
    }

    /// Checks a new topic's name, partition count and config as
    /// [`Log::create_topic`] does, creating nothing; whether the topic
    /// exists is not checked.
    pub fn check_new_topic(
        &self,
        name: &str,
        partitions: u32,
        config: &BTreeMap<String, String>,
    ) -> Result<TopicConfig> {
        validate_topic_name(name)?;
        if partitions > self.limits.max_partitions {
            return Err(Error::invalid(
                "partitions",
                format!("{partitions} exceeds the broker's maximum of {}", self.limits.max_partitions),
            ));
        }
        TopicConfig::parse(config, &self.limits)
    }

    /// Deletes a topic with its records and committed offsets; the deletion
    /// is on disk when this returns.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        {
            let mut topics = self.topics.write();
            let topic = topics.get(name).ok_or_else(|| Error::TopicNotFound { topic: name.to_owned() })?;
            let stored = topic.partitions.iter().map(|p| p.stored_bytes.load(Ordering::Relaxed)).sum();
            self.storage.delete_topic(&topic.meta, stored)?;
            topic.deleted.cancel();
            topics.remove(name);
        }
        tracing::info!(topic = name, "deleted topic");
        self.sync().await
    }

    /// Waits until everything written so far is on disk; concurrent callers
    /// share one flush.
    pub async fn sync(&self) -> Result<()> {
        Ok(self.commit.sync().await?)
    }

    /// Every topic, ordered by name.
    pub fn list_topics(&self) -> Vec<TopicInfo> {
        self.topics.read().values().map(|t| t.info()).collect()
    }

    /// A topic and its partitions' offsets.
    pub fn describe_topic(&self, name: &str) -> Result<(TopicInfo, Vec<PartitionState>)> {
        let topic = self.topic(name)?;
        let states = (0..topic.meta.partitions).map(|p| topic.partitions[p as usize].state(p)).collect();
        Ok((topic.info(), states))
    }

    /// A partition's offsets.
    pub fn partition_state(&self, topic: &str, partition: u32) -> Result<PartitionState> {
        let t = self.topic(topic)?;
        Ok(t.partition(partition, "partition")?.state(partition))
    }

    /// Bytes of a topic's stored batches, over all its partitions (what
    /// `retention.bytes` counts).
    pub fn stored_bytes(&self, topic: &str) -> Result<u64> {
        let t = self.topic(topic)?;
        Ok(t.partitions.iter().map(|p| p.stored_bytes.load(Ordering::Relaxed)).sum())
    }

    /// A topic's partition count, or `None` if it does not exist.
    pub fn partition_count(&self, topic: &str) -> Option<u32> {
        self.topics.read().get(topic).map(|t| t.meta.partitions)
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics.read().get(name).cloned().ok_or_else(|| Error::TopicNotFound { topic: name.to_owned() })
    }

    /// Appends records to a topic: each partition's records as one batch, in
    /// request order. Every record is validated before anything is written,
    /// so a rejected request appends nothing. Returns once the records meet
    /// `acks` (when `None`: the topic's `flush.mode`, else the broker's
    /// default), with the guarantee they met.
    ///
    /// With a `producer`, every record names its partition and each
    /// partition's batch carries the producer's sequence number: a batch the
    /// partition already has (a retry whose first answer was lost) is
    /// answered with its original offsets instead of being appended again.
    pub async fn produce(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
        acks: Option<Acks>,
        producer: Option<&Idempotence>,
    ) -> Result<(Vec<Appended>, Acks)> {
        let topic = self.topic(topic)?;
        let acks = acks.or(topic.config().flush_mode).unwrap_or(self.default_acks);
        let appended = self.write(&topic, records, producer).await?;
        self.settle(acks, vec![(topic, appended.clone())]).await?;
        Ok((appended, acks))
    }

    /// Appends several produce requests' records, each as [`Log::produce`]
    /// does (one's refusal appends nothing of it and leaves the others
    /// alone), then waits once for all that was appended to meet `acks`: a
    /// durable produce to many partitions costs one sync, not one each.
    pub async fn produce_many(&self, requests: Vec<ProduceRequest>, acks: Acks) -> ProducedMany {
        let mut results = Vec::with_capacity(requests.len());
        let mut written = Vec::with_capacity(requests.len());
        for r in requests {
            let result = match self.topic(&r.topic) {
                Ok(topic) => match self.write(&topic, r.records, r.producer.as_ref()).await {
                    Ok(appended) => {
                        written.push((topic, appended.clone()));
                        Ok(appended)
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            results.push(result);
        }
        let settled = if written.is_empty() { Ok(()) } else { self.settle(acks, written).await };
        ProducedMany { results, settled }
    }

    /// Validates and appends one request's records, after an idempotent
    /// producer's checks; nothing of it is readable or acknowledged yet.
    async fn write(
        &self,
        topic: &Arc<Topic>,
        records: Vec<NewRecord>,
        producer: Option<&Idempotence>,
    ) -> Result<Vec<Appended>> {
        if let Some(p) = producer {
            self.check_producer(p)?;
        }
        let batches = self.prepare(topic, records, producer)?;
        match producer.map(|p| p.gaps) {
            None => {}
            Some(SequenceGaps::Wait) => {
                wait_for_earlier_batches(topic, &batches, &self.sequence_waits).await?;
            }
            Some(SequenceGaps::Refuse) => refuse_gaps(topic, &batches)?,
        }
        self.append(topic, batches)
    }

    /// Waits until `written` meets `acks`. Records become readable once
    /// they are on disk, whatever the ack waits for: a consumer never reads
    /// what a crash could take back.
    async fn settle(&self, acks: Acks, written: Vec<(Arc<Topic>, Vec<Appended>)>) -> Result<()> {
        match acks {
            Acks::Durable => {
                // One sync covers everything appended before it.
                self.sync().await?;
                for (topic, appended) in &written {
                    topic.publish(appended);
                }
            }
            Acks::Written => {
                let commit = self.commit.clone();
                self.tasks.spawn(async move {
                    match commit.sync().await {
                        Ok(()) => {
                            for (topic, appended) in &written {
                                topic.publish(appended);
                            }
                        }
                        // The next successful sync publishes past them.
                        Err(e) => {
                            tracing::warn!(error = %error_chain(&e), "sync after a written append failed")
                        }
                    }
                });
            }
        }
        Ok(())
    }

    /// Refuses a write of about `incoming` bytes that would take the disk
    /// below its reserve of free space: sled does not recover from running
    /// out of space mid-write, so it must never get there.
    ///
    /// Deleting data does not free space on the file system (sled keeps its
    /// file and reuses the freed space), so the reserve also counts the
    /// space deletes freed inside the database file, but for at most half of
    /// the reserve (see [`reserve_met`]).
    fn check_free_space(&self, incoming: u64) -> Result<()> {
        let min = self.limits.min_free_disk_bytes;
        if min == 0 {
            return Ok(());
        }
        let space = self.storage.space()?;
        if !reserve_met(space, min, incoming) {
            return Err(Error::DiskFull {
                dir: self.storage.path().display().to_string(),
                free: space.free,
                reusable: counted_reusable(space, min),
                min,
            });
        }
        Ok(())
    }

    /// The sequence number a partition expects next from an idempotent
    /// producer, or `None` if it knows nothing of the producer. For a
    /// protocol whose sequence numbers wrap around, to place a wrapped one.
    pub fn next_sequence(&self, topic: &str, partition: u32, producer_id: u64) -> Result<Option<u64>> {
        let t = self.topic(topic)?;
        let p = t.partition(partition, "partition")?;
        Ok(p.writer.lock().producers.next_sequence(producer_id))
    }

    /// Idempotent batches that arrived ahead of an earlier batch of their
    /// producer and waited for it, since the log opened.
    pub fn sequence_waits(&self) -> u64 {
        self.sequence_waits.load(Ordering::Relaxed)
    }

    /// A new idempotent producer id; ids are never reused, across restarts too.
    pub fn new_producer_id(&self) -> Result<ProducerId> {
        let id = self.storage.generate_id()? + 1;
        // Raised before the id is handed out, so its first produce passes.
        self.max_producer_id.fetch_max(id, Ordering::AcqRel);
        Ok(ProducerId { id, epoch: 0 })
    }

    /// Refuses a producer id this broker never issued, or an epoch that is
    /// not the id's: a client must not write into another producer's
    /// sequence by guessing its id.
    fn check_producer(&self, producer: &Idempotence) -> Result<()> {
        let issued = self.max_producer_id.load(Ordering::Acquire);
        if producer.producer_id == 0 || producer.producer_id > issued {
            return Err(Error::ProducerRefused {
                refusal: ProducerRefusal::UnknownProducerId,
                reason: format!(
                    "producer id {} was not issued by this broker: call InitProducerId for one",
                    producer.producer_id
                ),
            });
        }
        if producer.producer_epoch != 0 {
            return Err(Error::ProducerRefused {
                refusal: ProducerRefusal::WrongEpoch,
                reason: format!(
                    "producer epoch {} is not the current epoch 0 of producer id {}: call InitProducerId",
                    producer.producer_epoch, producer.producer_id
                ),
            });
        }
        Ok(())
    }

    /// Validates a produce request's records and encodes them into one
    /// batch per partition, writing nothing.
    fn prepare(
        &self,
        topic: &Topic,
        records: Vec<NewRecord>,
        producer: Option<&Idempotence>,
    ) -> Result<Vec<PreparedBatch>> {
        let incoming: usize = records.iter().map(NewRecord::size).sum();
        self.check_free_space(incoming as u64)?;
        if records.is_empty() {
            return Err(Error::invalid("records", "at least one record is required"));
        }
        let config = topic.config();
        let max_record = config.max_message_bytes;
        let n = topic.meta.partitions;
        for (i, r) in records.iter().enumerate() {
            if let Some(p) = r.partition.filter(|p| *p >= n) {
                return Err(Error::invalid(
                    format!("records[{i}].partition"),
                    format!("{p} is not below the topic's partition count {n}"),
                ));
            }
            let size = r.size();
            if size > max_record {
                return Err(Error::RecordTooLarge {
                    field: format!("records[{i}]"),
                    size,
                    limit: max_record,
                });
            }
            if r.headers.len() > MAX_HEADERS {
                return Err(Error::invalid(
                    format!("records[{i}].headers"),
                    format!("{} headers exceed the maximum of {MAX_HEADERS}", r.headers.len()),
                ));
            }
            if config.compact && r.key.is_none() {
                return Err(Error::invalid(
                    format!("records[{i}].key"),
                    "topic is compacted (cleanup.policy=compact): every record needs a key",
                ));
            }
            if r.timestamp_ms.is_some_and(|ts| ts < 0) {
                return Err(Error::invalid(format!("records[{i}].timestamp_ms"), "must not be negative"));
            }
            if producer.is_some() && r.partition.is_none() {
                return Err(Error::invalid(
                    format!("records[{i}].partition"),
                    "an idempotent producer names every record's partition, so a retry lands where the original did",
                ));
            }
        }
        if let Some(p) = producer.and_then(|p| {
            records.iter().filter_map(|r| r.partition).find(|part| !p.base_sequences.contains_key(part))
        }) {
            return Err(Error::invalid("base_sequences", format!("no base sequence for partition {p}")));
        }

        // Keyless records of one request share a partition, so they form one
        // batch; the next request's go to the next partition.
        let keyless = topic.next_keyless.fetch_add(1, Ordering::Relaxed) % n;
        let now = now_ms();
        let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        for r in records {
            let partition = match (r.partition, &r.key) {
                (Some(p), _) => p,
                (None, Some(key)) => brooklet_partitioner::partition_for_key(key, n),
                (None, None) => keyless,
            };
            by_partition.entry(partition).or_default().push(Record {
                offset_delta: 0,
                timestamp_ms: r.timestamp_ms.unwrap_or(now),
                key: r.key,
                value: r.value,
                headers: r.headers,
            });
        }

        by_partition
            .into_iter()
            .map(|(partition, records)| {
                let record_count = records.len() as u32;
                let bytes = records.iter().map(Record::size).sum::<usize>() as u64;
                let seq = producer.map(|p| ProducerSeq {
                    producer_id: p.producer_id,
                    base_sequence: p.base_sequences[&partition],
                });
                // Sequences of a request's records must not run past u64::MAX.
                if let Some(base) =
                    seq.map(|s| s.base_sequence).filter(|b| b.checked_add(u64::from(record_count)).is_none())
                {
                    return Err(Error::invalid(
                        format!("base_sequences[{partition}]"),
                        format!("{base} plus the partition's {record_count} records passes the largest sequence number"),
                    ));
                }
                Ok(PreparedBatch { partition, record_count, bytes, seq, parts: encode_parts(records, seq) })
            })
            .collect()
    }

    /// Appends prepared batches, partition by partition.
    fn append(&self, topic: &Topic, batches: Vec<PreparedBatch>) -> Result<Vec<Appended>> {
        let mut acks = Vec::with_capacity(batches.len());
        for PreparedBatch { partition, record_count, bytes, seq, parts } in batches {
            let (base_offset, duplicate) = topic.partitions[partition as usize].append(
                &topic.store,
                &topic.meta.name,
                partition,
                parts,
                seq,
            )?;
            acks.push(Appended { partition, base_offset, record_count, bytes, duplicate });
        }
        Ok(acks)
    }

    /// Reads records of a partition from `offset`. At the high watermark it
    /// waits up to `opts.max_wait` for data; `cancel` ends the wait early.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        opts: FetchOpts,
        cancel: &CancellationToken,
    ) -> Result<Fetched> {
        let t = self.topic(topic)?;
        let p = t.partition(partition, "partition")?;
        let mut hw_rx = p.high_watermark.subscribe();
        let hw = *hw_rx.borrow_and_update();
        let log_start = p.log_start.load(Ordering::Acquire);
        if offset < log_start || offset > hw {
            return Err(Error::OffsetOutOfRange {
                topic: topic.to_owned(),
                partition,
                offset,
                log_start,
                high_watermark: hw,
            });
        }
        if offset == hw && !opts.max_wait.is_zero() {
            tokio::select! {
                _ = hw_rx.wait_for(|hw| *hw > offset) => {}
                _ = tokio::time::sleep(opts.max_wait) => {}
                _ = cancel.cancelled() => return Err(Error::ShuttingDown),
                _ = t.deleted.cancelled() => return Err(Error::TopicNotFound { topic: topic.to_owned() }),
            }
        }
        let high_watermark = *p.high_watermark.borrow();
        let batches = t.store.read(partition, offset, high_watermark, opts.max_bytes)?;
        // Retention may have deleted the start of the range while it was read.
        let log_start = p.log_start.load(Ordering::Acquire);
        if offset < log_start {
            return Err(Error::OffsetOutOfRange {
                topic: topic.to_owned(),
                partition,
                offset,
                log_start,
                high_watermark,
            });
        }
        Ok(Fetched { batches, high_watermark, log_start })
    }
}

impl Log {
    /// Changes a topic's configuration: `set` entries are added or replaced,
    /// `remove` keys go back to their defaults. Validated as a whole before
    /// anything changes; on disk when this returns.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<TopicInfo> {
        let topic = self.topic(name)?;
        {
            let mut settings = topic.settings.write();
            let mut entries = settings.entries.clone();
            for key in remove {
                entries.remove(key);
            }
            entries.extend(set);
            let parsed = TopicConfig::parse(&entries, &self.limits)?;
            self.storage.update_topic(&TopicMeta { config: entries.clone(), ..topic.meta.clone() })?;
            *settings = Settings { entries, parsed };
        }
        let info = topic.info();
        tracing::info!(topic = name, config = ?info.config, "altered topic config");
        self.sync().await?;
        Ok(info)
    }

    /// Deletes, in every partition, the oldest batches that `retention.ms`
    /// (against `now_ms`) or `retention.bytes` no longer keeps, advancing
    /// the log start. Returns how many records were deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<u64> {
        let topics: Vec<Arc<Topic>> = self.topics.read().values().cloned().collect();
        let mut deleted = 0;
        for topic in topics {
            let config = topic.config();
            if config.compact {
                for (i, p) in topic.partitions.iter().enumerate() {
                    deleted += compact(&topic, i as u32, p, config.delete_retention_ms, now_ms)?;
                }
            }
            if !config.delete || (config.retention_ms.is_none() && config.retention_bytes.is_none()) {
                continue;
            }
            for (i, p) in topic.partitions.iter().enumerate() {
                let partition = i as u32;
                let start = p.log_start.load(Ordering::Acquire);
                let end = *p.high_watermark.borrow();
                let mut excess = config
                    .retention_bytes
                    .map_or(0, |limit| p.stored_bytes.load(Ordering::Relaxed).saturating_sub(limit));
                let mut new_start = start;
                for entry in topic.store.headers(partition, start, end)? {
                    let (header, len) = entry?;
                    let expired = config.retention_ms.is_some_and(|ms| header.max_timestamp_ms < now_ms - ms);
                    if !(expired || excess > 0) {
                        break;
                    }
                    excess = excess.saturating_sub(len as u64);
                    new_start = header.next_offset();
                }
                if new_start == start {
                    continue;
                }
                let freed = topic.store.delete_before(partition, new_start)?;
                // The only other writer adds; never underflow if a count was off.
                let _ = p
                    .stored_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(freed)));
                p.log_start.store(new_start, Ordering::Release);
                deleted += new_start - start;
                tracing::info!(
                    topic = %topic.meta.name,
                    partition,
                    log_start = new_start,
                    freed,
                    "retention deleted records"
                );
            }
        }
        Ok(deleted)
    }

    /// Enforces retention every `every`, on `tasks`, until `stop`.
    pub(crate) fn spawn_retention(
        self: &Arc<Self>,
        every: Duration,
        stop: CancellationToken,
        tasks: &TaskTracker,
    ) {
        let log = Arc::clone(self);
        tasks.spawn(async move {
            // The first pass comes one interval after start, not at once.
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        // Retention reads, deletes and flushes synchronously:
                        // off the async workers, so requests never wait on it.
                        let pass = Arc::clone(&log);
                        let done = tokio::task::spawn_blocking(move || pass.enforce_retention(now_ms())).await;
                        match done {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                tracing::error!(error = %error_chain(&e), "retention failed; retrying later");
                            }
                            Err(e) => tracing::error!(error = %e, "retention task failed; retrying later"),
                        }
                    }
                }
            }
        });
    }
}

/// Compacts one partition: every record whose key has a newer record is
/// removed, and so is a tombstone (a record with a null value) whose batch
/// is older than `delete_retention_ms`. Offsets are kept: a compacted batch
/// still spans its offsets, with gaps where records were. The newest batch is
/// left alone, so the newest record of every key is always there. Returns
/// how many records were removed.
fn compact(
    topic: &Topic,
    partition: u32,
    p: &Partition,
    delete_retention_ms: i64,
    now_ms: i64,
) -> Result<u64> {
    let start = p.log_start.load(Ordering::Acquire);
    let end = *p.high_watermark.borrow();
    if p.compacted_to.load(Ordering::Acquire) == end {
        return Ok(0);
    }
    // Pass 1: the newest offset of every key. Keys are copied, so the map
    // holds the keys and not the batches they came from.
    let mut newest: HashMap<Bytes, u64> = HashMap::new();
    let mut last_base = None;
    for entry in topic.store.batches(partition, start, end)? {
        let (header, records, _) = entry?;
        for r in &records {
            if let Some(key) = &r.key {
                newest.insert(Bytes::copy_from_slice(key), header.base_offset + u64::from(r.offset_delta));
            }
        }
        last_base = Some(header.base_offset);
    }
    let Some(last_base) = last_base else { return Ok(0) };
    // Pass 2: rewrite the batches before the newest that lost records.
    let mut removed = 0;
    for entry in topic.store.batches(partition, start, last_base)? {
        let (header, records, stored) = entry?;
        let expired = header.max_timestamp_ms < now_ms - delete_retention_ms;
        let before = records.len();
        let kept: Vec<Record> = records
            .into_iter()
            .filter(|r| {
                let offset = header.base_offset + u64::from(r.offset_delta);
                let newest_of_key = r.key.as_ref().is_none_or(|k| newest.get(k) == Some(&offset));
                newest_of_key && !(r.value.is_none() && expired)
            })
            .collect();
        if kept.len() == before {
            continue;
        }
        removed += (before - kept.len()) as u64;
        let batch = EncodedBatch::encode_span(&kept, header.record_count, header.producer);
        let new_len = batch.stored_len() as u64;
        topic.store.replace(partition, header.base_offset, batch)?;
        let _ = p.stored_bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
            Some((b + new_len).saturating_sub(stored as u64))
        });
    }
    p.compacted_to.store(end, Ordering::Release);
    if removed > 0 {
        tracing::info!(topic = %topic.meta.name, partition, removed, "compaction removed records");
    }
    Ok(removed)
}

/// The answer to a lookup by time for one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeOffset {
    /// Partition.
    pub partition: u32,
    /// The earliest offset whose timestamp is at or after the time, or the
    /// high watermark when there is none.
    pub offset: u64,
    /// That record's timestamp, when there is one.
    pub timestamp_ms: Option<i64>,
}

impl Log {
    /// For each partition (all when `partitions` is empty), the earliest
    /// offset whose record timestamp is at least `timestamp_ms`. Reads one
    /// time-index entry and at most an index interval of batches.
    pub fn offsets_for_time(
        &self,
        topic: &str,
        partitions: &[u32],
        timestamp_ms: i64,
    ) -> Result<Vec<TimeOffset>> {
        let t = self.topic(topic)?;
        let all: Vec<u32>;
        let partitions = if partitions.is_empty() {
            all = (0..t.meta.partitions).collect();
            &all
        } else {
            partitions
        };
        let mut out = Vec::with_capacity(partitions.len());
        for (i, &p) in partitions.iter().enumerate() {
            let state = t.partition(p, &format!("partitions[{i}]"))?.state(p);
            let floor = t.store.time_index_floor(p, timestamp_ms)?.map_or(0, |e| e.next_offset);
            let from = floor.max(state.log_start);
            let found = t.store.find_by_time(p, from, state.high_watermark, timestamp_ms)?;
            out.push(TimeOffset {
                partition: p,
                offset: found.map_or(state.high_watermark, |(o, _)| o),
                timestamp_ms: found.map(|(_, ts)| ts),
            });
        }
        Ok(out)
    }
}

/// Most headers one record may carry.
pub const MAX_HEADERS: usize = 1024;

/// How long an idempotent producer's batch that arrives ahead of an earlier
/// one waits for it. A producer may have several requests in flight to a
/// partition, and the broker serves each request (an HTTP/2 stream) on its
/// own, so a later one can overtake an earlier one by a scheduling slice;
/// an earlier batch still missing after this long was lost, and the later
/// one is refused as a sequence gap.
const SEQUENCE_WAIT: Duration = Duration::from_secs(5);

/// One partition's records of a produce request, validated and encoded.
#[derive(Debug)]
struct PreparedBatch {
    partition: u32,
    record_count: u32,
    bytes: u64,
    seq: Option<ProducerSeq>,
    parts: Vec<EncodedBatch>,
}

/// Waits until every batch of an idempotent producer's request is next in
/// its partition's sequence (or a retry of one appended), so the request's
/// batches are appended in the order the producer numbered them. Refuses
/// the request, before anything is written, if a batch is too old or the
/// batches before it do not arrive within `SEQUENCE_WAIT` (unless the
/// partition does not know the producer: then the batch is taken as new).
async fn wait_for_earlier_batches(topic: &Topic, batches: &[PreparedBatch], waits: &AtomicU64) -> Result<()> {
    let deadline = tokio::time::Instant::now() + SEQUENCE_WAIT;
    for batch in batches {
        let Some(seq) = batch.seq else { continue };
        let partition = &topic.partitions[batch.partition as usize];
        let check = || {
            partition.writer.lock().producers.check(
                seq,
                batch.record_count,
                &topic.meta.name,
                batch.partition,
            )
        };
        // The common case, a batch next in sequence, registers no waiter.
        if !matches!(check()?, producers::Decision::Ahead { .. }) {
            continue;
        }
        waits.fetch_add(1, Ordering::Relaxed);
        loop {
            // Registered before checking again, so an append in between
            // still wakes this wait.
            let appended = partition.sequenced.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let producers::Decision::Ahead { expected, unknown } = check()? else { break };
            tokio::select! {
                () = appended => {}
                () = tokio::time::sleep_until(deadline) => {
                    if unknown {
                        // Forgotten, or its first batch was lost: taken as new.
                        break;
                    }
                    return Err(producers::gap(seq, expected, &topic.meta.name, batch.partition));
                }
                () = topic.deleted.cancelled() => {
                    return Err(Error::TopicNotFound { topic: topic.meta.name.clone() });
                }
            }
        }
    }
    Ok(())
}

/// Refuses the request, before anything is written, if a batch is too old
/// or ahead of its partition's next sequence from a producer the partition
/// knows; never waits.
fn refuse_gaps(topic: &Topic, batches: &[PreparedBatch]) -> Result<()> {
    for batch in batches {
        let Some(seq) = batch.seq else { continue };
        let partition = &topic.partitions[batch.partition as usize];
        let decision = partition.writer.lock().producers.check(
            seq,
            batch.record_count,
            &topic.meta.name,
            batch.partition,
        )?;
        if let producers::Decision::Ahead { expected, unknown: false } = decision {
            return Err(producers::gap(seq, expected, &topic.meta.name, batch.partition));
        }
    }
    Ok(())
}

/// Whether a write of `incoming` bytes leaves the reserve of `min` bytes:
/// free space plus the reusable space counted ([`counted_reusable`]) must
/// cover both.
///
/// Why this is safe: the reusable space (storage's `Space::reusable`) is an
/// estimate of what sled will reuse of the space that deletes freed inside
/// its file, and it can be wrong: right after a delete sled grows its file
/// for a while (measured: by up to 17 MB, two segments) before it reuses
/// the freed segments, and it reuses less than counted when values lived in
/// blob files. So it stands in for half the reserve at most: a write is
/// only ever accepted with at least `min / 2 + incoming` bytes really free
/// on the file system, which is the old check with half the reserve,
/// whatever the estimate says. With the default 64 MiB reserve that half
/// holds the 17 MB growth after a delete besides the request.
fn reserve_met(space: Space, min: u64, incoming: u64) -> bool {
    space.free.saturating_add(counted_reusable(space, min)) >= min.saturating_add(incoming)
}

/// The reusable space that [`reserve_met`] counts: at most half the reserve.
fn counted_reusable(space: Space, min: u64) -> u64 {
    space.reusable.min(min / 2)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Topic names are `[A-Za-z0-9._-]{1,249}`, except `.` and `..`.
pub(crate) fn validate_topic_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 249 {
        return Err(Error::invalid(
            "name",
            format!("topic names are 1 to 249 characters, got {}", name.len()),
        ));
    }
    if name == "." || name == ".." {
        return Err(Error::invalid("name", format!("`{name}` is not a valid topic name")));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(Error::invalid("name", format!("character {c:?} is not allowed: use [A-Za-z0-9._-]")));
    }
    Ok(())
}

impl Topic {
    fn new(
        id: Uuid,
        meta: TopicMeta,
        config: TopicConfig,
        store: TopicStore,
        partitions: Vec<Partition>,
    ) -> Topic {
        let settings = RwLock::new(Settings { entries: meta.config.clone(), parsed: config });
        Topic {
            id,
            meta,
            settings,
            store,
            partitions,
            next_keyless: AtomicU32::new(0),
            deleted: CancellationToken::new(),
        }
    }

    fn config(&self) -> TopicConfig {
        self.settings.read().parsed
    }

    /// Makes appended batches readable (they are on disk now).
    fn publish(&self, appended: &[Appended]) {
        for a in appended.iter().filter(|a| !a.duplicate) {
            let next = a.base_offset + u64::from(a.record_count);
            // Syncs finish in order, but answers may be handled out of
            // order: the high watermark only moves forward.
            self.partitions[a.partition as usize].high_watermark.send_if_modified(|hw| {
                let forward = next > *hw;
                if forward {
                    *hw = next;
                }
                forward
            });
        }
    }

    fn info(&self) -> TopicInfo {
        TopicInfo {
            name: self.meta.name.clone(),
            id: self.id,
            partitions: self.meta.partitions,
            config: self.settings.read().entries.clone(),
        }
    }

    fn partition(&self, partition: u32, field: &str) -> Result<&Partition> {
        self.partitions.get(partition as usize).ok_or_else(|| {
            Error::invalid(
                field,
                format!(
                    "{partition} is not below topic `{}`'s partition count {}",
                    self.meta.name, self.meta.partitions
                ),
            )
        })
    }
}

/// What appending to a partition needs to know.
#[derive(Debug, Default)]
struct Writer {
    /// The next offset to assign.
    next_offset: u64,
    /// The largest record timestamp in the partition.
    max_timestamp_ms: i64,
    /// Batch bytes written since the last time-index entry.
    unindexed_bytes: u64,
    /// Idempotent producers' recent batches.
    producers: producers::Producers,
}

/// How many of a partition's last batches are read on open to rebuild its
/// idempotent producers' state. A producer retries within its request
/// timeout, so its batches are among the newest.
const RECOVERED_PRODUCER_BATCHES: usize = 1000;

/// Where the time index left off for a partition: its running maximum and
/// the bytes written since its last entry.
fn recover_time_index(store: &TopicStore, partition: u32, next_offset: u64) -> Result<Writer> {
    let last = store.last_time_index(partition)?;
    let (mut max_timestamp_ms, from) = last.map_or((0, 0), |e| (e.max_timestamp_ms, e.next_offset));
    let mut unindexed_bytes = 0;
    // At most one index interval of batches follows the last entry.
    for entry in store.headers(partition, from, next_offset)? {
        let (header, len) = entry?;
        if header.next_offset() > from {
            max_timestamp_ms = max_timestamp_ms.max(header.max_timestamp_ms);
            unindexed_bytes += len as u64;
        }
    }
    // Producers' recent batches, from the last stored batches' headers.
    let mut producers = producers::Producers::default();
    for header in store.last_headers(partition, RECOVERED_PRODUCER_BATCHES)?.into_iter().rev() {
        if let Some(seq) = header.producer {
            producers.recover(seq, header.record_count, header.base_offset);
        }
    }
    Ok(Writer { next_offset, max_timestamp_ms, unindexed_bytes, producers })
}

impl Partition {
    fn new(log_start: u64, stored_bytes: u64, writer: Writer) -> Partition {
        let next_offset = writer.next_offset;
        Partition {
            stored_bytes: AtomicU64::new(stored_bytes),
            compacted_to: AtomicU64::new(0),
            writer: Mutex::new(writer),
            high_watermark: watch::Sender::new(next_offset),
            log_start: AtomicU64::new(log_start),
            sequenced: Notify::new(),
        }
    }

    fn state(&self, partition: u32) -> PartitionState {
        PartitionState {
            partition,
            log_start: self.log_start.load(Ordering::Acquire),
            high_watermark: *self.high_watermark.borrow(),
        }
    }

    /// Appends a batch; returns its base offset, and whether it was a
    /// producer's retry answered without appending.
    fn append(
        &self,
        store: &TopicStore,
        topic: &str,
        partition: u32,
        parts: Vec<EncodedBatch>,
        producer: Option<ProducerSeq>,
    ) -> Result<(u64, bool)> {
        let count: u64 = parts.iter().map(|p| u64::from(p.record_count())).sum();
        let bytes: u64 = parts.iter().map(|p| p.stored_len() as u64).sum();
        let max_ts = parts.iter().map(EncodedBatch::max_timestamp_ms).max().unwrap_or(0);
        let mut w = self.writer.lock();
        let decision = match producer {
            Some(seq) => w.producers.check(seq, count as u32, topic, partition)?,
            None => producers::Decision::Append,
        };
        match (decision, producer) {
            (producers::Decision::Duplicate(base), _) => return Ok((base, true)),
            // The wait before the append is over: a producer the partition
            // does not know is taken as new, a known one has a gap.
            (producers::Decision::Ahead { expected, unknown: false }, Some(seq)) => {
                return Err(producers::gap(seq, expected, topic, partition));
            }
            _ => {}
        }
        let base = w.next_offset;
        let next = base + count;
        // Index the batch if it raises the running maximum and an interval
        // of bytes has passed since the last entry (or there is none yet).
        let raises = max_ts > w.max_timestamp_ms || base == 0;
        let due = w.unindexed_bytes + bytes >= TIME_INDEX_INTERVAL || base == 0;
        let max_timestamp_ms = w.max_timestamp_ms.max(max_ts);
        let index = (raises && due).then_some(TimeIndexEntry { max_timestamp_ms, next_offset: next });
        store.append(partition, base, parts, index)?;
        w.next_offset = next;
        w.max_timestamp_ms = max_timestamp_ms;
        w.unindexed_bytes = if index.is_some() { 0 } else { w.unindexed_bytes + bytes };
        if let Some(seq) = producer {
            w.producers.record(seq, count as u32, base);
        }
        drop(w);
        if producer.is_some() {
            self.sequenced.notify_waiters();
        }
        self.stored_bytes.fetch_add(bytes, Ordering::Relaxed);

        Ok((base, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["a", "orders.v1", "A_b-9", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "ü", "a/b", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    fn open_log(dir: &std::path::Path, tasks: &TaskTracker) -> Log {
        let storage = Storage::open(&brooklet_storage::StorageConfig {
            path: dir.to_path_buf(),
            cache_capacity: 16 << 20,
            flush_every_ms: None,
            flush_max_delay: std::time::Duration::ZERO,
        })
        .unwrap();
        Log::open(storage, Limits::default(), Acks::Durable, tasks).unwrap()
    }

    fn value(v: &'static str) -> NewRecord {
        NewRecord {
            partition: Some(0),
            value: Some(Bytes::from_static(v.as_bytes())),
            ..NewRecord::default()
        }
    }

    #[tokio::test]
    async fn a_waiting_fetch_wakes_on_append_and_on_delete() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path(), &TaskTracker::new());
        log.create_topic("t", 1, BTreeMap::new()).await.unwrap();
        let cancel = CancellationToken::new();
        let opts = FetchOpts { max_bytes: 1 << 20, max_wait: Duration::from_secs(3600) };

        let mut fetch = std::pin::pin!(log.fetch("t", 0, 0, opts, &cancel));
        assert!(futures::poll!(fetch.as_mut()).is_pending(), "nothing to read yet: the fetch waits");
        log.produce("t", vec![value("a")], Some(Acks::Written), None).await.unwrap();
        let fetched = fetch.await.unwrap();
        assert_eq!(fetched.batches.len(), 1);
        assert_eq!(fetched.high_watermark, 1);

        let mut fetch = std::pin::pin!(log.fetch("t", 0, 1, opts, &cancel));
        assert!(futures::poll!(fetch.as_mut()).is_pending());
        log.delete_topic("t").await.unwrap();
        assert!(matches!(fetch.await, Err(Error::TopicNotFound { .. })));

        log.create_topic("t", 1, BTreeMap::new()).await.unwrap();
        let mut fetch = std::pin::pin!(log.fetch("t", 0, 0, opts, &cancel));
        assert!(futures::poll!(fetch.as_mut()).is_pending());
        cancel.cancel();
        assert!(matches!(fetch.await, Err(Error::ShuttingDown)));
    }

    /// Half the reserve must be free on the file system whatever the
    /// reusable space; the other half may be reusable space.
    #[test]
    fn reusable_space_counts_for_at_most_half_the_reserve() {
        let space = |free, reusable| Space { free, reusable };
        assert!(reserve_met(space(110, 0), 100, 10));
        assert!(!reserve_met(space(109, 0), 100, 10));
        assert!(reserve_met(space(60, 50), 100, 10), "50 reusable stands in for half");
        assert!(!reserve_met(space(60, 49), 100, 10));
        assert!(!reserve_met(space(59, u64::MAX), 100, 10), "but never for more");
        assert_eq!(counted_reusable(space(0, u64::MAX), 100), 50);
    }

    /// Deleting a topic and retention credit the stored bytes they delete
    /// as reusable space; appends spend it.
    #[tokio::test]
    async fn deletes_credit_reusable_space_and_appends_spend_it() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&brooklet_storage::StorageConfig {
            path: dir.path().to_path_buf(),
            cache_capacity: 16 << 20,
            flush_every_ms: None,
            flush_max_delay: std::time::Duration::ZERO,
        })
        .unwrap();
        // No reserve, so nothing looks at the free space before the one look
        // at the end: the file system's free space changing under a test
        // (which lowers the credit) cannot disturb the sums.
        let limits = Limits { min_free_disk_bytes: 0, ..Limits::default() };
        let log = Log::open(storage.clone(), limits, Acks::Durable, &TaskTracker::new()).unwrap();
        let big = |v: u8| NewRecord {
            partition: Some(0),
            value: Some(vec![v; 1000].into()),
            ..NewRecord::default()
        };
        log.create_topic("gone", 1, BTreeMap::new()).await.unwrap();
        log.produce("gone", (0..5).map(big).collect(), None, None).await.unwrap();
        let deleted = log.stored_bytes("gone").unwrap();
        log.delete_topic("gone").await.unwrap();

        let config = BTreeMap::from([("retention.bytes".to_owned(), "1500".to_owned())]);
        log.create_topic("kept", 1, config).await.unwrap();
        for v in 0..3 {
            log.produce("kept", vec![big(v)], None, None).await.unwrap();
        }
        let written = log.stored_bytes("kept").unwrap();
        assert_eq!(log.enforce_retention(now_ms()).unwrap(), 2, "all but the newest batch");
        let retained = log.stored_bytes("kept").unwrap();

        let reusable = storage.space().unwrap().reusable;
        assert_eq!(reusable, deleted + (written - retained) - written);
    }

    #[tokio::test]
    async fn reopening_recovers_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let tasks = TaskTracker::new();
        {
            let log = open_log(dir.path(), &tasks);
            log.create_topic("t", 1, BTreeMap::new()).await.unwrap();
            log.produce("t", vec![value("a"), value("b")], Some(Acks::Durable), None).await.unwrap();
            log.produce("t", vec![value("c")], Some(Acks::Durable), None).await.unwrap();
        }
        tasks.close();
        tasks.wait().await;
        let log = open_log(dir.path(), &tasks);
        let (_, states) = log.describe_topic("t").unwrap();
        assert_eq!(states[0].high_watermark, 3);
        assert_eq!(
            log.produce("t", vec![value("d")], Some(Acks::Written), None).await.unwrap().0[0].base_offset,
            3
        );
    }

    #[tokio::test]
    async fn only_issued_producer_ids_with_their_epoch_may_produce() {
        let dir = tempfile::tempdir().unwrap();
        let tasks = TaskTracker::new();
        let claim = |producer_id, producer_epoch| Idempotence {
            producer_id,
            producer_epoch,
            base_sequences: BTreeMap::from([(0, 0)]),
            ..Idempotence::default()
        };
        let issued = {
            let log = open_log(dir.path(), &tasks);
            log.create_topic("t", 1, BTreeMap::new()).await.unwrap();
            let never_issued = log.produce("t", vec![value("a")], None, Some(&claim(987_654_321, 0))).await;
            let Err(Error::ProducerRefused { refusal: ProducerRefusal::UnknownProducerId, reason }) =
                never_issued
            else {
                panic!("{never_issued:?}")
            };
            assert!(reason.contains("InitProducerId"), "{reason}");

            let issued = log.new_producer_id().unwrap();
            assert_eq!(issued.epoch, 0);
            let wrong_epoch = log.produce("t", vec![value("a")], None, Some(&claim(issued.id, 1))).await;
            assert!(
                matches!(
                    wrong_epoch,
                    Err(Error::ProducerRefused { refusal: ProducerRefusal::WrongEpoch, .. })
                ),
                "{wrong_epoch:?}"
            );
            assert_eq!(log.describe_topic("t").unwrap().1[0].high_watermark, 0, "nothing was appended");

            log.produce("t", vec![value("a")], None, Some(&claim(issued.id, 0))).await.unwrap();
            issued
        };
        tasks.close();
        tasks.wait().await;
        // An id issued before a restart is still this broker's.
        let log = open_log(dir.path(), &TaskTracker::new());
        let mut next = claim(issued.id, 0);
        next.base_sequences.insert(0, 1);
        log.produce("t", vec![value("b")], None, Some(&next)).await.unwrap();
        assert!(log.new_producer_id().unwrap().id > issued.id, "ids are never reused");
    }

    #[tokio::test]
    async fn a_sequence_gap_is_refused_at_once_when_asked_and_a_retry_gets_its_original_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path(), &TaskTracker::new());
        log.create_topic("t", 1, BTreeMap::new()).await.unwrap();
        let id = log.new_producer_id().unwrap().id;
        let claim = |producer_id, base_sequence| Idempotence {
            producer_id,
            base_sequences: BTreeMap::from([(0, base_sequence)]),
            gaps: SequenceGaps::Refuse,
            ..Idempotence::default()
        };
        let produce = |records: Vec<NewRecord>, claim: Idempotence| {
            let log = &log;
            async move { log.produce("t", records, Some(Acks::Durable), Some(&claim)).await.map(|r| r.0[0]) }
        };
        let first = produce(vec![value("a"), value("b")], claim(id, 0)).await.unwrap();
        let second = produce(vec![value("c")], claim(id, 2)).await.unwrap();
        assert_eq!((first.base_offset, second.base_offset), (0, 2));

        let ahead = produce(vec![value("x")], claim(id, 5)).await;
        let Err(Error::ProducerRefused { refusal: ProducerRefusal::SequenceGap, reason }) = ahead else {
            panic!("{ahead:?}")
        };
        assert!(reason.contains("expected sequence 3, got 5"), "{reason}");
        assert_eq!(log.sequence_waits(), 0, "the batch did not wait for the ones before it");

        // Retries of the last batches are answered with their offsets.
        let retry = produce(vec![value("a"), value("b")], claim(id, 0)).await.unwrap();
        assert_eq!((retry.base_offset, retry.duplicate), (0, true));
        let retry = produce(vec![value("c")], claim(id, 2)).await.unwrap();
        assert_eq!((retry.base_offset, retry.duplicate), (2, true));
        // A sequence inside an appended batch is neither.
        let inside = produce(vec![value("b")], claim(id, 1)).await;
        assert!(
            matches!(inside, Err(Error::ProducerRefused { refusal: ProducerRefusal::StaleSequence, .. })),
            "{inside:?}"
        );
        // A producer the partition does not know is taken as new at once.
        let other = log.new_producer_id().unwrap().id;
        let new = produce(vec![value("d")], claim(other, 7)).await.unwrap();
        assert_eq!((new.base_offset, new.duplicate), (3, false));
        assert_eq!(log.sequence_waits(), 0);
        assert_eq!(log.describe_topic("t").unwrap().1[0].high_watermark, 4);
    }

    #[tokio::test]
    async fn a_null_value_stays_distinct_from_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path(), &TaskTracker::new());
        log.create_topic("t", 1, BTreeMap::new()).await.unwrap();
        let null = NewRecord { partition: Some(0), value: None, ..NewRecord::default() };
        let empty = NewRecord { partition: Some(0), value: Some(Bytes::new()), ..NewRecord::default() };
        log.produce("t", vec![null, empty, value("v")], Some(Acks::Durable), None).await.unwrap();
        let opts = FetchOpts { max_bytes: 1 << 20, max_wait: Duration::ZERO };
        let fetched = log.fetch("t", 0, 0, opts, &CancellationToken::new()).await.unwrap();
        let values: Vec<Option<Bytes>> =
            fetched.batches.iter().flat_map(|b| b.decode().unwrap()).map(|r| r.value).collect();
        assert_eq!(values, [None, Some(Bytes::new()), Some(Bytes::from_static(b"v"))]);
    }
}
