//! Accepted connections and what each may hold: owns the accept loop, the
//! connection limit (`--max-connections`) and each connection's places for
//! requests in flight (`--max-requests-per-connection`). Knows nothing of
//! gRPC methods; the request layer in `admission` takes the places.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;

use brooklet_core::LoginCache;
use brooklet_metrics::{ConnectionGuard, Metrics};

/// What a request knows of the connection it came on. Tonic puts it in every
/// request's extensions.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    /// The peer's address.
    pub(crate) remote: Option<SocketAddr>,
    /// This connection's places for requests in flight.
    requests: Arc<Semaphore>,
    limit: usize,
    /// The connection's last successful login and its failures (see
    /// `auth`).
    pub(crate) logins: Arc<LoginCache>,
}

impl ConnInfo {
    /// The connection's peer, for a request that came through the accept loop.
    pub(crate) fn remote_of<T>(request: &tonic::Request<T>) -> Option<SocketAddr> {
        request.extensions().get::<ConnInfo>().and_then(|c| c.remote)
    }

    /// A place for one more request on this connection, held until the
    /// request's response ends; `None` when all are taken.
    pub(crate) fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.requests.clone().try_acquire_owned().ok()
    }

    /// The number of requests this connection may have in flight.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

/// Accepted connections. An accept error (such as running out of file
/// descriptors) is logged and retried shortly instead of ending the server.
/// At the connection limit, a new connection is closed at once rather than
/// served with less for everyone.
///
/// Responses are small writes; without TCP_NODELAY on accepted sockets,
/// Nagle's algorithm meets the peer's delayed ACK and a response can sit for
/// 40 ms. (`Server::tcp_nodelay` covers only listeners tonic binds itself.)
pub(crate) fn accept_loop(
    listener: TcpListener,
    metrics: Metrics,
    max_connections: usize,
    max_requests_per_connection: usize,
) -> impl futures::Stream<Item = io::Result<Conn>> {
    let connections = Arc::new(Semaphore::new(max_connections));
    futures::stream::unfold(listener, move |listener| {
        let (metrics, connections) = (metrics.clone(), connections.clone());
        async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let Ok(permit) = connections.clone().try_acquire_owned() else {
                            tracing::warn!(%peer, "connection limit reached (--max-connections): closing the new connection");
                            drop(stream);
                            continue;
                        };
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                        }
                        let info = ConnInfo {
                            remote: Some(peer),
                            requests: Arc::new(Semaphore::new(max_requests_per_connection)),
                            limit: max_requests_per_connection,
                            logins: Arc::default(),
                        };
                        let conn = Conn { stream, info, _counted: metrics.connection(), _permit: permit };
                        return Some((Ok(conn), listener));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    })
}

/// An accepted connection, counted in `brooklet_connections_active` until
/// tonic drops it.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    info: ConnInfo,
    _counted: ConnectionGuard,
    /// Held while the connection lives: its place under --max-connections.
    _permit: OwnedSemaphorePermit,
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
