//! A real Caddy with the shipped `deploy/caddy/Caddyfile` (only addresses substituted):
//! `forward_auth` to our proxy in auth-only mode, in front of the echo app. Caddy must be
//! installed (`.ci/run` installs Debian's package); a missing Caddy fails.
#![cfg(feature = "fake")]

mod common;

use common::*;

struct Setup {
    h: Harness,
    caddy: String,
    _front: fronts::Front,
}

async fn setup() -> Setup {
    let port = fronts::front_port();
    let public = format!("http://127.0.0.1:{port}");
    let h = start_with(move |c| {
        c.upstream = None;
        c.public_url = url::Url::parse(&public).ok();
        c.access.skip_auth = vec!["^/public/".into()];
    })
    .await;
    let front = fronts::start_caddy(port, h.proxy.addr, &h.upstream.to_string()).await;
    Setup {
        h,
        caddy: front.base.clone(),
        _front: front,
    }
}

/// The whole scenario through Caddy: anonymous navigation → login → DingTalk's page; in-app
/// login; the app sees our identity headers, never the client's; API 401; skip_auth passes.
#[tokio::test]
async fn forward_auth_scenario() {
    let s = setup().await;
    let login = assert_login_chain(&s.caddy, &s.h.fake, "/app/page?x=1&y=2").await;
    let (session, location) = inapp_login_via(&s.caddy, &s.h.fake, "wangwu", &login).await;
    assert_eq!(location, "/app/page?x=1&y=2");
    let echo = spoofed_echo(&format!("{}/app/page?x=1&y=2", s.caddy), &session).await;
    assert_eq!(seen(&echo, "x-user-id"), vec!["wangwu"]);
    assert_eq!(seen(&echo, "x-user-mobile"), vec!["13900000002"]);
    let names: Vec<String> = echo["headers"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.to_ascii_lowercase())
        .collect();
    assert!(!names.contains(&"x_user_id".to_string()), "{names:?}");

    let r = get_url(
        &format!("{}/api/data", s.caddy),
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    let r = get_url(
        &format!("{}/_auth/verify", s.caddy),
        &[("cookie", &session)],
    )
    .await;
    assert_eq!(r.status(), 404, "verify is not exposed");

    assert_skip_auth_strips(&s.caddy).await;
}

/// A user without a mobile: the app gets an empty X-User-Mobile, never Caddy's unexpanded
/// placeholder nor the client's own value.
#[tokio::test]
async fn missing_values_stay_empty() {
    let s = setup().await;
    let (session, _) = inapp_login_via(&s.caddy, &s.h.fake, "nomobile", "/_auth/login?rd=/").await;
    let echo = spoofed_echo(&format!("{}/x", s.caddy), &session).await;
    assert_eq!(seen(&echo, "x-user-id"), vec!["nomobile"]);
    let mobile = seen(&echo, "x-user-mobile");
    assert!(mobile.iter().all(|v| v.is_empty()), "{mobile:?}");
}
