//! The consumer's positions: for each partition it reads, where to fetch
//! next, how far records were delivered, and what was committed. Pure
//! bookkeeping shared by `poll` and the group task, behind one lock; no I/O,
//! no clock.
//!
//! Each partition carries a *lease*, a number that changes whenever the
//! partition is (re)assigned. A fetch, or a record buffered by the consumer
//! (fetched, not yet returned), remembers the lease it was read under; once the lease is gone (the
//! partition was revoked, even if it came back since), what it read is
//! dropped rather than delivered.

use std::collections::BTreeMap;

use crate::admin::CommittedOffset;
use crate::consumer::Offset;

/// A topic and partition.
pub(crate) type TopicPartition = (String, u32);

/// Where a partition's next fetch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// Where to start, resolved against the broker on the next poll.
    Pending(Offset),
    /// The next offset to fetch, and whether the last fetch reached the high
    /// watermark (so waiting for new records is the right thing to do).
    At { offset: u64, caught_up: bool },
}

/// One partition being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) position: Position,
    /// The offset after the last record delivered (returned by `poll`, or
    /// yielded by a stream): what a commit stores. Behind `position` while
    /// fetched records wait in the consumer's buffer. `None` until the start
    /// is resolved.
    pub(crate) delivered: Option<u64>,
    /// The offset last committed by this consumer, or read as the group's
    /// committed offset when the partition started.
    pub(crate) committed: Option<u64>,
    /// Whether records were delivered since the last commit: if the
    /// partition is lost now, they will be delivered again elsewhere.
    pub(crate) uncommitted_records: bool,
    pub(crate) lease: u64,
}

/// A partition lost without committing what was delivered from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lost {
    pub(crate) delivered: u64,
    pub(crate) committed: Option<u64>,
}

/// A fetch to run: a resolved partition and its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) topic: String,
    pub(crate) partition: u32,
    pub(crate) offset: u64,
    pub(crate) lease: u64,
}

/// A position to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unresolved {
    pub(crate) topic: String,
    pub(crate) partition: u32,
    pub(crate) start: Offset,
    pub(crate) lease: u64,
}

/// An offset to commit, with the lease it was read under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToCommit {
    pub(crate) offset: CommittedOffset,
    pub(crate) lease: u64,
}

/// Every partition the consumer reads, ordered by topic and partition so
/// fetches, and the records `poll` returns, come in a stable order.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    topics: BTreeMap<String, BTreeMap<u32, Slot>>,
    next_lease: u64,
    /// Partitions revoked or lost whose delivered records were not
    /// committed, until `commit` reports them. Keyed by partition, so it
    /// holds at most one entry per partition.
    lost: BTreeMap<TopicPartition, Lost>,
}

impl Positions {
    fn new_slot(&mut self, position: Position) -> Slot {
        self.next_lease += 1;
        let delivered = match position {
            Position::At { offset, .. } => Some(offset),
            Position::Pending(_) => None,
        };
        Slot { position, delivered, committed: None, uncommitted_records: false, lease: self.next_lease }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.topics.values().all(BTreeMap::is_empty)
    }

    pub(crate) fn get(&self, topic: &str, partition: u32) -> Option<&Slot> {
        self.topics.get(topic)?.get(&partition)
    }

    fn get_mut(&mut self, topic: &str, partition: u32, lease: u64) -> Option<&mut Slot> {
        self.topics.get_mut(topic)?.get_mut(&partition).filter(|slot| slot.lease == lease)
    }

    /// Every partition held, in order.
    pub(crate) fn partitions(&self) -> Vec<TopicPartition> {
        self.topics.iter().flat_map(|(topic, slots)| slots.keys().map(move |&p| (topic.clone(), p))).collect()
    }

    /// Adds `partition` starting at `start`, unless it is already held.
    pub(crate) fn assign(&mut self, topic: &str, partition: u32, start: Offset) {
        if self.get(topic, partition).is_none() {
            let slot = self.new_slot(Position::Pending(start));
            self.topics.entry(topic.to_owned()).or_default().insert(partition, slot);
        }
    }

    /// Moves `partition` to `position`, adding it if it is not held. A seek
    /// is the caller's word on where to read, so it also stands for what
    /// was delivered.
    pub(crate) fn seek(&mut self, topic: &str, partition: u32, position: Position) {
        let delivered = match position {
            Position::At { offset, .. } => Some(offset),
            Position::Pending(_) => None,
        };
        match self.topics.get_mut(topic).and_then(|slots| slots.get_mut(&partition)) {
            Some(slot) => {
                slot.position = position;
                slot.delivered = delivered;
            }
            None => {
                let slot = self.new_slot(position);
                self.topics.entry(topic.to_owned()).or_default().insert(partition, slot);
            }
        }
    }

    pub(crate) fn remove_topic(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// Positions still to resolve.
    pub(crate) fn unresolved(&self) -> Vec<Unresolved> {
        let mut out = Vec::new();
        for (topic, slots) in &self.topics {
            for (&partition, slot) in slots {
                if let Position::Pending(start) = slot.position {
                    out.push(Unresolved { topic: topic.clone(), partition, start, lease: slot.lease });
                }
            }
        }
        out
    }

    /// Sets a resolved start, if the partition is still held under `lease`
    /// and still waiting for one. `committed` says the start is the group's
    /// committed offset.
    pub(crate) fn resolve(&mut self, topic: &str, partition: u32, lease: u64, start: u64, committed: bool) {
        if let Some(slot) = self.get_mut(topic, partition, lease)
            && matches!(slot.position, Position::Pending(_))
        {
            slot.position = Position::At { offset: start, caught_up: false };
            slot.delivered = Some(start);
            if committed {
                slot.committed = Some(start);
            }
        }
    }

    /// One fetch per resolved partition, and whether any is behind.
    pub(crate) fn targets(&self) -> (Vec<Target>, bool) {
        let mut targets = Vec::new();
        let mut behind = false;
        for (topic, slots) in &self.topics {
            for (&partition, slot) in slots {
                if let Position::At { offset, caught_up } = slot.position {
                    behind |= !caught_up;
                    targets.push(Target { topic: topic.clone(), partition, offset, lease: slot.lease });
                }
            }
        }
        (targets, behind)
    }

    /// Moves a partition's position from `from` to `next` after a fetch read
    /// under `lease`. Returns whether the fetch still counts: false if the
    /// partition was revoked (or re-assigned) or moved by a seek since the
    /// fetch began, in which case its records must be dropped. What was
    /// delivered moves only as [`deliver`](Self::deliver) hands records out.
    pub(crate) fn advance(&mut self, target: &Target, next: u64, caught_up: bool) -> bool {
        let Some(slot) = self.get_mut(&target.topic, target.partition, target.lease) else { return false };
        if !matches!(slot.position, Position::At { offset, .. } if offset == target.offset) {
            return false;
        }
        slot.position = Position::At { offset: next, caught_up };
        true
    }

    /// Moves a position that fell below the log start up to it, if nothing
    /// moved it since the fetch that found out.
    pub(crate) fn reset(&mut self, target: &Target, log_start: u64) {
        if let Some(slot) = self.get_mut(&target.topic, target.partition, target.lease)
            && matches!(slot.position, Position::At { offset, .. } if offset == target.offset)
        {
            slot.position = Position::At { offset: log_start, caught_up: false };
            slot.delivered = Some(log_start);
        }
    }

    /// Records that the record at `offset`, read under `lease`, was handed
    /// to the application. Returns false, and records nothing, if the
    /// partition is no longer held under that lease: the record must then
    /// be dropped.
    pub(crate) fn deliver(&mut self, topic: &str, partition: u32, lease: u64, offset: u64) -> bool {
        let Some(slot) = self.get_mut(topic, partition, lease) else { return false };
        if slot.delivered.is_none_or(|d| d <= offset) {
            slot.delivered = Some(offset + 1);
            slot.uncommitted_records = true;
        }
        true
    }

    /// The delivered offset of every resolved partition.
    pub(crate) fn delivered(&self) -> Vec<ToCommit> {
        self.to_commit(|_| true)
    }

    /// The delivered offset of every partition where it differs from the
    /// committed one.
    pub(crate) fn uncommitted(&self) -> Vec<ToCommit> {
        self.to_commit(|slot| slot.delivered != slot.committed)
    }

    fn to_commit(&self, wanted: impl Fn(&Slot) -> bool) -> Vec<ToCommit> {
        let mut out = Vec::new();
        for (topic, slots) in &self.topics {
            for (&partition, slot) in slots {
                if let Some(offset) = slot.delivered
                    && wanted(slot)
                {
                    out.push(ToCommit {
                        offset: CommittedOffset::new(topic.as_str(), partition, offset),
                        lease: slot.lease,
                    });
                }
            }
        }
        out
    }

    /// Notes that `committed` was stored.
    pub(crate) fn committed(&mut self, committed: &[ToCommit]) {
        for c in committed {
            if let Some(slot) = self.get_mut(&c.offset.topic, c.offset.partition, c.lease) {
                slot.committed = Some(c.offset.offset);
                if slot.delivered == Some(c.offset.offset) {
                    slot.uncommitted_records = false;
                }
            }
        }
    }

    /// Starts reading the partitions of `assignment` not held yet, from the
    /// group's committed offsets, and returns them.
    pub(crate) fn grant(&mut self, assignment: &[TopicPartition]) -> Vec<TopicPartition> {
        let mut added = Vec::new();
        for (topic, partition) in assignment {
            if self.get(topic, *partition).is_none() {
                self.assign(topic, *partition, Offset::Committed);
                added.push((topic.clone(), *partition));
            }
        }
        added
    }

    /// Stops reading every partition missing from `assignment` (ordered),
    /// and returns them with their last state.
    pub(crate) fn revoke_except(&mut self, assignment: &[TopicPartition]) -> Vec<(TopicPartition, Slot)> {
        let mut revoked = Vec::new();
        for (topic, slots) in &mut self.topics {
            slots.retain(|&partition, slot| {
                let keep = assignment
                    .binary_search_by(|(t, p)| (t.as_str(), *p).cmp(&(topic.as_str(), partition)))
                    .is_ok();
                if !keep {
                    revoked.push(((topic.clone(), partition), slot.clone()));
                }
                keep
            });
        }
        self.topics.retain(|_, slots| !slots.is_empty());
        revoked
    }

    /// Stops reading every partition, and returns them with their last state.
    pub(crate) fn revoke_all(&mut self) -> Vec<(TopicPartition, Slot)> {
        self.revoke_except(&[])
    }

    /// Notes a partition that left without its delivered records committed.
    pub(crate) fn note_lost(&mut self, partition: TopicPartition, slot: &Slot) {
        if let Some(delivered) = slot.delivered
            && slot.uncommitted_records
        {
            self.lost.insert(partition, Lost { delivered, committed: slot.committed });
        }
    }

    /// Takes the partitions lost since the last call.
    pub(crate) fn take_lost(&mut self) -> BTreeMap<TopicPartition, Lost> {
        std::mem::take(&mut self.lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: u32) -> TopicPartition {
        ("t".to_owned(), p)
    }

    fn target(positions: &Positions, p: u32) -> Target {
        positions.targets().0.into_iter().find(|t| t.partition == p).expect("resolved")
    }

    #[test]
    fn a_fetch_from_before_a_revocation_does_not_count_even_after_a_regrant() {
        let mut positions = Positions::default();
        positions.grant(&[tp(0), tp(1)]);
        let lease = positions.get("t", 0).unwrap().lease;
        positions.resolve("t", 0, lease, 10, true);
        let before = target(&positions, 0);

        let revoked = positions.revoke_except(&[tp(1)]);
        assert_eq!(revoked.len(), 1);
        assert_eq!(revoked[0].0, tp(0));
        assert_eq!(positions.grant(&[tp(0), tp(1)]), [tp(0)]);
        assert!(!positions.advance(&before, 15, true), "the old lease is gone");
        assert!(!positions.deliver("t", 0, lease, 12));
        assert_eq!(positions.get("t", 0).unwrap().position, Position::Pending(Offset::Committed));
    }

    #[test]
    fn delivery_and_commits_are_tracked_apart_from_fetching() {
        let mut positions = Positions::default();
        positions.grant(&[tp(0)]);
        let lease = positions.get("t", 0).unwrap().lease;
        positions.resolve("t", 0, lease, 5, false);
        assert_eq!(positions.uncommitted().len(), 1, "a start not committed yet is worth committing");

        // The stream fetches ahead, then hands out records one at a time.
        let t = target(&positions, 0);
        assert!(positions.advance(&t, 9, true));
        assert_eq!(positions.get("t", 0).unwrap().delivered, Some(5));
        assert!(positions.deliver("t", 0, lease, 5));
        assert!(positions.deliver("t", 0, lease, 6));
        let to_commit = positions.uncommitted();
        assert_eq!(to_commit[0].offset.offset, 7);
        positions.committed(&to_commit);
        assert!(positions.uncommitted().is_empty());
        assert!(!positions.get("t", 0).unwrap().uncommitted_records);

        // Revoked after more deliveries without a commit: reported as lost.
        assert!(positions.deliver("t", 0, lease, 7));
        for (partition, slot) in positions.revoke_all() {
            positions.note_lost(partition, &slot);
        }
        let lost = positions.take_lost();
        assert_eq!(lost[&tp(0)], Lost { delivered: 8, committed: Some(7) });
        assert!(positions.take_lost().is_empty());
        assert!(positions.is_empty());
    }

    #[test]
    fn a_seek_during_a_fetch_wins_over_the_fetch() {
        let mut positions = Positions::default();
        positions.seek("t", 0, Position::At { offset: 3, caught_up: false });
        let t = target(&positions, 0);
        positions.seek("t", 0, Position::At { offset: 40, caught_up: false });
        assert!(!positions.advance(&t, 8, false));
        assert_eq!(positions.get("t", 0).unwrap().delivered, Some(40));
        positions.reset(&t, 0);
        assert_eq!(positions.get("t", 0).unwrap().position, Position::At { offset: 40, caught_up: false });
    }

    #[test]
    fn a_partition_lost_without_new_records_is_not_reported() {
        let mut positions = Positions::default();
        positions.grant(&[tp(0)]);
        let lease = positions.get("t", 0).unwrap().lease;
        positions.resolve("t", 0, lease, 5, true);
        let t = target(&positions, 0);
        assert!(positions.advance(&t, 5, true), "an empty fetch still counts");
        for (partition, slot) in positions.revoke_all() {
            positions.note_lost(partition, &slot);
        }
        assert!(positions.take_lost().is_empty());
    }
}
