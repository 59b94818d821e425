//! Committed offsets, per (group, topic, partition): stored, then synced by
//! group commit before a commit is answered. Groups own this handle; nothing
//! else in the core writes offsets, and it never reaches through the log.

use brooklet_storage::{CommittedOffset, GroupCommit, OffsetStore};

use crate::error::Result;

/// The committed-offset store and the group commit that makes its writes
/// durable. Cloning shares both.
#[derive(Clone, Debug)]
pub(crate) struct Offsets {
    store: OffsetStore,
    commit: GroupCommit,
}

impl Offsets {
    pub(crate) fn new(store: OffsetStore, commit: GroupCommit) -> Offsets {
        Offsets { store, commit }
    }

    /// Stores `offsets` for `group`, all of them or none; on disk when this
    /// returns.
    pub(crate) async fn commit(&self, group: &str, offsets: &[CommittedOffset]) -> Result<()> {
        self.store.commit_offsets(group, offsets)?;
        Ok(self.commit.sync().await?)
    }

    /// A group's committed offsets, for one topic or all.
    pub(crate) fn committed(&self, group: &str, topic: Option<&str>) -> Result<Vec<CommittedOffset>> {
        Ok(self.store.committed_offsets(group, topic)?)
    }

    /// Every group with at least one committed offset, on `topic` or on any.
    pub(crate) fn groups(&self, topic: Option<&str>) -> Result<Vec<String>> {
        Ok(self.store.groups_with_offsets(topic)?)
    }

    /// Deletes `group`'s committed offsets of these partitions, on disk when
    /// this returns.
    pub(crate) async fn delete_some(&self, group: &str, partitions: &[(String, u32)]) -> Result<()> {
        if self.store.delete_offsets(group, partitions)? > 0 {
            self.commit.sync().await?;
        }
        Ok(())
    }

    /// Deletes every committed offset of `group`, on disk when this returns;
    /// false if it had none.
    pub(crate) async fn delete(&self, group: &str) -> Result<bool> {
        if !self.store.delete_group(group)? {
            return Ok(false);
        }
        self.commit.sync().await?;
        Ok(true)
    }
}
