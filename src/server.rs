//! The server: the routing of each request between our own endpoints and the upstream —
//! strip → decide → forward, in one top-down function — and the listeners.

use std::future::Future;
use std::net::SocketAddr;

use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use tracing::Instrument;

use crate::app::{is_navigation, App, Decision};
use crate::audit::Event;
use crate::config::LimitsConfig;
use crate::conn;
use crate::login;
use crate::pages;
use crate::proxy::Forward;
use crate::request_id;
use crate::response::{self, Body};
use crate::route::{self, Found, Route};

impl App {
    /// Handles one request from `peer`: gives it a request id (kept from the client when
    /// sane), routes it inside a `request` span so every log line names the id, and returns
    /// the id with the answer.
    pub async fn handle(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let id = request_id::ensure(req.headers_mut());
        // `ensure` only returns visible ASCII, so `to_str` does not fail.
        let span = tracing::info_span!("request", id = id.to_str().unwrap_or("-"));
        let mut resp = self.route(req, peer).instrument(span).await;
        resp.headers_mut()
            .insert(request_id::X_REQUEST_ID.clone(), id);
        resp
    }

    async fn route(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        // HTTP/2 names the host in the URI: give it a `Host` like HTTP/1.1, which routes,
        // logins and the upstream read.
        if !req.headers().contains_key(http::header::HOST) {
            if let Some(host) = req
                .uri()
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            {
                req.headers_mut().insert(http::header::HOST, host);
            }
        }
        // One config for the whole request, even if a reload happens meanwhile.
        let app = self.shared();
        let app = &*app;
        let prefix = app.config.auth_prefix.as_str();
        let path = req.uri().path();
        if let Some(rest) = path.strip_prefix(prefix) {
            if rest.is_empty() || rest.starts_with('/') {
                app.metrics.request("auth");
                let (method, headers, query) = (req.method(), req.headers(), req.uri().query());
                return login::handle(app, method, rest, headers, query, peer).await;
            }
        }
        // 1. Never let a client speak for the user: every header any route trusts goes.
        app.routes.all_headers().strip(req.headers_mut());
        let host = if app.routes.by_host() {
            route::request_host(req.headers())
        } else {
            None
        };
        let route = match app.routes.find(host, Some(req.uri().path())) {
            Found::Route(r) => r,
            // The login host's own front page (where a refused `rd` lands), when no app is
            // routed there: say where the user is instead of "not served".
            Found::NotServed
                if req.uri().path() == "/"
                    && app.on_login_host(req.headers())
                    && is_navigation(req.method(), req.headers()) =>
            {
                app.metrics.request("not_found");
                return pages::login_host_home();
            }
            Found::NotServed => {
                app.metrics.request("not_found");
                let host = host.unwrap_or("-");
                return if is_navigation(req.method(), req.headers()) {
                    pages::not_served(host)
                } else {
                    response::text_owned(
                        StatusCode::NOT_FOUND,
                        format!("not found: no route serves host {host} at this path\n"),
                    )
                };
            }
            Found::Ambiguous => {
                app.metrics.request("bad_request");
                return response::text(
                    StatusCode::BAD_REQUEST,
                    "bad request: this path reads as another route's to the app server; send it in plain form\n",
                );
            }
        };
        let Some(upstream) = &route.upstream else {
            app.metrics.request("not_found");
            return response::text(
                StatusCode::NOT_FOUND,
                "not found (auth-only mode: only the auth endpoints are served)\n",
            );
        };
        let forwarded_for = app.trusted.forwarded_for(peer, req.headers());
        // 2. One decision, on the request's own path (never its query or forwarded headers).
        let (decision, set_cookie) = app
            .decide(route, Some(req.uri().path()), req.headers())
            .await;
        let session = match decision {
            Decision::Skip(session) => {
                app.metrics.request("skipped");
                session
            }
            Decision::Allow(session) => {
                app.metrics.request("proxied");
                Some(session)
            }
            Decision::Forbidden(session) => {
                app.metrics.request("forbidden");
                let client = app.trusted.client_ip(peer, req.headers());
                app.audit.record(
                    Event::new("denied")
                        .session(&session)
                        .client(client, req.headers())
                        .reason(crate::audit::denied_reason(req.uri().path())),
                );
                return pages::forbidden(session.userid());
            }
            Decision::StoreDown(e) => {
                return app.store_unavailable(is_navigation(req.method(), req.headers()), &e);
            }
            Decision::Unauthenticated => {
                let mut resp = app.unauthenticated(req.method(), req.headers(), req.uri());
                if let Some(c) = set_cookie {
                    response::set_cookie(&mut resp, &c);
                }
                return resp;
            }
        };
        // 3. Forward, with this route's identity headers (and the signed assertion, when on)
        // set after hop-by-hop stripping.
        let assertion = app
            .assertion
            .as_ref()
            .and_then(|a| Some((a.header(), a.token_for(session.as_ref()?, &route.audience)?)));
        let set = |h: &mut HeaderMap| {
            if let Some(s) = &session {
                route.identity.apply(h, s);
            }
            if let Some((name, token)) = &assertion {
                h.insert((*name).clone(), token.clone());
            }
        };
        let fwd = Forward {
            forwarded_for,
            identity: Some(&set),
        };
        let (navigation, uri) = (
            is_navigation(req.method(), req.headers()),
            req.uri().clone(),
        );
        if route.strip_prefix {
            match stripped_uri(route, req.uri()) {
                Some(u) => *req.uri_mut() = u,
                None => {
                    return response::text(StatusCode::BAD_REQUEST, "bad request: path\n");
                }
            }
        }
        let started = std::time::Instant::now();
        let mut resp = match upstream.forward(req, fwd).await {
            Ok(resp) => {
                app.metrics.upstream(started.elapsed());
                resp
            }
            Err(e) => app.upstream_failed(&e, navigation, &uri),
        };
        if let Some(c) = set_cookie {
            response::set_cookie(&mut resp, &c);
        }
        resp
    }
}

/// The request's URI with the route's prefix taken off its path (the query kept).
fn stripped_uri(route: &Route, uri: &http::Uri) -> Option<http::Uri> {
    let path = route.upstream_path(uri.path());
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.into_owned(),
    };
    http::uri::PathAndQuery::try_from(pq)
        .ok()
        .map(http::Uri::from)
}

/// Serves `app` on `listener` until `shutdown` completes, then drains open connections
/// (see [`conn`](crate::conn) for the limits every connection is held to).
pub async fn serve(listener: TcpListener, app: App, shutdown: impl Future<Output = ()>) {
    let limits = app.shared().config.limits.clone();
    let handler = app.clone();
    let handle = move |req, peer| {
        let app = handler.clone();
        async move { app.handle(req, peer).await }
    };
    let rejected = move || app.shared().metrics.connection_rejected();
    conn::serve(listener, &limits, handle, rejected, shutdown).await;
}

/// Serves `/metrics`, `/healthz` and `/readyz` on the admin listener until `shutdown`. The
/// same limits apply, except the connection cap: health checks must get through.
pub async fn serve_admin(listener: TcpListener, app: App, shutdown: impl Future<Output = ()>) {
    let limits = LimitsConfig {
        max_connections: 0,
        ..app.shared().config.limits.clone()
    };
    let handle = move |req: Request<Incoming>, _peer| {
        let app = app.clone();
        async move {
            match req.uri().path() {
                "/metrics" => {
                    let mut r = Response::new(response::full(app.shared().metrics.render()));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    r
                }
                "/healthz" => response::text(StatusCode::OK, "ok\n"),
                // Ready when the session store answers (always, for the cookie store).
                "/readyz" => match app.shared().sessions.ready().await {
                    Ok(()) => response::text(StatusCode::OK, "ok\n"),
                    Err(e) => {
                        response::text_owned(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"))
                    }
                },
                _ => response::text(StatusCode::NOT_FOUND, "not found\n"),
            }
        }
    };
    conn::serve(listener, &limits, handle, || {}, shutdown).await;
}
