//! Topic configuration: the accepted keys, their parsing and their limits.

use std::collections::BTreeMap;

use super::Acks;
use crate::config::Limits;
use crate::error::{Error, Result};

/// Keys a topic's config may set.
pub const KEYS: &[&str] = &["flush.mode", "max.message.bytes"];

/// A topic's parsed configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    /// Largest record accepted by this topic (key + value + headers).
    pub max_message_bytes: usize,
    /// The guarantee of a produce that names none; `None` for the broker's
    /// default.
    pub flush_mode: Option<Acks>,
}

impl TopicConfig {
    /// Validates every entry; unknown keys and bad values are rejected with
    /// the accepted keys or range.
    pub fn parse(entries: &BTreeMap<String, String>, limits: &Limits) -> Result<TopicConfig> {
        let mut config = TopicConfig { max_message_bytes: limits.max_record_bytes, flush_mode: None };
        for (key, value) in entries {
            match key.as_str() {
                "max.message.bytes" => {
                    config.max_message_bytes = value
                        .parse::<usize>()
                        .ok()
                        .filter(|v| (1..=limits.max_record_bytes).contains(v))
                        .ok_or_else(|| {
                            Error::invalid(
                                "config[max.message.bytes]",
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
                                "config[flush.mode]",
                                format!("`{value}` is not one of: durable, written"),
                            ));
                        }
                    });
                }
                _ => {
                    return Err(Error::invalid(
                        format!("config[{key}]"),
                        format!("unknown key; accepted keys: {}", KEYS.join(", ")),
                    ));
                }
            }
        }
        Ok(config)
    }
}
