//! What a client may hold of the server: connection caps, the HTTP/1 header-read and keep-alive
//! timeouts, header bounds, and the HTTP/2 limits of both ports.
//!
//! Past a listener's connection cap the server stops accepting: new connections wait in the
//! kernel's listen backlog (and, once that is full, the client's SYN retries) until a connection
//! closes. The timeouts are what keep that wait short: a connection that has not sent a whole
//! request head within the header timeout, or sat idle between requests past the keep-alive
//! timeout, is closed and its slot freed, so slow or idle clients cannot hold the cap forever.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tracing::{debug, warn};

/// Default time a client has to send a whole request head (10 s).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an HTTP connection may sit idle between requests (60 s).
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time to receive a request's whole body once its head is in.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound on an HTTP/1 request head, request line and headers together (64 KiB).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 << 10;
/// The smallest header bound hyper accepts (its read buffer's floor).
pub const MIN_MAX_HEADER_BYTES: usize = 8 << 10;
/// Default number of headers an HTTP/1 request may carry.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default concurrent streams per HTTP/2 connection (both ports).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;
/// Default bound on an HTTP/2 request's decoded header list (both ports; 16 KiB as gRPC's).
pub const DEFAULT_MAX_HEADER_LIST_BYTES: u32 = 16 << 10;
/// Default interval of HTTP/2 keep-alive pings (Triton's `--grpc-keepalive-time` default, 2 h).
pub const DEFAULT_KEEPALIVE_TIME: Duration = Duration::from_secs(7200);
/// Default wait for a keep-alive ping's acknowledgement (Triton's default, 20 s).
pub const DEFAULT_KEEPALIVE_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Streams a client may open and reset before the server has accepted them, per connection;
/// past it the connection is closed (the HTTP/2 rapid-reset attack, CVE-2023-44487).
pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams the server may reset for protocol errors of the client, per connection, before it
/// closes the connection (floods of malformed frames).
pub const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;

/// The limits of both listeners.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeLimits {
    /// Time from accepting an HTTP connection, or from the first byte of a later request, to a
    /// complete request head; past it the connection is closed.
    pub http_header_timeout: Duration,
    /// Time an HTTP connection may sit with no request in flight and no byte received.
    pub http_keepalive_timeout: Duration,
    /// Time from a complete request head to its complete body (a body that trickles in is cut
    /// off with 408); the head's timeout ends where this one starts.
    pub http_body_timeout: Duration,
    /// Concurrent HTTP connections (`None`: [`auto_max_connections`]).
    pub http_max_connections: Option<usize>,
    /// Bound on an HTTP/1 request head in bytes; past it hyper answers 431 and closes.
    pub http_max_header_bytes: usize,
    /// Bound on the number of headers of an HTTP/1 request; past it hyper answers 431.
    pub http_max_headers: usize,
    /// Concurrent gRPC connections (`None`: [`auto_max_connections`]).
    pub grpc_max_connections: Option<usize>,
    /// HTTP/2 settings of both ports.
    pub http2: Http2Limits,
}

/// HTTP/2 settings, applied to the gRPC port and to HTTP/2 on the HTTP port.
#[derive(Debug, Clone, PartialEq)]
pub struct Http2Limits {
    /// Streams a client may have open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Largest decoded header list of a request.
    pub max_header_list_bytes: u32,
    /// Interval of keep-alive pings on an otherwise silent connection (`None`: no pings).
    pub keepalive_time: Option<Duration>,
    /// How long a ping may go unacknowledged before the connection is closed.
    pub keepalive_timeout: Duration,
    /// gRPC: age at which a connection is asked to go away (`None`: no limit).
    pub max_connection_age: Option<Duration>,
    /// gRPC: time a connection past its age has to finish its calls.
    pub max_connection_age_grace: Option<Duration>,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Http2Limits {
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_header_list_bytes: DEFAULT_MAX_HEADER_LIST_BYTES,
            keepalive_time: Some(DEFAULT_KEEPALIVE_TIME),
            keepalive_timeout: DEFAULT_KEEPALIVE_PING_TIMEOUT,
            max_connection_age: None,
            max_connection_age_grace: None,
        }
    }
}

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            http_header_timeout: DEFAULT_HEADER_TIMEOUT,
            http_keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            http_body_timeout: DEFAULT_BODY_TIMEOUT,
            http_max_connections: None,
            http_max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            http_max_headers: DEFAULT_MAX_HEADERS,
            grpc_max_connections: None,
            http2: Http2Limits::default(),
        }
    }
}

/// File descriptors kept out of the connection caps: model files, the repository scans, logs.
const RESERVED_FDS: u64 = 256;

/// Raises the soft open-file limit to the hard one (as Go's runtime does) and returns it.
// rlim_t is u64 on Linux but not on every platform libc serves.
#[allow(clippy::unnecessary_cast)]
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        limit.rlim_cur as u64
    }
}

/// The default cap of one listener: a quarter of the descriptors left after the reserve (the
/// two listeners together take at most half), between 64 and 16,384.
pub fn auto_max_connections(fd_limit: u64) -> usize {
    (fd_limit.saturating_sub(RESERVED_FDS) / 4).clamp(64, 16_384) as usize
}

/// Accepts connections while fewer than the cap are open; each comes with the permit that
/// holds its slot until the connection is dropped.
#[derive(Debug)]
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    cap: usize,
    name: &'static str,
    saturated: AtomicBool,
}

impl Admission {
    pub(crate) fn new(name: &'static str, cap: usize) -> Admission {
        let cap = cap.clamp(1, Semaphore::MAX_PERMITS);
        Admission { slots: Arc::new(Semaphore::new(cap)), cap, name, saturated: AtomicBool::new(false) }
    }

    /// Waits for a free slot, then for a connection.
    pub(crate) async fn accept(&self, listener: &TcpListener) -> (TcpStream, std::net::SocketAddr, OwnedSemaphorePermit) {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !self.saturated.swap(true, Ordering::Relaxed) {
                    warn!(
                        "{} connection cap reached ({}): new connections wait in the listen backlog until one closes",
                        self.name, self.cap
                    );
                }
                // The semaphore is never closed, so this only waits.
                match self.slots.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => std::future::pending().await,
                }
            }
        };
        if self.slots.available_permits() > self.cap / 10 {
            self.saturated.store(false, Ordering::Relaxed);
        }
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return (stream, peer, permit);
                }
                Err(e) => {
                    // EMFILE and friends: back off rather than spin; the timeouts free slots.
                    warn!("{} accept failed: {e}", self.name);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// What one HTTP connection is doing, shared by its IO, its service and its watchdog.
#[derive(Debug)]
pub(crate) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    served: AtomicU64,
    /// Milliseconds from `opened` to when the last request in flight finished.
    idle_since: AtomicU64,
    /// Milliseconds from `opened` (+1, so 0 means none) to the first byte received while idle.
    first_byte: AtomicU64,
    http2: AtomicBool,
    wake: Notify,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    fn elapsed_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    /// Marks a request as being served until the guard drops.
    pub(crate) fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn bytes_received(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && self.first_byte.load(Ordering::Relaxed) == 0 {
            self.first_byte.store(self.elapsed_ms() + 1, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    /// When the connection is to be closed if nothing changes, or `None` while a request is in
    /// flight. HTTP/1: the first request head is due within the header timeout of the accept;
    /// a later one within the header timeout of its first byte, which is due within the
    /// keep-alive timeout of the last response. HTTP/2 connections (pings and window updates
    /// make bytes flow while idle) close after the keep-alive timeout with no stream in flight.
    fn deadline(&self, header: Duration, keepalive: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let at = |ms: u64, after: Duration| self.opened + Duration::from_millis(ms) + after;
        let idle_since = self.idle_since.load(Ordering::Acquire);
        if self.http2.load(Ordering::Relaxed) {
            return Some(at(idle_since, keepalive));
        }
        if self.served.load(Ordering::Relaxed) == 0 {
            return Some(at(0, header));
        }
        match self.first_byte.load(Ordering::Relaxed) {
            0 => Some(at(idle_since, keepalive)),
            first => Some(at(first - 1, header)),
        }
    }

    /// Resolves when the connection has overstayed: the caller then drops it, which closes it.
    pub(crate) async fn overstayed(&self, header: Duration, keepalive: Duration) {
        loop {
            match self.deadline(header, keepalive) {
                None => self.wake.notified().await,
                Some(deadline) if Instant::now() >= deadline => return,
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = self.wake.notified() => {}
                    }
                }
            }
        }
    }
}

/// A request in flight on a connection; dropping it (answered or cancelled) ends it.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity.first_byte.store(0, Ordering::Relaxed);
            activity.idle_since.store(activity.elapsed_ms(), Ordering::Release);
            activity.wake.notify_one();
        }
    }
}

/// The HTTP/2 connection preface a client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `AsyncWrite` for a connection wrapper: writes go straight to its `stream` (the wrappers
/// watch reads only).
macro_rules! write_through_to_stream {
    ($wrapper:ty) => {
        impl AsyncWrite for $wrapper {
            fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.stream).poll_write(cx, buf)
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.stream).poll_flush(cx)
            }

            fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.stream).poll_shutdown(cx)
            }

            fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.stream.is_write_vectored()
            }
        }
    };
}

/// A connection's IO that reports received bytes to its [`Activity`] and holds its slot.
#[derive(Debug)]
pub(crate) struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    first_read: bool,
    _slot: OwnedSemaphorePermit,
}

impl Watched {
    pub(crate) fn new(stream: TcpStream, activity: Arc<Activity>, slot: OwnedSemaphorePermit) -> Watched {
        Watched { stream, activity, first_read: true, _slot: slot }
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let received = &buf.filled()[before..];
            if !received.is_empty() {
                if self.first_read {
                    self.first_read = false;
                    // Clients send the preface in one write; one trickled byte by byte is
                    // treated as HTTP/1 and held to the header timeout.
                    if received.starts_with(H2_PREFACE) {
                        self.activity.http2.store(true, Ordering::Relaxed);
                    }
                }
                self.activity.bytes_received();
            }
        }
        result
    }
}

write_through_to_stream!(Watched);

/// A gRPC connection: holds its slot, and must deliver the HTTP/2 preface within the header
/// timeout (tonic has no header timeout of its own; after the preface, keep-alive pings and
/// the connection age bound it).
#[derive(Debug)]
pub(crate) struct GrpcConnection {
    stream: TcpStream,
    preface_due: Option<Pin<Box<Sleep>>>,
    received: usize,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for GrpcConnection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if self.preface_due.is_none() {
            return result;
        }
        match result {
            Poll::Ready(Ok(())) => {
                self.received += buf.filled().len() - before;
                if self.received >= H2_PREFACE.len() {
                    self.preface_due = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match self.preface_due.as_mut().map(|due| due.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    debug!("gRPC connection closed: no HTTP/2 preface within the header timeout");
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no HTTP/2 preface within the header timeout")))
                }
                _ => Poll::Pending,
            },
            other => other,
        }
    }
}

write_through_to_stream!(GrpcConnection);

impl tonic::transport::server::Connected for GrpcConnection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// The gRPC listener's connections, admitted under the cap. Dropping it (tonic does when
/// shutdown begins) stops the accept task, which closes the listening socket.
#[derive(Debug)]
pub(crate) struct GrpcIncoming {
    connections: mpsc::Receiver<GrpcConnection>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl GrpcIncoming {
    pub(crate) fn new(listener: TcpListener, cap: usize, header_timeout: Duration) -> GrpcIncoming {
        let (tx, connections) = mpsc::channel(1);
        let accept_task = tokio::spawn(async move {
            let admission = Admission::new("gRPC", cap);
            loop {
                let (stream, _, slot) = admission.accept(&listener).await;
                let preface_due = Some(Box::pin(tokio::time::sleep(header_timeout)));
                if tx.send(GrpcConnection { stream, preface_due, received: 0, _slot: slot }).await.is_err() {
                    return;
                }
            }
        });
        GrpcIncoming { connections, accept_task }
    }
}

impl Drop for GrpcIncoming {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl tokio_stream::Stream for GrpcIncoming {
    type Item = Result<GrpcConnection, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx).map(|next| next.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(10);
    const K: Duration = Duration::from_secs(60);

    #[test]
    fn auto_cap_follows_the_fd_limit() {
        assert_eq!(auto_max_connections(20_000), (20_000 - 256) / 4);
        assert_eq!(auto_max_connections(1024), 192);
        assert_eq!(auto_max_connections(100), 64);
        assert_eq!(auto_max_connections(u64::MAX), 16_384);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_connection_has_the_header_timeout() {
        let activity = Activity::new();
        let opened = activity.opened;
        assert_eq!(activity.deadline(H, K), Some(opened + H));
        // Bytes trickling in do not extend it.
        tokio::time::advance(Duration::from_secs(3)).await;
        activity.bytes_received();
        assert_eq!(activity.deadline(H, K), Some(opened + H));
        let started = Instant::now();
        activity.overstayed(H, K).await;
        assert_eq!(Instant::now() - started, Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_are_never_cut_and_idle_starts_at_the_answer() {
        let activity = Activity::new();
        let request = activity.start_request();
        assert_eq!(activity.deadline(H, K), None);
        tokio::time::advance(Duration::from_secs(100)).await;
        activity.bytes_received(); // the body, while in flight: not an idle byte
        assert_eq!(activity.deadline(H, K), None);
        drop(request);
        let answered = Instant::now();
        assert_eq!(activity.deadline(H, K), Some(answered + K));
        // The next request's first byte: its head is due within the header timeout.
        tokio::time::advance(Duration::from_secs(30)).await;
        activity.bytes_received();
        assert_eq!(activity.deadline(H, K), Some(answered + Duration::from_secs(30) + H));
        let watch = tokio::spawn({
            let activity = activity.clone();
            async move { activity.overstayed(H, K).await }
        });
        tokio::time::advance(Duration::from_secs(5)).await;
        let second = activity.start_request();
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(!watch.is_finished());
        drop(second);
        tokio::time::advance(K + Duration::from_millis(5)).await;
        tokio::task::yield_now().await;
        assert!(watch.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn http2_connections_idle_out_after_the_keepalive_timeout() {
        let activity = Activity::new();
        activity.http2.store(true, Ordering::Relaxed);
        activity.bytes_received();
        assert_eq!(activity.deadline(H, K), Some(activity.opened + K));
    }

    #[tokio::test]
    async fn the_cap_holds_connections_back_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admission = Arc::new(Admission::new("test", 1));
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap(); // completes in the kernel's backlog
        let (_, _, first) = admission.accept(&listener).await;
        let second = tokio::time::timeout(Duration::from_millis(200), admission.accept(&listener)).await;
        assert!(second.is_err(), "a second connection was admitted past the cap");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), admission.accept(&listener)).await;
        assert!(second.is_ok());
    }
}
