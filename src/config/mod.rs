//! Configuration: the contract's keys, loaded with figment (built-in defaults < TOML file <
//! `DAP_*` environment, `__` for nesting), then validated before anything binds.
//!
//! Every problem is found in one pass and becomes one [`ConfigError`] line naming the key,
//! echoing the value and saying how to fix it. Secrets are held in [`Secret`], which never
//! prints its value, and no message shows one.
//!
//! - this file: the keys (one struct per section) and loading;
//! - `validate`: what types alone cannot check; `explain`: turning each problem into a line;
//! - `lenient`: scalars from the environment; `show`: the effective config, redacted.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use figment::error::Kind;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::{Figment, Provider};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use crate::user::{Field, FIELDS, FIELD_KEYS};

mod explain;
mod lenient;
mod show;
#[cfg(test)]
mod tests;
mod validate;

use explain::*;
use lenient::*;
use show::*;

/// Everything wrong with a configuration, one case per kind of mistake.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment could not be read or has a value of the wrong type.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted key, e.g. `session.ttl`.
        key: String,
        /// What is wrong, in words, and how to fix it.
        message: String,
    },
    /// The config file given with `--config` does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(String),
    /// The config file cannot be read or is not valid TOML.
    #[error("config file {file}: {message}")]
    File {
        /// The path as given.
        file: String,
        /// What is wrong, with the line for a syntax error.
        message: String,
    },
    /// More than one problem, found in the same pass; displayed one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    fn key(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// One line per problem, each already free of line breaks (for `eprintln!`).
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Several(all) => all.iter().flat_map(ConfigError::lines).collect(),
            one => vec![one_line(&one.to_string())],
        }
    }

    /// The dotted key this problem is about, if it is about one.
    fn config_key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    /// No problems is `Ok`, one is itself, more are [`ConfigError::Several`].
    fn from_list(mut all: Vec<ConfigError>) -> Result<(), ConfigError> {
        match all.len() {
            0 => Ok(()),
            1 => Err(all.remove(0)),
            _ => Err(ConfigError::Several(all)),
        }
    }
}

/// Collapses any run of whitespace (line breaks included) into one space.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A secret value (app secret, session secret, Redis URL). `Debug` redacts it; `Serialize`
/// keeps it (figment needs the real default) and [`Config::redacted_toml`] redacts it.
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

/// Serializes the real value: config defaults travel through `Serialize` into figment, and a
/// redacting `Serialize` turned non-empty defaults (`session.redis_url`) into `<redacted>`.
/// Redaction happens only where a config is shown ([`Config::redacted_toml`]).
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient_string(d).map(Secret)
    }
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
    /// The sealed cookie holds a random id; the session lives in Redis.
    Redis,
}

/// `[dingtalk]`: the app's credentials and DingTalk's addresses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Key material for the cookie encryption; at least 32 bytes.
    pub secret: Secret,
    /// Name of the session cookie.
    #[serde(deserialize_with = "lenient_string")]
    pub cookie_name: String,
    /// How long a session lasts after login.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How often the user's details are fetched again (departed users lose access).
    #[serde(with = "humantime_serde")]
    pub revalidate: Duration,
    /// Where sessions are kept.
    pub store: Store,
    /// Redis address for `store = "redis"`: `redis://` or `rediss://` (TLS), password and db
    /// in the URL.
    pub redis_url: Secret,
    /// Redis Cluster seed nodes (`redis://host:port`); set instead of `redis_url`.
    #[serde(deserialize_with = "lenient_strings")]
    pub redis_cluster: Vec<String>,
    /// Redis Sentinel addresses; set with `redis_master` instead of `redis_url`.
    #[serde(deserialize_with = "lenient_strings")]
    pub redis_sentinels: Vec<String>,
    /// The master name the sentinels watch.
    #[serde(deserialize_with = "lenient_string")]
    pub redis_master: String,
    /// Prefix of every key we write.
    #[serde(deserialize_with = "lenient_string")]
    pub redis_prefix: String,
    /// How long one Redis call may take before the request gets 503.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// Secrets the session secret was before: cookies sealed with one still open and are
    /// re-issued under `secret` on their next request. Remove one and its cookies stop working.
    #[serde(deserialize_with = "lenient_secrets")]
    pub previous_secrets: Vec<Secret>,
    /// `Domain` of the session cookie, e.g. `.corp.example`: one login then counts on every
    /// host under it (with `auth_host`). Empty: the cookie belongs to the host that set it.
    #[serde(deserialize_with = "lenient_string")]
    pub cookie_domain: String,
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
            redis_cluster: Vec::new(),
            redis_sentinels: Vec::new(),
            redis_master: String::new(),
            redis_prefix: "dap:".into(),
            redis_timeout: Duration::from_millis(250),
            previous_secrets: Vec::new(),
            cookie_domain: String::new(),
        }
    }
}

/// `[headers]`: the header each identity field is sent in; a field without one is not sent
/// (`""` turns a default off). The keys are those of the one field table, [`FIELDS`].
#[derive(Clone, Debug, PartialEq)]
pub struct HeadersConfig(BTreeMap<Field, String>);

impl Default for HeadersConfig {
    fn default() -> Self {
        HeadersConfig(
            FIELDS
                .iter()
                .filter_map(|f| Some((f.field, f.default_header?.to_string())))
                .collect(),
        )
    }
}

impl HeadersConfig {
    /// No identity header at all.
    pub fn none() -> Self {
        HeadersConfig(BTreeMap::new())
    }

    /// The header `field` is sent in, if any.
    pub fn get(&self, field: Field) -> Option<&str> {
        self.0.get(&field).map(String::as_str)
    }

    /// Sends `field` in header `name` (`None` or `""`: not at all).
    pub fn set(&mut self, field: Field, name: Option<&str>) {
        match name.filter(|n| !n.is_empty()) {
            Some(name) => self.0.insert(field, name.to_string()),
            None => self.0.remove(&field),
        };
    }

    /// The (field, header name) pairs, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (Field, &str)> {
        self.0.iter().map(|(f, n)| (*f, n.as_str()))
    }

    /// The configured (key, header name) pairs, in table order.
    pub fn named(&self) -> Vec<(&'static str, &str)> {
        self.iter().map(|(f, n)| (f.key(), n)).collect()
    }
}

impl Serialize for HeadersConfig {
    /// Every key of the table, unset ones as none (shown as `# headers.name is unset`).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(FIELDS.len()))?;
        for f in FIELDS {
            map.serialize_entry(f.key, &self.get(f.field))?;
        }
        map.end()
    }
}

/// A `[headers]` key; an unknown one fails while the key is read, so the error's path names it.
struct FieldKey(Field);

impl<'de> Deserialize<'de> for FieldKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let key = String::deserialize(d)?;
        Field::from_key(&key)
            .map(FieldKey)
            .ok_or_else(|| D::Error::unknown_field(&key, &FIELD_KEYS))
    }
}

/// A `[headers]` value: any scalar's text; a list or table fails inside, so the path names it.
struct HeaderText(Option<String>);

impl<'de> Deserialize<'de> for HeaderText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        Option::<Scalar>::deserialize(d)
            .map(|s| HeaderText(s.map(Scalar::into_string)))
            .map_err(|_| D::Error::custom(NOT_A_SCALAR))
    }
}

impl<'de> Deserialize<'de> for HeadersConfig {
    /// The same table as `[routes.headers]`, applied to no headers at all: `""` turns a field
    /// off, and every other field is unset unless named.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        HeaderOverrides::deserialize(d).map(|named| named.over(&HeadersConfig::none()))
    }
}

/// `[access]`: who may pass, and which paths need no login.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    #[serde(deserialize_with = "lenient_string")]
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
    /// `[audit]`.
    pub audit: AuditConfig,
    /// How log lines are written: `text` (a colour only on a terminal) or `json`.
    pub log_format: LogFormat,
    /// `[assertion]`.
    pub assertion: AssertionConfig,
    /// The one host every login starts and ends at (`login.corp.example`), for apps on many
    /// subdomains under `session.cookie_domain`. Unset: logins run on the host they start on.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub auth_host: Option<String>,
    /// `[[routes]]`: many apps behind one proxy. Empty: the top-level `upstream` (or
    /// auth-only mode) is the one route.
    pub routes: Vec<RouteConfig>,
}

/// One `[[routes]]` entry: which requests (`host`, `path_prefix`) go to which app, with what
/// headers and policy. Unset `[routes.headers]` / `[routes.access]` keys fall back to the
/// top-level `[headers]` / `[access]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// `oa.corp.example`, or `*.corp.example` for every host under it; unset: any host.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub host: Option<String>,
    /// Requests whose path is this or below it (`/wiki` matches `/wiki` and `/wiki/x`).
    #[serde(deserialize_with = "lenient_string")]
    pub path_prefix: String,
    /// The app; unset: the route only answers `verify` (nginx `auth_request` mode).
    pub upstream: Option<Url>,
    /// Remove `path_prefix` from the path sent to the app (`/wiki/x` → `/x`).
    pub strip_prefix: bool,
    /// `[routes.headers]`: header names for this route (`""`: not sent here).
    pub headers: HeaderOverrides,
    /// `[routes.access]`: this route's policy.
    pub access: RouteAccess,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            host: None,
            path_prefix: "/".into(),
            upstream: None,
            strip_prefix: false,
            headers: HeaderOverrides::default(),
            access: RouteAccess::default(),
        }
    }
}

/// `[routes.access]`: the keys of `[access]`, each replacing the top-level one when set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteAccess {
    /// Only these userids on this route (`[]`: everyone).
    #[serde(
        deserialize_with = "some_strings",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_userids: Option<Vec<String>>,
    /// Only members of these departments on this route (`[]`: every department).
    #[serde(
        deserialize_with = "some_ints",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_dept_ids: Option<Vec<i64>>,
    /// Path regexes of this route served without login.
    #[serde(
        deserialize_with = "some_strings",
        skip_serializing_if = "Option::is_none"
    )]
    pub skip_auth: Option<Vec<String>>,
}

fn some_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    lenient_strings(d).map(Some)
}

fn some_ints<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<i64>>, D::Error> {
    lenient_ints(d).map(Some)
}

impl AccessConfig {
    /// This section with every key `route` sets replaced.
    pub fn merged(&self, route: &RouteAccess) -> AccessConfig {
        AccessConfig {
            allow_userids: route
                .allow_userids
                .clone()
                .unwrap_or_else(|| self.allow_userids.clone()),
            allow_dept_ids: route
                .allow_dept_ids
                .clone()
                .unwrap_or_else(|| self.allow_dept_ids.clone()),
            skip_auth: route
                .skip_auth
                .clone()
                .unwrap_or_else(|| self.skip_auth.clone()),
        }
    }
}

/// `[routes.headers]`: header names that replace the top-level `[headers]` ones on one route;
/// `""` turns a field off there. Keys as in `[headers]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeaderOverrides(BTreeMap<Field, String>);

impl HeaderOverrides {
    /// `base` with these names applied.
    pub fn over(&self, base: &HeadersConfig) -> HeadersConfig {
        let mut out = base.clone();
        for (field, name) in &self.0 {
            out.set(*field, Some(name));
        }
        out
    }

    /// Sends `field` in header `name` on this route (`""`: not at all).
    pub fn set(&mut self, field: Field, name: &str) {
        self.0.insert(field, name.to_string());
    }

    /// The (key, name) pairs set here.
    pub fn named(&self) -> Vec<(&'static str, &str)> {
        self.0.iter().map(|(f, n)| (f.key(), n.as_str())).collect()
    }
}

impl Serialize for HeaderOverrides {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (f, n) in &self.0 {
            map.serialize_entry(f.key(), n)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for HeaderOverrides {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = HeaderOverrides;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of identity header names")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<HeaderOverrides, A::Error> {
                let mut headers = HeaderOverrides::default();
                while let Some(FieldKey(field)) = map.next_key::<FieldKey>()? {
                    let HeaderText(name) = map.next_value()?;
                    headers.set(field, name.as_deref().unwrap_or(""));
                }
                Ok(headers)
            }
        }
        d.deserialize_map(Visit)
    }
}

/// `[assertion]`: a signed JWT naming the user on every proxied request and `verify` answer,
/// verifiable by the upstream with the keys published at `{auth_prefix}/jwks.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssertionConfig {
    /// Send the assertion (off by default).
    pub enabled: bool,
    /// The header it travels in; a client-sent one of this name is always removed.
    #[serde(deserialize_with = "lenient_string")]
    pub header: String,
    /// PEM file with the ES256 (P-256, PKCS#8) signing key. Unset: a key is generated at
    /// start (replicas then sign with different keys: give them one shared file).
    #[serde(deserialize_with = "lenient_opt_string")]
    pub key_file: Option<String>,
    /// Earlier key files (private or public PEM): still published in the JWKS, so tokens
    /// signed just before a rotation verify.
    #[serde(deserialize_with = "lenient_strings")]
    pub previous_key_files: Vec<String>,
    /// Lifetime of one token (`exp - iat`).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// The `aud` claim. Unset: the upstream's origin, or in auth-only mode `public_url`'s.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub audience: Option<String>,
}

impl Default for AssertionConfig {
    fn default() -> Self {
        AssertionConfig {
            enabled: false,
            header: "X-DingTalk-Assertion".into(),
            key_file: None,
            previous_key_files: Vec::new(),
            ttl: Duration::from_secs(60),
            audience: None,
        }
    }
}

/// `log_format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[audit]`: the login audit trail.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Where audit events go, one JSON line each: a file path, or `-` for stdout. Unset = off.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub file: Option<String>,
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
            audit: AuditConfig::default(),
            log_format: LogFormat::Text,
            assertion: AssertionConfig::default(),
            auth_host: None,
            routes: Vec::new(),
        }
    }
}

impl Config {
    /// Loads defaults < `file` (if given) < `DAP_*` environment, then validates. Every
    /// problem is reported at once ([`ConfigError::Several`] when there are more than one).
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                file: path.display().to_string(),
                message: format!("cannot be read: {e}"),
            })?;
            // Parsed here, not by figment, so that a syntax error can name the line.
            if let Err(e) = Toml::from_str::<Dict>(&text) {
                return Err(ConfigError::File {
                    file: path.display().to_string(),
                    message: toml_syntax(&text, e.message(), e.span()),
                });
            }
            fig = fig.merge(Toml::string(&text));
        }
        fig = fig.merge(Env::prefixed("DAP_").split("__"));
        Config::from_figment(fig)
    }

    /// Extracts and validates a config from any figment (tests build one by hand).
    ///
    /// serde stops at the first bad value, so extraction runs again without each bad key
    /// (its default takes its place) until it succeeds; then [`Config::problems`] checks the
    /// result. Every problem found on the way is returned, sorted by key.
    pub fn from_figment(fig: Figment) -> Result<Config, ConfigError> {
        let mut data: Dict = match fig.extract() {
            Ok(data) => data,
            // A provider could not produce data (e.g. a TOML string with a syntax error).
            Err(e) => {
                ConfigError::from_list(e.into_iter().map(provider_error).collect())?;
                return Err(ConfigError::key("(top level)", "cannot be read"));
            }
        };
        let mut found: Vec<ConfigError> = Vec::new();
        let mut bad_keys: Vec<String> = Vec::new();
        let mut config = None;
        // Each round removes at least one key, so this ends; the bound is a safety net.
        for _ in 0..1000 {
            match Figment::from(Serialized::defaults(&data)).extract::<Config>() {
                Ok(c) => {
                    config = Some(c);
                    break;
                }
                Err(errors) => {
                    let mut removed = false;
                    for e in errors {
                        found.push(explain(&data, &e));
                        bad_keys.push(e.path.join("."));
                        removed |= remove_path(&mut data, &e.path);
                    }
                    if !removed {
                        break;
                    }
                }
            }
        }
        if let Some(c) = &config {
            // A key already reported for its value is not reported again for its default.
            found.extend(c.problems().into_iter().filter(|p| {
                let key = p.config_key().unwrap_or_default();
                !bad_keys.iter().any(|bad| {
                    key == bad
                        || key.starts_with(&format!("{bad}."))
                        || key.starts_with(&format!("{bad}["))
                })
            }));
        }
        found.sort_by(|a, b| a.config_key().cmp(&b.config_key()));
        ConfigError::from_list(found)?;
        config.ok_or_else(|| ConfigError::key("(top level)", "cannot be read"))
    }

    /// The external origin, without a trailing slash, e.g. `https://app.example.com`.
    pub fn public_origin(&self) -> String {
        match &self.public_url {
            Some(u) => u.as_str().trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The origin every login runs at, without a trailing slash: `public_url`'s scheme and
    /// port with `auth_host` as the host when that is set; otherwise [`Config::public_origin`].
    pub fn login_origin(&self) -> String {
        let Some(auth_host) = &self.auth_host else {
            return self.public_origin();
        };
        let scheme = self.public_url.as_ref().map_or("http", |u| u.scheme());
        if auth_host.contains(':') {
            return format!("{scheme}://{auth_host}");
        }
        let port = match &self.public_url {
            Some(u) => u.port(),
            None => Some(self.listen.port()),
        };
        match port {
            Some(p) => format!("{scheme}://{auth_host}:{p}"),
            None => format!("{scheme}://{auth_host}"),
        }
    }

    /// True when `host` (a name, or a `*.suffix` rule) is `session.cookie_domain` or under it,
    /// so the session cookie reaches it (any case).
    pub fn under_cookie_domain(&self, host: &str) -> bool {
        let domain = self.session.cookie_domain.trim_start_matches('.');
        let host = host.strip_prefix("*.").unwrap_or(host);
        host.eq_ignore_ascii_case(domain)
            || host.len() > domain.len()
                && host.is_char_boundary(host.len() - domain.len())
                && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
                && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
    }

    /// True when cookies must carry `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.public_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https")
    }

    /// The assertion's `aud`: `assertion.audience`, else the upstream's origin
    /// (`scheme://host[:port]`), else (auth-only mode) the public origin.
    pub fn assertion_audience(&self) -> String {
        if let Some(aud) = &self.assertion.audience {
            return aud.clone();
        }
        match &self.upstream {
            Some(u) => u.origin().ascii_serialization(),
            None => self.public_origin_only(),
        }
    }

    /// The origin (`scheme://host[:port]`) of the public URL, without any path.
    pub fn public_origin_only(&self) -> String {
        match &self.public_url {
            Some(u) => u.origin().ascii_serialization(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn redacted_toml(&self) -> String {
        toml_string(self)
    }
}
