//! Configuration: the contract's keys, loaded with figment (built-in defaults < TOML file <
//! `DAP_*` environment, `__` for nesting), then validated before anything binds.
//!
//! A bad config becomes one [`ConfigError`] line naming the key and what is wrong with it.
//! Secrets are held in [`Secret`], which never prints its value.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Provider};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// Everything wrong with a configuration, one case per kind of mistake.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment could not be read or has a value of the wrong type.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted key, e.g. `session.ttl`.
        key: String,
        /// What is wrong, in words.
        message: String,
    },
    /// The config file given with `--config` does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(String),
}

impl ConfigError {
    fn key(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// A secret value (app secret, session secret). `Debug`, `Display` and `Serialize` redact it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself; call only where it is really used.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// True when no value was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"<redacted>\""
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            s.serialize_str("")
        } else {
            s.serialize_str("<redacted>")
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient_string(d).map(Secret)
    }
}

/// Environment values are parsed by figment as TOML-ish scalars, so `DAP_DINGTALK__APP_KEY=123`
/// arrives as a number. Keys that are strings accept any scalar and keep its text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    S(String),
    I(i64),
    U(u64),
    F(f64),
    B(bool),
}

impl Scalar {
    fn into_string(self) -> String {
        match self {
            Scalar::S(s) => s,
            Scalar::I(i) => i.to_string(),
            Scalar::U(u) => u.to_string(),
            Scalar::F(f) => f.to_string(),
            Scalar::B(b) => b.to_string(),
        }
    }
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Scalar::deserialize(d).map(Scalar::into_string)
}

fn lenient_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<Scalar>::deserialize(d)?.map(Scalar::into_string);
    Ok(s.filter(|s| !s.is_empty()))
}

fn lenient_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    struct Item(#[serde(deserialize_with = "lenient_string")] String);
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<Item>),
        One(Item),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v.into_iter().map(|i| i.0).collect(),
        OneOrMany::One(i) if i.0.is_empty() => Vec::new(),
        // An env var like `DAP_ACCESS__ALLOW_USERIDS=a,b` arrives as one string.
        OneOrMany::One(i) => {
            i.0.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        }
    })
}

fn lenient_ints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    use serde::de::Error;
    lenient_strings(d)?
        .iter()
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| D::Error::custom(format!("`{s}` is not a department id (an integer)")))
        })
        .collect()
}

fn lenient_nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    use serde::de::Error;
    lenient_strings(d)?
        .iter()
        .map(|s| parse_net(s).map_err(D::Error::custom))
        .collect()
}

/// A CIDR (`10.0.0.0/8`, `::1/128`) or a single address (`10.0.0.5`).
fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("`{s}` is not an IP network (e.g. 10.0.0.0/8) or address"))
}

/// Loopback only: a front server on the same host.
fn default_trusted_proxies() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Which generation of DingTalk's user APIs to call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserApi {
    /// `POST /topapi/v2/user/getuserinfo` + `/topapi/v2/user/get` (the default).
    #[default]
    V2,
    /// The seed's `GET /user/getuserinfo` + `/user/get` (older apps only).
    Legacy,
}

/// Which API fetches the app access token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenApi {
    /// `GET {api_base}/gettoken` (the seed's).
    #[default]
    Gettoken,
    /// `POST {new_api_base}/v1.0/oauth2/accessToken`.
    V1,
}

/// Where sessions live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// Everything in the encrypted cookie.
    #[default]
    Cookie,
    /// The cookie holds a random id; the session is in Redis (not active yet).
    Redis,
}

/// `[dingtalk]`: the app's credentials and DingTalk's addresses.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DingTalkConfig {
    /// App key (also the OAuth `client_id`).
    #[serde(deserialize_with = "lenient_string")]
    pub app_key: String,
    /// App secret.
    pub app_secret: Secret,
    /// The corp id (`ding…`), passed to the JSAPI.
    #[serde(deserialize_with = "lenient_string")]
    pub corp_id: String,
    /// The oapi host.
    pub api_base: Url,
    /// The new API host.
    pub new_api_base: Url,
    /// The browser login host.
    pub login_base: Url,
    /// The JSAPI script loaded by the in-app login page.
    pub jsapi_url: Url,
    /// Which user API generation to call.
    pub user_api: UserApi,
    /// Which token API to call.
    pub token_api: TokenApi,
    /// Timeout for each DingTalk call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for DingTalkConfig {
    fn default() -> Self {
        DingTalkConfig {
            app_key: String::new(),
            app_secret: Secret::default(),
            corp_id: String::new(),
            api_base: fixed_url("https://oapi.dingtalk.com"),
            new_api_base: fixed_url("https://api.dingtalk.com"),
            login_base: fixed_url("https://login.dingtalk.com"),
            jsapi_url: fixed_url(
                "https://g.alicdn.com/dingding/dingtalk-jsapi/3.1.0/dingtalk.open.js",
            ),
            user_api: UserApi::V2,
            token_api: TokenApi::Gettoken,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Parses one of the built-in default URLs above; they are literals known to be valid.
fn fixed_url(s: &str) -> Url {
    Url::parse(s).unwrap_or_else(|_| unreachable!("built-in default URL {s} is valid"))
}

/// `[session]`: the session cookie.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Key material for the cookie encryption; at least 32 bytes.
    pub secret: Secret,
    /// Name of the session cookie.
    pub cookie_name: String,
    /// How long a session lasts after login.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How often the user's details are fetched again (departed users lose access).
    #[serde(with = "humantime_serde")]
    pub revalidate: Duration,
    /// Where sessions are kept.
    pub store: Store,
    /// Redis address for `store = "redis"`.
    pub redis_url: Secret,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            secret: Secret::default(),
            cookie_name: "dap_session".into(),
            ttl: Duration::from_secs(8 * 3600),
            revalidate: Duration::from_secs(600),
            store: Store::Cookie,
            redis_url: Secret::new("redis://127.0.0.1:6379"),
        }
    }
}

/// `[headers]`: names of the identity headers sent upstream; `None` = not sent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadersConfig {
    /// The user's DingTalk userid.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub user_id: Option<String>,
    /// The user's mobile number.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub mobile: Option<String>,
    /// Display name.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub name: Option<String>,
    /// unionid.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub union_id: Option<String>,
    /// Email.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub email: Option<String>,
    /// Job number (工号).
    #[serde(deserialize_with = "lenient_opt_string")]
    pub job_number: Option<String>,
    /// Department ids, comma-separated.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub dept_ids: Option<String>,
    /// Job title.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub title: Option<String>,
}

impl Default for HeadersConfig {
    fn default() -> Self {
        HeadersConfig {
            user_id: Some("X-User-Id".into()),
            mobile: Some("X-User-Mobile".into()),
            name: None,
            union_id: None,
            email: None,
            job_number: None,
            dept_ids: None,
            title: None,
        }
    }
}

/// `[access]`: who may pass, and which paths need no login.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Only these userids (empty = everyone in the corp).
    #[serde(deserialize_with = "lenient_strings")]
    pub allow_userids: Vec<String>,
    /// Only members of these departments (empty = every department).
    #[serde(deserialize_with = "lenient_ints")]
    pub allow_dept_ids: Vec<i64>,
    /// Path regexes served without login.
    #[serde(deserialize_with = "lenient_strings")]
    pub skip_auth: Vec<String>,
}

/// `[limits]`: what one client may cost us. Every limit answers with a clear status.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// A request head must arrive complete within this (slowloris); on HTTP/1.1 the clock
    /// also runs while a keep-alive connection waits for its next request.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no bytes moving either way for this long is closed gracefully
    /// (requests in progress finish first).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest request head (request line + headers) in bytes; more gets 431.
    pub max_header_bytes: usize,
    /// Largest request body in bytes (0 = unlimited, streamed); more gets 413.
    pub max_body_bytes: u64,
    /// Most client connections open at once (0 = no cap); past it a new connection gets 503
    /// and is closed.
    pub max_connections: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_body_bytes: 0,
            max_connections: 0,
        }
    }
}

/// The smallest `limits.max_header_bytes` (hyper's smallest read buffer).
pub const MIN_HEADER_BYTES: usize = 8192;

/// `[verify]`: how `{auth_prefix}/verify` learns which URI the front server is asking about.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyConfig {
    /// The one header the front server sets to the original request URI: `X-Original-URI`
    /// (the shipped nginx config), `X-Forwarded-Uri` (Caddy, Traefik), or `auto`: both are
    /// read, and when both are present they must name the same path.
    #[serde(deserialize_with = "lenient_string")]
    pub uri_header: String,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            uri_header: "auto".into(),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the proxy listens on.
    pub listen: SocketAddr,
    /// The protected app; `None` = auth-only mode (for nginx `auth_request`).
    pub upstream: Option<Url>,
    /// The external origin users see; builds `redirect_uri`. Default: `http://{listen}`.
    pub public_url: Option<Url>,
    /// Path prefix of the proxy's own endpoints.
    pub auth_prefix: String,
    /// Optional second listener with `/metrics`, `/healthz`, `/readyz`.
    pub admin_listen: Option<SocketAddr>,
    /// How long the upstream may take to answer before the client gets 504.
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// `[dingtalk]`.
    pub dingtalk: DingTalkConfig,
    /// `[session]`.
    pub session: SessionConfig,
    /// `[headers]`.
    pub headers: HeadersConfig,
    /// `[access]`.
    pub access: AccessConfig,
    /// Peers (CIDR) whose `X-Forwarded-For`, `X-Original-URI` and `X-Forwarded-Uri` count.
    #[serde(deserialize_with = "lenient_nets")]
    pub trusted_proxies: Vec<IpNet>,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[verify]`.
    pub verify: VerifyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            upstream: None,
            public_url: None,
            auth_prefix: "/_auth".into(),
            admin_listen: None,
            upstream_timeout: Duration::from_secs(30),
            dingtalk: DingTalkConfig::default(),
            session: SessionConfig::default(),
            headers: HeadersConfig::default(),
            access: AccessConfig::default(),
            trusted_proxies: default_trusted_proxies(),
            limits: LimitsConfig::default(),
            verify: VerifyConfig::default(),
        }
    }
}

impl Config {
    /// Loads defaults < `file` (if given) < `DAP_*` environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("DAP_").split("__"));
        Config::from_figment(fig)
    }

    /// Extracts and validates a config from any figment (tests build one by hand).
    pub fn from_figment(fig: Figment) -> Result<Config, ConfigError> {
        let config: Config = fig.extract().map_err(|e| {
            let key = if e.path.is_empty() {
                "(top level)".to_string()
            } else {
                e.path.join(".")
            };
            ConfigError::Invalid {
                key,
                message: e.kind.to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot: lengths, schemes, regexes, header names.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let secret = self.session.secret.expose();
        if secret.is_empty() {
            return Err(ConfigError::key(
                "session.secret",
                "is required (at least 32 bytes; set DAP_SESSION__SECRET)",
            ));
        }
        if secret.len() < 32 {
            return Err(ConfigError::key(
                "session.secret",
                format!("is {} bytes; it must be at least 32", secret.len()),
            ));
        }
        for (key, value) in [
            ("dingtalk.app_key", self.dingtalk.app_key.as_str()),
            ("dingtalk.app_secret", self.dingtalk.app_secret.expose()),
            ("dingtalk.corp_id", self.dingtalk.corp_id.as_str()),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::key(key, "is required"));
            }
        }
        if let Some(up) = &self.upstream {
            if up.scheme() != "http" {
                return Err(ConfigError::key(
                    "upstream",
                    format!(
                        "scheme `{}` is not supported; use an http:// address",
                        up.scheme()
                    ),
                ));
            }
            if up.host_str().is_none() {
                return Err(ConfigError::key("upstream", "has no host"));
            }
        }
        if let Some(p) = &self.public_url {
            if !matches!(p.scheme(), "http" | "https") || p.host_str().is_none() {
                return Err(ConfigError::key(
                    "public_url",
                    "must be an http:// or https:// origin, e.g. https://app.example.com",
                ));
            }
        }
        for (key, url) in [
            ("dingtalk.api_base", &self.dingtalk.api_base),
            ("dingtalk.new_api_base", &self.dingtalk.new_api_base),
            ("dingtalk.login_base", &self.dingtalk.login_base),
            ("dingtalk.jsapi_url", &self.dingtalk.jsapi_url),
        ] {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::key(key, "must be an http:// or https:// URL"));
            }
        }
        let prefix = &self.auth_prefix;
        if !prefix.starts_with('/')
            || prefix.len() < 2
            || prefix.ends_with('/')
            || prefix.contains(['?', '#', ' '])
        {
            return Err(ConfigError::key(
                "auth_prefix",
                "must start with `/`, not end with `/`, and be a plain path like /_auth",
            ));
        }
        let name = &self.session.cookie_name;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(ConfigError::key(
                "session.cookie_name",
                "must be letters, digits, `-`, `_` or `.`",
            ));
        }
        if self.session.ttl < Duration::from_secs(60) {
            return Err(ConfigError::key("session.ttl", "must be at least 1m"));
        }
        if self.dingtalk.timeout.is_zero() {
            return Err(ConfigError::key("dingtalk.timeout", "must be more than 0"));
        }
        if self.upstream_timeout.is_zero() {
            return Err(ConfigError::key("upstream_timeout", "must be more than 0"));
        }
        for (key, value) in self.headers.named() {
            if http::HeaderName::from_bytes(value.as_bytes()).is_err() {
                return Err(ConfigError::key(
                    &format!("headers.{key}"),
                    format!("`{value}` is not a valid header name"),
                ));
            }
        }
        let limits = &self.limits;
        if limits.header_read_timeout.is_zero() {
            return Err(ConfigError::key(
                "limits.header_read_timeout",
                "must be more than 0 (e.g. 10s)",
            ));
        }
        if limits.idle_timeout.is_zero() {
            return Err(ConfigError::key(
                "limits.idle_timeout",
                "must be more than 0 (e.g. 60s)",
            ));
        }
        if limits.max_header_bytes < MIN_HEADER_BYTES {
            return Err(ConfigError::key(
                "limits.max_header_bytes",
                format!("must be at least {MIN_HEADER_BYTES} (the default is 65536)"),
            ));
        }
        if u32::try_from(limits.max_header_bytes).is_err() {
            return Err(ConfigError::key(
                "limits.max_header_bytes",
                "must be below 4 GiB",
            ));
        }
        let uri_header = &self.verify.uri_header;
        if !uri_header.eq_ignore_ascii_case("auto")
            && http::HeaderName::from_bytes(uri_header.as_bytes()).is_err()
        {
            return Err(ConfigError::key(
                "verify.uri_header",
                format!("`{uri_header}` is not a header name; use X-Original-URI (nginx), X-Forwarded-Uri (Caddy, Traefik) or auto"),
            ));
        }
        for (i, re) in self.access.skip_auth.iter().enumerate() {
            if let Err(e) = regex::Regex::new(re) {
                return Err(ConfigError::key(
                    &format!("access.skip_auth[{i}]"),
                    format!("is not a valid regex: {e}"),
                ));
            }
        }
        Ok(())
    }

    /// The external origin, without a trailing slash, e.g. `https://app.example.com`.
    pub fn public_origin(&self) -> String {
        match &self.public_url {
            Some(u) => u.as_str().trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }

    /// True when cookies must carry `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.public_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https")
    }

    /// Keys that are accepted but whose features are not active in this version.
    pub fn inactive_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.session.store == Store::Redis {
            keys.push("session.store = \"redis\" (not active yet: sessions stay in the cookie)");
        }
        keys
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn redacted_toml(&self) -> String {
        toml_string(self)
    }
}

fn toml_string(config: &Config) -> String {
    // One `dotted.key = value` line per leaf, values in JSON notation (valid TOML for the
    // strings, numbers, booleans and arrays a config holds); unset keys are left out.
    match figment::providers::Serialized::defaults(config)
        .data()
        .ok()
        .and_then(|d| d.into_values().next())
    {
        Some(dict) => {
            let mut out = String::new();
            for (k, v) in dict {
                write_value(&mut out, &k, &v);
            }
            out
        }
        None => String::new(),
    }
}

fn write_value(out: &mut String, key: &str, value: &figment::value::Value) {
    use figment::value::Value;
    match value {
        Value::Dict(_, dict) => {
            for (k, v) in dict {
                write_value(out, &format!("{key}.{k}"), v);
            }
        }
        other => {
            let json = serde_json::to_string(other).unwrap_or_default();
            out.push_str(&format!("{key} = {json}\n"));
        }
    }
}

impl HeadersConfig {
    /// The configured (key, header name) pairs.
    pub fn named(&self) -> Vec<(&'static str, &str)> {
        [
            ("user_id", &self.user_id),
            ("mobile", &self.mobile),
            ("name", &self.name),
            ("union_id", &self.union_id),
            ("email", &self.email),
            ("job_number", &self.job_number),
            ("dept_ids", &self.dept_ids),
            ("title", &self.title),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Figment {
        Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(
            r#"
            [dingtalk]
            app_key = "k"
            app_secret = "s"
            corp_id = "dingc"
            [session]
            secret = "0123456789abcdef0123456789abcdef"
            "#,
        ))
    }

    /// A minimal config with the four required values loads with the contract's defaults.
    #[test]
    fn defaults() {
        let c = Config::from_figment(base()).unwrap();
        assert_eq!(c.auth_prefix, "/_auth");
        assert_eq!(c.session.cookie_name, "dap_session");
        assert_eq!(c.session.ttl, Duration::from_secs(8 * 3600));
        assert_eq!(c.dingtalk.user_api, UserApi::V2);
        assert_eq!(c.headers.user_id.as_deref(), Some("X-User-Id"));
        assert!(c.upstream.is_none());
        assert_eq!(c.limits.max_header_bytes, 65536);
        assert_eq!(c.limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.verify.uri_header, "auto");
        assert_eq!(c.trusted_proxies.len(), 2);
    }

    /// trusted_proxies takes CIDRs and single addresses; a bad entry names the key.
    #[test]
    fn trusted_proxies() {
        let f = base().merge(Toml::string(
            "trusted_proxies = [\"10.1.2.3/8\", \"192.168.0.7\", \"fd00::/8\"]",
        ));
        let c = Config::from_figment(f).unwrap();
        let nets: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.168.0.7/32", "fd00::/8"]);
        let f = base().merge(Toml::string("trusted_proxies = \"10.0.0.0/8, nonsense\""));
        let e = Config::from_figment(f).unwrap_err().to_string();
        assert!(
            e.contains("trusted_proxies") && e.contains("nonsense"),
            "{e}"
        );
    }

    /// Limits below what the server can honour, and a bad verify header, name their key.
    #[test]
    fn bad_limits_name_the_key() {
        for (toml, key) in [
            (
                "[limits]\nmax_header_bytes = 100",
                "limits.max_header_bytes",
            ),
            (
                "[limits]\nheader_read_timeout = \"0s\"",
                "limits.header_read_timeout",
            ),
            ("[limits]\nmax_connections = -1", "limits.max_connections"),
            (
                "[limits]\nmax_body_bytes = \"lots\"",
                "limits.max_body_bytes",
            ),
            ("[verify]\nuri_header = \"bad header\"", "verify.uri_header"),
        ] {
            let e = Config::from_figment(base().merge(Toml::string(toml)))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }

    /// A short secret is rejected with a message naming the key, without echoing the value.
    #[test]
    fn short_secret() {
        let f = base().merge(Toml::string("[session]\nsecret = \"tooshort-value\""));
        let e = Config::from_figment(f).unwrap_err().to_string();
        assert!(e.contains("session.secret"), "{e}");
        assert!(!e.contains("tooshort-value"), "{e}");
    }

    /// Wrong types and unknown keys name the key.
    #[test]
    fn bad_values_name_the_key() {
        let f = base().merge(Toml::string("[session]\nttl = \"soon\""));
        let e = Config::from_figment(f).unwrap_err().to_string();
        assert!(e.contains("session.ttl"), "{e}");
        let f = base().merge(Toml::string("[access]\nskip_auth = [\"(\"]"));
        let e = Config::from_figment(f).unwrap_err().to_string();
        assert!(e.contains("access.skip_auth[0]"), "{e}");
        let f = base().merge(Toml::string("upstream = \"https://x\""));
        assert!(Config::from_figment(f).is_err());
    }

    /// Redacted output never contains either secret.
    #[test]
    fn redaction() {
        let c = Config::from_figment(base()).unwrap();
        let t = c.redacted_toml();
        assert!(t.contains("session.secret = \"<redacted>\""), "{t}");
        assert!(!t.contains("0123456789abcdef"), "{t}");
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    /// Comma-separated lists work from a single (env-style) string.
    #[test]
    fn lists_from_strings() {
        let f = base().merge(Toml::string(
            "[access]\nallow_userids = \"a, b\"\nallow_dept_ids = \"1,2\"",
        ));
        let c = Config::from_figment(f).unwrap();
        assert_eq!(c.access.allow_userids, vec!["a", "b"]);
        assert_eq!(c.access.allow_dept_ids, vec![1, 2]);
    }
}
