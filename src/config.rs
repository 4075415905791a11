//! Configuration: the contract's keys, loaded with figment (built-in defaults < TOML file <
//! `DAP_*` environment, `__` for nesting), then validated before anything binds.
//!
//! Every problem is found in one pass and becomes one [`ConfigError`] line naming the key,
//! echoing the value and saying how to fix it. Secrets are held in [`Secret`], which never
//! prints its value, and no message shows one.

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

/// What a string key says when given a list or a table (never the value: it may be a secret).
const NOT_A_SCALAR: &str = "must be a single value in quotes, not a list or a table";

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::de::Error;
    Scalar::deserialize(d)
        .map(Scalar::into_string)
        .map_err(|_| D::Error::custom(NOT_A_SCALAR))
}

fn lenient_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde::de::Error;
    #[derive(Deserialize)]
    struct Item(#[serde(deserialize_with = "lenient_string")] String);
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<Item>),
        One(Item),
    }
    let list = OneOrMany::deserialize(d).map_err(|_| {
        D::Error::custom("must be a list like [\"a\", \"b\"] or a comma-separated string")
    })?;
    Ok(match list {
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
            s.parse::<i64>().map_err(|_| {
                D::Error::custom(format!(
                    "`{}` is not a department id; use whole numbers, e.g. [1, 42]",
                    shown(s)
                ))
            })
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
    s.parse::<std::net::IpAddr>().map(IpNet::from).map_err(|_| {
        format!(
            "`{}` is not an IP network or address, e.g. 10.0.0.0/8 or 10.0.0.5",
            shown(s)
        )
    })
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
        for f in &FIELDS {
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
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = HeadersConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of identity header names")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<HeadersConfig, A::Error> {
                let mut headers = HeadersConfig::none();
                while let Some(FieldKey(field)) = map.next_key::<FieldKey>()? {
                    let HeaderText(name) = map.next_value()?;
                    headers.set(field, name.as_deref());
                }
                Ok(headers)
            }
        }
        d.deserialize_map(Visit)
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
            if let Some(fix) = missing_scheme(up, "http") {
                bad("upstream", fix);
            } else if up.scheme() != "http" {
                bad(
                    "upstream",
                    format!(
                        "scheme `{}` is not supported; use an http:// address, e.g. http://127.0.0.1:3000",
                        up.scheme()
                    ),
                );
            } else if up.host_str().is_none_or(str::is_empty) {
                bad(
                    "upstream",
                    format!(
                        "`{}` has no host; e.g. http://127.0.0.1:3000",
                        masked_url(up)
                    ),
                );
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
        ] {
            if value.is_zero() {
                bad(key, format!("must be more than 0, e.g. {example}"));
            }
        }
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
    // strings, numbers, booleans and arrays a config holds). `public_url` shows the origin in
    // effect (`http://{listen}` when unset); other unset keys become `# … is unset` comments.
    match Serialized::defaults(config)
        .data()
        .ok()
        .and_then(|d| d.into_values().next())
    {
        Some(mut dict) => {
            dict.insert("public_url".into(), Value::from(config.public_origin()));
            let mut out = String::new();
            for (k, v) in dict {
                write_value(&mut out, &k, &v);
            }
            out
        }
        None => String::new(),
    }
}

fn write_value(out: &mut String, key: &str, value: &Value) {
    match value {
        Value::Dict(_, dict) => {
            for (k, v) in dict {
                write_value(out, &format!("{key}.{k}"), v);
            }
        }
        Value::Empty(..) if key == "upstream" => {
            out.push_str("# upstream is unset: auth-only mode\n");
        }
        Value::Empty(..) => out.push_str(&format!("# {key} is unset\n")),
        Value::String(_, v) if SECRET_KEYS.contains(&key) && !v.is_empty() => {
            // A URL keeps its shape with the password masked; other secrets show nothing.
            let shown = if key == "session.redis_url" {
                masked(v)
            } else {
                "<redacted>".to_string()
            };
            let json = serde_json::to_string(&shown).unwrap_or_default();
            out.push_str(&format!("{key} = {json}\n"));
        }
        other => {
            let json = serde_json::to_string(other).unwrap_or_default();
            out.push_str(&format!("{key} = {json}\n"));
        }
    }
}

// ---- Explaining problems: each message names the value and how to fix it ----------------

/// How to make a good `session.secret`.
const MAKE_SECRET: &str = "`head -c 32 /dev/urandom | base64`";

/// Keys whose values are secrets (or may carry a password) and are never shown.
const SECRET_KEYS: [&str; 3] = ["session.secret", "dingtalk.app_secret", "session.redis_url"];

/// Keys holding URLs.
const URL_KEYS: [&str; 6] = [
    "upstream",
    "public_url",
    "dingtalk.api_base",
    "dingtalk.new_api_base",
    "dingtalk.login_base",
    "dingtalk.jsapi_url",
];

/// Keys holding durations, with the unit most values of that key use.
const DURATION_KEYS: [(&str, char); 6] = [
    ("upstream_timeout", 's'),
    ("dingtalk.timeout", 's'),
    ("session.ttl", 'h'),
    ("session.revalidate", 'm'),
    ("limits.header_read_timeout", 's'),
    ("limits.idle_timeout", 's'),
];

/// Keys with a fixed set of values, and those values (as serde spells them).
const CHOICE_KEYS: [(&str, &[&str]); 3] = [
    ("dingtalk.user_api", &["v2", "legacy"]),
    ("dingtalk.token_api", &["gettoken", "v1"]),
    ("session.store", &["cookie", "redis"]),
];

/// The environment variable for a dotted key: `session.secret` → `DAP_SESSION__SECRET`.
fn env_name(key: &str) -> String {
    format!("DAP_{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// A typical good value of `key`, for "e.g." hints.
fn example_for(key: &str) -> &'static str {
    match key {
        "upstream" => "http://127.0.0.1:3000",
        "public_url" => "https://app.example.com",
        "dingtalk.api_base" => "https://oapi.dingtalk.com",
        "dingtalk.new_api_base" => "https://api.dingtalk.com",
        "dingtalk.login_base" => "https://login.dingtalk.com",
        "dingtalk.jsapi_url" => {
            "https://g.alicdn.com/dingding/dingtalk-jsapi/3.1.0/dingtalk.open.js"
        }
        "limits.max_header_bytes" => "65536 (the default)",
        "limits.max_body_bytes" => "10485760 for 10 MiB (0 = unlimited)",
        "limits.max_connections" => "10000 (0 = no cap)",
        _ => "",
    }
}

/// A user's value made safe to print on one line: control characters escaped, long values cut.
fn shown(s: &str) -> String {
    const MAX: usize = 80;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A raw config value as the user wrote it: strings without quotes, others as in TOML/JSON.
fn show_value(v: &Value) -> String {
    match v {
        Value::String(_, s) => shown(s),
        Value::Char(_, c) => shown(&c.to_string()),
        Value::Empty(..) => String::new(),
        other => shown(&serde_json::to_string(other).unwrap_or_default()),
    }
}

/// A URL as text with any `user:password@` hidden.
fn masked(s: &str) -> String {
    let start = s.find("://").map_or(0, |i| i + 3);
    let end = s[start..].find('/').map_or(s.len(), |i| start + i);
    match s[start..end].rfind('@') {
        Some(at) => shown(&format!("{}***{}", &s[..start], &s[start + at..])),
        None => shown(s),
    }
}

/// [`masked`] for a parsed URL.
fn masked_url(u: &Url) -> String {
    masked(u.as_str())
}

/// `localhost:3000` parses as scheme `localhost` with path `3000` (and `user:pw@host` as scheme
/// `user`): say it needs a scheme.
fn missing_scheme(u: &Url, scheme: &str) -> Option<String> {
    let looks_like_host = u.cannot_be_a_base()
        && !matches!(
            u.scheme(),
            "mailto" | "data" | "javascript" | "about" | "tel"
        );
    looks_like_host.then(|| {
        let m = masked_url(u);
        format!("`{m}` needs a scheme, e.g. {scheme}://{m}")
    })
}

/// The value at `path` in the raw data, looking into lists by index.
fn lookup<'a>(dict: &'a Dict, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = dict.get(first)?;
    for part in rest {
        value = match value {
            Value::Dict(_, d) => d.get(part)?,
            Value::Array(_, items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Removes the key at `path` (or the list or table holding it), so that its default takes its
/// place. False when there was nothing to remove.
fn remove_path(dict: &mut Dict, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => dict.remove(last).is_some(),
        [first, rest @ ..] => {
            let inner = match dict.get_mut(first) {
                Some(Value::Dict(_, inner)) => remove_path(inner, rest),
                _ => false,
            };
            inner || dict.remove(first).is_some()
        }
    }
}

/// `["access", "skip_auth", "0"]` → `access.skip_auth[0]`.
fn display_key(path: &[String]) -> String {
    let mut key = String::new();
    for part in path {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    if key.is_empty() {
        "(top level)".into()
    } else {
        key
    }
}

/// One extraction error as a line naming the key, the value and the fix.
fn explain(data: &Dict, e: &figment::Error) -> ConfigError {
    let key = display_key(&e.path);
    // The config key itself, without list indexes.
    let field = e
        .path
        .iter()
        .take_while(|p| !p.bytes().all(|b| b.is_ascii_digit()))
        .cloned()
        .collect::<Vec<_>>()
        .join(".");
    let raw = lookup(data, &e.path);
    let message = match &e.kind {
        Kind::UnknownField(name, expected) => {
            let section = &e.path[..e.path.len().saturating_sub(1)];
            unknown_key(&section.join("."), name, expected)
        }
        kind if SECRET_KEYS.iter().any(|s| field == *s) => match kind {
            Kind::Message(m) => m.clone(),
            _ => "has the wrong type; write it in quotes (the value is not shown)".into(),
        },
        kind => fix(&field, raw, kind),
    };
    ConfigError::key(&key, message)
}

/// The fix for a value of the wrong shape at `field` (never a secret: see [`explain`]).
fn fix(field: &str, raw: Option<&Value>, kind: &Kind) -> String {
    let value = raw.map(show_value).unwrap_or_default();
    if URL_KEYS.contains(&field) {
        return url_fix(field, raw, kind);
    }
    if matches!(field, "listen" | "admin_listen") {
        return addr_fix(&value);
    }
    if let Some((_, unit)) = DURATION_KEYS.iter().find(|(k, _)| *k == field) {
        return duration_fix(&value, *unit);
    }
    if let Some((_, choices)) = CHOICE_KEYS.iter().find(|(k, _)| *k == field) {
        return choice_fix(&value, choices);
    }
    if field.starts_with("limits.max_") {
        let sign = if value.starts_with('-') {
            "cannot be negative"
        } else {
            "is not a whole number"
        };
        return format!("`{value}` {sign}; e.g. {}", example_for(field));
    }
    match kind {
        Kind::Message(m) => m.clone(),
        Kind::UnknownVariant(v, choices) => choice_fix(&shown(v), choices),
        Kind::InvalidType(..)
            if known_keys()
                .iter()
                .any(|k| k.starts_with(&format!("{field}."))) =>
        {
            format!(
                "must be a section: [{field}] with keys below it in the file, or {}__<KEY> variables",
                env_name(field)
            )
        }
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
            format!("`{value}` is not valid here; expected {expected}")
        }
        other => other.to_string(),
    }
}

/// A URL key with a value that is not a URL.
fn url_fix(field: &str, raw: Option<&Value>, kind: &Kind) -> String {
    let example = example_for(field);
    let Some(Value::String(_, s)) = raw else {
        let value = raw.map(show_value).unwrap_or_default();
        return format!("`{value}` is not a URL; write it in quotes, e.g. \"{example}\"");
    };
    let s = s.trim();
    if s.is_empty() {
        return format!("is empty; give a URL, e.g. {example}, or leave the key out");
    }
    let m = masked(s);
    if !s.contains("://") {
        let scheme = if field == "upstream" { "http" } else { "https" };
        return format!("`{m}` needs a scheme, e.g. {scheme}://{m}");
    }
    // The url crate's own message repeats the value in Rust's debug form; parse again for
    // just the reason.
    let reason = match Url::parse(s) {
        Err(e) => e.to_string(),
        Ok(_) => one_line(&kind.to_string()),
    };
    format!("`{m}` is not a valid URL ({reason}); e.g. {example}")
}

/// `listen`/`admin_listen` with a value that is not `ip:port`.
fn addr_fix(value: &str) -> String {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if value.is_empty() {
        return "is empty; give an IP address and port, e.g. 127.0.0.1:8080 or 0.0.0.0:8080".into();
    }
    if digits(value) {
        return format!(
            "`{value}` is only a port; give an IP address with it, e.g. 127.0.0.1:{value} or 0.0.0.0:{value} (0.0.0.0 = every interface)"
        );
    }
    let port = value
        .rsplit(':')
        .next()
        .filter(|p| p.parse::<u16>().is_ok())
        .unwrap_or("8080");
    if let Some((host, port)) = value
        .rsplit_once(':')
        .filter(|(h, p)| h.contains(':') && !h.starts_with('[') && p.parse::<u16>().is_ok())
    {
        return format!(
            "`{value}` is not an IP address and port; an IPv6 address goes in brackets, e.g. [{host}]:{port}"
        );
    }
    let why = if value.contains(|c: char| c.is_ascii_alphabetic()) {
        " (host names are not looked up)"
    } else {
        ""
    };
    format!("`{value}` is not an IP address and port{why}; e.g. 127.0.0.1:{port} or 0.0.0.0:{port}")
}

/// A duration key with a bare number or an unknown unit.
fn duration_fix(value: &str, unit: char) -> String {
    if value.is_empty() {
        return "is empty; give a number and a unit, e.g. 90s, 10m, 8h".into();
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let units = match unit {
            'h' => "h, m or s",
            'm' => "m, s or h",
            _ => "s, m or h",
        };
        let mut eg = String::new();
        for (i, u) in units.split(", ").flat_map(|p| p.split(" or ")).enumerate() {
            eg.push_str(match i {
                0 => "",
                1 => ", ",
                _ => " or ",
            });
            eg.push_str(value);
            eg.push_str(u);
        }
        return format!("`{value}` needs a unit, e.g. {eg}");
    }
    format!("`{value}` is not a duration; use a whole number and a unit, e.g. 90s, 10m, 8h")
}

/// A key with a fixed set of values.
fn choice_fix(value: &str, choices: &[&str]) -> String {
    let list = match choices {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [init @ .., last] => format!(
            "{} or `{last}`",
            init.iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let case = if choices.iter().any(|c| value.eq_ignore_ascii_case(c)) {
        " (in lower case)"
    } else {
        ""
    };
    format!("`{value}` is not a valid choice; use {list}{case}")
}

/// An unknown key `name` in `section` (`""` = top level), whose known keys are `expected`.
fn unknown_key(section: &str, name: &str, expected: &[&str]) -> String {
    if let Some(best) = nearest(name, expected) {
        return format!("unknown key; did you mean `{best}`?");
    }
    let norm = normalize(name);
    let full = if section.is_empty() {
        norm.clone()
    } else {
        format!("{section}.{norm}")
    };
    let all = known_keys();
    // `DAP_SESSION_SECRET` (one underscore) arrives as the top-level key `session_secret`.
    if let Some(k) = all
        .iter()
        .find(|k| k.contains('.') && k.replace('.', "_") == full)
    {
        return format!(
            "unknown key; did you mean `{k}`? (environment variables separate sections with two underscores: {})",
            env_name(k)
        );
    }
    // The right key in the wrong section (in TOML, a key below a [section] header belongs to it).
    if let Some(k) = all
        .iter()
        .find(|k| k.rsplit('.').next() == Some(norm.as_str()))
    {
        return match k.split_once('.') {
            Some((sec, _)) => format!("unknown key; did you mean `{k}`? (it goes under [{sec}])"),
            None => format!(
                "unknown key; did you mean the top-level `{k}`? (top-level keys go above the first [section] of the file)"
            ),
        };
    }
    if let Some(k) = only_prefix(name, expected) {
        return format!("unknown key; did you mean `{k}`?");
    }
    let place = if section.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in [{section}]")
    };
    format!("unknown key; the keys {place} are: {}", expected.join(", "))
}

/// Lower case, `-` as `_`: how a key is compared for suggestions.
fn normalize(s: &str) -> String {
    s.to_lowercase().replace('-', "_")
}

/// The known key closest to `name` by edit distance, when that is small: at most 3 and at most
/// half the known key's length.
fn nearest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let name = normalize(name);
    known
        .iter()
        .map(|k| (edit_distance(&name, k), *k))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, k)| *d <= 3 && *d * 2 <= k.chars().count())
        .map(|(_, k)| k)
}

/// The only known key that starts with `name` (`cookie` → `cookie_name`) or that `name` starts
/// with (`secret_key` → `secret`); at least 4 characters must match.
fn only_prefix<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let name = normalize(name);
    let mut found = known.iter().filter(|k| {
        k.len().min(name.len()) >= 4 && (k.starts_with(name.as_str()) || name.starts_with(**k))
    });
    match (found.next(), found.next()) {
        (Some(k), None) => Some(*k),
        _ => None,
    }
}

/// Edit distance between `a` and `b` in characters: insertions, deletions, substitutions and
/// swaps of two neighbours each count 1 (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j] = distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Every key the config knows, dotted (`session.ttl`). Learned from serde itself, so it cannot
/// fall out of step with the structs: extracting a made-up key makes `deny_unknown_fields`
/// list the fields of its section.
fn known_keys() -> &'static [String] {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = Vec::new();
        for top in fields_of("") {
            match fields_of(top) {
                [] => keys.push(top.to_string()),
                sub => keys.extend(sub.iter().map(|k| format!("{top}.{k}"))),
            }
        }
        keys
    })
}

/// The fields of the section `section` (`""` = top level); empty for a key that is not a section.
fn fields_of(section: &str) -> &'static [&'static str] {
    const PROBE: &str = "\u{1}";
    let (key, depth) = if section.is_empty() {
        (PROBE.to_string(), 1)
    } else {
        (format!("{section}.{PROBE}"), 2)
    };
    match Figment::from(Serialized::default(&key, 0)).extract::<Config>() {
        Err(e) if e.path.len() == depth => match e.kind {
            Kind::UnknownField(_, fields) => fields,
            _ => &[],
        },
        _ => &[],
    }
}

/// An error from a provider (not from a value), e.g. a TOML string that does not parse.
fn provider_error(e: figment::Error) -> ConfigError {
    let file = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => source.to_string(),
            None => m.name.to_string(),
        })
        .unwrap_or_else(|| "(unknown source)".into());
    ConfigError::File {
        file,
        message: one_line(&e.kind.to_string()),
    }
}

/// A TOML syntax error as `not valid TOML at line N, column M (in `key`): reason`, from the
/// parser's message and the byte range it points at. The line's text is not shown: it may hold a secret.
fn toml_syntax(text: &str, message: &str, span: Option<std::ops::Range<usize>>) -> String {
    let reason = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let reason = reason.trim_end_matches('.');
    let Some(span) = span else {
        return format!("is not valid TOML: {reason}");
    };
    let bytes = text.as_bytes();
    let start = span.start.min(bytes.len());
    let line_start = bytes[..start]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = bytes[..start].iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&bytes[line_start..start])
        .chars()
        .count()
        + 1;
    let line_text = String::from_utf8_lossy(&bytes[line_start..]);
    let line_text = line_text.lines().next().unwrap_or_default();
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.len() <= 60
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.\"' ".contains(c))
        });
    let near = key.map(|k| format!(" (in `{k}`)")).unwrap_or_default();
    format!("not valid TOML at line {line}, column {column}{near}: {reason}")
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
        assert_eq!(c.headers.get(Field::UserId), Some("X-User-Id"));
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

    /// Defaults keep their real values (redaction is only for display): redis_url loads as
    /// its default and prints without a password.
    #[test]
    fn defaults_are_not_redacted() {
        let c = Config::from_figment(base()).unwrap();
        assert_eq!(c.session.redis_url.expose(), "redis://127.0.0.1:6379");
        let f = base().merge(Toml::string(
            "[session]\nredis_url = \"redis://:hunter2pass@10.0.0.1:6379/0\"",
        ));
        let t = Config::from_figment(f).unwrap().redacted_toml();
        assert!(!t.contains("hunter2pass"), "{t}");
        assert!(t.contains("session.redis_url = \"redis://"), "{t}");
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

    /// The problems of `f`, one string per line.
    fn problem_lines(f: Figment) -> Vec<String> {
        match Config::from_figment(f) {
            Ok(_) => Vec::new(),
            Err(e) => e.lines(),
        }
    }

    /// An empty config lists all four required keys at once, each with how to set it.
    #[test]
    fn empty_config_lists_every_required_key() {
        let lines = problem_lines(Figment::from(Serialized::defaults(Config::default())));
        assert_eq!(lines.len(), 4, "{lines:#?}");
        for (line, key) in lines.iter().zip([
            "dingtalk.app_key",
            "dingtalk.app_secret",
            "dingtalk.corp_id",
            "session.secret",
        ]) {
            assert!(
                line.starts_with(&format!("config key `{key}`: is required")),
                "{line}"
            );
            assert!(line.contains(&env_name(key)), "{line}");
        }
        let e = Config::default().validate().unwrap_err();
        assert!(
            matches!(&e, ConfigError::Several(all) if all.len() == 4),
            "{e}"
        );
        assert_eq!(e.to_string().lines().count(), 4, "{e}");
    }

    /// Type errors and validation problems are all reported in one pass, sorted by key, and a
    /// key with a bad value is not reported a second time for its default.
    #[test]
    fn every_problem_in_one_pass() {
        let f = base().merge(Toml::string(
            "listen = \"8080\"\nupstream = \"127.0.0.1:3000\"\nauth_prefix = \"x\"\n\
             [session]\nttl = \"8\"\nsecret = [\"a\"]\n[dingtalk]\nuser_api = \"v9\"\n",
        ));
        let lines = problem_lines(f);
        let keys: Vec<&str> = lines.iter().filter_map(|l| l.split('`').nth(1)).collect();
        assert_eq!(
            keys,
            [
                "auth_prefix",
                "dingtalk.user_api",
                "listen",
                "session.secret",
                "session.ttl",
                "upstream"
            ],
            "{lines:#?}"
        );
        assert!(lines[3].contains("not a list"), "{lines:#?}");
    }

    /// Edit distance counts an insertion, a deletion, a substitution or a swap of neighbours as
    /// one edit, over characters rather than bytes.
    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("ttl", "ttl"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("cookie_nam", "cookie_name"), 1);
        assert_eq!(edit_distance("cookiename", "cookie_name"), 1);
        assert_eq!(edit_distance("tll", "ttl"), 1);
        assert_eq!(edit_distance("ttl", "tl"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("秘钥", "密钥"), 1);
    }

    /// Suggestions: the nearest known key when it is close, else a unique prefix, else nothing.
    #[test]
    fn suggestions_pick_the_nearest_known_key() {
        let session = fields_of("session");
        assert_eq!(nearest("cookie_nam", session), Some("cookie_name"));
        assert_eq!(nearest("Cookie-Name", session), Some("cookie_name"));
        assert_eq!(nearest("tll", session), Some("ttl"));
        assert_eq!(nearest("revalidat", session), Some("revalidate"));
        assert_eq!(nearest("zzzzzz", session), None);
        assert_eq!(nearest("x", session), None);
        assert_eq!(nearest("lisen", fields_of("")), Some("listen"));
        assert_eq!(only_prefix("cookie", session), Some("cookie_name"));
        assert_eq!(only_prefix("secret_key", session), Some("secret"));
        assert_eq!(only_prefix("re", session), None);
        assert_eq!(
            unknown_key("session", "cookie_nam", session),
            "unknown key; did you mean `cookie_name`?"
        );
        assert!(
            unknown_key("", "session_ttl", fields_of("")).contains("`session.ttl`"),
            "env-style single underscore"
        );
    }

    /// The known keys come from serde and match what `check-config` prints, key for key.
    #[test]
    fn known_keys_match_the_structs() {
        let keys = known_keys();
        assert_eq!(keys.len(), 40, "{keys:?}");
        for key in [
            "listen",
            "session.cookie_name",
            "headers.title",
            "verify.uri_header",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key}");
        }
        assert!(fields_of("listen").is_empty());
        let printed = Config::from_figment(base()).unwrap().redacted_toml();
        for line in printed.lines() {
            let key = line
                .trim_start_matches("# ")
                .split([' ', '='])
                .next()
                .unwrap_or_default();
            assert!(keys.iter().any(|k| k == key), "{line}");
        }
    }

    /// The allowed values named in messages are exactly the ones serde accepts.
    #[test]
    fn choices_match_serde() {
        for (key, choices) in CHOICE_KEYS {
            for choice in choices {
                let f = base().merge(Serialized::default(key, choice));
                assert!(Config::from_figment(f).is_ok(), "{key} = {choice}");
            }
            let f = base().merge(Serialized::default(key, "bogus"));
            let lines = problem_lines(f);
            assert_eq!(lines.len(), 1, "{lines:?}");
            for choice in choices {
                assert!(lines[0].contains(&format!("`{choice}`")), "{lines:?}");
            }
        }
    }

    /// A syntax error names the line and column and the key on that line, not its value; odd
    /// spans (past the end, inside a character) do not panic.
    #[test]
    fn toml_syntax_names_line_and_key() {
        let text = "a = 1\r\n\r\n[session]\nsecret = \"s3cr3t\n";
        let e = Toml::from_str::<Dict>(text).unwrap_err();
        let m = toml_syntax(text, e.message(), e.span());
        assert!(m.starts_with("not valid TOML at line 4, column"), "{m}");
        assert!(m.contains("(in `secret`)"), "{m}");
        assert!(!m.contains("s3cr3t"), "{m}");
        assert!(toml_syntax("密 = x", "bad", Some(1..2)).contains("line 1, column 2"));
        assert!(toml_syntax("x", "bad\nthing", Some(99..100)).ends_with("bad; thing"));
        assert_eq!(toml_syntax("x", "bad", None), "is not valid TOML: bad");
    }

    /// Values are printed on one line, cut when long; passwords in URLs are hidden.
    #[test]
    fn values_are_shown_safely() {
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown(&"密".repeat(100)).chars().count(), 81);
        assert_eq!(masked("http://u:pw@h:1/p@x"), "http://***@h:1/p@x");
        assert_eq!(masked("u:pw@h:1"), "***@h:1");
        assert_eq!(masked("h:1"), "h:1");
        let f = base().merge(Toml::string("upstream = \"https://u:pw@h\""));
        let lines = problem_lines(f);
        assert!(!lines.concat().contains("pw"), "{lines:?}");
    }

    /// `check-config` shows the origin in effect for an unset `public_url`, never `null`.
    #[test]
    fn redacted_toml_shows_effective_public_url() {
        let c = Config::from_figment(base()).unwrap();
        let t = c.redacted_toml();
        assert!(
            t.contains("\npublic_url = \"http://127.0.0.1:8080\"\n"),
            "{t}"
        );
        assert!(!t.contains("null"), "{t}");
        assert!(t.contains("# admin_listen is unset\n"), "{t}");
    }

    /// Property tests of loading.
    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever value lands on whatever key (known or not), loading never panics and every
            /// problem is one non-empty line.
            #[test]
            fn any_value_on_any_key_gives_one_line_problems(
                key in prop_oneof![
                    prop::sample::select(known_keys().to_vec()),
                    "[a-z_]{1,12}(\\.[a-z_]{1,12})?",
                ],
                value in prop_oneof![
                    any::<String>().prop_map(Value::from),
                    any::<i64>().prop_map(Value::from),
                    any::<bool>().prop_map(Value::from),
                    prop::collection::vec(".{0,8}", 0..3).prop_map(Value::from),
                ],
            ) {
                let f = base().merge(Serialized::default(&key, value));
                for line in problem_lines(f) {
                    prop_assert!(!line.is_empty() && !line.contains('\n'), "{}", line);
                }
            }
        }
    }
}
