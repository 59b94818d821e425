//! The link to one broker: turns an endpoint string into a tonic `Channel`, and
//! runs unary calls under a deadline with retries. It knows which calls are
//! safe to repeat only because the caller says so; it knows nothing of
//! producers, consumers or records.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use brooklet_proto::v1::admin_service_client::AdminServiceClient;
use brooklet_proto::v1::consumer_service_client::ConsumerServiceClient;
use brooklet_proto::v1::group_service_client::GroupServiceClient;
use brooklet_proto::v1::producer_service_client::ProducerServiceClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::error::{CallContext, Error, Op, Result, is_connection_failure};

/// Default time allowed to open a TCP connection to the broker.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed for one call, retries included.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Fetch answers can be large (the first batch is returned whole even above
/// `max_bytes`), so the client accepts more than tonic's 4 MiB default.
const MAX_DECODING_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Where and how to connect, as collected by the builders.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionConfig {
    pub(crate) endpoint: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
}

impl ConnectionConfig {
    pub(crate) fn new(endpoint: String) -> Self {
        Self { endpoint, connect_timeout: DEFAULT_CONNECT_TIMEOUT, request_timeout: DEFAULT_REQUEST_TIMEOUT }
    }

    /// Builds the channel without connecting: the first call connects, so a
    /// client can be built before its broker is up.
    ///
    /// # Panics
    /// Outside a Tokio runtime, because the channel spawns its worker task.
    pub(crate) fn connect(&self) -> Result<Connection> {
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::InvalidArgument {
                message: "request_timeout and connect_timeout must be greater than zero".to_owned(),
            });
        }
        let uri = normalize_endpoint(&self.endpoint)?;
        let endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|err| Error::InvalidEndpoint {
                endpoint: self.endpoint.clone(),
                reason: error_chain(&err),
            })?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        Ok(Connection {
            channel: endpoint.connect_lazy(),
            endpoint: uri.into(),
            request_timeout: self.request_timeout,
        })
    }
}

/// Adds the `http://` a bare `host:port` lacks, and refuses schemes this
/// client cannot speak.
fn normalize_endpoint(endpoint: &str) -> Result<String> {
    let trimmed = endpoint.trim();
    let uri = if trimmed.contains("://") { trimmed.to_owned() } else { format!("http://{trimmed}") };
    if !uri.starts_with("http://") {
        return Err(Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: "only plain http:// endpoints are supported (this client has no TLS)".to_owned(),
        });
    }
    if uri.len() == "http://".len() {
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

/// A lazily connected channel to one broker; cheap to clone, and clones share
/// the underlying HTTP/2 connection.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    channel: Channel,
    endpoint: Arc<str>,
    request_timeout: Duration,
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

impl Connection {
    pub(crate) fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
    }

    pub(crate) fn producer(&self) -> ProducerServiceClient<Channel> {
        ProducerServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
    }

    pub(crate) fn consumer(&self) -> ConsumerServiceClient<Channel> {
        ConsumerServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
    }

    pub(crate) fn group(&self) -> GroupServiceClient<Channel> {
        GroupServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
    }

    /// Runs `rpc` with `message` until it succeeds, fails for good, or the
    /// budget (request timeout plus `opts.wait`) runs out.
    ///
    /// Only connection failures are retried, and only when `opts.retry`: any
    /// answer from the broker, even an error, is final. Each attempt gets the
    /// remaining budget as its deadline, also sent to the broker as
    /// `grpc-timeout` so it can give up on a caller that has.
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
        let context = CallContext {
            endpoint: &self.endpoint,
            op: opts.op,
            topic: opts.topic,
            group: opts.group,
            timeout: budget,
        };
        let timeout = || Error::Timeout {
            endpoint: self.endpoint.to_string(),
            operation: opts.op.name(),
            timeout: budget,
        };
        let deadline = Instant::now() + budget;
        let backoff = Backoff::default();
        let mut attempt = 0;
        // The last attempt's connection failure: if the budget runs out
        // while retrying, that (the broker could not be reached) is the
        // error, whether the time ran out in a backoff or in an attempt.
        let mut unreachable: Option<tonic::Status> = None;
        let out_of_time = |unreachable: Option<tonic::Status>| match unreachable {
            Some(status) => Error::from_status(status, &context),
            None => timeout(),
        };
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(out_of_time(unreachable));
            }
            let mut request = tonic::Request::new(message.clone());
            request.set_timeout(remaining);
            let status = match tokio::time::timeout(remaining, rpc(request)).await {
                Err(_elapsed) => return Err(out_of_time(unreachable)),
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => status,
            };
            if !opts.retry || !is_connection_failure(&status) {
                return Err(Error::from_status(status, &context));
            }
            let delay = backoff.delay(attempt);
            if Instant::now() + delay >= deadline {
                return Err(Error::from_status(status, &context));
            }
            tracing::debug!(
                endpoint = %self.endpoint,
                op = opts.op.name(),
                attempt,
                ?delay,
                %status,
                "broker unreachable, retrying"
            );
            unreachable = Some(status);
            tokio::time::sleep(delay).await;
            attempt = attempt.saturating_add(1);
        }
    }
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
        assert_eq!(normalize_endpoint("127.0.0.1:7070").ok().as_deref(), Some("http://127.0.0.1:7070"));
        assert_eq!(normalize_endpoint(" http://b:1 ").ok().as_deref(), Some("http://b:1"));
        assert!(matches!(normalize_endpoint("https://b:1"), Err(Error::InvalidEndpoint { .. })));
        assert!(matches!(normalize_endpoint(""), Err(Error::InvalidEndpoint { .. })));
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

    /// A refused connection is retried until the budget runs out, then
    /// reported as `Unavailable`.
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
}
