//! The shipped `deploy/multi-app/` set-up, end to end: a real nginx started from
//! `deploy/multi-app/nginx.conf` in front of the proxy configured by
//! `deploy/multi-app/proxy.toml`, with three echo apps behind it (the OA, the wiki, Grafana) and
//! the fake DingTalk. The made-up names resolve to nginx in the client (`resolve`), never in
//! /etc/hosts. nginx must be installed (`.ci/run` installs it); a missing nginx fails.
//!
//! What is changed in the shipped files, and nothing else:
//! - nginx.conf: the listen ports (unprivileged, on 127.0.0.1) and the sidecar's address; and
//!   TLS: `rcgen` is not among the dev-dependencies to make a throwaway certificate, so the
//!   `listen 443 ssl …` lines become plain listens and the two certificate lines go. The port standing in for 443
//!   is treated as the default `https` port: the proxy keeps the shipped, portless
//!   `public_url = "https://login.corp.example"`, every URL it writes is `https://name/…`, and
//!   the client sends `https://name/…` to `http://name:PORT/…` ([`Front::at`]). nginx's
//!   `proxy_set_header Host $host` drops the port, so the proxy sees the names as on 443.
//! - proxy.toml: `listen` (port 0), the three upstream addresses (each an echo app; the OA's
//!   and Grafana's with a base path naming the app, so the echo shows which one answered; the
//!   wiki's without, so that the echo's `/ws` WebSocket is reachable), and on top of the file
//!   what the environment would bring: the DingTalk endpoints and credentials of the fake and
//!   the session secret.
#![cfg(feature = "fake")]

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{
    deploy_file, free_port, replace_required, urlencode, wangwu, ChildGuard, BROWSER_UA, SECRET,
};
use dingtalk_auth_proxy::config::Config;
use dingtalk_auth_proxy::fake::{FakeDingTalk, FakeHandle, FakeUser};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The names nginx serves, and two it does not.
const HOSTS: [&str; 6] = [
    "login.corp.example",
    "oa.corp.example",
    "wiki.corp.example",
    "tools.corp.example",
    "other.corp.example",
    "evil.example",
];

/// The department `[routes.access] allow_dept_ids` of the Grafana route names.
const OPS_DEPT: i64 = 4001;

/// In the ops department: allowed on every route. (wangwu, in departments 10 and 20, is not
/// allowed on Grafana.)
fn zhaoliu() -> FakeUser {
    let mut u = FakeUser::new("zhaoliu", "赵六");
    u.mobile = Some("13900000004".into());
    u.email = Some("zhaoliu@corp.example".into());
    u.dept_ids = vec![OPS_DEPT];
    u
}

/// nginx running with the shipped multi-app file (stopped on drop).
struct Front {
    /// The port standing in for 443.
    https_port: u16,
    /// The port standing in for 80.
    http_port: u16,
    /// Resolves every name of [`HOSTS`] to 127.0.0.1, follows no redirect.
    http: reqwest::Client,
    _guard: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Front {
    /// Where the client sends `url` (`https://name/path` or `http://name/path`, no port, as
    /// the proxy and nginx write them): the nginx port standing in for its scheme's port.
    fn at(&self, url: &str) -> String {
        let (port, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (self.https_port, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (self.http_port, rest)
        } else {
            panic!("not an absolute http(s) URL: {url}");
        };
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        assert!(!host.contains(':'), "a URL with a port: {url}");
        format!("http://{host}:{port}{path}")
    }

    /// GET `url` (see [`Front::at`]) with `headers`.
    async fn get(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.get(self.at(url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// As a logged-in user, what the echo app behind `url` received (asserting a 200).
    async fn echo(&self, url: &str, session: &str, extra: &[(&str, &str)]) -> serde_json::Value {
        let mut headers = vec![("cookie", session), ("accept", "application/json")];
        headers.extend_from_slice(extra);
        let resp = self.get(url, &headers).await;
        assert_eq!(resp.status(), 200, "GET {url}");
        resp.json().await.expect("echo JSON")
    }

    /// The in-app login (DingTalk's client, JSAPI code) through nginx, from `login` (the
    /// absolute login URL an app host sent the browser to). Returns the `dap_session=…` pair,
    /// its whole `Set-Cookie` line, and where the callback sent the browser.
    async fn inapp_login(
        &self,
        fake: &FakeHandle,
        userid: &str,
        login: &str,
    ) -> (String, String, String) {
        let origin = self.at("https://login.corp.example");
        let done =
            common::inapp_login_with(&self.http, &self.at(login), &origin, fake, userid).await;
        (done.session, done.set_cookie, done.location)
    }
}

/// nginx from `deploy/multi-app/nginx.conf`, in front of the sidecar at `proxy`.
async fn start_nginx(proxy: SocketAddr) -> Front {
    let (https_port, http_port) = (free_port(), free_port());
    let site = deploy_file("deploy/multi-app/nginx.conf");
    let site = replace_required(&site, "server 127.0.0.1:8080;", &format!("server {proxy};"));
    let site = replace_required(
        &site,
        "listen 80;",
        &format!("listen 127.0.0.1:{http_port};"),
    );
    let site = replace_required(
        &site,
        "listen 80 default_server;",
        &format!("listen 127.0.0.1:{http_port} default_server;"),
    );
    // TLS: plain listens instead (see the module doc), and so no certificate to load.
    let site = replace_required(
        &site,
        "listen 443 ssl default_server;",
        &format!("listen 127.0.0.1:{https_port} default_server;"),
    );
    let site = replace_required(
        &site,
        "listen 443 ssl http2;",
        &format!("listen 127.0.0.1:{https_port};"),
    );
    let site = replace_required(
        &site,
        "ssl_certificate     /etc/ssl/certs/corp.example.pem;",
        "",
    );
    let site = replace_required(
        &site,
        "ssl_certificate_key /etc/ssl/private/corp.example.key;",
        "",
    );
    let (guard, dir) = common::fronts::run_nginx(&site, &[https_port, http_port]).await;
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20));
    for h in HOSTS {
        // The port here is ignored: every URL names its own (see Front::at).
        b = b.resolve(h, SocketAddr::from(([127, 0, 0, 1], https_port)));
    }
    Front {
        https_port,
        http_port,
        http: b.build().expect("client builds"),
        _guard: guard,
        _dir: dir,
    }
}

/// The shipped proxy.toml with the test's addresses, and on top what the environment brings
/// in production (`DAP_DINGTALK__*`, `DAP_SESSION__SECRET`).
fn shipped_config(
    fake: &FakeHandle,
    oa: SocketAddr,
    wiki: SocketAddr,
    grafana: SocketAddr,
) -> Config {
    let file = deploy_file("deploy/multi-app/proxy.toml");
    let file = replace_required(
        &file,
        "listen     = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:0\"",
    );
    let file = replace_required(
        &file,
        "\"http://127.0.0.1:3001\"",
        &format!("\"http://{oa}/oa-app\""),
    );
    let file = replace_required(
        &file,
        "\"http://127.0.0.1:3002\"",
        &format!("\"http://{wiki}\""),
    );
    let file = replace_required(
        &file,
        "\"http://127.0.0.1:3000\"",
        &format!("\"http://{grafana}/grafana-app\""),
    );
    let base = fake.base_url();
    let env = format!(
        "[dingtalk]\napp_key = \"{}\"\napp_secret = \"{}\"\ncorp_id = \"{}\"\n\
api_base = \"{base}\"\nnew_api_base = \"{base}\"\nlogin_base = \"{base}\"\njsapi_url = \"{}\"\n\
[session]\nsecret = \"{SECRET}\"\n",
        fake.app_key(),
        fake.app_secret(),
        fake.corp_id(),
        fake.jsapi_url(),
    );
    let fig = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::string(&file))
        .merge(Toml::string(&env));
    Config::from_figment(fig).unwrap_or_else(|e| panic!("the shipped proxy.toml: {e}"))
}

fn header<'a>(echo: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}

fn has_header(echo: &serde_json::Value, name: &str) -> bool {
    echo["headers"].get(name).is_some()
}

/// Through nginx: an anonymous navigation on the OA goes to the login host; one in-app login
/// there sets a cookie for the whole domain that opens the OA, the wiki and Grafana, each
/// app receiving its own header names and no client-sent identity; Grafana refuses a user
/// outside the ops department; WebSockets pass; plain HTTP goes to https; other names get no
/// answer from nginx.
#[tokio::test]
async fn shipped_multi_app_setup_through_nginx() {
    let fake = FakeDingTalk::new()
        .user(wangwu())
        .user(zhaoliu())
        .start()
        .await
        .expect("fake DingTalk starts");
    let mut echoes = Vec::new();
    for _ in 0..3 {
        echoes.push(dingtalk_auth_proxy::demo::start_echo().await.expect("echo"));
    }
    let config = shipped_config(&fake, echoes[0], echoes[1], echoes[2]);
    let proxy = dingtalk_auth_proxy::start(config)
        .await
        .expect("proxy starts");
    let front = start_nginx(proxy.addr).await;

    // Plain HTTP: to https, same host and path.
    let resp = front.get("http://wiki.corp.example/doc?a=1", &[]).await;
    assert_eq!(resp.status(), 301);
    assert_eq!(
        resp.headers()["location"],
        "https://wiki.corp.example/doc?a=1"
    );

    // An anonymous navigation on the OA: to the login host, carrying where it was.
    let oa_page = "https://oa.corp.example/page?x=1";
    let html = [("accept", "text/html"), ("user-agent", BROWSER_UA)];
    let resp = front.get(oa_page, &html).await;
    assert_eq!(resp.status(), 302);
    let login = resp.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        login,
        format!(
            "https://login.corp.example/_auth/login?rd={}",
            urlencode(oa_page)
        )
    );
    // A desktop browser there goes to DingTalk's QR page with the one redirect URL that is
    // registered in DingTalk's console.
    let resp = front.get(&login, &html).await;
    assert_eq!(resp.status(), 302);
    let oauth = resp.headers()["location"].to_str().unwrap();
    assert!(
        oauth.starts_with(&format!("{}/oauth2/auth?", fake.base_url())),
        "{oauth}"
    );
    assert!(
        oauth.contains(&urlencode("https://login.corp.example/_auth/callback")),
        "{oauth}"
    );

    // The in-app login at the login host, through nginx: back to the OA, with a cookie for
    // the whole domain.
    let (session, line, to) = front.inapp_login(&fake, "zhaoliu", &login).await;
    assert_eq!(to, oa_page);
    let lower = line.to_ascii_lowercase();
    for attr in ["domain=corp.example", "secure", "httponly"] {
        assert!(lower.contains(attr), "{attr} in {line}");
    }
    let exchanges = fake.calls("/topapi/v2/user/getuserinfo");
    assert_eq!(exchanges, 1);

    // The OA: X-User-Id (the mobile is off at the top level), the Host the user used, the
    // client's address as nginx saw it, https as the scheme.
    let oa = front.echo(oa_page, &session, &[]).await;
    assert_eq!(oa["path"], "/oa-app/page?x=1");
    assert_eq!(header(&oa, "x-user-id"), Some("zhaoliu"));
    assert!(!has_header(&oa, "x-user-mobile"), "{oa}");
    assert!(!has_header(&oa, "remote-user"), "{oa}");
    assert!(!has_header(&oa, "x-webauth-user"), "{oa}");
    assert_eq!(header(&oa, "host"), Some("oa.corp.example"));
    assert_eq!(header(&oa, "x-forwarded-proto"), Some("https"));
    assert_eq!(
        header(&oa, "x-forwarded-for"),
        Some("127.0.0.1, 127.0.0.1"),
        "the client (as nginx saw it), then nginx"
    );

    // The wiki, same cookie: Remote-User, and none of the identities the client typed, in
    // any spelling. nginx drops every header with `_` (X_Custom shows it is nginx's doing).
    let wiki = front
        .echo(
            "https://wiki.corp.example/doc",
            &session,
            &[
                ("x-webauth-user", "admin"),
                ("X_WEBAUTH_USER", "admin"),
                ("remote-user", "admin"),
                ("Remote_User", "admin"),
                ("x-user-id", "admin"),
                ("X_Custom", "1"),
            ],
        )
        .await;
    assert_eq!(wiki["path"], "/doc");
    assert_eq!(
        wiki["headers"]["remote-user"],
        serde_json::json!(["zhaoliu"])
    );
    for name in [
        "x-webauth-user",
        "x_webauth_user",
        "remote_user",
        "x-user-id",
        "x_custom",
        "x-webauth-email",
    ] {
        assert!(!has_header(&wiki, name), "{name} reached the wiki: {wiki}");
    }
    assert_eq!(header(&wiki, "host"), Some("wiki.corp.example"));

    // Grafana under /grafana of tools: the prefix stripped, X-WEBAUTH-USER and -EMAIL.
    let grafana = front
        .echo(
            "https://tools.corp.example/grafana/d/1?from=now",
            &session,
            &[("x-webauth-user", "admin")],
        )
        .await;
    assert_eq!(grafana["path"], "/grafana-app/d/1?from=now");
    assert_eq!(
        grafana["headers"]["x-webauth-user"],
        serde_json::json!(["zhaoliu"])
    );
    assert_eq!(
        header(&grafana, "x-webauth-email"),
        Some("zhaoliu@corp.example")
    );
    assert!(!has_header(&grafana, "x-user-id"), "{grafana}");
    assert!(!has_header(&grafana, "remote-user"), "{grafana}");
    assert_eq!(
        fake.calls("/topapi/v2/user/getuserinfo"),
        exchanges,
        "no second trip to DingTalk"
    );
    // Elsewhere on tools no route serves: the proxy says so.
    let resp = front
        .get(
            "https://tools.corp.example/other",
            &[("cookie", &session), ("accept", "text/html")],
        )
        .await;
    assert_eq!(resp.status(), 404);

    // A WebSocket on the wiki, through nginx's upgrade handling.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", front.https_port))
        .await
        .expect("connect to nginx");
    let mut req = format!("ws://wiki.corp.example:{}/ws", front.https_port)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", session.parse().unwrap());
    let (mut ws, resp) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(req, tcp),
    )
    .await
    .expect("upgrade in time")
    .expect("upgrade");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("through nginx")).await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("not an error");
    assert_eq!(back.into_text().unwrap().as_str(), "through nginx");
    ws.close(None).await.ok();

    // wangwu (not in the ops department): the wiki yes, Grafana 403.
    let wiki_page = "https://wiki.corp.example/doc";
    let resp = front.get(wiki_page, &html).await;
    assert_eq!(resp.status(), 302);
    let login = resp.headers()["location"].to_str().unwrap().to_string();
    let (w, _, to) = front.inapp_login(&fake, "wangwu", &login).await;
    assert_eq!(to, wiki_page);
    let wiki = front.echo(wiki_page, &w, &[]).await;
    assert_eq!(header(&wiki, "remote-user"), Some("wangwu"));
    let resp = front
        .get(
            "https://tools.corp.example/grafana/d/1",
            &[("cookie", &w), ("accept", "text/html")],
        )
        .await;
    assert_eq!(resp.status(), 403);

    // Names nginx does not serve get no answer (444), on either port: the proxy never sees them.
    for url in [
        "https://other.corp.example/",
        "https://evil.example/",
        "http://other.corp.example/",
    ] {
        let got = front.http.get(front.at(url)).send().await;
        assert!(got.is_err(), "{url}: {got:?}");
    }

    proxy.shutdown().await;
}

/// `check-config` on the shipped proxy.toml with only the two secrets in the environment: it
/// is valid as shipped, and prints the route table and the one callback URL to register,
/// word for word as the guide next to it shows them; the secret is not printed.
#[tokio::test]
async fn check_config_prints_the_shipped_route_table() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/multi-app/proxy.toml");
    let child = tokio::process::Command::new(common::binary::BIN)
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .env_clear()
        .env("DAP_SESSION__SECRET", SECRET)
        .env("DAP_DINGTALK__APP_SECRET", "from-the-environment")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("check-config in time")
        .expect("check-config runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The route table and callback line exactly as deploy/multi-app/README.md shows them.
    let readme = deploy_file("deploy/multi-app/README.md");
    let shown: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("# routes, in match order"))
        .take_while(|l| !l.trim_start().starts_with("```"))
        .map(str::trim_start)
        .collect();
    assert!(
        shown.last() == Some(&"# config ok"),
        "the README's check-config block: {shown:?}"
    );
    let shown = shown.join("\n");
    assert!(
        stdout.contains(&shown),
        "the README shows:\n{shown}\n\ncheck-config prints:\n{stdout}"
    );
    assert!(
        stdout.contains("register https://login.corp.example/_auth/callback at DingTalk"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("from-the-environment"),
        "the secret is redacted"
    );
}
