//! The user: who DingTalk says someone is ([`User`]), and the one table of identity fields
//! ([`FIELDS`]) that everything else reads — the `[headers]` config keys and their default
//! header names, the `userinfo` JSON and how each value is rendered.
//!
//! Adding an identity field is one [`Field`] variant, one row in [`FIELDS`], one [`User`]
//! member, and its DingTalk source in `dingtalk/user.rs`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// A DingTalk user as the proxy knows them. The session embeds it whole.
///
/// Serialized into the session with short names (the cookie is small), accepting the long
/// names too.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// userid within the corp.
    #[serde(rename = "u", alias = "userid")]
    pub userid: String,
    /// unionid (stable across the developer's apps).
    #[serde(
        rename = "n",
        alias = "unionid",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub unionid: Option<String>,
    /// Display name.
    #[serde(
        rename = "nm",
        alias = "name",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    /// Mobile number (needs the 手机号 permission).
    #[serde(
        rename = "m",
        alias = "mobile",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mobile: Option<String>,
    /// Email (needs the 邮箱 permission).
    #[serde(
        rename = "e",
        alias = "email",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub email: Option<String>,
    /// Job number (工号).
    #[serde(
        rename = "j",
        alias = "job_number",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub job_number: Option<String>,
    /// Job title.
    #[serde(
        rename = "t",
        alias = "title",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub title: Option<String>,
    /// Avatar URL (not kept in the session: no header or claim carries it).
    #[serde(skip)]
    pub avatar: Option<String>,
    /// Department ids.
    #[serde(
        rename = "d",
        alias = "dept_ids",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dept_ids: Vec<i64>,
    /// Whether the account is activated (checked at login; not kept in the session).
    #[serde(skip)]
    pub active: Option<bool>,
}

/// One identity field: something about the user a header (or `userinfo`) can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// DingTalk userid.
    UserId,
    /// Mobile number.
    Mobile,
    /// Display name.
    Name,
    /// unionid.
    UnionId,
    /// Email.
    Email,
    /// Job number (工号).
    JobNumber,
    /// Department ids, comma-separated.
    DeptIds,
    /// Job title.
    Title,
}

/// What there is to know about one [`Field`].
pub struct FieldSpec {
    /// The field.
    pub field: Field,
    /// Its key under `[headers]`.
    pub key: &'static str,
    /// Its name in `userinfo` JSON.
    pub json: &'static str,
    /// The header it is sent in when `[headers]` does not say (`None` = not sent).
    pub default_header: Option<&'static str>,
    /// Its value for a user, as text (`None` = the user has none: no header is sent).
    pub text: fn(&User) -> Option<Cow<'_, str>>,
}

/// The identity fields, in the order the contract lists them.
pub const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        field: Field::UserId,
        key: "user_id",
        json: "userid",
        default_header: Some("X-User-Id"),
        text: |u| Some(Cow::Borrowed(&u.userid)),
    },
    FieldSpec {
        field: Field::Mobile,
        key: "mobile",
        json: "mobile",
        default_header: Some("X-User-Mobile"),
        text: |u| u.mobile.as_deref().map(Cow::Borrowed),
    },
    FieldSpec {
        field: Field::Name,
        key: "name",
        json: "name",
        default_header: None,
        text: |u| u.name.as_deref().map(Cow::Borrowed),
    },
    FieldSpec {
        field: Field::UnionId,
        key: "union_id",
        json: "unionid",
        default_header: None,
        text: |u| u.unionid.as_deref().map(Cow::Borrowed),
    },
    FieldSpec {
        field: Field::Email,
        key: "email",
        json: "email",
        default_header: None,
        text: |u| u.email.as_deref().map(Cow::Borrowed),
    },
    FieldSpec {
        field: Field::JobNumber,
        key: "job_number",
        json: "job_number",
        default_header: None,
        text: |u| u.job_number.as_deref().map(Cow::Borrowed),
    },
    FieldSpec {
        field: Field::DeptIds,
        key: "dept_ids",
        json: "dept_ids",
        default_header: None,
        text: |u| {
            let ids: Vec<String> = u.dept_ids.iter().map(i64::to_string).collect();
            (!ids.is_empty()).then(|| Cow::Owned(ids.join(",")))
        },
    },
    FieldSpec {
        field: Field::Title,
        key: "title",
        json: "title",
        default_header: None,
        text: |u| u.title.as_deref().map(Cow::Borrowed),
    },
];

/// The `[headers]` keys, in table order (what serde names when it meets an unknown one).
pub const FIELD_KEYS: [&str; FIELDS.len()] = {
    let mut keys = [""; FIELDS.len()];
    let mut i = 0;
    while i < FIELDS.len() {
        keys[i] = FIELDS[i].key;
        i += 1;
    }
    keys
};

impl Field {
    /// Its row in [`FIELDS`].
    pub fn spec(self) -> &'static FieldSpec {
        &FIELDS[self as usize]
    }

    /// The field whose `[headers]` key is `key`.
    pub fn from_key(key: &str) -> Option<Field> {
        FIELDS.iter().find(|f| f.key == key).map(|f| f.field)
    }

    /// Its `[headers]` key.
    pub fn key(self) -> &'static str {
        self.spec().key
    }

    /// `user`'s value of this field as text.
    pub fn text(self, user: &User) -> Option<Cow<'_, str>> {
        (self.spec().text)(user)
    }

    /// `user`'s value of this field as JSON (`dept_ids` stays a list of numbers).
    pub fn json(self, user: &User) -> serde_json::Value {
        match self {
            Field::DeptIds => serde_json::json!(user.dept_ids),
            f => f.text(user).map_or(serde_json::Value::Null, |v| v.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's rows sit at their variant's index, and keys are unique.
    #[test]
    fn table_is_indexed_by_field() {
        for (i, spec) in FIELDS.iter().enumerate() {
            assert_eq!(spec.field as usize, i, "{}", spec.key);
            assert_eq!(Field::from_key(spec.key), Some(spec.field));
        }
        assert_eq!(Field::from_key("nope"), None);
    }

    /// Values render as the headers and `userinfo` show them.
    #[test]
    fn values() {
        let u = User {
            userid: "zhangsan".into(),
            name: Some("张三".into()),
            dept_ids: vec![1, 2],
            ..User::default()
        };
        assert_eq!(Field::UserId.text(&u).as_deref(), Some("zhangsan"));
        assert_eq!(Field::DeptIds.text(&u).as_deref(), Some("1,2"));
        assert_eq!(Field::Mobile.text(&u), None);
        assert_eq!(Field::DeptIds.json(&u), serde_json::json!([1, 2]));
        assert_eq!(Field::Email.json(&u), serde_json::Value::Null);
        let none = User::default();
        assert_eq!(Field::DeptIds.text(&none), None);
    }

    /// The session form is short and reads back; the long names are accepted too.
    #[test]
    fn serde_forms() {
        let u = User {
            userid: "zhangsan".into(),
            mobile: Some("138".into()),
            avatar: Some("https://x".into()),
            active: Some(true),
            ..User::default()
        };
        let json = serde_json::to_string(&u).unwrap_or_default();
        assert_eq!(json, r#"{"u":"zhangsan","m":"138"}"#);
        let back: User = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back.userid, "zhangsan");
        let long: User = serde_json::from_str(r#"{"userid":"lisi"}"#).unwrap_or_default();
        assert_eq!(long.userid, "lisi");
    }
}
