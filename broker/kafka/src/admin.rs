//! Kafka's topic administration over the core: CreateTopics, DeleteTopics,
//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs. Topic configs
//! keep their Kafka names in the core (`cleanup.policy`, `retention.ms`,
//! ...), so they pass through unchanged; the core decides which keys and
//! values it accepts. Broker configs are command-line settings: described,
//! never altered.

use std::collections::{BTreeMap, HashSet};

use brooklet_core::{Operation, Resource, TopicConfig, TopicInfo, Uuid};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, TopicName,
};
use kafka_protocol::messages::{alter_configs_response, incremental_alter_configs_response};
use kafka_protocol::protocol::StrBytes;

use crate::authz::Caller;
use crate::error::{create_topic_error, denied_error, kafka_error};
use crate::server::Context;

/// Config resource types of DescribeConfigs and the alter requests.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Where a config's value comes from (Kafka's `config_source`).
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// Kafka's config types (DescribeConfigs v3+).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;
/// This broker's id, as Metadata names it.
const BROKER_ID: &str = "0";
/// IncrementalAlterConfigs' operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// One config entry as both responses describe it.
#[derive(Debug, PartialEq)]
struct ConfigEntry {
    name: &'static str,
    value: String,
    source: i8,
    read_only: bool,
    config_type: i8,
    doc: &'static str,
}

/// What each topic config key means, with its Kafka type.
const TOPIC_KEYS: [(&str, i8, &str); 6] = [
    ("cleanup.policy", TYPE_LIST, "delete, compact, or both: how old records are removed"),
    ("delete.retention.ms", TYPE_LONG, "how long a compacted topic keeps a tombstone"),
    ("flush.mode", TYPE_STRING, "durable or written: the guarantee of a produce that names none"),
    ("max.message.bytes", TYPE_INT, "the largest record (key, value and headers) accepted"),
    ("retention.bytes", TYPE_LONG, "the most bytes a partition keeps (-1: no limit)"),
    ("retention.ms", TYPE_LONG, "how long records are kept (-1: forever)"),
];

/// A topic's configs: every key with its value, set on the topic or its
/// default. `flush.mode` is listed only when the topic sets it: its default
/// is the broker's `--durability`.
fn topic_configs(ctx: &Context, info: &TopicInfo) -> Vec<ConfigEntry> {
    let limits = ctx.core.log().limits();
    let defaults = TopicConfig::parse(&BTreeMap::new(), limits).ok();
    TOPIC_KEYS
        .iter()
        .filter_map(|&(name, config_type, doc)| {
            let (value, source) = match (info.config.get(name), &defaults) {
                (Some(set), _) => (set.clone(), SOURCE_TOPIC),
                (None, Some(d)) => {
                    let source =
                        if name == "max.message.bytes" { SOURCE_STATIC_BROKER } else { SOURCE_DEFAULT };
                    (default_value(name, d)?, source)
                }
                (None, None) => return None,
            };
            Some(ConfigEntry { name, value, source, read_only: false, config_type, doc })
        })
        .collect()
}

/// A topic config's default, as Kafka writes it.
fn default_value(name: &str, d: &TopicConfig) -> Option<String> {
    let limit = |v: Option<i64>| v.map_or("-1".to_owned(), |v| v.to_string());
    Some(match name {
        "cleanup.policy" => match (d.delete, d.compact) {
            (true, true) => "compact,delete".to_owned(),
            (false, true) => "compact".to_owned(),
            _ => "delete".to_owned(),
        },
        "delete.retention.ms" => d.delete_retention_ms.to_string(),
        "max.message.bytes" => d.max_message_bytes.to_string(),
        "retention.bytes" => limit(d.retention_bytes.map(|b| b as i64)),
        "retention.ms" => limit(d.retention_ms),
        _ => return None,
    })
}

/// What DescribeConfigs says of the broker: its settings that Kafka
/// clients know by these names. None can be changed at run time.
fn broker_configs(ctx: &Context) -> Vec<ConfigEntry> {
    let entry = |name, value: String, config_type, doc| ConfigEntry {
        name,
        value,
        source: SOURCE_STATIC_BROKER,
        read_only: true,
        config_type,
        doc,
    };
    let options = &ctx.options;
    vec![
        entry(
            "auto.create.topics.enable",
            options.auto_create_topics.to_string(),
            TYPE_BOOLEAN,
            "Metadata creates the topics it is asked about",
        ),
        entry(
            "message.max.bytes",
            ctx.core.log().limits().max_record_bytes.to_string(),
            TYPE_INT,
            "the largest record accepted (--max-record-bytes)",
        ),
        entry(
            "num.partitions",
            options.default_partitions.to_string(),
            TYPE_INT,
            "partitions of a topic created without a count",
        ),
        entry(
            "socket.request.max.bytes",
            options.max_request_bytes.to_string(),
            TYPE_INT,
            "the largest request accepted, in bytes",
        ),
    ]
}

/// Why a topic of a CreateTopics request is refused.
type Refusal = (ResponseError, String);

/// The topic's partition count and config as the core takes them, checked
/// against everything the core and this single-node broker require.
fn check_creatable(ctx: &Context, t: &CreatableTopic) -> Result<(u32, BTreeMap<String, String>), Refusal> {
    let name = t.name.0.as_str();
    if !t.assignments.is_empty() {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            "manual replica assignments are not supported: this broker is the only node; \
             give num_partitions instead"
                .into(),
        ));
    }
    let partitions = match t.num_partitions {
        -1 => ctx.options.default_partitions,
        n if n >= 1 => n as u32,
        n => {
            return Err((
                ResponseError::InvalidPartitions,
                format!("num_partitions {n} is not -1 (the broker's default) or at least 1"),
            ));
        }
    };
    match t.replication_factor {
        -1 | 1 => {}
        r if r > 1 => {
            return Err((
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replication_factor {r} is larger than the 1 broker available: this broker is a single node"
                ),
            ));
        }
        r => {
            return Err((
                ResponseError::InvalidReplicationFactor,
                format!("replication_factor {r} is not -1 (the broker's default) or 1"),
            ));
        }
    }
    let mut config = BTreeMap::new();
    for c in &t.configs {
        let key = c.name.as_str();
        let Some(value) = &c.value else {
            return Err((ResponseError::InvalidConfig, format!("config `{key}` has a null value")));
        };
        if config.insert(key.to_owned(), value.as_str().to_owned()).is_some() {
            return Err((ResponseError::InvalidConfig, format!("config `{key}` is set twice")));
        }
    }
    let log = ctx.core.log();
    log.check_new_topic(name, partitions, &config).map_err(|e| (create_topic_error(&e), e.to_string()))?;
    if log.partition_count(name).is_some() {
        return Err((ResponseError::TopicAlreadyExists, format!("topic `{name}` already exists")));
    }
    Ok((partitions, config))
}

/// Creates each topic the caller may create; the others are refused.
pub(crate) async fn create_topics(
    ctx: &Context,
    caller: &Caller<'_>,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<TopicName> =
        request.topics.iter().filter(|t| !seen.insert(t.name.clone())).map(|t| t.name.clone()).collect();
    let log = ctx.core.log();
    let mut results = Vec::with_capacity(request.topics.len());
    for t in &request.topics {
        let name = t.name.0.as_str();
        let created = if duplicates.contains(&t.name) {
            Err((ResponseError::InvalidRequest, format!("topic `{name}` is named more than once")))
        } else if let Err(denied) = caller.check(ctx, Operation::Create, Resource::Topic(name)) {
            Err((denied_error(&denied), denied.to_string()))
        } else {
            match check_creatable(ctx, t) {
                Err(refusal) => Err(refusal),
                Ok((partitions, config)) if request.validate_only => {
                    Ok(TopicInfo { name: name.to_owned(), id: Uuid::nil(), partitions, config })
                }
                Ok((partitions, config)) => log
                    .create_topic(name, partitions, config)
                    .await
                    .map_err(|e| (create_topic_error(&e), brooklet_core::error_chain(&e))),
            }
        };
        let mut result = CreatableTopicResult::default().with_name(t.name.clone());
        match created {
            Ok(info) => {
                result.error_message = None;
                if version >= 5 {
                    result.num_partitions = info.partitions as i32;
                    result.replication_factor = 1;
                    let configs = topic_configs(ctx, &info)
                        .into_iter()
                        .map(|c| {
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(c.name))
                                .with_value(Some(str_bytes(c.value)))
                                .with_read_only(c.read_only)
                                .with_config_source(c.source)
                        })
                        .collect();
                    result.configs = Some(configs);
                }
                if version >= 7 {
                    result.topic_id = info.id;
                }
            }
            Err((error, message)) => {
                tracing::debug!(topic = name, %message, "kafka create topic refused");
                result.error_code = error.code();
                result.error_message = Some(str_bytes(message));
                if version >= 5 {
                    result.configs = None;
                }
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Deletes each topic the caller may delete; the others are refused.
pub(crate) async fn delete_topics(
    ctx: &Context,
    caller: &Caller<'_>,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let log = ctx.core.log();
    // Up to v5 topics are named; from v6 by name or, without one, by id.
    let wanted: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.as_str().to_owned()), t.topic_id))
            .collect()
    } else {
        request.topic_names.iter().map(|n| (Some(n.0.as_str().to_owned()), Uuid::nil())).collect()
    };
    let mut seen = HashSet::new();
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let found = match &name {
            Some(name) => Ok(name.clone()),
            None => log
                .list_topics()
                .into_iter()
                .find(|t| t.id == id && !id.is_nil())
                .map(|t| t.name)
                .ok_or((ResponseError::UnknownTopicId, format!("no topic has the id {id}"))),
        };
        let allowed =
            found.and_then(|topic| match caller.check(ctx, Operation::Delete, Resource::Topic(&topic)) {
                Ok(()) => Ok(topic),
                Err(denied) => Err((denied_error(&denied), denied.to_string())),
            });
        let deleted = match allowed {
            Ok(topic) if !seen.insert(topic.clone()) => {
                Err((ResponseError::InvalidRequest, format!("topic `{topic}` is named more than once")))
            }
            Ok(topic) => {
                let topic_id = log.describe_topic(&topic).map(|(i, _)| i.id).unwrap_or(id);
                match log.delete_topic(&topic).await {
                    Ok(()) => Ok((topic, topic_id)),
                    Err(e) => Err((kafka_error(&e), brooklet_core::error_chain(&e))),
                }
            }
            Err(refusal) => Err(refusal),
        };
        let mut result = DeletableTopicResult::default();
        match deleted {
            Ok((topic, topic_id)) => {
                result.name = Some(TopicName(str_bytes(topic)));
                if version >= 6 {
                    result.topic_id = topic_id;
                }
            }
            Err((error, message)) => {
                tracing::debug!(topic = ?name, %id, %message, "kafka delete topic refused");
                result.name = name.map(|n| TopicName(str_bytes(n)));
                if version >= 6 {
                    result.topic_id = id;
                }
                result.error_code = error.code();
                if version >= 5 {
                    result.error_message = Some(str_bytes(message));
                }
            }
        }
        if version < 6 && result.name.is_none() {
            result.name = Some(TopicName(StrBytes::default()));
        }
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// The configs of each topic the caller may describe, and the broker's
/// for a caller that may describe the cluster.
pub(crate) fn describe_configs(
    ctx: &Context,
    caller: &Caller<'_>,
    version: i16,
    request: &DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|r| {
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match resource_configs(ctx, caller, r) {
                Ok(entries) => {
                    result.error_message = None;
                    result.configs = entries
                        .into_iter()
                        .map(|c| {
                            describe_entry(
                                c,
                                version,
                                request.include_synonyms,
                                request.include_documentation,
                            )
                        })
                        .collect();
                }
                Err((error, message)) => {
                    result.error_code = error.code();
                    result.error_message = Some(str_bytes(message));
                }
            }
            result
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// A resource's config entries, filtered by the keys asked for.
fn resource_configs(
    ctx: &Context,
    caller: &Caller<'_>,
    r: &DescribeConfigsResource,
) -> Result<Vec<ConfigEntry>, Refusal> {
    let name = r.resource_name.as_str();
    authorize(ctx, caller, Operation::Describe, r.resource_type, name)?;
    let entries = match r.resource_type {
        RESOURCE_TOPIC => match ctx.core.log().describe_topic(name) {
            Ok((info, _)) => topic_configs(ctx, &info),
            Err(e) => return Err((kafka_error(&e), brooklet_core::error_chain(&e))),
        },
        RESOURCE_BROKER if name.is_empty() || name == BROKER_ID => broker_configs(ctx),
        RESOURCE_BROKER => {
            return Err((
                ResponseError::InvalidRequest,
                format!("broker `{name}` is not this broker ({BROKER_ID})"),
            ));
        }
        other => {
            return Err((
                ResponseError::InvalidRequest,
                format!("resource type {other} is not supported: only topics (2) and the broker (4)"),
            ));
        }
    };
    Ok(match &r.configuration_keys {
        None => entries,
        Some(keys) => entries.into_iter().filter(|e| keys.iter().any(|k| k.as_str() == e.name)).collect(),
    })
}

fn describe_entry(
    c: ConfigEntry,
    version: i16,
    synonyms: bool,
    documentation: bool,
) -> DescribeConfigsResourceResult {
    let mut out = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(c.name))
        .with_value(Some(str_bytes(c.value.clone())))
        .with_read_only(c.read_only)
        .with_config_source(c.source);
    if synonyms {
        out.synonyms = vec![
            DescribeConfigsSynonym::default()
                .with_name(str_bytes(c.name))
                .with_value(Some(str_bytes(c.value)))
                .with_source(c.source),
        ];
    }
    if version >= 3 {
        out.config_type = c.config_type;
        out.documentation = documentation.then(|| str_bytes(c.doc));
    }
    out
}

/// One change of IncrementalAlterConfigs, or AlterConfigs' entry (a set,
/// or with a null value, a return to the default).
struct Change<'a> {
    key: &'a str,
    op: i8,
    value: Option<&'a str>,
}

/// Whether the caller may do `operation` on a config resource: a topic, or
/// the cluster for the broker. Other types are refused later, as unknown.
fn authorize(
    ctx: &Context,
    caller: &Caller<'_>,
    operation: Operation,
    resource_type: i8,
    name: &str,
) -> Result<(), Refusal> {
    let resource = match resource_type {
        RESOURCE_TOPIC => Resource::Topic(name),
        RESOURCE_BROKER => Resource::Cluster,
        _ => return Ok(()),
    };
    caller.check(ctx, operation, resource).map_err(|denied| (denied_error(&denied), denied.to_string()))
}

/// The topic an alter request names, if the caller may alter it, or why
/// it cannot be altered.
fn alter_target(
    ctx: &Context,
    caller: &Caller<'_>,
    resource_type: i8,
    name: &str,
) -> Result<TopicInfo, Refusal> {
    authorize(ctx, caller, Operation::Alter, resource_type, name)?;
    match resource_type {
        RESOURCE_TOPIC => ctx
            .core
            .log()
            .describe_topic(name)
            .map(|(info, _)| info)
            .map_err(|e| (kafka_error(&e), e.to_string())),
        RESOURCE_BROKER => Err((
            ResponseError::InvalidRequest,
            format!(
                "broker `{name}`'s configs cannot be altered: they are the broker's command-line \
                 settings, changed by restarting it; only topic configs can be altered"
            ),
        )),
        other => Err((
            ResponseError::InvalidRequest,
            format!("resource type {other} is not supported: only topics (2) can be altered"),
        )),
    }
}

/// A list config's items (`compact,delete`), without blanks.
fn list_items(value: &str) -> Vec<&str> {
    value.split(',').map(str::trim).filter(|i| !i.is_empty()).collect()
}

/// The topic's whole config after `changes`, starting from `config` (its
/// current config, or none for AlterConfigs' full replacement), validated.
fn changed_config(
    ctx: &Context,
    mut config: BTreeMap<String, String>,
    changes: &[Change<'_>],
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut seen = HashSet::new();
    let defaults = TopicConfig::parse(&BTreeMap::new(), ctx.core.log().limits()).ok();
    for c in changes {
        let key = c.key;
        if !seen.insert(key) {
            return Err((ResponseError::InvalidRequest, format!("config `{key}` is named more than once")));
        }
        let Some(&(_, config_type, _)) = TOPIC_KEYS.iter().find(|(k, _, _)| *k == key) else {
            let accepted: Vec<&str> = TOPIC_KEYS.iter().map(|(k, _, _)| *k).collect();
            return Err((
                ResponseError::InvalidConfig,
                format!("config `{key}` is not a topic config; accepted keys: {}", accepted.join(", ")),
            ));
        };
        let value = || {
            c.value.ok_or_else(|| {
                (ResponseError::InvalidRequest, format!("config `{key}` has a null value: give one"))
            })
        };
        match c.op {
            OP_SET => {
                config.insert(key.to_owned(), value()?.to_owned());
            }
            OP_DELETE => {
                config.remove(key);
            }
            OP_APPEND | OP_SUBTRACT => {
                let op = if c.op == OP_APPEND { "APPEND" } else { "SUBTRACT" };
                if config_type != TYPE_LIST {
                    return Err((
                        ResponseError::InvalidConfig,
                        format!(
                            "{op} applies to list configs (cleanup.policy); config `{key}` is not a list"
                        ),
                    ));
                }
                let current = match config.get(key) {
                    Some(v) => v.clone(),
                    None => defaults.as_ref().and_then(|d| default_value(key, d)).unwrap_or_default(),
                };
                let mut items: Vec<&str> = list_items(&current);
                let given = list_items(value()?);
                if c.op == OP_APPEND {
                    for item in given {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                let joined = items.join(",");
                config.insert(key.to_owned(), joined);
            }
            other => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!(
                        "config `{key}`: operation {other} is not SET (0), DELETE (1), APPEND (2) or SUBTRACT (3)"
                    ),
                ));
            }
        }
    }
    TopicConfig::parse(&config, ctx.core.log().limits())
        .map_err(|e| (create_topic_error(&e), e.to_string()))?;
    Ok(config)
}

/// Alters one resource as a whole: every change or none. With `replace`,
/// keys not named return to their defaults (AlterConfigs).
async fn alter_resource(
    ctx: &Context,
    caller: &Caller<'_>,
    resource_type: i8,
    name: &str,
    changes: &[Change<'_>],
    replace: bool,
    validate_only: bool,
) -> Result<(), Refusal> {
    let info = alter_target(ctx, caller, resource_type, name)?;
    let base = if replace { BTreeMap::new() } else { info.config.clone() };
    let config = changed_config(ctx, base, changes)?;
    if validate_only {
        return Ok(());
    }
    let remove: Vec<String> = info.config.keys().filter(|k| !config.contains_key(*k)).cloned().collect();
    ctx.core
        .log()
        .alter_topic_config(name, config, &remove)
        .await
        .map(|_| ())
        .map_err(|e| (create_topic_error(&e), brooklet_core::error_chain(&e)))
}

/// Alters each resource in turn; a resource named twice is refused both times.
async fn alter_all<'a>(
    ctx: &Context,
    caller: &Caller<'_>,
    resources: Vec<(i8, &'a StrBytes, Vec<Change<'a>>)>,
    replace: bool,
    validate_only: bool,
) -> Vec<(i8, StrBytes, Result<(), Refusal>)> {
    let mut seen = HashSet::new();
    let duplicates: HashSet<(i8, &StrBytes)> =
        resources.iter().map(|(t, n, _)| (*t, *n)).filter(|r| !seen.insert(*r)).collect();
    let mut out = Vec::with_capacity(resources.len());
    for (resource_type, name, changes) in resources {
        let result = if duplicates.contains(&(resource_type, name)) {
            Err((ResponseError::InvalidRequest, format!("resource `{name}` is named more than once")))
        } else {
            alter_resource(ctx, caller, resource_type, name.as_str(), &changes, replace, validate_only).await
        };
        if let Err((_, message)) = &result {
            tracing::debug!(resource_type, resource = %name, %message, "kafka alter configs refused");
        }
        out.push((resource_type, name.clone(), result));
    }
    out
}

/// Kafka's legacy AlterConfigs: the configs given replace all of a topic's
/// configs; the keys not given return to their defaults.
pub(crate) async fn alter_configs(
    ctx: &Context,
    caller: &Caller<'_>,
    request: &AlterConfigsRequest,
) -> AlterConfigsResponse {
    let resources = request
        .resources
        .iter()
        .map(|r| {
            let changes = r
                .configs
                .iter()
                .map(|c| {
                    let value = c.value.as_deref();
                    Change {
                        key: c.name.as_str(),
                        op: if value.is_some() { OP_SET } else { OP_DELETE },
                        value,
                    }
                })
                .collect();
            (r.resource_type, &r.resource_name, changes)
        })
        .collect();
    let responses = alter_all(ctx, caller, resources, true, request.validate_only)
        .await
        .into_iter()
        .map(|(resource_type, name, result)| {
            let (error_code, message) = outcome(result);
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource_type)
                .with_resource_name(name)
                .with_error_code(error_code)
                .with_error_message(message)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

/// A resource's error code and message for an alter response.
fn outcome(result: Result<(), (ResponseError, String)>) -> (i16, Option<StrBytes>) {
    match result {
        Ok(()) => (0, None),
        Err((error, message)) => (error.code(), Some(str_bytes(message))),
    }
}

/// IncrementalAlterConfigs: each config set, deleted (back to its
/// default), appended to or subtracted from (list configs).
pub(crate) async fn incremental_alter_configs(
    ctx: &Context,
    caller: &Caller<'_>,
    request: &IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let resources = request
        .resources
        .iter()
        .map(|r| {
            let changes = r
                .configs
                .iter()
                .map(|c| Change { key: c.name.as_str(), op: c.config_operation, value: c.value.as_deref() })
                .collect();
            (r.resource_type, &r.resource_name, changes)
        })
        .collect();
    let responses = alter_all(ctx, caller, resources, false, request.validate_only)
        .await
        .into_iter()
        .map(|(resource_type, name, result)| {
            let (error_code, message) = outcome(result);
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource_type)
                .with_resource_name(name)
                .with_error_code(error_code)
                .with_error_message(message)
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::alter_configs_request::{
        AlterConfigsResource as LegacyResource, AlterableConfig as LegacyConfig,
    };
    use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopicConfig};
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource as IncrementalResource, AlterableConfig as IncrementalConfig,
    };
    use kafka_protocol::messages::{ApiKey, BrokerId, RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::server::KafkaOptions;

    fn context(dir: &std::path::Path) -> Context {
        let core = brooklet_core::Core::open(&brooklet_core::CoreConfig::new(dir), None, &TaskTracker::new())
            .expect("the core opens");
        let options = KafkaOptions {
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            auto_create_topics: false,
            default_partitions: 2,
            max_request_bytes: 8 << 20,
            max_connections: 8,
            auth_required: false,
            certificate_principal: None,
            connections: Default::default(),
            authorizer: brooklet_core::Authorizer::allow_all(core.acls().clone()),
        };
        Context { core, options, metrics: brooklet_metrics::Metrics::new(), stop: CancellationToken::new() }
    }

    /// Sends `body` as a request frame through the connection's handler and
    /// decodes the response.
    async fn call<Req: Encodable, Resp: Decodable>(
        ctx: &Context,
        api: ApiKey,
        version: i16,
        body: &Req,
    ) -> Resp {
        let mut frame = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(9)
            .encode(&mut frame, api.request_header_version(version))
            .unwrap();
        body.encode(&mut frame, version).unwrap();
        let mut response = crate::server::handle(ctx, &Caller::NOBODY, "127.0.0.1", frame.freeze())
            .await
            .unwrap()
            .expect("a response");
        let _size = bytes::Buf::get_i32(&mut response);
        let header = ResponseHeader::decode(&mut response, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, 9);
        let decoded = Resp::decode(&mut response, version).unwrap();
        assert!(response.is_empty(), "{api:?} v{version}: the response is read to its end");
        decoded
    }

    fn topic(name: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
        CreatableTopic::default()
            .with_name(TopicName(str_bytes(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(str_bytes(*k))
                            .with_value(Some(str_bytes(*v)))
                    })
                    .collect(),
            )
    }

    fn create(topics: Vec<CreatableTopic>, validate_only: bool) -> CreateTopicsRequest {
        CreateTopicsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(1000)
            .with_validate_only(validate_only)
    }

    #[tokio::test]
    async fn create_topics_creates_the_valid_topics_and_refuses_each_invalid_one() {
        for version in 2..=7 {
            let dir = tempfile::tempdir().unwrap();
            let ctx = context(dir.path());
            ctx.core.log().create_topic("exists", 1, BTreeMap::new()).await.unwrap();
            let mut replicated = topic("replicated", 1, &[]);
            replicated.replication_factor = 3;
            let mut assigned = topic("assigned", -1, &[]);
            assigned.assignments = vec![
                CreatableReplicaAssignment::default()
                    .with_partition_index(0)
                    .with_broker_ids(vec![BrokerId(0)]),
            ];
            let mut one = topic("one", 1, &[]);
            one.replication_factor = 1;
            let request = create(
                vec![
                    topic("orders", 3, &[("retention.ms", "1000"), ("cleanup.policy", "compact")]),
                    topic("defaulted", -1, &[]),
                    one,
                    replicated,
                    assigned,
                    topic("zero", 0, &[]),
                    topic("unknown-config", 1, &[("segment.bytes", "1024")]),
                    topic("bad-value", 1, &[("retention.ms", "soon")]),
                    topic("bad name", 1, &[]),
                    topic("exists", 1, &[]),
                    topic("twice", 1, &[]),
                    topic("twice", 1, &[]),
                ],
                false,
            );
            let response: CreateTopicsResponse = call(&ctx, ApiKey::CreateTopics, version, &request).await;
            let got: Vec<(&str, i16)> =
                response.topics.iter().map(|t| (t.name.0.as_str(), t.error_code)).collect();
            assert_eq!(
                got,
                [
                    ("orders", 0),
                    ("defaulted", 0),
                    ("one", 0),
                    ("replicated", 38),
                    ("assigned", 39),
                    ("zero", 37),
                    ("unknown-config", 40),
                    ("bad-value", 40),
                    ("bad name", 17),
                    ("exists", 36),
                    ("twice", 42),
                    ("twice", 42)
                ],
                "v{version}"
            );
            let message =
                |i: usize| response.topics[i].error_message.as_deref().unwrap_or_default().to_owned();
            assert!(message(3).contains("single node"), "{}", message(3));
            assert!(message(6).contains("segment.bytes"), "{}", message(6));
            assert!(message(7).contains("retention.ms"), "{}", message(7));
            assert_eq!(response.topics[0].error_message, None);
            let log = ctx.core.log();
            let names: Vec<String> = log.list_topics().into_iter().map(|t| t.name).collect();
            assert_eq!(names, ["defaulted", "exists", "one", "orders"], "v{version}: only the valid ones");
            let (orders, _) = log.describe_topic("orders").unwrap();
            assert_eq!(orders.partitions, 3);
            assert_eq!(orders.config["retention.ms"], "1000");
            assert_eq!(log.partition_count("defaulted"), Some(2), "--kafka-default-partitions");
            let created = &response.topics[0];
            if version >= 5 {
                assert_eq!((created.num_partitions, created.replication_factor), (3, 1));
                let configs = created.configs.as_ref().unwrap();
                let entry = |name: &str| configs.iter().find(|c| c.name.as_str() == name).unwrap();
                assert_eq!(entry("retention.ms").value.as_deref(), Some("1000"));
                assert_eq!(entry("retention.ms").config_source, SOURCE_TOPIC);
                assert_eq!(entry("cleanup.policy").value.as_deref(), Some("compact"));
                assert_eq!(entry("retention.bytes").value.as_deref(), Some("-1"));
                assert_eq!(entry("retention.bytes").config_source, SOURCE_DEFAULT);
                assert_eq!(entry("max.message.bytes").config_source, SOURCE_STATIC_BROKER);
            }
            if version >= 7 {
                assert_eq!(created.topic_id, orders.id);
                assert!(!created.topic_id.is_nil());
            }
        }
    }

    #[tokio::test]
    async fn validate_only_checks_everything_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        ctx.core.log().create_topic("exists", 1, BTreeMap::new()).await.unwrap();
        let request = create(
            vec![
                topic("fine", 4, &[("retention.bytes", "100")]),
                topic("exists", 1, &[]),
                topic("bad", 1, &[("retention.bytes", "lots")]),
            ],
            true,
        );
        let response: CreateTopicsResponse = call(&ctx, ApiKey::CreateTopics, 7, &request).await;
        let got: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(got, [0, 36, 40]);
        assert_eq!(response.topics[0].num_partitions, 4);
        assert!(response.topics[0].topic_id.is_nil(), "no topic, no id");
        assert_eq!(ctx.core.log().partition_count("fine"), None);
        assert_eq!(ctx.core.log().list_topics().len(), 1);
    }

    #[tokio::test]
    async fn delete_topics_by_name_and_by_id() {
        for version in 1..=6 {
            let dir = tempfile::tempdir().unwrap();
            let ctx = context(dir.path());
            let log = ctx.core.log();
            let a = log.create_topic("a", 1, BTreeMap::new()).await.unwrap();
            let b = log.create_topic("b", 1, BTreeMap::new()).await.unwrap();
            let name = |n: &str| TopicName(str_bytes(n));
            let mut request = DeleteTopicsRequest::default().with_timeout_ms(1000);
            if version >= 6 {
                let by_name = |n: &str| DeleteTopicState::default().with_name(Some(name(n)));
                let by_id = |id| DeleteTopicState::default().with_topic_id(id);
                request.topics = vec![by_name("a"), by_id(b.id), by_name("missing"), by_id(Uuid::new_v4())];
            } else {
                request.topic_names = vec![name("a"), name("b"), name("missing")];
            }
            let response: DeleteTopicsResponse = call(&ctx, ApiKey::DeleteTopics, version, &request).await;
            let got: Vec<(Option<&str>, i16)> = response
                .responses
                .iter()
                .map(|r| (r.name.as_ref().map(|n| n.0.as_str()), r.error_code))
                .collect();
            let mut expected = vec![(Some("a"), 0), (Some("b"), 0), (Some("missing"), 3)];
            if version >= 6 {
                expected.push((None, 100));
                assert_eq!(response.responses[0].topic_id, a.id);
                assert_eq!(response.responses[1].topic_id, b.id);
            }
            assert_eq!(got, expected, "v{version}");
            if version >= 5 {
                let message = response.responses[2].error_message.as_deref().unwrap_or_default();
                assert!(message.contains("missing"), "{message}");
            }
            assert!(log.list_topics().is_empty(), "v{version}");
        }
    }

    #[tokio::test]
    async fn describe_configs_of_a_topic_and_the_broker() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let config = BTreeMap::from([("retention.ms".to_owned(), "5000".to_owned())]);
        ctx.core.log().create_topic("t", 1, config).await.unwrap();
        let resource = |kind, name: &str, keys: Option<&[&str]>| {
            DescribeConfigsResource::default()
                .with_resource_type(kind)
                .with_resource_name(str_bytes(name))
                .with_configuration_keys(keys.map(|k| k.iter().map(|k| str_bytes(*k)).collect()))
        };
        for version in 1..=4 {
            let request = DescribeConfigsRequest::default()
                .with_resources(vec![
                    resource(RESOURCE_TOPIC, "t", None),
                    resource(RESOURCE_TOPIC, "t", Some(&["retention.ms", "cleanup.policy", "no.such.key"])),
                    resource(RESOURCE_TOPIC, "missing", None),
                    resource(RESOURCE_BROKER, "0", None),
                    resource(RESOURCE_BROKER, "7", None),
                    resource(3, "group", None),
                ])
                .with_include_synonyms(true)
                .with_include_documentation(version >= 3);
            let response: DescribeConfigsResponse =
                call(&ctx, ApiKey::DescribeConfigs, version, &request).await;
            let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
            assert_eq!(codes, [0, 0, 3, 0, 42, 42], "v{version}");
            let entries = |i: usize| -> Vec<(String, String, i8)> {
                response.results[i]
                    .configs
                    .iter()
                    .map(|c| {
                        (c.name.to_string(), c.value.as_deref().unwrap_or("null").to_owned(), c.config_source)
                    })
                    .collect()
            };
            let all = entries(0);
            assert_eq!(
                all,
                [
                    ("cleanup.policy".into(), "delete".into(), SOURCE_DEFAULT),
                    ("delete.retention.ms".into(), "86400000".into(), SOURCE_DEFAULT),
                    ("max.message.bytes".into(), "1048576".into(), SOURCE_STATIC_BROKER),
                    ("retention.bytes".into(), "-1".into(), SOURCE_DEFAULT),
                    ("retention.ms".into(), "5000".into(), SOURCE_TOPIC),
                ],
                "v{version}"
            );
            assert_eq!(
                entries(1),
                [
                    ("cleanup.policy".into(), "delete".into(), SOURCE_DEFAULT),
                    ("retention.ms".into(), "5000".into(), SOURCE_TOPIC)
                ]
            );
            assert!(response.results[0].configs.iter().all(|c| !c.read_only && !c.is_sensitive));
            assert_eq!(response.results[0].configs[0].synonyms.len(), 1);
            if version >= 3 {
                assert_eq!(response.results[0].configs[0].config_type, TYPE_LIST);
                assert!(response.results[0].configs[0].documentation.is_some());
            }
            let broker = entries(3);
            assert!(
                broker.contains(&("num.partitions".into(), "2".into(), SOURCE_STATIC_BROKER)),
                "{broker:?}"
            );
            assert!(broker.contains(&(
                "auto.create.topics.enable".into(),
                "false".into(),
                SOURCE_STATIC_BROKER
            )));
            assert!(
                response.results[5].error_message.as_deref().unwrap_or_default().contains("resource type 3")
            );
        }
    }

    /// A config, its operation and its value.
    type Op<'a> = (&'a str, i8, Option<&'a str>);

    fn incremental(name: &str, ops: &[Op<'_>]) -> IncrementalResource {
        IncrementalResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(str_bytes(name))
            .with_configs(
                ops.iter()
                    .map(|(k, op, v)| {
                        IncrementalConfig::default()
                            .with_name(str_bytes(*k))
                            .with_config_operation(*op)
                            .with_value(v.map(str_bytes))
                    })
                    .collect(),
            )
    }

    fn legacy(resource_type: i8, name: &str, configs: &[(&str, Option<&str>)]) -> LegacyResource {
        LegacyResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(str_bytes(name))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        LegacyConfig::default().with_name(str_bytes(*k)).with_value(v.map(str_bytes))
                    })
                    .collect(),
            )
    }

    /// The topic's configs as DescribeConfigs shows those set on it.
    async fn set_configs(ctx: &Context, topic: &str) -> Vec<(String, String)> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes(topic))
                .with_configuration_keys(None),
        ]);
        let response: DescribeConfigsResponse = call(ctx, ApiKey::DescribeConfigs, 4, &request).await;
        response.results[0]
            .configs
            .iter()
            .filter(|c| c.config_source == SOURCE_TOPIC)
            .map(|c| (c.name.to_string(), c.value.as_deref().unwrap_or_default().to_owned()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[tokio::test]
    async fn incremental_alter_configs_sets_deletes_appends_and_subtracts_all_or_nothing() {
        for version in 0..=1 {
            let dir = tempfile::tempdir().unwrap();
            let ctx = context(dir.path());
            let config = BTreeMap::from([
                ("retention.ms".to_owned(), "5000".to_owned()),
                ("cleanup.policy".to_owned(), "compact".to_owned()),
            ]);
            ctx.core.log().create_topic("t", 1, config).await.unwrap();
            let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental(
                    "t",
                    &[
                        ("retention.bytes", OP_SET, Some("100")),
                        ("retention.ms", OP_DELETE, None),
                        ("cleanup.policy", OP_APPEND, Some("delete")),
                    ],
                ),
                incremental("missing", &[("retention.ms", OP_SET, Some("1"))]),
                incremental("0", &[("num.partitions", OP_SET, Some("3"))])
                    .with_resource_type(RESOURCE_BROKER),
                incremental("g", &[]).with_resource_type(32),
            ]);
            let response: IncrementalAlterConfigsResponse =
                call(&ctx, ApiKey::IncrementalAlterConfigs, version, &request).await;
            let codes: Vec<(String, i16)> =
                response.responses.iter().map(|r| (r.resource_name.to_string(), r.error_code)).collect();
            assert_eq!(codes, pairs_codes(&[("t", 0), ("missing", 3), ("0", 42), ("g", 42)]), "v{version}");
            assert_eq!(response.responses[0].error_message, None);
            let message = |r: &IncrementalAlterConfigsResponse, i: usize| {
                r.responses[i].error_message.as_deref().unwrap_or_default().to_owned()
            };
            assert!(message(&response, 2).contains("command-line"), "{}", message(&response, 2));
            assert!(message(&response, 3).contains("resource type 32"), "{}", message(&response, 3));
            let expected = pairs(&[("cleanup.policy", "compact,delete"), ("retention.bytes", "100")]);
            assert_eq!(set_configs(&ctx, "t").await, expected, "v{version}");
            let (info, _) = ctx.core.log().describe_topic("t").unwrap();
            assert_eq!(info.config, expected.iter().cloned().collect::<BTreeMap<_, _>>());

            // Each refusal changes nothing of its resource, even the valid changes.
            let refusals: [(&[Op<'_>], i16, &str); 7] = [
                (
                    &[("retention.ms", OP_SET, Some("1")), ("segment.bytes", OP_SET, Some("1"))],
                    40,
                    "segment.bytes",
                ),
                (&[("retention.ms", OP_SET, Some("soon"))], 40, "retention.ms"),
                (&[("no.such.key", OP_DELETE, None)], 40, "no.such.key"),
                (&[("retention.ms", OP_APPEND, Some("1"))], 40, "not a list"),
                (&[("retention.ms", OP_SET, None)], 42, "null value"),
                (&[("retention.ms", 7, Some("1"))], 42, "operation 7"),
                (
                    &[("retention.ms", OP_SET, Some("1")), ("retention.ms", OP_DELETE, None)],
                    42,
                    "more than once",
                ),
            ];
            for (ops, code, named) in refusals {
                let request =
                    IncrementalAlterConfigsRequest::default().with_resources(vec![incremental("t", ops)]);
                let response: IncrementalAlterConfigsResponse =
                    call(&ctx, ApiKey::IncrementalAlterConfigs, version, &request).await;
                assert_eq!(response.responses[0].error_code, code, "{ops:?}");
                assert!(message(&response, 0).contains(named), "{ops:?}: {}", message(&response, 0));
                assert_eq!(set_configs(&ctx, "t").await, expected, "{ops:?} changed nothing");
            }

            // validate_only checks and changes nothing; then SUBTRACT for real.
            let subtract = |validate_only| {
                IncrementalAlterConfigsRequest::default()
                    .with_resources(vec![incremental(
                        "t",
                        &[
                            ("cleanup.policy", OP_SUBTRACT, Some("compact")),
                            ("flush.mode", OP_SET, Some("written")),
                        ],
                    )])
                    .with_validate_only(validate_only)
            };
            let response: IncrementalAlterConfigsResponse =
                call(&ctx, ApiKey::IncrementalAlterConfigs, version, &subtract(true)).await;
            assert_eq!(response.responses[0].error_code, 0);
            assert_eq!(set_configs(&ctx, "t").await, expected, "validate_only changes nothing");
            let bad = IncrementalAlterConfigsRequest::default()
                .with_resources(vec![incremental(
                    "t",
                    &[("cleanup.policy", OP_SUBTRACT, Some("compact,delete"))],
                )])
                .with_validate_only(true);
            let response: IncrementalAlterConfigsResponse =
                call(&ctx, ApiKey::IncrementalAlterConfigs, version, &bad).await;
            assert_eq!(
                response.responses[0].error_code, 40,
                "validate_only still validates: an empty policy"
            );
            let response: IncrementalAlterConfigsResponse =
                call(&ctx, ApiKey::IncrementalAlterConfigs, version, &subtract(false)).await;
            assert_eq!(response.responses[0].error_code, 0);
            assert_eq!(
                set_configs(&ctx, "t").await,
                pairs(&[("cleanup.policy", "delete"), ("flush.mode", "written"), ("retention.bytes", "100")])
            );
        }
    }

    fn pairs_codes(p: &[(&str, i16)]) -> Vec<(String, i16)> {
        p.iter().map(|(k, c)| ((*k).to_owned(), *c)).collect()
    }

    #[tokio::test]
    async fn alter_configs_replaces_a_topics_whole_config() {
        for version in 0..=2 {
            let dir = tempfile::tempdir().unwrap();
            let ctx = context(dir.path());
            let config = BTreeMap::from([
                ("retention.ms".to_owned(), "5000".to_owned()),
                ("cleanup.policy".to_owned(), "compact".to_owned()),
            ]);
            ctx.core.log().create_topic("t", 1, config).await.unwrap();
            ctx.core.log().create_topic("u", 1, BTreeMap::new()).await.unwrap();
            let request = AlterConfigsRequest::default().with_resources(vec![
                legacy(
                    RESOURCE_TOPIC,
                    "t",
                    &[("retention.bytes", Some("10")), ("delete.retention.ms", None)],
                ),
                legacy(RESOURCE_TOPIC, "u", &[("retention.ms", Some("soon"))]),
                legacy(RESOURCE_TOPIC, "missing", &[]),
                legacy(RESOURCE_BROKER, "0", &[("num.partitions", Some("3"))]),
                legacy(RESOURCE_TOPIC, "twice", &[]),
                legacy(RESOURCE_TOPIC, "twice", &[]),
            ]);
            let response: AlterConfigsResponse = call(&ctx, ApiKey::AlterConfigs, version, &request).await;
            let codes: Vec<(String, i16)> =
                response.responses.iter().map(|r| (r.resource_name.to_string(), r.error_code)).collect();
            assert_eq!(
                codes,
                pairs_codes(&[("t", 0), ("u", 40), ("missing", 3), ("0", 42), ("twice", 42), ("twice", 42)]),
                "v{version}"
            );
            let message = response.responses[1].error_message.as_deref().unwrap_or_default();
            assert!(message.contains("retention.ms"), "{message}");
            // The keys not given went back to their defaults.
            assert_eq!(set_configs(&ctx, "t").await, pairs(&[("retention.bytes", "10")]), "v{version}");
            assert!(set_configs(&ctx, "u").await.is_empty());

            let validate = AlterConfigsRequest::default()
                .with_resources(vec![legacy(RESOURCE_TOPIC, "t", &[("retention.ms", Some("1"))])])
                .with_validate_only(true);
            let response: AlterConfigsResponse = call(&ctx, ApiKey::AlterConfigs, version, &validate).await;
            assert_eq!(response.responses[0].error_code, 0);
            assert_eq!(set_configs(&ctx, "t").await, pairs(&[("retention.bytes", "10")]), "validate_only");
            let clear = AlterConfigsRequest::default().with_resources(vec![legacy(RESOURCE_TOPIC, "t", &[])]);
            let response: AlterConfigsResponse = call(&ctx, ApiKey::AlterConfigs, version, &clear).await;
            assert_eq!(response.responses[0].error_code, 0);
            assert!(set_configs(&ctx, "t").await.is_empty(), "an empty set restores every default");
        }
    }

    #[test]
    fn alter_requests_of_every_version_pass_the_walk_and_huge_arrays_are_refused() {
        fn walk(api: ApiKey, version: i16, body: &impl Encodable) {
            let mut out = BytesMut::new();
            body.encode(&mut out, version).unwrap();
            let left =
                crate::walk::check(api, version, &out).unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
            assert_eq!(left, 0, "{api:?} v{version}: the walk follows the schema to its end");
        }
        let ops: &[Op<'_>] = &[("a", OP_SET, Some("1")), ("b", OP_DELETE, None)];
        for v in 0..=1 {
            let r = IncrementalAlterConfigsRequest::default()
                .with_resources(vec![incremental("t", ops), incremental("u", &[])])
                .with_validate_only(true);
            walk(ApiKey::IncrementalAlterConfigs, v, &r);
        }
        for v in 0..=2 {
            let r = AlterConfigsRequest::default().with_resources(vec![
                legacy(RESOURCE_TOPIC, "t", &[("a", Some("1")), ("b", None)]),
                legacy(RESOURCE_BROKER, "0", &[]),
            ]);
            walk(ApiKey::AlterConfigs, v, &r);
        }
        let huge = |prefix: &[u8], flexible: bool| -> Bytes {
            let mut body = BytesMut::from(prefix);
            if flexible {
                body.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
            } else {
                body.put_i32(i32::MAX);
            }
            body.put_slice(&[0; 8]);
            body.freeze()
        };
        // The resources array, then one resource's configs array.
        let one = [0, 0, 0, 1, 2, 0, 1, b't'];
        let one_flexible = [2, 2, 2, b't'];
        for (prefix, flexible, v) in
            [(&[][..], false, 0), (&[][..], true, 1), (&one[..], false, 0), (&one_flexible[..], true, 1)]
        {
            let err = crate::frame::decode::<IncrementalAlterConfigsRequest>(
                ApiKey::IncrementalAlterConfigs,
                v,
                huge(prefix, flexible),
            )
            .unwrap_err();
            assert!(err.to_string().contains("an array counts"), "v{v}: {err}");
            let v = if flexible { 2 } else { 1 };
            let err =
                crate::frame::decode::<AlterConfigsRequest>(ApiKey::AlterConfigs, v, huge(prefix, flexible))
                    .unwrap_err();
            assert!(err.to_string().contains("an array counts"), "v{v}: {err}");
        }
    }

    #[test]
    fn admin_requests_of_every_version_pass_the_walk_and_huge_arrays_are_refused() {
        fn walk(api: ApiKey, version: i16, body: &impl Encodable) {
            let mut out = BytesMut::new();
            body.encode(&mut out, version).unwrap();
            let left =
                crate::walk::check(api, version, &out).unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
            assert_eq!(left, 0, "{api:?} v{version}: the walk follows the schema to its end");
        }
        let mut t = topic("t", 2, &[("retention.ms", "1"), ("cleanup.policy", "compact")]);
        t.assignments = vec![
            CreatableReplicaAssignment::default()
                .with_partition_index(0)
                .with_broker_ids(vec![BrokerId(0), BrokerId(1)]);
            2
        ];
        t.configs.push(CreatableTopicConfig::default().with_name(str_bytes("n")).with_value(None));
        for v in 2..=7 {
            walk(ApiKey::CreateTopics, v, &create(vec![t.clone(), topic("u", -1, &[])], true));
        }
        for v in 1..=6 {
            let mut r = DeleteTopicsRequest::default().with_timeout_ms(5);
            if v >= 6 {
                r.topics = vec![
                    DeleteTopicState::default().with_name(Some(TopicName(str_bytes("a")))),
                    DeleteTopicState::default().with_topic_id(Uuid::new_v4()),
                ];
            } else {
                r.topic_names = vec![TopicName(str_bytes("a")), TopicName(str_bytes("b"))];
            }
            walk(ApiKey::DeleteTopics, v, &r);
        }
        for v in 1..=4 {
            let r = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(str_bytes("t"))
                    .with_configuration_keys(Some(vec![str_bytes("a"), str_bytes("b")])),
                DescribeConfigsResource::default().with_resource_type(4).with_configuration_keys(None),
            ]);
            walk(ApiKey::DescribeConfigs, v, &r);
        }
        // Each API: a first array claiming i32::MAX elements (2^32 - 2 in a
        // flexible version) in a frame of a few bytes, refused before decoding.
        let huge = |flexible: bool| -> Bytes {
            let mut body = BytesMut::new();
            if flexible {
                body.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
            } else {
                body.put_i32(i32::MAX);
            }
            body.put_slice(&[0; 8]);
            body.freeze()
        };
        for (api, version, flexible) in [
            (ApiKey::CreateTopics, 4, false),
            (ApiKey::CreateTopics, 7, true),
            (ApiKey::DeleteTopics, 3, false),
            (ApiKey::DeleteTopics, 6, true),
            (ApiKey::DescribeConfigs, 2, false),
            (ApiKey::DescribeConfigs, 4, true),
        ] {
            let err = match api {
                ApiKey::CreateTopics => {
                    crate::frame::decode::<CreateTopicsRequest>(api, version, huge(flexible)).err()
                }
                ApiKey::DeleteTopics => {
                    crate::frame::decode::<DeleteTopicsRequest>(api, version, huge(flexible)).err()
                }
                _ => crate::frame::decode::<DescribeConfigsRequest>(api, version, huge(flexible)).err(),
            };
            let err = err.unwrap_or_else(|| panic!("{api:?} v{version} refused"));
            assert!(err.to_string().contains("an array counts"), "{api:?} v{version}: {err}");
        }
        // A nested array: one topic whose config array claims i32::MAX entries.
        let mut body = BytesMut::new();
        body.put_i32(1);
        body.put_i16(1);
        body.put_u8(b't');
        body.put_i32(1);
        body.put_i16(1);
        body.put_i32(0);
        body.put_i32(i32::MAX);
        body.put_slice(&[0; 8]);
        let err =
            crate::frame::decode::<CreateTopicsRequest>(ApiKey::CreateTopics, 4, body.freeze()).unwrap_err();
        assert!(err.to_string().contains("an array counts"), "{err}");
    }
}
