//! The proxy's shared state, built once from a validated config, and what every part of a
//! request needs from it: the current session, the one access decision for both modes, the
//! answers to unauthenticated requests and the login URLs. Below both `server` (routing) and
//! `login` (our endpoints), which each import it and not each other.

use std::sync::Arc;

use arc_swap::ArcSwap;

use http::header::ACCEPT;
use http::{HeaderMap, Method, Response, StatusCode};
use serde_json::json;

use crate::assertion::Assertion;
use crate::audit::Audit;
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::dingtalk::{DingTalk, DingTalkError};
use crate::forwarded::TrustedProxies;
use crate::metrics::Metrics;
use crate::pages;
use crate::proxy::ProxyError;
use crate::response::{self, Body};
use crate::revalidate::{Revalidator, Verdict};
use crate::route::{Found, Route, Routes};
use crate::session::{CookieCodec, Session};
use crate::store::{Sessions, StoreError};

/// A config problem found while compiling it (validation normally reports it first).
fn invalid(key: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: e.to_string(),
    }
}

/// What happens to a request, decided once ([`Shared::decide`]) for both modes.
#[derive(Debug)]
pub enum Decision {
    /// A `skip_auth` path: served without login; with the user's identity when a valid
    /// session of an allowed user comes along (the contract's "200 + identity headers when
    /// the session is valid" for `verify`, and the same in proxy mode).
    Skip(Option<Session>),
    /// Logged in and allowed by `[access]`.
    Allow(Session),
    /// Logged in but refused by `[access]`.
    Forbidden(Session),
    /// No valid session.
    Unauthenticated,
    /// The session store did not answer: nobody can be told apart (503, not "logged out").
    StoreDown(StoreError),
}

/// The current session, if any, and a `Set-Cookie` to send with the answer.
pub type Current = (Option<Session>, Option<String>);

/// Why the proxy could not be built from a config.
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

/// Everything a request needs, built from one config and shared by all connections. A
/// reload (SIGHUP) builds a new one; requests already running keep the one they started with.
pub struct Shared {
    /// The validated configuration.
    pub(crate) config: Config,
    /// Where sessions live (and the cookie codec that also seals login states).
    pub(crate) sessions: Arc<Sessions>,
    /// The route table: each app's upstream, identity headers and policy, and the union of
    /// every route's header names (stripped from every request).
    pub(crate) routes: Routes,
    /// The signed assertion (`[assertion]`), when enabled.
    pub(crate) assertion: Option<Arc<Assertion>>,
    /// The DingTalk client with its token cache.
    pub(crate) dingtalk: DingTalk,
    /// Counters.
    pub(crate) metrics: Arc<Metrics>,
    /// Periodic re-checks of sessions against DingTalk.
    pub(crate) revalidator: Revalidator,
    /// The login audit trail (off unless `[audit] file` is set).
    pub(crate) audit: Audit,
    /// `trusted_proxies`: whose forwarded headers count.
    pub(crate) trusted: TrustedProxies,
    /// `verify.uri_header`; `None` = auto.
    pub(crate) uri_header: Option<http::HeaderName>,
    /// `{auth_prefix}/callback`.
    pub(crate) callback_path: String,
    /// `{login origin}{auth_prefix}/callback`, DingTalk's `redirect_uri`.
    pub(crate) callback_url: String,
    /// Where logins run: `auth_host` (with `public_url`'s scheme and port), else `public_url`.
    pub(crate) login_origin: String,
    /// [`Shared::login_origin`] parsed: the scheme and port an absolute `rd` must have.
    login_url: Option<url::Url>,
}

/// A cheap-to-clone handle to the proxy's shared state; every clone sees a reload.
#[derive(Clone)]
pub struct App(Arc<ArcSwap<Shared>>);

/// The keys a reload cannot change (read at start only), each with why.
const RESTART_ONLY: &[(&str, &str)] = &[
    ("listen", "the listening sockets are bound at start"),
    ("admin_listen", "the listening sockets are bound at start"),
    (
        "session",
        "the session secret, cookie and store are fixed while sessions are open",
    ),
    (
        "limits",
        "every connection is held to the limits it started with",
    ),
    (
        "audit",
        "the audit file is opened at start (SIGUSR1 reopens it)",
    ),
    ("log_format", "logging is set up at start"),
];

impl App {
    /// Builds clients, keys and rules from `config`. No network I/O.
    pub fn new(config: Config) -> Result<App, StartError> {
        App::with_clock(config, Clock::system())
    }

    /// [`App::new`] reading time from `clock` (tests move a manual clock instead of sleeping).
    pub fn with_clock(config: Config, clock: Clock) -> Result<App, StartError> {
        App::build(config, clock, Audit::off())
    }

    /// [`App::with_clock`], recording audit events to `audit`.
    pub fn build(config: Config, clock: Clock, audit: Audit) -> Result<App, StartError> {
        config.validate()?;
        let metrics = Arc::new(Metrics::new());
        let sessions = Arc::new(
            Sessions::from_config(
                &config,
                CookieCodec::new(&config, clock.clone())
                    .map_err(|e| invalid("session.secret", e))?,
                metrics.clone(),
            )
            .map_err(|e| invalid(e.key, e.message))?,
        );
        let revalidator = Revalidator::new(
            config.session.revalidate,
            config.dingtalk.timeout,
            config.session.ttl,
            clock.clone(),
            audit.clone(),
            metrics.clone(),
        );
        let kept = Kept {
            sessions,
            revalidator,
            metrics,
            audit,
            clock,
            dingtalk: None,
            assertion: None,
        };
        let shared = Shared::build(config, kept)?;
        Ok(App(Arc::new(ArcSwap::from_pointee(shared))))
    }

    /// The shared state as of now (a reload replaces it; this one stays whole while held).
    pub fn shared(&self) -> Arc<Shared> {
        self.0.load_full()
    }

    /// The session store (tests and the operator's commands reach sessions through it).
    pub fn sessions(&self) -> Arc<Sessions> {
        self.0.load().sessions.clone()
    }

    /// Takes `config` for every request from now on; requests already running finish with
    /// the config they started with. Keys a reload cannot change ([`RESTART_ONLY`]) keep
    /// their running values; the returned lines say which were changed in vain. The DingTalk
    /// client (and its token) and the assertion keys are kept when their sections are
    /// unchanged. An invalid config changes nothing.
    pub fn reload(&self, mut config: Config) -> Result<Vec<String>, StartError> {
        let old = self.shared();
        let mut ignored = Vec::new();
        let mut keep = |key: &str, changed: bool| {
            if changed {
                let why = RESTART_ONLY
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or("", |(_, why)| *why);
                ignored.push(format!(
                    "{key} changed, but only a restart applies it ({why}); keeping the running value"
                ));
            }
        };
        keep("listen", config.listen != old.config.listen);
        keep(
            "admin_listen",
            config.admin_listen != old.config.admin_listen,
        );
        keep("session", config.session != old.config.session);
        keep("limits", config.limits != old.config.limits);
        keep("audit", config.audit != old.config.audit);
        keep("log_format", config.log_format != old.config.log_format);
        config.listen = old.config.listen;
        config.admin_listen = old.config.admin_listen;
        config.session = old.config.session.clone();
        config.limits = old.config.limits.clone();
        config.audit = old.config.audit.clone();
        config.log_format = old.config.log_format;
        config.validate()?;
        let kept = Kept {
            sessions: old.sessions.clone(),
            revalidator: old.revalidator.clone(),
            metrics: old.metrics.clone(),
            audit: old.audit.clone(),
            clock: old.clock().clone(),
            dingtalk: (config.dingtalk == old.config.dingtalk).then(|| old.dingtalk.clone()),
            // The signer holds the issuer (public_url) and corp_id too.
            assertion: old.assertion.clone().filter(|_| {
                config.assertion == old.config.assertion
                    && config.public_url == old.config.public_url
                    && config.dingtalk.corp_id == old.config.dingtalk.corp_id
            }),
        };
        let shared = Shared::build(config, kept)?;
        self.0.store(Arc::new(shared));
        Ok(ignored)
    }
}

/// What a reload carries over from the running state: sessions and their replay memory,
/// revalidation's memory, counters, the audit writer — and, when their sections did not
/// change, the DingTalk client (its token) and the assertion signer (its keys).
struct Kept {
    sessions: Arc<Sessions>,
    revalidator: Revalidator,
    metrics: Arc<Metrics>,
    audit: Audit,
    clock: Clock,
    dingtalk: Option<DingTalk>,
    assertion: Option<Arc<Assertion>>,
}

impl Shared {
    fn build(config: Config, kept: Kept) -> Result<Shared, StartError> {
        let uri_header = match config.verify.uri_header.as_str() {
            h if h.eq_ignore_ascii_case("auto") => None,
            h => Some(http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                ConfigError::Invalid {
                    key: "verify.uri_header".into(),
                    message: "is not a header name".into(),
                }
            })?),
        };
        let dingtalk = match kept.dingtalk {
            Some(d) => d,
            None => DingTalk::with_metrics(&config.dingtalk, Some(kept.metrics.clone()))?,
        };
        // The assertion's header is ours whether or not assertions are on: always stripped.
        let assertion_header = http::HeaderName::from_bytes(config.assertion.header.as_bytes())
            .map_err(|e| invalid("assertion.header", e))?;
        let routes = Routes::from_config(&config, &assertion_header)?;
        let assertion = match kept.assertion {
            Some(a) => Some(a),
            None => Assertion::from_config(&config, kept.clock.clone())
                .map_err(|e| invalid(e.config_key(), &e))?
                .map(Arc::new),
        };
        let callback_path = format!("{}/callback", config.auth_prefix);
        let login_origin = config.login_origin();
        let callback_url = format!("{login_origin}{callback_path}");
        Ok(Shared {
            sessions: kept.sessions,
            routes,
            assertion,
            dingtalk,
            revalidator: kept.revalidator,
            metrics: kept.metrics,
            audit: kept.audit,
            trusted: TrustedProxies::new(&config.trusted_proxies),
            uri_header,
            callback_path,
            callback_url,
            login_url: url::Url::parse(&login_origin).ok(),
            login_origin,
            config,
        })
    }
}

impl Shared {
    /// What the client sees when the app behind us failed: a page for a browser (what
    /// happened, that it is the app and not the login, a retry button), JSON for anyone else.
    pub(crate) fn upstream_failed(
        &self,
        e: &ProxyError,
        navigation: bool,
        uri: &http::Uri,
    ) -> Response<Body> {
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
    pub async fn current_session(&self, headers: &HeaderMap) -> Result<Current, StoreError> {
        // A cookie sealed under a previous secret comes back re-issued under the current one.
        let Some((session, reissue)) = self.sessions.load_reissued(headers).await? else {
            return Ok((None, None));
        };
        let verdict = self
            .revalidator
            .check(&self.dingtalk, &self.sessions, &session)
            .await;
        Ok(match verdict {
            Verdict::Fresh => (Some(session), reissue),
            Verdict::Updated(s) => {
                let cookie = self.sessions.refresh(&s).await?;
                (Some(*s), cookie.or(reissue))
            }
            Verdict::Revoked => (None, Some(self.sessions.clear_cookie())),
        })
    }

    /// What the client sees when the session store cannot answer: 503 with `Retry-After`, a
    /// page for a browser navigation, JSON for anyone else.
    pub(crate) fn store_unavailable(&self, navigation: bool, e: &StoreError) -> Response<Body> {
        tracing::warn!(error = %e, "session store unavailable; answering 503");
        self.metrics.request("store_unavailable");
        let en = "Sign-in is temporarily unavailable (the session store does not answer). Please retry in a moment.";
        let mut resp = if navigation {
            pages::app_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "登录服务暂时不可用，请稍后重试。",
                en,
                "",
            )
        } else {
            response::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "session_store_unavailable", "message": en}),
            )
        };
        resp.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("5"),
        );
        resp
    }

    /// The answer to an unauthenticated request: 302 to login for a browser navigation,
    /// 401 JSON for anything else.
    pub(crate) fn unauthenticated(
        &self,
        method: &Method,
        headers: &HeaderMap,
        uri: &http::Uri,
    ) -> Response<Body> {
        let rd = self.return_to(headers, uri.path_and_query().map_or("/", |p| p.as_str()));
        if is_navigation(method, headers) {
            self.metrics.request("redirected");
            response::redirect(&self.login_link(&rd, false))
        } else {
            self.metrics.request("unauthenticated");
            self.unauthenticated_json(&rd)
        }
    }

    /// `401 {"error":"unauthenticated","login_url":…}`.
    pub fn unauthenticated_json(&self, rd: &str) -> Response<Body> {
        let login_url = format!("{}{}", self.login_origin, self.login_url(rd, false));
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

    /// Where a login for a request to `path_and_query` should return: the path itself, or
    /// with `auth_host` and a request on another host, that host's absolute URL.
    pub(crate) fn return_to(&self, headers: &HeaderMap, path_and_query: &str) -> String {
        let Some(host) = self.other_host(headers) else {
            return path_and_query.to_string();
        };
        // A front server that sends the host without its port (nginx's `$host`) serves on
        // the login origin's port: the way back is on that port too.
        let port = match self.login_url.as_ref().and_then(|u| u.port()) {
            Some(p) if !host.contains(':') => format!(":{p}"),
            _ => String::new(),
        };
        format!("{}://{host}{port}{path_and_query}", self.scheme())
    }

    /// True when the request is for `auth_host` itself.
    pub(crate) fn on_login_host(&self, headers: &HeaderMap) -> bool {
        self.config.auth_host.is_some() && self.other_host(headers).is_none()
    }

    /// With `auth_host`, the `Host` of a request for another host (as sent, with its port);
    /// `None` on the login host itself, or without `auth_host`.
    pub(crate) fn other_host<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        let auth_host = self.config.auth_host.as_deref()?;
        let raw = headers.get(http::header::HOST)?.to_str().ok()?;
        let host = crate::route::host_only(raw)?;
        let auth = crate::route::host_only(auth_host).unwrap_or(auth_host);
        (!host.eq_ignore_ascii_case(auth)).then_some(raw)
    }

    /// The login URL for `rd`: relative, or with `auth_host` absolute at the login host.
    pub(crate) fn login_link(&self, rd: &str, qr: bool) -> String {
        if self.config.auth_host.is_some() {
            format!("{}{}", self.login_origin, self.login_url(rd, qr))
        } else {
            self.login_url(rd, qr)
        }
    }

    /// `http` or `https`, as users reach us (`public_url`'s scheme).
    fn scheme(&self) -> &str {
        self.config
            .public_url
            .as_ref()
            .map_or("http", |u| u.scheme())
    }

    /// A hostile `rd` made safe: a same-origin path; or, with `auth_host`, an absolute URL
    /// of the login host or of a host that a route serves under the cookie domain (same
    /// scheme and port as the login host); anything else is `/`.
    pub fn checked_rd(&self, rd: Option<&str>) -> String {
        match rd {
            Some(rd) if rd.starts_with('/') => crate::redirect::safe_rd(Some(rd)),
            Some(rd) => self.routed_url(rd).unwrap_or_else(|| "/".to_string()),
            None => "/".to_string(),
        }
    }

    fn routed_url(&self, rd: &str) -> Option<String> {
        let auth_host = self.config.auth_host.as_deref()?;
        if !crate::redirect::is_plain(rd) {
            return None;
        }
        let url = url::Url::parse(rd).ok()?;
        let login = self.login_url.as_ref()?;
        let same_place = url.scheme() == login.scheme()
            && url.port_or_known_default() == login.port_or_known_default()
            && url.username().is_empty()
            && url.password().is_none();
        let Some(url::Host::Domain(host)) = url.host() else {
            return None;
        };
        let auth = crate::route::host_only(auth_host).unwrap_or(auth_host);
        let served = host.eq_ignore_ascii_case(auth)
            || (self.config.under_cookie_domain(host) && self.routes.serves_host(host));
        (same_place && served).then(|| url.to_string())
    }

    /// The route a login for `rd` is for (its `[access]` decides whether the login may
    /// finish): an absolute `rd` names its host, a path is on the request's own host.
    pub(crate) fn route_for_rd(&self, rd: &str, headers: &HeaderMap) -> Option<&Route> {
        let (host, path) = match url::Url::parse(rd) {
            Ok(u) => (u.host_str().map(str::to_string), u.path().to_string()),
            Err(_) => (
                crate::route::request_host(headers).map(str::to_string),
                rd.split(['?', '#']).next().unwrap_or("/").to_string(),
            ),
        };
        match self.routes.find(host.as_deref(), Some(&path)) {
            Found::Route(r) => Some(r),
            Found::NotServed | Found::Ambiguous => None,
        }
    }

    /// A login that lets the user pick another DingTalk account: the QR flow, asking DingTalk
    /// for consent again.
    pub fn switch_account_url(&self, rd: &str) -> String {
        format!("{}&prompt=login", self.login_link(rd, true))
    }

    /// DingTalk's OAuth page URL for a browser login with this `state`.
    pub fn oauth_url(&self, state: &str) -> String {
        self.dingtalk.oauth_url(&self.callback_url, state)
    }

    /// Marks a login `state` as used; false if it was used before (a replayed callback).
    pub async fn consume_state(&self, state: &str, expires_at: u64) -> Result<bool, StoreError> {
        self.sessions.consume_state(state, expires_at).await
    }

    /// The cookie codec: login-state cookies (and, in cookie mode, the session itself).
    pub(crate) fn codec(&self) -> &CookieCodec {
        self.sessions.codec()
    }

    /// The clock expiry is judged by.
    pub fn clock(&self) -> &Clock {
        self.sessions.clock()
    }

    /// The one access decision, for the reverse proxy and for `verify` alike, in one order:
    /// the session (revalidated, so a revoked user is never passed on), then the path: a
    /// `skip_auth` path passes (with identity only for an allowed user), any other needs a
    /// session, then `[access]`. `path` is the request's own path, or for `verify` the one the
    /// trusted front server reports (`None` when it reports none).
    ///
    /// The store failing is not "logged out": a `skip_auth` path still passes (without
    /// identity), anything else gets [`Decision::StoreDown`].
    pub async fn decide(
        &self,
        route: &Route,
        path: Option<&str>,
        headers: &HeaderMap,
    ) -> (Decision, Option<String>) {
        let access = &route.access;
        let skip = path.is_some_and(|p| access.skips(p));
        let (session, set_cookie) = match self.current_session(headers).await {
            Ok(current) => current,
            Err(_) if skip => (None, None),
            Err(e) => return (Decision::StoreDown(e), None),
        };
        if skip {
            let session = session.filter(|s| access.allows(s));
            return (Decision::Skip(session), set_cookie);
        }
        let decision = match session {
            None => Decision::Unauthenticated,
            Some(s) if access.allows(&s) => Decision::Allow(s),
            Some(s) => Decision::Forbidden(s),
        };
        (decision, set_cookie)
    }
}

/// A browser navigation: GET/HEAD that accepts HTML and is not an XHR.
pub(crate) fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
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
