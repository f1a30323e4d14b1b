//! Listening: checking `host:port` endpoints, binding them, and serving HTTP/1.1 and HTTP/2
//! (including gRPC's cleartext HTTP/2) with graceful shutdown.

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// Checks that `endpoint` is `host:port` with a numeric port, as the collector expects.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let bad = || format!("invalid address \"{endpoint}\": expected host:port, such as localhost:4317 or 0.0.0.0:4317");
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(bad());
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(bad());
    }
    port.parse::<u16>().map_err(|_| bad())?;
    Ok(())
}

/// The addresses `endpoint` resolves to, IPv4 first. `:4317` means every interface, as in the
/// collector; `localhost` may resolve to ::1 first, but clients mostly dial 127.0.0.1.
async fn resolve(endpoint: &str) -> Result<Vec<SocketAddr>, String> {
    check_endpoint(endpoint)?;
    let target = if endpoint.starts_with(':') { format!("0.0.0.0{endpoint}") } else { endpoint.to_string() };
    let mut addrs: Vec<SocketAddr> =
        tokio::net::lookup_host(&target).await.map_err(|e| format!("cannot resolve {endpoint}: {e}"))?.collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    Ok(addrs)
}

/// Binds a TCP listener on `endpoint`, trying each address it resolves to, IPv4 first.
pub async fn bind(endpoint: &str) -> Result<TcpListener, String> {
    let mut last = format!("{endpoint} resolves to no address");
    for addr in resolve(endpoint).await? {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = format!("cannot listen on {addr}: {e}"),
        }
    }
    Err(last)
}

/// The sockets one receiver listens on, by endpoint. When a reload replaces the receiver, its
/// successor takes over the same sockets (a duplicate of each descriptor) instead of binding
/// anew: connections waiting to be accepted are not reset, and the port is never closed. An
/// endpoint the successor does not bind again closes once the old receiver has stopped.
#[derive(Clone, Default)]
pub struct Listeners {
    /// What this receiver bound: handed on at the next reload.
    own: std::sync::Arc<std::sync::Mutex<Vec<(String, Shared)>>>,
    /// What its predecessor bound, until the receiver has started (see `settle`).
    inherited: std::sync::Arc<std::sync::Mutex<Vec<(String, Shared)>>>,
}

enum Shared {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

impl Shared {
    fn duplicate(&self) -> std::io::Result<Shared> {
        Ok(match self {
            Shared::Tcp(l) => Shared::Tcp(l.try_clone()?),
            Shared::Udp(s) => Shared::Udp(s.try_clone()?),
        })
    }
}

impl Listeners {
    /// A fresh set for the successor of the receiver that bound these.
    pub fn successor(&self) -> Listeners {
        let own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        let inherited = own.iter().filter_map(|(e, s)| Some((e.clone(), s.duplicate().ok()?))).collect();
        Listeners { own: Default::default(), inherited: std::sync::Arc::new(std::sync::Mutex::new(inherited)) }
    }

    /// The receiver has started: the predecessor's sockets it did not take over are let go, so
    /// that they close once the predecessor stops.
    pub fn settle(&self) {
        self.inherited.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn inherit(&self, key: &str) -> Option<Shared> {
        let inherited = self.inherited.lock().unwrap_or_else(|p| p.into_inner());
        inherited.iter().find(|(e, _)| e == key).and_then(|(_, s)| s.duplicate().ok())
    }

    fn keep(&self, key: &str, shared: Shared) {
        self.own.lock().unwrap_or_else(|p| p.into_inner()).push((key.to_string(), shared));
    }

    /// Listens on `endpoint` (TCP): the predecessor's socket if it had one there, else a new one.
    pub async fn tcp(&self, endpoint: &str) -> Result<TcpListener, String> {
        let key = format!("tcp {endpoint}");
        let std = match self.inherit(&key) {
            Some(Shared::Tcp(l)) => l,
            _ => bind(endpoint).await?.into_std().map_err(|e| format!("{endpoint}: {e}"))?,
        };
        if let Ok(copy) = std.try_clone() {
            self.keep(&key, Shared::Tcp(copy));
        }
        std.set_nonblocking(true).map_err(|e| format!("{endpoint}: {e}"))?;
        TcpListener::from_std(std).map_err(|e| format!("{endpoint}: {e}"))
    }

    /// Binds `endpoint` (UDP), as `tcp` does.
    pub async fn udp(&self, endpoint: &str) -> Result<UdpSocket, String> {
        let key = format!("udp {endpoint}");
        let std = match self.inherit(&key) {
            Some(Shared::Udp(s)) => s,
            _ => bind_udp(endpoint).await?.into_std().map_err(|e| format!("{endpoint}: {e}"))?,
        };
        if let Ok(copy) = std.try_clone() {
            self.keep(&key, Shared::Udp(copy));
        }
        std.set_nonblocking(true).map_err(|e| format!("{endpoint}: {e}"))?;
        UdpSocket::from_std(std).map_err(|e| format!("{endpoint}: {e}"))
    }
}

/// Binds a UDP socket on `endpoint`, as `bind` does for TCP.
pub async fn bind_udp(endpoint: &str) -> Result<UdpSocket, String> {
    let mut last = format!("{endpoint} resolves to no address");
    for addr in resolve(endpoint).await? {
        match UdpSocket::bind(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("cannot listen on {addr}/udp: {e}"),
        }
    }
    Err(last)
}

/// What a listener allows its connections: how many at once, how long a client may take to
/// send a request, how long a connection may sit idle, and (HTTP/2) how many streams it may open
/// and how much it may send before being asked for more. The defaults are safe for a gateway
/// facing untrusted clients; receivers set them from their configuration keys.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections served at once; more are accepted and closed at once (and counted).
    pub max_connections: usize,
    /// How long a client may take to send a request's headers.
    pub read_header_timeout: Duration,
    /// How long a client may take to send a whole request, body included (a stalled body is
    /// answered 408). Zero: no limit.
    pub read_timeout: Duration,
    /// How long a response may wait for the client to take it. Zero: no limit.
    pub write_timeout: Duration,
    /// A connection with no request in progress and no bytes moving for this long is closed.
    pub idle_timeout: Duration,
    /// A connection older than this is asked to close (HTTP/2 GOAWAY) once its requests are
    /// done. Zero: no limit.
    pub max_connection_age: Duration,
    /// How long requests may still run after a connection was asked to close for its age.
    pub max_connection_age_grace: Duration,
    /// HTTP/2 streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// HTTP/2 ping interval on a quiet connection, and how long the answer may take.
    pub keepalive_time: Duration,
    pub keepalive_timeout: Duration,
    /// HTTP/2 flow-control windows: what a client may send before being asked for more, per
    /// stream and per connection. Memory grows as data arrives, never by what a client declares.
    pub stream_window: u32,
    pub connection_window: u32,
    /// HTTP/1 read buffer (the largest header block) and the write buffer, in bytes.
    pub read_buffer_size: usize,
    pub write_buffer_size: usize,
    /// Where connections refused over `max_connections` are counted, by listener address
    /// (`switchyard_listener_refused_connections_total`); see `Metrics::refused_connections`.
    pub refused: Option<prometheus::IntCounterVec>,
    /// TLS on every connection (the receiver's `tls` key), and where failed handshakes are
    /// counted (`switchyard_listener_tls_handshake_failures_total`).
    pub tls: Option<std::sync::Arc<crate::tls::server::ServerTls>>,
    pub tls_failed: Option<prometheus::IntCounterVec>,
    /// Who may send: every request is authenticated before its handler runs (the receiver's
    /// `auth` key); see `auth::Guard`.
    pub auth: Option<std::sync::Arc<crate::auth::Guard>>,
    /// Keep each request's headers (gRPC metadata) as the context of its data (the
    /// receiver's `include_metadata`), for processors, the batch processor's `metadata_keys`
    /// and exporters' `headers_setter`.
    pub include_metadata: bool,
    /// Answer browsers' preflights and mark answers for allowed origins (the receiver's
    /// `cors`); see `cors`.
    pub cors: Option<std::sync::Arc<crate::cors::CorsConfig>>,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 1024,
            read_header_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connection_age: Duration::ZERO,
            max_connection_age_grace: Duration::from_secs(10),
            max_concurrent_streams: 128,
            keepalive_time: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            stream_window: 256 * 1024,
            connection_window: 1024 * 1024,
            read_buffer_size: 64 * 1024,
            write_buffer_size: 64 * 1024,
            refused: None,
            tls: None,
            tls_failed: None,
            auth: None,
            include_metadata: false,
            cors: None,
        }
    }
}

impl ConnLimits {
    /// The same limits, counting refused connections into `metrics`.
    pub fn counted(self, metrics: &crate::telemetry::metrics::Metrics) -> ConnLimits {
        ConnLimits {
            refused: Some(metrics.refused_connections.clone()),
            tls_failed: Some(metrics.tls_handshake_failures.clone()),
            ..self
        }
    }

    /// The same limits, serving TLS as `tls` says (none: plaintext). A certificate or key that
    /// cannot be read is an error here, so the receiver does not start.
    pub fn with_tls(self, tls: Option<&crate::tls::server::TlsServerConfig>) -> Result<ConnLimits, String> {
        let tls = tls.map(|t| t.server(crate::tls::server::Alpn::Http)).transpose()?;
        Ok(ConnLimits { tls, ..self })
    }

    /// The same limits, authenticating every request of `receiver` with the extension `auth`
    /// names (none: no authentication).
    pub fn with_auth(
        self,
        auth: Option<&crate::auth::AuthSettings>,
        authenticators: &crate::auth::Authenticators,
        intake: &crate::pipeline::Intake,
    ) -> Result<ConnLimits, String> {
        let auth = authenticators.guard(auth, intake.receiver(), intake.telemetry())?;
        Ok(ConnLimits { auth, ..self })
    }
}

/// The address a request's connection comes from; `serve` puts it in a request's extensions
/// when the socket can tell it.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Put in a response's extensions by a handler whose body streams for as long as the client
/// listens (`switchyard tap`): the connection counts as busy until the body ends, so the idle
/// timeout does not cut it.
#[derive(Debug, Clone, Copy)]
pub struct Streaming;

/// When the request a handler is serving must have been read completely (`read_timeout`);
/// `serve` puts it in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ReadDeadline(pub tokio::time::Instant);

/// The read deadline `serve` gave `req`, if any.
pub fn read_deadline<B>(req: &Request<B>) -> Option<tokio::time::Instant> {
    req.extensions().get::<ReadDeadline>().map(|d| d.0)
}

/// Serves HTTP/1.1 and HTTP/2 on `listener` with `handler` until `shutdown` fires, then lets
/// requests in progress finish (up to `grace`), with the default connection limits.
pub async fn serve<H, F>(listener: TcpListener, handler: H, shutdown: CancellationToken, grace: Duration)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<BoxBody>> + Send + 'static,
{
    serve_with(listener, ConnLimits::default(), handler, shutdown, grace).await
}

/// `serve` with the given connection limits.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    limits: ConnLimits,
    handler: H,
    shutdown: CancellationToken,
    grace: Duration,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<BoxBody>> + Send + 'static,
{
    let limits = std::sync::Arc::new(limits);
    let gate = std::sync::Arc::new(Gate::new(&listener, limits.max_connections, limits.refused.clone()));
    let mut connections = tokio::task::JoinSet::new();
    while let Some((stream, slot)) = gate.accept(&listener, &shutdown).await {
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok().map(PeerAddr);
        let handler = handler.clone();
        let (limits, shutdown, gate) = (limits.clone(), shutdown.clone(), gate.clone());
        connections.spawn(async move {
            let _slot = slot;
            let tls = (limits.tls.as_ref(), limits.tls_failed.as_ref());
            let io = Watched::new(stream, limits.write_timeout);
            // The handshake has the time a client has for its request headers.
            let Some(io) = gate.secure(io, tls, limits.read_header_timeout).await else { return };
            let activity = std::sync::Arc::new(Activity::new());
            let in_service = activity.clone();
            let read_timeout = limits.read_timeout;
            let (guard, include_metadata, cors) = (limits.auth.clone(), limits.include_metadata, limits.cors.clone());
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                if !read_timeout.is_zero() {
                    req.extensions_mut().insert(ReadDeadline(tokio::time::Instant::now() + read_timeout));
                }
                if let Some(peer) = peer {
                    req.extensions_mut().insert(peer);
                }
                let busy = in_service.begin();
                let (handler, guard, cors) = (handler.clone(), guard.clone(), cors.clone());
                async move {
                    // A browser's preflight is answered before authentication: it has no credentials.
                    if let Some(preflight) = cors.as_ref().and_then(|c| c.preflight(&req)) {
                        drop(busy);
                        return Ok::<_, Infallible>(preflight);
                    }
                    let origin = cors.as_ref().and_then(|c| c.allowed_origin(&req));
                    // Credentials are checked before the handler reads a byte of the body.
                    let checked = match &guard {
                        Some(g) => g.check(&mut req).await,
                        None => Ok(()),
                    };
                    if include_metadata || guard.is_some() {
                        let context =
                            crate::pipeline::request_context(req.headers(), req.extensions(), include_metadata);
                        if let Some(c) = context {
                            req.extensions_mut().insert(crate::pipeline::RequestContext(c));
                        }
                    }
                    let mut response = match checked {
                        Ok(()) => handler(req).await,
                        Err(refusal) => refusal,
                    };
                    if cors.is_some() {
                        crate::cors::CorsConfig::decorate(origin, &mut response);
                    }
                    if response.extensions().get::<Streaming>().is_some() {
                        // Busy until the body ends: a long stream is not an idle connection.
                        use http_body_util::BodyExt;
                        response = response.map(|body| {
                            body.map_frame(move |frame| {
                                let _busy = &busy;
                                frame
                            })
                            .boxed_unsync()
                        });
                    } else {
                        drop(busy);
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.read_header_timeout)
                .max_buf_size(limits.read_buffer_size.max(8192));
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval((!limits.keepalive_time.is_zero()).then_some(limits.keepalive_time))
                .keep_alive_timeout(limits.keepalive_timeout)
                .max_concurrent_streams(limits.max_concurrent_streams.max(1))
                .initial_stream_window_size(limits.stream_window)
                .initial_connection_window_size(limits.connection_window)
                .max_send_buf_size(limits.write_buffer_size.max(16 * 1024))
                .max_header_list_size(64 * 1024);
            let conn = builder.serve_connection(TokioIo::new(io), service).into_owned();
            watch_connection(conn, activity, &limits, shutdown).await;
        });
    }
    drop(listener);
    let all_closed = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_closed).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace period; closing them"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Drives one connection: asks it to close gracefully when the listener shuts down, when it
/// has been idle for `idle_timeout`, or when it is older than `max_connection_age` (then
/// gives it `max_connection_age_grace` to finish).
async fn watch_connection<C>(
    conn: C,
    activity: std::sync::Arc<Activity>,
    limits: &ConnLimits,
    shutdown: CancellationToken,
) where
    C: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + GracefulClose,
{
    let mut conn = std::pin::pin!(conn);
    let born = tokio::time::Instant::now();
    let tick = (limits.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing_by: Option<tokio::time::Instant> = None;
    let mut idle_close_until: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if closing_by.is_none() => {
                conn.as_mut().close_gracefully();
                // The listener's own grace period bounds this one.
                closing_by = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
            }
            _ = ticks.tick() => {
                let now = tokio::time::Instant::now();
                if let Some(by) = closing_by {
                    // Past the deadline the connection is dropped, unless an idle close is
                    // still serving a request that crossed it (those get the age grace).
                    let serving = idle_close_until.is_some_and(|until| now < until) && activity.busy() > 0;
                    if now >= by && !serving {
                        tracing::debug!("connection did not close within its grace period; dropping it");
                        return;
                    }
                    continue;
                }
                let idle = !limits.idle_timeout.is_zero() && activity.idle_for() >= limits.idle_timeout;
                let old = !limits.max_connection_age.is_zero() && now.duration_since(born) >= limits.max_connection_age;
                if idle {
                    tracing::debug!(idle_timeout = ?limits.idle_timeout, "closing an idle connection");
                    conn.as_mut().close_gracefully();
                    // A client that does not answer the close (HTTP/2 GOAWAY and its ping) is
                    // dropped soon; a request that crossed the close still finishes.
                    closing_by = Some(now + Duration::from_secs(1));
                    idle_close_until = Some(now + limits.max_connection_age_grace.max(Duration::from_secs(10)));
                } else if old {
                    tracing::debug!(max_connection_age = ?limits.max_connection_age, "closing a connection for its age");
                    conn.as_mut().close_gracefully();
                    closing_by = Some(now + limits.max_connection_age_grace);
                }
            }
        }
    }
}

/// A connection that can be asked to finish what it is doing and close.
trait GracefulClose {
    fn close_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<I, S, E> GracefulClose for auto::Connection<'static, I, S, E>
where
    S: hyper::service::HttpService<Incoming, ResBody = BoxBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    E: auto::HttpServerConnExec<S::Future, BoxBody>,
{
    fn close_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// When a connection last started or finished a request, and how many it is serving. Bytes
/// alone do not count: HTTP/2 pings (ours every `keepalive_time`) would keep an unused
/// connection from ever being idle.
struct Activity {
    started: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
    busy: std::sync::atomic::AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            started: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
            busy: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long nothing has happened: zero while a request is being served.
    fn idle_for(&self) -> Duration {
        if self.busy.load(std::sync::atomic::Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Requests in progress.
    fn busy(&self) -> usize {
        self.busy.load(std::sync::atomic::Ordering::Acquire)
    }

    fn begin(self: &std::sync::Arc<Self>) -> Busy {
        self.touch();
        self.busy.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Busy(self.clone())
    }
}

/// A request in progress on a connection; the connection is not idle while one exists.
struct Busy(std::sync::Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A stream that fails a write the peer has not taken within
/// `write_timeout` (a client that stops reading cannot hold a response forever), and, for
/// stream listeners, fails a read that has waited `read_idle` for data.
pub struct Watched<T> {
    inner: T,
    write_timeout: Duration,
    write_stall: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    read_idle: Duration,
    read_stall: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Watched<T> {
    fn new(inner: T, write_timeout: Duration) -> Watched<T> {
        Watched { inner, write_timeout, write_stall: None, read_idle: Duration::ZERO, read_stall: None }
    }

    fn with_read_idle(mut self, idle: Duration) -> Watched<T> {
        self.read_idle = idle;
        self
    }

    /// A write's outcome, or `TimedOut` once writes have waited `write_timeout` for the peer.
    fn stalled_write(
        &mut self,
        cx: &mut std::task::Context<'_>,
        r: std::task::Poll<std::io::Result<usize>>,
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        match r {
            Poll::Ready(r) => {
                self.write_stall = None;
                Poll::Ready(r)
            }
            Poll::Pending if self.write_timeout.is_zero() => Poll::Pending,
            Poll::Pending => {
                let timeout = self.write_timeout;
                let stall = self.write_stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stall.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client did not take the response within write_timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }

    /// The stream inside (for a TLS handshake on it, say).
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            // The next wait starts its own clock (time spent elsewhere is not idleness).
            self.read_stall = None;
        } else if !self.read_idle.is_zero() {
            let idle = self.read_idle;
            let stall = self.read_stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
            if stall.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection idle for longer than idle_timeout",
                )));
            }
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        self.stalled_write(cx, r)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.stalled_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection a listener serves: plain TCP, or TLS over it (the listener's `tls`). Both are
/// `Watched`, the TLS one beneath the encryption, so stalls are seen on the socket itself.
pub enum Conn {
    Plain(Watched<tokio::net::TcpStream>),
    Tls(Box<tokio_rustls::server::TlsStream<Watched<tokio::net::TcpStream>>>),
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_write(cx, data),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepts a listener's connections within its `max_connections`: one over it is closed at once
/// (the client sees the refusal rather than waiting in the backlog) and counted; accept errors
/// (out of file descriptors, say) are warned at most once a second.
struct Gate {
    local: String,
    refused: Option<prometheus::IntCounterVec>,
    max: usize,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    refusals: crate::telemetry::log_limit::LogLimit,
    accept_errors: crate::telemetry::log_limit::LogLimit,
    tls_errors: crate::telemetry::log_limit::LogLimit,
}

impl Gate {
    fn new(listener: &TcpListener, max: usize, refused: Option<prometheus::IntCounterVec>) -> Gate {
        Gate {
            local: listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            refused,
            max,
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(max.max(1))),
            refusals: Default::default(),
            accept_errors: Default::default(),
            tls_errors: Default::default(),
        }
    }

    /// The connection as the listener serves it: the TLS handshake first when `tls` has a
    /// server (within `limit`). A failed handshake is counted and logged (at most once a
    /// second, with the client's address and the reason) and gives `None`.
    async fn secure(
        &self,
        io: Watched<tokio::net::TcpStream>,
        (tls, failed): (Option<&std::sync::Arc<crate::tls::server::ServerTls>>, Option<&prometheus::IntCounterVec>),
        limit: Duration,
    ) -> Option<Conn> {
        let Some(tls) = tls else { return Some(Conn::Plain(io)) };
        let peer = io.get_ref().peer_addr().map(|a| a.to_string()).unwrap_or_default();
        match tls.accept(io, limit.max(Duration::from_secs(1))).await {
            Ok(stream) => Some(Conn::Tls(Box::new(stream))),
            Err(reason) => {
                if let Some(failed) = failed {
                    failed.with_label_values(&[&self.local]).inc();
                }
                if let Some(held_back) = self.tls_errors.allow() {
                    tracing::warn!(listener = %self.local, %peer, error = %reason,
                        suppressed_since_last_warning = held_back, "refused a connection: TLS handshake failed");
                }
                None
            }
        }
    }

    /// The next connection with its slot (held until the connection ends), or `None` once
    /// `shutdown` fires.
    async fn accept(
        &self,
        listener: &TcpListener,
        shutdown: &CancellationToken,
    ) -> Option<(tokio::net::TcpStream, tokio::sync::OwnedSemaphorePermit)> {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        if let Some(held_back) = self.accept_errors.allow() {
                            tracing::warn!(listener = %self.local, error = %e, suppressed_since_last_warning = held_back, "accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => return None,
            };
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => return Some((stream, slot)),
                Err(_) => {
                    if let Some(refused) = &self.refused {
                        refused.with_label_values(&[&self.local]).inc();
                    }
                    if let Some(held_back) = self.refusals.allow() {
                        tracing::warn!(listener = %self.local, %peer, max_connections = self.max,
                            suppressed_since_last_warning = held_back, "too many connections; closing a new one");
                    }
                }
            }
        }
    }
}

/// Limits of a listener of plain TCP streams (syslog, Fluent Forward).
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Connections served at once; more are accepted and closed at once (and counted).
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Where refused connections are counted (see `ConnLimits::refused`).
    pub refused: Option<prometheus::IntCounterVec>,
    /// TLS on every connection, and where failed handshakes are counted (as `ConnLimits`).
    pub tls: Option<std::sync::Arc<crate::tls::server::ServerTls>>,
    pub tls_failed: Option<prometheus::IntCounterVec>,
}

impl StreamLimits {
    /// The same limits, counting refused connections into `metrics`.
    pub fn counted(self, metrics: &crate::telemetry::metrics::Metrics) -> StreamLimits {
        StreamLimits {
            refused: Some(metrics.refused_connections.clone()),
            tls_failed: Some(metrics.tls_handshake_failures.clone()),
            ..self
        }
    }

    /// The same limits, serving TLS as `tls` says (see `ConnLimits::with_tls`).
    pub fn with_tls(self, tls: Option<&crate::tls::server::TlsServerConfig>) -> Result<StreamLimits, String> {
        let tls = tls.map(|t| t.server(crate::tls::server::Alpn::None)).transpose()?;
        Ok(StreamLimits { tls, ..self })
    }
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
            refused: None,
            tls: None,
            tls_failed: None,
        }
    }
}

/// A stream listener's connection (TLS when the listener has it), whose reads fail with
/// `TimedOut` once nothing has arrived for the listener's idle timeout while a read waits.
pub type IdleStream = Conn;

/// Accepts connections on `listener` until `shutdown`, handing each to `connection` within
/// `limits`; then gives open connections `grace` to finish before closing them.
pub async fn serve_streams<F, Fut>(
    listener: TcpListener,
    limits: StreamLimits,
    shutdown: CancellationToken,
    grace: Duration,
    connection: F,
) where
    F: Fn(IdleStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let gate = std::sync::Arc::new(Gate::new(&listener, limits.max_connections, limits.refused.clone()));
    let limits = std::sync::Arc::new(limits);
    let connection = std::sync::Arc::new(connection);
    let mut connections = tokio::task::JoinSet::new();
    while let Some((stream, slot)) = gate.accept(&listener, &shutdown).await {
        while connections.try_join_next().is_some() {}
        // A client that stops taking its answers (Fluent Forward acks) is cut off like an idle one.
        let stream = Watched::new(stream, limits.idle_timeout).with_read_idle(limits.idle_timeout);
        let (gate, limits, connection) = (gate.clone(), limits.clone(), connection.clone());
        connections.spawn(async move {
            let _slot = slot;
            let tls = (limits.tls.as_ref(), limits.tls_failed.as_ref());
            if let Some(stream) = gate.secure(stream, tls, Duration::from_secs(10)).await {
                connection(stream).await
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    connections.abort_all();
}

/// The response body type every switchyard HTTP handler returns.
pub type BoxBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A one-line plain-text answer (the error style of the Jaeger and Zipkin endpoints).
pub fn text(status: http::StatusCode, message: &str) -> Response<BoxBody> {
    response(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

/// A complete response with `status`, `content_type` and `body`.
pub fn response(status: http::StatusCode, content_type: &str, body: impl Into<bytes::Bytes>) -> Response<BoxBody> {
    use http_body_util::BodyExt;
    let body = http_body_util::Full::new(body.into()).map_err(|never| match never {}).boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_host_means_every_interface() {
        let l = bind(":0").await.unwrap();
        assert!(l.local_addr().unwrap().ip().is_unspecified());
    }

    #[test]
    fn endpoints() {
        assert!(check_endpoint("localhost:4317").is_ok());
        assert!(check_endpoint("0.0.0.0:1").is_ok());
        assert!(check_endpoint("[::1]:4317").is_ok());
        assert!(check_endpoint(":4317").is_ok());
        assert!(check_endpoint("localhost").is_err());
        assert!(check_endpoint("localhost:http").is_err());
        assert!(check_endpoint("localhost:70000").is_err());
        assert!(check_endpoint("http://localhost:4317").is_err());
    }
}
