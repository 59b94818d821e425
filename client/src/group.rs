//! Consumer groups as [`Admin`](crate::Admin) shows them: [`GroupSummary`],
//! [`GroupDescription`] with its [`GroupMember`]s and per-partition
//! [`PartitionLag`], where [`ResetTo`] moves a group's offsets, and
//! [`TimeOffset`] for offsets by time. The conversions from the wire types
//! live here too, crate-private; nothing here talks to the broker.

use std::fmt;

use brooklet_proto::v1;

/// A consumer group's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GroupState {
    /// No live members: only committed offsets.
    Empty,
    /// Every member owns exactly the partitions the broker assigned it.
    Stable,
    /// Partitions are being handed over between members.
    Reconciling,
    /// A Kafka classic group gathers its members for the next generation.
    PreparingRebalance,
    /// A Kafka classic group waits for its leader's assignment.
    CompletingRebalance,
}

impl GroupState {
    pub(crate) fn from_proto(state: i32) -> Self {
        match v1::GroupState::try_from(state) {
            Ok(v1::GroupState::Empty) => GroupState::Empty,
            Ok(v1::GroupState::Stable) => GroupState::Stable,
            Ok(v1::GroupState::PreparingRebalance) => GroupState::PreparingRebalance,
            Ok(v1::GroupState::CompletingRebalance) => GroupState::CompletingRebalance,
            // A state this client does not know is not known to be settled.
            Ok(v1::GroupState::Reconciling | v1::GroupState::Unspecified) | Err(_) => GroupState::Reconciling,
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GroupState::Empty => "empty",
            GroupState::Stable => "stable",
            GroupState::Reconciling => "reconciling",
            GroupState::PreparingRebalance => "preparing-rebalance",
            GroupState::CompletingRebalance => "completing-rebalance",
        })
    }
}

/// One group as [`Admin::list_groups`](crate::Admin::list_groups) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupSummary {
    /// The group id.
    pub group: String,
    /// Its state.
    pub state: GroupState,
    /// How many live members it has.
    pub members: u32,
}

impl GroupSummary {
    pub(crate) fn from_proto(summary: v1::GroupSummary) -> Self {
        Self { state: GroupState::from_proto(summary.state), group: summary.group, members: summary.members }
    }
}

/// A live member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupMember {
    /// The id the broker gave the member.
    pub member_id: String,
    /// The client id the member sent.
    pub client_id: String,
    /// The member's address as the broker saw it.
    pub host: String,
    /// The member's epoch: it grows each time its assignment changes.
    pub member_epoch: i32,
    /// The topics it subscribes to, ordered.
    pub topics: Vec<String>,
    /// The partitions it owns, ordered.
    pub assignment: Vec<(String, u32)>,
    /// A Kafka static member's `group.instance.id`.
    pub group_instance_id: Option<String>,
}

impl GroupMember {
    fn from_proto(member: v1::GroupMember) -> Self {
        let mut topics = member.topics;
        topics.sort();
        Self {
            member_id: member.member_id,
            client_id: member.client_id,
            host: member.host,
            member_epoch: member.member_epoch,
            topics,
            assignment: topic_partitions_in(member.assignment),
            group_instance_id: member.group_instance_id,
        }
    }
}

/// A group's position, and how far behind it is, in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The group's committed offset; `None` when it has committed none.
    pub committed_offset: Option<u64>,
    /// The partition's high watermark.
    pub high_watermark: u64,
    /// Records between the committed offset (or the log start, without a
    /// commit) and the high watermark.
    pub lag: u64,
    /// The member that owns the partition, if one does.
    pub member_id: Option<String>,
}

/// A group as [`Admin::describe_group`](crate::Admin::describe_group) shows
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupDescription {
    /// The group id.
    pub group: String,
    /// Its state.
    pub state: GroupState,
    /// The group's epoch: it grows with each change of membership or
    /// subscriptions.
    pub epoch: i32,
    /// Live members, ordered by member id.
    pub members: Vec<GroupMember>,
    /// Per partition the group subscribes to or committed for, ordered by
    /// topic and partition.
    pub partitions: Vec<PartitionLag>,
    /// Which kind of members it has: `None` without live members, `"broker"`
    /// when the broker assigns (this client's groups), `"kafka-classic"` for
    /// Kafka clients' groups.
    pub kind: Option<&'static str>,
    /// A Kafka group's protocol type and chosen protocol (empty otherwise).
    pub protocol_type: String,
    /// The protocol (assignor) a Kafka group's members chose.
    pub protocol: String,
}

impl GroupDescription {
    pub(crate) fn from_proto(response: v1::DescribeGroupResponse) -> Self {
        let mut members: Vec<GroupMember> =
            response.members.into_iter().map(GroupMember::from_proto).collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        let mut partitions: Vec<PartitionLag> = response
            .partitions
            .into_iter()
            .map(|p| PartitionLag {
                topic: p.topic,
                partition: p.partition,
                committed_offset: p.committed_offset,
                high_watermark: p.high_watermark,
                lag: p.lag,
                member_id: (!p.member_id.is_empty()).then_some(p.member_id),
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Self {
            group: response.group,
            state: GroupState::from_proto(response.state),
            epoch: response.group_epoch,
            members,
            partitions,
            kind: match v1::GroupKind::try_from(response.kind) {
                Ok(v1::GroupKind::Broker) => Some("broker"),
                Ok(v1::GroupKind::KafkaClassic) => Some("kafka-classic"),
                Ok(v1::GroupKind::Unspecified) | Err(_) => None,
            },
            protocol_type: response.protocol_type,
            protocol: response.protocol,
        }
    }
}

/// Where [`Admin::reset_offsets`](crate::Admin::reset_offsets) moves a
/// group's committed offsets, on every partition of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResetTo {
    /// Each partition's log start.
    Earliest,
    /// Each partition's high watermark: the group skips what is there now.
    Latest,
    /// This offset on every partition; it must lie within each partition's
    /// log.
    Offset(u64),
    /// The first offset whose record timestamp is at or after this time, in
    /// milliseconds since the Unix epoch (the high watermark where there is
    /// none).
    Timestamp(i64),
}

impl ResetTo {
    pub(crate) fn into_proto(self) -> v1::reset_offsets_request::To {
        use v1::reset_offsets_request::To;
        match self {
            ResetTo::Earliest => To::Earliest(true),
            ResetTo::Latest => To::Latest(true),
            ResetTo::Offset(offset) => To::Offset(offset),
            ResetTo::Timestamp(ms) => To::TimestampMs(ms),
        }
    }
}

/// The answer of [`Admin::offsets_for_time`](crate::Admin::offsets_for_time)
/// for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeOffset {
    /// The partition.
    pub partition: u32,
    /// The earliest offset whose record timestamp is at or after the time
    /// asked; the high watermark when no record is.
    pub offset: u64,
    /// The timestamp of the record at `offset`; `None` when no record is at
    /// or after the time.
    pub timestamp_ms: Option<i64>,
}

impl TimeOffset {
    pub(crate) fn from_proto(offset: v1::PartitionTimestampOffset) -> Self {
        Self { partition: offset.partition, offset: offset.offset, timestamp_ms: offset.timestamp_ms }
    }
}

/// Flattens the wire's per-topic partition lists into ordered pairs.
pub(crate) fn topic_partitions_in(lists: Vec<v1::TopicPartitions>) -> Vec<(String, u32)> {
    let mut pairs: Vec<(String, u32)> = lists
        .into_iter()
        .flat_map(|list| {
            let topic = list.topic;
            list.partitions.into_iter().map(move |p| (topic.clone(), p))
        })
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

/// Groups ordered pairs into the wire's per-topic partition lists.
pub(crate) fn topic_partitions_out<'a>(
    pairs: impl IntoIterator<Item = &'a (String, u32)>,
) -> Vec<v1::TopicPartitions> {
    let mut lists: Vec<v1::TopicPartitions> = Vec::new();
    for (topic, partition) in pairs {
        match lists.last_mut() {
            Some(list) if list.topic == *topic => list.partitions.push(*partition),
            _ => lists.push(v1::TopicPartitions { topic: topic.clone(), partitions: vec![*partition] }),
        }
    }
    lists
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_display_in_lowercase_and_unknown_ones_are_not_stable() {
        assert_eq!(GroupState::Empty.to_string(), "empty");
        assert_eq!(GroupState::Stable.to_string(), "stable");
        assert_eq!(GroupState::Reconciling.to_string(), "reconciling");
        assert_eq!(GroupState::from_proto(v1::GroupState::Stable as i32), GroupState::Stable);
        let preparing = GroupState::from_proto(v1::GroupState::PreparingRebalance as i32);
        assert_eq!(
            (preparing, preparing.to_string().as_str()),
            (GroupState::PreparingRebalance, "preparing-rebalance")
        );
        let completing = GroupState::from_proto(v1::GroupState::CompletingRebalance as i32);
        assert_eq!(completing.to_string(), "completing-rebalance");
        assert_eq!(GroupState::from_proto(0), GroupState::Reconciling);
        assert_eq!(GroupState::from_proto(99), GroupState::Reconciling);
    }

    #[test]
    fn topic_partitions_round_trip_in_order() {
        let pairs = vec![("a".to_owned(), 0), ("a".to_owned(), 2), ("b".to_owned(), 1)];
        let lists = topic_partitions_out(&pairs);
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[0].partitions, [0, 2]);
        let mut shuffled = lists;
        shuffled.reverse();
        assert_eq!(topic_partitions_in(shuffled), pairs);
    }

    #[test]
    fn an_unowned_partition_has_no_member() {
        let response = v1::DescribeGroupResponse {
            group: "g".into(),
            state: v1::GroupState::Empty as i32,
            group_epoch: 3,
            members: vec![],
            kind: v1::GroupKind::Unspecified as i32,
            protocol_type: String::new(),
            protocol: String::new(),
            partitions: vec![
                v1::PartitionLag {
                    topic: "t".into(),
                    partition: 1,
                    committed_offset: None,
                    high_watermark: 5,
                    lag: 5,
                    member_id: String::new(),
                },
                v1::PartitionLag {
                    topic: "t".into(),
                    partition: 0,
                    committed_offset: Some(2),
                    high_watermark: 5,
                    lag: 3,
                    member_id: "m".into(),
                },
            ],
        };
        let d = GroupDescription::from_proto(response);
        assert_eq!((d.state, d.epoch), (GroupState::Empty, 3));
        assert_eq!(d.partitions[0].member_id.as_deref(), Some("m"));
        assert_eq!(d.partitions[1].member_id, None);
    }
}
