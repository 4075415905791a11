//! The desktop-browser login through DingTalk's OAuth page (the fake's), over plain HTTP:
//! the redirect's parameters, state binding, denial, people outside the corp, and the QR
//! way out of a failed in-app login.
#![cfg(feature = "fake")]

mod common;

use std::collections::HashMap;

use common::*;
use dingtalk_auth_proxy::fake::{Failure, FakeDingTalk};

/// Opens the login in a desktop browser: returns the state cookie and DingTalk's URL.
async fn begin(h: &Harness, rd: &str) -> (String, url::Url) {
    let resp = h
        .get(
            &format!("/_auth/login?rd={}", urlencode(rd)),
            &[("user-agent", BROWSER_UA), ("accept", "text/html")],
        )
        .await;
    assert_eq!(resp.status(), 302);
    let cookie = state_cookie(resp.headers()).expect("state cookie");
    let to = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    (cookie, to)
}

fn query(u: &url::Url) -> HashMap<String, String> {
    u.query_pairs().into_owned().collect()
}

/// The redirect carries the contract's parameters; approving as a user logs them in at `rd`
/// with the same identity the in-app flow gives.
#[tokio::test]
async fn browser_login_end_to_end() {
    let h = start().await;
    let (cookie, to) = begin(&h, "/reports?q=1").await;
    assert_eq!(to.path(), "/oauth2/auth");
    let q = query(&to);
    assert_eq!(q["redirect_uri"], format!("{}/_auth/callback", h.base));
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], h.fake.app_key());
    assert_eq!(q["scope"], "openid");
    assert_eq!(q["prompt"], "consent");
    assert!(q["state"].len() >= 32);
    let code = h.fake.mint_code("wangwu").unwrap();
    let resp = h
        .get(
            &format!(
                "/_auth/callback?authCode={code}&state={}",
                urlencode(&q["state"])
            ),
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/reports?q=1");
    let session = set_cookie(resp.headers(), "dap_session").unwrap();
    let echo = h
        .echo(&session, "/reports?q=1", &[("x-user-id", "evil")])
        .await;
    assert_eq!(seen(&echo, "x-user-id"), vec!["wangwu"]);
    assert_eq!(seen(&echo, "x-user-mobile"), vec!["13900000002"]);
    assert_eq!(h.fake.calls("/v1.0/oauth2/userAccessToken"), 1);
    assert_eq!(h.fake.calls("/topapi/user/getbyunionid"), 1);
}

/// The state is bound to the browser and single-use: another browser's state, a missing one,
/// or a replay get 400 and no session.
#[tokio::test]
async fn state_is_bound_and_single_use() {
    let h = start().await;
    let (cookie_a, to_a) = begin(&h, "/").await;
    let (_cookie_b, to_b) = begin(&h, "/").await;
    let state_a = query(&to_a)["state"].clone();
    let state_b = query(&to_b)["state"].clone();
    let code = h.fake.mint_code("wangwu").unwrap();
    let cb = |state: &str, code: &str| {
        format!("/_auth/callback?authCode={code}&state={}", urlencode(state))
    };
    let resp = h.get(&cb(&state_b, &code), &[("cookie", &cookie_a)]).await;
    assert_eq!(resp.status(), 400);
    assert!(set_cookie(resp.headers(), "dap_session").is_none());
    let resp = h
        .get(
            &format!("/_auth/callback?authCode={code}"),
            &[("cookie", &cookie_a)],
        )
        .await;
    assert_eq!(resp.status(), 400);
    let resp = h.get(&cb(&state_a, &code), &[("cookie", &cookie_a)]).await;
    assert_eq!(resp.status(), 302);
    let code2 = h.fake.mint_code("wangwu").unwrap();
    let resp = h.get(&cb(&state_a, &code2), &[("cookie", &cookie_a)]).await;
    assert_eq!(resp.status(), 400, "replayed state");
    assert!(set_cookie(resp.headers(), "dap_session").is_none());
}

/// Denial on DingTalk's page, and people outside the corp, get clear pages and no session.
#[tokio::test]
async fn denied_and_outsiders() {
    let h = start().await;
    let (cookie, to) = begin(&h, "/").await;
    let state = query(&to)["state"].clone();
    let resp = h
        .get(
            &format!(
                "/_auth/callback?error=access_denied&state={}",
                urlencode(&state)
            ),
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert!(set_cookie(resp.headers(), "dap_session").is_none());

    let (cookie, to) = begin(&h, "/").await;
    let state = query(&to)["state"].clone();
    h.fake.fail(
        "/topapi/user/getbyunionid",
        Failure::Errcode {
            errcode: 60121,
            errmsg: "找不到该用户".into(),
        },
        Some(1),
    );
    let code = h.fake.mint_code("wangwu").unwrap();
    let resp = h
        .get(
            &format!(
                "/_auth/callback?authCode={code}&state={}",
                urlencode(&state)
            ),
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert!(set_cookie(resp.headers(), "dap_session").is_none());
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("不是本企业") && html.contains("not a member"),
        "{html}"
    );

    // A user who logs in with an account of another organisation.
    let other = FakeDingTalk::new()
        .corp_id("dinganothercorp")
        .start()
        .await
        .unwrap();
    let h2 = start_against(other.clone(), h.upstream, |c| {
        c.dingtalk.corp_id = "dingourcorp".into();
    })
    .await;
    let (cookie, to) = begin(&h2, "/").await;
    let state = query(&to)["state"].clone();
    let code = other.mint_code("zhangsan").unwrap();
    let resp = h2
        .get(
            &format!(
                "/_auth/callback?authCode={code}&state={}",
                urlencode(&state)
            ),
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(resp.status(), 403);
}

/// Inside DingTalk, `flow=qr` (the failed-JSAPI way out) goes to the OAuth page instead.
#[tokio::test]
async fn qr_way_out_of_the_inapp_page() {
    let h = start().await;
    let resp = h
        .get("/_auth/login?rd=%2Fx", &[("user-agent", DINGTALK_UA)])
        .await;
    let html = resp.text().await.unwrap();
    assert!(html.contains("/_auth/login?rd=%2Fx&amp;flow=qr"), "{html}");
    let resp = h
        .get(
            "/_auth/login?rd=%2Fx&flow=qr",
            &[("user-agent", DINGTALK_UA)],
        )
        .await;
    assert_eq!(resp.status(), 302);
    assert!(resp.headers()["location"]
        .to_str()
        .unwrap()
        .contains("/oauth2/auth?"));
}

/// Our pages carry no-store, a CSP, and HTML content type; only the JSAPI script is external.
#[tokio::test]
async fn page_headers() {
    let h = start().await;
    let resp = h
        .get("/_auth/login?rd=/", &[("user-agent", DINGTALK_UA)])
        .await;
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'nonce-") && csp.contains(&h.fake.base_url()),
        "{csp}"
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let html = resp.text().await.unwrap();
    let srcs: Vec<&str> = html
        .match_indices("src=\"")
        .map(|(i, _)| &html[i + 5..])
        .collect();
    assert_eq!(srcs.len(), 1, "one external script");
    assert!(srcs[0].starts_with(&h.fake.jsapi_url()));
    let resp = h.get("/_auth/logout", &[]).await;
    assert!(resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html; charset=utf-8"));
}
