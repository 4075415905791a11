//! Revalidation (`session.revalidate`): once a session's user details are older than that,
//! they are fetched from DingTalk again, so people who left the corp or were deactivated lose
//! access before their cookie expires, and changed details (mobile, departments) reach the app.
//!
//! The request path never waits for DingTalk: a stale session starts one background check per
//! user (however many requests arrive) and is used as it is meanwhile; later requests see the
//! answer (an updated session, re-issued as a cookie, or a revoked one). A DingTalk outage
//! does not log anyone out; the check is retried after [`RETRY_AFTER_FAILURE`].

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use crate::dingtalk::{DingTalk, DingTalkError, User};
use crate::session::{now_secs, Session};

/// How long to wait before asking DingTalk again after a failed check.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// What a check decided about a session.
#[derive(Debug)]
pub enum Verdict {
    /// Recent enough, or not known yet: use the session as it is.
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

/// Per-process revalidation state. Cheap to clone.
#[derive(Clone)]
pub struct Revalidator {
    every: u64,
    checked: Arc<DashMap<String, Checked>>,
    in_flight: Arc<DashMap<String, ()>>,
}

impl Revalidator {
    /// Revalidates every `every` (zero turns it off).
    pub fn new(every: Duration) -> Revalidator {
        Revalidator {
            every: every.as_secs(),
            checked: Arc::new(DashMap::new()),
            in_flight: Arc::new(DashMap::new()),
        }
    }

    /// Judges `session` from what is known now; starts a background check when it is stale.
    pub fn check(&self, dingtalk: &DingTalk, session: &Session) -> Verdict {
        let now = now_secs();
        if self.every == 0 || now.saturating_sub(session.checked_at) < self.every {
            return Verdict::Fresh;
        }
        // Another request's check, newer than this session's details, answers for it.
        if let Some(c) = self.checked.get(&session.userid) {
            if c.at > session.checked_at && now.saturating_sub(c.at) < self.every {
                return match &c.outcome {
                    Outcome::Active(user) => {
                        Verdict::Updated(Box::new(session.refreshed(user, c.at)))
                    }
                    Outcome::Gone => Verdict::Revoked,
                    Outcome::Unknown => Verdict::Fresh,
                };
            }
        }
        if self.in_flight.insert(session.userid.clone(), ()).is_none() {
            let this = self.clone();
            let dingtalk = dingtalk.clone();
            let userid = session.userid.clone();
            tokio::spawn(async move {
                let checked = this.ask(&dingtalk, &userid).await;
                this.prune(now);
                this.checked.insert(userid.clone(), checked);
                this.in_flight.remove(&userid);
            });
        }
        Verdict::Fresh
    }

    async fn ask(&self, dingtalk: &DingTalk, userid: &str) -> Checked {
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
                // Counted as checked long enough ago to be asked again after the retry delay.
                let now = now_secs();
                let at = now
                    .saturating_sub(self.every)
                    .saturating_add(RETRY_AFTER_FAILURE.as_secs().min(self.every));
                return Checked {
                    at,
                    outcome: Outcome::Unknown,
                };
            }
        };
        Checked {
            at: now_secs(),
            outcome,
        }
    }

    /// Keeps the map from growing without bound: old answers are forgotten.
    fn prune(&self, now: u64) {
        if self.checked.len() > 100_000 {
            let every = self.every;
            self.checked.retain(|_, c| now.saturating_sub(c.at) < every);
        }
    }
}
