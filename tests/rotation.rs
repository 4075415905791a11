//! Session-secret rotation against the real binary: a cookie sealed under secret A keeps
//! working after the config moves to `secret = B, previous_secrets = [A]`, comes back
//! re-issued under B, and stops working once A is removed — three starts on one port.

mod common;

use common::binary::{self, ProxyProcess};
use common::{free_port, get_url, inapp_login_via, set_cookie, wangwu, SECRET};
use dingtalk_auth_proxy::fake::FakeDingTalk;

const SECRET_B: &str = "rotated-session-secret-BBBBBBBBBBBBBBBB";

/// `verify` with `cookie`: the status and the re-issued session cookie, if any.
async fn verify(p: &ProxyProcess, cookie: &str) -> (u16, Option<String>) {
    let r = get_url(&format!("{}/_auth/verify", p.base), &[("cookie", cookie)]).await;
    (r.status().as_u16(), set_cookie(r.headers(), "dap_session"))
}

/// A → (B, previous [A]) → B: the old cookie works, is re-issued under B, then stops working;
/// the re-issued one keeps working and is not re-issued again.
#[tokio::test]
async fn previous_secret_is_accepted_reissued_and_retired() {
    let fake = FakeDingTalk::new()
        .user(wangwu())
        .start()
        .await
        .expect("fake DingTalk starts");
    let port = free_port();

    // 1. Secret A: log in.
    let a = binary::start_on(&fake, port, &[("DAP_SESSION__SECRET", SECRET)]);
    let (cookie_a, _) = inapp_login_via(&a.base, &fake, "wangwu", "/_auth/login?rd=/").await;
    assert_eq!(verify(&a, &cookie_a).await, (200, None));
    drop(a);

    // 2. Secret B, A still listed: accepted, and re-issued under B on the same answer.
    let env = [
        ("DAP_SESSION__SECRET", SECRET_B),
        ("DAP_SESSION__PREVIOUS_SECRETS", SECRET),
    ];
    let b = binary::start_on(&fake, port, &env);
    let (status, reissued) = verify(&b, &cookie_a).await;
    assert_eq!(status, 200, "a cookie of the previous secret is accepted");
    let cookie_b = reissued.expect("re-issued under the current secret");
    assert!(cookie_b.len() > "dap_session=".len() && cookie_b != cookie_a);
    assert_eq!(
        verify(&b, &cookie_b).await,
        (200, None),
        "current: no re-issue"
    );
    let who = get_url(
        &format!("{}/_auth/userinfo", b.base),
        &[("cookie", &cookie_b)],
    )
    .await;
    let who: serde_json::Value = who.json().await.expect("userinfo JSON");
    assert_eq!(who["userid"], "wangwu");
    drop(b);

    // 3. Secret B alone: A's cookie no longer opens; B's does.
    let c = binary::start_on(&fake, port, &[("DAP_SESSION__SECRET", SECRET_B)]);
    assert_eq!(verify(&c, &cookie_a).await.0, 401, "A was removed");
    assert_eq!(verify(&c, &cookie_b).await, (200, None));
}

/// With `session.store = "redis"` the sealed reference cookie rotates the same way: a proxy
/// on (B, previous [A]) accepts A's reference, re-issues it under B, and the session in Redis
/// is the same one (logout through the new cookie ends it for the old one too).
#[tokio::test]
async fn redis_reference_cookie_is_reissued() {
    use dingtalk_auth_proxy::config::{Secret, Store};
    let redis = common::redis::standalone().await;
    let url = redis.url();
    let use_redis = move |c: &mut dingtalk_auth_proxy::Config| {
        c.session.store = Store::Redis;
        c.session.redis_url = Secret::new(&url);
    };
    let a = common::start_with(use_redis.clone()).await;
    let (cookie_a, _) = a.login_inapp("wangwu", "/").await;
    let b = common::start_against(a.fake.clone(), a.upstream, move |c| {
        use_redis(c);
        c.session.secret = Secret::new(SECRET_B);
        c.session.previous_secrets = vec![Secret::new(SECRET)];
    })
    .await;
    let r = b.get("/_auth/verify", &[("cookie", &cookie_a)]).await;
    assert_eq!(r.status(), 200);
    let cookie_b = set_cookie(r.headers(), "dap_session").expect("re-issued under B");
    assert_ne!(cookie_b, cookie_a);
    let r = b.get("/_auth/verify", &[("cookie", &cookie_b)]).await;
    assert_eq!(
        (r.status().as_u16(), set_cookie(r.headers(), "dap_session")),
        (200, None)
    );
    // A knows only A: B's cookie is foreign there.
    let r = a.get("/_auth/verify", &[("cookie", &cookie_b)]).await;
    assert_eq!(r.status(), 401);
    // One session: ended through B's cookie, A's cookie is ended too.
    let r = b.get("/_auth/logout?rd=/", &[("cookie", &cookie_b)]).await;
    assert_eq!(r.status(), 302);
    let r = a.get("/_auth/verify", &[("cookie", &cookie_a)]).await;
    assert_eq!(r.status(), 401);
}
