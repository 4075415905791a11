//! Real headless Chromium, driven over WebDriver (chromedriver + fantoccini), for the browser
//! tests (tests/browser.rs, tests/demo_pages.rs). Chromium and chromedriver must be installed
//! (`.ci/run` installs them); a missing one fails the test through [`require_binary`], never
//! skips it. A failing test leaves a screenshot in `target/browser-screenshots/`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use super::{free_port, require_binary, spawn_guarded, wait_for_port, ChildGuard};

/// What a browser test's steps fail with.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long a step waits for an element or a URL.
pub const WAIT: Duration = Duration::from_secs(20);

/// `ensure!(cond, "format", args…)`: returns `Err(format!(…))` from the enclosing step when
/// `cond` is false.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}
// Unused in the test binaries without a browser; `dead_code` does not cover a `use`.
#[allow(unused_imports)]
pub(crate) use ensure;

/// A headless Chromium session under its own chromedriver, with a fresh profile. On drop the
/// session's fields go in order: the client, then chromedriver's whole process group (Chromium
/// included, see [`ChildGuard`]), then the profile directory.
pub struct Browser {
    pub client: Client,
    _driver: ChildGuard,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// chromedriver on a free port, and a Chromium session with a fresh profile in an 800×900
    /// window, sending `user_agent` when given.
    pub async fn start(user_agent: Option<&str>) -> Browser {
        Browser::start_sized(user_agent, (800, 900)).await
    }

    /// As [`Browser::start`], in a window of `(width, height)`.
    pub async fn start_sized(user_agent: Option<&str>, size: (u32, u32)) -> Browser {
        Browser::start_with(user_agent, size, &[]).await
    }

    /// As [`Browser::start_sized`], with more Chromium flags (e.g. `--host-resolver-rules`).
    pub async fn start_with(
        user_agent: Option<&str>,
        (width, height): (u32, u32),
        extra: &[&str],
    ) -> Browser {
        let chromium = require_binary("chromium", &["/usr/bin/chromium"]);
        let driver_bin = require_binary("chromedriver", &["/usr/bin/chromedriver"]);
        let port = free_port();
        // Chromium, started by chromedriver, lands in chromedriver's process group: the guard
        // stops both (Chromium's crash handler makes a session of its own, and exits with it).
        let driver = spawn_guarded(
            Command::new(driver_bin)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("chromedriver starts");
        assert!(
            wait_for_port(port, Duration::from_secs(15)).await,
            "chromedriver did not listen"
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if let Some(ua) = user_agent {
            args.push(format!("--user-agent={ua}"));
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"binary": chromium, "args": args}),
        );
        // Both of rustls's crypto providers are compiled into the tests; pick one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = ClientBuilder::rustls()
            .expect("TLS setup")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("WebDriver session");
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Ends the session; on failure saves a screenshot as `{name}.png` and panics with the
    /// error, the page's URL and the screenshot's path.
    pub async fn finish(self, name: &str, result: Result<(), Error>) {
        if let Err(e) = &result {
            let path = screenshot(&self.client, name).await;
            let url = self.client.current_url().await.map(|u| u.to_string());
            let _ = self.client.close().await;
            panic!("{name}: {e} (at {url:?}; screenshot: {path:?})");
        }
        let _ = self.client.close().await;
    }

    /// Waits (bounded) for the element, then clicks it.
    pub async fn click(&self, css: &str) -> Result<(), Error> {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await?
            .click()
            .await?;
        Ok(())
    }

    /// Waits (bounded) for the element, then returns its text.
    pub async fn text(&self, css: &str) -> Result<String, Error> {
        let el = self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await?;
        Ok(el.text().await?)
    }

    /// Waits (bounded) until the page's URL satisfies `f`.
    pub async fn wait_url(
        &self,
        what: &str,
        f: impl Fn(&url::Url) -> bool,
    ) -> Result<url::Url, Error> {
        let end = Instant::now() + WAIT;
        loop {
            let url = self.client.current_url().await?;
            if f(&url) {
                return Ok(url);
            }
            ensure!(Instant::now() < end, "waited for {what}; still at {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Saves a screenshot as `target/browser-screenshots/{name}.png`.
pub async fn screenshot(client: &Client, name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
    std::fs::create_dir_all(&dir).ok()?;
    let png = client.screenshot().await.ok()?;
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).ok()?;
    Some(path)
}
