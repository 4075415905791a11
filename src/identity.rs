//! Identity headers: the `X-User-Id`/`X-User-Mobile`/… headers the upstream trusts.
//!
//! The order that keeps this honest (see `proxy`): first [`IdentityHeaders::strip`] every
//! client-sent header whose name matches one of ours in any spelling (case-insensitive, `_` for
//! `-`), then strip hop-by-hop headers, and only then [`IdentityHeaders::apply`] the session's
//! values. Names are parsed once at start-up.

use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::config::HeadersConfig;
use crate::session::Session;
use crate::user::Field;

/// Bytes that are percent-encoded in header values: controls, `%` itself (so decoding is
/// unambiguous) and — through `utf8_percent_encode` — every non-ASCII byte.
const VALUE_ENCODE: &AsciiSet = &CONTROLS.add(b'%');

/// The configured identity headers, ready to strip and set.
#[derive(Clone, Debug)]
pub struct IdentityHeaders {
    headers: Vec<(HeaderName, Field)>,
    /// Lower-case names with `-`, compared against incoming names with `_` folded to `-`.
    normalized: Vec<Vec<u8>>,
    /// Names we own but do not set from the session (the assertion header).
    extra: Vec<HeaderName>,
}

impl IdentityHeaders {
    /// Parses the configured names; an invalid one is an error, never a header quietly dropped.
    pub fn new(config: &HeadersConfig) -> Result<IdentityHeaders, http::header::InvalidHeaderName> {
        let mut headers: Vec<(HeaderName, Field)> = Vec::new();
        for (field, name) in config.iter() {
            headers.push((HeaderName::from_bytes(name.as_bytes())?, field));
        }
        let normalized = headers
            .iter()
            .map(|(n, _)| n.as_str().bytes().map(fold).collect())
            .collect();
        Ok(IdentityHeaders {
            headers,
            normalized,
            extra: Vec::new(),
        })
    }

    /// True when `name` is one of ours in some spelling (`X_User_Id`, `x-user-id`, …).
    pub fn is_ours(&self, name: &HeaderName) -> bool {
        let name = name.as_str().as_bytes();
        self.normalized.iter().any(|ours| {
            ours.len() == name.len() && ours.iter().zip(name).all(|(a, b)| *a == fold(*b))
        })
    }

    /// Also owns `name` without setting it from the session (the assertion header): stripped
    /// from client requests in every spelling, and listed by [`IdentityHeaders::names`] —
    /// whether or not assertions are on.
    pub fn also_strip(mut self, name: &HeaderName) -> IdentityHeaders {
        self.normalized
            .push(name.as_str().bytes().map(fold).collect());
        self.extra.push(name.clone());
        self
    }

    /// Removes every client-sent header that matches one of ours. Allocates only when one is found.
    pub fn strip(&self, headers: &mut HeaderMap) {
        if !headers.keys().any(|k| self.is_ours(k)) {
            return;
        }
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| self.is_ours(k))
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(&name);
        }
    }

    /// Sets the session's values (absent values are simply not sent).
    pub fn apply(&self, headers: &mut HeaderMap, session: &Session) {
        for (name, field) in &self.headers {
            if let Some(value) = value_of(session, *field) {
                headers.insert(name.clone(), value);
            }
        }
    }

    /// Every header name we own: the configured identity headers, then the extra ones.
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        self.headers.iter().map(|(n, _)| n).chain(&self.extra)
    }

    /// The (name, value) pairs for `session`, for `/verify` answers.
    pub fn values<'a>(
        &'a self,
        session: &'a Session,
    ) -> impl Iterator<Item = (&'a HeaderName, HeaderValue)> + 'a {
        self.headers
            .iter()
            .filter_map(move |(name, field)| Some((name, value_of(session, *field)?)))
    }
}

/// Case-folds and maps `_` to `-`.
fn fold(b: u8) -> u8 {
    match b {
        b'_' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

fn value_of(session: &Session, field: Field) -> Option<HeaderValue> {
    encode_value(&field.text(&session.user)?)
}

/// Header-safe form of a value: ASCII passes through, the rest is percent-encoded UTF-8.
pub fn encode_value(raw: &str) -> Option<HeaderValue> {
    let needs = raw.bytes().any(|b| !(0x20..0x7f).contains(&b) || b == b'%');
    if needs {
        HeaderValue::from_str(&utf8_percent_encode(raw, VALUE_ENCODE).to_string()).ok()
    } else {
        HeaderValue::from_str(raw).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let user = crate::user::User {
            userid: "zhangsan".into(),
            name: Some("张三".into()),
            mobile: Some("13800000001".into()),
            dept_ids: vec![1, 2],
            ..Default::default()
        };
        Session::new(user, std::time::Duration::from_secs(60), 0)
    }

    /// Every spelling of a configured header is stripped; other headers stay.
    #[test]
    fn strips_all_spellings() {
        let ids = IdentityHeaders::new(&HeadersConfig::default()).unwrap();
        let mut h = HeaderMap::new();
        for n in [
            "X-User-Id",
            "x_user_id",
            "X_USER-ID",
            "x-user-mobile",
            "x-user-idx",
            "x-user-iz",
            "x-mobile-user",
            "accept",
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("evil"),
            );
        }
        ids.strip(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        // Same length, other name: not ours.
        assert_eq!(
            left,
            vec!["accept", "x-mobile-user", "x-user-idx", "x-user-iz"]
        );
    }

    /// A name added with `also_strip` is stripped in every spelling too.
    #[test]
    fn strips_extra_names() {
        let name = HeaderName::from_static("x-dingtalk-assertion");
        let ids = IdentityHeaders::new(&HeadersConfig::default())
            .unwrap()
            .also_strip(&name);
        let mut h = HeaderMap::new();
        for n in ["X-DingTalk-Assertion", "x_dingtalk_assertion", "accept"] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("forged"),
            );
        }
        ids.strip(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
        assert_eq!(ids.names().count(), 3, "owned");
        let mut h = HeaderMap::new();
        ids.apply(&mut h, &session());
        assert!(h.get(&name).is_none(), "never set from the session");
    }

    /// Values are set from the session; non-ASCII is percent-encoded UTF-8.
    #[test]
    fn applies_values() {
        let mut cfg = HeadersConfig::default();
        cfg.set(Field::Name, Some("X-User-Name"));
        cfg.set(Field::DeptIds, Some("X-User-Depts"));
        let ids = IdentityHeaders::new(&cfg).unwrap();
        let mut h = HeaderMap::new();
        ids.apply(&mut h, &session());
        assert_eq!(h["x-user-id"], "zhangsan");
        assert_eq!(h["x-user-mobile"], "13800000001");
        assert_eq!(h["x-user-name"], "%E5%BC%A0%E4%B8%89");
        assert_eq!(h["x-user-depts"], "1,2");
        assert_eq!(encode_value("100%").unwrap(), "100%25");
        assert_eq!(encode_value("%").unwrap(), "%25");
    }
}
