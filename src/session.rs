//! Sessions: what we remember about a logged-in user, and the encrypted cookies that carry it.
//!
//! The session cookie and the short-lived login-state cookie are both sealed with the `cookie`
//! crate's private jar (AES-256-GCM, authenticated, the cookie's name bound in as associated
//! data). The key is derived once at start-up from `session.secret`; a tampered, truncated,
//! expired or foreign-key cookie simply decodes to `None`.
//!
//! Rotation: keys derived from `session.previous_secrets` open cookies too (after the current
//! key fails); a session cookie opened that way is reported stale, and the store re-issues it
//! under the current key on that same answer.

use std::sync::Arc;
use std::time::Duration;

use cookie::{Cookie, Key, SameSite};
use http::header::COOKIE;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::Config;
use crate::user::User;

/// A logged-in user: who (the [`User`], embedded whole) and for how long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Who, as DingTalk described them at login (or at the last revalidation). Shared: a
    /// session is copied on every request (from the opened-cookie cache), its user never.
    #[serde(rename = "usr")]
    pub user: Arc<User>,
    /// A random id (128 bits, base64url): the session's name in a server-side store and, as a
    /// short hash, in the audit trail. Empty for sessions made before ids existed.
    #[serde(rename = "sid", default)]
    pub id: String,
    /// Issued at, seconds since the Unix epoch.
    #[serde(rename = "iat")]
    pub issued_at: u64,
    /// Expires at, seconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expires_at: u64,
    /// When the user's details were last fetched from DingTalk (see `revalidate`).
    #[serde(rename = "ck", default)]
    pub checked_at: u64,
}

/// The session cookie's content as the previous version wrote it: the user's fields at the top
/// level. Read only, as a fallback, so sessions issued before an upgrade stay valid until they
/// expire (serde's `flatten` buffers every field, so the current format nests the user instead).
#[derive(Deserialize)]
struct FlatSession {
    #[serde(flatten)]
    user: User,
    #[serde(rename = "sid", default)]
    id: String,
    #[serde(rename = "iat")]
    issued_at: u64,
    #[serde(rename = "exp")]
    expires_at: u64,
    #[serde(rename = "ck", default)]
    checked_at: u64,
}

impl Session {
    /// A session from its JSON form, current or previous (see [`FlatSession`]).
    pub fn from_json(json: &str) -> Option<Session> {
        serde_json::from_str(json).ok().or_else(|| {
            let flat: FlatSession = serde_json::from_str(json).ok()?;
            Some(Session {
                user: Arc::new(flat.user),
                id: flat.id,
                issued_at: flat.issued_at,
                expires_at: flat.expires_at,
                checked_at: flat.checked_at,
            })
        })
    }

    /// A new session for `user`, valid for `ttl` from `now`, with a fresh random id.
    pub fn new(user: User, ttl: Duration, now: u64) -> Session {
        use base64::Engine;
        let id =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        Session {
            user: Arc::new(user),
            id,
            issued_at: now,
            expires_at: now.saturating_add(ttl.as_secs()),
            checked_at: now,
        }
    }

    /// This session with `user`'s current details, checked at `at`; same id and expiry.
    pub fn refreshed(&self, mut user: User, at: u64) -> Session {
        if user.unionid.is_none() {
            user.unionid = self.user.unionid.clone();
        }
        Session {
            user: Arc::new(user),
            id: self.id.clone(),
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            checked_at: at,
        }
    }

    /// The user's DingTalk userid.
    pub fn userid(&self) -> &str {
        &self.user.userid
    }

    /// True once the expiry time has passed at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }
}

/// What the session cookie carries when the session itself lives in a server-side store:
/// whose it is and its id (sealed like every cookie of ours, so it cannot be forged).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRef {
    /// The user's DingTalk userid.
    #[serde(rename = "u")]
    pub userid: String,
    /// The session's id.
    #[serde(rename = "sid")]
    pub id: String,
    /// Expires at, seconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expires_at: u64,
}

impl LoginState {
    /// True once the login took longer than [`LOGIN_STATE_TTL`], at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }
}

/// What the login-state cookie remembers between `/login` and `/callback`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoginState {
    /// The random `state` value sent to DingTalk.
    #[serde(rename = "s")]
    pub state: String,
    /// Where to go after login (already checked to be a safe relative path).
    #[serde(rename = "rd")]
    pub rd: String,
    /// Which flow started it: `"inapp"` or `"oauth"`.
    #[serde(rename = "f")]
    pub flow: String,
    /// Expires at, seconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expires_at: u64,
}

/// How long a login may take between `/login` and `/callback`.
pub const LOGIN_STATE_TTL: Duration = Duration::from_secs(600);

/// Most logins one browser may have outstanding at once (tabs restored together each start
/// one); past it the oldest state cookies are deleted.
pub const MAX_PENDING_LOGINS: usize = 7;

/// How many characters of the `state` name its cookie (`{cookie_name}_state_{tag}`).
const STATE_TAG_LEN: usize = 12;

/// Login `state` values already used at the callback, until they expire (replay protection).
/// Marking one is a single atomic insert-if-absent: two concurrent callbacks with the same
/// state cannot both pass. Expired entries leave in expiry order (every state lives
/// [`LOGIN_STATE_TTL`], so insertion order is expiry order), a few per call, never a scan.
#[derive(Default)]
pub struct UsedStates {
    used: dashmap::DashMap<String, u64>,
    order: std::sync::Mutex<std::collections::VecDeque<(u64, String)>>,
}

impl UsedStates {
    /// Marks `state` (valid until `expires_at`) used at `now`; false if it was already used.
    pub fn consume(&self, state: &str, expires_at: u64, now: u64) -> bool {
        self.prune(now);
        match self.used.entry(state.to_string()) {
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(v) => {
                v.insert(expires_at);
                if let Ok(mut order) = self.order.lock() {
                    order.push_back((expires_at, state.to_string()));
                }
                true
            }
        }
    }

    fn prune(&self, now: u64) {
        let Ok(mut order) = self.order.lock() else {
            return;
        };
        while order.front().is_some_and(|(exp, _)| *exp <= now) {
            if let Some((_, state)) = order.pop_front() {
                self.used.remove(&state);
            }
        }
    }
}

/// Session cookies this thread opened lately, by their exact sealed text: a browser sends the
/// same cookie on every request, and opening it (base64, AES-GCM, JSON) is most of what a
/// logged-in request costs us. Only authentic cookies are kept — an entry is made after the
/// cookie opened — and a hit is the very same bytes, so it opens to the very same content;
/// expiry is still judged on every request. Bounded: a thread's map is emptied when it is full.
/// `T` is what the cookie opened to (a session, or a server-side session's reference) and the
/// key that opened it.
struct OpenedCookies<T: Send> {
    per_thread: thread_local::ThreadLocal<std::cell::RefCell<OpenedMap<T>>>,
}

/// Opened cookies by a keyed hash of their last bytes (the AES-GCM tag: random, so hashing
/// the whole cookie buys nothing), with the whole cookie kept to compare on a hit.
struct OpenedMap<T> {
    hasher: std::hash::RandomState,
    map: std::collections::HashMap<u64, (Box<str>, T)>,
}

impl<T> Default for OpenedMap<T> {
    fn default() -> Self {
        OpenedMap {
            hasher: std::hash::RandomState::new(),
            map: std::collections::HashMap::new(),
        }
    }
}

/// Most cookies one thread keeps opened (about 1 KiB each).
const OPENED_PER_THREAD: usize = 2048;

impl<T: Send> Default for OpenedCookies<T> {
    fn default() -> Self {
        OpenedCookies {
            per_thread: thread_local::ThreadLocal::new(),
        }
    }
}

impl<T: Clone + Send> OpenedCookies<T> {
    fn get_or_open(&self, sealed: &str, open: impl FnOnce() -> Option<T>) -> Option<T> {
        let cell = self.per_thread.get_or_default();
        let key = {
            let opened = cell.borrow();
            let tail = &sealed.as_bytes()[sealed.len().saturating_sub(32)..];
            let key = std::hash::BuildHasher::hash_one(&opened.hasher, tail);
            if let Some((text, content)) = opened.map.get(&key) {
                if **text == *sealed {
                    return Some(content.clone());
                }
            }
            key
        };
        let content = open()?;
        let mut opened = cell.borrow_mut();
        if opened.map.len() >= OPENED_PER_THREAD {
            opened.map.clear();
        }
        opened.map.insert(key, (sealed.into(), content.clone()));
        Some(content)
    }
}

/// Seals and opens the proxy's cookies. Built once at start-up; cheap to use per request.
#[derive(Clone)]
pub struct CookieCodec {
    opened: Arc<OpenedCookies<(Session, Sealed)>>,
    opened_refs: Arc<OpenedCookies<(SessionRef, Sealed)>>,
    key: Key,
    /// Keys from `session.previous_secrets`, tried in order after `key`.
    previous: Vec<Key>,
    name: String,
    state_name: String,
    state_path: String,
    secure: bool,
    /// `session.cookie_domain` (no leading dot), for the session cookie only.
    domain: Option<String>,
    ttl: Duration,
    clock: Clock,
}

impl CookieCodec {
    /// Derives the cookie key from `session.secret`; a short secret is an error.
    pub fn new(config: &Config, clock: Clock) -> Result<CookieCodec, SecretTooShort> {
        Ok(CookieCodec {
            opened: Arc::default(),
            opened_refs: Arc::default(),
            key: derive_key(config.session.secret.expose())?,
            previous: config
                .session
                .previous_secrets
                .iter()
                .map(|s| derive_key(s.expose()))
                .collect::<Result<_, _>>()?,
            name: config.session.cookie_name.clone(),
            state_name: format!("{}_state", config.session.cookie_name),
            state_path: config.auth_prefix.clone(),
            secure: config.secure_cookies(),
            domain: Some(config.session.cookie_domain.trim_start_matches('.'))
                .filter(|d| !d.is_empty())
                .map(str::to_ascii_lowercase),
            ttl: config.session.ttl,
            clock,
        })
    }

    /// The valid, unexpired session in the request's `Cookie` headers, if any.
    pub fn session(&self, headers: &HeaderMap) -> Option<Session> {
        self.session_sealed(headers).map(|(s, _)| s)
    }

    /// [`CookieCodec::session`], and whether its cookie was sealed under a previous secret
    /// ([`Sealed::Previous`]: re-issue it).
    pub fn session_sealed(&self, headers: &HeaderMap) -> Option<(Session, Sealed)> {
        let now = self.clock.now_secs();
        find_cookies(headers, &self.name)
            .filter_map(|sealed| {
                self.opened.get_or_open(sealed, || {
                    let (cookie, by) = self.decrypt(&self.name, sealed)?;
                    Some((Session::from_json(cookie.value())?, by))
                })
            })
            .find(|(s, _)| !s.is_expired(now))
    }

    /// The unexpired [`SessionRef`] in the request's session cookie, if any (server-side store).
    pub fn session_ref(&self, headers: &HeaderMap) -> Option<SessionRef> {
        self.session_ref_sealed(headers).map(|(r, _)| r)
    }

    /// [`CookieCodec::session_ref`], and which key opened its cookie.
    pub fn session_ref_sealed(&self, headers: &HeaderMap) -> Option<(SessionRef, Sealed)> {
        let now = self.clock.now_secs();
        find_cookies(headers, &self.name)
            .filter_map(|sealed| {
                self.opened_refs.get_or_open(sealed, || {
                    self.open_sealed::<SessionRef>(&self.name, sealed)
                })
            })
            .find(|(r, _)| now < r.expires_at && !r.id.is_empty())
    }

    /// `Set-Cookie` value carrying a reference to `session` (server-side store).
    pub fn session_ref_cookie(&self, session: &Session) -> String {
        let r = SessionRef {
            userid: session.userid().to_string(),
            id: session.id.clone(),
            expires_at: session.expires_at,
        };
        let max_age = session.expires_at.saturating_sub(self.clock.now_secs());
        self.seal(&self.name, &r, "/", max_age)
    }

    /// The login started with `state`, from its own state cookie, if the cookie is authentic
    /// and carries exactly this state. Expired ones are returned too (their `rd` still tells
    /// where the user was going); the caller checks [`LoginState::is_expired`].
    pub fn login_state(&self, headers: &HeaderMap, state: &str) -> Option<LoginState> {
        let name = self.state_cookie_name(state)?;
        let found = find_cookies(headers, &name)
            .filter_map(|sealed| self.open::<LoginState>(&name, sealed))
            .find(|s| s.state == state);
        found
    }

    /// Every login state cookie the request carries: its name and, when authentic and
    /// unexpired, its content.
    pub fn pending_logins(&self, headers: &HeaderMap) -> Vec<(String, Option<LoginState>)> {
        let prefix = format!("{}_", self.state_name);
        headers
            .get_all(COOKIE)
            .iter()
            .flat_map(|v| cookie_pairs(v.as_bytes()))
            .filter_map(|(k, v)| {
                let name = std::str::from_utf8(k).ok()?;
                name.starts_with(&prefix).then_some((name, v))
            })
            .map(|(name, v)| {
                let state = std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| self.open::<LoginState>(name, v))
                    .filter(|s| !s.is_expired(self.clock.now_secs()));
                (name.to_string(), state)
            })
            .collect()
    }

    /// The `Set-Cookie` values that keep a browser's outstanding logins within
    /// [`MAX_PENDING_LOGINS`] once one more starts: broken and expired ones go, then the oldest.
    pub fn prune_pending_logins(&self, headers: &HeaderMap) -> Vec<String> {
        let mut pending = self.pending_logins(headers);
        let mut removals: Vec<String> = Vec::new();
        pending.retain(|(name, state)| {
            if state.is_none() {
                removals.push(self.removal(name, &self.state_path));
            }
            state.is_some()
        });
        pending.sort_by_key(|(_, s)| s.as_ref().map_or(0, |s| s.expires_at));
        let excess = (pending.len() + 1).saturating_sub(MAX_PENDING_LOGINS);
        for (name, _) in pending.iter().take(excess) {
            removals.push(self.removal(name, &self.state_path));
        }
        removals
    }

    /// `Set-Cookie` value carrying `session`.
    pub fn session_cookie(&self, session: &Session) -> String {
        let max_age = session.expires_at.saturating_sub(self.clock.now_secs());
        self.seal(&self.name, session, "/", max_age)
    }

    /// `Set-Cookie` value that deletes the session cookie.
    pub fn clear_session_cookie(&self) -> String {
        self.removal(&self.name, "/")
    }

    /// With `session.cookie_domain`, a `Set-Cookie` deleting a host-only session cookie of
    /// the same name (one set before the domain was configured), which the domain cookie's
    /// deletion does not reach.
    pub fn clear_host_only_session_cookie(&self) -> Option<String> {
        self.domain.as_ref()?;
        let mut c = Cookie::new(self.name.clone(), "");
        c.set_path("/");
        c.set_http_only(true);
        c.set_same_site(SameSite::Lax);
        c.set_secure(self.secure);
        c.set_max_age(cookie::time::Duration::ZERO);
        c.set_expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
        Some(c.to_string())
    }

    /// `Set-Cookie` value carrying `state`, in a cookie of its own: logins started in several
    /// tabs at once do not overwrite each other.
    pub fn login_state_cookie(&self, state: &LoginState) -> String {
        let name = self
            .state_cookie_name(&state.state)
            .unwrap_or_else(|| self.state_name.clone());
        self.seal(&name, state, &self.state_path, LOGIN_STATE_TTL.as_secs())
    }

    /// `Set-Cookie` value that deletes the state cookie of the login started with `state`.
    pub fn clear_login_state_cookie(&self, state: &str) -> Option<String> {
        let name = self.state_cookie_name(state)?;
        Some(self.removal(&name, &self.state_path))
    }

    /// `Set-Cookie` values deleting every login state cookie the request carries.
    pub fn clear_all_login_states(&self, headers: &HeaderMap) -> Vec<String> {
        self.pending_logins(headers)
            .into_iter()
            .map(|(name, _)| self.removal(&name, &self.state_path))
            .collect()
    }

    /// `{cookie_name}_state_{first characters of state}`; `None` for a state we cannot have
    /// issued (too short, or characters outside base64url).
    fn state_cookie_name(&self, state: &str) -> Option<String> {
        let tag = state.get(..STATE_TAG_LEN)?;
        tag.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            .then(|| format!("{}_{}", self.state_name, tag))
    }

    /// The configured session lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The clock the codec reads expiry against.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn seal<T: Serialize>(&self, name: &str, value: &T, path: &str, max_age: u64) -> String {
        let json = serde_json::to_string(value).unwrap_or_default();
        let mut jar = cookie::CookieJar::new();
        jar.private_mut(&self.key)
            .add(Cookie::new(name.to_string(), json));
        let sealed = jar
            .get(name)
            .map(|c| c.value().to_string())
            .unwrap_or_default();
        let mut c = Cookie::new(name.to_string(), sealed);
        self.attributes(&mut c, path);
        c.set_max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age).unwrap_or(i64::MAX),
        ));
        c.to_string()
    }

    fn removal(&self, name: &str, path: &str) -> String {
        let mut c = Cookie::new(name.to_string(), "");
        self.attributes(&mut c, path);
        c.set_max_age(cookie::time::Duration::ZERO);
        c.set_expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
        c.to_string()
    }

    fn attributes(&self, c: &mut Cookie<'static>, path: &str) {
        // The session cookie goes to every host under the cookie domain; a login state
        // cookie stays with the login host.
        if let Some(domain) = self.domain.as_ref().filter(|_| c.name() == self.name) {
            c.set_domain(domain.clone());
        }
        c.set_path(path.to_string());
        c.set_http_only(true);
        c.set_same_site(SameSite::Lax);
        c.set_secure(self.secure);
    }

    fn open<T: for<'de> Deserialize<'de>>(&self, name: &str, sealed: &str) -> Option<T> {
        self.open_sealed(name, sealed).map(|(v, _)| v)
    }

    fn open_sealed<T: for<'de> Deserialize<'de>>(
        &self,
        name: &str,
        sealed: &str,
    ) -> Option<(T, Sealed)> {
        let (cookie, by) = self.decrypt(name, sealed)?;
        Some((serde_json::from_str(cookie.value()).ok()?, by))
    }

    /// Cookie `name` sealed as `sealed`, opened (its value is the plain text), if authentic
    /// under the current key or one of the previous ones; and which one it was.
    fn decrypt(&self, name: &str, sealed: &str) -> Option<(Cookie<'static>, Sealed)> {
        let cookie = || Cookie::new(name.to_string(), sealed.to_string());
        let jar = cookie::CookieJar::new();
        if let Some(c) = jar.private(&self.key).decrypt(cookie()) {
            return Some((c, Sealed::Current));
        }
        self.previous
            .iter()
            .find_map(|key| jar.private(key).decrypt(cookie()))
            .map(|c| (c, Sealed::Previous))
    }
}

/// Which key a cookie was sealed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sealed {
    /// `session.secret`.
    Current,
    /// One of `session.previous_secrets`: still accepted, to be re-issued under the current.
    Previous,
}

/// A short, stable, one-way name for a session id (logs, audit, `sessions list`): the first
/// 12 hex digits of its SHA-256. The id itself is never shown.
pub fn id_hash(id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Derives the AES-GCM key from the configured secret (HKDF inside `cookie::Key`).
fn derive_key(secret: &str) -> Result<Key, SecretTooShort> {
    let bytes = secret.as_bytes();
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(SecretTooShort(bytes.len()));
    }
    Ok(Key::derive_from(bytes))
}

/// The fewest bytes `session.secret` may have.
pub const MIN_SECRET_BYTES: usize = 32;

/// `session.secret` (or one of `session.previous_secrets`) is too short to derive a key from
/// (never padded).
#[derive(Debug, thiserror::Error)]
#[error("a session secret is {0} bytes; it must be at least 32")]
pub struct SecretTooShort(pub usize);

/// The values of every cookie called `name` in the request's `Cookie` headers, in order.
///
/// `Cookie` is read as bytes: apps set cookies with raw UTF-8 values (Chromium sends them as
/// they are), and one such byte elsewhere in the header must not hide ours. Values that are not
/// ASCII cannot be ours and are skipped.
pub fn find_cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| cookie_pairs(v.as_bytes()))
        .filter(move |(k, _)| *k == name.as_bytes())
        .filter_map(|(_, v)| std::str::from_utf8(v).ok().filter(|v| v.is_ascii()))
}

/// The `name=value` pairs of one `Cookie` header value, split on `;`, trimmed of spaces and
/// tabs; pieces without `=` are returned with an empty name. Never fails, whatever the bytes.
pub fn cookie_pairs(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    cookie_pieces(value).map(cookie_pair)
}

/// The non-empty `;`-separated pieces of one `Cookie` header value, trimmed (memchr: a
/// session cookie is hundreds of bytes, scanned on every request).
pub fn cookie_pieces(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b';', value)
        .chain(std::iter::once(value.len()))
        .filter_map(move |end| {
            let piece = value.get(start..end)?.trim_ascii();
            start = end + 1;
            (!piece.is_empty()).then_some(piece)
        })
}

/// One trimmed piece split at its first `=`: `(name, value)`; no `=`: an empty name.
pub fn cookie_pair(piece: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'=', piece) {
        Some(at) => (piece[..at].trim_ascii(), piece[at + 1..].trim_ascii()),
        None => (&piece[..0], piece),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn codec(secret: &str) -> CookieCodec {
        let mut c = Config::default();
        c.session.secret = crate::config::Secret::new(secret);
        CookieCodec::new(&c, Clock::manual(NOW)).unwrap()
    }

    const NOW: u64 = 1_700_000_000;

    fn user() -> User {
        User {
            userid: "zhangsan".into(),
            mobile: Some("13800000001".into()),
            name: Some("张三".into()),
            dept_ids: vec![1, 2],
            ..Default::default()
        }
    }

    fn headers(set_cookie: &str) -> HeaderMap {
        let pair = set_cookie.split(';').next().unwrap_or_default();
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("a=b; {pair}")).unwrap(),
        );
        h
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// A sealed session opens again with the same key and has the cookie attributes we promise.
    #[test]
    fn round_trip() {
        let c = codec(SECRET);
        let s = Session::new(user(), Duration::from_secs(3600), NOW);
        let set = c.session_cookie(&s);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"));
        assert!(
            !set.contains("13800000001"),
            "cookie is not encrypted: {set}"
        );
        assert_eq!(c.session(&headers(&set)), Some(s));
    }

    /// Tampered, truncated, foreign-key and expired cookies all count as no session.
    #[test]
    fn rejects_bad_cookies() {
        let c = codec(SECRET);
        let s = Session::new(user(), Duration::from_secs(3600), NOW);
        let set = c.session_cookie(&s);
        let pair = set.split(';').next().unwrap();
        let (name, value) = pair.split_once('=').unwrap();
        let mut tampered = value.as_bytes().to_vec();
        let mid = tampered.len() / 2;
        tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{name}={}", String::from_utf8(tampered).unwrap());
        assert_eq!(c.session(&headers(&tampered)), None);
        let truncated = format!("{name}={}", &value[..value.len() - 5]);
        assert_eq!(c.session(&headers(&truncated)), None);
        let foreign = codec("another-secret-another-secret-another");
        assert_eq!(foreign.session(&headers(&set)), None);
        let mut old = s.clone();
        old.expires_at = NOW - 1;
        assert_eq!(c.session(&headers(&c.session_cookie(&old))), None);
        assert_eq!(c.session(&headers("dap_session=garbage")), None);
    }

    /// The opened-cookie cache changes nothing a request sees: once the genuine cookie is
    /// cached, a copy altered before its last bytes (same hash in the cache) still fails,
    /// an expired cached session is still expired, and a cached session reference opens again.
    #[test]
    fn opened_cache_is_transparent() {
        let clock = Clock::manual(NOW);
        let mut cfg = Config::default();
        cfg.session.secret = crate::config::Secret::new(SECRET);
        let c = CookieCodec::new(&cfg, clock.clone()).unwrap();
        let s = Session::new(user(), Duration::from_secs(60), NOW);
        let set = c.session_cookie(&s);
        assert_eq!(c.session(&headers(&set)), Some(s.clone()));
        let (name, value) = set.split(';').next().unwrap().split_once('=').unwrap();
        let mut altered = value.as_bytes().to_vec();
        altered[4] = if altered[4] == b'A' { b'B' } else { b'A' };
        let altered = format!("{name}={}", String::from_utf8(altered).unwrap());
        assert_eq!(c.session(&headers(&altered)), None);
        assert_eq!(c.session(&headers(&set)), Some(s.clone()), "still cached");
        clock.advance(Duration::from_secs(60));
        assert_eq!(c.session(&headers(&set)), None, "expired, cached or not");
        let r = c.session_ref_cookie(&Session::new(user(), Duration::from_secs(60), NOW + 60));
        let first = c.session_ref(&headers(&r));
        assert!(first.is_some());
        assert_eq!(c.session_ref(&headers(&r)), first);
    }

    /// Two replicas configured with the same secret accept each other's cookies.
    #[test]
    fn replicas_share_cookies() {
        let a = codec(SECRET);
        let b = codec(SECRET);
        let s = Session::new(user(), Duration::from_secs(60), NOW);
        assert_eq!(b.session(&headers(&a.session_cookie(&s))), Some(s));
    }

    /// A state is used once; concurrent callbacks with it: exactly one passes; expired ones
    /// are forgotten in order.
    #[test]
    fn used_states() {
        let u = std::sync::Arc::new(UsedStates::default());
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| u.consume("st", 100, 10) as usize))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(wins, 1);
        assert!(u.consume("other", 150, 20));
        assert!(!u.consume("other", 150, 30));
        // At 120 "st" has expired and is forgotten (its login state cookie has expired too,
        // so the callback refuses it before asking here); "other" is still remembered.
        assert!(u.consume("third", 300, 120));
        assert_eq!(u.used.len(), 2);
        assert!(!u.consume("other", 150, 120));
    }

    /// Revalidation refreshes the details and nothing else: the id, the issue time (sticky
    /// revocation compares it), the expiry stay; the check time moves; a unionid DingTalk
    /// did not send this time is kept.
    #[test]
    fn refreshed_keeps_identity_and_times() {
        let s = Session::new(user(), Duration::from_secs(3600), NOW);
        let mut newer = user();
        newer.mobile = Some("13900000000".into());
        let mut with_union = s.clone();
        Arc::make_mut(&mut with_union.user).unionid = Some("u-1".into());
        let r = with_union.refreshed(newer, NOW + 600);
        assert_eq!(r.id, s.id);
        assert_eq!(r.issued_at, NOW);
        assert_eq!(r.expires_at, NOW + 3600);
        assert_eq!(r.checked_at, NOW + 600);
        assert_eq!(r.user.mobile.as_deref(), Some("13900000000"));
        assert_eq!(r.user.unionid.as_deref(), Some("u-1"));
    }

    /// A session is valid up to its expiry second and not from it on; login states the same,
    /// and expired state cookies are the first to go when a browser has too many.
    #[test]
    fn expiry_follows_the_clock() {
        let c = codec(SECRET);
        let s = Session::new(user(), Duration::from_secs(60), NOW);
        let h = headers(&c.session_cookie(&s));
        c.clock().advance(Duration::from_secs(59));
        assert_eq!(c.session(&h), Some(s.clone()));
        c.clock().advance(Duration::from_secs(1));
        assert_eq!(c.session(&h), None);

        let c = codec(SECRET);
        let mut h = HeaderMap::new();
        let mut cookies = Vec::new();
        for i in 0..MAX_PENDING_LOGINS {
            let st = LoginState {
                state: format!("state{i:02}abcdefghij"),
                rd: "/".into(),
                flow: "oauth".into(),
                expires_at: NOW + 600 - (i as u64),
            };
            let set = c.login_state_cookie(&st);
            cookies.push(set.split(';').next().unwrap_or_default().to_string());
        }
        h.insert(COOKIE, HeaderValue::from_str(&cookies.join("; ")).unwrap());
        assert_eq!(
            c.pending_logins(&h)
                .iter()
                .filter(|(_, s)| s.is_some())
                .count(),
            7
        );
        // One more login: the one closest to expiry goes.
        let removals = c.prune_pending_logins(&h);
        assert_eq!(removals.len(), 1);
        assert!(
            removals[0].starts_with("dap_session_state_state06abcde="),
            "{removals:?}"
        );
        // Ten minutes on, every one has expired: all are deleted as broken.
        c.clock().advance(LOGIN_STATE_TTL);
        assert_eq!(c.prune_pending_logins(&h).len(), 7);
        assert!(c
            .login_state(&h, "state00abcdefghij")
            .is_some_and(|s| s.is_expired(c.clock().now_secs())));
    }

    /// A session cookie of the previous version (the user's fields at the top level) still
    /// opens after an upgrade.
    #[test]
    fn previous_cookie_format_still_opens() {
        let c = codec(SECRET);
        let flat = format!(
            r#"{{"u":"zhangsan","m":"13800000001","nm":"张三","d":[1,2],"sid":"abc","iat":{NOW},"exp":{},"ck":{NOW}}}"#,
            NOW + 60
        );
        let mut jar = cookie::CookieJar::new();
        jar.private_mut(&c.key)
            .add(Cookie::new("dap_session", flat));
        let sealed = jar
            .get("dap_session")
            .map(|c| c.value().to_string())
            .unwrap_or_default();
        let s = c
            .session(&headers(&format!("dap_session={sealed}")))
            .expect("opens");
        assert_eq!(*s.user, user());
        assert_eq!(
            (s.id.as_str(), s.issued_at, s.expires_at),
            ("abc", NOW, NOW + 60)
        );
    }

    /// A cookie sealed under a previous secret opens (reported as such) while that secret is
    /// listed, and not once it is removed; the current secret's cookies open as current.
    #[test]
    fn previous_secrets_open_old_cookies() {
        const OLD: &str = "old-secret-old-secret-old-secret-0";
        let old = codec(OLD);
        let s = Session::new(user(), Duration::from_secs(3600), NOW);
        let h = headers(&old.session_cookie(&s));
        let mut c = Config::default();
        c.session.secret = crate::config::Secret::new(SECRET);
        c.session.previous_secrets = vec![crate::config::Secret::new(OLD)];
        let rotated = CookieCodec::new(&c, Clock::manual(NOW)).unwrap();
        assert_eq!(
            rotated.session_sealed(&h),
            Some((s.clone(), Sealed::Previous))
        );
        let fresh = headers(&rotated.session_cookie(&s));
        assert_eq!(
            rotated.session_sealed(&fresh),
            Some((s.clone(), Sealed::Current))
        );
        assert_eq!(codec(SECRET).session(&h), None);
        c.session.previous_secrets = vec![crate::config::Secret::new("x".repeat(31))];
        assert!(CookieCodec::new(&c, Clock::manual(NOW)).is_err());
    }

    /// Raw UTF-8 (and any other byte) elsewhere in `Cookie` does not hide a valid session.
    #[test]
    fn non_ascii_cookie_header() {
        let c = codec(SECRET);
        let s = Session::new(user(), Duration::from_secs(3600), NOW);
        let set = c.session_cookie(&s);
        let pair = set.split(';').next().unwrap();
        let mut h = HeaderMap::new();
        let raw = format!("app=张三; {pair}; x=\t\u{ff}");
        h.insert(COOKIE, HeaderValue::from_bytes(raw.as_bytes()).unwrap());
        assert_eq!(c.session(&h), Some(s));
    }

    /// The state cookie cannot be swapped in as a session cookie (names are bound in).
    #[test]
    fn cookie_names_are_bound() {
        let c = codec(SECRET);
        let st = LoginState {
            state: "abcdefghijklmnop".into(),
            rd: "/".into(),
            flow: "oauth".into(),
            expires_at: NOW + 60,
        };
        let set = c.login_state_cookie(&st);
        assert_eq!(c.login_state(&headers(&set), "abcdefghijklmnop"), Some(st));
        assert_eq!(c.login_state(&headers(&set), "abcdefghijklmnoX"), None);
        let value = set.split(';').next().unwrap().split_once('=').unwrap().1;
        assert_eq!(c.session(&headers(&format!("dap_session={value}"))), None);
    }
}
