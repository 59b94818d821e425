//! Kafka's group APIs over the core's groups: FindCoordinator (this broker
//! coordinates every group), the classic protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup), committed offsets (OffsetCommit, OffsetFetch,
//! OffsetDelete) and ListGroups / DescribeGroups / DeleteGroups.
//!
//! The core relays members' metadata and assignments as opaque bytes; this
//! module reads the topics and partitions in them (Kafka's consumer
//! protocol) so that describe can show owners and lag. Bytes it cannot read
//! are still relayed.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use brooklet_core::{
    ClassicProtocol, CommittedOffset, Error, GroupKind, GroupState, JoinRequest, Leaving, MemberAssignment,
    MembershipRefusal, Operation, Resource, SyncRequest, TopicPartition,
};
use bytes::{Buf, Bytes};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::authz::Caller;
use crate::error::{denied_error, group_code};
use crate::server::Context;

/// The protocol type of Kafka consumers, whose metadata this module reads.
pub(crate) const CONSUMER: &str = "consumer";
/// Group types as ListGroups v5 names them: Kafka's classic groups, and
/// the broker-assigned groups of the gRPC API (like Kafka's `consumer`
/// groups).
const TYPE_CLASSIC: &str = "classic";
const TYPE_CONSUMER: &str = "consumer";

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// A refusal that needs an operator's or developer's attention, by name;
/// `None` for the protocol's normal steps (a member id required, a
/// rebalance, an unknown member). A fenced instance is two consumers
/// configured with one group instance id, or a zombie of a restarted one.
fn needs_attention(err: &Error) -> Option<&'static str> {
    match err {
        Error::GroupKindConflict { .. } => Some("group kind conflict"),
        Error::Membership { refusal, .. } => match refusal {
            MembershipRefusal::FencedInstance => Some("fenced instance"),
            MembershipRefusal::InvalidSessionTimeout => Some("invalid session timeout"),
            MembershipRefusal::InconsistentProtocol => Some("inconsistent protocol"),
            MembershipRefusal::GroupMaxSize => Some("group full"),
            _ => None,
        },
        _ => None,
    }
}

/// How often one group's refusal of one kind is logged at warn.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Most (group, reason) pairs remembered by [`WARNED`].
const WARNED_MAX: usize = 1024;

/// When each group's refusal of each kind was last logged at warn, so that
/// a client retrying every few seconds does not flood the log. One broker
/// serves per process, so the map is the process's.
static WARNED: Mutex<BTreeMap<(String, &'static str), Instant>> = Mutex::new(BTreeMap::new());

/// Whether `group`'s refusal for `reason` is logged at warn `now`: not if
/// it was within [`WARN_EVERY`]. Remembers at most [`WARNED_MAX`] pairs,
/// forgetting the oldest first.
fn warn_now(
    warned: &mut BTreeMap<(String, &'static str), Instant>,
    group: &str,
    reason: &'static str,
    now: Instant,
) -> bool {
    let key = (group.to_owned(), reason);
    if let Some(at) = warned.get(&key)
        && now.saturating_duration_since(*at) < WARN_EVERY
    {
        return false;
    }
    if warned.len() >= WARNED_MAX && !warned.contains_key(&key) {
        warned.retain(|_, at| now.saturating_duration_since(*at) < WARN_EVERY);
        if warned.len() >= WARNED_MAX
            && let Some(oldest) = warned.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone())
        {
            warned.remove(&oldest);
        }
    }
    warned.insert(key, now);
    true
}

/// Logs a refused group request: at warn (once a minute per group and
/// reason) if it needs attention, at debug otherwise.
fn log_refusal(api: &str, group: &str, member: &str, client_id: Option<&str>, err: &Error) {
    let warn = needs_attention(err).filter(|reason| {
        let mut warned = WARNED.lock().unwrap_or_else(PoisonError::into_inner);
        warn_now(&mut warned, group, reason, Instant::now())
    });
    match warn {
        Some(reason) => tracing::warn!(
            api,
            group,
            member,
            client_id,
            reason,
            error = %err,
            "kafka group request refused (logged once a minute per group and reason)"
        ),
        None => tracing::debug!(api, group, member, client_id, error = %err, "kafka group request refused"),
    }
}

/// A group's coordinator, for a caller that may describe the group.
pub(crate) fn find_coordinator(
    ctx: &Context,
    caller: &Caller<'_>,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let answer = |key: &str| -> (i16, Option<String>) {
        match request.key_type {
            0 if key.is_empty() => {
                (ResponseError::InvalidRequest.code(), Some("the group id is empty".into()))
            }
            0 => match caller.check(ctx, Operation::Describe, Resource::Group(key)) {
                Ok(()) => (0, None),
                Err(denied) => (denied_error(&denied).code(), Some(denied.to_string())),
            },
            // Not an error clients retry: a transactional producer fails
            // at once, as InitProducerId refuses it too.
            1 => (
                ResponseError::TransactionalIdAuthorizationFailed.code(),
                Some("transactions are not supported by this broker yet".into()),
            ),
            other => {
                (ResponseError::InvalidRequest.code(), Some(format!("key type {other} is not 0 (group)")))
            }
        }
    };
    let host = text(&ctx.options.advertised_host);
    let port = i32::from(ctx.options.advertised_port);
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let (error_code, message) = answer(key.as_str());
                let mut c = Coordinator::default().with_key(key.clone()).with_error_code(error_code);
                if error_code == 0 {
                    c = c.with_node_id(BrokerId(0)).with_host(host.clone()).with_port(port);
                } else {
                    c = c
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_message(message.map(StrBytes::from_string));
                }
                c
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (error_code, message) = answer(request.key.as_str());
    let mut response = FindCoordinatorResponse::default().with_error_code(error_code);
    if error_code == 0 {
        response = response.with_node_id(BrokerId(0)).with_host(host).with_port(port);
    } else {
        response = response.with_node_id(BrokerId(-1)).with_port(-1);
        if version >= 1 {
            response.error_message = message.map(StrBytes::from_string);
        }
    }
    response
}

/// Reads a consumer's subscription: the topics it names, or none.
pub(crate) fn subscription_topics(protocol_type: &str, metadata: &Bytes) -> Vec<String> {
    if protocol_type != CONSUMER {
        return Vec::new();
    }
    versioned::<ConsumerProtocolSubscription>(metadata, crate::walk::check_subscription)
        .map(|s| s.topics.iter().map(|t| t.as_str().to_owned()).collect())
        .unwrap_or_default()
}

/// Reads a consumer's assignment: the partitions it names, or none.
pub(crate) fn assignment_partitions(protocol_type: &str, assignment: &Bytes) -> BTreeSet<TopicPartition> {
    if protocol_type != CONSUMER {
        return BTreeSet::new();
    }
    let check = |_: i16, body: &[u8]| crate::walk::check_assignment(body);
    let Some(a) = versioned::<ConsumerProtocolAssignment>(assignment, check) else { return BTreeSet::new() };
    a.assigned_partitions
        .iter()
        .flat_map(|tp| {
            let topic = tp.topic.0.as_str().to_owned();
            tp.partitions.iter().filter_map(move |p| u32::try_from(*p).ok().map(|p| (topic.clone(), p)))
        })
        .collect()
}

/// A consumer-protocol message: an int16 version, then the message. Newer
/// versions than this crate knows keep the older fields first, so they are
/// read as its newest. `check` walks its arrays first, as for requests.
fn versioned<T: Decodable>(bytes: &Bytes, check: impl Fn(i16, &[u8]) -> Result<(), String>) -> Option<T> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16().clamp(0, 3);
    check(version, &buf).ok()?;
    T::decode(&mut buf, version).ok()
}

/// Joins a group the caller may read.
pub(crate) async fn join_group(
    ctx: &Context,
    caller: &Caller<'_>,
    version: i16,
    client_id: &str,
    host: &str,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    let group = request.group_id.0.as_str().to_owned();
    let protocol_type = request.protocol_type.as_str().to_owned();
    let millis = |ms: i32| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let session_timeout = millis(request.session_timeout_ms);
    let rebalance_timeout = if version == 0 { session_timeout } else { millis(request.rebalance_timeout_ms) };
    let protocols = request
        .protocols
        .iter()
        .map(|p| ClassicProtocol {
            name: p.name.as_str().to_owned(),
            metadata: p.metadata.clone(),
            topics: subscription_topics(&protocol_type, &p.metadata),
        })
        .collect();
    let join = JoinRequest {
        group: group.clone(),
        member_id: request.member_id.as_str().to_owned(),
        group_instance_id: request.group_instance_id.as_ref().map(|i| i.as_str().to_owned()),
        client_id: client_id.to_owned(),
        host: host.to_owned(),
        session_timeout,
        rebalance_timeout,
        protocol_type,
        protocols,
        require_known_member_id: version >= 4,
    };
    let mut response = JoinGroupResponse::default();
    let joined = match caller.check(ctx, Operation::Read, Resource::Group(&group)) {
        Ok(()) => ctx.core.groups().join(join, &ctx.stop).await,
        Err(denied) => Err(denied.into()),
    };
    match joined {
        Ok(joined) => {
            response.generation_id = joined.generation;
            response.protocol_type = Some(text(&joined.protocol_type));
            response.protocol_name = Some(text(&joined.protocol));
            response.leader = text(&joined.leader);
            response.member_id = text(&joined.member_id);
            response.members = joined
                .members
                .into_iter()
                .map(|m| {
                    let member = JoinGroupResponseMember::default()
                        .with_member_id(text(&m.member_id))
                        .with_metadata(m.metadata);
                    // The instance id is in the response from v5.
                    if version >= 5 {
                        member.with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                    } else {
                        member
                    }
                })
                .collect();
        }
        Err(e) => {
            log_refusal("JoinGroup", &group, request.member_id.as_str(), Some(client_id), &e);
            response.error_code = group_code(&e);
            response.generation_id = -1;
            response.member_id = match &e {
                Error::Membership { refusal: MembershipRefusal::MemberIdRequired { member_id }, .. } => {
                    text(member_id)
                }
                _ => request.member_id,
            };
            // Before v7 the protocol name is not nullable.
            response.protocol_name = (version < 7).then(StrBytes::default);
        }
    }
    response
}

/// Syncs a member of a group the caller may read.
pub(crate) async fn sync_group(
    ctx: &Context,
    caller: &Caller<'_>,
    version: i16,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    let group = request.group_id.0.as_str().to_owned();
    if let Err(denied) = caller.check(ctx, Operation::Read, Resource::Group(&group)) {
        return SyncGroupResponse::default().with_error_code(denied_error(&denied).code());
    }
    let protocol_type = request.protocol_type.as_ref().map(|t| t.as_str().to_owned());
    // Before v5 the request names no protocol type: the group's own is
    // read from its membership to decode the assignments.
    let decode_as = match &protocol_type {
        Some(t) => t.clone(),
        None => ctx.core.groups().membership(&group).map(|i| i.protocol_type).unwrap_or_default(),
    };
    let sync = SyncRequest {
        group: group.clone(),
        member_id: request.member_id.as_str().to_owned(),
        group_instance_id: request.group_instance_id.as_ref().map(|i| i.as_str().to_owned()),
        generation: request.generation_id,
        protocol_type,
        protocol: request.protocol_name.as_ref().map(|p| p.as_str().to_owned()),
        assignments: request
            .assignments
            .iter()
            .map(|a| MemberAssignment {
                member_id: a.member_id.as_str().to_owned(),
                assignment: a.assignment.clone(),
                partitions: assignment_partitions(&decode_as, &a.assignment),
            })
            .collect(),
    };
    let mut response = SyncGroupResponse::default();
    match ctx.core.groups().sync(sync, &ctx.stop).await {
        Ok(synced) => {
            if version >= 5 {
                response.protocol_type = Some(text(&synced.protocol_type));
                response.protocol_name = Some(text(&synced.protocol));
            }
            response.assignment = synced.assignment;
        }
        Err(e) => {
            log_refusal("SyncGroup", &group, request.member_id.as_str(), None, &e);
            response.error_code = group_code(&e);
        }
    }
    response
}

/// A member's heartbeat, in a group the caller may read.
pub(crate) fn heartbeat(ctx: &Context, caller: &Caller<'_>, request: &HeartbeatRequest) -> HeartbeatResponse {
    let group = request.group_id.0.as_str();
    if let Err(denied) = caller.check(ctx, Operation::Read, Resource::Group(group)) {
        return HeartbeatResponse::default().with_error_code(denied_error(&denied).code());
    }
    let instance = request.group_instance_id.as_ref().map(StrBytes::as_str);
    let member_id = request.member_id.as_str();
    let result = ctx.core.groups().classic_heartbeat(group, member_id, instance, request.generation_id);
    let mut response = HeartbeatResponse::default();
    if let Err(e) = result {
        if !matches!(e, Error::Membership { refusal: MembershipRefusal::RebalanceInProgress, .. }) {
            log_refusal("Heartbeat", group, request.member_id.as_str(), None, &e);
        }
        response.error_code = group_code(&e);
    }
    response
}

/// Members leave a group the caller may read.
pub(crate) fn leave_group(
    ctx: &Context,
    caller: &Caller<'_>,
    version: i16,
    request: &LeaveGroupRequest,
) -> LeaveGroupResponse {
    let group = request.group_id.0.as_str();
    if let Err(denied) = caller.check(ctx, Operation::Read, Resource::Group(group)) {
        return LeaveGroupResponse::default().with_error_code(denied_error(&denied).code());
    }
    let leaving: Vec<Leaving> = if version <= 2 {
        vec![Leaving::member(request.member_id.as_str())]
    } else {
        request
            .members
            .iter()
            .map(|m| Leaving {
                member_id: m.member_id.as_str().to_owned(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.as_str().to_owned()),
            })
            .collect()
    };
    let mut response = LeaveGroupResponse::default();
    let results = match ctx.core.groups().leave(group, &leaving) {
        Ok(results) => results,
        Err(e) => {
            let ids: Vec<&str> = leaving.iter().map(|l| l.member_id.as_str()).collect();
            log_refusal("LeaveGroup", group, &ids.join(","), None, &e);
            response.error_code = group_code(&e);
            return response;
        }
    };
    if version <= 2 {
        if let Some(Err(e)) = results.first() {
            response.error_code = group_code(e);
        }
        return response;
    }
    response.members = request
        .members
        .iter()
        .zip(results)
        .map(|(m, result)| {
            MemberResponse::default()
                .with_member_id(m.member_id.clone())
                .with_group_instance_id(m.group_instance_id.clone())
                .with_error_code(result.err().map_or(0, |e| group_code(&e)))
        })
        .collect();
    response
}

/// A partition to commit: an error found here, or its place among the
/// offsets handed to the core.
type Slot = Result<usize, i16>;

/// The logical offsets a Kafka client may commit to move a group to a
/// partition's log start or end (kafkajs's admin `resetOffsets` does).
/// Brooklet stores the offset each stands for when committed.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

/// Commits offsets for a group the caller may read, of topics it may read:
/// a denied group refuses every partition, a denied topic its own.
pub(crate) async fn offset_commit(
    ctx: &Context,
    caller: &Caller<'_>,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group = request.group_id.0.as_str().to_owned();
    if let Err(denied) = caller.check(ctx, Operation::Read, Resource::Group(&group)) {
        let code = denied_error(&denied).code();
        let topics = request
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
            })
            .collect();
        return OffsetCommitResponse::default().with_topics(topics);
    }
    let mut offsets = Vec::new();
    let mut slots: Vec<(TopicName, Vec<(i32, Slot)>)> = Vec::new();
    for t in &request.topics {
        let topic = t.name.0.as_str();
        let denied = caller.check(ctx, Operation::Read, Resource::Topic(topic)).err();
        let mut partitions = Vec::new();
        for p in &t.partitions {
            if let Some(denied) = &denied {
                partitions.push((p.partition_index, Err(denied_error(denied).code())));
                continue;
            }
            let partition = u32::try_from(p.partition_index);
            let offset = match (&partition, p.committed_offset) {
                (Ok(partition), logical @ (EARLIEST | LATEST)) => {
                    // An unknown partition is left to the core to report.
                    let state = ctx.core.log().partition_state(topic, *partition);
                    Ok(state.map_or(0, |s| if logical == EARLIEST { s.log_start } else { s.high_watermark }))
                }
                (_, offset) => u64::try_from(offset),
            };
            let slot = match (partition, offset) {
                (Err(_), _) => Err(ResponseError::UnknownTopicOrPartition.code()),
                (_, Err(_)) => Err(ResponseError::OffsetOutOfRange.code()),
                (Ok(partition), Ok(offset)) => {
                    offsets.push(CommittedOffset {
                        topic: topic.to_owned(),
                        partition,
                        offset,
                        metadata: p.committed_metadata.as_ref().map(|m| m.as_str().to_owned()),
                    });
                    Ok(offsets.len() - 1)
                }
            };
            partitions.push((p.partition_index, slot));
        }
        slots.push((t.name.clone(), partitions));
    }
    let instance = request.group_instance_id.as_ref().map(StrBytes::as_str);
    let results = ctx
        .core
        .groups()
        .commit_classic(
            &group,
            request.member_id.as_str(),
            instance,
            request.generation_id_or_member_epoch,
            &offsets,
        )
        .await;
    if let Err(e) = &results {
        log_refusal("OffsetCommit", &group, request.member_id.as_str(), None, e);
    }
    let topics = slots
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, slot)| {
                    let error_code = match (&results, slot) {
                        (_, Err(code)) => code,
                        (Err(e), Ok(_)) => group_code(e),
                        (Ok(results), Ok(i)) => results[i].as_ref().err().map_or(0, group_code),
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(error_code)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(name).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// A partition's committed offset as OffsetFetch answers it: -1 where none
/// is committed or the topic is denied (`error_code`).
struct FetchedOffset {
    partition: i32,
    offset: i64,
    metadata: String,
    error_code: i16,
}

/// One group's committed offsets, by topic: for the requested partitions,
/// or every committed one of the topics the caller may describe.
type Fetched = Vec<(String, Vec<FetchedOffset>)>;

/// `group`'s committed offsets, if the caller may describe it; a requested
/// topic the caller may not describe is refused in each partition.
fn fetch_offsets(
    ctx: &Context,
    caller: &Caller<'_>,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Fetched, Error> {
    caller.check(ctx, Operation::Describe, Resource::Group(group))?;
    let committed = ctx.core.groups().committed(group, None)?;
    let mut by_topic: BTreeMap<String, BTreeMap<i32, (i64, String)>> = BTreeMap::new();
    for c in committed {
        by_topic
            .entry(c.topic)
            .or_default()
            .insert(c.partition as i32, (c.offset as i64, c.metadata.unwrap_or_default()));
    }
    let offset =
        |partition, offset, metadata, error_code| FetchedOffset { partition, offset, metadata, error_code };
    Ok(match wanted {
        None => by_topic
            .into_iter()
            .filter(|(topic, _)| caller.allows(ctx, Operation::Describe, Resource::Topic(topic)))
            .map(|(topic, partitions)| {
                (topic, partitions.into_iter().map(|(p, (o, m))| offset(p, o, m, 0)).collect())
            })
            .collect(),
        Some(wanted) => wanted
            .into_iter()
            .map(|(topic, partitions)| {
                let denied = caller.check(ctx, Operation::Describe, Resource::Topic(&topic)).err();
                let known = by_topic.get(&topic).filter(|_| denied.is_none());
                let error_code = denied.map_or(0, |d| denied_error(&d).code());
                let out = partitions
                    .into_iter()
                    .map(|p| match known.and_then(|k| k.get(&p)) {
                        Some((o, m)) => offset(p, *o, m.clone(), 0),
                        None => offset(p, -1, String::new(), error_code),
                    })
                    .collect();
                (topic, out)
            })
            .collect(),
    })
}

/// Committed offsets of groups and topics the caller may describe.
pub(crate) fn offset_fetch(
    ctx: &Context,
    caller: &Caller<'_>,
    version: i16,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let leader_epoch = if version >= 5 { -1 } else { 0 };
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let wanted = g.topics.map(|ts| {
                    ts.into_iter().map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes)).collect()
                });
                let mut out = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match fetch_offsets(ctx, caller, g.group_id.0.as_str(), wanted) {
                    Ok(fetched) => {
                        out.topics = fetched
                            .into_iter()
                            .map(|(topic, partitions)| {
                                let partitions = partitions
                                    .into_iter()
                                    .map(|o| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(o.partition)
                                            .with_committed_offset(o.offset)
                                            .with_committed_leader_epoch(leader_epoch)
                                            .with_metadata(Some(StrBytes::from_string(o.metadata)))
                                            .with_error_code(o.error_code)
                                    })
                                    .collect();
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(text(&topic)))
                                    .with_partitions(partitions)
                            })
                            .collect();
                    }
                    Err(e) => out.error_code = group_code(&e),
                }
                out
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    // v0 and v1 ask for every partition with an empty list, not null.
    let wanted = request.topics.filter(|t| version >= 2 || !t.is_empty()).map(|ts| {
        ts.into_iter().map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes)).collect::<Vec<_>>()
    });
    let mut response = OffsetFetchResponse::default();
    match fetch_offsets(ctx, caller, request.group_id.0.as_str(), wanted.clone()) {
        Ok(fetched) => {
            response.topics = fetched
                .into_iter()
                .map(|(topic, partitions)| {
                    let partitions = partitions
                        .into_iter()
                        .map(|o| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(o.partition)
                                .with_committed_offset(o.offset)
                                .with_committed_leader_epoch(leader_epoch)
                                .with_metadata(Some(StrBytes::from_string(o.metadata)))
                                .with_error_code(o.error_code)
                        })
                        .collect();
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(text(&topic)))
                        .with_partitions(partitions)
                })
                .collect();
        }
        Err(e) if version >= 2 => response.error_code = group_code(&e),
        Err(e) => {
            // v1 has no top-level error: every partition carries it.
            response.topics = wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, partitions)| {
                    let partitions = partitions
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_metadata(Some(StrBytes::default()))
                                .with_error_code(group_code(&e))
                        })
                        .collect();
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(text(&topic)))
                        .with_partitions(partitions)
                })
                .collect();
        }
    }
    response
}

/// A group state as Kafka names it.
fn state_name(state: GroupState) -> &'static str {
    match state {
        GroupState::Empty => "Empty",
        GroupState::Stable => "Stable",
        GroupState::Reconciling => "Reconciling",
        GroupState::PreparingRebalance => "PreparingRebalance",
        GroupState::CompletingRebalance => "CompletingRebalance",
    }
}

/// A group's type (ListGroups v5) and protocol type. A group known only by
/// its committed offsets is classic, as Kafka lists a group that consumers
/// outside any group committed for.
fn group_type(ctx: &Context, group: &str) -> (&'static str, String) {
    match ctx.core.groups().kind(group) {
        Ok(Some((GroupKind::Broker, _))) => (TYPE_CONSUMER, CONSUMER.to_owned()),
        Ok(Some((GroupKind::Classic, protocol_type))) => (TYPE_CLASSIC, protocol_type),
        Ok(None) | Err(_) => (TYPE_CLASSIC, String::new()),
    }
}

/// The groups the caller may describe.
pub(crate) fn list_groups(
    ctx: &Context,
    caller: &Caller<'_>,
    version: i16,
    request: &ListGroupsRequest,
) -> ListGroupsResponse {
    let listed = match ctx.core.groups().list() {
        Ok(listed) => listed,
        Err(e) => return ListGroupsResponse::default().with_error_code(group_code(&e)),
    };
    let wanted = |filter: &[StrBytes], value: &str| {
        filter.is_empty() || filter.iter().any(|f| f.as_str().eq_ignore_ascii_case(value))
    };
    let out = listed
        .into_iter()
        .filter(|(name, _, _)| caller.allows(ctx, Operation::Describe, Resource::Group(name)))
        .filter(|(_, state, _)| wanted(&request.states_filter, state_name(*state)))
        .filter_map(|(name, state, _)| {
            let (kind, protocol_type) = group_type(ctx, &name);
            if !wanted(&request.types_filter, kind) {
                return None;
            }
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(text(&name)))
                .with_protocol_type(text(&protocol_type));
            if version >= 4 {
                g.group_state = text(state_name(state));
            }
            if version >= 5 {
                g.group_type = text(kind);
            }
            Some(g)
        })
        .collect();
    ListGroupsResponse::default().with_groups(out)
}

/// Each group the caller may describe; the others are refused.
pub(crate) fn describe_groups(
    ctx: &Context,
    caller: &Caller<'_>,
    version: i16,
    request: &DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let groups = ctx.core.groups();
    let described = request
        .groups
        .iter()
        .map(|id| {
            let name = id.0.as_str();
            let out = DescribedGroup::default().with_group_id(id.clone());
            if let Err(denied) = caller.check(ctx, Operation::Describe, Resource::Group(name)) {
                return out.with_error_code(denied_error(&denied).code());
            }
            let info = match groups.membership(name) {
                Ok(info) => info,
                Err(e) => return out.with_error_code(group_code(&e)),
            };
            if info.kind.is_none() {
                // Without live members: Empty if it has committed offsets,
                // otherwise Kafka's Dead (a group that does not exist).
                // An empty classic group keeps its protocol type, as Kafka's.
                let has_offsets = groups.committed(name, None).is_ok_and(|c| !c.is_empty());
                if !has_offsets {
                    return out.with_group_state(text("Dead"));
                }
                let protocol_type = match groups.kind(name) {
                    Ok(Some((GroupKind::Classic, protocol_type))) => protocol_type,
                    _ => String::new(),
                };
                return out.with_group_state(text("Empty")).with_protocol_type(text(&protocol_type));
            }
            let members = info
                .members
                .into_iter()
                .map(|m| {
                    let member = DescribedGroupMember::default()
                        .with_member_id(text(&m.member_id))
                        .with_client_id(text(&m.client_id))
                        .with_client_host(text(&m.host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment_data);
                    // The instance id is in the response from v4.
                    if version >= 4 {
                        member.with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                    } else {
                        member
                    }
                })
                .collect();
            let protocol_type =
                if info.kind == Some(GroupKind::Classic) { info.protocol_type } else { String::new() };
            // As Kafka: the protocol only once the generation is stable.
            let protocol = if info.state == GroupState::Stable { info.protocol } else { String::new() };
            out.with_group_state(text(state_name(info.state)))
                .with_protocol_type(text(&protocol_type))
                .with_protocol_data(text(&protocol))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(described)
}

/// Deletes a group's committed offsets of some partitions; those of topics
/// its live members subscribe to stay (GROUP_SUBSCRIBED_TO_TOPIC).
/// For a caller that may delete the group: a topic it may not read is
/// refused in each partition.
pub(crate) async fn offset_delete(
    ctx: &Context,
    caller: &Caller<'_>,
    request: &OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group = request.group_id.0.as_str();
    let groups = ctx.core.groups();
    let refused = |code: i16| OffsetDeleteResponse::default().with_error_code(code);
    if let Err(denied) = caller.check(ctx, Operation::Delete, Resource::Group(group)) {
        return refused(denied_error(&denied).code());
    }
    match groups.membership(group) {
        // Subscriptions are read from Kafka's consumer protocol only: live
        // members of another protocol cannot say which topics they use.
        Ok(info) if info.kind == Some(GroupKind::Classic) && info.protocol_type != CONSUMER => {
            tracing::debug!(group, protocol_type = %info.protocol_type, "kafka offset delete refused: live members");
            return refused(ResponseError::NonEmptyGroup.code());
        }
        Ok(_) => {}
        Err(e) => {
            log_refusal("OffsetDelete", group, "", None, &e);
            return refused(group_code(&e));
        }
    }
    let mut wanted = Vec::new();
    let mut slots: Vec<(TopicName, Vec<(i32, Slot)>)> = Vec::new();
    for t in &request.topics {
        let denied = caller.check(ctx, Operation::Read, Resource::Topic(t.name.0.as_str())).err();
        let partitions = t
            .partitions
            .iter()
            .map(|p| {
                let slot = match (&denied, u32::try_from(p.partition_index)) {
                    (Some(denied), _) => Err(denied_error(denied).code()),
                    (None, Ok(partition)) => {
                        wanted.push((t.name.0.as_str().to_owned(), partition));
                        Ok(wanted.len() - 1)
                    }
                    (None, Err(_)) => Err(ResponseError::UnknownTopicOrPartition.code()),
                };
                (p.partition_index, slot)
            })
            .collect();
        slots.push((t.name.clone(), partitions));
    }
    let results = match groups.delete_offsets(group, &wanted).await {
        Ok(results) => results,
        Err(e) => {
            log_refusal("OffsetDelete", group, "", None, &e);
            return refused(group_code(&e));
        }
    };
    let topics = slots
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, slot)| {
                    let error_code = match slot {
                        Err(code) => code,
                        Ok(i) => match &results[i] {
                            Ok(()) => 0,
                            // The one precondition: no live member subscribes to the topic.
                            Err(Error::FailedPrecondition { .. }) => {
                                ResponseError::GroupSubscribedToTopic.code()
                            }
                            Err(e) => group_code(e),
                        },
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(error_code)
                })
                .collect();
            OffsetDeleteResponseTopic::default().with_name(name).with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}

/// Deletes groups without live members: their committed offsets go.
/// Groups the caller may not delete are refused.
pub(crate) async fn delete_groups(
    ctx: &Context,
    caller: &Caller<'_>,
    request: &DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for id in &request.groups_names {
        let group = id.0.as_str();
        let deleted = match caller.check(ctx, Operation::Delete, Resource::Group(group)) {
            Ok(()) => ctx.core.groups().delete(group).await,
            Err(denied) => Err(denied.into()),
        };
        let error_code = match deleted {
            Ok(()) => 0,
            Err(e) => {
                log_refusal("DeleteGroups", group, "", None, &e);
                match e {
                    // The one precondition of a delete: no live members.
                    Error::FailedPrecondition { .. } => ResponseError::NonEmptyGroup.code(),
                    other => group_code(&other),
                }
            }
        };
        results.push(DeletableGroupResult::default().with_group_id(id.clone()).with_error_code(error_code));
    }
    DeleteGroupsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartitions;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::protocol::Encodable;

    use super::*;
    use crate::frame::{FrameError, decode};

    fn s(v: &'static str) -> StrBytes {
        StrBytes::from_static_str(v)
    }

    fn walks_whole(api: ApiKey, version: i16, body: &impl Encodable) {
        let mut out = BytesMut::new();
        body.encode(&mut out, version).unwrap();
        let left =
            crate::walk::check(api, version, &out).unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
        assert_eq!(left, 0, "{api:?} v{version}: the walk follows the schema to its end");
    }

    #[test]
    fn well_formed_group_requests_of_every_version_pass_the_walk() {
        for v in 0..=4 {
            let mut r = FindCoordinatorRequest::default().with_key(s("g"));
            if v >= 4 {
                r = r.with_key(StrBytes::default()).with_coordinator_keys(vec![s("g"), s("h")]);
            }
            walks_whole(ApiKey::FindCoordinator, v, &r);
        }
        for v in 0..=9 {
            let p = JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"meta"));
            let mut r = JoinGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![p.clone(), p]);
            if v >= 5 {
                r.group_instance_id = Some(s("i"));
            }
            walks_whole(ApiKey::JoinGroup, v, &r);
        }
        for v in 0..=5 {
            let a = SyncGroupRequestAssignment::default()
                .with_member_id(s("m"))
                .with_assignment(Bytes::from_static(b"a"));
            let mut r = SyncGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_assignments(vec![a.clone(), a]);
            if v >= 3 {
                r.group_instance_id = Some(s("i"));
            }
            if v >= 5 {
                r = r.with_protocol_type(Some(s("consumer"))).with_protocol_name(Some(s("range")));
            }
            walks_whole(ApiKey::SyncGroup, v, &r);
        }
        for v in 0..=5 {
            let mut r = LeaveGroupRequest::default().with_group_id(GroupId(s("g")));
            if v <= 2 {
                r.member_id = s("m");
            } else {
                let by_instance = MemberIdentity::default().with_group_instance_id(Some(s("i")));
                r.members = vec![MemberIdentity::default().with_member_id(s("m")), by_instance];
            }
            walks_whole(ApiKey::LeaveGroup, v, &r);
        }
        for v in 2..=8 {
            let p = OffsetCommitRequestPartition::default()
                .with_committed_offset(5)
                .with_committed_metadata(Some(s("x")));
            let t = OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![p.clone(), p]);
            let mut r =
                OffsetCommitRequest::default().with_group_id(GroupId(s("g"))).with_topics(vec![t.clone(), t]);
            if v >= 7 {
                r.group_instance_id = Some(s("i"));
            }
            walks_whole(ApiKey::OffsetCommit, v, &r);
        }
        for v in 1..=8 {
            let mut r = OffsetFetchRequest::default();
            if v <= 7 {
                let t = OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0, 1]);
                r = r.with_group_id(GroupId(s("g"))).with_topics(Some(vec![t.clone(), t]));
            } else {
                let t = OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0, 1]);
                let g = OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(Some(vec![t]));
                let all = OffsetFetchRequestGroup::default().with_group_id(GroupId(s("h"))).with_topics(None);
                r = r.with_groups(vec![g, all]);
            }
            walks_whole(ApiKey::OffsetFetch, v, &r);
        }
        for v in 0..=5 {
            let mut r = ListGroupsRequest::default();
            if v >= 4 {
                r.states_filter = vec![s("Stable"), s("Empty")];
            }
            if v >= 5 {
                r.types_filter = vec![s("classic"), s("consumer")];
            }
            walks_whole(ApiKey::ListGroups, v, &r);
        }
        let p = kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestPartition::default();
        let t = kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![p.clone(), p.with_partition_index(1)]);
        let r = OffsetDeleteRequest::default().with_group_id(GroupId(s("g"))).with_topics(vec![t.clone(), t]);
        walks_whole(ApiKey::OffsetDelete, 0, &r);
        for v in 0..=5 {
            let r = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g")), GroupId(s("h"))]);
            walks_whole(ApiKey::DescribeGroups, v, &r);
        }
        for v in 0..=2 {
            let r = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g")), GroupId(s("h"))]);
            walks_whole(ApiKey::DeleteGroups, v, &r);
        }
    }

    /// Replaces the int32 count at `at` (or, in flexible versions, the
    /// varint count there) with a huge one.
    fn refused<R: Decodable + std::fmt::Debug>(api: ApiKey, version: i16, prefix: &[u8], flexible: bool) {
        let mut body = BytesMut::from(prefix);
        if flexible {
            body.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        } else {
            body.put_i32(i32::MAX);
        }
        let err = decode::<R>(api, version, body.freeze()).unwrap_err();
        assert!(matches!(err, FrameError::Malformed { .. }), "{api:?} v{version}: {err}");
    }

    #[test]
    fn a_group_request_claiming_a_huge_array_is_refused_before_decoding() {
        // FindCoordinator v4 (flexible): key type, then the keys.
        refused::<FindCoordinatorRequest>(ApiKey::FindCoordinator, 4, &[0], true);
        // JoinGroup v1: group "g", timeouts, member "", type "c", protocols.
        let join = [0, 1, b'g', 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, b'c'];
        refused::<JoinGroupRequest>(ApiKey::JoinGroup, 1, &join, false);
        // SyncGroup v0: group "g", generation, member "", assignments.
        refused::<SyncGroupRequest>(ApiKey::SyncGroup, 0, &[0, 1, b'g', 0, 0, 0, 1, 0, 0], false);
        // LeaveGroup v3: group "g", members.
        refused::<LeaveGroupRequest>(ApiKey::LeaveGroup, 3, &[0, 1, b'g'], false);
        // OffsetCommit v2: group, generation, member, retention, topics.
        let commit = [0, 1, b'g', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        refused::<OffsetCommitRequest>(ApiKey::OffsetCommit, 2, &commit, false);
        // OffsetFetch v1: group, topics; v8 (flexible): groups.
        refused::<OffsetFetchRequest>(ApiKey::OffsetFetch, 1, &[0, 1, b'g'], false);
        refused::<OffsetFetchRequest>(ApiKey::OffsetFetch, 8, &[], true);
        // ListGroups v4 (flexible): states; DescribeGroups v0: groups.
        refused::<ListGroupsRequest>(ApiKey::ListGroups, 4, &[], true);
        // ListGroups v5: no states, then the types.
        refused::<ListGroupsRequest>(ApiKey::ListGroups, 5, &[1], true);
        // OffsetDelete v0: group "g", topics; then one topic's partitions.
        refused::<OffsetDeleteRequest>(ApiKey::OffsetDelete, 0, &[0, 1, b'g'], false);
        refused::<OffsetDeleteRequest>(ApiKey::OffsetDelete, 0, &[0, 1, b'g', 0, 0, 0, 1, 0, 1, b't'], false);
        refused::<DescribeGroupsRequest>(ApiKey::DescribeGroups, 0, &[], false);
        // DeleteGroups v0: groups; v2 (flexible): groups.
        refused::<DeleteGroupsRequest>(ApiKey::DeleteGroups, 0, &[], false);
        refused::<DeleteGroupsRequest>(ApiKey::DeleteGroups, 2, &[], true);
    }

    fn context(dir: &std::path::Path) -> Context {
        let tasks = tokio_util::task::TaskTracker::new();
        let core = brooklet_core::Core::open(&brooklet_core::CoreConfig::new(dir), None, &tasks)
            .expect("the core opens");
        let options = crate::server::KafkaOptions {
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            auto_create_topics: false,
            default_partitions: 1,
            max_request_bytes: 8 << 20,
            max_connections: 8,
            auth_required: false,
            certificate_principal: None,
            connections: Default::default(),
            authorizer: brooklet_core::Authorizer::allow_all(core.acls().clone()),
        };
        let stop = tokio_util::sync::CancellationToken::new();
        Context { core, options, metrics: brooklet_metrics::Metrics::new(), stop }
    }

    fn described(ctx: &Context) -> DescribedGroup {
        let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]);
        describe_groups(ctx, &Caller::NOBODY, 5, &request).groups.remove(0)
    }

    #[tokio::test(start_paused = true)]
    async fn describe_names_the_protocol_only_once_the_group_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let protocol =
            ClassicProtocol { name: "range".into(), metadata: Bytes::from_static(b"m"), topics: vec![] };
        let join = JoinRequest {
            group: "g".into(),
            client_id: "c".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocol_type: CONSUMER.into(),
            protocols: vec![protocol],
            ..JoinRequest::default()
        };
        let joined = ctx.core.groups().join(join, &ctx.stop).await.unwrap();
        let d = described(&ctx);
        assert_eq!(
            (d.group_state.as_str(), d.protocol_type.as_str(), d.protocol_data.as_str()),
            ("CompletingRebalance", CONSUMER, "")
        );
        assert_eq!(d.members.len(), 1);
        let sync = SyncRequest {
            group: "g".into(),
            member_id: joined.member_id.clone(),
            generation: joined.generation,
            assignments: vec![MemberAssignment {
                member_id: joined.member_id,
                assignment: Bytes::from_static(b"a"),
                partitions: BTreeSet::new(),
            }],
            ..SyncRequest::default()
        };
        ctx.core.groups().sync(sync, &ctx.stop).await.unwrap();
        let d = described(&ctx);
        assert_eq!((d.group_state.as_str(), d.protocol_data.as_str()), ("Stable", "range"));
        assert_eq!(d.members[0].member_assignment, Bytes::from_static(b"a"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_commit_of_the_logical_earliest_or_latest_offset_stores_the_partitions_start_or_end() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        ctx.core.log().create_topic("t", 1, BTreeMap::new()).await.unwrap();
        let record = brooklet_core::NewRecord {
            partition: Some(0),
            value: Some(Bytes::from_static(b"v")),
            ..Default::default()
        };
        ctx.core.log().produce("t", vec![record; 3], None, None).await.unwrap();
        // Outside any generation, as a client resetting an empty group does.
        let commit = |offset: i64| {
            let p =
                OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset);
            let t = OffsetCommitRequestTopic::default().with_name(TopicName(s("t"))).with_partitions(vec![p]);
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![t])
        };
        let committed = |ctx: &Context| ctx.core.groups().committed("g", None).unwrap()[0].offset;
        for (offset, stored) in [(2, 2), (EARLIEST, 0), (LATEST, 3), (EARLIEST, 0)] {
            let response = offset_commit(&ctx, &Caller::NOBODY, commit(offset)).await;
            assert_eq!(response.topics[0].partitions[0].error_code, 0, "commit of {offset}");
            assert_eq!(committed(&ctx), stored, "commit of {offset}");
        }
        // Any other negative offset is refused, and the commit stays.
        let response = offset_commit(&ctx, &Caller::NOBODY, commit(-3)).await;
        assert_eq!(response.topics[0].partitions[0].error_code, ResponseError::OffsetOutOfRange.code());
        assert_eq!(committed(&ctx), 0);
        // A logical offset of a partition the topic lacks is refused as such.
        let mut unknown = commit(EARLIEST);
        unknown.topics[0].partitions[0].partition_index = 7;
        let response = offset_commit(&ctx, &Caller::NOBODY, unknown).await;
        assert_eq!(
            response.topics[0].partitions[0].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn delete_removes_groups_without_members_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let groups = ctx.core.groups();
        ctx.core.log().create_topic("t", 1, BTreeMap::new()).await.unwrap();
        let at_zero = [CommittedOffset { topic: "t".into(), partition: 0, offset: 0, metadata: None }];
        for group in ["idle", "live"] {
            let results = groups.commit_classic(group, "", None, -1, &at_zero).await.unwrap();
            assert!(results[0].is_ok());
        }
        let join = JoinRequest {
            group: "live".into(),
            client_id: "c".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocol_type: CONSUMER.into(),
            protocols: vec![ClassicProtocol { name: "range".into(), ..ClassicProtocol::default() }],
            ..JoinRequest::default()
        };
        groups.join(join, &ctx.stop).await.unwrap();
        let names = ["idle", "live", "missing", "", "idle"];
        let request =
            DeleteGroupsRequest::default().with_groups_names(names.iter().map(|n| GroupId(s(n))).collect());
        let results: Vec<(String, i16)> = delete_groups(&ctx, &Caller::NOBODY, &request)
            .await
            .results
            .into_iter()
            .map(|r| (r.group_id.0.to_string(), r.error_code))
            .collect();
        let expected = [
            ("idle", 0),
            ("live", ResponseError::NonEmptyGroup.code()),
            ("missing", ResponseError::GroupIdNotFound.code()),
            ("", ResponseError::InvalidGroupId.code()),
            ("idle", ResponseError::GroupIdNotFound.code()),
        ];
        assert_eq!(results, expected.map(|(g, code)| (g.to_owned(), code)));
        assert!(groups.committed("idle", None).unwrap().is_empty(), "its offsets are gone");
        assert_eq!(groups.committed("live", None).unwrap().len(), 1, "a group with members keeps them");
    }

    fn static_join(member_id: &str, instance: &str) -> JoinGroupRequest {
        let p =
            JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(Bytes::from_static(b"m"));
        JoinGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(text(member_id))
            .with_group_instance_id(Some(text(instance)))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![p])
    }

    #[tokio::test(start_paused = true)]
    async fn static_members_are_known_by_the_instance_ids_requests_carry() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        ctx.core.log().create_topic("t", 1, BTreeMap::new()).await.unwrap();
        // v5: a static member needs no member id round trip.
        let (ja, jb) = tokio::join!(
            join_group(&ctx, &Caller::NOBODY, 5, "c", "h", static_join("", "ia")),
            join_group(&ctx, &Caller::NOBODY, 5, "c", "h", static_join("", "ib"))
        );
        assert_eq!((ja.error_code, jb.error_code, ja.generation_id), (0, 0, 1));
        let mut instances: Vec<Option<StrBytes>> =
            ja.members.iter().map(|m| m.group_instance_id.clone()).collect();
        instances.sort();
        assert_eq!(instances, [Some(s("ia")), Some(s("ib"))], "the leader sees the instance ids");
        crate::frame::encode(ApiKey::JoinGroup, 5, 1, &ja).expect("encodes at v5");
        let (a, old_b) = (ja.member_id.clone(), jb.member_id.clone());
        let sync =
            |member: &StrBytes, instance: &'static str, assignments: Vec<SyncGroupRequestAssignment>| {
                SyncGroupRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_generation_id(1)
                    .with_member_id(member.clone())
                    .with_group_instance_id(Some(s(instance)))
                    .with_assignments(assignments)
            };
        let assignments = vec![
            SyncGroupRequestAssignment::default().with_member_id(a.clone()).with_assignment(Bytes::from("A")),
            SyncGroupRequestAssignment::default()
                .with_member_id(old_b.clone())
                .with_assignment(Bytes::from("B")),
        ];
        let (sa, sb) = tokio::join!(
            sync_group(&ctx, &Caller::NOBODY, 3, sync(&a, "ia", assignments)),
            sync_group(&ctx, &Caller::NOBODY, 3, sync(&old_b, "ib", vec![]))
        );
        assert_eq!((sa.error_code, sb.assignment), (0, Bytes::from("B")));

        // b restarts: a new id, the same generation and assignment.
        let jb = join_group(&ctx, &Caller::NOBODY, 5, "c", "h", static_join("", "ib")).await;
        assert_eq!((jb.error_code, jb.generation_id, jb.leader.clone()), (0, 1, a.clone()));
        assert_ne!(jb.member_id, old_b);
        let sb = sync_group(&ctx, &Caller::NOBODY, 3, sync(&jb.member_id, "ib", vec![])).await;
        assert_eq!((sb.error_code, sb.assignment), (0, Bytes::from("B")));

        // The old id, with its instance id: FENCED_INSTANCE_ID everywhere.
        let fenced = ResponseError::FencedInstanceId.code();
        assert_eq!(fenced, 82);
        let hb = |member: &StrBytes, instance: Option<StrBytes>| {
            HeartbeatRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id(1)
                .with_member_id(member.clone())
                .with_group_instance_id(instance)
        };
        assert_eq!(heartbeat(&ctx, &Caller::NOBODY, &hb(&old_b, Some(s("ib")))).error_code, fenced);
        assert_eq!(
            heartbeat(&ctx, &Caller::NOBODY, &hb(&old_b, None)).error_code,
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(heartbeat(&ctx, &Caller::NOBODY, &hb(&jb.member_id, Some(s("ib")))).error_code, 0);
        assert_eq!(
            heartbeat(&ctx, &Caller::NOBODY, &hb(&a, Some(s("ib")))).error_code,
            fenced,
            "another member's instance id"
        );
        assert_eq!(sync_group(&ctx, &Caller::NOBODY, 3, sync(&old_b, "ib", vec![])).await.error_code, fenced);
        assert_eq!(
            join_group(&ctx, &Caller::NOBODY, 5, "c", "h", static_join(old_b.as_str(), "ib"))
                .await
                .error_code,
            fenced
        );
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id_or_member_epoch(1)
            .with_member_id(old_b.clone())
            .with_group_instance_id(Some(s("ib")))
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()]),
            ]);
        let committed = offset_commit(&ctx, &Caller::NOBODY, commit).await;
        assert_eq!(committed.topics[0].partitions[0].error_code, fenced);
        let leave = |members: Vec<MemberIdentity>| {
            LeaveGroupRequest::default().with_group_id(GroupId(s("g"))).with_members(members)
        };
        let by = |member: &StrBytes, instance: &'static str| {
            MemberIdentity::default().with_member_id(member.clone()).with_group_instance_id(Some(s(instance)))
        };
        let left = leave_group(&ctx, &Caller::NOBODY, 3, &leave(vec![by(&old_b, "ib")]));
        assert_eq!(left.members[0].error_code, fenced);

        // DescribeGroups shows the instance ids from v4.
        let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]);
        for version in [3, 4] {
            let d = describe_groups(&ctx, &Caller::NOBODY, version, &request);
            crate::frame::encode(ApiKey::DescribeGroups, version, 1, &d).expect("encodes for its version");
            let mut shown: Vec<Option<StrBytes>> =
                d.groups[0].members.iter().map(|m| m.group_instance_id.clone()).collect();
            shown.sort();
            let expected = if version >= 4 { vec![Some(s("ia")), Some(s("ib"))] } else { vec![None, None] };
            assert_eq!(shown, expected, "v{version}");
        }

        // A static member leaves by its instance id alone; the group rebalances.
        let left = leave_group(
            &ctx,
            &Caller::NOBODY,
            3,
            &leave(vec![by(&StrBytes::default(), "ib"), by(&StrBytes::default(), "ix")]),
        );
        let codes: Vec<(Option<StrBytes>, i16)> =
            left.members.iter().map(|m| (m.group_instance_id.clone(), m.error_code)).collect();
        assert_eq!(codes, [(Some(s("ib")), 0), (Some(s("ix")), ResponseError::UnknownMemberId.code())]);
        assert_eq!(
            heartbeat(&ctx, &Caller::NOBODY, &hb(&a, Some(s("ia")))).error_code,
            ResponseError::RebalanceInProgress.code()
        );
        // An instance id Kafka's clients would not send is an invalid request.
        let bad = join_group(&ctx, &Caller::NOBODY, 5, "c", "h", static_join("", "a b")).await;
        assert_eq!(bad.error_code, ResponseError::InvalidRequest.code());
    }

    fn join_request(group: &str, protocol_type: &str, topics: &[&str]) -> JoinRequest {
        JoinRequest {
            group: group.into(),
            client_id: "c".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocol_type: protocol_type.into(),
            protocols: vec![ClassicProtocol {
                name: "range".into(),
                topics: topics.iter().map(|t| (*t).to_owned()).collect(),
                ..ClassicProtocol::default()
            }],
            ..JoinRequest::default()
        }
    }

    fn offset_delete_request(group: &str, topics: &[(&str, &[i32])]) -> OffsetDeleteRequest {
        use kafka_protocol::messages::offset_delete_request::{
            OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
        };
        let topics = topics
            .iter()
            .map(|(name, partitions)| {
                let partitions = partitions
                    .iter()
                    .map(|p| OffsetDeleteRequestPartition::default().with_partition_index(*p))
                    .collect();
                OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(text(name)))
                    .with_partitions(partitions)
            })
            .collect();
        OffsetDeleteRequest::default().with_group_id(GroupId(text(group))).with_topics(topics)
    }

    #[tokio::test(start_paused = true)]
    async fn offset_delete_keeps_the_offsets_of_subscribed_topics() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let groups = ctx.core.groups();
        ctx.core.log().create_topic("t", 1, BTreeMap::new()).await.unwrap();
        ctx.core.log().create_topic("u", 1, BTreeMap::new()).await.unwrap();
        let at_zero =
            |topic: &str| CommittedOffset { topic: topic.into(), partition: 0, offset: 0, metadata: None };
        for group in ["live", "connect"] {
            let results =
                groups.commit_classic(group, "", None, -1, &[at_zero("t"), at_zero("u")]).await.unwrap();
            assert!(results.iter().all(Result::is_ok));
        }
        let live = groups.join(join_request("live", CONSUMER, &["t"]), &ctx.stop).await.unwrap();
        groups.join(join_request("connect", "connect", &[]), &ctx.stop).await.unwrap();

        let request = offset_delete_request("live", &[("t", &[0]), ("u", &[0, 3, -1]), ("gone", &[0])]);
        let response = offset_delete(&ctx, &Caller::NOBODY, &request).await;
        assert_eq!(response.error_code, 0);
        let codes: Vec<(String, Vec<(i32, i16)>)> = response
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.0.to_string(),
                    t.partitions.iter().map(|p| (p.partition_index, p.error_code)).collect(),
                )
            })
            .collect();
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(
            codes,
            [
                ("t".to_owned(), vec![(0, ResponseError::GroupSubscribedToTopic.code())]),
                ("u".to_owned(), vec![(0, 0), (3, unknown), (-1, unknown)]),
                ("gone".to_owned(), vec![(0, unknown)]),
            ]
        );
        let left: Vec<String> =
            groups.committed("live", None).unwrap().into_iter().map(|c| c.topic).collect();
        assert_eq!(left, ["t"], "only the unsubscribed topic's offset went");

        let code = |r: OffsetDeleteResponse| (r.error_code, r.topics.len());
        assert_eq!(
            code(
                offset_delete(&ctx, &Caller::NOBODY, &offset_delete_request("connect", &[("u", &[0])])).await
            ),
            (ResponseError::NonEmptyGroup.code(), 0),
            "live members of another protocol: their topics are unknown"
        );
        assert_eq!(
            code(
                offset_delete(&ctx, &Caller::NOBODY, &offset_delete_request("missing", &[("t", &[0])])).await
            ),
            (ResponseError::GroupIdNotFound.code(), 0)
        );
        assert_eq!(
            code(offset_delete(&ctx, &Caller::NOBODY, &offset_delete_request("", &[("t", &[0])])).await),
            (ResponseError::InvalidGroupId.code(), 0)
        );
        // Once its member left, the group's remaining offset can go.
        groups.leave("live", &[Leaving::member(live.member_id)]).unwrap();
        let response =
            offset_delete(&ctx, &Caller::NOBODY, &offset_delete_request("live", &[("t", &[0])])).await;
        assert_eq!((response.error_code, response.topics[0].partitions[0].error_code), (0, 0));
        assert!(groups.committed("live", None).unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn list_groups_v5_names_each_groups_type_and_filters_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let groups = ctx.core.groups();
        ctx.core.log().create_topic("t", 1, BTreeMap::new()).await.unwrap();
        let at_zero = [CommittedOffset { topic: "t".into(), partition: 0, offset: 0, metadata: None }];
        for group in ["idle", "left"] {
            assert!(groups.commit_classic(group, "", None, -1, &at_zero).await.unwrap()[0].is_ok());
        }
        let left = groups.join(join_request("left", CONSUMER, &["t"]), &ctx.stop).await.unwrap();
        groups.join(join_request("live", CONSUMER, &["t"]), &ctx.stop).await.unwrap();
        let heartbeat = brooklet_core::Heartbeat {
            group: "grpc".into(),
            member_id: String::new(),
            member_epoch: 0,
            topics: vec!["t".into()],
            ..brooklet_core::Heartbeat::default()
        };
        groups.heartbeat(heartbeat).unwrap();
        groups.leave("left", &[Leaving::member(left.member_id)]).unwrap();

        let list = |version: i16, types: &[&'static str]| -> Vec<(String, String, String, String)> {
            let request =
                ListGroupsRequest::default().with_types_filter(types.iter().map(|t| s(t)).collect());
            let response = list_groups(&ctx, &Caller::NOBODY, version, &request);
            assert_eq!(response.error_code, 0);
            crate::frame::encode(ApiKey::ListGroups, version, 1, &response).expect("encodes for its version");
            response
                .groups
                .into_iter()
                .map(|g| {
                    (
                        g.group_id.0.to_string(),
                        g.group_state.to_string(),
                        g.protocol_type.to_string(),
                        g.group_type.to_string(),
                    )
                })
                .collect()
        };
        let row = |g: &str, state: &str, protocol_type: &str, kind: &str| {
            (g.to_owned(), state.to_owned(), protocol_type.to_owned(), kind.to_owned())
        };
        assert_eq!(
            list(5, &[]),
            [
                row("grpc", "Stable", "consumer", "consumer"),
                row("idle", "Empty", "", "classic"),
                // An emptied classic group keeps its protocol type.
                row("left", "Empty", "consumer", "classic"),
                row("live", "CompletingRebalance", "consumer", "classic"),
            ]
        );
        assert_eq!(list(5, &["Consumer"]), [row("grpc", "Stable", "consumer", "consumer")]);
        let classic: Vec<String> = list(5, &["classic"]).into_iter().map(|r| r.0).collect();
        assert_eq!(classic, ["idle", "left", "live"]);
        assert!(list(5, &["share"]).is_empty());
        assert_eq!(list(4, &[])[2], row("left", "Empty", "consumer", ""), "no type before v5");
        let request =
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("left")), GroupId(s("idle"))]);
        let described: Vec<(String, String)> = describe_groups(&ctx, &Caller::NOBODY, 5, &request)
            .groups
            .into_iter()
            .map(|g| (g.group_state.to_string(), g.protocol_type.to_string()))
            .collect();
        assert_eq!(
            described,
            [("Empty".to_owned(), "consumer".to_owned()), ("Empty".to_owned(), String::new())]
        );
    }

    fn consumer_bytes(version: i16, message: &impl Encodable) -> Bytes {
        let mut out = BytesMut::new();
        out.put_i16(version);
        message.encode(&mut out, version).unwrap();
        out.freeze()
    }

    #[test]
    fn consumer_subscriptions_and_assignments_are_read_and_bad_ones_ignored() {
        for v in 0..=3 {
            let mut sub = ConsumerProtocolSubscription::default().with_topics(vec![s("a"), s("b")]);
            if v >= 1 {
                sub.owned_partitions = vec![
                    OwnedPartitions::default().with_topic(TopicName(s("a"))).with_partitions(vec![0, 1]),
                ];
            }
            let bytes = consumer_bytes(v, &sub);
            assert_eq!(subscription_topics(CONSUMER, &bytes), vec!["a", "b"], "v{v}");
            assert!(subscription_topics("connect", &bytes).is_empty(), "only consumers are read");
            let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
                AssignedPartitions::default().with_topic(TopicName(s("a"))).with_partitions(vec![2, 0]),
            ]);
            let bytes = consumer_bytes(v, &assignment);
            let expected = BTreeSet::from([("a".to_owned(), 0), ("a".to_owned(), 2)]);
            assert_eq!(assignment_partitions(CONSUMER, &bytes), expected, "v{v}");
        }
        // Cut short, garbage, or claiming two billion topics: nothing read.
        let mut huge = BytesMut::new();
        huge.put_i16(0);
        huge.put_i32(i32::MAX);
        for bad in
            [Bytes::new(), Bytes::from_static(&[0]), Bytes::from_static(&[0, 0, 0, 0, 0, 9]), huge.freeze()]
        {
            assert!(subscription_topics(CONSUMER, &bad).is_empty());
            assert!(assignment_partitions(CONSUMER, &bad).is_empty());
        }
    }

    #[tokio::test]
    async fn a_transaction_coordinator_is_refused_with_an_error_clients_do_not_retry() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let refused = ResponseError::TransactionalIdAuthorizationFailed.code();
        let message = "transactions are not supported by this broker yet";
        for version in 0..=3 {
            let request = FindCoordinatorRequest::default().with_key(s("tx-1")).with_key_type(1);
            let response = find_coordinator(&ctx, &Caller::NOBODY, version, request);
            assert_eq!(response.error_code, refused, "v{version}");
            if version >= 1 {
                assert_eq!(response.error_message, Some(s(message)), "v{version}");
            }
        }
        let request =
            FindCoordinatorRequest::default().with_key_type(1).with_coordinator_keys(vec![s("tx-1")]);
        let coordinators = find_coordinator(&ctx, &Caller::NOBODY, 4, request).coordinators;
        assert_eq!(coordinators.len(), 1);
        assert_eq!(coordinators[0].error_code, refused);
        assert_eq!(coordinators[0].error_message, Some(s(message)));
        // A group's coordinator is this broker.
        let request = FindCoordinatorRequest::default().with_key(s("g"));
        assert_eq!(find_coordinator(&ctx, &Caller::NOBODY, 3, request).error_code, 0);
    }

    #[test]
    fn refusals_that_need_attention_are_told_from_protocol_steps() {
        let membership = |refusal| Error::Membership { refusal, reason: String::new() };
        assert_eq!(needs_attention(&membership(MembershipRefusal::FencedInstance)), Some("fenced instance"));
        assert_eq!(
            needs_attention(&membership(MembershipRefusal::InvalidSessionTimeout)),
            Some("invalid session timeout")
        );
        assert_eq!(
            needs_attention(&membership(MembershipRefusal::InconsistentProtocol)),
            Some("inconsistent protocol")
        );
        let conflict = Error::GroupKindConflict { group: "g".into(), in_use_by: GroupKind::Broker };
        assert_eq!(needs_attention(&conflict), Some("group kind conflict"));
        for step in [
            MembershipRefusal::MemberIdRequired { member_id: "m".into() },
            MembershipRefusal::RebalanceInProgress,
            MembershipRefusal::UnknownMember,
            MembershipRefusal::IllegalGeneration,
        ] {
            assert_eq!(needs_attention(&membership(step)), None);
        }
    }

    #[test]
    fn a_refusal_is_warned_of_once_a_minute_per_group_and_reason_in_a_bounded_map() {
        let mut warned = BTreeMap::new();
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert!(warn_now(&mut warned, "g", "fenced instance", at(0)));
        // A client retrying every 2 s is not warned of again within the minute.
        for secs in (2..60).step_by(2) {
            assert!(!warn_now(&mut warned, "g", "fenced instance", at(secs)), "{secs} s");
        }
        // Another reason, or another group, is.
        assert!(warn_now(&mut warned, "g", "group kind conflict", at(10)));
        assert!(warn_now(&mut warned, "h", "fenced instance", at(10)));
        // And the same again once the minute has passed.
        assert!(warn_now(&mut warned, "g", "fenced instance", at(60)));
        assert!(!warn_now(&mut warned, "g", "fenced instance", at(61)));
        // Many groups: the map stays bounded, forgetting the oldest.
        for i in 0..3 * WARNED_MAX as u64 {
            assert!(warn_now(&mut warned, &format!("many-{i}"), "fenced instance", at(100)));
        }
        assert!(warned.len() <= WARNED_MAX, "{}", warned.len());
        assert!(!warn_now(&mut warned, &format!("many-{}", 3 * WARNED_MAX - 1), "fenced instance", at(101)));
    }
}
