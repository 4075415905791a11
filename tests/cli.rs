//! The binary's command line: `check-config`, `--version`, exit codes, redaction, and a real
//! `run` answering on its port.

#[path = "common/lines.rs"]
mod lines;

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_dingtalk-auth-proxy");
const APP_SECRET: &str = "cli-app-secret-value-xyz";
const SESSION_SECRET: &str = "cli-session-secret-0123456789abcdef";

fn base_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DAP_DINGTALK__APP_KEY", "dingclikey")
        .env("DAP_DINGTALK__APP_SECRET", APP_SECRET)
        .env("DAP_DINGTALK__CORP_ID", "dingclicorp")
        .env("DAP_SESSION__SECRET", SESSION_SECRET)
}

fn output(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().expect("binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// An env-only config is accepted; the effective config is printed with secrets redacted.
#[test]
fn check_config_env_only() {
    let (code, text) = output(base_env(Command::new(BIN).arg("check-config")));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("dingtalk.app_key = \"dingclikey\""), "{text}");
    assert!(text.contains("limits.max_header_bytes = 65536"), "{text}");
    assert!(
        text.contains("trusted_proxies = [\"127.0.0.0/8\",\"::1/128\"]"),
        "{text}"
    );
    assert!(text.contains("<redacted>"), "{text}");
    assert!(
        !text.contains(APP_SECRET) && !text.contains(SESSION_SECRET),
        "{text}"
    );
}

/// Bad configs exit 2 with one line naming the key; secrets are not echoed.
#[test]
fn check_config_rejects_bad_values() {
    for (key, value, expect) in [
        ("DAP_SESSION__SECRET", "short", "session.secret"),
        ("DAP_SESSION__TTL", "forever", "session.ttl"),
        ("DAP_UPSTREAM", "not a url", "upstream"),
        ("DAP_DINGTALK__USER_API", "v9", "dingtalk.user_api"),
        ("DAP_ACCESS__SKIP_AUTH", "([", "access.skip_auth"),
        ("DAP_HEADERS__USER_ID", "bad header", "headers.user_id"),
        (
            "DAP_TRUSTED_PROXIES",
            "10.0.0.0/8,nonsense",
            "trusted_proxies",
        ),
        (
            "DAP_LIMITS__MAX_HEADER_BYTES",
            "100",
            "limits.max_header_bytes",
        ),
        (
            "DAP_LIMITS__HEADER_READ_TIMEOUT",
            "0s",
            "limits.header_read_timeout",
        ),
        (
            "DAP_LIMITS__MAX_CONNECTIONS",
            "-5",
            "limits.max_connections",
        ),
        (
            "DAP_LIMITS__MAX_BODY_BYTES",
            "lots",
            "limits.max_body_bytes",
        ),
        ("DAP_VERIFY__URI_HEADER", "bad header", "verify.uri_header"),
    ] {
        let (code, text) = output(base_env(Command::new(BIN).arg("check-config")).env(key, value));
        assert_eq!(code, 2, "{key}={value}: {text}");
        assert!(text.contains(expect), "{key}={value}: {text}");
        assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
        assert!(!text.contains(APP_SECRET), "{text}");
    }
    let (code, text) = output(Command::new(BIN).env_clear().arg("check-config"));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("session.secret"), "{text}");
}

/// A TOML file works, environment variables override it, and a missing file is an error.
#[test]
fn config_file_and_env_override() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9999\"\nupstream = \"http://127.0.0.1:3000\"\n[headers]\nuser_id = \"X-Remote-User\"\n",
    )
    .unwrap();
    let (code, text) = output(
        base_env(
            Command::new(BIN)
                .args(["check-config", "--config"])
                .arg(&file),
        )
        .env("DAP_LISTEN", "127.0.0.1:7777"),
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("listen = \"127.0.0.1:7777\""), "{text}");
    assert!(
        text.contains("headers.user_id = \"X-Remote-User\""),
        "{text}"
    );
    let (code, text) = output(base_env(Command::new(BIN).args([
        "check-config",
        "--config",
        "/nonexistent/x.toml",
    ])));
    assert_eq!(code, 2, "{text}");
}

/// `--version` and `--help` work without any config.
#[test]
fn version_and_help() {
    let (code, text) = output(Command::new(BIN).env_clear().arg("--version"));
    assert_eq!(code, 0);
    assert!(text.contains(env!("CARGO_PKG_VERSION")));
    let (code, text) = output(Command::new(BIN).env_clear().arg("--help"));
    assert_eq!(code, 0);
    assert!(text.contains("check-config"));
}

/// `run` serves /_auth/healthz and stops cleanly on SIGTERM.
#[test]
fn run_serves_and_stops_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = base_env(&mut Command::new(BIN))
        .env("DAP_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut body = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /_auth/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            s.read_to_string(&mut body).unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    let mut log = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("listening"), "{log}");
    assert!(
        !log.contains(APP_SECRET) && !log.contains(SESSION_SECRET),
        "{log}"
    );
}

/// Started with a soft open-file limit of 256 (systemd's default is 1024), the binary raises it
/// to the hard limit: 300 half-open connections do not stop `/_auth/healthz` from answering.
#[test]
fn half_open_connections_do_not_exhaust_files() {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child =
        base_env(Command::new("bash").args(["-c", &format!("ulimit -Sn 256 && exec {BIN} run")]))
            .env("DAP_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let rx = lines::read(child.stderr.take().unwrap());
    // Ready when it says it is listening (bounded).
    let lines = lines::until(&rx, "listening", std::time::Duration::from_secs(15));
    assert!(
        lines.iter().any(|l| l.contains("open-file limit")),
        "{lines:?}"
    );
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        held.push(s);
    }
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(b"GET /_auth/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.starts_with("HTTP/1.1 200"), "healthz: {body:?}");
    drop(held);
}

/// The problem lines of a failed `check-config`, each checked to have the one-line form.
fn problem_lines(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for line in &lines {
        assert!(
            line.starts_with("dingtalk-auth-proxy: invalid config: config "),
            "not a problem line: {line:?} in {text}"
        );
    }
    lines
}

/// The one problem line about `key`, which must exist exactly once.
fn line_for<'a>(text: &'a str, key: &str) -> &'a str {
    let needle = format!("config key `{key}`:");
    let found: Vec<&str> = text.lines().filter(|l| l.contains(&needle)).collect();
    assert_eq!(found.len(), 1, "one line for {key}: {text}");
    found[0]
}

/// Writes `toml` to a fresh file and runs `check-config --config` on it with the base env,
/// less `DAP_SESSION__SECRET` and the variables in `unset`.
fn check_file(toml: &str, unset: &[&str]) -> (i32, String, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(&file, toml).unwrap();
    let mut cmd = Command::new(BIN);
    base_env(cmd.args(["check-config", "--config"]).arg(&file)).env_remove("DAP_SESSION__SECRET");
    for var in unset {
        cmd.env_remove(var);
    }
    let (code, text) = output(&mut cmd);
    (code, text, dir, file)
}

/// With no config at all, one run names every one of the four required keys, each on its own
/// line with how to set it, and exits 2.
#[test]
fn empty_config_lists_every_required_key_at_once() {
    let (code, text) = output(
        Command::new(BIN)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .arg("check-config"),
    );
    assert_eq!(code, 2, "{text}");
    assert_eq!(problem_lines(&text).len(), 4, "{text}");
    for key in [
        "session.secret",
        "dingtalk.app_key",
        "dingtalk.app_secret",
        "dingtalk.corp_id",
    ] {
        let line = line_for(&text, key);
        assert!(line.contains("is required"), "{line}");
        let env = format!("DAP_{}", key.to_uppercase().replace('.', "__"));
        assert!(line.contains(&env), "{line}");
    }
    assert!(
        line_for(&text, "session.secret").contains("head -c 32 /dev/urandom | base64"),
        "{text}"
    );
}

/// Each common mistake, from the environment, prints its key, echoes the value and says how to
/// fix it.
#[test]
fn mistakes_from_the_environment_say_how_to_fix_them() {
    for (var, value, key, fix) in [
        (
            "DAP_UPSTREAM",
            "127.0.0.1:3000",
            "upstream",
            "`127.0.0.1:3000` needs a scheme, e.g. http://127.0.0.1:3000",
        ),
        (
            "DAP_UPSTREAM",
            "localhost:3000",
            "upstream",
            "`localhost:3000` needs a scheme, e.g. http://localhost:3000",
        ),
        (
            "DAP_PUBLIC_URL",
            "app.example.com",
            "public_url",
            "`app.example.com` needs a scheme, e.g. https://app.example.com",
        ),
        (
            "DAP_DINGTALK__API_BASE",
            "oapi.dingtalk.com",
            "dingtalk.api_base",
            "`oapi.dingtalk.com` needs a scheme, e.g. https://oapi.dingtalk.com",
        ),
        (
            "DAP_LISTEN",
            "8080",
            "listen",
            "`8080` is only a port; give an IP address with it, e.g. 127.0.0.1:8080 or 0.0.0.0:8080",
        ),
        (
            "DAP_ADMIN_LISTEN",
            "localhost:9090",
            "admin_listen",
            "`localhost:9090` is not an IP address and port",
        ),
        (
            "DAP_SESSION__TTL",
            "8",
            "session.ttl",
            "`8` needs a unit, e.g. 8h",
        ),
        (
            "DAP_DINGTALK__TIMEOUT",
            "5",
            "dingtalk.timeout",
            "`5` needs a unit, e.g. 5s",
        ),
        (
            "DAP_SESSION__TTL",
            "forever",
            "session.ttl",
            "`forever` is not a duration; use a whole number and a unit, e.g. 90s, 10m, 8h",
        ),
        (
            "DAP_DINGTALK__USER_API",
            "v9",
            "dingtalk.user_api",
            "`v9` is not a valid choice; use `v2` or `legacy`",
        ),
        (
            "DAP_SESSION__STORE",
            "memory",
            "session.store",
            "use `cookie` or `redis`",
        ),
        (
            "DAP_LIMITS__MAX_CONNECTIONS",
            "-5",
            "limits.max_connections",
            "`-5` cannot be negative",
        ),
        (
            "DAP_SESSION__SECRET",
            "short",
            "session.secret",
            "is 5 bytes; it must be at least 32: make one with `head -c 32 /dev/urandom | base64`",
        ),
        (
            "DAP_SESSION_SECRET",
            SESSION_SECRET,
            "session_secret",
            "did you mean `session.secret`? (environment variables separate sections with two underscores: DAP_SESSION__SECRET)",
        ),
    ] {
        let (code, text) = output(base_env(Command::new(BIN).arg("check-config")).env(var, value));
        assert_eq!(code, 2, "{var}={value}: {text}");
        assert_eq!(problem_lines(&text).len(), 1, "{var}={value}: {text}");
        let line = line_for(&text, key);
        assert!(line.contains(fix), "{var}={value}: {line}");
        assert!(!line.contains("Some("), "{line}");
        assert!(!text.contains(SESSION_SECRET), "{text}");
    }
}

/// A file full of mistakes is reported in one run: every bad key on its own line with its fix,
/// in key order, plus the missing required keys.
#[test]
fn every_mistake_in_a_file_is_reported_in_one_run() {
    let (code, text, _dir, _file) = check_file(
        "listen = \"8080\"\nupstream = \"127.0.0.1:3000\"\n\
         [dingtalk]\ntimeout = 5\nuser_api = \"v9\"\n\
         [session]\nttl = \"8\"\ncookie_nam = \"sid\"\n",
        &[],
    );
    assert_eq!(code, 2, "{text}");
    let lines = problem_lines(&text);
    for (key, fix) in [
        ("listen", "e.g. 127.0.0.1:8080 or 0.0.0.0:8080"),
        ("upstream", "needs a scheme, e.g. http://127.0.0.1:3000"),
        ("dingtalk.timeout", "`5` needs a unit"),
        ("dingtalk.user_api", "use `v2` or `legacy`"),
        ("session.ttl", "`8` needs a unit, e.g. 8h"),
        (
            "session.cookie_nam",
            "unknown key; did you mean `cookie_name`?",
        ),
        ("session.secret", "is required"),
    ] {
        let line = line_for(&text, key);
        assert!(line.contains(fix), "{key}: {line}");
    }
    assert_eq!(lines.len(), 7, "{text}");
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "in key order");
}

/// An unknown key suggests the nearest known one, also across sections and for a top-level key
/// written below a `[section]` header; far-off names list the known keys instead.
#[test]
fn unknown_keys_suggest_the_nearest_known_one() {
    let (code, text, _dir, _file) = check_file(
        &format!(
            "[dingtalk]\nupstream = \"http://127.0.0.1:3000\"\nsecret = \"x\"\n\
         [session]\nsecret = \"{SESSION_SECRET}\"\ncookie_nam = \"sid\"\nTTL = \"8h\"\nzzzzzz = 1\n\
         [sesion]\nttl = \"8h\"\n"
        ),
        &[],
    );
    assert_eq!(code, 2, "{text}");
    for (key, fix) in [
        (
            "dingtalk.upstream",
            "did you mean the top-level `upstream`? (top-level keys go above the first [section] of the file)",
        ),
        (
            "dingtalk.secret",
            "did you mean `session.secret`? (it goes under [session])",
        ),
        ("session.cookie_nam", "did you mean `cookie_name`?"),
        ("session.TTL", "did you mean `ttl`?"),
        ("session.zzzzzz", "unknown key; the keys in [session] are: secret, cookie_name"),
        ("sesion", "did you mean `session`?"),
    ] {
        let line = line_for(&text, key);
        assert!(line.contains(fix), "{key}: {line}");
    }
    assert_eq!(problem_lines(&text).len(), 6, "{text}");
}

/// A TOML syntax error names the file, the line and the key, never the value on that line.
#[test]
fn toml_syntax_error_names_file_and_line() {
    let (code, text, _dir, file) = check_file(
        &format!(
            "listen = \"127.0.0.1:8080\"\n\n[session]\nsecret = \"{SESSION_SECRET}\nttl = \"8h\"\n"
        ),
        &[],
    );
    assert_eq!(code, 2, "{text}");
    let lines = problem_lines(&text);
    assert_eq!(lines.len(), 1, "{text}");
    let expected = format!(
        "config file {}: not valid TOML at line 4, column",
        file.display()
    );
    assert!(lines[0].contains(&expected), "{text}");
    assert!(lines[0].contains("(in `secret`)"), "{text}");
    assert!(!text.contains(SESSION_SECRET), "{text}");
}

/// `check-config` prints `public_url` as the origin in effect (`http://{listen}` when unset),
/// and no `null` anywhere.
#[test]
fn check_config_prints_the_effective_public_url() {
    let (code, text) =
        output(base_env(Command::new(BIN).arg("check-config")).env("DAP_LISTEN", "127.0.0.1:7070"));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("\npublic_url = \"http://127.0.0.1:7070\"\n"),
        "{text}"
    );
    assert!(
        text.contains("# upstream is unset: auth-only mode"),
        "{text}"
    );
    assert!(!text.contains("null"), "{text}");
    let (code, text) = output(
        base_env(Command::new(BIN).arg("check-config"))
            .env("DAP_PUBLIC_URL", "https://app.example.com"),
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("\npublic_url = \"https://app.example.com\"\n"),
        "{text}"
    );
}

/// No problem line shows a secret: not a short session secret, not an app secret or Redis URL
/// of the wrong type, not a password inside a URL that lacks its scheme.
#[test]
fn problems_never_echo_secrets() {
    let (code, text, _dir, _file) = check_file(
        "upstream = \"admin:upstream-pw-123@127.0.0.1:3000\"\n\
         [dingtalk]\napp_secret = [\"app-secret-in-a-list\"]\n\
         [session]\nsecret = \"short-secret-abc\"\nredis_url = [\"redis://:redis-pw-456@db\"]\n",
        &["DAP_DINGTALK__APP_SECRET"],
    );
    assert_eq!(code, 2, "{text}");
    assert_eq!(problem_lines(&text).len(), 4, "{text}");
    for secret in [
        "upstream-pw-123",
        "app-secret-in-a-list",
        "short-secret-abc",
        "redis-pw-456",
        APP_SECRET,
    ] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    assert!(
        line_for(&text, "upstream").contains("`***@127.0.0.1:3000` needs a scheme"),
        "{text}"
    );
    assert!(
        line_for(&text, "session.secret").contains("is 16 bytes"),
        "{text}"
    );
}

/// With `[[routes]]`, `check-config` prints the route table as the proxy uses it — match
/// order, upstream (password masked), header names, policy — and the one callback to register.
#[test]
fn check_config_prints_the_route_table() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(
        &file,
        r#"
auth_host = "login.corp.example"
public_url = "https://login.corp.example"
[session]
cookie_domain = ".corp.example"
[[routes]]
host = "*.corp.example"
upstream = "http://10.0.0.9:80"
[[routes]]
host = "tools.corp.example"
path_prefix = "/grafana"
strip_prefix = true
upstream = "http://10.0.0.6:3000"
[routes.headers]
user_id = "X-WEBAUTH-USER"
[routes.access]
allow_userids = ["zhangsan"]
"#,
    )
    .unwrap();
    let (code, text) = output(
        base_env(Command::new(BIN).arg("check-config"))
            .arg("--config")
            .arg(&file),
    );
    assert_eq!(code, 0, "{text}");
    let grafana = text
        .find("routes[1]: host tools.corp.example path /grafana (prefix stripped) -> http://10.0.0.6:3000/")
        .unwrap_or_else(|| panic!("{text}"));
    let wildcard = text
        .find("routes[0]: host *.corp.example path / -> http://10.0.0.9/")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        grafana < wildcard,
        "the exact host is matched first: {text}"
    );
    assert!(
        text.contains("headers: user_id=X-WEBAUTH-USER, mobile=X-User-Mobile"),
        "{text}"
    );
    assert!(
        text.contains("access: only userids zhangsan; skip_auth none"),
        "{text}"
    );
    assert!(
        text.contains("register https://login.corp.example/_auth/callback at DingTalk"),
        "{text}"
    );
}
