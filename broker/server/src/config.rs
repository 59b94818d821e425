//! A broker's configuration: the core's settings and those of the listeners
//! around it. The binary parses flags, environment and file into it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use brooklet_core::{Acks, CoreConfig, GroupConfig, Limits, Result};

/// How a broker runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the data lives.
    pub data_dir: PathBuf,
    /// Request limits.
    pub limits: Limits,
    /// The storage engine's page cache, in bytes.
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
    /// Requests slower than this are logged as warnings (default 1 s;
    /// long-poll fetches excepted).
    pub slow_request: Duration,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` over HTTP; `None`
    /// serves none. [`Config::new`] leaves it `None`, so that brokers in
    /// parallel tests never compete for a port; `brooklet serve` defaults to
    /// 127.0.0.1:7071.
    pub metrics_listen: Option<SocketAddr>,
}

impl Config {
    /// A configuration with default limits storing its data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        let core = CoreConfig::new(data_dir);
        Config {
            data_dir: core.data_dir,
            limits: core.limits,
            cache_capacity_bytes: core.cache_capacity_bytes,
            groups: core.groups,
            durability: core.durability,
            retention_check_interval: core.retention_check_interval,
            flush_max_delay: core.flush_max_delay,
            slow_request: Duration::from_secs(1),
            metrics_listen: None,
        }
    }

    /// The core's part of it.
    pub fn core(&self) -> CoreConfig {
        CoreConfig {
            data_dir: self.data_dir.clone(),
            limits: self.limits.clone(),
            cache_capacity_bytes: self.cache_capacity_bytes,
            groups: self.groups.clone(),
            durability: self.durability,
            retention_check_interval: self.retention_check_interval,
            flush_max_delay: self.flush_max_delay,
        }
    }

    /// Checks every value against its accepted range.
    pub fn validate(&self) -> Result<()> {
        self.core().validate()
    }
}
