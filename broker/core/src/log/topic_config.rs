//! Topic configuration: the accepted keys, their parsing and their limits.

use std::collections::BTreeMap;

use super::Acks;
use crate::config::Limits;
use crate::error::{Error, Result};

/// Keys a topic's config may set.
pub(super) const KEYS: &[&str] = &[
    "cleanup.policy",
    "delete.retention.ms",
    "flush.mode",
    "max.message.bytes",
    "retention.bytes",
    "retention.ms",
];

/// Tombstones of a compacted topic are kept a day unless it says otherwise.
pub(super) const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

/// Records are kept for 7 days unless a topic says otherwise.
pub(super) const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// A topic's parsed configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    /// Largest record accepted by this topic (key + value + headers).
    pub max_message_bytes: usize,
    /// The guarantee of a produce that names none; `None` for the broker's
    /// default.
    pub flush_mode: Option<Acks>,
    /// Batches whose newest record is older than this are deleted; `None`
    /// keeps them forever (`retention.ms=-1`).
    pub retention_ms: Option<i64>,
    /// Oldest batches are deleted while a partition holds more than this;
    /// `None` for no limit (`retention.bytes=-1`, the default).
    pub retention_bytes: Option<u64>,
    /// `cleanup.policy` includes `delete`: retention applies (the default).
    pub delete: bool,
    /// `cleanup.policy` includes `compact`: only the newest record of each
    /// key is kept, and every record needs a key.
    pub compact: bool,
    /// How long a compacted topic keeps a tombstone (a record with a null
    /// value), in ms.
    pub delete_retention_ms: i64,
}

impl TopicConfig {
    /// Validates every entry; unknown keys and bad values are rejected with
    /// the accepted keys or range.
    pub fn parse(entries: &BTreeMap<String, String>, limits: &Limits) -> Result<TopicConfig> {
        let mut config = TopicConfig {
            max_message_bytes: limits.max_record_bytes,
            flush_mode: None,
            retention_ms: Some(DEFAULT_RETENTION_MS),
            retention_bytes: None,
            delete: true,
            compact: false,
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
        };
        for (key, value) in entries {
            let field = || format!("config[{key}]");
            match key.as_str() {
                "max.message.bytes" => {
                    config.max_message_bytes = value
                        .parse::<usize>()
                        .ok()
                        .filter(|v| (1..=limits.max_record_bytes).contains(v))
                        .ok_or_else(|| {
                            Error::invalid(
                                field(),
                                format!("`{value}` is not a whole number in 1..={}", limits.max_record_bytes),
                            )
                        })?;
                }
                "flush.mode" => {
                    config.flush_mode = Some(match value.as_str() {
                        "durable" => Acks::Durable,
                        "written" => Acks::Written,
                        _ => {
                            return Err(Error::invalid(
                                field(),
                                format!("`{value}` is not one of: durable, written"),
                            ));
                        }
                    });
                }
                "retention.ms" => config.retention_ms = parse_limit(value, &field())?,
                "retention.bytes" => {
                    config.retention_bytes = parse_limit(value, &field())?.map(|b| b as u64);
                }
                "cleanup.policy" => {
                    (config.delete, config.compact) = match value.as_str() {
                        "delete" => (true, false),
                        "compact" => (false, true),
                        "compact,delete" | "delete,compact" => (true, true),
                        _ => {
                            return Err(Error::invalid(
                                field(),
                                format!("`{value}` is not one of: delete, compact, compact,delete"),
                            ));
                        }
                    };
                }
                "delete.retention.ms" => {
                    config.delete_retention_ms =
                        value.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
                            Error::invalid(field(), format!("`{value}` is not a whole number from 0"))
                        })?;
                }
                _ => {
                    return Err(Error::invalid(
                        field(),
                        format!("unknown key; accepted keys: {}", KEYS.join(", ")),
                    ));
                }
            }
        }
        Ok(config)
    }
}

/// `-1` for no limit, or a whole number from 0.
fn parse_limit(value: &str, field: &str) -> Result<Option<i64>> {
    match value.parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(v) if v >= 0 => Ok(Some(v)),
        _ => Err(Error::invalid(field, format!("`{value}` is not -1 (no limit) or a whole number from 0"))),
    }
}
