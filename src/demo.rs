//! The demo app (feature `fake`): an upstream that shows what it received, and the wiring that
//! starts fake DingTalk + that upstream + the proxy for `cargo run --example demo` and tests.
//!
//! The echo upstream answers every path: an HTML page listing the request's headers for
//! browsers, the same as JSON (`{"method","path","headers":{name:[values]},"body"}`) for
//! anything else; `/ws` is a WebSocket echo and `/slow` answers after 3 s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONNECTION, CONTENT_TYPE, UPGRADE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::fake::{FakeDingTalk, FakeHandle};
use crate::response::{self, Body};

/// Starts the echo upstream on `listener` (the proxy's own accept loop and default limits),
/// serving until the runtime ends.
pub fn spawn_echo(listener: TcpListener) {
    let limits = crate::config::LimitsConfig::default();
    tokio::spawn(async move {
        let handle = |req, _peer| async move {
            match echo(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        };
        crate::conn::serve(listener, &limits, handle, || {}, std::future::pending()).await;
    });
}

/// Binds `127.0.0.1:0` and starts the echo upstream there.
pub async fn start_echo() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    spawn_echo(listener);
    Ok(addr)
}

async fn echo(req: Request<Incoming>) -> Result<Response<Body>, std::convert::Infallible> {
    if req.uri().path() == "/ws" {
        return Ok(websocket_echo(req));
    }
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_else(|_| Bytes::new());
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let wants_html = parts
        .headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html {
        return Ok(echo_page(&parts.method, &path, &headers));
    }
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": path,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    Ok(response::json(StatusCode::OK, &json))
}

/// The demo app's page: a bar with who is signed in and the sign-out link (visible without
/// scrolling), then the request's headers, the identity ones first. Header names never wrap
/// (`nowrap`); values wrap anywhere. Under 600 px each header is a name line over a value line.
const ECHO_STYLE: &str = "*{box-sizing:border-box}body{font-family:-apple-system,BlinkMacSystemFont,\
'PingFang SC','Microsoft YaHei','Segoe UI',sans-serif;background:#f5f6f7;color:#1f2329;margin:0}\
.bar{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:8px 16px;\
background:#fff;box-shadow:0 1px 4px rgba(0,0,0,.08);padding:10px 20px}.app{font-weight:600;\
font-size:17px}.who{display:flex;align-items:center;gap:10px;flex-wrap:wrap;font-size:14px}\
.who .label{color:#646a73}.btn{display:inline-block;padding:6px 14px;border-radius:6px;\
background:#eff0f1;color:#1f2329;text-decoration:none;font-size:14px;white-space:nowrap}\
.btn:hover{background:#dee0e3}main{max-width:960px;margin:16px auto;background:#fff;\
border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08);padding:20px 24px}\
h1{font-size:18px;margin:0 0 8px}p{line-height:1.6;margin:8px 0}.en{color:#646a73;font-size:14px}\
code,th,td{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,'Noto Sans Mono CJK SC',monospace;\
font-size:13px}.req{background:#f5f6f7;border-radius:6px;padding:6px 10px;overflow-wrap:anywhere}\
.scroll{overflow-x:auto;margin-top:12px}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;vertical-align:top;padding:6px 10px;border-top:1px solid #eee}\
th{white-space:nowrap;font-weight:normal;color:#646a73;width:1%}td{overflow-wrap:anywhere;\
word-break:normal}tr.id{background:#e8f0ff}tr.id th,tr.id td{color:#1f2329;font-weight:600}\
.links{font-size:14px;margin-top:16px}a{color:#3370ff}\
@media (max-width:600px){.bar{padding:10px 16px}main{margin:12px 8px;padding:16px 12px}\
table,tbody,tr,th,td{display:block;width:auto}tr{border-top:1px solid #eee;padding:6px 0}\
th,td{border-top:0;padding:2px 8px}}";

fn echo_page(
    method: &http::Method,
    path: &str,
    headers: &BTreeMap<String, Vec<String>>,
) -> Response<Body> {
    use html_escape::encode_text as t;
    let mut rows = String::new();
    // The identity headers first: they are what the demo is about.
    let (ours, rest): (Vec<_>, Vec<_>) =
        headers.iter().partition(|(n, _)| n.starts_with("x-user-"));
    for (name, values) in ours.into_iter().chain(rest) {
        for v in values {
            let class = if name.starts_with("x-user-") {
                " class=\"id\""
            } else {
                ""
            };
            rows.push_str(&format!(
                "<tr{class}><th>{}</th><td id=\"h-{}\">{}</td></tr>",
                t(name),
                html_escape::encode_double_quoted_attribute(name),
                t(v)
            ));
        }
    }
    let user = headers
        .get("x-user-id")
        .and_then(|v| v.first())
        .map(String::as_str)
        .unwrap_or("(none)");
    let html = format!(
        "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>演示应用 · Demo app</title>\
<style>{ECHO_STYLE}</style></head><body>\
<header class=\"bar\"><span class=\"app\">演示应用 · Demo app</span><span class=\"who\">\
<span class=\"label\">你好 / Hello,</span><b id=\"user\">{user}</b>\
<a class=\"btn\" id=\"logout\" href=\"/_auth/logout\">退出登录 / Sign out</a></span></header>\
<main><h1>这个应用收到的请求头 <span class=\"en\">Headers this app received</span></h1>\
<p>这个应用自己没有登录功能；高亮的身份请求头由 dingtalk-auth-proxy 加入。<br>\
<span class=\"en\">This app has no login of its own; the highlighted identity headers were set by \
dingtalk-auth-proxy.</span></p>\
<p class=\"req\"><code id=\"request\">{method} {path}</code></p>\
<div class=\"scroll\"><table id=\"headers\"><tbody>{rows}</tbody></table></div>\
<p class=\"links\">JSON: <a href=\"/_auth/userinfo\">/_auth/userinfo</a></p>\
</main></body></html>",
        user = t(user),
        method = t(method.as_str()),
        path = t(path),
    );
    response::html(StatusCode::OK, html, crate::pages::CSP_STATIC)
}

/// Answers a WebSocket handshake on `/ws` and echoes every message back.
fn websocket_echo(mut req: Request<Incoming>) -> Response<Body> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return response::text(StatusCode::BAD_REQUEST, "not a websocket request\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut resp = response::status(StatusCode::SWITCHING_PROTOCOLS);
    let h = resp.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    h.remove(CONTENT_TYPE);
    resp
}

/// A running demo: fake DingTalk, the echo upstream and the proxy.
pub struct Demo {
    /// The fake DingTalk.
    pub dingtalk: FakeHandle,
    /// The echo upstream.
    pub upstream: SocketAddr,
    /// The proxy.
    pub proxy: crate::Running,
}

/// The config the demo runs the proxy with, pointed at `fake` and `upstream`.
pub fn demo_config(fake: &FakeHandle, upstream: SocketAddr, listen: SocketAddr) -> Config {
    let mut c = Config {
        listen,
        upstream: url::Url::parse(&format!("http://{upstream}")).ok(),
        ..Config::default()
    };
    c.dingtalk.app_key = fake.app_key();
    c.dingtalk.app_secret = crate::config::Secret::new(fake.app_secret());
    c.dingtalk.corp_id = fake.corp_id();
    if let Ok(base) = url::Url::parse(&fake.base_url()) {
        c.dingtalk.api_base = base.clone();
        c.dingtalk.new_api_base = base.clone();
        c.dingtalk.login_base = base;
    }
    if let Ok(js) = url::Url::parse(&fake.jsapi_url()) {
        c.dingtalk.jsapi_url = js;
    }
    c.session.secret = crate::config::Secret::new(random_secret());
    c.access.skip_auth = vec!["^/public/".into()];
    c
}

fn random_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Starts everything; the proxy listens on `listen` (port 0 for any).
pub async fn start(listen: SocketAddr) -> Result<Demo, Box<dyn std::error::Error + Send + Sync>> {
    let dingtalk = FakeDingTalk::new().start().await?;
    let upstream = start_echo().await?;
    let mut config = demo_config(&dingtalk, upstream, listen);
    if listen.port() != 0 {
        config.public_url = url::Url::parse(&format!("http://{listen}")).ok();
    }
    let proxy = crate::start(config).await?;
    Ok(Demo {
        dingtalk,
        upstream,
        proxy,
    })
}
