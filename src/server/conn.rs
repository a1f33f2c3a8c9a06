//! The accept loop and every connection's life, on hyper's HTTP/1 directly (in place of
//! `axum::serve`, which closes no connection by itself: 20,000 idle sockets exhausted the
//! descriptors, issue 26). It owns:
//!
//! - the **header timeout** ([`ConnLimits::header_timeout`]): from a connection's accept, or
//!   from the first byte of a later request, to the end of the request head; past it the
//!   connection is dropped (slowloris);
//! - the **idle timeout** ([`ConnLimits::idle_timeout`]): a keep-alive connection with no
//!   request in flight and no bytes since its last response is shut down gracefully;
//! - the **connection cap** ([`ConnLimits::max_connections`]): at the cap, the connection
//!   waiting longest with no request in flight (idle, or still sending its head) is closed to
//!   make room, so a health check always gets in; when every connection has a request in
//!   flight, the new one is closed at once. A failed accept for want of descriptors closes
//!   one the same way;
//! - the **error shape of hyper's own answers**: hyper answers a request head it cannot
//!   parse (400, 414 URI too long, 431 head too large) by itself, with an empty body, before
//!   any route runs; [`Tracked`] puts the documented `{"error":{...}}` body on those
//!   ([`ApiError::for_unparsed_head`]);
//! - graceful shutdown: when `stop` turns true the listener closes, every connection finishes
//!   the request it has in flight and closes, and [`run`] returns once all are gone.
//!
//! Hyper's own `header_read_timeout` is off: in hyper 1.12 it also runs while a keep-alive
//! connection waits for its next request, so it would cut every idle connection at the
//! header timeout. The phase of each connection ([`Conn`]) is kept here instead: a request
//! in flight from the service call until its response body is dropped; else waiting for a
//! head (since the accept, or since the first byte after a response) or idle (since the
//! last response).
//!
//! Metrics: `hermes_http_connections_open` (gauge; never above the cap) and
//! `hermes_http_connections_closed_total{reason}` with reason `header_timeout`,
//! `idle_timeout`, `evicted` (closed to make room), `refused` (at the cap, none idle),
//! `shutdown` or `ended` (the client closed, or the connection ended after an error answer).
//! The body timeout is the API's (`api::middleware`): it answers 408 in the error shape.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tower::ServiceExt;

use super::ConnLimits;
use crate::api::error::ApiError;

const OPEN: &str = "hermes_http_connections_open";
const CLOSED: &str = "hermes_http_connections_closed_total";

/// How long a connection asked to shut down gracefully while idle may take to go.
const GRACE_WHEN_IDLE: Duration = Duration::from_secs(1);

/// Accepts connections on `listener` and serves `app` on each until `stop` turns true, then
/// stops accepting and returns once every connection has finished its request and closed.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    stop: watch::Receiver<bool>,
) {
    let registry = Arc::new(Registry::new(limits.max_connections));
    // Every connection task holds a sender; `recv` answers `None` once all are gone.
    let (alive, mut all_gone) = mpsc::channel::<()>(1);
    let mut accept_stop = stop.clone();
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = accept_stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or memory: free one and retry shortly.
                let freed = registry.evict_oldest_idle();
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %e, closed_an_idle_connection = freed, "accept failed");
                    last_warning = Some(Instant::now());
                }
                let pause = if freed { 5 } else { 100 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
                continue;
            }
        };
        let Some(conn) = registry.admit() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let task = Task {
            conn,
            limits: limits.clone(),
            registry: registry.clone(),
            stop: stop.clone(),
            _alive: alive.clone(),
        };
        tokio::spawn(task.serve(stream, app.clone()));
    }
    drop(listener);
    drop(alive);
    let _ = all_gone.recv().await;
}

/// Accept errors about one connection (gone before it was accepted), not about the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Raises this process's soft limit on open descriptors to the hard limit, and warns when
/// `max_connections` (plus room for the bundle's files, the store and the runtime) is more
/// than it holds: past it, accepting fails and the cap never comes into play.
pub fn raise_descriptor_limit(max_connections: usize) {
    const OTHER_DESCRIPTORS: u64 = 256;
    let soft = match crate::descriptors::raise_soft_limit() {
        Ok(soft) => soft,
        Err(error) => {
            tracing::warn!(%error, "cannot read the descriptor limit");
            return;
        }
    };
    let needed = max_connections as u64 + OTHER_DESCRIPTORS;
    if soft < needed {
        tracing::warn!(
            descriptor_limit = soft,
            max_connections,
            "--max-connections is above what the descriptor limit holds (with {OTHER_DESCRIPTORS} to spare): \
             raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower --max-connections"
        );
    }
}

/// The open connections, for the cap.
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    cap: usize,
    epoch: Instant,
}

impl Registry {
    fn new(cap: usize) -> Self {
        metrics::gauge!(OPEN).set(0.0);
        Self {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            cap: cap.max(1),
            epoch: Instant::now(),
        }
    }

    /// A new connection, making room at the cap; `None`: refused (every connection busy).
    fn admit(&self) -> Option<Arc<Conn>> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() >= self.cap && !Self::evict_from(&mut conns) {
            metrics::counter!(CLOSED, "reason" => "refused").increment(1);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(id, self.epoch));
        conns.insert(id, conn.clone());
        metrics::gauge!(OPEN).set(conns.len() as f64);
        Some(conn)
    }

    /// Closes the connection waiting longest with no request in flight; false when none is.
    fn evict_oldest_idle(&self) -> bool {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let freed = Self::evict_from(&mut conns);
        metrics::gauge!(OPEN).set(conns.len() as f64);
        freed
    }

    /// A linear scan: the cap is thousands, and it runs only at the cap.
    fn evict_from(conns: &mut HashMap<u64, Arc<Conn>>) -> bool {
        let victim = conns
            .values()
            .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
            // Ties (accepted in the same millisecond): the older connection.
            .min_by_key(|c| (c.since.load(Ordering::Acquire), c.id))
            .map(|c| c.id);
        let Some(conn) = victim.and_then(|id| conns.remove(&id)) else {
            return false;
        };
        conn.evicted.store(true, Ordering::Release);
        conn.wake.notify_one();
        true
    }

    fn remove(&self, id: u64) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.remove(&id).is_some() {
            metrics::gauge!(OPEN).set(conns.len() as f64);
        }
    }
}

/// What one connection is doing, shared by its task, its IO, its requests and the registry.
struct Conn {
    id: u64,
    epoch: Instant,
    /// Requests from the service call until their response body is dropped.
    in_flight: AtomicUsize,
    /// With no request in flight: waiting for (or reading) a request head, not idle.
    head: AtomicBool,
    /// Milliseconds after `epoch` when the present wait began.
    since: AtomicU64,
    /// Closed by the registry to make room.
    evicted: AtomicBool,
    /// Woken when the wait changes or the registry evicts.
    wake: Notify,
}

/// Why a connection's task closes it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reason {
    Ended,
    HeaderTimeout,
    IdleTimeout,
    Evicted,
    Shutdown,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Self::Ended => "ended",
            Self::HeaderTimeout => "header_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::Evicted => "evicted",
            Self::Shutdown => "shutdown",
        }
    }
}

impl Conn {
    fn new(id: u64, epoch: Instant) -> Self {
        let conn = Self {
            id,
            epoch,
            in_flight: AtomicUsize::new(0),
            // A new connection waits for its first request head.
            head: AtomicBool::new(true),
            since: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            wake: Notify::new(),
        };
        conn.since.store(conn.now_ms(), Ordering::Release);
        conn
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Bytes arrived: on an idle connection they start a request head.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && !self.head.load(Ordering::Acquire) {
            self.since.store(self.now_ms(), Ordering::Release);
            self.head.store(true, Ordering::Release);
            self.wake.notify_one();
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head.store(false, Ordering::Release);
    }

    fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.since.store(self.now_ms(), Ordering::Release);
            self.head.store(false, Ordering::Release);
            self.wake.notify_one();
        }
    }

    /// When the present wait runs out, and why; `None` while a request is in flight.
    /// `closing`: when a graceful shutdown was asked for (an idle connection gets
    /// [`GRACE_WHEN_IDLE`] from then to go).
    fn deadline(&self, limits: &ConnLimits, closing: Option<Instant>) -> Option<(Instant, Reason)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.epoch + Duration::from_millis(self.since.load(Ordering::Acquire));
        if self.head.load(Ordering::Acquire) {
            return Some((since + limits.header_timeout, Reason::HeaderTimeout));
        }
        Some(match closing {
            Some(at) => (since.max(at) + GRACE_WHEN_IDLE, Reason::IdleTimeout),
            None => (since + limits.idle_timeout, Reason::IdleTimeout),
        })
    }
}

/// A request in flight on `Conn`, until dropped with its response body (or with the service
/// future, when the connection goes first).
struct InFlight(Arc<Conn>);

impl InFlight {
    fn start(conn: &Arc<Conn>) -> Self {
        conn.request_started();
        Self(conn.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that holds its request in flight until hyper has taken all of it.
struct Guarded {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One connection's task.
struct Task {
    conn: Arc<Conn>,
    limits: ConnLimits,
    registry: Arc<Registry>,
    stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

impl Task {
    async fn serve(mut self, stream: TcpStream, app: Router) {
        let io = TokioIo::new(Tracked {
            io: stream,
            conn: self.conn.clone(),
            pending: Vec::new(),
            written: 0,
        });
        let service = {
            let conn = self.conn.clone();
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let in_flight = InFlight::start(&conn);
                let app = app.clone();
                async move {
                    let resp = app
                        .oneshot(req.map(Body::new))
                        .await
                        .unwrap_or_else(|e| match e {});
                    Ok::<_, Infallible>(resp.map(|inner| Guarded {
                        inner,
                        _in_flight: in_flight,
                    }))
                }
            })
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The timeouts are this module's (see the module doc); the timer is there for hyper's.
        builder.timer(TokioTimer::new()).header_read_timeout(None);
        // Boxed so that dropping it (closing the socket) can come before the bookkeeping below.
        let mut http = Box::pin(builder.serve_connection(io, service));

        let conn = self.conn.clone();
        let mut reason = Reason::Ended;
        let mut closing: Option<Instant> = None;
        let mut stopping = false;
        loop {
            if conn.evicted.load(Ordering::Acquire) && reason != Reason::Evicted {
                reason = Reason::Evicted;
                if conn.in_flight.load(Ordering::Acquire) == 0 {
                    break;
                }
                http.as_mut().graceful_shutdown();
                closing.get_or_insert_with(Instant::now);
            }
            let deadline = conn.deadline(&self.limits, closing);
            tokio::select! {
                result = http.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = sleep_until(deadline.map(|(at, _)| at)) => {
                    // The wait may have changed since the deadline was taken: take it again.
                    match conn.deadline(&self.limits, closing) {
                        Some((at, why)) if Instant::now() >= at => {
                            if reason == Reason::Ended {
                                reason = why;
                            }
                            if why == Reason::HeaderTimeout || closing.is_some() {
                                break; // nothing in flight: dropping closes the socket
                            }
                            http.as_mut().graceful_shutdown();
                            closing = Some(Instant::now());
                        }
                        _ => {}
                    }
                }
                // The wait changed, or the registry evicted it: the loop's top sees to both.
                _ = conn.wake.notified() => {}
                _ = self.stop.wait_for(|s| *s), if !stopping => {
                    stopping = true;
                    if reason == Reason::Ended {
                        reason = Reason::Shutdown;
                    }
                    http.as_mut().graceful_shutdown();
                    closing.get_or_insert_with(Instant::now);
                }
            }
        }
        drop(http);
        self.registry.remove(conn.id);
        metrics::counter!(CLOSED, "reason" => reason.label()).increment(1);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The socket as hyper sees it: reads mark the connection's activity, and hyper's own
/// empty-bodied answer to an unparsable head is replaced by the documented error shape.
struct Tracked {
    io: TcpStream,
    conn: Arc<Conn>,
    /// The replacement answer, and how much of it went out.
    pending: Vec<u8>,
    written: usize,
}

impl Tracked {
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes `head` in place of writing it when it is hyper's own error answer.
    fn replace(&mut self, cx: &mut Context<'_>, head: &[u8]) -> Option<Poll<io::Result<usize>>> {
        let answer = documented_answer(head)?;
        self.pending = answer;
        self.written = 0;
        if let Poll::Ready(Err(e)) = self.drain(cx) {
            return Some(Poll::Ready(Err(e)));
        }
        // Whatever is left goes out on the next write, flush or shutdown.
        Some(Poll::Ready(Ok(head.len())))
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.on_read();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        if let Some(done) = this.replace(cx, buf) {
            return done;
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        // hyper's error answer is a head alone, in one slice.
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(head), None) = (filled.next(), filled.next())
            && let Some(done) = this.replace(cx, head)
        {
            return done;
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// `head` with the documented error body when it is hyper's own answer to an unparsable
/// request head: a whole head, no body, status 400, 414 or 431, `content-length: 0` and no
/// `content-type` (every error of the application's is JSON, so it has one).
fn documented_answer(head: &[u8]) -> Option<Vec<u8>> {
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let status: u16 = std::str::from_utf8(status).ok()?.parse().ok()?;
    let error = ApiError::for_unparsed_head(status)?;
    let text = std::str::from_utf8(head).ok()?.strip_suffix("\r\n\r\n")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut kept = Vec::new();
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => return None,
            "content-length" if value.trim() == "0" => empty = true,
            "content-length" => return None,
            "connection" => {}
            _ => kept.push(line),
        }
    }
    if !empty {
        return None;
    }
    tracing::debug!(status, "a request head hyper could not parse");
    let body = serde_json::to_vec(&error.body()).ok()?;
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for line in kept {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::documented_answer;

    #[test]
    fn hypers_own_error_answers_get_the_documented_body() {
        let head = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(documented_answer(head).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(
            head.contains("connection: close") && head.contains("date: "),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "uri_too_long");

        // The application's own answers are left alone: they carry a body and its type.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(documented_answer(ours).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(documented_answer(ok).is_none());
        let with_body =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n{}";
        assert!(documented_answer(with_body).is_none());
    }
}
