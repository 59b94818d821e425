//! The HTTP listener for operators: `/metrics` (Prometheus text format),
//! `/healthz` (the process is up) and `/readyz` (storage open and every
//! listener serving; 503 from the moment shutdown begins). `/readyz` names
//! the listeners in its body. Unless `--console off`, the web console
//! (`brooklet-console`) is mounted at `/console/`, and `/` redirects there.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use brooklet_core::Core;
use brooklet_metrics::{CONTENT_TYPE, Metrics};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A listener of the broker, and whether it serves now: set when its
/// server starts, cleared when it ends.
#[derive(Debug)]
pub(crate) struct Serving {
    /// `grpc`, `kafka` or `metrics`.
    pub(crate) name: &'static str,
    /// Where it is bound.
    pub(crate) addr: SocketAddr,
    up: AtomicBool,
}

impl Serving {
    pub(crate) fn new(name: &'static str, addr: SocketAddr) -> Arc<Serving> {
        Arc::new(Serving { name, addr, up: AtomicBool::new(false) })
    }

    pub(crate) fn set(&self, up: bool) {
        self.up.store(up, Ordering::Release);
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
}

/// What the HTTP handlers read.
#[derive(Clone, Debug)]
pub(crate) struct Http {
    pub(crate) metrics: Metrics,
    pub(crate) core: Core,
    /// Every listener of the broker, this one included.
    pub(crate) listeners: Vec<Arc<Serving>>,
    /// The web console, when it is on.
    pub(crate) console: Option<brooklet_console::Console>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` (whose entry
/// is `serving`), on `tasks`, until `stop` is cancelled.
pub(crate) fn spawn_http(
    state: Http,
    listener: TcpListener,
    serving: Arc<Serving>,
    stop: CancellationToken,
    tasks: &TaskTracker,
) {
    tracing::info!(addr = %serving.addr, "metrics serving");
    let console = state.console.clone();
    let mut router = Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    if let Some(console) = console {
        router = router
            .route("/", get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/console/")]) }))
            .merge(console.router());
    } else {
        let off = || async { (StatusCode::NOT_FOUND, "the console is off (--console off)\n") };
        for path in ["/console", "/console/", "/console/{*rest}"] {
            router = router.route(path, get(off));
        }
    }
    serving.set(true);
    tasks.spawn(async move {
        let served = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await;
        serving.set(false);
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics server failed");
        }
    });
}

async fn scrape(State(state): State<Http>) -> impl IntoResponse {
    // Scrape-time gauges read sled (sizes, committed offsets): off the
    // async workers.
    let rendered = tokio::task::spawn_blocking(move || state.metrics.render(&state.core)).await;
    match rendered {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("rendering metrics failed: {e}\n")).into_response()
        }
    }
}

async fn readyz(State(state): State<Http>) -> (StatusCode, String) {
    readiness(&state.metrics, &state.listeners)
}

/// 200 `ready` when the broker accepts requests and every listener
/// serves, else 503; either way one line per listener, `NAME ADDRESS`, and
/// ` not serving` after one that does not.
fn readiness(metrics: &Metrics, listeners: &[Arc<Serving>]) -> (StatusCode, String) {
    let all_up = listeners.iter().all(|l| l.is_up());
    let (status, mut body) = match (metrics.is_ready(), all_up) {
        (true, true) => (StatusCode::OK, "ready\n".to_owned()),
        (true, false) => {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: a listener is not serving\n".to_owned())
        }
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting or shutting down\n".to_owned()),
    };
    for l in listeners {
        let down = if l.is_up() { "" } else { " not serving" };
        let _ = writeln!(body, "{} {}{down}", l.name, l.addr);
    }
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_flag_and_every_listener() {
        let metrics = Metrics::new();
        let grpc = Serving::new("grpc", "127.0.0.1:7070".parse().unwrap());
        let kafka = Serving::new("kafka", "127.0.0.1:9092".parse().unwrap());
        let listeners = [grpc.clone(), kafka.clone()];
        grpc.set(true);
        kafka.set(true);
        let (status, body) = readiness(&metrics, &listeners);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "not ready before start-up ends");
        assert!(body.starts_with("not ready: starting or shutting down\n"), "{body}");
        metrics.set_ready(true);
        assert_eq!(
            readiness(&metrics, &listeners),
            (StatusCode::OK, "ready\ngrpc 127.0.0.1:7070\nkafka 127.0.0.1:9092\n".to_owned())
        );
        kafka.set(false);
        assert_eq!(
            readiness(&metrics, &listeners),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: a listener is not serving\ngrpc 127.0.0.1:7070\nkafka 127.0.0.1:9092 not serving\n"
                    .to_owned()
            )
        );
        kafka.set(true);
        metrics.set_ready(false);
        assert_eq!(
            readiness(&metrics, &listeners).0,
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready once shutdown begins"
        );
    }
}
