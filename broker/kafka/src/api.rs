//! The implemented APIs over the core. Each builds its response for the
//! request's version: fields a version lacks are left at their defaults,
//! which `kafka-protocol` requires.

use std::collections::BTreeMap;
use std::time::Duration;

use brooklet_core::{Acks, Error, FetchOpts, Idempotence, TopicInfo};
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

use crate::error::code;
use crate::records;
use crate::server::Context;

/// This broker's id: the only one, leader of every partition.
const BROKER_ID: i32 = 0;
/// Most bytes one fetch response carries, whatever the request asks.
const MAX_FETCH_BYTES: usize = 32 << 20;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

pub(crate) async fn metadata(ctx: &Context, version: i16, request: MetadataRequest) -> MetadataResponse {
    let log = ctx.core.log();
    // v0 asks for every topic with an empty list; later versions with null.
    let requested = match request.topics {
        Some(t) if !(version == 0 && t.is_empty()) => Some(t),
        _ => None,
    };
    let allow_create = ctx.options.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let mut topics = Vec::new();
    match requested {
        None => topics.extend(log.list_topics().iter().map(|t| topic_metadata(version, t))),
        Some(requested) => {
            for t in requested {
                let Some(topic) = t.name.as_ref().map(|n| n.0.as_str().to_owned()) else {
                    let found = log.list_topics().into_iter().find(|i| i.id == t.topic_id);
                    topics.push(match found {
                        Some(info) => topic_metadata(version, &info),
                        None => MetadataResponseTopic::default()
                            .with_error_code(ResponseError::UnknownTopicId.code())
                            .with_topic_id(t.topic_id),
                    });
                    continue;
                };
                let described = match log.describe_topic(&topic) {
                    Err(Error::TopicNotFound { .. }) if allow_create => {
                        match log.create_topic(&topic, ctx.options.default_partitions, BTreeMap::new()).await
                        {
                            Ok(info) => Ok(info),
                            Err(Error::TopicExists { .. }) => log.describe_topic(&topic).map(|(i, _)| i),
                            Err(e) => Err(e),
                        }
                    }
                    other => other.map(|(i, _)| i),
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

/// `None` for acks 0: the client expects no response.
pub(crate) async fn produce(ctx: &Context, version: i16, request: ProduceRequest) -> Option<ProduceResponse> {
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
    for topic in request.topic_data {
        let topic_name = topic.name.0.as_str().to_owned();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let mut out = PartitionProduceResponse::default().with_index(data.index);
            let result = match (&refuse_all, acks, u32::try_from(data.index)) {
                (Some((e, message)), _, _) => Err((*e, message.clone())),
                (None, _, Err(_)) => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("partition {} is negative", data.index),
                )),
                (None, Err(e), _) => Err((e, String::new())),
                (None, Ok(acks), Ok(partition)) => {
                    produce_partition(ctx, &topic_name, partition, data.records, acks).await
                }
            };
            match result {
                Ok((base_offset, log_start)) => {
                    out.base_offset = base_offset as i64;
                    if version >= 5 {
                        out.log_start_offset = log_start as i64;
                    }
                }
                Err((e, message)) => {
                    tracing::debug!(topic = %topic_name, partition = data.index, error = %message, "kafka produce refused");
                    out.error_code = e.code();
                    if version >= 8 && !message.is_empty() {
                        out.error_message = Some(StrBytes::from_string(message));
                    }
                }
            }
            partitions.push(out);
        }
        responses
            .push(TopicProduceResponse::default().with_name(topic.name).with_partition_responses(partitions));
    }
    if request.acks == 0 {
        return None;
    }
    Some(ProduceResponse::default().with_responses(responses))
}

/// Appends one partition's batches; its base offset and log start.
async fn produce_partition(
    ctx: &Context,
    topic: &str,
    partition: u32,
    records: Option<bytes::Bytes>,
    acks: Acks,
) -> Result<(u64, u64), (ResponseError, String)> {
    let records = records.ok_or_else(|| (ResponseError::CorruptMessage, "null records".to_owned()))?;
    let (records, claim) = records::decode_produce(records, partition, ctx.options.max_request_bytes)
        .map_err(|e| (e.error, e.message))?;
    let core_error = |e: Error| (crate::error::kafka_error(&e), brooklet_core::error_chain(&e));
    let producer = match claim {
        None => None,
        Some(c) => Some(Idempotence {
            producer_id: u64::try_from(c.producer_id).unwrap_or(0),
            producer_epoch: u16::try_from(c.producer_epoch).map_err(|_| {
                (
                    ResponseError::InvalidProducerEpoch,
                    format!("producer epoch {} is negative", c.producer_epoch),
                )
            })?,
            base_sequences: BTreeMap::from([(partition, c.base_sequence as u64)]),
        }),
    };
    let (appended, _) =
        ctx.core.log().produce(topic, records, Some(acks), producer.as_ref()).await.map_err(core_error)?;
    let base = appended.first().map_or(0, |a| a.base_offset);
    let log_start = ctx.core.log().partition_state(topic, partition).map_or(0, |s| s.log_start);
    Ok((base, log_start))
}

pub(crate) async fn fetch(ctx: &Context, version: i16, request: FetchRequest) -> FetchResponse {
    let log = ctx.core.log();
    let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0))
        .min(log.limits().max_fetch_wait);
    let wanted: Vec<(String, i32, i64, usize)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let max = usize::try_from(p.partition_max_bytes).unwrap_or(0);
                (t.topic.0.as_str().to_owned(), p.partition, p.fetch_offset, max)
            })
        })
        .collect();
    // Long-poll: when nothing is there yet, wait until any partition has
    // data (or the time is up), then read them all at once.
    if request.min_bytes > 0 && !max_wait.is_zero() && !wanted.is_empty() {
        let any_ready = wanted.iter().any(|(topic, partition, offset, _)| {
            let Ok(p) = u32::try_from(*partition) else { return true };
            log.partition_state(topic, p)
                .map_or(true, |s| i64::try_from(s.high_watermark).is_ok_and(|hw| hw != *offset))
        });
        if !any_ready {
            let waits = wanted.iter().map(|(topic, partition, offset, _)| {
                let opts = FetchOpts { max_bytes: 1, max_wait };
                Box::pin(log.fetch(topic, *partition as u32, *offset as u64, opts, &ctx.stop))
            });
            let _ = select_all(waits).await;
        }
    }
    let mut budget = usize::try_from(request.max_bytes).unwrap_or(0).clamp(1, MAX_FETCH_BYTES);
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    for (topic, partition, offset, partition_max) in wanted {
        let mut data = PartitionData::default().with_partition_index(partition);
        let max_bytes = partition_max.clamp(1, budget.max(1));
        let fetched = match (u32::try_from(partition), u64::try_from(offset)) {
            (Ok(p), Ok(o)) => {
                log.fetch(&topic, p, o, FetchOpts { max_bytes, max_wait: Duration::ZERO }, &ctx.stop).await
            }
            (Err(_), _) => Err(Error::TopicNotFound { topic: topic.clone() }),
            (_, Err(_)) => Err(Error::OffsetOutOfRange {
                topic: topic.clone(),
                partition: partition as u32,
                offset: 0,
                log_start: 0,
                high_watermark: 0,
            }),
        };
        match fetched {
            Ok(f) => {
                let mut out = BytesMut::new();
                match records::encode_fetched(&f.batches, &mut out) {
                    Ok(()) => {
                        budget = budget.saturating_sub(out.len());
                        data.records = Some(out.freeze());
                    }
                    Err(e) => {
                        tracing::error!(%topic, partition, error = %e, "kafka fetch: cannot encode records");
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
                }
                data.records = Some(bytes::Bytes::new());
            }
        }
        match responses.last_mut() {
            Some(last) if last.topic.0.as_str() == topic => last.partitions.push(data),
            _ => responses
                .push(FetchableTopicResponse::default().with_topic(name(&topic)).with_partitions(vec![data])),
        }
    }
    FetchResponse::default().with_responses(responses)
}

pub(crate) fn list_offsets(ctx: &Context, version: i16, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let log = ctx.core.log();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let topic = t.name.0.as_str().to_owned();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut out =
                        ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    if version >= 4 {
                        out.leader_epoch = 0;
                    }
                    let result = u32::try_from(p.partition_index)
                        .map_err(|_| Error::TopicNotFound { topic: topic.clone() })
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
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// A new idempotent producer id, epoch 0. A producer that names its
/// current id (to bump its epoch after an error) gets a new id instead:
/// the core keeps every id at epoch 0.
pub(crate) fn init_producer_id(ctx: &Context, request: &InitProducerIdRequest) -> InitProducerIdResponse {
    if request.transactional_id.is_some() {
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    match ctx.core.log().new_producer_id() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id.id as i64))
            .with_producer_epoch(id.epoch as i16),
        Err(e) => InitProducerIdResponse::default()
            .with_error_code(code(&e))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}
