//! The bypasses of the edge-hardening issue, tried against real third-party servers: Debian's
//! Tomcat 10 (path parameters: `/public/..;/admin`), hypercorn (accepts `Upgrade: h2c`), and
//! real nginx and Caddy with the shipped configs in front. Each app server is first shown to
//! be exploitable on its own (tests/app_servers.rs); here the same bytes go through us.
#![cfg(feature = "fake")]

mod common;

use common::appservers::*;
use common::fronts::{self, Front};
use common::*;

/// The spellings of `/public/..;/admin/secret.txt` that Tomcat resolves to the admin page.
const TOMCAT_BYPASSES: &[&str] = &[
    "/public/..;/admin/secret.txt",
    "/public/..;jsessionid=x/admin/secret.txt",
    "/public/.;/..;/admin/secret.txt",
    "/public/x/..;/..;/admin/secret.txt",
    "/public/%2e%2e;/admin/secret.txt",
    "/public;x/../admin/secret.txt",
];

const JSON: (&str, &str) = ("accept", "application/json");

/// A proxy in auth-only mode for a front server on `port`, skipping `/public/`.
async fn auth_only(port: u16) -> Harness {
    let public = format!("http://127.0.0.1:{port}");
    start_with(move |c| {
        c.upstream = None;
        c.public_url = url::Url::parse(&public).ok();
        c.access.skip_auth = vec!["^/public/".into()];
    })
    .await
}

/// A proxy in front of `app`, skipping `/public/`.
async fn proxy_for(app: &str) -> Harness {
    let app = url::Url::parse(&format!("http://{app}")).expect("app URL");
    start_with(move |c| {
        c.upstream = Some(app);
        c.access.skip_auth = vec!["^/public/".into()];
    })
    .await
}

/// Tomcat behind `front` (our proxy, nginx or Caddy): `/public/hello.txt` is served without a
/// login, and no spelling of `/public/..;/admin/…` shows the admin page.
async fn assert_tomcat_holds(front: &str) {
    let (status, body) = raw_get(front, "/public/hello.txt", &[JSON]).await;
    assert_eq!(status, 200, "{front}: {body}");
    assert!(body.contains(TOMCAT_PUBLIC_BODY), "{body}");
    for target in TOMCAT_BYPASSES {
        let (status, body) = raw_get(front, target, &[JSON]).await;
        assert!(
            !body.contains(TOMCAT_SECRET_BODY),
            "{front}{target} served the admin page anonymously ({status})"
        );
        assert_eq!(status, 401, "{front}{target}: {body}");
    }
}

/// Tomcat behind our proxy: the path-parameter bypass needs a login.
#[tokio::test]
async fn tomcat_behind_proxy() {
    let tomcat = start_tomcat().await;
    let h = proxy_for(&tomcat.addr()).await;
    assert_tomcat_holds(&h.proxy.addr.to_string()).await;
}

/// Tomcat behind nginx (auth_request): the bypass needs a login, and a client's own
/// `X-Forwarded-Uri` (a URI header nginx does not set) cannot claim a public path.
#[tokio::test]
async fn tomcat_behind_nginx() {
    let tomcat = start_tomcat().await;
    let port = fronts::front_port();
    let h = auth_only(port).await;
    let nginx = fronts::start_nginx(port, h.proxy.addr, &tomcat.addr()).await;
    let front = nginx.addr.to_string();
    assert_tomcat_holds(&front).await;
    for (name, value) in [
        ("X-Forwarded-Uri", "/public/hello.txt"),
        ("X-Original-URI", "/public/hello.txt"),
    ] {
        let (status, body) = raw_get(&front, "/admin/secret.txt", &[JSON, (name, value)]).await;
        assert!(
            !body.contains(TOMCAT_SECRET_BODY),
            "{name} spoof served admin"
        );
        assert_eq!(status, 401, "{name}: {body}");
    }
}

/// Tomcat behind Caddy (forward_auth): the bypass needs a login, and a client's own
/// `X-Original-URI` cannot claim a public path.
#[tokio::test]
async fn tomcat_behind_caddy() {
    let tomcat = start_tomcat().await;
    let port = fronts::front_port();
    let h = auth_only(port).await;
    let caddy = fronts::start_caddy(port, h.proxy.addr, &tomcat.addr()).await;
    let front = caddy.addr.to_string();
    assert_tomcat_holds(&front).await;
    for (name, value) in [
        ("X-Original-URI", "/public/hello.txt"),
        ("X-Forwarded-Uri", "/public/hello.txt"),
    ] {
        let (status, body) = raw_get(&front, "/admin/secret.txt", &[JSON, (name, value)]).await;
        assert!(
            !body.contains(TOMCAT_SECRET_BODY),
            "{name} spoof served admin"
        );
        assert_eq!(status, 401, "{name}: {body}");
    }
}

/// `Upgrade: h2c` to hypercorn (which accepts it) through `front`: no 101, so no HTTP/2
/// request of the client's choosing reaches the app.
async fn assert_no_h2c(front: &str, first_path: &str, cookie: Option<&str>) {
    let out = h2c_smuggle(
        front,
        first_path,
        cookie,
        "/admin",
        &[("x-user-id", "admin")],
    )
    .await
    .unwrap_or_else(|e| panic!("{front}{first_path}: {e}"));
    assert!(
        !out.upgraded,
        "{front}{first_path} upgraded to h2c: {out:?}"
    );
    assert_ne!(out.first_status, 101, "{out:?}");
    assert!(out.smuggled_body.is_none(), "{out:?}");
}

/// Our proxy in front of an h2c-capable app: neither an anonymous request on a skip_auth path
/// nor a logged-in one on a protected path can switch the connection to h2c.
#[tokio::test]
async fn h2c_behind_proxy() {
    let app = start_h2c_app().await;
    let h = proxy_for(&app.addr()).await;
    let front = h.proxy.addr.to_string();
    assert_no_h2c(&front, "/public/x", None).await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    assert_no_h2c(&front, "/app", Some(&session)).await;
    // The request itself still reached the app as plain HTTP/1.1.
    let (status, body) = raw_get(&front, "/public/x", &[JSON]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"http_version\": \"1.1\""), "{body}");
}

/// Caddy and nginx with the shipped configs in front of an h2c-capable app: no h2c either.
#[tokio::test]
async fn h2c_behind_front_servers() {
    let app = start_h2c_app().await;
    let port = fronts::front_port();
    let h = auth_only(port).await;
    let caddy = fronts::start_caddy(port, h.proxy.addr, &app.addr()).await;
    assert_no_h2c(&caddy.addr.to_string(), "/public/x", None).await;
    let port = fronts::front_port();
    let h = auth_only(port).await;
    let nginx = fronts::start_nginx(port, h.proxy.addr, &app.addr()).await;
    assert_no_h2c(&nginx.addr.to_string(), "/public/x", None).await;
}

/// Every `-`/`_` mix, in several cases, of the identity header names.
fn spellings() -> Vec<String> {
    let mut out = Vec::new();
    for parts in [["X", "User", "Id"], ["X", "User", "Mobile"]] {
        for mask in 0..4u32 {
            let sep = |i: u32| if mask & (1 << i) != 0 { "_" } else { "-" };
            let name = format!("{}{}{}{}{}", parts[0], sep(0), parts[1], sep(1), parts[2]);
            out.push(name.clone());
            out.push(name.to_ascii_lowercase());
            out.push(name.to_ascii_uppercase());
        }
    }
    out
}

/// What the echo app saw for any spelling of `canonical` (`x-user-id`): all values.
fn seen_any_spelling(body: &str, canonical: &str) -> Vec<String> {
    let echo: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let headers = echo["headers"].as_object().cloned().unwrap_or_default();
    headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().replace('_', "-") == canonical)
        .flat_map(|(_, v)| v.as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Sends every spelling through `front` (raw bytes, exact case) and checks what the echo app
/// received: only `user`/`mobile` (ours; empty on a skip path), never a client's value.
async fn assert_spellings_never_pass(front: &Front, path: &str, cookie: Option<&str>) {
    let names = spellings();
    let mut headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "evil")).collect();
    headers.push(JSON);
    if let Some(c) = cookie {
        headers.push(("cookie", c));
    }
    let (status, body) = raw_get(&front.addr.to_string(), path, &headers).await;
    assert_eq!(status, 200, "{}{path}: {body}", front.base);
    for canonical in ["x-user-id", "x-user-mobile"] {
        let values = seen_any_spelling(&body, canonical);
        assert!(
            values.iter().all(|v| v != "evil"),
            "{}{path}: a client's {canonical} reached the app: {body}",
            front.base
        );
        if cookie.is_some() {
            assert!(!values.is_empty(), "{canonical} missing: {body}");
        }
    }
}

/// Through real nginx and Caddy (shipped configs), no `-`/`_`/case mix of an identity header
/// reaches the app — neither on a skip_auth path nor alongside a logged-in user's headers.
#[tokio::test]
async fn mixed_spellings_through_front_servers() {
    for caddy in [false, true] {
        let port = fronts::front_port();
        let h = auth_only(port).await;
        let upstream = h.upstream.to_string();
        let front = if caddy {
            fronts::start_caddy(port, h.proxy.addr, &upstream).await
        } else {
            fronts::start_nginx(port, h.proxy.addr, &upstream).await
        };
        assert_spellings_never_pass(&front, "/public/x", None).await;
        let login = assert_login_chain(&front.base, &h.fake, "/app").await;
        let (session, _) = inapp_login_via(&front.base, &h.fake, "wangwu", &login).await;
        assert_spellings_never_pass(&front, "/app", Some(&session)).await;
    }
}

/// The same through our own reverse proxy.
#[tokio::test]
async fn mixed_spellings_through_proxy() {
    let h = start_with(|c| c.access.skip_auth = vec!["^/public/".into()]).await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    let names = spellings();
    let mut headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "evil")).collect();
    headers.push(JSON);
    let front = h.proxy.addr.to_string();
    let (_, body) = raw_get(&front, "/public/x", &headers).await;
    assert!(seen_any_spelling(&body, "x-user-id").is_empty(), "{body}");
    headers.push(("cookie", &session));
    let (_, body) = raw_get(&front, "/app", &headers).await;
    assert_eq!(
        seen_any_spelling(&body, "x-user-id"),
        vec!["wangwu"],
        "{body}"
    );
    assert_eq!(
        seen_any_spelling(&body, "x-user-mobile"),
        vec!["13900000002"],
        "{body}"
    );
}
