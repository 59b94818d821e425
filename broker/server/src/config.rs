//! A broker's configuration: the core's settings and those of the listeners
//! around it. The binary parses flags, environment and file into it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use brooklet_core::{CoreConfig, Result};

/// How a broker runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The core's settings: data directory, limits, cache, groups,
    /// durability, retention and group commit.
    pub core: CoreConfig,
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
        Config { core: CoreConfig::new(data_dir), slow_request: Duration::from_secs(1), metrics_listen: None }
    }

    /// Checks every value against its accepted range.
    pub fn validate(&self) -> Result<()> {
        self.core.validate()
    }
}
