//! The accept loop and each connection: one request at a time, answered in
//! order; a bad frame closes the connection with a warning. Connections,
//! requests, their errors and bad frames are counted in the metrics. Each
//! connection is watched by the listener's guard (`brooklet_tls::guard`): a
//! place per client address, a deadline for the TLS handshake and first
//! whole frame, and an idle timeout between requests.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Instant;

use brooklet_core::{Authorizer, Core};
use brooklet_metrics::Metrics;
use brooklet_tls::guard::{ConnSettings, Expired, FirstRequest, ListenerGuard, Reason};
use brooklet_tls::{HandshakeError, Listener, PeerIdentity, Tls};
use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::DeleteGroupsRequest;
use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, IncrementalAlterConfigsRequest, OffsetDeleteRequest};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, DescribeGroupsRequest, FetchRequest, FindCoordinatorRequest,
    HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest,
    SyncGroupRequest,
};
use kafka_protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest};
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::authz::Caller;
use crate::codes::ErrorCodes;
use crate::frame::{self, FrameError, Parsed};
use crate::{admin, api, groups, sasl};

/// How the Kafka listener serves.
#[derive(Clone, Debug)]
pub struct KafkaOptions {
    /// The host Metadata hands out as this broker's (an address clients
    /// can reach: `127.0.0.1`, never `localhost`).
    pub advertised_host: String,
    /// The port Metadata hands out.
    pub advertised_port: u16,
    /// Metadata creates the topics it is asked about, if the request allows.
    pub auto_create_topics: bool,
    /// Partitions of a topic Metadata creates.
    pub default_partitions: u32,
    /// Largest request frame; a larger one closes the connection.
    pub max_request_bytes: usize,
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Every connection authenticates with SASL before anything else is
    /// served (`--auth required`): see `sasl`.
    pub auth_required: bool,
    /// With `auth_required`: a verified client certificate authenticates
    /// its connection as the user it names this way (`None`: it does not).
    pub certificate_principal: Option<brooklet_tls::PrincipalFrom>,
    /// Connections per client address, the handshake deadline and the idle
    /// timeout.
    pub connections: ConnSettings,
    /// What each principal may do.
    pub authorizer: Authorizer,
}

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) core: Core,
    pub(crate) options: KafkaOptions,
    /// Where requests, errors and connections are counted.
    pub(crate) metrics: Metrics,
    /// Cancelled when shutdown begins: ends waiting fetches and idle
    /// connections.
    pub(crate) stop: CancellationToken,
}

/// Serves Kafka clients on `listener` until `stop` is cancelled; each
/// connection runs on `tasks`, counted in `metrics`, encrypted with `tls`
/// when that is given (the handshake runs in the connection's task, and a
/// failed one is logged and closes it). Once `stop` is
/// cancelled, connections read no further request, waiting fetches end,
/// and this returns when every request in flight has been answered.
pub async fn serve(
    core: Core,
    metrics: Metrics,
    listener: TcpListener,
    tls: Option<Tls>,
    options: KafkaOptions,
    stop: CancellationToken,
    tasks: TaskTracker,
) -> io::Result<()> {
    let connections = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let guard = {
        let metrics = metrics.clone();
        let count = move |reason: Reason| metrics.connection_closed("kafka", reason.label());
        ListenerGuard::new(Listener::Kafka, options.connections, options.max_connections, Box::new(count))
    };
    let ctx = Arc::new(Context { core, options, metrics, stop: stop.clone() });
    let open = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => {
                open.close();
                open.wait().await;
                return Ok(());
            }
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "kafka: accept failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let at = tokio::time::Instant::now();
        let Some(place) = guard.admit(peer.ip()) else { continue };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            guard.closed(Reason::MaxConnections, peer.ip());
            continue;
        };
        let (ctx, tls, guard) = (ctx.clone(), tls.clone(), guard.clone());
        tasks.spawn(open.track_future(async move {
            let _places = (permit, place);
            let _open = ctx.metrics.kafka_connection();
            let _ = socket.set_nodelay(true);
            // How group members' hosts are shown, as Kafka shows them.
            let host = format!("/{}", peer.ip());
            let served = match tls {
                None => {
                    let socket = guard.watch(socket, peer.ip(), at, FirstRequest::SizePrefixedFrame);
                    connection(&ctx, socket, peer, &host, None).await
                }
                Some(tls) => {
                    let deadline = guard.handshake_deadline(at);
                    let handshake = tokio::select! {
                        () = ctx.stop.cancelled() => return,
                        handshake = tokio::time::timeout_at(deadline, tls.accept(Listener::Kafka, socket)) => handshake,
                    };
                    match handshake {
                        Ok(Ok((stream, identity))) => {
                            let stream = guard.watch(stream, peer.ip(), at, FirstRequest::SizePrefixedFrame);
                            connection(&ctx, stream, peer, &host, identity.as_ref()).await
                        }
                        Err(_) | Ok(Err(HandshakeError::TimedOut)) => {
                            guard.closed(Reason::HandshakeTimeout, peer.ip());
                            return;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(%peer, error = %e, "kafka: closing connection");
                            return;
                        }
                    }
                }
            };
            match served {
                // Counted and logged by the guard already.
                Err(ConnectionError::Io(e)) if Expired::within(&e) => {}
                Err(e) => {
                    if let ConnectionError::Frame(e) = &e {
                        ctx.metrics.kafka_frame_error(frame_error_reason(e));
                    }
                    tracing::warn!(%peer, error = %e, "kafka: closing connection");
                }
                Ok(()) => {}
            }
        }));
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("socket: {0}")]
    Io(#[from] io::Error),
}

/// Serves one connection's requests in order until it closes; `host` is
/// the client's, as group members show it, and `identity` its verified TLS
/// certificate, if it presented one.
async fn connection<S>(
    ctx: &Context,
    socket: S,
    peer: SocketAddr,
    host: &str,
    identity: Option<&PeerIdentity>,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(identity) = identity {
        tracing::debug!(host, %identity, "kafka: client certificate verified");
    }
    // Requests are read and answered one at a time, never both at once:
    // one buffered stream serves both ways, with no lock between halves.
    let mut read = BufReader::new(socket);
    let mut session = sasl::Session::new(ctx.options.auth_required);
    if let (true, Some(from), Some(identity)) =
        (ctx.options.auth_required, ctx.options.certificate_principal, identity)
    {
        match sasl::Session::by_certificate(ctx, peer, identity, from) {
            Some(certified) => session = certified,
            None => return Ok(()),
        }
    }
    loop {
        let limit = match session.authenticated() {
            true => ctx.options.max_request_bytes,
            false => ctx.options.max_request_bytes.min(sasl::UNAUTHENTICATED_FRAME_LIMIT),
        };
        let frame = tokio::select! {
            () = ctx.stop.cancelled() => return Ok(()),
            frame = read_frame(&mut read, limit) => frame?,
        };
        let Some(frame) = frame else { return Ok(()) };
        if !session.authenticated() {
            match sasl::api_of(&frame) {
                Some(ApiKey::ApiVersions) => {}
                Some(ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) => {
                    let answer = sasl::handle(ctx, &mut session, peer, frame).await?;
                    read.get_mut().write_all(&answer.response).await?;
                    if answer.close {
                        return Ok(());
                    }
                    continue;
                }
                api => {
                    sasl::refuse_unauthenticated(ctx, &session, peer, api);
                    return Ok(());
                }
            }
        }
        let caller = Caller { principal: session.principal(), peer: Some(peer) };
        if let Some(response) = metered(ctx, &caller, host, frame).await? {
            // At shutdown, a client that does not read its response must not
            // hold the broker up: the write is given up once it would wait.
            tokio::select! {
                biased;
                written = read.get_mut().write_all(&response) => written?,
                () = ctx.stop.cancelled() => return Ok(()),
            }
        }
    }
}

/// The next frame, or `None` when the client closed the connection.
async fn read_frame(
    read: &mut (impl AsyncReadExt + Unpin),
    limit: usize,
) -> Result<Option<Bytes>, ConnectionError> {
    let size = match read.read_i32().await {
        Ok(size) => size,
        // Between requests, a close or a reset (as clients do at exit) is
        // the end of the connection, not a fault.
        Err(e) if matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset) => {
            tracing::debug!(error = %e, "kafka: the client closed the connection");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let Some(len) = usize::try_from(size).ok().filter(|l| *l <= limit) else {
        // Another protocol's first bytes, read as a size: name the mistake.
        let err = match size.to_be_bytes() {
            // HTTP/2's connection preface, `PRI * HTTP/2.0`.
            [b'P', b'R', b'I', b' '] => FrameError::Http2,
            // A TLS handshake record (type 22) of version 3.x.
            [0x16, 0x03, ..] => FrameError::Tls,
            _ => FrameError::Size { size, limit },
        };
        return Err(err.into());
    };
    // Memory grows with the bytes that arrive, not with the size a client
    // announces: a slow client cannot make the broker hold its whole limit.
    let mut buf = Vec::with_capacity(len.min(64 << 10));
    read.take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() < len {
        return Err(FrameError::CutShort { size: len, got: buf.len() }.into());
    }
    Ok(Some(Bytes::from(buf)))
}

/// [`handle`], counted: the request by API and version with its duration,
/// or the error of a frame whose API is known.
async fn metered(
    ctx: &Context,
    caller: &Caller<'_>,
    host: &str,
    frame: Bytes,
) -> Result<Option<Bytes>, FrameError> {
    let started = Instant::now();
    // The API and version, read again from the frame (`handle` checks them).
    let key = frame.get(..4).map(|b| (i16::from_be_bytes([b[0], b[1]]), i16::from_be_bytes([b[2], b[3]])));
    let api = key.and_then(|(k, v)| ApiKey::try_from(k).ok().map(|api| (api, v)));
    let handled = handle(ctx, caller, host, frame).await;
    let Some((api, version)) = api else { return handled };
    let name = api_name(api);
    match &handled {
        Ok(_) if frame::supported(api).is_some_and(|(min, max)| (min..=max).contains(&version)) => {
            ctx.metrics.kafka_request(&name, version, started.elapsed());
        }
        // ApiVersions of an unknown version, answered with this error.
        Ok(_) => ctx.metrics.kafka_request_error(&name, &code_name(ResponseError::UnsupportedVersion.code())),
        // A refused acks-0 produce: its partitions' errors are counted.
        Err(FrameError::AcksZeroRefused { .. }) => {
            ctx.metrics.kafka_request(&name, version, started.elapsed())
        }
        Err(e) => {
            let code = match e {
                FrameError::UnsupportedVersion { .. } | FrameError::NotImplemented { .. } => {
                    ResponseError::UnsupportedVersion
                }
                FrameError::Encode { .. } => ResponseError::UnknownServerError,
                _ => ResponseError::InvalidRequest,
            };
            ctx.metrics.kafka_request_error(&name, &code_name(code.code()));
        }
    }
    handled
}

/// `response` as a frame for `version`, each error code it carries counted
/// (one per request, group, topic, partition or member).
pub(crate) fn respond<R: Encodable + ErrorCodes>(
    ctx: &Context,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &R,
) -> Result<Bytes, FrameError> {
    count_errors(ctx, api, response);
    frame::encode(api, version, correlation_id, response)
}

/// Counts each error code `response` carries.
fn count_errors(ctx: &Context, api: ApiKey, response: &impl ErrorCodes) {
    let mut name = None;
    response.error_codes(&mut |code| {
        if code != 0 {
            let name = name.get_or_insert_with(|| api_name(api));
            ctx.metrics.kafka_request_error(name, &code_name(code));
        }
    });
}

/// An API's name as Kafka's protocol spells it, e.g. `ApiVersions`.
fn api_name(api: ApiKey) -> String {
    format!("{api:?}")
}

/// An error code's name as Kafka spells it, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
fn code_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(_)) => "UNKNOWN".to_owned(),
        Some(e) => {
            let camel = format!("{e:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, c) in camel.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
    }
}

/// The `reason` label of a frame that closed its connection.
fn frame_error_reason(e: &FrameError) -> &'static str {
    match e {
        FrameError::Short(_) => "short",
        FrameError::Size { size, .. } if *size < 0 => "malformed",
        FrameError::Size { .. } => "too_large",
        FrameError::UnknownApi(_) => "unknown_api",
        FrameError::UnsupportedVersion { .. } => "unsupported_version",
        FrameError::NotImplemented { .. } => "not_implemented",
        FrameError::Malformed { .. } => "malformed",
        FrameError::Encode { .. } => "encode",
        FrameError::Http2 => "http2",
        FrameError::Tls => "tls",
        FrameError::AcksZeroRefused { .. } => "acks0_refused",
        FrameError::CutShort { .. } => "cut_short",
    }
}

/// One request's response frame, for `caller` at `host` (as group members
/// show it), authorized for it; `None` for a produce with acks 0.
pub(crate) async fn handle(
    ctx: &Context,
    caller: &Caller<'_>,
    host: &str,
    frame: Bytes,
) -> Result<Option<Bytes>, FrameError> {
    let (api, version, header, body) = match frame::parse(frame)? {
        Parsed::Request { api, version, header, body } => (api, version, header, body),
        Parsed::UnsupportedApiVersions { correlation_id } => {
            let response = api_versions(ResponseError::UnsupportedVersion.code());
            return frame::encode(ApiKey::ApiVersions, 0, correlation_id, &response).map(Some);
        }
    };
    let id = header.correlation_id;
    tracing::trace!(api = ?api, version, correlation_id = id, "kafka request");
    let response = match api {
        ApiKey::ApiVersions => respond(ctx, api, version, id, &api_versions(0))?,
        ApiKey::Metadata => {
            let request: MetadataRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &api::metadata(ctx, caller, version, request).await)?
        }
        ApiKey::Produce => {
            let request: ProduceRequest = frame::decode(api, version, body)?;
            let acks = request.acks;
            let response = api::produce(ctx, caller, version, request).await;
            if acks == 0 {
                count_errors(ctx, api, &response);
                // As Kafka does: the client hears of a refusal no other
                // way, and looks up metadata again when it reconnects.
                return match acks_zero_refusal(&response) {
                    Some(refused) => Err(refused),
                    None => Ok(None),
                };
            }
            respond(ctx, api, version, id, &response)?
        }
        ApiKey::Fetch => {
            let request: FetchRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &api::fetch(ctx, caller, version, request).await)?
        }
        ApiKey::InitProducerId => {
            let request: InitProducerIdRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &api::init_producer_id(ctx, caller, &request))?
        }
        ApiKey::ListOffsets => {
            let request: ListOffsetsRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &api::list_offsets(ctx, caller, version, request))?
        }
        ApiKey::CreateTopics => {
            let request: CreateTopicsRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &admin::create_topics(ctx, caller, version, request).await)?
        }
        ApiKey::DeleteTopics => {
            let request: DeleteTopicsRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &admin::delete_topics(ctx, caller, version, request).await)?
        }
        ApiKey::DescribeConfigs => {
            let request: DescribeConfigsRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &admin::describe_configs(ctx, caller, version, &request))?
        }
        ApiKey::FindCoordinator => {
            let request: FindCoordinatorRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &groups::find_coordinator(ctx, caller, version, request))?
        }
        ApiKey::JoinGroup => {
            let request: JoinGroupRequest = frame::decode(api, version, body)?;
            let client_id = header.client_id.as_ref().map_or("", |c| c.as_str());
            respond(
                ctx,
                api,
                version,
                id,
                &groups::join_group(ctx, caller, version, client_id, host, request).await,
            )?
        }
        ApiKey::SyncGroup => {
            let request: SyncGroupRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &groups::sync_group(ctx, caller, version, request).await)?
        }
        ApiKey::Heartbeat => {
            let request: HeartbeatRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &groups::heartbeat(ctx, caller, &request))?
        }
        ApiKey::LeaveGroup => {
            let request: LeaveGroupRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &groups::leave_group(ctx, caller, version, &request))?
        }
        ApiKey::OffsetCommit => {
            let request: OffsetCommitRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &groups::offset_commit(ctx, caller, request).await)?
        }
        ApiKey::OffsetFetch => {
            let request: OffsetFetchRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &groups::offset_fetch(ctx, caller, version, request))?
        }
        ApiKey::ListGroups => {
            let request: ListGroupsRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &groups::list_groups(ctx, caller, version, &request))?
        }
        ApiKey::DescribeGroups => {
            let request: DescribeGroupsRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &groups::describe_groups(ctx, caller, version, &request))?
        }
        ApiKey::DeleteGroups => {
            let request: DeleteGroupsRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &groups::delete_groups(ctx, caller, &request).await)?
        }
        ApiKey::AlterConfigs => {
            let request: AlterConfigsRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &admin::alter_configs(ctx, caller, &request).await)?
        }
        ApiKey::IncrementalAlterConfigs => {
            let request: IncrementalAlterConfigsRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &admin::incremental_alter_configs(ctx, caller, &request).await)?
        }
        ApiKey::OffsetDelete => {
            let request: OffsetDeleteRequest = frame::decode(api, version, body)?;
            respond(ctx, api, version, id, &groups::offset_delete(ctx, caller, &request).await)?
        }
        // Authenticated already, or no authentication required (as Kafka
        // answers on a listener without SASL).
        ApiKey::SaslHandshake => {
            let _: SaslHandshakeRequest = frame::decode(api, version, body)?;
            let response =
                SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code());
            respond(ctx, api, version, id, &response)?
        }
        ApiKey::SaslAuthenticate => {
            let _: SaslAuthenticateRequest = frame::decode(api, version, body)?;
            let response = SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::IllegalSaslState.code())
                .with_error_message(Some(kafka_protocol::protocol::StrBytes::from_static_str(
                    "this connection has authenticated already, or the broker requires no authentication",
                )));
            respond(ctx, api, version, id, &response)?
        }
        _ => return Err(FrameError::NotImplemented { api, version }),
    };
    Ok(Some(response))
}

/// The error that closes the connection of an acks-0 produce that
/// `response` refuses in part: its first refused partition, and how many more.
fn acks_zero_refusal(response: &ProduceResponse) -> Option<FrameError> {
    let mut refused = response.responses.iter().flat_map(|t| {
        t.partition_responses.iter().filter(|p| p.error_code != 0).map(move |p| (t.name.0.as_str(), p))
    });
    let (topic, first) = refused.next()?;
    let error = match &first.error_message {
        Some(message) => format!("{}: {}", code_name(first.error_code), message.as_str()),
        None => code_name(first.error_code),
    };
    let more = match refused.count() {
        0 => String::new(),
        n => format!(" and {n} more partition{}", if n == 1 { "" } else { "s" }),
    };
    Some(FrameError::AcksZeroRefused { topic: topic.to_owned(), partition: first.index, error, more })
}

/// What ApiVersions answers: only the implemented APIs and versions.
fn api_versions(error_code: i16) -> ApiVersionsResponse {
    let keys = frame::SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            kafka_protocol::messages::api_versions_response::ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_named_as_kafka_names_them() {
        assert_eq!(code_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(code_name(45), "OUT_OF_ORDER_SEQUENCE_NUMBER");
        assert_eq!(code_name(17), "INVALID_TOPIC_EXCEPTION");
        assert_eq!(code_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(code_name(0), "NONE");
        assert_eq!(code_name(9999), "UNKNOWN");
        assert_eq!(api_name(ApiKey::ApiVersions), "ApiVersions");
    }

    /// What the frame reader makes of a connection that sends `bytes`.
    async fn read(bytes: &[u8]) -> Result<Option<Bytes>, ConnectionError> {
        let mut bytes = bytes;
        read_frame(&mut bytes, 1 << 20).await
    }

    #[tokio::test]
    async fn another_protocol_on_the_kafka_listener_is_named() {
        let grpc = read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap_err();
        assert!(matches!(grpc, ConnectionError::Frame(FrameError::Http2)), "{grpc}");
        assert!(grpc.to_string().contains("HTTP/2 (a gRPC client?) on the Kafka listener"), "{grpc}");
        assert!(grpc.to_string().contains("--listen"), "{grpc}");
        // A TLS 1.2 ClientHello's record header.
        let tls = read(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap_err();
        assert!(matches!(tls, ConnectionError::Frame(FrameError::Tls)), "{tls}");
        assert!(tls.to_string().contains("TLS on a plain-text Kafka listener"), "{tls}");
        assert_eq!(frame_error_reason(&FrameError::Http2), "http2");
        assert_eq!(frame_error_reason(&FrameError::Tls), "tls");
        // Any other size past the limit is only too large, and names it.
        let large = read(&(2i32 << 20).to_be_bytes()).await.unwrap_err();
        assert!(matches!(large, ConnectionError::Frame(FrameError::Size { .. })), "{large}");
        assert!(large.to_string().contains("the request size limit is 1048576 bytes"), "{large}");
        assert!(!large.to_string().contains("--"), "names no flag: {large}");
        // A frame within the limit is read, and a closed connection ends.
        let frame = read(&[0, 0, 0, 2, 7, 8]).await.unwrap();
        assert_eq!(frame.as_deref(), Some(&[7, 8][..]));
        assert!(read(&[]).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_frame_cut_short_is_an_error_and_a_reset_between_frames_a_close() {
        let cut = read(&[0, 0, 0, 9, 1, 2, 3]).await.unwrap_err();
        assert!(matches!(cut, ConnectionError::Frame(FrameError::CutShort { size: 9, got: 3 })), "{cut}");
        assert_eq!(frame_error_reason(&FrameError::CutShort { size: 9, got: 3 }), "cut_short");
        /// A connection the client reset.
        struct Reset;
        impl tokio::io::AsyncRead for Reset {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                std::task::Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
            }
        }
        assert!(read_frame(&mut Reset, 1 << 20).await.unwrap().is_none());
    }

    #[test]
    fn api_versions_advertises_only_what_is_answered() {
        let response = api_versions(0);
        let list_offsets =
            response.api_keys.iter().find(|k| k.api_key == ApiKey::ListOffsets as i16).unwrap();
        // v7 adds timestamp -3 (the largest timestamp), which is not answered.
        assert_eq!((list_offsets.min_version, list_offsets.max_version), (1, 6));
        assert!(matches!(
            frame::parse(Bytes::from_static(&[0, 2, 0, 7, 0, 0, 0, 1, 0xff, 0xff])),
            Err(FrameError::UnsupportedVersion { max: 6, .. })
        ));
    }

    #[test]
    fn a_refused_acks_zero_produce_names_its_first_refused_partition() {
        use kafka_protocol::messages::TopicName;
        use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
        use kafka_protocol::protocol::StrBytes;
        let partition = |index, error_code| {
            PartitionProduceResponse::default().with_index(index).with_error_code(error_code)
        };
        let topic = |name: &'static str, partitions| {
            TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_static_str(name)))
                .with_partition_responses(partitions)
        };
        let ok = ProduceResponse::default().with_responses(vec![topic("a", vec![partition(0, 0)])]);
        assert!(acks_zero_refusal(&ok).is_none());
        let mut missing = partition(1, 3);
        missing.error_message = Some(StrBytes::from_static_str("topic `b` does not exist"));
        let refused = ProduceResponse::default().with_responses(vec![
            topic("a", vec![partition(0, 0)]),
            topic("b", vec![missing, partition(2, 3), partition(3, 10)]),
        ]);
        let err = acks_zero_refusal(&refused).expect("refused");
        assert_eq!(frame_error_reason(&err), "acks0_refused");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "produce with acks 0 refused for b/1 (UNKNOWN_TOPIC_OR_PARTITION: topic `b` does not exist) \
                 and 2 more partitions; closing the connection"
            ),
            "{text}"
        );
    }
}
