//! `dingtalk-auth-proxy doctor`, the real binary, against the in-process fake DingTalk playing
//! each console mistake: healthy, wrong secret, IP not whitelisted, a missing permission, no
//! mobile, no unionid, a bad config. Exit codes, the ✓/✗ lines, their fixes, and never a secret.

use std::net::IpAddr;
use std::time::Duration;

use dingtalk_auth_proxy::fake::{FakeDingTalk, FakeHandle, FakeUser, Permission};

const BIN: &str = env!("CARGO_BIN_EXE_dingtalk-auth-proxy");
const SESSION_SECRET: &str = "doctor-session-secret-0123456789abcdef";

/// Runs `doctor` with `args`, configured through `DAP_*` for `fake` plus `env`; (exit code,
/// stdout + stderr). Bounded: a hung doctor fails the test.
async fn doctor(fake: &FakeHandle, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let base = fake.base_url();
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear()
        .arg("doctor")
        .args(args)
        .env("DAP_DINGTALK__APP_KEY", fake.app_key())
        .env("DAP_DINGTALK__APP_SECRET", fake.app_secret())
        .env("DAP_DINGTALK__CORP_ID", fake.corp_id())
        .env("DAP_DINGTALK__API_BASE", &base)
        .env("DAP_DINGTALK__NEW_API_BASE", &base)
        .env("DAP_DINGTALK__LOGIN_BASE", &base)
        .env("DAP_DINGTALK__TIMEOUT", "3s")
        .env("DAP_SESSION__SECRET", SESSION_SECRET)
        .env("DAP_PUBLIC_URL", "https://app.example.com")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("doctor finishes within 30 s")
        .expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_secret(fake, &text);
    (out.status.code().unwrap_or(-1), text)
}

fn assert_no_secret(fake: &FakeHandle, text: &str) {
    assert!(
        !text.contains(&fake.app_secret()),
        "app secret shown: {text}"
    );
    assert!(
        !text.contains(SESSION_SECRET),
        "session secret shown: {text}"
    );
}

/// The line starting with `✗` that contains `needle`, and the lines under it.
fn failed_block<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with('✗') && l.contains(needle))
        .unwrap_or_else(|| panic!("no ✗ line with {needle:?} in:\n{text}"));
    lines[at..]
        .iter()
        .take_while(|l| *l == &lines[at] || l.starts_with("    "))
        .copied()
        .collect()
}

/// The check lines: those starting with a mark.
fn check_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| ["✓", "✗", "!", "-"].iter().any(|m| l.starts_with(m)))
        .collect()
}

/// A healthy app and user: exit 0, every check ✓, the callback URL to register printed.
#[tokio::test]
async fn healthy_app_passes_every_check() {
    let fake = FakeDingTalk::new().start().await.unwrap();
    let (code, text) = doctor(&fake, &["--userid", "zhangsan"], &[]).await;
    assert_eq!(code, 0, "{text}");
    let lines = check_lines(&text);
    assert!(lines.len() >= 7, "{text}");
    assert!(lines.iter().all(|l| l.starts_with('✓')), "{text}");
    assert!(
        text.contains("https://app.example.com/_auth/callback"),
        "{text}"
    );
    assert!(text.contains("unionid present"), "{text}");
    assert!(text.contains("138****0001"), "{text}");
    assert!(text.contains("all checks passed"), "{text}");
    // It really asked DingTalk: the token, the user, the unionid mapping.
    assert_eq!(fake.calls("/gettoken"), 1);
    assert_eq!(fake.calls("/topapi/v2/user/get"), 1);
    assert_eq!(fake.calls("/topapi/user/getbyunionid"), 1);
}

/// Without --userid the user checks are skipped (said so, not failed); an http public_url
/// and the legacy user API / v1 token API still pass.
#[tokio::test]
async fn without_userid_and_other_apis() {
    let fake = FakeDingTalk::new().start().await.unwrap();
    let (code, text) = doctor(
        &fake,
        &[],
        &[
            ("DAP_PUBLIC_URL", "http://intranet.example.com"),
            ("DAP_DINGTALK__TOKEN_API", "v1"),
        ],
    )
    .await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("! public_url is not https"), "{text}");
    assert!(text.contains("- user APIs not checked"), "{text}");
    assert!(!text.contains('✗'), "{text}");
    let (code, text) = doctor(
        &fake,
        &["--userid", "lisi"],
        &[("DAP_DINGTALK__USER_API", "legacy")],
    )
    .await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("GET /user/get"), "{text}");
}

/// A wrong app secret: exit 1, the ✗ line says app_key/app_secret are wrong and where to copy
/// them from; the wrong secret itself is not printed either.
#[tokio::test]
async fn wrong_secret() {
    let fake = FakeDingTalk::new().start().await.unwrap();
    let wrong = "wrong-secret-value-42";
    let (code, text) = doctor(
        &fake,
        &["--userid", "zhangsan"],
        &[("DAP_DINGTALK__APP_SECRET", wrong)],
    )
    .await;
    assert_eq!(code, 1, "{text}");
    let block = failed_block(&text, "app_key/app_secret wrong").join("\n");
    assert!(block.contains("不合法的appKey或appSecret"), "{block}");
    assert!(block.contains("凭证与基础信息"), "{block}");
    assert!(block.contains("Client Secret"), "{block}");
    assert!(!text.contains(wrong), "{text}");
}

/// The IP whitelist does not list this server: exit 1, the ✗ line names the IP DingTalk saw
/// (127.0.0.1) and the console page where it goes.
#[tokio::test]
async fn ip_not_whitelisted() {
    let other: IpAddr = "203.0.113.7".parse().unwrap();
    let fake = FakeDingTalk::new()
        .ip_whitelist(&[other])
        .start()
        .await
        .unwrap();
    let (code, text) = doctor(&fake, &["--userid", "zhangsan"], &[]).await;
    assert_eq!(code, 1, "{text}");
    let block = failed_block(&text, "not in the app's IP whitelist").join("\n");
    assert!(block.contains("server IP 127.0.0.1"), "{block}");
    assert!(block.contains("服务器出口IP"), "{block}");
    assert!(block.contains("add 127.0.0.1"), "{block}");
    assert!(text.contains("- user APIs not checked"), "{text}");
    // The new token API says it its own way (HTTP 403 `IpNotInWhiteList`): the same ✗.
    let (code, text) = doctor(&fake, &[], &[("DAP_DINGTALK__TOKEN_API", "v1")]).await;
    assert_eq!(code, 1, "{text}");
    let block = failed_block(&text, "not in the app's IP whitelist").join("\n");
    assert!(block.contains("add 127.0.0.1"), "{block}");

    // Once 127.0.0.1 is on the whitelist, every check passes.
    fake.set_ip_whitelist(Some(vec![other, "127.0.0.1".parse().unwrap()]));
    let (code, text) = doctor(&fake, &["--userid", "zhangsan"], &[]).await;
    assert_eq!(code, 0, "{text}");
}

/// The app lacks 成员信息读权限: exit 1, the ✗ line names the permission by its Chinese name
/// and DingTalk's code, with the console page.
#[tokio::test]
async fn missing_permission() {
    let fake = FakeDingTalk::new()
        .deny(Permission::MemberRead)
        .start()
        .await
        .unwrap();
    let (code, text) = doctor(&fake, &["--userid", "zhangsan"], &[]).await;
    assert_eq!(code, 1, "{text}");
    let block = failed_block(&text, "lacks the permission").join("\n");
    assert!(block.contains("成员信息读权限"), "{block}");
    assert!(block.contains("qyapi_get_member"), "{block}");
    assert!(block.contains("权限管理"), "{block}");
    assert!(text.contains("60011"), "{text}");
}

/// No mobile in DingTalk's answer (the 手机号 permission missing, or a user without one):
/// exit 1, the ✗ line says X-User-Mobile would be blank and which permission to add.
#[tokio::test]
async fn no_mobile() {
    let fake = FakeDingTalk::new().start().await.unwrap();
    let (code, text) = doctor(&fake, &["--userid", "nomobile"], &[]).await;
    assert_eq!(code, 1, "{text}");
    let block = failed_block(&text, "no mobile").join("\n");
    assert!(block.contains("X-User-Mobile would be blank"), "{block}");
    assert!(block.contains("手机号"), "{block}");

    fake.deny_permission(Permission::Mobile);
    let (code, text) = doctor(&fake, &["--userid", "zhangsan"], &[]).await;
    assert_eq!(code, 1, "{text}");
    failed_block(&text, "no mobile");
    // With no mobile header configured, the mobile is not needed.
    let (code, text) = doctor(
        &fake,
        &["--userid", "zhangsan"],
        &[("DAP_HEADERS__MOBILE", "")],
    )
    .await;
    assert_eq!(code, 0, "{text}");
}

/// A user whose answer has no unionid: the browser login could not map them; exit 1.
#[tokio::test]
async fn no_unionid() {
    let mut wangwu = FakeUser::new("wangwu", "王五");
    wangwu.mobile = Some("13800000009".into());
    wangwu.unionid = String::new();
    let fake = FakeDingTalk::new().user(wangwu).start().await.unwrap();
    let (code, text) = doctor(&fake, &["--userid", "wangwu"], &[]).await;
    assert_eq!(code, 1, "{text}");
    failed_block(&text, "has no unionid");
}

/// A userid outside the organisation, and a corp_id that is really the app key: each its ✗.
#[tokio::test]
async fn unknown_user_and_corp_id_mistake() {
    let fake = FakeDingTalk::new().start().await.unwrap();
    let (code, text) = doctor(&fake, &["--userid", "nobody"], &[]).await;
    assert_eq!(code, 1, "{text}");
    failed_block(&text, "not a member of the organisation");
    let key = fake.app_key();
    let (code, text) = doctor(&fake, &[], &[("DAP_DINGTALK__CORP_ID", key.as_str())]).await;
    assert_eq!(code, 1, "{text}");
    failed_block(&text, "corp_id is the same as app_key");
}

/// DingTalk unreachable: exit 1 within the configured timeout, the ✗ line says so.
#[tokio::test]
async fn dingtalk_unreachable() {
    let fake = FakeDingTalk::new().start().await.unwrap();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (code, text) = doctor(&fake, &[], &[("DAP_DINGTALK__API_BASE", closed.as_str())]).await;
    assert_eq!(code, 1, "{text}");
    failed_block(&text, "cannot reach DingTalk");
}

/// A bad config: exit 2, the ✗ line and the key at fault; a config file loads like `run`'s,
/// with DAP_* overriding it.
#[tokio::test]
async fn bad_config_and_file_with_env() {
    let fake = FakeDingTalk::new().start().await.unwrap();
    let (code, text) = doctor(&fake, &[], &[("DAP_SESSION__SECRET", "short")]).await;
    assert_eq!(code, 2, "{text}");
    assert!(text.starts_with("✗ config is invalid"), "{text}");
    assert!(text.contains("session.secret"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    // The file points at a closed port and has a wrong secret; the environment corrects both.
    std::fs::write(
        &file,
        format!(
            "[dingtalk]\napi_base = \"http://127.0.0.1:{}\"\napp_secret = \"file-secret-wrong\"\n",
            free_port()
        ),
    )
    .unwrap();
    let (code, text) = doctor(
        &fake,
        &["--config", file.to_str().unwrap(), "--userid", "zhangsan"],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{text}");
}

/// Kills the child when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The README's way to see a console mistake by hand: the `fake_dingtalk` example run with
/// `--deny mobile --ip-whitelist 10.0.0.1`, its printed exports given to `doctor`: the IP
/// whitelist ✗; with 127.0.0.1 whitelisted instead, the missing mobile.
#[test]
fn fake_example_plays_console_mistakes() {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let example = target.join("debug/examples/fake_dingtalk");
    assert!(
        example.exists(),
        "{} is missing: run `cargo build --examples` first (.ci/run does)",
        example.display()
    );
    for (whitelist, expect) in [
        (
            "10.0.0.1",
            "✗ server IP 127.0.0.1 is not in the app's IP whitelist",
        ),
        ("127.0.0.1", "✗ DingTalk returned no mobile for zhangsan"),
    ] {
        let out = tempfile::NamedTempFile::new().unwrap();
        let _fake = Killed(
            std::process::Command::new(&example)
                .args(["--deny", "mobile", "--ip-whitelist", whitelist])
                .stdout(out.reopen().unwrap())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("fake_dingtalk starts"),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let text = loop {
            let text = std::fs::read_to_string(out.path()).unwrap_or_default();
            if text.contains("export DAP_UPSTREAM=") {
                break text;
            }
            assert!(std::time::Instant::now() < deadline, "no exports: {text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            text.contains("denied:      the API permission fieldMobile"),
            "{text}"
        );
        let mut cmd = std::process::Command::new(BIN);
        cmd.env_clear()
            .args(["doctor", "--userid", "zhangsan"])
            .env("DAP_SESSION__SECRET", SESSION_SECRET)
            .env("DAP_PUBLIC_URL", "https://app.example.com");
        for line in text
            .lines()
            .filter(|l| l.starts_with("export DAP_DINGTALK__"))
        {
            let (key, value) = line["export ".len()..].split_once('=').expect("KEY=value");
            cmd.env(key, value);
        }
        let done = cmd.output().expect("doctor runs");
        let shown = String::from_utf8_lossy(&done.stdout);
        assert_eq!(done.status.code(), Some(1), "{shown}");
        assert!(shown.contains(expect), "{shown}");
        assert!(!shown.contains("fake-app-secret-0123456789"), "{shown}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
