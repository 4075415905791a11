//! What people meet, over plain HTTP: several logins at once in one browser, the dead ends
//! (already logged in, a callback after another tab finished, an inactive account), and the
//! page or JSON when the app behind the proxy is down or slow.
#![cfg(feature = "fake")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use dingtalk_auth_proxy::fake::FakeUser;

/// Starts a desktop login for `rd`: the state cookie and the state DingTalk will echo.
async fn begin_oauth(h: &Harness, rd: &str, cookies: &str) -> (String, String) {
    let resp = h
        .get(
            &format!("/_auth/login?rd={}", urlencode(rd)),
            &[
                ("user-agent", BROWSER_UA),
                ("accept", "text/html"),
                ("cookie", cookies),
            ],
        )
        .await;
    assert_eq!(resp.status(), 302);
    let cookie = state_cookie(resp.headers()).expect("state cookie");
    let to = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let q: HashMap<String, String> = to.query_pairs().into_owned().collect();
    (cookie, q["state"].clone())
}

/// DingTalk's redirect back to us for `state`, with the browser's `cookies`: (status,
/// Location, session cookie set).
async fn finish_oauth(h: &Harness, state: &str, cookies: &str) -> (u16, String, Option<String>) {
    let code = h.fake.mint_code("wangwu").unwrap();
    let resp = h
        .get(
            &format!("/_auth/callback?authCode={code}&state={}", urlencode(state)),
            &[("cookie", cookies), ("user-agent", BROWSER_UA)],
        )
        .await;
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let session = set_cookie(resp.headers(), "dap_session")
        .filter(|c| c.split_once('=').is_some_and(|(_, v)| !v.is_empty()));
    (resp.status().as_u16(), location, session)
}

/// Two tabs start logging in (`/a`, then `/b`); approving them in either order lands each on
/// its own page, and each login's state stays single-use.
#[tokio::test]
async fn two_tabs_log_in_in_either_order() {
    let h = start().await;
    for newer_first in [false, true] {
        let (ca, sa) = begin_oauth(&h, "/a", "").await;
        let (cb, sb) = begin_oauth(&h, "/b", &ca).await;
        let jar = format!("{ca}; {cb}");
        let order = if newer_first {
            [(sb.clone(), "/b"), (sa.clone(), "/a")]
        } else {
            [(sa.clone(), "/a"), (sb.clone(), "/b")]
        };
        let (status, location, session) = finish_oauth(&h, &order[0].0, &jar).await;
        assert_eq!((status, location.as_str()), (302, order[0].1));
        let session = session.expect("first tab logged in");
        // The second tab: its own state cookie is still there; the session is too.
        let jar2 = format!("{jar}; {session}");
        let (status, location, _) = finish_oauth(&h, &order[1].0, &jar2).await;
        assert_eq!((status, location.as_str()), (302, order[1].1));
        // Replaying the first callback without a session is refused as before.
        let (status, _, session) = finish_oauth(&h, &order[0].0, &jar).await;
        assert_eq!(status, 400);
        assert!(session.is_none());
    }
}

/// In-app (免登) logins in two tabs at once: each lands on its own page.
#[tokio::test]
async fn two_inapp_logins_at_once() {
    let h = start().await;
    let (ca, sa) = h.start_inapp_login("/a").await;
    let (cb, sb) = h.start_inapp_login("/b").await;
    let jar = format!("{ca}; {cb}");
    let code = h.fake.mint_code("wangwu").unwrap();
    let r = h.callback(&jar, &code, &sb).await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/b");
    let code = h.fake.mint_code("wangwu").unwrap();
    let r = h.callback(&jar, &code, &sa).await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/a");
}

/// A browser cannot pile up state cookies: past the cap the oldest are deleted.
#[tokio::test]
async fn outstanding_logins_are_capped() {
    let h = start().await;
    let mut jar: Vec<String> = Vec::new();
    let mut deleted = 0;
    for i in 0..10 {
        let resp = h
            .get(
                &format!("/_auth/login?rd=/p{i}"),
                &[("user-agent", BROWSER_UA), ("cookie", &jar.join("; "))],
            )
            .await;
        for v in resp.headers().get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap().to_string();
            let (name, value) = pair.split_once('=').unwrap();
            jar.retain(|c| !c.starts_with(&format!("{name}=")));
            if value.is_empty() {
                deleted += 1;
            } else {
                jar.push(pair.clone());
            }
        }
    }
    assert_eq!(jar.len(), 7, "{jar:?}");
    assert_eq!(deleted, 3);
}

/// Already logged in: `/login` goes straight to `rd` (no DingTalk round trip), unless a flow
/// is asked for; a callback whose state is gone also just continues to the page.
#[tokio::test]
async fn no_dead_ends_when_logged_in() {
    let h = start().await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    let r = h
        .get(
            "/_auth/login?rd=%2Freports%3Fq%3D1",
            &[("cookie", &session), ("user-agent", BROWSER_UA)],
        )
        .await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/reports?q=1");
    let r = h
        .get(
            "/_auth/login?rd=/x&flow=qr",
            &[("cookie", &session), ("user-agent", BROWSER_UA)],
        )
        .await;
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/oauth2/auth"),
        "flow=qr must start a new login"
    );
    // A late callback from an older tab whose state cookie is gone: continue, not an error.
    let r = h
        .get(
            "/_auth/callback?authCode=x&state=stale-state-value-0000",
            &[("cookie", &session)],
        )
        .await;
    assert_eq!(r.status(), 302);
    // Without a session the same callback is refused, and its retry keeps `/` (no state).
    let r = h
        .get(
            "/_auth/callback?authCode=x&state=stale-state-value-0000",
            &[],
        )
        .await;
    assert_eq!(r.status(), 400);
}

/// A failed callback's "log in again" button keeps the page the user wanted.
#[tokio::test]
async fn retry_keeps_the_page() {
    let h = start().await;
    let (cookie, state) = h.start_inapp_login("/reports?q=1").await;
    let r = h.callback(&cookie, "not-a-valid-code", &state).await;
    assert!(r.status().is_client_error() || r.status().is_server_error());
    let html = r.text().await.unwrap();
    assert!(
        html.contains("rd=%2Freports%3Fq%3D1"),
        "retry lost the page: {html}"
    );
}

/// An inactive account gets a page that says what to do and offers another account.
#[tokio::test]
async fn inactive_account_has_a_way_out() {
    let fake = dingtalk_auth_proxy::fake::FakeDingTalk::new()
        .user({
            let mut u = FakeUser::new("newbie", "新人");
            u.active = false;
            u
        })
        .start()
        .await
        .unwrap();
    let upstream = dingtalk_auth_proxy::demo::start_echo().await.unwrap();
    let h = start_against(fake, upstream, |_| {}).await;
    let (cookie, state) = h.start_inapp_login("/x").await;
    let code = h.fake.mint_code("newbie").unwrap();
    let r = h.callback(&cookie, &code, &state).await;
    assert_eq!(r.status(), 403);
    assert!(set_cookie(r.headers(), "dap_session").is_none());
    let html = r.text().await.unwrap();
    assert!(
        html.contains("管理员") && html.contains("administrator"),
        "{html}"
    );
    assert!(
        html.contains("flow=qr"),
        "no switch-account way out: {html}"
    );
}

/// The app down: a browser gets the bilingual 502 page (it is the app, not the login; a retry
/// button for the same page), an API client JSON; a slow app 504 the same way.
#[tokio::test]
async fn app_down_or_slow() {
    let h = start_with(|c| c.upstream_timeout = Duration::from_secs(1)).await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    let page = [
        ("cookie", session.as_str()),
        ("accept", "text/html"),
        ("user-agent", BROWSER_UA),
    ];
    let api = [("cookie", session.as_str()), ("accept", "application/json")];
    let r = h.get("/slow?x=1", &page).await;
    assert_eq!(r.status(), 504);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = r.text().await.unwrap();
    assert!(
        html.contains("应用") && html.contains("application"),
        "{html}"
    );
    assert!(html.contains("href=\"/slow?x=1\""), "no retry: {html}");
    let r = h.get("/slow", &api).await;
    assert_eq!(r.status(), 504);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["error"], "upstream_timeout");

    // Upstream gone: a port nobody listens on.
    let closed = free_port();
    let h2 = start_with(move |c| {
        c.upstream = url::Url::parse(&format!("http://127.0.0.1:{closed}")).ok();
    })
    .await;
    let (session, _) = h2.login_inapp("wangwu", "/").await;
    let r = h2
        .get(
            "/app",
            &[
                ("cookie", session.as_str()),
                ("accept", "text/html"),
                ("user-agent", BROWSER_UA),
            ],
        )
        .await;
    assert_eq!(r.status(), 502);
    let html = r.text().await.unwrap();
    assert!(html.contains("重试") && html.contains("Retry"), "{html}");
    assert!(html.contains("restarting"), "{html}");
    let r = h2
        .get(
            "/app",
            &[("cookie", session.as_str()), ("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status(), 502);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["error"], "upstream_unavailable");
}

/// Every request has an `X-Request-Id`: the client's when it is a sane token, else a new one;
/// the app behind us receives the same id the client gets back.
#[tokio::test]
async fn request_ids_reach_the_app_and_come_back() {
    let h = start().await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    for (sent, kept) in [
        (Some("trace-7f3a.1"), true),
        (Some("a b"), false),
        (None, false),
    ] {
        let mut headers = vec![("cookie", session.as_str()), ("accept", "application/json")];
        if let Some(id) = sent {
            headers.push(("x-request-id", id));
        }
        let r = h.get("/x", &headers).await;
        assert_eq!(r.status(), 200);
        let back = r.headers()["x-request-id"]
            .to_str()
            .unwrap_or_default()
            .to_string();
        let echo: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!(seen(&echo, "x-request-id"), vec![back.as_str()], "{sent:?}");
        if kept {
            assert_eq!(Some(back.as_str()), sent);
        } else {
            assert_eq!(back.len(), 22, "{sent:?} -> {back}");
        }
    }
    // Our own answers carry one too.
    let r = h.get("/_auth/healthz", &[]).await;
    assert_eq!(r.headers()["x-request-id"].len(), 22);
}

/// The browser is not left with login leftovers: the callback deletes the state cookie of the
/// login it finished (success or failure), and logout deletes every outstanding one.
#[tokio::test]
async fn login_state_cookies_are_cleaned_up() {
    let h = start().await;
    let name_of = |pair: &str| pair.split('=').next().unwrap_or_default().to_string();
    // A finished login: its state cookie goes.
    let (cookie, state) = h.start_inapp_login("/").await;
    let code = h.fake.mint_code("wangwu").expect("code");
    let r = h.callback(&cookie, &code, &state).await;
    assert_eq!(r.status(), 302);
    let deleted = set_cookie(r.headers(), &name_of(&cookie));
    assert_eq!(deleted, Some(format!("{}=", name_of(&cookie))));
    let session = set_cookie(r.headers(), "dap_session").expect("session");
    // A failed one (a replay): its state cookie goes too.
    let r = h.callback(&cookie, &code, &state).await;
    assert_ne!(r.status(), 200);
    assert_eq!(
        set_cookie(r.headers(), &name_of(&cookie)),
        Some(format!("{}=", name_of(&cookie)))
    );
    // Two logins left open in other tabs: logout deletes both state cookies and the session.
    let (a, _) = h.start_inapp_login("/a").await;
    let (b, _) = h.start_inapp_login("/b").await;
    let all = format!("{session}; {a}; {b}");
    let r = h.get("/_auth/logout", &[("cookie", &all)]).await;
    assert_eq!(r.status(), 200);
    for pair in [&a, &b, &session] {
        let name = name_of(pair);
        assert_eq!(
            set_cookie(r.headers(), &name),
            Some(format!("{name}=")),
            "{name}"
        );
    }
}
