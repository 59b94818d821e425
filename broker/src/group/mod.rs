//! Consumer groups: committed offsets per (group, topic, partition).
//!
//! Commits are validated against the log (the topic exists, the partition is
//! in range, the offset is not past the high watermark) and stored all or
//! none. Never touches sled directly: see `storage`.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::log::Log;
pub use crate::storage::CommittedOffset;

/// Longest group id, in bytes.
pub const MAX_GROUP_ID_BYTES: usize = 255;
/// Longest commit metadata, in bytes.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Committed offsets of every group.
#[derive(Debug, Clone)]
pub struct Groups {
    log: Arc<Log>,
}

impl Groups {
    /// Groups over `log`.
    pub fn new(log: Arc<Log>) -> Groups {
        Groups { log }
    }

    /// Stores `offsets` for `group`, all or none; they are on disk when this
    /// returns.
    pub async fn commit(&self, group: &str, offsets: &[CommittedOffset]) -> Result<()> {
        validate_group(group)?;
        for (i, o) in offsets.iter().enumerate() {
            let state = self.log.partition_state(&o.topic, o.partition).map_err(|e| match e {
                Error::InvalidArgument { reason, .. } => {
                    Error::invalid(format!("offsets[{i}].partition"), reason)
                }
                other => other,
            })?;
            if o.offset > state.high_watermark {
                return Err(Error::OffsetOutOfRange {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    offset: o.offset,
                    log_start: state.log_start,
                    high_watermark: state.high_watermark,
                });
            }
            if let Some(m) = o.metadata.as_ref().filter(|m| m.len() > MAX_METADATA_BYTES) {
                return Err(Error::invalid(
                    format!("offsets[{i}].metadata"),
                    format!("{} bytes exceed the maximum of {MAX_METADATA_BYTES}", m.len()),
                ));
            }
        }
        self.log.storage().commit_offsets(group, offsets)?;
        self.log.sync().await
    }

    /// A group's committed offsets, for one topic or every topic.
    pub fn committed(&self, group: &str, topic: Option<&str>) -> Result<Vec<CommittedOffset>> {
        validate_group(group)?;
        Ok(self.log.storage().committed_offsets(group, topic)?)
    }
}

fn validate_group(group: &str) -> Result<()> {
    if group.is_empty() || group.len() > MAX_GROUP_ID_BYTES {
        return Err(Error::invalid(
            "group",
            format!("group ids are 1 to {MAX_GROUP_ID_BYTES} bytes, got {}", group.len()),
        ));
    }
    Ok(())
}
