//! What a listener allows each connection: a place per client address
//! (`--max-connections-per-ip`), a deadline for its handshake and first
//! request (`--handshake-timeout-ms`), and an idle time after which it is
//! closed (`--connections-max-idle-ms`). Connections the broker closes for
//! these reasons, or for the connection limit, are counted one by one and
//! logged at most once per reason every [`WARNING_INTERVAL`], with how many
//! were closed since.
//!
//! It knows no protocol: a listener says when a connection's first request
//! has arrived and whether one is in flight ([`FirstRequest`], [`Requests`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::Listener;

/// At most one warning per reason and listener in this time.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// What each connection of a listener is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnSettings {
    /// Time from accept to a complete first request, the TLS handshake
    /// included.
    pub handshake_timeout: Duration,
    /// Time without bytes either way, and no request in flight, after which
    /// a connection is closed.
    pub idle_timeout: Duration,
    /// Connections one client address may hold on one listener.
    pub max_per_address: usize,
}

impl Default for ConnSettings {
    fn default() -> Self {
        ConnSettings {
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            max_per_address: 256,
        }
    }
}

/// Why the broker closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The listener had `--max-connections` open.
    MaxConnections,
    /// The client's address had `--max-connections-per-ip` open.
    PerAddress,
    /// No complete first request within `--handshake-timeout-ms`.
    HandshakeTimeout,
    /// Idle for `--connections-max-idle-ms`.
    IdleTimeout,
}

impl Reason {
    /// The metrics' `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::MaxConnections => "max_connections",
            Reason::PerAddress => "per_address",
            Reason::HandshakeTimeout => "handshake_timeout",
            Reason::IdleTimeout => "idle_timeout",
        }
    }
}

/// The error a [`Watched`] stream's reads return once it has expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", match .0 {
    Reason::HandshakeTimeout => "no complete first request within the handshake timeout",
    Reason::IdleTimeout => "idle for longer than the idle timeout",
    Reason::MaxConnections | Reason::PerAddress => "closed at accept",
})]
pub struct Expired(pub Reason);

impl Expired {
    /// Whether `error`, or any error it came from, is an [`Expired`].
    pub fn within(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(e) = next {
            if e.is::<Expired>() {
                return true;
            }
            if let Some(io) = e.downcast_ref::<io::Error>()
                && io.get_ref().is_some_and(|inner| inner.is::<Expired>())
            {
                return true;
            }
            next = e.source();
        }
        false
    }
}

/// Counts each closed connection (in the metrics) by its reason.
pub type Counter = Box<dyn Fn(Reason) + Send + Sync>;

/// One listener's connection rules, shared by its connections.
pub struct ListenerGuard {
    listener: Listener,
    settings: ConnSettings,
    max_connections: usize,
    count: Counter,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    warnings: Mutex<HashMap<Reason, Warned>>,
}

impl fmt::Debug for ListenerGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerGuard")
            .field("listener", &self.listener)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The warnings of one reason.
#[derive(Debug)]
struct Warned {
    /// When the last warning was logged.
    logged: Instant,
    /// Connections closed since, not yet logged.
    closed: u64,
}

/// A warning due: `closed` connections, the last from `peer`, in the time
/// since `since` (or only this one).
#[derive(Debug, PartialEq, Eq)]
struct Warning {
    closed: u64,
    since: Option<Duration>,
}

impl ListenerGuard {
    /// The rules of `listener`'s connections; `max_connections` is only
    /// named in warnings, `count` counts every closed connection.
    pub fn new(
        listener: Listener,
        settings: ConnSettings,
        max_connections: usize,
        count: Counter,
    ) -> Arc<ListenerGuard> {
        Arc::new(ListenerGuard {
            listener,
            settings,
            max_connections,
            count,
            per_address: Mutex::default(),
            warnings: Mutex::default(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> ConnSettings {
        self.settings
    }

    /// A place for one more connection from `peer`, held until the
    /// connection closes; `None` (counted and logged) when the address has
    /// all its places.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<AddressPlace> {
        {
            let mut counts = self.per_address.lock();
            let held = counts.entry(peer).or_insert(0);
            if *held < self.settings.max_per_address {
                *held += 1;
                return Some(AddressPlace { guard: self.clone(), peer });
            }
        }
        self.closed(Reason::PerAddress, peer);
        None
    }

    /// Counts a connection from `peer` closed for `reason`, and logs it
    /// unless this reason was logged in the last [`WARNING_INTERVAL`] (then
    /// the next warning says how many were closed since). Idle connections
    /// are counted but logged only at debug level: closing them is routine.
    pub fn closed(&self, reason: Reason, peer: IpAddr) {
        (self.count)(reason);
        let listener = self.name();
        if reason == Reason::IdleTimeout {
            tracing::debug!(%peer, listener, "closing an idle connection");
            return;
        }
        let Some(warning) = self.note(reason, Instant::now()) else { return };
        let why = self.why(reason);
        let closed = warning.closed;
        let s = if closed == 1 { "" } else { "s" };
        match warning.since {
            None => {
                tracing::warn!(%peer, listener, closed, "{listener}: closed a connection from {peer}: {why}")
            }
            Some(since) => tracing::warn!(
                %peer,
                listener,
                closed,
                "{listener}: closed {closed} connection{s} in the last {}s, the last from {peer}: {why}",
                since.as_secs()
            ),
        }
    }

    /// Records a closed connection; returns the warning due, if one is.
    fn note(&self, reason: Reason, now: Instant) -> Option<Warning> {
        let mut warnings = self.warnings.lock();
        match warnings.get_mut(&reason) {
            None => {
                warnings.insert(reason, Warned { logged: now, closed: 0 });
                Some(Warning { closed: 1, since: None })
            }
            Some(w) if now.duration_since(w.logged) >= WARNING_INTERVAL => {
                let warning = Warning { closed: w.closed + 1, since: Some(now.duration_since(w.logged)) };
                *w = Warned { logged: now, closed: 0 };
                Some(warning)
            }
            Some(w) => {
                w.closed += 1;
                None
            }
        }
    }

    fn name(&self) -> &'static str {
        match self.listener {
            Listener::Grpc => "grpc",
            Listener::Kafka => "kafka",
        }
    }

    /// Why a connection was closed, with the setting to change.
    fn why(&self, reason: Reason) -> String {
        let s = &self.settings;
        match reason {
            Reason::MaxConnections => {
                format!("connection limit reached (--max-connections {})", self.max_connections)
            }
            Reason::PerAddress => {
                format!("per-address limit reached (--max-connections-per-ip {})", s.max_per_address)
            }
            Reason::HandshakeTimeout => format!(
                "no complete first request (TLS handshake included) within --handshake-timeout-ms {}",
                s.handshake_timeout.as_millis()
            ),
            Reason::IdleTimeout => {
                format!("idle for --connections-max-idle-ms {}", s.idle_timeout.as_millis())
            }
        }
    }

    /// `stream`, accepted from `peer` at `accepted`, closed by its reads
    /// failing with [`Expired`] when its first request is late or it idles.
    pub fn watch<S>(
        self: &Arc<Self>,
        stream: S,
        peer: IpAddr,
        accepted: Instant,
        first: FirstRequest,
    ) -> Watched<S> {
        let deadline = accepted + self.settings.handshake_timeout;
        Watched {
            inner: stream,
            guard: self.clone(),
            peer,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            handshake_deadline: deadline,
            last: accepted,
            phase: Phase::Handshake(first),
            busy: false,
            expired: None,
        }
    }

    /// The instant by which a connection accepted at `accepted` must have
    /// finished its handshake and first request.
    pub fn handshake_deadline(&self, accepted: Instant) -> Instant {
        accepted + self.settings.handshake_timeout
    }
}

/// A connection's place under `--max-connections-per-ip`.
#[derive(Debug)]
pub struct AddressPlace {
    guard: Arc<ListenerGuard>,
    peer: IpAddr,
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        let mut counts = self.guard.per_address.lock();
        if let Some(held) = counts.get_mut(&self.peer) {
            *held -= 1;
            if *held == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

/// What a protocol tells of a connection's requests.
pub trait Requests: Send + Sync {
    /// A first request has arrived.
    fn started(&self) -> bool;
    /// A request is being served (a connection is not idle then).
    fn in_flight(&self) -> bool;
}

/// How a [`Watched`] stream knows its first request has arrived.
pub enum FirstRequest {
    /// Once a whole frame has been read: a 4-byte big-endian size, then that
    /// many bytes. The protocol reads no request while serving one.
    SizePrefixedFrame,
    /// When the protocol says so.
    Signalled(Arc<dyn Requests>),
}

impl fmt::Debug for FirstRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirstRequest::SizePrefixedFrame => f.write_str("SizePrefixedFrame"),
            FirstRequest::Signalled(_) => f.write_str("Signalled"),
        }
    }
}

#[derive(Debug)]
enum Phase {
    /// Waiting for the first request; for a size-prefixed frame, with the
    /// bytes of it read so far.
    Handshake(FirstRequest),
    Frame {
        header: [u8; 4],
        got: usize,
    },
    /// Served; `requests` tells of requests in flight.
    Open(Option<Arc<dyn Requests>>),
}

impl fmt::Debug for dyn Requests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Requests")
    }
}

/// A connection's stream under its handshake deadline and idle timeout:
/// once either passes, reads fail with [`Expired`] (counted and logged by
/// the listener's guard, once), and the server closes the connection.
/// Deadlines are checked while a read waits, so a protocol that reads no
/// request while serving one is never idle meanwhile.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    guard: Arc<ListenerGuard>,
    peer: IpAddr,
    timer: Pin<Box<Sleep>>,
    handshake_deadline: Instant,
    /// The last bytes read or written once the first request arrived.
    last: Instant,
    phase: Phase,
    /// A request was in flight when the deadline was last checked: the
    /// connection is idle only from the first check that finds none.
    busy: bool,
    expired: Option<Reason>,
}

impl<S> Watched<S> {
    /// The stream within.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Notes `bytes` read.
    fn note_read(&mut self, bytes: &[u8]) {
        let now = Instant::now();
        self.last = now;
        let mut bytes = bytes;
        loop {
            match &mut self.phase {
                Phase::Handshake(FirstRequest::SizePrefixedFrame) => {
                    self.phase = Phase::Frame { header: [0; 4], got: 0 };
                }
                Phase::Frame { header, got } => {
                    if *got < 4 {
                        let n = (4 - *got).min(bytes.len());
                        header[*got..*got + n].copy_from_slice(&bytes[..n]);
                        *got += n;
                        bytes = &bytes[n..];
                    }
                    if *got < 4 {
                        return;
                    }
                    // A negative size is refused by the protocol itself.
                    let size = usize::try_from(i32::from_be_bytes(*header)).unwrap_or(0);
                    let n = (4 + size - *got).min(bytes.len());
                    *got += n;
                    if *got == 4 + size {
                        self.phase = Phase::Open(None);
                    }
                    return;
                }
                Phase::Handshake(FirstRequest::Signalled(_)) | Phase::Open(_) => return,
            }
        }
    }

    /// `Ready` with the reason once the connection's time is up.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<Reason> {
        loop {
            if let Phase::Handshake(FirstRequest::Signalled(requests)) = &self.phase
                && requests.started()
            {
                self.phase = Phase::Open(Some(requests.clone()));
                self.last = Instant::now();
            }
            let deadline = match &self.phase {
                Phase::Handshake(_) | Phase::Frame { .. } => self.handshake_deadline,
                Phase::Open(_) => self.last + self.guard.settings.idle_timeout,
            };
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }

            match &self.phase {
                Phase::Handshake(_) | Phase::Frame { .. } => return Poll::Ready(Reason::HandshakeTimeout),
                Phase::Open(Some(requests)) if requests.in_flight() => {
                    self.last = Instant::now();
                    self.busy = true;
                }
                // The request seen last time has ended since, perhaps just
                // now, its response not yet written: idle from now on.
                Phase::Open(_) if self.busy => {
                    self.last = Instant::now();
                    self.busy = false;
                }
                Phase::Open(_) if Instant::now() >= deadline => return Poll::Ready(Reason::IdleTimeout),
                // Bytes moved since the timer was set: it is set again.
                Phase::Open(_) => {}
            }
        }
    }

    fn wrote(&mut self, n: usize) {
        if n > 0 && matches!(self.phase, Phase::Open(_)) {
            self.last = Instant::now();
        }
    }
}

fn expired(reason: Reason) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, Expired(reason))
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(reason) = this.expired {
            return Poll::Ready(Err(expired(reason)));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = &buf.filled()[before..];
                if !filled.is_empty() {
                    this.note_read(filled);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_deadline(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(reason) => {
                    this.expired = Some(reason);
                    this.guard.closed(reason, this.peer);
                    Poll::Ready(Err(expired(reason)))
                }
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.wrote(n);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written {
            self.wrote(n);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn guard(per_address: usize) -> (Arc<ListenerGuard>, Arc<AtomicU64>) {
        let counted = Arc::new(AtomicU64::new(0));
        let settings = ConnSettings {
            handshake_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(60),
            max_per_address: per_address,
        };
        let count = counted.clone();
        let guard = ListenerGuard::new(
            Listener::Kafka,
            settings,
            8,
            Box::new(move |_| {
                count.fetch_add(1, Ordering::Relaxed);
            }),
        );
        (guard, counted)
    }

    /// Whether `read` on `stream` ends with the connection expired for
    /// `reason`.
    async fn expires<S: AsyncRead + Unpin>(stream: &mut Watched<S>, reason: Reason) -> bool {
        let mut buf = [0u8; 16];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return false,
                Ok(_) => continue,
                Err(e) => {
                    return e.get_ref().and_then(|e| e.downcast_ref::<Expired>()) == Some(&Expired(reason));
                }
            }
        }
    }

    #[test]
    fn places_per_address_are_limited_and_given_back() {
        let (guard, counted) = guard(2);
        let other = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
        let (a, b) = (guard.admit(PEER).unwrap(), guard.admit(PEER).unwrap());
        assert!(guard.admit(PEER).is_none(), "a third from one address is refused");
        assert_eq!(counted.load(Ordering::Relaxed), 1, "the refusal is counted");
        let c = guard.admit(other).expect("another address has its own places");
        drop(a);
        let _d = guard.admit(PEER).expect("a closed connection's place is free again");
        drop((b, c));
        assert_eq!(guard.per_address.lock().len(), 1, "an address with no connection is forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn warnings_are_one_per_reason_per_interval_with_a_count() {
        let (guard, _) = guard(1);
        let start = Instant::now();
        assert_eq!(guard.note(Reason::PerAddress, start), Some(Warning { closed: 1, since: None }));
        for i in 1..2000 {
            assert_eq!(guard.note(Reason::PerAddress, start + Duration::from_millis(i)), None);
        }
        // Another reason has its own interval.
        assert_eq!(guard.note(Reason::HandshakeTimeout, start), Some(Warning { closed: 1, since: None }));
        let later = start + WARNING_INTERVAL;
        assert_eq!(
            guard.note(Reason::PerAddress, later),
            Some(Warning { closed: 2000, since: Some(WARNING_INTERVAL) })
        );
        assert_eq!(guard.note(Reason::PerAddress, later + Duration::from_secs(1)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_at_the_handshake_deadline() {
        let (guard, counted) = guard(1);
        let (_client, server) = tokio::io::duplex(64);
        let accepted = Instant::now();
        let mut watched = guard.watch(server, PEER, accepted, FirstRequest::SizePrefixedFrame);
        assert!(expires(&mut watched, Reason::HandshakeTimeout).await);
        assert!(Instant::now() >= accepted + Duration::from_millis(500));
        assert_eq!(counted.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn half_a_first_frame_is_closed_at_the_handshake_deadline() {
        let (guard, _) = guard(1);
        let (mut client, server) = tokio::io::duplex(64);
        let mut watched = guard.watch(server, PEER, Instant::now(), FirstRequest::SizePrefixedFrame);
        client.write_all(&[0, 0, 0, 8, 1, 2, 3]).await.unwrap();
        assert!(expires(&mut watched, Reason::HandshakeTimeout).await);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_whole_first_frame_only_idleness_closes() {
        let (guard, counted) = guard(1);
        let (mut client, server) = tokio::io::duplex(64);
        let mut watched = guard.watch(server, PEER, Instant::now(), FirstRequest::SizePrefixedFrame);
        // The frame arrives in pieces, the size split too.
        client.write_all(&[0, 0]).await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(watched.read(&mut buf).await.unwrap(), 2);
        client.write_all(&[0, 3, 7, 8, 9]).await.unwrap();
        assert_eq!(watched.read(&mut buf).await.unwrap(), 5);
        let served = Instant::now();
        assert!(expires(&mut watched, Reason::IdleTimeout).await);
        assert!(Instant::now() >= served + Duration::from_secs(60), "closed at the idle timeout only");
        assert_eq!(counted.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_written_keep_a_connection_from_idling() {
        let (guard, _) = guard(1);
        let (mut client, server) = tokio::io::duplex(64);
        let mut watched = guard.watch(server, PEER, Instant::now(), FirstRequest::SizePrefixedFrame);
        client.write_all(&[0, 0, 0, 0]).await.unwrap();
        let mut buf = [0u8; 4];
        watched.read_exact(&mut buf).await.unwrap();
        // A response written 50 s later, say after a long wait.
        tokio::time::advance(Duration::from_secs(50)).await;
        watched.write_all(b"ok").await.unwrap();
        let written = Instant::now();
        assert!(expires(&mut watched, Reason::IdleTimeout).await);
        assert!(Instant::now() >= written + Duration::from_secs(60));
    }

    /// Requests as a protocol would tell of them.
    #[derive(Default)]
    struct Told {
        started: AtomicBool,
        in_flight: AtomicBool,
    }

    impl Requests for Told {
        fn started(&self) -> bool {
            self.started.load(Ordering::Relaxed)
        }
        fn in_flight(&self) -> bool {
            self.in_flight.load(Ordering::Relaxed)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_without_a_first_request_do_not_pass_the_handshake() {
        let (guard, _) = guard(1);
        let (mut client, server) = tokio::io::duplex(64);
        let told = Arc::new(Told::default());
        let mut watched = guard.watch(server, PEER, Instant::now(), FirstRequest::Signalled(told.clone()));
        // Half an HTTP/2 preface.
        client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        assert!(expires(&mut watched, Reason::HandshakeTimeout).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_not_idle() {
        let (guard, _) = guard(1);
        let (_client, server) = tokio::io::duplex(64);
        let told = Arc::new(Told::default());
        let mut watched = guard.watch(server, PEER, Instant::now(), FirstRequest::Signalled(told.clone()));
        told.started.store(true, Ordering::Relaxed);
        told.in_flight.store(true, Ordering::Relaxed);
        let start = Instant::now();
        let ended = {
            let told = told.clone();
            tokio::spawn(async move {
                // A subscription that ends after 10 idle minutes.
                tokio::time::sleep(Duration::from_secs(600)).await;
                told.in_flight.store(false, Ordering::Relaxed);
            })
        };
        assert!(expires(&mut watched, Reason::IdleTimeout).await);
        ended.await.unwrap();
        assert!(
            Instant::now() >= start + Duration::from_secs(600 + 60),
            "not closed while a request was in flight, nor before it has idled since"
        );
    }

    #[test]
    fn an_expired_stream_is_recognised_through_the_errors_it_caused() {
        let io = expired(Reason::IdleTimeout);
        assert!(Expired::within(&io));
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped")]
        struct Wrapper(#[source] io::Error);
        assert!(Expired::within(&Wrapper(expired(Reason::HandshakeTimeout))));
        assert!(!Expired::within(&io::Error::from(io::ErrorKind::TimedOut)));
    }
}
