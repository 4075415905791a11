//! The audit trail (`[audit] file`) over real HTTP with Redis sessions: a login, a denial, a
//! logout and a revocation (by the `sessions revoke` command) leave exactly those events, one
//! JSON line each, with who, how, from where and why — and none of the secrets, codes, cookie
//! values or session ids the test used.

mod common;

use std::time::{Duration, Instant};

use common::redis::standalone;
use common::*;
use dingtalk_auth_proxy::config::{Secret, Store};

const BIN: &str = env!("CARGO_BIN_EXE_dingtalk-auth-proxy");

/// The audit file's events once it has `n` lines (bounded wait: the writer is asynchronous).
fn events(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n || Instant::now() > end {
            return text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn login_denial_logout_revocation() {
    let redis = standalone().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = dir.path().join("audit.jsonl");
    let (url, file) = (redis.url(), audit.to_string_lossy().into_owned());
    let h = start_with(|c| {
        c.session.store = Store::Redis;
        c.session.redis_url = Secret::new(&url);
        c.audit.file = Some(file.clone());
        c.access.allow_userids = vec!["wangwu".into()];
    })
    .await;
    let client = client();

    // A login (in-app), remembering the code, the cookies and the session id.
    let (state_cookie, state) = h.start_inapp_login("/").await;
    let code = h.fake.mint_code("wangwu").expect("code");
    let r = h.callback(&state_cookie, &code, &state).await;
    assert_eq!(r.status(), 302);
    let session = set_cookie(r.headers(), "dap_session").expect("session");
    let stored = h
        .proxy
        .app
        .sessions()
        .redis()
        .expect("redis")
        .list(Some("wangwu"))
        .await;
    let id = stored
        .expect("list")
        .first()
        .expect("one session")
        .id
        .clone();

    // A denial: lisi is not in allow_userids.
    let (lisi_state_cookie, lisi_state) = h.start_inapp_login("/").await;
    let lisi_code = h.fake.mint_code("lisi").expect("code");
    let r = h
        .callback(&lisi_state_cookie, &lisi_code, &lisi_state)
        .await;
    assert_eq!(r.status(), 403);

    // A logout, from a browser.
    let r = client
        .get(format!("{}/_auth/logout", h.base))
        .header("cookie", &session)
        .header("user-agent", "Mozilla/5.0 audit-test")
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 200);

    // A revocation by the operator's command, reading a config with the same audit file.
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "[dingtalk]\napp_key = \"k\"\napp_secret = \"s\"\ncorp_id = \"c\"\n\
             [session]\nsecret = \"{SECRET}\"\nstore = \"redis\"\nredis_url = \"{url}\"\n\
             [audit]\nfile = \"{file}\"\n"
        ),
    )
    .expect("config");
    let out = std::process::Command::new(BIN)
        .args(["sessions", "revoke", "--userid", "wangwu", "--config"])
        .arg(&config)
        .output()
        .expect("binary runs");
    assert!(out.status.success(), "{:?}", out);

    let events = events(&audit, 4);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        vec!["login", "denied", "logout", "revoked"],
        "{events:#?}"
    );
    let (login, denied, logout, revoked) = (&events[0], &events[1], &events[2], &events[3]);
    for e in &events {
        let time = e["time"].as_str().unwrap_or_default();
        assert!(humantime::parse_rfc3339(time).is_ok(), "time {time}");
    }
    assert_eq!(login["userid"], "wangwu");
    assert_eq!(login["name"], "王五");
    assert_eq!(login["flow"], "inapp");
    assert_eq!(login["ip"], "127.0.0.1");
    assert!(login["user_agent"]
        .as_str()
        .unwrap_or_default()
        .contains("DingTalk"));
    let hash = login["session"].as_str().unwrap_or_default();
    assert_eq!(hash.len(), 12, "{login}");
    assert_eq!(denied["userid"], "lisi");
    assert_eq!(denied["flow"], "inapp");
    assert!(denied["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("[access]"));
    assert_eq!(logout["userid"], "wangwu");
    assert_eq!(logout["session"], hash);
    assert_eq!(logout["user_agent"], "Mozilla/5.0 audit-test");
    // 127.0.0.1 is a trusted proxy by default: its X-Forwarded-For names the client.
    assert_eq!(logout["ip"], "203.0.113.9");
    assert_eq!(revoked["userid"], "wangwu");
    assert!(revoked["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("sessions revoke"));

    let text = std::fs::read_to_string(&audit).unwrap_or_default();
    let cookie_value = |pair: &str| {
        pair.split_once('=')
            .map(|(_, v)| v.to_string())
            .unwrap_or_default()
    };
    for secret in [
        SECRET.to_string(),
        h.fake.app_secret(),
        code,
        lisi_code,
        state,
        cookie_value(&session),
        cookie_value(&state_cookie),
        id,
    ] {
        assert!(
            !secret.is_empty() && !text.contains(&secret),
            "{secret} is in the audit file"
        );
    }
}

/// SIGUSR1 makes the proxy reopen its audit file (after logrotate moved the old one away).
#[tokio::test]
async fn reopens_on_sigusr1() {
    let fake = dingtalk_auth_proxy::fake::FakeDingTalk::new()
        .user(wangwu())
        .start()
        .await
        .expect("fake");
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = dir.path().join("audit.jsonl");
    let audit_path = audit.to_string_lossy().into_owned();
    let p = common::binary::start(&fake, &[("DAP_AUDIT__FILE", &audit_path)]);
    let base = p.base.clone();
    inapp_login_via(&base, &fake, "wangwu", "/_auth/login?rd=/").await;
    assert_eq!(events(&audit, 1).len(), 1);

    let rotated = dir.path().join("audit.jsonl.1");
    std::fs::rename(&audit, &rotated).expect("rotate");
    // SAFETY: kill(2) on the child we started.
    let rc = unsafe { libc::kill(p.child.id() as i32, libc::SIGUSR1) };
    assert_eq!(rc, 0);
    p.lines_until("audit file reopened");
    inapp_login_via(&base, &fake, "wangwu", "/_auth/login?rd=/").await;
    assert_eq!(events(&audit, 1).len(), 1, "the new file has the new event");
    assert_eq!(
        events(&rotated, 1).len(),
        1,
        "the old file kept the old one"
    );
}
