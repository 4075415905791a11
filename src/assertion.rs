//! The signed identity assertion (`[assertion]`): an ES256 JWT naming the user, sent upstream
//! in `X-DingTalk-Assertion` (and in `verify` answers), so an app can check that a request
//! really passed through us instead of trusting a plain `X-User-Id` that anyone who reaches
//! it directly could type.
//!
//! This module owns the signing key (loaded from `assertion.key_file`, or generated at start),
//! the public keys of earlier key files (`assertion.previous_key_files`), the JWKS document
//! served at `{auth_prefix}/jwks.json`, the claims, and the per-session token cache: a token is
//! reused while more than half of its lifetime is left, so the hot path signs about once per
//! session per `ttl / 2` rather than on every request. The cache is bounded
//! ([`MAX_CACHED`]) and pruned when full.
//!
//! Signing is `jsonwebtoken`'s (with `ring`, the crypto library rustls already brings); key
//! generation and the public point come from `ring` too. No key material is ever logged.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use dashmap::DashMap;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::Serialize;

use crate::clock::Clock;
use crate::config::Config;
use crate::session::Session;

/// Most sessions whose tokens are remembered at once; past it, stale entries are dropped, and
/// if most are still fresh, all of them (they are re-signed on demand).
pub const MAX_CACHED: usize = 10_000;

/// The DER prefix of a P-256 `SubjectPublicKeyInfo` holding an uncompressed point: what
/// precedes the 65 point bytes in a `PUBLIC KEY` PEM of that curve.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why the assertion signer could not be set up; each names the config key at fault.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    /// A key file could not be read.
    #[error("{path}: cannot be read: {source}")]
    Read {
        /// The config key (`assertion.key_file`, `assertion.previous_key_files[1]`).
        key: String,
        /// The file as configured.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key file holds no usable key.
    #[error("{path}: {message}")]
    BadKey {
        /// The config key.
        key: String,
        /// The file as configured.
        path: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A key could not be generated.
    #[error("cannot generate a signing key")]
    Generate {
        /// The config key (`assertion.key_file`).
        key: String,
    },
    /// The assertion header name is not a header name (validation reports it first).
    #[error("`{0}` is not a header name")]
    Header(String),
}

impl AssertionError {
    /// The config key this problem is about.
    pub fn config_key(&self) -> &str {
        match self {
            AssertionError::Read { key, .. }
            | AssertionError::BadKey { key, .. }
            | AssertionError::Generate { key } => key,
            AssertionError::Header(_) => "assertion.header",
        }
    }
}

/// One published key: a P-256 public point, as a JWK.
#[derive(Clone, Debug, Serialize)]
pub struct Jwk {
    /// `EC`.
    kty: &'static str,
    /// `P-256`.
    crv: &'static str,
    /// The point's x coordinate, base64url.
    x: String,
    /// The point's y coordinate, base64url.
    y: String,
    /// The RFC 7638 thumbprint of the key (base64url SHA-256).
    kid: String,
    /// `ES256`.
    alg: &'static str,
    /// `sig`.
    #[serde(rename = "use")]
    use_: &'static str,
}

impl Jwk {
    /// The JWK of an uncompressed P-256 point (`0x04 || x || y`); `None` for anything else.
    pub fn from_point(point: &[u8]) -> Option<Jwk> {
        if point.len() != 65 || point[0] != 0x04 {
            return None;
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..]);
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = {
            use sha2::Digest;
            URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
        };
        Some(Jwk {
            kty: "EC",
            crv: "P-256",
            x,
            y,
            kid,
            alg: "ES256",
            use_: "sig",
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// The claims of one assertion.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
    userid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mobile: Option<&'a str>,
    dept_ids: &'a [i64],
    corp_id: &'a str,
}

/// A token handed out for one session, reused while it has more than half its life left.
struct Cached {
    /// The session's details as of this check time (revalidation changes them).
    checked_at: u64,
    /// The session's login time (a new login under the same key gets a new token).
    issued_at: u64,
    /// Reused until then (`iat + ttl / 2`).
    reuse_until: u64,
    /// The header value: the compact JWT.
    token: HeaderValue,
}

/// The assertion signer: the current key, the JWKS, the claims' fixed parts and the cache.
pub struct Assertion {
    header: HeaderName,
    key: EncodingKey,
    jwt_header: Header,
    jwks: Bytes,
    issuer: String,
    audience: String,
    corp_id: String,
    ttl: u64,
    clock: Clock,
    /// Per audience (each route's `aud`), the tokens of each session.
    caches: DashMap<Box<str>, DashMap<String, Cached>>,
}

impl Assertion {
    /// The signer `config` asks for, or `None` when `assertion.enabled` is false. Reads the
    /// key files; without `key_file`, generates a key and says so in the log.
    pub fn from_config(config: &Config, clock: Clock) -> Result<Option<Assertion>, AssertionError> {
        let a = &config.assertion;
        if !a.enabled {
            return Ok(None);
        }
        let header = HeaderName::from_bytes(a.header.as_bytes())
            .map_err(|_| AssertionError::Header(a.header.clone()))?;
        let pkcs8 = match &a.key_file {
            Some(path) => private_key_file("assertion.key_file", path)?,
            None => {
                let doc = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|_| AssertionError::Generate {
                    key: "assertion.key_file".into(),
                })?;
                doc.as_ref().to_vec()
            }
        };
        let current = public_of_pkcs8(&pkcs8).ok_or_else(|| AssertionError::Generate {
            key: "assertion.key_file".into(),
        })?;
        if a.key_file.is_none() {
            tracing::info!(kid = %current.kid, "assertion.key_file is unset: generated an ES256 signing key for this process");
            tracing::warn!("replicas each generate their own assertion key; give them one shared assertion.key_file (the JWKS of one replica does not verify another's tokens)");
        }
        let mut keys = vec![current.clone()];
        for (i, path) in a.previous_key_files.iter().enumerate() {
            let jwk = public_key_file(&format!("assertion.previous_key_files[{i}]"), path)?;
            if !keys.iter().any(|k| k.kid == jwk.kid) {
                keys.push(jwk);
            }
        }
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap_or_default();
        let mut jwt_header = Header::new(Algorithm::ES256);
        jwt_header.kid = Some(current.kid.clone());
        Ok(Some(Assertion {
            header,
            key: EncodingKey::from_ec_der(&pkcs8),
            jwt_header,
            jwks: Bytes::from(jwks),
            issuer: config.public_origin(),
            audience: config.assertion_audience(),
            corp_id: config.dingtalk.corp_id.clone(),
            ttl: a.ttl.as_secs().max(1),
            clock,
            caches: DashMap::new(),
        }))
    }

    /// The header the assertion travels in.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The JWKS document (`{"keys":[…]}`): the current key first, then earlier ones.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// The `iss` claim.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `aud` claim.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The assertion for `session` with the default audience ([`Assertion::audience`]).
    pub fn token(&self, session: &Session) -> Option<HeaderValue> {
        self.token_for(session, &self.audience)
    }

    /// The assertion for `session` addressed to `audience` (the route's `aud`): a cached
    /// token while it has more than half its lifetime left, else a newly signed one. `None`
    /// only if signing failed (logged).
    pub fn token_for(&self, session: &Session, audience: &str) -> Option<HeaderValue> {
        let now = self.clock.now_secs();
        let name = if session.id.is_empty() {
            session.userid()
        } else {
            session.id.as_str()
        };
        let cache = match self.caches.get(audience) {
            Some(c) => c,
            None => {
                self.caches.entry(audience.into()).or_default();
                self.caches.get(audience)?
            }
        };
        if let Some(c) = cache.get(name) {
            if c.checked_at == session.checked_at
                && c.issued_at == session.issued_at
                && now < c.reuse_until
            {
                return Some(c.token.clone());
            }
        }
        let token = self.sign(session, audience, now)?;
        if cache.len() >= MAX_CACHED {
            prune(&cache, now);
        }
        cache.insert(
            name.to_string(),
            Cached {
                checked_at: session.checked_at,
                issued_at: session.issued_at,
                reuse_until: now + self.ttl / 2,
                token: token.clone(),
            },
        );
        Some(token)
    }

    /// How many sessions' tokens are cached (tests, and the bound's proof).
    pub fn cached(&self) -> usize {
        self.caches.iter().map(|c| c.len()).sum()
    }

    /// Signs a new token for `session` at `now`.
    fn sign(&self, session: &Session, audience: &str, now: u64) -> Option<HeaderValue> {
        let u = &session.user;
        let claims = Claims {
            iss: &self.issuer,
            aud: audience,
            sub: &u.userid,
            iat: now,
            exp: now + self.ttl,
            jti: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
            userid: &u.userid,
            unionid: u.unionid.as_deref(),
            name: u.name.as_deref(),
            mobile: u.mobile.as_deref(),
            dept_ids: &u.dept_ids,
            corp_id: &self.corp_id,
        };
        match jsonwebtoken::encode(&self.jwt_header, &claims, &self.key) {
            Ok(jwt) => HeaderValue::from_str(&jwt).ok(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot sign the assertion; sending none");
                None
            }
        }
    }
}

/// Drops tokens no longer reused; when most are still fresh, drops them all, so the next
/// pass is at least [`MAX_CACHED`]` / 2` inserts away (amortised O(1) per insert).
fn prune(cache: &DashMap<String, Cached>, now: u64) {
    cache.retain(|_, c| now < c.reuse_until);
    if cache.len() >= MAX_CACHED / 2 {
        cache.clear();
    }
}

/// The PKCS#8 DER of the P-256 private key in the PEM file `path`.
fn private_key_file(key: &str, path: &str) -> Result<Vec<u8>, AssertionError> {
    let bad = |message: String| AssertionError::BadKey {
        key: key.to_string(),
        path: path.to_string(),
        message,
    };
    let blocks = read_pem(key, path)?;
    if let Some(b) = blocks.iter().find(|b| b.tag() == "PRIVATE KEY") {
        return match public_of_pkcs8(b.contents()) {
            Some(_) => Ok(b.contents().to_vec()),
            None => Err(bad(NOT_P256.into())),
        };
    }
    if blocks.iter().any(|b| b.tag() == "EC PRIVATE KEY") {
        return Err(bad(SEC1.into()));
    }
    Err(bad(format!("has no PRIVATE KEY block; {MAKE_KEY}")))
}

/// The public JWK of the key in the PEM file `path`: a P-256 private key (PKCS#8), or its
/// public key (`PUBLIC KEY`).
fn public_key_file(key: &str, path: &str) -> Result<Jwk, AssertionError> {
    let bad = |message: String| AssertionError::BadKey {
        key: key.to_string(),
        path: path.to_string(),
        message,
    };
    let blocks = read_pem(key, path)?;
    if let Some(b) = blocks.iter().find(|b| b.tag() == "PRIVATE KEY") {
        return public_of_pkcs8(b.contents()).ok_or_else(|| bad(NOT_P256.into()));
    }
    if let Some(b) = blocks.iter().find(|b| b.tag() == "PUBLIC KEY") {
        return b
            .contents()
            .strip_prefix(&P256_SPKI_PREFIX[..])
            .and_then(Jwk::from_point)
            .ok_or_else(|| bad(NOT_P256.into()));
    }
    if blocks.iter().any(|b| b.tag() == "EC PRIVATE KEY") {
        return Err(bad(SEC1.into()));
    }
    Err(bad(
        "has no PRIVATE KEY or PUBLIC KEY block; list the earlier assertion.key_file here".into(),
    ))
}

const NOT_P256: &str = "is not a P-256 (ES256) key; make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem`";
const SEC1: &str = "is an `EC PRIVATE KEY` (SEC1) file; convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in old.pem -out key.pem`";
const MAKE_KEY: &str =
    "make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem`";

fn read_pem(key: &str, path: &str) -> Result<Vec<pem::Pem>, AssertionError> {
    let text = std::fs::read(Path::new(path)).map_err(|source| AssertionError::Read {
        key: key.to_string(),
        path: path.to_string(),
        source,
    })?;
    pem::parse_many(&text).map_err(|_| AssertionError::BadKey {
        key: key.to_string(),
        path: path.to_string(),
        message: format!("is not a PEM file; {MAKE_KEY}"),
    })
}

/// The public JWK of a PKCS#8 P-256 private key; `None` when it is not one.
fn public_of_pkcs8(der: &[u8]) -> Option<Jwk> {
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
            .ok()?;
    Jwk::from_point(pair.public_key().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::user::User;
    use std::time::Duration;

    const NOW: u64 = 1_700_000_000;

    fn config() -> Config {
        let mut c = Config::default();
        c.session.secret = Secret::new("0123456789abcdef0123456789abcdef");
        c.dingtalk.corp_id = "dingcorp".into();
        c.upstream = Some(url::Url::parse("http://10.0.0.5:3000/app").unwrap());
        c.public_url = Some(url::Url::parse("https://app.example.com").unwrap());
        c.assertion.enabled = true;
        c
    }

    fn session() -> Session {
        let user = User {
            userid: "zhangsan".into(),
            name: Some("张三".into()),
            mobile: Some("13800000001".into()),
            dept_ids: vec![1, 2],
            ..Default::default()
        };
        Session::new(user, Duration::from_secs(3600), NOW)
    }

    fn decode(a: &Assertion, token: &HeaderValue, now: u64) -> serde_json::Value {
        let jwks: serde_json::Value = serde_json::from_slice(&a.jwks()).unwrap();
        let k = &jwks["keys"][0];
        let key = jsonwebtoken::DecodingKey::from_ec_components(
            k["x"].as_str().unwrap(),
            k["y"].as_str().unwrap(),
        )
        .unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.set_audience(&["http://10.0.0.5:3000"]);
        v.set_issuer(&["https://app.example.com"]);
        v.leeway = 0;
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(token.to_str().unwrap(), &key, &v)
            .expect("verifies");
        assert_eq!(data.header.kid.as_deref(), k["kid"].as_str());
        assert!(data.claims["exp"].as_u64().unwrap() > now);
        data.claims
    }

    /// A generated key signs tokens that verify against its own JWKS, with the promised claims.
    #[test]
    fn signs_verifiable_tokens() {
        let a = Assertion::from_config(&config(), Clock::manual(NOW))
            .unwrap()
            .unwrap();
        let t = a.token(&session()).unwrap();
        let c = decode(&a, &t, NOW);
        assert_eq!(c["sub"], "zhangsan");
        assert_eq!(c["userid"], "zhangsan");
        assert_eq!(c["name"], "张三");
        assert_eq!(c["mobile"], "13800000001");
        assert_eq!(c["dept_ids"], serde_json::json!([1, 2]));
        assert_eq!(c["corp_id"], "dingcorp");
        assert_eq!(c["iat"], NOW);
        assert_eq!(c["exp"], NOW + 60);
        assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 16));
    }

    /// A token is reused until half its lifetime is gone, then replaced; revalidated details
    /// get a new one at once.
    #[test]
    fn reuses_tokens_for_half_their_life() {
        let clock = Clock::manual(NOW);
        let a = Assertion::from_config(&config(), clock.clone())
            .unwrap()
            .unwrap();
        let s = session();
        let first = a.token(&s).unwrap();
        clock.advance(Duration::from_secs(29));
        assert_eq!(a.token(&s).unwrap(), first);
        clock.advance(Duration::from_secs(1));
        let second = a.token(&s).unwrap();
        assert_ne!(second, first);
        assert_eq!(decode(&a, &second, NOW + 30)["iat"], NOW + 30);
        let refreshed = s.refreshed((*s.user).clone(), NOW + 31);
        assert_ne!(a.token(&refreshed).unwrap(), second);
        assert_eq!(a.cached(), 1);
    }

    /// The cache never holds more than [`MAX_CACHED`] sessions.
    #[test]
    fn cache_is_bounded() {
        let a = Assertion::from_config(&config(), Clock::manual(NOW))
            .unwrap()
            .unwrap();
        a.token(&session()).unwrap();
        let cache = a.caches.get(a.audience()).unwrap();
        for _ in 0..(MAX_CACHED + 10) {
            cache.insert(
                URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
                Cached {
                    checked_at: 0,
                    issued_at: 0,
                    reuse_until: NOW + 30,
                    token: HeaderValue::from_static("x"),
                },
            );
            if cache.len() >= MAX_CACHED {
                prune(&cache, NOW);
            }
        }
        drop(cache);
        assert!(a.cached() <= MAX_CACHED);
        a.token(&session()).unwrap();
        assert!(a.cached() <= MAX_CACHED);
    }

    /// Key files: a PKCS#8 P-256 key signs; previous files (private or public PEM) are listed
    /// in the JWKS after the current key; a missing or wrong file names its key.
    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().unwrap();
        let write_key = |name: &str| {
            let doc = EcdsaKeyPair::generate_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .unwrap();
            let path = dir.path().join(name);
            let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", doc.as_ref().to_vec()));
            std::fs::write(&path, pem).unwrap();
            (
                path.display().to_string(),
                public_of_pkcs8(doc.as_ref()).unwrap(),
            )
        };
        let (current, current_jwk) = write_key("current.pem");
        let (old, old_jwk) = write_key("old.pem");
        let (_, older_jwk) = write_key("older.pem");
        let mut point = vec![];
        point.extend_from_slice(&P256_SPKI_PREFIX);
        point.push(4);
        point.extend(URL_SAFE_NO_PAD.decode(&older_jwk.x).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(&older_jwk.y).unwrap());
        let older_pub = dir.path().join("older.pub.pem");
        std::fs::write(&older_pub, pem::encode(&pem::Pem::new("PUBLIC KEY", point))).unwrap();
        let mut c = config();
        c.assertion.key_file = Some(current);
        c.assertion.previous_key_files = vec![old, older_pub.display().to_string()];
        let a = Assertion::from_config(&c, Clock::manual(NOW))
            .unwrap()
            .unwrap();
        let jwks: serde_json::Value = serde_json::from_slice(&a.jwks()).unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, [current_jwk.kid(), old_jwk.kid(), older_jwk.kid()]);
        assert_eq!(jwks["keys"][0]["alg"], "ES256");
        assert_eq!(jwks["keys"][0]["use"], "sig");
        decode(&a, &a.token(&session()).unwrap(), NOW);

        c.assertion.key_file = Some(dir.path().join("absent.pem").display().to_string());
        let e = Assertion::from_config(&c, Clock::manual(NOW))
            .err()
            .unwrap();
        assert_eq!(e.config_key(), "assertion.key_file");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a key").unwrap();
        c.assertion.key_file = Some(garbage.display().to_string());
        let e = Assertion::from_config(&c, Clock::manual(NOW))
            .err()
            .unwrap();
        assert_eq!(e.config_key(), "assertion.key_file");
        c.assertion.key_file = None;
        c.assertion.previous_key_files = vec![garbage.display().to_string()];
        let e = Assertion::from_config(&c, Clock::manual(NOW))
            .err()
            .unwrap();
        assert_eq!(e.config_key(), "assertion.previous_key_files[0]");
    }

    /// The kid is a deterministic 256-bit thumbprint of the point; only an uncompressed P-256
    /// point makes a JWK.
    #[test]
    fn kid_is_stable() {
        let mut point = vec![4u8];
        point.extend([1u8; 32]);
        point.extend([2u8; 32]);
        let a = Jwk::from_point(&point).unwrap();
        let b = Jwk::from_point(&point).unwrap();
        assert_eq!(a.kid, b.kid);
        assert_eq!(a.kid.len(), 43);
        assert!(Jwk::from_point(&point[1..]).is_none());
    }
}
