//! Routes: which app behind the proxy a request is for (`[[routes]]`, or the top-level
//! `upstream` as the one route), and what each route sends and allows — its identity header
//! names, its `[access]` policy, its upstream and the assertion's audience.
//!
//! Matching, as nginx picks a server and then a location: the most specific host rule that
//! matches the request's host (an exact name, then `*.suffix` rules longest suffix first, then
//! routes without a host), then among that host's routes the longest `path_prefix`. No match is
//! [`Found::NotServed`].
//!
//! A path prefix is only as good as the app's reading of the path: `/public/../admin` starts
//! with `/public` here but is `/admin` to Tomcat, nginx or Express; so are `/admin;x`,
//! `/%61dmin` and, on a case-insensitive server, `/ADMIN`. When a host has several routes, the
//! route is also picked for the path as a lenient app server would read it (escapes decoded,
//! `\` as `/`, `;` parameters cut, empty and dot segments resolved) and case-folded; if any
//! reading picks another route the request is [`Found::Ambiguous`] (400), never routed by the
//! spelling that favours the client.

use std::time::Duration;

use url::Url;

use crate::access::Access;
use crate::config::{Config, ConfigError, RouteConfig};
use crate::identity::IdentityHeaders;
use crate::proxy::{ProxyError, Upstream};

/// Which hosts a route serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    /// Every host.
    Any,
    /// One host name (lower case).
    Exact(String),
    /// Every host under this suffix (`*.corp.example` is `.corp.example`), not the bare suffix.
    Under(String),
}

impl HostMatch {
    /// Parses a route's `host`: `oa.corp.example`, `*.corp.example`, or unset.
    pub fn parse(host: Option<&str>) -> HostMatch {
        match host {
            None => HostMatch::Any,
            Some(h) => {
                let h = h.trim_end_matches('.').to_ascii_lowercase();
                match h.strip_prefix('*') {
                    Some(suffix) => HostMatch::Under(suffix.to_string()),
                    None => HostMatch::Exact(h),
                }
            }
        }
    }

    /// True when `host` (no port, any case) is served by this rule.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => host.eq_ignore_ascii_case(h),
            HostMatch::Under(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }

    /// Sort rank: exact names first, then longer suffixes, then any host.
    fn rank(&self) -> (u8, usize) {
        match self {
            HostMatch::Exact(_) => (2, 0),
            HostMatch::Under(s) => (1, s.len()),
            HostMatch::Any => (0, 0),
        }
    }
}

impl std::fmt::Display for HostMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostMatch::Any => f.write_str("*"),
            HostMatch::Exact(h) => f.write_str(h),
            HostMatch::Under(s) => write!(f, "*{s}"),
        }
    }
}

/// One route, compiled.
pub struct Route {
    /// Its position in `[[routes]]` (`routes.len()` for the top-level `upstream`), for logs.
    pub index: usize,
    /// The hosts it serves.
    pub host: HostMatch,
    /// The paths it serves: this and below.
    pub path_prefix: String,
    /// Remove `path_prefix` before forwarding.
    pub strip_prefix: bool,
    /// The app, absent for a `verify`-only route.
    pub upstream: Option<Upstream>,
    /// The upstream's URL as configured.
    pub upstream_url: Option<Url>,
    /// The identity headers this route sends.
    pub identity: IdentityHeaders,
    /// This route's policy.
    pub access: Access,
    /// The assertion's `aud` on this route.
    pub audience: String,
    /// `path_prefix` as a lenient app server reads it ([`lenient_path`]), and that
    /// case-folded: what the other readings of a request's path are compared with.
    lenient_prefix: String,
    folded_prefix: String,
}

impl Route {
    /// True when this route serves `path` (read as it is).
    fn serves_path(&self, path: &str) -> bool {
        prefix_matches(&self.path_prefix, path)
    }

    /// The path sent upstream: with `strip_prefix`, what follows the prefix (`/wiki/x` →
    /// `/x`, `/wiki` → `/`); otherwise `path` itself.
    pub fn upstream_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        if !self.strip_prefix || self.path_prefix == "/" {
            return path.into();
        }
        let rest = path
            .get(self.path_prefix.trim_end_matches('/').len()..)
            .unwrap_or("");
        if rest.starts_with('/') {
            rest.into()
        } else {
            format!("/{rest}").into()
        }
    }
}

/// `prefix` serves `path`: equal, or `path` continues it at a segment boundary.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let Some(rest) = path.strip_prefix(prefix.trim_end_matches('/')) else {
        return false;
    };
    rest.is_empty() || rest.starts_with('/')
}

/// What the route table says about a request.
pub enum Found<'a> {
    /// This route serves it.
    Route(&'a Route),
    /// No route serves this host and path.
    NotServed,
    /// The path reads as another route's to a lenient app server: refused (400).
    Ambiguous,
}

/// The compiled route table, in match order.
pub struct Routes {
    routes: Vec<Route>,
    /// Every identity header name of every route (and the assertion header): what is
    /// stripped from every client request, whichever route it is for.
    all_headers: IdentityHeaders,
    /// Some route names a host (else the host is never looked at).
    by_host: bool,
    /// The top-level `[access]`, for a login whose `rd` no route serves.
    default_access: Access,
}

impl Routes {
    /// Compiles `config`'s routes: `[[routes]]`, else the top-level `upstream` (or auth-only
    /// mode) as one route for every host and path. `assertion_header` is owned by every route.
    pub fn from_config(
        config: &Config,
        assertion_header: &http::HeaderName,
    ) -> Result<Routes, ConfigError> {
        let invalid = |key: String, e: &dyn std::fmt::Display| ConfigError::Invalid {
            key,
            message: e.to_string(),
        };
        // The top-level `upstream` (or auth-only mode) is the route for every host and path;
        // beside `[[routes]]` it is the default route, after theirs (index `routes.len()`).
        let mut entries: Vec<RouteConfig> = config.routes.clone();
        if config.routes.is_empty() || config.upstream.is_some() {
            entries.push(RouteConfig {
                upstream: config.upstream.clone(),
                ..RouteConfig::default()
            });
        }
        let mut routes = Vec::new();
        let mut all_headers =
            IdentityHeaders::new(&config.headers).map_err(|e| invalid("headers".into(), &e))?;
        for (i, rc) in entries.iter().enumerate() {
            let key = |k: &str| {
                if i >= config.routes.len() {
                    k.to_string()
                } else {
                    format!("routes[{i}].{k}")
                }
            };
            let headers = rc.headers.over(&config.headers);
            let identity = IdentityHeaders::new(&headers)
                .map_err(|e| invalid(key("headers"), &e))?
                .also_strip(assertion_header);
            for name in identity.names() {
                if !all_headers.is_ours(name) {
                    all_headers = all_headers.also_strip(name);
                }
            }
            let access = Access::new(&config.access.merged(&rc.access))
                .map_err(|e| invalid(key("access.skip_auth"), &e))?;
            let upstream = match &rc.upstream {
                Some(url) => Some(
                    upstream(config, url, config.upstream_timeout)
                        .map_err(|e| invalid(key("upstream"), &e))?,
                ),
                None => None,
            };
            let audience = match (&config.assertion.audience, &rc.upstream) {
                (Some(aud), _) => aud.clone(),
                (None, Some(u)) => u.origin().ascii_serialization(),
                (None, None) => config.public_origin_only(),
            };
            let lenient_prefix = lenient_path(&rc.path_prefix);
            routes.push(Route {
                folded_prefix: lenient_prefix.to_ascii_lowercase(),
                lenient_prefix,
                index: i,
                host: HostMatch::parse(rc.host.as_deref()),
                path_prefix: rc.path_prefix.clone(),
                strip_prefix: rc.strip_prefix,
                upstream,
                upstream_url: rc.upstream.clone(),
                identity,
                access,
                audience,
            });
        }
        if !all_headers.is_ours(assertion_header) {
            all_headers = all_headers.also_strip(assertion_header);
        }
        // Match order: host rank, then the host text (a host's routes side by side), then the
        // longest prefix.
        routes.sort_by(|a, b| {
            b.host
                .rank()
                .cmp(&a.host.rank())
                .then_with(|| a.host.to_string().cmp(&b.host.to_string()))
                .then_with(|| b.path_prefix.len().cmp(&a.path_prefix.len()))
        });
        let by_host = routes.iter().any(|r| r.host != HostMatch::Any);
        let default_access =
            Access::new(&config.access).map_err(|e| invalid("access.skip_auth".into(), &e))?;
        Ok(Routes {
            routes,
            all_headers,
            by_host,
            default_access,
        })
    }

    /// Every route, in match order.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The top-level `[access]`.
    pub fn default_access(&self) -> &Access {
        &self.default_access
    }

    /// The union of every route's identity headers: stripped from every request.
    pub fn all_headers(&self) -> &IdentityHeaders {
        &self.all_headers
    }

    /// True when some route is chosen by host (the request's host must then be read).
    pub fn by_host(&self) -> bool {
        self.by_host
    }

    /// True when some route serves `host` (any path).
    pub fn serves_host(&self, host: &str) -> bool {
        self.routes.iter().any(|r| r.host.matches(host))
    }

    /// The route for `host` (no port; `None`: no host given) and `path` (no query). Without
    /// a path (a `verify` whose front server sent no URI) only a host with one route has one.
    pub fn find(&self, host: Option<&str>, path: Option<&str>) -> Found<'_> {
        let group = self.host_group(host.unwrap_or(""));
        let Some(first) = group.first() else {
            return Found::NotServed;
        };
        let Some(path) = path else {
            return match group {
                [only] => Found::Route(only),
                _ => Found::Ambiguous,
            };
        };
        let pick = |p: &str| group.iter().position(|r| r.serves_path(p));
        let Some(chosen) = pick(path) else {
            return Found::NotServed;
        };
        if group.len() > 1 {
            // Path and prefixes read the same lenient way (an escaped prefix decoded as the
            // path is), then also case-folded.
            let lenient = lenient_path(path);
            let folded = lenient.to_ascii_lowercase();
            let pick_by = |p: &str, prefix: fn(&Route) -> &str| {
                group.iter().position(|r| prefix_matches(prefix(r), p))
            };
            if pick_by(&lenient, |r| &r.lenient_prefix) != Some(chosen)
                || pick_by(&folded, |r| &r.folded_prefix) != Some(chosen)
            {
                tracing::info!(
                    route = first.index,
                    "path reads as another route's: refused"
                );
                return Found::Ambiguous;
            }
        }
        Found::Route(&group[chosen])
    }

    /// The routes of the most specific host rule that matches `host`.
    fn host_group(&self, host: &str) -> &[Route] {
        let Some(start) = self.routes.iter().position(|r| r.host.matches(host)) else {
            return &[];
        };
        let spec = &self.routes[start].host;
        let len = self.routes[start..]
            .iter()
            .take_while(|r| &r.host == spec)
            .count();
        &self.routes[start..start + len]
    }
}

/// The route table as the proxy uses it, for `check-config`: one block per route in match
/// order (host, path, upstream, header names, policy), as `#` comment lines; passwords in
/// upstream URLs masked. Empty for a config that does not compile.
pub fn table(config: &Config) -> String {
    use std::fmt::Write;
    let h = http::HeaderName::from_bytes(config.assertion.header.as_bytes())
        .unwrap_or_else(|_| http::HeaderName::from_static("x-dingtalk-assertion"));
    let Ok(routes) = Routes::from_config(config, &h) else {
        return String::new();
    };
    let mut out =
        String::from("# routes, in match order (most specific host, then longest path_prefix):\n");
    for r in routes.iter() {
        let rc = config.routes.get(r.index);
        let source = match rc {
            Some(_) => format!("routes[{}]", r.index),
            None => "top-level upstream (default route)".to_string(),
        };
        let upstream = match &r.upstream_url {
            Some(u) => {
                let mut u = u.clone();
                if u.password().is_some() {
                    let _ = u.set_password(Some("redacted"));
                }
                u.to_string().replace(":redacted@", ":<redacted>@")
            }
            None => "(none: verify only)".to_string(),
        };
        let _ = writeln!(
            out,
            "#   {source}: host {} path {}{} -> {upstream}",
            r.host,
            r.path_prefix,
            if r.strip_prefix {
                " (prefix stripped)"
            } else {
                ""
            },
        );
        let headers = rc.map_or_else(
            || config.headers.clone(),
            |rc| rc.headers.over(&config.headers),
        );
        let names: Vec<String> = headers
            .named()
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let _ = writeln!(out, "#     headers: {}", names.join(", "));
        let access = rc.map_or_else(
            || config.access.clone(),
            |rc| config.access.merged(&rc.access),
        );
        let depts: Vec<String> = access.allow_dept_ids.iter().map(i64::to_string).collect();
        let who = match (access.allow_userids.is_empty(), depts.is_empty()) {
            (true, true) => "everyone in the organisation".to_string(),
            (false, true) => format!("only userids {}", access.allow_userids.join(", ")),
            (true, false) => format!("only departments {}", depts.join(", ")),
            (false, false) => format!(
                "only userids {} or departments {}",
                access.allow_userids.join(", "),
                depts.join(", ")
            ),
        };
        let skip = if access.skip_auth.is_empty() {
            "none".to_string()
        } else {
            access.skip_auth.join(" ")
        };
        let _ = writeln!(out, "#     access: {who}; skip_auth {skip}");
    }
    if config.auth_host.is_some() {
        let _ = writeln!(
            out,
            "# logins at {} (register {}{}/callback at DingTalk); session cookie Domain={}",
            config.login_origin(),
            config.login_origin(),
            config.auth_prefix,
            config.session.cookie_domain.trim_start_matches('.'),
        );
    }
    out
}

fn upstream(config: &Config, url: &Url, timeout: Duration) -> Result<Upstream, ProxyError> {
    Upstream::new(
        url,
        timeout,
        config.secure_cookies(),
        &config.session.cookie_name,
        config.limits.max_body_bytes,
    )
}

/// The request's host, without port or trailing dot, from `Host` (which the server sets from
/// the URI's authority for HTTP/2). `None` when there is none or it is not a plain host name.
pub fn request_host(headers: &http::HeaderMap) -> Option<&str> {
    host_only(headers.get(http::header::HOST)?.to_str().ok()?)
}

/// `host[:port]` → `host` (an IPv6 literal keeps its brackets); `None` for anything that is
/// not made of host-name characters.
pub fn host_only(raw: &str) -> Option<&str> {
    let host = if raw.starts_with('[') {
        &raw[..=raw.find(']')?]
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.trim_end_matches('.');
    let plain = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
    (plain && !host.is_empty()).then_some(host)
}

/// `path` as the most lenient app servers read it: every `%` escape decoded, `\` as `/`,
/// `;` parameters cut from each segment (Tomcat, Spring), empty and `.` segments dropped and
/// `..` resolved. Only used to detect a path that another reading would route elsewhere.
pub fn lenient_path(path: &str) -> String {
    let decoded: Vec<u8> = percent_encoding::percent_decode(path.as_bytes()).collect();
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || decoded.ends_with('/') {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(routes: &[(&str, &str)]) -> Config {
        Config {
            routes: routes
                .iter()
                .map(|(host, prefix)| RouteConfig {
                    host: (!host.is_empty()).then(|| host.to_string()),
                    path_prefix: prefix.to_string(),
                    upstream: Url::parse("http://127.0.0.1:1").ok(),
                    ..RouteConfig::default()
                })
                .collect(),
            ..Config::default()
        }
    }

    fn table(routes: &[(&str, &str)]) -> Routes {
        let h = http::HeaderName::from_static("x-dingtalk-assertion");
        Routes::from_config(&config(routes), &h).unwrap()
    }

    /// The index (in `[[routes]]`) of the route found, or `-1` / `-2` for not served /
    /// ambiguous.
    fn found(t: &Routes, host: &str, path: &str) -> i64 {
        match t.find(Some(host), Some(path)) {
            Found::Route(r) => r.index as i64,
            Found::NotServed => -1,
            Found::Ambiguous => -2,
        }
    }

    /// Exact host before wildcard before any host; then the longest prefix; a host's own
    /// routes never fall through to a less specific host's.
    #[test]
    fn most_specific_host_then_longest_prefix() {
        let t = table(&[
            ("oa.corp.example", "/"),
            ("*.corp.example", "/"),
            ("", "/"),
            ("wiki.corp.example", "/"),
            ("wiki.corp.example", "/api"),
            ("*.b.corp.example", "/"),
            ("api.corp.example", "/v1"),
        ]);
        assert_eq!(found(&t, "oa.corp.example", "/x"), 0);
        assert_eq!(found(&t, "OA.Corp.Example", "/x"), 0);
        assert_eq!(found(&t, "x.corp.example", "/x"), 1);
        assert_eq!(found(&t, "x.b.corp.example", "/x"), 5);
        assert_eq!(found(&t, "corp.example", "/x"), 2);
        assert_eq!(found(&t, "elsewhere.test", "/x"), 2);
        assert_eq!(found(&t, "wiki.corp.example", "/api"), 4);
        assert_eq!(found(&t, "wiki.corp.example", "/api/x"), 4);
        assert_eq!(found(&t, "wiki.corp.example", "/apix"), 3);
        assert_eq!(found(&t, "api.corp.example", "/v1/x"), 6);
        assert_eq!(found(&t, "api.corp.example", "/v2"), -1);
    }

    /// No route for the host: not served.
    #[test]
    fn unrouted_host() {
        let t = table(&[("oa.corp.example", "/"), ("*.corp.example", "/")]);
        assert_eq!(found(&t, "evil.test", "/"), -1);
        assert_eq!(found(&t, "corp.example", "/"), -1);
        assert_eq!(found(&t, "xcorp.example", "/"), -1);
        assert!(matches!(t.find(None, Some("/")), Found::NotServed));
    }

    /// Spellings that an app server reads as another route's path are refused, however they
    /// are written; plain paths and Tomcat's `;jsessionid` inside one route pass.
    #[test]
    fn other_readings_are_ambiguous() {
        let t = table(&[("", "/"), ("", "/admin")]);
        for bad in [
            "/public/../admin",
            "/public/..;/admin",
            "/%61dmin",
            "/ADMIN",
            "/Admin/x",
            "//admin",
            "/./admin",
            "/admin;x",
            "/public/%2e%2e/admin",
            "/public\\..\\admin",
            "/x/..%2fadmin",
        ] {
            assert_eq!(found(&t, "h", bad), -2, "{bad}");
        }
        assert_eq!(found(&t, "h", "/admin/x;jsessionid=1"), 1);
        assert_eq!(found(&t, "h", "/app/page;jsessionid=1"), 0);
        assert_eq!(found(&t, "h", "/admin/../admin/x"), 1);
        assert_eq!(found(&t, "h", "/public/x"), 0);
        // A prefix with an escape is read the lenient way too: its own paths are not ambiguous.
        let escaped = table(&[("", "/"), ("", "/a%20b")]);
        assert_eq!(found(&escaped, "h", "/a%20b/x"), 1);
        assert_eq!(found(&escaped, "h", "/a%20b"), 1);
        assert_eq!(found(&escaped, "h", "/x/../a%20b/x"), -2);
        // One route: nothing to confuse it with.
        let one = table(&[("", "/")]);
        assert_eq!(found(&one, "h", "/public/../admin"), 0);
    }

    /// Beside `[[routes]]`, the top-level `upstream` is the default route: it takes the hosts
    /// no route names, never a named host's unmatched paths.
    #[test]
    fn top_level_upstream_is_the_default_route() {
        let mut c = config(&[("oa.corp.example", "/app")]);
        c.upstream = Url::parse("http://127.0.0.1:2").ok();
        let h = http::HeaderName::from_static("x-dingtalk-assertion");
        let t = Routes::from_config(&c, &h).unwrap();
        assert_eq!(found(&t, "oa.corp.example", "/app/x"), 0);
        assert_eq!(found(&t, "elsewhere.example", "/x"), 1);
        assert_eq!(found(&t, "oa.corp.example", "/other"), -1);
        assert!(super::table(&c)
            .contains("top-level upstream (default route): host * path / -> http://127.0.0.1:2/"));
    }

    /// `strip_prefix` keeps a path that starts with `/`.
    #[test]
    fn strip_prefix() {
        let mut c = config(&[("", "/wiki")]);
        c.routes[0].strip_prefix = true;
        let h = http::HeaderName::from_static("x-dingtalk-assertion");
        let t = Routes::from_config(&c, &h).unwrap();
        let r = t.iter().next().unwrap();
        assert_eq!(r.upstream_path("/wiki/x/y"), "/x/y");
        assert_eq!(r.upstream_path("/wiki"), "/");
        assert_eq!(r.upstream_path("/wiki/"), "/");
    }

    /// Host values: ports and trailing dots go; junk is no host.
    #[test]
    fn hosts() {
        assert_eq!(host_only("oa.corp.example:8443"), Some("oa.corp.example"));
        assert_eq!(host_only("oa.corp.example."), Some("oa.corp.example"));
        assert_eq!(host_only("[::1]:80"), Some("[::1]"));
        assert_eq!(host_only("a b"), None);
        assert_eq!(host_only("a:b"), None);
        assert_eq!(host_only(""), None);
    }

    /// The lenient reading resolves what app servers resolve.
    #[test]
    fn lenient_reading() {
        assert_eq!(lenient_path("/a/../b"), "/b");
        assert_eq!(lenient_path("/a/..;/b;x/c"), "/b/c");
        assert_eq!(lenient_path("/%2e%2e/%61"), "/a");
        assert_eq!(lenient_path("/a/"), "/a/");
        assert_eq!(lenient_path("/../.."), "/");
    }
}
