//! The real `dingtalk-auth-proxy` binary as a child process, configured through `DAP_*`
//! environment variables against an in-process fake DingTalk; its stderr read line by line.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use dingtalk_auth_proxy::fake::FakeHandle;

use super::{free_port, lines, spawn_guarded, ChildGuard, SECRET};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_dingtalk-auth-proxy");

/// A running proxy process.
pub struct ProxyProcess {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Its stderr, line by line.
    pub lines: mpsc::Receiver<String>,
    /// The lines it logged up to and including "listening".
    pub startup: Vec<String>,
    pub child: ChildGuard,
}

impl ProxyProcess {
    /// The log lines that arrived until one containing `marker` (bounded; fails without it).
    pub fn lines_until(&self, marker: &str) -> Vec<String> {
        let got = lines::until(&self.lines, marker, Duration::from_secs(10));
        assert!(
            got.last().is_some_and(|l| l.contains(marker)),
            "no log line with {marker:?}; got {got:?}"
        );
        got
    }
}

/// Starts the binary on a free port against `fake`, with `env` on top of the basic settings
/// (DingTalk endpoints and credentials, the test secret); returns once it is listening.
pub fn start(fake: &FakeHandle, env: &[(&str, &str)]) -> ProxyProcess {
    start_on(fake, free_port(), env)
}

/// [`start`] on `port` (a restart on the port of an earlier run).
pub fn start_on(fake: &FakeHandle, port: u16, env: &[(&str, &str)]) -> ProxyProcess {
    start_args(fake, port, env, &[])
}

/// [`start`] reading `--config file` too (the environment still comes on top of it).
pub fn start_with_file(
    fake: &FakeHandle,
    file: &std::path::Path,
    env: &[(&str, &str)],
) -> ProxyProcess {
    let file = file.to_str().expect("a UTF-8 path");
    start_args(fake, free_port(), env, &["--config", file])
}

fn start_args(fake: &FakeHandle, port: u16, env: &[(&str, &str)], args: &[&str]) -> ProxyProcess {
    let base = fake.base_url();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("DAP_LISTEN", format!("127.0.0.1:{port}"))
        .env("DAP_DINGTALK__APP_KEY", fake.app_key())
        .env("DAP_DINGTALK__APP_SECRET", fake.app_secret())
        .env("DAP_DINGTALK__CORP_ID", fake.corp_id())
        .env("DAP_DINGTALK__API_BASE", &base)
        .env("DAP_DINGTALK__NEW_API_BASE", &base)
        .env("DAP_DINGTALK__LOGIN_BASE", &base)
        .env("DAP_DINGTALK__JSAPI_URL", fake.jsapi_url())
        .env("DAP_SESSION__SECRET", SECRET)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = spawn_guarded(&mut cmd).expect("the binary starts");
    let lines = lines::read(child.take_stderr().expect("stderr"));
    let mut p = ProxyProcess {
        base: format!("http://127.0.0.1:{port}"),
        lines,
        startup: Vec::new(),
        child,
    };
    p.startup = p.lines_until("listening");
    p
}
