//! `session.store = "redis"` against real redis-server processes (standalone and a three-node
//! cluster): sessions shared by two proxies, logout and `sessions revoke` ending sessions on
//! both, revalidation coordinated through Redis, and what users see while Redis is stalled.

mod common;

use std::time::{Duration, Instant};

use common::redis::{cluster, standalone};
use common::*;
use dingtalk_auth_proxy::config::{Config, Secret, Store};

const BIN: &str = env!("CARGO_BIN_EXE_dingtalk-auth-proxy");

fn use_redis(c: &mut Config, url: &str) {
    c.session.store = Store::Redis;
    c.session.redis_url = Secret::new(url);
}

/// Two proxies (A, B) sharing one fake DingTalk, one upstream and one Redis configuration.
async fn pair(tweak: impl Fn(&mut Config) + Clone) -> (Harness, Harness) {
    let a = start_with(tweak.clone()).await;
    let b = start_against(a.fake.clone(), a.upstream, tweak).await;
    (a, b)
}

async fn status(h: &Harness, session: &str) -> u16 {
    h.get("/x", &[("cookie", session), ("accept", "application/json")])
        .await
        .status()
        .as_u16()
}

async fn logout(h: &Harness, session: &str) {
    let r = h.get("/_auth/logout?rd=/", &[("cookie", session)]).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        set_cookie(r.headers(), "dap_session").as_deref(),
        Some("dap_session=")
    );
}

/// The sealed cookie carries only a reference: no user detail is in it.
fn assert_cookie_is_a_reference(session: &str) {
    let value = session.split_once('=').map(|(_, v)| v).unwrap_or_default();
    assert!(
        value.len() < 200,
        "cookie too large for an id: {} bytes",
        value.len()
    );
}

/// The whole life of shared sessions on `tweak`'s Redis: made on A, used on B; logout on B
/// ends it on A; revocation of one user ends all of theirs on both and nobody else's.
async fn shared_sessions(tweak: impl Fn(&mut Config) + Clone) {
    let (a, b) = pair(tweak).await;
    let (s1, _) = a.login_inapp("wangwu", "/").await;
    assert_cookie_is_a_reference(&s1);
    let echo = b.echo(&s1, "/x", &[]).await;
    assert_eq!(seen(&echo, "x-user-id"), vec!["wangwu"]);
    assert_eq!(seen(&echo, "x-user-mobile"), vec!["13900000002"]);

    logout(&b, &s1).await;
    assert_eq!(status(&a, &s1).await, 401, "logged out on B, still in on A");
    assert_eq!(status(&b, &s1).await, 401);

    // Two sessions of wangwu (one per proxy) and one of zhangsan.
    let (w1, _) = a.login_inapp("wangwu", "/").await;
    let (w2, _) = b.login_inapp("wangwu", "/").await;
    let (z, _) = a.login_inapp("zhangsan", "/").await;
    for s in [&w1, &w2, &z] {
        assert_eq!(status(&a, s).await, 200);
        assert_eq!(status(&b, s).await, 200);
    }
    let sessions = a.proxy.app.sessions();
    assert_eq!(sessions.revoke_user("wangwu").await.ok(), Some(2));
    for s in [&w1, &w2] {
        assert_eq!(status(&a, s).await, 401, "revoked session still in on A");
        assert_eq!(status(&b, s).await, 401, "revoked session still in on B");
    }
    assert_eq!(status(&a, &z).await, 200, "someone else was thrown out");
    assert_eq!(status(&b, &z).await, 200);
}

#[tokio::test]
async fn shared_sessions_standalone() {
    let redis = standalone().await;
    let url = redis.url();
    shared_sessions(move |c| use_redis(c, &url)).await;
}

#[tokio::test]
async fn shared_sessions_sentinel() {
    let master = standalone().await;
    let sentinel = common::redis::sentinel(&master, "mymaster").await;
    let url = sentinel.url();
    shared_sessions(move |c| {
        c.session.store = Store::Redis;
        c.session.redis_sentinels = vec![url.clone()];
        c.session.redis_master = "mymaster".into();
    })
    .await;
}

#[tokio::test]
async fn shared_sessions_cluster() {
    let nodes = cluster().await;
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    shared_sessions(move |c| {
        c.session.store = Store::Redis;
        c.session.redis_cluster = urls.clone();
    })
    .await;
    drop(nodes);
}

/// A config file for the binary's `sessions` commands, matching `h`'s proxy.
fn config_file(h: &Harness, dir: &tempfile::TempDir, redis: &str) -> std::path::PathBuf {
    let path = dir.path().join("proxy.toml");
    let text = format!(
        "[dingtalk]\napp_key = \"{}\"\napp_secret = \"{}\"\ncorp_id = \"{}\"\n\
         [session]\nsecret = \"{SECRET}\"\nstore = \"redis\"\n{redis}\n",
        h.fake.app_key(),
        h.fake.app_secret(),
        h.fake.corp_id(),
    );
    std::fs::write(&path, text).expect("config written");
    path
}

fn run(args: &[&str], config: &std::path::Path) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .expect("binary runs")
}

/// `sessions list` and `sessions revoke` read the proxy's config and act on Redis directly:
/// every session of the user ends on both proxies, and the count is printed.
async fn revoke_command(redis_keys: &str, tweak: impl Fn(&mut Config) + Clone) {
    let (a, b) = pair(tweak).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_file(&a, &dir, redis_keys);
    let (w1, _) = a.login_inapp("wangwu", "/").await;
    let (w2, _) = b.login_inapp("wangwu", "/").await;
    let (z, _) = b.login_inapp("zhangsan", "/").await;

    let out = run(&["sessions", "list"], &config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {:?}", out.stderr);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("wangwu\t")).count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("zhangsan\t")).count(),
        1,
        "{text}"
    );
    assert!(text.contains("3 session(s)"), "{text}");
    for secret in [SECRET, &a.fake.app_secret()] {
        assert!(!text.contains(secret), "list shows a secret");
    }
    let out = run(&["sessions", "list", "--userid", "zhangsan"], &config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 session(s)") && text.contains("张三"),
        "{text}"
    );

    let out = run(&["sessions", "revoke", "--userid", "wangwu"], &config);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "revoked 2 session(s) of wangwu\n"
    );
    for s in [&w1, &w2] {
        assert_eq!(status(&a, s).await, 401);
        assert_eq!(status(&b, s).await, 401);
    }
    assert_eq!(status(&a, &z).await, 200);
    let out = run(&["sessions", "revoke", "--userid", "wangwu"], &config);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "revoked 0 session(s) of wangwu\n"
    );
}

#[tokio::test]
async fn revoke_command_standalone() {
    let redis = standalone().await;
    let url = redis.url();
    let keys = format!("redis_url = \"{url}\"");
    revoke_command(&keys, move |c| use_redis(c, &url)).await;
}

#[tokio::test]
async fn revoke_command_cluster() {
    let nodes = cluster().await;
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let keys = format!("redis_cluster = {urls:?}");
    revoke_command(&keys, {
        let nodes: Vec<String> = urls.clone();
        move |c| {
            c.session.store = Store::Redis;
            c.session.redis_cluster = nodes.clone();
        }
    })
    .await;
}

/// In cookie mode there is nothing to list or revoke: exit 2 with one line that says why.
#[tokio::test]
async fn session_commands_need_redis() {
    let h = start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_file(&h, &dir, "");
    let text = std::fs::read_to_string(&config)
        .unwrap_or_default()
        .replace("store = \"redis\"", "store = \"cookie\"");
    std::fs::write(&config, text).expect("config written");
    for args in [
        &["sessions", "list"][..],
        &["sessions", "revoke", "--userid", "wangwu"][..],
    ] {
        let out = run(args, &config);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("session.store = \"redis\""), "{err}");
    }
}

/// GET `path` on the admin listener at `admin` (`http://…`).
async fn admin_get(h: &Harness, admin: &str, path: &str) -> reqwest::Response {
    h.http
        .get(format!("{admin}{path}"))
        .send()
        .await
        .expect("admin listener answers")
}

/// Redis stalled (SIGSTOP): requests that need a session get 503 with Retry-After within a
/// second or two — a page for a browser, JSON for an API client — and /readyz says 503;
/// anonymous requests still get the login redirect. Resumed (SIGCONT): the same cookie works.
#[tokio::test]
async fn redis_stall_is_503_not_logged_out() {
    let redis = standalone().await;
    let url = redis.url();
    let h = start_with(|c| {
        use_redis(c, &url);
        c.admin_listen = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    let admin = format!("http://{}", h.proxy.admin_addr.expect("admin"));
    let (session, _) = h.login_inapp("wangwu", "/").await;
    assert_eq!(status(&h, &session).await, 200);
    assert_eq!(admin_get(&h, &admin, "/readyz").await.status(), 200);

    redis.stall();
    let started = Instant::now();
    let api = h
        .get(
            "/x",
            &[("cookie", &session), ("accept", "application/json")],
        )
        .await;
    let took = started.elapsed();
    assert_eq!(api.status(), 503);
    assert!(took < Duration::from_secs(2), "503 took {took:?}");
    assert!(api.headers().contains_key("retry-after"));
    let body: serde_json::Value = api.json().await.unwrap_or_default();
    assert_eq!(body["error"], "session_store_unavailable");
    let page = h
        .get("/x", &[("cookie", &session), ("accept", "text/html")])
        .await;
    assert_eq!(page.status(), 503);
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("登录服务暂时不可用") && html.contains("temporarily unavailable"));
    let anonymous = h.get("/x", &[("accept", "text/html")]).await;
    assert_eq!(anonymous.status(), 302);
    assert_eq!(admin_get(&h, &admin, "/readyz").await.status(), 503);
    let metrics = admin_get(&h, &admin, "/metrics")
        .await
        .text()
        .await
        .unwrap_or_default();
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("dap_redis_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(errors >= 2, "{metrics}");
    assert!(
        metrics.contains("dap_redis_latency_seconds_count"),
        "{metrics}"
    );

    redis.resume();
    let end = Instant::now() + Duration::from_secs(15);
    let mut last = 0;
    while Instant::now() < end {
        last = status(&h, &session).await;
        if last == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 200, "the session did not come back with Redis");
    assert_eq!(admin_get(&h, &admin, "/readyz").await.status(), 200);
}

/// Revalidation in Redis mode: of two proxies whose sessions are stale, one asks DingTalk
/// (one user-details call per interval across both), and its verdict reaches every replica at
/// once — new details on both, and a deactivated user thrown out of both.
#[tokio::test]
async fn revalidation_is_shared_through_redis() {
    let redis = standalone().await;
    let url = redis.url();
    let every = Duration::from_secs(600);
    let (a, b) = pair(move |c| {
        use_redis(c, &url);
        c.session.revalidate = every;
    })
    .await;
    let (s, _) = a.login_inapp("wangwu", "/").await;
    let details = "/topapi/v2/user/get";
    a.fake.reset_calls();
    a.fake.set_user_mobile("wangwu", Some("13900009999"));
    a.clock.advance(every);
    b.clock.advance(every);
    // Both replicas see the stale session, several times each.
    for _ in 0..3 {
        assert_eq!(status(&a, &s).await, 200);
        assert_eq!(status(&b, &s).await, 200);
    }
    let end = Instant::now() + Duration::from_secs(10);
    let mut mobile = String::new();
    while Instant::now() < end {
        let echo = b.echo(&s, "/x", &[]).await;
        mobile = seen(&echo, "x-user-mobile")
            .first()
            .copied()
            .unwrap_or_default()
            .to_string();
        if mobile == "13900009999" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mobile, "13900009999", "new details did not reach replica B");
    let echo = a.echo(&s, "/x", &[]).await;
    assert_eq!(seen(&echo, "x-user-mobile"), vec!["13900009999"]);
    assert_eq!(
        a.fake.calls(details),
        1,
        "DingTalk asked more than once per interval"
    );

    // Deactivated: the next interval's one check ends the session on both.
    a.fake.set_user_active("wangwu", false);
    a.clock.advance(every);
    b.clock.advance(every);
    let end = Instant::now() + Duration::from_secs(10);
    let (mut on_a, mut on_b) = (200, 200);
    while Instant::now() < end && (on_a != 401 || on_b != 401) {
        on_b = status(&b, &s).await;
        on_a = status(&a, &s).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((on_a, on_b), (401, 401), "a deactivated user kept access");
    assert_eq!(a.fake.calls(details), 2);
}

/// The same with two proxy processes (the real binary): a session made on one works on the
/// other, logout on one ends it on both, `sessions revoke` ends one user's sessions on both.
#[tokio::test]
async fn two_processes_share_redis() {
    let redis = standalone().await;
    let fake = dingtalk_auth_proxy::fake::FakeDingTalk::new()
        .user(wangwu())
        .start()
        .await
        .expect("fake");
    let upstream = dingtalk_auth_proxy::demo::start_echo().await.expect("echo");
    let (up, url) = (format!("http://{upstream}"), redis.url());
    let env = [
        ("DAP_UPSTREAM", up.as_str()),
        ("DAP_SESSION__STORE", "redis"),
        ("DAP_SESSION__REDIS_URL", url.as_str()),
    ];
    let (a, b) = (
        common::binary::start(&fake, &env),
        common::binary::start(&fake, &env),
    );
    let at = |p: &common::binary::ProxyProcess, s: &str| {
        let url = format!("{}/x", p.base);
        let s = s.to_string();
        async move {
            get_url(&url, &[("cookie", &s), ("accept", "application/json")])
                .await
                .status()
                .as_u16()
        }
    };
    let login = "/_auth/login?rd=/";
    let (s, _) = inapp_login_via(&a.base, &fake, "wangwu", login).await;
    assert_eq!(at(&b, &s).await, 200);
    let r = get_url(&format!("{}/_auth/logout?rd=/", b.base), &[("cookie", &s)]).await;
    assert_eq!(r.status(), 302);
    assert_eq!((at(&a, &s).await, at(&b, &s).await), (401, 401));

    let (w1, _) = inapp_login_via(&a.base, &fake, "wangwu", login).await;
    let (w2, _) = inapp_login_via(&b.base, &fake, "wangwu", login).await;
    let (z, _) = inapp_login_via(&b.base, &fake, "zhangsan", login).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "[dingtalk]\napp_key = \"k\"\napp_secret = \"s\"\ncorp_id = \"c\"\n\
             [session]\nsecret = \"{SECRET}\"\nstore = \"redis\"\nredis_url = \"{url}\"\n"
        ),
    )
    .expect("config");
    let out = run(&["sessions", "revoke", "--userid", "wangwu"], &config);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "revoked 2 session(s) of wangwu\n"
    );
    for s in [&w1, &w2] {
        assert_eq!((at(&a, s).await, at(&b, s).await), (401, 401));
    }
    assert_eq!((at(&a, &z).await, at(&b, &z).await), (200, 200));
}

/// Behind nginx `auth_request` (the shipped config), a stalled Redis is a 503 too — a page for
/// a browser, JSON for an API client, with Retry-After — not nginx's 500; and sessions work
/// again when Redis is back.
#[tokio::test]
async fn nginx_auth_request_while_redis_stalls() {
    let redis = standalone().await;
    let url = redis.url();
    let h = start_with(|c| {
        use_redis(c, &url);
        c.upstream = None;
    })
    .await;
    let front =
        common::fronts::start_nginx(free_port(), h.proxy.addr, &h.upstream.to_string()).await;
    let (session, _) = inapp_login_via(&front.base, &h.fake, "wangwu", "/_auth/login?rd=/").await;
    let get = |accept: &'static str| {
        let (url, session) = (format!("{}/x", front.base), session.clone());
        async move { get_url(&url, &[("cookie", &session), ("accept", accept)]).await }
    };
    assert_eq!(get("application/json").await.status(), 200);

    redis.stall();
    let api = get("application/json").await;
    assert_eq!(api.status(), 503);
    assert!(api.headers().contains_key("retry-after"));
    let body: serde_json::Value = api.json().await.unwrap_or_default();
    assert_eq!(body["error"], "session_store_unavailable");
    let page = get("text/html").await;
    assert_eq!(page.status(), 503);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .starts_with("text/html"));
    assert!(page
        .text()
        .await
        .unwrap_or_default()
        .contains("登录服务暂时不可用"));

    redis.resume();
    let end = Instant::now() + Duration::from_secs(15);
    let mut last = 0;
    while Instant::now() < end && last != 200 {
        last = get("application/json").await.status().as_u16();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 200, "the session did not come back with Redis");
}
