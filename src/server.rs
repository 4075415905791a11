//! The server: shared state built once from the config, the accept loop with graceful
//! shutdown, and the per-request routing between our own endpoints and the upstream.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use dashmap::DashMap;
use http::header::ACCEPT;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use tokio::net::TcpListener;

use crate::access::Access;
use crate::config::{Config, ConfigError, LimitsConfig};
use crate::conn;
use crate::dingtalk::{DingTalk, DingTalkError};
use crate::forwarded::TrustedProxies;
use crate::identity::IdentityHeaders;
use crate::login;
use crate::metrics::Metrics;
use crate::pages;
use crate::proxy::{Forward, ProxyError, Upstream};
use crate::response::{self, Body};
use crate::revalidate::{Revalidator, Verdict};
use crate::session::{now_secs, CookieCodec, Session};

/// Why the proxy could not be built from a (valid) config.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The DingTalk client could not be built.
    #[error("DingTalk client: {0}")]
    DingTalk(#[from] DingTalkError),
    /// The upstream client could not be built.
    #[error("upstream: {0}")]
    Upstream(#[from] ProxyError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Everything a request needs, built once at start-up and shared by all connections.
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// Seals and opens our cookies.
    pub codec: CookieCodec,
    /// The identity headers to strip and set.
    pub identity: IdentityHeaders,
    /// `[access]` rules.
    pub access: Access,
    /// The DingTalk client with its token cache.
    pub dingtalk: DingTalk,
    /// The upstream, absent in auth-only mode.
    pub upstream: Option<Upstream>,
    /// Counters.
    pub metrics: Metrics,
    /// Periodic re-checks of sessions against DingTalk.
    pub revalidator: Revalidator,
    /// `trusted_proxies`: whose forwarded headers count.
    pub trusted: TrustedProxies,
    /// `verify.uri_header`; `None` = auto.
    pub uri_header: Option<http::HeaderName>,
    /// `state` values already used at the callback, with their expiry (replay protection).
    used_states: DashMap<String, u64>,
    /// `{auth_prefix}/callback`.
    pub callback_path: String,
    /// `{public_url}{auth_prefix}/callback`, DingTalk's `redirect_uri`.
    callback_url: String,
}

/// A cheap-to-clone handle to the proxy's shared state.
#[derive(Clone)]
pub struct App(Arc<Shared>);

impl App {
    /// Builds clients, keys and rules from `config`. No network I/O.
    pub fn new(config: Config) -> Result<App, StartError> {
        config.validate()?;
        let uri_header = match config.verify.uri_header.as_str() {
            h if h.eq_ignore_ascii_case("auto") => None,
            h => Some(http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                ConfigError::Invalid {
                    key: "verify.uri_header".into(),
                    message: "is not a header name".into(),
                }
            })?),
        };
        let dingtalk = DingTalk::new(&config.dingtalk)?;
        let upstream = match &config.upstream {
            Some(url) => Some(Upstream::new(
                url,
                config.upstream_timeout,
                config.secure_cookies(),
                &config.session.cookie_name,
                config.limits.max_body_bytes,
            )?),
            None => None,
        };
        let callback_path = format!("{}/callback", config.auth_prefix);
        let callback_url = format!("{}{}", config.public_origin(), callback_path);
        Ok(App(Arc::new(Shared {
            codec: CookieCodec::new(&config),
            identity: IdentityHeaders::new(&config.headers),
            access: Access::new(&config.access),
            dingtalk,
            upstream,
            metrics: Metrics::new(),
            revalidator: Revalidator::new(
                config.session.revalidate,
                config.dingtalk.timeout,
                config.session.ttl,
            ),
            trusted: TrustedProxies::new(&config.trusted_proxies),
            uri_header,
            used_states: DashMap::new(),
            callback_path,
            callback_url,
            config,
        })))
    }

    /// The shared state.
    pub fn shared(&self) -> &Shared {
        &self.0
    }

    /// Handles one request from `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let app = &*self.0;
        let prefix = app.config.auth_prefix.as_str();
        let path = req.uri().path();
        if let Some(rest) = path.strip_prefix(prefix) {
            if rest.is_empty() || rest.starts_with('/') {
                app.metrics.request("auth");
                let (method, headers, query) = (req.method(), req.headers(), req.uri().query());
                return login::handle(app, method, rest, headers, query, peer).await;
            }
        }
        let Some(upstream) = &app.upstream else {
            app.metrics.request("not_found");
            return response::text(
                StatusCode::NOT_FOUND,
                "not found (auth-only mode: only the auth endpoints are served)\n",
            );
        };
        let mut req = req;
        // 1. Never let a client speak for the user.
        app.identity.strip(req.headers_mut());
        let forwarded_for = app.trusted.forwarded_for(peer, req.headers());
        // skip_auth looks at the request's own path only.
        if app.access.skips(req.uri().path()) {
            app.metrics.request("skipped");
            let fwd = Forward {
                forwarded_for,
                identity: None,
            };
            let (navigation, uri) = (
                is_navigation(req.method(), req.headers()),
                req.uri().clone(),
            );
            return match upstream.forward(req, fwd).await {
                Ok(resp) => resp,
                Err(e) => app.upstream_failed(&e, navigation, &uri),
            };
        }
        let (session, set_cookie) = app.current_session(req.headers()).await;
        let Some(session) = session else {
            let mut resp = app.unauthenticated(req.method(), req.headers(), req.uri());
            if let Some(c) = set_cookie {
                response::set_cookie(&mut resp, &c);
            }
            return resp;
        };
        if !app.access.allows(&session) {
            app.metrics.request("forbidden");
            return pages::forbidden(&session.userid);
        }
        app.metrics.request("proxied");
        let set = |h: &mut HeaderMap| app.identity.apply(h, &session);
        let fwd = Forward {
            forwarded_for,
            identity: Some(&set),
        };
        let (navigation, uri) = (
            is_navigation(req.method(), req.headers()),
            req.uri().clone(),
        );
        let mut resp = match upstream.forward(req, fwd).await {
            Ok(resp) => resp,
            Err(e) => app.upstream_failed(&e, navigation, &uri),
        };
        if let Some(c) = set_cookie {
            response::set_cookie(&mut resp, &c);
        }
        resp
    }
}

impl Shared {
    /// What the client sees when the app behind us failed: a page for a browser (what
    /// happened, that it is the app and not the login, a retry button), JSON for anyone else.
    fn upstream_failed(&self, e: &ProxyError, navigation: bool, uri: &http::Uri) -> Response<Body> {
        self.metrics.request("upstream_error");
        let status = e.status();
        let (code, zh, en) = match e {
            ProxyError::Timeout(_) => (
                "upstream_timeout",
                "应用没有及时响应。",
                "The application did not answer in time. Your sign-in is fine; the app behind it is slow or busy.",
            ),
            ProxyError::BodyTooLarge(_) => (
                "payload_too_large",
                "上传的内容过大。",
                "The request body is larger than this site accepts.",
            ),
            ProxyError::BadRequest(_) => (
                "bad_request",
                "请求无法转发给应用。",
                "The request could not be passed on to the application.",
            ),
            ProxyError::Unreachable(_) | ProxyError::UnexpectedUpgrade => (
                "upstream_unavailable",
                "应用暂时无法访问（可能正在重启）。",
                "The application is not reachable right now (it may be restarting). Your sign-in is fine; please retry in a moment.",
            ),
        };
        if navigation {
            let retry = crate::redirect::safe_rd(uri.path_and_query().map(|p| p.as_str()));
            pages::app_error(status, zh, en, &retry)
        } else {
            response::json(status, &json!({"error": code, "message": en}))
        }
    }

    /// The request's valid session after revalidation, and a `Set-Cookie` to send with the
    /// answer when revalidation changed it (updated details, or a deletion when revoked).
    pub async fn current_session(&self, headers: &HeaderMap) -> (Option<Session>, Option<String>) {
        let Some(session) = self.codec.session(headers) else {
            return (None, None);
        };
        match self.revalidator.check(&self.dingtalk, &session).await {
            Verdict::Fresh => (Some(session), None),
            Verdict::Updated(s) => {
                let cookie = self.codec.session_cookie(&s);
                (Some(*s), Some(cookie))
            }
            Verdict::Revoked => (None, Some(self.codec.clear_session_cookie())),
        }
    }

    /// The answer to an unauthenticated request: 302 to login for a browser navigation,
    /// 401 JSON for anything else.
    fn unauthenticated(
        &self,
        method: &Method,
        headers: &HeaderMap,
        uri: &http::Uri,
    ) -> Response<Body> {
        let rd = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        if is_navigation(method, headers) {
            self.metrics.request("redirected");
            response::redirect(&self.login_url(rd, false))
        } else {
            self.metrics.request("unauthenticated");
            self.unauthenticated_json(rd)
        }
    }

    /// `401 {"error":"unauthenticated","login_url":…}`.
    pub fn unauthenticated_json(&self, rd: &str) -> Response<Body> {
        let login_url = format!(
            "{}{}",
            self.config.public_origin(),
            self.login_url(rd, false)
        );
        let mut resp = response::json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "unauthenticated", "login_url": login_url}),
        );
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("DingTalk"),
        );
        resp
    }

    /// `{auth_prefix}/login?rd=…` (relative), optionally forcing the QR (OAuth) flow.
    pub fn login_url(&self, rd: &str, qr: bool) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("rd", rd);
        if qr {
            q.append_pair("flow", "qr");
        }
        format!("{}/login?{}", self.config.auth_prefix, q.finish())
    }

    /// A login that lets the user pick another DingTalk account: the QR flow, asking DingTalk
    /// for consent again.
    pub fn switch_account_url(&self, rd: &str) -> String {
        format!("{}&prompt=login", self.login_url(rd, true))
    }

    /// DingTalk's OAuth page URL for a browser login with this `state`.
    pub fn oauth_url(&self, state: &str) -> String {
        let d = &self.config.dingtalk;
        let mut url = d.login_base.clone();
        let path = format!("{}/oauth2/auth", d.login_base.path().trim_end_matches('/'));
        url.set_path(&path);
        url.query_pairs_mut()
            .clear()
            .append_pair("redirect_uri", &self.callback_url)
            .append_pair("response_type", "code")
            .append_pair("client_id", &d.app_key)
            .append_pair("scope", "openid")
            .append_pair("state", state)
            .append_pair("prompt", "consent")
            .append_pair("corpId", &d.corp_id);
        url.into()
    }

    /// Marks a login `state` as used; false if it was used before (a replayed callback).
    pub fn consume_state(&self, state: &str, expires_at: u64) -> bool {
        let now = now_secs();
        if self.used_states.len() > 10_000 {
            self.used_states.retain(|_, exp| *exp > now);
        }
        let fresh = !self.used_states.contains_key(state);
        if fresh {
            self.used_states.insert(state.to_string(), expires_at);
        }
        fresh
    }
}

/// A browser navigation: GET/HEAD that accepts HTML and is not an XHR.
fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    let xhr = headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"xmlhttprequest"));
    let html = headers.get_all(ACCEPT).iter().any(|v| {
        v.as_bytes()
            .windows(9)
            .any(|w| w.eq_ignore_ascii_case(b"text/html"))
    });
    html && !xhr
}

/// Serves `app` on `listener` until `shutdown` completes, then drains open connections
/// (see [`conn`](crate::conn) for the limits every connection is held to).
pub async fn serve(listener: TcpListener, app: App, shutdown: impl Future<Output = ()>) {
    let limits = app.0.config.limits.clone();
    let handler = app.clone();
    let handle = move |req, peer| {
        let app = handler.clone();
        async move { app.handle(req, peer).await }
    };
    let rejected = move || app.0.metrics.connection_rejected();
    conn::serve(listener, &limits, handle, rejected, shutdown).await;
}

/// Serves `/metrics`, `/healthz` and `/readyz` on the admin listener until `shutdown`. The
/// same limits apply, except the connection cap: health checks must get through.
pub async fn serve_admin(listener: TcpListener, app: App, shutdown: impl Future<Output = ()>) {
    let limits = LimitsConfig {
        max_connections: 0,
        ..app.0.config.limits.clone()
    };
    let handle = move |req: Request<Incoming>, _peer| {
        let app = app.clone();
        async move {
            match req.uri().path() {
                "/metrics" => {
                    let mut r = Response::new(response::full(app.0.metrics.render()));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    r
                }
                "/healthz" | "/readyz" => response::text(StatusCode::OK, "ok\n"),
                _ => response::text(StatusCode::NOT_FOUND, "not found\n"),
            }
        }
    };
    conn::serve(listener, &limits, handle, || {}, shutdown).await;
}
