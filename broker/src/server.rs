//! Serving: opens storage, wires the gRPC services, health, reflection and
//! metrics, and runs them on listeners it is given until shutdown. Also the
//! embedded broker that tests start in-process.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use brooklet_proto::v1 as pb;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;

use crate::config::Config;
use crate::connection::accept_loop;
use crate::error::Error;
use crate::group::Groups;
use crate::grpc::Services;
use crate::log::Log;
use crate::metrics::Metrics;
use crate::storage::{Storage, StorageConfig};

/// The sockets a broker serves on, bound by its caller.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC.
    pub grpc: TcpListener,
    /// HTTP `/metrics`, `/healthz` and `/readyz`. When `None`, [`run`] binds
    /// `Config::metrics_listen` itself, if that is set.
    pub metrics: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(grpc: TcpListener) -> Listeners {
        Listeners { grpc, metrics: None }
    }
}

/// Why a broker could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is invalid; the source names the setting.
    #[error("invalid configuration")]
    Config(#[source] Error),
    /// A listener could not be bound or read.
    #[error("cannot listen {what}")]
    Listen {
        /// Which listener, and where.
        what: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The temporary data directory of an embedded broker.
    #[error("cannot create a temporary data directory")]
    TempDir(#[source] io::Error),
    /// Storage could not be opened or recovered, or the final flush failed.
    #[error("storage in {dir}")]
    Storage {
        /// The data directory.
        dir: String,
        /// What failed.
        #[source]
        source: Error,
    },
    /// The reflection service could not read the API's descriptors.
    #[error("cannot build the reflection service")]
    Reflection(#[source] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("the gRPC server failed")]
    Transport(#[source] tonic::transport::Error),
    /// The task running an embedded broker panicked.
    #[error("the broker's task failed")]
    Task(#[source] tokio::task::JoinError),
}

fn listen_error(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> ServeError {
    move |source| ServeError::Listen { what: what.to_string(), source }
}

/// Serves a broker on `listeners` until `shutdown` resolves; then stops
/// accepting, ends waiting reads and streams, lets in-flight requests finish,
/// and flushes storage. `/readyz` answers 503 from the moment shutdown begins.
pub async fn run(
    config: Config,
    listeners: impl Into<Listeners>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    config.validate().map_err(ServeError::Config)?;
    let Listeners { grpc: listener, metrics: metrics_listener } = listeners.into();
    let metrics_listener = match (metrics_listener, config.metrics_listen) {
        (Some(l), _) => Some(l),
        (None, Some(addr)) => {
            Some(TcpListener::bind(addr).await.map_err(listen_error(format_args!("for metrics on {addr}")))?)
        }
        (None, None) => None,
    };
    let metrics = Metrics::new();
    let storage_error =
        |source: Error| ServeError::Storage { dir: config.data_dir.display().to_string(), source };
    let storage = Storage::open(&StorageConfig {
        path: config.data_dir.clone(),
        cache_capacity: config.cache_capacity_bytes,
        flush_every_ms: Some(500),
        flush_max_delay: config.flush_max_delay,
    })
    .map_err(|e| storage_error(e.into()))?
    .with_flush_observer(Arc::new(metrics.clone()));
    // Every task that holds the database open runs on `tasks`, so that
    // shutdown can wait for the last of them before the directory is reused.
    let tasks = TaskTracker::new();
    let log = Arc::new(
        Log::open(storage, config.limits.clone(), config.durability, &tasks).map_err(storage_error)?,
    );
    let addr = listener.local_addr().map_err(listen_error("for gRPC"))?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "brooklet serving");

    let stop = CancellationToken::new();
    log.spawn_retention(config.retention_check_interval, stop.clone(), &tasks);
    let groups = Groups::new(log.clone(), config.groups.clone());
    // Sessions are checked often enough that a member is removed within a
    // quarter of the shortest session timeout after it ends.
    let expiry_every = (config.groups.min_session_timeout / 4).min(Duration::from_millis(250));
    groups.spawn_expiry(expiry_every, stop.clone(), &tasks);
    // The metrics server outlives the gRPC drain, so that `/readyz` can
    // answer 503 while in-flight requests finish.
    let metrics_stop = CancellationToken::new();
    if let Some(l) = metrics_listener {
        let addr = crate::metrics::spawn_http(
            metrics.clone(),
            log.clone(),
            groups.clone(),
            l,
            metrics_stop.clone(),
            &tasks,
        )
        .map_err(listen_error("for metrics"))?;
        tracing::info!(%addr, "metrics serving");
    }
    let services = Services::new(log.clone(), groups, stop.clone(), tasks.clone(), metrics.clone());
    let max_msg = config.limits.max_request_bytes;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
    // Both reflection versions, so grpcurl and `buf curl` work either way.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(brooklet_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().map_err(ServeError::Reflection)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(ServeError::Reflection)?;

    let incoming = Box::pin(accept_loop(
        listener,
        metrics.clone(),
        config.limits.max_connections,
        config.limits.max_requests_per_connection,
    ));
    let signal = {
        let (stop, metrics) = (stop.clone(), metrics.clone());
        async move {
            shutdown.await;
            tracing::info!("shutting down: draining requests");
            metrics.set_ready(false);
            health_reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
            stop.cancel();
        }
    };
    metrics.set_ready(true);
    let served = Server::builder()
        // Admits each request to a place of its connection's (past the limit
        // it is refused at once with RESOURCE_EXHAUSTED, so a flood from one
        // connection costs no memory), then counts and times it.
        .layer(metrics.layer(config.slow_request))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            pb::admin_service_server::AdminServiceServer::new(services.clone())
                .max_decoding_message_size(max_msg),
        )
        .add_service(
            pb::producer_service_server::ProducerServiceServer::new(services.clone())
                .max_decoding_message_size(max_msg),
        )
        .add_service(
            pb::consumer_service_server::ConsumerServiceServer::new(services.clone())
                .max_decoding_message_size(max_msg),
        )
        .add_service(
            pb::group_service_server::GroupServiceServer::new(services).max_decoding_message_size(max_msg),
        )
        .serve_with_incoming_shutdown(incoming, signal)
        .await;
    metrics.set_ready(false);
    metrics_stop.cancel();
    served.map_err(ServeError::Transport)?;

    log.storage().sync().map_err(|e| storage_error(e.into()))?;
    drop(log);
    tasks.close();
    tasks.wait().await;
    tracing::info!("brooklet stopped; storage flushed and closed");
    Ok(())
}

/// A real broker running inside this process on 127.0.0.1, port 0, with a
/// temporary data directory: for integration tests.
///
/// Many can run at once. [`shutdown`](Self::shutdown) stops it and removes
/// its directory; dropping it does the same in the background.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    stop: CancellationToken,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl EmbeddedBroker {
    /// Starts a broker with default limits in a new temporary directory.
    pub async fn start() -> Result<EmbeddedBroker, ServeError> {
        let dir = tempfile::Builder::new().prefix("brooklet-").tempdir().map_err(ServeError::TempDir)?;
        let config = Config::new(dir.path());
        Self::start_in(config, Some(dir)).await
    }

    /// Starts a broker with `config`; its data directory is kept afterwards.
    pub async fn start_with(config: Config) -> Result<EmbeddedBroker, ServeError> {
        Self::start_in(config, None).await
    }

    async fn start_in(config: Config, dir: Option<tempfile::TempDir>) -> Result<EmbeddedBroker, ServeError> {
        config.validate().map_err(ServeError::Config)?;
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(listen_error("on 127.0.0.1:0"))?;
        let addr = listener.local_addr().map_err(listen_error("on 127.0.0.1:0"))?;
        // Bound here, not in `run`, so that a port-0 address is known at once.
        let metrics = match config.metrics_listen {
            Some(a) => {
                Some(TcpListener::bind(a).await.map_err(listen_error(format_args!("for metrics on {a}")))?)
            }
            None => None,
        };
        let metrics_addr =
            metrics.as_ref().map(TcpListener::local_addr).transpose().map_err(listen_error("for metrics"))?;
        let listeners = Listeners { grpc: listener, metrics };
        let stop = CancellationToken::new();
        let signal = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            let result = run(config, listeners, signal).await;
            // The directory outlives the broker that uses it.
            drop(dir);
            result
        });
        Ok(EmbeddedBroker { addr, metrics_addr, stop, task: Some(task) })
    }

    /// The gRPC endpoint, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the broker listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served, if the config
    /// asked for them (`metrics_listen`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops the broker gracefully and waits until storage is flushed and
    /// closed.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        self.stop.cancel();
        match self.task.take() {
            Some(task) => task.await.map_err(ServeError::Task)?,
            None => Ok(()),
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
