//! The fake DingTalk itself, over raw HTTP: the answers match DingTalk's documented shapes.
#![cfg(feature = "fake")]

use std::time::{Duration, Instant};

use dingtalk_auth_proxy::fake::{FakeDingTalk, FakeHandle};
use serde_json::{json, Value};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn gettoken(fake: &FakeHandle, secret: &str) -> Value {
    http()
        .get(format!("{}/gettoken", fake.base_url()))
        .query(&[("appkey", fake.app_key().as_str()), ("appsecret", secret)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn topapi(fake: &FakeHandle, path: &str, token: &str, body: Value) -> Value {
    http()
        .post(format!("{}{path}", fake.base_url()))
        .query(&[("access_token", token)])
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `f` until it is true, at most `limit`.
async fn eventually(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// gettoken: same token within validity, 40096 for a wrong secret, 40035 without parameters,
/// and tokens really expire (42001, wrapped in errcode 88 on /topapi).
#[tokio::test]
async fn tokens() {
    let fake = FakeDingTalk::new()
        .token_ttl(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let a = gettoken(&fake, &fake.app_secret()).await;
    assert_eq!(a["errcode"], 0);
    assert_eq!(a["expires_in"], 1);
    let b = gettoken(&fake, &fake.app_secret()).await;
    assert_eq!(a["access_token"], b["access_token"]);
    assert_eq!(gettoken(&fake, "wrong").await["errcode"], 40096);
    let missing: Value = http()
        .get(format!("{}/gettoken", fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(missing["errcode"], 40035);

    let token = a["access_token"].as_str().unwrap().to_string();
    let expired = eventually(Duration::from_secs(5), async || {
        let r = topapi(
            &fake,
            "/topapi/v2/user/get",
            &token,
            json!({"userid": "zhangsan"}),
        )
        .await;
        r["errcode"] == 88
    })
    .await;
    assert!(expired, "token never expired");
    let r = topapi(
        &fake,
        "/topapi/v2/user/get",
        &token,
        json!({"userid": "zhangsan"}),
    )
    .await;
    assert_eq!(r["sub_code"], "42001");
    let r = topapi(
        &fake,
        "/topapi/v2/user/get",
        "nonsense",
        json!({"userid": "zhangsan"}),
    )
    .await;
    assert_eq!(
        (r["errcode"].clone(), r["sub_code"].clone()),
        (json!(88), json!("40014"))
    );
    let plain: Value = http()
        .get(format!("{}/user/get", fake.base_url()))
        .query(&[("access_token", "nonsense"), ("userid", "zhangsan")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plain["errcode"], 40014);
}

/// Codes work once and expire.
#[tokio::test]
async fn codes() {
    let fake = FakeDingTalk::new()
        .code_ttl(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let token = gettoken(&fake, &fake.app_secret()).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let code = fake.mint_code("zhangsan").unwrap();
    let r = topapi(
        &fake,
        "/topapi/v2/user/getuserinfo",
        &token,
        json!({"code": code}),
    )
    .await;
    assert_eq!(r["result"]["userid"], "zhangsan");
    let r = topapi(
        &fake,
        "/topapi/v2/user/getuserinfo",
        &token,
        json!({"code": code}),
    )
    .await;
    assert_eq!(r["errcode"], 40078);
    let code = fake.mint_code("zhangsan").unwrap();
    let expired = eventually(Duration::from_secs(5), async || {
        // Probe with a throwaway code so the real one is not used up.
        let probe = fake.mint_code("lisi").unwrap();
        tokio::time::sleep(Duration::from_millis(350)).await;
        let r = topapi(
            &fake,
            "/topapi/v2/user/getuserinfo",
            &token,
            json!({"code": probe}),
        )
        .await;
        r["errcode"] == 40078
    })
    .await;
    assert!(expired);
    let r = topapi(
        &fake,
        "/topapi/v2/user/getuserinfo",
        &token,
        json!({"code": code}),
    )
    .await;
    assert_eq!(r["errcode"], 40078, "an expired code is refused");
    assert!(fake.mint_code("nobody").is_none());
}

/// New-API errors have DingTalk's shape: non-2xx, JSON `code`/`message`/`requestid`.
#[tokio::test]
async fn new_api_errors() {
    let fake = FakeDingTalk::new().start().await.unwrap();
    let r = http()
        .post(format!("{}/v1.0/oauth2/accessToken", fake.base_url()))
        .json(&json!({"appKey": fake.app_key(), "appSecret": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()["content-type"],
        "application/json;charset=utf-8"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "invalidClientIdOrSecret");
    assert!(v["requestid"].is_string() && v["message"].is_string());
    let r = http()
        .get(format!("{}/v1.0/contact/users/me", fake.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "AuthenticationFailed.MissingParameter");
}

/// The OAuth page lists the users; approving redirects with authCode and state; denying with
/// error=access_denied; a wrong client_id gets an error page.
#[tokio::test]
async fn oauth_page() {
    let fake = FakeDingTalk::new().start().await.unwrap();
    let page = http()
        .get(format!("{}/oauth2/auth", fake.base_url()))
        .query(&[
            ("redirect_uri", "http://127.0.0.1:1/_auth/callback"),
            ("response_type", "code"),
            ("client_id", &fake.app_key()),
            ("scope", "openid"),
            ("state", "s<1>"),
            ("prompt", "consent"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("钉钉登录") && html.contains("id=\"approve-zhangsan\""));
    assert!(
        html.contains("s&lt;1&gt;") && !html.contains("s<1>"),
        "state is escaped"
    );
    let r = http()
        .post(format!("{}/oauth2/approve", fake.base_url()))
        .form(&[
            ("redirect_uri", "http://127.0.0.1:1/_auth/callback"),
            ("state", "st"),
            ("userid", "lisi"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "st");
    assert!(!q["authCode"].is_empty());
    let r = http()
        .post(format!("{}/oauth2/approve", fake.base_url()))
        .form(&[
            ("redirect_uri", "http://127.0.0.1:1/cb"),
            ("state", "st"),
            ("deny", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .contains("error=access_denied"));
    let bad = http()
        .get(format!(
            "{}/oauth2/auth?client_id=nope&response_type=code&redirect_uri=http://x/",
            fake.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

/// The JSAPI stand-in embeds a fresh code for the chosen user and the corp check.
#[tokio::test]
async fn jsapi_script() {
    let fake = FakeDingTalk::new().start().await.unwrap();
    let js = http().get(fake.jsapi_url()).send().await.unwrap();
    assert_eq!(js.headers()["cache-control"], "no-store");
    let js = js.text().await.unwrap();
    assert!(js.contains("requestAuthCode") && js.contains(&format!("\"{}\"", fake.corp_id())));
    assert!(js.contains("runtime: { permission: { requestAuthCode"));
    fake.set_jsapi_user(None);
    let js = http()
        .get(fake.jsapi_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(js.contains("var CODE = null"));
    assert_eq!(fake.calls("/dingtalk.open.js"), 2);
}

/// The app's console settings, on the wire: a denied 成员信息读权限 is 60011 naming
/// `qyapi_get_member` on the `/topapi` user APIs; without the 手机号 permission `mobile` is
/// omitted; a user without a unionid has none in the answer and is not found by it; a
/// whitelist without the caller is 60020 naming the IP the fake saw, on gettoken and the
/// user APIs alike (new API: 403 `Forbidden.AccessDenied.IpNotInWhiteList`); 通讯录个人信息读权限
/// denied is 403 `AccessTokenPermissionDenied` on `/v1.0/contact/users/me`.
#[tokio::test]
async fn console_settings() {
    use dingtalk_auth_proxy::fake::Permission;
    let fake = FakeDingTalk::new()
        .deny(Permission::MemberRead)
        .start()
        .await
        .unwrap();
    let token = gettoken(&fake, &fake.app_secret()).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let user = json!({"userid": "zhangsan"});
    let v = topapi(&fake, "/topapi/v2/user/get", &token, user.clone()).await;
    assert_eq!(v["errcode"], 60011, "{v}");
    assert!(
        v["errmsg"].as_str().unwrap().contains("[qyapi_get_member]"),
        "{v}"
    );
    let v = topapi(
        &fake,
        "/topapi/user/getbyunionid",
        &token,
        json!({"unionid": "x"}),
    )
    .await;
    assert_eq!(v["errcode"], 60011, "{v}");

    fake.grant_permission(Permission::MemberRead);
    fake.deny_permission(Permission::Mobile);
    let v = topapi(&fake, "/topapi/v2/user/get", &token, user.clone()).await;
    assert_eq!(v["errcode"], 0, "{v}");
    assert!(v["result"].get("mobile").is_none(), "{v}");
    fake.grant_permission(Permission::Mobile);
    let v = topapi(&fake, "/topapi/v2/user/get", &token, user.clone()).await;
    assert_eq!(v["result"]["mobile"], "13800000001", "{v}");

    let unionid = v["result"]["unionid"].as_str().unwrap().to_string();
    fake.set_user_unionid("zhangsan", None);
    let v = topapi(&fake, "/topapi/v2/user/get", &token, user.clone()).await;
    assert!(v["result"].get("unionid").is_none(), "{v}");
    let v = topapi(
        &fake,
        "/topapi/user/getbyunionid",
        &token,
        json!({"unionid": unionid}),
    )
    .await;
    assert_eq!(v["errcode"], 60121, "{v}");

    fake.set_ip_whitelist(Some(vec!["203.0.113.7".parse().unwrap()]));
    let v = gettoken(&fake, &fake.app_secret()).await;
    assert_eq!(v["errcode"], 60020, "{v}");
    assert!(
        v["errmsg"]
            .as_str()
            .unwrap()
            .contains("request ip=127.0.0.1"),
        "{v}"
    );
    let v = topapi(&fake, "/topapi/v2/user/get", &token, user).await;
    assert_eq!(v["errcode"], 60020, "{v}");
    let r = http()
        .post(format!("{}/v1.0/oauth2/accessToken", fake.base_url()))
        .json(&json!({"appKey": fake.app_key(), "appSecret": fake.app_secret()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "Forbidden.AccessDenied.IpNotInWhiteList", "{v}");
    fake.set_ip_whitelist(None);

    // Browser login: the user's token, then users/me without 通讯录个人信息读权限.
    fake.deny_permission(Permission::ContactUserRead);
    let code = fake.mint_code("lisi").unwrap();
    let tok: Value = http()
        .post(format!("{}/v1.0/oauth2/userAccessToken", fake.base_url()))
        .json(
            &json!({"clientId": fake.app_key(), "clientSecret": fake.app_secret(),
                      "code": code, "grantType": "authorization_code"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http()
        .get(format!("{}/v1.0/contact/users/me", fake.base_url()))
        .header(
            "x-acs-dingtalk-access-token",
            tok["accessToken"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["code"], "Forbidden.AccessDenied.AccessTokenPermissionDenied",
        "{v}"
    );
}
