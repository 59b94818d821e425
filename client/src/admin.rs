//! Topic administration, consumer groups and offsets: [`Admin`]. The producer
//! and consumer reuse it for partition metadata and committed offsets, so
//! every admin RPC is written once, here (the group types and their
//! conversions live in `group`).

use std::collections::BTreeMap;
use std::time::Duration;

use brooklet_proto::v1;

use crate::acl::{AclEntry, AclFilter};
use crate::breaker::Breakers;
use crate::connection::{CallOptions, Connection, ConnectionConfig};
use crate::error::{Error, Op, Result};
use crate::group::{GroupDescription, GroupState, GroupSummary, ResetTo, TimeOffset};

/// A client for topic administration, consumer groups and committed offsets.
///
/// Cheap to clone; clones share one connection. Reads, offset commits and
/// resets are retried while the broker is unreachable, up to the request
/// timeout; creating and deleting topics and groups are not, because a
/// repeated attempt could report `TopicExists`, `TopicNotFound` or
/// `GroupNotFound` for work the first one did.
#[derive(Debug, Clone)]
pub struct Admin {
    pub(crate) conn: Connection,
}

/// What [`Admin::status`] returns.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BrokerStatus {
    /// The broker's version.
    pub version: String,
    /// Time since the broker started.
    pub uptime: Duration,
    /// Its data directory.
    pub data_dir: String,
    /// Bytes of the storage engine's files.
    pub disk_bytes: u64,
    /// Free bytes on the data directory's file system.
    pub disk_free_bytes: u64,
    /// Every topic.
    pub topics: Vec<TopicStatus>,
    /// Every group with live members or committed offsets.
    pub groups: Vec<GroupStatus>,
    /// Where the broker serves: gRPC, Kafka if on, metrics if on.
    pub listeners: Vec<ListenerStatus>,
}

/// A listener in [`BrokerStatus`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListenerStatus {
    /// `grpc`, `kafka` or `metrics`.
    pub name: String,
    /// The address it is bound to, `host:port`.
    pub address: String,
}

/// A topic in [`BrokerStatus`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TopicStatus {
    /// Name.
    pub name: String,
    /// Partition count.
    pub partitions: u32,
    /// Records between the log starts and the high watermarks.
    pub records: u64,
    /// Bytes of stored batches.
    pub stored_bytes: u64,
}

/// A group in [`BrokerStatus`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GroupStatus {
    /// Group id.
    pub group: String,
    /// State.
    pub state: GroupState,
    /// Live members.
    pub members: u32,
    /// Records the group has yet to commit, over all its partitions.
    pub total_lag: u64,
}

/// Configures an [`Admin`] before connecting.
#[derive(Debug, Clone)]
pub struct AdminBuilder {
    conn: ConnectionConfig,
}

impl AdminBuilder {
    /// Time allowed for one call, retries included (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.conn.request_timeout = timeout;
        self
    }

    /// Time allowed to open the TCP connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.conn.connect_timeout = timeout;
        self
    }

    crate::connection::endpoint_settings!();

    /// Builds the client. It connects on its first call, so this succeeds
    /// while the broker is down.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] for an unusable endpoint,
    /// [`Error::InvalidArgument`] for a zero timeout.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn build(self) -> Result<Admin> {
        Ok(Admin { conn: self.conn.connect()? })
    }
}

/// A topic to create: its partition count and configuration.
///
/// ```
/// use brooklet_client::NewTopic;
///
/// let topic = NewTopic::new(8).config("max.message.bytes", "1048576");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The number of partitions; 0 means the broker's default of 1.
    pub partitions: u32,
    /// Configuration entries; see `docs/api.md` for the accepted keys.
    pub config: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and no configuration.
    pub fn new(partitions: u32) -> Self {
        Self { partitions, config: BTreeMap::new() }
    }

    /// Adds a configuration entry.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }
}

/// A topic as the broker knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// A UUID fixed at creation: a re-created topic of the same name gets a
    /// new one.
    pub topic_id: String,
    /// The number of partitions.
    pub partitions: u32,
    /// The topic's configuration.
    pub config: BTreeMap<String, String>,
}

impl TopicInfo {
    fn from_proto(topic: v1::TopicInfo) -> Self {
        Self {
            name: topic.name,
            topic_id: topic.topic_id,
            partitions: topic.partitions,
            config: topic.config.into_iter().collect(),
        }
    }
}

/// A topic with the offsets of each of its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicDescription {
    /// The topic itself.
    pub info: TopicInfo,
    /// Its partitions, in partition order.
    pub partitions: Vec<PartitionOffsets>,
}

impl TopicDescription {
    /// The offsets of `partition`, if the topic has it.
    pub fn partition(&self, partition: u32) -> Option<&PartitionOffsets> {
        self.partitions.iter().find(|p| p.partition == partition)
    }
}

/// The bounds of one partition's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionOffsets {
    /// The partition.
    pub partition: u32,
    /// The first offset still in the log.
    pub log_start_offset: u64,
    /// The offset the next appended record will get.
    pub high_watermark: u64,
}

/// A consumer group's position in one partition: the next offset the group
/// will read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The next offset to read.
    pub offset: u64,
    /// Free-form text stored with the offset.
    pub metadata: Option<String>,
}

impl CommittedOffset {
    /// The offset `offset` for `topic`/`partition`, without metadata.
    pub fn new(topic: impl Into<String>, partition: u32, offset: u64) -> Self {
        Self { topic: topic.into(), partition, offset, metadata: None }
    }

    /// Attaches free-form metadata.
    pub fn metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = Some(metadata.into());
        self
    }

    pub(crate) fn from_proto(offset: v1::PartitionOffset) -> Self {
        Self {
            topic: offset.topic,
            partition: offset.partition,
            offset: offset.offset,
            metadata: offset.metadata,
        }
    }

    pub(crate) fn to_proto(&self) -> v1::PartitionOffset {
        v1::PartitionOffset {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            metadata: self.metadata.clone(),
        }
    }
}

impl Admin {
    /// An admin client for the broker at `endpoint` (`http://host:port`, or
    /// just `host:port`), with default timeouts. See [`Admin::builder`].
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] for an unusable endpoint.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn connect(endpoint: impl Into<String>) -> Result<Admin> {
        Admin::builder(endpoint).build()
    }

    /// Configures an admin client for the broker at `endpoint`, or at the
    /// first reachable of a comma-separated list of endpoints (see
    /// [`AdminBuilder::endpoints`]).
    pub fn builder(endpoint: impl Into<String>) -> AdminBuilder {
        AdminBuilder { conn: ConnectionConfig::new(endpoint.into()) }
    }

    /// The circuit breakers of the client's endpoints: their states, and a
    /// watch of them.
    pub fn breakers(&self) -> Breakers {
        self.conn.breakers()
    }

    /// Creates a topic.
    ///
    /// # Errors
    /// [`Error::TopicExists`] if the name is taken; [`Error::InvalidArgument`]
    /// for a bad name, partition count or config entry.
    pub async fn create_topic(&self, name: &str, topic: NewTopic) -> Result<TopicInfo> {
        let opts = CallOptions { topic: Some(name), ..CallOptions::new(Op::CreateTopic) };
        let request = v1::CreateTopicRequest {
            name: name.to_owned(),
            partitions: topic.partitions,
            config: topic.config.into_iter().collect(),
        };
        let response = self
            .conn
            .call(opts, request, |req| {
                let mut client = self.conn.admin();
                async move { client.create_topic(req).await }
            })
            .await?;
        let topic = response.topic.ok_or_else(|| Error::protocol(Op::CreateTopic, "no topic"))?;
        Ok(TopicInfo::from_proto(topic))
    }

    /// Creates a topic unless one of that name exists: `true` if this call
    /// created it, `false` if it was there already (whatever its partitions
    /// and config). For services that declare the topics they use at start.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name, partition count or config
    /// entry.
    pub async fn create_topic_if_missing(&self, name: &str, topic: NewTopic) -> Result<bool> {
        match self.create_topic(name, topic).await {
            Ok(_) => Ok(true),
            Err(Error::TopicExists { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Changes a topic's configuration: `set` entries are added or replaced,
    /// `remove` keys return to their defaults. The result is validated as a
    /// whole; a refused change changes nothing. Safe to retry.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`] if there is no such topic;
    /// [`Error::InvalidArgument`] naming the key and what it accepts.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: &[(&str, &str)],
        remove: &[&str],
    ) -> Result<TopicInfo> {
        let opts = CallOptions { topic: Some(name), retry: true, ..CallOptions::new(Op::AlterTopicConfig) };
        let request = v1::AlterTopicConfigRequest {
            name: name.to_owned(),
            set: set.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            remove: remove.iter().map(|k| (*k).to_owned()).collect(),
        };
        let response = self
            .conn
            .call(opts, request, |req| {
                let mut client = self.conn.admin();
                async move { client.alter_topic_config(req).await }
            })
            .await?;
        let topic = response.topic.ok_or_else(|| Error::protocol(Op::AlterTopicConfig, "no topic"))?;
        Ok(TopicInfo::from_proto(topic))
    }

    /// The broker at a glance: version, uptime, disk use, listeners, topics
    /// with their sizes, groups with their total lag.
    pub async fn status(&self) -> Result<BrokerStatus> {
        let opts = CallOptions { retry: true, ..CallOptions::new(Op::Status) };
        let r = self
            .conn
            .call(opts, v1::StatusRequest {}, |req| {
                let mut client = self.conn.admin();
                async move { client.status(req).await }
            })
            .await?;
        Ok(BrokerStatus {
            version: r.version,
            uptime: Duration::from_millis(r.uptime_ms),
            data_dir: r.data_dir,
            disk_bytes: r.disk_bytes,
            disk_free_bytes: r.disk_free_bytes,
            topics: r
                .topics
                .into_iter()
                .map(|t| TopicStatus {
                    name: t.name,
                    partitions: t.partitions,
                    records: t.records,
                    stored_bytes: t.stored_bytes,
                })
                .collect(),
            groups: r
                .groups
                .into_iter()
                .map(|g| GroupStatus {
                    state: GroupState::from_proto(g.state),
                    group: g.group,
                    members: g.members,
                    total_lag: g.total_lag,
                })
                .collect(),
            listeners: r
                .listeners
                .into_iter()
                .map(|l| ListenerStatus { name: l.name, address: l.address })
                .collect(),
        })
    }

    /// Deletes a topic with its records and committed offsets.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`] if there is no such topic.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let opts = CallOptions { topic: Some(name), ..CallOptions::new(Op::DeleteTopic) };
        let request = v1::DeleteTopicRequest { name: name.to_owned() };
        self.conn
            .call(opts, request, |req| {
                let mut client = self.conn.admin();
                async move { client.delete_topic(req).await }
            })
            .await?;
        Ok(())
    }

    /// Adds a user with `password` (stored salted, never in clear).
    ///
    /// # Errors
    /// [`Error::Broker`] with `ALREADY_EXISTS` if the name is taken,
    /// `INVALID_ARGUMENT` for a bad name or password.
    pub async fn create_user(&self, name: &str, password: &str) -> Result<()> {
        let request = v1::CreateUserRequest { name: name.to_owned(), password: password.to_owned() };
        self.conn
            .call(CallOptions::new(Op::CreateUser), request, |req| {
                let mut client = self.conn.admin();
                async move { client.create_user(req).await }
            })
            .await?;
        Ok(())
    }

    /// Deletes a user.
    ///
    /// # Errors
    /// [`Error::Broker`] with `NOT_FOUND` if there is no such user.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        let request = v1::DeleteUserRequest { name: name.to_owned() };
        self.conn
            .call(CallOptions::new(Op::DeleteUser), request, |req| {
                let mut client = self.conn.admin();
                async move { client.delete_user(req).await }
            })
            .await?;
        Ok(())
    }

    /// Replaces a user's password.
    ///
    /// # Errors
    /// [`Error::Broker`] with `NOT_FOUND` if there is no such user.
    pub async fn set_user_password(&self, name: &str, password: &str) -> Result<()> {
        let request = v1::SetUserPasswordRequest { name: name.to_owned(), password: password.to_owned() };
        self.conn
            .call(CallOptions::new(Op::SetUserPassword), request, |req| {
                let mut client = self.conn.admin();
                async move { client.set_user_password(req).await }
            })
            .await?;
        Ok(())
    }

    /// Every user's name, ordered, with the SASL mechanisms of its
    /// credentials.
    pub async fn list_users(&self) -> Result<Vec<(String, Vec<String>)>> {
        let opts = CallOptions { retry: true, ..CallOptions::new(Op::ListUsers) };
        let response = self
            .conn
            .call(opts, v1::ListUsersRequest {}, |req| {
                let mut client = self.conn.admin();
                async move { client.list_users(req).await }
            })
            .await?;
        Ok(response.users.into_iter().map(|u| (u.name, u.mechanisms)).collect())
    }

    /// Adds an access-control entry: `true` if this call added it, `false`
    /// if it was there already. Safe to retry.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the bad field (a principal that is
    /// not a user name, a cluster entry with a name, a prefixed `*`…).
    pub async fn create_acl(&self, entry: &AclEntry) -> Result<bool> {
        let opts = CallOptions { retry: true, ..CallOptions::new(Op::CreateAcl) };
        let request = v1::CreateAclRequest { acl: Some(entry.to_proto()) };
        let response = self
            .conn
            .call(opts, request, |req| {
                let mut client = self.conn.admin();
                async move { client.create_acl(req).await }
            })
            .await?;
        Ok(response.created)
    }

    /// Removes an access-control entry; every field must match.
    ///
    /// # Errors
    /// [`Error::Broker`] with `NOT_FOUND` if there is no such entry;
    /// [`Error::InvalidArgument`] naming a bad field.
    pub async fn delete_acl(&self, entry: &AclEntry) -> Result<()> {
        let request = v1::DeleteAclRequest { acl: Some(entry.to_proto()) };
        self.conn
            .call(CallOptions::new(Op::DeleteAcl), request, |req| {
                let mut client = self.conn.admin();
                async move { client.delete_acl(req).await }
            })
            .await?;
        Ok(())
    }

    /// The access-control entries `filter` matches, sorted as the broker
    /// keeps them.
    pub async fn list_acls(&self, filter: &AclFilter) -> Result<Vec<AclEntry>> {
        let opts = CallOptions { retry: true, ..CallOptions::new(Op::ListAcls) };
        let response = self
            .conn
            .call(opts, filter.to_proto(), |req| {
                let mut client = self.conn.admin();
                async move { client.list_acls(req).await }
            })
            .await?;
        response.acls.into_iter().map(AclEntry::from_proto).collect()
    }

    /// Lists every topic, ordered by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let opts = CallOptions { retry: true, ..CallOptions::new(Op::ListTopics) };
        let response = self
            .conn
            .call(opts, v1::ListTopicsRequest {}, |req| {
                let mut client = self.conn.admin();
                async move { client.list_topics(req).await }
            })
            .await?;
        Ok(response.topics.into_iter().map(TopicInfo::from_proto).collect())
    }

    /// Describes a topic and the offsets of its partitions.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`] if there is no such topic.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let opts = CallOptions { topic: Some(name), retry: true, ..CallOptions::new(Op::DescribeTopic) };
        let request = v1::DescribeTopicRequest { name: name.to_owned() };
        let response = self
            .conn
            .call(opts, request, |req| {
                let mut client = self.conn.admin();
                async move { client.describe_topic(req).await }
            })
            .await?;
        let info = response.topic.ok_or_else(|| Error::protocol(Op::DescribeTopic, "no topic"))?;
        let mut partitions: Vec<_> = response
            .partitions
            .into_iter()
            .map(|p| PartitionOffsets {
                partition: p.partition,
                log_start_offset: p.log_start_offset,
                high_watermark: p.high_watermark,
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        Ok(TopicDescription { info: TopicInfo::from_proto(info), partitions })
    }

    /// Stores `offsets` for `group`, all or none. Retried while the broker is
    /// unreachable, since committing the same offsets twice is harmless.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`] for an unknown topic (when all offsets name
    /// one topic; across topics, an [`Error::Broker`] with code `NotFound`);
    /// [`Error::InvalidArgument`] for a bad partition, group id or metadata;
    /// [`Error::OffsetOutOfRange`] for an offset above the high watermark.
    pub async fn commit_offsets(&self, group: &str, offsets: &[CommittedOffset]) -> Result<()> {
        let topic = single_topic(offsets);
        let opts = CallOptions { topic, retry: true, ..CallOptions::new(Op::CommitOffsets) };
        let request = v1::CommitOffsetsRequest {
            group: group.to_owned(),
            offsets: offsets.iter().map(CommittedOffset::to_proto).collect(),
            // An outside commit: the broker accepts it only while the group
            // has no live members.
            member_id: String::new(),
            member_epoch: 0,
        };
        self.conn
            .call(opts, request, |req| {
                let mut client = self.conn.group();
                async move { client.commit_offsets(req).await }
            })
            .await?;
        Ok(())
    }

    /// The offsets `group` committed, for `topic` or (with `None`) for every
    /// topic. Partitions without a commit are left out.
    pub async fn fetch_offsets(&self, group: &str, topic: Option<&str>) -> Result<Vec<CommittedOffset>> {
        let opts = CallOptions { topic, retry: true, ..CallOptions::new(Op::FetchOffsets) };
        let request =
            v1::FetchOffsetsRequest { group: group.to_owned(), topic: topic.unwrap_or_default().to_owned() };
        let response = self
            .conn
            .call(opts, request, |req| {
                let mut client = self.conn.group();
                async move { client.fetch_offsets(req).await }
            })
            .await?;
        Ok(response.offsets.into_iter().map(CommittedOffset::from_proto).collect())
    }
}

impl Admin {
    /// Every group with live members or committed offsets, ordered by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        let opts = CallOptions { retry: true, ..CallOptions::new(Op::ListGroups) };
        let response = self
            .conn
            .call(opts, v1::ListGroupsRequest {}, |req| {
                let mut client = self.conn.group();
                async move { client.list_groups(req).await }
            })
            .await?;
        let mut groups: Vec<GroupSummary> =
            response.groups.into_iter().map(GroupSummary::from_proto).collect();
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(groups)
    }

    /// A group's state, its members and what each owns, and per partition
    /// its committed offset and lag.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`] for a group with neither live members nor
    /// committed offsets; [`Error::InvalidArgument`] for a bad group id.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let opts = CallOptions { group: Some(group), retry: true, ..CallOptions::new(Op::DescribeGroup) };
        let request = v1::DescribeGroupRequest { group: group.to_owned() };
        let response = self
            .conn
            .call(opts, request, |req| {
                let mut client = self.conn.group();
                async move { client.describe_group(req).await }
            })
            .await?;
        Ok(GroupDescription::from_proto(response))
    }

    /// Deletes a group's committed offsets.
    ///
    /// # Errors
    /// [`Error::FailedPrecondition`] while the group has live members;
    /// [`Error::GroupNotFound`] when it has no committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let opts = CallOptions { group: Some(group), ..CallOptions::new(Op::DeleteGroup) };
        let request = v1::DeleteGroupRequest { group: group.to_owned() };
        self.conn
            .call(opts, request, |req| {
                let mut client = self.conn.group();
                async move { client.delete_group(req).await }
            })
            .await?;
        Ok(())
    }

    /// Sets `group`'s committed offsets for every partition of `topic` and
    /// returns them, ordered by partition. Only a group without live members
    /// can be reset: its next members start where this puts them.
    ///
    /// # Errors
    /// [`Error::FailedPrecondition`] while the group has live members;
    /// [`Error::TopicNotFound`]; [`Error::OffsetOutOfRange`] for a
    /// [`ResetTo::Offset`] outside some partition's log.
    pub async fn reset_offsets(&self, group: &str, topic: &str, to: ResetTo) -> Result<Vec<CommittedOffset>> {
        let opts = CallOptions { topic: Some(topic), retry: true, ..CallOptions::new(Op::ResetOffsets) };
        let request = v1::ResetOffsetsRequest {
            group: group.to_owned(),
            topic: topic.to_owned(),
            to: Some(to.into_proto()),
        };
        let response = self
            .conn
            .call(opts, request, |req| {
                let mut client = self.conn.group();
                async move { client.reset_offsets(req).await }
            })
            .await?;
        let mut offsets: Vec<CommittedOffset> =
            response.offsets.into_iter().map(CommittedOffset::from_proto).collect();
        offsets.sort_by_key(|o| o.partition);
        Ok(offsets)
    }

    /// For each partition of `topic`, the earliest offset whose record
    /// timestamp is at or after `timestamp_ms` (milliseconds since the Unix
    /// epoch), or the high watermark when no record is. Ordered by
    /// partition. The broker answers from a sparse time index, without
    /// scanning the log.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`].
    pub async fn offsets_for_time(&self, topic: &str, timestamp_ms: i64) -> Result<Vec<TimeOffset>> {
        let opts = CallOptions { topic: Some(topic), retry: true, ..CallOptions::new(Op::ListOffsets) };
        let request =
            v1::ListOffsetsRequest { topic: topic.to_owned(), partitions: Vec::new(), timestamp_ms };
        let response = self
            .conn
            .call(opts, request, |req| {
                let mut client = self.conn.consumer();
                async move { client.list_offsets(req).await }
            })
            .await?;
        let mut offsets: Vec<TimeOffset> = response.offsets.into_iter().map(TimeOffset::from_proto).collect();
        offsets.sort_by_key(|o| o.partition);
        Ok(offsets)
    }
}

/// The topic every offset names, if they all name the same one.
pub(crate) fn single_topic(offsets: &[CommittedOffset]) -> Option<&str> {
    let first = offsets.first()?.topic.as_str();
    offsets.iter().all(|o| o.topic == first).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_topic_builder_collects_config() {
        let topic = NewTopic::new(3).config("a", "1").config("b", "2").config("a", "3");
        assert_eq!(topic.partitions, 3);
        assert_eq!(topic.config.get("a").map(String::as_str), Some("3"));
        assert_eq!(topic.config.len(), 2);
    }

    #[test]
    fn a_commit_names_its_topic_only_when_there_is_one() {
        assert_eq!(single_topic(&[]), None);
        let one = [CommittedOffset::new("a", 0, 1), CommittedOffset::new("a", 1, 5)];
        assert_eq!(single_topic(&one), Some("a"));
        let two = [CommittedOffset::new("a", 0, 1), CommittedOffset::new("b", 0, 1)];
        assert_eq!(single_topic(&two), None);
    }
}
