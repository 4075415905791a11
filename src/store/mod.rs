//! The session store: the one seam between the request path and wherever sessions live.
//! Loading a request's session, saving a new or refreshed one, ending one (logout), ending
//! every session of a user (revocation) and the login-`state` replay memory all go through
//! [`Sessions`]; nothing on the request path learns which store it talks to.
//!
//! Two stores: the cookie (`session.store = "cookie"`, the default), where the whole session,
//! sealed, travels with the browser; and Redis ([`redis`]), where the session lives under a
//! random id and the sealed cookie carries only that id — so logout and revocation take
//! effect on every replica at once.

pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::clock::Clock;
use crate::config::{Config, Store};
use crate::metrics::Metrics;
use crate::session::{CookieCodec, Sealed, Session, UsedStates};
use crate::user::User;
use redis::{RedisConfigError, RedisStore};

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store is unreachable or too slow; the request cannot be decided now.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The operation needs a server-side store (`session.store = "redis"`).
    #[error("this needs session.store = \"redis\"; cookie sessions live only in the browser")]
    NeedsServerStore,
}

/// Where sessions live.
enum Backend {
    /// The sealed cookie carries the whole session.
    Cookie,
    /// Redis keeps the session; the sealed cookie carries its id.
    Redis(RedisStore),
}

/// Loads, saves, ends and revokes sessions, and remembers used login states.
pub struct Sessions {
    codec: CookieCodec,
    backend: Backend,
    used_states: UsedStates,
}

impl Sessions {
    /// Sessions kept in the sealed cookie itself.
    pub fn cookie(codec: CookieCodec) -> Sessions {
        Sessions {
            codec,
            backend: Backend::Cookie,
            used_states: UsedStates::default(),
        }
    }

    /// The store `config` asks for. No I/O.
    pub fn from_config(
        config: &Config,
        codec: CookieCodec,
        metrics: Arc<Metrics>,
    ) -> Result<Sessions, RedisConfigError> {
        Ok(match config.session.store {
            Store::Cookie => Sessions::cookie(codec),
            Store::Redis => {
                let store =
                    RedisStore::new(&config.session, codec.clock().clone())?.with_metrics(metrics);
                Sessions {
                    codec,
                    backend: Backend::Redis(store),
                    used_states: UsedStates::default(),
                }
            }
        })
    }

    /// The Redis store, when sessions live there.
    pub fn redis(&self) -> Option<&RedisStore> {
        match &self.backend {
            Backend::Redis(r) => Some(r),
            Backend::Cookie => None,
        }
    }

    /// Whether the store answers now (`/readyz`); the cookie store always does.
    pub async fn ready(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Cookie => Ok(()),
            Backend::Redis(r) => r.ping().await,
        }
    }

    /// The cookie codec (also seals the per-login state cookies).
    pub fn codec(&self) -> &CookieCodec {
        &self.codec
    }

    /// The clock expiry is judged by.
    pub fn clock(&self) -> &Clock {
        self.codec.clock()
    }

    /// The request's valid, unexpired session, if any.
    pub async fn load(&self, headers: &HeaderMap) -> Result<Option<Session>, StoreError> {
        Ok(self.load_reissued(headers).await?.map(|(s, _)| s))
    }

    /// [`Sessions::load`], with the `Set-Cookie` value that re-issues the session cookie under
    /// the current secret when it was sealed under one of `session.previous_secrets`.
    pub async fn load_reissued(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(Session, Option<String>)>, StoreError> {
        match &self.backend {
            Backend::Cookie => Ok(self.codec.session_sealed(headers).map(|(s, by)| {
                let reissue = (by == Sealed::Previous).then(|| self.codec.session_cookie(&s));
                (s, reissue)
            })),
            Backend::Redis(r) => match self.codec.session_ref_sealed(headers) {
                // No cookie of ours: no need to ask Redis.
                None => Ok(None),
                Some((id, by)) => Ok(r.load(&id.userid, &id.id).await?.map(|s| {
                    let reissue =
                        (by == Sealed::Previous).then(|| self.codec.session_ref_cookie(&s));
                    (s, reissue)
                })),
            },
        }
    }

    /// Stores `session` (new, or refreshed under the same id); returns the `Set-Cookie` value
    /// that hands it to the browser.
    pub async fn save(&self, session: &Session) -> Result<String, StoreError> {
        match &self.backend {
            Backend::Cookie => Ok(self.codec.session_cookie(session)),
            Backend::Redis(r) => {
                r.save(session).await?;
                Ok(self.codec.session_ref_cookie(session))
            }
        }
    }

    /// Stores `session`'s refreshed details under its id (revalidation); the `Set-Cookie`
    /// value to send, if the browser's copy must change. A session ended meanwhile stays
    /// ended.
    pub async fn refresh(&self, session: &Session) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Cookie => Ok(Some(self.codec.session_cookie(session))),
            Backend::Redis(r) => r.refresh(session).await.map(|()| None),
        }
    }

    /// Ends the request's session (logout); returns the `Set-Cookie` value that deletes it.
    pub async fn end(&self, headers: &HeaderMap) -> Result<String, StoreError> {
        match &self.backend {
            // Nothing to delete but the browser's copy.
            Backend::Cookie => Ok(self.codec.clear_session_cookie()),
            Backend::Redis(r) => {
                if let Some(id) = self.codec.session_ref(headers) {
                    r.end(&id.userid, &id.id).await?;
                }
                Ok(self.codec.clear_session_cookie())
            }
        }
    }

    /// The `Set-Cookie` value that deletes the session cookie (a revoked session).
    pub fn clear_cookie(&self) -> String {
        self.codec.clear_session_cookie()
    }

    /// Ends every session of `userid`; how many ended.
    pub async fn revoke_user(&self, userid: &str) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Cookie => Err(StoreError::NeedsServerStore),
            Backend::Redis(r) => r.revoke_user(userid).await,
        }
    }

    /// Claims the DingTalk check of `userid` for `every`: true for exactly one replica
    /// sharing the store (always true for the cookie store, which shares nothing).
    pub async fn claim_check(&self, userid: &str, every: Duration) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Cookie => Ok(true),
            Backend::Redis(r) => r.claim_check(userid, every).await,
        }
    }

    /// Puts `user`'s current details into every stored session of theirs (no-op for cookies:
    /// each browser's copy is refreshed when it comes by).
    pub async fn refresh_user(&self, user: &User, at: u64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Cookie => Ok(()),
            Backend::Redis(r) => r.refresh_user(user, at).await,
        }
    }

    /// Marks a login `state` (valid until `expires_at`) used; `false` when it was used before
    /// (a replayed callback). Atomic: of two concurrent callbacks with one state, one passes.
    pub async fn consume_state(&self, state: &str, expires_at: u64) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Cookie => {
                Ok(self
                    .used_states
                    .consume(state, expires_at, self.clock().now_secs()))
            }
            Backend::Redis(r) => r.consume_state(state, expires_at).await,
        }
    }
}
