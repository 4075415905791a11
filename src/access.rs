//! Access rules from `[access]`: who may pass once logged in, and which paths need no login.

use std::collections::HashSet;

use regex::RegexSet;

use crate::config::AccessConfig;
use crate::session::Session;

/// The compiled `[access]` section.
#[derive(Clone, Debug)]
pub struct Access {
    userids: HashSet<String>,
    dept_ids: HashSet<i64>,
    skip: Option<RegexSet>,
}

impl Access {
    /// Compiles the rules; an invalid regex is an error, never a rule quietly dropped.
    pub fn new(config: &AccessConfig) -> Result<Access, regex::Error> {
        let skip = if config.skip_auth.is_empty() {
            None
        } else {
            Some(RegexSet::new(&config.skip_auth)?)
        };
        Ok(Access {
            userids: config.allow_userids.iter().cloned().collect(),
            dept_ids: config.allow_dept_ids.iter().copied().collect(),
            skip,
        })
    }

    /// True when the user may pass: no rule configured, or listed by userid, or a member of
    /// an allowed department.
    pub fn allows(&self, session: &Session) -> bool {
        if self.userids.is_empty() && self.dept_ids.is_empty() {
            return true;
        }
        self.userids.contains(&session.user.userid)
            || session
                .user
                .dept_ids
                .iter()
                .any(|d| self.dept_ids.contains(d))
    }

    /// True when `path` (the path alone: no query, no fragment) is served without login:
    /// it is in [canonical form](is_canonical) and matches a `skip_auth` rule.
    pub fn skips(&self, path: &str) -> bool {
        match &self.skip {
            Some(set) => is_canonical(path) && set.is_match(path),
            None => false,
        }
    }
}

/// True when `path` is already in the one form that every common app server (Tomcat, Jetty
/// and Spring; nginx; Express; Django; IIS) reads the same way, so the path `skip_auth`
/// judged is the path the app serves. An allowlist, not a list of known tricks:
///
/// - it starts with `/`, and no segment is empty (`//`), `.`, `..` or only dots;
/// - every byte is a letter, a digit, or one of `/ - . _ ~ ! $ & ' ( ) * + , = @`
///   (no `;`: Tomcat and Spring cut path parameters out of segments before resolving dots;
///   no `\`: IIS and Windows read it as `/`; no `:`: drive letters and NTFS streams);
/// - a `%` escape is allowed only for a byte that has to be escaped in a path (space,
///   `" # < > ? [ ] ^ \` { | }` and non-ASCII UTF-8 bytes), never for a byte that could
///   stand as it is (`%2e`, `%2f`, `%5c`, `%3b`, `%25`, `%41`, …) nor for a control byte.
///
/// Anything else needs a login, even when a `skip_auth` rule matches it.
pub fn is_canonical(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let Some(decoded) = bytes.get(i + 1..i + 3).and_then(hex_pair) else {
                return false;
            };
            if !must_be_escaped(decoded) {
                return false;
            }
            i += 3;
            continue;
        }
        if !is_plain(b) {
            return false;
        }
        i += 1;
    }
    // No empty segment inside (`//`); a trailing `/` is an ordinary directory URL.
    !path.contains("//")
        && path
            .split('/')
            .all(|seg| seg.is_empty() || !seg.bytes().all(|b| b == b'.'))
}

/// Bytes that may appear unescaped in a canonical path.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,=@".contains(&b)
}

/// Bytes a path has to carry percent-encoded (so escaping them changes no server's reading).
fn must_be_escaped(b: u8) -> bool {
    b >= 0x80 || b" \"#<>?[]^`{|}".contains(&b)
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    match pair {
        [hi, lo] => Some(u8::try_from(hex(*hi)? * 16 + hex(*lo)?).ok()?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(userid: &str, depts: &[i64]) -> Session {
        let user = crate::user::User {
            userid: userid.into(),
            dept_ids: depts.to_vec(),
            ..Default::default()
        };
        Session::new(user, std::time::Duration::from_secs(60), 0)
    }

    /// Empty lists allow everyone; otherwise userid or department decides.
    #[test]
    fn allow_rules() {
        assert!(Access::new(&AccessConfig::default())
            .unwrap()
            .allows(&session("x", &[])));
        let a = Access::new(&AccessConfig {
            allow_userids: vec!["boss".into()],
            allow_dept_ids: vec![7],
            skip_auth: vec![],
        })
        .unwrap();
        assert!(a.allows(&session("boss", &[])));
        assert!(a.allows(&session("x", &[3, 7])));
        assert!(!a.allows(&session("x", &[3])));
    }

    /// skip_auth matches the path it is given.
    #[test]
    fn skip_rules() {
        let a = Access::new(&AccessConfig {
            skip_auth: vec!["^/public/".into(), "^/health$".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(a.skips("/public/x.css"));
        assert!(a.skips("/health"));
        assert!(!a.skips("/private?/public/"));
        for sneaky in [
            "/public/../admin",
            "/public/./x",
            "/public/%2e%2e/admin",
            "/public/..%2Fadmin",
            "/public/\\..\\admin",
            "/public/..;/admin/secret.txt",
            "/public/..;jsessionid=x/admin/secret.txt",
            "/public/.;/..;/admin",
            "/public/x/..;/..;/admin",
            "/public/x;a=b",
            "/public/%20;x",
            "/public//x",
            "/public/.../x",
            "/public/%41dmin",
            "/public/%252e%252e/admin",
            "/public/%00",
            "/public/%zz",
            "/public/%e",
            "/public/c:x",
            "*",
            "",
        ] {
            assert!(!a.skips(sneaky), "{sneaky}");
        }
    }

    /// Canonical paths: plain ones, and escapes only where an escape is required.
    #[test]
    fn canonical_paths() {
        for ok in [
            "/",
            "/public/",
            "/public/logo.png",
            "/public/a-b_c~d/x.min.js",
            "/public/%E4%B8%AD%E6%96%87.txt",
            "/public/a%20b",
            "/public/q%3F",
            "/public/.well-known",
        ] {
            assert!(is_canonical(ok), "{ok}");
        }
    }
}
