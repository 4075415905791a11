//! The session store: the one seam between the request path and wherever sessions live.
//! Loading a request's session, saving a new or refreshed one, ending one (logout), ending
//! every session of a user (revocation) and the login-`state` replay memory all go through
//! [`Sessions`]; nothing on the request path learns which store it talks to.
//!
//! Today's store is the cookie: the whole session, sealed, travels with the browser
//! (`session.store = "cookie"`). A server-side store keeps the session under its id and puts
//! only the id in the sealed cookie.

use http::HeaderMap;

use crate::clock::Clock;
use crate::session::{CookieCodec, Session, UsedStates};

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
        match self.backend {
            Backend::Cookie => Ok(self.codec.session(headers)),
        }
    }

    /// Stores `session` (new, or refreshed under the same id); returns the `Set-Cookie` value
    /// that hands it to the browser.
    pub async fn save(&self, session: &Session) -> Result<String, StoreError> {
        match self.backend {
            Backend::Cookie => Ok(self.codec.session_cookie(session)),
        }
    }

    /// Ends the request's session (logout); returns the `Set-Cookie` value that deletes it.
    pub async fn end(&self, headers: &HeaderMap) -> Result<String, StoreError> {
        match self.backend {
            // Nothing to delete but the browser's copy.
            Backend::Cookie => {
                let _ = headers;
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
        match self.backend {
            Backend::Cookie => {
                let _ = userid;
                Err(StoreError::NeedsServerStore)
            }
        }
    }

    /// Marks a login `state` (valid until `expires_at`) used; `false` when it was used before
    /// (a replayed callback). Atomic: of two concurrent callbacks with one state, one passes.
    pub async fn consume_state(&self, state: &str, expires_at: u64) -> Result<bool, StoreError> {
        match self.backend {
            Backend::Cookie => {
                Ok(self
                    .used_states
                    .consume(state, expires_at, self.clock().now_secs()))
            }
        }
    }
}
