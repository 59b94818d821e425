//! Conversions between `brooklet.v1` messages and the core's types.

use brooklet_proto::v1 as pb;

use std::collections::{BTreeMap, BTreeSet};

use brooklet_core::{
    Acl, CommittedOffset, Error, GroupDescription, GroupKind, GroupState, Header, NewRecord, Operation,
    PartitionState, PatternType, Permission, ResourceType, StoredRecords, TopicInfo, TopicPartition,
};

use crate::wire;

pub(super) fn topic_info(t: TopicInfo) -> pb::TopicInfo {
    pb::TopicInfo {
        name: t.name,
        topic_id: t.id.to_string(),
        partitions: t.partitions,
        config: t.config.into_iter().collect(),
    }
}

pub(super) fn partition_info(p: PartitionState) -> pb::PartitionInfo {
    pb::PartitionInfo {
        partition: p.partition,
        log_start_offset: p.log_start,
        high_watermark: p.high_watermark,
    }
}

/// A produced record. `brooklet.v1` has no null value: an empty value is the
/// API's tombstone, so it becomes the core's null.
pub(super) fn new_record(r: pb::ProduceRecord) -> NewRecord {
    NewRecord {
        partition: r.partition,
        timestamp_ms: r.timestamp_ms,
        key: r.key,
        value: (!r.value.is_empty()).then_some(r.value),
        headers: r.headers.into_iter().map(|h| Header { name: h.name, value: h.value }).collect(),
    }
}

/// A batch as read, served with its records' stored encodings.
pub(super) fn batch(partition: u32, b: StoredRecords) -> wire::RecordBatch {
    wire::RecordBatch { partition, base_offset: b.base_offset(), records: b.encodings().cloned().collect() }
}

pub(super) fn committed_offset(o: pb::PartitionOffset) -> CommittedOffset {
    CommittedOffset { topic: o.topic, partition: o.partition, offset: o.offset, metadata: o.metadata }
}

pub(super) fn partition_offset(o: CommittedOffset) -> pb::PartitionOffset {
    pb::PartitionOffset { topic: o.topic, partition: o.partition, offset: o.offset, metadata: o.metadata }
}

pub(super) fn topic_partitions_in(tps: Vec<pb::TopicPartitions>) -> BTreeSet<TopicPartition> {
    tps.into_iter().flat_map(|tp| tp.partitions.into_iter().map(move |p| (tp.topic.clone(), p))).collect()
}

pub(super) fn topic_partitions_out<'a>(
    tps: impl IntoIterator<Item = &'a TopicPartition>,
) -> Vec<pb::TopicPartitions> {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (topic, partition) in tps {
        by_topic.entry(topic).or_default().push(*partition);
    }
    by_topic
        .into_iter()
        .map(|(topic, partitions)| pb::TopicPartitions { topic: topic.to_owned(), partitions })
        .collect()
}

pub(super) fn group_state(state: GroupState) -> pb::GroupState {
    match state {
        GroupState::Empty => pb::GroupState::Empty,
        GroupState::Stable => pb::GroupState::Stable,
        GroupState::Reconciling => pb::GroupState::Reconciling,
        GroupState::PreparingRebalance => pb::GroupState::PreparingRebalance,
        GroupState::CompletingRebalance => pb::GroupState::CompletingRebalance,
    }
}

pub(super) fn group_description(group: String, d: GroupDescription) -> pb::DescribeGroupResponse {
    pb::DescribeGroupResponse {
        group,
        state: group_state(d.info.state).into(),
        group_epoch: d.info.epoch,
        kind: match d.info.kind {
            None => pb::GroupKind::Unspecified,
            Some(GroupKind::Broker) => pb::GroupKind::Broker,
            Some(GroupKind::Classic) => pb::GroupKind::KafkaClassic,
        }
        .into(),
        protocol_type: d.info.protocol_type,
        protocol: d.info.protocol,
        members: d
            .info
            .members
            .into_iter()
            .map(|m| pb::GroupMember {
                assignment: topic_partitions_out(&m.assignment),
                member_id: m.member_id,
                client_id: m.client_id,
                host: m.host,
                member_epoch: m.member_epoch,
                topics: m.topics.into_iter().collect(),
                group_instance_id: m.group_instance_id,
            })
            .collect(),
        partitions: d
            .partitions
            .into_iter()
            .map(|p| pb::PartitionLag {
                topic: p.topic,
                partition: p.partition,
                committed_offset: p.committed,
                high_watermark: p.high_watermark,
                lag: p.lag,
                member_id: p.owner.unwrap_or_default(),
            })
            .collect(),
    }
}

/// The core's entry for `acl`, checked: an unknown name is an invalid
/// argument naming its field; an empty pattern is literal, an empty
/// permission allow.
pub(super) fn acl_in(acl: Option<pb::Acl>) -> Result<Acl, Error> {
    let acl = acl.ok_or_else(|| Error::invalid("acl", "is required"))?;
    let resource_type = ResourceType::from_name(&acl.resource_type).ok_or_else(|| {
        Error::invalid(
            "acl.resource_type",
            format!("`{}` is not one of topic, group, cluster", acl.resource_type),
        )
    })?;
    let pattern = match acl.pattern.as_str() {
        "" => PatternType::Literal,
        name => PatternType::from_name(name).ok_or_else(|| {
            Error::invalid("acl.pattern", format!("`{name}` is not one of literal, prefixed"))
        })?,
    };
    let operation = Operation::from_name(&acl.operation).ok_or_else(|| {
        Error::invalid(
            "acl.operation",
            format!("`{}` is not one of read, write, create, delete, describe, alter, all", acl.operation),
        )
    })?;
    let permission = match acl.permission.as_str() {
        "" => Permission::Allow,
        name => Permission::from_name(name)
            .ok_or_else(|| Error::invalid("acl.permission", format!("`{name}` is not one of allow, deny")))?,
    };
    Acl::new(&acl.principal, resource_type, pattern, &acl.name, operation, permission).map_err(|e| match e {
        Error::InvalidArgument { field, reason } => Error::invalid(format!("acl.{field}"), reason),
        other => other,
    })
}

pub(super) fn acl_out(acl: &Acl) -> pb::Acl {
    pb::Acl {
        principal: acl.principal().to_owned(),
        resource_type: acl.resource_type().name().to_owned(),
        pattern: acl.pattern().name().to_owned(),
        name: acl.name().to_owned(),
        operation: acl.operation().name().to_owned(),
        permission: acl.permission().name().to_owned(),
    }
}
