//! Access rules from `[access]`: who may pass once logged in, and which paths need no login.

use std::collections::HashSet;

use regex::RegexSet;

use crate::config::AccessConfig;
pub use crate::path::is_canonical;
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
