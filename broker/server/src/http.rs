//! The HTTP listener for operators: `/metrics` (Prometheus text format),
//! `/healthz` (the process is up) and `/readyz` (storage open and accepting;
//! 503 from the moment shutdown begins).

use std::net::SocketAddr;

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

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener`, on `tasks`,
/// until `stop` is cancelled.
pub(crate) fn spawn_http(
    metrics: Metrics,
    core: Core,
    listener: TcpListener,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> std::io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let router = Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(HttpState { metrics, core });
    tasks.spawn(async move {
        let served = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics server failed");
        }
    });
    Ok(addr)
}

#[derive(Clone, Debug)]
struct HttpState {
    metrics: Metrics,
    core: Core,
}

async fn scrape(State(state): State<HttpState>) -> impl IntoResponse {
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

async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    readiness(&state.metrics)
}

fn readiness(metrics: &Metrics) -> (StatusCode, &'static str) {
    if metrics.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting or shutting down\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_flag() {
        let metrics = Metrics::new();
        assert_eq!(readiness(&metrics).0, StatusCode::SERVICE_UNAVAILABLE, "not ready before start-up ends");
        metrics.set_ready(true);
        assert_eq!(readiness(&metrics).0, StatusCode::OK);
        metrics.set_ready(false);
        assert_eq!(readiness(&metrics).0, StatusCode::SERVICE_UNAVAILABLE, "not ready once shutdown begins");
    }
}
