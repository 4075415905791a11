//! A real Caddy with the shipped `deploy/caddy/Caddyfile` (only addresses substituted):
//! `forward_auth` to our proxy in auth-only mode, in front of the echo app. Caddy must be
//! installed (`.ci/run` installs Debian's package); a missing Caddy fails.
#![cfg(feature = "fake")]

mod common;

use common::*;

async fn setup() -> sidecar::Sidecar {
    sidecar::start(sidecar::Server::Caddy, |_| {}).await
}

/// The whole scenario through Caddy: anonymous navigation → login → DingTalk's page; in-app
/// login; the app sees our identity headers, never the client's; API 401; skip_auth passes.
#[tokio::test]
async fn forward_auth_scenario() {
    let s = setup().await;
    let login = assert_login_chain(&s.front, &s.h.fake, "/app/page?x=1&y=2").await;
    let (session, location) = inapp_login_via(&s.front, &s.h.fake, "wangwu", &login).await;
    assert_eq!(location, "/app/page?x=1&y=2");
    let echo = spoofed_echo(&format!("{}/app/page?x=1&y=2", s.front), &session).await;
    assert_eq!(seen(&echo, "x-user-id"), vec!["wangwu"]);
    assert_eq!(seen(&echo, "x-user-mobile"), vec!["13900000002"]);
    let names: Vec<String> = echo["headers"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.to_ascii_lowercase())
        .collect();
    assert!(!names.contains(&"x_user_id".to_string()), "{names:?}");

    sidecar::assert_api_unauthenticated(&s.front).await;
    let r = get_url(
        &format!("{}/_auth/verify", s.front),
        &[("cookie", &session)],
    )
    .await;
    assert_eq!(r.status(), 404, "verify is not exposed");

    assert_skip_auth_strips(&s.front).await;
}

/// A user without a mobile: the app gets an empty X-User-Mobile, never Caddy's unexpanded
/// placeholder nor the client's own value.
#[tokio::test]
async fn missing_values_stay_empty() {
    let s = setup().await;
    let (session, _) = inapp_login_via(&s.front, &s.h.fake, "nomobile", "/_auth/login?rd=/").await;
    let echo = spoofed_echo(&format!("{}/x", s.front), &session).await;
    assert_eq!(seen(&echo, "x-user-id"), vec!["nomobile"]);
    let mobile = seen(&echo, "x-user-mobile");
    assert!(mobile.iter().all(|v| v.is_empty()), "{mobile:?}");
}

/// The shipped Caddyfile passes the sidecar's signed assertion on, and never a client's own —
/// with assertions on and off.
#[tokio::test]
async fn assertion_through_caddy() {
    for on in [true, false] {
        let s = sidecar::start(sidecar::Server::Caddy, |c| c.assertion.enabled = on).await;
        let (session, _) =
            inapp_login_via(&s.front, &s.h.fake, "wangwu", "/_auth/login?rd=/").await;
        sidecar::assert_assertion_passed_on(&s, &session, on).await;
    }
}

/// With `[[routes]]` (verify-only, one per host), Caddy's forward_auth names the host it
/// serves in `X-Forwarded-Host`; a client's own copy naming an open route's host does not
/// choose that route's policy.
#[tokio::test]
async fn client_forwarded_host_does_not_pick_the_route() {
    let s = sidecar::start(sidecar::Server::Caddy, sidecar::strict_and_open_hosts).await;
    sidecar::assert_forwarded_host_ignored(&s.front).await;
    // And without a spoof, the strict route answers as it should.
    let r = get_url(
        &format!("{}/app/page", s.front),
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(r.status(), 401);
}
