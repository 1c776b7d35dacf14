//! The HTTP listener (/healthz, /readyz, /metrics, SCIM): the router served over HTTP/1.1 with
//! hyper, behind a connection cap and a time limit on every phase of a connection, so that slow or
//! idle clients cannot hold descriptors for long:
//!
//! - at `http.max_connections`, a new connection takes the slot of the connection that has waited
//!   longest for a request, which is closed: slow clients cannot keep others out by holding every
//!   slot, since a prompt client's request arrives long before the flood has cycled through them
//!   all; when every connection has a request in progress, the new one gets a short 503 and is
//!   closed at once;
//! - `header_timeout`: hyper's own header read timer, from the moment a request is awaited (on a
//!   new connection or after the previous response) until its head is complete, so it also bounds
//!   how long a kept-alive connection waits for its next request;
//! - `body_timeout`: from the head to the end of the body; a late body is answered with 408;
//! - `request_timeout`: from the head to the response head; a late handler is answered with 503;
//! - `idle_timeout`: a connection with no request in progress on which nothing is read or written
//!   for this long is closed (a kept-alive connection between requests, or a client that does not
//!   read its response).
//!
//! Only HTTP/1 is spoken, as before: hyper's HTTP/1 builder is used directly because the
//! version-detecting builder reads the first bytes before hyper's header timer starts.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::accept::{Acceptor, RateLimitedWarn, WARN_INTERVAL, suppressed_note};
use crate::config::HttpConfig;

/// Written, without waiting, to a connection refused at the cap before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 21\r\n\
connection: close\r\nretry-after: 1\r\n\r\ntoo many connections\n";

/// Displaced connections not yet closed at most; beyond it newcomers are refused, so that the
/// descriptors in use never exceed the cap by more than this.
const MAX_CLOSING: usize = 32;

/// Serves `router` on `listener` until `shutdown` turns true, then lets open connections finish
/// their request (new ones are refused by the closed socket) for at most `drain`, and closes the
/// rest.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cfg: HttpConfig,
    drain: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let cap = cfg.max_connections.max(1);
    let slots = Arc::new(Slots::new(cap));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(cfg.header_timeout).keep_alive(true);
    let shared = Arc::new(Shared { router, cfg, builder });
    let mut full = RateLimitedWarn::new(WARN_INTERVAL);
    let mut acceptor = Acceptor::new(listener, "HTTP");
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            x = acceptor.next() => x,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        while tasks.try_join_next().is_some() {}
        let permit = match slots.admit() {
            Admission::Free(p) => p,
            Admission::Displaced(p) => {
                metrics::counter!("idgate_http_connections_displaced_total").increment(1);
                if let Some(suppressed) = full.check() {
                    tracing::warn!(
                        %peer,
                        "HTTP connections at http.max_connections ({cap}): a new one took the slot of the \
                         connection that waited longest for a request {}",
                        suppressed_note(suppressed)
                    );
                }
                p
            }
            Admission::Full => {
                // Refused at once: a connection left waiting for a slot would hold its descriptor.
                let _ = stream.try_write(BUSY);
                drop(stream);
                metrics::counter!("idgate_connections_refused_total", "listener" => "http").increment(1);
                if let Some(suppressed) = full.check() {
                    tracing::warn!(
                        %peer,
                        "HTTP connection refused: http.max_connections ({cap}) reached {}",
                        suppressed_note(suppressed)
                    );
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = slots.register(permit);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _held = Held(conn.clone());
            connection(stream, peer, conn, shared, shutdown).await;
        });
    }
    drop(acceptor); // closes the listening socket: new connections are refused while the rest drain
    let open = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, open).await.is_err() {
        tracing::info!(still_open = tasks.len(), "HTTP connections closed at the end of the shutdown bound");
        tasks.abort_all();
    }
}

/// What every connection of a listener shares.
struct Shared {
    router: Router,
    cfg: HttpConfig,
    builder: http1::Builder,
}

/// The connection cap, and the connections that hold a slot while waiting for a request, ordered
/// by how long they have waited, so that a newcomer finds the one to displace at once.
struct Slots {
    free: Arc<Semaphore>,
    origin: Instant,
    /// Keyed by (milliseconds since `origin` when the wait began, connection id).
    waiting: Mutex<BTreeMap<(u64, u64), Arc<Conn>>>,
    next_id: AtomicU64,
    /// Displaced connections whose task has not ended yet.
    closing: AtomicUsize,
}

enum Admission {
    Free(OwnedSemaphorePermit),
    /// The slot of a connection told to close.
    Displaced(OwnedSemaphorePermit),
    Full,
}

impl Slots {
    fn new(cap: usize) -> Self {
        Slots {
            free: Arc::new(Semaphore::new(cap)),
            origin: Instant::now(),
            waiting: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            closing: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, BTreeMap<(u64, u64), Arc<Conn>>> {
        // The map stays consistent whatever panicked while holding it: every change is one call.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection: a free one, else that of the connection that has waited
    /// longest for a request (its first, or the next on a kept-alive connection), else none.
    fn admit(&self) -> Admission {
        if let Ok(p) = self.free.clone().try_acquire_owned() {
            return Admission::Free(p);
        }
        if self.closing.load(Ordering::Relaxed) >= MAX_CLOSING {
            return Admission::Full;
        }
        let mut waiting = self.waiting();
        while let Some(entry) = waiting.first_entry() {
            let victim = entry.remove();
            let Some(permit) = victim.permit.lock().unwrap_or_else(|e| e.into_inner()).take() else { continue };
            victim.displaced.store(true, Ordering::Relaxed);
            self.closing.fetch_add(1, Ordering::Relaxed);
            victim.close.notify_one();
            return Admission::Displaced(permit);
        }
        Admission::Full
    }

    fn register(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Arc<Conn> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let since = self.now_ms();
        let conn = Arc::new(Conn::new(id, since, permit, self.clone()));
        self.waiting().insert((since, id), conn.clone());
        metrics::gauge!("idgate_http_connections").increment(1.0);
        conn
    }

    /// A request of `conn` is being handled: it is no longer a candidate.
    fn started(&self, conn: &Conn) {
        let mut waiting = self.waiting();
        if conn.busy.fetch_add(1, Ordering::Relaxed) == 0 {
            waiting.remove(&(conn.waiting_since.load(Ordering::Relaxed), conn.id));
        }
    }

    /// The request is over: `conn` waits for the next one from now on.
    fn finished(&self, conn: &Arc<Conn>) {
        let now = self.now_ms();
        let mut waiting = self.waiting();
        if conn.busy.fetch_sub(1, Ordering::Relaxed) == 1 && !conn.released.load(Ordering::Relaxed) {
            conn.waiting_since.store(now, Ordering::Relaxed);
            waiting.insert((now, conn.id), conn.clone());
        }
    }

    /// The connection is gone: its slot is free again (unless it was given away).
    fn release(&self, conn: &Conn) {
        {
            let mut waiting = self.waiting();
            conn.released.store(true, Ordering::Relaxed);
            waiting.remove(&(conn.waiting_since.load(Ordering::Relaxed), conn.id));
        }
        conn.permit.lock().unwrap_or_else(|e| e.into_inner()).take();
        if conn.displaced.load(Ordering::Relaxed) {
            self.closing.fetch_sub(1, Ordering::Relaxed);
        }
        metrics::gauge!("idgate_http_connections").decrement(1.0);
    }
}

/// A connection's task holds this; however the task ends, its slot is given back.
struct Held(Arc<Conn>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.slots.release(&self.0);
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<Conn>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Tracked { inner: stream, conn: state.clone() });
    let svc = {
        let shared = shared.clone();
        let state = state.clone();
        hyper::service::service_fn(move |req| handle(req, peer, shared.clone(), state.clone()))
    };
    let conn = shared.builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    // Header timeouts, resets and malformed requests: the client's business.
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = shutdown.wait_for(|stop| *stop), if !stopping => {
                // Finish the request in progress, if any, then close; bounded by `serve`'s drain.
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = state.idle_for(shared.cfg.idle_timeout) => {
                tracing::debug!(%peer, "HTTP connection idle; closing");
                return;
            }
            _ = state.close.notified() => {
                tracing::debug!(%peer, "HTTP connection displaced by a newer one while waiting for a request");
                return;
            }
        }
    }
}

/// One request: connection info for the handlers, the body deadline, the request deadline.
async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    conn: Arc<Conn>,
) -> Result<Response<Body>, Infallible> {
    let _busy = conn.busy();
    let cfg = &shared.cfg;
    let late_body = Arc::new(AtomicBool::new(false));
    let (mut parts, body) = req.into_parts();
    // What `into_make_service_with_connect_info::<SocketAddr>()` gave the handlers.
    parts.extensions.insert(ConnectInfo(peer));
    let body = TimedBody::new(body, Instant::now() + cfg.body_timeout, late_body.clone());
    let (method, path) = (parts.method.clone(), parts.uri.path().to_owned());
    let answer =
        tokio::time::timeout(cfg.request_timeout, shared.router.clone().oneshot(Request::from_parts(parts, body)));
    let res = answer.await;
    // A late body fails the handler's read however it reports it; the client was too slow.
    if late_body.load(Ordering::Relaxed) {
        tracing::debug!(%peer, %method, path, "HTTP request body not received within http.body_timeout");
        metrics::counter!("idgate_http_timeouts_total", "phase" => "body").increment(1);
        return Ok(short(StatusCode::REQUEST_TIMEOUT, "request body not received in time\n"));
    }
    Ok(match res {
        Ok(Ok(r)) => r,
        Ok(Err(never)) => match never {},
        Err(_) => {
            tracing::info!(%peer, %method, path, "HTTP request not answered within http.request_timeout");
            metrics::counter!("idgate_http_timeouts_total", "phase" => "request").increment(1);
            short(StatusCode::SERVICE_UNAVAILABLE, "request took too long\n")
        }
    })
}

/// A short plain-text answer that also closes the connection: what remains of the request on
/// the wire cannot be trusted to arrive.
fn short(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The request body, failing once its deadline passes with data still missing.
struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    /// Armed on the first wait for data, so that bodies read at once cost no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    late: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("request body not received within http.body_timeout")]
struct BodyTimeout;

impl TimedBody {
    fn new(inner: Incoming, deadline: Instant, late: Arc<AtomicBool>) -> Self {
        TimedBody { inner, deadline, sleep: None, late }
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.late.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's state shared with the listener: when it last moved a byte, whether a request
/// is being handled and since when it has been waiting for one, and its slot.
struct Conn {
    id: u64,
    origin: Instant,
    /// Milliseconds since `origin`.
    last: AtomicU64,
    /// Milliseconds since the listener's origin (the key in [`Slots::waiting`]).
    waiting_since: AtomicU64,
    busy: AtomicUsize,
    /// The slot; taken by a newcomer when this connection is displaced.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    displaced: AtomicBool,
    released: AtomicBool,
    close: Notify,
    slots: Arc<Slots>,
}

impl Conn {
    fn new(id: u64, since: u64, permit: OwnedSemaphorePermit, slots: Arc<Slots>) -> Self {
        Conn {
            id,
            origin: Instant::now(),
            last: AtomicU64::new(0),
            waiting_since: AtomicU64::new(since),
            busy: AtomicUsize::new(0),
            permit: Mutex::new(Some(permit)),
            displaced: AtomicBool::new(false),
            released: AtomicBool::new(false),
            close: Notify::new(),
            slots,
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    fn is_waiting(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0
    }

    fn busy(self: &Arc<Self>) -> Busy {
        self.slots.started(self);
        Busy(self.clone())
    }

    /// Resolves once no request is being handled and nothing has moved for `idle`. A handler at
    /// work is bounded by the request timeout instead.
    async fn idle_for(&self, idle: Duration) {
        loop {
            if !self.is_waiting() {
                tokio::time::sleep(idle).await;
                continue;
            }
            let due = self.last() + idle;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// A request being handled; its end counts as activity, and the wait for the next request
/// starts there.
struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.slots.finished(&self.0);
    }
}

/// The socket, noting every read or write that moves data.
struct Tracked {
    inner: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Short limits; each test lowers the one it is about.
    fn cfg() -> HttpConfig {
        HttpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            max_connections: 8,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
        }
    }

    fn router() -> Router {
        Router::new()
            .route("/peer", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "done"
                }),
            )
            .route(
                "/brief",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    "finished"
                }),
            )
            .route("/large", get(|| async { vec![b'x'; 64 << 20] }))
    }

    struct Server {
        addr: SocketAddr,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(cfg: HttpConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, router(), cfg, Duration::from_secs(5), rx));
        Server { addr, stop, task }
    }

    /// Reads until the server closes; `None` when that takes longer than `within`.
    async fn read_to_close(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        let deadline = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    async fn get_close(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
        String::from_utf8_lossy(&read_to_close(&mut s, Duration::from_secs(10)).await.expect("answered")).into_owned()
    }

    #[tokio::test]
    async fn handlers_see_the_peer_address() {
        let srv = start(cfg()).await;
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        let local = s.local_addr().unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let text = String::from_utf8(read_to_close(&mut s, Duration::from_secs(10)).await.unwrap()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with(&local.to_string()), "{text}");
    }

    #[tokio::test]
    async fn a_late_handler_is_answered_with_503() {
        let srv = start(HttpConfig { request_timeout: Duration::from_millis(500), ..cfg() }).await;
        let started = Instant::now();
        let text = get_close(srv.addr, "/slow").await;
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.ends_with("request took too long\n"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        // A quick request on the same listener is unaffected.
        assert!(get_close(srv.addr, "/peer").await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn an_idle_kept_alive_connection_is_closed() {
        let srv = start(HttpConfig { idle_timeout: Duration::from_millis(700), ..cfg() }).await;
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let answered = Instant::now();
        // Nothing more is sent: the idle timer (shorter than the header timer here) closes it.
        let rest = read_to_close(&mut s, Duration::from_secs(4)).await.expect("closed while idle");
        assert!(rest.is_empty());
        let idle = answered.elapsed();
        assert!(idle >= Duration::from_millis(600) && idle < Duration::from_secs(2), "{idle:?}");
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_its_answer_is_dropped() {
        let srv = start(HttpConfig { idle_timeout: Duration::from_secs(1), ..cfg() }).await;
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"GET /large HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        // The answer fills the socket buffers and stalls; the connection must not stay open.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let got = read_to_close(&mut s, Duration::from_secs(5)).await.expect("closed");
        assert!(got.len() < 64 << 20, "the whole answer arrived: {} bytes", got.len());
    }

    #[tokio::test]
    async fn shutdown_lets_the_request_in_progress_finish_and_closes_the_listener() {
        let srv = start(cfg()).await;
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"GET /brief HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        srv.stop.send(true).unwrap();
        let text = String::from_utf8(read_to_close(&mut s, Duration::from_secs(5)).await.unwrap()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("finished"), "{text}");
        tokio::time::timeout(Duration::from_secs(5), srv.task).await.expect("serve returns").unwrap();
        assert!(TcpStream::connect(srv.addr).await.is_err(), "the listening socket is closed");
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_waiting_connection_gives_its_slot_to_a_new_one() {
        let srv = start(HttpConfig { max_connections: 2, ..cfg() }).await;
        let mut first = TcpStream::connect(srv.addr).await.unwrap();
        first.write_all(b"GET /pe").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut second = TcpStream::connect(srv.addr).await.unwrap();
        second.write_all(b"GET /pe").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Both wait for the rest of their request head: the older one goes.
        assert!(get_close(srv.addr, "/peer").await.starts_with("HTTP/1.1 200"));
        assert!(read_to_close(&mut first, Duration::from_millis(500)).await.is_some(), "the oldest was closed");
        assert!(read_to_close(&mut second, Duration::from_millis(200)).await.is_none(), "the other one stays");
    }

    #[tokio::test]
    async fn when_every_connection_has_a_request_in_progress_a_new_one_is_refused_at_once() {
        let srv = start(HttpConfig { max_connections: 2, request_timeout: Duration::from_millis(1500), ..cfg() }).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(srv.addr).await.unwrap();
            s.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
            held.push(s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        let got = read_to_close(&mut s, Duration::from_millis(500)).await.expect("refused at once");
        assert!(got.starts_with(b"HTTP/1.1 503"), "{}", String::from_utf8_lossy(&got));
        assert!(got.ends_with(b"too many connections\n"), "{}", String::from_utf8_lossy(&got));
        // The requests in progress were not disturbed: they end at their own timeout.
        for s in &mut held {
            let got = read_to_close(s, Duration::from_secs(3)).await.expect("answered");
            assert!(got.ends_with(b"request took too long\n"), "{}", String::from_utf8_lossy(&got));
        }
        assert!(get_close(srv.addr, "/peer").await.starts_with("HTTP/1.1 200"), "slots come back");
    }
}
