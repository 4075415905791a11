//! `cargo run --example demo`, driven by a plain HTTP client from start to injected headers,
//! through both login flows. Runs the built example binary (`.ci/run` builds the examples).
#![cfg(feature = "fake")]

mod common;

use common::{client, set_cookie, start_demo, state_from_page, urlencode, BROWSER_UA, DINGTALK_UA};

/// The demo app's HTML page at `url` for the holder of `session`.
async fn app_page(url: &str, session: &str) -> String {
    client()
        .get(url)
        .header("cookie", session)
        .header("accept", "text/html")
        .send()
        .await
        .expect("demo app answers")
        .text()
        .await
        .expect("page body")
}

/// In-app flow: DingTalk UA → login page → (the JSAPI's) code → callback → the demo app shows
/// the injected headers.
#[tokio::test]
async fn demo_inapp_login_by_plain_http() {
    let demo = start_demo();
    let http = client();
    let r = http
        .get(format!("{}/hello?x=1", demo.proxy))
        .header("user-agent", DINGTALK_UA)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let login = r.headers()["location"].to_str().unwrap().to_string();
    let r = http
        .get(format!("{}{login}", demo.proxy))
        .header("user-agent", DINGTALK_UA)
        .send()
        .await
        .unwrap();
    let state_cookie = common::state_cookie(r.headers()).unwrap();
    let state = state_from_page(&r.text().await.unwrap());
    let code = http
        .get(format!("{}/_fake/mint?userid=zhangsan", demo.fake))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = http
        .get(format!(
            "{}/_auth/callback?code={}&state={}",
            demo.proxy,
            urlencode(code.trim()),
            urlencode(&state)
        ))
        .header("cookie", &state_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/hello?x=1");
    let session = set_cookie(r.headers(), "dap_session").unwrap();
    let page = app_page(&format!("{}/hello?x=1", demo.proxy), &session).await;
    assert!(page.contains("<b id=\"user\">zhangsan</b>"), "{page}");
    assert!(page.contains("13800000001"), "{page}");
}

/// Desktop flow: browser UA → DingTalk's OAuth page (fake) → approve → callback → the app.
#[tokio::test]
async fn demo_browser_login_by_plain_http() {
    let demo = start_demo();
    let http = client();
    let r = http
        .get(format!("{}/", demo.proxy))
        .header("user-agent", BROWSER_UA)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let login = r.headers()["location"].to_str().unwrap().to_string();
    let r = http
        .get(format!("{}{login}", demo.proxy))
        .header("user-agent", BROWSER_UA)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let state_cookie = common::state_cookie(r.headers()).unwrap();
    let oauth = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(oauth
        .as_str()
        .starts_with(&format!("{}/oauth2/auth?", demo.fake)));
    let q: std::collections::HashMap<_, _> = oauth.query_pairs().into_owned().collect();
    let page = http
        .get(oauth.as_str())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("approve-lisi"));
    let r = http
        .post(format!("{}/oauth2/approve", demo.fake))
        .form(&[
            ("redirect_uri", q["redirect_uri"].as_str()),
            ("state", q["state"].as_str()),
            ("userid", "lisi"),
        ])
        .send()
        .await
        .unwrap();
    let callback = r.headers()["location"].to_str().unwrap().to_string();
    assert!(callback.starts_with(&format!("{}/_auth/callback?authCode=", demo.proxy)));
    let r = http
        .get(&callback)
        .header("cookie", &state_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{:?}", r.text().await);
    let session = set_cookie(r.headers(), "dap_session").unwrap();
    let page = app_page(&format!("{}/", demo.proxy), &session).await;
    assert!(page.contains("<b id=\"user\">lisi</b>"), "{page}");
    assert!(page.contains("13800000002"), "{page}");
}
