//! The core's configuration, validated: where the data lives, the limits
//! every request is held to, group sessions, durability and background work.
//! Protocol adapters and the server add their own settings around it.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::group::GroupConfig;
use crate::log::Acks;
use brooklet_storage::{HEADER_LEN, MAX_STORED_BATCH_BYTES};

/// The largest `max_record_bytes` the storage layout allows: one record must
/// fit in one stored batch, with room for its encoding overhead.
pub const MAX_RECORD_BYTES_LIMIT: usize = MAX_STORED_BATCH_BYTES - HEADER_LEN - (64 << 10);

/// The most partitions `max_partitions` may allow.
pub const MAX_PARTITIONS_LIMIT: u32 = 1 << 20;

/// The default of [`CoreConfig::flush_max_delay`].
pub const DEFAULT_FLUSH_MAX_DELAY: Duration = Duration::ZERO;

/// The longest [`CoreConfig::flush_max_delay`] accepted.
pub const MAX_FLUSH_MAX_DELAY: Duration = Duration::from_secs(1);

/// How the core runs.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Where the data lives.
    pub data_dir: PathBuf,
    /// Request limits.
    pub limits: Limits,
    /// sled's page cache, in bytes.
    pub cache_capacity_bytes: u64,
    /// Consumer-group heartbeats and sessions.
    pub groups: GroupConfig,
    /// The guarantee of a produce that names none, for topics without a
    /// `flush.mode` (default: durable).
    pub durability: Acks,

    /// How often retention deletes expired batches (default 30 s).
    pub retention_check_interval: Duration,
    /// How long group commit may hold a sync for more writers to share it
    /// (default 0: sync at once; writers that arrive during a sync share
    /// the next one anyway).
    pub flush_max_delay: Duration,
}

/// Limits applied to every request.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most partitions a topic may have.
    pub max_partitions: u32,
    /// Largest record (key + value + headers), in bytes.
    pub max_record_bytes: usize,
    /// Largest gRPC request message, in bytes.
    pub max_request_bytes: usize,
    /// Longest a fetch may wait for data.
    pub max_fetch_wait: Duration,
    /// Produce requests are refused (RESOURCE_EXHAUSTED) while the data
    /// directory's disk has less free space than this, so the storage
    /// engine never runs out of space mid-write (default 64 MiB; 0 turns
    /// the check off).
    pub min_free_disk_bytes: u64,
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Requests one connection may have in flight; more are answered
    /// RESOURCE_EXHAUSTED at once instead of queueing.
    pub max_requests_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_partitions: 1024,
            max_record_bytes: 1 << 20,
            max_request_bytes: 64 << 20,
            max_fetch_wait: Duration::from_secs(60),
            min_free_disk_bytes: 64 << 20,
            max_connections: 1024,
            max_requests_per_connection: 256,
        }
    }
}

impl CoreConfig {
    /// A configuration with default limits storing its data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> CoreConfig {
        CoreConfig {
            data_dir: data_dir.into(),
            limits: Limits::default(),
            cache_capacity_bytes: 256 << 20,
            groups: GroupConfig::default(),
            durability: Acks::Durable,
            retention_check_interval: Duration::from_secs(30),
            flush_max_delay: DEFAULT_FLUSH_MAX_DELAY,
        }
    }

    /// Checks every value against its accepted range.
    pub fn validate(&self) -> Result<()> {
        let l = &self.limits;
        if !(1..=MAX_PARTITIONS_LIMIT).contains(&l.max_partitions) {
            return Err(Error::invalid(
                "max_partitions",
                format!("{} is not in 1..={MAX_PARTITIONS_LIMIT}", l.max_partitions),
            ));
        }
        if !(1..=MAX_RECORD_BYTES_LIMIT).contains(&l.max_record_bytes) {
            return Err(Error::invalid(
                "max_record_bytes",
                format!("{} is not in 1..={MAX_RECORD_BYTES_LIMIT}", l.max_record_bytes),
            ));
        }
        if l.max_request_bytes < l.max_record_bytes + (64 << 10) {
            return Err(Error::invalid(
                "max_request_bytes",
                format!(
                    "{} must exceed max_record_bytes ({}) by at least 65536",
                    l.max_request_bytes, l.max_record_bytes
                ),
            ));
        }
        let g = &self.groups;
        if g.min_session_timeout.is_zero()
            || g.min_session_timeout > g.default_session_timeout
            || g.default_session_timeout > g.max_session_timeout
        {
            return Err(Error::invalid(
                "group session timeouts",
                format!(
                    "need 0 < min ({} ms) <= default ({} ms) <= max ({} ms)",
                    g.min_session_timeout.as_millis(),
                    g.default_session_timeout.as_millis(),
                    g.max_session_timeout.as_millis()
                ),
            ));
        }
        if l.max_connections == 0 || l.max_requests_per_connection == 0 {
            return Err(Error::invalid(
                "max_connections / max_requests_per_connection",
                "must be at least 1",
            ));
        }
        if self.flush_max_delay > MAX_FLUSH_MAX_DELAY {
            return Err(Error::invalid(
                "flush_max_delay",
                format!(
                    "{} ms exceeds the maximum of {} ms",
                    self.flush_max_delay.as_millis(),
                    MAX_FLUSH_MAX_DELAY.as_millis()
                ),
            ));
        }
        if self.retention_check_interval.is_zero() {
            return Err(Error::invalid("retention check interval", "must be above 0"));
        }
        if g.heartbeat_interval.is_zero() {
            return Err(Error::invalid("group heartbeat interval", "must be above 0"));
        }
        Ok(())
    }
}
