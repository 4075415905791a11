#![cfg(feature = "fake")]
//! Network faults over real HTTP on 127.0.0.1: DingTalk answering HTML, truncated JSON,
//! resetting the connection mid-answer or hanging during the in-app login callback, and an
//! upstream app breaking its answer mid-body. What the user sees, and that the proxy goes on
//! serving everyone else.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dingtalk_auth_proxy::fake::{Failure, FakeDingTalk, FakeHandle};
use reqwest::header::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const GETTOKEN: &str = "/gettoken";
const GETUSERINFO: &str = "/topapi/v2/user/getuserinfo";
/// The longest any answer may take in these tests (a bound, not a performance claim).
const BOUND: Duration = Duration::from_secs(10);
/// A hang: far longer than any `dingtalk.timeout` used here.
const HANG: Duration = Duration::from_secs(30);

/// Waits (bounded, polling) until `cond` holds.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let end = Instant::now() + BOUND;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// No session cookie, or only its deletion.
fn assert_no_session(headers: &HeaderMap, what: &str) {
    let session = set_cookie(headers, "dap_session");
    assert!(
        session.as_deref().is_none_or(|c| c == "dap_session="),
        "{what}: a session cookie was set: {session:?}"
    );
}

/// The callback's answer is an error page a person can read (中文 and English), 5xx, with no
/// session, no secrets, no DingTalk URL and no stack trace. Returns the status.
async fn assert_error_page(
    resp: reqwest::Response,
    fake: &FakeHandle,
    code: &str,
    what: &str,
) -> u16 {
    let status = resp.status();
    assert!(status.is_server_error(), "{what}: status {status}");
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/html"),
        "{what}: content-type {content_type:?}"
    );
    assert_no_session(resp.headers(), what);
    let body = resp.text().await.expect("error page body");
    assert!(
        body.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
        "{what}: no Chinese text: {body}"
    );
    assert!(body.contains("DingTalk"), "{what}: no English text: {body}");
    for leak in [
        fake.base_url().as_str(),
        fake.app_secret().as_str(),
        "appsecret",
        "access_token",
        code,
        "panicked",
        "backtrace",
        ".rs:",
    ] {
        assert!(
            !body.contains(leak),
            "{what}: the page shows {leak:?}: {body}"
        );
    }
    status.as_u16()
}

/// After the fault is gone, a fresh login for wangwu works and the app answers through the
/// proxy with the new session.
async fn assert_still_serving(h: &Harness) {
    h.fake.clear_failures();
    let (session, location) = tokio::time::timeout(BOUND, h.login_inapp("wangwu", "/after"))
        .await
        .expect("a fresh login finishes in time");
    assert_eq!(location, "/after");
    let echo = tokio::time::timeout(BOUND, h.echo(&session, "/after", &[]))
        .await
        .expect("the app answers in time");
    assert_eq!(seen(&echo, "x-user-id"), vec!["wangwu"]);
}

/// One in-app login whose DingTalk call on `path` fails like `failure` (proxy configured with
/// `dingtalk.timeout`): an error page within [`BOUND`], then normal service. Returns the
/// status the user got.
async fn login_fault(path: &str, failure: Failure, timeout: Duration) -> u16 {
    let what = format!("{failure:?} on {path}");
    let h = start_with(|config| config.dingtalk.timeout = timeout).await;
    let (state_cookie, state) = h.start_inapp_login("/app").await;
    let code = h.fake.mint_code("wangwu").expect("wangwu is in the fake");
    h.fake.fail(path, failure, Some(1));
    let started = Instant::now();
    let resp = tokio::time::timeout(BOUND, h.callback(&state_cookie, &code, &state))
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {BOUND:?}"));
    let took = started.elapsed();
    assert!(
        !h.fake.failure_armed(path),
        "{what}: the login never reached the fault"
    );
    let status = assert_error_page(resp, &h.fake, &code, &what).await;
    assert!(took < BOUND, "{what}: took {took:?}");
    assert_still_serving(&h).await;
    status
}

/// DingTalk answering 200 with an HTML page (captive portal) instead of JSON, on gettoken or
/// on getuserinfo: the user gets an error page and no session; the next login works.
#[tokio::test]
async fn html_instead_of_json() {
    for path in [GETTOKEN, GETUSERINFO] {
        login_fault(path, Failure::Html, Duration::from_secs(5)).await;
    }
}

/// DingTalk's JSON cut off half-way (short of its Content-Length, then closed): error page,
/// no session; the next login works.
#[tokio::test]
async fn truncated_json() {
    for path in [GETTOKEN, GETUSERINFO] {
        login_fault(path, Failure::Truncated, Duration::from_secs(5)).await;
    }
}

/// DingTalk's connection reset (RST) after the head and half the body: error page, no
/// session; the next login works.
#[tokio::test]
async fn connection_reset_mid_answer() {
    for path in [GETTOKEN, GETUSERINFO] {
        login_fault(path, Failure::Reset, Duration::from_secs(5)).await;
    }
}

/// DingTalk accepting the request and answering nothing for 30 s, with `dingtalk.timeout`
/// 1 s: a 504 error page well within 10 s, no session; the next login works.
#[tokio::test]
async fn hang_is_cut_off_by_the_dingtalk_timeout() {
    for path in [GETTOKEN, GETUSERINFO] {
        let status = login_fault(path, Failure::Slow(HANG), Duration::from_secs(1)).await;
        assert_eq!(status, 504, "hang on {path}");
    }
}

/// While one browser's login hangs at DingTalk (getuserinfo answers nothing), another
/// browser's login completes and reaches the app; the hanging one then gets its error page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hanging_login_does_not_block_another() {
    let h = Arc::new(start_with(|config| config.dingtalk.timeout = Duration::from_secs(3)).await);
    let (state_cookie, state) = h.start_inapp_login("/slow").await;
    let code = h.fake.mint_code("wangwu").expect("wangwu is in the fake");
    h.fake.fail(GETUSERINFO, Failure::Slow(HANG), Some(1));
    let hanging = tokio::spawn({
        let h = h.clone();
        let code = code.clone();
        async move {
            let started = Instant::now();
            let resp = h.callback(&state_cookie, &code, &state).await;
            (resp, started.elapsed())
        }
    });
    wait_until("the first login hangs at getuserinfo", || {
        !h.fake.failure_armed(GETUSERINFO)
    })
    .await;

    let (session, location) = tokio::time::timeout(BOUND, h.login_inapp("wangwu", "/fast"))
        .await
        .expect("the second login finishes in time");
    assert_eq!(location, "/fast");
    let echo = h.echo(&session, "/fast", &[]).await;
    assert_eq!(seen(&echo, "x-user-id"), vec!["wangwu"]);
    assert!(
        !hanging.is_finished(),
        "the second login had to wait for the hanging one"
    );

    let (resp, took) = tokio::time::timeout(BOUND, hanging)
        .await
        .expect("the hanging login is answered in time")
        .expect("task");
    assert!(took < BOUND, "took {took:?}");
    let status = assert_error_page(resp, &h.fake, &code, "hanging login").await;
    assert_eq!(status, 504);
}

/// How a raw exchange ended.
#[derive(Debug, PartialEq)]
enum End {
    /// The peer closed (FIN).
    Eof,
    /// Reading failed.
    Error(std::io::ErrorKind),
}

/// Sends `request` on a fresh connection and reads until the peer closes or fails.
async fn raw_exchange(addr: SocketAddr, request: &str) -> (Vec<u8>, End) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("send request");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(BOUND, s.read(&mut buf))
            .await
            .expect("the peer answers or closes in time")
        {
            Ok(0) => return (got, End::Eof),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, End::Error(e.kind())),
        }
    }
}

/// Splits a raw answer into its head (lower-cased) and body.
fn split_answer(raw: &[u8]) -> (String, Vec<u8>) {
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the answer has a complete head");
    (
        String::from_utf8_lossy(&raw[..at]).to_lowercase(),
        raw[at + 4..].to_vec(),
    )
}

/// The content-length in a lower-cased head.
fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a content-length")
}

/// The fake's broken answers are broken on the wire as described: Html is a complete 200
/// text/html page; Truncated sends half its Content-Length then a FIN; Reset sends the head
/// and half the body, then a RST.
#[tokio::test]
async fn fake_breaks_answers_on_the_wire() {
    let fake = FakeDingTalk::new().start().await.expect("fake starts");
    let request = format!(
        "GET /gettoken?appkey={}&appsecret={} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\r\n",
        fake.app_key(),
        fake.app_secret()
    );

    fake.fail(GETTOKEN, Failure::Html, Some(1));
    let (raw, end) = raw_exchange(fake.addr(), &request).await;
    assert_eq!(end, End::Eof);
    let (head, body) = split_answer(&raw);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert_eq!(body.len(), content_length(&head));
    assert!(body.starts_with(b"<!DOCTYPE html>"));

    let (raw, end) = raw_exchange(fake.addr(), &request).await;
    let (head, whole) = split_answer(&raw);
    assert_eq!(end, End::Eof);
    assert_eq!(
        whole.len(),
        content_length(&head),
        "a normal answer is whole"
    );
    serde_json::from_slice::<serde_json::Value>(&whole).expect("a normal answer is JSON");

    for (failure, expected_end) in [
        (Failure::Truncated, End::Eof),
        (
            Failure::Reset,
            End::Error(std::io::ErrorKind::ConnectionReset),
        ),
    ] {
        fake.fail(GETTOKEN, failure.clone(), Some(1));
        let (raw, end) = raw_exchange(fake.addr(), &request).await;
        assert_eq!(end, expected_end, "{failure:?}");
        let (head, body) = split_answer(&raw);
        assert!(head.starts_with("http/1.1 200"), "{failure:?}: {head}");
        assert!(head.contains("application/json"), "{failure:?}: {head}");
        let length = content_length(&head);
        assert_eq!(body.len(), length.div_ceil(2), "{failure:?}: half the body");
        assert!(
            serde_json::from_slice::<serde_json::Value>(&body).is_err(),
            "{failure:?}: the half body must not parse"
        );
    }
}

/// How the broken upstream frames its answer.
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// `Content-Length: 100000`, then 1000 bytes.
    Length,
    /// Chunked: one 1000-byte chunk, never the last (`0`) chunk.
    Chunked,
}

/// An upstream that reads the request head, starts a 200 answer framed as `framing`, then
/// drops the socket (with a RST if `rst`).
async fn broken_upstream(framing: Framing, rst: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the broken upstream");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(BOUND, s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let mut out = Vec::new();
                match framing {
                    Framing::Length => {
                        out.extend_from_slice(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
Content-Length: 100000\r\n\r\n",
                        );
                        out.extend_from_slice(&[b'x'; 1000]);
                    }
                    Framing::Chunked => {
                        out.extend_from_slice(
                            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
Transfer-Encoding: chunked\r\n\r\n3e8\r\n",
                        );
                        out.extend_from_slice(&[b'x'; 1000]);
                        out.extend_from_slice(b"\r\n");
                    }
                }
                let _ = s.write_all(&out).await;
                let _ = s.flush().await;
                if rst {
                    let _ = s.set_zero_linger();
                }
                drop(s);
            });
        }
    });
    addr
}

/// What the browser got for a proxied GET (the fields are read through `Debug`, in messages).
#[derive(Debug)]
#[allow(dead_code)]
enum Outcome {
    /// No response head at all.
    SendFailed(String),
    /// A head, then the body failed.
    BodyFailed {
        status: u16,
        content_length: Option<u64>,
        error: String,
    },
    /// A head and a body that read as complete.
    Complete {
        status: u16,
        content_length: Option<u64>,
        len: usize,
    },
}

/// Logs in through a proxy in front of a broken upstream and GETs a file through it.
async fn get_through_broken_upstream(framing: Framing, rst: bool) -> Outcome {
    let addr = broken_upstream(framing, rst).await;
    let upstream = url::Url::parse(&format!("http://{addr}")).expect("upstream URL");
    let h = start_with(|config| config.upstream = Some(upstream)).await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    let outcome = tokio::time::timeout(BOUND, async {
        let resp = match client()
            .get(format!("{}/download.bin", h.base))
            .header("cookie", &session)
            .send()
            .await
        {
            Ok(resp) => resp,
            Err(e) => return Outcome::SendFailed(format!("{e:?}")),
        };
        let status = resp.status().as_u16();
        let content_length = resp.content_length();
        match resp.bytes().await {
            Ok(body) => Outcome::Complete {
                status,
                content_length,
                len: body.len(),
            },
            Err(e) => Outcome::BodyFailed {
                status,
                content_length,
                error: format!("{e:?}"),
            },
        }
    })
    .await
    .expect("the proxied GET ends in time");
    // The proxy itself is still there for this user.
    let resp = h.get("/_auth/userinfo", &[("cookie", &session)]).await;
    assert_eq!(
        resp.status(),
        200,
        "the proxy still serves after {framing:?}"
    );
    outcome
}

/// Never a 200 that reads as complete when it is not.
fn assert_not_complete(outcome: &Outcome, what: &str) {
    if let Outcome::Complete { status, .. } = outcome {
        assert!(
            !(200..300).contains(status),
            "{what}: the browser got a short body as a complete success: {outcome:?}"
        );
    }
}

/// An upstream that announces Content-Length 100000, sends 1000 bytes and drops the
/// connection (FIN, then again with a RST): the browser never sees a complete 200.
#[tokio::test]
async fn upstream_cut_mid_body_is_not_a_complete_answer() {
    for rst in [false, true] {
        let outcome = get_through_broken_upstream(Framing::Length, rst).await;
        eprintln!("content-length upstream, rst={rst}: {outcome:?}");
        assert_not_complete(&outcome, &format!("content-length, rst={rst}"));
    }
}

/// A chunked upstream answer cut before its last chunk (FIN, then again with a RST): the
/// browser never sees a complete 200.
#[tokio::test]
async fn upstream_chunked_cut_before_last_chunk_is_not_a_complete_answer() {
    for rst in [false, true] {
        let outcome = get_through_broken_upstream(Framing::Chunked, rst).await;
        eprintln!("chunked upstream, rst={rst}: {outcome:?}");
        assert_not_complete(&outcome, &format!("chunked, rst={rst}"));
    }
}
