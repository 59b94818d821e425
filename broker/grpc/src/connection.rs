//! Accepted connections and what each may hold: owns the accept loop, the
//! connection limit (`--max-connections`) and each connection's places for
//! requests in flight (`--max-requests-per-connection`). Knows nothing of
//! gRPC methods; the request layer in `admission` takes the places. With
//! TLS, it runs each connection's handshake (`brooklet-tls`) and keeps the
//! client's verified identity with the connection. Each connection is
//! watched by the listener's guard (`brooklet_tls::guard`): a place per
//! client address, a deadline for the TLS handshake, HTTP/2 preface and
//! first request, and an idle timeout that a request in flight holds off.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use brooklet_core::LoginCache;
use brooklet_metrics::{ConnectionGuard, Metrics};
use brooklet_tls::guard::{
    AddressPlace, ConnSettings, Expired, FirstRequest, ListenerGuard, Reason, Watched,
};
use brooklet_tls::{HandshakeError, Listener, PeerIdentity, Tls, TlsStream};
use futures::StreamExt;

/// What a request knows of the connection it came on. Tonic puts it in every
/// request's extensions.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    /// The peer's address.
    pub(crate) remote: Option<SocketAddr>,
    /// This connection's places for requests in flight.
    requests: Arc<Places>,
    /// The connection's last successful login and its failures (see
    /// `auth`).
    pub(crate) logins: Arc<LoginCache>,
    /// The client's verified certificate, on a TLS connection that has one.
    identity: Option<Arc<PeerIdentity>>,
}

impl ConnInfo {
    fn new(remote: SocketAddr, identity: Option<Arc<PeerIdentity>>, max_requests: usize) -> ConnInfo {
        ConnInfo {
            remote: Some(remote),
            requests: Arc::new(Places {
                free: Arc::new(Semaphore::new(max_requests)),
                limit: max_requests,
                started: AtomicBool::new(false),
            }),
            logins: Arc::default(),
            identity,
        }
    }

    /// The client's verified certificate, if it presented one.
    pub(crate) fn identity(&self) -> Option<&Arc<PeerIdentity>> {
        self.identity.as_ref()
    }

    /// The connection's peer, for a request that came through the accept loop.
    pub(crate) fn remote_of<T>(request: &tonic::Request<T>) -> Option<SocketAddr> {
        request.extensions().get::<ConnInfo>().and_then(|c| c.remote)
    }

    /// A place for one more request on this connection, held until the
    /// request's response ends; `None` when all are taken.
    /// A request, even one refused, ends the connection's handshake.
    pub(crate) fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.requests.started.store(true, Ordering::Relaxed);
        self.requests.free.clone().try_acquire_owned().ok()
    }

    /// The number of requests this connection may have in flight.
    pub(crate) fn limit(&self) -> usize {
        self.requests.limit
    }
}

/// A connection's places for requests, as its guard sees them.
#[derive(Debug)]
struct Places {
    free: Arc<Semaphore>,
    limit: usize,
    /// A first request has arrived.
    started: AtomicBool,
}

impl brooklet_tls::guard::Requests for Places {
    fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    fn in_flight(&self) -> bool {
        self.free.available_permits() < self.limit
    }
}

/// Accepted connections. An accept error (such as running out of file
/// descriptors) is logged and retried shortly instead of ending the server.
/// A new connection from an address that holds `--max-connections-per-ip`
/// already, or past the connection limit, is closed at once rather than
/// served with less for everyone (counted, and logged at most every few
/// seconds).
///
/// With `tls`, each connection's handshake runs in a task of its own, so a
/// slow client holds up no other; a failed one is logged and closed. The
/// loop ends when `shutdown` is cancelled.
///
/// Responses are small writes; without TCP_NODELAY on accepted sockets,
/// Nagle's algorithm meets the peer's delayed ACK and a response can sit for
/// 40 ms. (`Server::tcp_nodelay` covers only listeners tonic binds itself.)
pub(crate) fn accept_loop(
    listener: TcpListener,
    metrics: Metrics,
    limits: ConnLimits,
    tls: Option<Tls>,
    shutdown: CancellationToken,
) -> impl futures::Stream<Item = io::Result<Conn>> {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let guard = {
        let metrics = metrics.clone();
        let count = move |reason: Reason| metrics.connection_closed("grpc", reason.label());
        ListenerGuard::new(Listener::Grpc, limits.settings, limits.max_connections, Box::new(count))
    };
    // Handshaken connections, when they are handshaken apart from the loop.
    let (handshaken, from_handshakes) = mpsc::channel::<Conn>(HANDSHAKEN_QUEUE);
    let accepted = futures::stream::unfold(listener, move |listener| {
        let (metrics, connections, tls) = (metrics.clone(), connections.clone(), tls.clone());
        let (handshaken, shutdown, guard) = (handshaken.clone(), shutdown.clone(), guard.clone());
        async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return None,
                    accepted = listener.accept() => accepted,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        let at = tokio::time::Instant::now();
                        let Some(place) = guard.admit(peer.ip()) else { continue };
                        let Ok(permit) = connections.clone().try_acquire_owned() else {
                            guard.closed(Reason::MaxConnections, peer.ip());
                            continue;
                        };
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                        }
                        let info = ConnInfo::new(peer, None, limits.max_requests_per_connection);
                        let first = FirstRequest::Signalled(info.requests.clone());
                        let conn = Conn {
                            stream: Stream::Plain(guard.watch(stream, peer.ip(), at, first)),
                            info,
                            _counted: metrics.connection(),
                            _permit: permit,
                            _place: place,
                        };
                        let Some(tls) = &tls else { return Some((Some(Ok(conn)), listener)) };
                        tokio::spawn(handshake(tls.clone(), guard.clone(), conn, handshaken.clone()));
                        return Some((None, listener));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    })
    .filter_map(std::future::ready);
    // Plain connections come from the loop itself; TLS ones from the tasks
    // that handshake them, while the loop is polled alongside.
    futures::stream::select(accepted, ReceiverStream::new(from_handshakes).map(Ok))
}

/// Handshaken connections waiting for the server to take them; each holds
/// its place under the connection limit, so this bounds nothing further.
const HANDSHAKEN_QUEUE: usize = 64;

/// How many connections, and requests per connection; what each
/// connection is allowed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnLimits {
    pub(crate) max_connections: usize,
    pub(crate) max_requests_per_connection: usize,
    pub(crate) settings: ConnSettings,
}

/// `conn`'s TLS handshake; the encrypted connection goes to `handshaken`.
/// Its stream's handshake deadline bounds it.
async fn handshake(tls: Tls, guard: Arc<ListenerGuard>, conn: Conn, handshaken: mpsc::Sender<Conn>) {
    let Conn { stream: Stream::Plain(stream), mut info, _counted, _permit, _place } = conn else { return };
    let peer = info.remote.map_or_else(String::new, |a| a.to_string());
    match tls.accept(Listener::Grpc, stream).await {
        Ok((stream, identity)) => {
            if let Some(identity) = &identity {
                tracing::debug!(%peer, %identity, "grpc: client certificate verified");
            }
            info.identity = identity.map(Arc::new);
            let conn = Conn { stream: Stream::Tls(Box::new(stream)), info, _counted, _permit, _place };
            // A closed queue means the server stopped: the connection is dropped.
            let _ = handshaken.send(conn).await;
        }
        // Counted and logged by the guard already.
        Err(e) if Expired::within(&e) => {}
        Err(HandshakeError::TimedOut) => {
            if let Some(remote) = info.remote {
                guard.closed(Reason::HandshakeTimeout, remote.ip());
            }
        }
        Err(e) => tracing::warn!(%peer, error = %e, "grpc: closing connection"),
    }
}

/// An accepted connection, counted in `brooklet_connections_active` until
/// tonic drops it.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: Stream,
    info: ConnInfo,
    _counted: ConnectionGuard,
    /// Held while the connection lives: its place under --max-connections.
    _permit: OwnedSemaphorePermit,
    /// And under --max-connections-per-ip.
    _place: AddressPlace,
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

/// A connection's socket, encrypted or not, under its guard's deadlines.
#[derive(Debug)]
enum Stream {
    Plain(Watched<TcpStream>),
    Tls(Box<TlsStream<Watched<TcpStream>>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use brooklet_tls::{ClientAuth, TlsConfig};
    use futures::StreamExt;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    use super::*;

    /// A CA's certificate, and a certificate for `cn` it signs, as PEM.
    fn ca_and_leaf(ca_name: &str, cn: &str, sans: &[&str]) -> (String, String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, ca_name);
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(params, ca_key);
        let mut leaf =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        (ca_pem, leaf.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
    }

    #[tokio::test]
    async fn a_verified_client_certificate_comes_with_its_connection() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (server_ca, server_cert, server_key) = ca_and_leaf("servers", "broker", &["localhost"]);
        let (client_ca, client_cert, client_key) = ca_and_leaf("clients", "alice", &["alice.example"]);
        let tls = Tls::new(TlsConfig {
            cert: write("server.pem", &server_cert),
            key: write("server.key", &server_key),
            client_ca: Some(write("clients.pem", &client_ca)),
            client_auth: ClientAuth::Required,
        })
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnLimits {
            max_connections: 4,
            max_requests_per_connection: 4,
            settings: ConnSettings::default(),
        };
        let stop = CancellationToken::new();
        let mut incoming = Box::pin(accept_loop(listener, Metrics::new(), limits, Some(tls), stop.clone()));

        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(server_ca.as_bytes()).unwrap()).unwrap();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(client_cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(client_key.as_bytes()).unwrap(),
            )
            .unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let client = tokio::spawn(async move {
            let socket = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            connector.connect(name, socket).await.map(|_| ())
        });

        let conn = incoming.next().await.expect("a connection").expect("accepted");
        client.await.unwrap().expect("the client's handshake succeeds");
        let info = conn.connect_info();
        let identity = info.identity().expect("the verified certificate's names");
        assert_eq!(identity.common_name.as_deref(), Some("alice"));
        assert_eq!(identity.dns_names, ["alice.example"]);
        stop.cancel();
    }

    #[tokio::test]
    async fn a_client_silent_in_its_tls_handshake_is_closed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert, key) = ca_and_leaf("servers", "broker", &["localhost"]);
        let (cert_path, key_path) = (dir.path().join("server.pem"), dir.path().join("server.key"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        let tls = Tls::new(TlsConfig {
            cert: cert_path,
            key: key_path,
            client_ca: None,
            client_auth: ClientAuth::None,
        })
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let settings =
            ConnSettings { handshake_timeout: Duration::from_millis(200), ..ConnSettings::default() };
        let limits = ConnLimits { max_connections: 4, max_requests_per_connection: 4, settings };
        let stop = CancellationToken::new();
        let mut incoming = Box::pin(accept_loop(listener, Metrics::new(), limits, Some(tls), stop.clone()));
        let served = tokio::spawn(async move { incoming.next().await.is_some() });

        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
        );
        let end = read.await.expect("the broker closes the connection");
        assert!(matches!(end, Ok(0) | Err(_)), "nothing but the end: {end:?}");
        assert!(!served.is_finished(), "no connection was handed to the server");
        served.abort();
        stop.cancel();
    }
}
