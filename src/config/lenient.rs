//! Lenient deserializers: the environment delivers TOML-ish scalars (`DAP_X=123` is a
//! number), so string keys accept any scalar, and lists accept one comma-separated string.

use super::*;

/// Environment values are parsed by figment as TOML-ish scalars, so `DAP_DINGTALK__APP_KEY=123`
/// arrives as a number. Keys that are strings accept any scalar and keep its text.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Scalar {
    S(String),
    I(i64),
    U(u64),
    F(f64),
    B(bool),
}

impl Scalar {
    pub(super) fn into_string(self) -> String {
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
pub(super) const NOT_A_SCALAR: &str = "must be a single value in quotes, not a list or a table";

pub(super) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::de::Error;
    Scalar::deserialize(d)
        .map(Scalar::into_string)
        .map_err(|_| D::Error::custom(NOT_A_SCALAR))
}

pub(super) fn lenient_opt_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    use serde::de::Error;
    let s = Option::<Scalar>::deserialize(d)
        .map_err(|_| D::Error::custom(NOT_A_SCALAR))?
        .map(Scalar::into_string);
    Ok(s.filter(|s| !s.is_empty()))
}

pub(super) fn lenient_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
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

/// A list of secrets (`session.previous_secrets`): a list, or one comma-separated string.
pub(super) fn lenient_secrets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
    Ok(lenient_strings(d)?.into_iter().map(Secret).collect())
}

pub(super) fn lenient_ints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
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

pub(super) fn lenient_nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    use serde::de::Error;
    lenient_strings(d)?
        .iter()
        .map(|s| parse_net(s).map_err(D::Error::custom))
        .collect()
}

/// A CIDR (`10.0.0.0/8`, `::1/128`) or a single address (`10.0.0.5`).
pub(super) fn parse_net(s: &str) -> Result<IpNet, String> {
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
