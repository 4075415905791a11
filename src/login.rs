//! The proxy's own endpoints under `auth_prefix`: login (in-app 免登 page or browser OAuth
//! redirect), callback (state check, code exchange, session), verify (nginx `auth_request`),
//! userinfo, logout and healthz.

use base64::Engine;
use http::header::{RETRY_AFTER, USER_AGENT};
use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use rand::RngCore;
use serde_json::json;

use crate::app::{Decision, Shared};
use crate::audit::Event;
use crate::dingtalk::DingTalkError;
use crate::pages;
use crate::redirect::safe_rd;
use crate::response::{self, Body};
use crate::route::{Found, Route};
use crate::session::{LoginState, Session, LOGIN_STATE_TTL};
use crate::user::FIELDS;

/// Who is asking, judged by the User-Agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// Inside the DingTalk client (`DingTalk` in the UA, any case).
    DingTalk,
    /// DingTalk's chat link-preview crawler (`DingTalk-LinkService`): never a login.
    LinkPreview,
    /// Any other browser.
    Browser,
}

/// Classifies the request's User-Agent without allocating.
pub fn client_kind(headers: &HeaderMap) -> ClientKind {
    let ua = headers
        .get(USER_AGENT)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if contains_ignore_case(ua, b"dingtalk-linkservice") {
        ClientKind::LinkPreview
    } else if contains_ignore_case(ua, b"dingtalk") {
        ClientKind::DingTalk
    } else {
        ClientKind::Browser
    }
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The value of query parameter `name`, percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The `rd` of a login URL. Web servers cannot percent-encode, so nginx's
/// `return 302 /_auth/login?rd=$request_uri` sends the original path and query raw: a query
/// that starts with `rd=/` (an unencoded slash) carries everything after `rd=` as the path.
pub fn login_rd(query: Option<&str>) -> String {
    safe_rd(raw_rd(query).as_deref())
}

/// The `rd` of a login URL as sent (see [`login_rd`]), before any check.
pub fn raw_rd(query: Option<&str>) -> Option<String> {
    match query.and_then(|q| q.strip_prefix("rd=")) {
        Some(raw) if raw.starts_with('/') => Some(raw.to_string()),
        _ => query_param(query, "rd"),
    }
}

/// `GET {prefix}/login?rd=…[&flow=qr]`. A browser that already has a valid session goes
/// straight to `rd`, unless `flow` or `prompt` asks for a new login (switching accounts).
pub async fn login(app: &Shared, headers: &HeaderMap, query: Option<&str>) -> Response<Body> {
    let raw = raw_rd(query);
    // With `auth_host`, every login runs there: a login opened on an app's host moves over,
    // its `rd` made absolute so the user comes back to that host.
    if let Some(host) = app.other_host(headers) {
        let rd = match raw.as_deref() {
            Some(r) if r.starts_with('/') => app.return_to(headers, &safe_rd(Some(r))),
            other => app.checked_rd(other),
        };
        let rd = if rd == "/" {
            app.return_to(headers, "/")
        } else {
            rd
        };
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("rd", &rd);
        for name in ["flow", "prompt"] {
            if let Some(v) = query_param(query, name) {
                q.append_pair(name, &v);
            }
        }
        tracing::debug!(%host, "login moves to auth_host");
        return response::redirect(&format!(
            "{}{}/login?{}",
            app.login_origin,
            app.config.auth_prefix,
            q.finish()
        ));
    }
    let rd = app.checked_rd(raw.as_deref());
    let flow = query_param(query, "flow");
    let force_qr = flow.as_deref() == Some("qr");
    let kind = client_kind(headers);
    if kind == ClientKind::LinkPreview {
        return pages::link_preview();
    }
    if flow.is_none() && query_param(query, "prompt").is_none() {
        if let Ok((Some(_), set_cookie)) = app.current_session(headers).await {
            let mut resp = response::redirect(&rd);
            if let Some(c) = set_cookie {
                response::set_cookie(&mut resp, &c);
            }
            return resp;
        }
    }
    let in_app = kind == ClientKind::DingTalk && !force_qr;
    let state = LoginState {
        state: random_token(),
        rd,
        flow: if in_app { "inapp" } else { "oauth" }.to_string(),
        expires_at: app.clock().now_secs() + LOGIN_STATE_TTL.as_secs(),
    };
    let mut resp = if in_app {
        let qr = app.login_url(&state.rd, true);
        let nonce = random_token();
        pages::in_app_login(&pages::InAppLogin {
            jsapi_url: app.config.dingtalk.jsapi_url.as_str(),
            corp_id: &app.config.dingtalk.corp_id,
            client_id: &app.config.dingtalk.app_key,
            callback: &app.callback_path,
            state: &state.state,
            qr_login: &qr,
            nonce: &nonce,
        })
    } else {
        response::redirect(&app.oauth_url(&state.state))
    };
    // Every login keeps its own state cookie (tabs restored together each start one); the
    // oldest go once a browser has too many outstanding.
    for removal in app.codec().prune_pending_logins(headers) {
        response::set_cookie(&mut resp, &removal);
    }
    response::set_cookie(&mut resp, &app.codec().login_state_cookie(&state));
    resp
}

/// `GET {prefix}/callback?code=…&state=…` (in-app) or `?authCode=…&state=…` (browser).
pub async fn callback(
    app: &Shared,
    headers: &HeaderMap,
    query: Option<&str>,
    client: IpAddr,
) -> Response<Body> {
    let state = query_param(query, "state").unwrap_or_default();
    let mut resp = callback_inner(app, headers, query, &state, client).await;
    if let Some(clear) = app.codec().clear_login_state_cookie(&state) {
        response::set_cookie(&mut resp, &clear);
    }
    resp
}

/// Who is logging in, for log lines and audit events about the attempt.
struct Attempt<'a> {
    app: &'a Shared,
    headers: &'a HeaderMap,
    client: IpAddr,
    /// The login state's flow, once the state is known.
    flow: Option<&'a str>,
}

impl Attempt<'_> {
    /// One `warn` line and one `login_failed` audit event per refused login: why, who (when
    /// known) and from where — never a code, token or cookie.
    fn refused(&self, user: Option<&crate::user::User>, reason: &str) {
        self.record("login_failed", user, reason);
    }

    /// A login refused by `[access]`: a `denied` audit event.
    fn denied(&self, user: &crate::user::User) {
        self.record("denied", Some(user), "not allowed by [access]");
    }

    fn record(&self, kind: &'static str, user: Option<&crate::user::User>, reason: &str) {
        let client = self.client;
        let userid = user.map_or("-", |u| u.userid.as_str());
        tracing::warn!(%client, %userid, %reason, "login refused");
        let mut event = Event::new(kind).client(client, self.headers).reason(reason);
        if let Some(u) = user {
            event.userid = Some(u.userid.clone());
            event.name = u.name.clone();
        }
        if let Some(flow) = self.flow {
            event = event.flow(flow);
        }
        self.app.audit.record(event);
    }
}

async fn callback_inner(
    app: &Shared,
    headers: &HeaderMap,
    query: Option<&str>,
    sent_state: &str,
    client: IpAddr,
) -> Response<Body> {
    let mut attempt = Attempt {
        app,
        headers,
        client,
        flow: None,
    };
    let saved = app.codec().login_state(headers, sent_state);
    // Where the user was going: from the state cookie (even an expired one), else `/`.
    let rd = saved.as_ref().map_or("/", |s| s.rd.as_str()).to_string();
    let retry = app.login_url(&rd, false);
    let now = app.clock().now_secs();
    let checked = match saved {
        None => Err((
            "state missing, or no login state cookie for it",
            "登录状态已失效或缺失，请重新登录。",
            "The login state is missing or expired (cookies blocked, or the login took too long). Please log in again.",
        )),
        Some(s) if s.is_expired(now) => Err((
            "login state expired",
            "登录等待时间过长，已失效，请重新登录。",
            "The login took too long and has expired. Please log in again.",
        )),
        Some(s) => match app.consume_state(&s.state, s.expires_at).await {
            Ok(true) => Ok(s),
            Ok(false) => Err((
                "state already used (replayed callback)",
                "该登录请求已使用过，请重新登录。",
                "This login request was already used. Please log in again.",
            )),
            Err(e) => {
                attempt.refused(None, "session store unavailable");
                return app.store_unavailable(true, &e);
            }
        },
    };
    let saved = match checked {
        Ok(saved) => saved,
        Err((reason, zh, en)) => {
            // Another tab of this browser may have logged in meanwhile: then this one simply goes on.
            if let Ok((Some(_), set_cookie)) = app.current_session(headers).await {
                let mut resp = response::redirect(&rd);
                if let Some(c) = set_cookie {
                    response::set_cookie(&mut resp, &c);
                }
                return resp;
            }
            app.metrics.login("bad_state");
            attempt.refused(None, reason);
            return pages::error(StatusCode::BAD_REQUEST, zh, en, Some(&retry));
        }
    };
    attempt.flow = Some(&saved.flow);
    if let Some(err) = query_param(query, "error") {
        app.metrics.login("denied");
        let reason = format!(
            "not approved at DingTalk ({})",
            // The client chose this text: only plain characters reach the log (no newlines).
            err.chars()
                .filter(|c| c.is_ascii_alphanumeric() || "_-. ".contains(*c))
                .take(64)
                .collect::<String>()
        );
        attempt.refused(None, &reason);
        return pages::error(
            StatusCode::FORBIDDEN,
            "钉钉登录未完成（已取消或被拒绝）。",
            "DingTalk sign-in was cancelled or denied.",
            Some(&retry),
        );
    }
    let oauth = saved.flow == "oauth";
    let code = if oauth {
        query_param(query, "authCode").or_else(|| query_param(query, "code"))
    } else {
        query_param(query, "code").or_else(|| query_param(query, "authCode"))
    };
    let Some(code) = code.filter(|c| !c.is_empty() && c.len() <= 512) else {
        app.metrics.login("bad_request");
        attempt.refused(None, "no authorization code");
        return pages::error(
            StatusCode::BAD_REQUEST,
            "缺少钉钉授权码，请重新登录。",
            "The DingTalk authorization code is missing. Please log in again.",
            Some(&retry),
        );
    };
    let user = if oauth {
        app.dingtalk.user_by_auth_code(&code).await
    } else {
        app.dingtalk.user_by_code(&code).await
    };
    let user = match user {
        Ok(user) => user,
        Err(e) => {
            app.metrics.login("dingtalk_error");
            attempt.refused(None, &format!("DingTalk: {e}"));
            return dingtalk_error_page(&e, &retry);
        }
    };
    if user.active == Some(false) {
        app.metrics.login("inactive");
        attempt.refused(Some(&user), "account not active");
        return pages::inactive(&user.userid, &app.switch_account_url(&saved.rd));
    }
    let session = Session::new(user, app.codec().ttl(), now);
    // The policy of the app the user is going to (one login opens every route it allows).
    let access = app
        .route_for_rd(&saved.rd, headers)
        .map_or(app.routes.default_access(), |r| &r.access);
    if !access.allows(&session) {
        app.metrics.login("forbidden");
        attempt.denied(&session.user);
        return pages::forbidden(session.userid());
    }
    let cookie = match app.sessions.save(&session).await {
        Ok(cookie) => cookie,
        Err(e) => {
            attempt.refused(Some(&session.user), "session store unavailable");
            return app.store_unavailable(true, &e);
        }
    };
    app.metrics.login("ok");
    tracing::info!(%client, userid = %session.userid(), flow = %saved.flow, "login");
    app.audit.record(
        Event::new("login")
            .session(&session)
            .client(client, headers)
            .flow(&saved.flow),
    );
    let mut resp = response::redirect(&saved.rd);
    response::set_cookie(&mut resp, &cookie);
    resp
}

/// The page for a DingTalk error during login, with `Retry-After` when DingTalk throttles us.
fn dingtalk_error_page(e: &DingTalkError, retry: &str) -> Response<Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let en = e.to_string();
    let mut resp = pages::error(status, e.message_zh(), &en, Some(retry));
    if let Some(after) = e.retry_after() {
        if let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
            resp.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    resp
}

/// `GET {prefix}/verify`: 200 + identity headers, 401, or 403; never a redirect, empty bodies.
/// `skip_auth` is judged on the original URI the front server reports (see [`original_path`]).
pub async fn verify(app: &Shared, headers: &HeaderMap, peer: SocketAddr) -> Response<Body> {
    let path = original_path(app, headers, peer);
    let route = match app.routes.find(original_host(app, headers, peer), path) {
        Found::Route(r) => r,
        // Not ours to allow: nginx shows 403 (anything but 2xx/401/403 would be its 500).
        Found::NotServed | Found::Ambiguous => {
            app.metrics.verify("forbidden");
            return response::status(StatusCode::FORBIDDEN);
        }
    };
    let (decision, set_cookie) = app.decide(route, path, headers).await;
    let mut resp = match decision {
        Decision::Allow(s) => {
            app.metrics.verify("ok");
            identity_answer(app, route, Some(&s))
        }
        Decision::Skip(s) => {
            app.metrics.verify("skip");
            identity_answer(app, route, s.as_ref())
        }
        Decision::Forbidden(s) => {
            app.metrics.verify("forbidden");
            let client = app.trusted.client_ip(peer, headers);
            app.audit.record(
                Event::new("denied")
                    .session(&s)
                    .client(client, headers)
                    .reason(crate::audit::denied_reason(path.unwrap_or("?"))),
            );
            response::status(StatusCode::FORBIDDEN)
        }
        Decision::Unauthenticated => {
            app.metrics.verify("unauthenticated");
            response::status(StatusCode::UNAUTHORIZED)
        }
        Decision::StoreDown(e) => app.store_unavailable(false, &e),
    };
    if let Some(c) = set_cookie {
        response::set_cookie(&mut resp, &c);
    }
    resp
}

/// 200 with every configured identity header (and the assertion header): the user's values,
/// empty when there is no user or no such value (or assertions are off) — web servers that
/// copy them (Caddy's copy_headers) then overwrite the client's own with nothing instead of
/// passing them on.
fn identity_answer(app: &Shared, route: &Route, session: Option<&Session>) -> Response<Body> {
    let mut resp = response::status(StatusCode::OK);
    let h = resp.headers_mut();
    if let Some(s) = session {
        for (name, value) in route.identity.values(s) {
            h.insert(name.clone(), value);
        }
    }
    // Every name we own (on any route) is answered, empty when there is no value: nginx
    // copies each one, replacing whatever the client sent.
    for name in app.routes.all_headers().names() {
        if !h.contains_key(name) {
            h.insert(name.clone(), HeaderValue::from_static(""));
        }
    }
    // The assertion header is among the names above (empty unless signed here).
    if let (Some(a), Some(s)) = (&app.assertion, session) {
        if let Some(token) = a.token_for(s, &route.audience) {
            resp.headers_mut().insert(a.header().clone(), token);
        }
    }
    resp
}

/// `GET {prefix}/jwks.json`: the public keys that verify the assertion (current, then earlier
/// ones still trusted), cacheable for five minutes; 404 while assertions are off.
pub fn jwks(app: &Shared) -> Response<Body> {
    let Some(a) = &app.assertion else {
        return response::text(
            StatusCode::NOT_FOUND,
            "not found ([assertion] enabled is false)\n",
        );
    };
    let mut resp = Response::new(response::full(a.jwks()));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// The path (no query) of the request the front server is asking about, as it reports it —
/// only when the asking peer is in `trusted_proxies`. With `verify.uri_header` set, that one
/// header, present once; with `auto`, `X-Original-URI` (nginx) and `X-Forwarded-Uri` (Caddy,
/// Traefik), which must agree when both are there: a front server sets one of them and may
/// pass a client's copy of the other through.
pub fn original_path<'a>(
    app: &Shared,
    headers: &'a HeaderMap,
    peer: SocketAddr,
) -> Option<&'a str> {
    if !app.trusted.trusts(peer.ip()) {
        return None;
    }
    let path = |v: &'a HeaderValue| -> Option<&'a str> {
        let uri = v.to_str().ok()?;
        uri.split(['?', '#']).next()
    };
    let names: &[&HeaderName] = match &app.uri_header {
        Some(name) => &[name],
        None => &[&X_ORIGINAL_URI, &X_FORWARDED_URI],
    };
    let mut found: Option<&str> = None;
    for name in names {
        for value in headers.get_all(*name) {
            let p = path(value)?;
            match found {
                Some(prior) if prior != p => {
                    tracing::debug!("verify: the front server's URI headers disagree");
                    return None;
                }
                _ => found = Some(p),
            }
        }
    }
    found
}

/// The host the front server asks about: its `X-Forwarded-Host` when the peer is trusted,
/// else the request's own `Host` (nginx's `auth_request` subrequest keeps the original one).
pub fn original_host<'a>(
    app: &Shared,
    headers: &'a HeaderMap,
    peer: SocketAddr,
) -> Option<&'a str> {
    if !app.routes.by_host() {
        return None;
    }
    let forwarded = app
        .trusted
        .trusts(peer.ip())
        .then(|| headers.get("x-forwarded-host")?.to_str().ok())
        .flatten();
    match forwarded {
        Some(h) => crate::route::host_only(h.split(',').next().unwrap_or(h).trim()),
        None => crate::route::request_host(headers),
    }
}

/// nginx's conventional header for the original request URI (`$request_uri`).
pub static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
/// Caddy's and Traefik's header for the original request URI.
pub static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// `GET {prefix}/userinfo`: the session user as JSON, or 401 JSON.
pub async fn userinfo(app: &Shared, headers: &HeaderMap) -> Response<Body> {
    let (session, set_cookie) = match app.current_session(headers).await {
        Ok(current) => current,
        Err(e) => return app.store_unavailable(false, &e),
    };
    let mut resp = userinfo_answer(app, session);
    if let Some(c) = set_cookie {
        response::set_cookie(&mut resp, &c);
    }
    resp
}

fn userinfo_answer(app: &Shared, session: Option<Session>) -> Response<Body> {
    match session {
        Some(s) => {
            let mut body = serde_json::Map::new();
            for f in FIELDS {
                body.insert(f.json.into(), f.field.json(&s.user));
            }
            body.insert("issued_at".into(), json!(s.issued_at));
            body.insert("expires_at".into(), json!(s.expires_at));
            response::json(StatusCode::OK, &serde_json::Value::Object(body))
        }
        None => app.unauthenticated_json("/"),
    }
}

/// `GET|POST {prefix}/logout?rd=`: ends the session in the store, then 302 to `rd` or the
/// signed-out page. When the store cannot be reached the browser's copy is still deleted, and
/// the answer is 503 (the session may live on elsewhere until the store is back).
pub async fn logout(
    app: &Shared,
    headers: &HeaderMap,
    query: Option<&str>,
    client: IpAddr,
) -> Response<Body> {
    // Who is leaving, for the metrics and the audit trail.
    let leaving = app.sessions.load(headers).await.ok().flatten();
    let clear = match app.sessions.end(headers).await {
        Ok(clear) => clear,
        Err(e) => {
            let mut resp = app.store_unavailable(false, &e);
            response::set_cookie(&mut resp, &app.sessions.clear_cookie());
            return resp;
        }
    };
    if let Some(s) = leaving {
        app.metrics.sessions_ended("logout", 1);
        app.audit
            .record(Event::new("logout").session(&s).client(client, headers));
    }
    let mut resp = match query_param(query, "rd") {
        Some(rd) => response::redirect(&app.checked_rd(Some(&rd))),
        None => pages::signed_out(&app.login_url("/", false)),
    };
    response::set_cookie(&mut resp, &clear);
    if let Some(old) = app.codec().clear_host_only_session_cookie() {
        response::set_cookie(&mut resp, &old);
    }
    for clear in app.codec().clear_all_login_states(headers) {
        response::set_cookie(&mut resp, &clear);
    }
    resp
}

/// Dispatches a request under the auth prefix; `rest` is the path after the prefix.
pub async fn handle(
    app: &Shared,
    method: &Method,
    rest: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    peer: SocketAddr,
) -> Response<Body> {
    let get = method == Method::GET || method == Method::HEAD;
    match rest {
        "/healthz" if get => response::text(StatusCode::OK, "ok"),
        "/verify" if get => verify(app, headers, peer).await,
        "/login" if get => login(app, headers, query).await,
        "/callback" if get => {
            let client = app.trusted.client_ip(peer, headers);
            callback(app, headers, query, client).await
        }
        "/userinfo" if get => userinfo(app, headers).await,
        "/jwks.json" if get => jwks(app),
        "/logout" if get || method == Method::POST => {
            let client = app.trusted.client_ip(peer, headers);
            logout(app, headers, query, client).await
        }
        "/healthz" | "/verify" | "/login" | "/callback" | "/userinfo" | "/logout"
        | "/jwks.json" => {
            let mut r = response::status(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        _ => response::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ua(s: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(USER_AGENT, HeaderValue::from_str(s).unwrap());
        h
    }

    /// `rd` arrives encoded from us, raw from nginx/Caddy; both keep the whole query.
    #[test]
    fn rd_forms() {
        assert_eq!(
            login_rd(Some("rd=%2Fa%3Fx%3D1%26y%3D2&flow=qr")),
            "/a?x=1&y=2"
        );
        assert_eq!(login_rd(Some("rd=/a?x=1&y=2")), "/a?x=1&y=2");
        assert_eq!(login_rd(Some("rd=//evil.com")), "/");
        assert_eq!(login_rd(Some("rd=%2F%2Fevil.com")), "/");
        assert_eq!(login_rd(None), "/");
    }

    /// The DingTalk client is recognised in any case; the link-preview crawler is not a user.
    #[test]
    fn classifies_user_agents() {
        let mobile = "Mozilla/5.0 (Linux; Android 13) AliApp(DingTalk/7.6.0) DingTalk/7.6.0";
        assert_eq!(client_kind(&ua(mobile)), ClientKind::DingTalk);
        assert_eq!(
            client_kind(&ua("Mozilla/5.0 dingtalk-win/1.0")),
            ClientKind::DingTalk
        );
        assert_eq!(
            client_kind(&ua("DingTalk-LinkService/1.0")),
            ClientKind::LinkPreview
        );
        assert_eq!(
            client_kind(&ua("Mozilla/5.0 Chrome/120")),
            ClientKind::Browser
        );
        assert_eq!(client_kind(&HeaderMap::new()), ClientKind::Browser);
    }
}
