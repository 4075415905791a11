//! A real nginx with the shipped `deploy/nginx/auth_request.conf` (only ports substituted) in
//! front of the echo app, our proxy in auth-only mode as the `auth_request` target, and the
//! fake DingTalk. nginx must be installed (`.ci/run` installs it); a missing nginx fails.
#![cfg(feature = "fake")]

mod common;

use common::*;
use std::time::Duration;

async fn setup() -> sidecar::Sidecar {
    setup_with(|_| {}).await
}

async fn setup_with(tweak: impl FnOnce(&mut dingtalk_auth_proxy::Config)) -> sidecar::Sidecar {
    sidecar::start(sidecar::Server::Nginx, tweak).await
}

/// Anonymous navigation → 302 to /_auth/login (nginx) → 302 to DingTalk's login page (sidecar).
#[tokio::test]
async fn anonymous_browser_goes_to_dingtalk() {
    let s = setup().await;
    assert_login_chain(&s.front, &s.h.fake, "/app/page?x=1&y=2").await;
}

/// After the in-app login through nginx, the app sees X-User-Id/X-User-Mobile — never the
/// client's own — and lands on the original path with its whole query.
#[tokio::test]
async fn inapp_login_through_nginx() {
    let s = setup().await;
    let dt = [("accept", "text/html"), ("user-agent", DINGTALK_UA)];
    let r = get_url(&format!("{}/app/page?x=1&y=2", s.front), &dt).await;
    assert_eq!(r.status(), 302);
    let login = r.headers()["location"].to_str().unwrap().to_string();
    let login = login.trim_start_matches(&s.front).to_string();
    let (session, location) = inapp_login_via(&s.front, &s.h.fake, "wangwu", &login).await;
    assert_eq!(location, "/app/page?x=1&y=2");
    let echo = spoofed_echo(&format!("{}/app/page?x=1&y=2", s.front), &session).await;
    assert_eq!(seen(&echo, "x-user-id"), vec!["wangwu"]);
    assert_eq!(seen(&echo, "x-user-mobile"), vec!["13900000002"]);
    assert!(echo["headers"].get("x_user_id").is_none());
    assert_eq!(echo["path"], "/app/page?x=1&y=2");
}

/// Without a session an API request gets 401 (not a redirect); /_auth/verify is not reachable
/// from outside; skip_auth paths pass without login and without the client's identity headers.
#[tokio::test]
async fn api_401_verify_internal_and_skip_auth() {
    let s = setup().await;
    sidecar::assert_api_unauthenticated(&s.front).await;
    let r = get_url(
        &format!("{}/api/data", s.front),
        &[
            ("accept", "text/html"),
            ("x-requested-with", "XMLHttpRequest"),
        ],
    )
    .await;
    assert_eq!(r.status(), 401);
    let r = get_url(&format!("{}/_auth/verify", s.front), &[]).await;
    assert_eq!(r.status(), 404, "verify is internal");
    assert_skip_auth_strips(&s.front).await;
    let r = get_url(&format!("{}/_auth/healthz", s.front), &[]).await;
    assert_eq!(r.status(), 200);
    // The sidecar itself, in auth-only mode, serves nothing but /_auth/*.
    let r = get_url(
        &format!("{}/app/page", s.h.base),
        &[("accept", "text/html")],
    )
    .await;
    assert_eq!(r.status(), 404);
}

/// A logged-in user refused by [access] gets 403 through nginx, not a login loop.
#[tokio::test]
async fn refused_user_is_403() {
    let s = setup_with(|c| c.access.allow_userids = vec!["someone-else".into()]).await;
    // A valid session for wangwu (sealed with the sidecar's secret), whom [access] refuses.
    let user = dingtalk_auth_proxy::dingtalk::User {
        userid: "wangwu".into(),
        ..Default::default()
    };
    let session = dingtalk_auth_proxy::session::Session::new(
        user,
        Duration::from_secs(600),
        dingtalk_auth_proxy::clock::Clock::system().now_secs(),
    );
    let codec = dingtalk_auth_proxy::session::CookieCodec::new(
        &s.h.config,
        dingtalk_auth_proxy::clock::Clock::system(),
    )
    .unwrap();
    let cookie = codec
        .session_cookie(&session)
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = get_url(
        &format!("{}/x", s.front),
        &[("cookie", &cookie), ("accept", "text/html")],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers().get("location"), None);
}

/// The shipped config passes the sidecar's signed assertion on, and never a client's own —
/// with assertions on and off.
#[tokio::test]
async fn assertion_through_nginx() {
    for on in [true, false] {
        let s = setup_with(|c| c.assertion.enabled = on).await;
        let (session, _) =
            inapp_login_via(&s.front, &s.h.fake, "wangwu", "/_auth/login?rd=/").await;
        sidecar::assert_assertion_passed_on(&s, &session, on).await;
    }
}

/// With `[[routes]]` (verify-only, one per host), the route is the one of the host nginx
/// serves: a client's own `X-Forwarded-Host` naming an open route's host does not choose
/// that route's policy (the shipped config overwrites it with `$host`).
#[tokio::test]
async fn client_forwarded_host_does_not_pick_the_route() {
    let s = sidecar::start(sidecar::Server::Nginx, sidecar::strict_and_open_hosts).await;
    sidecar::assert_forwarded_host_ignored(&s.front).await;
}
