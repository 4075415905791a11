//! The binary's command line: `check-config`, `--version`, exit codes, redaction, and a real
//! `run` answering on its port.

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
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Ready when it says it is listening (bounded).
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(15)) {
        let done = line.contains("listening");
        lines.push(line);
        if done {
            break;
        }
    }
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
