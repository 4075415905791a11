//! SIGHUP to the real binary: the config file is read again; a valid one takes effect for new
//! requests while a slow request and an open WebSocket carry on; a broken one is refused with
//! a log line naming the key, and the proxy keeps serving the config it had.

mod common;

use std::time::{Duration, Instant};

use common::binary;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn hup(p: &binary::ProxyProcess) {
    // SAFETY: kill(2) sends SIGHUP to our own child, which is alive (guarded, unreaped).
    let rc = unsafe { libc::kill(p.child.id() as i32, libc::SIGHUP) };
    assert_eq!(rc, 0);
}

/// Sends `text` on the WebSocket and returns the echo (bounded: 10 s).
async fn ws_echo<S>(ws: &mut S, text: &str) -> String
where
    S: futures_util::Sink<Message>
        + futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
    S::Error: std::fmt::Debug,
{
    ws.send(Message::text(text)).await.expect("sent");
    let back = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("not an error");
    back.into_text().expect("text").as_str().to_string()
}

fn oa_only(echo: std::net::SocketAddr) -> String {
    format!(
        r#"
[[routes]]
host = "oa.corp.test"
upstream = "http://{echo}"
[routes.access]
skip_auth = ["^/slow$", "^/ws$"]
"#
    )
}

/// Adds the wiki, and (in vain) a new session lifetime.
fn oa_and_wiki(echo: std::net::SocketAddr) -> String {
    format!(
        r#"{}
[[routes]]
host = "wiki.corp.test"
upstream = "http://{echo}"
[routes.headers]
user_id = "Remote-User"
[routes.access]
skip_auth = ["^/"]

[session]
ttl = "1h"
"#,
        oa_only(echo)
    )
}

#[tokio::test]
async fn sighup_reloads_routes_without_dropping_requests() {
    let fake = dingtalk_auth_proxy::fake::FakeDingTalk::new()
        .start()
        .await
        .expect("fake");
    let echo = dingtalk_auth_proxy::demo::start_echo().await.expect("echo");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(&file, oa_only(echo)).unwrap();
    let p = binary::start_with_file(&fake, &file, &[]);
    let addr: std::net::SocketAddr = p.base.trim_start_matches("http://").parse().unwrap();
    let http = reqwest::Client::builder()
        .resolve("oa.corp.test", addr)
        .resolve("wiki.corp.test", addr)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let port = addr.port();
    let wiki = format!("http://wiki.corp.test:{port}/page");
    assert_eq!(http.get(&wiki).send().await.unwrap().status(), 404);

    // In flight across the reload: a slow request (3 s at the echo) and a WebSocket.
    let slow = tokio::spawn({
        let http = http.clone();
        let url = format!("http://oa.corp.test:{port}/slow");
        async move { http.get(url).send().await }
    });
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("host", format!("oa.corp.test:{port}").parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    assert_eq!(resp.status(), 101);

    std::fs::write(&file, oa_and_wiki(echo)).unwrap();
    hup(&p);
    let lines = p.lines_until("config reloaded");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("session changed, but only a restart applies it")),
        "{lines:?}"
    );
    let resp = http.get(&wiki).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the new route is live");

    let started = Instant::now();
    let slow = slow.await.unwrap().expect("the slow request completes");
    assert_eq!(slow.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(ws_echo(&mut ws, "still here").await, "still here");

    // A broken file: refused, the key named, the running routes keep serving.
    std::fs::write(
        &file,
        oa_and_wiki(echo).replace("upstream = \"http://", "upstream = \"ftp://"),
    )
    .unwrap();
    hup(&p);
    let lines = p.lines_until("reload refused");
    let refused = lines.last().unwrap();
    assert!(refused.contains("routes[0].upstream"), "{refused}");
    assert_eq!(http.get(&wiki).send().await.unwrap().status(), 200);
    assert_eq!(
        ws_echo(&mut ws, "after the refusal").await,
        "after the refusal"
    );
    ws.close(None).await.ok();
}
