//! The tonic server: health, reflection and the four `brooklet.v1` services
//! on a listener it is given, behind the accept loop and admission, until
//! shutdown; then it drains in-flight requests.

use std::net::SocketAddr;
use std::time::Duration;

use brooklet_core::Core;
use brooklet_metrics::Metrics;
use brooklet_proto::v1 as pb;
use brooklet_tls::Tls;
use brooklet_tls::guard::ConnSettings;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;

use crate::Services;
use crate::admission::RequestLayer;
use crate::auth::AuthLayer;
use crate::connection::{ConnLimits, accept_loop};

/// How the gRPC listener serves.
#[derive(Clone, Debug)]
pub struct GrpcOptions {
    /// Largest request message, in bytes.
    pub max_request_bytes: usize,
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Requests one connection may have in flight; more are refused.
    pub max_requests_per_connection: usize,
    /// Requests slower than this are logged as warnings (fetches excepted).
    pub slow_request: Duration,
    /// Every listener of the broker, by name (`grpc`, `kafka`, `metrics`),
    /// as Status reports them.
    pub listeners: Vec<(&'static str, SocketAddr)>,
    /// Every request authenticates as a user (`--auth required`): see
    /// `auth`.
    pub auth_required: bool,
    /// With `auth_required`: a verified client certificate authenticates
    /// its connection as the user it names this way (`None`: it does not).
    pub certificate_principal: Option<brooklet_tls::PrincipalFrom>,
    /// TLS for every connection; `None` serves plaintext.
    pub tls: Option<Tls>,
    /// Connections per client address, the handshake deadline and the idle
    /// timeout.
    pub connections: ConnSettings,
    /// What each principal may do.
    pub authorizer: brooklet_core::Authorizer,
}

/// Why the gRPC server could not start, or failed.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// The reflection service could not read the API's descriptors.
    #[error("cannot build the reflection service")]
    Reflection(#[source] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("the gRPC server failed")]
    Transport(#[source] tonic::transport::Error),
}

/// Serves the gRPC API over `core` on `listener` until `shutdown` is
/// cancelled: then it stops accepting, ends waiting fetches and
/// subscriptions, and returns once in-flight requests have finished.
/// Subscription tasks run on `tasks`.
pub async fn serve(
    core: Core,
    metrics: Metrics,
    listener: TcpListener,
    options: GrpcOptions,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) -> Result<(), GrpcError> {
    let auth = AuthLayer {
        users: core.users().clone(),
        metrics: metrics.clone(),
        required: options.auth_required,
        certificate: options.certificate_principal,
    };
    let services = Services::new(
        core,
        shutdown.clone(),
        tasks,
        metrics.clone(),
        options.listeners.clone(),
        options.authorizer,
    );
    let max_msg = options.max_request_bytes;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
    // Both reflection versions, so grpcurl and `buf curl` work either way.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(brooklet_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().map_err(GrpcError::Reflection)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(GrpcError::Reflection)?;

    let limits = ConnLimits {
        max_connections: options.max_connections,
        max_requests_per_connection: options.max_requests_per_connection,
        settings: options.connections,
    };
    let incoming = Box::pin(accept_loop(listener, metrics.clone(), limits, options.tls, shutdown.clone()));
    let signal = async move {
        shutdown.cancelled().await;
        health_reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
    };
    Server::builder()
        // Admits each request to a place of its connection's (past the limit
        // it is refused at once with RESOURCE_EXHAUSTED, so a flood from one
        // connection costs no memory), then counts and times it.
        .layer(RequestLayer { metrics, slow_request: options.slow_request })
        // Then authenticates it (health and reflection too: with --auth
        // required, nothing is served to a client without credentials).
        .layer(auth)
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
            crate::wire::consumer::consumer_service_server::ConsumerServiceServer::new(services.clone())
                .max_decoding_message_size(max_msg),
        )
        .add_service(
            pb::group_service_server::GroupServiceServer::new(services).max_decoding_message_size(max_msg),
        )
        .serve_with_incoming_shutdown(incoming, signal)
        .await
        .map_err(GrpcError::Transport)
}
