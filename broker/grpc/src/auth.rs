//! Authentication of gRPC requests (`--auth required`): each request
//! carries `authorization: Basic base64(user:password)` of a user, checked
//! by the core's users; the request then carries the [`Principal`] in its
//! extensions, for an authorizer. A missing or wrong header is answered
//! UNAUTHENTICATED after a delay that grows with the connection's failures,
//! with a message that never says whether the user exists. A connection
//! remembers its last success, so a client sending the same credentials on
//! every call pays for the password check once.
//!
//! When client certificates are required too, a connection's verified
//! certificate names its user (`--tls-principal-from`): its requests need no
//! header, and one they carry must be that user's, with the right password.
//! A certificate that names no existing user is refused as bad credentials.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use brooklet_core::{LoginCache, Principal, Users};
use brooklet_metrics::Metrics;
use brooklet_tls::PrincipalFrom;

use crate::connection::ConnInfo;

/// The delay of a failed attempt, times the connection's failures so far
/// (at most [`MAX_FAILURE_DELAY`]).
const FAILURE_DELAY: Duration = Duration::from_millis(100);
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(2);

/// Authenticates every request when `required`: see the module docs.
#[derive(Clone, Debug)]
pub(crate) struct AuthLayer {
    pub(crate) users: Users,
    pub(crate) metrics: Metrics,
    pub(crate) required: bool,
    /// A verified client certificate authenticates its connection, named
    /// this way (set when both authentication and client certificates are
    /// required).
    pub(crate) certificate: Option<PrincipalFrom>,
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, layer: self.clone() }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Clone, Debug)]
pub(crate) struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

/// Why a request was refused (for the log; the client hears less).
#[derive(Debug)]
enum Refusal {
    Missing,
    Malformed(&'static str),
    Invalid {
        user: String,
    },
    /// The certificate names no user, or one that does not exist.
    Certificate {
        identity: String,
        from: PrincipalFrom,
    },
    /// The header names another user than the certificate.
    Mismatch {
        certificate: String,
        user: String,
    },
}

/// The user and password of an `authorization: Basic …` value.
fn basic(value: &[u8]) -> Result<(String, String), Refusal> {
    let text = std::str::from_utf8(value).map_err(|_| Refusal::Malformed("not UTF-8"))?;
    let (scheme, encoded) = text.split_once(' ').ok_or(Refusal::Malformed("expected `Basic <base64>`"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Refusal::Malformed("only the Basic scheme is accepted"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| Refusal::Malformed("the credentials are not base64"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| Refusal::Malformed("the credentials are not UTF-8"))?;
    let (user, password) = decoded.split_once(':').ok_or(Refusal::Malformed("expected `user:password`"))?;
    Ok((user.to_owned(), password.to_owned()))
}

impl<S, B> tower_service::Service<http::Request<B>> for AuthService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if !self.layer.required {
            return Box::pin(self.inner.call(request));
        }
        // The inner service was made ready for this call: keep that one,
        // leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let conn = request.extensions().get::<ConnInfo>().cloned();
            let peer = conn.as_ref().and_then(|c| c.remote);
            let identity = match layer.certificate {
                Some(from) => conn.as_ref().and_then(|c| c.identity().cloned()).map(|id| (id, from)),
                None => None,
            };
            let cache = conn.map_or_else(|| Arc::new(LoginCache::default()), |c| c.logins.clone());
            let header = request.headers().get(http::header::AUTHORIZATION).map(|v| v.as_bytes().to_vec());
            let check_header = |header: Option<Vec<u8>>| {
                let users = layer.users.clone();
                let cache = cache.clone();
                async move {
                    match header.as_deref().map(basic) {
                        None => Err(Refusal::Missing),
                        Some(Err(e)) => Err(e),
                        Some(Ok((user, password))) => {
                            let name = user.clone();
                            tokio::task::spawn_blocking(move || {
                                users.authenticate_password_cached(&cache, &name, &password)
                            })
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .ok_or(Refusal::Invalid { user })
                        }
                    }
                }
            };
            let checked = match identity {
                None => check_header(header).await,
                Some((identity, from)) => {
                    let refused = || Refusal::Certificate { identity: identity.to_string(), from };
                    let by_certificate = identity
                        .user_name(from)
                        .ok_or_else(refused)
                        .and_then(|name| layer.users.authenticate_certificate(name).map_err(|_| refused()));
                    match (by_certificate, header) {
                        (Err(e), _) => Err(e),
                        (Ok(principal), None) => Ok(principal),
                        (Ok(principal), header) => match check_header(header).await {
                            Ok(named) if named == principal => Ok(principal),
                            Ok(named) => Err(Refusal::Mismatch {
                                certificate: principal.name().to_owned(),
                                user: named.name().to_owned(),
                            }),
                            Err(e) => Err(e),
                        },
                    }
                }
            };
            match checked {
                Ok(principal) => {
                    request.extensions_mut().insert::<Principal>(principal);
                    inner.call(request).await
                }
                Err(refusal) => {
                    let failures = cache.failed();
                    let mechanism = match refusal {
                        Refusal::Certificate { .. } => "certificate",
                        _ => "basic",
                    };
                    layer.metrics.auth_failure("grpc", mechanism);
                    let user = match &refusal {
                        Refusal::Invalid { user } | Refusal::Mismatch { user, .. } => user.as_str(),
                        Refusal::Certificate { identity, .. } => identity.as_str(),
                        _ => "?",
                    };
                    tracing::warn!(
                        peer = ?peer,
                        user,
                        path = request.uri().path(),
                        refusal = ?refusal,
                        failures,
                        "grpc: request refused: not authenticated (--auth required)"
                    );
                    let delay = FAILURE_DELAY.saturating_mul(u32::try_from(failures).unwrap_or(u32::MAX));
                    tokio::time::sleep(delay.min(MAX_FAILURE_DELAY)).await;
                    let message = match refusal {
                        Refusal::Missing => {
                            "authentication required: send `authorization: Basic` credentials \
                                             of a user (--auth required)"
                                .to_owned()
                        }
                        Refusal::Malformed(why) => format!("malformed authorization header: {why}"),
                        Refusal::Invalid { .. } => "invalid user name or password".to_owned(),
                        Refusal::Certificate { identity, from } => format!(
                            "the client certificate ({identity}) does not name a user of this broker \
                             (--tls-principal-from {from})"
                        ),
                        Refusal::Mismatch { certificate, .. } => format!(
                            "the authorization header names another user than the client certificate \
                             ({certificate}): send none, or that user's"
                        ),
                    };
                    Ok(tonic::Status::unauthenticated(message).into_http())
                }
            }
        })
    }
}

/// The principal a request was authenticated as, if authentication is
/// required.
pub(crate) fn principal_of<T>(request: &tonic::Request<T>) -> Option<&Principal> {
    request.extensions().get::<Principal>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_basic_header_is_read_or_refused_by_what_is_wrong() {
        let (u, p) = basic(b"Basic YWxpY2U6cGE6c3M=").unwrap();
        assert_eq!((u.as_str(), p.as_str()), ("alice", "pa:ss"));
        assert!(matches!(basic(b"Bearer abc"), Err(Refusal::Malformed("only the Basic scheme is accepted"))));
        assert!(matches!(basic(b"Basic !!"), Err(Refusal::Malformed("the credentials are not base64"))));
        assert!(matches!(basic(b"Basic YWxpY2U="), Err(Refusal::Malformed("expected `user:password`"))));
        assert!(matches!(basic(b"Basic"), Err(Refusal::Malformed(_))));
    }
}
