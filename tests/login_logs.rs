//! The binary's log at the default level, as an operator reads it: one `warn` line per
//! refused login, with the reason, the userid when known and the client IP — never the code,
//! the state or a cookie. The proxy runs as the real binary against an in-process fake.
#![cfg(feature = "fake")]

mod common;

use common::binary::{self, ProxyProcess};
use common::*;
use dingtalk_auth_proxy::fake::{FakeDingTalk, FakeUser};

async fn start_binary(fake: &dingtalk_auth_proxy::fake::FakeHandle) -> ProxyProcess {
    start_binary_with(fake, &[]).await
}

async fn start_binary_with(
    fake: &dingtalk_auth_proxy::fake::FakeHandle,
    env: &[(&str, &str)],
) -> ProxyProcess {
    let upstream = dingtalk_auth_proxy::demo::start_echo().await.unwrap();
    let upstream = format!("http://{upstream}");
    let mut all = vec![
        ("DAP_UPSTREAM", upstream.as_str()),
        ("DAP_ACCESS__ALLOW_USERIDS", "wangwu"),
    ];
    all.extend_from_slice(env);
    binary::start(fake, &all)
}

/// Opens the in-app login page through `base`: (state cookie, state).
async fn begin(base: &str, rd: &str) -> (String, String) {
    let r = get_url(
        &format!("{base}/_auth/login?rd={}", urlencode(rd)),
        &[("user-agent", DINGTALK_UA)],
    )
    .await;
    let cookie = state_cookie(r.headers()).expect("state cookie");
    let state = state_from_page(&r.text().await.unwrap());
    (cookie, state)
}

async fn callback(base: &str, cookie: &str, query: &str) -> u16 {
    get_url(
        &format!("{base}/_auth/callback?{query}"),
        &[("cookie", cookie), ("user-agent", DINGTALK_UA)],
    )
    .await
    .status()
    .as_u16()
}

/// Each way a login is refused leaves exactly one `warn` line saying why, with the userid
/// when known and the client IP, and without the code or the state.
#[tokio::test]
async fn every_refused_login_is_one_line() {
    let fake = FakeDingTalk::new()
        .user(wangwu())
        .user({
            let mut u = FakeUser::new("newbie", "新人");
            u.active = false;
            u
        })
        .user(FakeUser::new("lisi", "李四"))
        .start()
        .await
        .unwrap();
    let p = start_binary(&fake).await;
    let base = p.base.clone();

    // The cases, each with what its line must say.
    let mut checks: Vec<(String, Vec<String>, &str, Option<&str>)> = Vec::new();

    // No state cookie at all.
    let status = callback(&base, "", "code=abc123secretcode&state=statevalue12345678").await;
    assert_eq!(status, 400);
    checks.push((
        "missing state".into(),
        p.lines_until("login refused"),
        "state missing",
        None,
    ));

    // A replayed callback.
    let (cookie, state) = begin(&base, "/").await;
    let code = fake.mint_code("wangwu").unwrap();
    let q = format!("code={code}&state={state}");
    assert_eq!(callback(&base, &cookie, &q).await, 302);
    p.lines_until("login");
    let code2 = fake.mint_code("wangwu").unwrap();
    let q = format!("code={code2}&state={state}");
    assert_eq!(callback(&base, &cookie, &q).await, 400);
    checks.push((
        code2.clone(),
        p.lines_until("login refused"),
        "already used",
        None,
    ));

    // DingTalk does not know the code.
    let (cookie, state) = begin(&base, "/").await;
    let q = format!("code=not-a-real-code-42&state={state}");
    assert!(callback(&base, &cookie, &q).await >= 400);
    checks.push((
        "not-a-real-code-42".into(),
        p.lines_until("login refused"),
        "DingTalk",
        None,
    ));

    // An inactive account, and one outside [access].
    for (user, reason) in [("newbie", "not active"), ("lisi", "[access]")] {
        let (cookie, state) = begin(&base, "/").await;
        let code = fake.mint_code(user).unwrap();
        let q = format!("code={code}&state={state}");
        assert_eq!(callback(&base, &cookie, &q).await, 403);
        checks.push((code, p.lines_until("login refused"), reason, Some(user)));
    }

    // Cancelled at DingTalk.
    let (cookie, state) = begin(&base, "/").await;
    let q = format!("error=access_denied&state={state}");
    assert_eq!(callback(&base, &cookie, &q).await, 403);
    checks.push((
        "access_denied-x".into(),
        p.lines_until("login refused"),
        "not approved",
        None,
    ));

    for (secret, lines, reason, userid) in checks {
        let refused: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("login refused"))
            .collect();
        assert_eq!(refused.len(), 1, "{reason}: {lines:?}");
        let line = refused[0];
        assert!(line.contains(" WARN "), "{line}");
        assert!(line.contains(reason), "{reason}: {line}");
        assert!(line.contains("client=127.0.0.1"), "{line}");
        assert!(!line.contains(&secret), "secret in log: {line}");
        assert!(
            !line.contains("state=") || !line.contains("statevalue"),
            "{line}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "colour codes in a non-terminal log: {line:?}"
        );
        if let Some(u) = userid {
            assert!(line.contains(&format!("userid={u}")), "{line}");
        }
    }
}

/// With `log_format = "json"` every line the binary writes parses as one JSON object, and the
/// lines about a request carry its `X-Request-Id` (the client's when sane), which also comes
/// back in the response.
#[tokio::test]
async fn json_logs_with_request_ids() {
    let fake = FakeDingTalk::new().user(wangwu()).start().await.unwrap();
    let p = start_binary_with(&fake, &[("DAP_LOG_FORMAT", "json")]).await;
    let r = get_url(
        &format!(
            "{}/_auth/callback?code=abc&state=statevalue12345678",
            p.base
        ),
        &[("user-agent", DINGTALK_UA), ("x-request-id", "req-42.a_b")],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-request-id"], "req-42.a_b");
    let mut lines = p.lines_until("login refused");
    // A request id that is not a sane token is replaced by a generated one.
    let r = get_url(
        &format!(
            "{}/_auth/callback?code=abc&state=statevalue12345678",
            p.base
        ),
        &[("x-request-id", "evil id\"}")],
    )
    .await;
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 22, "{generated}");
    lines.extend(p.lines_until("login refused"));
    let mut ids = Vec::new();
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        if v["fields"]["message"] == "login refused" {
            ids.push(v["span"]["id"].as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(ids, vec!["req-42.a_b".to_string(), generated]);
}
