//! The routes: the page's files, and the JSON API under `/console/api/`.
//! Every handler finds the caller's session, asks the authorizer, calls
//! the core and answers JSON; changes are POSTs carrying the session's
//! CSRF token in `x-csrf-token`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use brooklet_core::{FetchOpts, GroupKind, Header, NewRecord, Operation, Principal, ResetTo, Resource};
use tokio_util::sync::CancellationToken;

use crate::Console;
use crate::assets::ASSETS;
use crate::error::ApiError;
use crate::form::Fields;
use crate::json::{Json, is_json_document};
use crate::session::{self, Session};

/// Most items a list page returns.
pub(crate) const MAX_PAGE: usize = 1000;
/// Items a list page returns when `limit` is not given.
const DEFAULT_PAGE: usize = 100;
/// Most records one browse returns.
pub(crate) const MAX_RECORDS: u64 = 500;
/// Records one browse returns when `limit` is not given.
const DEFAULT_RECORDS: u64 = 50;
/// Most bytes of records one browse returns (`max_bytes`).
pub(crate) const MAX_BROWSE_BYTES: u64 = 4 * 1024 * 1024;
/// Bytes one browse returns when `max_bytes` is not given.
const DEFAULT_BROWSE_BYTES: u64 = 1024 * 1024;
/// Most stored bytes one browse reads while filtering by key.
const MAX_SCAN_BYTES: u64 = 16 * 1024 * 1024;
/// Partitions a group's page lists for each member (it shows the count too).
pub(crate) const MAX_ASSIGNMENT_SHOWN: usize = 20;
/// Headers one sent record may carry.
const MAX_SEND_HEADERS: usize = 64;
/// Longest body the API reads.
const MAX_BODY_BYTES: usize = crate::form::MAX_FORM_BYTES;

type ApiResult = Result<Response, ApiError>;

pub(crate) fn router(console: Console) -> Router {
    let mut router = Router::new()
        .route("/console", get(|| async { redirect("/console/") }))
        .route("/console/api/session", get(session_info))
        .route("/console/api/login", post(login))
        .route("/console/api/logout", post(logout))
        .route("/console/api/overview", get(overview))
        .route("/console/api/history", get(history))
        .route("/console/api/topics", get(topics).post(create_topic))
        .route("/console/api/topics/{name}", get(topic))
        .route("/console/api/topics/{name}/config", post(alter_config))
        .route("/console/api/topics/{name}/delete", post(delete_topic))
        .route("/console/api/topics/{name}/records", get(records).post(send_record))
        .route("/console/api/groups", get(groups))
        .route("/console/api/groups/{id}", get(group))
        .route("/console/api/groups/{id}/reset", post(reset_offsets))
        .route("/console/api/{*rest}", get(not_found).post(not_found));
    for asset in ASSETS {
        router = router.route(
            &format!("/console/{}", asset.path),
            get(move || async move {
                let mut r = (StatusCode::OK, asset.body).into_response();
                secure(r.headers_mut(), asset.content_type);
                r
            }),
        );
    }
    router.with_state(console)
}

fn redirect(to: &'static str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such console API")
}

/// Headers on every answer: its type, no sniffing, no framing, and a
/// content security policy that allows the console's own files only.
fn secure(h: &mut HeaderMap, content_type: &'static str) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
}

/// `value` as a JSON answer with `status`.
pub(crate) fn json_response(status: StatusCode, value: &Json) -> Response {
    let mut r = (status, value.render()).into_response();
    secure(r.headers_mut(), "application/json");
    r
}

fn ok(value: Json) -> ApiResult {
    Ok(json_response(StatusCode::OK, &value))
}

impl Console {
    /// The caller: with `--auth required`, a session that logged in; else
    /// anyone (the authorizer allows everything without authentication).
    fn caller(&self, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
        let session = self.inner.sessions.find(headers);
        if !self.inner.options.auth_required {
            return Ok(session.and_then(|s| s.principal));
        }
        match session.and_then(|s| s.principal) {
            Some(p) => Ok(Some(p)),
            None => {
                Err(ApiError::new(StatusCode::UNAUTHORIZED, "log in: the broker requires authentication"))
            }
        }
    }

    /// The caller of a change: [`Console::caller`], and the request must
    /// carry its session's CSRF token in `x-csrf-token`.
    fn changer(&self, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
        let principal = self.caller(headers)?;
        let session = self.inner.sessions.find(headers).ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "no console session: reload the page (the session cookie is missing)",
            )
        })?;
        let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !session::same_token(sent, &session.csrf) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "invalid x-csrf-token: it must be the session's token (reload the page)",
            ));
        }
        Ok(principal)
    }

    fn check(&self, p: &Option<Principal>, op: Operation, resource: Resource<'_>) -> Result<(), ApiError> {
        let authz = &self.inner.options.authorizer;
        authz.check(p.as_ref(), op, resource).map_err(|denied| {
            authz.report_denial(&denied, "console", None);
            ApiError::from(denied)
        })
    }

    fn allows(&self, p: &Option<Principal>, op: Operation, resource: Resource<'_>) -> bool {
        self.inner.options.authorizer.allows(p.as_ref(), op, resource)
    }
}

fn session_json(console: &Console, session: &Session) -> Json {
    Json::object([
        ("auth_required", console.inner.options.auth_required.into()),
        ("user", session.principal.as_ref().map(|p| p.name().to_owned()).into()),
        ("csrf", session.csrf.clone().into()),
    ])
}

fn with_cookie(mut r: Response, cookie: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The caller's session, made if it has none (so that it has a CSRF
/// token); with `--auth required`, `user` is null until a login.
async fn session_info(State(c): State<Console>, headers: HeaderMap) -> Response {
    if let Some(s) = c.inner.sessions.find(&headers) {
        return json_response(StatusCode::OK, &session_json(&c, &s));
    }
    let s = c.inner.sessions.create(None);
    with_cookie(json_response(StatusCode::OK, &session_json(&c, &s)), session::set_cookie(&s))
}

/// `user` and `password` (a form): a new session as that user, with its
/// CSRF token in the answer.
async fn login(State(c): State<Console>, body: Bytes) -> ApiResult {
    let f = Fields::from_body(&body)?;
    let user = f.required("user")?.to_owned();
    let password = f.get("password").unwrap_or("").to_owned();
    if user.len() > brooklet_core::MAX_USER_NAME_BYTES {
        return Err(ApiError::bad("user", format!("is over {} bytes", brooklet_core::MAX_USER_NAME_BYTES)));
    }
    if password.len() > brooklet_core::MAX_PASSWORD_BYTES {
        return Err(ApiError::bad(
            "password",
            format!("is over {} bytes", brooklet_core::MAX_PASSWORD_BYTES),
        ));
    }
    let principal = if c.inner.options.auth_required {
        // A PBKDF2 derivation: off the async workers.
        let users = c.inner.options.core.users().clone();
        let checked = tokio::task::spawn_blocking(move || users.authenticate_password(&user, &password))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the login check failed: {e}"))
            })?;
        match checked {
            Ok(p) => Some(p),
            Err(_) => {
                c.inner.options.metrics.auth_failure("console", "password");
                return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid user or password"));
            }
        }
    } else {
        None
    };
    let s = c.inner.sessions.create(principal);
    Ok(with_cookie(json_response(StatusCode::OK, &session_json(&c, &s)), session::set_cookie(&s)))
}

async fn logout(State(c): State<Console>, headers: HeaderMap) -> ApiResult {
    c.changer(&headers)?;
    if let Some(s) = c.inner.sessions.find(&headers) {
        c.inner.sessions.remove(&s.token);
    }
    Ok(with_cookie(json_response(StatusCode::OK, &Json::object([])), session::clear_cookie()))
}

async fn overview(State(c): State<Console>, headers: HeaderMap) -> ApiResult {
    let p = c.caller(&headers)?;
    c.check(&p, Operation::Describe, Resource::Cluster)?;
    let core = c.inner.options.core.clone();
    let disk = tokio::task::spawn_blocking(move || core.disk_usage()).await.map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("reading disk usage failed: {e}"))
    })?;
    let (used, free) = match disk {
        Ok(d) => (Json::from(d.used_bytes), Json::from(d.free_bytes)),
        Err(_) => (Json::Null, Json::Null),
    };
    let o = &c.inner.options;
    let listeners = o
        .listeners
        .iter()
        .map(|l| {
            Json::object([
                ("name", l.name.into()),
                ("addr", l.addr.to_string().into()),
                ("tls", l.tls.into()),
            ])
        })
        .collect();
    let groups = o.core.groups().list().map(|g| g.len()).unwrap_or(0);
    ok(Json::object([
        ("version", env!("CARGO_PKG_VERSION").into()),
        ("uptime_s", c.inner.started.elapsed().as_secs().into()),
        ("data_dir", o.core.data_dir().display().to_string().into()),
        ("disk_used_bytes", used),
        ("disk_free_bytes", free),
        ("listeners", Json::Array(listeners)),
        ("topics", o.core.log().list_topics().len().into()),
        ("groups", groups.into()),
        ("auth_required", o.auth_required.into()),
        ("user", p.map(|p| p.name().to_owned()).into()),
    ]))
}

async fn history(State(c): State<Console>, headers: HeaderMap) -> ApiResult {
    let p = c.caller(&headers)?;
    c.check(&p, Operation::Describe, Resource::Cluster)?;
    let samples = c.inner.history.samples();
    let column = |f: &dyn Fn(&crate::history::Sample) -> Json| Json::Array(samples.iter().map(f).collect());
    let opt = |v: Option<f64>| v.map_or(Json::Null, Json::Float);
    ok(Json::object([
        ("interval_ms", 1000u64.into()),
        ("at_ms", column(&|s| s.at_ms.into())),
        ("records_in", column(&|s| Json::Float(s.records_in))),
        ("records_out", column(&|s| Json::Float(s.records_out))),
        ("produce_p50_ms", column(&|s| opt(s.produce_p50_ms))),
        ("produce_p99_ms", column(&|s| opt(s.produce_p99_ms))),
        ("group_commit_ms", column(&|s| opt(s.group_commit_ms))),
    ]))
}

/// `offset` and `limit` of a list page.
fn page(q: &Fields) -> Result<(usize, usize), ApiError> {
    let offset = q.number("offset", 0..=usize::MAX)?.unwrap_or(0);
    let limit = q.number("limit", 1..=MAX_PAGE)?.unwrap_or(DEFAULT_PAGE);
    Ok((offset, limit))
}

/// One page of a list: `total` items, `items` from `offset`.
fn paged(total: usize, offset: usize, limit: usize, items: Vec<Json>) -> Json {
    Json::object([
        ("total", total.into()),
        ("offset", offset.into()),
        ("limit", limit.into()),
        ("items", Json::Array(items)),
    ])
}

fn query(raw: Option<String>) -> Result<Fields, ApiError> {
    Fields::parse(raw.as_deref().unwrap_or(""))
}

async fn topics(State(c): State<Console>, headers: HeaderMap, RawQuery(raw): RawQuery) -> ApiResult {
    let p = c.caller(&headers)?;
    let q = query(raw)?;
    let (offset, limit) = page(&q)?;
    let filter = q.get("filter").unwrap_or("");
    let log = c.inner.options.core.log();
    let visible: Vec<_> = log
        .list_topics()
        .into_iter()
        .filter(|t| t.name.contains(filter) && c.allows(&p, Operation::Describe, Resource::Topic(&t.name)))
        .collect();
    let total = visible.len();
    let items = visible
        .into_iter()
        .skip(offset)
        .take(limit)
        .filter_map(|t| {
            let (_, states) = log.describe_topic(&t.name).ok()?;
            let records: u64 = states.iter().map(|s| s.high_watermark.saturating_sub(s.log_start)).sum();
            let stored = log.stored_bytes(&t.name).unwrap_or(0);
            let rate = c.inner.history.topic_rate(&t.name).map_or(Json::Null, Json::Float);
            Some(Json::object([
                ("name", t.name.into()),
                ("partitions", t.partitions.into()),
                ("records", records.into()),
                ("stored_bytes", stored.into()),
                ("rate", rate),
            ]))
        })
        .collect();
    ok(paged(total, offset, limit, items))
}

fn config_json(config: &BTreeMap<String, String>) -> Json {
    Json::Array(
        config
            .iter()
            .map(|(k, v)| Json::object([("key", k.clone().into()), ("value", v.clone().into())]))
            .collect(),
    )
}

/// A topic, its config and groups, one page (`offset`, `limit`) of its
/// partitions, and what the caller `may` do to it (the page offers only
/// that; every action is checked again when it comes).
async fn topic(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let p = c.caller(&headers)?;
    let (offset, limit) = page(&query(raw)?)?;
    c.check(&p, Operation::Describe, Resource::Topic(&name))?;
    let core = &c.inner.options.core;
    let (info, states) = core.log().describe_topic(&name)?;
    let records: u64 = states.iter().map(|s| s.high_watermark.saturating_sub(s.log_start)).sum();
    let partitions = states
        .iter()
        .skip(offset)
        .take(limit)
        .map(|s| {
            Json::object([
                ("partition", s.partition.into()),
                ("log_start", s.log_start.into()),
                ("high_watermark", s.high_watermark.into()),
            ])
        })
        .collect();
    let groups = core
        .groups()
        .on_topic(&name)?
        .into_iter()
        .filter(|g| c.allows(&p, Operation::Describe, Resource::Group(&g.group)))
        .map(|g| {
            Json::object([
                ("id", g.group.into()),
                ("state", g.state.name().into()),
                ("members", g.members.into()),
                ("lag", g.lag.into()),
            ])
        })
        .collect();
    let topic = Resource::Topic(&name);
    let may = Json::object([
        ("read", c.allows(&p, Operation::Read, topic).into()),
        ("write", c.allows(&p, Operation::Write, topic).into()),
        ("alter", c.allows(&p, Operation::Alter, topic).into()),
        ("delete", c.allows(&p, Operation::Delete, topic).into()),
    ]);
    ok(Json::object([
        ("name", info.name.clone().into()),
        ("id", info.id.to_string().into()),
        ("may", may),
        ("records", records.into()),
        ("partitions", paged(states.len(), offset, limit, partitions)),
        ("config", config_json(&info.config)),
        ("stored_bytes", core.log().stored_bytes(&name).unwrap_or(0).into()),
        ("groups", Json::Array(groups)),
    ]))
}

/// `key=value` lines of a form field into a map; the field names the error.
fn entries<'a>(
    field: &str,
    lines: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut map = BTreeMap::new();
    for (i, line) in lines.filter(|l| !l.trim().is_empty()).enumerate() {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| ApiError::bad(&format!("{field}[{i}]"), format!("`{line}` is not KEY=VALUE")))?;
        map.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(map)
}

/// `name`, `partitions` and `config` lines (`KEY=VALUE`).
async fn create_topic(State(c): State<Console>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let p = c.changer(&headers)?;
    let f = Fields::from_body(&body)?;
    let name = f.required("name")?;
    c.check(&p, Operation::Create, Resource::Topic(name))?;
    let log = c.inner.options.core.log();
    let max = log.limits().max_partitions;
    let partitions = f.number("partitions", 1..=max)?.unwrap_or(1);
    let config = entries("config", f.all("config"))?;
    let info = log.create_topic(name, partitions, config).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &Json::object([("name", info.name.into()), ("partitions", info.partitions.into())]),
    ))
}

/// `set` lines (`KEY=VALUE`) and `remove` keys.
async fn alter_config(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let p = c.changer(&headers)?;
    c.check(&p, Operation::Alter, Resource::Topic(&name))?;
    let f = Fields::from_body(&body)?;
    let set = entries("set", f.all("set"))?;
    let remove: Vec<String> = f.all("remove").filter(|k| !k.is_empty()).map(str::to_owned).collect();
    let info = c.inner.options.core.log().alter_topic_config(&name, set, &remove).await?;
    ok(Json::object([("name", info.name.into()), ("config", config_json(&info.config))]))
}

/// `confirm` must repeat the topic's name.
async fn delete_topic(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let p = c.changer(&headers)?;
    c.check(&p, Operation::Delete, Resource::Topic(&name))?;
    let f = Fields::from_body(&body)?;
    if f.get("confirm") != Some(name.as_str()) {
        return Err(ApiError::bad("confirm", "must repeat the topic's name to delete it"));
    }
    c.inner.options.core.log().delete_topic(&name).await?;
    ok(Json::object([("deleted", name.into())]))
}

/// Bytes as the browser shows them: UTF-8 text (`json` when it is a JSON
/// object or array), else hex.
pub(crate) fn rendered(bytes: Option<&[u8]>) -> Json {
    let Some(bytes) = bytes else { return Json::Null };
    let (kind, text) = match std::str::from_utf8(bytes) {
        Ok(s) if is_json_document(s) => ("json", s.to_owned()),
        Ok(s) if !s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) => {
            ("utf8", s.to_owned())
        }
        _ => ("hex", bytes.iter().map(|b| format!("{b:02x}")).collect()),
    };
    Json::object([("kind", kind.into()), ("text", text.into()), ("size", bytes.len().into())])
}

/// Browses a partition: `partition` (without it, the partition of `key`, or
/// 0), then `offset`, `time_ms` or `latest` (the last N), `key` to keep only
/// records of that key, `limit` records and `max_bytes`.
async fn records(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let p = c.caller(&headers)?;
    c.check(&p, Operation::Read, Resource::Topic(&name))?;
    let q = query(raw)?;
    let log = c.inner.options.core.log();
    let partitions = log
        .partition_count(&name)
        .ok_or_else(|| brooklet_core::Error::TopicNotFound { topic: name.clone() })?;
    let key = q.get("key").filter(|k| !k.is_empty());
    // Without a partition, a key's records are where the producer's
    // partitioner put them.
    let default_partition =
        key.map_or(0, |k| brooklet_partitioner::partition_for_key(k.as_bytes(), partitions));
    let partition = q.number("partition", 0..=partitions - 1)?.unwrap_or(default_partition);
    let limit = q.number("limit", 1..=MAX_RECORDS)?.unwrap_or(DEFAULT_RECORDS);
    let max_bytes = q.number("max_bytes", 1..=MAX_BROWSE_BYTES)?.unwrap_or(DEFAULT_BROWSE_BYTES);
    let state = log.partition_state(&name, partition)?;
    let starts = [q.get("offset"), q.get("time_ms"), q.get("latest")]
        .iter()
        .filter(|v| v.is_some_and(|v| !v.is_empty()))
        .count();
    if starts > 1 {
        return Err(ApiError::bad("offset", "give one of offset, time_ms and latest"));
    }
    let from = if let Some(o) = q.number("offset", 0..=u64::MAX)? {
        o.clamp(state.log_start, state.high_watermark)
    } else if let Some(t) = q.number("time_ms", 0..=i64::MAX)? {
        log.offsets_for_time(&name, &[partition], t)?.first().map_or(state.high_watermark, |t| t.offset)
    } else {
        let latest = q.number("latest", 1..=MAX_RECORDS)?.unwrap_or(limit);
        state.high_watermark.saturating_sub(latest).max(state.log_start)
    };
    let mut out = Vec::new();
    let (mut bytes, mut scanned, mut next) = (0u64, 0u64, from);
    let never = CancellationToken::new();
    'read: while next < state.high_watermark && (out.len() as u64) < limit && scanned < MAX_SCAN_BYTES {
        let opts = FetchOpts {
            max_bytes: (max_bytes - bytes.min(max_bytes - 1)) as usize,
            max_wait: Duration::ZERO,
        };
        let fetched = log.fetch(&name, partition, next, opts, &never).await?;
        if fetched.batches.is_empty() {
            break;
        }
        for batch in &fetched.batches {
            scanned += batch.encoded_bytes();
            let decoded = batch.decode().map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("a stored batch at offset {} does not decode: {e}", batch.base_offset()),
                )
            })?;
            for (i, r) in decoded.iter().enumerate() {
                let offset = batch.base_offset() + u64::from(r.offset_delta);
                if offset < next {
                    continue;
                }
                next = offset + 1;
                if key.is_some_and(|k| r.key.as_deref() != Some(k.as_bytes())) {
                    continue;
                }
                let size = batch.encodings().nth(i).map_or(0, |e| e.len() as u64);
                if !out.is_empty() && (bytes + size > max_bytes || out.len() as u64 >= limit) {
                    next = offset;
                    break 'read;
                }
                bytes += size;
                let headers = r
                    .headers
                    .iter()
                    .map(|h| {
                        Json::object([("name", h.name.clone().into()), ("value", rendered(Some(&h.value)))])
                    })
                    .collect();
                out.push(Json::object([
                    ("offset", offset.into()),
                    ("timestamp_ms", r.timestamp_ms.into()),
                    ("key", rendered(r.key.as_deref())),
                    ("value", rendered(r.value.as_deref())),
                    ("headers", Json::Array(headers)),
                ]));
            }
            next = next.max(batch.next_offset());
        }
    }
    ok(Json::object([
        ("topic", name.into()),
        ("partition", partition.into()),
        ("partitions", partitions.into()),
        ("log_start", state.log_start.into()),
        ("high_watermark", state.high_watermark.into()),
        ("from", from.into()),
        ("next_offset", next.into()),
        ("records", Json::Array(out)),
    ]))
}

/// Sends one record: `partition` (else the broker picks), `key` (absent or
/// empty: none), `value`, and `header_name`/`header_value` pairs.
async fn send_record(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let p = c.changer(&headers)?;
    c.check(&p, Operation::Write, Resource::Topic(&name))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::bad("body", format!("is over the limit of {MAX_BODY_BYTES} bytes")));
    }
    let f = Fields::from_body(&body)?;
    let partitions = c
        .inner
        .options
        .core
        .log()
        .partition_count(&name)
        .ok_or_else(|| brooklet_core::Error::TopicNotFound { topic: name.clone() })?;
    let partition = f.number("partition", 0..=partitions - 1)?;
    let names: Vec<&str> = f.all("header_name").collect();
    let values: Vec<&str> = f.all("header_value").collect();
    if names.len() != values.len() {
        return Err(ApiError::bad("header_value", "each header_name needs one header_value"));
    }
    if names.len() > MAX_SEND_HEADERS {
        return Err(ApiError::bad(
            "header_name",
            format!("{} headers is over the limit of {MAX_SEND_HEADERS}", names.len()),
        ));
    }
    let headers = names
        .iter()
        .zip(&values)
        .enumerate()
        .map(|(i, (n, v))| {
            if n.is_empty() {
                return Err(ApiError::bad(&format!("header_name[{i}]"), "is empty"));
            }
            Ok(Header { name: (*n).to_owned(), value: bytes::Bytes::copy_from_slice(v.as_bytes()) })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let record = NewRecord {
        partition,
        timestamp_ms: None,
        key: f.get("key").filter(|k| !k.is_empty()).map(|k| bytes::Bytes::copy_from_slice(k.as_bytes())),
        value: Some(bytes::Bytes::copy_from_slice(f.get("value").unwrap_or("").as_bytes())),
        headers,
    };
    let size = record.size() as u64;
    let o = &c.inner.options;
    let (appended, _) = o.core.log().produce(&name, vec![record], None, None).await?;
    let first = appended
        .first()
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the record was not appended"))?;
    o.metrics.produced(&name, 1, size);
    ok(Json::object([("partition", first.partition.into()), ("offset", first.base_offset.into())]))
}

async fn groups(State(c): State<Console>, headers: HeaderMap, RawQuery(raw): RawQuery) -> ApiResult {
    let p = c.caller(&headers)?;
    let q = query(raw)?;
    let (offset, limit) = page(&q)?;
    let filter = q.get("filter").unwrap_or("");
    let core = &c.inner.options.core;
    let visible: Vec<_> = core
        .groups()
        .list()?
        .into_iter()
        .filter(|(id, _, _)| id.contains(filter) && c.allows(&p, Operation::Describe, Resource::Group(id)))
        .collect();
    let total = visible.len();
    let items = visible
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(id, state, members)| {
            let lag =
                core.groups().describe(&id).ok().map(|d| d.partitions.iter().map(|l| l.lag).sum::<u64>());
            Json::object([
                ("id", id.into()),
                ("state", state.name().into()),
                ("members", members.into()),
                ("lag", lag.into()),
            ])
        })
        .collect();
    ok(paged(total, offset, limit, items))
}

/// A group: its members (each with the first [`MAX_ASSIGNMENT_SHOWN`]
/// partitions it owns), its lag over the last minutes, and one page
/// (`offset`, `limit`) of its partitions whose topic contains `filter`. Only
/// topics the caller may describe are shown or counted.
async fn group(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let p = c.caller(&headers)?;
    let q = query(raw)?;
    let (offset, limit) = page(&q)?;
    let filter = q.get("filter").unwrap_or("");
    c.check(&p, Operation::Describe, Resource::Group(&id))?;
    let d = c.inner.options.core.groups().describe(&id)?;
    let visible = |topic: &str| c.allows(&p, Operation::Describe, Resource::Topic(topic));
    let members = d
        .info
        .members
        .iter()
        .map(|m| {
            let mine: Vec<_> = m.assignment.iter().filter(|(t, _)| visible(t)).collect();
            let owns = mine
                .iter()
                .take(MAX_ASSIGNMENT_SHOWN)
                .map(|(t, part)| Json::object([("topic", t.clone().into()), ("partition", (*part).into())]))
                .collect();
            Json::object([
                ("member_id", m.member_id.clone().into()),
                ("client_id", m.client_id.clone().into()),
                ("host", m.host.clone().into()),
                (
                    "topics",
                    Json::Array(m.topics.iter().filter(|t| visible(t)).map(|t| t.clone().into()).collect()),
                ),
                ("owns", mine.len().into()),
                ("assignment", Json::Array(owns)),
            ])
        })
        .collect();
    let shown: Vec<_> = d.partitions.iter().filter(|l| visible(&l.topic)).collect();
    let lag: u64 = shown.iter().map(|l| l.lag).sum();
    let matching: Vec<_> = shown.into_iter().filter(|l| l.topic.contains(filter)).collect();
    let partitions = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|l| {
            Json::object([
                ("topic", l.topic.clone().into()),
                ("partition", l.partition.into()),
                ("committed", l.committed.into()),
                ("high_watermark", l.high_watermark.into()),
                ("lag", l.lag.into()),
                ("owner", l.owner.clone().into()),
            ])
        })
        .collect();
    let history = c.inner.history.group_lag(&id, visible);
    let lag_history = Json::object([
        ("at_ms", Json::Array(history.iter().map(|(at, _)| (*at).into()).collect())),
        ("lag", Json::Array(history.iter().map(|(_, lag)| (*lag).into()).collect())),
    ]);
    let may = Json::object([("reset", c.allows(&p, Operation::Read, Resource::Group(&id)).into())]);
    ok(Json::object([
        ("id", id.clone().into()),
        ("may", may),
        ("state", d.info.state.name().into()),
        ("epoch", i64::from(d.info.epoch).into()),
        (
            "kind",
            d.info
                .kind
                .map(|k| match k {
                    GroupKind::Broker => "broker",
                    GroupKind::Classic => "classic",
                })
                .into(),
        ),
        ("lag", lag.into()),
        ("lag_history", lag_history),
        ("members", Json::Array(members)),
        ("partitions", paged(matching.len(), offset, limit, partitions)),
    ]))
}

/// `topic`, `to` (`earliest`, `latest`, `offset`, `timestamp`) and `value`
/// (the offset or time in ms). The core refuses while the group has
/// members.
async fn reset_offsets(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let p = c.changer(&headers)?;
    let f = Fields::from_body(&body)?;
    let topic = f.required("topic")?;
    c.check(&p, Operation::Read, Resource::Group(&id))?;
    c.check(&p, Operation::Read, Resource::Topic(topic))?;
    let to = match f.required("to")? {
        "earliest" => ResetTo::Earliest,
        "latest" => ResetTo::Latest,
        "offset" => ResetTo::Offset(
            f.number("value", 0..=u64::MAX)?
                .ok_or_else(|| ApiError::bad("value", "is required with to=offset"))?,
        ),
        "timestamp" => ResetTo::Timestamp(
            f.number("value", 0..=i64::MAX)?
                .ok_or_else(|| ApiError::bad("value", "is required with to=timestamp"))?,
        ),
        other => {
            return Err(ApiError::bad(
                "to",
                format!("`{other}` is not one of earliest, latest, offset, timestamp"),
            ));
        }
    };
    let offsets = c.inner.options.core.groups().reset_offsets(&id, topic, to).await?;
    let items = offsets
        .into_iter()
        .map(|o| {
            Json::object([
                ("topic", o.topic.into()),
                ("partition", o.partition.into()),
                ("offset", o.offset.into()),
            ])
        })
        .collect();
    ok(Json::object([("offsets", Json::Array(items))]))
}
