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
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::fake::{FakeDingTalk, FakeHandle};
use crate::response::{self, Body};

/// Starts the echo upstream on `listener`, serving until the runtime ends.
pub fn spawn_echo(listener: TcpListener) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service_fn(echo))
                    .await;
            });
        }
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
                t(name),
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
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Demo app</title>\
<style>body{{font-family:sans-serif;margin:24px;color:#1f2329}}table{{border-collapse:collapse}}\
th,td{{border:1px solid #dee0e3;padding:4px 8px;text-align:left;font-size:14px;word-break:break-all}}\
tr.id{{background:#e8f0ff;font-weight:bold}}</style></head><body>\
<h1>演示应用 · Demo app</h1><p>你好 / Hello, <b id=\"user\">{user}</b></p>\
<p>{method} {path}</p><p>这个应用自己没有登录功能；它收到的请求头如下 / This app has no login of its own; \
these are the headers it received:</p><table>{rows}</table>\
<p><a id=\"logout\" href=\"/_auth/logout\">退出登录 / Sign out</a> · <a href=\"/_auth/userinfo\">/_auth/userinfo</a></p>\
</body></html>",
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
