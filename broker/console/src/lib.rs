//! Brooklet's web console: a page (static files embedded in the binary, no
//! build step) and the JSON API it polls, under `/console/`. The broker's
//! HTTP listener mounts [`Console::router`] beside `/metrics`.
//!
//! An adapter over the core like gRPC and Kafka: it calls [`Core`], asks
//! the core's [`Authorizer`] before every read and change (lists are
//! filtered by `describe`), checks passwords through the core's `Users`
//! and reads [`Metrics`]' totals for its charts. It never touches sled,
//! tonic or another adapter.
//!
//! # Code map
//!
//! - `api`: the handlers, one per page or action, and the routes.
//! - `session`: sessions, their cookie and CSRF token, login.
//! - `history`: the per-second sampler behind the overview's charts.
//! - `json`, `form`: answers written and requests read without serde_json.
//! - `error`: core errors and denials as HTTP statuses, in one place.
//! - `assets`: the embedded page, script, styles and vendored uPlot.

#![warn(unreachable_pub, missing_docs)]

mod api;
mod assets;
mod error;
mod form;
mod history;
mod json;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use brooklet_core::{Authorizer, Core};
use brooklet_metrics::Metrics;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A listener of the broker, as the overview lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerInfo {
    /// `grpc`, `kafka` or `metrics`.
    pub name: &'static str,
    /// Where it is bound.
    pub addr: SocketAddr,
    /// Whether it serves TLS.
    pub tls: bool,
}

/// What the console serves and checks against.
#[derive(Clone, Debug)]
pub struct ConsoleOptions {
    /// The core.
    pub core: Core,
    /// The broker's metrics (the charts' source).
    pub metrics: Metrics,
    /// Decides what each user may see and do.
    pub authorizer: Authorizer,
    /// `--auth required`: the console asks for a user and password.
    pub auth_required: bool,
    /// The broker's listeners.
    pub listeners: Vec<ListenerInfo>,
}

/// The console: cloning shares it.
#[derive(Clone, Debug)]
pub struct Console {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: ConsoleOptions,
    started: Instant,
    sessions: session::Sessions,
    history: history::History,
}

impl Console {
    /// A console over `options`; nothing runs until [`Console::spawn_sampler`].
    pub fn new(options: ConsoleOptions) -> Console {
        Console {
            inner: Arc::new(Inner {
                options,
                started: Instant::now(),
                sessions: session::Sessions::default(),
                history: history::History::default(),
            }),
        }
    }

    /// Starts the once-a-second sampler of the charts on `tasks`; it ends
    /// when `stop` is cancelled.
    pub fn spawn_sampler(&self, stop: CancellationToken, tasks: &TaskTracker) {
        let console = self.clone();
        tasks.spawn(async move {
            let o = &console.inner.options;
            console.inner.history.run(o.core.clone(), o.metrics.clone(), stop).await;
        });
    }

    /// The page and its API: `/console/…` (and `/console` redirecting to
    /// `/console/`).
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }
}

#[cfg(test)]
mod tests;
