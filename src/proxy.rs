//! Forwarding to the upstream app (over the per-thread connections of [`pool`](crate::pool)),
//! streaming bodies both ways
//! (optionally capped), hop-by-hop headers removed, `X-Forwarded-*` set, the session cookie
//! withheld, WebSocket upgrades spliced through — and no other upgrade: `Upgrade: h2c` would
//! hand the client a raw HTTP/2 connection to the app, past every check of ours.
//!
//! Nothing here calls DingTalk or derives keys: this is the hot path, measured against nginx.

use std::sync::Arc;
use std::time::Duration;

use http::header::{
    HeaderName, CONNECTION, COOKIE, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::pool::Pool;
use crate::response::{self, Body};
use crate::session::{cookie_pair, cookie_pieces};

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The upstream refused the connection or broke it.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// The upstream did not answer within `upstream_timeout`.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be turned into an upstream request.
    #[error("bad request for upstream: {0}")]
    BadRequest(String),
    /// The request body is larger than `limits.max_body_bytes`.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The upstream switched protocols when we had not asked it to (or to another protocol).
    #[error("upstream switched protocols unasked")]
    UnexpectedUpgrade,
}

/// The upstream app and the connections to it. Built once at start-up.
pub struct Upstream {
    /// The connections, per thread: a request is sent on a connection whose task runs on the
    /// thread that serves the request, as an nginx worker uses its own upstream connections.
    pool: Arc<Pool>,
    /// `Host` for a request that came without one.
    authority: HeaderValue,
    /// Path prefix of the upstream URL (without a trailing `/`), usually empty.
    base_path: String,
    timeout: Duration,
    forwarded_proto: HeaderValue,
    cookie_name: String,
    /// `limits.max_body_bytes`; 0 = unlimited.
    max_body: u64,
}

pub use crate::pool::UpstreamBody;

/// Per-request facts the forwarder needs besides the request itself.
pub struct Forward<'a> {
    /// The `X-Forwarded-For` value to send (the caller decides what to trust).
    pub forwarded_for: HeaderValue,
    /// Sets the identity headers on the outgoing request (after hop-by-hop stripping).
    pub identity: Option<&'a (dyn Fn(&mut HeaderMap) + Sync)>,
}

impl ProxyError {
    /// The status the client gets for this failure.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Unreachable(_) | ProxyError::UnexpectedUpgrade => StatusCode::BAD_GATEWAY,
        }
    }
}

impl Upstream {
    /// A client for `upstream` (an `http://` URL, checked by config).
    pub fn new(
        upstream: &url::Url,
        timeout: Duration,
        public_https: bool,
        cookie_name: &str,
        max_body: u64,
    ) -> Result<Upstream, ProxyError> {
        let authority: Authority = upstream[url::Position::BeforeHost..url::Position::AfterPort]
            .parse()
            .map_err(|e| ProxyError::BadRequest(format!("upstream address: {e}")))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| ProxyError::BadRequest(format!("upstream address: {e}")))?;
        let port = authority.port_u16().unwrap_or(80);
        Ok(Upstream {
            pool: Pool::new(format!("{}:{port}", authority.host()), timeout),
            authority: host,
            base_path: upstream.path().trim_end_matches('/').to_string(),
            timeout,
            forwarded_proto: HeaderValue::from_static(if public_https { "https" } else { "http" }),
            cookie_name: cookie_name.to_string(),
            max_body,
        })
    }

    /// Forwards `req` and returns the upstream's answer, or why there is none (logged here;
    /// the caller shapes the answer for a browser or an API client).
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        fwd: Forward<'_>,
    ) -> Result<Response<Body>, ProxyError> {
        let result = self.try_forward(req, fwd).await;
        match &result {
            Ok(_) => {}
            Err(ProxyError::Timeout(d)) => {
                tracing::warn!(timeout = %humantime::format_duration(*d), "upstream timed out")
            }
            Err(ProxyError::BodyTooLarge(max)) => tracing::info!(max, "request body too large"),
            Err(ProxyError::BadRequest(e)) => tracing::info!(error = %e, "request not forwardable"),
            Err(e) => tracing::warn!(error = %e, "upstream request failed"),
        }
        result
    }

    async fn try_forward(
        &self,
        mut req: Request<Incoming>,
        fwd: Forward<'_>,
    ) -> Result<Response<Body>, ProxyError> {
        let upgrade = websocket_upgrade(req.method(), req.version(), req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        if self.max_body > 0 && content_length(req.headers()).is_some_and(|n| n > self.max_body) {
            return Err(ProxyError::BodyTooLarge(self.max_body));
        }

        // HTTP/2 clients send the host as the URI's authority, not as a Host header.
        let original_host = req.headers().get(HOST).cloned().or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        *req.uri_mut() = self.upstream_uri(req.uri())?;
        {
            let headers = req.headers_mut();
            strip_hop_by_hop(headers);
            // Only meaningful with `Upgrade: h2c`, which never passes.
            headers.remove("http2-settings");
            strip_cookie(headers, &self.cookie_name);
            if let Some(set) = fwd.identity {
                set(headers);
            }
            headers.insert("x-forwarded-for", fwd.forwarded_for);
            headers.insert("x-forwarded-proto", self.forwarded_proto.clone());
            match original_host {
                Some(host) => {
                    headers.insert("x-forwarded-host", host.clone());
                    // The app sees the Host the user used (as with oauth2-proxy's default).
                    headers.insert(HOST, host);
                }
                None => {
                    headers.insert(HOST, self.authority.clone());
                }
            }
            if upgrade {
                headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            }
        }
        // The upstream connection is HTTP/1.1 whatever the client spoke.
        *req.version_mut() = http::Version::HTTP_11;
        let max_body = self.max_body;
        let req = req.map(|body| {
            if max_body > 0 {
                Either::Right(Limited::new(
                    body,
                    usize::try_from(max_body).unwrap_or(usize::MAX),
                ))
            } else {
                Either::Left(body)
            }
        });

        let mut resp = tokio::time::timeout(self.timeout, self.pool.send(req))
            .await
            .map_err(|_| ProxyError::Timeout(self.timeout))?
            .map_err(|e| {
                if caused_by_limit(&e) {
                    ProxyError::BodyTooLarge(max_body)
                } else {
                    ProxyError::Unreachable(error_chain(&e))
                }
            })?;

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // Only a WebSocket switch that we asked for is spliced; anything else would hand
            // the client a raw connection to the app.
            let to_websocket = resp
                .headers()
                .get(UPGRADE)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
            let Some(client_upgrade) = client_upgrade.filter(|_| to_websocket) else {
                return Err(ProxyError::UnexpectedUpgrade);
            };
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
                    (Ok(c), Ok(u)) => (c, u),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::debug!(error = %e, "upgrade failed");
                        return;
                    }
                };
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(error = %e, "upgraded connection ended");
                }
            });
            let (parts, _) = resp.into_parts();
            return Ok(Response::from_parts(parts, response::empty()));
        }
        strip_hop_by_hop(resp.headers_mut());
        Ok(resp.map(|b| b.map_err(Into::into).boxed()))
    }

    /// The request's target as sent upstream: origin-form (`/path?query`) under the upstream
    /// URL's path, whatever form the client used.
    fn upstream_uri(&self, uri: &Uri) -> Result<Uri, ProxyError> {
        let pq = uri.path_and_query();
        if self.base_path.is_empty() {
            if let Some(pq) = pq {
                return Ok(Uri::from(pq.clone()));
            }
        }
        let pq = pq.map(PathAndQuery::as_str).unwrap_or("/");
        PathAndQuery::try_from(format!("{}{}", self.base_path, pq))
            .map(Uri::from)
            .map_err(|e| ProxyError::BadRequest(e.to_string()))
    }
}

/// True when the request is a WebSocket handshake (RFC 6455: `GET`, HTTP/1.1,
/// `Connection: upgrade`, `Upgrade: websocket`) — the one upgrade we pass. Every other
/// `Upgrade` (`h2c` above all) is dropped with the hop-by-hop headers and the request goes
/// upstream as plain HTTP/1.1.
fn websocket_upgrade(method: &Method, version: Version, headers: &HeaderMap) -> bool {
    if method != Method::GET || version != Version::HTTP_11 {
        return false;
    }
    let asks = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let mut upgrades = headers.get_all(UPGRADE).iter();
    let websocket = match (upgrades.next(), upgrades.next()) {
        (Some(v), None) => v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"),
        _ => false,
    };
    asks && websocket
}

/// The request's `Content-Length`, when it has exactly one valid one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(http::header::CONTENT_LENGTH).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// True when the upstream request failed because the body passed `limits.max_body_bytes`.
fn caused_by_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and every header it names, plus
/// `Keep-Alive`, `Proxy-Connection`, `Upgrade`, `TE`, `Trailer`, `Transfer-Encoding`,
/// `Proxy-Authorization` and `Proxy-Authenticate`. An upgrade is re-added by the caller only
/// when the exchange really is one. Runs before identity headers are set, so a client cannot
/// name ours in `Connection` to have them dropped.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One look at each distinct name; nothing allocated unless something goes.
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name))
        .cloned()
        .collect();
    doomed.extend(
        headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok()),
    );
    for name in doomed {
        headers.remove(name);
    }
}

/// The hop-by-hop headers of RFC 9110 §7.6.1 (and the old `Keep-Alive`/`Proxy-Connection`).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        CONNECTION,
        UPGRADE,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        PROXY_AUTHORIZATION,
        PROXY_AUTHENTICATE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Removes our cookies (the session and the login state) from `Cookie`, keeping the app's own
/// byte for byte. `Cookie` is handled as bytes: a raw UTF-8 value of the app's must neither
/// hide our cookie nor make us forward it.
pub fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    let ours = |k: &[u8]| {
        k == name.as_bytes()
            || k.strip_prefix(name.as_bytes())
                .is_some_and(|rest| rest == b"_state" || rest.starts_with(b"_state_"))
    };
    // One pass: the other pieces are collected while looking for ours; the header is rewritten
    // only when one of ours was there.
    let mut kept: Vec<u8> = Vec::new();
    let mut found = false;
    for value in headers.get_all(COOKIE) {
        // Each other piece is kept exactly as sent (trimmed), so the app parses it as before.
        for piece in cookie_pieces(value.as_bytes()) {
            let (k, _) = cookie_pair(piece);
            if ours(k) {
                found = true;
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(piece);
        }
    }
    if !found {
        return;
    }
    headers.remove(COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_bytes(&kept) {
            headers.insert(COOKIE, v);
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream failure is logged with its whole cause chain (the operator needs the
    /// "connection refused" under hyper's "client error").
    #[test]
    fn error_chain_names_every_cause() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let outer = std::io::Error::other(inner);
        let chain = error_chain(&Wrapper(outer));
        assert_eq!(chain, "client error: connection refused");
    }

    #[derive(Debug)]
    struct Wrapper(std::io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error")
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.0.get_ref().map(|e| e as _)
        }
    }

    /// Only a WebSocket handshake counts as an upgrade; h2c and friends do not.
    #[test]
    fn only_websocket_upgrades() {
        let h = |conn: &'static str, up: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CONNECTION, HeaderValue::from_static(conn));
            h.insert(UPGRADE, HeaderValue::from_static(up));
            h
        };
        let get = Method::GET;
        let v11 = Version::HTTP_11;
        assert!(websocket_upgrade(&get, v11, &h("Upgrade", "websocket")));
        assert!(websocket_upgrade(
            &get,
            v11,
            &h("keep-alive, upgrade", "WebSocket")
        ));
        assert!(!websocket_upgrade(
            &get,
            v11,
            &h("Upgrade, HTTP2-Settings", "h2c")
        ));
        assert!(!websocket_upgrade(
            &get,
            v11,
            &h("Upgrade", "h2c, websocket")
        ));
        assert!(!websocket_upgrade(&get, v11, &h("close", "websocket")));
        assert!(!websocket_upgrade(
            &Method::POST,
            v11,
            &h("Upgrade", "websocket")
        ));
        assert!(!websocket_upgrade(
            &get,
            Version::HTTP_10,
            &h("Upgrade", "websocket")
        ));
    }

    /// Headers named in `Connection` go, along with the fixed hop-by-hop list.
    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, X-User-Id, x-foo"),
        );
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-keep"]);
    }

    /// Only our cookies are removed from `Cookie`.
    #[test]
    fn cookie_filter() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; dap_session=xyz"));
        h.append(
            COOKIE,
            HeaderValue::from_static("dap_session_state=s; b=2; dap_session_state_AbC=t"),
        );
        strip_cookie(&mut h, "dap_session");
        assert_eq!(h[COOKIE], "a=1; b=2");
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("dap_session=xyz"));
        strip_cookie(&mut h, "dap_session");
        assert!(!h.contains_key(COOKIE));
        let mut h = HeaderMap::new();
        let raw = "app=张三; dap_session=xyz; b=\u{ff}";
        h.append(COOKIE, HeaderValue::from_bytes(raw.as_bytes()).unwrap());
        strip_cookie(&mut h, "dap_session");
        assert_eq!(h[COOKIE].as_bytes(), "app=张三; b=\u{ff}".as_bytes());
        // Found by fuzzing: a nameless piece holding `=` must stay nameless for the app.
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; dap_session=x; =x: y=1; bare"),
        );
        strip_cookie(&mut h, "dap_session");
        assert_eq!(h[COOKIE], "a=1; =x: y=1; bare");
        // …and a nameless `=dap_session=forged` must not reach the app as `dap_session`.
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("dap_session=x; =dap_session=forged"),
        );
        strip_cookie(&mut h, "dap_session");
        assert_eq!(h[COOKIE], "=dap_session=forged");
    }
}
