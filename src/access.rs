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
    /// Compiles the rules (regexes were validated with the config; a failure skips nothing).
    pub fn new(config: &AccessConfig) -> Access {
        let skip = if config.skip_auth.is_empty() {
            None
        } else {
            RegexSet::new(&config.skip_auth).ok()
        };
        Access {
            userids: config.allow_userids.iter().cloned().collect(),
            dept_ids: config.allow_dept_ids.iter().copied().collect(),
            skip,
        }
    }

    /// True when the user may pass: no rule configured, or listed by userid, or a member of
    /// an allowed department.
    pub fn allows(&self, session: &Session) -> bool {
        if self.userids.is_empty() && self.dept_ids.is_empty() {
            return true;
        }
        self.userids.contains(&session.userid)
            || session.dept_ids.iter().any(|d| self.dept_ids.contains(d))
    }

    /// True when `path` (the path alone: no query, no fragment) is served without login.
    /// A path an app might resolve to somewhere else (`..` or `.` segments, encoded dots or
    /// slashes, backslashes) is never skipped: `/public/../admin` must not pass as `/public/`.
    pub fn skips(&self, path: &str) -> bool {
        match &self.skip {
            Some(set) => !ambiguous(path) && set.is_match(path),
            None => false,
        }
    }
}

/// True for paths whose meaning depends on how the app normalises them.
fn ambiguous(path: &str) -> bool {
    path.split('/').any(|seg| seg == ".." || seg == ".")
        || path.contains('\\')
        || path.as_bytes().windows(3).any(|w| {
            w[0] == b'%' && matches!(&w[1..], b"2e" | b"2E" | b"2f" | b"2F" | b"5c" | b"5C")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(userid: &str, depts: &[i64]) -> Session {
        Session {
            userid: userid.into(),
            unionid: None,
            name: None,
            mobile: None,
            email: None,
            job_number: None,
            title: None,
            dept_ids: depts.to_vec(),
            issued_at: 0,
            expires_at: u64::MAX,
            checked_at: 0,
        }
    }

    /// Empty lists allow everyone; otherwise userid or department decides.
    #[test]
    fn allow_rules() {
        assert!(Access::new(&AccessConfig::default()).allows(&session("x", &[])));
        let a = Access::new(&AccessConfig {
            allow_userids: vec!["boss".into()],
            allow_dept_ids: vec![7],
            skip_auth: vec![],
        });
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
        });
        assert!(a.skips("/public/x.css"));
        assert!(a.skips("/health"));
        assert!(!a.skips("/private?/public/"));
        for sneaky in [
            "/public/../admin",
            "/public/./x",
            "/public/%2e%2e/admin",
            "/public/..%2Fadmin",
            "/public/\\..\\admin",
        ] {
            assert!(!a.skips(sneaky), "{sneaky}");
        }
    }
}
