//! The wall clock the proxy reads for every expiry it decides (sessions, login states, replay
//! memory, revalidation), in whole seconds since the Unix epoch. Injected, so tests can move
//! time forward instead of sleeping; [`Clock::system`] everywhere else.
//!
//! Short waits that run on tokio's timer (the DingTalk token cache's refresh and retry-after-
//! failure, connection timeouts) use `tokio::time` and are tested with tokio's paused time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch: the system's, or a manual one that only moves when told.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock standing at `at` until [`Clock::advance`]d (clones share it).
    pub fn manual(at: u64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicU64::new(at))),
        }
    }

    /// Now, in seconds since the Unix epoch.
    pub fn now_secs(&self) -> u64 {
        match &self.manual {
            Some(at) => at.load(Ordering::SeqCst),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    /// Moves a manual clock forward by `by` (whole seconds); the system clock ignores it.
    pub fn advance(&self, by: Duration) {
        if let Some(at) = &self.manual {
            at.fetch_add(by.as_secs(), Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let c = Clock::manual(100);
        let d = c.clone();
        assert_eq!(c.now_secs(), 100);
        d.advance(Duration::from_secs(5));
        assert_eq!(c.now_secs(), 105);
        let sys = Clock::system();
        sys.advance(Duration::from_secs(1_000_000));
        assert!(sys.now_secs() > 1_700_000_000 && sys.now_secs() < 1_700_000_000 * 2);
    }
}
