//! SASL on a Kafka connection (`--auth required`): SaslHandshake v1, then
//! SaslAuthenticate with PLAIN or SCRAM-SHA-256/512, checked by the core's
//! users. Until a connection has authenticated it is answered ApiVersions,
//! SaslHandshake and SaslAuthenticate only, with frames of at most
//! [`UNAUTHENTICATED_FRAME_LIMIT`]; any other request closes it. A failed
//! login is answered SASL_AUTHENTICATION_FAILED after a delay, and the
//! connection is closed: one attempt per connection.
//!
//! When client certificates are required too, a connection whose verified
//! certificate names an existing user (`--tls-principal-from`) starts
//! authenticated as that user, and SASL requests are answered
//! ILLEGAL_SASL_STATE; one whose certificate names no user is closed.
//!
//! SaslHandshake v0 (raw SASL tokens without Kafka headers) is not
//! implemented: it is answered UNSUPPORTED_VERSION and the connection
//! closed. (v0 is advertised all the same: librdkafka requires it before it
//! uses v1.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use brooklet_core::{AuthError, Mechanism, Principal, ScramExchange};
use brooklet_tls::{PeerIdentity, PrincipalFrom};
use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::frame::{self, FrameError, Parsed};
use crate::server::Context;

/// The largest frame read before a connection has authenticated.
pub(crate) const UNAUTHENTICATED_FRAME_LIMIT: usize = 64 << 10;

/// How long a failed login waits before its answer, so that guessing is
/// slow; the connection is closed after it.
const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(100);

/// The mechanisms offered, as SaslHandshake lists them.
const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// Where a connection is in authenticating.
#[derive(Debug)]
pub(crate) struct Session {
    state: State,
}

#[derive(Debug)]
enum State {
    /// Nothing asked yet.
    Start,
    /// The handshake chose PLAIN.
    Plain,
    /// The handshake chose a SCRAM mechanism; its exchange so far.
    Scram(Box<ScramExchange>),
    /// Authenticated as this principal, or `None` when no authentication
    /// is required.
    Done(Option<Principal>),
}

/// What a SASL request leads to.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The response frame.
    pub(crate) response: Bytes,
    /// Close the connection once the response is written.
    pub(crate) close: bool,
}

impl Session {
    /// A new connection's session: authenticated already when `required`
    /// is false.
    pub(crate) fn new(required: bool) -> Session {
        Session { state: if required { State::Start } else { State::Done(None) } }
    }

    /// A session authenticated by the client's verified certificate, as the
    /// user it names by `from`; `None` when it names no existing user
    /// (logged and counted: the caller closes the connection).
    pub(crate) fn by_certificate(
        ctx: &Context,
        peer: SocketAddr,
        identity: &PeerIdentity,
        from: PrincipalFrom,
    ) -> Option<Session> {
        let principal =
            identity.user_name(from).and_then(|name| ctx.core.users().authenticate_certificate(name).ok());
        match principal {
            Some(principal) => {
                tracing::debug!(%peer, %principal, %identity, "kafka: authenticated by the client certificate");
                Some(Session { state: State::Done(Some(principal)) })
            }
            None => {
                ctx.metrics.auth_failure("kafka", "certificate");
                tracing::warn!(
                    %peer,
                    %identity,
                    principal_from = %from,
                    "kafka: the client certificate does not name a user (--tls-principal-from); closing the connection"
                );
                None
            }
        }
    }

    /// Whether requests other than SASL's may be served.
    pub(crate) fn authenticated(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// The authenticated principal (`None` without authentication): what an
    /// authorizer will check this connection's requests against.
    pub(crate) fn principal(&self) -> Option<&Principal> {
        match &self.state {
            State::Done(p) => p.as_ref(),
            _ => None,
        }
    }

    /// The mechanism chosen so far, for logs and metrics.
    fn mechanism(&self) -> &'static str {
        match &self.state {
            State::Start => "none",
            State::Plain => "PLAIN",
            State::Scram(x) => x.mechanism().name(),
            State::Done(_) => "none",
        }
    }
}

/// The API of a frame, read without decoding it.
pub(crate) fn api_of(frame: &[u8]) -> Option<ApiKey> {
    let key = frame.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]]))?;
    ApiKey::try_from(key).ok()
}

/// Refuses a request that is not SASL's on a connection that has not
/// authenticated: logged and counted; the caller closes the connection.
pub(crate) fn refuse_unauthenticated(
    ctx: &Context,
    session: &Session,
    peer: SocketAddr,
    api: Option<ApiKey>,
) {
    ctx.metrics.auth_failure("kafka", session.mechanism());
    tracing::warn!(
        %peer,
        api = ?api,
        mechanism = session.mechanism(),
        "kafka: request before authentication (--auth required); closing the connection"
    );
}

/// Serves a SaslHandshake or SaslAuthenticate `frame` of a connection that
/// has not authenticated yet.
pub(crate) async fn handle(
    ctx: &Context,
    session: &mut Session,
    peer: SocketAddr,
    frame: Bytes,
) -> Result<Answer, FrameError> {
    let started = Instant::now();
    let Parsed::Request { api, version, header, body } = frame::parse(frame)? else {
        return Err(FrameError::Malformed { what: "SASL request".into(), reason: "not a SASL API".into() });
    };
    let id = header.correlation_id;
    let answer = match api {
        ApiKey::SaslHandshake => {
            let request: SaslHandshakeRequest = frame::decode(api, version, body)?;
            let (response, close) = if version == 0 {
                tracing::warn!(%peer, "kafka: SaslHandshake v0 (raw SASL tokens) is not supported, only v1 with \
                    SaslAuthenticate; closing the connection");
                let response = handshake(ctx, &mut Session::new(true), "").0;
                (response.with_error_code(ResponseError::UnsupportedVersion.code()), true)
            } else {
                handshake(ctx, session, request.mechanism.as_str())
            };
            if close {
                ctx.metrics.auth_failure("kafka", request.mechanism.as_str());
                tracing::warn!(%peer, mechanism = request.mechanism.as_str(), "kafka: SASL handshake refused");
            }
            Answer { response: crate::server::respond(ctx, api, version, id, &response)?, close }
        }
        ApiKey::SaslAuthenticate => {
            let request: SaslAuthenticateRequest = frame::decode(api, version, body)?;
            let (response, close) = authenticate(ctx, session, peer, request.auth_bytes).await;
            Answer { response: crate::server::respond(ctx, api, version, id, &response)?, close }
        }
        _ => return Err(FrameError::NotImplemented { api, version }),
    };
    ctx.metrics.kafka_request(&format!("{api:?}"), version, started.elapsed());
    Ok(answer)
}

/// A SaslHandshake's response, and whether to close after it.
fn handshake(ctx: &Context, session: &mut Session, mechanism: &str) -> (SaslHandshakeResponse, bool) {
    let offered = MECHANISMS.iter().map(|m| StrBytes::from_static_str(m)).collect();
    let response = SaslHandshakeResponse::default().with_mechanisms(offered);
    if !matches!(session.state, State::Start) {
        return (response.with_error_code(ResponseError::IllegalSaslState.code()), true);
    }
    session.state = match (mechanism, Mechanism::from_name(mechanism)) {
        ("PLAIN", _) => State::Plain,
        (_, Some(m)) => State::Scram(Box::new(ctx.core.users().scram(m))),
        (_, None) => return (response.with_error_code(ResponseError::UnsupportedSaslMechanism.code()), true),
    };
    (response, false)
}

/// A SaslAuthenticate's response, and whether to close after it.
async fn authenticate(
    ctx: &Context,
    session: &mut Session,
    peer: SocketAddr,
    token: Bytes,
) -> (SaslAuthenticateResponse, bool) {
    let mechanism = session.mechanism();
    let outcome = match std::mem::replace(&mut session.state, State::Start) {
        State::Plain => {
            let users = ctx.core.users().clone();
            let checked = tokio::task::spawn_blocking(move || plain(&users, &token)).await;
            match checked {
                Ok(Ok(principal)) => Ok((principal, Bytes::new())),
                Ok(Err((user, e))) => Err((user, e)),
                Err(e) => Err((None, AuthError::Malformed { mechanism: "PLAIN", reason: e.to_string() })),
            }
        }
        State::Scram(mut exchange) => {
            if exchange.user().is_none() {
                match exchange.client_first(&token) {
                    Ok(first) => {
                        session.state = State::Scram(exchange);
                        let response =
                            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(first));
                        return (response, false);
                    }
                    Err(e) => Err((None, e)),
                }
            } else {
                let user = exchange.user().map(str::to_owned);
                match exchange.client_final(&token) {
                    Ok((principal, last)) => Ok((principal, Bytes::from(last))),
                    Err(e) => Err((user, e)),
                }
            }
        }
        State::Start | State::Done(_) => {
            let response = SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::IllegalSaslState.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "SaslAuthenticate before a SaslHandshake chose a mechanism",
                )));
            ctx.metrics.auth_failure("kafka", mechanism);
            tracing::warn!(%peer, "kafka: SaslAuthenticate before SaslHandshake; closing the connection");
            return (response, true);
        }
    };
    match outcome {
        Ok((principal, bytes)) => {
            tracing::debug!(%peer, %principal, mechanism, "kafka: authenticated");
            session.state = State::Done(Some(principal));
            (SaslAuthenticateResponse::default().with_auth_bytes(bytes), false)
        }
        Err((user, e)) => {
            ctx.metrics.auth_failure("kafka", mechanism);
            tracing::warn!(
                %peer,
                user = user.as_deref().unwrap_or("?"),
                mechanism,
                error = %e,
                "kafka: authentication failed; closing the connection"
            );
            // Guessing costs time; shutdown does not wait for it.
            tokio::select! {
                () = tokio::time::sleep(FAILED_LOGIN_DELAY) => {}
                () = ctx.stop.cancelled() => {}
            }
            let message = match &e {
                AuthError::InvalidCredentials => {
                    format!("Authentication failed: invalid credentials with SASL mechanism {mechanism}")
                }
                AuthError::Malformed { .. } => format!("Authentication failed: {e}"),
            };
            let response = SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                .with_error_message(Some(StrBytes::from_string(message)));
            (response, true)
        }
    }
}

/// Checks a PLAIN token, `authzid NUL user NUL password` (RFC 4616); the
/// user named on failure, if any.
fn plain(users: &brooklet_core::Users, token: &[u8]) -> Result<Principal, (Option<String>, AuthError)> {
    let malformed = |reason: &str| AuthError::Malformed { mechanism: "PLAIN", reason: reason.to_owned() };
    let text = std::str::from_utf8(token).map_err(|_| (None, malformed("not UTF-8")))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err((None, malformed("expected `authzid NUL user NUL password`")));
    };
    if !authzid.is_empty() && authzid != user {
        return Err((
            Some(user.to_owned()),
            malformed("an authorization identity other than the user is not supported"),
        ));
    }
    users.authenticate_password(user, password).map_err(|e| (Some(user.to_owned()), e))
}
