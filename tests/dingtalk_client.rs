//! The DingTalk client against the fake DingTalk over real HTTP: both API generations, the
//! token cache's refetch rules, the browser OAuth exchange, and error mapping.
#![cfg(feature = "fake")]

use std::time::Duration;

use dingtalk_auth_proxy::config::{DingTalkConfig, Secret, TokenApi, UserApi};
use dingtalk_auth_proxy::dingtalk::{DingTalk, DingTalkError};
use dingtalk_auth_proxy::fake::{Failure, FakeDingTalk, FakeHandle};

fn config(fake: &FakeHandle) -> DingTalkConfig {
    let base = fake.base_url().parse().unwrap();
    DingTalkConfig {
        app_key: fake.app_key(),
        app_secret: Secret::new(fake.app_secret()),
        corp_id: fake.corp_id(),
        api_base: base,
        new_api_base: fake.base_url().parse().unwrap(),
        login_base: fake.base_url().parse().unwrap(),
        jsapi_url: fake.jsapi_url().parse().unwrap(),
        timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

async fn setup() -> (FakeHandle, DingTalk) {
    let fake = FakeDingTalk::new().start().await.unwrap();
    let client = DingTalk::new(&config(&fake)).unwrap();
    (fake, client)
}

/// The legacy and v2 user APIs yield the same user; v2 costs exactly two calls once a token
/// is cached.
#[tokio::test]
async fn both_generations_agree() {
    let (fake, v2) = setup().await;
    let mut cfg = config(&fake);
    cfg.user_api = UserApi::Legacy;
    let legacy = DingTalk::new(&cfg).unwrap();
    let a = v2
        .user_by_code(&fake.mint_code("zhangsan").unwrap())
        .await
        .unwrap();
    let b = legacy
        .user_by_code(&fake.mint_code("zhangsan").unwrap())
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.mobile.as_deref(), Some("13800000001"));
    assert_eq!(a.dept_ids, vec![1, 2]);
    assert_eq!(a.name.as_deref(), Some("张三"));
    fake.reset_calls();
    v2.user_by_code(&fake.mint_code("lisi").unwrap())
        .await
        .unwrap();
    assert_eq!(fake.calls("/gettoken"), 0);
    assert_eq!(fake.calls("/topapi/v2/user/getuserinfo"), 1);
    assert_eq!(fake.calls("/topapi/v2/user/get"), 1);
    let nomobile = v2.user_details("nomobile").await.unwrap();
    assert_eq!(nomobile.mobile, None);
}

/// `token_api = "v1"` fetches the token from the new API.
#[tokio::test]
async fn token_api_v1() {
    let fake = FakeDingTalk::new().start().await.unwrap();
    let mut cfg = config(&fake);
    cfg.token_api = TokenApi::V1;
    let client = DingTalk::new(&cfg).unwrap();
    client.user_details("zhangsan").await.unwrap();
    assert_eq!(fake.calls("/v1.0/oauth2/accessToken"), 1);
    assert_eq!(fake.calls("/gettoken"), 0);
}

/// The wrapped token error (errcode 88, sub_code "40014") costs exactly one refetch, then
/// the call succeeds; a token that stays bad ends in TokenRejected, not a loop.
#[tokio::test]
async fn wrapped_token_error_refetches_once() {
    let (fake, client) = setup().await;
    client.app_token().await.unwrap();
    fake.fail(
        "/topapi/v2/user/get",
        Failure::Errcode {
            errcode: 40014,
            errmsg: "不合法的access_token".into(),
        },
        Some(1),
    );
    client.user_details("zhangsan").await.unwrap();
    assert_eq!(fake.calls("/gettoken"), 2);
    fake.fail(
        "/topapi/v2/user/get",
        Failure::Errcode {
            errcode: 42001,
            errmsg: "access_token超时".into(),
        },
        None,
    );
    let err = client.user_details("zhangsan").await.unwrap_err();
    assert!(matches!(err, DingTalkError::TokenRejected), "{err:?}");
    assert_eq!(fake.calls("/gettoken"), 3);
}

/// A token that DingTalk expired is renewed transparently (one extra gettoken).
#[tokio::test]
async fn expired_token_is_renewed() {
    let (fake, client) = setup().await;
    client.user_details("zhangsan").await.unwrap();
    fake.expire_tokens();
    client.user_details("zhangsan").await.unwrap();
    assert_eq!(fake.calls("/gettoken"), 2);
}

/// Reused codes, unknown users, bad credentials, rate limits, garbage and slowness each map to
/// their own error, with the status the proxy shows; messages carry no secrets.
#[tokio::test]
async fn error_mapping() {
    let (fake, client) = setup().await;
    let code = fake.mint_code("zhangsan").unwrap();
    client.user_by_code(&code).await.unwrap();
    let e = client.user_by_code(&code).await.unwrap_err();
    assert!(matches!(e, DingTalkError::InvalidCode), "{e:?}");
    assert_eq!(e.status(), 400);

    let e = client.user_details("nobody").await.unwrap_err();
    assert!(matches!(e, DingTalkError::NotInCorp), "{e:?}");
    assert_eq!(e.status(), 403);

    fake.fail(
        "/topapi/v2/user/get",
        Failure::Errcode {
            errcode: 90018,
            errmsg: "调用频率超限".into(),
        },
        Some(1),
    );
    let e = client.user_details("zhangsan").await.unwrap_err();
    assert!(matches!(e, DingTalkError::RateLimited { .. }), "{e:?}");
    assert_eq!((e.status(), e.retry_after().is_some()), (503, true));

    fake.fail("/topapi/v2/user/get", Failure::Garbage, Some(1));
    let e = client.user_details("zhangsan").await.unwrap_err();
    assert!(matches!(e, DingTalkError::BadResponse(_)), "{e:?}");

    fake.fail(
        "/topapi/v2/user/get",
        Failure::Slow(Duration::from_secs(3)),
        Some(1),
    );
    let e = client.user_details("zhangsan").await.unwrap_err();
    assert!(matches!(e, DingTalkError::Timeout), "{e:?}");
    assert_eq!(e.status(), 504);

    fake.fail("/topapi/v2/user/get", Failure::Status(502), Some(3));
    let e = client.user_details("zhangsan").await.unwrap_err();
    assert!(matches!(e, DingTalkError::Busy), "{e:?}");

    fake.fail(
        "/topapi/v2/user/get",
        Failure::Errcode {
            errcode: -1,
            errmsg: "系统繁忙".into(),
        },
        Some(2),
    );
    client
        .user_details("zhangsan")
        .await
        .expect("busy is retried");

    let mut cfg = config(&fake);
    cfg.app_secret = Secret::new("wrong-secret");
    let bad = DingTalk::new(&cfg).unwrap();
    fake.reset_calls();
    for _ in 0..5 {
        let e = bad.user_details("zhangsan").await.unwrap_err();
        assert!(matches!(e, DingTalkError::BadCredentials { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("dingtalk.app_secret") && !text.contains("wrong-secret"),
            "{text}"
        );
    }
    assert_eq!(
        fake.calls("/gettoken"),
        1,
        "bad credentials are not retried in a storm"
    );

    let token = client.app_token().await.unwrap();
    fake.fail("/topapi/v2/user/get", Failure::Status(404), Some(1));
    let e = client.user_details("zhangsan").await.unwrap_err();
    assert!(!e.to_string().contains(&token), "{e}");
    assert!(!e.to_string().contains(&fake.app_secret()), "{e}");
}

/// The browser flow: authCode → user token → users/me → getbyunionid → details.
#[tokio::test]
async fn browser_auth_code() {
    let (fake, client) = setup().await;
    let user = client
        .user_by_auth_code(&fake.mint_code("zhangsan").unwrap())
        .await
        .unwrap();
    assert_eq!(user.userid, "zhangsan");
    assert_eq!(user.mobile.as_deref(), Some("13800000001"));
    assert_eq!(fake.calls("/v1.0/oauth2/userAccessToken"), 1);
    assert_eq!(fake.calls("/v1.0/contact/users/me"), 1);
    assert_eq!(fake.calls("/topapi/user/getbyunionid"), 1);
    let e = client
        .user_by_auth_code("used-or-unknown")
        .await
        .unwrap_err();
    assert!(matches!(e, DingTalkError::InvalidCode), "{e:?}");
    fake.fail(
        "/topapi/user/getbyunionid",
        Failure::Errcode {
            errcode: 60121,
            errmsg: "找不到该用户".into(),
        },
        Some(1),
    );
    let e = client
        .user_by_auth_code(&fake.mint_code("lisi").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, DingTalkError::NotInCorp), "{e:?}");
}

/// A user token from another organisation is refused.
#[tokio::test]
async fn other_corp_is_refused() {
    let fake = FakeDingTalk::new()
        .corp_id("dingothercorp")
        .start()
        .await
        .unwrap();
    let mut cfg = config(&fake);
    cfg.corp_id = "dingourcorp".into();
    let client = DingTalk::new(&cfg).unwrap();
    let e = client
        .user_by_auth_code(&fake.mint_code("zhangsan").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, DingTalkError::NotInCorp), "{e:?}");
}
