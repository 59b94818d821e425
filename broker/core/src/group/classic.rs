//! Classic groups (Kafka's group protocol): members join, the broker gathers
//! them into a generation, picks a protocol and a leader, and relays the
//! leader's assignment at sync. The broker never reads what members send
//! each other: metadata and assignments are opaque bytes, next to the
//! topics and partitions the adapter decoded from them for describe.
//!
//! States: Empty → PreparingRebalance (members (re)join) →
//! CompletingRebalance (waiting for the leader's assignment) → Stable; a
//! member joining, leaving or timing out starts the next rebalance.
//!
//! Static members (Kafka's group instance ids) are known by their instance
//! id: a new instance joining with an empty member id takes the old one's
//! place under a new member id, and the old id is fenced. In a stable group
//! with an unchanged subscription it gets its old assignment back without a
//! rebalance, unless it leads the group (then the group rebalances). A
//! static member leaves by LeaveGroup or its session timeout, never by
//! closing its connection.
//!
//! Pure state under the groups' lock: time comes in as an argument, and a
//! waiting member holds the receiving end of a oneshot whose sender sits
//! in its member entry, so nothing here awaits.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::assignor::TopicPartition;
use super::coordinator::{GroupConfig, GroupInfo, GroupState, MemberInfo};
use crate::error::{Error, GroupKind, MembershipRefusal, Result};

/// Most members a classic group may have, ids handed out to join (which
/// live until their session timeout) included: a client that joins again
/// and again cannot make the broker hold ids without bound.
pub(super) const MAX_MEMBERS: usize = 1000;

/// One protocol a joining member supports, in its order of preference.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassicProtocol {
    /// Protocol name (for consumers, an assignor such as `range`).
    pub name: String,
    /// The member's metadata for it, relayed to the leader unchanged.
    pub metadata: Bytes,
    /// Topics the metadata subscribes to, if the adapter could read them.
    pub topics: Vec<String>,
}

/// A JoinGroup request.
#[derive(Clone, Debug, Default)]
pub struct JoinRequest {
    /// Group id.
    pub group: String,
    /// Member id; empty for a new member.
    pub member_id: String,
    /// A static member's instance id.
    pub group_instance_id: Option<String>,
    /// Client id, for describe and new member ids.
    pub client_id: String,
    /// The member's address.
    pub host: String,
    /// Without a heartbeat for this long, the member is removed.
    pub session_timeout: Duration,
    /// How long a rebalance waits for the member to rejoin.
    pub rebalance_timeout: Duration,
    /// Protocol type (`consumer` for consumers).
    pub protocol_type: String,
    /// Supported protocols, preferred first.
    pub protocols: Vec<ClassicProtocol>,
    /// A new member first gets an id to join with (Kafka's JoinGroup v4+).
    pub require_known_member_id: bool,
}

/// A member as the leader sees it at join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// A static member's instance id.
    pub group_instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// The answer to a join: the new generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// Generation id.
    pub generation: i32,
    /// The group's protocol type.
    pub protocol_type: String,
    /// The chosen protocol.
    pub protocol: String,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// Every member with its metadata, for the leader; empty for others.
    pub members: Vec<JoinedMember>,
}

/// One member's assignment, as the leader sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberAssignment {
    /// Member id.
    pub member_id: String,
    /// The assignment, relayed unchanged.
    pub assignment: Bytes,
    /// The partitions it assigns, if the adapter could read them.
    pub partitions: BTreeSet<TopicPartition>,
}

/// A SyncGroup request.
#[derive(Clone, Debug, Default)]
pub struct SyncRequest {
    /// Group id.
    pub group: String,
    /// Member id.
    pub member_id: String,
    /// A static member's instance id.
    pub group_instance_id: Option<String>,
    /// The generation the member joined.
    pub generation: i32,
    /// Protocol type, if the request names it.
    pub protocol_type: Option<String>,
    /// Protocol, if the request names it.
    pub protocol: Option<String>,
    /// Every member's assignment, from the leader; empty from others.
    pub assignments: Vec<MemberAssignment>,
}

/// A member leaving: by member id, or a static member by instance id (the
/// member id may then be empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leaving {
    /// Member id.
    pub member_id: String,
    /// A static member's instance id.
    pub group_instance_id: Option<String>,
}

impl Leaving {
    /// A member leaving by its member id.
    pub fn member(member_id: impl Into<String>) -> Leaving {
        Leaving { member_id: member_id.into(), group_instance_id: None }
    }
}

/// The answer to a sync: this member's assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    /// The group's protocol type.
    pub protocol_type: String,
    /// The chosen protocol.
    pub protocol: String,
    /// This member's assignment from the leader.
    pub assignment: Bytes,
}

type Reply<T> = oneshot::Sender<Result<T>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

#[derive(Debug)]
struct Member {
    /// Order of joining: the first member becomes the leader.
    seq: u64,
    /// A static member's instance id.
    instance: Option<String>,
    client_id: String,
    host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<ClassicProtocol>,
    deadline: Instant,
    join: Option<Reply<Joined>>,
    sync: Option<Reply<Synced>>,
    assignment: Bytes,
    assigned: BTreeSet<TopicPartition>,
}

impl Member {
    fn awaiting_join(&self) -> bool {
        self.join.as_ref().is_some_and(|j| !j.is_closed())
    }

    fn awaiting_sync(&self) -> bool {
        self.sync.as_ref().is_some_and(|s| !s.is_closed())
    }

    fn metadata(&self, protocol: &str) -> Option<&ClassicProtocol> {
        self.protocols.iter().find(|p| p.name == protocol)
    }

    /// Whether `protocols` subscribe as this member's do: the same
    /// protocols, each with the same topics where they could be read, or
    /// else the same metadata. (A restarted consumer's metadata may differ
    /// in what it owned before, which its assignment does not depend on.)
    fn subscribes_as(&self, protocols: &[ClassicProtocol]) -> bool {
        self.protocols.len() == protocols.len()
            && self.protocols.iter().zip(protocols).all(|(a, b)| {
                a.name == b.name
                    && if a.topics.is_empty() && b.topics.is_empty() {
                        a.metadata == b.metadata
                    } else {
                        a.topics == b.topics
                    }
            })
    }
}

#[derive(Debug)]
struct Group {
    state: State,
    generation: i32,
    protocol_type: String,
    protocol: String,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Static members' ids by instance id; every id here is in `members`.
    instances: BTreeMap<String, String>,
    /// Ids handed out to new members, until they join with them.
    pending: BTreeMap<String, Instant>,
    /// A rebalance gathers members no earlier than this (the initial delay
    /// of a group that was empty) ...
    join_not_before: Instant,
    /// ... and no later than this.
    join_deadline: Instant,
    /// When a rebalance from empty began: the initial delay extends no
    /// further than its rebalance timeout from here.
    initial_since: Option<Instant>,
    /// The leader's assignment is awaited until then.
    sync_deadline: Instant,
}

impl Group {
    fn new(now: Instant) -> Group {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: None,
            members: BTreeMap::new(),
            instances: BTreeMap::new(),
            pending: BTreeMap::new(),
            join_not_before: now,
            join_deadline: now,
            initial_since: None,
            sync_deadline: now,
        }
    }

    /// Removes a member, and its instance id if it is static.
    fn forget(&mut self, id: &str) -> Option<Member> {
        let m = self.members.remove(id)?;
        if let Some(instance) = &m.instance
            && self.instances.get(instance).is_some_and(|current| current == id)
        {
            self.instances.remove(instance);
        }
        Some(m)
    }

    /// Refuses `member_id` naming `instance` if that instance id is a
    /// static member's under another member id.
    fn check_instance(&self, name: &str, member_id: &str, instance: Option<&str>) -> Result<()> {
        match instance.and_then(|i| self.instances.get(i).map(|current| (i, current))) {
            Some((i, current)) if current != member_id => Err(fenced(name, i, member_id)),
            _ => Ok(()),
        }
    }

    fn rebalance_timeout(&self) -> Duration {
        self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default()
    }

    /// Protocols every member supports.
    fn candidates(&self) -> Vec<&str> {
        let mut members = self.members.values();
        let Some(first) = members.next() else { return Vec::new() };
        let mut names: Vec<&str> = first.protocols.iter().map(|p| p.name.as_str()).collect();
        for m in members {
            names.retain(|n| m.protocols.iter().any(|p| p.name == *n));
        }
        names
    }

    /// Whether a member with these protocols could join.
    fn supports(&self, protocol_type: &str, protocols: &[ClassicProtocol]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        protocol_type == self.protocol_type
            && self.candidates().iter().any(|c| protocols.iter().any(|p| p.name == *c))
    }

    /// Kafka's choice: each member votes for the first candidate it lists;
    /// most votes wins, ties going to the leader's preference.
    fn select_protocol(&self, leader: &str) -> String {
        let candidates = self.candidates();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(p) = m.protocols.iter().find(|p| candidates.contains(&p.name.as_str())) {
                *votes.entry(p.name.as_str()).or_default() += 1;
            }
        }
        let preference: Vec<&str> = self.members.get(leader).map_or_else(
            || candidates.clone(),
            |l| l.protocols.iter().map(|p| p.name.as_str()).filter(|n| candidates.contains(n)).collect(),
        );
        let most = votes.values().copied().max().unwrap_or(0);
        preference
            .into_iter()
            .find(|n| votes.get(n).copied().unwrap_or(0) == most)
            .unwrap_or_default()
            .to_owned()
    }

    fn current(&self, member_id: &str, with_members: bool) -> Joined {
        let members = if with_members {
            self.members
                .iter()
                .map(|(id, m)| JoinedMember {
                    member_id: id.clone(),
                    group_instance_id: m.instance.clone(),
                    metadata: m.metadata(&self.protocol).map(|p| p.metadata.clone()).unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        };
        Joined {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members,
        }
    }

    fn prepare_rebalance(&mut self, name: &str, now: Instant, initial_delay: Duration) {
        if self.state == State::CompletingRebalance {
            // Members waiting for the leader's assignment must rejoin.
            for m in self.members.values_mut() {
                if let Some(sync) = m.sync.take() {
                    let _ = sync.send(Err(refused(
                        MembershipRefusal::RebalanceInProgress,
                        format!("group `{name}` is rebalancing: rejoin"),
                    )));
                }
            }
        }
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            m.assigned.clear();
        }
        let initial = self.state == State::Empty;
        self.state = State::PreparingRebalance;
        self.join_deadline = now + self.rebalance_timeout();
        if initial {
            self.initial_since = Some(now);
            self.join_not_before = (now + initial_delay).min(self.join_deadline);
        } else {
            self.initial_since = None;
            self.join_not_before = now;
        }
        tracing::info!(group = %name, generation = self.generation, "classic group rebalancing");
    }

    /// Ends the join phase if everyone is in, or its time is up.
    fn try_complete_join(&mut self, name: &str, now: Instant) {
        if self.state != State::PreparingRebalance || now < self.join_not_before {
            return;
        }
        let all_joined = self.members.values().all(Member::awaiting_join) && self.pending.is_empty();
        if !all_joined && now < self.join_deadline {
            return;
        }
        let gone: Vec<String> =
            self.members.iter().filter(|(_, m)| !m.awaiting_join()).map(|(id, _)| id.clone()).collect();
        for id in gone {
            tracing::info!(group = %name, member = %id, "member did not rejoin in time; removed");
            self.forget(&id);
        }
        self.generation += 1;
        self.initial_since = None;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader = None;
            self.protocol.clear();
            self.protocol_type.clear();
            return;
        }
        let leader = match &self.leader {
            Some(l) if self.members.contains_key(l) => l.clone(),
            _ => {
                let first = self.members.iter().min_by_key(|(_, m)| m.seq).map(|(id, _)| id.clone());
                first.unwrap_or_default()
            }
        };
        self.protocol = self.select_protocol(&leader);
        self.leader = Some(leader.clone());
        self.state = State::CompletingRebalance;
        self.sync_deadline = now + self.rebalance_timeout();
        tracing::info!(
            group = %name, generation = self.generation, protocol = %self.protocol, leader = %leader,
            members = self.members.len(), "classic group formed a generation"
        );
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let answer = self.current(&id, id == leader);
            let m = self.members.get_mut(&id).expect("member listed above");
            m.deadline = now + m.session_timeout;
            if let Some(join) = m.join.take() {
                let _ = join.send(Ok(answer));
            }
        }
    }

    /// A static member's new instance takes the place of `old_id` (its
    /// assignment and its turn to lead) under a new member id; the old id
    /// is fenced. In a stable group it gets the current generation at once
    /// if it subscribes as before and does not lead; otherwise the group
    /// rebalances (in CompletingRebalance too: the leader assigns to the
    /// old id).
    fn replace_static(
        &mut self,
        name: &str,
        old_id: &str,
        req: JoinRequest,
        tx: Reply<Joined>,
        now: Instant,
        initial_delay: Duration,
    ) {
        let instance = req.group_instance_id.unwrap_or_default();
        let mut m = self.forget(old_id).expect("every id in `instances` is a member");
        if let Some(join) = m.join.take() {
            let _ = join.send(Err(fenced(name, &instance, old_id)));
        }
        if let Some(sync) = m.sync.take() {
            let _ = sync.send(Err(fenced(name, &instance, old_id)));
        }
        let new_id = format!("{instance}-{}", uuid::Uuid::new_v4());
        let unchanged = m.subscribes_as(&req.protocols);
        m.deadline = now + req.session_timeout;
        m.session_timeout = req.session_timeout;
        m.rebalance_timeout = req.rebalance_timeout;
        m.client_id = req.client_id;
        m.host = req.host;
        m.protocols = req.protocols;
        m.join = Some(tx);
        self.members.insert(new_id.clone(), m);
        self.instances.insert(instance.clone(), new_id.clone());
        let leads = self.leader.as_deref() == Some(old_id);
        if leads {
            self.leader = Some(new_id.clone());
        }
        tracing::info!(
            group = %name, instance = %instance, old = %old_id, member = %new_id,
            "static member rejoined under a new id; the old one is fenced"
        );
        match self.state {
            State::Stable if unchanged && !leads => {
                let answer = self.current(&new_id, false);
                let m = self.members.get_mut(&new_id).expect("inserted above");
                if let Some(join) = m.join.take() {
                    let _ = join.send(Ok(answer));
                }
            }
            State::Stable | State::CompletingRebalance => self.prepare_rebalance(name, now, initial_delay),
            State::PreparingRebalance | State::Empty => {}
        }
        self.try_complete_join(name, now);
    }

    fn remove_member(&mut self, name: &str, id: &str, now: Instant, initial_delay: Duration) -> bool {
        let Some(m) = self.forget(id) else { return false };
        if let Some(join) = m.join {
            let _ = join.send(Err(unknown_member(name, id)));
        }
        if let Some(sync) = m.sync {
            let _ = sync.send(Err(unknown_member(name, id)));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        match self.state {
            State::Stable | State::CompletingRebalance => self.prepare_rebalance(name, now, initial_delay),
            State::PreparingRebalance | State::Empty => {}
        }
        if self.state == State::PreparingRebalance && self.members.is_empty() {
            // Nobody is left to wait for.
            self.join_not_before = now;
            self.join_deadline = now;
        }
        self.try_complete_join(name, now);
        true
    }

    fn expire(&mut self, name: &str, now: Instant, delay: Duration) -> usize {
        let mut removed = 0;
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.deadline <= now && !m.awaiting_join() && !m.awaiting_sync())
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %name, member = %id, "classic member session timed out");
            self.remove_member(name, &id, now, delay);
            removed += 1;
        }
        if self.state == State::CompletingRebalance && now >= self.sync_deadline {
            // The leader never sent the assignment: whoever did not sync is
            // gone, the rest rejoin.
            let gone: Vec<String> =
                self.members.iter().filter(|(_, m)| !m.awaiting_sync()).map(|(id, _)| id.clone()).collect();
            for id in gone {
                tracing::info!(group = %name, member = %id, "member did not sync in time; removed");
                self.remove_member(name, &id, now, delay);
                removed += 1;
            }
            if self.state == State::CompletingRebalance {
                self.prepare_rebalance(name, now, delay);
            }
        }
        self.try_complete_join(name, now);
        removed
    }

    fn state(&self) -> GroupState {
        match self.state {
            State::Empty => GroupState::Empty,
            State::PreparingRebalance => GroupState::PreparingRebalance,
            State::CompletingRebalance => GroupState::CompletingRebalance,
            State::Stable => GroupState::Stable,
        }
    }
}

fn refused(refusal: MembershipRefusal, reason: String) -> Error {
    Error::Membership { refusal, reason }
}

fn fenced(group: &str, instance: &str, member: &str) -> Error {
    refused(
        MembershipRefusal::FencedInstance,
        format!(
            "instance id `{instance}` of group `{group}` belongs to a newer member than `{member}`: \
             another consumer with the same group.instance.id replaced this one"
        ),
    )
}

/// Longest group instance id, in bytes, as Kafka's clients allow.
const MAX_INSTANCE_ID_BYTES: usize = 249;

fn validate_instance_id(instance: &str) -> Result<()> {
    if instance.is_empty() || instance.len() > MAX_INSTANCE_ID_BYTES {
        return Err(Error::invalid(
            "group_instance_id",
            format!("instance ids are 1 to {MAX_INSTANCE_ID_BYTES} bytes, got {}", instance.len()),
        ));
    }
    if let Some(c) = instance.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(Error::invalid(
            "group_instance_id",
            format!("`{c}` is not allowed: instance ids use ASCII letters, digits, `.`, `_` and `-`"),
        ));
    }
    Ok(())
}

fn unknown_member(group: &str, member: &str) -> Error {
    refused(
        MembershipRefusal::UnknownMember,
        format!("member `{member}` is not in group `{group}`: it left or its session timed out; rejoin"),
    )
}

/// Every classic group's membership.
#[derive(Debug, Default)]
pub(super) struct Classic {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    seq: u64,
}

impl Classic {
    pub(super) fn new(config: GroupConfig) -> Classic {
        Classic { config, groups: BTreeMap::new(), seq: 0 }
    }

    /// Whether `group` has live members.
    pub(super) fn is_live(&self, group: &str) -> bool {
        self.groups.get(group).is_some_and(|g| !g.members.is_empty())
    }

    /// When a member waiting in `group` should look again: the initial
    /// delay's end, the join deadline, or the sync deadline.
    pub(super) fn next_wake(&self, group: &str, now: Instant) -> Option<Instant> {
        let g = self.groups.get(group)?;
        match g.state {
            State::PreparingRebalance if now < g.join_not_before => Some(g.join_not_before),
            State::PreparingRebalance => Some(g.join_deadline),
            State::CompletingRebalance => Some(g.sync_deadline),
            State::Empty | State::Stable => None,
        }
    }

    /// Handles a join: the answer arrives on the returned receiver, at once
    /// or when the rebalance completes.
    pub(super) fn join(
        &mut self,
        req: JoinRequest,
        now: Instant,
    ) -> Result<oneshot::Receiver<Result<Joined>>> {
        let cfg = &self.config;
        if req.session_timeout < cfg.min_session_timeout || req.session_timeout > cfg.max_session_timeout {
            return Err(refused(
                MembershipRefusal::InvalidSessionTimeout,
                format!(
                    "session timeout {} ms is not in {}..={} ms",
                    req.session_timeout.as_millis(),
                    cfg.min_session_timeout.as_millis(),
                    cfg.max_session_timeout.as_millis()
                ),
            ));
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(refused(
                MembershipRefusal::InconsistentProtocol,
                "a joining member names a protocol type and at least one protocol".into(),
            ));
        }
        if let Some(instance) = &req.group_instance_id {
            validate_instance_id(instance)?;
        }
        let initial_delay = cfg.initial_rebalance_delay;
        let name = req.group.clone();
        let group = self.groups.entry(name.clone()).or_insert_with(|| Group::new(now));
        if !group.supports(&req.protocol_type, &req.protocols) {
            let reason = if req.protocol_type != group.protocol_type {
                format!(
                    "group `{name}` uses protocol type `{}`, not `{}`",
                    group.protocol_type, req.protocol_type
                )
            } else {
                format!(
                    "none of the protocols {:?} is supported by every member of group `{name}` ({:?})",
                    req.protocols.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
                    group.candidates()
                )
            };
            drop_if_unused(&mut self.groups, &name);
            return Err(refused(MembershipRefusal::InconsistentProtocol, reason));
        }
        let (tx, rx) = oneshot::channel();
        if let Some(instance) = &req.group_instance_id
            && let Some(current) = group.instances.get(instance).cloned()
        {
            if req.member_id.is_empty() {
                group.replace_static(&name, &current, req, tx, now, initial_delay);
                return Ok(rx);
            }
            if req.member_id != current {
                return Err(fenced(&name, instance, &req.member_id));
            }
        }
        if req.member_id.is_empty() && group.members.len() + group.pending.len() >= MAX_MEMBERS {
            let reason = format!(
                "group `{name}` has {} members and ids handed out to join, the most a group may have",
                MAX_MEMBERS
            );
            drop_if_unused(&mut self.groups, &name);
            return Err(refused(MembershipRefusal::GroupMaxSize, reason));
        }
        let member_id = req.member_id.clone();
        if member_id.is_empty() || group.pending.contains_key(&member_id) {
            let id = if member_id.is_empty() {
                // As Kafka: a static member's id starts with its instance id.
                let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
                format!("{prefix}-{}", uuid::Uuid::new_v4())
            } else {
                member_id
            };
            // A static member is known by its instance id: it needs no
            // round trip to learn its member id.
            if req.member_id.is_empty() && req.require_known_member_id && req.group_instance_id.is_none() {
                group.pending.insert(id.clone(), now + req.session_timeout);
                return Err(refused(
                    MembershipRefusal::MemberIdRequired { member_id: id },
                    format!("a new member of group `{name}` joins again with the member id given"),
                ));
            }
            group.pending.remove(&id);
            self.seq += 1;
            tracing::info!(group = %name, member = %id, instance = ?req.group_instance_id, "classic member joined");
            if let Some(instance) = &req.group_instance_id {
                group.instances.insert(instance.clone(), id.clone());
            }
            group.members.insert(
                id,
                Member {
                    seq: self.seq,
                    instance: req.group_instance_id,
                    client_id: req.client_id,
                    host: req.host,
                    session_timeout: req.session_timeout,
                    rebalance_timeout: req.rebalance_timeout,
                    protocols: req.protocols,
                    deadline: now + req.session_timeout,
                    join: Some(tx),
                    sync: None,
                    assignment: Bytes::new(),
                    assigned: BTreeSet::new(),
                },
            );
            if group.members.len() == 1 {
                group.protocol_type = req.protocol_type;
            }
            match group.state {
                State::Empty | State::Stable | State::CompletingRebalance => {
                    group.prepare_rebalance(&name, now, initial_delay)
                }
                State::PreparingRebalance => {
                    group.join_deadline = group.join_deadline.max(now + group.rebalance_timeout());
                    if let Some(since) = group.initial_since {
                        // Consumers starting together land in one generation.
                        let limit = since + group.rebalance_timeout();
                        group.join_not_before = (now + initial_delay).min(limit).max(group.join_not_before);
                    }
                }
            }
            group.try_complete_join(&name, now);
            return Ok(rx);
        }
        let Some(m) = group.members.get_mut(&member_id) else {
            drop_if_unused(&mut self.groups, &name);
            return Err(unknown_member(&name, &member_id));
        };
        let unchanged = m.protocols == req.protocols;
        m.deadline = now + req.session_timeout;
        m.session_timeout = req.session_timeout;
        m.rebalance_timeout = req.rebalance_timeout;
        m.client_id = req.client_id;
        m.host = req.host;
        m.protocols = req.protocols;
        if let Some(old) = m.join.replace(tx) {
            let _ = old.send(Err(refused(
                MembershipRefusal::RebalanceInProgress,
                "a newer join of the same member replaced this one".into(),
            )));
        }
        let is_leader = group.leader.as_deref() == Some(member_id.as_str());
        match group.state {
            State::PreparingRebalance => {}
            State::CompletingRebalance | State::Stable
                if unchanged && !(is_leader && group.state == State::Stable) =>
            {
                // Same metadata as in this generation: answer with it.
                let answer = group.current(&member_id, is_leader);
                let m = group.members.get_mut(&member_id).expect("member found above");
                if let Some(join) = m.join.take() {
                    let _ = join.send(Ok(answer));
                }
            }
            State::CompletingRebalance | State::Stable | State::Empty => {
                group.prepare_rebalance(&name, now, initial_delay)
            }
        }
        group.try_complete_join(&name, now);
        Ok(rx)
    }

    /// Handles a sync: the member's assignment arrives on the returned
    /// receiver, at once or when the leader's sync does.
    pub(super) fn sync(
        &mut self,
        req: SyncRequest,
        now: Instant,
    ) -> Result<oneshot::Receiver<Result<Synced>>> {
        let name = req.group.as_str();
        let g = self.groups.get_mut(name).ok_or_else(|| unknown_member(name, &req.member_id))?;
        g.check_instance(name, &req.member_id, req.group_instance_id.as_deref())?;
        if !g.members.contains_key(&req.member_id) {
            return Err(unknown_member(name, &req.member_id));
        }
        if req.generation != g.generation {
            return Err(illegal_generation(name, req.generation, g.generation));
        }
        if req.protocol_type.as_ref().is_some_and(|t| *t != g.protocol_type)
            || req.protocol.as_ref().is_some_and(|p| *p != g.protocol)
        {
            return Err(refused(
                MembershipRefusal::InconsistentProtocol,
                format!(
                    "group `{name}` uses protocol type `{}` and protocol `{}`",
                    g.protocol_type, g.protocol
                ),
            ));
        }
        let (tx, rx) = oneshot::channel();
        match g.state {
            State::Empty => return Err(unknown_member(name, &req.member_id)),
            State::PreparingRebalance => {
                return Err(refused(
                    MembershipRefusal::RebalanceInProgress,
                    format!("group `{name}` is rebalancing: rejoin"),
                ));
            }
            State::Stable => {
                let m = &g.members[&req.member_id];
                let _ = tx.send(Ok(Synced {
                    protocol_type: g.protocol_type.clone(),
                    protocol: g.protocol.clone(),
                    assignment: m.assignment.clone(),
                }));
            }
            State::CompletingRebalance => {
                let m = g.members.get_mut(&req.member_id).expect("checked above");
                m.deadline = now + m.session_timeout;
                m.sync = Some(tx);
                if g.leader.as_deref() == Some(req.member_id.as_str()) {
                    let mut given: BTreeMap<String, MemberAssignment> =
                        req.assignments.into_iter().map(|a| (a.member_id.clone(), a)).collect();
                    for (id, m) in &mut g.members {
                        let a = given.remove(id).unwrap_or_default();
                        m.assignment = a.assignment;
                        m.assigned = a.partitions;
                        if let Some(sync) = m.sync.take() {
                            let _ = sync.send(Ok(Synced {
                                protocol_type: g.protocol_type.clone(),
                                protocol: g.protocol.clone(),
                                assignment: m.assignment.clone(),
                            }));
                        }
                    }
                    g.state = State::Stable;
                    tracing::info!(group = %name, generation = g.generation, "classic group stable");
                }
            }
        }
        Ok(rx)
    }

    /// A member's heartbeat: fine, or an error telling it what to do.
    pub(super) fn heartbeat(
        &mut self,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<()> {
        let g = self.groups.get_mut(group).ok_or_else(|| unknown_member(group, member_id))?;
        g.check_instance(group, member_id, instance)?;
        let m = g.members.get_mut(member_id).ok_or_else(|| unknown_member(group, member_id))?;
        if generation != g.generation {
            return Err(illegal_generation(group, generation, g.generation));
        }
        m.deadline = now + m.session_timeout;
        match g.state {
            State::Empty => Err(unknown_member(group, member_id)),
            State::PreparingRebalance => Err(refused(
                MembershipRefusal::RebalanceInProgress,
                format!("group `{group}` is rebalancing: rejoin"),
            )),
            State::CompletingRebalance | State::Stable => Ok(()),
        }
    }

    /// Removes members that leave; one result per member. A static member
    /// leaves by its instance id, with its member id or an empty one.
    pub(super) fn leave(&mut self, group: &str, members: &[Leaving], now: Instant) -> Vec<Result<()>> {
        let delay = self.config.initial_rebalance_delay;
        let out = members
            .iter()
            .map(|leaving| {
                let mut id = leaving.member_id.as_str();
                let Some(g) = self.groups.get_mut(group) else { return Err(unknown_member(group, id)) };
                if let Some(instance) = &leaving.group_instance_id {
                    let Some(current) = g.instances.get(instance) else {
                        return Err(refused(
                            MembershipRefusal::UnknownMember,
                            format!("no member of group `{group}` has instance id `{instance}`"),
                        ));
                    };
                    if !id.is_empty() && id != current {
                        return Err(fenced(group, instance, id));
                    }
                    id = current;
                }
                let id = id.to_owned();
                if g.pending.remove(&id).is_some() {
                    g.try_complete_join(group, now);
                    return Ok(());
                }
                if g.remove_member(group, &id, now, delay) {
                    tracing::info!(group = %group, member = %id, "classic member left");
                    Ok(())
                } else {
                    Err(unknown_member(group, &id))
                }
            })
            .collect();
        drop_if_unused(&mut self.groups, group);
        out
    }

    /// Checks a commit by `member_id` of `generation` (a negative
    /// generation: a consumer outside any group) as Kafka does.
    pub(super) fn check_commit(
        &mut self,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<()> {
        let Some(g) = self.groups.get_mut(group).filter(|g| !g.members.is_empty()) else {
            if generation < 0 {
                return Ok(());
            }
            return Err(unknown_member(group, member_id));
        };
        g.check_instance(group, member_id, instance)?;
        if g.state == State::CompletingRebalance {
            return Err(refused(
                MembershipRefusal::RebalanceInProgress,
                format!("group `{group}` is completing a rebalance: commit after its sync"),
            ));
        }
        let current = g.generation;
        let m = g.members.get_mut(member_id).ok_or_else(|| unknown_member(group, member_id))?;
        if generation != current {
            return Err(illegal_generation(group, generation, current));
        }
        m.deadline = now + m.session_timeout;
        Ok(())
    }

    /// Ends what is due at `now` in every group: sessions, pending ids,
    /// join phases whose time is up, syncs the leader never sent. Returns
    /// how many members were removed.
    pub(super) fn expire(&mut self, now: Instant) -> usize {
        let delay = self.config.initial_rebalance_delay;
        let removed = self.groups.iter_mut().map(|(name, g)| g.expire(name, now, delay)).sum();
        self.groups.retain(|_, g| !g.members.is_empty() || !g.pending.is_empty());
        removed
    }

    /// Ends what is due at `now` in `group`.
    pub(super) fn poll(&mut self, group: &str, now: Instant) {
        let delay = self.config.initial_rebalance_delay;
        if let Some(g) = self.groups.get_mut(group) {
            g.expire(group, now, delay);
        }
        drop_if_unused(&mut self.groups, group);
    }

    /// Groups with live members: name, state, member count.
    pub(super) fn list(&self) -> Vec<(String, GroupState, usize)> {
        self.groups
            .iter()
            .filter(|(_, g)| !g.members.is_empty())
            .map(|(name, g)| (name.clone(), g.state(), g.members.len()))
            .collect()
    }

    /// A group's membership, if it has live members.
    pub(super) fn describe(&self, group: &str) -> Option<GroupInfo> {
        let g = self.groups.get(group).filter(|g| !g.members.is_empty())?;
        let stable = g.state == State::Stable;
        let members = g
            .members
            .iter()
            .map(|(id, m)| {
                let chosen = m.metadata(&g.protocol).or(m.protocols.first());
                MemberInfo {
                    member_id: id.clone(),
                    group_instance_id: m.instance.clone(),
                    client_id: m.client_id.clone(),
                    host: m.host.clone(),
                    member_epoch: g.generation,
                    topics: chosen.map(|p| p.topics.iter().cloned().collect()).unwrap_or_default(),
                    assignment: m.assigned.clone(),
                    metadata: if stable {
                        chosen.map(|p| p.metadata.clone()).unwrap_or_default()
                    } else {
                        Bytes::new()
                    },
                    assignment_data: if stable { m.assignment.clone() } else { Bytes::new() },
                }
            })
            .collect();
        Some(GroupInfo {
            state: g.state(),
            epoch: g.generation,
            members,
            kind: Some(GroupKind::Classic),
            protocol_type: g.protocol_type.clone(),
            protocol: if stable || g.state == State::CompletingRebalance {
                g.protocol.clone()
            } else {
                String::new()
            },
        })
    }
}

fn illegal_generation(group: &str, got: i32, current: i32) -> Error {
    refused(
        MembershipRefusal::IllegalGeneration,
        format!("generation {got} is not group `{group}`'s current generation {current}: rejoin"),
    )
}

fn drop_if_unused(groups: &mut BTreeMap<String, Group>, name: &str) {
    if groups.get(name).is_some_and(|g| g.members.is_empty() && g.pending.is_empty()) {
        groups.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::{CommittedOffset, Committer, Core, CoreConfig, Groups, Heartbeat};

    fn open(dir: &std::path::Path, delay: Duration) -> Core {
        let mut config = CoreConfig::new(dir);
        config.groups.initial_rebalance_delay = delay;
        Core::open(&config, None, &TaskTracker::new()).unwrap()
    }

    fn req(group: &str, member_id: &str) -> JoinRequest {
        JoinRequest {
            group: group.into(),
            member_id: member_id.into(),
            client_id: "c".into(),
            host: "127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![ClassicProtocol {
                name: "range".into(),
                metadata: Bytes::from(member_id.to_owned()),
                topics: vec!["t".into()],
            }],
            require_known_member_id: true,
            group_instance_id: None,
        }
    }

    fn refusal<T: std::fmt::Debug>(r: Result<T>) -> MembershipRefusal {
        match r {
            Err(Error::Membership { refusal, .. }) => refusal,
            other => panic!("expected a membership refusal, got {other:?}"),
        }
    }

    /// A new member's id, from the MEMBER_ID_REQUIRED round trip.
    async fn new_id(groups: &Groups, group: &str) -> String {
        match refusal(groups.join(req(group, ""), &CancellationToken::new()).await) {
            MembershipRefusal::MemberIdRequired { member_id } => member_id,
            other => panic!("expected MemberIdRequired, got {other:?}"),
        }
    }

    fn assign(id: &str, bytes: &'static str, partition: u32) -> MemberAssignment {
        MemberAssignment {
            member_id: id.into(),
            assignment: Bytes::from_static(bytes.as_bytes()),
            partitions: BTreeSet::from([("t".to_owned(), partition)]),
        }
    }

    fn sync_req(group: &str, id: &str, generation: i32, assignments: Vec<MemberAssignment>) -> SyncRequest {
        SyncRequest {
            group: group.into(),
            member_id: id.into(),
            generation,
            assignments,
            ..SyncRequest::default()
        }
    }

    /// Two members joined and synced into generation 1, `a` leading.
    async fn stable_pair(groups: &Groups) -> (String, String) {
        let stop = CancellationToken::new();
        let a = new_id(groups, "g").await;
        let b = new_id(groups, "g").await;
        assert!(a.starts_with("c-"), "{a}: client id, then a unique part");
        let (ja, jb) = tokio::join!(groups.join(req("g", &a), &stop), groups.join(req("g", &b), &stop));
        let (ja, jb) = (ja.unwrap(), jb.unwrap());
        assert_eq!((ja.generation, jb.generation), (1, 1), "both land in one generation");
        assert_eq!((ja.leader.as_str(), jb.leader.as_str()), (a.as_str(), a.as_str()));
        assert_eq!(ja.protocol, "range");
        let seen: BTreeSet<(String, Bytes)> =
            ja.members.into_iter().map(|m| (m.member_id, m.metadata)).collect();
        let expected =
            BTreeSet::from([(a.clone(), Bytes::from(a.clone())), (b.clone(), Bytes::from(b.clone()))]);
        assert_eq!(seen, expected, "the leader gets every member's metadata");
        assert!(jb.members.is_empty(), "followers get none");
        let assignments = vec![assign(&a, "for a", 0), assign(&b, "for b", 1)];
        let (sb, sa) = tokio::join!(
            groups.sync(sync_req("g", &b, 1, Vec::new()), &stop),
            groups.sync(sync_req("g", &a, 1, assignments), &stop)
        );
        assert_eq!(sa.unwrap().assignment, Bytes::from_static(b"for a"));
        assert_eq!(
            sb.unwrap().assignment,
            Bytes::from_static(b"for b"),
            "the follower waited for the leader"
        );
        (a, b)
    }

    #[tokio::test(start_paused = true)]
    async fn two_members_join_and_get_the_leaders_assignment() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::from_millis(300));
        let groups = core.groups();
        let (a, b) = stable_pair(groups).await;
        let info = groups.membership("g").unwrap();
        assert_eq!((info.state, info.epoch, info.kind), (GroupState::Stable, 1, Some(GroupKind::Classic)));
        assert_eq!((info.protocol_type.as_str(), info.protocol.as_str()), ("consumer", "range"));
        let owned: BTreeMap<&str, &BTreeSet<TopicPartition>> =
            info.members.iter().map(|m| (m.member_id.as_str(), &m.assignment)).collect();
        assert_eq!(owned[a.as_str()], &BTreeSet::from([("t".to_owned(), 0)]));
        assert_eq!(owned[b.as_str()], &BTreeSet::from([("t".to_owned(), 1)]));
        assert!(info.members.iter().all(|m| m.topics == BTreeSet::from(["t".to_owned()])));
        assert_eq!(groups.classic_heartbeat("g", &b, None, 1).ok(), Some(()));
    }

    /// A static member's join request.
    fn static_req(group: &str, member_id: &str, instance: &str) -> JoinRequest {
        JoinRequest { group_instance_id: Some(instance.into()), ..req(group, member_id) }
    }

    fn static_sync(id: &str, instance: &str, generation: i32) -> SyncRequest {
        SyncRequest { group_instance_id: Some(instance.into()), ..sync_req("g", id, generation, Vec::new()) }
    }

    /// Two static members (instances `ia` and `ib`) joined and synced into
    /// generation 1, `a` leading.
    async fn static_pair(groups: &Groups) -> (String, String) {
        let stop = CancellationToken::new();
        let (ja, jb) = tokio::join!(
            groups.join(static_req("g", "", "ia"), &stop),
            groups.join(static_req("g", "", "ib"), &stop)
        );
        let (ja, jb) = (ja.unwrap(), jb.unwrap());
        let (a, b) = (ja.member_id.clone(), jb.member_id.clone());
        assert!(a.starts_with("ia-") && b.starts_with("ib-"), "{a} {b}: no id round trip for static members");
        assert_eq!((ja.generation, jb.generation, ja.leader.as_str()), (1, 1, a.as_str()));
        let instances: BTreeSet<Option<String>> =
            ja.members.iter().map(|m| m.group_instance_id.clone()).collect();
        assert_eq!(instances, BTreeSet::from([Some("ia".to_owned()), Some("ib".to_owned())]));
        let assignments = vec![assign(&a, "for a", 0), assign(&b, "for b", 1)];
        let (sa, sb) = tokio::join!(
            groups.sync(sync_req("g", &a, 1, assignments), &stop),
            groups.sync(static_sync(&b, "ib", 1), &stop)
        );
        assert_eq!(
            (sa.unwrap().assignment, sb.unwrap().assignment),
            (Bytes::from("for a"), Bytes::from("for b"))
        );
        (a, b)
    }

    #[tokio::test(start_paused = true)]
    async fn a_static_member_restarting_in_its_session_gets_its_assignment_without_a_rebalance() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::from_millis(300));
        let groups = core.groups().clone();
        let stop = CancellationToken::new();
        let (a, old_b) = static_pair(&groups).await;
        tokio::time::advance(Duration::from_secs(5)).await;
        // The restarted instance subscribes as before; only what it owned differs.
        let mut rejoin = static_req("g", "", "ib");
        rejoin.protocols[0].metadata = Bytes::from_static(b"owns nothing now");
        let jb = groups.join(rejoin, &stop).await.unwrap();
        let b = jb.member_id.clone();
        assert!(b.starts_with("ib-") && b != old_b, "{b}: a new member id");
        assert_eq!((jb.generation, jb.leader.as_str(), jb.members.len()), (1, a.as_str(), 0));
        let synced = groups.sync(static_sync(&b, "ib", 1), &stop).await.unwrap();
        assert_eq!(synced.assignment, Bytes::from_static(b"for b"), "its previous assignment");
        let info = groups.membership("g").unwrap();
        assert_eq!((info.state, info.epoch), (GroupState::Stable, 1), "no rebalance");
        let members: BTreeMap<&str, (&Option<String>, &BTreeSet<TopicPartition>)> = info
            .members
            .iter()
            .map(|m| (m.member_id.as_str(), (&m.group_instance_id, &m.assignment)))
            .collect();
        assert_eq!(members.len(), 2);
        assert_eq!(members[b.as_str()], (&Some("ib".to_owned()), &BTreeSet::from([("t".to_owned(), 1)])));
        assert_eq!(members[a.as_str()].0, &Some("ia".to_owned()));
        assert_eq!(groups.classic_heartbeat("g", &a, Some("ia"), 1).ok(), Some(()), "a saw nothing");
        assert_eq!(groups.classic_heartbeat("g", &b, Some("ib"), 1).ok(), Some(()));

        // The old id is fenced wherever it names its instance id.
        let fenced = MembershipRefusal::FencedInstance;
        assert_eq!(refusal(groups.classic_heartbeat("g", &old_b, Some("ib"), 1)), fenced);
        assert_eq!(refusal(groups.classic_heartbeat("g", &old_b, None, 1)), MembershipRefusal::UnknownMember);
        assert_eq!(refusal(groups.sync(static_sync(&old_b, "ib", 1), &stop).await), fenced);
        assert_eq!(refusal(groups.commit_classic("g", &old_b, Some("ib"), 1, &[]).await), fenced);
        assert_eq!(refusal(groups.join(static_req("g", &old_b, "ib"), &stop).await), fenced);
        let leaving = Leaving { member_id: old_b.clone(), group_instance_id: Some("ib".into()) };
        assert_eq!(refusal(groups.leave("g", &[leaving]).unwrap().remove(0)), fenced);
        // A member id that never was the instance's is fenced too.
        assert_eq!(refusal(groups.join(static_req("g", &a, "ib"), &stop).await), fenced);
        assert_eq!(refusal(groups.classic_heartbeat("g", &a, Some("ib"), 1)), fenced);
        assert_eq!(groups.membership("g").unwrap().state, GroupState::Stable, "none of that rebalanced");
        // The current id rejoining with its instance id is an ordinary rejoin.
        let mut same = static_req("g", &b, "ib");
        same.protocols[0].metadata = Bytes::from_static(b"owns nothing now");
        let again = groups.join(same, &stop).await.unwrap();
        assert_eq!((again.generation, again.member_id.as_str()), (1, b.as_str()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_static_leader_or_a_changed_subscription_rebalances() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::from_millis(300));
        let groups = core.groups().clone();
        let stop = CancellationToken::new();
        let (old_a, b) = static_pair(&groups).await;
        // The leader restarts: the group rebalances, and it still leads.
        let g = groups.clone();
        let s = stop.clone();
        let leader = tokio::spawn(async move { g.join(static_req("g", "", "ia"), &s).await });
        tokio::task::yield_now().await;
        assert_eq!(
            refusal(groups.classic_heartbeat("g", &b, Some("ib"), 1)),
            MembershipRefusal::RebalanceInProgress
        );
        let jb = groups.join(static_req("g", &b, "ib"), &stop).await.unwrap();
        let ja = leader.await.unwrap().unwrap();
        assert_ne!(ja.member_id, old_a);
        assert_eq!((ja.generation, jb.generation), (2, 2));
        assert_eq!((jb.leader.as_str(), ja.members.len()), (ja.member_id.as_str(), 2));
        let assignments = vec![assign(&ja.member_id, "a2", 0), assign(&b, "b2", 1)];
        let (sa, sb) = tokio::join!(
            groups.sync(sync_req("g", &ja.member_id, 2, assignments), &stop),
            groups.sync(static_sync(&b, "ib", 2), &stop)
        );
        assert_eq!((sa.unwrap().assignment, sb.unwrap().assignment), (Bytes::from("a2"), Bytes::from("b2")));

        // A follower restarting with another subscription: a rebalance.
        let mut other = static_req("g", "", "ib");
        other.protocols[0].topics = vec!["u".into()];
        let g = groups.clone();
        let s = stop.clone();
        let follower = tokio::spawn(async move { g.join(other, &s).await });
        tokio::task::yield_now().await;
        assert_eq!(groups.membership("g").unwrap().state, GroupState::PreparingRebalance);
        let ja = groups.join(static_req("g", &ja.member_id, "ia"), &stop).await.unwrap();
        let jb = follower.await.unwrap().unwrap();
        assert_eq!((ja.generation, jb.generation), (3, 3));
        assert_ne!(jb.member_id, b);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_join_of_a_replaced_static_member_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::from_millis(300));
        let groups = core.groups().clone();
        let stop = CancellationToken::new();
        let (a, old_b) = static_pair(&groups).await;
        // A new member starts a rebalance; b's old id rejoins and waits.
        let c = new_id(&groups, "g").await;
        let (g, s) = (groups.clone(), stop.clone());
        let joining_c = tokio::spawn(async move { g.join(req("g", &c), &s).await });
        let (g, s, old) = (groups.clone(), stop.clone(), old_b.clone());
        let waiting = tokio::spawn(async move { g.join(static_req("g", &old, "ib"), &s).await });
        tokio::task::yield_now().await;
        // Its new instance replaces it, and the rebalance goes on.
        let (g, s) = (groups.clone(), stop.clone());
        let new_b = tokio::spawn(async move { g.join(static_req("g", "", "ib"), &s).await });
        assert_eq!(refusal(waiting.await.unwrap()), MembershipRefusal::FencedInstance);
        let ja = groups.join(static_req("g", &a, "ia"), &stop).await.unwrap();
        let (jb, jc) = (new_b.await.unwrap().unwrap(), joining_c.await.unwrap().unwrap());
        assert_eq!((ja.generation, jb.generation, jc.generation), (2, 2, 2));
        let ids: BTreeSet<String> = ja.members.into_iter().map(|m| m.member_id).collect();
        assert_eq!(ids, BTreeSet::from([a, jb.member_id, jc.member_id]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_static_member_leaves_by_instance_id_or_by_its_session_timing_out() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::from_millis(300));
        let groups = core.groups().clone();
        let stop = CancellationToken::new();
        let (a, b) = static_pair(&groups).await;
        let by_instance = |id: &str, instance: &str| Leaving {
            member_id: id.into(),
            group_instance_id: Some(instance.into()),
        };
        let left = groups.leave("g", &[by_instance("", "ib"), by_instance("", "nobody")]).unwrap();
        assert!(left[0].is_ok());
        assert_eq!(refusal(left.into_iter().nth(1).unwrap()), MembershipRefusal::UnknownMember);
        assert_eq!(
            refusal(groups.classic_heartbeat("g", &a, Some("ia"), 1)),
            MembershipRefusal::RebalanceInProgress
        );
        assert_eq!(
            refusal(groups.classic_heartbeat("g", &b, Some("ib"), 1)),
            MembershipRefusal::UnknownMember
        );
        let ja = groups.join(static_req("g", &a, "ia"), &stop).await.unwrap();
        assert_eq!((ja.generation, ja.members.len()), (2, 1));
        groups.sync(sync_req("g", &a, 2, vec![assign(&a, "all", 0)]), &stop).await.unwrap();

        // b comes back as a new member; then a stops heartbeating: its
        // session ends, and its instance id is forgotten.
        let (g, s) = (groups.clone(), stop.clone());
        let joining = tokio::spawn(async move { g.join(static_req("g", "", "ib"), &s).await });
        tokio::task::yield_now().await;
        let ja = groups.join(static_req("g", &a, "ia"), &stop).await.unwrap();
        let jb = joining.await.unwrap().unwrap();
        assert_eq!((ja.generation, jb.generation), (3, 3));
        let assignments = vec![assign(&a, "a", 0), assign(&jb.member_id, "b", 1)];
        let (sa, sb) = tokio::join!(
            groups.sync(sync_req("g", &a, 3, assignments), &stop),
            groups.sync(static_sync(&jb.member_id, "ib", 3), &stop)
        );
        assert_eq!((sa.unwrap().assignment, sb.unwrap().assignment), (Bytes::from("a"), Bytes::from("b")));
        tokio::time::advance(Duration::from_secs(6)).await;
        groups.classic_heartbeat("g", &jb.member_id, Some("ib"), 3).unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(groups.members.lock().classic.expire(tokio::time::Instant::now()), 1, "a timed out");
        assert_eq!(
            refusal(groups.classic_heartbeat("g", &a, Some("ia"), 3)),
            MembershipRefusal::UnknownMember
        );
        let info = groups.membership("g").unwrap();
        assert_eq!(info.members.len(), 1);
        assert_eq!(info.members[0].group_instance_id.as_deref(), Some("ib"));
        // Its instance joins again as a new member.
        let (g, s) = (groups.clone(), stop.clone());
        let joining = tokio::spawn(async move { g.join(static_req("g", "", "ia"), &s).await });
        tokio::task::yield_now().await;
        let jb = groups.join(static_req("g", &jb.member_id, "ib"), &stop).await.unwrap();
        let ja = joining.await.unwrap().unwrap();
        assert_ne!(ja.member_id, a);
        assert_eq!((ja.generation, jb.generation), (4, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn members_starting_together_land_in_one_generation() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::from_millis(300));
        let groups = core.groups().clone();
        let stop = CancellationToken::new();
        let (a, b) = (new_id(&groups, "g").await, new_id(&groups, "g").await);
        let started = tokio::time::Instant::now();
        let g = groups.clone();
        let s = stop.clone();
        let first = tokio::spawn(async move { g.join(req("g", &a), &s).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let jb = groups.join(req("g", &b), &stop).await.unwrap();
        let ja = first.await.unwrap().unwrap();
        assert_eq!((ja.generation, jb.generation, ja.members.len()), (1, 1, 2));
        assert_eq!(started.elapsed(), Duration::from_millis(500), "each new member extends the delay");

        // Without the delay, the first member forms a generation alone.
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::ZERO);
        let groups = core.groups();
        let a = new_id(groups, "g").await;
        let ja = groups.join(req("g", &a), &stop).await.unwrap();
        assert_eq!((ja.generation, ja.members.len()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn ids_handed_out_to_join_are_bounded_and_expire_with_their_session() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::ZERO);
        let groups = core.groups().clone();
        for _ in 0..MAX_MEMBERS {
            new_id(&groups, "g").await;
        }
        let stop = CancellationToken::new();
        let err = groups.join(req("g", ""), &stop).await.unwrap_err();
        assert_eq!(refusal(Err::<(), _>(err)), MembershipRefusal::GroupMaxSize);
        // Another group is not affected.
        new_id(&groups, "h").await;
        // The ids nobody joined with expire with their session timeout.
        tokio::time::advance(Duration::from_secs(11)).await;
        groups.members.lock().classic.expire(tokio::time::Instant::now());
        new_id(&groups, "g").await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_third_member_starts_a_rebalance_and_bumps_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::from_millis(300));
        let groups = core.groups().clone();
        let stop = CancellationToken::new();
        let (a, b) = stable_pair(&groups).await;
        let c = new_id(&groups, "g").await;
        let g = groups.clone();
        let (cc, s) = (c.clone(), stop.clone());
        let joining = tokio::spawn(async move { g.join(req("g", &cc), &s).await });
        tokio::task::yield_now().await;
        for id in [&a, &b] {
            assert_eq!(
                refusal(groups.classic_heartbeat("g", id, None, 1)),
                MembershipRefusal::RebalanceInProgress
            );
        }
        assert_eq!(groups.membership("g").unwrap().state, GroupState::PreparingRebalance);
        let (ja, jb) = tokio::join!(groups.join(req("g", &a), &stop), groups.join(req("g", &b), &stop));
        let jc = joining.await.unwrap().unwrap();
        for j in [ja.as_ref().unwrap(), jb.as_ref().unwrap(), &jc] {
            assert_eq!((j.generation, j.leader.as_str()), (2, a.as_str()), "the leader stays");
        }
        assert_eq!(ja.unwrap().members.len(), 3);
        assert_eq!(groups.membership("g").unwrap().state, GroupState::CompletingRebalance);
        assert_eq!(refusal(groups.classic_heartbeat("g", &b, None, 1)), MembershipRefusal::IllegalGeneration);
        assert_eq!(groups.classic_heartbeat("g", &b, None, 2).ok(), Some(()));
    }

    #[tokio::test(start_paused = true)]
    async fn members_that_do_not_rejoin_in_time_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::from_millis(300));
        let groups = core.groups().clone();
        let stop = CancellationToken::new();
        let (a, b) = stable_pair(&groups).await;
        let c = new_id(&groups, "g").await;
        let started = tokio::time::Instant::now();
        let (ja, jc) = tokio::join!(groups.join(req("g", &a), &stop), groups.join(req("g", &c), &stop));
        assert!(started.elapsed() >= Duration::from_secs(30), "waited the rebalance timeout for b");
        assert_eq!(ja.unwrap().members.len(), 2);
        assert_eq!(jc.unwrap().generation, 2);
        assert_eq!(refusal(groups.classic_heartbeat("g", &b, None, 2)), MembershipRefusal::UnknownMember);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_session_or_a_leave_starts_a_rebalance() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::from_millis(300));
        let groups = core.groups().clone();
        let stop = CancellationToken::new();
        let (a, b) = stable_pair(&groups).await;
        tokio::time::advance(Duration::from_secs(6)).await;
        groups.classic_heartbeat("g", &a, None, 1).unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(groups.members.lock().classic.expire(tokio::time::Instant::now()), 1, "b timed out");
        assert_eq!(
            refusal(groups.classic_heartbeat("g", &a, None, 1)),
            MembershipRefusal::RebalanceInProgress
        );
        let ja = groups.join(req("g", &a), &stop).await.unwrap();
        assert_eq!((ja.generation, ja.members.len()), (2, 1), "everyone left has rejoined: no wait");
        assert_eq!(refusal(groups.classic_heartbeat("g", &b, None, 2)), MembershipRefusal::UnknownMember);

        // A second member, then it leaves: the first rejoins alone.
        let d = new_id(&groups, "g").await;
        let (jd, ja) = tokio::join!(groups.join(req("g", &d), &stop), groups.join(req("g", &a), &stop));
        assert_eq!((ja.unwrap().generation, jd.unwrap().generation), (3, 3));
        let left = groups.leave("g", &[Leaving::member(d.clone()), Leaving::member("nobody")]).unwrap();
        assert!(left[0].is_ok());
        assert_eq!(refusal(left.into_iter().nth(1).unwrap()), MembershipRefusal::UnknownMember);
        assert_eq!(
            refusal(groups.classic_heartbeat("g", &a, None, 3)),
            MembershipRefusal::RebalanceInProgress
        );
        assert_eq!(groups.join(req("g", &a), &stop).await.unwrap().generation, 4);
        groups.leave("g", &[Leaving::member(a.clone())]).unwrap()[0].as_ref().unwrap();
        assert_eq!(groups.membership("g").unwrap().kind, None, "no live members left");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_out_of_turn_are_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::from_millis(300));
        let groups = core.groups().clone();
        let stop = CancellationToken::new();
        let (a, _b) = stable_pair(&groups).await;
        assert_eq!(refusal(groups.classic_heartbeat("g", &a, None, 7)), MembershipRefusal::IllegalGeneration);
        assert_eq!(
            refusal(groups.sync(sync_req("g", &a, 7, Vec::new()), &stop).await),
            MembershipRefusal::IllegalGeneration
        );
        assert_eq!(refusal(groups.classic_heartbeat("g", "x", None, 1)), MembershipRefusal::UnknownMember);
        assert_eq!(
            refusal(groups.classic_heartbeat("other", "x", None, 1)),
            MembershipRefusal::UnknownMember
        );
        assert_eq!(refusal(groups.join(req("g", "x"), &stop).await), MembershipRefusal::UnknownMember);
        let mut other_type = req("g", "");
        other_type.protocol_type = "connect".into();
        assert_eq!(refusal(groups.join(other_type, &stop).await), MembershipRefusal::InconsistentProtocol);
        let mut other_protocol = req("g", "");
        other_protocol.protocols[0].name = "roundrobin".into();
        assert_eq!(
            refusal(groups.join(other_protocol, &stop).await),
            MembershipRefusal::InconsistentProtocol
        );
        let mut short = req("g", "");
        short.session_timeout = Duration::from_millis(10);
        assert_eq!(refusal(groups.join(short, &stop).await), MembershipRefusal::InvalidSessionTimeout);
        for bad in ["", "a b", &"i".repeat(250)] {
            let mut r#static = req("g", "");
            r#static.group_instance_id = Some(bad.to_owned());
            let err = groups.join(r#static, &stop).await.unwrap_err();
            assert!(
                matches!(&err, Error::InvalidArgument { field, .. } if field == "group_instance_id"),
                "{err}"
            );
        }

        // A new member makes the group rebalance: a sync now is refused.
        let c = new_id(&groups, "g").await;
        let g = groups.clone();
        let s = stop.clone();
        let _joining = tokio::spawn(async move { g.join(req("g", &c), &s).await });
        tokio::task::yield_now().await;
        let sync = groups.sync(sync_req("g", &a, 1, Vec::new()), &stop).await;
        assert_eq!(refusal(sync), MembershipRefusal::RebalanceInProgress);
        // A waiting join ends at shutdown.
        stop.cancel();
        assert!(matches!(groups.join(req("g", &a), &stop).await, Err(Error::ShuttingDown)));
    }

    #[tokio::test(start_paused = true)]
    async fn protocols_are_chosen_by_votes_among_those_all_support() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::ZERO);
        let groups = core.groups().clone();
        let stop = CancellationToken::new();
        let with = |id: &str, names: &[&str]| {
            let mut r = req("p", id);
            r.require_known_member_id = false;
            r.protocols = names
                .iter()
                .map(|n| ClassicProtocol {
                    name: (*n).into(),
                    metadata: Bytes::from(n.to_string()),
                    topics: vec![],
                })
                .collect();
            r
        };
        let first = groups.join(with("", &["sticky", "range"]), &stop).await.unwrap();
        assert_eq!(
            (first.generation, first.protocol.as_str()),
            (1, "sticky"),
            "v0-3 joins need no id round trip"
        );
        let a = first.member_id;
        let late = groups.clone();
        let joining = tokio::spawn(async move {
            late.join(with("", &["range", "roundrobin"]), &CancellationToken::new()).await
        });
        tokio::task::yield_now().await;
        let again = groups.join(with(&a, &["sticky", "range"]), &stop).await.unwrap();
        assert_eq!(
            (again.generation, again.protocol.as_str()),
            (2, "range"),
            "the only protocol both support"
        );
        assert_eq!(
            again.members.iter().find(|m| m.member_id == a).unwrap().metadata,
            Bytes::from_static(b"range")
        );
        assert_eq!(joining.await.unwrap().unwrap().protocol, "range");
    }

    #[tokio::test]
    async fn a_group_id_in_use_by_one_kind_refuses_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::ZERO);
        core.log().create_topic("t", 2, BTreeMap::new()).await.unwrap();
        let groups = core.groups();
        let stop = CancellationToken::new();
        let hb = |group: &str, member_id: &str, member_epoch: i32| Heartbeat {
            group: group.into(),
            member_id: member_id.into(),
            member_epoch,
            topics: vec!["t".into()],
            ..Heartbeat::default()
        };
        let broker = groups.heartbeat(hb("x", "", 0)).unwrap();
        let err = groups.join(req("x", ""), &stop).await.unwrap_err();
        assert!(matches!(err, Error::GroupKindConflict { in_use_by: GroupKind::Broker, .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("broker-assigned (gRPC)") && message.contains("Kafka classic"), "{message}");
        let err = groups.commit_classic("x", "", None, -1, &[]).await.unwrap_err();
        assert!(matches!(err, Error::GroupKindConflict { .. }), "{err}");
        groups.heartbeat(hb("x", &broker.member_id, -1)).unwrap();
        let mut joined = req("x", "");
        joined.require_known_member_id = false;
        let joined = groups.join(joined, &stop).await.unwrap();
        assert_eq!(joined.generation, 1, "once the gRPC member left, a classic member may join");
        let err = groups.heartbeat(hb("x", "", 0)).unwrap_err();
        assert!(matches!(err, Error::GroupKindConflict { in_use_by: GroupKind::Classic, .. }), "{err}");
        let commit = [CommittedOffset { topic: "t".into(), partition: 0, offset: 0, metadata: None }];
        let committer = Committer { member_id: &joined.member_id, member_epoch: 1 };
        let err = groups.commit("x", Some(committer), &commit).await.unwrap_err();
        assert!(matches!(err, Error::GroupKindConflict { .. }), "{err}");
        let err = groups.reset_offsets("x", "t", crate::ResetTo::Earliest).await.unwrap_err();
        assert!(err.to_string().contains("has 1 live member;"), "{err}");
        let listed = groups.list().unwrap();
        assert_eq!(listed, vec![("x".to_owned(), GroupState::CompletingRebalance, 1)]);
    }

    #[tokio::test]
    async fn commits_follow_kafkas_membership_rules() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::ZERO);
        core.log().create_topic("t", 2, BTreeMap::new()).await.unwrap();
        let groups = core.groups();
        let stop = CancellationToken::new();
        let at = |partition, offset| CommittedOffset { topic: "t".into(), partition, offset, metadata: None };
        // A consumer outside any group commits while the group is empty.
        let results = groups.commit_classic("g", "", None, -1, &[at(0, 0)]).await.unwrap();
        assert!(results[0].is_ok());
        let mut r = req("g", "");
        r.require_known_member_id = false;
        let j = groups.join(r, &stop).await.unwrap();
        let m = j.member_id.as_str();
        assert_eq!(
            refusal(groups.commit_classic("g", m, None, 1, &[at(0, 0)]).await),
            MembershipRefusal::RebalanceInProgress
        );
        groups.sync(sync_req("g", m, 1, vec![assign(m, "all", 0)]), &stop).await.unwrap();
        assert_eq!(
            refusal(groups.commit_classic("g", "", None, -1, &[at(0, 0)]).await),
            MembershipRefusal::UnknownMember
        );
        assert_eq!(
            refusal(groups.commit_classic("g", m, None, 5, &[at(0, 0)]).await),
            MembershipRefusal::IllegalGeneration
        );
        assert_eq!(
            refusal(groups.commit_classic("g", "x", None, 1, &[at(0, 0)]).await),
            MembershipRefusal::UnknownMember
        );
        // Each offset is checked on its own: the valid one is stored.
        let results = groups.commit_classic("g", m, None, 1, &[at(1, 0), at(7, 0), at(0, 99)]).await.unwrap();
        assert!(results[0].is_ok());
        assert!(
            matches!(&results[1], Err(Error::InvalidArgument { field, .. }) if field == "offsets[1].partition")
        );
        assert!(matches!(results[2], Err(Error::OffsetOutOfRange { .. })));
        let stored: Vec<u32> = groups.committed("g", None).unwrap().iter().map(|c| c.partition).collect();
        assert_eq!(stored, vec![0, 1]);
        let described = groups.describe("g").unwrap();
        let p0 = described.partitions.iter().find(|p| p.partition == 0).unwrap();
        assert_eq!(p0.owner.as_deref(), Some(m), "describe shows the owner from the decoded assignment");
        groups.leave("g", &[Leaving::member(m)]).unwrap();
        groups.reset_offsets("g", "t", crate::ResetTo::Latest).await.unwrap();
    }

    #[tokio::test]
    async fn offsets_are_deleted_except_of_topics_live_members_subscribe_to() {
        let dir = tempfile::tempdir().unwrap();
        let core = open(dir.path(), Duration::ZERO);
        core.log().create_topic("t", 2, BTreeMap::new()).await.unwrap();
        core.log().create_topic("u", 1, BTreeMap::new()).await.unwrap();
        let groups = core.groups();
        let stop = CancellationToken::new();
        let at = |topic: &str, partition| CommittedOffset {
            topic: topic.into(),
            partition,
            offset: 0,
            metadata: None,
        };
        let err = groups.delete_offsets("g", &[("t".into(), 0)]).await.unwrap_err();
        assert!(matches!(err, Error::GroupNotFound { .. }), "{err}");
        groups.commit_classic("g", "", None, -1, &[at("t", 0), at("t", 1), at("u", 0)]).await.unwrap();
        assert_eq!(groups.kind("g").unwrap(), None, "a commit alone makes no kind");
        let mut r = req("g", "");
        r.require_known_member_id = false;
        let j = groups.join(r, &stop).await.unwrap();
        let m = j.member_id.clone();
        assert_eq!(groups.kind("g").unwrap(), Some((GroupKind::Classic, "consumer".into())));
        let wanted = [("t".to_owned(), 0), ("u".to_owned(), 0), ("u".to_owned(), 5), ("gone".to_owned(), 0)];
        let results = groups.delete_offsets("g", &wanted).await.unwrap();
        assert!(
            matches!(&results[0], Err(Error::FailedPrecondition { reason }) if reason.contains("`t`")),
            "{:?}",
            results[0]
        );
        assert!(results[1].is_ok(), "u is not subscribed to");
        assert!(
            matches!(&results[2], Err(Error::InvalidArgument { field, .. }) if field == "partitions[2].partition"),
            "{:?}",
            results[2]
        );
        assert!(matches!(&results[3], Err(Error::TopicNotFound { .. })), "{:?}", results[3]);
        let left: Vec<(String, u32)> =
            groups.committed("g", None).unwrap().into_iter().map(|c| (c.topic, c.partition)).collect();
        assert_eq!(left, [("t".to_owned(), 0), ("t".to_owned(), 1)]);
        // Once the member left, the group keeps its kind while it has offsets.
        groups.leave("g", &[Leaving::member(m)]).unwrap();
        assert_eq!(groups.membership("g").unwrap().kind, None);
        assert_eq!(groups.kind("g").unwrap(), Some((GroupKind::Classic, "consumer".into())));
        let results = groups.delete_offsets("g", &[("t".into(), 0), ("t".into(), 1)]).await.unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert!(groups.committed("g", None).unwrap().is_empty());
        assert_eq!(groups.kind("g").unwrap(), None, "without offsets the kind is forgotten");
        let err = groups.delete_offsets("g", &[("t".into(), 0)]).await.unwrap_err();
        assert!(matches!(err, Error::GroupNotFound { .. }), "{err}");
    }
}
