//! Response building blocks shared by the proxy's own endpoints: the body type, redirects,
//! JSON answers and the security headers every page of ours carries.

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_TYPE, LOCATION, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Errors a response body can fail with (upstream bodies fail when the upstream does).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response we send: ours are in memory, upstream ones stream.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body with these bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A response with `status`, an empty body, and the headers of [`no_store`].
pub fn status(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    no_store(&mut r);
    r
}

/// `302 Found` to `location` (which we built, so it is a valid header value or `/`).
pub fn redirect(location: &str) -> Response<Body> {
    let mut r = status(StatusCode::FOUND);
    let value = HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/"));
    r.headers_mut().insert(LOCATION, value);
    r
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    no_store(&mut r);
    r
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    no_store(&mut r);
    r
}

/// A plain-text response with an owned body.
pub fn text_owned(status: StatusCode, body: String) -> Response<Body> {
    let mut r = text(status, "");
    *r.body_mut() = full(body);
    r
}

/// An HTML page with `Cache-Control: no-store`, a CSP, and no referrer leaking our URLs.
pub fn html(status: StatusCode, body: String, csp: &str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert("content-security-policy", v);
    }
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    no_store(&mut r);
    r
}

/// Adds a `Set-Cookie` header (values are built by `CookieCodec`, always valid).
pub fn set_cookie(r: &mut Response<Body>, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(http::header::SET_COOKIE, v);
    }
}

/// What every response of our own carries: never cached (they depend on cookies), never
/// sniffed into another type, and never a `Referer` from our URLs (a callback URL holds the
/// OAuth code).
fn no_store(r: &mut Response<Body>) {
    let h = r.headers_mut();
    // Room for these and the few an answer of ours adds: no regrowth of the map.
    h.reserve(12);
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}
