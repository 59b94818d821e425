//! Admission before work: each gRPC request takes one of its connection's
//! places (`--max-requests-per-connection`) or is answered RESOURCE_EXHAUSTED
//! at once; then it is counted and timed into the metrics by its final
//! status. The connection limit itself is in `connection`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use brooklet_metrics::Metrics;

use crate::connection::ConnInfo;

/// Admits, counts and times every gRPC request: see [`RequestService`].
#[derive(Clone, Debug)]
pub(crate) struct RequestLayer {
    pub(crate) metrics: Metrics,
    /// Requests slower than this are logged as a warning.
    pub(crate) slow_request: Duration,
}

impl<S> tower_layer::Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestService { inner, metrics: self.metrics.clone(), slow_request: self.slow_request }
    }
}

/// Admission, then measurement, of each request.
///
/// A request first takes one of its connection's places (see
/// [`ConnInfo::admit`]); with none free it is answered RESOURCE_EXHAUSTED at
/// once and counted in `brooklet_requests_shed_total`. The place is held
/// until the response ends, streams included, so a connection cannot hold
/// more work than its limit.
///
/// A request is timed until its response headers. It is counted by rpc and
/// by its final `grpc-status`: from the headers of a trailers-only response
/// (how tonic answers a failed unary call), otherwise from the trailers that
/// end the body, so a stream that fails after its first message counts as
/// failed. A response dropped before its trailers counts as CANCELLED.
#[derive(Clone, Debug)]
pub(crate) struct RequestService<S> {
    inner: S,
    metrics: Metrics,
    slow_request: Duration,
}

impl<S, B> tower_service::Service<http::Request<B>> for RequestService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().trim_start_matches('/').to_owned();
        let metrics = self.metrics.clone();
        // The client's verified certificate, for the services to read.
        let identity = request.extensions().get::<ConnInfo>().and_then(|c| c.identity().cloned());
        if let Some(identity) = identity {
            request.extensions_mut().insert(identity);
        }
        let place = match request.extensions().get::<ConnInfo>() {
            Some(conn) => match conn.admit() {
                Some(place) => Some(place),
                None => {
                    metrics.request_shed();
                    let status = tonic::Status::resource_exhausted(format!(
                        "too many requests in flight on this connection: the limit is {} \
                         (--max-requests-per-connection)",
                        conn.limit()
                    ));
                    return Box::pin(std::future::ready(Ok(status.into_http())));
                }
            },
            // Not through the accept loop: nothing to admit to.
            None => None,
        };
        metrics.request_started();
        let mut outcome = Outcome {
            metrics,
            path,
            started: Instant::now(),
            headers_after: Duration::ZERO,
            slow_request: self.slow_request,
            _place: place,
            ended: false,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = match response.await {
                Ok(response) => response,
                Err(e) => {
                    outcome.end(tonic::Code::Unknown);
                    return Err(e);
                }
            };
            outcome.headers_after = outcome.started.elapsed();
            if let Some(code) = response.headers().get("grpc-status") {
                outcome.end(tonic::Code::from_bytes(code.as_bytes()));
                return Ok(response);
            }
            Ok(response.map(|body| tonic::body::Body::new(ObservedBody { inner: body, outcome })))
        })
    }
}

/// A response body that ends its request's [`Outcome`] with the status in
/// its trailers.
struct ObservedBody {
    inner: tonic::body::Body,
    outcome: Outcome,
}

impl http_body::Body for ObservedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers
                        .get("grpc-status")
                        .map_or(tonic::Code::Unknown, |v| tonic::Code::from_bytes(v.as_bytes()));
                    self.outcome.end(code);
                }
            }
            Some(Err(status)) => self.outcome.end(status.code()),
            // A gRPC body ends with trailers; one without them failed.
            None => self.outcome.end(tonic::Code::Unknown),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One request from admission to its final status: holds its connection
/// place and its count in `requests_in_flight`, and counts it once, however
/// it ends (a dropped, unfinished request counts as CANCELLED).
struct Outcome {
    metrics: Metrics,
    path: String,
    started: Instant,
    /// From admission to the response headers: the request's latency.
    headers_after: Duration,
    slow_request: Duration,
    _place: Option<tokio::sync::OwnedSemaphorePermit>,
    ended: bool,
}

impl Outcome {
    fn end(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        // Only paths that reached a real method get their own label: an
        // unknown service or method (UNIMPLEMENTED) shares one, so a client
        // cannot grow the label set.
        let rpc = if code == tonic::Code::Unimplemented { "unknown".to_owned() } else { self.path.clone() };
        let took = if self.headers_after.is_zero() { self.started.elapsed() } else { self.headers_after };
        // A fetch waits for data by design (long-poll): not slow.
        if took > self.slow_request && !rpc.ends_with("/Fetch") {
            tracing::warn!(
                rpc = %rpc,
                code = code_name(code),
                millis = took.as_millis() as u64,
                "slow request (above --slow-request-ms)"
            );
        }
        self.metrics.request_ended(rpc, code_name(code), took);
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        self.end(tonic::Code::Cancelled);
    }
}

/// The canonical name of a gRPC status code, as in the gRPC spec.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
