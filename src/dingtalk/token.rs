//! The process-wide app access token: fetched once however many callers arrive together
//! (single-flight), refreshed before it runs out, dropped when DingTalk says it is bad, and
//! not re-requested in a storm when the app credentials are wrong.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

// tokio's clock: the same instant in production, and pausable in tests.
use tokio::time::Instant;

use super::DingTalkError;

/// How long a credentials failure is remembered before DingTalk is asked again.
const FAILURE_MEMORY: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Cached {
    token: Arc<str>,
    refresh_at: Instant,
    expires_at: Instant,
}

/// The cache. Reads take a short read lock; refreshes are serialised by an async mutex.
#[derive(Default)]
pub(crate) struct TokenCache {
    cached: RwLock<Option<Cached>>,
    refresh: tokio::sync::Mutex<Option<(Instant, DingTalkError)>>,
}

impl TokenCache {
    /// The current token, fetching one with `fetch` (→ token, lifetime) when needed.
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<Arc<str>, DingTalkError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(String, Duration), DingTalkError>>,
    {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let mut last_failure = self.refresh.lock().await;
        // Whoever held the lock before us may have fetched it already.
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        if let Some((at, err)) = &*last_failure {
            if at.elapsed() < FAILURE_MEMORY {
                return Err(err.clone());
            }
        }
        match fetch().await {
            Ok((token, lifetime)) => {
                *last_failure = None;
                let now = Instant::now();
                // Refresh when 10% (at most 5 min) of the lifetime remains.
                let margin = (lifetime / 10).min(Duration::from_secs(300));
                let token: Arc<str> = token.into();
                let cached = Cached {
                    token: token.clone(),
                    refresh_at: now + lifetime.saturating_sub(margin),
                    expires_at: now + lifetime,
                };
                if let Ok(mut slot) = self.cached.write() {
                    *slot = Some(cached);
                }
                Ok(token)
            }
            Err(e) => {
                if matches!(e, DingTalkError::BadCredentials { .. }) {
                    *last_failure = Some((Instant::now(), e.clone()));
                }
                // A refresh failed but the old token has not expired: keep using it.
                match self.unexpired() {
                    Some(token) => Ok(token),
                    None => Err(e),
                }
            }
        }
    }

    /// Drops the cached token if it is still `bad` (so 50 concurrent failures refetch once).
    pub(crate) fn invalidate(&self, bad: &str) {
        if let Ok(mut slot) = self.cached.write() {
            if slot.as_ref().is_some_and(|c| &*c.token == bad) {
                *slot = None;
            }
        }
    }

    fn fresh(&self) -> Option<Arc<str>> {
        let slot = self.cached.read().ok()?;
        let c = slot.as_ref()?;
        (Instant::now() < c.refresh_at).then(|| c.token.clone())
    }

    fn unexpired(&self) -> Option<Arc<str>> {
        let slot = self.cached.read().ok()?;
        let c = slot.as_ref()?;
        (Instant::now() < c.expires_at).then(|| c.token.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// 200 concurrent cold callers share one fetch.
    #[tokio::test]
    async fn single_flight() {
        let cache = Arc::new(TokenCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(|| async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok(("t1".to_string(), Duration::from_secs(7200)))
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(&*t.await.unwrap().unwrap(), "t1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// Invalidation only drops the token that failed; bad credentials are remembered.
    #[tokio::test]
    async fn invalidate_and_failure_memory() {
        let cache = TokenCache::default();
        let ok =
            |t: &'static str| move || async move { Ok((t.to_string(), Duration::from_secs(7200))) };
        assert_eq!(&*cache.get(ok("a")).await.unwrap(), "a");
        cache.invalidate("old");
        assert_eq!(&*cache.get(ok("b")).await.unwrap(), "a");
        cache.invalidate("a");
        assert_eq!(&*cache.get(ok("b")).await.unwrap(), "b");
        cache.invalidate("b");
        let bad = || async { Err(DingTalkError::BadCredentials { errmsg: "x".into() }) };
        assert!(cache.get(bad).await.is_err());
        // Remembered: the next caller does not reach DingTalk.
        let r = cache
            .get(|| async { Err::<(String, Duration), _>(DingTalkError::Busy) })
            .await;
        assert!(matches!(r, Err(DingTalkError::BadCredentials { .. })));
    }

    /// On tokio's paused clock: a token is refreshed once 90% of its life (at most five
    /// minutes before its end) has passed; a failed refresh keeps the old token until it
    /// expires; a credentials failure is remembered for FAILURE_MEMORY, then asked again.
    #[tokio::test(start_paused = true)]
    async fn refresh_expiry_and_failure_memory_follow_the_clock() {
        let cache = TokenCache::default();
        let ok =
            |t: &'static str| move || async move { Ok((t.to_string(), Duration::from_secs(7200))) };
        let busy = || async { Err::<(String, Duration), _>(DingTalkError::Busy) };
        assert_eq!(&*cache.get(ok("a")).await.unwrap(), "a");
        // 7200 s lifetime: refreshed from 6900 s on (5 min margin).
        tokio::time::advance(Duration::from_secs(6899)).await;
        assert_eq!(&*cache.get(ok("b")).await.unwrap(), "a");
        tokio::time::advance(Duration::from_secs(1)).await;
        // Refresh due but DingTalk is busy: the old token is still good until 7200 s.
        assert_eq!(&*cache.get(busy).await.unwrap(), "a");
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!(matches!(cache.get(busy).await, Err(DingTalkError::Busy)));
        assert_eq!(&*cache.get(ok("b")).await.unwrap(), "b");

        cache.invalidate("b");
        let bad = || async { Err(DingTalkError::BadCredentials { errmsg: "x".into() }) };
        assert!(cache.get(bad).await.is_err());
        tokio::time::advance(FAILURE_MEMORY - Duration::from_millis(1)).await;
        assert!(matches!(
            cache.get(ok("c")).await,
            Err(DingTalkError::BadCredentials { .. })
        ));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(&*cache.get(ok("c")).await.unwrap(), "c");
    }
}
