//! The request path's plumbing, seen from the app's side: the upstream connections are reused
//! (and only when safe to), and the thread-per-core mode the binary runs serves like the
//! single-listener one.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;

/// An app that counts the connections it accepted and answers by path:
/// `/empty` 204, `/close` with `Connection: close`, `/big` 4 MiB, anything else `ok`.
struct App {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

type AppBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// `ok {X-User-Id}`, or 403 when the proxy sent no user.
async fn answer(req: Request<Incoming>) -> Result<Response<AppBody>, std::convert::Infallible> {
    let user = req
        .headers()
        .get("x-user-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let _ = req.into_body().collect().await;
    let mut resp = Response::new(Full::new(Bytes::from(format!("ok {user}"))).boxed());
    if user.is_empty() {
        *resp.status_mut() = StatusCode::FORBIDDEN;
    }
    Ok(resp)
}

/// The app's answer by path.
async fn answer_path(
    req: Request<Incoming>,
) -> Result<Response<AppBody>, std::convert::Infallible> {
    match req.uri().path() {
        "/empty" => {
            let mut r = Response::new(Full::new(Bytes::new()).boxed());
            *r.status_mut() = StatusCode::NO_CONTENT;
            Ok(r)
        }
        "/close" => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"bye")).boxed());
            r.headers_mut()
                .insert(http::header::CONNECTION, "close".parse().expect("value"));
            Ok(r)
        }
        "/big" => {
            let chunks = (0..64).map(|_| {
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'x'; 65536])))
            });
            Ok(Response::new(
                StreamBody::new(futures_util::stream::iter(chunks)).boxed(),
            ))
        }
        _ => answer(req).await,
    }
}

async fn start_app() -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(answer_path);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    App { addr, connections }
}

/// Sequential requests — plain, an empty 204, a HEAD — travel on one upstream connection.
#[tokio::test]
async fn one_upstream_connection_carries_sequential_requests() {
    let app = start_app().await;
    let fake = start_fake().await;
    let h = common::start_against(fake, app.addr, |_| {}).await;
    let (cookie, _) = h.login_inapp("wangwu", "/").await;
    for i in 0..30 {
        let path = match i % 3 {
            0 => "/",
            1 => "/empty",
            _ => "/head",
        };
        let req = if path == "/head" {
            h.http.head(format!("{}/x", h.base))
        } else {
            h.http.get(format!("{}{path}", h.base))
        };
        let resp = req.header("cookie", &cookie).send().await.expect("request");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        let _ = resp.bytes().await;
    }
    assert_eq!(app.connections.load(Ordering::SeqCst), 1);
}

/// A connection the app closes (`Connection: close`), or whose answer the client abandoned
/// half-read, is not used again; the next request gets a new one and its answer.
#[tokio::test]
async fn closed_and_abandoned_connections_are_not_reused() {
    let app = start_app().await;
    let fake = start_fake().await;
    let h = common::start_against(fake, app.addr, |_| {}).await;
    let (cookie, _) = h.login_inapp("wangwu", "/").await;
    let get = |path: &str| {
        h.http
            .get(format!("{}{path}", h.base))
            .header("cookie", &cookie)
            .send()
    };
    for _ in 0..3 {
        let resp = get("/close").await.expect("request");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.text().await.expect("body"), "bye");
        let resp = get("/").await.expect("request");
        assert_eq!(resp.text().await.expect("body"), "ok wangwu");
    }
    // Each `/close` ended its connection: the following request needed a new one.
    assert_eq!(app.connections.load(Ordering::SeqCst), 4);

    // 4 MiB asked for, 64 KiB read, then the client goes away.
    let mut resp = get("/big").await.expect("request");
    let first = resp.chunk().await.expect("chunk");
    assert!(first.is_some());
    drop(resp);
    let before = app.connections.load(Ordering::SeqCst);
    for _ in 0..3 {
        let resp = get("/").await.expect("request");
        assert_eq!(resp.text().await.expect("body"), "ok wangwu");
    }
    let after = app.connections.load(Ordering::SeqCst);
    assert!(
        after <= before + 1,
        "the three requests after the abandoned one share at most one new connection ({before} -> {after})"
    );
}

/// Three listeners on one port, each on its own thread (the binary's mode): every
/// connection is served, with the user's identity, and shutdown drains and returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_per_core_listeners_all_serve() {
    let app = start_app().await;
    let fake = start_fake().await;
    let h = common::start_against(fake.clone(), app.addr, |_| {}).await;
    let (cookie, _) = h.login_inapp("wangwu", "/").await;
    let mut config = h.config.clone();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let running = dingtalk_auth_proxy::start_threads(config, 3)
        .await
        .expect("starts");
    let base = format!("http://{}", running.addr);
    let mut tasks = Vec::new();
    for _ in 0..60 {
        // A new client per request: a new connection, so the kernel spreads them.
        let (base, cookie) = (base.clone(), cookie.clone());
        tasks.push(tokio::spawn(async move {
            let resp = common::client()
                .get(format!("{base}/"))
                .header("cookie", cookie)
                .send()
                .await
                .expect("request");
            (resp.status(), resp.text().await.unwrap_or_default())
        }));
    }
    for t in tasks {
        let (status, body) = t.await.expect("task");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok wangwu");
    }
    tokio::time::timeout(Duration::from_secs(20), running.shutdown())
        .await
        .expect("shutdown drains and returns");
}

/// A second proxy started on the address a thread-per-core proxy listens on is refused, as
/// a plain bind would be: the listeners share the port among themselves, not with strangers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_proxy_on_the_same_port_is_refused() {
    let app = start_app().await;
    let fake = start_fake().await;
    let h = common::start_against(fake, app.addr, |_| {}).await;
    let mut config = h.config.clone();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let first = dingtalk_auth_proxy::start_threads(config.clone(), 2)
        .await
        .expect("starts");
    config.listen = first.addr;
    let second = dingtalk_auth_proxy::start_threads(config, 2).await;
    assert!(
        matches!(second, Err(dingtalk_auth_proxy::RunError::Bind { .. })),
        "a second proxy on {} must not start",
        first.addr
    );
    first.shutdown().await;
}

async fn start_fake() -> dingtalk_auth_proxy::fake::FakeHandle {
    dingtalk_auth_proxy::fake::FakeDingTalk::new()
        .user(common::wangwu())
        .start()
        .await
        .expect("fake DingTalk starts")
}
