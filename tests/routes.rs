//! Many apps behind one proxy (`[[routes]]`): three upstreams on two hosts and a path prefix
//! of a third host, one login at `auth_host` for all of them, per-route header names and
//! policy, unrouted hosts, `rd` across hosts, `verify` per route, and reloads that add a
//! route or are refused. Made-up host names are resolved to 127.0.0.1 by the client.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{urlencode, wangwu, SECRET};
use dingtalk_auth_proxy::config::{Config, RouteConfig, Secret};
use dingtalk_auth_proxy::fake::{FakeDingTalk, FakeHandle};
use dingtalk_auth_proxy::user::Field;
use dingtalk_auth_proxy::Running;
use url::Url;

const HOSTS: [&str; 6] = [
    "login.corp.test",
    "oa.corp.test",
    "wiki.corp.test",
    "tools.corp.test",
    "other.corp.test",
    "evil.test",
];

struct Multi {
    fake: FakeHandle,
    proxy: Running,
    config: Config,
    port: u16,
    http: reqwest::Client,
}

/// A client that resolves every test host name to the proxy and follows no redirects.
fn client_for(addr: SocketAddr) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20));
    for h in HOSTS {
        b = b.resolve(h, addr);
    }
    b.build().expect("client builds")
}

fn route(host: Option<&str>, prefix: &str, upstream: String) -> RouteConfig {
    RouteConfig {
        host: host.map(str::to_string),
        path_prefix: prefix.to_string(),
        upstream: Url::parse(&upstream).ok(),
        ..RouteConfig::default()
    }
}

/// The three-app config: OA (Grafana-style `X-WEBAUTH-USER`, wangwu only), the wiki
/// (`Remote-User`, no mobile), and Grafana under `/grafana` of tools (zhangsan only,
/// prefix stripped). The OA's and Grafana's upstream URLs have base paths of their own, so
/// the echo shows which one answered.
fn three_apps(fake: &FakeHandle, echoes: [SocketAddr; 3]) -> Config {
    let mut c = dingtalk_auth_proxy::demo::demo_config(
        fake,
        echoes[0],
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    c.upstream = None;
    c.session.secret = Secret::new(SECRET);
    c.auth_host = Some("login.corp.test".into());
    c.session.cookie_domain = ".corp.test".into();
    let mut oa = route(
        Some("oa.corp.test"),
        "/",
        format!("http://{}/oa-app", echoes[0]),
    );
    oa.headers.set(Field::UserId, "X-WEBAUTH-USER");
    oa.access.allow_userids = Some(vec!["wangwu".into()]);
    // No base path here: the echo's `/slow` must be reachable as it is.
    let mut wiki = route(Some("wiki.corp.test"), "/", format!("http://{}", echoes[1]));
    wiki.headers.set(Field::UserId, "Remote-User");
    wiki.headers.set(Field::Mobile, "");
    let mut grafana = route(
        Some("tools.corp.test"),
        "/grafana",
        format!("http://{}/grafana-app", echoes[2]),
    );
    grafana.strip_prefix = true;
    grafana.access.allow_userids = Some(vec!["zhangsan".into()]);
    c.routes = vec![oa, wiki, grafana];
    c
}

async fn start_multi() -> Multi {
    let fake = FakeDingTalk::new()
        .user(wangwu())
        .start()
        .await
        .expect("fake DingTalk starts");
    let mut echoes = Vec::new();
    for _ in 0..3 {
        echoes.push(dingtalk_auth_proxy::demo::start_echo().await.expect("echo"));
    }
    let echoes = [echoes[0], echoes[1], echoes[2]];
    let config = three_apps(&fake, echoes);
    let proxy = dingtalk_auth_proxy::start(config.clone())
        .await
        .expect("proxy starts");
    Multi {
        http: client_for(proxy.addr),
        port: proxy.addr.port(),
        fake,
        proxy,
        config,
    }
}

impl Multi {
    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }

    async fn get(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request")
    }

    /// The in-app login at the login host for `rd`: returns the session cookie pair and the
    /// `Set-Cookie` line that carried it, and where the callback sent the browser.
    async fn login(&self, userid: &str, rd: &str) -> (String, String, String) {
        let login = self.url(
            "login.corp.test",
            &format!("/_auth/login?rd={}", urlencode(rd)),
        );
        let origin = self.url("login.corp.test", "");
        let done = common::inapp_login_with(&self.http, &login, &origin, &self.fake, userid).await;
        (done.session, done.set_cookie, done.location)
    }

    /// What the echo behind `host` + `path` received, as JSON (asserting a 200).
    async fn echo(&self, host: &str, path: &str, session: &str) -> serde_json::Value {
        let resp = self
            .get(
                &self.url(host, path),
                &[("cookie", session), ("accept", "application/json")],
            )
            .await;
        assert_eq!(resp.status(), 200, "GET {host}{path}");
        resp.json().await.expect("echo JSON")
    }
}

fn header<'a>(echo: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}

/// One login at the login host opens every routed host (no second trip to DingTalk); each
/// upstream sees its own header names and no one else's, even when the client sends them;
/// a user allowed on one route gets 403 on another; the prefix is stripped for Grafana.
#[tokio::test]
async fn one_login_for_every_host_with_each_apps_headers_and_policy() {
    let m = start_multi().await;
    // An anonymous navigation on an app host goes to the login host, carrying where it was.
    let resp = m
        .get(
            &m.url("oa.corp.test", "/page?x=1"),
            &[("accept", "text/html")],
        )
        .await;
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let back = m.url("oa.corp.test", "/page?x=1");
    assert_eq!(
        location,
        format!(
            "{}?rd={}",
            m.url("login.corp.test", "/_auth/login"),
            urlencode(&back)
        )
    );
    // An API call gets the absolute login URL in its JSON.
    let resp = m
        .get(
            &m.url("wiki.corp.test", "/api"),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["login_url"]
        .as_str()
        .unwrap()
        .starts_with(&m.url("login.corp.test", "/_auth/login?rd=")));

    let (session, line, to) = m.login("wangwu", &back).await;
    assert_eq!(to, back, "the callback returns to the app's host");
    assert!(
        line.to_ascii_lowercase().contains("domain=corp.test"),
        "{line}"
    );
    let exchanges = m.fake.calls("/topapi/v2/user/getuserinfo");
    assert_eq!(exchanges, 1);

    let oa = m.echo("oa.corp.test", "/page?x=1", &session).await;
    assert_eq!(oa["path"], "/oa-app/page?x=1");
    assert_eq!(header(&oa, "x-webauth-user"), Some("wangwu"));
    assert_eq!(header(&oa, "x-user-id"), None);
    assert_eq!(header(&oa, "x-user-mobile"), Some("13900000002"));

    // The same cookie on the wiki's host, with the OA's trusted header typed by the client.
    let resp = m
        .get(
            &m.url("wiki.corp.test", "/doc"),
            &[
                ("cookie", &session),
                ("accept", "application/json"),
                ("x-webauth-user", "admin"),
                ("X_WEBAUTH_USER", "admin"),
                ("x-user-id", "admin"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let wiki: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(wiki["path"], "/doc");
    assert_eq!(header(&wiki, "remote-user"), Some("wangwu"));
    assert_eq!(header(&wiki, "x-webauth-user"), None, "{wiki}");
    assert_eq!(header(&wiki, "x-user-id"), None);
    assert_eq!(header(&wiki, "x-user-mobile"), None, "mobile is off here");

    // Grafana allows zhangsan only.
    let resp = m
        .get(
            &m.url("tools.corp.test", "/grafana/d/1"),
            &[("cookie", &session), ("accept", "text/html")],
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        m.fake.calls("/topapi/v2/user/getuserinfo"),
        exchanges,
        "no second trip to DingTalk"
    );
    let grafana_url = m.url("tools.corp.test", "/grafana/d/1");
    let (z, _, to) = m.login("zhangsan", &grafana_url).await;
    assert_eq!(to, grafana_url);
    let g = m.echo("tools.corp.test", "/grafana/d/1?from=now", &z).await;
    assert_eq!(g["path"], "/grafana-app/d/1?from=now");
    assert_eq!(header(&g, "x-user-id"), Some("zhangsan"));
    // …and zhangsan is not on the OA's list.
    let resp = m
        .get(
            &m.url("oa.corp.test", "/"),
            &[("cookie", &z), ("accept", "application/json")],
        )
        .await;
    assert_eq!(resp.status(), 403);
    m.proxy.shutdown().await;
}

/// An unrouted host, or a path no route of a host serves, is a 404 that says so.
#[tokio::test]
async fn unrouted_hosts_and_paths_are_404() {
    let m = start_multi().await;
    for (host, path) in [
        ("other.corp.test", "/"),
        ("evil.test", "/x"),
        ("tools.corp.test", "/other"),
    ] {
        let resp = m.get(&m.url(host, path), &[("accept", "text/html")]).await;
        assert_eq!(resp.status(), 404, "{host}{path}");
        let page = resp.text().await.unwrap();
        assert!(
            page.contains("No application is served at this address"),
            "{page}"
        );
        assert!(page.contains(host));
    }
    let resp = m
        .get(
            &m.url("other.corp.test", "/"),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(resp.status(), 404);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("no route serves host other.corp.test"));
    m.proxy.shutdown().await;
}

/// `rd` may name a host that a route serves; any other host (outside the cookie domain, or
/// inside it but unrouted, or another port or scheme) lands on `/` of the login host.
#[tokio::test]
async fn rd_only_to_routed_hosts() {
    let m = start_multi().await;
    let port = m.port;
    let kept = m.url("wiki.corp.test", "/ok?a=1");
    let (_, _, to) = m.login("wangwu", &kept).await;
    assert_eq!(to, kept);
    for bad in [
        format!("http://evil.test:{port}/"),
        format!("http://other.corp.test:{port}/x"),
        format!("http://wiki.corp.test:{}/", port.wrapping_add(1)),
        format!("https://wiki.corp.test:{port}/"),
        format!("http://user@wiki.corp.test:{port}/"),
        "//evil.test/".to_string(),
        format!("http://wiki.corp.test.evil.test:{port}/"),
    ] {
        let (_, _, to) = m.login("wangwu", &bad).await;
        assert_eq!(to, "/", "{bad}");
    }
    // Logout's rd is held to the same rule.
    let resp = m
        .get(
            &m.url(
                "wiki.corp.test",
                &format!("/_auth/logout?rd={}", urlencode("http://evil.test/")),
            ),
            &[],
        )
        .await;
    assert_eq!(resp.headers()["location"], "/");
    // Logout deletes the domain cookie, and a host-only one of the same name from before the
    // cookie domain was set.
    let deletions: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with("dap_session=;"))
        .map(|v| v.to_ascii_lowercase())
        .collect();
    assert_eq!(deletions.len(), 2, "{deletions:?}");
    assert!(deletions.iter().any(|d| d.contains("domain=corp.test")));
    assert!(deletions.iter().any(|d| !d.contains("domain=")));
    // A login opened on an app host moves to the login host, rd made absolute.
    let resp = m
        .get(
            &m.url("wiki.corp.test", "/_auth/login?flow=qr&rd=%2Fp"),
            &[("accept", "text/html")],
        )
        .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        format!(
            "{}?rd={}&flow=qr",
            m.url("login.corp.test", "/_auth/login"),
            urlencode(&m.url("wiki.corp.test", "/p"))
        )
    );
    m.proxy.shutdown().await;
}

/// A front server that sends `Host` without the port (nginx's `$host`) still gets a way back
/// on the login origin's port.
#[tokio::test]
async fn host_without_port_returns_on_the_public_port() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let m = start_multi().await;
    let mut s = tokio::net::TcpStream::connect(m.proxy.addr).await.unwrap();
    s.write_all(
        b"GET /page HTTP/1.1\r\nHost: oa.corp.test\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    let want = format!(
        "location: {}?rd={}",
        m.url("login.corp.test", "/_auth/login"),
        urlencode(&m.url("oa.corp.test", "/page"))
    );
    assert!(
        text.to_ascii_lowercase()
            .contains(&want.to_ascii_lowercase()),
        "{text}"
    );
    m.proxy.shutdown().await;
}

/// Behind nginx `auth_request`: `verify` picks the route by `X-Forwarded-Host` (or `Host`)
/// and `X-Original-URI`, and answers that route's header names and policy.
#[tokio::test]
async fn verify_answers_per_route() {
    let m = start_multi().await;
    let (session, _, _) = m.login("wangwu", "/").await;
    let verify = m.url("login.corp.test", "/_auth/verify");
    let ask = |host: &'static str, uri: &'static str| {
        let session = session.clone();
        let verify = verify.clone();
        let http = m.http.clone();
        async move {
            http.get(&verify)
                .header("cookie", session)
                .header("x-forwarded-host", host)
                .header("x-original-uri", uri)
                .send()
                .await
                .expect("verify")
        }
    };
    let wiki = ask("wiki.corp.test", "/doc").await;
    assert_eq!(wiki.status(), 200);
    assert_eq!(wiki.headers()["remote-user"], "wangwu");
    // Every name of every route is answered, empty where this route sends nothing.
    assert_eq!(wiki.headers()["x-webauth-user"], "");
    let oa = ask("oa.corp.test", "/").await;
    assert_eq!(oa.status(), 200);
    assert_eq!(oa.headers()["x-webauth-user"], "wangwu");
    assert_eq!(ask("tools.corp.test", "/grafana/x").await.status(), 403);
    assert_eq!(ask("other.corp.test", "/").await.status(), 403);
    // Without X-Forwarded-Host, the subrequest's own Host counts.
    let resp = m
        .get(
            &m.url("oa.corp.test", "/_auth/verify"),
            &[("cookie", &session), ("x-original-uri", "/")],
        )
        .await;
    assert_eq!(resp.headers()["x-webauth-user"], "wangwu");
    m.proxy.shutdown().await;
}

/// Path spellings that an app server could read as another route's path are refused.
#[tokio::test]
async fn ambiguous_paths_between_routes_are_refused() {
    let fake = FakeDingTalk::new().start().await.expect("fake");
    let echo = dingtalk_auth_proxy::demo::start_echo().await.expect("echo");
    let mut c = three_apps(&fake, [echo, echo, echo]);
    let mut open = route(Some("tools.corp.test"), "/", format!("http://{echo}/open"));
    open.access.skip_auth = Some(vec!["^/".into()]);
    c.routes.push(open);
    let proxy = dingtalk_auth_proxy::start(c).await.expect("proxy");
    let http = client_for(proxy.addr);
    let port = proxy.addr.port();
    for path in [
        "/x/../grafana/admin",
        "/GRAFANA/admin",
        "/%67rafana/admin",
        "/grafana;x/admin",
    ] {
        // reqwest would tidy the path: raw bytes on the wire.
        let raw = raw_get(proxy.addr, "tools.corp.test", path).await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{path}: {raw}");
    }
    let open = http
        .get(format!("http://tools.corp.test:{port}/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        open.status(),
        200,
        "the open route still serves plain paths"
    );
    proxy.shutdown().await;
}

async fn raw_get(addr: SocketAddr, host: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `App::reload`: a new route is live for new requests while a slow request on another
/// route finishes on the old config; an invalid config changes nothing.
#[tokio::test]
async fn reload_adds_a_route_without_dropping_requests() {
    let m = start_multi().await;
    let (session, _, _) = m.login("wangwu", "/").await;
    let slow = {
        let http = m.http.clone();
        let url = m.url("wiki.corp.test", "/slow");
        let session = session.clone();
        tokio::spawn(async move {
            http.get(url)
                .header("cookie", session)
                .header("accept", "application/json")
                .send()
                .await
        })
    };
    let other = m.url("other.corp.test", "/");
    assert_eq!(m.get(&other, &[]).await.status(), 404);
    let mut next = m.config.clone();
    // The config asked for port 0; the running one has the port it got.
    next.listen = m.proxy.addr;
    next.routes.push(route(
        Some("other.corp.test"),
        "/",
        format!(
            "http://{}/other-app",
            m.config.routes[1].upstream.as_ref().unwrap().authority()
        ),
    ));
    // A broken config first: refused, naming the key; the old table keeps serving.
    let mut broken = next.clone();
    broken.routes[3].path_prefix = "/a/../b".into();
    let err = m.proxy.app.reload(broken).expect_err("refused").to_string();
    assert!(err.contains("routes[3].path_prefix"), "{err}");
    assert_eq!(m.get(&other, &[]).await.status(), 404);
    let ignored = m.proxy.app.reload(next).expect("reloads");
    assert!(ignored.is_empty(), "{ignored:?}");
    let resp = m
        .get(
            &other,
            &[("cookie", &session), ("accept", "application/json")],
        )
        .await;
    assert_ne!(resp.status(), 404, "the new route is live");
    let started = Instant::now();
    let slow = slow.await.unwrap().expect("the slow request completes");
    assert_eq!(slow.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(10));
    // The session still opens (same secret) after the reload.
    let wiki = m.echo("wiki.corp.test", "/again", &session).await;
    assert_eq!(header(&wiki, "remote-user"), Some("wangwu"));
    // Restart-only keys keep their running values, said so.
    let mut moved = m.config.clone();
    moved.listen = m.proxy.addr;
    moved.session.ttl = Duration::from_secs(120);
    let ignored = m.proxy.app.reload(moved).expect("reloads");
    assert!(
        ignored.iter().any(|l| l.starts_with("session changed")),
        "{ignored:?}"
    );
    m.proxy.shutdown().await;
}
