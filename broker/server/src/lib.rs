//! Brooklet's broker as a library: [`run`] opens the core and serves it on
//! listeners it is given (the gRPC adapter, and the HTTP listener of
//! metrics and health checks) until a shutdown future resolves, then drains
//! and flushes. [`EmbeddedBroker`] starts one in-process for tests.
//!
//! It wires the parts together and owns none of their rules: the core owns
//! topics, groups and offsets (`brooklet-core`), the adapters own their
//! protocols (`brooklet-grpc`, `brooklet-kafka`), metrics their registry (`brooklet-metrics`).
//! It never names tonic or sled.
//!
//! # Embedding a broker in a test
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let broker = brooklet_broker::EmbeddedBroker::start().await?;
//! println!("broker listening at {}", broker.endpoint());
//! broker.shutdown().await?;
//! # Ok(())
//! # }
//! ```

#![warn(unreachable_pub)]

mod config;
mod http;

pub use brooklet_core::{
    Acks, CoreConfig, DEFAULT_FLUSH_MAX_DELAY, Error, GroupConfig, Limits, MAX_FLUSH_MAX_DELAY,
    MAX_PARTITIONS_LIMIT, MAX_RECORD_BYTES_LIMIT,
};
pub use brooklet_tls::guard::ConnSettings;
pub use brooklet_tls::{ClientAuth, PeerIdentity, PrincipalFrom, Tls, TlsConfig, TlsError};
pub use config::{Auth, BootstrapUser, Config};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use brooklet_core::{Authorizer, Core, Denied};
use brooklet_grpc::{GrpcError, GrpcOptions};
use brooklet_metrics::Metrics;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The sockets a broker serves on, bound by its caller.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC.
    pub grpc: TcpListener,
    /// HTTP `/metrics`, `/healthz` and `/readyz`. When `None`, [`run`] binds
    /// `Config::metrics_listen` itself, if that is set.
    pub metrics: Option<TcpListener>,
    /// Kafka's wire protocol. When `None`, [`run`] binds
    /// `Config::kafka_listen` itself, if that is set.
    pub kafka: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(grpc: TcpListener) -> Listeners {
        Listeners { grpc, metrics: None, kafka: None }
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
    /// The gRPC listener failed.
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    /// TLS was asked for and could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The task running an embedded broker panicked.
    #[error("the broker's task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Creates the first user, if no user exists yet.
async fn bootstrap(core: &Core, user: &BootstrapUser) -> Result<(), Error> {
    if !core.users().is_empty() {
        tracing::debug!(user = %user.name, "users exist: the bootstrap user is not created");
        return Ok(());
    }
    core.users().add(&user.name, &user.password).await?;
    tracing::info!(user = %user.name, "created the bootstrap user (no user existed)");
    Ok(())
}

fn listen_error(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> ServeError {
    move |source| ServeError::Listen { what: what.to_string(), source }
}

/// Serves a broker on `listeners` until `shutdown` resolves; then stops
/// accepting, ends waiting reads and streams, lets in-flight requests finish,
/// and flushes storage. `/readyz` answers 200 once every listener serves,
/// and 503 from the moment shutdown begins.
pub async fn run(
    config: Config,
    listeners: impl Into<Listeners>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    serve(open(config, listeners.into()).await?, shutdown).await
}

/// A broker whose listeners are bound and whose storage is open, not yet
/// serving.
struct Opened {
    config: Config,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    kafka_listener: Option<TcpListener>,
    metrics: Metrics,
    tasks: TaskTracker,
    core: Core,
}

/// Checks the configuration against the listeners, binds those not given,
/// opens storage and creates the bootstrap user: everything that can fail
/// before the broker serves.
async fn open(config: Config, listeners: Listeners) -> Result<Opened, ServeError> {
    config.validate().map_err(ServeError::Config)?;
    let Listeners { grpc: listener, metrics: metrics_listener, kafka: kafka_listener } = listeners;
    let metrics_listener = match (metrics_listener, config.metrics_listen) {
        (Some(l), _) => Some(l),
        (None, Some(addr)) => {
            Some(TcpListener::bind(addr).await.map_err(listen_error(format_args!("for metrics on {addr}")))?)
        }
        (None, None) => None,
    };
    let kafka_listener = match (kafka_listener, config.kafka_listen) {
        (Some(l), _) => Some(l),
        (None, Some(addr)) => {
            Some(TcpListener::bind(addr).await.map_err(listen_error(format_args!("for Kafka on {addr}")))?)
        }
        (None, None) => None,
    };
    if let (Some(l), None) = (&kafka_listener, &config.kafka_advertised) {
        let bound = l.local_addr().map_err(listen_error("for Kafka"))?;
        config::check_kafka_bound(bound).map_err(ServeError::Config)?;
    }
    // The listeners as bound, whoever bound them.
    let bound = listener.local_addr().map_err(listen_error("for gRPC"))?;
    config.check_exposure("listen", bound).map_err(ServeError::Config)?;
    if let Some(l) = &kafka_listener {
        let bound = l.local_addr().map_err(listen_error("for Kafka"))?;
        config.check_exposure("kafka_listen", bound).map_err(ServeError::Config)?;
    }
    if let Some(l) = &metrics_listener {
        let bound = l.local_addr().map_err(listen_error("for metrics"))?;
        config.check_console_exposure(bound).map_err(ServeError::Config)?;
    }
    let metrics = Metrics::new();
    let storage_error =
        |source: Error| ServeError::Storage { dir: config.core.data_dir.display().to_string(), source };
    // Every task that holds the database open runs on `tasks`, so that
    // shutdown can wait for the last of them before the directory is reused.
    let tasks = TaskTracker::new();
    let core_config = &config.core;
    let core = Core::open(core_config, Some(Arc::new(metrics.clone())), &tasks).map_err(storage_error)?;
    if let Some(user) = &config.bootstrap_user {
        bootstrap(&core, user).await.map_err(storage_error)?;
    }
    Ok(Opened { config, listener, metrics_listener, kafka_listener, metrics, tasks, core })
}

/// Serves an opened broker until `shutdown` resolves (see [`run`]).
async fn serve(opened: Opened, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let Opened { config, listener, metrics_listener, kafka_listener, metrics, tasks, core } = opened;
    let storage_error =
        |source: Error| ServeError::Storage { dir: config.core.data_dir.display().to_string(), source };
    let core_config = &config.core;
    let addr = listener.local_addr().map_err(listen_error("for gRPC"))?;
    let tls = if config.tls.is_some() { "on" } else { "off" };
    if let Some(from) = config.certificate_principal() {
        tracing::info!(principal_from = %from, "client certificates authenticate as the user they name");
    }
    tracing::info!(%addr, auth = ?config.auth, data_dir = %config.core.data_dir.display(), tls, "brooklet serving");
    // Every listener, for Status and `/readyz`.
    let grpc_serving = http::Serving::new("grpc", addr);
    let mut listening = vec![grpc_serving.clone()];
    let kafka_serving = match &kafka_listener {
        Some(l) => Some(http::Serving::new("kafka", l.local_addr().map_err(listen_error("for Kafka"))?)),
        None => None,
    };
    listening.extend(kafka_serving.clone());
    let metrics_serving = match &metrics_listener {
        Some(l) => Some(http::Serving::new("metrics", l.local_addr().map_err(listen_error("for metrics"))?)),
        None => None,
    };
    listening.extend(metrics_serving.clone());

    let stop = CancellationToken::new();
    core.spawn_background(core_config, &stop, &tasks);
    // The metrics server outlives the gRPC drain, so that `/readyz` can
    // answer 503 while in-flight requests finish.
    let metrics_stop = CancellationToken::new();
    let authorizer = {
        let metrics = metrics.clone();
        Authorizer::new(core.acls().clone(), config.auth == Auth::Required, &config.superusers).counting(
            Arc::new(move |protocol, denied: &Denied| {
                metrics.authorization_denied(protocol, denied.operation.name(), denied.resource_type.name())
            }),
        )
    };
    if let (Some(l), Some(serving)) = (metrics_listener, metrics_serving) {
        let console = config.console.then(|| {
            let tls = config.tls.is_some();
            let listeners = listening
                .iter()
                .map(|l| brooklet_console::ListenerInfo {
                    name: l.name,
                    addr: l.addr,
                    tls: tls && l.name != "metrics",
                })
                .collect();
            let console = brooklet_console::Console::new(brooklet_console::ConsoleOptions {
                core: core.clone(),
                metrics: metrics.clone(),
                authorizer: authorizer.clone(),
                auth_required: config.auth == Auth::Required,
                listeners,
            });
            console.spawn_sampler(stop.clone(), &tasks);
            tracing::info!(url = %format_args!("http://{}/console/", serving.addr), "console serving");
            console
        });
        let http = http::Http {
            metrics: metrics.clone(),
            core: core.clone(),
            listeners: listening.clone(),
            console,
        };
        http::spawn_http(http, l, serving, metrics_stop.clone(), &tasks);
    }
    if authorizer.enforced() && config.superusers.is_empty() && core.acls().list().is_empty() {
        tracing::warn!(
            "--auth required with no ACLs and no --superusers: every request will be denied; name \
             --superusers, or add ACLs with `brooklet acl add --data-dir` while the broker is stopped"
        );
    }
    let options = GrpcOptions {
        max_request_bytes: config.core.limits.max_request_bytes,
        max_connections: config.core.limits.max_connections,
        max_requests_per_connection: config.core.limits.max_requests_per_connection,
        slow_request: config.slow_request,
        listeners: listening.iter().map(|l| (l.name, l.addr)).collect(),
        auth_required: config.auth == Auth::Required,
        certificate_principal: config.certificate_principal(),
        tls: config.tls.clone(),
        connections: config.connections,
        authorizer: authorizer.clone(),
    };
    let mut kafka_served = None;
    if let (Some(l), Some(serving)) = (kafka_listener, kafka_serving) {
        let bound = serving.addr;
        let (advertised_host, advertised_port) =
            config.kafka_advertised.clone().unwrap_or_else(|| (bound.ip().to_string(), bound.port()));
        let options = brooklet_kafka::KafkaOptions {
            advertised_host,
            advertised_port,
            auto_create_topics: config.kafka_auto_create_topics,
            default_partitions: config.kafka_default_partitions,
            max_request_bytes: config.core.limits.max_request_bytes,
            max_connections: config.core.limits.max_connections,
            auth_required: config.auth == Auth::Required,
            certificate_principal: config.certificate_principal(),
            connections: config.connections,
            authorizer: authorizer.clone(),
        };
        tracing::info!(addr = %bound, advertised = %format_args!("{}:{}", options.advertised_host, options.advertised_port), "kafka serving");
        let tls = config.tls.clone();
        let kafka = brooklet_kafka::serve(
            core.clone(),
            metrics.clone(),
            l,
            tls,
            options,
            stop.clone(),
            tasks.clone(),
        );
        serving.set(true);
        kafka_served = Some(tasks.spawn(async move {
            if let Err(e) = kafka.await {
                tracing::error!(error = %e, "kafka listener failed");
            }
            serving.set(false);
        }));
    }
    // The authorizer holds a group-commit handle, whose task the shutdown
    // waits for: only the adapters may keep it past here.
    drop(authorizer);
    let grpc =
        brooklet_grpc::serve(core.clone(), metrics.clone(), listener, options, stop.clone(), tasks.clone());
    let signal = {
        let (stop, metrics) = (stop.clone(), metrics.clone());
        async move {
            shutdown.await;
            tracing::info!("shutting down: draining requests");
            metrics.set_ready(false);
            stop.cancel();
        }
    };
    grpc_serving.set(true);
    metrics.set_ready(true);
    tokio::pin!(grpc);
    // The listener ends by itself only if it fails; otherwise it drains once
    // the signal has cancelled `stop`.
    let served = tokio::select! {
        served = &mut grpc => served,
        () = signal => grpc.await,
    };
    grpc_serving.set(false);
    stop.cancel();
    metrics.set_ready(false);
    metrics_stop.cancel();
    // Kafka's requests in flight are answered before storage is flushed.
    if let Some(kafka) = kafka_served {
        let _ = kafka.await;
    }
    served?;

    core.flush().map_err(storage_error)?;
    drop(core);
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
    kafka_addr: Option<SocketAddr>,
    tls: Option<Tls>,
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
        let kafka = match config.kafka_listen {
            Some(a) => {
                Some(TcpListener::bind(a).await.map_err(listen_error(format_args!("for Kafka on {a}")))?)
            }
            None => None,
        };
        let kafka_addr =
            kafka.as_ref().map(TcpListener::local_addr).transpose().map_err(listen_error("for Kafka"))?;
        let listeners = Listeners { grpc: listener, metrics, kafka };
        let tls = config.tls.clone();
        let stop = CancellationToken::new();
        let signal = stop.clone().cancelled_owned();
        // Opened here, so that a broker that cannot start says why at once.
        let opened = open(config, listeners).await?;
        let task = tokio::spawn(async move {
            let result = serve(opened, signal).await;
            // The directory outlives the broker that uses it.
            drop(dir);
            result
        });
        Ok(EmbeddedBroker { addr, metrics_addr, kafka_addr, tls, stop, task: Some(task) })
    }

    /// The gRPC endpoint, e.g. `http://127.0.0.1:41234`, or `https://…`
    /// when the config has TLS.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Reads the TLS certificate, key and client CA files again, as SIGHUP
    /// does for `brooklet serve`: connections accepted from now on use them,
    /// established ones keep theirs. On an error the files in use are kept.
    /// Without TLS in the config there is nothing to reload: `Ok`.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        self.tls.as_ref().map_or(Ok(()), Tls::reload)
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

    /// Where Kafka clients connect (`bootstrap_servers`), if the config
    /// asked for a Kafka listener (`kafka_listen`, e.g. `127.0.0.1:0`).
    pub fn kafka_addr(&self) -> Option<SocketAddr> {
        self.kafka_addr
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
