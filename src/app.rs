//! The proxy's shared state, built once from a validated config, and what every part of a
//! request needs from it: the current session, the one access decision for both modes, the
//! answers to unauthenticated requests and the login URLs. Below both `server` (routing) and
//! `login` (our endpoints), which each import it and not each other.

use std::sync::Arc;

use http::header::ACCEPT;
use http::{HeaderMap, Method, Response, StatusCode};
use serde_json::json;

use crate::access::Access;
use crate::assertion::Assertion;
use crate::audit::Audit;
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::dingtalk::{DingTalk, DingTalkError};
use crate::forwarded::TrustedProxies;
use crate::identity::IdentityHeaders;
use crate::metrics::Metrics;
use crate::pages;
use crate::proxy::{ProxyError, Upstream};
use crate::response::{self, Body};
use crate::revalidate::{Revalidator, Verdict};
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

/// Everything a request needs, built once at start-up and shared by all connections.
pub struct Shared {
    /// The validated configuration.
    pub(crate) config: Config,
    /// Where sessions live (and the cookie codec that also seals login states).
    pub(crate) sessions: Arc<Sessions>,
    /// The identity headers to strip and set.
    pub(crate) identity: IdentityHeaders,
    /// The signed assertion (`[assertion]`), when enabled.
    pub(crate) assertion: Option<Assertion>,
    /// `[access]` rules.
    pub(crate) access: Access,
    /// The DingTalk client with its token cache.
    pub(crate) dingtalk: DingTalk,
    /// The upstream, absent in auth-only mode.
    pub(crate) upstream: Option<Upstream>,
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
    /// `{public_url}{auth_prefix}/callback`, DingTalk's `redirect_uri`.
    pub(crate) callback_url: String,
}

/// A cheap-to-clone handle to the proxy's shared state.
#[derive(Clone)]
pub struct App(Arc<Shared>);

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
        let uri_header = match config.verify.uri_header.as_str() {
            h if h.eq_ignore_ascii_case("auto") => None,
            h => Some(http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                ConfigError::Invalid {
                    key: "verify.uri_header".into(),
                    message: "is not a header name".into(),
                }
            })?),
        };
        let metrics = Arc::new(Metrics::new());
        let dingtalk = DingTalk::with_metrics(&config.dingtalk, Some(metrics.clone()))?;
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
        let assertion = Assertion::from_config(&config, clock.clone())
            .map_err(|e| invalid(e.config_key(), &e))?;
        // The assertion's header is ours whether or not assertions are on: always stripped.
        let assertion_header = http::HeaderName::from_bytes(config.assertion.header.as_bytes())
            .map_err(|e| invalid("assertion.header", e))?;
        let callback_path = format!("{}/callback", config.auth_prefix);
        let callback_url = format!("{}{}", config.public_origin(), callback_path);
        Ok(App(Arc::new(Shared {
            sessions: Arc::new(
                Sessions::from_config(
                    &config,
                    CookieCodec::new(&config, clock.clone())
                        .map_err(|e| invalid("session.secret", e))?,
                    metrics.clone(),
                )
                .map_err(|e| invalid(e.key, e.message))?,
            ),
            identity: IdentityHeaders::new(&config.headers)
                .map_err(|e| invalid("headers", e))?
                .also_strip(&assertion_header),
            assertion,
            access: Access::new(&config.access).map_err(|e| invalid("access.skip_auth", e))?,
            dingtalk,
            upstream,
            revalidator: Revalidator::new(
                config.session.revalidate,
                config.dingtalk.timeout,
                config.session.ttl,
                clock,
                audit.clone(),
                metrics.clone(),
            ),
            metrics,
            audit,
            trusted: TrustedProxies::new(&config.trusted_proxies),
            uri_header,
            callback_path,
            callback_url,
            config,
        })))
    }

    /// The shared state.
    pub fn shared(&self) -> &Shared {
        &self.0
    }

    /// The session store (tests and the operator's commands reach sessions through it).
    pub fn sessions(&self) -> &Sessions {
        &self.0.sessions
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
        path: Option<&str>,
        headers: &HeaderMap,
    ) -> (Decision, Option<String>) {
        let skip = path.is_some_and(|p| self.access.skips(p));
        let (session, set_cookie) = match self.current_session(headers).await {
            Ok(current) => current,
            Err(_) if skip => (None, None),
            Err(e) => return (Decision::StoreDown(e), None),
        };
        if skip {
            let session = session.filter(|s| self.access.allows(s));
            return (Decision::Skip(session), set_cookie);
        }
        let decision = match session {
            None => Decision::Unauthenticated,
            Some(s) if self.access.allows(&s) => Decision::Allow(s),
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
