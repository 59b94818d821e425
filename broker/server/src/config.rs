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
    /// Where to serve Kafka's wire protocol; `None` (the default) serves
    /// none. [`crate::EmbeddedBroker`] binds it itself (use `127.0.0.1:0`).
    pub kafka_listen: Option<SocketAddr>,
    /// The `host:port` Kafka's Metadata hands out as this broker's; `None`
    /// advertises the Kafka listener's bound address.
    pub kafka_advertised: Option<(String, u16)>,
    /// Kafka's Metadata creates the topics it is asked about (if the
    /// request allows), with [`Config::kafka_default_partitions`].
    pub kafka_auto_create_topics: bool,
    /// Partitions of a topic created by Kafka's Metadata.
    pub kafka_default_partitions: u32,
}

impl Config {
    /// A configuration with default limits storing its data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            core: CoreConfig::new(data_dir),
            slow_request: Duration::from_secs(1),
            metrics_listen: None,
            kafka_listen: None,
            kafka_advertised: None,
            kafka_auto_create_topics: true,
            kafka_default_partitions: 1,
        }
    }

    /// Checks every value against its accepted range.
    pub fn validate(&self) -> Result<()> {
        self.core.validate()?;
        let max = self.core.limits.max_partitions;
        if !(1..=max).contains(&self.kafka_default_partitions) {
            return Err(brooklet_core::Error::invalid(
                "kafka_default_partitions",
                format!("{} is not in 1..={max} (--max-partitions)", self.kafka_default_partitions),
            ));
        }
        if let Some((host, _)) = &self.kafka_advertised
            && (host.is_empty() || host.eq_ignore_ascii_case("localhost"))
        {
            return Err(brooklet_core::Error::invalid(
                "kafka_advertised",
                format!("`{host}` is not an address clients can rely on: advertise an IP such as 127.0.0.1"),
            ));
        }
        Ok(())
    }
}
