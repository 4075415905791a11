//! The fake's memory: directory, tokens, auth codes, call counters, injected failures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::distributions::Alphanumeric;
use rand::Rng;

use super::{Failure, FakeUser, Permission};

/// What a token stands for.
#[derive(Clone, Debug, PartialEq)]
pub enum Owner {
    /// The app's own token.
    App,
    /// A user's token from `userAccessToken`.
    User(String),
}

/// Why a token was refused.
pub enum TokenProblem {
    /// Never issued: 40014.
    Unknown,
    /// Issued, but past its expiry: 42001.
    Expired,
}

struct Token {
    owner: Owner,
    expires: Instant,
}

/// Everything the fake remembers.
pub struct State {
    pub base_url: String,
    pub app_key: String,
    pub app_secret: String,
    pub corp_id: String,
    token_ttl: Duration,
    code_ttl: Duration,
    users: Mutex<BTreeMap<String, FakeUser>>,
    tokens: Mutex<HashMap<String, Token>>,
    app_token: Mutex<Option<String>>,
    codes: Mutex<HashMap<String, (String, Instant)>>,
    calls: Mutex<HashMap<String, usize>>,
    failures: Mutex<HashMap<String, (Failure, Option<usize>)>>,
    jsapi_user: Mutex<Option<String>>,
    denied: Mutex<HashSet<Permission>>,
    ip_whitelist: Mutex<Option<Vec<IpAddr>>>,
}

/// Locks, shrugging off poisoning (a panicking test thread must not break the fake).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A random token-like string.
pub fn random(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

impl State {
    pub fn new(
        base_url: String,
        app_key: String,
        app_secret: String,
        corp_id: String,
        token_ttl: Duration,
        code_ttl: Duration,
        users: Vec<FakeUser>,
    ) -> State {
        State {
            base_url,
            app_key,
            app_secret,
            corp_id,
            token_ttl,
            code_ttl,
            users: Mutex::new(users.into_iter().map(|u| (u.userid.clone(), u)).collect()),
            tokens: Mutex::new(HashMap::new()),
            app_token: Mutex::new(None),
            codes: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            jsapi_user: Mutex::new(Some("zhangsan".into())),
            denied: Mutex::new(HashSet::new()),
            ip_whitelist: Mutex::new(None),
        }
    }

    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    /// The app token: the same one while it is valid (its validity extended), else a new one.
    pub fn app_token(&self) -> String {
        let mut current = lock(&self.app_token);
        let mut tokens = lock(&self.tokens);
        let now = Instant::now();
        if let Some(t) = current.as_ref() {
            if let Some(tok) = tokens.get_mut(t) {
                if tok.expires > now {
                    tok.expires = now + self.token_ttl;
                    return t.clone();
                }
            }
        }
        let t = random(32);
        tokens.insert(
            t.clone(),
            Token {
                owner: Owner::App,
                expires: now + self.token_ttl,
            },
        );
        *current = Some(t.clone());
        t
    }

    /// A new user token for `userid`.
    pub fn user_token(&self, userid: &str) -> String {
        let t = random(32);
        lock(&self.tokens).insert(
            t.clone(),
            Token {
                owner: Owner::User(userid.to_string()),
                expires: Instant::now() + self.token_ttl,
            },
        );
        t
    }

    /// Who `token` belongs to, if it is valid.
    pub fn check_token(&self, token: &str) -> Result<Owner, TokenProblem> {
        match lock(&self.tokens).get(token) {
            None => Err(TokenProblem::Unknown),
            Some(t) if t.expires <= Instant::now() => Err(TokenProblem::Expired),
            Some(t) => Ok(t.owner.clone()),
        }
    }

    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for t in lock(&self.tokens).values_mut() {
            t.expires = now;
        }
        *lock(&self.app_token) = None;
    }

    pub fn mint_code(&self, userid: &str) -> Option<String> {
        if !lock(&self.users).contains_key(userid) {
            return None;
        }
        let code = random(32);
        lock(&self.codes).insert(
            code.clone(),
            (userid.to_string(), Instant::now() + self.code_ttl),
        );
        Some(code)
    }

    /// Uses up `code`: the user it was minted for, if it is known and unexpired.
    pub fn redeem_code(&self, code: &str) -> Option<String> {
        let (userid, expires) = lock(&self.codes).remove(code)?;
        (expires > Instant::now()).then_some(userid)
    }

    pub fn user(&self, userid: &str) -> Option<FakeUser> {
        lock(&self.users).get(userid).cloned()
    }

    pub fn user_by_unionid(&self, unionid: &str) -> Option<FakeUser> {
        lock(&self.users)
            .values()
            .find(|u| !u.unionid.is_empty() && u.unionid == unionid)
            .cloned()
    }

    pub fn users(&self) -> Vec<FakeUser> {
        lock(&self.users).values().cloned().collect()
    }

    pub fn add_user(&self, user: FakeUser) {
        lock(&self.users).insert(user.userid.clone(), user);
    }

    pub fn remove_user(&self, userid: &str) {
        lock(&self.users).remove(userid);
    }

    pub fn update_user(&self, userid: &str, f: impl FnOnce(&mut FakeUser)) {
        if let Some(u) = lock(&self.users).get_mut(userid) {
            f(u);
        }
    }

    pub fn count(&self, path: &str) {
        *lock(&self.calls).entry(path.to_string()).or_default() += 1;
    }

    pub fn calls(&self, path: &str) -> usize {
        lock(&self.calls).get(path).copied().unwrap_or(0)
    }

    pub fn reset_calls(&self) {
        lock(&self.calls).clear();
    }

    pub fn fail(&self, path: &str, failure: Failure, times: Option<usize>) {
        lock(&self.failures).insert(path.to_string(), (failure, times));
    }

    pub fn failure_armed(&self, path: &str) -> bool {
        lock(&self.failures)
            .get(path)
            .is_some_and(|(_, times)| *times != Some(0))
    }

    pub fn clear_failures(&self) {
        lock(&self.failures).clear();
    }

    /// The failure to apply to this request on `path`, counting it down.
    pub fn take_failure(&self, path: &str) -> Option<Failure> {
        let mut failures = lock(&self.failures);
        let (failure, times) = failures.get_mut(path)?;
        let failure = failure.clone();
        match times {
            Some(0) => {
                failures.remove(path);
                return None;
            }
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    failures.remove(path);
                }
            }
            None => {}
        }
        Some(failure)
    }

    pub fn set_jsapi_user(&self, userid: Option<&str>) {
        *lock(&self.jsapi_user) = userid.map(str::to_string);
    }

    pub fn jsapi_user(&self) -> Option<String> {
        lock(&self.jsapi_user).clone()
    }

    /// Grants (`true`) or denies `permission`.
    pub fn set_permission(&self, permission: Permission, granted: bool) {
        let mut denied = lock(&self.denied);
        if granted {
            denied.remove(&permission);
        } else {
            denied.insert(permission);
        }
    }

    /// Whether the app has `permission`.
    pub fn has(&self, permission: Permission) -> bool {
        !lock(&self.denied).contains(&permission)
    }

    pub fn set_ip_whitelist(&self, ips: Option<Vec<IpAddr>>) {
        *lock(&self.ip_whitelist) = ips;
    }

    /// Whether calls with the app's credentials may come from `ip`.
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        lock(&self.ip_whitelist)
            .as_ref()
            .is_none_or(|list| list.contains(&ip))
    }
}
