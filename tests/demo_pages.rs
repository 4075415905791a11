//! What the demo shows people: the fake DingTalk's index page (what it is, its users, its app
//! key, secret and corp id, the config lines for your own proxy), `fake_dingtalk`'s printout,
//! and the README's "use your own config with the fake" steps run for real: the printed
//! exports given to the proxy binary make a working in-app login; and the layout of the demo
//! app page and the fake's index page in real headless Chromium (tests/common/browser.rs's
//! `Browser`, as in tests/browser.rs; missing ones fail, never skip), with screenshots kept in
//! `target/browser-screenshots/demo-pages-*.png`.
#![cfg(feature = "fake")]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::browser::{ensure, screenshot, Browser, Error};
use common::{client, free_port, set_cookie, spawn_guarded, state_cookie, urlencode, DINGTALK_UA};
use dingtalk_auth_proxy::fake::{FakeDingTalk, FakeHandle, FakeUser};

/// The seven `export DAP_DINGTALK__…=…` lines that point a proxy at `fake`, as the demo's own
/// config has them (`demo_config`).
fn expected_exports(fake: &FakeHandle) -> Vec<String> {
    let base = fake.base_url();
    [
        ("DAP_DINGTALK__APP_KEY", fake.app_key()),
        ("DAP_DINGTALK__APP_SECRET", fake.app_secret()),
        ("DAP_DINGTALK__CORP_ID", fake.corp_id()),
        ("DAP_DINGTALK__API_BASE", base.clone()),
        ("DAP_DINGTALK__NEW_API_BASE", base.clone()),
        ("DAP_DINGTALK__LOGIN_BASE", base),
        ("DAP_DINGTALK__JSAPI_URL", fake.jsapi_url()),
    ]
    .into_iter()
    .map(|(k, v)| format!("export {k}={v}"))
    .collect()
}

/// GET `url` (no redirects followed); status, content type and body.
async fn fetch(url: &str) -> (u16, String, String) {
    let r = client().get(url).send().await.expect("request");
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ctype, r.text().await.expect("body"))
}

/// The text of `<pre id="config">…</pre>` on the index page, unescaped, one line per entry.
fn config_block(html: &str) -> Vec<String> {
    let start = html.find("<pre id=\"config\">").expect("config block") + 17;
    let end = start + html[start..].find("</pre>").expect("config block ends");
    html[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The fake's `GET /` says it is a stand-in (not DingTalk) in 中文 and English, lists every
/// user with name, mobile and status, its app key, secret and corp id, and the seven config
/// lines, JSAPI URL included, with the same values the demo configures its proxy with.
#[tokio::test]
async fn fake_index_lists_users_app_and_config() {
    let fake = FakeDingTalk::new().start().await.expect("fake starts");
    let (status, ctype, page) = fetch(&format!("{}/", fake.base_url())).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(page.contains("这不是钉钉") && page.contains("This is not DingTalk"));
    for needed in [
        format!("<code id=\"app-key\">{}</code>", fake.app_key()),
        format!("<code id=\"app-secret\">{}</code>", fake.app_secret()),
        format!("<code id=\"corp-id\">{}</code>", fake.corp_id()),
    ] {
        assert!(page.contains(&needed), "index lacks {needed}");
    }
    for (userid, name, mobile, active) in [
        ("zhangsan", "张三", Some("13800000001"), true),
        ("lisi", "李四", Some("13800000002"), true),
        ("inactive", "未激活用户", Some("13800000003"), false),
        ("nomobile", "No Mobile", None, true),
    ] {
        let at = page
            .find(&format!("<tr id=\"user-{userid}\">"))
            .unwrap_or_else(|| panic!("no row for {userid}"));
        let row = &page[at..at + page[at..].find("</tr>").expect("row ends")];
        assert!(row.contains(name), "{row}");
        match mobile {
            Some(m) => assert!(row.contains(m), "{row}"),
            None => assert!(row.contains("none"), "{row}"),
        }
        let status = if active { "active" } else { "inactive" };
        assert!(row.contains(&format!("{status}</span>")), "{row}");
    }
    assert_eq!(config_block(&page), expected_exports(&fake));
    // A browser page of our own kind: no scripts, not framable.
    let r = client()
        .get(format!("{}/", fake.base_url()))
        .send()
        .await
        .expect("index");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
}

/// Everything on the index page is HTML-escaped (a user named `<script>`), and a secret that
/// is not a plain shell word is single-quoted in its export line.
#[tokio::test]
async fn fake_index_escapes_and_quotes() {
    let fake = FakeDingTalk::new()
        .app("dingkey", "it's <b>secret</b> & more")
        .user(FakeUser::new("evil\"id", "<script>alert(1)</script>"))
        .start()
        .await
        .expect("fake starts");
    let (_, _, page) = fetch(&format!("{}/", fake.base_url())).await;
    assert!(!page.contains("<script>alert"), "unescaped name");
    assert!(!page.contains("<b>secret"), "unescaped secret");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        page.contains("<tr id=\"user-evil&quot;id\">"),
        "attribute not escaped"
    );
    let lines = config_block(&page);
    assert!(
        lines.contains(&r#"export DAP_DINGTALK__APP_SECRET='it'\''s <b>secret</b> & more'"#.into()),
        "{lines:?}"
    );
}

/// The index page answers GET and HEAD on `/` only; every other route behaves as before
/// (an unknown path is still a plain 404, `/` by POST too).
#[tokio::test]
async fn fake_index_leaves_other_routes_alone() {
    let fake = FakeDingTalk::new().start().await.expect("fake starts");
    let base = fake.base_url();
    let head = client()
        .head(format!("{base}/"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 200);
    let (status, _, body) = fetch(&format!("{base}/nope")).await;
    assert_eq!((status, body.as_str()), (404, "not found\n"));
    let post = client()
        .post(format!("{base}/"))
        .send()
        .await
        .expect("POST");
    assert_eq!(post.status(), 404);
    let (status, ctype, _) = fetch(&fake.jsapi_url()).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/javascript"), "{ctype}");
}

/// The built `fake_dingtalk` example, running, with its stdout going to a temporary file.
fn start_fake_example() -> (common::ChildGuard, tempfile::NamedTempFile) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let bin = target.join("debug/examples/fake_dingtalk");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --examples` first (.ci/run does)",
        bin.display()
    );
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let mut cmd = Command::new(&bin);
    cmd.stdout(Stdio::from(out.reopen().expect("reopen")))
        .stderr(Stdio::null());
    let guard = spawn_guarded(&mut cmd).expect("fake_dingtalk starts");
    (guard, out)
}

/// The printed lines up to and including the one starting with `last` (at most 30 s).
fn lines_until(out: &tempfile::NamedTempFile, last: &str) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(out.path()).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if let Some(i) = lines.iter().position(|l| l.starts_with(last)) {
            return lines[..=i].to_vec();
        }
        assert!(
            Instant::now() < end,
            "no line starting with {last:?}; got {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `cargo run --example fake_dingtalk` prints its URL first (benches/proxy.sh reads it), its
/// app secret, and export lines that are exactly the ones on its index page.
#[tokio::test]
async fn fake_example_prints_secret_and_exports() {
    let (_guard, out) = start_fake_example();
    let lines = lines_until(&out, "export DAP_UPSTREAM=");
    let base = lines[0]
        .strip_prefix("fake dingtalk listening on ")
        .unwrap_or_else(|| panic!("first line {:?}", lines[0]))
        .to_string();
    assert!(
        lines
            .iter()
            .any(|l| l == "app secret:  fake-app-secret-0123456789"),
        "{lines:?}"
    );
    let exports: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("export DAP_DINGTALK__"))
        .cloned()
        .collect();
    let (_, _, page) = fetch(&format!("{base}/")).await;
    assert_eq!(exports, config_block(&page));
    assert!(
        exports.contains(&format!(
            "export DAP_DINGTALK__JSAPI_URL={base}/dingtalk.open.js"
        )),
        "{exports:?}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("export DAP_SESSION__SECRET=")));
}

/// The README's steps, for real: the exports `fake_dingtalk` prints, plus a session secret and
/// an upstream, given to the proxy binary, make a working in-app login — the login page loads
/// the fake's JSAPI (`DAP_DINGTALK__JSAPI_URL`), its code goes through the callback, and the
/// app receives `X-User-Id`.
#[tokio::test]
async fn printed_exports_run_the_proxy_against_the_fake() {
    let (_fake, out) = start_fake_example();
    let lines = lines_until(&out, "export DAP_UPSTREAM=");
    let upstream = dingtalk_auth_proxy::demo::start_echo()
        .await
        .expect("echo starts");
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dingtalk-auth-proxy"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "DAP_SESSION__SECRET",
            "demo-pages-session-secret-0123456789abcdef",
        )
        .env("DAP_UPSTREAM", format!("http://{upstream}"))
        .env("DAP_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut jsapi_url = String::new();
    for line in lines
        .iter()
        .filter(|l| l.starts_with("export DAP_DINGTALK__"))
    {
        let (key, value) = line["export ".len()..].split_once('=').expect("KEY=value");
        if key == "DAP_DINGTALK__JSAPI_URL" {
            jsapi_url = value.to_string();
        }
        cmd.env(key, value);
    }
    let _proxy = spawn_guarded(&mut cmd).expect("proxy starts");
    assert!(
        common::wait_for_port(port, Duration::from_secs(15)).await,
        "proxy did not listen"
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let r = http
        .get(format!("{base}/_auth/login?rd={}", urlencode("/hello")))
        .header("user-agent", DINGTALK_UA)
        .header("accept", "text/html")
        .send()
        .await
        .expect("login page");
    assert_eq!(r.status(), 200);
    let cookie = state_cookie(r.headers()).expect("state cookie");
    let page = r.text().await.expect("page");
    let state = common::state_from_page(&page);
    assert!(
        page.contains(&format!("<script src=\"{jsapi_url}\">")),
        "login page does not load the fake's JSAPI: {page}"
    );
    // What the page's script gets from `dd.requestAuthCode` in the DingTalk client.
    let js = http
        .get(&jsapi_url)
        .header("user-agent", DINGTALK_UA)
        .send()
        .await
        .expect("JSAPI")
        .text()
        .await
        .expect("script");
    let code = js
        .split("var CODE = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the fake JSAPI carries a code")
        .to_string();
    let r = http
        .get(format!(
            "{base}/_auth/callback?code={}&state={}",
            urlencode(&code),
            urlencode(&state)
        ))
        .header("cookie", &cookie)
        .header("user-agent", DINGTALK_UA)
        .send()
        .await
        .expect("callback");
    assert_eq!(r.status(), 302, "{:?}", r.text().await);
    assert_eq!(r.headers()["location"], "/hello");
    let session = set_cookie(r.headers(), "dap_session").expect("session");
    let echo: serde_json::Value = http
        .get(format!("{base}/hello"))
        .header("cookie", &session)
        .header("accept", "application/json")
        .send()
        .await
        .expect("app")
        .json()
        .await
        .expect("echo JSON");
    assert_eq!(common::seen(&echo, "x-user-id"), ["zhangsan"]);
    assert_eq!(common::seen(&echo, "x-user-mobile"), ["13800000001"]);
}

/// Every header name on the demo app page (any `th` in a table), with what would make it
/// unreadable: wrapped onto a second line (a mid-word break) or cut off by its cell.
const NAME_PROBLEMS: &str = "return [...document.querySelectorAll('table th')].map(th=>{\
const r=document.createRange(); r.selectNodeContents(th);\
const lines=new Set([...r.getClientRects()].map(x=>Math.round(x.top))).size;\
return [th.textContent, lines, th.scrollWidth>th.clientWidth];});";

/// Waits (bounded) until the page's URL starts with `prefix` and has path `path`.
async fn wait_for_page(b: &Browser, prefix: &str, path: &str) -> Result<url::Url, Error> {
    b.wait_url(&format!("{prefix}{path}"), |u| {
        u.as_str().starts_with(prefix) && u.path() == path
    })
    .await
}

/// The demo in Chromium: the fake's index page shows its app secret and JSAPI line and fits a
/// 375 px phone; after logging in as zhangsan, the demo app page at 375×812 shows every header
/// name on one line and whole (the old page broke `accept-encoding` into `accept-encod`/`ing`),
/// and at 1280×800 its sign-out link is inside the viewport without scrolling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_pages_in_chromium() {
    let demo = dingtalk_auth_proxy::demo::start("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("demo starts");
    let b = Browser::start_sized(None, (1280, 800)).await;
    let client = &b.client;
    let proxy = format!("http://{}", demo.proxy.addr);
    let fake = demo.dingtalk.base_url();
    let result: Result<(), Error> = async {
        client.set_window_size(1280, 800).await?;
        client.goto(&format!("{fake}/")).await?;
        let text = client.find(fantoccini::Locator::Css("main")).await?.text().await?;
        for needed in [
            demo.dingtalk.app_secret(),
            format!("DAP_DINGTALK__JSAPI_URL={}", demo.dingtalk.jsapi_url()),
        ] {
            ensure!(text.contains(&needed), "fake index page lacks {needed}");
        }
        screenshot(client, "demo-pages-fake-index-1280").await;
        client.set_window_size(375, 812).await?;
        let width = client
            .execute("return document.documentElement.scrollWidth<=window.innerWidth;", vec![])
            .await?;
        ensure!(width == serde_json::json!(true), "fake index scrolls sideways at 375 px");
        screenshot(client, "demo-pages-fake-index-375").await;

        client.set_window_size(1280, 800).await?;
        client.goto(&format!("{proxy}/")).await?;
        wait_for_page(&b, &fake, "/oauth2/auth").await?;
        b.click("#approve-zhangsan").await?;
        wait_for_page(&b, &proxy, "/").await?;
        let user = b.text("#user").await?;
        ensure!(user == "zhangsan", "app shows user {user:?}");

        let logout = client
            .execute(
                "const r=document.getElementById('logout').getBoundingClientRect();\
                 return [r.top,r.bottom,r.right,window.innerHeight,window.innerWidth,window.scrollY];",
                vec![],
            )
            .await?;
        let n = |i: usize| logout[i].as_f64().unwrap_or(f64::NAN);
        ensure!(
            n(5) == 0.0 && n(0) >= 0.0 && n(1) <= n(3) && n(2) <= n(4),
            "sign-out not visible without scrolling at 1280x800: [top,bottom,right,innerHeight,innerWidth,scrollY] = {logout}"
        );
        screenshot(client, "demo-pages-app-1280").await;

        client.set_window_size(375, 812).await?;
        let names = client.execute(NAME_PROBLEMS, vec![]).await?;
        let names = names.as_array().cloned().unwrap_or_default();
        // Not vacuous: the page must show the request's headers, identity ones included.
        ensure!(names.len() >= 5, "too few header names found: {names:?}");
        ensure!(
            names.iter().any(|n| n[0] == "x-user-id"),
            "no x-user-id name: {names:?}"
        );
        let bad: Vec<_> = names
            .iter()
            .filter(|n| n[1] != serde_json::json!(1) || n[2] != serde_json::json!(false))
            .collect();
        ensure!(
            bad.is_empty(),
            "header names wrapped or cut at 375 px ([name, lines, cut]): {bad:?}"
        );
        let width = client
            .execute("return document.documentElement.scrollWidth<=window.innerWidth;", vec![])
            .await?;
        ensure!(width == serde_json::json!(true), "demo app page scrolls sideways at 375 px");
        screenshot(client, "demo-pages-app-375").await;
        Ok(())
    }
    .await;
    b.finish("demo-pages-failure", result).await;
    demo.proxy.shutdown().await;
}
