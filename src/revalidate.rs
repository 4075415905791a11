//! Revalidation (`session.revalidate`): once a session's user details are older than that,
//! they are fetched from DingTalk again, so people who left the corp or were deactivated lose
//! access before their cookie expires, and changed details (mobile, departments) reach the app.
//!
//! The first request that finds a session stale is served as it is and starts one background
//! check for the user (however many requests arrive); requests of that user arriving while the
//! check runs wait for its answer (at most `dingtalk.timeout`), so at most that one stale
//! request passes. The answer is an updated session (re-issued as a cookie) or a revocation.
//!
//! A revocation sticks: once DingTalk says the user is gone, every session of that user issued
//! before that moment is refused on this replica until it expires — only a new login (which
//! DingTalk must approve) gets the user back in. A DingTalk outage does not log anyone out; the
//! check is retried after [`RETRY_AFTER_FAILURE`].

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::watch;

use crate::audit::{Audit, Event};
use crate::clock::Clock;
use crate::dingtalk::{DingTalk, DingTalkError, User};
use crate::metrics::Metrics;
use crate::session::Session;
use crate::store::{Sessions, StoreError};

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
    /// How long a request waits for a check already running for its user.
    wait: Duration,
    /// Sessions live at most this long: a revocation older than that has nothing left to stop.
    ttl: u64,
    checked: Arc<DashMap<String, Checked>>,
    /// Users DingTalk reported gone, with when: their sessions issued earlier are refused.
    gone: Arc<DashMap<String, u64>>,
    /// Checks running now; the receiver turns `true` when the check's answer is recorded.
    in_flight: Arc<DashMap<String, watch::Receiver<bool>>>,
    clock: Clock,
    audit: Audit,
    metrics: Arc<Metrics>,
}

impl Revalidator {
    /// Revalidates every `every` (zero turns it off); a request waits at most `wait` for a
    /// check already running; sessions last at most `ttl`. Time is read from `clock`.
    pub fn new(
        every: Duration,
        wait: Duration,
        ttl: Duration,
        clock: Clock,
        audit: Audit,
        metrics: Arc<Metrics>,
    ) -> Revalidator {
        Revalidator {
            every: every.as_secs(),
            wait,
            ttl: ttl.as_secs(),
            checked: Arc::new(DashMap::new()),
            gone: Arc::new(DashMap::new()),
            in_flight: Arc::new(DashMap::new()),
            clock,
            audit,
            metrics,
        }
    }

    /// Judges `session`: refused for good once its user was reported gone; otherwise from the
    /// newest check, starting one when the session is stale (see the module doc for who waits).
    pub async fn check(
        &self,
        dingtalk: &DingTalk,
        store: &Arc<Sessions>,
        session: &Session,
    ) -> Verdict {
        if self.every == 0 {
            return Verdict::Fresh;
        }
        if let Some(verdict) = self.known(session) {
            return verdict;
        }
        // Start the one check for this user, or — when one is running (even one started a
        // moment ago by a concurrent request) — wait for its answer, bounded.
        match self.start(dingtalk, store, session.userid()) {
            // This request started the check and is served as it is — unless an answer
            // landed between the look above and the start (then that answer counts).
            None => self.known(session).unwrap_or(Verdict::Fresh),
            Some(mut done) => {
                let _ = tokio::time::timeout(self.wait, done.wait_for(|d| *d)).await;
                self.known(session).unwrap_or(Verdict::Fresh)
            }
        }
    }

    /// The verdict already known for `session`, or `None` when a check is needed.
    fn known(&self, session: &Session) -> Option<Verdict> {
        if let Some(at) = self.gone.get(session.userid()) {
            if session.issued_at < *at {
                return Some(Verdict::Revoked);
            }
        }
        let now = self.clock.now_secs();
        if now.saturating_sub(session.checked_at) < self.every {
            return Some(Verdict::Fresh);
        }
        // Another request's check, newer than this session's details, answers for it.
        let c = self.checked.get(session.userid())?;
        if c.at > session.checked_at && now.saturating_sub(c.at) < self.every {
            return Some(match &c.outcome {
                Outcome::Active(user) => {
                    Verdict::Updated(Box::new(session.refreshed((**user).clone(), c.at)))
                }
                Outcome::Gone => Verdict::Revoked,
                Outcome::Unknown => Verdict::Fresh,
            });
        }
        None
    }

    /// Starts the one background check for `userid` and returns `None`; when one is already
    /// running, returns what to wait on instead. One atomic map entry decides which.
    fn start(
        &self,
        dingtalk: &DingTalk,
        store: &Arc<Sessions>,
        userid: &str,
    ) -> Option<watch::Receiver<bool>> {
        let (tx, rx) = watch::channel(false);
        match self.in_flight.entry(userid.to_string()) {
            dashmap::Entry::Occupied(running) => return Some(running.get().clone()),
            dashmap::Entry::Vacant(v) => {
                v.insert(rx);
            }
        }
        let this = self.clone();
        let dingtalk = dingtalk.clone();
        let store = store.clone();
        let userid = userid.to_string();
        tokio::spawn(async move {
            let checked = this.check_shared(&dingtalk, &store, &userid).await;
            let now = this.clock.now_secs();
            this.prune(now);
            if matches!(checked.outcome, Outcome::Gone) {
                this.gone.insert(userid.clone(), checked.at);
            }
            this.checked.insert(userid.clone(), checked);
            this.in_flight.remove(&userid);
            let _ = tx.send(true);
        });
        None
    }

    /// One check of `userid`, shared through the store with every replica: only the replica
    /// that claims it asks DingTalk (others take "fresh" for an interval; the answer reaches
    /// them through the store), and its answer is written to every stored session of the user
    /// — updated details, or all of them ended.
    async fn check_shared(&self, dingtalk: &DingTalk, store: &Sessions, userid: &str) -> Checked {
        let every = Duration::from_secs(self.every);
        match store.claim_check(userid, every).await {
            Ok(true) => {}
            Ok(false) => {
                return Checked {
                    at: self.clock.now_secs(),
                    outcome: Outcome::Unknown,
                }
            }
            Err(e) => {
                tracing::warn!(%userid, error = %e, "revalidation skipped: session store unavailable");
                return self.failed();
            }
        }
        let checked = self.ask(dingtalk, userid).await;
        let stored = match &checked.outcome {
            Outcome::Active(user) => store.refresh_user(user, checked.at).await,
            Outcome::Gone => match store.revoke_user(userid).await {
                Ok(n) => {
                    tracing::info!(%userid, sessions = n, "revalidation: sessions ended in the store");
                    self.metrics.sessions_ended("revoked", n as u64);
                    Ok(())
                }
                Err(StoreError::NeedsServerStore) => {
                    // Cookie sessions: each is refused when it next comes by.
                    self.metrics.sessions_ended("revoked", 1);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Outcome::Unknown => Ok(()),
        };
        if let Err(e) = stored {
            tracing::warn!(%userid, error = %e, "revalidation answer not stored");
        }
        checked
    }

    /// A check that failed: counted as made long enough ago to be retried after
    /// [`RETRY_AFTER_FAILURE`].
    fn failed(&self) -> Checked {
        let at = self
            .clock
            .now_secs()
            .saturating_sub(self.every)
            .saturating_add(RETRY_AFTER_FAILURE.as_secs().min(self.every));
        Checked {
            at,
            outcome: Outcome::Unknown,
        }
    }

    fn revoked(&self, userid: &str, name: Option<String>, reason: &str) {
        let mut event = Event::new("revoked").reason(reason);
        event.userid = Some(userid.to_string());
        event.name = name;
        self.audit.record(event);
    }

    async fn ask(&self, dingtalk: &DingTalk, userid: &str) -> Checked {
        let outcome = match dingtalk.user_details(userid).await {
            Ok(user) if user.active == Some(false) => {
                tracing::info!(%userid, "revalidation: user is deactivated; session ended");
                self.revoked(userid, user.name, "deactivated in DingTalk (revalidation)");
                Outcome::Gone
            }
            Ok(user) => Outcome::Active(Box::new(user)),
            Err(DingTalkError::NotInCorp) => {
                tracing::info!(%userid, "revalidation: user left the corp; session ended");
                self.revoked(userid, None, "left the corp (revalidation)");
                Outcome::Gone
            }
            Err(e) => {
                tracing::warn!(%userid, error = %e, "revalidation failed; keeping the session for now");
                return self.failed();
            }
        };
        Checked {
            at: self.clock.now_secs(),
            outcome,
        }
    }

    /// Keeps the maps from growing without bound: old answers are forgotten, and a revocation
    /// once every session it could stop has expired.
    fn prune(&self, now: u64) {
        if self.checked.len() > 100_000 {
            let every = self.every;
            self.checked.retain(|_, c| now.saturating_sub(c.at) < every);
        }
        if self.gone.len() > 10_000 {
            let ttl = self.ttl;
            self.gone.retain(|_, at| now.saturating_sub(*at) <= ttl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past their size bounds, the maps forget answers older than `revalidate` and
    /// revocations older than `ttl` (no session they could stop is left), and keep the rest.
    #[test]
    fn pruning_forgets_only_what_can_no_longer_matter() {
        let now = 1_000_000;
        let r = Revalidator::new(
            Duration::from_secs(600),
            Duration::from_secs(1),
            Duration::from_secs(3600),
            Clock::manual(now),
            Audit::off(),
            Arc::new(Metrics::new()),
        );
        for i in 0..10_001u64 {
            r.gone.insert(format!("old{i}"), now - 3601);
        }
        r.gone.insert("recent".into(), now - 3600);
        for i in 0..100_001u64 {
            let checked = Checked {
                at: now - 600,
                outcome: Outcome::Unknown,
            };
            r.checked.insert(format!("u{i}"), checked);
        }
        let fresh = Checked {
            at: now - 599,
            outcome: Outcome::Unknown,
        };
        r.checked.insert("fresh".into(), fresh);
        r.prune(now);
        assert_eq!(r.gone.len(), 1);
        assert!(r.gone.contains_key("recent"));
        assert_eq!(r.checked.len(), 1);
        assert!(r.checked.contains_key("fresh"));
    }

    /// A session issued before its user was reported gone is revoked; one issued at or after
    /// that moment (a new login DingTalk approved) is not.
    #[test]
    fn revocation_applies_to_sessions_issued_before_it() {
        let clock = Clock::manual(10_000);
        let r = Revalidator::new(
            Duration::from_secs(600),
            Duration::from_secs(1),
            Duration::from_secs(3600),
            clock.clone(),
            Audit::off(),
            Arc::new(Metrics::new()),
        );
        let user = User {
            userid: "wangwu".into(),
            ..User::default()
        };
        let old = Session::new(user.clone(), Duration::from_secs(3600), 9_000);
        r.gone.insert("wangwu".into(), 9_500);
        assert!(matches!(r.known(&old), Some(Verdict::Revoked)));
        let new = Session::new(user, Duration::from_secs(3600), 9_500);
        assert!(matches!(r.known(&new), Some(Verdict::Fresh)));
        // Stale details and no answer yet: a check is needed.
        clock.advance(Duration::from_secs(600));
        assert!(r.known(&new).is_none());
    }
}
