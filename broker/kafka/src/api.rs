//! The implemented APIs over the core. Each builds its response for the
//! request's version: fields a version lacks are left at their defaults,
//! which `kafka-protocol` requires.

use std::collections::BTreeMap;
use std::time::Duration;

use brooklet_core::{
    Acks, Denied, Error, FetchOpts, Fetched, Idempotence, Log, Operation, ProduceRequest as CoreProduce,
    Resource, SequenceGaps, TopicInfo,
};
use bytes::BytesMut;
use futures::future::select_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, ProducerId,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::authz::Caller;
use crate::error::{code, denied_error};
use crate::records::{self, DecompressBudget};
use crate::server::Context;

/// This broker's id: the only one, leader of every partition.
const BROKER_ID: i32 = 0;
/// Most bytes one fetch response carries, whatever the request asks.
const MAX_FETCH_BYTES: usize = 32 << 20;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

/// Metadata of the topics the caller may describe: with no topic named,
/// the others are left out; a named one it may not describe is refused
/// whether or not it exists. A missing topic is created only for a caller
/// that may create it.
pub(crate) async fn metadata(
    ctx: &Context,
    caller: &Caller<'_>,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    let log = ctx.core.log();
    // v0 asks for every topic with an empty list; later versions with null.
    let requested = match request.topics {
        Some(t) if !(version == 0 && t.is_empty()) => Some(t),
        _ => None,
    };
    let allow_create = ctx.options.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let mut topics = Vec::new();
    match requested {
        None => topics.extend(
            log.list_topics()
                .iter()
                .filter(|t| caller.allows(ctx, Operation::Describe, Resource::Topic(&t.name)))
                .map(|t| topic_metadata(version, t)),
        ),
        Some(requested) => {
            for t in requested {
                let Some(topic) = t.name.as_ref().map(|n| n.0.as_str().to_owned()) else {
                    let found = log.list_topics().into_iter().find(|i| i.id == t.topic_id);
                    let refused = |e: ResponseError| {
                        MetadataResponseTopic::default().with_error_code(e.code()).with_topic_id(t.topic_id)
                    };
                    topics.push(match found {
                        Some(info) => {
                            match caller.check(ctx, Operation::Describe, Resource::Topic(&info.name)) {
                                Ok(()) => topic_metadata(version, &info),
                                Err(denied) => refused(denied_error(&denied)),
                            }
                        }
                        None => refused(ResponseError::UnknownTopicId),
                    });
                    continue;
                };
                let described = match caller.check(ctx, Operation::Describe, Resource::Topic(&topic)) {
                    Err(denied) => Err(Error::from(denied)),
                    Ok(()) => match log.describe_topic(&topic) {
                        Err(Error::TopicNotFound { .. }) if allow_create => {
                            create_for_metadata(ctx, caller, &topic).await
                        }
                        other => other.map(|(i, _)| i),
                    },
                };
                topics.push(match described {
                    Ok(info) => topic_metadata(version, &info),
                    Err(e) => MetadataResponseTopic::default()
                        .with_error_code(code(&e))
                        .with_name(Some(name(&topic))),
                });
            }
        }
    }
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(BROKER_ID))
        .with_host(StrBytes::from_string(ctx.options.advertised_host.clone()))
        .with_port(i32::from(ctx.options.advertised_port));
    let mut response = MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_controller_id(BrokerId(BROKER_ID))
        .with_topics(topics);
    if version >= 2 {
        response.cluster_id = Some(StrBytes::from_static_str("brooklet"));
    }
    response
}

/// Creates `topic`, missing, that a Metadata request names, if the caller
/// may (as Kafka, a caller that may not is answered
/// TOPIC_AUTHORIZATION_FAILED).
async fn create_for_metadata(ctx: &Context, caller: &Caller<'_>, topic: &str) -> Result<TopicInfo, Error> {
    caller.check(ctx, Operation::Create, Resource::Topic(topic))?;
    let log = ctx.core.log();
    match log.create_topic(topic, ctx.options.default_partitions, BTreeMap::new()).await {
        Ok(info) => Ok(info),
        Err(Error::TopicExists { .. }) => log.describe_topic(topic).map(|(i, _)| i),
        Err(e) => Err(e),
    }
}

fn topic_metadata(version: i16, info: &TopicInfo) -> MetadataResponseTopic {
    let partitions = (0..info.partitions)
        .map(|p| {
            let mut partition = MetadataResponsePartition::default()
                .with_partition_index(p as i32)
                .with_leader_id(BrokerId(BROKER_ID))
                .with_replica_nodes(vec![BrokerId(BROKER_ID)])
                .with_isr_nodes(vec![BrokerId(BROKER_ID)]);
            if version >= 7 {
                partition.leader_epoch = 0;
            }
            partition
        })
        .collect();
    let mut topic =
        MetadataResponseTopic::default().with_name(Some(name(&info.name))).with_partitions(partitions);
    if version >= 10 {
        topic.topic_id = info.id;
    }
    topic
}

/// Every partition of the request is appended first, then one wait makes
/// them all meet the acks: a durable produce to many partitions costs one
/// sync. With acks 0 the client expects no response: the caller sends none.
/// A topic the caller may not write to is refused in every partition.
pub(crate) async fn produce(
    ctx: &Context,
    caller: &Caller<'_>,
    version: i16,
    request: ProduceRequest,
) -> ProduceResponse {
    let acks = match request.acks {
        0 | 1 => Ok(Acks::Written),
        -1 => Ok(Acks::Durable),
        _ => Err(ResponseError::InvalidRequiredAcks),
    };
    let refuse_all = match (&request.transactional_id, acks) {
        (Some(_), _) => Some((
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactional producers are not supported yet".to_owned(),
        )),
        (None, Err(e)) => Some((e, format!("acks {} is not 0, 1 or -1", request.acks))),
        (None, Ok(_)) => None,
    };
    let mut responses = Vec::with_capacity(request.topic_data.len());
    // The core's requests, with where each one's answer goes: (topic,
    // partition) indexes into `responses`.
    let mut appends = Vec::new();
    let mut places = Vec::new();
    // Shared by every partition: a request of many partitions must not
    // decompress to many times the limit.
    let mut budget = DecompressBudget::new(ctx.options.max_request_bytes);
    for (t, topic) in request.topic_data.into_iter().enumerate() {
        let topic_name = topic.name.0.as_str().to_owned();
        // Denied topics, then unknown topics and partitions are answered
        // before their records are read.
        let denied = match &refuse_all {
            Some(_) => None,
            None => caller.check(ctx, Operation::Write, Resource::Topic(&topic_name)).err(),
        };
        let partition_count = match denied {
            None => ctx.core.log().partition_count(&topic_name),
            Some(_) => None,
        };
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (p, data) in topic.partition_data.into_iter().enumerate() {
            let mut out = PartitionProduceResponse::default().with_index(data.index);
            let known = u32::try_from(data.index).ok().filter(|i| partition_count.is_some_and(|n| *i < n));
            let prepared = match (&refuse_all, &denied, known) {
                (Some((e, message)), _, _) => Err((*e, message.clone())),
                (None, Some(denied), _) => Err((denied_error(denied), denied.to_string())),
                (None, None, None) => Err((
                    ResponseError::UnknownTopicOrPartition,
                    match partition_count {
                        None => format!("topic `{topic_name}` does not exist"),
                        Some(n) => format!("partition {} is not in 0..{n}", data.index),
                    },
                )),
                (None, None, Some(partition)) => {
                    produce_request(ctx.core.log(), &topic_name, partition, data.records, &mut budget)
                }
            };
            match prepared {
                Ok(append) => {
                    appends.push(append);
                    places.push((t, p));
                }
                Err((e, message)) => refused(&mut out, version, &topic_name, e, message),
            }
            partitions.push(out);
        }
        responses
            .push(TopicProduceResponse::default().with_name(topic.name).with_partition_responses(partitions));
    }
    if let (Ok(acks), false) = (acks, appends.is_empty()) {
        let log = ctx.core.log();
        let topics: Vec<String> = appends.iter().map(|a| a.topic.clone()).collect();
        let produced = log.produce_many(appends, acks).await;
        let unsettled = produced.settled.err().map(|e| core_error(&e));
        for (((t, p), result), topic) in places.into_iter().zip(produced.results).zip(topics) {
            let out = &mut responses[t].partition_responses[p];
            match (result, &unsettled) {
                (Ok(appended), None) => {
                    let new = appended.iter().filter(|a| !a.duplicate);
                    let records = new.clone().map(|a| u64::from(a.record_count)).sum();
                    ctx.metrics.produced(&topic, records, new.map(|a| a.bytes).sum());
                    out.base_offset = appended.first().map_or(0, |a| a.base_offset) as i64;
                    if version >= 5 {
                        let partition = out.index as u32;
                        out.log_start_offset =
                            log.partition_state(&topic, partition).map_or(0, |s| s.log_start) as i64;
                    }
                }
                (Ok(_), Some((e, message))) => refused(out, version, &topic, *e, message.clone()),
                (Err(e), _) => {
                    let (e, message) = core_error(&e);
                    refused(out, version, &topic, e, message);
                }
            }
        }
    }
    ProduceResponse::default().with_responses(responses)
}

fn core_error(e: &Error) -> (ResponseError, String) {
    (crate::error::kafka_error(e), brooklet_core::error_chain(e))
}

/// Sets a partition's answer to an error.
fn refused(out: &mut PartitionProduceResponse, version: i16, topic: &str, e: ResponseError, message: String) {
    tracing::debug!(%topic, partition = out.index, error = %message, "kafka produce refused");
    out.error_code = e.code();
    out.base_offset = -1;
    if version >= 5 {
        out.log_start_offset = -1;
    }
    if version >= 8 && !message.is_empty() {
        out.error_message = Some(StrBytes::from_string(message));
    }
}

/// The core's request for one partition's batch.
fn produce_request(
    log: &Log,
    topic: &str,
    partition: u32,
    records: Option<bytes::Bytes>,
    budget: &mut DecompressBudget,
) -> Result<CoreProduce, (ResponseError, String)> {
    let records = records.ok_or_else(|| (ResponseError::CorruptMessage, "null records".to_owned()))?;
    let (records, claim) =
        records::decode_produce(records, partition, budget).map_err(|e| (e.error, e.message))?;
    let producer = match claim {
        None => None,
        Some(c) => {
            let producer_id = u64::try_from(c.producer_id).unwrap_or(0);
            let producer_epoch = u16::try_from(c.producer_epoch).map_err(|_| {
                (
                    ResponseError::InvalidProducerEpoch,
                    format!("producer epoch {} is negative", c.producer_epoch),
                )
            })?;
            let expected = log.next_sequence(topic, partition, producer_id).ok().flatten();
            Some(Idempotence {
                producer_id,
                producer_epoch,
                base_sequences: BTreeMap::from([(partition, unwrap_sequence(c.base_sequence, expected))]),
                // A connection's requests are answered in order, so a batch
                // ahead of its sequence follows lost ones: Kafka refuses it.
                gaps: SequenceGaps::Refuse,
            })
        }
    };
    Ok(CoreProduce { topic: topic.to_owned(), records, producer })
}

/// Kafka's sequence numbers run from 0 to `i32::MAX` and wrap to 0; the
/// core's never wrap.
const SEQUENCE_SPAN: u64 = 1 << 31;

/// The core's sequence number for Kafka's (non-negative) `sequence`: of
/// the numbers it may stand for (the same modulo 2^31), the one nearest to
/// the sequence the partition expects next, if it knows the producer.
fn unwrap_sequence(sequence: i32, expected: Option<u64>) -> u64 {
    let sequence = u64::try_from(sequence).unwrap_or(0) % SEQUENCE_SPAN;
    let Some(expected) = expected else { return sequence };
    let same_span = expected - expected % SEQUENCE_SPAN + sequence;
    [same_span.checked_sub(SEQUENCE_SPAN), Some(same_span), same_span.checked_add(SEQUENCE_SPAN)]
        .into_iter()
        .flatten()
        .min_by_key(|s| s.abs_diff(expected))
        .unwrap_or(same_span)
}

/// One partition a fetch asks for.
struct Wanted {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    /// Why the caller may not read the topic, if it may not.
    denied: Option<Denied>,
}

/// Answers when the partitions hold `min_bytes` of records past their
/// offsets, when any partition has an error, or when `max_wait` is up,
/// whichever comes first; then with what they hold. The partitions of a
/// topic the caller may not read are refused.
pub(crate) async fn fetch(
    ctx: &Context,
    caller: &Caller<'_>,
    version: i16,
    request: FetchRequest,
) -> FetchResponse {
    let log = ctx.core.log();
    let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0))
        .min(log.limits().max_fetch_wait);
    let deadline = tokio::time::Instant::now() + max_wait;
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let max_bytes = usize::try_from(request.max_bytes).unwrap_or(0).clamp(1, MAX_FETCH_BYTES);
    let wanted: Vec<Wanted> = request
        .topics
        .iter()
        .flat_map(|t| {
            let topic = t.topic.0.as_str();
            let denied = caller.check(ctx, Operation::Read, Resource::Topic(topic)).err();
            t.partitions.iter().map(move |p| Wanted {
                topic: topic.to_owned(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                denied: denied.clone(),
            })
        })
        .collect();
    // Long-poll: nothing is read while every partition is at its high
    // watermark; after a read that falls short of `min_bytes`, the next
    // read waits until a partition's high watermark passes the one read.
    let mut seen: Vec<Option<u64>> = wanted
        .iter()
        .map(|w| {
            if w.denied.is_some() {
                return None;
            }
            let partition = u32::try_from(w.partition).ok()?;
            let hw = log.partition_state(&w.topic, partition).ok()?.high_watermark;
            u64::try_from(w.offset).ok().filter(|o| *o == hw)
        })
        .collect();
    let mut read_now = min_bytes == 0 || max_wait.is_zero() || seen.iter().any(Option::is_none);
    loop {
        if read_now {
            let read = read_partitions(ctx, version, &wanted, max_bytes).await;
            let now = tokio::time::Instant::now();
            let wait =
                read.bytes < min_bytes && read.errors == 0 && now < deadline && !ctx.stop.is_cancelled();
            if !wait || wanted.is_empty() {
                return FetchResponse::default().with_responses(read.responses);
            }
            seen = read.high_watermarks;
        }
        read_now = true;
        let max_wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        let waits: Vec<_> = wanted
            .iter()
            .zip(&seen)
            .filter_map(|(w, hw)| {
                let opts = FetchOpts { max_bytes: 1, max_wait };
                Some(Box::pin(log.fetch(&w.topic, u32::try_from(w.partition).ok()?, (*hw)?, opts, &ctx.stop)))
            })
            .collect();
        if !waits.is_empty() {
            let _ = select_all(waits).await;
        }
    }
}

/// A fetch's partitions as read once.
struct Read {
    responses: Vec<FetchableTopicResponse>,
    /// Bytes of records in the responses.
    bytes: usize,
    /// Partitions answered with an error.
    errors: usize,
    /// Each partition's high watermark at the read; `None` for an error.
    high_watermarks: Vec<Option<u64>>,
}

/// Reads every wanted partition, in order, into at most `max_bytes` of
/// records; the first partition with records gets its first batch even if
/// that is larger (as Kafka does, so a consumer always makes progress),
/// the others only what fits.
async fn read_partitions(ctx: &Context, version: i16, wanted: &[Wanted], max_bytes: usize) -> Read {
    let log = ctx.core.log();
    let mut read = Read { responses: Vec::new(), bytes: 0, errors: 0, high_watermarks: Vec::new() };
    for w in wanted {
        let topic = &w.topic;
        let mut data = PartitionData::default().with_partition_index(w.partition);
        let room = w.max_bytes.min(max_bytes - read.bytes.min(max_bytes));
        let fetched = match (&w.denied, u32::try_from(w.partition), u64::try_from(w.offset)) {
            (Some(denied), _, _) => Err(Error::from(denied.clone())),
            // No room left: nothing is read, but the partition's bounds and
            // errors are still answered.
            (None, Ok(p), Ok(o)) if room == 0 && read.bytes > 0 => {
                log.partition_state(topic, p).and_then(|s| {
                    if o < s.log_start || o > s.high_watermark {
                        return Err(Error::OffsetOutOfRange {
                            topic: topic.clone(),
                            partition: p,
                            offset: o,
                            log_start: s.log_start,
                            high_watermark: s.high_watermark,
                        });
                    }
                    Ok(Fetched {
                        batches: Vec::new(),
                        high_watermark: s.high_watermark,
                        log_start: s.log_start,
                    })
                })
            }
            (None, Ok(p), Ok(o)) => {
                let opts = FetchOpts { max_bytes: room.max(1), max_wait: Duration::ZERO };
                log.fetch(topic, p, o, opts, &ctx.stop).await
            }
            (None, Err(_), _) => Err(Error::TopicNotFound { topic: topic.clone() }),
            (None, Ok(p), Err(_)) => Err(log.partition_state(topic, p).map_or_else(
                |e| e,
                |s| Error::OffsetOutOfRange {
                    topic: topic.clone(),
                    partition: p,
                    offset: 0,
                    log_start: s.log_start,
                    high_watermark: s.high_watermark,
                },
            )),
        };
        let mut high_watermark = None;
        match fetched {
            Ok(f) => {
                let mut out = BytesMut::new();
                let first = read.bytes == 0;
                match records::encode_fetched(&f.batches, room, first, &mut out) {
                    Ok(()) => {
                        read.bytes += out.len();
                        data.records = Some(out.freeze());
                        high_watermark = Some(f.high_watermark);
                    }
                    Err(e) => {
                        tracing::error!(%topic, partition = w.partition, error = %e, "kafka fetch: cannot encode records");
                        data.error_code = ResponseError::CorruptMessage.code();
                    }
                }
                data.high_watermark = f.high_watermark as i64;
                data.last_stable_offset = f.high_watermark as i64;
                if version >= 5 {
                    data.log_start_offset = f.log_start as i64;
                }
            }
            Err(e) => {
                data.error_code = code(&e);
                if let Error::OffsetOutOfRange { high_watermark, log_start, .. } = e {
                    data.high_watermark = high_watermark as i64;
                    data.last_stable_offset = high_watermark as i64;
                    if version >= 5 {
                        data.log_start_offset = log_start as i64;
                    }
                } else {
                    data.high_watermark = -1;
                }
                data.records = Some(bytes::Bytes::new());
            }
        }
        if data.error_code != 0 {
            read.errors += 1;
        }
        read.high_watermarks.push(high_watermark);
        match read.responses.last_mut() {
            Some(last) if last.topic.0.as_str() == topic => last.partitions.push(data),
            _ => read
                .responses
                .push(FetchableTopicResponse::default().with_topic(name(topic)).with_partitions(vec![data])),
        }
    }
    read
}

/// The partitions of a topic the caller may not describe are refused.
pub(crate) fn list_offsets(
    ctx: &Context,
    caller: &Caller<'_>,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let log = ctx.core.log();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let topic = t.name.0.as_str().to_owned();
            let allowed = caller.check(ctx, Operation::Describe, Resource::Topic(&topic));
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut out =
                        ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    if version >= 4 {
                        out.leader_epoch = 0;
                    }
                    let result = allowed
                        .clone()
                        .map_err(Error::from)
                        .and_then(|()| {
                            u32::try_from(p.partition_index)
                                .map_err(|_| Error::TopicNotFound { topic: topic.clone() })
                        })
                        .and_then(|partition| {
                            let state = log.partition_state(&topic, partition)?;
                            Ok(match p.timestamp {
                                -2 => (state.log_start as i64, -1),
                                -1 => (state.high_watermark as i64, -1),
                                ts if ts >= 0 => {
                                    let found = log.offsets_for_time(&topic, &[partition], ts)?;
                                    // Kafka answers -1 when no record is that late.
                                    found
                                        .first()
                                        .and_then(|f| f.timestamp_ms.map(|t| (f.offset as i64, t)))
                                        .unwrap_or((-1, -1))
                                }
                                other => {
                                    return Err(Error::invalid(
                                        "timestamp",
                                        format!("{other}: only -2 (earliest), -1 (latest) or a time"),
                                    ));
                                }
                            })
                        });
                    match result {
                        Ok((offset, timestamp)) => {
                            out.offset = offset;
                            out.timestamp = timestamp;
                        }
                        Err(e) => {
                            out.error_code = code(&e);
                            out.offset = -1;
                            out.timestamp = -1;
                        }
                    }
                    out
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect::<Vec<ListOffsetsTopicResponse>>();
    ListOffsetsResponse::default().with_topics(topics)
}

/// A new idempotent producer id, epoch 0. A producer that names its
/// current id (to bump its epoch after an error) gets a new id instead:
/// the core keeps every id at epoch 0. As Kafka, an idempotent producer
/// needs write on the cluster or on some topic.
pub(crate) fn init_producer_id(
    ctx: &Context,
    caller: &Caller<'_>,
    request: &InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refused = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if request.transactional_id.is_some() {
        return refused(ResponseError::TransactionalIdAuthorizationFailed);
    }
    if let Err(denied) = ctx.options.authorizer.check_producer_id(caller.principal) {
        caller.report(ctx, &denied);
        return refused(denied_error(&denied));
    }
    match ctx.core.log().new_producer_id() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id.id as i64))
            .with_producer_epoch(id.epoch as i16),
        Err(e) => refused(crate::error::kafka_error(&e)),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use brooklet_core::{Core, CoreConfig, FlushObserver};
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::KafkaOptions;

    /// Sync requests made durable, over every flush.
    #[derive(Debug, Default)]
    struct Syncs(AtomicUsize);

    impl FlushObserver for Syncs {
        fn flushed(&self, batches: usize, _took: Duration) {
            self.0.fetch_add(batches, Ordering::SeqCst);
        }
    }

    /// The Kafka listener over a real core in a temporary directory, on a
    /// loopback port.
    struct Broker {
        core: Core,
        addr: SocketAddr,
        syncs: Arc<Syncs>,
        stop: CancellationToken,
        _dir: tempfile::TempDir,
    }

    impl Drop for Broker {
        fn drop(&mut self) {
            self.stop.cancel();
        }
    }

    async fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let tasks = TaskTracker::new();
        let syncs = Arc::new(Syncs::default());
        let core = Core::open(&CoreConfig::new(dir.path()), Some(syncs.clone()), &tasks).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let options = KafkaOptions {
            advertised_host: "127.0.0.1".into(),
            advertised_port: addr.port(),
            auto_create_topics: false,
            default_partitions: 1,
            max_request_bytes: 1 << 20,
            max_connections: 8,
            auth_required: false,
            certificate_principal: None,
            connections: Default::default(),
            authorizer: brooklet_core::Authorizer::allow_all(core.acls().clone()),
        };
        let stop = CancellationToken::new();
        let metrics = brooklet_metrics::Metrics::new();
        tokio::spawn(crate::serve(core.clone(), metrics, listener, None, options, stop.clone(), tasks));
        Broker { core, addr, syncs, stop, _dir: dir }
    }

    /// Sends one request and decodes its response.
    async fn call<Req: Encodable, Resp: Decodable>(
        stream: &mut TcpStream,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        send(stream, api, version, request).await;
        receive(stream, api, version).await
    }

    async fn send<Req: Encodable>(stream: &mut TcpStream, api: ApiKey, version: i16, request: &Req) {
        let mut frame = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(1)
            .encode(&mut frame, api.request_header_version(version))
            .unwrap();
        request.encode(&mut frame, version).unwrap();
        stream.write_all(&(frame.len() as i32).to_be_bytes()).await.unwrap();
        stream.write_all(&frame).await.unwrap();
    }

    async fn receive<Resp: Decodable>(stream: &mut TcpStream, api: ApiKey, version: i16) -> Resp {
        let size = stream.read_i32().await.unwrap();
        let mut response = vec![0; size as usize];
        stream.read_exact(&mut response).await.unwrap();
        let mut response = Bytes::from(response);
        let header = ResponseHeader::decode(&mut response, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, 1);
        Resp::decode(&mut response, version).unwrap()
    }

    /// One v2 batch of `values`; idempotent with `(producer id, epoch,
    /// base sequence)`.
    fn batch(values: &[&str], producer: Option<(i64, i16, i32)>) -> Bytes {
        encoded(values, producer, Compression::None)
    }

    fn encoded(values: &[&str], producer: Option<(i64, i16, i32)>, compression: Compression) -> Bytes {
        let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: if producer.is_some() { base_sequence.wrapping_add(i as i32) } else { -1 },
                timestamp: 1000,
                key: None,
                value: Some(Bytes::from(v.to_string())),
                headers: Default::default(),
            })
            .collect();
        let mut out = BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression };
        RecordBatchEncoder::encode(&mut out, &records, &options).unwrap();
        out.freeze()
    }

    fn produce_request(acks: i16, data: &[(&str, i32, Bytes)]) -> ProduceRequest {
        let mut topics: Vec<TopicProduceData> = Vec::new();
        for (topic, partition, records) in data {
            let p =
                PartitionProduceData::default().with_index(*partition).with_records(Some(records.clone()));
            match topics.last_mut() {
                Some(t) if t.name.0.as_str() == *topic => t.partition_data.push(p),
                _ => topics
                    .push(TopicProduceData::default().with_name(name(topic)).with_partition_data(vec![p])),
            }
        }
        ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(topics)
    }

    /// (error code, base offset) of each partition, in request order.
    fn answers(response: &ProduceResponse) -> Vec<(i16, i64)> {
        response
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| (p.error_code, p.base_offset)))
            .collect()
    }

    #[tokio::test]
    async fn an_idempotent_batch_ahead_of_its_sequence_is_refused_at_once_and_a_retry_gets_its_offset() {
        let broker = start().await;
        broker.core.log().create_topic("t", 1, BTreeMap::new()).await.unwrap();
        let mut stream = TcpStream::connect(broker.addr).await.unwrap();
        let init: InitProducerIdResponse = call(
            &mut stream,
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default().with_transactional_id(None),
        )
        .await;
        assert_eq!(init.error_code, 0);
        let (id, epoch) = (init.producer_id.0, init.producer_epoch);
        let mut produce = async |values: &[&str], sequence: i32| -> (i16, i64) {
            let request = produce_request(-1, &[("t", 0, batch(values, Some((id, epoch, sequence))))]);
            answers(&call::<_, ProduceResponse>(&mut stream, ApiKey::Produce, 9, &request).await)[0]
        };
        assert_eq!(produce(&["a", "b"], 0).await, (0, 0));
        assert_eq!(produce(&["c"], 2).await, (0, 2));
        assert_eq!(produce(&["x"], 5).await, (ResponseError::OutOfOrderSequenceNumber.code(), -1));
        assert_eq!(broker.core.log().sequence_waits(), 0, "refused without waiting for sequence 3");
        // Retries of kept batches are answered with their original offsets.
        assert_eq!(produce(&["a", "b"], 0).await, (0, 0));
        assert_eq!(produce(&["c"], 2).await, (0, 2));
        assert_eq!(produce(&["d"], 3).await, (0, 3));
        assert_eq!(broker.core.log().partition_state("t", 0).unwrap().high_watermark, 4);
    }

    #[tokio::test]
    async fn a_durable_produce_to_many_partitions_is_answered_per_partition_after_one_sync() {
        let broker = start().await;
        let log = broker.core.log();
        log.create_topic("a", 3, BTreeMap::new()).await.unwrap();
        log.create_topic("b", 1, BTreeMap::from([("max.message.bytes".into(), "4".into())])).await.unwrap();
        let mut stream = TcpStream::connect(broker.addr).await.unwrap();
        let request = produce_request(
            -1,
            &[
                ("a", 0, batch(&["a0", "a0'"], None)),
                ("a", 1, batch(&["a1"], None)),
                ("a", 7, batch(&["none"], None)),
                ("a", 2, batch(&["a2"], None)),
                ("b", 0, batch(&["too large"], None)),
                ("c", 0, batch(&["no topic"], None)),
            ],
        );
        let before = broker.syncs.0.load(Ordering::SeqCst);
        let response: ProduceResponse = call(&mut stream, ApiKey::Produce, 9, &request).await;
        assert_eq!(broker.syncs.0.load(Ordering::SeqCst) - before, 1, "one sync for every partition");
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(
            answers(&response),
            [
                (0, 0),
                (0, 0),
                (unknown, -1),
                (0, 0),
                (ResponseError::MessageTooLarge.code(), -1),
                (unknown, -1)
            ]
        );
        // Acknowledged as durable: readable at once.
        let hw = |t, p| log.partition_state(t, p).unwrap().high_watermark;
        assert_eq!([hw("a", 0), hw("a", 1), hw("a", 2), hw("b", 0)], [2, 1, 1, 0]);
        // Written acks: answered before their sync, readable after it.
        let request = produce_request(1, &[("a", 0, batch(&["w"], None)), ("a", 1, batch(&["w"], None))]);
        let response: ProduceResponse = call(&mut stream, ApiKey::Produce, 9, &request).await;
        assert_eq!(answers(&response), [(0, 2), (0, 1)]);
        for (partition, offset) in [(0, 2), (1, 1)] {
            // Waits (up to the deadline) until the offset is readable.
            let opts = FetchOpts { max_bytes: 1 << 20, max_wait: Duration::from_secs(30) };
            let fetched = log.fetch("a", partition, offset, opts, &CancellationToken::new()).await.unwrap();
            assert_eq!(fetched.high_watermark, offset + 1, "partition {partition}");
        }
    }

    #[tokio::test]
    async fn compressed_records_of_all_a_requests_partitions_share_one_limit() {
        let broker = start().await;
        broker.core.log().create_topic("t", 3, BTreeMap::new()).await.unwrap();
        let mut stream = TcpStream::connect(broker.addr).await.unwrap();
        // Ten records of 60 KiB each: 600 KiB that gzip to a few KiB. The
        // broker's limit is 1 MiB.
        let value = "\0".repeat(60 << 10);
        let bomb = encoded(&[value.as_str(); 10], None, Compression::Gzip);
        assert!(bomb.len() < 16 << 10, "{}", bomb.len());
        let request = produce_request(
            -1,
            &[
                ("none", 0, bomb.clone()),
                ("t", 3, bomb.clone()),
                ("t", 0, bomb.clone()),
                ("t", 1, bomb.clone()),
                ("t", 2, encoded(&["small"], None, Compression::Gzip)),
            ],
        );
        let response: ProduceResponse = call(&mut stream, ApiKey::Produce, 9, &request).await;
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        // Unknown partitions are not decompressed; the second 600 KiB goes
        // past what is left of the request's 1 MiB.
        assert_eq!(
            answers(&response),
            [(unknown, -1), (unknown, -1), (0, 0), (ResponseError::MessageTooLarge.code(), -1), (0, 0)]
        );
        let message = response.responses[1].partition_responses[2].error_message.clone().unwrap();
        assert!(
            message.contains("1048576 bytes, the request size limit") && !message.contains("--"),
            "{message}"
        );
    }

    fn fetch_request(
        max_wait_ms: i32,
        min_bytes: i32,
        max_bytes: i32,
        parts: &[(&str, i32, i64, i32)],
    ) -> FetchRequest {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        let mut topics: Vec<FetchTopic> = Vec::new();
        for &(topic, partition, offset, partition_max) in parts {
            let p = FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(partition_max);
            match topics.last_mut() {
                Some(t) if t.topic.0.as_str() == topic => t.partitions.push(p),
                _ => topics.push(FetchTopic::default().with_topic(name(topic)).with_partitions(vec![p])),
            }
        }
        FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(min_bytes)
            .with_max_bytes(max_bytes)
            .with_topics(topics)
    }

    /// Each partition's (error code, high watermark, offsets of its records).
    fn fetched(response: &FetchResponse) -> Vec<(i16, i64, Vec<i64>)> {
        response
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| {
                let mut records = p.records.clone().unwrap_or_default();
                let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records).unwrap();
                let offsets = sets.iter().flat_map(|s| s.records.iter().map(|r| r.offset)).collect();
                (p.error_code, p.high_watermark, offsets)
            })
            .collect()
    }

    fn record(value: &str) -> brooklet_core::NewRecord {
        brooklet_core::NewRecord {
            partition: Some(0),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_fetch_returns_at_most_max_bytes_but_always_the_first_batch_whole() {
        let broker = start().await;
        let log = broker.core.log();
        log.create_topic("t", 3, BTreeMap::new()).await.unwrap();
        let big = "x".repeat(100 << 10);
        for p in 0..3 {
            let records = vec![brooklet_core::NewRecord { partition: Some(p), ..record(&big) }];
            log.produce("t", records, Some(Acks::Durable), None).await.unwrap();
        }
        let mut stream = TcpStream::connect(broker.addr).await.unwrap();
        let mut fetch = async |max_bytes, partition_max| {
            let parts = [("t", 0, 0, partition_max), ("t", 1, 0, partition_max), ("t", 2, 0, partition_max)];
            let request = fetch_request(0, 1, max_bytes, &parts);
            fetched(&call::<_, FetchResponse>(&mut stream, ApiKey::Fetch, 12, &request).await)
        };
        let all = vec![(0, 1, vec![0]), (0, 1, vec![0]), (0, 1, vec![0])];
        assert_eq!(fetch(1 << 20, 1 << 20).await, all);
        // Only the first partition's batch goes past a limit: the others
        // are answered with their bounds and no records.
        let first_only = vec![(0, 1, vec![0]), (0, 1, vec![]), (0, 1, vec![])];
        assert_eq!(fetch(150 << 10, 1 << 20).await, first_only);
        assert_eq!(fetch(1, 1 << 20).await, first_only);
        assert_eq!(fetch(1 << 20, 1).await, first_only);
    }

    #[tokio::test]
    async fn a_fetch_waits_for_min_bytes() {
        let broker = start().await;
        let log = broker.core.log();
        log.create_topic("t", 1, BTreeMap::new()).await.unwrap();
        let value = "v".repeat(200);
        let mut stream = TcpStream::connect(broker.addr).await.unwrap();
        // One record's batch is under 300 bytes; two are over.
        send(&mut stream, ApiKey::Fetch, 12, &fetch_request(30_000, 300, 1 << 20, &[("t", 0, 0, 1 << 20)]))
            .await;
        log.produce("t", vec![record(&value)], Some(Acks::Durable), None).await.unwrap();
        log.produce("t", vec![record(&value)], Some(Acks::Durable), None).await.unwrap();
        let response: FetchResponse = receive(&mut stream, ApiKey::Fetch, 12).await;
        assert_eq!(fetched(&response), [(0, 2, vec![0, 1])]);
    }

    #[tokio::test]
    async fn fetches_inside_a_batch_at_and_past_the_end_and_of_a_deleted_topic() {
        let broker = start().await;
        let log = broker.core.log();
        log.create_topic("t", 1, BTreeMap::new()).await.unwrap();
        log.produce("t", vec![record("a"), record("b"), record("c")], Some(Acks::Durable), None)
            .await
            .unwrap();
        let mut stream = TcpStream::connect(broker.addr).await.unwrap();
        let mut fetch = async |offset: i64, max_wait_ms| {
            let request = fetch_request(max_wait_ms, 1, 1 << 20, &[("t", 0, offset, 1 << 20)]);
            fetched(&call::<_, FetchResponse>(&mut stream, ApiKey::Fetch, 12, &request).await)
        };
        // Inside a stored batch: its records from the offset on.
        assert_eq!(fetch(1, 0).await, [(0, 3, vec![1, 2])]);
        // At the high watermark: nothing yet, no error.
        assert_eq!(fetch(3, 0).await, [(0, 3, vec![])]);
        let out_of_range = ResponseError::OffsetOutOfRange.code();
        assert_eq!(fetch(4, 0).await, [(out_of_range, 3, vec![])]);
        assert_eq!(fetch(-1, 0).await, [(out_of_range, 3, vec![])]);
        // A fetch waiting at the end ends when its topic is deleted.
        send(&mut stream, ApiKey::Fetch, 12, &fetch_request(30_000, 1, 1 << 20, &[("t", 0, 3, 1 << 20)]))
            .await;
        log.delete_topic("t").await.unwrap();
        let response: FetchResponse = receive(&mut stream, ApiKey::Fetch, 12).await;
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(fetched(&response), [(unknown, -1, vec![])]);
        let mut stream = TcpStream::connect(broker.addr).await.unwrap();
        let request = fetch_request(0, 1, 1 << 20, &[("t", 0, 0, 1 << 20)]);
        let response: FetchResponse = call(&mut stream, ApiKey::Fetch, 12, &request).await;
        assert_eq!(fetched(&response), [(unknown, -1, vec![])]);
    }

    #[test]
    fn kafka_sequences_unwrap_next_to_the_expected_one() {
        let span = SEQUENCE_SPAN;
        assert_eq!(unwrap_sequence(5, None), 5);
        assert_eq!(unwrap_sequence(5, Some(3)), 5);
        assert_eq!(unwrap_sequence(0, Some(span)), span, "wrapped: the next span");
        assert_eq!(unwrap_sequence(i32::MAX, Some(span + 2)), span - 1, "a retry from before the wrap");
        assert_eq!(unwrap_sequence(3, Some(5 * span - 1)), 5 * span + 3);
        assert_eq!(unwrap_sequence(i32::MAX, Some(1)), u64::from(i32::MAX as u32), "never below 0");
    }

    #[tokio::test]
    async fn an_idempotent_producers_sequence_wraps_around_as_kafkas_does() {
        let broker = start().await;
        broker.core.log().create_topic("t", 1, BTreeMap::new()).await.unwrap();
        let mut stream = TcpStream::connect(broker.addr).await.unwrap();
        let request = InitProducerIdRequest::default().with_transactional_id(None);
        let init: InitProducerIdResponse = call(&mut stream, ApiKey::InitProducerId, 4, &request).await;
        assert_eq!(init.error_code, 0);
        let (id, epoch) = (init.producer_id.0, init.producer_epoch);
        let mut produce = async |values: &[&str], sequence: i32| -> (i16, i64) {
            let request = produce_request(-1, &[("t", 0, batch(values, Some((id, epoch, sequence))))]);
            answers(&call::<_, ProduceResponse>(&mut stream, ApiKey::Produce, 9, &request).await)[0]
        };
        // A producer new to the partition starts anywhere; this batch's
        // sequence numbers wrap: i32::MAX - 1, i32::MAX, 0.
        assert_eq!(produce(&["a", "b", "c"], i32::MAX - 1).await, (0, 0));
        assert_eq!(produce(&["d", "e"], 1).await, (0, 3));
        // Retries on either side of the wrap get their offsets.
        assert_eq!(produce(&["a", "b", "c"], i32::MAX - 1).await, (0, 0));
        assert_eq!(produce(&["d", "e"], 1).await, (0, 3));
        assert_eq!(produce(&["f"], 3).await, (0, 5));
        assert_eq!(produce(&["x"], 9).await.0, ResponseError::OutOfOrderSequenceNumber.code());
        assert_eq!(broker.core.log().partition_state("t", 0).unwrap().high_watermark, 6);
    }

    #[tokio::test]
    async fn a_refused_acks_zero_produce_closes_the_connection_and_a_served_one_keeps_it() {
        let broker = start().await;
        broker.core.log().create_topic("t", 1, BTreeMap::new()).await.unwrap();
        let mut stream = TcpStream::connect(broker.addr).await.unwrap();
        // Served: no response, and the connection goes on serving.
        send(&mut stream, ApiKey::Produce, 3, &produce_request(0, &[("t", 0, batch(&["a"], None))])).await;
        let metadata: MetadataResponse =
            call(&mut stream, ApiKey::Metadata, 1, &MetadataRequest::default().with_topics(None)).await;
        assert_eq!(metadata.topics.len(), 1);
        high_watermark_reaches(&broker, 1).await;
        // Refused (no such topic, none created): the client hears of it by
        // the connection closing.
        let refused =
            produce_request(0, &[("t", 0, batch(&["b"], None)), ("missing", 0, batch(&["c"], None))]);
        send(&mut stream, ApiKey::Produce, 3, &refused).await;
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut [0; 16])).await;
        assert!(matches!(read, Ok(Ok(0))), "closed, with no response: {read:?}");
        // The partition that was served has its record.
        high_watermark_reaches(&broker, 2).await;
    }

    /// Waits until partition t/0's high watermark is `offset` (records
    /// written with acks 0 or 1 count once flushed).
    async fn high_watermark_reaches(broker: &Broker, offset: u64) {
        let reached = async {
            while broker.core.log().partition_state("t", 0).unwrap().high_watermark != offset {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), reached).await.expect("the high watermark reached");
    }
}
