//! The effective configuration as `dotted.key = value` lines (`check-config`), secrets
//! redacted here and only here.

use super::*;

pub(super) fn toml_string(config: &Config) -> String {
    // One `dotted.key = value` line per leaf, values in JSON notation (valid TOML for the
    // strings, numbers, booleans and arrays a config holds). `public_url` shows the origin in
    // effect (`http://{listen}` when unset); other unset keys become `# … is unset` comments.
    match Serialized::defaults(config)
        .data()
        .ok()
        .and_then(|d| d.into_values().next())
    {
        Some(mut dict) => {
            dict.insert("public_url".into(), Value::from(config.public_origin()));
            let mut out = String::new();
            for (k, v) in dict {
                write_value(&mut out, &k, &v);
            }
            out
        }
        None => String::new(),
    }
}

pub(super) fn write_value(out: &mut String, key: &str, value: &Value) {
    match value {
        Value::Dict(_, dict) => {
            for (k, v) in dict {
                write_value(out, &format!("{key}.{k}"), v);
            }
        }
        // An upstream URL may carry a password (basic auth to the app): masked.
        Value::String(_, v) if key == "upstream" => {
            let json = serde_json::to_string(&masked(v)).unwrap_or_default();
            out.push_str(&format!("{key} = {json}\n"));
        }
        // Printed as the route table (`route::table`), in match order, passwords masked.
        Value::Array(..) if key == "routes" => {}
        Value::Empty(..) if key == "upstream" => {
            out.push_str("# upstream is unset: auth-only mode\n");
        }
        Value::Empty(..) => out.push_str(&format!("# {key} is unset\n")),
        Value::String(_, v) if SECRET_KEYS.contains(&key) && !v.is_empty() => {
            // A URL keeps its shape with the password masked; other secrets show nothing.
            let shown = if key == "session.redis_url" {
                masked(v)
            } else {
                "<redacted>".to_string()
            };
            let json = serde_json::to_string(&shown).unwrap_or_default();
            out.push_str(&format!("{key} = {json}\n"));
        }
        // Previous session secrets: how many, never what.
        Value::Array(_, items) if SECRET_KEYS.contains(&key) => {
            let shown: Vec<&str> = items.iter().map(|_| "<redacted>").collect();
            let json = serde_json::to_string(&shown).unwrap_or_default();
            out.push_str(&format!("{key} = {json}\n"));
        }
        // Lists of Redis URLs may carry passwords: each keeps its shape, the password masked.
        Value::Array(_, items) if key.starts_with("session.redis_") => {
            let shown: Vec<String> = items
                .iter()
                .map(|v| masked(v.as_str().unwrap_or_default()))
                .collect();
            let json = serde_json::to_string(&shown).unwrap_or_default();
            out.push_str(&format!("{key} = {json}\n"));
        }
        other => {
            let json = serde_json::to_string(other).unwrap_or_default();
            out.push_str(&format!("{key} = {json}\n"));
        }
    }
}
