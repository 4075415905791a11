//! Everything the proxy decides by the clock, over real HTTP, with the proxy's clock moved by
//! hand instead of waiting: session expiry, login-state expiry, revalidation and its retry
//! after a DingTalk failure.

mod common;

use std::time::Duration;

use common::*;
use dingtalk_auth_proxy::fake::Failure;
use dingtalk_auth_proxy::revalidate::RETRY_AFTER_FAILURE;
use dingtalk_auth_proxy::session::LOGIN_STATE_TTL;

fn api(session: &str) -> Vec<(&str, &str)> {
    vec![("cookie", session), ("accept", "application/json")]
}

/// A session works until the last second of `session.ttl` and not from its end on; the
/// browser is then sent to log in again.
#[tokio::test]
async fn session_expires_at_ttl() {
    let ttl = Duration::from_secs(8 * 3600);
    let h = start_with(|c| {
        c.session.ttl = ttl;
        c.session.revalidate = Duration::ZERO;
    })
    .await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    h.clock.advance(ttl - Duration::from_secs(1));
    assert_eq!(h.get("/x", &api(&session)).await.status(), 200);
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.get("/x", &api(&session)).await.status(), 401);
    let nav = h
        .get("/x", &[("cookie", &session), ("accept", "text/html")])
        .await;
    assert_eq!(nav.status(), 302);
}

/// A login left open longer than ten minutes is refused at the callback with a page that
/// says so and offers a retry; one finished in time works.
#[tokio::test]
async fn login_state_expires() {
    let h = start().await;
    let (cookie, state) = h.start_inapp_login("/docs").await;
    h.clock.advance(LOGIN_STATE_TTL);
    let code = h.fake.mint_code("wangwu").expect("code");
    let late = h.callback(&cookie, &code, &state).await;
    assert_eq!(late.status(), 400);
    let page = late.text().await.unwrap_or_default();
    assert!(page.contains("took too long"), "{page}");
    assert!(page.contains("/_auth/login?rd=%2Fdocs"), "{page}");

    let (cookie, state) = h.start_inapp_login("/docs").await;
    h.clock.advance(LOGIN_STATE_TTL - Duration::from_secs(1));
    let code = h.fake.mint_code("wangwu").expect("code");
    let in_time = h.callback(&cookie, &code, &state).await;
    assert_eq!(in_time.status(), 302);
    assert_eq!(in_time.headers()["location"], "/docs");
}

/// Details are re-fetched only once they are `session.revalidate` old. When DingTalk fails,
/// the user keeps access and DingTalk is not asked again until RETRY_AFTER_FAILURE has passed.
#[tokio::test]
async fn revalidation_waits_and_retries_after_failure() {
    let every = Duration::from_secs(600);
    let h = start_with(|c| c.session.revalidate = every).await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    let details = "/topapi/v2/user/get";
    h.fake.reset_calls();

    // Not stale yet: no call however many requests.
    h.clock.advance(every - Duration::from_secs(1));
    for _ in 0..3 {
        assert_eq!(h.get("/x", &api(&session)).await.status(), 200);
    }
    assert_eq!(h.fake.calls(details), 0);

    // Stale, and DingTalk fails: the request is served, one check is made.
    h.fake.fail(details, Failure::Garbage, None);
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.get("/x", &api(&session)).await.status(), 200);
    wait_for_calls(&h, details, 1).await;
    // Until the retry delay has passed, nobody asks DingTalk again.
    h.clock
        .advance(RETRY_AFTER_FAILURE - Duration::from_secs(1));
    for _ in 0..3 {
        assert_eq!(h.get("/x", &api(&session)).await.status(), 200);
    }
    assert_eq!(h.fake.calls(details), 1);

    // Then one more check, which now succeeds and refreshes the session.
    h.fake.clear_failures();
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.get("/x", &api(&session)).await.status(), 200);
    wait_for_calls(&h, details, 2).await;
}

/// Polls (bounded) until the fake has answered `path` `n` times.
async fn wait_for_calls(h: &Harness, path: &str, n: usize) {
    for _ in 0..200 {
        if h.fake.calls(path) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{path} was called {} times, expected {n}",
        h.fake.calls(path)
    );
}
