//! Forwarding to the upstream app: a pooled hyper-util client, streaming bodies both ways,
//! hop-by-hop headers removed, `X-Forwarded-*` set, the session cookie withheld, WebSocket
//! (and any other HTTP/1.1) upgrades spliced through.
//!
//! Nothing here calls DingTalk or derives keys: this is the hot path, measured against nginx.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{
    HeaderName, CONNECTION, COOKIE, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::response::{self, Body};

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
}

/// The upstream app and the pooled client that talks to it. Built once at start-up.
pub struct Upstream {
    client: Client<HttpConnector, Incoming>,
    scheme: Scheme,
    authority: Authority,
    /// Path prefix of the upstream URL (without a trailing `/`), usually empty.
    base_path: String,
    timeout: Duration,
    forwarded_proto: HeaderValue,
    cookie_name: String,
}

/// Per-request facts the forwarder needs besides the request itself.
pub struct Forward<'a> {
    /// The TCP peer, appended to `X-Forwarded-For`.
    pub peer: SocketAddr,
    /// Sets the identity headers on the outgoing request (after hop-by-hop stripping).
    pub identity: Option<&'a (dyn Fn(&mut HeaderMap) + Sync)>,
}

impl Upstream {
    /// A client for `upstream` (an `http://` URL, checked by config).
    pub fn new(
        upstream: &url::Url,
        timeout: Duration,
        public_https: bool,
        cookie_name: &str,
    ) -> Result<Upstream, ProxyError> {
        let authority: Authority = upstream[url::Position::BeforeHost..url::Position::AfterPort]
            .parse()
            .map_err(|e| ProxyError::BadRequest(format!("upstream address: {e}")))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Upstream {
            client,
            scheme: Scheme::HTTP,
            authority,
            base_path: upstream.path().trim_end_matches('/').to_string(),
            timeout,
            forwarded_proto: HeaderValue::from_static(if public_https { "https" } else { "http" }),
            cookie_name: cookie_name.to_string(),
        })
    }

    /// Forwards `req` and returns the upstream's answer (502/504 on failure).
    pub async fn forward(&self, req: Request<Incoming>, fwd: Forward<'_>) -> Response<Body> {
        match self.try_forward(req, fwd).await {
            Ok(resp) => resp,
            Err(ProxyError::Timeout(d)) => {
                tracing::warn!(timeout = ?d, "upstream timed out");
                response::text(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n")
            }
            Err(e) => {
                tracing::warn!(error = %e, "upstream request failed");
                response::text(StatusCode::BAD_GATEWAY, "upstream unavailable\n")
            }
        }
    }

    async fn try_forward(
        &self,
        mut req: Request<Incoming>,
        fwd: Forward<'_>,
    ) -> Result<Response<Body>, ProxyError> {
        let upgrade = upgrade_protocol(req.headers());
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

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
            strip_cookie(headers, &self.cookie_name);
            if let Some(set) = fwd.identity {
                set(headers);
            }
            append_forwarded_for(headers, fwd.peer);
            headers.insert("x-forwarded-proto", self.forwarded_proto.clone());
            if let Some(host) = original_host {
                headers.insert("x-forwarded-host", host.clone());
                // The app sees the Host the user used (as with oauth2-proxy's default).
                headers.insert(HOST, host);
            }
            if let Some(proto) = &upgrade {
                headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(UPGRADE, proto.clone());
            }
        }
        // The upstream connection is HTTP/1.1 whatever the client spoke.
        *req.version_mut() = http::Version::HTTP_11;

        let mut resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| ProxyError::Timeout(self.timeout))?
            .map_err(|e| ProxyError::Unreachable(error_chain(&e)))?;

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
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
                    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                    {
                        tracing::debug!(error = %e, "upgraded connection ended");
                    }
                });
                let (parts, _) = resp.into_parts();
                return Ok(Response::from_parts(parts, response::empty()));
            }
        }
        strip_hop_by_hop(resp.headers_mut());
        Ok(resp.map(|b| b.map_err(Into::into).boxed()))
    }

    fn upstream_uri(&self, uri: &Uri) -> Result<Uri, ProxyError> {
        let pq = uri
            .path_and_query()
            .map(PathAndQuery::as_str)
            .unwrap_or("/");
        let path_and_query: PathAndQuery = if self.base_path.is_empty() {
            PathAndQuery::try_from(pq)
        } else {
            PathAndQuery::try_from(format!("{}{}", self.base_path, pq))
        }
        .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| ProxyError::BadRequest(e.to_string()))
    }
}

/// The `Upgrade` protocol when the request really asks for one (`Connection: upgrade`).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(UPGRADE).cloned()
    } else {
        None
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and every header it names, plus
/// `Keep-Alive`, `Proxy-Connection`, `Upgrade`, `TE`, `Trailer`, `Transfer-Encoding`,
/// `Proxy-Authorization` and `Proxy-Authenticate`. An upgrade is re-added by the caller only
/// when the exchange really is one. Runs before identity headers are set, so a client cannot
/// name ours in `Connection` to have them dropped.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        UPGRADE,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        PROXY_AUTHORIZATION,
        PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Removes our session cookie from `Cookie`, keeping the app's own cookies.
pub fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    if !headers.contains_key(COOKIE) {
        return;
    }
    let ours = |pair: &str| {
        pair.trim()
            .split_once('=')
            .is_some_and(|(k, _)| k == name || k.strip_prefix(name) == Some("_state"))
    };
    let any_ours = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(';').any(ours));
    if !any_ours {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter(|p| !p.trim().is_empty() && !ours(p))
        .map(|p| p.trim().to_string())
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(COOKIE, v);
        }
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
    let ip = peer.ip().to_string();
    let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip}"),
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", v);
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
        h.append(COOKIE, HeaderValue::from_static("dap_session_state=s; b=2"));
        strip_cookie(&mut h, "dap_session");
        assert_eq!(h[COOKIE], "a=1; b=2");
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("dap_session=xyz"));
        strip_cookie(&mut h, "dap_session");
        assert!(!h.contains_key(COOKIE));
    }
}
