//! The gRPC adapter: `brooklet.v1` requests in, calls on the core's handle,
//! responses out. The only broker crate that knows tonic.
//!
//! - [`serve`]: the tonic server on a listener it is given (health,
//!   reflection, the four services), until shutdown.
//! - `connection`: the accept loop, the connection limit and, with TLS,
//!   each connection's handshake.
//! - `admission`: each request takes a place of its connection's, or is
//!   refused at once; then it is counted and timed. A TLS client's verified
//!   certificate goes into every request's extensions as
//!   `Arc<brooklet_tls::PeerIdentity>`.
//! - `auth`: with `--auth required`, each request's Basic credentials are
//!   checked and its `Principal` put in its extensions.
//! - `authorize`: each call asks the core's `Authorizer` for the
//!   (operation, resource) it needs before it looks anything up; denials
//!   are logged and counted there.
//! - `convert`: proto ⇄ core types; `status`: core errors → statuses, in one
//!   place.
//!
//! Holds no state of its own beyond handles.

#![warn(unreachable_pub)]

mod admission;
mod auth;
mod authorize;
mod connection;
mod convert;
#[cfg(test)]
mod fuzz_tests;
mod server;
mod status;
mod wire;

pub use server::{GrpcError, GrpcOptions, serve};

use std::pin::Pin;
use std::time::Duration;

use brooklet_proto::v1 as pb;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use brooklet_core::{
    Acks, Authorizer, Committer, Core, Error, FetchOpts, Heartbeat, Idempotence, NewRecord, Operation,
    ResetTo, Resource, ResourceType, SequenceGaps, StoredRecords,
};
use brooklet_metrics::Metrics;

use crate::authorize::Caller;
use crate::connection::ConnInfo;
use crate::status::status;

/// Default and maximum of `max_bytes` in fetch and subscribe requests.
const DEFAULT_FETCH_BYTES: usize = 1 << 20;
const MAX_FETCH_BYTES: usize = 32 << 20;
/// How many responses a subscription buffers before it waits for its reader.
const SUBSCRIBE_BUFFER: usize = 4;
/// How long one subscription read waits for data before checking again that
/// its reader is still there.
const SUBSCRIBE_POLL: Duration = Duration::from_secs(5);

/// Shared by every service.
#[derive(Clone, Debug)]
struct Services {
    core: Core,
    /// Cancelled when shutdown begins: ends waiting fetches and streams.
    shutdown: CancellationToken,
    /// Where subscription tasks run, so shutdown can wait for them.
    tasks: TaskTracker,
    /// Records and bytes produced and fetched.
    metrics: Metrics,
    /// When the services started, for the uptime in Status.
    started: std::time::Instant,
    /// The broker's listeners, for Status.
    listeners: Vec<(&'static str, std::net::SocketAddr)>,
    /// Decides what each caller may do: see `authorize`.
    authorizer: Authorizer,
}

impl Services {
    /// Services over `core`, stopped by `shutdown`.
    fn new(
        core: Core,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        metrics: Metrics,
        listeners: Vec<(&'static str, std::net::SocketAddr)>,
        authorizer: Authorizer,
    ) -> Services {
        Services { core, shutdown, tasks, metrics, started: std::time::Instant::now(), listeners, authorizer }
    }

    fn fetch_opts(&self, max_bytes: u32, max_wait_ms: u32) -> Result<FetchOpts, Error> {
        let max_bytes = match max_bytes as usize {
            0 => DEFAULT_FETCH_BYTES,
            n => n.min(MAX_FETCH_BYTES),
        };
        let max_wait = Duration::from_millis(u64::from(max_wait_ms));
        let limit = self.core.log().limits().max_fetch_wait;
        if max_wait > limit {
            return Err(Error::invalid(
                "max_wait_ms",
                format!("{max_wait_ms} exceeds the maximum of {}", limit.as_millis()),
            ));
        }
        Ok(FetchOpts { max_bytes, max_wait })
    }
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for Services {
    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        self.authorize(&caller, Operation::Create, Resource::Topic(&req.name))?;
        let info = self
            .core
            .log()
            .create_topic(&req.name, req.partitions, req.config.into_iter().collect())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateTopicResponse { topic: Some(convert::topic_info(info)) }))
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let caller = Caller::of(&request);
        let name = request.into_inner().name;
        self.authorize(&caller, Operation::Delete, Resource::Topic(&name))?;
        self.core.log().delete_topic(&name).await.map_err(status)?;
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    async fn alter_topic_config(
        &self,
        request: Request<pb::AlterTopicConfigRequest>,
    ) -> Result<Response<pb::AlterTopicConfigResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        self.authorize(&caller, Operation::Alter, Resource::Topic(&req.name))?;
        let info = self
            .core
            .log()
            .alter_topic_config(&req.name, req.set.into_iter().collect(), &req.remove)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AlterTopicConfigResponse { topic: Some(convert::topic_info(info)) }))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let caller = Caller::of(&request);
        self.authorize(&caller, Operation::Describe, Resource::Cluster)?;
        let disk = self.core.disk_usage().map_err(status)?;
        let mut topics = Vec::new();
        let topic_list = self.core.log().list_topics().into_iter();
        for t in topic_list.filter(|t| self.allows(&caller, Operation::Describe, Resource::Topic(&t.name))) {
            // A topic deleted since the listing is left out.
            let Ok((_, states)) = self.core.log().describe_topic(&t.name) else { continue };
            topics.push(pb::TopicStatus {
                records: states.iter().map(|s| s.high_watermark - s.log_start).sum(),
                stored_bytes: self.core.log().stored_bytes(&t.name).unwrap_or(0),
                name: t.name,
                partitions: t.partitions,
            });
        }
        let mut groups = Vec::new();
        let group_list = self.core.groups().list().map_err(status)?.into_iter();
        for (group, state, members) in
            group_list.filter(|(g, ..)| self.allows(&caller, Operation::Describe, Resource::Group(g)))
        {
            let total_lag =
                self.core.groups().describe(&group).map_or(0, |d| d.partitions.iter().map(|p| p.lag).sum());
            groups.push(pb::GroupStatus {
                group,
                state: convert::group_state(state).into(),
                members: members as u32,
                total_lag,
            });
        }
        Ok(Response::new(pb::StatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            data_dir: self.core.data_dir().display().to_string(),
            disk_bytes: disk.used_bytes,
            disk_free_bytes: disk.free_bytes,
            topics,
            groups,
            listeners: self
                .listeners
                .iter()
                .map(|(name, addr)| pb::ListenerStatus {
                    name: (*name).to_owned(),
                    address: addr.to_string(),
                })
                .collect(),
        }))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let caller = Caller::of(&request);
        self.authorize(&caller, Operation::Alter, Resource::Cluster)?;
        let req = request.into_inner();
        self.core.users().add(&req.name, &req.password).await.map_err(status)?;
        tracing::info!(user = %req.name, by = %caller.name(), "user created");
        Ok(Response::new(pb::CreateUserResponse {}))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let caller = Caller::of(&request);
        self.authorize(&caller, Operation::Alter, Resource::Cluster)?;
        let name = request.into_inner().name;
        self.core.users().delete(&name).await.map_err(status)?;
        tracing::info!(user = %name, by = %caller.name(), "user deleted");
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        self.authorize(&Caller::of(&request), Operation::Describe, Resource::Cluster)?;
        let users = self.core.users().list().map_err(status)?;
        let users =
            users.into_iter().map(|u| pb::UserInfo { name: u.name, mechanisms: u.mechanisms }).collect();
        Ok(Response::new(pb::ListUsersResponse { users }))
    }

    async fn set_user_password(
        &self,
        request: Request<pb::SetUserPasswordRequest>,
    ) -> Result<Response<pb::SetUserPasswordResponse>, Status> {
        let caller = Caller::of(&request);
        self.authorize(&caller, Operation::Alter, Resource::Cluster)?;
        let req = request.into_inner();
        self.core.users().set_password(&req.name, &req.password).await.map_err(status)?;
        tracing::info!(user = %req.name, by = %caller.name(), "user password changed");
        Ok(Response::new(pb::SetUserPasswordResponse {}))
    }

    async fn create_acl(
        &self,
        request: Request<pb::CreateAclRequest>,
    ) -> Result<Response<pb::CreateAclResponse>, Status> {
        let caller = Caller::of(&request);
        self.authorize(&caller, Operation::Alter, Resource::Cluster)?;
        let acl = convert::acl_in(request.into_inner().acl).map_err(status)?;
        let created = self.core.acls().add(&acl).await.map_err(status)?;
        if created {
            tracing::info!(acl = %acl, by = %caller.name(), "acl created");
        }
        Ok(Response::new(pb::CreateAclResponse { created }))
    }

    async fn delete_acl(
        &self,
        request: Request<pb::DeleteAclRequest>,
    ) -> Result<Response<pb::DeleteAclResponse>, Status> {
        let caller = Caller::of(&request);
        self.authorize(&caller, Operation::Alter, Resource::Cluster)?;
        let acl = convert::acl_in(request.into_inner().acl).map_err(status)?;
        if !self.core.acls().remove(&acl).await.map_err(status)? {
            return Err(status::acl_not_found(&acl));
        }
        tracing::info!(acl = %acl, by = %caller.name(), "acl deleted");
        Ok(Response::new(pb::DeleteAclResponse {}))
    }

    async fn list_acls(
        &self,
        request: Request<pb::ListAclsRequest>,
    ) -> Result<Response<pb::ListAclsResponse>, Status> {
        self.authorize(&Caller::of(&request), Operation::Describe, Resource::Cluster)?;
        let req = request.into_inner();
        let resource_type = match req.resource_type.as_str() {
            "" => None,
            name => Some(
                ResourceType::from_name(name)
                    .ok_or_else(|| {
                        Error::invalid(
                            "resource_type",
                            format!("`{name}` is not one of topic, group, cluster"),
                        )
                    })
                    .map_err(status)?,
            ),
        };
        let principal = req.principal.strip_prefix("User:").unwrap_or(&req.principal);
        let acls = self
            .core
            .acls()
            .list()
            .iter()
            .filter(|a| principal.is_empty() || a.principal() == principal)
            .filter(|a| resource_type.is_none_or(|t| a.resource_type() == t))
            .filter(|a| req.name.is_empty() || a.name() == req.name)
            .map(convert::acl_out)
            .collect();
        Ok(Response::new(pb::ListAclsResponse { acls }))
    }

    async fn list_topics(
        &self,
        request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let caller = Caller::of(&request);
        let topics = self
            .core
            .log()
            .list_topics()
            .into_iter()
            .filter(|t| self.allows(&caller, Operation::Describe, Resource::Topic(&t.name)))
            .map(convert::topic_info)
            .collect();
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        request: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::DescribeTopicResponse>, Status> {
        let caller = Caller::of(&request);
        let name = request.into_inner().name;
        self.authorize(&caller, Operation::Describe, Resource::Topic(&name))?;
        let (info, partitions) = self.core.log().describe_topic(&name).map_err(status)?;
        Ok(Response::new(pb::DescribeTopicResponse {
            topic: Some(convert::topic_info(info)),
            partitions: partitions.into_iter().map(convert::partition_info).collect(),
        }))
    }
}

#[tonic::async_trait]
impl pb::producer_service_server::ProducerService for Services {
    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        self.authorize(&caller, Operation::Write, Resource::Topic(&req.topic))?;
        let acks = match req.acks() {
            // The producer will not wait for this answer: no reason to wait
            // for a sync before giving it.
            pb::Durability::Written | pb::Durability::None => Some(Acks::Written),
            pb::Durability::Durable => Some(Acks::Durable),
            pb::Durability::Unspecified => None,
        };
        let records: Vec<NewRecord> = req.records.into_iter().map(convert::new_record).collect();

        let producer = match req.producer_id {
            0 => None,
            producer_id => Some(Idempotence {
                producer_id,
                producer_epoch: u16::try_from(req.producer_epoch)
                    .map_err(|_| {
                        Error::invalid(
                            "producer_epoch",
                            format!("{} exceeds the largest epoch, {}", req.producer_epoch, u16::MAX),
                        )
                    })
                    .map_err(status)?,
                base_sequences: req.base_sequences.into_iter().collect(),
                // Requests of one producer can overtake each other in flight.
                gaps: SequenceGaps::Wait,
            }),
        };
        let span = tracing::info_span!("produce", topic = %req.topic);
        let (appended, acks) = self
            .core
            .log()
            .produce(&req.topic, records, acks, producer.as_ref())
            .instrument(span)
            .await
            .map_err(status)?;
        // A retried batch the partition already had was not appended again.
        let new = appended.iter().filter(|a| !a.duplicate);
        let new_records: u64 = new.clone().map(|a| u64::from(a.record_count)).sum();
        let new_bytes: u64 = new.map(|a| a.bytes).sum();
        self.metrics.produced(&req.topic, new_records, new_bytes);
        let durability = match acks {
            Acks::Durable => pb::Durability::Durable,
            Acks::Written => pb::Durability::Written,
        };
        let acks = appended
            .into_iter()
            .map(|a| pb::PartitionAck {
                partition: a.partition,
                base_offset: a.base_offset,
                record_count: a.record_count,
                duplicate: a.duplicate,
            })
            .collect();
        Ok(Response::new(pb::ProduceResponse { acks, durability: durability.into() }))
    }

    async fn init_producer_id(
        &self,
        request: Request<pb::InitProducerIdRequest>,
    ) -> Result<Response<pb::InitProducerIdResponse>, Status> {
        // As in Kafka, an idempotent producer's id is for a principal that
        // may write the cluster, or some topic.
        let caller = Caller::of(&request);
        if let Err(denied) = self.authorizer.check_producer_id(caller.principal.as_ref()) {
            return Err(self.denied(&caller, denied));
        }
        let id = self.core.log().new_producer_id().map_err(status)?;
        Ok(Response::new(pb::InitProducerIdResponse {
            producer_id: id.id,
            producer_epoch: u32::from(id.epoch),
        }))
    }
}

/// Counts the records of `batches` served from `topic`.
fn count_fetched(metrics: &Metrics, topic: &str, batches: &[StoredRecords]) {
    let n = batches.iter().map(|b| b.len() as u64).sum();
    metrics.fetched(topic, n, batches.iter().map(StoredRecords::encoded_bytes).sum());
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<wire::SubscribeResponse, Status>> + Send>>;

/// Served with the records' stored encodings: see `wire`.
#[tonic::async_trait]
impl wire::consumer::consumer_service_server::ConsumerService for Services {
    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<wire::FetchResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        self.authorize(&caller, Operation::Read, Resource::Topic(&req.topic))?;
        let opts = self.fetch_opts(req.max_bytes, req.max_wait_ms).map_err(status)?;
        let span = tracing::info_span!("fetch", topic = %req.topic, partition = req.partition);
        let fetched = self
            .core
            .log()
            .fetch(&req.topic, req.partition, req.offset, opts, &self.shutdown)
            .instrument(span)
            .await
            .map_err(status)?;
        count_fetched(&self.metrics, &req.topic, &fetched.batches);
        Ok(Response::new(wire::FetchResponse {
            batches: fetched.batches.into_iter().map(|b| convert::batch(req.partition, b)).collect(),
            high_watermark: fetched.high_watermark,
            log_start_offset: fetched.log_start,
        }))
    }

    type SubscribeStream = SubscribeStream;

    async fn list_offsets(
        &self,
        request: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        self.authorize(&caller, Operation::Describe, Resource::Topic(&req.topic))?;
        let found = self
            .core
            .log()
            .offsets_for_time(&req.topic, &req.partitions, req.timestamp_ms)
            .map_err(status)?;
        let offsets = found
            .into_iter()
            .map(|f| pb::PartitionTimestampOffset {
                partition: f.partition,
                offset: f.offset,
                timestamp_ms: f.timestamp_ms,
            })
            .collect();
        Ok(Response::new(pb::ListOffsetsResponse { offsets }))
    }

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<SubscribeStream>, Status> {
        // Checked once, as the stream opens.
        let caller = Caller::of(&request);
        let req = request.into_inner();
        self.authorize(&caller, Operation::Read, Resource::Topic(&req.topic))?;
        let opts =
            FetchOpts { max_wait: SUBSCRIBE_POLL, ..self.fetch_opts(req.max_bytes, 0).map_err(status)? };
        // Validate the start before the stream opens, so a bad request fails
        // the call itself rather than its first message.
        let state = self.core.log().partition_state(&req.topic, req.partition).map_err(status)?;
        if req.offset < state.log_start || req.offset > state.high_watermark {
            return Err(status(Error::OffsetOutOfRange {
                topic: req.topic,
                partition: req.partition,
                offset: req.offset,
                log_start: state.log_start,
                high_watermark: state.high_watermark,
            }));
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBE_BUFFER);
        let core = self.core.clone();
        let shutdown = self.shutdown.clone();
        let metrics = self.metrics.clone();
        let span = tracing::info_span!("subscribe", topic = %req.topic, partition = req.partition);
        self.tasks.spawn(
            async move {
                let mut offset = req.offset;
                loop {
                    let fetched = tokio::select! {
                        // The reader went away: stop reading for it.
                        _ = tx.closed() => return,
                        fetched = core.log().fetch(&req.topic, req.partition, offset, opts, &shutdown) => fetched,
                    };
                    let response = match fetched {
                        Ok(f) if f.batches.is_empty() => continue,
                        Ok(f) => {
                            offset = f.batches.last().map_or(offset, |b| b.next_offset());
                            count_fetched(&metrics, &req.topic, &f.batches);
                            Ok(wire::SubscribeResponse {
                                batches: f
                                    .batches
                                    .into_iter()
                                    .map(|b| convert::batch(req.partition, b))
                                    .collect(),
                                high_watermark: f.high_watermark,
                            })
                        }
                        // Shutdown ends the stream cleanly.
                        Err(Error::ShuttingDown) => return,
                        Err(e) => Err(status(e)),
                    };
                    let failed = response.is_err();
                    // A bounded channel: a slow reader makes this send wait, so
                    // the broker never buffers more than a few responses.
                    if tx.send(response).await.is_err() || failed {
                        return;
                    }
                }
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[tonic::async_trait]
impl pb::group_service_server::GroupService for Services {
    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let host = ConnInfo::remote_of(&request).map(|a| a.to_string()).unwrap_or_default();
        let caller = Caller::of(&request);
        let req = request.into_inner();
        self.authorize(&caller, Operation::Read, Resource::Group(&req.group))?;
        // The topics a member subscribes to, as it names them (on join and
        // when they change).
        for topic in &req.topics {
            self.authorize(&caller, Operation::Read, Resource::Topic(topic))?;
        }
        let hb = Heartbeat {
            group: req.group,
            member_id: req.member_id,
            member_epoch: req.member_epoch,
            topics: req.topics,
            owned: convert::topic_partitions_in(req.owned),
            client_id: req.client_id,
            host,
            session_timeout: (req.session_timeout_ms > 0)
                .then(|| Duration::from_millis(u64::from(req.session_timeout_ms))),
        };
        let reply = self.core.groups().heartbeat(hb).map_err(status)?;
        Ok(Response::new(pb::HeartbeatResponse {
            member_id: reply.member_id,
            member_epoch: reply.member_epoch,
            heartbeat_interval_ms: reply.heartbeat_interval.as_millis().min(u128::from(u32::MAX)) as u32,
            assignment: convert::topic_partitions_out(&reply.assignment),
        }))
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let caller = Caller::of(&request);
        let groups = self
            .core
            .groups()
            .list()
            .map_err(status)?
            .into_iter()
            .filter(|(group, ..)| self.allows(&caller, Operation::Describe, Resource::Group(group)))
            .map(|(group, state, members)| pb::GroupSummary {
                group,
                state: convert::group_state(state).into(),
                members: members as u32,
            })
            .collect();
        Ok(Response::new(pb::ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        request: Request<pb::DescribeGroupRequest>,
    ) -> Result<Response<pb::DescribeGroupResponse>, Status> {
        let caller = Caller::of(&request);
        let group = request.into_inner().group;
        self.authorize(&caller, Operation::Describe, Resource::Group(&group))?;
        let d = self.core.groups().describe(&group).map_err(status)?;
        Ok(Response::new(convert::group_description(group, d)))
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let caller = Caller::of(&request);
        let group = request.into_inner().group;
        self.authorize(&caller, Operation::Delete, Resource::Group(&group))?;
        self.core.groups().delete(&group).await.map_err(status)?;
        Ok(Response::new(pb::DeleteGroupResponse {}))
    }

    async fn reset_offsets(
        &self,
        request: Request<pb::ResetOffsetsRequest>,
    ) -> Result<Response<pb::ResetOffsetsResponse>, Status> {
        use pb::reset_offsets_request::To;
        let caller = Caller::of(&request);
        let req = request.into_inner();
        self.authorize(&caller, Operation::Read, Resource::Group(&req.group))?;
        self.authorize(&caller, Operation::Read, Resource::Topic(&req.topic))?;
        let to = match req.to {
            Some(To::Earliest(_)) => ResetTo::Earliest,
            Some(To::Latest(_)) => ResetTo::Latest,
            Some(To::Offset(o)) => ResetTo::Offset(o),
            Some(To::TimestampMs(ts)) => ResetTo::Timestamp(ts),
            None => {
                return Err(status(Error::invalid(
                    "to",
                    "one of earliest, latest, offset or timestamp_ms is required",
                )));
            }
        };
        let offsets = self.core.groups().reset_offsets(&req.group, &req.topic, to).await.map_err(status)?;
        Ok(Response::new(pb::ResetOffsetsResponse {
            offsets: offsets.into_iter().map(convert::partition_offset).collect(),
        }))
    }

    async fn commit_offsets(
        &self,
        request: Request<pb::CommitOffsetsRequest>,
    ) -> Result<Response<pb::CommitOffsetsResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        self.authorize(&caller, Operation::Read, Resource::Group(&req.group))?;
        let topics: std::collections::BTreeSet<&str> = req.offsets.iter().map(|o| o.topic.as_str()).collect();
        for topic in topics {
            self.authorize(&caller, Operation::Read, Resource::Topic(topic))?;
        }
        let offsets: Vec<_> = req.offsets.into_iter().map(convert::committed_offset).collect();
        let committer = (!req.member_id.is_empty())
            .then_some(Committer { member_id: &req.member_id, member_epoch: req.member_epoch });
        let span = tracing::info_span!("commit_offsets", group = %req.group);
        self.core.groups().commit(&req.group, committer, &offsets).instrument(span).await.map_err(status)?;
        Ok(Response::new(pb::CommitOffsetsResponse {}))
    }

    async fn fetch_offsets(
        &self,
        request: Request<pb::FetchOffsetsRequest>,
    ) -> Result<Response<pb::FetchOffsetsResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        self.authorize(&caller, Operation::Describe, Resource::Group(&req.group))?;
        let topic = (!req.topic.is_empty()).then_some(req.topic.as_str());
        if let Some(topic) = topic {
            self.authorize(&caller, Operation::Describe, Resource::Topic(topic))?;
        }
        let offsets = self.core.groups().committed(&req.group, topic).map_err(status)?;
        // For every topic: only those the caller may describe.
        let offsets = offsets
            .into_iter()
            .filter(|o| self.allows(&caller, Operation::Describe, Resource::Topic(&o.topic)))
            .map(convert::partition_offset)
            .collect();
        Ok(Response::new(pb::FetchOffsetsResponse { offsets }))
    }
}
