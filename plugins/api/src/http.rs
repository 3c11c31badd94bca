//! HTTP servers shared by every component listening on the same address.
//!
//! A Cardputer sink, a REST sink and the admin endpoint can all sit on port 8000: each
//! [`mount`](HttpServer::mount)s its own axum [`Router`] and the server dispatches every
//! request to the merge of the routers mounted right now. Routers are swapped without
//! touching the listening socket or the connections already upgraded to WebSockets, which is
//! what lets hot reload add and remove components on a port while clients stay connected.
//!
//! A server lives as long as someone holds an [`HttpServer`] handle to it: reload builds the
//! new components (taking handles) before it drops the old ones, so a port moving from one
//! component to another is never released in between.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock, Weak};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceExt;

use crate::secret::Secret;
use crate::shutdown::Shutdown;

/// The registry of shared servers, one per address. Cheap to clone.
#[derive(Clone, Default)]
pub struct HttpServers {
    servers: Arc<Mutex<HashMap<SocketAddr, Weak<ServerInner>>>>,
}

/// A handle to a running server; the server stops when the last handle is dropped.
#[derive(Clone)]
pub struct HttpServer {
    inner: Arc<ServerInner>,
}

struct ServerInner {
    address: SocketAddr,
    mounts: Mutex<BTreeMap<String, Router>>,
    /// The merge of all mounts, rebuilt on every mount change, read on every request.
    current: RwLock<Router>,
    stop: Shutdown,
}

impl Drop for ServerInner {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

impl HttpServers {
    /// The server on `address`, binding and starting it if nobody serves it yet.
    /// Must be called from within a tokio runtime.
    pub fn acquire(&self, address: SocketAddr) -> io::Result<HttpServer> {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(inner) = servers.get(&address).and_then(Weak::upgrade) {
            return Ok(HttpServer { inner });
        }
        let listener = bind(address)?;
        let bound = listener.local_addr()?;
        let inner = Arc::new(ServerInner {
            address: bound,
            mounts: Mutex::new(BTreeMap::new()),
            current: RwLock::new(Router::new()),
            stop: Shutdown::new(),
        });
        let dispatch = {
            let weak = Arc::downgrade(&inner);
            move |request: Request| {
                let router = weak.upgrade().map(|inner| {
                    inner
                        .current
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone()
                });
                async move {
                    match router {
                        Some(router) => router.oneshot(request).await.into_response(),
                        None => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
                    }
                }
            }
        };
        let app = Router::new().fallback(dispatch);
        let stop = inner.stop.clone();
        let listener = LimitedListener::new(listener, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PEER);
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.triggered().await })
                .await;
            if let Err(error) = served {
                tracing::warn!(%bound, %error, "HTTP server stopped");
            }
        });
        tracing::info!(address = %bound, "listening");
        servers.insert(address, Arc::downgrade(&inner));
        if bound != address {
            // Port 0 in the pipeline: also register under the real port.
            servers.insert(bound, Arc::downgrade(&inner));
        }
        Ok(HttpServer { inner })
    }
}

/// Most connections one server keeps open at once (HTTP keep-alive and WebSockets
/// together). Past it, new connections wait in the kernel's backlog until one closes, so
/// a flood of idle sockets cannot exhaust file descriptors or memory.
pub const MAX_CONNECTIONS: usize = 4096;

/// Most connections one peer address may hold on a server: half of [`MAX_CONNECTIONS`],
/// so that one host on the network (thousands of idle sockets, a slowloris) can never take
/// every place, and 1,000 viewers behind one address (a hub, a load test) still fit. A
/// connection past it is closed at once.
pub const MAX_CONNECTIONS_PER_PEER: usize = MAX_CONNECTIONS / 2;

/// A TCP listener that holds a permit per open connection, at most `max_per_peer` for one
/// peer address, and turns Nagle off (live frames and race messages are small: send them
/// at once).
struct LimitedListener {
    inner: tokio::net::TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
    peers: Arc<Mutex<HashMap<std::net::IpAddr, PeerCount>>>,
    max_per_peer: usize,
}

/// One peer's open connections, and whether its refusal was logged.
#[derive(Default)]
struct PeerCount {
    open: usize,
    warned: bool,
}

impl LimitedListener {
    fn new(inner: tokio::net::TcpListener, max: usize, max_per_peer: usize) -> Self {
        Self {
            inner,
            permits: Arc::new(tokio::sync::Semaphore::new(max)),
            peers: Arc::new(Mutex::new(HashMap::new())),
            max_per_peer: max_per_peer.max(1),
        }
    }

    /// A place for one more connection of `peer`, or `None` when it holds its share.
    fn admit(&self, peer: std::net::IpAddr) -> Option<PeerSlot> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let count = peers.entry(peer).or_default();
        if count.open >= self.max_per_peer {
            if !count.warned {
                // Said once while the peer stays at its share, not once per socket.
                count.warned = true;
                tracing::warn!(%peer, limit = self.max_per_peer, "HTTP: a peer holds its share of connections; closing its new ones");
            }
            return None;
        }
        count.open += 1;
        Some(PeerSlot {
            peers: self.peers.clone(),
            peer,
        })
    }
}

/// One connection counted against its peer; counted off when it closes.
struct PeerSlot {
    peers: Arc<Mutex<HashMap<std::net::IpAddr, PeerCount>>>,
    peer: std::net::IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = peers.get_mut(&self.peer) {
            count.open -= 1;
            count.warned = false;
            if count.open == 0 {
                peers.remove(&self.peer);
            }
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Permitted<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            // The semaphore is never closed; if it were, stop accepting rather than spin.
            Err(_) => std::future::pending().await,
        };
        loop {
            let (stream, peer) = axum::serve::Listener::accept(&mut self.inner).await;
            // Over its share: dropped, which closes it; the permit serves the next one.
            let Some(slot) = self.admit(peer.ip()) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            limit_unsent_bytes(&stream);
            return (
                Permitted {
                    io: stream,
                    _permit: permit,
                    _peer: slot,
                },
                peer,
            );
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Bytes a connection may have waiting in the kernel, not yet sent, before a write waits.
/// Linux grows a socket's send buffer to megabytes for a peer that stopped reading, which
/// would hide a slow device from the sinks for minutes while it falls minutes behind;
/// bounded, the WebSocket sinks see the back-pressure within seconds and skip such a
/// client ahead to the newest frame (or drop it) instead. Fast peers are not slowed: the
/// kernel asks for more as soon as the queue drains below this.
pub const MAX_UNSENT_BYTES: usize = 16 * 1024;

#[cfg(target_os = "linux")]
fn limit_unsent_bytes(stream: &tokio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let value = MAX_UNSENT_BYTES as libc::c_int;
    // SAFETY: the descriptor is an open TCP socket owned by `stream` for the whole call,
    // and the option value is a c_int of the size passed.
    let failed = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } != 0;
    if failed {
        tracing::debug!(error = %io::Error::last_os_error(), "TCP_NOTSENT_LOWAT not set");
    }
}

#[cfg(not(target_os = "linux"))]
fn limit_unsent_bytes(_stream: &tokio::net::TcpStream) {}

/// A connection that gives its permit back when it closes.
struct Permitted<T> {
    io: T,
    _permit: tokio::sync::OwnedSemaphorePermit,
    _peer: PeerSlot,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Permitted<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Permitted<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn bind(address: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // Rebinding right after a previous server on this port stopped must not fail on
    // connections still in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address).map_err(|error| {
        io::Error::new(error.kind(), format!("cannot listen on {address}: {error}"))
    })?;
    socket.listen(1024)
}

impl HttpServer {
    /// The address actually bound (differs from the configured one for port 0).
    pub fn address(&self) -> SocketAddr {
        self.inner.address
    }

    /// Serve `router`'s routes under the name `owner` (a component id) until the returned
    /// guard is dropped. Fails if a route collides with another mount's.
    pub fn mount(&self, owner: &str, router: Router) -> Result<Mount, String> {
        let mut mounts = self.inner.mounts.lock().unwrap_or_else(|e| e.into_inner());
        mounts.insert(owner.to_string(), router);
        match merge(&mounts) {
            Ok(merged) => {
                *self
                    .inner
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = merged;
                Ok(Mount {
                    server: self.clone(),
                    owner: owner.to_string(),
                })
            }
            Err(message) => {
                mounts.remove(owner);
                Err(format!(
                    "`{owner}` cannot serve its routes on {}: {message}",
                    self.inner.address
                ))
            }
        }
    }

    fn unmount(&self, owner: &str) {
        let mut mounts = self.inner.mounts.lock().unwrap_or_else(|e| e.into_inner());
        if mounts.remove(owner).is_some() {
            if let Ok(merged) = merge(&mounts) {
                *self
                    .inner
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = merged;
            }
        }
    }
}

/// axum panics on overlapping routes; validation prevents them, and this turns any that
/// slip through into an error instead of a crash.
fn merge(mounts: &BTreeMap<String, Router>) -> Result<Router, String> {
    let routers: Vec<Router> = mounts.values().cloned().collect();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        routers
            .into_iter()
            .fold(Router::new(), |merged, router| merged.merge(router))
    }))
    .map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "routes overlap".to_string())
    })
}

/// Routes served while this lives. Holds the server open.
pub struct Mount {
    server: HttpServer,
    owner: String,
}

impl Mount {
    pub fn server(&self) -> &HttpServer {
        &self.server
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.server.unmount(&self.owner);
    }
}

/// Whether two axum route patterns can match the same path: equal after every `{param}`
/// is made anonymous (`/ws/{session}` and `/ws/{id}` collide).
pub fn routes_collide(a: &str, b: &str) -> bool {
    fn shape(route: &str) -> Vec<&str> {
        route
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|segment| {
                if segment.starts_with("{*") {
                    "**"
                } else if segment.starts_with('{') {
                    "*"
                } else {
                    segment
                }
            })
            .collect()
    }
    let (a, b) = (shape(a), shape(b));
    if a.last() == Some(&"**") || b.last() == Some(&"**") {
        let (short, long) = if a.len() <= b.len() {
            (&a, &b)
        } else {
            (&b, &a)
        };
        return short[..short.len() - 1]
            .iter()
            .zip(long.iter())
            .all(|(x, y)| x == y || *x == "*" || *y == "*");
    }
    // A literal segment collides with a parameter too: axum would let `/ws/9999` take the
    // requests `/ws/{session_key}` was meant to get.
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x == y || *x == "*" || *y == "*")
}

/// Build the response for a request that named nothing we serve.
pub fn not_found(what: impl Into<String>) -> Response {
    (axum::http::StatusCode::NOT_FOUND, what.into()).into_response()
}

/// Requires `token` on every route of `router` (when one is configured): as
/// `Authorization: Bearer TOKEN`, or as `?access_token=TOKEN` for clients that cannot set
/// headers (a browser's WebSocket, a microcontroller). Anything else gets 401.
pub fn require_token(router: Router, token: Option<Secret>) -> Router {
    let Some(token) = token else {
        return router;
    };
    let token = Arc::new(token);
    router.route_layer(axum::middleware::from_fn(
        move |request: Request, next: axum::middleware::Next| {
            let token = token.clone();
            async move {
                if presents_token(&request, &token) {
                    next.run(request).await
                } else {
                    (
                        axum::http::StatusCode::UNAUTHORIZED,
                        [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                        "a token is required: send `Authorization: Bearer <token>` or add `?access_token=<token>`\n",
                    )
                        .into_response()
                }
            }
        },
    ))
}

fn presents_token(request: &Request, token: &Secret) -> bool {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        // The scheme is case-insensitive (RFC 7235): `bearer` is as good as `Bearer`.
        .and_then(|value| {
            let (scheme, credentials) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(credentials)
        });
    if header.is_some_and(|candidate| token.matches(candidate.trim())) {
        return true;
    }
    request
        .uri()
        .query()
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter_map(|pair| pair.strip_prefix("access_token="))
        .any(|candidate| token.matches(&percent_decode(candidate)))
}

/// Minimal `%XX` decoding for a token in a query string.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_collisions() {
        assert!(routes_collide("/ws/{session}", "/ws/{id}"));
        assert!(routes_collide("/", "/"));
        assert!(!routes_collide("/ws/{session}", "/session/{id}/{name}"));
        assert!(routes_collide("/files/{*rest}", "/files/a/b"));
        assert!(!routes_collide("/health", "/metrics"));
        // A literal path inside another component's pattern would hijack it.
        assert!(routes_collide("/ws/9999", "/ws/{session_key}"));
        assert!(routes_collide(
            "/session/9999/drivers",
            "/session/{session_key}/{name}"
        ));
        assert!(!routes_collide("/ws/9999", "/session/{session_key}/{name}"));
        assert!(!routes_collide("/race/socket", "/ws/{session_key}"));
    }

    #[tokio::test]
    async fn a_token_guards_every_route_by_header_or_query() {
        let router = || {
            require_token(
                Router::new().route("/doc", axum::routing::get(|| async { "ok" })),
                Some(Secret::new("s3cr%t")),
            )
        };
        let status = |uri: &str, auth: Option<&str>| {
            let mut request = Request::builder().uri(uri);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let request = request.body(axum::body::Body::empty()).unwrap();
            async move { router().oneshot(request).await.unwrap().status().as_u16() }
        };
        assert_eq!(status("/doc", None).await, 401);
        assert_eq!(status("/doc", Some("Bearer wrong")).await, 401);
        assert_eq!(status("/doc", Some("Bearer s3cr%t")).await, 200);
        assert_eq!(status("/doc", Some("bearer s3cr%t")).await, 200, "RFC 7235");
        assert_eq!(status("/doc", Some("BEARER s3cr%t")).await, 200);
        assert_eq!(status("/doc", Some("Basic s3cr%t")).await, 401);
        assert_eq!(status("/doc?access_token=s3cr%25t", None).await, 200);
        assert_eq!(status("/doc?x=1&access_token=s3cr", None).await, 401);
    }

    #[test]
    fn query_tokens_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b+c%zz%"), "a b c%zz%");
    }

    /// One host holding thousands of idle sockets must not lock every other client out.
    #[tokio::test]
    async fn one_peer_gets_its_share_and_no_more() {
        let tcp = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = LimitedListener::new(tcp, 10, 3);
        let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let a = listener.admit(ip).unwrap();
        let _b = listener.admit(ip).unwrap();
        let _c = listener.admit(ip).unwrap();
        assert!(listener.admit(ip).is_none(), "its share is 3");
        assert!(
            listener.admit("10.0.0.7".parse().unwrap()).is_some(),
            "others still get in"
        );
        drop(a);
        assert!(listener.admit(ip).is_some(), "a place given back");
        // Over real sockets: the fourth connection from one peer is closed at once.
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let listener = LimitedListener::new(bind("127.0.0.1:0".parse().unwrap()).unwrap(), 10, 3);
        let address = axum::serve::Listener::local_addr(&listener).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        use tokio::io::AsyncReadExt;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(tokio::net::TcpStream::connect(address).await.unwrap());
        }
        let mut fourth = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(std::time::Duration::from_secs(2), fourth.read(&mut buf))
            .await
            .expect("closed, not left waiting");
        assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
    }

    #[tokio::test]
    async fn connections_past_the_limit_wait_until_one_closes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = tcp.local_addr().unwrap();
        let listener = LimitedListener::new(tcp, 2, 2);
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        async fn ask(stream: &mut tokio::net::TcpStream) -> bool {
            let request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
            stream.write_all(request).await.unwrap();
            let mut buf = [0u8; 256];
            let read =
                tokio::time::timeout(std::time::Duration::from_millis(300), stream.read(&mut buf))
                    .await;
            matches!(read, Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 200"))
        }
        let mut first = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut second = tokio::net::TcpStream::connect(address).await.unwrap();
        assert!(ask(&mut first).await);
        assert!(ask(&mut second).await);
        let mut third = tokio::net::TcpStream::connect(address).await.unwrap();
        assert!(!ask(&mut third).await, "a third connection waits");
        drop(first);
        let mut answered = false;
        for _ in 0..20 {
            let mut buf = [0u8; 256];
            if let Ok(Ok(n)) =
                tokio::time::timeout(std::time::Duration::from_millis(100), third.read(&mut buf))
                    .await
            {
                answered = n > 0 && buf.starts_with(b"HTTP/1.1 200");
                break;
            }
        }
        assert!(answered, "served once a connection closed");
    }
}
