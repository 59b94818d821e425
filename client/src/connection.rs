//! The link to the broker: turns the endpoint strings into tonic `Channel`s,
//! and runs unary calls under a deadline with retries, failing over from one
//! endpoint to the next, each behind its circuit breaker (`breaker`). It
//! knows which calls are safe to repeat only because the caller says so; it
//! knows nothing of producers, consumers or records.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use brooklet_proto::v1::admin_service_client::AdminServiceClient;
use brooklet_proto::v1::consumer_service_client::ConsumerServiceClient;
use brooklet_proto::v1::group_service_client::GroupServiceClient;
use brooklet_proto::v1::producer_service_client::ProducerServiceClient;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::transport::{Channel, Endpoint};

use crate::TlsOptions;
use crate::breaker::{BreakerConfig, Breakers, Choice};
use crate::error::{CallContext, Error, Op, Result, is_connection_failure};

/// Default time allowed to open a TCP connection to the broker.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed for one call, retries included.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Fetch answers can be large (the first batch is returned whole even above
/// `max_bytes`), so the client accepts more than tonic's 4 MiB default.
const MAX_DECODING_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
/// Most endpoints a client takes: a call keeps one bit per endpoint.
const MAX_ENDPOINTS: usize = 64;
/// The message tonic gives a status it made up from an HTTP answer that had
/// no gRPC status, followed by the HTTP status code.
const NOT_GRPC: &str = "grpc-status header missing, mapped from HTTP status code ";

/// Where and how to connect, as collected by the builders.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionConfig {
    /// The endpoints, in the order they are tried.
    pub(crate) endpoints: Vec<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) breaker: BreakerConfig,
    /// TLS for `https://` endpoints; `None` trusts the system's roots there.
    pub(crate) tls: Option<TlsOptions>,
    /// Sent as `authorization: Basic …` on every call, if set.
    pub(crate) credentials: Option<Credentials>,
}

/// A user name and password; `Debug` never shows the password.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

impl Credentials {
    /// The `authorization` header's value, marked sensitive.
    fn header(&self) -> Result<http::HeaderValue> {
        use base64::Engine as _;
        if self.user.contains(':') {
            return Err(Error::InvalidArgument { message: "a user name cannot contain `:`".to_owned() });
        }
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.user, self.password));
        let mut value = http::HeaderValue::try_from(format!("Basic {encoded}"))
            .map_err(|_| Error::InvalidArgument { message: "the credentials cannot be sent".to_owned() })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl ConnectionConfig {
    /// The endpoints of `endpoints`, a comma-separated list (most often of
    /// one).
    pub(crate) fn new(endpoints: String) -> Self {
        let endpoints = endpoints.split(',').map(str::to_owned).collect();
        Self {
            endpoints,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            breaker: BreakerConfig::default(),
            credentials: None,
            tls: None,
        }
    }

    /// Replaces the endpoints, one per item.
    pub(crate) fn set_endpoints<I, S>(&mut self, endpoints: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints = endpoints.into_iter().map(Into::into).collect();
    }

    /// Builds the channels without connecting: the first call connects, so
    /// a client can be built before its broker is up.
    ///
    /// # Panics
    /// Outside a Tokio runtime, because the channels spawn their worker
    /// tasks.
    pub(crate) fn connect(&self) -> Result<Connection> {
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::InvalidArgument {
                message: "request_timeout and connect_timeout must be greater than zero".to_owned(),
            });
        }
        self.breaker.check().map_err(|message| Error::InvalidArgument { message })?;
        if self.endpoints.is_empty() || self.endpoints.len() > MAX_ENDPOINTS {
            return Err(Error::InvalidEndpoint {
                endpoint: self.endpoints.join(","),
                reason: format!("give 1 to {MAX_ENDPOINTS} endpoints, not {}", self.endpoints.len()),
            });
        }
        let authorization = self.credentials.as_ref().map(Credentials::header).transpose()?;
        let mut uris = Vec::with_capacity(self.endpoints.len());
        let mut channels = Vec::with_capacity(self.endpoints.len());
        // Read once, for every `https://` endpoint.
        let mut tls = None;
        for given in &self.endpoints {
            let uri = normalize_endpoint(given, self.tls.is_some())?;
            let invalid = |err: tonic::transport::Error| Error::InvalidEndpoint {
                endpoint: given.clone(),
                reason: error_chain(&err),
            };
            let mut endpoint = Endpoint::from_shared(uri.clone())
                .map_err(invalid)?
                .connect_timeout(self.connect_timeout)
                .tcp_nodelay(true);
            if uri.starts_with("https://") {
                if tls.is_none() {
                    tls = Some(self.tls.clone().unwrap_or_default().client_config()?);
                }
                endpoint = endpoint
                    .tls_config(tls.clone().unwrap_or_default())
                    .map_err(|err| self.tls.clone().unwrap_or_default().unusable(&err, error_chain(&err)))?;
            }
            channels.push(endpoint.connect_lazy());
            uris.push(Arc::<str>::from(uri));
        }
        Ok(Connection {
            breakers: Breakers::new(&uris, self.breaker),
            all: uris.iter().map(|u| &**u).collect::<Vec<_>>().join(", ").into(),
            endpoints: uris.into(),
            router: Router { channels: channels.into(), authorization },
            request_timeout: self.request_timeout,
        })
    }
}

/// Adds the scheme a bare `host:port` lacks (`https://` when TLS options
/// were given), and refuses schemes this client cannot speak.
fn normalize_endpoint(endpoint: &str, tls: bool) -> Result<String> {
    let trimmed = endpoint.trim();
    let scheme = if tls { "https://" } else { "http://" };
    let uri = if trimmed.contains("://") { trimmed.to_owned() } else { format!("{scheme}{trimmed}") };
    let Some(host) = uri.strip_prefix("http://").or_else(|| uri.strip_prefix("https://")) else {
        return Err(Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: "only http:// and https:// endpoints are supported".to_owned(),
        });
    };
    if tls && uri.starts_with("http://") {
        return Err(Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: "TLS options were given for a plaintext http:// endpoint: use https://".to_owned(),
        });
    }
    if host.is_empty() {
        return Err(Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: "no host given".to_owned(),
        });
    }
    Ok(uri)
}

/// `err` and its sources on one line, because the endpoint error's own
/// message ("transport error") hides the reason in its source.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Lazily connected channels to the endpoints, each behind its breaker;
/// cheap to clone, and clones share the underlying HTTP/2 connections and
/// the breakers.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    /// The normalized endpoints, in order.
    endpoints: Arc<[Arc<str>]>,
    /// All of them, comma-separated, for errors about all of them.
    all: Arc<str>,
    router: Router,
    breakers: Breakers,
    request_timeout: Duration,
}

/// The endpoint a request goes to, put in its extensions by
/// [`Connection::call`] and read by [`Router`].
#[derive(Debug, Clone, Copy)]
struct Route(usize);

/// The service the generated clients send through: it hands each request to
/// the channel of the endpoint its [`Route`] names (the first without one).
#[derive(Debug, Clone)]
pub(crate) struct Router {
    channels: Arc<[Channel]>,
    /// Added to every request, if set.
    authorization: Option<http::HeaderValue>,
}

impl Service<http::Request<Body>> for Router {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        // The endpoint is known only from the request: its channel is made
        // ready in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if let Some(value) = &self.authorization {
            request.headers_mut().insert(http::header::AUTHORIZATION, value.clone());
        }
        let index = request.extensions().get::<Route>().map_or(0, |r| r.0);
        let mut channel = self.channels[index.min(self.channels.len() - 1)].clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
            channel.call(request).await
        })
    }
}

/// How to run one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallOptions<'a> {
    pub(crate) op: Op,
    /// The topic the call concerns, named in errors.
    pub(crate) topic: Option<&'a str>,
    /// The group the call is about, when its NOT_FOUND means the group.
    pub(crate) group: Option<&'a str>,
    /// Whether the call may be repeated when the broker is unreachable.
    pub(crate) retry: bool,
    /// Time the broker is asked to wait (a fetch's long poll), added to the
    /// request timeout so a long poll never counts against it.
    pub(crate) wait: Duration,
    /// Replaces the connection's request timeout for this call: the
    /// consumer's group task must not be stuck in one call for longer than
    /// its session lasts.
    pub(crate) timeout: Option<Duration>,
}

impl CallOptions<'_> {
    pub(crate) fn new(op: Op) -> Self {
        Self { op, topic: None, group: None, retry: false, wait: Duration::ZERO, timeout: None }
    }
}

/// A call's claim on an endpoint, for one attempt: reports the outcome to
/// the endpoint's breaker, and gives a half-open breaker's probe back if the
/// attempt ends without one (dropped, or out of time).
struct Attempt<'a> {
    breakers: &'a Breakers,
    index: usize,
    probe: bool,
    started: Instant,
}

impl Attempt<'_> {
    fn succeeded(mut self, reached: bool) {
        self.breakers.succeeded(self.index, reached);
        self.probe = false;
    }

    fn failed(mut self, status: &tonic::Status) {
        self.breakers.failed(self.index, self.started, Instant::now(), self.probe, Arc::new(status.clone()));
        self.probe = false;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.breakers.probe_abandoned(self.index);
        }
    }
}

impl Connection {
    pub(crate) fn admin(&self) -> AdminServiceClient<Router> {
        AdminServiceClient::new(self.router.clone()).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
    }

    pub(crate) fn producer(&self) -> ProducerServiceClient<Router> {
        ProducerServiceClient::new(self.router.clone()).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
    }

    pub(crate) fn consumer(&self) -> ConsumerServiceClient<Router> {
        ConsumerServiceClient::new(self.router.clone()).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
    }

    pub(crate) fn group(&self) -> GroupServiceClient<Router> {
        GroupServiceClient::new(self.router.clone()).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
    }

    /// The endpoints' circuit breakers.
    pub(crate) fn breakers(&self) -> Breakers {
        self.breakers.clone()
    }

    /// Runs `rpc` with `message` until it succeeds, fails for good, or the
    /// budget (request timeout plus `opts.wait`) runs out.
    ///
    /// Each attempt goes to the first endpoint, in order, whose breaker lets
    /// it through and that this call has not tried since it last waited.
    /// Only connection failures are retried: any answer from the broker,
    /// even an error, is final. A failed attempt moves on to the next
    /// endpoint at once, when `opts.retry` or when the request never left
    /// (the connection could not be opened); after every endpoint failed,
    /// the call backs off before it starts over, and only when `opts.retry`.
    ///
    /// When every breaker is open, the call fails at once, unless it may
    /// retry and one of the endpoints has answered before: then the broker
    /// was there and is likely coming back (a restart), so the call waits,
    /// within its budget, for the breakers to let it through again. It fails
    /// with [`Error::Unavailable`] if it tried an endpoint itself, else with
    /// [`Error::CircuitOpen`].
    ///
    /// Each attempt gets the remaining budget as its deadline, also sent to
    /// the broker as `grpc-timeout` so it can give up on a caller that has.
    pub(crate) async fn call<Req, Resp, F, Fut>(
        &self,
        opts: CallOptions<'_>,
        message: Req,
        mut rpc: F,
    ) -> Result<Resp>
    where
        Req: Clone,
        F: FnMut(tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let budget = opts.timeout.unwrap_or(self.request_timeout) + opts.wait;
        let deadline = Instant::now() + budget;
        let context = |endpoint| CallContext {
            endpoint,
            op: opts.op,
            topic: opts.topic,
            group: opts.group,
            timeout: budget,
        };
        let backoff = Backoff::default();
        let mut retries = 0;
        // Endpoints tried since the call last waited, a bit each.
        let mut tried: u64 = 0;
        // Every endpoint whose connection failed in this call.
        let mut failed: u64 = 0;
        // The last connection failure: if the call gives up after one, that
        // (the broker could not be reached) is the error, whether the time
        // ran out in a backoff or in an attempt.
        let mut unreachable: Option<tonic::Status> = None;
        // The endpoint of the last attempt, if any.
        let mut last: Option<usize> = None;
        let give_up = |unreachable: Option<tonic::Status>, failed: u64, last: Option<usize>| match (
            unreachable,
            last,
        ) {
            (Some(status), Some(last)) => {
                let endpoint = if failed.count_ones() > 1 { &self.all } else { &self.endpoints[last] };
                Error::from_status(status, &context(endpoint))
            }
            // Nothing tried: every breaker stayed open.
            (_, None) => self.breakers.open_error(Instant::now()),
            (None, Some(last)) => Error::Timeout {
                endpoint: self.endpoints[last].to_string(),
                operation: opts.op.name(),
                timeout: budget,
            },
        };
        let mut changes = self.breakers.changes();
        loop {
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            if remaining.is_zero() {
                return Err(give_up(unreachable, failed, last));
            }
            changes.borrow_and_update();
            let (index, probe) = match self.breakers.choose(now, tried) {
                Choice::Try { index, probe } => (index, probe),
                Choice::TriedAll => {
                    let delay = backoff.delay(retries);
                    if !opts.retry || now + delay >= deadline {
                        return Err(give_up(unreachable, failed, last));
                    }
                    tracing::debug!(
                        endpoints = %self.all,
                        op = opts.op.name(),
                        retries,
                        ?delay,
                        status = %unreachable.as_ref().map(ToString::to_string).unwrap_or_default(),
                        "broker unreachable, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    retries = retries.saturating_add(1);
                    tried = 0;
                    continue;
                }
                Choice::Blocked(blocked) => {
                    let wait =
                        opts.retry && blocked.reached && blocked.until.is_none_or(|until| until < deadline);
                    if !wait {
                        return Err(give_up(unreachable, failed, last));
                    }
                    // A probe's outcome, or the end of a cool-down.
                    tokio::select! {
                        _ = changes.changed() => {}
                        () = tokio::time::sleep_until(blocked.until.unwrap_or(deadline)) => {}
                    }
                    tried = 0;
                    continue;
                }
            };
            last = Some(index);
            let attempt = Attempt { breakers: &self.breakers, index, probe, started: now };
            let mut request = tonic::Request::new(message.clone());
            request.set_timeout(remaining);
            request.extensions_mut().insert(Route(index));
            let status = match tokio::time::timeout(remaining, rpc(request)).await {
                Err(_elapsed) => return Err(give_up(unreachable, failed, last)),
                Ok(Ok(response)) => {
                    attempt.succeeded(true);
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) => status,
            };
            let endpoint = &self.endpoints[index];
            if let Some(http_status) = not_grpc(&status) {
                // Something answers there, but not a broker.
                attempt.succeeded(false);
                return Err(Error::NotBrooklet { endpoint: endpoint.to_string(), http_status });
            }
            if !is_connection_failure(&status) {
                attempt.succeeded(true);
                return Err(Error::from_status(status, &context(endpoint)));
            }
            if let Some(failure) = status.source().and_then(|source| crate::tls::failure(source, endpoint)) {
                // Reached, and refused for a reason no retry changes.
                attempt.succeeded(false);
                return Err(Error::Tls { endpoint: endpoint.to_string(), failure, source: Arc::new(status) });
            }
            attempt.failed(&status);
            tried |= 1 << index;
            failed |= 1 << index;
            if !opts.retry && !never_sent(&status) {
                return Err(give_up(Some(status), failed, last));
            }
            tracing::debug!(endpoint = %endpoint, op = opts.op.name(), %status, "broker unreachable");
            unreachable = Some(status);
        }
    }
}

/// The HTTP status of an answer that was HTTP but not gRPC (tonic made its
/// status up from the HTTP status): the endpoint is not a Brooklet broker.
/// Gateways' 502, 503, 504 and 429, which tonic makes `UNAVAILABLE`, are not
/// counted: a proxy in front of a broker answers them while it is down.
fn not_grpc(status: &tonic::Status) -> Option<u16> {
    let http_status = status.message().strip_prefix(NOT_GRPC)?.trim().parse().ok()?;
    (status.code() != tonic::Code::Unavailable).then_some(http_status)
}

/// Whether a connection failure happened while connecting, so the request
/// never left and may go to another endpoint even if it must not be
/// repeated.
fn never_sent(status: &tonic::Status) -> bool {
    let mut next: Option<&(dyn StdError + 'static)> = status.source();
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        // hyper-util's connector error, which is not public: every failure
        // to open a connection (DNS, refused, connect timeout) is one.
        if format!("{err:?}").starts_with("ConnectError(") {
            return true;
        }
        next = err.source();
    }
    false
}

/// Exponential backoff with full jitter: attempt `n` waits a uniformly random
/// time in `[0, min(max, initial * 2^n)]`. The jitter spreads out clients that
/// lost the same broker at the same moment, so they do not reconnect in step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_millis(50), max: Duration::from_secs(2) }
    }
}

impl Backoff {
    /// The longest wait before retry number `attempt` (counting from 0).
    pub(crate) fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// A random wait before retry number `attempt`.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(fastrand::u64(0..=ceiling))
    }
}

/// The builder methods that set a client's endpoints and circuit breakers,
/// the same on every builder (each has a `conn: ConnectionConfig`).
macro_rules! endpoint_settings {
    () => {
        /// Replaces the endpoints with `endpoints`, tried in order: a call goes
        /// to the first one whose circuit breaker lets it through, and moves on
        /// to the next when it cannot connect, so a standby broker takes over
        /// while the first is down. The builder's endpoint may also be such a
        /// list, comma-separated: `"http://a:7070,http://b:7070"`.
        pub fn endpoints<I, S>(mut self, endpoints: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.conn.set_endpoints(endpoints);
            self
        }

        /// TLS for `https://` endpoints: the CA to trust (default: the
        /// system's roots) and a certificate to present. A bare `host:port`
        /// endpoint then means `https://`.
        pub fn tls(mut self, tls: crate::TlsOptions) -> Self {
            self.conn.tls = Some(tls);
            self
        }

        /// How each endpoint's circuit breaker behaves (default
        /// [`BreakerConfig::default()`](crate::BreakerConfig::default)); see
        /// [`Breakers`](crate::Breakers).
        pub fn breaker(mut self, breaker: crate::BreakerConfig) -> Self {
            self.conn.breaker = breaker;
            self
        }

        /// Authenticates every call as `user` with `password` (HTTP Basic),
        /// as a broker run with `--auth required` demands. Without TLS the
        /// password crosses the network readable: use it over TLS or
        /// loopback.
        pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
            self.conn.credentials =
                Some(crate::connection::Credentials { user: user.into(), password: password.into() });
            self
        }
    };
}
pub(crate) use endpoint_settings;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_ceiling_doubles_then_caps() {
        let backoff = Backoff::default();
        assert_eq!(backoff.ceiling(0), Duration::from_millis(50));
        assert_eq!(backoff.ceiling(1), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(2), Duration::from_millis(200));
        assert_eq!(backoff.ceiling(5), Duration::from_millis(1600));
        assert_eq!(backoff.ceiling(6), Duration::from_secs(2));
        assert_eq!(backoff.ceiling(31), Duration::from_secs(2));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn backoff_delay_stays_within_its_ceiling_and_varies() {
        let backoff = Backoff::default();
        for attempt in 0..40 {
            let delays: Vec<_> = (0..200).map(|_| backoff.delay(attempt)).collect();
            assert!(delays.iter().all(|d| *d <= backoff.ceiling(attempt)), "attempt {attempt}");
            assert!(delays.iter().any(|d| *d != delays[0]), "attempt {attempt}: no jitter");
        }
    }

    #[test]
    fn endpoints_are_normalized() {
        let plain = |e| normalize_endpoint(e, false).ok();
        assert_eq!(plain("127.0.0.1:7070").as_deref(), Some("http://127.0.0.1:7070"));
        assert_eq!(plain(" http://b:1 ").as_deref(), Some("http://b:1"));
        assert_eq!(plain("https://b:1").as_deref(), Some("https://b:1"));
        assert!(matches!(normalize_endpoint("grpc://b:1", false), Err(Error::InvalidEndpoint { .. })));
        assert!(matches!(normalize_endpoint("", false), Err(Error::InvalidEndpoint { .. })));
        assert!(matches!(normalize_endpoint("https://", false), Err(Error::InvalidEndpoint { .. })));
        // With TLS options a bare address is https, and http:// a mistake.
        assert_eq!(normalize_endpoint("b:1", true).ok().as_deref(), Some("https://b:1"));
        let err = normalize_endpoint("http://b:1", true).unwrap_err().to_string();
        assert!(err.contains("use https://"), "{err}");
    }

    #[tokio::test]
    async fn a_bad_endpoint_fails_at_build_and_names_the_reason() {
        let err = ConnectionConfig::new("http://bad host:70".to_owned()).connect().err();
        let Some(Error::InvalidEndpoint { endpoint, reason }) = err else {
            panic!("expected InvalidEndpoint, got {err:?}");
        };
        assert_eq!(endpoint, "http://bad host:70");
        assert!(reason.len() > "transport error".len(), "{reason}");
    }

    #[tokio::test]
    async fn building_does_not_need_a_broker() {
        assert!(ConnectionConfig::new("127.0.0.1:1".to_owned()).connect().is_ok());
    }

    /// A connection to `endpoint` with a 300 ms request budget, and the
    /// options of a ListTopics call that retries refused connections.
    fn retrying(endpoint: String) -> (Connection, CallOptions<'static>) {
        let mut config = ConnectionConfig::new(endpoint);
        config.request_timeout = Duration::from_millis(300);
        let conn = config.connect().expect("valid endpoint");
        (conn, CallOptions { retry: true, ..CallOptions::new(Op::ListTopics) })
    }

    /// A refused connection is retried until the budget runs out (or the
    /// breaker opens), then reported as `Unavailable`.
    #[tokio::test]
    async fn unreachable_broker_is_retried_then_unavailable() {
        let (_reserved, addr) = crate::test_support::refusing_addr();
        let (conn, opts) = retrying(addr.to_string());
        let mut attempts = 0;
        let result = conn
            .call(opts, brooklet_proto::v1::ListTopicsRequest {}, |req| {
                attempts += 1;
                let mut client = conn.admin();
                async move { client.list_topics(req).await }
            })
            .await;
        assert!(matches!(result, Err(Error::Unavailable { .. })), "{result:?}");
        assert!(attempts > 1, "only {attempts} attempt(s)");
    }

    /// The budget can run out in the middle of an attempt after earlier
    /// ones were refused (a loaded machine connects slowly): the broker
    /// was still unreachable, not slow to answer.
    #[tokio::test(start_paused = true)]
    async fn a_budget_spent_retrying_a_refused_broker_is_unavailable() {
        let (conn, opts) = retrying("127.0.0.1:1".to_owned());
        let mut attempts = 0;
        let result = conn
            .call(opts, brooklet_proto::v1::ListTopicsRequest {}, |_req| {
                attempts += 1;
                let first = attempts == 1;
                async move {
                    if first {
                        Err(tonic::Status::unavailable("connection refused"))
                    } else {
                        // The next attempt outlasts the budget.
                        std::future::pending::<
                            std::result::Result<
                                tonic::Response<brooklet_proto::v1::ListTopicsResponse>,
                                tonic::Status,
                            >,
                        >()
                        .await
                    }
                }
            })
            .await;
        assert!(matches!(result, Err(Error::Unavailable { .. })), "{result:?}");
        assert_eq!(attempts, 2);
    }

    #[tokio::test]
    async fn calls_that_must_not_repeat_are_tried_once() {
        let (_reserved, addr) = crate::test_support::refusing_addr();
        let conn = ConnectionConfig::new(addr.to_string()).connect().expect("valid endpoint");
        let mut attempts = 0;
        let result = conn
            .call(CallOptions::new(Op::CreateTopic), brooklet_proto::v1::ListTopicsRequest {}, |req| {
                attempts += 1;
                let mut client = conn.admin();
                async move { client.list_topics(req).await }
            })
            .await;
        assert!(matches!(result, Err(Error::Unavailable { .. })), "{result:?}");
        assert_eq!(attempts, 1);
    }

    use std::cell::Cell;

    use brooklet_proto::v1::{ListTopicsRequest, ListTopicsResponse};

    use crate::breaker::BreakerState;

    type Answer = std::result::Result<tonic::Response<ListTopicsResponse>, tonic::Status>;

    fn answer() -> Answer {
        Ok(tonic::Response::new(ListTopicsResponse::default()))
    }

    /// A failure to connect, as tonic reports one: it has a source.
    fn refused() -> tonic::Status {
        tonic::Status::from_error(Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)))
    }

    fn connection(endpoints: &str) -> Connection {
        ConnectionConfig::new(endpoints.to_owned()).connect().expect("valid endpoints")
    }

    fn retry() -> CallOptions<'static> {
        CallOptions { retry: true, ..CallOptions::new(Op::ListTopics) }
    }

    fn route(req: &tonic::Request<ListTopicsRequest>) -> usize {
        req.extensions().get::<Route>().expect("every attempt is routed").0
    }

    /// The wrong port: the first call fails within a second of retries
    /// with `Unavailable` and opens the breaker; the next fails at once,
    /// without trying, with `CircuitOpen`; after the cool-down one call
    /// tries again.
    #[tokio::test(start_paused = true)]
    async fn a_never_reached_endpoint_fails_fast_and_opens_its_breaker() {
        let conn = connection("127.0.0.1:1");
        let attempts = Cell::new(0);
        let refusing = |_req| {
            attempts.set(attempts.get() + 1);
            async { Err::<tonic::Response<ListTopicsResponse>, _>(refused()) }
        };
        let start = Instant::now();
        let first = conn.call(retry(), ListTopicsRequest {}, refusing).await;
        assert!(matches!(first, Err(Error::Unavailable { .. })), "{first:?}");
        assert_eq!(attempts.get(), crate::breaker::DEFAULT_FAILURE_THRESHOLD);
        // Four backoffs of at most 50, 100, 200 and 400 ms, not the 30 s
        // request timeout.
        assert!(start.elapsed() <= Duration::from_millis(750), "{:?}", start.elapsed());
        assert_eq!(conn.breakers().state(), BreakerState::Open);

        let second = conn.call(retry(), ListTopicsRequest {}, refusing).await;
        let Err(Error::CircuitOpen { endpoint, retry_in, source }) = &second else {
            panic!("expected CircuitOpen, got {second:?}");
        };
        assert_eq!(endpoint, "http://127.0.0.1:1");
        assert!(*retry_in > Duration::ZERO && *retry_in <= crate::breaker::DEFAULT_COOL_DOWN, "{retry_in:?}");
        assert!(source.is_some(), "the last failure is kept");
        assert_eq!(attempts.get(), crate::breaker::DEFAULT_FAILURE_THRESHOLD, "nothing tried");

        tokio::time::advance(*retry_in).await;
        let third = conn.call(retry(), ListTopicsRequest {}, refusing).await;
        assert!(matches!(third, Err(Error::Unavailable { .. })), "{third:?}");
        assert_eq!(attempts.get(), crate::breaker::DEFAULT_FAILURE_THRESHOLD + 1, "one probe");
        assert_eq!(conn.breakers().state(), BreakerState::Open);
    }

    /// A broker that answered once and is then down for 3 s (a restart): a
    /// retrying call waits for the breaker's probes instead of failing, and
    /// succeeds once the broker is back; only probes reach the endpoint
    /// while the breaker is open. A call that must not repeat fails at once
    /// meanwhile.
    #[tokio::test(start_paused = true)]
    async fn a_retrying_call_rides_out_the_restart_of_a_reached_broker() {
        let conn = connection("127.0.0.1:1");
        conn.call(retry(), ListTopicsRequest {}, |_req| async { answer() }).await.expect("reached");

        let mut watch = conn.breakers().subscribe();
        let seen = tokio::spawn(async move {
            let mut seen = Vec::new();
            while watch.changed().await.is_ok() {
                let state = *watch.borrow_and_update();
                seen.push(state);
                if state == BreakerState::Closed {
                    break;
                }
            }
            seen
        });
        let back = Instant::now() + Duration::from_secs(3);
        let attempts = Cell::new(0);
        let restarting = |_req| {
            attempts.set(attempts.get() + 1);
            async move {
                // Lets the watcher see each state.
                tokio::time::sleep(Duration::from_millis(1)).await;
                if Instant::now() < back { Err(refused()) } else { answer() }
            }
        };
        let ridden = conn.call(retry(), ListTopicsRequest {}, restarting).await;
        assert!(ridden.is_ok(), "{ridden:?}");
        assert!(Instant::now() <= back + crate::breaker::DEFAULT_MAX_COOL_DOWN, "noticed the broker late");
        // Five failures open it; then a probe per cool-down of 250 ms
        // doubling to 2 s: at most 5 in 3 s.
        assert!(attempts.get() <= 5 + 5 + 1, "{} attempts", attempts.get());
        let seen = seen.await.unwrap();
        assert_eq!(seen.first(), Some(&BreakerState::Open), "{seen:?}");
        assert!(seen.contains(&BreakerState::HalfOpen), "{seen:?}");
        assert_eq!(seen.last(), Some(&BreakerState::Closed), "{seen:?}");

        // Down again: the breaker opens, and a call that must not repeat
        // fails at once rather than wait.
        let _ = conn
            .call(
                CallOptions { timeout: Some(Duration::from_secs(1)), ..retry() },
                ListTopicsRequest {},
                |_req| async { Err::<tonic::Response<ListTopicsResponse>, _>(refused()) },
            )
            .await;
        assert_eq!(conn.breakers().state(), BreakerState::Open);
        let tried = Cell::new(false);
        let once = conn
            .call(CallOptions::new(Op::CreateTopic), ListTopicsRequest {}, |_req| {
                tried.set(true);
                async { answer() }
            })
            .await;
        assert!(matches!(once, Err(Error::CircuitOpen { .. })), "{once:?}");
        assert!(!tried.get());
    }

    /// Two endpoints, the first refusing: every call, even one that must not
    /// repeat, goes on to the second at once (its request never left);
    /// once the first's breaker is open, calls go straight to the second.
    #[tokio::test(start_paused = true)]
    async fn calls_fail_over_to_the_next_endpoint_in_order() {
        let conn = connection("127.0.0.1:1, 127.0.0.1:2");
        let routes = std::cell::RefCell::new(Vec::new());
        let first_down = |req: tonic::Request<ListTopicsRequest>| {
            let index = route(&req);
            routes.borrow_mut().push(index);
            async move { if index == 0 { Err(refused()) } else { answer() } }
        };
        let start = Instant::now();
        for _ in 0..crate::breaker::DEFAULT_FAILURE_THRESHOLD {
            let opts = CallOptions::new(Op::CreateTopic);
            conn.call(opts, ListTopicsRequest {}, first_down).await.expect("served by the second");
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "no backoff: the second endpoint was free");
        let states: Vec<_> = conn.breakers().endpoints().into_iter().map(|e| e.state).collect();
        assert_eq!(states, [BreakerState::Open, BreakerState::Closed]);
        assert_eq!(conn.breakers().state(), BreakerState::Closed);
        routes.borrow_mut().clear();
        conn.call(retry(), ListTopicsRequest {}, first_down).await.expect("served by the second");
        assert_eq!(*routes.borrow(), [1], "the open endpoint is skipped");

        // Both down: the error names both.
        let err = conn
            .call(CallOptions::new(Op::CreateTopic), ListTopicsRequest {}, |_req| async {
                Err::<tonic::Response<ListTopicsResponse>, _>(refused())
            })
            .await
            .unwrap_err();
        let Error::Unavailable { endpoint, .. } = &err else { panic!("{err:?}") };
        assert_eq!(endpoint, "http://127.0.0.1:2", "the open first one was not tried");
    }

    /// An endpoint that answers HTTP without gRPC (the metrics port) is
    /// named for what it is; a gateway's 503 is still "unreachable".
    #[tokio::test(start_paused = true)]
    async fn an_http_answer_without_grpc_is_not_a_broker() {
        let conn = connection("127.0.0.1:1");
        let not_found = tonic::Status::unimplemented(format!("{NOT_GRPC}404"));
        let err = conn
            .call(retry(), ListTopicsRequest {}, |_req| {
                let status = not_found.clone();
                async move { Err::<tonic::Response<ListTopicsResponse>, _>(status) }
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::NotBrooklet { http_status: 404, endpoint } if endpoint == "http://127.0.0.1:1"),
            "{err:?}"
        );
        assert!(err.to_string().contains("metrics port"), "{err}");
        assert_eq!(not_grpc(&tonic::Status::unavailable(format!("{NOT_GRPC}503"))), None);
        assert_eq!(not_grpc(&tonic::Status::unimplemented("unknown method Foo")), None);
    }

    /// The failures tonic reports for a refused port are recognised as
    /// failures to connect, which sent nothing.
    #[tokio::test]
    async fn a_refused_connection_sent_nothing() {
        let (_reserved, addr) = crate::test_support::refusing_addr();
        let conn = connection(&addr.to_string());
        let mut client = conn.admin();
        let status = client.list_topics(ListTopicsRequest {}).await.unwrap_err();
        assert!(is_connection_failure(&status), "{status:?}");
        assert!(never_sent(&status), "{status:?}");
        assert!(!never_sent(&tonic::Status::unavailable("h2 protocol error")));
    }

    #[tokio::test]
    async fn endpoint_lists_are_parsed_and_checked() {
        let conn = connection("a:1, http://b:2");
        let endpoints: Vec<_> = conn.breakers().endpoints().into_iter().map(|e| e.endpoint).collect();
        assert_eq!(endpoints, ["http://a:1", "http://b:2"]);
        let err = ConnectionConfig::new("a:1,,b:2".to_owned()).connect().err();
        assert!(matches!(err, Some(Error::InvalidEndpoint { .. })), "{err:?}");
        let mut config = ConnectionConfig::new("a:1".to_owned());
        config.set_endpoints(Vec::<String>::new());
        assert!(matches!(config.connect(), Err(Error::InvalidEndpoint { .. })));
        config.set_endpoints(["x:1", "y:2", "z:3"]);
        assert_eq!(config.connect().expect("valid").breakers().endpoints().len(), 3);
        config.breaker = BreakerConfig::default().failure_threshold(0);
        assert!(matches!(config.connect(), Err(Error::InvalidArgument { .. })));
    }
}
