//! Storage: the only crate that knows sled. It owns key encoding (`keys`),
//! the stored batch layout (`batch`), records as stored (`record`), group
//! commit (`commit`), recovery of a partition's bounds, and the trees:
//! `topics` (topic metadata), `offsets` (committed group offsets),
//! `log_starts`, `users` and `auth` (salted credentials, see `users`),
//! `acls` (access-control entries, see `acls`), and per topic its batches
//! and its sparse time index.
//!
//! It never assigns offsets, waits for readers, or knows a protocol: the
//! core decides what to append where; storage writes and reads it. Its
//! errors say what kind of failure they are ([`StorageErrorKind`]) and name
//! no engine type.

#![warn(unreachable_pub)]

mod acls;
mod batch;
mod commit;
mod error;
#[cfg(test)]
mod fuzz_tests;
mod keys;
mod record;
mod space;
mod users;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use space::Reusable;

use bytes::Bytes;
use prost::Message;

pub use acls::{AclStore, StoredAcl};
pub use batch::{
    BatchError, BatchHeader, EncodedBatch, HEADER_LEN, ProducerSeq, decode as decode_batch, encode_parts,
};
pub use commit::{FlushObserver, GroupCommit};

use error::sled_err;
pub use error::{StorageError, StorageErrorKind, error_chain};
pub use record::{Header, Record, StoredRecords, record_size};
pub use users::{StoredCredential, StoredUser, UserStore};

/// sled writes a value larger than a quarter of its segment into a separate
/// blob file. Brooklet keeps every batch inline: segments of 8 MiB put the
/// limit near 2 MiB, and batches are split below `MAX_STORED_BATCH_BYTES`.
const SEGMENT_SIZE: usize = 8 << 20;

/// The largest stored batch value. Larger produce batches are split into
/// several values written together.
pub const MAX_STORED_BATCH_BYTES: usize = SEGMENT_SIZE / 4 - (64 << 10);

/// The size produce batches are split to (at record boundaries; a larger
/// record is a part of its own, up to `MAX_STORED_BATCH_BYTES`). sled keeps
/// values inline in its leaves, holds about 16 entries a leaf, and writes a
/// leaf over a quarter segment as a blob that its cache counts as a few bytes
/// and so never evicts: with large values, resident memory grows far past
/// `cache_capacity`. Measured with the soak (`--cache-mb 64`, durable 1 KiB
/// records): 16 KiB parts hold about 120 MB, 32 KiB about 190 MB, 64 KiB
/// about 320 MB, unsplit 256 KiB batches over 1 GB. See docs/performance.md.
pub const TARGET_STORED_BATCH_BYTES: usize = 32 << 10;

/// sled frees its 8 MiB io buffers (and replaced pages) through
/// crossbeam-epoch, which keeps them in the freeing thread's bag until 64
/// pile up. Hand them on after each write and flush.
fn release_deferred() {
    crossbeam::epoch::pin().flush();
}

fn index_entry((key, value): (sled::IVec, sled::IVec)) -> Result<TimeIndexEntry, StorageError> {
    let bad = || StorageError::engine("read time index", "malformed time-index entry");
    let (_, max_timestamp_ms) = keys::parse_time_index(&key).ok_or_else(bad)?;
    let next_offset = u64::from_be_bytes(value.as_ref().try_into().map_err(|_| bad())?);
    Ok(TimeIndexEntry { max_timestamp_ms, next_offset })
}

/// Storage tuning.
#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// Directory holding sled's files.
    pub path: PathBuf,
    /// sled's page cache capacity in bytes.
    pub cache_capacity: u64,
    /// How often sled's background thread flushes, in ms.
    pub flush_every_ms: Option<u64>,
    /// How long group commit may wait, after the first request for a sync,
    /// for more requests to share it. Zero: sync at once; requests that
    /// arrive while a sync runs share the next one anyway.
    pub flush_max_delay: std::time::Duration,
}

/// Topic metadata as stored.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopicMeta {
    /// Topic name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Topic id (UUID).
    #[prost(string, tag = "2")]
    pub id: String,
    /// Partition count.
    #[prost(uint32, tag = "3")]
    pub partitions: u32,
    /// Validated configuration.
    #[prost(btree_map = "string, string", tag = "4")]
    pub config: BTreeMap<String, String>,
}

/// A committed offset as stored.
#[derive(Clone, PartialEq, prost::Message)]
struct StoredOffset {
    #[prost(uint64, tag = "1")]
    offset: u64,
    #[prost(string, optional, tag = "2")]
    metadata: Option<String>,
}

/// A group's committed offset for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The next offset the group reads.
    pub offset: u64,
    /// Free-form metadata from the committer.
    pub metadata: Option<String>,
}

/// The first and next offsets of a partition as found on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionBounds {
    /// Base offset of the first stored batch.
    pub log_start: u64,
    /// Offset after the last stored batch.
    pub next_offset: u64,
}

/// The data directory's disk space, as the free-space reserve counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    /// Bytes free for an unprivileged writer on the file system.
    pub free: u64,
    /// Bytes that deletes freed inside the database file, which the storage
    /// engine reuses before it grows the file: an estimate (see
    /// [`Storage::space`]).
    pub reusable: u64,
}

/// The open database.
#[derive(Clone, Debug)]
pub struct Storage {
    db: sled::Db,
    topics: sled::Tree,
    offsets: sled::Tree,
    /// Per partition, the log start that retention has moved past the first
    /// stored batch (and that survives every batch being deleted).
    log_starts: sled::Tree,
    /// Users' credentials and the server secret.
    users: UserStore,
    acls: AclStore,
    /// Space deletes freed inside the database file.
    reusable: Arc<Reusable>,
    path: PathBuf,
    /// Flush + fdatasync of the database and its blob files.
    syncer: Arc<commit::Syncer>,
    flush_max_delay: std::time::Duration,
    /// Told about every group-commit flush, if set.
    flush_observer: Option<Arc<dyn FlushObserver>>,
}

/// One topic's batches and its sparse time index.
///
/// The time index maps, per partition, a running maximum record timestamp to
/// the offset after the batch that reached it: every record before that
/// offset is no newer than the timestamp. Entries are written at most every
/// `TIME_INDEX_INTERVAL` bytes of batches, so a lookup reads one entry and
/// then at most that many bytes.
#[derive(Clone, Debug)]
pub struct TopicStore {
    name: String,
    id: String,
    tree: sled::Tree,
    index: sled::Tree,
    log_starts: sled::Tree,
    reusable: Arc<Reusable>,
}

/// Stored bytes of batches that retention deletes between two flushes
/// (see [`TopicStore::delete_before`]): an eighth of a segment.
const DELETE_CHUNK_BYTES: u64 = (SEGMENT_SIZE / 8) as u64;

/// Bytes of batches between two time-index entries of a partition.
pub const TIME_INDEX_INTERVAL: u64 = 256 << 10;

/// A stored batch: its header, its records, and its stored size in bytes.
pub type StoredBatch = (BatchHeader, Vec<Record>, usize);

/// A time-index entry: every record before `next_offset` has a timestamp of
/// at most `max_timestamp_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeIndexEntry {
    /// Running maximum timestamp.
    pub max_timestamp_ms: i64,
    /// The offset after the batch that the entry was written for.
    pub next_offset: u64,
}

/// How long [`Storage::open`] waits for the database file's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens sled's database. Its file is locked while open, and sled's
/// background threads hold it for a moment after the last handle is
/// dropped: a database closed in this process just now is waited for (up
/// to [`LOCK_WAIT`]); one held longer is in use by another process.
fn open_db(config: &StorageConfig) -> Result<sled::Db, StorageError> {
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(&config.path)
            .segment_size(SEGMENT_SIZE)
            .cache_capacity(config.cache_capacity)
            .flush_every_ms(config.flush_every_ms)
            .open();
        match opened {
            // sled says so only in its message.
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= LOCK_WAIT {
                    tracing::debug!(error = %e, "the database stayed locked");
                    return Err(StorageError::Locked { dir: config.path.clone() });
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            opened => return opened.map_err(sled_err("open")),
        }
    }
}

impl Storage {
    /// Opens (or creates) the database and drops the trees of topics whose
    /// deletion a crash interrupted.
    pub fn open(config: &StorageConfig) -> Result<Storage, StorageError> {
        let db = open_db(config)?;
        let topics = db.open_tree("topics").map_err(sled_err("open topics"))?;
        let offsets = db.open_tree("offsets").map_err(sled_err("open offsets"))?;
        let log_starts = db.open_tree("log_starts").map_err(sled_err("open log starts"))?;
        let users = UserStore {
            users: db.open_tree("users").map_err(sled_err("open users"))?,
            auth: db.open_tree("auth").map_err(sled_err("open auth"))?,
        };
        let acls = AclStore { acls: db.open_tree("acls").map_err(sled_err("open acls"))? };
        let reusable = Arc::new(Reusable::open(db.open_tree("space").map_err(sled_err("open space"))?)?);
        let log_file =
            File::open(config.path.join("db")).map_err(|e| StorageError::io("open the database file", e))?;
        let syncer = Arc::new(commit::Syncer::new(db.clone(), log_file, config.path.join("blobs")));
        let storage = Storage {
            db,
            topics,
            offsets,
            log_starts,
            users,
            acls,
            reusable,
            path: config.path.clone(),
            syncer,
            flush_max_delay: config.flush_max_delay,
            flush_observer: None,
        };
        storage.drop_orphan_trees()?;
        Ok(storage)
    }

    /// Reports every flush of the group commits started after this call to
    /// `observer`.
    pub fn with_flush_observer(mut self, observer: Arc<dyn FlushObserver>) -> Storage {
        self.flush_observer = Some(observer);
        self
    }

    /// The database's size on disk, in bytes, as sled counts it.
    pub fn size_on_disk(&self) -> Result<u64, StorageError> {
        self.db.size_on_disk().map_err(sled_err("size on disk"))
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn drop_orphan_trees(&self) -> Result<(), StorageError> {
        let live: Vec<String> = self.load_topics()?.into_iter().map(|t| t.id).collect();
        for name in self.db.tree_names() {
            if let Some(id) = keys::parse_topic_tree(&name).filter(|id| !live.iter().any(|l| l == id)) {
                tracing::warn!(topic_id = id, "dropping the data of a topic whose deletion was interrupted");
                self.db.drop_tree(&name).map_err(sled_err("drop orphan topic tree"))?;
            }
        }
        Ok(())
    }

    /// Every stored topic.
    pub fn load_topics(&self) -> Result<Vec<TopicMeta>, StorageError> {
        self.topics
            .iter()
            .map(|entry| {
                let (_, value) = entry.map_err(sled_err("read topics"))?;
                TopicMeta::decode(&*value).map_err(|source| StorageError::Metadata { what: "topic", source })
            })
            .collect()
    }

    /// Opens the batch and time-index trees of a topic (created empty if new).
    pub fn topic_store(&self, meta: &TopicMeta) -> Result<TopicStore, StorageError> {
        let tree = self.db.open_tree(keys::topic_tree(&meta.id)).map_err(sled_err("open topic tree"))?;
        let index =
            self.db.open_tree(keys::time_index_tree(&meta.id)).map_err(sled_err("open time index tree"))?;
        Ok(TopicStore {
            name: meta.name.clone(),
            id: meta.id.clone(),
            tree,
            index,
            log_starts: self.log_starts.clone(),
            reusable: self.reusable.clone(),
        })
    }

    /// Replaces a topic's stored metadata (its configuration changed).
    pub fn update_topic(&self, meta: &TopicMeta) -> Result<(), StorageError> {
        self.topics
            .insert(meta.name.as_bytes(), meta.encode_to_vec())
            .map(drop)
            .map_err(sled_err("write topic metadata"))
    }

    /// Creates a topic: its tree first, then its metadata, so a crash between
    /// the two leaves only an orphan tree that the next open drops.
    pub fn create_topic(&self, meta: &TopicMeta) -> Result<TopicStore, StorageError> {
        let store = self.topic_store(meta)?;
        self.topics
            .insert(meta.name.as_bytes(), meta.encode_to_vec())
            .map_err(sled_err("write topic metadata"))?;
        Ok(store)
    }

    /// Deletes a topic's committed offsets, its metadata and its batches, in
    /// that order: a crash part-way leaves either a topic the user can delete
    /// again, or an orphan tree that the next open drops. `stored_bytes`, the
    /// size of the topic's stored batches, counts as reusable space (see
    /// [`Storage::space`]); dropping the trees writes almost nothing.
    pub fn delete_topic(&self, meta: &TopicMeta, stored_bytes: u64) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for entry in self.offsets.iter() {
            let (key, _) = entry.map_err(sled_err("read offsets"))?;
            if keys::parse_committed_offset(&key).is_some_and(|(_, topic, _)| topic == meta.name) {
                batch.remove(key);
            }
        }
        self.offsets.apply_batch(batch).map_err(sled_err("remove committed offsets"))?;
        self.topics.remove(meta.name.as_bytes()).map_err(sled_err("remove topic metadata"))?;
        self.db.drop_tree(keys::topic_tree(&meta.id)).map_err(sled_err("drop topic tree"))?;
        self.db.drop_tree(keys::time_index_tree(&meta.id)).map_err(sled_err("drop time index tree"))?;
        let mut starts = sled::Batch::default();
        for key in self.log_starts.scan_prefix(keys::log_start_prefix(&meta.id)).keys() {
            starts.remove(key.map_err(sled_err("read log starts"))?);
        }
        self.log_starts.apply_batch(starts).map_err(sled_err("remove log starts"))?;
        // Saved after the drops: sled recovers a prefix of its log, so a
        // saved credit always comes with the delete it counts.
        self.reusable.freed(stored_bytes)
    }

    /// Bytes free for an unprivileged writer on the data directory's file
    /// system.
    pub fn free_space(&self) -> Result<u64, StorageError> {
        fs4::available_space(&self.path).map_err(|e| StorageError::io("read free disk space", e))
    }

    /// Free space on the file system, and the space deletes freed inside the
    /// database file that sled will reuse before it grows the file.
    ///
    /// sled never gives deleted data back to the file system (its file
    /// shrinks only when its last segments happen to be free): it reuses the
    /// freed segments for new writes. So the stored bytes of deleted batches
    /// are counted as reusable, less the stored bytes of batches written
    /// since and every rise of the free space since (space sled did give
    /// back). An estimate: it tracks what sled does (see `space.rs`) but
    /// cannot see into it, so a caller guarding against a full disk must not
    /// rely on it alone.
    pub fn space(&self) -> Result<Space, StorageError> {
        let free = self.free_space()?;
        Ok(Space { free, reusable: self.reusable.observe(free) })
    }

    /// A new unique id; ids only grow, across restarts too.
    pub fn generate_id(&self) -> Result<u64, StorageError> {
        self.db.generate_id().map_err(sled_err("generate id"))
    }

    /// Writes every dirty buffer to the database file and `fdatasync`s it
    /// and every new blob file.
    pub fn sync(&self) -> Result<(), StorageError> {
        // The reusable space as it is now, not as at the last delete.
        self.reusable.save()?;
        self.syncer.sync().map_err(sled_err("sync"))
    }

    /// Blob files that no sync has covered yet: after a durable sync, 0.
    pub fn unsynced_blob_files(&self) -> Result<usize, StorageError> {
        self.syncer.unsynced_blobs().map_err(|e| StorageError::io("list blob files", e))
    }

    /// The committed offsets of every group.
    pub fn offsets(&self) -> OffsetStore {
        OffsetStore { tree: self.offsets.clone() }
    }

    /// Users and the server secret.
    pub fn users(&self) -> UserStore {
        self.users.clone()
    }

    /// The access-control entries.
    pub fn acls(&self) -> AclStore {
        self.acls.clone()
    }

    /// Starts a group-commit flusher for this database on `tasks`.
    pub fn group_commit(&self, tasks: &tokio_util::task::TaskTracker) -> GroupCommit {
        GroupCommit::start(self.syncer.clone(), self.flush_max_delay, self.flush_observer.clone(), tasks)
    }
}

/// Committed group offsets, keyed by group, topic and partition. Writes are
/// in the engine when they return; a group commit makes them durable.
#[derive(Clone, Debug)]
pub struct OffsetStore {
    tree: sled::Tree,
}

impl OffsetStore {
    /// Stores committed offsets for a group, all of them or none.
    pub fn commit_offsets(&self, group: &str, offsets: &[CommittedOffset]) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for o in offsets {
            let value = StoredOffset { offset: o.offset, metadata: o.metadata.clone() };
            batch.insert(keys::committed_offset(group, &o.topic, o.partition), value.encode_to_vec());
        }
        self.tree.apply_batch(batch).map_err(sled_err("write committed offsets"))
    }

    /// A group's committed offsets, for one topic or all.
    pub fn committed_offsets(
        &self,
        group: &str,
        topic: Option<&str>,
    ) -> Result<Vec<CommittedOffset>, StorageError> {
        let prefix = match topic {
            Some(topic) => keys::group_topic_prefix(group, topic),
            None => keys::group_prefix(group),
        };
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix(prefix) {
            let (key, value) = entry.map_err(sled_err("read committed offsets"))?;
            let Some((_, topic, partition)) = keys::parse_committed_offset(&key) else {
                continue;
            };
            let stored = StoredOffset::decode(&*value)
                .map_err(|source| StorageError::Metadata { what: "committed offset", source })?;
            out.push(CommittedOffset { topic, partition, offset: stored.offset, metadata: stored.metadata });
        }
        Ok(out)
    }

    /// Every group with at least one committed offset, on `topic` or on
    /// any topic.
    pub fn groups_with_offsets(&self, topic: Option<&str>) -> Result<Vec<String>, StorageError> {
        let mut groups: Vec<String> = Vec::new();
        for entry in self.tree.iter().keys() {
            let key = entry.map_err(sled_err("read offsets"))?;
            if let Some((group, _, _)) = keys::parse_committed_offset(&key)
                .filter(|(g, t, _)| groups.last() != Some(g) && topic.is_none_or(|topic| topic == t))
            {
                groups.push(group);
            }
        }
        Ok(groups)
    }

    /// Deletes `group`'s committed offsets of these (topic, partition)s, all
    /// of them or none; returns how many existed.
    pub fn delete_offsets(&self, group: &str, partitions: &[(String, u32)]) -> Result<usize, StorageError> {
        let mut batch = sled::Batch::default();
        let mut existed = 0;
        for (topic, partition) in partitions {
            let key = keys::committed_offset(group, topic, *partition);
            if self.tree.contains_key(&key).map_err(sled_err("read offsets"))? {
                existed += 1;
            }
            batch.remove(key);
        }
        self.tree.apply_batch(batch).map_err(sled_err("delete committed offsets"))?;
        Ok(existed)
    }

    /// Deletes every committed offset of `group`; false if it had none.
    pub fn delete_group(&self, group: &str) -> Result<bool, StorageError> {
        let mut batch = sled::Batch::default();
        let mut any = false;
        for entry in self.tree.scan_prefix(keys::group_prefix(group)).keys() {
            batch.remove(entry.map_err(sled_err("read offsets"))?);
            any = true;
        }
        self.tree.apply_batch(batch).map_err(sled_err("delete group offsets"))?;
        Ok(any)
    }
}

impl TopicStore {
    /// Stores one batch (one or more values) of `partition` at `base_offset`.
    /// Batches over `TARGET_STORED_BATCH_BYTES` arrive as several parts; they are
    /// written in one atomic sled batch so a crash keeps all or none.
    ///
    /// `index` is a time-index entry to write after the batch. Written after
    /// it and not atomically with it: a crash in between only loses an
    /// entry, which makes a later lookup scan a little further.
    pub fn append(
        &self,
        partition: u32,
        base_offset: u64,
        parts: Vec<EncodedBatch>,
        index: Option<TimeIndexEntry>,
    ) -> Result<(), StorageError> {
        self.reusable.spend(parts.iter().map(|p| p.stored_len() as u64).sum());
        let mut base = base_offset;
        if parts.len() == 1 {
            let part = parts.into_iter().next().expect("one part");
            self.tree
                .insert(keys::batch(partition, base), part.into_value(base))
                .map_err(sled_err("append batch"))?;
        } else {
            let mut batch = sled::Batch::default();
            for part in parts {
                let next = base + u64::from(part.record_count());
                batch.insert(&keys::batch(partition, base), part.into_value(base));
                base = next;
            }
            self.tree.apply_batch(batch).map_err(sled_err("append split batch"))?;
        }
        release_deferred();
        if let Some(entry) = index {
            self.index
                .insert(keys::time_index(partition, entry.max_timestamp_ms), &entry.next_offset.to_be_bytes())
                .map_err(sled_err("write time index"))?;
        }
        Ok(())
    }

    /// The partition's last time-index entry.
    pub fn last_time_index(&self, partition: u32) -> Result<Option<TimeIndexEntry>, StorageError> {
        let range = keys::time_index(partition, 0).to_vec()..keys::partition_end(partition);
        let last = self.index.range(range).next_back().transpose().map_err(sled_err("read time index"))?;
        last.map(index_entry).transpose()
    }

    /// The last time-index entry whose running maximum is below
    /// `timestamp_ms`: every record before its offset is older than that.
    pub fn time_index_floor(
        &self,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<Option<TimeIndexEntry>, StorageError> {
        let range = keys::time_index(partition, 0)..keys::time_index(partition, timestamp_ms);
        let last = self.index.range(range).next_back().transpose().map_err(sled_err("read time index"))?;
        last.map(index_entry).transpose()
    }

    /// Headers of the batches holding offsets in `[from, until)`, in order,
    /// with each batch's stored size; read lazily, so a caller that stops
    /// early reads no further.
    pub fn headers(
        &self,
        partition: u32,
        from: u64,
        until: u64,
    ) -> Result<impl Iterator<Item = Result<(BatchHeader, usize), StorageError>> + '_, StorageError> {
        let range = self.tree.range(self.batch_start(partition, from)?..self.batch_end(partition, until));
        Ok(range.map(move |entry| {
            let (key, value) = entry.map_err(sled_err("read batch"))?;
            let (_, base) = keys::parse_batch(&key).unwrap_or_default();
            let header =
                batch::read_header(&value).map_err(|source| self.corrupt(partition, base, source))?;
            Ok((header, value.len()))
        }))
    }

    /// The batches holding offsets in `[from, until)`, decoded, with their
    /// stored sizes; read lazily.
    pub fn batches(
        &self,
        partition: u32,
        from: u64,
        until: u64,
    ) -> Result<impl Iterator<Item = Result<StoredBatch, StorageError>> + '_, StorageError> {
        let range = self.tree.range(self.batch_start(partition, from)?..self.batch_end(partition, until));
        Ok(range.map(move |entry| {
            let (key, value) = entry.map_err(sled_err("read batch"))?;
            let (_, base) = keys::parse_batch(&key).unwrap_or_default();
            let (header, records) = batch::decode(Bytes::copy_from_slice(&value))
                .map_err(|source| self.corrupt(partition, base, source))?;
            Ok((header, records, value.len()))
        }))
    }

    /// Replaces a stored batch with a compacted one at the same base offset.
    /// The bytes it frees count as reusable space.
    pub fn replace(&self, partition: u32, base_offset: u64, batch: EncodedBatch) -> Result<(), StorageError> {
        self.reusable.spend(batch.stored_len() as u64);
        let old = self
            .tree
            .insert(keys::batch(partition, base_offset), batch.into_value(base_offset))
            .map_err(sled_err("replace compacted batch"))?;
        self.reusable.freed(old.map_or(0, |v| v.len() as u64))
    }

    /// Headers of the partition's last `n` batches, newest first.
    pub fn last_headers(&self, partition: u32, n: usize) -> Result<Vec<BatchHeader>, StorageError> {
        // One short-lived range per step: a long reverse iteration over a
        // sled 0.34 tree was seen to keep the database open after it closed.
        let mut end = keys::partition_end(partition);
        let mut out = Vec::new();
        while out.len() < n {
            let last = self.tree.range(keys::batch(partition, 0).to_vec()..end).next_back();
            let Some(entry) = last else { break };
            let (key, value) = entry.map_err(sled_err("read batch"))?;
            let (_, base) = keys::parse_batch(&key).unwrap_or_default();
            out.push(batch::read_header(&value).map_err(|source| self.corrupt(partition, base, source))?);
            end = key.to_vec();
        }
        Ok(out)
    }

    /// The first record at or after offset `from` (and before `until`) whose
    /// timestamp is at least `timestamp_ms`: its offset and timestamp.
    pub fn find_by_time(
        &self,
        partition: u32,
        from: u64,
        until: u64,
        timestamp_ms: i64,
    ) -> Result<Option<(u64, i64)>, StorageError> {
        for entry in self.tree.range(self.batch_start(partition, from)?..self.batch_end(partition, until)) {
            let (key, value) = entry.map_err(sled_err("read batch"))?;
            let (_, base) = keys::parse_batch(&key).unwrap_or_default();
            let header =
                batch::read_header(&value).map_err(|source| self.corrupt(partition, base, source))?;
            // Most batches are skipped on their header alone.
            if header.max_timestamp_ms < timestamp_ms {
                continue;
            }
            let (_, records) = batch::decode(Bytes::copy_from_slice(&value))
                .map_err(|source| self.corrupt(partition, base, source))?;
            let found = records
                .iter()
                .map(|r| (header.base_offset + u64::from(r.offset_delta), r.timestamp_ms))
                .find(|(offset, ts)| *offset >= from && *offset < until && *ts >= timestamp_ms);
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The key of the batch holding `offset` (the last batch whose base is
    /// at or below it), or of `offset` itself when no batch starts before it.
    fn batch_start(&self, partition: u32, offset: u64) -> Result<sled::IVec, StorageError> {
        match self.tree.range(keys::batch(partition, 0)..=keys::batch(partition, offset)).next_back() {
            Some(entry) => Ok(entry.map_err(sled_err("read batch"))?.0),
            None => Ok(keys::batch(partition, offset).to_vec().into()),
        }
    }

    /// The first key past the batches that start before `until`.
    fn batch_end(&self, partition: u32, until: u64) -> sled::IVec {
        sled::IVec::from(&keys::batch(partition, until)[..])
    }

    /// Reads the partition's bounds from its first and last stored batches.
    ///
    /// The last batch is verified in full (length, version, CRC). A damaged
    /// tail, which only a torn write can leave, is removed with a warning
    /// rather than served: it was never acknowledged as durable, since a
    /// durable acknowledgement waits for the write to be synced whole.
    pub fn bounds(&self, partition: u32) -> Result<PartitionBounds, StorageError> {
        let range = || self.tree.range(keys::batch(partition, 0).to_vec()..keys::partition_end(partition));
        let persisted = self.persisted_log_start(partition)?;
        loop {
            let (Some(first), Some(last)) = (range().next(), range().next_back()) else {
                return Ok(PartitionBounds { log_start: persisted, next_offset: persisted });
            };
            let (first_key, _) = first.map_err(sled_err("read first batch"))?;
            let (last_key, last_value) = last.map_err(sled_err("read last batch"))?;
            let (_, log_start) = keys::parse_batch(&first_key).unwrap_or_default();
            let (_, last_base) = keys::parse_batch(&last_key).unwrap_or_default();
            match batch::decode(Bytes::copy_from_slice(&last_value)) {
                Ok((header, _)) => {
                    let next_offset = header.next_offset().max(persisted);
                    return Ok(PartitionBounds { log_start: log_start.max(persisted), next_offset });
                }
                // A batch of a format this broker does not know was written
                // by a newer one: never delete it, refuse to start instead.
                Err(source @ BatchError::Version(_)) => {
                    return Err(self.corrupt(partition, last_base, source));
                }
                Err(source) => {
                    let err = self.corrupt(partition, last_base, source);
                    tracing::warn!(error = %error_chain(&err), "truncating a damaged batch at the end of the log");
                    self.tree.remove(&last_key).map_err(sled_err("truncate damaged batch"))?;
                }
            }
        }
    }

    fn persisted_log_start(&self, partition: u32) -> Result<u64, StorageError> {
        let value =
            self.log_starts.get(keys::log_start(&self.id, partition)).map_err(sled_err("read log start"))?;
        Ok(value.and_then(|v| v.as_ref().try_into().ok()).map_or(0, u64::from_be_bytes))
    }

    /// Moves the partition's log start to `log_start` and deletes every
    /// batch (and time-index entry) wholly before it. The new start is
    /// stored first: after a crash in between, the batches left below it are
    /// never served and the next call deletes them. Returns the stored bytes
    /// freed, which count as reusable space (see [`Storage::space`]).
    ///
    /// Batches are deleted `DELETE_CHUNK_BYTES` (1 MiB) at a time, each chunk
    /// flushed before the next. Deleting keys makes sled rewrite the leaves
    /// that held them, writing about as much as is deleted, and it reuses
    /// the segments that frees only after they have been flushed. Measured
    /// on tmpfs, deleting 41-46 MB of a partition (1 KiB records): in one go
    /// the file grew by 49 MB, taking the very space retention is to free on
    /// a full disk; in 1 MiB chunks by 8.4 MB, one segment, in each of four
    /// runs (2 MiB chunks: 8-17 MB, 4 MiB: 8-26 MB).
    pub fn delete_before(&self, partition: u32, log_start: u64) -> Result<u64, StorageError> {
        self.log_starts
            .insert(keys::log_start(&self.id, partition), &log_start.to_be_bytes())
            .map_err(sled_err("write log start"))?;
        let mut freed = 0;
        let mut chunk = (sled::Batch::default(), 0u64);
        for entry in self.tree.range(keys::batch(partition, 0)..keys::batch(partition, log_start)) {
            let (key, value) = entry.map_err(sled_err("read batch"))?;
            let (_, base) = keys::parse_batch(&key).unwrap_or_default();
            let header =
                batch::read_header(&value).map_err(|source| self.corrupt(partition, base, source))?;
            if header.next_offset() > log_start {
                break;
            }
            chunk.0.remove(key);
            chunk.1 += value.len() as u64;
            if chunk.1 >= DELETE_CHUNK_BYTES {
                freed += self.delete_chunk(std::mem::take(&mut chunk))?;
                self.tree.flush().map_err(sled_err("flush deleted batches"))?;
                release_deferred();
            }
        }
        freed += self.delete_chunk(chunk)?;
        let mut entries = sled::Batch::default();
        for entry in self.index.range(keys::time_index(partition, 0).to_vec()..keys::partition_end(partition))
        {
            let entry = entry.map_err(sled_err("read time index"))?;
            let key = entry.0.clone();
            if index_entry(entry)?.next_offset > log_start {
                break;
            }
            entries.remove(key);
        }
        self.index.apply_batch(entries).map_err(sled_err("delete time index entries"))?;
        Ok(freed)
    }

    /// Deletes a chunk of batches of `bytes` stored bytes, and counts them
    /// as reusable space.
    fn delete_chunk(&self, (batches, bytes): (sled::Batch, u64)) -> Result<u64, StorageError> {
        self.tree.apply_batch(batches).map_err(sled_err("delete batches"))?;
        self.reusable.freed(bytes)?;
        Ok(bytes)
    }

    /// Reads batches of `partition` holding offsets in `[from, until)`, up to
    /// `max_bytes` of stored values (always at least one batch). The first
    /// returned batch starts exactly at `from` (or at the first record after
    /// it, in a compacted gap). Records stay in their stored encoding.
    pub fn read(
        &self,
        partition: u32,
        from: u64,
        until: u64,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecords>, StorageError> {
        let mut out = Vec::new();
        if from >= until {
            return Ok(out);
        }
        let mut bytes = 0usize;
        for entry in self.tree.range(self.batch_start(partition, from)?..self.batch_end(partition, until)) {
            let (key, value) = entry.map_err(sled_err("read batch"))?;
            let (_, base) = keys::parse_batch(&key).unwrap_or_default();
            if !out.is_empty() && bytes + value.len() > max_bytes {
                break;
            }
            bytes += value.len();
            let (header, records) = batch::split(Bytes::copy_from_slice(&value))
                .map_err(|source| self.corrupt(partition, base, source))?;
            // Trim records before `from` (in the first batch) and at or after
            // `until` (a batch appended while this read ran).
            let kept = StoredRecords::within(header.base_offset, records, from, until);
            if !kept.is_empty() {
                out.push(kept);
            }
        }
        Ok(out)
    }

    fn corrupt(&self, partition: u32, base_offset: u64, source: BatchError) -> StorageError {
        StorageError::Corrupt { topic: self.name.clone(), partition, base_offset, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Storage {
        Storage::open(&StorageConfig {
            path: dir.to_path_buf(),
            cache_capacity: 16 << 20,
            flush_every_ms: None,
            flush_max_delay: std::time::Duration::ZERO,
        })
        .unwrap()
    }

    fn batch(values: &[&'static str]) -> Vec<EncodedBatch> {
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                offset_delta: i as u32,
                value: Some(Bytes::from_static(v.as_bytes())),
                ..Record::default()
            })
            .collect();
        vec![EncodedBatch::encode(&records, None)]
    }

    /// A database closed in this process can be opened again at once,
    /// although sled's background threads (its flusher among them) hold its
    /// file lock for a moment after the last handle is dropped.
    #[test]
    fn a_closed_database_reopens_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig {
            path: dir.path().to_path_buf(),
            cache_capacity: 16 << 20,
            flush_every_ms: Some(500),
            flush_max_delay: std::time::Duration::ZERO,
        };
        for round in 0..32u8 {
            let storage = Storage::open(&config).unwrap_or_else(|e| panic!("reopen {round}: {e:#}"));
            let tree = storage.db.open_tree("filler").unwrap();
            for i in 0..64u32 {
                tree.insert((u32::from(round) << 8 | i).to_be_bytes(), vec![round; 64 << 10]).unwrap();
            }
            storage.db.flush().unwrap();
        }
    }

    /// A flush delay holds a sync for more writers only after a shared
    /// sync: a lone writer's sync starts at once, concurrent syncs all
    /// complete, and the sync after them waits for the delay (paused time:
    /// the delay passes without a real wait).
    #[tokio::test(start_paused = true)]
    async fn a_flush_delay_holds_only_syncs_that_follow_a_shared_one() {
        let delay = std::time::Duration::from_secs(3600);
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&StorageConfig {
            path: dir.path().to_path_buf(),
            cache_capacity: 16 << 20,
            flush_every_ms: None,
            flush_max_delay: delay,
        })
        .unwrap();
        let tasks = tokio_util::task::TaskTracker::new();
        let commit = storage.group_commit(&tasks);
        let started = tokio::time::Instant::now();
        commit.sync().await.unwrap();
        assert!(started.elapsed() < delay, "a lone sync starts at once");
        // Both are queued before the flusher runs, so they share one sync.
        let (a, b) = tokio::join!(commit.sync(), commit.sync());
        a.unwrap();
        b.unwrap();
        let held = tokio::time::Instant::now();
        commit.sync().await.unwrap();
        assert!(held.elapsed() >= delay, "after a shared sync the next one waits for more writers");
    }

    /// Leaves full of large batches are consolidated into pages over sled's
    /// blob threshold; those land in blob files, which a sync must cover.
    #[test]
    fn a_sync_covers_blob_files() {
        let dir = tempfile::tempdir().unwrap();
        let storage = open(dir.path());
        let meta = TopicMeta { name: "t".into(), id: "id".into(), partitions: 1, config: BTreeMap::new() };
        let store = storage.create_topic(&meta).unwrap();
        let value = Bytes::from(vec![7u8; 400 << 10]);
        let mut blobs_seen = false;
        for i in 0..64u64 {
            let record = Record { value: Some(value.clone()), ..Record::default() };
            store.append(0, i, vec![EncodedBatch::encode(&[record], None)], None).unwrap();
            storage.sync().unwrap();
            assert_eq!(storage.unsynced_blob_files().unwrap(), 0, "after batch {i}");
            blobs_seen |= std::fs::read_dir(dir.path().join("blobs")).is_ok_and(|mut d| d.next().is_some());
        }
        assert!(blobs_seen, "the test must make sled write blob files");
    }

    /// Retention deletes in chunks: every batch below the new log start
    /// goes, across chunk boundaries, none above it, and the bytes freed
    /// are returned and counted as reusable.
    #[test]
    fn deleting_in_chunks_deletes_exactly_the_batches_below_the_log_start() {
        let dir = tempfile::tempdir().unwrap();
        let storage = open(dir.path());
        let meta = TopicMeta { name: "t".into(), id: "id".into(), partitions: 2, config: BTreeMap::new() };
        let store = storage.create_topic(&meta).unwrap();
        let value = Bytes::from(vec![7u8; 100 << 10]);
        for p in 0..2 {
            for i in 0..40u64 {
                let record = Record { value: Some(value.clone()), ..Record::default() };
                store.append(p, i, vec![EncodedBatch::encode(&[record], None)], None).unwrap();
            }
        }
        let before = storage.reusable.observe(0);
        let stored: u64 = store.headers(0, 0, 40).unwrap().map(|h| h.unwrap().1 as u64).sum();
        let freed = store.delete_before(0, 35).unwrap();
        assert!(freed > 3 * DELETE_CHUNK_BYTES, "several chunks");
        assert_eq!(freed, stored * 35 / 40);
        assert_eq!(store.bounds(0).unwrap(), PartitionBounds { log_start: 35, next_offset: 40 });
        assert_eq!(store.bounds(1).unwrap(), PartitionBounds { log_start: 0, next_offset: 40 });
        assert_eq!(storage.reusable.observe(0), before + freed);
    }

    #[test]
    fn a_damaged_tail_is_truncated_on_recovery_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let storage = open(dir.path());
        let meta = TopicMeta { name: "t".into(), id: "id".into(), partitions: 1, config: BTreeMap::new() };
        let store = storage.create_topic(&meta).unwrap();
        store.append(0, 0, batch(&["a", "b"]), None).unwrap();
        store.append(0, 2, batch(&["c"]), None).unwrap();
        assert_eq!(store.bounds(0).unwrap(), PartitionBounds { log_start: 0, next_offset: 3 });

        // A torn write: the tail batch's payload no longer matches its CRC.
        let key = keys::batch(0, 2);
        let mut value = store.tree.get(key).unwrap().unwrap().to_vec();
        let last = value.len() - 1;
        value[last] ^= 0x55;
        store.tree.insert(key, value).unwrap();
        assert!(matches!(store.read(0, 2, 3, 1 << 20), Err(StorageError::Corrupt { base_offset: 2, .. })));

        assert_eq!(store.bounds(0).unwrap(), PartitionBounds { log_start: 0, next_offset: 2 });
        assert!(store.tree.get(key).unwrap().is_none(), "the damaged batch is gone");

        let read = store.read(0, 0, 2, 1 << 20).unwrap();
        assert_eq!(read[0].len(), 2);

        // A batch of an unknown format version is a newer broker's, not a
        // torn write: it is kept, and opening fails.
        let mut newer = store.tree.get(keys::batch(0, 0)).unwrap().unwrap().to_vec();
        newer[0] = 99;
        store.tree.insert(keys::batch(0, 0), newer).unwrap();
        assert!(matches!(
            store.bounds(0),
            Err(StorageError::Corrupt { source: BatchError::Version(99), .. })
        ));
        assert!(store.tree.get(keys::batch(0, 0)).unwrap().is_some(), "kept");
    }
}
