//! Client connections: the accept loop, what one connection may cost (`[limits]`), and the
//! graceful drain on shutdown.
//!
//! - A request head must be complete within `header_read_timeout`: hyper's own timer for
//!   HTTP/1.1 (it also runs while a keep-alive connection waits for its next request), and ours
//!   for a connection that has not finished its first request by then, whatever it speaks.
//! - A head larger than `max_header_bytes` gets 431 from hyper (HTTP/1.1) or is refused by the
//!   HTTP/2 header-list limit.
//! - A connection with no bytes moving for `idle_timeout` is shut down gracefully: requests in
//!   progress finish first.
//! - Past `max_connections`, a new connection gets `503` with `Retry-After` and is closed at
//!   once, so file descriptors stay free for the admin listener and for health checks.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::config::LimitsConfig;
use crate::response::Body;

/// How long connections may take to finish after shutdown starts.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// What a connection past `max_connections` is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
Retry-After: 1\r\nConnection: close\r\nContent-Length: 41\r\n\r\ntoo many connections; try again shortly\r\n";

/// Serves connections from `listener` with `handle(request, peer)` until `shutdown` completes,
/// then drains them (at most [`DRAIN_DEADLINE`]). `rejected` is called for every connection
/// turned away at the cap.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: &LimitsConfig,
    handle: H,
    rejected: impl Fn() + Send + 'static,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let builder = Arc::new(builder(limits));
    let cap =
        (limits.max_connections > 0).then(|| Arc::new(Semaphore::new(limits.max_connections)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<Infallible>(1);
    let timeouts = Timeouts {
        first_request: limits.header_read_timeout,
        idle: limits.idle_timeout,
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            (stream, peer) = accept(&listener) => {
                let permit = match &cap {
                    Some(cap) => match cap.clone().try_acquire_owned() {
                        Ok(permit) => Some(permit),
                        Err(_) => {
                            rejected();
                            tokio::spawn(turn_away(stream));
                            continue;
                        }
                    },
                    None => None,
                };
                let _ = stream.set_nodelay(true);
                let builder = builder.clone();
                let handle = handle.clone();
                let stop = stop_rx.clone();
                let done = done_tx.clone();
                // The socket holds the permit and the drain guard: an upgraded (WebSocket)
                // connection keeps counting until its socket closes.
                let held = Held { _permit: permit, _done: done };
                tokio::spawn(async move {
                    drive(&builder, stream, held, peer, handle, timeouts, stop).await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_tx);
    if tokio::time::timeout(DRAIN_DEADLINE, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open after {DRAIN_DEADLINE:?}; no longer waiting for them"
        );
    }
}

/// The next connection. An accept error (out of file descriptors and the like) is logged and
/// retried after a short pause, never spun on. Cancel-safe. Every listener of ours — the
/// proxy's, the admin one, and the fake DingTalk's and demo's — accepts through this.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(conn) => return conn,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying shortly");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The hyper server settings for `limits`.
fn builder(limits: &LimitsConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    b
}

#[derive(Clone, Copy)]
struct Timeouts {
    first_request: Duration,
    idle: Duration,
}

/// Serves one connection until it ends, closing it when it is idle, when it has not sent a
/// whole request head in time, or (gracefully) when the server shuts down.
async fn drive<H, F>(
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    held: Held,
    peer: SocketAddr,
    handle: H,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let activity = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let seen = requests.clone();
    let service = hyper::service::service_fn(move |req| {
        seen.fetch_add(1, Ordering::Relaxed);
        // Boxed per request: hyper keeps the slot for a request's future allocated for as long
        // as the connection lives, so an unboxed (kilobytes large) future would be paid by
        // every idle keep-alive connection.
        let fut = Box::pin(handle(req, peer));
        async move { Ok::<_, Infallible>(fut.await) }
    });
    let io = TokioIo::new(Counted {
        inner: stream,
        activity: activity.clone(),
        _held: held,
    });
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let first_deadline = tokio::time::sleep(timeouts.first_request);
    tokio::pin!(first_deadline);
    let mut idle =
        tokio::time::interval_at(tokio::time::Instant::now() + timeouts.idle, timeouts.idle);
    let mut last = 0;
    let mut closing = false;
    let mut waiting_first = true;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            () = &mut first_deadline, if waiting_first => {
                waiting_first = false;
                if requests.load(Ordering::Relaxed) == 0 {
                    tracing::debug!(%peer, "no complete request head in time; closing");
                    return;
                }
            }
            _ = idle.tick(), if !closing => {
                let now = activity.load(Ordering::Relaxed);
                if now == last {
                    tracing::debug!(%peer, "idle; closing");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                last = now;
            }
            _ = stop.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Tells a connection past the cap to come back later, then closes it (bounded in time).
async fn turn_away(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await
    })
    .await;
}

/// What a connection holds while its socket is open: its place under `max_connections` and
/// the guard the drain waits for.
struct Held {
    _permit: Option<OwnedSemaphorePermit>,
    _done: mpsc::Sender<Infallible>,
}

pin_project_lite::pin_project! {
    /// A stream that counts the reads and writes that moved bytes (the idle clock's input).
    struct Counted<T> {
        #[pin]
        inner: T,
        activity: Arc<AtomicU64>,
        _held: Held,
    }
}

impl<T: AsyncRead> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.fetch_add(1, Ordering::Relaxed);
        }
        res
    }
}

impl<T: AsyncWrite> AsyncWrite for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.fetch_add(1, Ordering::Relaxed);
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.fetch_add(1, Ordering::Relaxed);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
