//! The group coordinator: membership, target assignment and cooperative
//! handover, in memory.
//!
//! Members heartbeat with the partitions they still read. Each partition a
//! member may be reading is in its `held` set: it enters when the broker
//! grants it and leaves only when the member reports it no longer reads it,
//! leaves, or times out. A partition is granted to its target owner only
//! when no other member holds it, so two live members never own one
//! partition at once.
//!
//! Pure state: time comes in as an argument and partition counts through a
//! lookup, so the rules are testable without a clock or a log. Membership is
//! not persisted: after a restart, members' heartbeats rebuild it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::assignor::{self, Assignment, TopicPartition};
use crate::error::{Error, GroupKind, Result};

/// Coordinator settings.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// Heartbeat interval for members with nothing pending.
    pub heartbeat_interval: Duration,
    /// Shortest session timeout a member may ask for.
    pub min_session_timeout: Duration,
    /// Longest session timeout a member may ask for.
    pub max_session_timeout: Duration,
    /// Session timeout of a member that asks for none.
    pub default_session_timeout: Duration,
    /// How long a classic group that was empty waits for more members
    /// before forming its first generation (extended by each new member,
    /// up to the rebalance timeout), so that consumers starting together
    /// land in one generation. Zero forms it at once.
    pub initial_rebalance_delay: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            heartbeat_interval: Duration::from_secs(3),
            min_session_timeout: Duration::from_secs(1),
            max_session_timeout: Duration::from_secs(300),
            default_session_timeout: Duration::from_secs(10),
            initial_rebalance_delay: Duration::from_millis(300),
        }
    }
}

/// How soon a member with partitions in motion should heartbeat again.
const RECONCILE_INTERVAL: Duration = Duration::from_millis(50);

/// A heartbeat, validated by the caller only as far as types go.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat {
    /// Group id.
    pub group: String,
    /// Member id; empty to join.
    pub member_id: String,
    /// 0 to join, the last epoch to stay, -1 to leave.
    pub member_epoch: i32,
    /// Subscription; empty means unchanged.
    pub topics: Vec<String>,
    /// Partitions the member still reads.
    pub owned: BTreeSet<TopicPartition>,
    /// Client id, for DescribeGroup.
    pub client_id: String,
    /// The member's address.
    pub host: String,
    /// Requested session timeout; `None` for the default.
    pub session_timeout: Option<Duration>,
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The member's id.
    pub member_id: String,
    /// The member's epoch (-1 after leaving).
    pub member_epoch: i32,
    /// When to heartbeat next.
    pub heartbeat_interval: Duration,
    /// The partitions the member owns now.
    pub assignment: BTreeSet<TopicPartition>,
}

/// A group's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// No live members.
    Empty,
    /// Every member owns exactly its target.
    Stable,
    /// Partitions are moving.
    Reconciling,
    /// A classic group gathers its members for the next generation.
    PreparingRebalance,
    /// A classic group waits for its leader's assignment.
    CompletingRebalance,
}

impl GroupState {
    /// The state as the CLI and the console name it: `empty`, `stable`,
    /// `reconciling`, `preparing-rebalance`, `completing-rebalance`.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "empty",
            GroupState::Stable => "stable",
            GroupState::Reconciling => "reconciling",
            GroupState::PreparingRebalance => "preparing-rebalance",
            GroupState::CompletingRebalance => "completing-rebalance",
        }
    }
}

/// A member as DescribeGroup shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Member id.
    pub member_id: String,
    /// A classic static member's instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Address.
    pub host: String,
    /// Epoch.
    pub member_epoch: i32,
    /// Subscription.
    pub topics: BTreeSet<String>,
    /// What it owns.
    pub assignment: BTreeSet<TopicPartition>,
    /// A classic member's metadata for the group's protocol, as it sent it
    /// (empty for other members, or before the group is stable).
    pub metadata: Bytes,
    /// A classic member's assignment, as its leader sent it (empty for
    /// other members, or before the group is stable).
    pub assignment_data: Bytes,
}

/// A group's membership as DescribeGroup shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// State.
    pub state: GroupState,
    /// Group epoch: bumped by every membership or subscription change.
    pub epoch: i32,
    /// Members by id.
    pub members: Vec<MemberInfo>,
    /// The kind of its live members; `None` without any.
    pub kind: Option<GroupKind>,
    /// A classic group's protocol type (empty otherwise).
    pub protocol_type: String,
    /// A classic group's chosen protocol (empty otherwise, or while it
    /// gathers its members).
    pub protocol: String,
}

#[derive(Debug, Default)]
struct Group {
    epoch: i32,
    members: BTreeMap<String, Member>,
    target: Assignment,
    /// Partition counts the target was computed with.
    counts: BTreeMap<String, u32>,
    /// Membership or subscriptions changed since the target was computed.
    dirty: bool,
}

#[derive(Debug)]
struct Member {
    client_id: String,
    host: String,
    epoch: i32,
    /// The epoch before the last change, still accepted on commits so a
    /// commit racing a heartbeat answer is not refused.
    previous_epoch: i32,
    topics: BTreeSet<String>,
    session_timeout: Duration,
    deadline: Instant,
    /// Partitions the member may be reading.
    held: BTreeSet<TopicPartition>,
    /// What the last answer told it to own.
    assigned: BTreeSet<TopicPartition>,
}

/// Every group's membership.
#[derive(Debug, Default)]
pub(super) struct Coordinator {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
}

impl Coordinator {
    /// A coordinator with `config`.
    pub(super) fn new(config: GroupConfig) -> Coordinator {
        Coordinator { config, groups: BTreeMap::new() }
    }

    /// Handles one heartbeat at `now`. `partitions` gives a topic's
    /// partition count (`None` for a topic that does not exist).
    pub(super) fn heartbeat(
        &mut self,
        hb: Heartbeat,
        now: Instant,
        partitions: impl Fn(&str) -> Option<u32>,
    ) -> Result<HeartbeatReply> {
        let cfg = &self.config;
        let session_timeout = match hb.session_timeout {
            None => cfg.default_session_timeout,
            Some(t) if t < cfg.min_session_timeout || t > cfg.max_session_timeout => {
                return Err(Error::invalid(
                    "session_timeout_ms",
                    format!(
                        "{} is not in {}..={}",
                        t.as_millis(),
                        cfg.min_session_timeout.as_millis(),
                        cfg.max_session_timeout.as_millis()
                    ),
                ));
            }
            Some(t) => t,
        };
        if hb.member_epoch < -1 {
            return Err(Error::invalid(
                "member_epoch",
                format!("{} is not -1, 0 or a received epoch", hb.member_epoch),
            ));
        }
        let known = self.groups.get(&hb.group).is_some_and(|g| g.members.contains_key(&hb.member_id));
        if hb.member_epoch != -1 && !known && hb.topics.is_empty() {
            return Err(Error::invalid("topics", "a joining member must subscribe to at least one topic"));
        }
        if hb.member_epoch == -1 && !known {
            // Leaving a group one is not in changes nothing.
            return Ok(HeartbeatReply {
                member_id: hb.member_id,
                member_epoch: -1,
                heartbeat_interval: Duration::ZERO,
                assignment: BTreeSet::new(),
            });
        }
        let group = self.groups.entry(hb.group.clone()).or_default();

        if hb.member_epoch == -1 {
            if group.members.remove(&hb.member_id).is_some() {
                group.epoch += 1;
                group.dirty = true;
                tracing::info!(group = %hb.group, member = %hb.member_id, "member left");
            }
            group.reassign(&partitions);
            if group.members.is_empty() {
                // The group lives on only in its committed offsets.
                self.groups.remove(&hb.group);
            }
            return Ok(HeartbeatReply {
                member_id: hb.member_id,
                member_epoch: -1,
                heartbeat_interval: Duration::ZERO,
                assignment: BTreeSet::new(),
            });
        }

        let joining = !known;
        let member_id = if hb.member_id.is_empty() { uuid::Uuid::new_v4().to_string() } else { hb.member_id };
        let topics: BTreeSet<String> = hb.topics.into_iter().collect();
        let mut changed = false;
        if joining {
            // A member the group does not know (new, or back after a broker
            // restart or its own timeout) holds nothing until granted.
            tracing::info!(group = %hb.group, member = %member_id, "member joined");
            group.members.insert(
                member_id.clone(),
                Member {
                    client_id: hb.client_id,
                    host: hb.host,
                    epoch: 0,
                    previous_epoch: 0,
                    topics: topics.clone(),
                    session_timeout,
                    deadline: now + session_timeout,
                    held: BTreeSet::new(),
                    assigned: BTreeSet::new(),
                },
            );
            changed = true;
        }
        let member = group.members.get_mut(&member_id).expect("member was just ensured");
        member.deadline = now + session_timeout;
        member.session_timeout = session_timeout;
        if !topics.is_empty() && topics != member.topics {
            member.topics = topics;
            changed = true;
        }
        // What the member no longer reads is free for others.
        member.held.retain(|tp| hb.owned.contains(tp));
        if changed {
            group.epoch += 1;
            group.dirty = true;
        }
        group.reassign(&partitions);

        let target = group.target.get(&member_id).cloned().unwrap_or_default();
        let assignment: BTreeSet<TopicPartition> = {
            let held_by_others: BTreeSet<&TopicPartition> =
                group.members.iter().filter(|(id, _)| **id != member_id).flat_map(|(_, m)| &m.held).collect();
            target.iter().filter(|tp| !held_by_others.contains(tp)).cloned().collect()
        };
        let member = group.members.get_mut(&member_id).expect("member exists");
        member.held.extend(assignment.iter().cloned());
        if assignment != member.assigned || member.epoch == 0 {
            member.previous_epoch = member.epoch;
            member.epoch = group.epoch.max(member.epoch + 1);
            member.assigned = assignment.clone();
        }
        let settled = member.held == target && assignment == target;
        let heartbeat_interval = if settled {
            self.config.heartbeat_interval.min(session_timeout / 3)
        } else {
            RECONCILE_INTERVAL
        };
        Ok(HeartbeatReply { member_id, member_epoch: member.epoch, heartbeat_interval, assignment })
    }

    /// Removes members whose session ended before `now`; their partitions
    /// become free at once. Returns how many were removed.
    pub(super) fn expire(&mut self, now: Instant, partitions: impl Fn(&str) -> Option<u32>) -> usize {
        let mut removed = 0;
        for (name, group) in &mut self.groups {
            let before = group.members.len();
            group.members.retain(|id, m| {
                let alive = m.deadline > now;
                if !alive {
                    tracing::info!(group = %name, member = %id, "member session timed out");
                }
                alive
            });
            if group.members.len() != before {
                removed += before - group.members.len();
                group.epoch += 1;
                group.dirty = true;
                group.reassign(&partitions);
            }
        }
        // Groups without members live on only in their committed offsets.
        self.groups.retain(|_, g| !g.members.is_empty());
        removed
    }

    /// Checks that `member_id` at `member_epoch` may commit offsets for
    /// `partitions` of `group`; with no member, that the group is empty.
    pub(super) fn check_commit<'a>(
        &self,
        group: &str,
        member: Option<(&str, i32)>,
        partitions: impl IntoIterator<Item = (&'a str, u32)>,
    ) -> Result<()> {
        let live = self.groups.get(group).filter(|g| !g.members.is_empty());
        let Some((member_id, epoch)) = member else {
            return match live {
                None => Ok(()),
                Some(g) => Err(Error::FailedPrecondition {
                    reason: format!(
                        "group `{group}` has {}: only its members may commit (pass member_id and member_epoch)",
                        super::count_members(g.members.len())
                    ),
                }),
            };
        };
        let m = live.and_then(|g| g.members.get(member_id)).ok_or_else(|| Error::FailedPrecondition {
            reason: format!(
                "member `{member_id}` is not in group `{group}`: it left or its session timed out; rejoin"
            ),
        })?;
        if epoch != m.epoch && epoch != m.previous_epoch {
            return Err(Error::FailedPrecondition {
                reason: format!(
                    "member `{member_id}` of group `{group}` is fenced: epoch {epoch} is stale, the current epoch is {}",
                    m.epoch
                ),
            });
        }
        for (topic, partition) in partitions {
            if !m.held.contains(&(topic.to_owned(), partition)) {
                return Err(Error::FailedPrecondition {
                    reason: format!(
                        "member `{member_id}` of group `{group}` does not own {topic}/{partition}"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Whether `group` has live members.
    pub(super) fn is_live(&self, group: &str) -> bool {
        self.groups.get(group).is_some_and(|g| !g.members.is_empty())
    }

    /// Groups with live members, with their state and member count.
    pub(super) fn list(&self) -> Vec<(String, GroupState, usize)> {
        self.groups.iter().map(|(name, g)| (name.clone(), g.state(), g.members.len())).collect()
    }

    /// A group's membership; an empty group if it has no live members.
    pub(super) fn describe(&self, group: &str) -> GroupInfo {
        let Some(g) = self.groups.get(group) else {
            return GroupInfo {
                state: GroupState::Empty,
                epoch: 0,
                members: Vec::new(),
                kind: None,
                protocol_type: String::new(),
                protocol: String::new(),
            };
        };
        let members = g
            .members
            .iter()
            .map(|(id, m)| MemberInfo {
                member_id: id.clone(),
                group_instance_id: None,
                client_id: m.client_id.clone(),
                host: m.host.clone(),
                member_epoch: m.epoch,
                topics: m.topics.clone(),
                assignment: m.assigned.clone(),
                metadata: Bytes::new(),
                assignment_data: Bytes::new(),
            })
            .collect();
        GroupInfo {
            state: g.state(),
            epoch: g.epoch,
            members,
            kind: Some(GroupKind::Broker),
            protocol_type: String::new(),
            protocol: String::new(),
        }
    }
}

impl Group {
    /// Recomputes the target assignment if membership or subscriptions
    /// changed (`dirty`) or a subscribed topic's partition count did.
    fn reassign(&mut self, partitions: &impl Fn(&str) -> Option<u32>) {
        let topics: BTreeSet<&String> = self.members.values().flat_map(|m| &m.topics).collect();
        let counts: BTreeMap<String, u32> =
            topics.into_iter().filter_map(|t| partitions(t).map(|n| (t.clone(), n))).collect();
        if !self.dirty && counts == self.counts {
            return;
        }
        let subscriptions = self.members.iter().map(|(id, m)| (id.clone(), m.topics.clone())).collect();
        self.target = assignor::assign(&subscriptions, &counts, &self.target);
        self.counts = counts;
        self.dirty = false;
    }

    fn state(&self) -> GroupState {
        if self.members.is_empty() {
            return GroupState::Empty;
        }
        let settled = self.members.iter().all(|(id, m)| {
            let target = self.target.get(id);
            target.is_some_and(|t| *t == m.held && *t == m.assigned)
        });
        if settled { GroupState::Stable } else { GroupState::Reconciling }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(topic: &str) -> Option<u32> {
        (topic == "t").then_some(6)
    }

    struct Sim {
        c: Coordinator,
        now: Instant,
    }

    impl Sim {
        fn new() -> Sim {
            Sim { c: Coordinator::new(GroupConfig::default()), now: Instant::now() }
        }

        fn join(&mut self) -> (String, i32, BTreeSet<TopicPartition>) {
            let hb = Heartbeat { group: "g".into(), topics: vec!["t".into()], ..Heartbeat::default() };
            let r = self.c.heartbeat(hb, self.now, counts).unwrap();
            (r.member_id, r.member_epoch, r.assignment)
        }

        fn beat(&mut self, id: &str, epoch: i32, owned: &BTreeSet<TopicPartition>) -> HeartbeatReply {
            let hb = Heartbeat {
                group: "g".into(),
                member_id: id.into(),
                member_epoch: epoch,
                owned: owned.clone(),
                ..Heartbeat::default()
            };
            self.c.heartbeat(hb, self.now, counts).unwrap()
        }
    }

    /// Runs every member's heartbeat, releasing what it is told to, until
    /// the group is stable; checks that no partition is ever owned twice.
    fn settle(sim: &mut Sim, members: &mut BTreeMap<String, (i32, BTreeSet<TopicPartition>)>) {
        for _ in 0..10 {
            let ids: Vec<String> = members.keys().cloned().collect();
            for id in ids {
                let (epoch, owned) = members[&id].clone();
                let r = sim.beat(&id, epoch, &owned);
                members.insert(id, (r.member_epoch, r.assignment));
                let mut seen = BTreeSet::new();
                for (_, (_, owned)) in members.iter() {
                    for tp in owned {
                        assert!(seen.insert(tp.clone()), "{tp:?} owned twice");
                    }
                }
            }
            if sim.c.describe("g").state == GroupState::Stable {
                return;
            }
        }
        panic!("group did not settle");
    }

    #[test]
    fn handover_is_cooperative_and_balanced() {
        let mut sim = Sim::new();
        let (a, a_epoch, a_owned) = sim.join();
        assert_eq!(a_owned.len(), 6, "a lone member gets everything at once");
        let (b, b_epoch, b_owned) = sim.join();
        assert!(b_owned.is_empty(), "nothing is free until a releases");
        assert_eq!(sim.c.describe("g").state, GroupState::Reconciling);

        let r = sim.beat(&a, a_epoch, &a_owned);
        assert_eq!(r.assignment.len(), 3, "a is told to release three");
        assert!(r.heartbeat_interval <= RECONCILE_INTERVAL);
        let r_b = sim.beat(&b, b_epoch, &b_owned);
        assert!(r_b.assignment.is_empty(), "a still reads them until it says otherwise");

        let r = sim.beat(&a, r.member_epoch, &r.assignment);
        assert_eq!(r.assignment.len(), 3);
        let r_b = sim.beat(&b, r_b.member_epoch, &r_b.assignment);
        assert_eq!(r_b.assignment.len(), 3, "released partitions move");
        assert!(r.assignment.is_disjoint(&r_b.assignment));
        let r_b = sim.beat(&b, r_b.member_epoch, &r_b.assignment);
        assert_eq!(sim.c.describe("g").state, GroupState::Stable);
        assert_eq!(r_b.heartbeat_interval, Duration::from_secs(3));
    }

    #[test]
    fn leaving_and_timing_out_free_partitions() {
        let mut sim = Sim::new();
        let mut members = BTreeMap::new();
        for _ in 0..3 {
            let (id, epoch, owned) = sim.join();
            members.insert(id, (epoch, owned));
            settle(&mut sim, &mut members);
        }
        assert!(members.values().all(|(_, o)| o.len() == 2));

        let leaver = members.keys().next().unwrap().clone();
        let (epoch, owned) = members.remove(&leaver).unwrap();
        assert_eq!(sim.beat(&leaver, -1, &owned).member_epoch, -1);
        let _ = epoch;
        settle(&mut sim, &mut members);
        assert!(members.values().all(|(_, o)| o.len() == 3));

        // One member stops heartbeating; after its session it is removed.
        let silent = members.keys().next().unwrap().clone();
        let (silent_epoch, silent_owned) = members.remove(&silent).unwrap();
        sim.now += Duration::from_secs(5);
        settle(&mut sim, &mut members);
        assert!(members.values().all(|(_, o)| o.len() == 3), "before the timeout nothing moves");
        sim.now += Duration::from_secs(6);
        assert_eq!(sim.c.expire(sim.now, counts), 1);
        settle(&mut sim, &mut members);
        assert!(members.values().all(|(_, o)| o.len() == 6));

        // The timed-out member is fenced: its commits are refused.
        let tp = silent_owned.iter().next().unwrap().clone();
        let err =
            sim.c.check_commit("g", Some((&silent, silent_epoch)), [(tp.0.as_str(), tp.1)]).unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
    }

    #[test]
    fn commits_are_checked_against_membership() {
        let mut sim = Sim::new();
        assert!(sim.c.check_commit("g", None, [("t", 0)]).is_ok(), "an empty group takes outside commits");
        let (a, epoch, owned) = sim.join();
        assert!(sim.c.check_commit("g", Some((&a, epoch)), [("t", 0)]).is_ok());
        let err = sim.c.check_commit("g", None, [("t", 0)]).unwrap_err();
        assert!(err.to_string().contains("has 1 live member:"), "{err}");
        let err = sim.c.check_commit("g", Some((&a, epoch + 7)), [("t", 0)]).unwrap_err();
        assert!(err.to_string().contains("stale"), "{err}");
        let (b, b_epoch, _) = sim.join();
        let r = sim.beat(&a, epoch, &owned);
        let released: BTreeSet<_> = r.assignment.clone();
        sim.beat(&a, r.member_epoch, &released);
        let r_b = sim.beat(&b, b_epoch, &BTreeSet::new());
        let theirs = r_b.assignment.iter().next().unwrap();
        let err =
            sim.c.check_commit("g", Some((&a, r.member_epoch)), [(theirs.0.as_str(), theirs.1)]).unwrap_err();
        assert!(err.to_string().contains("does not own"), "{err}");
    }

    #[test]
    fn bad_heartbeats_are_rejected() {
        let mut sim = Sim::new();
        let hb = Heartbeat { group: "g".into(), ..Heartbeat::default() };
        assert!(sim.c.heartbeat(hb, sim.now, counts).unwrap_err().to_string().contains("topics"));
        let hb = Heartbeat {
            group: "g".into(),
            topics: vec!["t".into()],
            session_timeout: Some(Duration::from_millis(10)),
            ..Heartbeat::default()
        };
        assert!(sim.c.heartbeat(hb, sim.now, counts).unwrap_err().to_string().contains("session_timeout_ms"));
    }
}
