//! Brooklet's core: topics and their partitions, offsets, reads and waiting
//! for data, retention and compaction, idempotent producers, consumer groups
//! and committed offsets. It knows no protocol: every adapter (gRPC today,
//! Kafka's wire protocol next) calls the one handle, [`Core`], and maps its
//! [`Error`] to its own errors. It never names a sled type: storage lives in
//! `brooklet-storage`.
//!
//! # Code map
//!
//! - `log`: topics and partitions: offset assignment on append, reads,
//!   waiting for data, offsets by time, retention, compaction, producer ids
//!   and sequences, the disk's free-space reserve.
//! - `group`: consumer groups: membership, assignment by the broker or (in
//!   classic groups) by the members' leader, commits checked against
//!   membership.
//! - `offsets`: committed offsets, owned by the groups.
//! - `users`: users, their salted SCRAM credentials, and authentication
//!   (password checks and SCRAM exchanges) yielding a `Principal`.
//! - `acl`: access-control entries and the `Authorizer` that decides what a
//!   principal may do.
//! - `config`, `error`: validated settings; the typed error.

#![warn(unreachable_pub)]

mod acl;
mod config;
mod error;
mod group;
mod log;
mod offsets;
mod users;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use brooklet_storage::{Storage, StorageConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use acl::{
    Acl, Acls, Authorizer, DENIAL_LOG_INTERVAL, DenialCounter, Denied, MAX_ACL_NAME_BYTES, Operation,
    PatternType, Permission, Resource, ResourceType,
};
pub use brooklet_storage::{
    FlushObserver, Header, Record, StorageError, StorageErrorKind, StoredRecords, error_chain, record_size,
};
pub use config::{
    CoreConfig, DEFAULT_FLUSH_MAX_DELAY, Limits, MAX_FLUSH_MAX_DELAY, MAX_PARTITIONS_LIMIT,
    MAX_RECORD_BYTES_LIMIT,
};
pub use error::{Error, GroupKind, MembershipRefusal, ProducerRefusal, Result};
pub use group::{
    ClassicProtocol, CommittedOffset, Committer, GroupConfig, GroupDescription, GroupInfo, GroupState,
    Groups, Heartbeat, HeartbeatReply, JoinRequest, Joined, JoinedMember, Leaving, MAX_GROUP_ID_BYTES,
    MAX_METADATA_BYTES, MemberAssignment, MemberInfo, PartitionLag, ResetTo, SyncRequest, Synced, TopicGroup,
    TopicPartition,
};
pub use log::{
    Acks, Appended, FetchOpts, Fetched, Idempotence, Log, MAX_HEADERS, NewRecord, PartitionState,
    ProduceRequest, ProducedMany, ProducerId, SequenceGaps, TimeOffset, TopicConfig, TopicInfo,
};
pub use users::{
    AuthError, LoginCache, MAX_PASSWORD_BYTES, MAX_USER_NAME_BYTES, Mechanism, Principal, SCRAM_ITERATIONS,
    ScramExchange, UserInfo, Users, check_user_name,
};
pub use uuid::Uuid;

/// The one handle every protocol adapter calls: the log (topics, produce,
/// fetch and wait, offsets by time, producer ids) and the groups
/// (membership, committed offsets), the users and the access-control
/// entries. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Core {
    log: Arc<Log>,
    groups: Groups,
    users: Users,
    acls: Acls,
    storage: Storage,
}

/// The data directory's disk use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    /// The database's size on disk, as the storage engine counts it.
    pub used_bytes: u64,
    /// Bytes free for the broker on the data directory's file system.
    pub free_bytes: u64,
}

impl Core {
    /// Opens (or creates) the data in `config.data_dir`, recovers every
    /// partition, and starts group commit on `tasks`. Every flush is
    /// reported to `flush_observer`, if given. The database stays open until
    /// the last clone is dropped and the tasks on `tasks` have ended.
    pub fn open(
        config: &CoreConfig,
        flush_observer: Option<Arc<dyn FlushObserver>>,
        tasks: &TaskTracker,
    ) -> Result<Core> {
        config.validate()?;
        let mut storage = Storage::open(&StorageConfig {
            path: config.data_dir.clone(),
            cache_capacity: config.cache_capacity_bytes,
            flush_every_ms: Some(500),
            flush_max_delay: config.flush_max_delay,
        })?;
        if let Some(observer) = flush_observer {
            storage = storage.with_flush_observer(observer);
        }
        let log = Arc::new(Log::open(storage.clone(), config.limits.clone(), config.durability, tasks)?);
        let offsets = offsets::Offsets::new(storage.offsets(), log.group_commit());
        let groups = Groups::new(log.clone(), offsets, config.groups.clone());
        let users = Users::open(storage.users(), log.group_commit())?;
        let acls = Acls::open(storage.acls(), log.group_commit())?;
        Ok(Core { log, groups, users, acls, storage })
    }

    /// Starts the background work on `tasks` until `stop`: retention every
    /// `retention_every`, and the expiry of group members whose session
    /// ended, often enough that a member is removed within a quarter of the
    /// shortest session timeout.
    pub fn spawn_background(&self, config: &CoreConfig, stop: &CancellationToken, tasks: &TaskTracker) {
        self.log.spawn_retention(config.retention_check_interval, stop.clone(), tasks);
        let expiry_every = (config.groups.min_session_timeout / 4).min(Duration::from_millis(250));
        self.groups.spawn_expiry(expiry_every, stop.clone(), tasks);
    }

    /// Topics, records and producer ids.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Consumer groups and their committed offsets.
    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// Users, their credentials, and authentication.
    pub fn users(&self) -> &Users {
        &self.users
    }

    /// The access-control entries.
    pub fn acls(&self) -> &Acls {
        &self.acls
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.storage.path()
    }

    /// How much of the disk the data uses, and how much is free.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        Ok(DiskUsage { used_bytes: self.storage.size_on_disk()?, free_bytes: self.storage.free_space()? })
    }

    /// Writes everything to disk and syncs it, at shutdown.
    pub fn flush(&self) -> Result<()> {
        Ok(self.storage.sync()?)
    }
}
