//! Real headless Chromium, driven over WebDriver (chromedriver + fantoccini), through both
//! login flows against the fake DingTalk: the desktop OAuth page with a click, the in-app
//! 免登 with the fake JSAPI and no click, logout, and the in-app failure's QR way out.
//! Chromium and chromedriver must be installed (`.ci/run` installs them); missing ones fail.
//! A failing test leaves a screenshot in `target/browser-screenshots/`.
#![cfg(feature = "fake")]

mod common;

use common::browser::{ensure, screenshot, Browser, Error};
use common::*;

/// One browser test at a time: Chromium is heavy for a 2-core machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// On the demo app's page: who it says is logged in, and the identity headers it received.
async fn assert_app_shows(b: &Browser, userid: &str, mobile: &str) -> Result<(), Error> {
    let user = b.text("#user").await?;
    ensure!(
        user == userid,
        "app shows user {user:?}, expected {userid:?}"
    );
    let id = b.text("#h-x-user-id").await?;
    ensure!(id == userid, "X-User-Id cell is {id:?}");
    let m = b.text("#h-x-user-mobile").await?;
    ensure!(m == mobile, "X-User-Mobile cell is {m:?}");
    Ok(())
}

/// Desktop browser: protected page → the fake DingTalk OAuth page → click approve → back on
/// the original page, which shows the injected headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desktop_oauth_login() {
    let _one = ONE_AT_A_TIME.lock().await;
    let h = start().await;
    let b = Browser::start(None).await;
    let result = async {
        b.client.goto(&format!("{}/app/page?x=1", h.base)).await?;
        let fake = h.fake.base_url();
        b.wait_url("the DingTalk login page", |u| u.as_str().starts_with(&fake))
            .await?;
        let title = b.client.title().await?;
        ensure!(title.contains("钉钉登录"), "title {title:?}");
        b.click("#approve-wangwu").await?;
        let base = h.base.clone();
        let url = b
            .wait_url("the app page", |u| {
                u.as_str().starts_with(&base) && u.path() == "/app/page"
            })
            .await?;
        ensure!(url.query() == Some("x=1"), "query lost: {url}");
        assert_app_shows(&b, "wangwu", "13900000002").await?;
        screenshot(&b.client, "logged-in").await;
        Ok(())
    }
    .await;
    b.finish("desktop_oauth_login", result).await;
}

/// In-app: with a DingTalk User-Agent the login page's JSAPI call logs the user in with no
/// click at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inapp_login_without_a_click() {
    let _one = ONE_AT_A_TIME.lock().await;
    let h = start().await;
    h.fake.set_jsapi_user(Some("wangwu"));
    let b = Browser::start(Some(DINGTALK_UA)).await;
    let result = async {
        b.client.goto(&format!("{}/reports/q3", h.base)).await?;
        let base = h.base.clone();
        b.wait_url("the app page", |u| {
            u.as_str().starts_with(&base) && u.path() == "/reports/q3"
        })
        .await?;
        assert_app_shows(&b, "wangwu", "13900000002").await?;
        ensure!(
            h.fake.calls("/topapi/v2/user/getuserinfo") == 1,
            "expected one code exchange"
        );
        Ok(())
    }
    .await;
    b.finish("inapp_login_without_a_click", result).await;
}

/// Logout, then reloading the protected page shows DingTalk's login page again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_then_login_again() {
    let _one = ONE_AT_A_TIME.lock().await;
    let h = start().await;
    let b = Browser::start(None).await;
    let result = async {
        let page = format!("{}/app/page", h.base);
        b.client.goto(&page).await?;
        b.click("#approve-lisi").await?;
        assert_app_shows(&b, "lisi", "13800000002").await?;
        b.click("#logout").await?;
        let signed_out = b.text("h1").await?;
        ensure!(
            signed_out.contains("退出"),
            "signed-out page says {signed_out:?}"
        );
        b.client.goto(&page).await?;
        let fake = h.fake.base_url();
        b.wait_url("the DingTalk login page again", |u| {
            u.as_str().starts_with(&fake)
        })
        .await?;
        b.click("#approve-zhangsan").await?;
        assert_app_shows(&b, "zhangsan", "13800000001").await?;
        Ok(())
    }
    .await;
    b.finish("logout_then_login_again", result).await;
}

/// In-app failure (the user cancels): the page says what happened in 中文 and English,
/// offers a retry and the QR login; the QR link leads to DingTalk's login page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inapp_failure_offers_qr_login() {
    let _one = ONE_AT_A_TIME.lock().await;
    let h = start().await;
    h.fake.set_jsapi_user(None);
    let b = Browser::start(Some(DINGTALK_UA)).await;
    let result = async {
        b.client.goto(&format!("{}/app/page", h.base)).await?;
        let heading = b.text("#failed h1").await?;
        ensure!(heading.contains("钉钉免登失败"), "heading {heading:?}");
        let detail = b.text("#detail").await?;
        ensure!(detail.contains("cancelled"), "detail {detail:?}");
        let retry = b.text("#retry").await?;
        ensure!(
            retry.contains("重试") && retry.contains("Retry"),
            "retry {retry:?}"
        );
        b.click("#qr").await?;
        let fake = h.fake.base_url();
        b.wait_url("the DingTalk login page", |u| u.as_str().starts_with(&fake))
            .await?;
        b.click("#approve-wangwu").await?;
        assert_app_shows(&b, "wangwu", "13900000002").await?;
        Ok(())
    }
    .await;
    b.finish("inapp_failure_offers_qr_login", result).await;
}

/// `cargo run --example demo` in a desktop browser: the printed URL → the fake DingTalk's
/// login page → approve → the demo app shows who logged in and the headers it received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_in_a_desktop_browser() {
    let _one = ONE_AT_A_TIME.lock().await;
    let demo = start_demo();
    let b = Browser::start(None).await;
    let result = async {
        b.client.goto(&format!("{}/", demo.proxy)).await?;
        let fake = demo.fake.clone();
        b.wait_url("the DingTalk login page", |u| u.as_str().starts_with(&fake))
            .await?;
        b.click("#approve-zhangsan").await?;
        assert_app_shows(&b, "zhangsan", "13800000001").await?;
        Ok(())
    }
    .await;
    b.finish("demo_in_a_desktop_browser", result).await;
}

/// Two tabs opened while logged out (`/a`, then `/b`) each land on DingTalk's page; approving
/// them in either order leaves each tab on its own page, logged in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_log_in_in_either_order() {
    let _one = ONE_AT_A_TIME.lock().await;
    let h = start().await;
    let b = Browser::start(None).await;
    let result = async {
        let fake = h.fake.base_url();
        let base = h.base.clone();
        for newer_first in [false, true] {
            b.client.delete_all_cookies().await?;
            let first = b.client.window().await?;
            b.client.goto(&format!("{base}/a")).await?;
            b.wait_url("DingTalk's page in tab a", |u| {
                u.as_str().starts_with(&fake)
            })
            .await?;
            let second = b.client.new_window(true).await?.handle;
            b.client.switch_to_window(second.clone()).await?;
            b.client.goto(&format!("{base}/b")).await?;
            b.wait_url("DingTalk's page in tab b", |u| {
                u.as_str().starts_with(&fake)
            })
            .await?;
            let tabs = if newer_first {
                [(second.clone(), "/b"), (first.clone(), "/a")]
            } else {
                [(first.clone(), "/a"), (second.clone(), "/b")]
            };
            for (tab, path) in tabs {
                b.client.switch_to_window(tab).await?;
                b.click("#approve-wangwu").await?;
                b.wait_url(path, |u| u.as_str().starts_with(&base) && u.path() == path)
                    .await?;
                assert_app_shows(&b, "wangwu", "13900000002").await?;
            }
            b.client.switch_to_window(second).await?;
            b.client.close_window().await?;
            b.client.switch_to_window(first).await?;
        }
        Ok(())
    }
    .await;
    b.finish("two_tabs_log_in_in_either_order", result).await;
}

/// The app behind the proxy down, then slow: the browser shows our bilingual page (the app,
/// not the login), with a retry button that reloads the same page; it is screenshotted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_down_page_in_a_browser() {
    let _one = ONE_AT_A_TIME.lock().await;
    let closed = free_port();
    let h = start_with(move |c| {
        c.upstream = url::Url::parse(&format!("http://127.0.0.1:{closed}")).ok();
    })
    .await;
    let b = Browser::start(None).await;
    let result = async {
        b.client.goto(&format!("{}/reports?q=1", h.base)).await?;
        b.click("#approve-wangwu").await?;
        let base = h.base.clone();
        b.wait_url("back on the page", |u| {
            u.as_str().starts_with(&base) && u.path() == "/reports"
        })
        .await?;
        let heading = b.text("h1").await?;
        ensure!(heading.contains("应用暂时无法访问"), "heading {heading:?}");
        let body = b.text("main").await?;
        ensure!(
            body.contains("restarting") && body.contains("502"),
            "{body}"
        );
        screenshot(&b.client, "page-app-down").await;
        b.click("a.btn").await?;
        let url = b.client.current_url().await?;
        ensure!(
            url.path() == "/reports" && url.query() == Some("q=1"),
            "retry went to {url}"
        );
        Ok(())
    }
    .await;
    b.finish("app_down_page_in_a_browser", result).await;
}

/// An inactive account: the page says what to do (ask the DingTalk admin) and its "use
/// another account" button leads back to DingTalk's login page, where another user gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_account_page_in_a_browser() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fake = dingtalk_auth_proxy::fake::FakeDingTalk::new()
        .user({
            let mut u = dingtalk_auth_proxy::fake::FakeUser::new("newbie", "新人");
            u.active = false;
            u
        })
        .user(wangwu())
        .start()
        .await
        .expect("fake starts");
    let upstream = dingtalk_auth_proxy::demo::start_echo().await.unwrap();
    let h = start_against(fake, upstream, |_| {}).await;
    let b = Browser::start(None).await;
    let result = async {
        b.client.goto(&format!("{}/reports", h.base)).await?;
        b.click("#approve-newbie").await?;
        let base = h.base.clone();
        b.wait_url("the callback's page", |u| {
            u.as_str().starts_with(&base) && u.path() == "/_auth/callback"
        })
        .await?;
        let heading = b.text("h1").await?;
        ensure!(heading.contains("尚未激活"), "heading {heading:?}");
        let body = b.text("main").await?;
        ensure!(
            body.contains("管理员") && body.contains("administrator"),
            "{body}"
        );
        screenshot(&b.client, "page-inactive").await;
        b.click("a.btn").await?;
        let fake = h.fake.base_url();
        b.wait_url("DingTalk's page", |u| u.as_str().starts_with(&fake))
            .await?;
        b.click("#approve-wangwu").await?;
        let base = h.base.clone();
        b.wait_url("the page", |u| {
            u.as_str().starts_with(&base) && u.path() == "/reports"
        })
        .await?;
        assert_app_shows(&b, "wangwu", "13900000002").await?;
        Ok(())
    }
    .await;
    b.finish("inactive_account_page_in_a_browser", result).await;
}

/// Many apps on subdomains: one login at `auth_host` (the desktop OAuth page, one click)
/// opens the OA, then the wiki on another host and Grafana under a path of a third, with no
/// second trip to DingTalk. Chromium resolves the made-up names with `--host-resolver-rules`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_login_across_subdomains() {
    let _one = ONE_AT_A_TIME.lock().await;
    let h = start_with(|c| {
        let echo = c.upstream.take().expect("the harness's echo");
        c.auth_host = Some("login.corp.test".into());
        c.session.cookie_domain = ".corp.test".into();
        let route = |host: &str, prefix: &str| dingtalk_auth_proxy::config::RouteConfig {
            host: Some(host.into()),
            path_prefix: prefix.into(),
            upstream: Some(echo.clone()),
            strip_prefix: prefix != "/",
            ..Default::default()
        };
        c.routes = vec![
            route("oa.corp.test", "/"),
            route("wiki.corp.test", "/"),
            route("tools.corp.test", "/grafana"),
        ];
    })
    .await;
    let port = h.proxy.addr.port();
    let b = Browser::start_with(
        None,
        (800, 900),
        &["--host-resolver-rules=MAP *.corp.test 127.0.0.1"],
    )
    .await;
    let result = async {
        let oa = format!("http://oa.corp.test:{port}/app/page?x=1");
        b.client.goto(&oa).await?;
        let fake = h.fake.base_url();
        b.wait_url("the DingTalk login page", |u| u.as_str().starts_with(&fake))
            .await?;
        b.click("#approve-wangwu").await?;
        b.wait_url("the OA page", |u| {
            u.host_str() == Some("oa.corp.test") && u.path() == "/app/page"
        })
        .await?;
        assert_app_shows(&b, "wangwu", "13900000002").await?;
        for (url, host, path) in [
            (
                format!("http://wiki.corp.test:{port}/doc"),
                "wiki.corp.test",
                "/doc",
            ),
            (
                format!("http://tools.corp.test:{port}/grafana/d/1"),
                "tools.corp.test",
                "/grafana/d/1",
            ),
        ] {
            b.client.goto(&url).await?;
            b.wait_url("the app page", |u| {
                u.host_str() == Some(host) && u.path() == path
            })
            .await?;
            assert_app_shows(&b, "wangwu", "13900000002").await?;
        }
        let exchanges = h.fake.calls("/v1.0/oauth2/userAccessToken");
        ensure!(exchanges == 1, "{exchanges} code exchanges, expected one");
        Ok(())
    }
    .await;
    b.finish("one_login_across_subdomains", result).await;
}
