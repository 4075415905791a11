//! `dingtalk-auth-proxy init`, the real binary: the non-interactive form writes a 0600,
//! commented config that `check-config` accepts; an existing file is kept unless `--force`;
//! bad answers exit 2; the interactive form is driven through a pipe and through a
//! pseudo-terminal (secret not echoed), then runs `doctor` against the fake DingTalk.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use dingtalk_auth_proxy::fake::FakeDingTalk;

const BIN: &str = env!("CARGO_BIN_EXE_dingtalk-auth-proxy");
const APP_SECRET: &str = "init-app-secret-value-9876";

/// Runs the binary with `args` and `stdin`, no inherited environment but PATH; (exit code,
/// stdout + stderr).
fn run(args: &[&str], stdin: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("the binary finishes");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The `session.secret` value the file holds.
fn session_secret(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let table: toml::Table = text.parse().unwrap();
    table["session"]["secret"].as_str().unwrap().to_string()
}

fn mode(file: &Path) -> u32 {
    std::fs::metadata(file).unwrap().permissions().mode() & 0o777
}

/// `init --non-interactive` with every answer, writing `file`.
fn init_flags<'a>(file: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "init",
        "--non-interactive",
        "--app-key",
        "dinginitkey",
        "--app-secret",
        APP_SECRET,
        "--corp-id",
        "dinginitcorp",
        "--public-url",
        "https://app.example.com",
        "--upstream",
        "http://127.0.0.1:3000",
        "--output",
        file,
    ];
    args.extend_from_slice(extra);
    args
}

/// The non-interactive form writes a commented 0600 file with a fresh 64-character session
/// secret, which `check-config` accepts; neither secret is printed by either command.
#[test]
fn non_interactive_writes_a_private_config_check_config_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    let path = file.to_str().unwrap();
    let (code, text) = run(&init_flags(path, &[]), "");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("mode 0600"), "{text}");
    assert!(
        text.contains("dingtalk-auth-proxy doctor --config"),
        "{text}"
    );
    assert_eq!(mode(&file), 0o600);
    let secret = session_secret(&file);
    assert_eq!(secret.len(), 64, "{secret}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.lines().filter(|l| l.starts_with('#')).count() > 15);
    assert!(written.contains("app_key = \"dinginitkey\""), "{written}");
    assert!(
        !text.contains(APP_SECRET) && !text.contains(&secret),
        "{text}"
    );

    let (code, shown) = run(&["check-config", "--config", path], "");
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("upstream = \"http://127.0.0.1:3000/\""),
        "{shown}"
    );
    assert!(
        shown.contains("public_url = \"https://app.example.com\""),
        "{shown}"
    );
    assert!(
        !shown.contains(APP_SECRET) && !shown.contains(&secret),
        "{shown}"
    );

    // Another run makes another secret.
    let other = dir.path().join("other.toml");
    let (code, text) = run(&init_flags(other.to_str().unwrap(), &[]), "");
    assert_eq!(code, 0, "{text}");
    assert_ne!(session_secret(&other), secret);
}

/// An existing file is never overwritten without --force (exit 2, file unchanged); with
/// --force it is replaced, still 0600, with a new secret.
#[test]
fn refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    let path = file.to_str().unwrap();
    std::fs::write(&file, "# mine\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, text) = run(&init_flags(path, &[]), "");
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("already exists") && text.contains("--force"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "# mine\n");
    // The interactive form refuses before asking anything.
    let (code, text) = run(&["init", "--output", path], "");
    assert_eq!(code, 2, "{text}");
    assert!(!text.contains("App key"), "{text}");

    let (code, text) = run(&init_flags(path, &["--force"]), "");
    assert_eq!(code, 0, "{text}");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(session_secret(&file).len(), 64);
    // No temporary file left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// Bad or missing answers exit 2 with a line naming the answer; nothing is written.
#[test]
fn bad_answers_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    let path = file.to_str().unwrap();
    for (flag, value, expect) in [
        ("--public-url", "app.example.com", "public URL"),
        ("--public-url", "https://app.example.com/app", "public URL"),
        ("--upstream", "https://127.0.0.1:3000", "upstream"),
        ("--app-key", "two words", "app key"),
    ] {
        let mut args = init_flags(path, &[]);
        let at = args.iter().position(|a| *a == flag).unwrap();
        args[at + 1] = value;
        let (code, text) = run(&args, "");
        assert_eq!(code, 2, "{flag} {value}: {text}");
        assert!(text.contains(expect), "{flag} {value}: {text}");
        assert!(!text.contains(APP_SECRET), "{text}");
        assert!(!file.exists());
    }
    let (code, text) = run(
        &[
            "init",
            "--non-interactive",
            "--app-key",
            "k",
            "--output",
            path,
        ],
        "",
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--app-secret"), "{text}");
    let (code, text) = run(&["init", "--non-interactive"], "");
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--output"), "{text}");
}

/// The interactive form read from a pipe: a bad public URL is asked again, the answers land
/// in the file, "n" declines doctor; the secret is not echoed back.
#[test]
fn interactive_through_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    let path = file.to_str().unwrap();
    let answers = format!(
        "dingpipekey\n{APP_SECRET}\ndingpipecorp\nnot a url\nhttps://pipe.example.com\n\nn\n"
    );
    let (code, text) = run(&["init", "--output", path], &answers);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("is not a URL"), "{text}");
    assert!(text.contains("Run doctor now?"), "{text}");
    assert!(!text.contains(APP_SECRET), "{text}");
    assert_eq!(mode(&file), 0o600);
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains("app_key = \"dingpipekey\""), "{written}");
    assert!(written.contains("# upstream = "), "auth-only: {written}");
    let (code, shown) = run(&["check-config", "--config", path], "");
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("public_url = \"https://pipe.example.com\""),
        "{shown}"
    );

    // Input that ends early: exit 2, nothing written.
    let short = dir.path().join("short.toml");
    let (code, text) = run(&["init", "--output", short.to_str().unwrap()], "k\n");
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("input ended"), "{text}");
    assert!(!short.exists());
}

/// Answers prompts on a pseudo-terminal as a person would: waits for each prompt, types the
/// answer (for a secret, once the program has turned echo off, at most 10 s later). Prints
/// everything the terminal showed; exits with the child's code.
const PTY_DRIVER: &str = r#"
import os, pty, select, sys, termios, time
binary, answers = sys.argv[1], sys.argv[2:]
pairs = [(answers[i], answers[i + 1]) for i in range(0, len(answers) - 1, 2)]
args = [binary, "init", "--output", os.environ["INIT_OUTPUT"]]
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, args)
out, seen, deadline = b"", 0, time.time() + 60
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
    if pairs:
        at = out.find(pairs[0][0].encode(), seen)
        if at >= 0:
            seen = at + len(pairs[0][0])
            if "secret" in pairs[0][0]:
                wait = time.time() + 10
                while termios.tcgetattr(fd)[3] & termios.ECHO and time.time() < wait:
                    time.sleep(0.02)
            os.write(fd, (pairs[0][1] + "\n").encode())
            pairs.pop(0)
else:
    os.kill(pid, 9)
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status) if not pairs else 99)
"#;

/// The interactive form on a real pseudo-terminal: the secret is typed without echo, the file
/// is written, and accepting the offer runs doctor against the fake DingTalk (the written
/// file plus `DAP_*` pointing at the fake), which passes.
#[tokio::test]
async fn interactive_through_a_pseudo_terminal_then_doctor() {
    let fake = FakeDingTalk::new().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    let base = fake.base_url();
    let app_key = fake.app_key();
    let app_secret = fake.app_secret();
    let corp_id = fake.corp_id();
    let mut cmd = tokio::process::Command::new("python3");
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("INIT_OUTPUT", &file)
        .env("DAP_DINGTALK__API_BASE", &base)
        .env("DAP_DINGTALK__NEW_API_BASE", &base)
        .env("DAP_DINGTALK__LOGIN_BASE", &base)
        .arg("-c")
        .arg(PTY_DRIVER)
        .arg(BIN)
        .args([
            "App key",
            app_key.as_str(),
            "App secret",
            app_secret.as_str(),
            "Corp id",
            corp_id.as_str(),
            "Public URL",
            "https://tty.example.com",
            "Upstream",
            "http://127.0.0.1:3000",
            "Run doctor now?",
            "y",
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("the pty session ends within 90 s")
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}\n{err}");
    // Typed where the terminal showed it, except the secret: no echo.
    assert!(text.contains(&app_key), "{text}");
    assert!(!text.contains(&app_secret), "secret echoed: {text}");
    assert_eq!(mode(&file), 0o600);
    let secret = session_secret(&file);
    assert!(!text.contains(&secret), "{text}");
    // Doctor ran, against the fake, and passed.
    assert!(text.contains("✓ app_key/app_secret accepted"), "{text}");
    assert!(
        text.contains("https://tty.example.com/_auth/callback"),
        "{text}"
    );
    assert!(text.contains("all checks passed"), "{text}");
    assert_eq!(fake.calls("/gettoken"), 1);
}
