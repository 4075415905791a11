//! Revalidation (`session.revalidate`): once a session's user details are older than that,
//! they are fetched from DingTalk again, so people who left the corp or were deactivated lose
//! access before their cookie expires, and changed details (mobile, departments) reach the app.
//!
//! One DingTalk call per user per interval, whatever the concurrency: requests for the same
//! user wait on that user's slot and share the answer. A DingTalk outage does not log anyone
//! out; the check is retried after [`RETRY_AFTER_FAILURE`].

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::Mutex;

use crate::dingtalk::{DingTalk, DingTalkError, User};
use crate::session::{now_secs, Session};

/// How long to wait before asking DingTalk again after a failed check.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// What a check decided about a session.
#[derive(Debug)]
pub enum Verdict {
    /// Recent enough (or the check could not be done): use the session as it is.
    Fresh,
    /// Re-checked: use (and re-issue) this updated session.
    Updated(Box<Session>),
    /// The user left the corp or was deactivated: treat as logged out.
    Revoked,
}

#[derive(Clone)]
enum Outcome {
    Active(Box<User>),
    Gone,
    Unknown,
}

#[derive(Clone)]
struct Checked {
    at: u64,
    outcome: Outcome,
}

type Slot = Arc<Mutex<Option<Checked>>>;

/// Per-process revalidation state.
pub struct Revalidator {
    every: u64,
    slots: DashMap<String, Slot>,
}

impl Revalidator {
    /// Revalidates every `every` (zero turns it off).
    pub fn new(every: Duration) -> Revalidator {
        Revalidator {
            every: every.as_secs(),
            slots: DashMap::new(),
        }
    }

    /// Checks `session`, calling DingTalk only when its details are older than the interval.
    pub async fn check(&self, dingtalk: &DingTalk, session: &Session) -> Verdict {
        let now = now_secs();
        if self.every == 0 || now.saturating_sub(session.checked_at) < self.every {
            return Verdict::Fresh;
        }
        if self.slots.len() > 100_000 {
            let every = self.every;
            self.slots.retain(|_, slot| {
                slot.try_lock()
                    .map(|c| c.as_ref().is_some_and(|c| now.saturating_sub(c.at) < every))
                    .unwrap_or(true)
            });
        }
        let slot: Slot = self
            .slots
            .entry(session.userid.clone())
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        let checked = match &*guard {
            // Another request for this user checked within the interval: share its answer.
            Some(c) if now.saturating_sub(c.at) < self.every => c.clone(),
            _ => {
                let c = self.ask(dingtalk, &session.userid, now).await;
                *guard = Some(c.clone());
                c
            }
        };
        drop(guard);
        match checked.outcome {
            Outcome::Active(user) => {
                Verdict::Updated(Box::new(session.refreshed(&user, checked.at)))
            }
            Outcome::Gone => Verdict::Revoked,
            Outcome::Unknown => Verdict::Fresh,
        }
    }

    async fn ask(&self, dingtalk: &DingTalk, userid: &str, now: u64) -> Checked {
        let outcome = match dingtalk.user_details(userid).await {
            Ok(user) if user.active == Some(false) => {
                tracing::info!(%userid, "revalidation: user is deactivated; session ended");
                Outcome::Gone
            }
            Ok(user) => Outcome::Active(Box::new(user)),
            Err(DingTalkError::NotInCorp) => {
                tracing::info!(%userid, "revalidation: user left the corp; session ended");
                Outcome::Gone
            }
            Err(e) => {
                tracing::warn!(%userid, error = %e, "revalidation failed; keeping the session for now");
                // Counted as checked `every - RETRY_AFTER_FAILURE` ago: asked again after that.
                let at = now
                    .saturating_sub(self.every)
                    .saturating_add(RETRY_AFTER_FAILURE.as_secs().min(self.every));
                return Checked {
                    at,
                    outcome: Outcome::Unknown,
                };
            }
        };
        Checked { at: now, outcome }
    }
}
