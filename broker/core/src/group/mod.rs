//! Consumer groups: membership and assignment by the broker (`coordinator`,
//! `assignor`), Kafka's classic groups where the members' leader assigns
//! (`classic`), and committed offsets per (group, topic, partition).
//!
//! Both kinds live under one lock, so one rule holds in one place: a group
//! id with live members of one kind refuses members of the other kind;
//! committed offsets alone do not make a group either kind.
//!
//! Membership lives in memory and is rebuilt by heartbeats after a restart;
//! committed offsets are stored and synced before a commit is answered.
//! Commits are validated against the log (the topic exists, the partition is
//! in range, the offset is not past the high watermark) and against the
//! membership (a member commits only what it owns). Offsets are read and
//! written through the group's own handle (`offsets`), never through the log.

mod assignor;
mod classic;
mod coordinator;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use assignor::TopicPartition;
use classic::Classic;
pub use classic::{
    ClassicProtocol, JoinRequest, Joined, JoinedMember, Leaving, MemberAssignment, SyncRequest, Synced,
};
use coordinator::Coordinator;
pub use coordinator::{GroupConfig, GroupInfo, GroupState, Heartbeat, HeartbeatReply, MemberInfo};

use crate::error::{Error, GroupKind, MembershipRefusal, Result};
use crate::log::{Log, PartitionState};
use crate::offsets::Offsets;
pub use brooklet_storage::CommittedOffset;

/// Longest group id, in bytes.
pub const MAX_GROUP_ID_BYTES: usize = 255;
/// Longest commit metadata, in bytes.
pub const MAX_METADATA_BYTES: usize = 4096;
/// Group ids whose kind is remembered once their members left; past this,
/// the first in order is forgotten.
const MAX_REMEMBERED_GROUPS: usize = 10_000;

/// A committing member: its id and epoch.
#[derive(Clone, Copy, Debug)]
pub struct Committer<'a> {
    /// Member id.
    pub member_id: &'a str,
    /// The epoch the member last received.
    pub member_epoch: i32,
}

/// Where `reset_offsets` moves a group's offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetTo {
    /// Each partition's log start.
    Earliest,
    /// Each partition's high watermark.
    Latest,
    /// This offset on every partition.
    Offset(u64),
    /// The first offset at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// One partition's position and lag for a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The committed offset, if any.
    pub committed: Option<u64>,
    /// The partition's high watermark.
    pub high_watermark: u64,
    /// Records between the committed offset (or the log start) and the high
    /// watermark.
    pub lag: u64,
    /// The member that owns the partition, if any.
    pub owner: Option<String>,
}

/// A group as DescribeGroup shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// Membership.
    pub info: GroupInfo,
    /// Positions and lag, by topic and partition.
    pub partitions: Vec<PartitionLag>,
}

/// A group that subscribes to a topic or committed offsets on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicGroup {
    /// Group id.
    pub group: String,
    /// State.
    pub state: GroupState,
    /// Live members.
    pub members: usize,
    /// Lag summed over the topic's partitions.
    pub lag: u64,
}

/// Records between `committed` (or the log start, if it is earlier or
/// absent) and the partition's high watermark.
fn lag(state: &PartitionState, committed: Option<u64>) -> u64 {
    state.high_watermark.saturating_sub(committed.unwrap_or(state.log_start).max(state.log_start))
}

/// Consumer groups over a log.
#[derive(Debug, Clone)]
pub struct Groups {
    log: Arc<Log>,
    offsets: Offsets,
    /// In-memory membership of both kinds. A lock, not an actor: every
    /// operation on it is short and synchronous, and it is never held
    /// across an `.await` (waiting members wait on oneshots).
    members: Arc<Mutex<Membership>>,
}

/// Both kinds of membership, so that one lock decides which kind a group
/// id belongs to.
#[derive(Debug)]
struct Membership {
    broker: Coordinator,
    classic: Classic,
    /// The kind (and a classic group's protocol type) each group id was
    /// last used as, so that a group whose members left is still listed
    /// as the kind it was. In memory only, bounded by
    /// `MAX_REMEMBERED_GROUPS`.
    used_as: BTreeMap<String, (GroupKind, String)>,
}

impl Membership {
    /// The kind of `group`'s live members, if it has any.
    fn live_kind(&self, group: &str) -> Option<GroupKind> {
        if self.broker.is_live(group) {
            Some(GroupKind::Broker)
        } else if self.classic.is_live(group) {
            Some(GroupKind::Classic)
        } else {
            None
        }
    }

    /// Refuses a member of `kind` if `group` is in use by the other kind.
    fn admit(&self, group: &str, kind: GroupKind) -> Result<()> {
        match self.live_kind(group) {
            Some(in_use_by) if in_use_by != kind => {
                Err(Error::GroupKindConflict { group: group.to_owned(), in_use_by })
            }
            _ => Ok(()),
        }
    }

    fn describe(&self, group: &str) -> GroupInfo {
        self.classic.describe(group).unwrap_or_else(|| self.broker.describe(group))
    }

    /// Remembers that `group` is used as `kind`.
    fn used_as(&mut self, group: &str, kind: GroupKind, protocol_type: &str) {
        if self.used_as.get(group).is_some_and(|(k, t)| *k == kind && t == protocol_type) {
            return;
        }
        if self.used_as.len() >= MAX_REMEMBERED_GROUPS && !self.used_as.contains_key(group) {
            self.used_as.pop_first();
        }
        self.used_as.insert(group.to_owned(), (kind, protocol_type.to_owned()));
    }
}

impl Groups {
    /// Groups over `log`.
    pub(crate) fn new(log: Arc<Log>, offsets: Offsets, config: GroupConfig) -> Groups {
        let members = Membership {
            broker: Coordinator::new(config.clone()),
            classic: Classic::new(config),
            used_as: BTreeMap::new(),
        };
        Groups { log, offsets, members: Arc::new(Mutex::new(members)) }
    }

    /// Removes members whose session timed out, every `every`, on `tasks`
    /// until `stop` is cancelled.
    pub(crate) fn spawn_expiry(&self, every: Duration, stop: CancellationToken, tasks: &TaskTracker) {
        let groups = self.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        let log = &groups.log;
                        let mut members = groups.members.lock();
                        members.broker.expire(Instant::now(), |t| log.partition_count(t));
                        members.classic.expire(tokio::time::Instant::now());
                    }
                }
            }
        });
    }

    /// Handles a member's heartbeat.
    pub fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply> {
        validate_group(&hb.group)?;
        let log = &self.log;
        let mut members = self.members.lock();
        if hb.member_epoch == -1 {
            return members.broker.heartbeat(hb, Instant::now(), |t| log.partition_count(t));
        }
        members.admit(&hb.group, GroupKind::Broker)?;
        let group = hb.group.clone();
        let reply = members.broker.heartbeat(hb, Instant::now(), |t| log.partition_count(t))?;
        members.used_as(&group, GroupKind::Broker, "");
        Ok(reply)
    }

    /// Joins a classic group: waits until the group forms its next
    /// generation (or refuses at once), or until `stop`.
    pub async fn join(&self, req: JoinRequest, stop: &CancellationToken) -> Result<Joined> {
        validate_group(&req.group)?;
        let group = req.group.clone();
        let rx = {
            let mut members = self.members.lock();
            members.admit(&group, GroupKind::Classic)?;
            let protocol_type = req.protocol_type.clone();
            let rx = members.classic.join(req, tokio::time::Instant::now())?;
            members.used_as(&group, GroupKind::Classic, &protocol_type);
            rx
        };
        self.wait(&group, rx, stop).await
    }

    /// Syncs with a classic group: waits for the leader's assignment (or
    /// refuses at once), or until `stop`.
    pub async fn sync(&self, req: SyncRequest, stop: &CancellationToken) -> Result<Synced> {
        validate_group(&req.group)?;
        let group = req.group.clone();
        let rx = self.members.lock().classic.sync(req, tokio::time::Instant::now())?;
        self.wait(&group, rx, stop).await
    }

    /// Waits for an answer on `rx`, ending the join or sync phase of
    /// `group` when its time is up.
    async fn wait<T>(
        &self,
        group: &str,
        mut rx: oneshot::Receiver<Result<T>>,
        stop: &CancellationToken,
    ) -> Result<T> {
        loop {
            let wake = self.members.lock().classic.next_wake(group, tokio::time::Instant::now());
            let due = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                answer = &mut rx => {
                    return answer.unwrap_or_else(|_| Err(Error::Membership {
                        refusal: MembershipRefusal::UnknownMember,
                        reason: format!("the member is no longer in group `{group}`; rejoin"),
                    }));
                }
                () = due => self.members.lock().classic.poll(group, tokio::time::Instant::now()),
                () = stop.cancelled() => return Err(Error::ShuttingDown),
            }
        }
    }

    /// A classic member's heartbeat, with a static member's instance id:
    /// `Ok`, or what it must do.
    pub fn classic_heartbeat(
        &self,
        group: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
    ) -> Result<()> {
        validate_group(group)?;
        let now = tokio::time::Instant::now();
        self.members.lock().classic.heartbeat(group, member_id, group_instance_id, generation, now)
    }

    /// Classic members leaving `group`: one result per member.
    pub fn leave(&self, group: &str, members: &[Leaving]) -> Result<Vec<Result<()>>> {
        validate_group(group)?;
        Ok(self.members.lock().classic.leave(group, members, tokio::time::Instant::now()))
    }

    /// A group's membership, without positions (cheaper than `describe`);
    /// an empty group if it has no live members.
    pub fn membership(&self, group: &str) -> Result<GroupInfo> {
        validate_group(group)?;
        Ok(self.members.lock().describe(group))
    }

    /// The kind of `group` and a classic group's protocol type: its live
    /// members', or else the kind it was last used as since the broker
    /// started; `None` if neither is known.
    pub fn kind(&self, group: &str) -> Result<Option<(GroupKind, String)>> {
        validate_group(group)?;
        let members = self.members.lock();
        let live = members.describe(group);
        Ok(match live.kind {
            Some(kind) => Some((kind, live.protocol_type)),
            None => members.used_as.get(group).cloned(),
        })
    }

    /// Stores `offsets` for `group`, all or none; they are on disk when this
    /// returns. With a `committer`, it must be a current member owning every
    /// partition; without, the group must have no live members.
    pub async fn commit(
        &self,
        group: &str,
        committer: Option<Committer<'_>>,
        offsets: &[CommittedOffset],
    ) -> Result<()> {
        validate_group(group)?;
        for (i, o) in offsets.iter().enumerate() {
            self.check_offset(i, o)?;
        }
        {
            let members = self.members.lock();
            if committer.is_some() {
                members.admit(group, GroupKind::Broker)?;
            } else if members.classic.is_live(group) {
                return Err(live_members(
                    group,
                    members.describe(group).members.len(),
                    "committed to from outside",
                ));
            }
            members.broker.check_commit(
                group,
                committer.map(|c| (c.member_id, c.member_epoch)),
                offsets.iter().map(|o| (o.topic.as_str(), o.partition)),
            )?;
        }
        self.offsets.commit(group, offsets).await
    }

    /// Stores a classic group's offsets, checked as Kafka checks them: a
    /// member of the current generation (a static member's instance id
    /// naming it, if given; not while the group completes a
    /// rebalance), or, with a negative generation, a consumer outside any
    /// group while the group has no live members. Each offset is validated
    /// on its own: the valid ones are stored (on disk when this returns),
    /// and the result says, per offset, why one was not.
    pub async fn commit_classic(
        &self,
        group: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
        offsets: &[CommittedOffset],
    ) -> Result<Vec<Result<()>>> {
        validate_group(group)?;
        {
            let mut members = self.members.lock();
            members.admit(group, GroupKind::Classic)?;
            let now = tokio::time::Instant::now();
            members.classic.check_commit(group, member_id, group_instance_id, generation, now)?;
        }
        let results: Vec<Result<()>> =
            offsets.iter().enumerate().map(|(i, o)| self.check_offset(i, o)).collect();
        let valid: Vec<CommittedOffset> =
            offsets.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(o, _)| o.clone()).collect();
        if !valid.is_empty() {
            self.offsets.commit(group, &valid).await?;
        }
        Ok(results)
    }

    /// Checks one offset to commit against the log and the limits.
    fn check_offset(&self, i: usize, o: &CommittedOffset) -> Result<()> {
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
        Ok(())
    }

    /// A group's committed offsets, for one topic or every topic.
    pub fn committed(&self, group: &str, topic: Option<&str>) -> Result<Vec<CommittedOffset>> {
        validate_group(group)?;
        self.offsets.committed(group, topic)
    }

    /// Every group with live members or committed offsets: its state and
    /// member count.
    pub fn list(&self) -> Result<Vec<(String, GroupState, usize)>> {
        let mut groups: BTreeMap<String, (GroupState, usize)> = {
            let members = self.members.lock();
            let mut live = members.broker.list();
            live.extend(members.classic.list());
            live.into_iter().map(|(name, state, members)| (name, (state, members))).collect()
        };
        for name in self.offsets.groups(None)? {
            groups.entry(name).or_insert((GroupState::Empty, 0));
        }
        Ok(groups.into_iter().map(|(name, (state, members))| (name, state, members)).collect())
    }

    /// Every group with a member subscribed to `topic` or with committed
    /// offsets on it, by id: its state, member count and lag on the topic.
    /// Only those groups are read, whatever the number of groups.
    pub fn on_topic(&self, topic: &str) -> Result<Vec<TopicGroup>> {
        let (_, states) = self.log.describe_topic(topic)?;
        let (live, mut groups) =
            {
                let members = self.members.lock();
                let mut live = members.broker.list();
                live.extend(members.classic.list());
                let live: BTreeMap<String, (GroupState, usize)> =
                    live.into_iter().map(|(name, state, count)| (name, (state, count))).collect();
                let subscribed: BTreeSet<String> =
                    live.keys()
                        .filter(|name| {
                            members.describe(name).members.iter().any(|m| {
                                m.topics.contains(topic) || m.assignment.iter().any(|(t, _)| t == topic)
                            })
                        })
                        .cloned()
                        .collect();
                (live, subscribed)
            };
        groups.extend(self.offsets.groups(Some(topic))?);
        groups
            .into_iter()
            .map(|group| {
                let committed: BTreeMap<u32, u64> = self
                    .offsets
                    .committed(&group, Some(topic))?
                    .into_iter()
                    .map(|c| (c.partition, c.offset))
                    .collect();
                let lag = states.iter().map(|s| lag(s, committed.get(&s.partition).copied())).sum();
                let (state, members) = live.get(&group).copied().unwrap_or((GroupState::Empty, 0));
                Ok(TopicGroup { group, state, members, lag })
            })
            .collect()
    }

    /// A group's members and, per partition it subscribes to or committed
    /// for, its committed offset, the high watermark and the lag.
    pub fn describe(&self, group: &str) -> Result<GroupDescription> {
        validate_group(group)?;
        let info = self.members.lock().describe(group);
        let committed = self.offsets.committed(group, None)?;
        if info.members.is_empty() && committed.is_empty() {
            return Err(Error::GroupNotFound { group: group.to_owned() });
        }
        let mut committed_at: BTreeMap<TopicPartition, u64> =
            committed.into_iter().map(|c| ((c.topic, c.partition), c.offset)).collect();
        let mut owners: BTreeMap<TopicPartition, String> = BTreeMap::new();
        let mut topics: BTreeSet<String> = committed_at.keys().map(|(t, _)| t.clone()).collect();
        for m in &info.members {
            topics.extend(m.topics.iter().cloned());
            for tp in &m.assignment {
                owners.insert(tp.clone(), m.member_id.clone());
            }
        }
        let mut partitions = Vec::new();
        for topic in topics {
            // A topic deleted since the group used it has nothing to show.
            let Ok((_, states)) = self.log.describe_topic(&topic) else { continue };
            for s in states {
                let tp = (topic.clone(), s.partition);
                let committed = committed_at.remove(&tp);
                partitions.push(PartitionLag {
                    owner: owners.remove(&tp),
                    topic: topic.clone(),
                    partition: s.partition,
                    committed,
                    high_watermark: s.high_watermark,
                    lag: lag(&s, committed),
                });
            }
        }
        Ok(GroupDescription { info, partitions })
    }

    /// Deletes a group's committed offsets. Refused while it has members.
    pub async fn delete(&self, group: &str) -> Result<()> {
        validate_group(group)?;
        self.require_empty(group, "deleted")?;
        if !self.offsets.delete(group).await? {
            return Err(Error::GroupNotFound { group: group.to_owned() });
        }
        self.forget_if_unused(group)?;
        Ok(())
    }

    /// Deletes `group`'s committed offsets of `partitions`, with one result
    /// per partition: refused for a topic the group's live members subscribe
    /// to, and for a partition the log does not have unless an offset is
    /// committed for it. The others are deleted together (a partition
    /// without an offset has nothing to delete); on disk when this returns.
    pub async fn delete_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Result<()>>> {
        validate_group(group)?;
        let committed: BTreeSet<TopicPartition> =
            self.offsets.committed(group, None)?.into_iter().map(|c| (c.topic, c.partition)).collect();
        let subscribed: BTreeSet<String> = {
            let info = self.members.lock().describe(group);
            if info.members.is_empty() && committed.is_empty() {
                return Err(Error::GroupNotFound { group: group.to_owned() });
            }
            let assigned = info.members.iter().flat_map(|m| m.assignment.iter().map(|(t, _)| t.clone()));
            info.members.iter().flat_map(|m| m.topics.iter().cloned()).chain(assigned).collect()
        };
        let results: Vec<Result<()>> = partitions
            .iter()
            .enumerate()
            .map(|(i, (topic, partition))| {
                if subscribed.contains(topic) {
                    return Err(Error::FailedPrecondition {
                        reason: format!(
                            "group `{group}` has live members subscribed to topic `{topic}`; \
                             its offsets can be deleted once they unsubscribe or leave"
                        ),
                    });
                }
                if committed.contains(&(topic.clone(), *partition)) {
                    return Ok(());
                }
                self.log.partition_state(topic, *partition).map(|_| ()).map_err(|e| match e {
                    Error::InvalidArgument { reason, .. } => {
                        Error::invalid(format!("partitions[{i}].partition"), reason)
                    }
                    other => other,
                })
            })
            .collect();
        let deleted: Vec<TopicPartition> = partitions
            .iter()
            .zip(&results)
            .filter(|(tp, r)| r.is_ok() && committed.contains(*tp))
            .map(|(tp, _)| tp.clone())
            .collect();
        if !deleted.is_empty() {
            self.offsets.delete_some(group, &deleted).await?;
            self.forget_if_unused(group)?;
        }
        Ok(results)
    }

    /// Forgets the kind `group` was used as, unless it has live members or
    /// committed offsets.
    fn forget_if_unused(&self, group: &str) -> Result<()> {
        let has_offsets = !self.offsets.committed(group, None)?.is_empty();
        let mut members = self.members.lock();
        if !has_offsets && members.live_kind(group).is_none() {
            members.used_as.remove(group);
        }
        Ok(())
    }

    /// Moves a group's committed offsets for every partition of `topic`.
    /// Refused while the group has members.
    pub async fn reset_offsets(&self, group: &str, topic: &str, to: ResetTo) -> Result<Vec<CommittedOffset>> {
        validate_group(group)?;
        self.require_empty(group, "reset")?;
        let (_, states) = self.log.describe_topic(topic)?;
        let by_time = match to {
            ResetTo::Timestamp(ts) => self.log.offsets_for_time(topic, &[], ts)?,
            _ => Vec::new(),
        };
        let mut offsets = Vec::with_capacity(states.len());
        for s in &states {
            let offset = match to {
                ResetTo::Earliest => s.log_start,
                ResetTo::Latest => s.high_watermark,
                ResetTo::Offset(o) if o < s.log_start || o > s.high_watermark => {
                    return Err(Error::OffsetOutOfRange {
                        topic: topic.to_owned(),
                        partition: s.partition,
                        offset: o,
                        log_start: s.log_start,
                        high_watermark: s.high_watermark,
                    });
                }
                ResetTo::Offset(o) => o,
                ResetTo::Timestamp(_) => by_time[s.partition as usize].offset,
            };
            offsets.push(CommittedOffset {
                topic: topic.to_owned(),
                partition: s.partition,
                offset,
                metadata: None,
            });
        }
        self.commit(group, None, &offsets).await?;
        Ok(offsets)
    }

    fn require_empty(&self, group: &str, what: &str) -> Result<()> {
        let info = self.members.lock().describe(group);
        if info.members.is_empty() {
            return Ok(());
        }
        Err(live_members(group, info.members.len(), what))
    }
}

fn live_members(group: &str, count: usize, what: &str) -> Error {
    Error::FailedPrecondition {
        reason: format!(
            "group `{group}` has {}; it can be {what} only when they have left",
            count_members(count)
        ),
    }
}

/// "1 live member", "2 live members".
pub(crate) fn count_members(count: usize) -> String {
    format!("{count} live member{}", if count == 1 { "" } else { "s" })
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
