//! The login audit trail (`[audit] file`): one JSON line per event — `login`, `login_failed`,
//! `logout`, `denied`, `revoked` — with the time (RFC 3339), who, how (`flow`), from where
//! (`ip`, `user_agent`), why (`reason`) and a short hash of the session id. Never a secret,
//! token, code, cookie value or session id.
//!
//! Events are handed to a writer task through a bounded queue, so the request path never waits
//! on the disk; when the queue is full the event is counted as dropped and a warning logged.
//! The file is opened for appending and reopened on SIGUSR1 (after logrotate moved it).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// How many events may wait for the writer before new ones are dropped.
const QUEUE: usize = 4096;

/// One audit event.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Event {
    /// When, RFC 3339 (UTC, milliseconds).
    pub time: String,
    /// `login`, `login_failed`, `logout`, `denied` or `revoked`.
    pub event: &'static str,
    /// The DingTalk userid, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userid: Option<String>,
    /// The user's display name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `inapp` (免登 in the DingTalk client) or `qr` (DingTalk's OAuth page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<&'static str>,
    /// The client's address (see `trusted_proxies`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The client's User-Agent (at most 256 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Why, for failures, denials and revocations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A short one-way hash of the session id (`session::id_hash`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The request id (`X-Request-Id`), when the event belongs to a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Event {
    /// An event of kind `event`, stamped now.
    pub fn new(event: &'static str) -> Event {
        Event {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            event,
            ..Event::default()
        }
    }

    /// The session's user and hashed id.
    pub fn session(mut self, s: &crate::session::Session) -> Event {
        self.userid = Some(s.userid().to_string());
        self.name = s.user.name.clone();
        if !s.id.is_empty() {
            self.session = Some(crate::session::id_hash(&s.id));
        }
        self
    }

    /// The client: address and (shortened) User-Agent.
    pub fn client(mut self, ip: std::net::IpAddr, headers: &http::HeaderMap) -> Event {
        self.ip = Some(ip.to_string());
        self.user_agent = headers.get(http::header::USER_AGENT).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(256)
                .collect()
        });
        self.request_id = headers
            .get(&crate::request_id::X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self
    }

    /// Why.
    pub fn reason(mut self, reason: impl Into<String>) -> Event {
        self.reason = Some(reason.into());
        self
    }

    /// The login flow, from the login state's `flow` (`inapp` or `oauth`).
    pub fn flow(mut self, flow: &str) -> Event {
        self.flow = Some(if flow == "inapp" { "inapp" } else { "qr" });
        self
    }

    /// The JSON line.
    pub fn line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// The reason of a `denied` event for `path` (at most 200 characters of it).
pub fn denied_reason(path: &str) -> String {
    let shown: String = path.chars().take(200).collect();
    format!("not allowed by [access]: {shown}")
}

/// Where the trail goes.
#[derive(Clone, Debug)]
enum Target {
    Stdout,
    File(PathBuf),
}

impl Target {
    fn parse(file: &str) -> Target {
        if file == "-" {
            Target::Stdout
        } else {
            Target::File(PathBuf::from(file))
        }
    }
}

/// The audit trail: off, or a queue to its writer task. Cheap to clone.
#[derive(Clone, Default)]
pub struct Audit {
    tx: Option<mpsc::Sender<Event>>,
    dropped: Arc<AtomicU64>,
}

/// Why the audit file could not be opened at start-up.
#[derive(Debug, thiserror::Error)]
#[error("audit.file {path}: {source}")]
pub struct AuditError {
    path: String,
    source: std::io::Error,
}

impl Audit {
    /// No audit trail.
    pub fn off() -> Audit {
        Audit::default()
    }

    /// Opens `file` (`-` = stdout) and starts the writer task. Must run inside tokio.
    pub async fn start(file: &str) -> Result<Audit, AuditError> {
        let target = Target::parse(file);
        let out = open(&target).await.map_err(|source| AuditError {
            path: file.to_string(),
            source,
        })?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_events(target, out, rx));
        Ok(Audit {
            tx: Some(tx),
            dropped: Arc::default(),
        })
    }

    /// Queues `event` for writing; never waits.
    pub fn record(&self, event: Event) {
        let Some(tx) = &self.tx else {
            return;
        };
        if tx.try_send(event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "audit events dropped: the writer cannot keep up"
                );
            }
        }
    }

    /// Whether events are recorded.
    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }
}

/// Appends one event line to `file` now (the `sessions revoke` command, which has no writer
/// task); `-` is stdout.
pub fn append_now(file: &str, event: &Event) -> std::io::Result<()> {
    use std::io::Write;
    match Target::parse(file) {
        Target::Stdout => std::io::stdout().write_all(event.line().as_bytes()),
        Target::File(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .write_all(event.line().as_bytes()),
    }
}

enum Out {
    Stdout(tokio::io::Stdout),
    File(tokio::fs::File),
}

async fn open(target: &Target) -> std::io::Result<Out> {
    Ok(match target {
        Target::Stdout => Out::Stdout(tokio::io::stdout()),
        Target::File(path) => Out::File(
            tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await?,
        ),
    })
}

async fn write_events(target: Target, mut out: Out, mut rx: mpsc::Receiver<Event>) {
    #[cfg(unix)]
    let mut reopen =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).ok();
    loop {
        #[cfg(unix)]
        let reopen_requested = async {
            match reopen.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let reopen_requested = std::future::pending::<Option<()>>();
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { return };
                let line = event.line();
                // Flushed line by line: a reader (or a crash) sees whole events.
                let written = match &mut out {
                    Out::Stdout(s) => async {
                        s.write_all(line.as_bytes()).await?;
                        s.flush().await
                    }
                    .await,
                    Out::File(f) => async {
                        f.write_all(line.as_bytes()).await?;
                        f.flush().await
                    }
                    .await,
                };
                if let Err(e) = written {
                    tracing::warn!(error = %e, "cannot write the audit trail");
                }
            }
            _ = reopen_requested => {
                match open(&target).await {
                    Ok(new) => {
                        out = new;
                        tracing::info!("audit file reopened (SIGUSR1)");
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot reopen the audit file; keeping the old one"),
                }
            }
        }
    }
}
