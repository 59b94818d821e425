//! Serving: opens storage, wires the gRPC services, health and reflection, and
//! runs them on a listener it is given until shutdown. Also the embedded
//! broker that tests start in-process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use brooklet_proto::v1 as pb;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;

use crate::config::Config;
use crate::group::Groups;
use crate::grpc::Services;
use crate::log::Log;
use crate::storage::{Storage, StorageConfig};

/// Serves a broker on `listener` until `shutdown` resolves; then stops
/// accepting, ends waiting reads and streams, lets in-flight requests finish,
/// and flushes storage.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    let storage = Storage::open(&StorageConfig {
        path: config.data_dir.clone(),
        cache_capacity: config.cache_capacity_bytes,
        flush_every_ms: Some(500),
        flush_max_delay: config.flush_max_delay,
    })?;
    // Every task that holds the database open runs on `tasks`, so that
    // shutdown can wait for the last of them before the directory is reused.
    let tasks = TaskTracker::new();
    let log = Arc::new(Log::open(storage, config.limits.clone(), config.durability, &tasks)?);
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "brooklet serving");

    let stop = CancellationToken::new();
    log.spawn_retention(config.retention_check_interval, stop.clone(), &tasks);
    let groups = Groups::new(log.clone(), config.groups.clone());
    // Sessions are checked often enough that a member is removed within a
    // quarter of the shortest session timeout after it ends.
    let expiry_every = (config.groups.min_session_timeout / 4).min(Duration::from_millis(250));
    groups.spawn_expiry(expiry_every, stop.clone(), &tasks);
    let services = Services::new(log.clone(), groups, stop.clone(), tasks.clone());
    let max_msg = config.limits.max_request_bytes;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(brooklet_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(brooklet_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let incoming = Box::pin(accept_loop(listener));
    let signal = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: draining requests");
            health_reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
            stop.cancel();
        }
    };
    Server::builder()
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
        .await?;

    log.storage().sync()?;
    drop(log);
    tasks.close();
    tasks.wait().await;
    tracing::info!("brooklet stopped; storage flushed and closed");
    Ok(())
}

/// Accepted connections. An accept error (such as running out of file
/// descriptors) is logged and retried shortly instead of ending the server.
///
/// Responses are small writes; without TCP_NODELAY on accepted sockets,
/// Nagle's algorithm meets the peer's delayed ACK and a response can sit for
/// 40 ms. (`Server::tcp_nodelay` covers only listeners tonic binds itself.)
fn accept_loop(listener: TcpListener) -> impl futures::Stream<Item = std::io::Result<TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        loop {
            match listener.accept().await {
                Ok((conn, peer)) => {
                    if let Err(e) = conn.set_nodelay(true) {
                        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                    }
                    return Some((Ok(conn), listener));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
}

/// A real broker running inside this process on 127.0.0.1, port 0, with a
/// temporary data directory: for integration tests.
///
/// Many can run at once. [`shutdown`](Self::shutdown) stops it and removes
/// its directory; dropping it does the same in the background.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl EmbeddedBroker {
    /// Starts a broker with default limits in a new temporary directory.
    pub async fn start() -> anyhow::Result<EmbeddedBroker> {
        let dir = tempfile::Builder::new().prefix("brooklet-").tempdir()?;
        let config = Config::new(dir.path());
        Self::start_in(config, Some(dir)).await
    }

    /// Starts a broker with `config`; its data directory is kept afterwards.
    pub async fn start_with(config: Config) -> anyhow::Result<EmbeddedBroker> {
        Self::start_in(config, None).await
    }

    async fn start_in(config: Config, dir: Option<tempfile::TempDir>) -> anyhow::Result<EmbeddedBroker> {
        config.validate()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let signal = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            let result = run(config, listener, signal).await;
            // The directory outlives the broker that uses it.
            drop(dir);
            result
        });
        Ok(EmbeddedBroker { addr, stop, task: Some(task) })
    }

    /// The gRPC endpoint, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the broker listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the broker gracefully and waits until storage is flushed and
    /// closed.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
