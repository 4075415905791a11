//! Validation of what types alone cannot check: lengths, schemes, regexes, header names.

use super::*;

impl Config {
    /// Checks what types alone cannot: lengths, schemes, regexes, header names. Returns the
    /// one problem, or [`ConfigError::Several`] listing all of them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::from_list(self.problems())
    }

    /// Every problem [`Config::validate`] would report, each naming its key and the fix.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: String| out.push(ConfigError::key(key, message));
        let secret = self.session.secret.expose();
        if secret.is_empty() {
            bad(
                "session.secret",
                format!("is required: at least 32 random bytes, e.g. {MAKE_SECRET} (set DAP_SESSION__SECRET or secret under [session])"),
            );
        } else if secret.len() < 32 {
            bad(
                "session.secret",
                format!(
                    "is {} bytes; it must be at least 32: make one with {MAKE_SECRET}",
                    secret.len()
                ),
            );
        }
        for (i, prev) in self.session.previous_secrets.iter().enumerate() {
            let len = prev.expose().len();
            if len < 32 {
                bad(
                    &format!("session.previous_secrets[{i}]"),
                    format!("is {len} bytes; like session.secret it must be at least 32 (a secret this short was never accepted), or remove it"),
                );
            }
        }
        for (key, value, what) in [
            (
                "dingtalk.app_key",
                self.dingtalk.app_key.as_str(),
                "the app's AppKey (Client ID) from the DingTalk developer console",
            ),
            (
                "dingtalk.app_secret",
                self.dingtalk.app_secret.expose(),
                "the app's AppSecret (Client Secret) from the DingTalk developer console",
            ),
            (
                "dingtalk.corp_id",
                self.dingtalk.corp_id.as_str(),
                "your organisation's CorpId (ding…), shown in the DingTalk developer console",
            ),
        ] {
            if value.trim().is_empty() {
                let (section, leaf) = key.split_once('.').unwrap_or(("", key));
                bad(
                    key,
                    format!(
                        "is required: {what} (set {} or {leaf} under [{section}])",
                        env_name(key)
                    ),
                );
            }
        }
        if let Some(up) = &self.upstream {
            if let Some(fix) = upstream_problem(up) {
                bad("upstream", fix);
            }
        }
        if let Some(p) = &self.public_url {
            if let Some(fix) = missing_scheme(p, "https") {
                bad("public_url", fix);
            } else if !matches!(p.scheme(), "http" | "https") || p.host_str().is_none() {
                bad(
                    "public_url",
                    format!(
                        "`{}` must be an http:// or https:// origin, e.g. https://app.example.com",
                        masked_url(p)
                    ),
                );
            }
        }
        for (key, url) in [
            ("dingtalk.api_base", &self.dingtalk.api_base),
            ("dingtalk.new_api_base", &self.dingtalk.new_api_base),
            ("dingtalk.login_base", &self.dingtalk.login_base),
            ("dingtalk.jsapi_url", &self.dingtalk.jsapi_url),
        ] {
            if let Some(fix) = missing_scheme(url, "https") {
                bad(key, fix);
            } else if !matches!(url.scheme(), "http" | "https") {
                bad(
                    key,
                    format!(
                        "`{}` must be an http:// or https:// URL, e.g. {}",
                        masked_url(url),
                        example_for(key)
                    ),
                );
            }
        }
        let prefix = &self.auth_prefix;
        if !prefix.starts_with('/')
            || prefix.len() < 2
            || prefix.ends_with('/')
            || prefix.contains(['?', '#', ' '])
        {
            bad(
                "auth_prefix",
                format!(
                    "`{}` must start with `/`, not end with `/`, and be a plain path, e.g. /_auth",
                    shown(prefix)
                ),
            );
        }
        let name = &self.session.cookie_name;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            bad(
                "session.cookie_name",
                format!(
                    "`{}` must be letters, digits, `-`, `_` or `.`, e.g. dap_session",
                    shown(name)
                ),
            );
        }
        if self.session.ttl < Duration::from_secs(60) {
            bad(
                "session.ttl",
                format!(
                    "`{}` is too short; it must be at least 1m, e.g. 8h",
                    humantime::format_duration(self.session.ttl)
                ),
            );
        }
        for (key, value, example) in [
            ("dingtalk.timeout", self.dingtalk.timeout, "5s"),
            ("upstream_timeout", self.upstream_timeout, "30s"),
            (
                "limits.header_read_timeout",
                self.limits.header_read_timeout,
                "10s",
            ),
            ("limits.idle_timeout", self.limits.idle_timeout, "60s"),
            ("session.redis_timeout", self.session.redis_timeout, "250ms"),
        ] {
            if value.is_zero() {
                bad(key, format!("must be more than 0, e.g. {example}"));
            }
        }
        self.redis_problems(&mut bad);
        self.assertion_problems(&mut bad);
        self.route_problems(&mut bad);
        for (key, value) in self.headers.named() {
            if http::HeaderName::from_bytes(value.as_bytes()).is_err() {
                bad(
                    &format!("headers.{key}"),
                    format!(
                        "`{}` is not a valid header name; use letters, digits and `-`, e.g. X-User-Id, or \"\" to not send it",
                        shown(value)
                    ),
                );
            }
        }
        let limits = &self.limits;
        if limits.max_header_bytes < MIN_HEADER_BYTES {
            bad(
                "limits.max_header_bytes",
                format!(
                    "`{}` is too small; it must be at least {MIN_HEADER_BYTES} (the default is 65536)",
                    limits.max_header_bytes
                ),
            );
        } else if u32::try_from(limits.max_header_bytes).is_err() {
            bad(
                "limits.max_header_bytes",
                format!(
                    "`{}` is too large; it must be below 4 GiB (the default is 65536)",
                    limits.max_header_bytes
                ),
            );
        }
        let uri_header = &self.verify.uri_header;
        if !uri_header.eq_ignore_ascii_case("auto")
            && http::HeaderName::from_bytes(uri_header.as_bytes()).is_err()
        {
            bad(
                "verify.uri_header",
                format!(
                    "`{}` is not a header name; use X-Original-URI (nginx), X-Forwarded-Uri (Caddy, Traefik) or auto",
                    shown(uri_header)
                ),
            );
        }
        for (i, re) in self.access.skip_auth.iter().enumerate() {
            if let Err(e) = regex::Regex::new(re) {
                // The regex crate's message spans lines; its last line is the reason.
                let text = e.to_string();
                let reason = text.lines().last().unwrap_or_default().trim();
                let reason = reason.strip_prefix("error: ").unwrap_or(reason);
                bad(
                    &format!("access.skip_auth[{i}]"),
                    format!("`{}` is not a valid regex: {reason}", shown(re)),
                );
            }
        }
        out
    }

    /// `[[routes]]`, `auth_host` and `session.cookie_domain`: each route well formed and
    /// distinct, and one login host whose cookie reaches every routed host.
    fn route_problems(&self, bad: &mut impl FnMut(&str, String)) {
        if self.upstream.is_some() {
            if let Some(i) = self
                .routes
                .iter()
                .position(|r| r.host.is_none() && r.path_prefix.trim_end_matches('/').is_empty())
            {
                bad(
                    "upstream",
                    format!("is the default route beside [[routes]], but routes[{i}] (no host, path_prefix /) already takes every request; remove one of the two"),
                );
            }
        }
        let cookie_domain = &self.session.cookie_domain;
        if !cookie_domain.is_empty() && !is_host_name(cookie_domain.trim_start_matches('.')) {
            bad(
                "session.cookie_domain",
                format!(
                    "`{}` is not a domain name; e.g. .corp.example (every host under it shares the login)",
                    shown(cookie_domain)
                ),
            );
        }
        if let Some(auth_host) = &self.auth_host {
            let (host, port) = match auth_host.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (auth_host.as_str(), None),
            };
            if !is_host_name(host) || port.is_some_and(|p| p.parse::<u16>().is_err()) {
                bad(
                    "auth_host",
                    format!(
                        "`{}` is not a host name; e.g. login.corp.example (no scheme, no path)",
                        shown(auth_host)
                    ),
                );
            } else if cookie_domain.is_empty() {
                bad(
                    "auth_host",
                    "needs session.cookie_domain: the session cookie set at the login host must reach the app hosts, e.g. cookie_domain = \".corp.example\" under [session]".into(),
                );
            } else if !self.under_cookie_domain(host) {
                bad(
                    "auth_host",
                    format!(
                        "`{}` is not under session.cookie_domain `{}`; the login host must be one of the hosts sharing the cookie",
                        shown(auth_host),
                        shown(cookie_domain)
                    ),
                );
            }
        }
        let mut seen: Vec<(String, String)> = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let key = |k: &str| format!("routes[{i}].{k}");
            if let Some(host) = &r.host {
                let name = host.strip_prefix("*.").unwrap_or(host);
                if !is_host_name(name) {
                    bad(
                        &key("host"),
                        format!(
                            "`{}` is not a host name; e.g. oa.corp.example or *.corp.example (no scheme, port or path)",
                            shown(host)
                        ),
                    );
                } else if self.auth_host.is_some()
                    && !cookie_domain.is_empty()
                    && !self.under_cookie_domain(host)
                {
                    bad(
                        &key("host"),
                        format!(
                            "`{}` is not under session.cookie_domain `{}`: the login at auth_host could never reach it",
                            shown(host),
                            shown(cookie_domain)
                        ),
                    );
                }
            }
            let prefix = &r.path_prefix;
            if !crate::path::is_canonical(prefix) || prefix.contains(['?', '#']) {
                bad(
                    &key("path_prefix"),
                    format!(
                        "`{}` must be a plain path starting with `/` (no `..`, `;`, `//` or escapes that need none), e.g. /wiki",
                        shown(prefix)
                    ),
                );
            }
            if r.strip_prefix && prefix == "/" {
                bad(
                    &key("strip_prefix"),
                    "is set but path_prefix is `/`: there is nothing to strip; set a path_prefix, or remove strip_prefix".into(),
                );
            }
            match &r.upstream {
                Some(up) => {
                    if let Some(fix) = upstream_problem(up) {
                        bad(&key("upstream"), fix);
                    }
                }
                None if r.strip_prefix => bad(
                    &key("strip_prefix"),
                    "is set on a route without upstream (verify only), where nothing is forwarded; set an upstream, or remove it".into(),
                ),
                None => {}
            }
            let spec = (
                r.host.as_deref().unwrap_or("").to_ascii_lowercase(),
                prefix.trim_end_matches('/').to_string(),
            );
            if let Some(j) = seen.iter().position(|s| *s == spec) {
                bad(
                    &key("path_prefix"),
                    format!(
                        "routes[{j}] already serves host `{}` path `{}`; give each route its own host or path_prefix",
                        r.host.as_deref().unwrap_or("*"),
                        shown(prefix)
                    ),
                );
            }
            seen.push(spec);
            for (field, value) in r.headers.named() {
                if !value.is_empty() && http::HeaderName::from_bytes(value.as_bytes()).is_err() {
                    bad(
                        &key(&format!("headers.{field}")),
                        format!(
                            "`{}` is not a valid header name; use letters, digits and `-`, e.g. X-WEBAUTH-USER, or \"\" to not send it on this route",
                            shown(value)
                        ),
                    );
                }
            }
            for (j, re) in r.access.skip_auth.iter().flatten().enumerate() {
                if let Err(e) = regex::Regex::new(re) {
                    let text = e.to_string();
                    let reason = text.lines().last().unwrap_or_default().trim();
                    bad(
                        &key(&format!("access.skip_auth[{j}]")),
                        format!("`{}` is not a valid regex: {reason}", shown(re)),
                    );
                }
            }
        }
    }

    /// `[assertion]`: a header name of its own, a sane lifetime, and nothing set that is
    /// ignored while it is off. (The key files are read at start, naming the key that fails.)
    fn assertion_problems(&self, bad: &mut impl FnMut(&str, String)) {
        let a = &self.assertion;
        if !a.enabled {
            for (key, set) in [
                ("assertion.key_file", a.key_file.is_some()),
                (
                    "assertion.previous_key_files",
                    !a.previous_key_files.is_empty(),
                ),
                ("assertion.audience", a.audience.is_some()),
            ] {
                if set {
                    bad(
                        key,
                        "is set but assertion.enabled is false; set enabled = true under [assertion], or remove it".into(),
                    );
                }
            }
        }
        let files = a
            .key_file
            .iter()
            .map(|f| ("assertion.key_file".to_string(), f));
        let previous = a
            .previous_key_files
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("assertion.previous_key_files[{i}]"), f));
        for (key, file) in files.chain(previous).filter(|_| a.enabled) {
            if !Path::new(file).is_file() {
                bad(
                    &key,
                    format!(
                        "`{}` does not exist or is not a file; make a key with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem`, or leave key_file unset to generate one at start",
                        shown(file)
                    ),
                );
            }
        }
        let fold = |s: &str| -> String {
            s.bytes()
                .map(|b| {
                    if b == b'_' {
                        '-'
                    } else {
                        char::from(b.to_ascii_lowercase())
                    }
                })
                .collect()
        };
        if http::HeaderName::from_bytes(a.header.as_bytes()).is_err() {
            bad(
                "assertion.header",
                format!(
                    "`{}` is not a valid header name; use letters, digits and `-`, e.g. X-DingTalk-Assertion",
                    shown(&a.header)
                ),
            );
        } else if let Some((key, _)) = self
            .headers
            .named()
            .into_iter()
            .find(|(_, name)| fold(name) == fold(&a.header))
        {
            bad(
                "assertion.header",
                format!(
                    "`{}` is already the header of headers.{key}; give the assertion its own, e.g. X-DingTalk-Assertion",
                    shown(&a.header)
                ),
            );
        }
        if a.ttl < Duration::from_secs(1) || a.ttl > Duration::from_secs(3600) {
            bad(
                "assertion.ttl",
                format!(
                    "`{}` must be between 1s and 1h; tokens are short-lived, e.g. 60s",
                    humantime::format_duration(a.ttl)
                ),
            );
        }
        if a.audience.as_deref().is_some_and(|s| s.trim().is_empty()) {
            bad(
                "assertion.audience",
                "must not be blank; e.g. https://app.internal".into(),
            );
        }
    }

    /// The Redis keys: one topology, addresses that are Redis URLs, and nothing set that the
    /// cookie store would ignore.
    fn redis_problems(&self, bad: &mut impl FnMut(&str, String)) {
        let s = &self.session;
        let (cluster, sentinels) = (!s.redis_cluster.is_empty(), !s.redis_sentinels.is_empty());
        if s.store == Store::Cookie {
            for (key, set) in [
                ("session.redis_cluster", cluster),
                ("session.redis_sentinels", sentinels),
                ("session.redis_master", !s.redis_master.is_empty()),
            ] {
                if set {
                    bad(
                        key,
                        "is set but sessions are in the cookie; set session.store = \"redis\" to use Redis, or remove it".into(),
                    );
                }
            }
            return;
        }
        if cluster && sentinels {
            bad(
                "session.redis_cluster",
                "and session.redis_sentinels are both set; use one topology: a cluster, or sentinels with redis_master, or redis_url alone".into(),
            );
        }
        if sentinels && s.redis_master.is_empty() {
            bad(
                "session.redis_master",
                "is required with session.redis_sentinels: the master name the sentinels watch, e.g. mymaster".into(),
            );
        }
        if !sentinels && !s.redis_master.is_empty() {
            bad(
                "session.redis_master",
                "is only used with session.redis_sentinels; set those, or remove it".into(),
            );
        }
        let mut check = |key: String, value: &str| {
            match Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some() => {}
            _ => bad(
                &key,
                format!(
                    "`{}` is not a Redis URL; use redis://host:port (rediss:// for TLS), e.g. redis://:password@10.0.0.5:6379/0",
                    masked(value)
                ),
            ),
        }
        };
        if cluster {
            for (i, u) in s.redis_cluster.iter().enumerate() {
                check(format!("session.redis_cluster[{i}]"), u);
            }
        } else if sentinels {
            for (i, u) in s.redis_sentinels.iter().enumerate() {
                check(format!("session.redis_sentinels[{i}]"), u);
            }
        } else {
            check("session.redis_url".into(), s.redis_url.expose());
        }
        if s.redis_prefix.is_empty() || s.redis_prefix.contains(['{', '}']) {
            bad(
                "session.redis_prefix",
                format!(
                    "`{}` must be non-empty and without `{{` or `}}` (they choose the cluster slot), e.g. dap:",
                    shown(&s.redis_prefix)
                ),
            );
        }
    }
}

/// The problem with an upstream URL, if any: it must be `http://` with a host.
fn upstream_problem(up: &Url) -> Option<String> {
    if let Some(fix) = missing_scheme(up, "http") {
        Some(fix)
    } else if up.scheme() != "http" {
        Some(format!(
            "scheme `{}` is not supported; use an http:// address, e.g. http://127.0.0.1:3000",
            up.scheme()
        ))
    } else if up.host_str().is_none_or(str::is_empty) {
        Some(format!(
            "`{}` has no host; e.g. http://127.0.0.1:3000",
            masked_url(up)
        ))
    } else if !up.username().is_empty() || up.password().is_some() {
        Some(format!(
            "`{}` carries a user name or password, which the proxy never sends to the app; remove it",
            masked_url(up)
        ))
    } else if up.query().is_some() || up.fragment().is_some() {
        Some(format!(
            "`{}` has a query or fragment, which the proxy never sends; give the address and at most a base path",
            masked_url(up)
        ))
    } else {
        None
    }
}

/// A DNS host name: labels of letters, digits and `-`, separated by dots.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
