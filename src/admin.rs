//! The operator's session commands (`dingtalk-auth-proxy sessions list|revoke`): they read the
//! same config as the proxy and talk to the session store directly, so they work whether or
//! not a proxy is running, and act on every replica at once.

use std::fmt::Write;

use crate::clock::Clock;
use crate::config::{Config, Store};
use crate::store::{redis::RedisStore, StoreError};

/// Why a session command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Cookie sessions live only in browsers: there is nothing to list or end.
    #[error("sessions list/revoke need session.store = \"redis\" (cookie sessions live only in the browsers)")]
    NeedsRedis,
    /// The config's Redis settings are unusable.
    #[error("invalid config: {0}")]
    Config(String),
    /// Redis did not answer.
    #[error("{0}")]
    Store(#[from] StoreError),
}

fn store(config: &Config) -> Result<RedisStore, AdminError> {
    if config.session.store != Store::Redis {
        return Err(AdminError::NeedsRedis);
    }
    RedisStore::new(&config.session, Clock::system()).map_err(|e| AdminError::Config(e.to_string()))
}

/// One line per live session (all users, or `userid`'s), then a count.
pub async fn list(config: &Config, userid: Option<&str>) -> Result<String, AdminError> {
    let sessions = store(config)?.list(userid).await?;
    let mut out = String::new();
    for s in &sessions {
        let _ = writeln!(
            out,
            "{}\t{}\tissued={}\texpires={}\tid={}",
            s.userid(),
            s.user.name.as_deref().unwrap_or("-"),
            rfc3339(s.issued_at),
            rfc3339(s.expires_at),
            crate::session::id_hash(&s.id),
        );
    }
    let _ = writeln!(out, "{} session(s)", sessions.len());
    Ok(out)
}

/// Ends every session of `userid`; says how many ended.
pub async fn revoke(config: &Config, userid: &str) -> Result<String, AdminError> {
    let n = store(config)?.revoke_user(userid).await?;
    if let Some(file) = &config.audit.file {
        let mut event = crate::audit::Event::new("revoked")
            .reason(format!("sessions revoke command ({n} session(s))"));
        event.userid = Some(userid.to_string());
        if let Err(e) = crate::audit::append_now(file, &event) {
            eprintln!("dingtalk-auth-proxy: cannot write the audit file {file}: {e}");
        }
    }
    Ok(format!("revoked {n} session(s) of {userid}\n"))
}

/// Seconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}
