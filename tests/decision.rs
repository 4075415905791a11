//! One access decision for both modes: the reverse proxy and `verify` (nginx `auth_request`)
//! give the same answer for the same table of cases — path × who is asking.
#![cfg(feature = "fake")]

mod common;

use common::*;
use dingtalk_auth_proxy::fake::{FakeDingTalk, FakeUser};

/// What a mode answered: the status, and the `X-User-Id` the app would get (`None`: none or
/// empty).
type Outcome = (u16, Option<String>);

/// Every case, in both modes: skip paths pass anyone, with identity only for an allowed
/// logged-in user; other paths need a session, then `[access]`.
#[tokio::test]
async fn proxy_and_verify_agree() {
    let fake = FakeDingTalk::new()
        .user(wangwu())
        .user(FakeUser::new("lisi", "李四"))
        .start()
        .await
        .unwrap();
    let upstream = dingtalk_auth_proxy::demo::start_echo().await.unwrap();
    let tweak = |c: &mut dingtalk_auth_proxy::Config| {
        c.access.skip_auth = vec!["^/public/".into()];
        c.access.allow_userids = vec!["wangwu".into()];
    };
    let proxy = start_against(fake.clone(), upstream, tweak).await;
    let auth_only = start_against(fake, upstream, |c| {
        tweak(c);
        c.upstream = None;
    })
    .await;
    let allowed = proxy.login_inapp("wangwu", "/").await.0;
    // A refused user cannot log in here; a replica without `[access]` (same secret) can
    // issue their cookie, as happens when the allow list shrinks after a login.
    let open = start_against(proxy.fake.clone(), upstream, |_| {}).await;
    let refused = open.login_inapp("lisi", "/").await.0;

    let table: [(&str, Option<&str>, Outcome); 6] = [
        ("/public/x", None, (200, None)),
        ("/public/x", Some(&allowed), (200, Some("wangwu".into()))),
        ("/public/x", Some(&refused), (200, None)),
        ("/app", None, (401, None)),
        ("/app", Some(&allowed), (200, Some("wangwu".into()))),
        ("/app", Some(&refused), (403, None)),
    ];
    for (path, cookie, expected) in table {
        let mut headers = vec![("accept", "application/json")];
        if let Some(c) = cookie {
            headers.push(("cookie", c));
        }
        // Reverse proxy.
        let r = proxy.get(path, &headers).await;
        let status = r.status().as_u16();
        let id = if status == 200 {
            let echo: serde_json::Value = r.json().await.unwrap();
            seen(&echo, "x-user-id")
                .first()
                .filter(|v| !v.is_empty())
                .map(|v| v.to_string())
        } else {
            None
        };
        assert_eq!((status, id), expected, "proxy {path} {cookie:?}");
        // verify, as nginx asks it.
        headers.push(("x-original-uri", path));
        let r = auth_only.get("/_auth/verify", &headers).await;
        let status = r.status().as_u16();
        if status == 200 {
            // Every configured identity header is in a 200, empty when unknown: front
            // servers that copy them then overwrite the client's own with nothing.
            for name in ["x-user-id", "x-user-mobile"] {
                assert!(r.headers().contains_key(name), "verify {path}: no {name}");
            }
        }
        let id = r
            .headers()
            .get("x-user-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        assert_eq!((status, id), expected, "verify {path} {cookie:?}");
    }
}

/// A config that was never validated cannot start a proxy: nothing downstream pads a short
/// secret, drops a bad rule or a bad header name.
#[tokio::test]
async fn unvalidated_configs_do_not_start() {
    let fake = FakeDingTalk::new().start().await.unwrap();
    let upstream = dingtalk_auth_proxy::demo::start_echo().await.unwrap();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let base = || {
        let mut c = dingtalk_auth_proxy::demo::demo_config(&fake, upstream, listen);
        c.session.secret = dingtalk_auth_proxy::config::Secret::new(SECRET);
        c
    };
    let mut short = base();
    short.session.secret = dingtalk_auth_proxy::config::Secret::new("short");
    let mut rule = base();
    rule.access.skip_auth = vec!["([".into()];
    let mut header = base();
    header
        .headers
        .set(dingtalk_auth_proxy::user::Field::UserId, Some("bad header"));
    for (config, key) in [
        (short, "session.secret"),
        (rule, "access.skip_auth"),
        (header, "headers.user_id"),
    ] {
        match dingtalk_auth_proxy::start(config).await {
            Ok(_) => panic!("started with a bad {key}"),
            Err(e) => assert!(e.to_string().contains(key), "{key}: {e}"),
        }
    }
    assert!(dingtalk_auth_proxy::start(base()).await.is_ok());
}
