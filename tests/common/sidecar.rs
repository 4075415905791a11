//! Our proxy as the auth-only sidecar of a real front server (nginx or Caddy, with the shipped
//! config, see [`fronts`]), in front of the echo app, with the fake DingTalk: the setup of
//! tests/nginx.rs and tests/caddy.rs.

use super::fronts::{self, Front};
use super::{get_url, start_with, Harness};

/// Which front server.
#[derive(Clone, Copy, Debug)]
pub enum Server {
    /// nginx with `deploy/nginx/auth_request.conf`.
    Nginx,
    /// Caddy with `deploy/caddy/Caddyfile`.
    Caddy,
}

/// The running setup (the front server stops on drop).
pub struct Sidecar {
    /// The proxy (auth-only), the fake DingTalk and the echo app.
    pub h: Harness,
    /// The front server's URL, `http://127.0.0.1:PORT`.
    pub front: String,
    _front: Front,
}

/// Starts the proxy in auth-only mode (no upstream) with the front's URL as `public_url` and
/// `^/public/` skipping auth, after `tweak`; then `server` on that URL in front of the echo app.
pub async fn start(
    server: Server,
    tweak: impl FnOnce(&mut dingtalk_auth_proxy::Config),
) -> Sidecar {
    let port = fronts::front_port();
    let public = format!("http://127.0.0.1:{port}");
    let h = start_with(move |c| {
        c.upstream = None;
        c.public_url = url::Url::parse(&public).ok();
        c.access.skip_auth = vec!["^/public/".into()];
        tweak(c);
    })
    .await;
    let app = h.upstream.to_string();
    let front = match server {
        Server::Nginx => fronts::start_nginx(port, h.proxy.addr, &app).await,
        Server::Caddy => fronts::start_caddy(port, h.proxy.addr, &app).await,
    };
    Sidecar {
        h,
        front: front.base.clone(),
        _front: front,
    }
}

/// Without a session, an API request (`Accept: application/json`) through `front` gets 401
/// with `{"error": "unauthenticated"}`, not a redirect to the login.
pub async fn assert_api_unauthenticated(front: &str) {
    let r = get_url(
        &format!("{front}/api/data"),
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
}

/// Through `s.front`, a logged-in request carrying a forged `X-DingTalk-Assertion`: the app
/// gets the sidecar's signed token when assertions are on (`signed`), else none at all (an
/// empty value at most) — never the client's.
pub async fn assert_assertion_passed_on(s: &Sidecar, session: &str, signed: bool) {
    let r = super::client()
        .get(format!("{}/app/page", s.front))
        .header("cookie", session)
        .header("accept", "application/json")
        .header("x-dingtalk-assertion", "forged")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.expect("echo JSON");
    let got = super::seen(&echo, "x-dingtalk-assertion");
    assert!(
        !got.contains(&"forged"),
        "the client's assertion reached the app: {got:?}"
    );
    if signed {
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].split('.').count(), 3, "a JWT: {got:?}");
    } else {
        assert!(got.iter().all(|v| v.is_empty()), "{got:?}");
    }
}

/// Two verify-only routes: a strict one for the host the front server serves (`127.0.0.1`,
/// login needed) and an open one (`open.test`, every path skipped).
pub fn strict_and_open_hosts(c: &mut dingtalk_auth_proxy::Config) {
    let route = |host: &str| dingtalk_auth_proxy::config::RouteConfig {
        host: Some(host.into()),
        ..Default::default()
    };
    let strict = route("127.0.0.1");
    let mut open = route("open.test");
    open.access.skip_auth = Some(vec!["^/".into()]);
    c.routes = vec![strict, open];
}

/// Through `front` (with [`strict_and_open_hosts`]), a client's own `X-Forwarded-Host` naming
/// the open host does not choose its policy: an anonymous API request stays 401.
pub async fn assert_forwarded_host_ignored(front: &str) {
    for spoof in ["open.test", "open.test, 127.0.0.1"] {
        let r = get_url(
            &format!("{front}/app/page"),
            &[("accept", "application/json"), ("x-forwarded-host", spoof)],
        )
        .await;
        assert_eq!(r.status(), 401, "X-Forwarded-Host: {spoof}");
    }
}
