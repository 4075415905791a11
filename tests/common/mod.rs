//! Shared test harness: a fake DingTalk, the echo upstream and a proxy, all on 127.0.0.1:0,
//! plus helpers that walk the login flows over real HTTP.
#![allow(dead_code)]

use std::net::SocketAddr;

pub use dingtalk_auth_proxy::clock::Clock;
use dingtalk_auth_proxy::config::{Config, Secret};
use dingtalk_auth_proxy::fake::{FakeDingTalk, FakeHandle, FakeUser};
use dingtalk_auth_proxy::Running;

use reqwest::header::{HeaderMap, SET_COOKIE};

pub mod appservers;
pub mod binary;
pub mod browser;
pub mod fronts;
pub mod lines;
pub mod redis;
pub mod sidecar;

/// A User-Agent of the DingTalk mobile client.
pub const DINGTALK_UA: &str =
    "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 AliApp(DingTalk/7.6.0) DingTalk/7.6.0";
/// A desktop browser's User-Agent.
pub const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0";
/// The session secret every test proxy uses.
pub const SECRET: &str = "test-session-secret-0123456789abcdef";

/// The test user: non-ASCII name, known mobile, two departments.
pub fn wangwu() -> FakeUser {
    let mut u = FakeUser::new("wangwu", "王五");
    u.mobile = Some("13900000002".into());
    u.email = Some("wangwu@example.com".into());
    u.dept_ids = vec![10, 20];
    u
}

/// Everything a test talks to.
pub struct Harness {
    pub fake: FakeHandle,
    pub upstream: SocketAddr,
    pub proxy: Running,
    pub config: Config,
    /// The proxy's clock: manual, starting at the system time; tests advance it.
    pub clock: Clock,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// A client that does not follow redirects and keeps no cookies.
    pub http: reqwest::Client,
}

/// Starts a harness with the default test config.
pub async fn start() -> Harness {
    start_with(|_| {}).await
}

/// Starts a harness after `tweak` has adjusted the config.
pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Harness {
    let fake = FakeDingTalk::new()
        .user(wangwu())
        .start()
        .await
        .expect("fake DingTalk starts");
    let upstream = dingtalk_auth_proxy::demo::start_echo()
        .await
        .expect("echo upstream starts");
    start_against(fake, upstream, tweak).await
}

/// Starts a proxy against an existing fake and upstream.
pub async fn start_against(
    fake: FakeHandle,
    upstream: SocketAddr,
    tweak: impl FnOnce(&mut Config),
) -> Harness {
    let mut config = dingtalk_auth_proxy::demo::demo_config(
        &fake,
        upstream,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    config.session.secret = Secret::new(SECRET);
    tweak(&mut config);
    let clock = Clock::manual(Clock::system().now_secs());
    let proxy = dingtalk_auth_proxy::start_with_clock(config.clone(), clock.clone())
        .await
        .expect("proxy starts");
    let base = format!("http://{}", proxy.addr);
    Harness {
        fake,
        upstream,
        proxy,
        config,
        clock,
        base,
        http: client(),
    }
}

/// A reqwest client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("client builds")
}

/// `name=value` of cookie `name` set by this response (empty value = a deletion).
pub fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.split_once('=').is_some_and(|(k, _)| k == name))
        .map(str::to_string)
}

/// `name=value` of the login state cookie this response set (`dap_session_state_<tag>`).
pub fn state_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| {
            pair.split_once('=')
                .is_some_and(|(k, v)| k.starts_with("dap_session_state_") && !v.is_empty())
        })
        .map(str::to_string)
}

/// The `state` embedded in the in-app login page.
pub fn state_from_page(html: &str) -> String {
    let at = html.find("\"state\":\"").expect("page carries a state") + 9;
    html[at..].split('"').next().unwrap_or_default().to_string()
}

impl Harness {
    /// GET `path` with extra headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        get_url(&format!("{}{}", self.base, path), headers).await
    }

    /// Opens the in-app login page for `rd`: returns (state cookie pair, state).
    pub async fn start_inapp_login(&self, rd: &str) -> (String, String) {
        let path = format!("/_auth/login?rd={}", urlencode(rd));
        let resp = self
            .get(
                &path,
                &[("user-agent", DINGTALK_UA), ("accept", "text/html")],
            )
            .await;
        assert_eq!(resp.status(), 200);
        let cookie = state_cookie(resp.headers()).expect("state cookie");
        let html = resp.text().await.expect("page body");
        (cookie, state_from_page(&html))
    }

    /// The callback as the login page's script would call it.
    pub async fn callback(&self, state_cookie: &str, code: &str, state: &str) -> reqwest::Response {
        let path = format!(
            "/_auth/callback?code={}&state={}",
            urlencode(code),
            urlencode(state)
        );
        self.get(
            &path,
            &[("cookie", state_cookie), ("user-agent", DINGTALK_UA)],
        )
        .await
    }

    /// The whole in-app login for `userid`, as the JSAPI would do it; returns the
    /// `dap_session=…` pair and the Location the callback sent the browser to.
    pub async fn login_inapp(&self, userid: &str, rd: &str) -> (String, String) {
        let login = format!("/_auth/login?rd={}", urlencode(rd));
        inapp_login_via(&self.base, &self.fake, userid, &login).await
    }

    /// GET through the proxy as a logged-in user; returns the echo upstream's JSON.
    pub async fn echo(
        &self,
        session: &str,
        path: &str,
        extra: &[(&str, &str)],
    ) -> serde_json::Value {
        let mut headers = vec![("cookie", session), ("accept", "application/json")];
        headers.extend_from_slice(extra);
        let resp = self.get(path, &headers).await;
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.expect("echo JSON")
    }
}

/// The in-app login as the DingTalk client would do it, through `front` (the proxy itself, or
/// nginx/Caddy in front of it), from `login_path` (`/_auth/login?rd=…`): the page, a code from
/// the (fake) JSAPI, the callback. Returns the `dap_session=…` pair and the callback's Location.
pub async fn inapp_login_via(
    front: &str,
    fake: &FakeHandle,
    userid: &str,
    login_path: &str,
) -> (String, String) {
    let login = inapp_login_with(
        &client(),
        &format!("{front}{login_path}"),
        front,
        fake,
        userid,
    )
    .await;
    (login.session, login.location)
}

/// How an in-app login ended.
pub struct InAppLogin {
    /// The `dap_session=…` pair.
    pub session: String,
    /// The whole `Set-Cookie` line that carried it (its attributes: Domain, Secure, …).
    pub set_cookie: String,
    /// Where the callback sent the browser.
    pub location: String,
}

/// [`inapp_login_via`] with `http` (e.g. a client that resolves made-up host names): the
/// page at `login_url`, a code from the fake JSAPI, the callback at `{origin}/_auth/callback`.
pub async fn inapp_login_with(
    http: &reqwest::Client,
    login_url: &str,
    origin: &str,
    fake: &FakeHandle,
    userid: &str,
) -> InAppLogin {
    let resp = http
        .get(login_url)
        .header("user-agent", DINGTALK_UA)
        .header("accept", "text/html")
        .send()
        .await
        .expect("login page");
    assert_eq!(resp.status(), 200, "login page {login_url}");
    let state_cookie = state_cookie(resp.headers()).expect("state cookie");
    let state = state_from_page(&resp.text().await.expect("page body"));
    let code = fake.mint_code(userid).expect("user exists in the fake");
    let resp = http
        .get(format!(
            "{origin}/_auth/callback?code={}&state={}",
            urlencode(&code),
            urlencode(&state)
        ))
        .header("cookie", &state_cookie)
        .header("user-agent", DINGTALK_UA)
        .send()
        .await
        .expect("callback");
    assert_eq!(resp.status(), 302, "callback: {:?}", resp.text().await);
    let location = resp.headers()["location"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    let session = set_cookie(resp.headers(), "dap_session").expect("session cookie");
    let set_cookie = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("dap_session=") && !v.starts_with("dap_session=;"))
        .unwrap_or_default()
        .to_string();
    InAppLogin {
        session,
        set_cookie,
        location,
    }
}

/// GET `url` as a logged-in user who also claims to be someone else in every spelling of the
/// identity headers; returns what the echo app received.
pub async fn spoofed_echo(url: &str, session: &str) -> serde_json::Value {
    let resp = client()
        .get(url)
        .header("cookie", session)
        .header("accept", "application/json")
        .header("x-user-id", "evil")
        .header("X_User_Id", "evil2")
        .header("x-user-mobile", "110")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200, "GET {url}");
    resp.json().await.expect("echo JSON")
}

/// GET `url` with extra headers, redirects not followed.
pub async fn get_url(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request succeeds")
}

/// An anonymous desktop navigation to `path` through `front` (nginx, Caddy): 302 to our login
/// page, which 302s to DingTalk's OAuth page with `{front}/_auth/callback` as redirect_uri.
/// Returns the login path (`/_auth/login?rd=…`) the front server chose.
pub async fn assert_login_chain(front: &str, fake: &FakeHandle, path: &str) -> String {
    let html = [("accept", "text/html"), ("user-agent", BROWSER_UA)];
    let r = get_url(&format!("{front}{path}"), &html).await;
    assert_eq!(r.status(), 302, "anonymous navigation to {path}");
    let login = r.headers()["location"].to_str().unwrap_or_default();
    let login = login.trim_start_matches(front).to_string();
    assert_eq!(login, format!("/_auth/login?rd={path}"));
    let r = get_url(&format!("{front}{login}"), &html).await;
    assert_eq!(r.status(), 302, "login page");
    let to = r.headers()["location"].to_str().unwrap_or_default();
    assert!(
        to.starts_with(&format!("{}/oauth2/auth?", fake.base_url())),
        "{to}"
    );
    let callback = urlencode(&format!("{front}/_auth/callback"));
    assert!(to.contains(&callback), "{to}");
    login
}

/// An anonymous request through `front` to a `skip_auth` path reaches the app, and the
/// client's own `X-User-Id` does not (the app sees none, or an empty one).
pub async fn assert_skip_auth_strips(front: &str) {
    let r = get_url(
        &format!("{front}/public/logo.png"),
        &[("accept", "application/json"), ("x-user-id", "evil")],
    )
    .await;
    assert_eq!(r.status(), 200, "skip_auth path through {front}");
    let echo: serde_json::Value = r.json().await.expect("echo JSON");
    let ids = seen(&echo, "x-user-id");
    assert!(
        ids.iter().all(|v| v.is_empty()),
        "client header reached the app: {ids:?}"
    );
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The values upstream saw for header `name`.
pub fn seen<'a>(echo: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    echo["headers"][name]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default()
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits (bounded) until something accepts connections on `port`.
pub async fn wait_for_port(port: u16, limit: std::time::Duration) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    false
}

/// How long a child's process group may take to shut down cleanly after SIGTERM.
pub const STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long the group may take to vanish after SIGKILL (then the guard gives up, loudly).
const KILL_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Pause between two looks at the stopping group.
const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// An external process started by [`spawn_guarded`], in a process group of its own (its id is
/// the child's pid), with everything it forks (nginx's workers, Chromium under chromedriver).
/// On drop the whole group is stopped the way it shuts down cleanly: SIGTERM, a bounded wait
/// ([`STOP_LIMIT`]), SIGKILL only after that, then the child is reaped. Never panics.
pub struct ChildGuard {
    child: std::process::Child,
}

/// Spawns `cmd` in a new process group of its own, guarded. The child also gets SIGTERM when
/// the thread that spawned it ends (PR_SET_PDEATHSIG), so a test binary killed before its
/// guards drop (Ctrl-C, a timeout) does not leave it running: in its own group it no longer
/// sees the terminal's Ctrl-C.
pub fn spawn_guarded(cmd: &mut std::process::Command) -> std::io::Result<ChildGuard> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // SAFETY: the hook only makes one async-signal-safe system call (prctl) between fork and
    // exec, touching no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(ChildGuard {
        child: cmd.spawn()?,
    })
}

impl ChildGuard {
    /// The child's pid, which is also its process group's id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child's stderr, when it was piped (once).
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// `Some(status)` once the child (the group's leader) has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }

    /// Whether the child is reaped (or cannot be waited for) and no process of its group lives.
    fn stopped(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None)) && group_members(self.id()).is_empty()
    }

    /// Sends `signal` to every process of the child's group.
    fn signal_group(&self, signal: libc::c_int) {
        let Ok(pgid) = libc::pid_t::try_from(self.id()) else {
            return;
        };
        // SAFETY: kill(2) with a negative pid only sends a signal to that process group. The
        // group id cannot name someone else's group while the leader is unreaped or any member
        // lives (Linux does not reuse a pid still in use as a group id); `stop` checks that.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }

    /// Stops the group: SIGTERM, up to [`STOP_LIMIT`] for it to exit, SIGKILL, up to
    /// `KILL_LIMIT` more, reaping the child. Returns whether the group is gone.
    pub fn stop(&mut self) -> bool {
        if self.stopped() {
            return true;
        }
        for (signal, limit) in [(libc::SIGTERM, STOP_LIMIT), (libc::SIGKILL, KILL_LIMIT)] {
            self.signal_group(signal);
            let end = std::time::Instant::now() + limit;
            loop {
                if self.stopped() {
                    return true;
                }
                if std::time::Instant::now() >= end {
                    break;
                }
                std::thread::sleep(STOP_POLL);
            }
        }
        // Not eprintln!: that panics when stderr is gone, and a Drop must not panic.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "warning: process group {} still has {:?} after SIGTERM and SIGKILL",
            self.id(),
            group_members(self.id())
        );
        false
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The live (not zombie) processes whose process group id is `pgid`, from `/proc/*/stat`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| live_process_group(pid) == Some(pgid))
        .collect()
}

/// The process group id of `pid` if it is alive (not a zombie), from `/proc/PID/stat`.
pub fn live_process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    (!matches!(state, "Z" | "X")).then_some(pgrp)
}

/// The path of a system binary the test cannot run without (fails, never skips).
pub fn require_binary(name: &str, candidates: &[&str]) -> std::path::PathBuf {
    for c in candidates {
        let p = std::path::Path::new(c);
        if p.exists() {
            return p.to_path_buf();
        }
    }
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.exists() {
                return p;
            }
        }
    }
    panic!("{name} is not installed: run `bash .ci/run` (it installs it) or apt-get install it");
}

/// The deploy file at `rel` (from the crate root).
pub fn deploy_file(rel: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Replaces `from` in `text`, insisting it was there (the shipped file must keep its markers).
pub fn replace_required(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "shipped config lost its `{from}`");
    text.replace(from, to)
}

/// The demo example binary, running (stopped on drop, see [`ChildGuard`]).
pub struct Demo {
    _guard: ChildGuard,
    /// The proxy's URL, without a trailing slash.
    pub proxy: String,
    /// The fake DingTalk's URL.
    pub fake: String,
}

impl Demo {
    /// The demo's pid, which is also its process group's id.
    pub fn pid(&self) -> u32 {
        self._guard.id()
    }
}

fn demo_binary() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("debug/examples/demo")
}

/// Starts the demo on a free port and reads the addresses it prints.
pub fn start_demo() -> Demo {
    let bin = demo_binary();
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --examples` first (.ci/run does)",
        bin.display()
    );
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut guard = spawn_guarded(&mut cmd).expect("demo starts");
    let rx = lines::read(guard.child.stdout.take().expect("stdout"));
    let (mut proxy, mut fake) = (None, None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while proxy.is_none() && std::time::Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200)) else {
            continue;
        };
        if let Some(url) = line.strip_prefix("fake DingTalk:") {
            fake = Some(url.trim().to_string());
        }
        if let Some(url) = line.strip_prefix("demo proxy listening on ") {
            proxy = Some(url.trim().trim_end_matches('/').to_string());
        }
    }
    Demo {
        _guard: guard,
        proxy: proxy.expect("demo printed its URL"),
        fake: fake.expect("demo printed the fake DingTalk URL"),
    }
}
