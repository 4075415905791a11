//! dingtalk-auth-proxy: DingTalk (钉钉) login in front of any intranet web app, as a reverse
//! proxy or as the target of nginx `auth_request` (Caddy `forward_auth`, Traefik `forwardAuth`).
//!
//! # Layout
//! - [`config`]: the contract's configuration keys, loading (figment) and validation.
//! - [`dingtalk`]: the DingTalk server-API client and its process-wide app-token cache.
//! - [`user`]: the [`User`](user::User) and the one table of identity fields.
//! - [`session`]: the session and login-state cookies (encrypted, authenticated).
//! - [`store`]: the session-store seam: load, save, end, revoke, login-state replay memory.
//! - [`clock`]: the injectable wall clock every expiry is judged by.
//! - [`admin`]: the operator's `sessions list|revoke` commands.
//! - [`doctor`]: the operator's `doctor` checklist: the DingTalk app's settings, checked
//!   against DingTalk, each failure with its fix.
//! - [`init`]: the operator's `init`: a first commented config file (mode 0600, new secret).
//! - [`audit`]: the login audit trail (`[audit] file`), written off the request path.
//! - [`request_id`]: `X-Request-Id`, kept or made, on every log line of the request.
//! - [`login`]: our endpoints under `auth_prefix`: login, callback, verify, userinfo, logout.
//! - [`pages`]: the HTML pages we show ourselves.
//! - [`redirect`]: the hostile `rd` parameter, reduced to a same-origin path.
//! - [`identity`]: stripping and setting the identity headers.
//! - [`assertion`]: the signed identity JWT for upstreams, its keys, the JWKS, the token cache.
//! - [`path`]: canonical paths, the one form every app server reads alike.
//! - [`access`]: `[access]` rules: allowed users and departments, `skip_auth` paths.
//! - [`forwarded`]: `trusted_proxies`: whose `X-Forwarded-*` and URI headers count.
//! - [`route`]: `[[routes]]`: which app a request is for, with its headers and policy.
//! - [`proxy`]: forwarding to the upstream (hop-by-hop, `X-Forwarded-*`, WebSocket).
//! - [`pool`]: the upstream connections, kept per thread for reuse.
//! - [`app`]: the shared state; the current session and the one access decision both modes use.
//! - [`server`]: the routing of each request (strip → decide → forward) and the listeners.
//! - [`workers`]: thread per core: more listeners on the same port, each on its own thread.
//! - [`conn`]: the accept loop, per-connection limits (`[limits]`), graceful drain.
//! - [`metrics`]: Prometheus counters for the admin listener.
//! - [`revalidate`]: periodic re-checks of sessions against DingTalk (`session.revalidate`).
//! - [`response`]: small helpers for building our own responses.
//! - `fake` (feature `fake`): a faithful fake DingTalk for tests and the demo.
//! - `demo` (feature `fake`): the demo's echo upstream and the wiring of the demo.
//!
//! Tests and examples start a proxy in-process with [`start`].

pub mod access;
pub mod admin;
pub mod app;
pub mod assertion;
pub mod audit;
pub mod clock;
pub mod config;
pub mod conn;
#[cfg(feature = "fake")]
pub mod demo;
pub mod dingtalk;
pub mod doctor;
#[cfg(feature = "fake")]
pub mod fake;
pub mod forwarded;
pub mod identity;
pub mod init;
pub mod login;
pub mod metrics;
pub mod pages;
pub mod path;
pub mod pool;
pub mod proxy;
pub mod redirect;
pub mod request_id;
pub mod response;
pub mod revalidate;
pub mod route;
pub mod server;
pub mod session;
pub mod store;
pub mod user;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;

pub use app::{App, StartError};
pub use config::{Config, ConfigError};

/// Logs to stderr at `info` (or as `RUST_LOG` says), as text or one JSON object per line:
/// the binary's and the demo's setup.
pub fn init_logging(format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        config::LogFormat::Json => builder.json().with_current_span(true).init(),
        // Colour only for a person at a terminal, never into files or journald.
        config::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// A proxy running in this process (tests, examples).
pub struct Running {
    /// The proxy's bound address.
    pub addr: SocketAddr,
    /// The admin listener's address, when one was configured.
    pub admin_addr: Option<SocketAddr>,
    /// The application state (metrics, DingTalk client).
    pub app: App,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    workers: Vec<workers::Worker>,
}

impl Running {
    /// Stops accepting, drains connections, and waits for the server task and every worker
    /// thread.
    pub async fn shutdown(mut self) {
        for w in &mut self.workers {
            w.stop();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        for w in self.workers.drain(..) {
            w.join().await;
        }
    }
}

/// Why [`start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The proxy could not be built.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The audit file could not be opened.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
}

/// Binds `config.listen` (and `admin_listen`), builds the proxy and serves it in a spawned
/// task. With port 0 and no `public_url`, `public_url` becomes `http://<bound address>`.
pub async fn start(config: Config) -> Result<Running, RunError> {
    start_with_clock(config, clock::Clock::system()).await
}

/// [`start`], judging every expiry by `clock` (tests move a manual clock instead of waiting).
pub async fn start_with_clock(config: Config, clock: clock::Clock) -> Result<Running, RunError> {
    start_inner(config, clock, 1).await
}

/// [`start`] with `threads` proxy listeners: this task serves one, and each of `threads - 1`
/// more threads runs its own single-threaded runtime with its own listener on the same
/// address (`SO_REUSEPORT`: the kernel spreads new connections over them) — the binary's
/// thread-per-core mode, see [`workers`].
pub async fn start_threads(config: Config, threads: usize) -> Result<Running, RunError> {
    start_inner(config, clock::Clock::system(), threads.max(1)).await
}

async fn start_inner(
    mut config: Config,
    clock: clock::Clock,
    threads: usize,
) -> Result<Running, RunError> {
    let listener = if threads > 1 {
        workers::listener(config.listen).map_err(|source| RunError::Bind {
            addr: config.listen,
            source,
        })?
    } else {
        bind(config.listen).await?
    };
    let addr = listener.local_addr().map_err(|source| RunError::Bind {
        addr: config.listen,
        source,
    })?;
    config.listen = addr;
    let admin = match config.admin_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    let audit = match &config.audit.file {
        Some(file) => audit::Audit::start(file).await?,
        None => audit::Audit::off(),
    };
    let app = App::build(config, clock, audit)?;
    let mut spawned = Vec::new();
    for i in 1..threads {
        let worker = workers::Worker::spawn(i, addr, app.clone())
            .map_err(|source| RunError::Bind { addr, source })?;
        spawned.push(worker);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_all(listener, admin, app.clone(), async {
        let _ = stopped.await;
    }));
    Ok(Running {
        addr,
        admin_addr,
        app,
        stop: Some(stop),
        task,
        workers: spawned,
    })
}

/// Serves the proxy (and the admin listener) until `shutdown` completes.
pub async fn serve_all(
    listener: tokio::net::TcpListener,
    admin: Option<tokio::net::TcpListener>,
    app: App,
    shutdown: impl Future<Output = ()>,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    if let Some(admin) = admin {
        let mut rx = rx.clone();
        tokio::spawn(server::serve_admin(admin, app.clone(), async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }));
    }
    let main = server::serve(listener, app, async {
        shutdown.await;
        let _ = tx.send(true);
    });
    main.await;
    drop(rx);
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, RunError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}
