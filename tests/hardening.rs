//! Edge hardening, driven with real requests (raw bytes where a client library would tidy
//! them up): skip_auth only for canonical paths, no upgrade but WebSocket, verify's URI
//! headers, trusted_proxies, sticky revocation, slow/idle connections, the connection cap,
//! oversized heads and bodies, raw bytes in `Cookie`, and the headers on our own answers.
#![cfg(feature = "fake")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use dingtalk_auth_proxy::fake::Failure;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` as raw bytes and reads the answer until the server closes (bounded).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn get_request(target: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\n{extra}Connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// How long until the server closes a connection we leave as it is (bounded by `limit`).
async fn closed_within(mut s: TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

/// Anonymous requests for paths that an app server would resolve outside `/public/` need a
/// login, whatever the spelling; canonical `/public/…` paths pass.
#[tokio::test]
async fn skip_auth_only_for_canonical_paths() {
    let h = start_with(|c| c.access.skip_auth = vec!["^/public/".into()]).await;
    let (status, body) = raw(h.proxy.addr, &get_request("/public/x.css", "")).await;
    assert_eq!(status, 200, "{body}");
    for target in [
        "/public/..;/admin/secret.txt",
        "/public/..;jsessionid=x/admin/secret.txt",
        "/public/.;/..;/admin/secret.txt",
        "/public/x/..;/..;/admin/secret.txt",
        "/public/;x=1/../admin",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E%2Fadmin",
        "/public/..%5cadmin",
        "/public/%252e%252e/admin",
        "/public//../admin",
        "/public/%u002e%u002e/admin",
        "/public/%61dmin",
    ] {
        let (status, body) = raw(h.proxy.addr, &get_request(target, "")).await;
        assert_eq!(status, 401, "{target} was served anonymously: {body}");
        assert!(!body.contains("\"path\""), "{target} reached the app");
    }
}

/// `Upgrade: h2c` never reaches the app: the request goes upstream as plain HTTP/1.1 without
/// `Upgrade`/`HTTP2-Settings`, and the client gets no 101. WebSocket still upgrades.
#[tokio::test]
async fn only_websocket_upgrades_pass() {
    let h = start_with(|c| c.access.skip_auth = vec!["^/public/".into()]).await;
    let (status, body) = raw(
        h.proxy.addr,
        b"GET /public/x HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\n\
Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let json = &body[body.find("\r\n\r\n").map_or(0, |i| i + 4)..];
    let echo: serde_json::Value = serde_json::from_str(json.trim()).unwrap_or_default();
    let headers = echo["headers"].as_object().cloned().unwrap_or_default();
    assert!(!headers.is_empty(), "no echo: {body}");
    for name in ["upgrade", "http2-settings", "connection"] {
        assert!(
            !headers.contains_key(name) || name == "connection",
            "{name} reached the app: {headers:?}"
        );
    }
    assert!(
        !headers
            .get("connection")
            .is_some_and(|v| v.to_string().to_ascii_lowercase().contains("upgrade")),
        "{headers:?}"
    );
}

/// verify judges skip_auth on the front server's URI header only: with `auto`, X-Original-URI
/// and X-Forwarded-Uri must agree; with `verify.uri_header` set, only that one counts; a
/// non-canonical path never skips.
#[tokio::test]
async fn verify_uri_headers() {
    let h = start_with(|c| {
        c.upstream = None;
        c.access.skip_auth = vec!["^/public/".into()];
    })
    .await;
    let verify = |hs: Vec<(&'static str, &'static str)>| {
        let base = h.base.clone();
        async move {
            get_url(&format!("{base}/_auth/verify"), &hs)
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(verify(vec![("x-original-uri", "/public/x")]).await, 200);
    assert_eq!(
        verify(vec![("x-forwarded-uri", "/public/x?a=1")]).await,
        200
    );
    // Caddy sets X-Forwarded-Uri and passes the client's X-Original-URI through.
    assert_eq!(
        verify(vec![
            ("x-forwarded-uri", "/admin/secret"),
            ("x-original-uri", "/public/x")
        ])
        .await,
        401
    );
    assert_eq!(
        verify(vec![("x-original-uri", "/public/..;/admin")]).await,
        401
    );
    assert_eq!(verify(vec![]).await, 401);

    let h2 = start_with(|c| {
        c.upstream = None;
        c.access.skip_auth = vec!["^/public/".into()];
        c.verify.uri_header = "X-Forwarded-Uri".into();
    })
    .await;
    let url = format!("{}/_auth/verify", h2.base);
    let only = get_url(&url, &[("x-original-uri", "/public/x")]).await;
    assert_eq!(only.status(), 401);
    let ok = get_url(&url, &[("x-forwarded-uri", "/public/x")]).await;
    assert_eq!(ok.status(), 200);
}

/// A peer outside trusted_proxies can neither claim a URI to verify nor plant addresses in
/// X-Forwarded-For; a trusted one (loopback, the default) appends.
#[tokio::test]
async fn trusted_proxies_decide_forwarded_headers() {
    let untrusting = start_with(|c| {
        c.access.skip_auth = vec!["^/public/".into()];
        c.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let r = untrusting
        .get(
            "/_auth/verify",
            &[
                ("x-original-uri", "/public/x"),
                ("x-forwarded-uri", "/public/x"),
            ],
        )
        .await;
    assert_eq!(r.status(), 401);
    let r = untrusting
        .get(
            "/public/x",
            &[
                ("accept", "application/json"),
                ("x-forwarded-for", "6.6.6.6"),
            ],
        )
        .await;
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(seen(&echo, "x-forwarded-for"), vec!["127.0.0.1"]);

    let trusting = start_with(|c| c.access.skip_auth = vec!["^/public/".into()]).await;
    let r = trusting
        .get(
            "/public/x",
            &[
                ("accept", "application/json"),
                ("x-forwarded-for", "192.0.2.7"),
            ],
        )
        .await;
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(seen(&echo, "x-forwarded-for"), vec!["192.0.2.7, 127.0.0.1"]);
}

/// Once DingTalk reports a user deactivated, their old cookie stays refused — across many
/// revalidation intervals and in a burst during the check (at most the one request that found
/// the session stale is served) — until the user logs in again.
#[tokio::test]
async fn revocation_sticks() {
    let every = Duration::from_secs(60);
    let h = start_with(|c| c.session.revalidate = every).await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    h.fake.set_user_active("wangwu", false);
    // Each check takes half a second, so a burst arrives while it runs.
    h.fake.fail(
        "/topapi/v2/user/get",
        Failure::Slow(Duration::from_millis(500)),
        None,
    );
    // The session's details become stale.
    h.clock.advance(every);
    let headers = [("cookie", session.as_str()), ("accept", "application/json")];
    let burst = (0..40).map(|_| h.get("/x", &headers));
    let statuses: Vec<u16> = futures_util::future::join_all(burst)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        served <= 1,
        "{served} of 40 served during the check: {statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 40 - served);
    // Five more intervals: never served again.
    for _ in 0..5 {
        h.clock.advance(every);
        let r = h.get("/x", &headers).await;
        assert_eq!(r.status(), 401, "served again after revocation");
    }
    // Reactivated and logged in again: back in.
    h.fake.clear_failures();
    h.fake.set_user_active("wangwu", true);
    let (fresh, _) = h.login_inapp("wangwu", "/").await;
    let echo = h.echo(&fresh, "/x", &[]).await;
    assert_eq!(seen(&echo, "x-user-id"), vec!["wangwu"]);
}

/// A half-sent request head, a connection that sends nothing, and an idle keep-alive
/// connection are all closed by the proxy within bounds (header_read_timeout 1 s, idle 1 s).
#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    let h = start_with(|c| {
        c.limits.header_read_timeout = Duration::from_secs(1);
        c.limits.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = h.proxy.addr;
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let silent = TcpStream::connect(addr).await.unwrap();
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /_auth/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 512];
    let n = kept.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let limit = Duration::from_secs(6);
    let (a, b, c) = tokio::join!(
        closed_within(half, limit),
        closed_within(silent, limit),
        closed_within(kept, limit)
    );
    assert!(a.is_some(), "half-sent head kept open");
    assert!(b.is_some(), "silent connection kept open");
    assert!(c.is_some(), "idle keep-alive connection kept open");
}

/// At `limits.max_connections` a new connection gets 503 + Retry-After at once; the admin
/// listener's health check still answers; when the holders go, service resumes.
#[tokio::test]
async fn connection_cap() {
    let h = start_with(|c| {
        c.limits.max_connections = 10;
        c.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = h.proxy.addr;
    let mut holders = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        holders.push(s);
    }
    // The accept loop hands out permits in order; give it the holders first (bounded poll).
    let started = Instant::now();
    let (status, text) = loop {
        let (status, text) = raw(addr, &get_request("/_auth/healthz", "")).await;
        if status == 503 || started.elapsed() > Duration::from_secs(5) {
            break (status, text);
        }
    };
    assert_eq!(status, 503, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
    let admin = h.proxy.admin_addr.expect("admin listener");
    let r = get_url(&format!("http://{admin}/healthz"), &[]).await;
    assert_eq!(r.status(), 200);
    drop(holders);
    let started = Instant::now();
    loop {
        let (status, _) = raw(addr, &get_request("/_auth/healthz", "")).await;
        if status == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = get_url(&format!("http://{admin}/metrics"), &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("dap_connections_rejected_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

/// A request head past `max_header_bytes` gets 431 from the proxy itself; a body past
/// `max_body_bytes` gets 413, with and without Content-Length; smaller ones pass.
#[tokio::test]
async fn oversized_heads_and_bodies() {
    let h = start_with(|c| c.limits.max_body_bytes = 1000).await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    let big = "a".repeat(70 * 1024);
    let r = h.get("/x", &[("cookie", &session), ("x-big", &big)]).await;
    assert_eq!(r.status(), 431);
    let fine = "a".repeat(40 * 1024);
    let r = h
        .get(
            "/x",
            &[
                ("cookie", &session),
                ("x-big", &fine),
                ("accept", "application/json"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);

    let post = |body: reqwest::Body| {
        client()
            .post(format!("{}/upload", h.base))
            .header("cookie", &session)
            .header("accept", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(post(vec![b'x'; 500].into()).await.unwrap().status(), 200);
    // Exactly the limit is allowed; one byte more is not.
    assert_eq!(post(vec![b'x'; 1000].into()).await.unwrap().status(), 200);
    assert_eq!(post(vec![b'x'; 1001].into()).await.unwrap().status(), 413);
    assert_eq!(post(vec![b'x'; 2000].into()).await.unwrap().status(), 413);
    let mut chunked = format!(
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nCookie: {session}\r\nAccept: application/json\r\n\
Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..20 {
        chunked.extend_from_slice(b"64\r\n");
        chunked.extend_from_slice(&[b'y'; 100]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw(h.proxy.addr, &chunked).await;
    assert_eq!(status, 413, "{text}");
}

/// Raw UTF-8 in `Cookie` (an app's own cookie) neither hides a valid session (no login loop)
/// nor lets our session cookie through to the app on a skip_auth path.
#[tokio::test]
async fn raw_bytes_in_cookie_header() {
    let h = start_with(|c| c.access.skip_auth = vec!["^/public/".into()]).await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    let cookie = format!("app=张三; {session}; lang=中文");
    let request = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    };
    let (status, body) = raw(h.proxy.addr, &request("/private")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"wangwu\""), "{body}");
    let (status, body) = raw(h.proxy.addr, &request("/public/x")).await;
    assert_eq!(status, 200, "{body}");
    let value = session.split_once('=').unwrap().1;
    assert!(
        !body.contains(value),
        "our session cookie reached the app: {body}"
    );
    assert!(body.contains("app=") && body.contains("lang="), "{body}");
}

/// Every answer of our own carries nosniff and no-referrer; pages forbid framing.
#[tokio::test]
async fn security_headers_on_our_answers() {
    let h = start().await;
    let html = [("accept", "text/html"), ("user-agent", BROWSER_UA)];
    let answers = [
        h.get("/x", &html).await,                                    // 302 to login
        h.get("/x", &[("accept", "application/json")]).await,        // 401 JSON
        h.get("/_auth/login?rd=/x", &html).await,                    // 302 to DingTalk
        h.get("/_auth/login", &[("user-agent", DINGTALK_UA)]).await, // 免登 page
        h.get("/_auth/callback?code=x&state=y", &html).await,        // error page
        h.get("/_auth/verify", &[]).await,
        h.get("/_auth/healthz", &[]).await,
    ];
    for r in answers {
        let hs = r.headers();
        assert_eq!(hs["x-content-type-options"], "nosniff", "{}", r.url());
        assert_eq!(hs["referrer-policy"], "no-referrer", "{}", r.url());
        if hs
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/html"))
        {
            let csp = hs["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        }
    }
}

/// A WebSocket keeps its place under `max_connections` for as long as it is open (the upgraded
/// socket holds it), and gives it back when it closes.
#[tokio::test]
async fn websocket_counts_against_the_cap() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let h = start_with(|c| c.limits.max_connections = 1).await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    // The login's own connections are closed by now, or soon: wait (bounded) for a free place.
    let url = format!("ws://{}/ws", h.proxy.addr);
    let started = Instant::now();
    let mut ws = loop {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("cookie", session.parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => break ws,
            Err(e) => {
                assert!(started.elapsed() < Duration::from_secs(5), "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let (status, text) = raw(h.proxy.addr, &get_request("/_auth/healthz", "")).await;
    assert_eq!(status, 503, "the open WebSocket did not count: {text}");
    ws.close(None).await.ok();
    let _ = ws.flush().await;
    drop(ws);
    let started = Instant::now();
    loop {
        let (status, _) = raw(h.proxy.addr, &get_request("/_auth/healthz", "")).await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "place not given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A body announced larger than `max_body_bytes` is refused before anything is sent to the
/// app: the app never even sees a connection.
#[tokio::test]
async fn announced_oversized_body_never_reaches_the_app() {
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_addr = app.local_addr().unwrap();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = app.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let fake = dingtalk_auth_proxy::fake::FakeDingTalk::new()
        .user(wangwu())
        .start()
        .await
        .unwrap();
    let h = start_against(fake, app_addr, |c| {
        c.limits.max_body_bytes = 1000;
        c.upstream_timeout = Duration::from_secs(2);
    })
    .await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    let r = client()
        .post(format!("{}/upload", h.base))
        .header("cookie", &session)
        .header("accept", "application/json")
        .body(vec![b'x'; 2000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the app was contacted"
    );
}
