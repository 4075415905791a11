//! The in-app (免登) login end to end through real HTTP: redirect to login, the JSAPI page,
//! the callback, the session, and what the upstream receives.
#![cfg(feature = "fake")]

mod common;

use common::*;
use dingtalk_auth_proxy::clock::Clock;
use dingtalk_auth_proxy::dingtalk::User;
use dingtalk_auth_proxy::session::{CookieCodec, Session};
use dingtalk_auth_proxy::user::Field;

/// A DingTalk user with no cookie ends at the original path, and upstream sees who they are
/// — never what the client claimed in any spelling of the identity headers.
#[tokio::test]
async fn inapp_login_end_to_end() {
    let h = start().await;
    let nav = [("user-agent", DINGTALK_UA), ("accept", "text/html")];
    let resp = h.get("/app/page?x=1", &nav).await;
    assert_eq!(resp.status(), 302);
    let login = resp.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(login, "/_auth/login?rd=%2Fapp%2Fpage%3Fx%3D1");

    let resp = h.get(&login, &nav).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let state_cookie = state_cookie(resp.headers()).expect("state cookie");
    let html = resp.text().await.unwrap();
    assert!(html.contains("requestAuthCode") && html.contains(&h.fake.corp_id()));
    assert!(html.contains(&h.fake.jsapi_url()));
    let state = state_from_page(&html);

    // What the JSAPI does inside DingTalk: obtain a code, go to the callback.
    let code = h.fake.mint_code("wangwu").unwrap();
    let resp = h.callback(&state_cookie, &code, &state).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/app/page?x=1");
    let raw_cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("dap_session="))
        .unwrap();
    assert!(raw_cookie.contains("HttpOnly") && raw_cookie.contains("SameSite=Lax"));
    assert!(
        !raw_cookie.contains("Secure"),
        "plain-http public_url: no Secure"
    );
    let session = set_cookie(resp.headers(), "dap_session").unwrap();

    let cookie = format!("{session}; app_cookie=kept");
    let echo = h
        .echo(
            &cookie,
            "/app/page?x=1",
            &[
                ("X-User-Id", "evil1"),
                ("x_user_id", "evil2"),
                ("X_User_Id", "evil3"),
                ("X-USER-MOBILE", "110"),
                ("connection", "X-User-Id, X-User-Mobile"),
            ],
        )
        .await;
    assert_eq!(echo["path"], "/app/page?x=1");
    assert_eq!(seen(&echo, "x-user-id"), vec!["wangwu"]);
    assert_eq!(seen(&echo, "x-user-mobile"), vec!["13900000002"]);
    let headers = echo["headers"].as_object().unwrap();
    assert!(
        !headers.contains_key("x_user_id"),
        "underscore spelling reached upstream"
    );
    assert_eq!(seen(&echo, "cookie"), vec!["app_cookie=kept"]);
    assert_eq!(seen(&echo, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(seen(&echo, "x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        seen(&echo, "x-forwarded-host"),
        vec![h.proxy.addr.to_string().as_str()]
    );

    // The userinfo endpoint shows the same person.
    let info: serde_json::Value = h
        .get("/_auth/userinfo", &[("cookie", &session)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["userid"], "wangwu");
    assert_eq!(info["name"], "王五");
    assert_eq!(info["dept_ids"], serde_json::json!([10, 20]));
}

/// Without a session: browser navigation → 302 to login; XHR, JSON and non-GET → 401 JSON.
#[tokio::test]
async fn unauthenticated_answers() {
    let h = start().await;
    let resp = h.get("/x", &[("accept", "text/html,*/*")]).await;
    assert_eq!(resp.status(), 302);
    for headers in [
        vec![("accept", "application/json")],
        vec![
            ("accept", "text/html"),
            ("x-requested-with", "XMLHttpRequest"),
        ],
    ] {
        let resp = h.get("/api/x", &headers).await;
        assert_eq!(resp.status(), 401);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "unauthenticated");
        assert!(body["login_url"]
            .as_str()
            .unwrap()
            .contains("/_auth/login?rd=%2Fapi%2Fx"));
    }
    let resp = h
        .http
        .post(format!("{}/form", h.base))
        .header("accept", "text/html")
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        h.fake.calls("/gettoken"),
        0,
        "no DingTalk call for anonymous requests"
    );
}

/// 200 concurrent cold logins cost exactly one gettoken; each login one code exchange and one
/// user-details call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cold_logins_fetch_one_token() {
    let h = std::sync::Arc::new(start().await);
    let mut pages = Vec::new();
    for _ in 0..200 {
        pages.push(h.start_inapp_login("/").await);
    }
    let mut tasks = Vec::new();
    for (cookie, state) in pages {
        let h = h.clone();
        let code = h.fake.mint_code("wangwu").unwrap();
        tasks.push(tokio::spawn(async move {
            h.callback(&cookie, &code, &state).await.status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 302);
    }
    assert_eq!(h.fake.calls("/gettoken"), 1);
    assert_eq!(h.fake.calls("/topapi/v2/user/getuserinfo"), 200);
    assert_eq!(h.fake.calls("/topapi/v2/user/get"), 200);
}

/// When DingTalk expires the app token, the next login renews it without the user noticing.
#[tokio::test]
async fn expired_token_is_renewed() {
    let h = start().await;
    h.login_inapp("wangwu", "/").await;
    assert_eq!(h.fake.calls("/gettoken"), 1);
    h.fake.expire_tokens();
    let (_, location) = h.login_inapp("wangwu", "/after").await;
    assert_eq!(location, "/after");
    assert_eq!(h.fake.calls("/gettoken"), 2);
}

/// A code used once fails the second time with a clear page and no session.
#[tokio::test]
async fn reused_code_fails_clearly() {
    let h = start().await;
    let (cookie, state) = h.start_inapp_login("/").await;
    let code = h.fake.mint_code("wangwu").unwrap();
    assert_eq!(h.callback(&cookie, &code, &state).await.status(), 302);
    let (cookie, state) = h.start_inapp_login("/").await;
    let resp = h.callback(&cookie, &code, &state).await;
    assert_eq!(resp.status(), 400);
    let session = set_cookie(resp.headers(), "dap_session");
    assert!(session.is_none(), "a failed login set {session:?}");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = resp.text().await.unwrap();
    assert!(html.contains("log in again"), "{html}");
    assert!(
        html.contains("/_auth/login?rd="),
        "page links back to the login"
    );
}

/// Missing, wrong and replayed `state` values get 400 and no session.
#[tokio::test]
async fn callback_state_is_checked() {
    let h = start().await;
    let (cookie, state) = h.start_inapp_login("/").await;
    let code = h.fake.mint_code("wangwu").unwrap();
    // No state cookie at all.
    let resp = h
        .get(&format!("/_auth/callback?code={code}&state={state}"), &[])
        .await;
    assert_eq!(resp.status(), 400);
    // Wrong state.
    let resp = h.callback(&cookie, &code, "not-the-state").await;
    assert_eq!(resp.status(), 400);
    assert!(set_cookie(resp.headers(), "dap_session").is_none());
    // Right state, then a replay of the very same callback.
    assert_eq!(h.callback(&cookie, &code, &state).await.status(), 302);
    let code2 = h.fake.mint_code("wangwu").unwrap();
    let resp = h.callback(&cookie, &code2, &state).await;
    assert_eq!(resp.status(), 400);
    assert!(set_cookie(resp.headers(), "dap_session").is_none());
}

/// Tampered, foreign-secret and expired cookies are all treated as logged out.
#[tokio::test]
async fn bad_cookies_are_logged_out() {
    let h = start().await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    let api = |c: String| {
        let h = &h;
        async move {
            h.get("/api", &[("cookie", &c), ("accept", "application/json")])
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(api(session.clone()).await, 200);
    let (name, value) = session.split_once('=').unwrap();
    let mut bytes = value.as_bytes().to_vec();
    bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        api(format!("{name}={}", String::from_utf8(bytes).unwrap())).await,
        401
    );
    assert_eq!(
        api(format!("{name}={}", &value[..value.len() / 2])).await,
        401
    );

    let user = User {
        userid: "wangwu".into(),
        ..Default::default()
    };
    let mut foreign_cfg = h.config.clone();
    foreign_cfg.session.secret =
        dingtalk_auth_proxy::config::Secret::new("a-completely-different-secret-0123456789");
    let foreign = CookieCodec::new(&foreign_cfg, Clock::system()).unwrap();
    let s = Session::new(
        user.clone(),
        std::time::Duration::from_secs(3600),
        Clock::system().now_secs(),
    );
    let pair = foreign
        .session_cookie(&s)
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(api(pair).await, 401);

    let ours = CookieCodec::new(&h.config, Clock::system()).unwrap();
    let mut expired = Session::new(
        user,
        std::time::Duration::from_secs(3600),
        Clock::system().now_secs(),
    );
    expired.expires_at = expired.issued_at - 1;
    let pair = ours
        .session_cookie(&expired)
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(api(pair).await, 401);
    // The same codec with a live session is accepted: the test above is not vacuous.
    let live = ours
        .session_cookie(&s)
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(api(live).await, 200);
}

/// Open-redirect `rd` values land on `/`.
#[tokio::test]
async fn open_redirects_land_on_root() {
    let h = start().await;
    for rd in [
        "//evil.com",
        "/\\evil.com",
        "https://evil.com",
        "%2F%2Fevil.com",
    ] {
        let (_, location) = h.login_inapp("wangwu", rd).await;
        assert_eq!(location, "/", "rd={rd}");
    }
    // Also when the encoded form arrives in the login URL itself.
    let resp = h
        .get(
            "/_auth/login?rd=%2F%2Fevil.com",
            &[("user-agent", DINGTALK_UA)],
        )
        .await;
    let cookie = state_cookie(resp.headers()).unwrap();
    let state = state_from_page(&resp.text().await.unwrap());
    let code = h.fake.mint_code("wangwu").unwrap();
    let resp = h.callback(&cookie, &code, &state).await;
    assert_eq!(resp.headers()["location"], "/");
    let resp = h.get("/_auth/logout?rd=//evil.com", &[]).await;
    assert_eq!(resp.headers()["location"], "/");
}

/// WebSocket echo works for a logged-in user and is refused with 401 without a session.
#[tokio::test]
async fn websocket_through_the_proxy() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let h = start().await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    let url = format!("ws://{}/ws", h.proxy.addr);
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut().insert("cookie", session.parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("你好 websocket")).await.unwrap();
    let back = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("not an error");
    assert_eq!(back.into_text().unwrap().as_str(), "你好 websocket");
    ws.close(None).await.ok();

    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
}

/// skip_auth paths pass without login, with client-sent identity headers still stripped;
/// the query string cannot make a protected path look skippable.
#[tokio::test]
async fn skip_auth_paths() {
    let h = start_with(|c| c.access.skip_auth = vec!["^/public/".into()]).await;
    let resp = h
        .get(
            "/public/a.css",
            &[("x-user-id", "evil"), ("x_user_mobile", "1")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let echo: serde_json::Value = resp.json().await.unwrap();
    assert!(seen(&echo, "x-user-id").is_empty());
    assert!(echo["headers"].get("x_user_mobile").is_none());
    let resp = h
        .get("/private?/public/", &[("accept", "application/json")])
        .await;
    assert_eq!(resp.status(), 401);
}

/// Upstream down → 502; upstream too slow → 504 after `upstream_timeout`.
#[tokio::test]
async fn upstream_failures() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let h = start_with(|c| {
        c.upstream_timeout = std::time::Duration::from_millis(500);
        c.access.skip_auth = vec!["^/".into()];
    })
    .await;
    assert_eq!(h.get("/slow", &[]).await.status(), 504);
    let h2 = start_against(h.fake.clone(), dead_addr, |c| {
        c.access.skip_auth = vec!["^/".into()];
    })
    .await;
    assert_eq!(h2.get("/x", &[]).await.status(), 502);
}

/// Bodies go upstream intact, and the optional headers carry non-ASCII as percent-encoded UTF-8.
#[tokio::test]
async fn post_body_and_optional_headers() {
    let h = start_with(|c| {
        c.headers.set(Field::Name, Some("X-User-Name"));
        c.headers.set(Field::DeptIds, Some("X-User-Depts"));
    })
    .await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    let body = "x".repeat(300_000);
    let resp = h
        .http
        .post(format!("{}/submit", h.base))
        .header("cookie", &session)
        .header("x-user-name", "evil")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body"].as_str().unwrap().len(), body.len());
    assert_eq!(seen(&echo, "x-user-name"), vec!["%E7%8E%8B%E4%BA%94"]);
    assert_eq!(seen(&echo, "x-user-depts"), vec!["10,20"]);
}

/// The legacy user API (the seed's GET endpoints) logs in the same person.
#[tokio::test]
async fn legacy_user_api() {
    let h =
        start_with(|c| c.dingtalk.user_api = dingtalk_auth_proxy::config::UserApi::Legacy).await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    let echo = h.echo(&session, "/", &[]).await;
    assert_eq!(seen(&echo, "x-user-id"), vec!["wangwu"]);
    assert_eq!(seen(&echo, "x-user-mobile"), vec!["13900000002"]);
    assert_eq!(h.fake.calls("/user/getuserinfo"), 1);
    assert_eq!(h.fake.calls("/user/get"), 1);
}

/// Logout clears the session cookie; userinfo then answers 401 JSON.
#[tokio::test]
async fn logout_and_userinfo() {
    let h = start().await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    assert_eq!(
        h.get("/_auth/userinfo", &[("cookie", &session)])
            .await
            .status(),
        200
    );
    let resp = h.get("/_auth/logout", &[("cookie", &session)]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        set_cookie(resp.headers(), "dap_session").as_deref(),
        Some("dap_session=")
    );
    assert!(resp.text().await.unwrap().contains("signed out"));
    let resp = h.get("/_auth/userinfo", &[]).await;
    assert_eq!(resp.status(), 401);
    let resp = h.get("/_auth/logout?rd=/bye", &[]).await;
    assert_eq!(resp.headers()["location"], "/bye");
}

/// DingTalk's link-preview crawler gets a plain page, never the login script.
#[tokio::test]
async fn link_preview_crawler() {
    let h = start().await;
    let resp = h
        .get(
            "/_auth/login?rd=/",
            &[("user-agent", "DingTalk-LinkService/1.0")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(state_cookie(resp.headers()).is_none());
    let html = resp.text().await.unwrap();
    assert!(!html.contains("requestAuthCode") && !html.contains("<script"));
}

/// Inactive users and users outside `[access]` get 403 pages and no session.
#[tokio::test]
async fn refused_users() {
    let h = start_with(|c| c.access.allow_userids = vec!["zhangsan".into()]).await;
    let (cookie, state) = h.start_inapp_login("/").await;
    let code = h.fake.mint_code("inactive").unwrap();
    let resp = h.callback(&cookie, &code, &state).await;
    assert_eq!(resp.status(), 403);
    assert!(set_cookie(resp.headers(), "dap_session").is_none());
    let (cookie, state) = h.start_inapp_login("/").await;
    let code = h.fake.mint_code("wangwu").unwrap();
    let resp = h.callback(&cookie, &code, &state).await;
    assert_eq!(resp.status(), 403);
    assert!(set_cookie(resp.headers(), "dap_session").is_none());
}

/// DingTalk rate limiting during login becomes 503 with Retry-After.
#[tokio::test]
async fn rate_limited_login() {
    use dingtalk_auth_proxy::fake::Failure;
    let h = start().await;
    h.fake.fail(
        "/topapi/v2/user/getuserinfo",
        Failure::Errcode {
            errcode: 90018,
            errmsg: "调用频率超过限制".into(),
        },
        None,
    );
    let (cookie, state) = h.start_inapp_login("/").await;
    let code = h.fake.mint_code("wangwu").unwrap();
    let resp = h.callback(&cookie, &code, &state).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
}

/// session.revalidate: changed details reach the app, and a user who leaves the corp loses
/// access before the cookie expires — without the request path waiting on DingTalk.
#[tokio::test]
async fn revalidation_updates_and_revokes() {
    let every = std::time::Duration::from_secs(600);
    let h = start_with(|c| c.session.revalidate = every).await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    h.fake.set_user_mobile("wangwu", Some("13900009999"));
    h.clock.advance(every);
    // Bounded polling: the first stale request starts a background check; a later one sees it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut cookie = session.clone();
    let mut mobile = String::new();
    while std::time::Instant::now() < deadline {
        let resp = h
            .get(
                "/me",
                &[("cookie", &cookie), ("accept", "application/json")],
            )
            .await;
        assert_eq!(resp.status(), 200);
        if let Some(updated) = set_cookie(resp.headers(), "dap_session") {
            cookie = updated;
        }
        let echo: serde_json::Value = resp.json().await.unwrap();
        mobile = seen(&echo, "x-user-mobile")
            .first()
            .copied()
            .unwrap_or_default()
            .to_string();
        if mobile == "13900009999" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        mobile, "13900009999",
        "the new mobile never reached the app"
    );

    h.fake.remove_user("wangwu");
    h.clock.advance(every);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut status = 200;
    while std::time::Instant::now() < deadline && status == 200 {
        let resp = h
            .get(
                "/me",
                &[("cookie", &cookie), ("accept", "application/json")],
            )
            .await;
        status = resp.status().as_u16();
        if status == 401 {
            let cleared = set_cookie(resp.headers(), "dap_session");
            assert_eq!(
                cleared.as_deref(),
                Some("dap_session="),
                "cookie is cleared"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 401, "a departed user kept access");
    // The old cookie (issued before they left) is refused too.
    let resp = h
        .get(
            "/me",
            &[("cookie", &session), ("accept", "application/json")],
        )
        .await;
    assert_eq!(resp.status(), 401);
}

/// The admin listener serves /metrics (Prometheus text) and health endpoints.
#[tokio::test]
async fn admin_metrics() {
    let h = start_with(|c| c.admin_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    h.get("/api", &[("accept", "application/json")]).await;
    h.echo(&session, "/x", &[]).await;
    let r = h.get("/_auth/logout", &[("cookie", &session)]).await;
    assert_eq!(r.status(), 200);
    let admin = h.proxy.admin_addr.expect("admin listener");
    let text = h
        .http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("dap_logins_total{result=\"ok\"} 1"), "{text}");
    assert!(
        text.contains("dap_requests_total{outcome=\"unauthenticated\"} 1"),
        "{text}"
    );
    for line in [
        "dap_sessions_created_total 1",
        "dap_sessions_ended_total{reason=\"logout\"} 1",
        "dap_upstream_latency_seconds_count 1",
        "dap_dingtalk_calls_total{endpoint=\"/gettoken\",errcode=\"0\"} 1",
        "dap_dingtalk_calls_total{endpoint=\"/topapi/v2/user/getuserinfo\",errcode=\"0\"} 1",
        "dap_dingtalk_calls_total{endpoint=\"/topapi/v2/user/get\",errcode=\"0\"} 1",
    ] {
        assert!(text.contains(line), "{line} not in {text}");
    }
    for path in ["/healthz", "/readyz"] {
        let r = h
            .http
            .get(format!("http://{admin}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
