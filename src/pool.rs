//! The connections to the upstream app: HTTP/1.1 connections made with hyper's own
//! connection-level client (`hyper::client::conn::http1`), kept per thread for reuse.
//!
//! Why not hyper-util's pooled `Client`: it keys one shared pool by scheme and host (a hash
//! and a lock on every request), and spawns a task per request to put a connection back once
//! its answer is read. Here a thread takes the most recently used idle connection of its own
//! (no lock, nothing hashed), and the connection goes back when the answer's body has been read
//! to its end — the step the body's reader (the client connection) takes anyway.
//!
//! A connection is reused only when hyper says it can take a request right now
//! (`is_ready`): a connection still finishing an exchange, closed by the app, or idle longer
//! than [`IDLE_TIMEOUT`] is dropped instead (hyper closes it). A request that could not be
//! written on a reused connection is sent again on a new one; one that was written is never
//! repeated (it may have had an effect).

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

/// The request body as sent upstream: the client's, or the client's under a size cap.
pub type UpstreamBody = http_body_util::Either<Incoming, http_body_util::Limited<Incoming>>;

/// How long an idle connection may wait for its next request before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Most idle connections one thread keeps.
const MAX_IDLE_PER_THREAD: usize = 256;

/// Why no answer came from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection could be made within the connect timeout.
    #[error("connect to {0} timed out")]
    ConnectTimeout(String),
    /// The connection could not be made.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The upstream's address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The connection failed during the exchange.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// The idle connections of every thread to one upstream.
pub struct Pool {
    /// `host:port`, as `TcpStream::connect` takes it (a name is resolved at each connect).
    addr: String,
    connect_timeout: Duration,
    idle: thread_local::ThreadLocal<RefCell<Vec<Idle>>>,
}

struct Idle {
    tx: SendRequest<UpstreamBody>,
    since: Instant,
}

impl Pool {
    /// A pool for the upstream at `addr` (`host:port`).
    pub fn new(addr: String, connect_timeout: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            addr,
            connect_timeout,
            idle: thread_local::ThreadLocal::new(),
        })
    }

    /// Sends `req` (origin-form URI, `Host` set) and returns the answer; its body gives the
    /// connection back to this thread's pool once read to the end.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, PoolError> {
        if let Some(mut tx) = self.checkout() {
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok(self.wrap(resp, tx)),
                Err(mut e) => match e.take_message() {
                    // Never written: the app has not seen it, so a new connection may carry it.
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let mut tx = self.connect().await?;
        let resp = tx.send_request(req).await?;
        Ok(self.wrap(resp, tx))
    }

    fn wrap(
        self: &Arc<Self>,
        resp: Response<Incoming>,
        tx: SendRequest<UpstreamBody>,
    ) -> Response<PooledBody> {
        // After `101 Switching Protocols` the connection belongs to the upgrade.
        let reusable = resp.status() != http::StatusCode::SWITCHING_PROTOCOLS;
        resp.map(|inner| PooledBody {
            inner,
            back: reusable.then(|| (tx, self.clone())),
        })
    }

    /// This thread's most recently used connection that can take a request now.
    fn checkout(&self) -> Option<SendRequest<UpstreamBody>> {
        let mut idle = self.idle.get_or_default().borrow_mut();
        while let Some(c) = idle.pop() {
            if c.tx.is_ready() && c.since.elapsed() < IDLE_TIMEOUT {
                return Some(c.tx);
            }
            // Closed, past its idle time, or not done with its last exchange: dropped, and
            // hyper closes the connection.
        }
        None
    }

    fn checkin(&self, tx: SendRequest<UpstreamBody>) {
        if tx.is_closed() {
            return;
        }
        let mut idle = self.idle.get_or_default().borrow_mut();
        if idle.len() >= MAX_IDLE_PER_THREAD {
            idle.remove(0);
        }
        idle.push(Idle {
            tx,
            since: Instant::now(),
        });
    }

    async fn connect(&self) -> Result<SendRequest<UpstreamBody>, PoolError> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(&self.addr),
        )
        .await
        .map_err(|_| PoolError::ConnectTimeout(self.addr.clone()))?
        .map_err(|source| PoolError::Connect {
            addr: self.addr.clone(),
            source,
        })?;
        let _ = stream.set_nodelay(true);
        let (tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(tx)
    }
}

/// The upstream's answer body; the connection goes back to the pool when it has been read to
/// its end (or had none).
pub struct PooledBody {
    inner: Incoming,
    back: Option<(SendRequest<UpstreamBody>, Arc<Pool>)>,
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some((tx, pool)) = self.back.take() {
            pool.checkin(tx);
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            // A broken body: its connection is not reused.
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // An empty body (HEAD, 204, 304) is never polled; one dropped half-read is not reused.
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}
