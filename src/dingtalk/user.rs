//! The lenient parsing of DingTalk's user answers into the one [`User`] both login flows and
//! both API generations produce: every field optional, wrong types tolerated where cheap.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

pub use crate::user::User;

/// A string field that may arrive as a number (or not at all).
fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// A boolean that may arrive as `"true"`/`1`.
fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => Some(b),
        Value::String(s) => match s.as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        _ => None,
    })
}

/// A list of ids that may arrive as numbers, strings, or a string like `"[1,2]"`.
fn ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    fn one(v: &Value) -> Option<i64> {
        match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        Value::String(s) => s
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect(),
        v => one(&v).into_iter().collect(),
    })
}

/// `GET /user/get` (legacy): flat, camelCase.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LegacyUser {
    #[serde(deserialize_with = "opt_string")]
    userid: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    unionid: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    name: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    mobile: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    email: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    jobnumber: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    position: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    avatar: Option<String>,
    #[serde(deserialize_with = "ids")]
    department: Vec<i64>,
    #[serde(deserialize_with = "opt_bool")]
    active: Option<bool>,
}

/// `POST /topapi/v2/user/get`'s `result`: snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct V2User {
    #[serde(deserialize_with = "opt_string")]
    userid: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    unionid: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    name: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    mobile: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    email: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    org_email: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    job_number: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    title: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    avatar: Option<String>,
    #[serde(deserialize_with = "ids")]
    dept_id_list: Vec<i64>,
    #[serde(deserialize_with = "opt_bool")]
    active: Option<bool>,
}

impl LegacyUser {
    /// The user, or `None` when the answer has no userid.
    pub(crate) fn into_user(self) -> Option<User> {
        Some(User {
            userid: self.userid?,
            unionid: self.unionid,
            name: self.name,
            mobile: self.mobile,
            email: self.email,
            job_number: self.jobnumber,
            title: self.position,
            avatar: self.avatar,
            dept_ids: self.department,
            active: self.active,
        })
    }
}

impl V2User {
    /// The user, or `None` when the answer has no userid.
    pub(crate) fn into_user(self) -> Option<User> {
        Some(User {
            userid: self.userid?,
            unionid: self.unionid,
            name: self.name,
            mobile: self.mobile,
            email: self.email.or(self.org_email),
            job_number: self.job_number,
            title: self.title,
            avatar: self.avatar,
            dept_ids: self.dept_id_list,
            active: self.active,
        })
    }
}

/// A string field of a JSON object, accepting numbers.
pub(crate) fn str_field(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The legacy and v2 answers for the same person map to the same User; the doc's
    /// stringly-typed sample values are tolerated.
    #[test]
    fn both_generations_agree() {
        let legacy: LegacyUser = serde_json::from_value(json!({
            "errcode": 0, "userid": "zhangsan", "unionid": "u1", "name": "张三",
            "mobile": "15901516821", "department": [1, 2], "active": true, "jobnumber": "001",
            "position": "manager", "orderInDepts": "{1:71738366882504}", "extattr": {}
        }))
        .unwrap();
        let v2: V2User = serde_json::from_value(json!({
            "userid": "zhangsan", "unionid": "u1", "name": "张三", "mobile": "15901516821",
            "dept_id_list": ["1", "2"], "active": "true", "job_number": "001", "title": "manager",
            "role_list": [{"id": 1, "name": "x", "group_name": "y"}]
        }))
        .unwrap();
        assert_eq!(legacy.into_user(), v2.into_user());
    }

    /// Missing fields are None; no userid is no user.
    #[test]
    fn optional_everything() {
        let v2: V2User = serde_json::from_value(json!({"userid": 42})).unwrap();
        let u = v2.into_user().unwrap();
        assert_eq!(u.userid, "42");
        assert_eq!(u.mobile, None);
        let none: V2User = serde_json::from_value(json!({"name": "x"})).unwrap();
        assert!(none.into_user().is_none());
    }
}
