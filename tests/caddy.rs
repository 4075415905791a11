//! A real Caddy with the shipped `deploy/caddy/Caddyfile` (only addresses substituted):
//! `forward_auth` to our proxy in auth-only mode, in front of the echo app. Caddy must be
//! installed (`.ci/run` installs Debian's package); a missing Caddy fails.
#![cfg(feature = "fake")]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

struct Setup {
    h: Harness,
    caddy: String,
    _guard: ChildGuard,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let caddy_bin = require_binary("caddy", &["/usr/bin/caddy"]);
    let port = free_port();
    let caddy = format!("http://127.0.0.1:{port}");
    let public = caddy.clone();
    let h = start_with(move |c| {
        c.upstream = None;
        c.public_url = url::Url::parse(&public).ok();
        c.access.skip_auth = vec!["^/public/".into()];
    })
    .await;
    let file = deploy_file("deploy/caddy/Caddyfile");
    let file = replace_required(&file, "http://app.example.com {", &format!("{caddy} {{"));
    let file = replace_required(&file, "127.0.0.1:8080", &h.proxy.addr.to_string());
    let file = replace_required(&file, "127.0.0.1:3000", &h.upstream.to_string());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, file).unwrap();
    let child = Command::new(caddy_bin)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("caddy starts");
    let guard = ChildGuard(child);
    assert!(
        wait_for_port(port, Duration::from_secs(15)).await,
        "caddy did not listen on {port}"
    );
    Setup {
        h,
        caddy,
        _guard: guard,
        _dir: dir,
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
