//! Explaining problems: each message names the key, echoes the value (never a secret's) and
//! says how to fix it; unknown keys get the nearest known one.

use super::*;

/// How to make a good `session.secret`.
pub(super) const MAKE_SECRET: &str = "`head -c 32 /dev/urandom | base64`";

/// Keys whose values are secrets (or may carry a password) and are never shown.
pub(super) const SECRET_KEYS: [&str; 4] = [
    "session.secret",
    "session.previous_secrets",
    "dingtalk.app_secret",
    "session.redis_url",
];

/// Keys holding URLs.
pub(super) const URL_KEYS: [&str; 6] = [
    "upstream",
    "public_url",
    "dingtalk.api_base",
    "dingtalk.new_api_base",
    "dingtalk.login_base",
    "dingtalk.jsapi_url",
];

/// Keys holding durations, with the unit most values of that key use.
pub(super) const DURATION_KEYS: [(&str, char); 8] = [
    ("assertion.ttl", 's'),
    ("upstream_timeout", 's'),
    ("dingtalk.timeout", 's'),
    ("session.ttl", 'h'),
    ("session.revalidate", 'm'),
    ("session.redis_timeout", 's'),
    ("limits.header_read_timeout", 's'),
    ("limits.idle_timeout", 's'),
];

/// Keys with a fixed set of values, and those values (as serde spells them).
pub(super) const CHOICE_KEYS: [(&str, &[&str]); 4] = [
    ("log_format", &["text", "json"]),
    ("dingtalk.user_api", &["v2", "legacy"]),
    ("dingtalk.token_api", &["gettoken", "v1"]),
    ("session.store", &["cookie", "redis"]),
];

/// The environment variable for a dotted key: `session.secret` → `DAP_SESSION__SECRET`.
pub(super) fn env_name(key: &str) -> String {
    format!("DAP_{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// A typical good value of `key`, for "e.g." hints.
pub(super) fn example_for(key: &str) -> &'static str {
    match key {
        "upstream" => "http://127.0.0.1:3000",
        "public_url" => "https://app.example.com",
        "dingtalk.api_base" => "https://oapi.dingtalk.com",
        "dingtalk.new_api_base" => "https://api.dingtalk.com",
        "dingtalk.login_base" => "https://login.dingtalk.com",
        "dingtalk.jsapi_url" => {
            "https://g.alicdn.com/dingding/dingtalk-jsapi/3.1.0/dingtalk.open.js"
        }
        "limits.max_header_bytes" => "65536 (the default)",
        "limits.max_body_bytes" => "10485760 for 10 MiB (0 = unlimited)",
        "limits.max_connections" => "10000 (0 = no cap)",
        _ => "",
    }
}

/// A user's value made safe to print on one line: control characters escaped, long values cut.
pub(super) fn shown(s: &str) -> String {
    const MAX: usize = 80;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A raw config value as the user wrote it: strings without quotes, others as in TOML/JSON.
pub(super) fn show_value(v: &Value) -> String {
    match v {
        Value::String(_, s) => shown(s),
        Value::Char(_, c) => shown(&c.to_string()),
        Value::Empty(..) => String::new(),
        other => shown(&serde_json::to_string(other).unwrap_or_default()),
    }
}

/// A URL as text with any `user:password@` hidden.
pub(super) fn masked(s: &str) -> String {
    let start = s.find("://").map_or(0, |i| i + 3);
    let end = s[start..].find('/').map_or(s.len(), |i| start + i);
    match s[start..end].rfind('@') {
        Some(at) => shown(&format!("{}***{}", &s[..start], &s[start + at..])),
        None => shown(s),
    }
}

/// [`masked`] for a parsed URL.
pub(super) fn masked_url(u: &Url) -> String {
    masked(u.as_str())
}

/// `localhost:3000` parses as scheme `localhost` with path `3000` (and `user:pw@host` as scheme
/// `user`): say it needs a scheme.
pub(super) fn missing_scheme(u: &Url, scheme: &str) -> Option<String> {
    let looks_like_host = u.cannot_be_a_base()
        && !matches!(
            u.scheme(),
            "mailto" | "data" | "javascript" | "about" | "tel"
        );
    looks_like_host.then(|| {
        let m = masked_url(u);
        format!("`{m}` needs a scheme, e.g. {scheme}://{m}")
    })
}

/// The value at `path` in the raw data, looking into lists by index.
pub(super) fn lookup<'a>(dict: &'a Dict, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = dict.get(first)?;
    for part in rest {
        value = match value {
            Value::Dict(_, d) => d.get(part)?,
            Value::Array(_, items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Removes the key at `path` (or the list or table holding it), so that its default takes its
/// place. False when there was nothing to remove.
pub(super) fn remove_path(dict: &mut Dict, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => dict.remove(last).is_some(),
        [first, rest @ ..] => {
            let inner = match dict.get_mut(first) {
                Some(Value::Dict(_, inner)) => remove_path(inner, rest),
                _ => false,
            };
            inner || dict.remove(first).is_some()
        }
    }
}

/// `["access", "skip_auth", "0"]` → `access.skip_auth[0]`.
pub(super) fn display_key(path: &[String]) -> String {
    let mut key = String::new();
    for part in path {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    if key.is_empty() {
        "(top level)".into()
    } else {
        key
    }
}

/// One extraction error as a line naming the key, the value and the fix.
pub(super) fn explain(data: &Dict, e: &figment::Error) -> ConfigError {
    let key = display_key(&e.path);
    // The config key itself, without list indexes.
    let field = e
        .path
        .iter()
        .take_while(|p| !p.bytes().all(|b| b.is_ascii_digit()))
        .cloned()
        .collect::<Vec<_>>()
        .join(".");
    let raw = lookup(data, &e.path);
    let message = match &e.kind {
        Kind::UnknownField(name, expected) => {
            let section = &e.path[..e.path.len().saturating_sub(1)];
            unknown_key(&section.join("."), name, expected)
        }
        kind if SECRET_KEYS.iter().any(|s| field == *s) => match kind {
            Kind::Message(m) => m.clone(),
            _ => "has the wrong type; write it in quotes (the value is not shown)".into(),
        },
        kind => fix(&field, raw, kind),
    };
    ConfigError::key(&key, message)
}

/// The fix for a value of the wrong shape at `field` (never a secret: see [`explain`]).
pub(super) fn fix(field: &str, raw: Option<&Value>, kind: &Kind) -> String {
    let value = raw.map(show_value).unwrap_or_default();
    if URL_KEYS.contains(&field) {
        return url_fix(field, raw, kind);
    }
    if matches!(field, "listen" | "admin_listen") {
        return addr_fix(&value);
    }
    if let Some((_, unit)) = DURATION_KEYS.iter().find(|(k, _)| *k == field) {
        return duration_fix(&value, *unit);
    }
    if let Some((_, choices)) = CHOICE_KEYS.iter().find(|(k, _)| *k == field) {
        return choice_fix(&value, choices);
    }
    if field.starts_with("limits.max_") {
        let sign = if value.starts_with('-') {
            "cannot be negative"
        } else {
            "is not a whole number"
        };
        return format!("`{value}` {sign}; e.g. {}", example_for(field));
    }
    match kind {
        Kind::Message(m) => m.clone(),
        Kind::UnknownVariant(v, choices) => choice_fix(&shown(v), choices),
        Kind::InvalidType(..)
            if known_keys()
                .iter()
                .any(|k| k.starts_with(&format!("{field}."))) =>
        {
            format!(
                "must be a section: [{field}] with keys below it in the file, or {}__<KEY> variables",
                env_name(field)
            )
        }
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
            format!("`{value}` is not valid here; expected {expected}")
        }
        other => other.to_string(),
    }
}

/// A URL key with a value that is not a URL.
pub(super) fn url_fix(field: &str, raw: Option<&Value>, kind: &Kind) -> String {
    let example = example_for(field);
    let Some(Value::String(_, s)) = raw else {
        let value = raw.map(show_value).unwrap_or_default();
        return format!("`{value}` is not a URL; write it in quotes, e.g. \"{example}\"");
    };
    let s = s.trim();
    if s.is_empty() {
        return format!("is empty; give a URL, e.g. {example}, or leave the key out");
    }
    let m = masked(s);
    if !s.contains("://") {
        let scheme = if field == "upstream" { "http" } else { "https" };
        return format!("`{m}` needs a scheme, e.g. {scheme}://{m}");
    }
    // The url crate's own message repeats the value in Rust's debug form; parse again for
    // just the reason.
    let reason = match Url::parse(s) {
        Err(e) => e.to_string(),
        Ok(_) => one_line(&kind.to_string()),
    };
    format!("`{m}` is not a valid URL ({reason}); e.g. {example}")
}

/// `listen`/`admin_listen` with a value that is not `ip:port`.
pub(super) fn addr_fix(value: &str) -> String {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if value.is_empty() {
        return "is empty; give an IP address and port, e.g. 127.0.0.1:8080 or 0.0.0.0:8080".into();
    }
    if digits(value) {
        return format!(
            "`{value}` is only a port; give an IP address with it, e.g. 127.0.0.1:{value} or 0.0.0.0:{value} (0.0.0.0 = every interface)"
        );
    }
    let port = value
        .rsplit(':')
        .next()
        .filter(|p| p.parse::<u16>().is_ok())
        .unwrap_or("8080");
    if let Some((host, port)) = value
        .rsplit_once(':')
        .filter(|(h, p)| h.contains(':') && !h.starts_with('[') && p.parse::<u16>().is_ok())
    {
        return format!(
            "`{value}` is not an IP address and port; an IPv6 address goes in brackets, e.g. [{host}]:{port}"
        );
    }
    let why = if value.contains(|c: char| c.is_ascii_alphabetic()) {
        " (host names are not looked up)"
    } else {
        ""
    };
    format!("`{value}` is not an IP address and port{why}; e.g. 127.0.0.1:{port} or 0.0.0.0:{port}")
}

/// A duration key with a bare number or an unknown unit.
pub(super) fn duration_fix(value: &str, unit: char) -> String {
    if value.is_empty() {
        return "is empty; give a number and a unit, e.g. 90s, 10m, 8h".into();
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let units = match unit {
            'h' => "h, m or s",
            'm' => "m, s or h",
            _ => "s, m or h",
        };
        let mut eg = String::new();
        for (i, u) in units.split(", ").flat_map(|p| p.split(" or ")).enumerate() {
            eg.push_str(match i {
                0 => "",
                1 => ", ",
                _ => " or ",
            });
            eg.push_str(value);
            eg.push_str(u);
        }
        return format!("`{value}` needs a unit, e.g. {eg}");
    }
    format!("`{value}` is not a duration; use a whole number and a unit, e.g. 90s, 10m, 8h")
}

/// A key with a fixed set of values.
pub(super) fn choice_fix(value: &str, choices: &[&str]) -> String {
    let list = match choices {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [init @ .., last] => format!(
            "{} or `{last}`",
            init.iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let case = if choices.iter().any(|c| value.eq_ignore_ascii_case(c)) {
        " (in lower case)"
    } else {
        ""
    };
    format!("`{value}` is not a valid choice; use {list}{case}")
}

/// An unknown key `name` in `section` (`""` = top level), whose known keys are `expected`.
pub(super) fn unknown_key(section: &str, name: &str, expected: &[&str]) -> String {
    if let Some(best) = nearest(name, expected) {
        return format!("unknown key; did you mean `{best}`?");
    }
    let norm = normalize(name);
    let full = if section.is_empty() {
        norm.clone()
    } else {
        format!("{section}.{norm}")
    };
    let all = known_keys();
    // `DAP_SESSION_SECRET` (one underscore) arrives as the top-level key `session_secret`.
    if let Some(k) = all
        .iter()
        .find(|k| k.contains('.') && k.replace('.', "_") == full)
    {
        return format!(
            "unknown key; did you mean `{k}`? (environment variables separate sections with two underscores: {})",
            env_name(k)
        );
    }
    // The right key in the wrong section (in TOML, a key below a [section] header belongs to it).
    if let Some(k) = all
        .iter()
        .find(|k| k.rsplit('.').next() == Some(norm.as_str()))
    {
        return match k.split_once('.') {
            Some((sec, _)) => format!("unknown key; did you mean `{k}`? (it goes under [{sec}])"),
            None => format!(
                "unknown key; did you mean the top-level `{k}`? (top-level keys go above the first [section] of the file)"
            ),
        };
    }
    if let Some(k) = only_prefix(name, expected) {
        return format!("unknown key; did you mean `{k}`?");
    }
    let place = if section.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in [{section}]")
    };
    format!("unknown key; the keys {place} are: {}", expected.join(", "))
}

/// Lower case, `-` as `_`: how a key is compared for suggestions.
pub(super) fn normalize(s: &str) -> String {
    s.to_lowercase().replace('-', "_")
}

/// The known key closest to `name` by edit distance, when that is small: at most 3 and at most
/// half the known key's length.
pub(super) fn nearest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let name = normalize(name);
    known
        .iter()
        .map(|k| (edit_distance(&name, k), *k))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, k)| *d <= 3 && *d * 2 <= k.chars().count())
        .map(|(_, k)| k)
}

/// The only known key that starts with `name` (`cookie` → `cookie_name`) or that `name` starts
/// with (`secret_key` → `secret`); at least 4 characters must match.
pub(super) fn only_prefix<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let name = normalize(name);
    let mut found = known.iter().filter(|k| {
        k.len().min(name.len()) >= 4 && (k.starts_with(name.as_str()) || name.starts_with(**k))
    });
    match (found.next(), found.next()) {
        (Some(k), None) => Some(*k),
        _ => None,
    }
}

/// Edit distance between `a` and `b` in characters: insertions, deletions, substitutions and
/// swaps of two neighbours each count 1 (optimal string alignment).
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j] = distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Every key the config knows, dotted (`session.ttl`). Learned from serde itself, so it cannot
/// fall out of step with the structs: extracting a made-up key makes `deny_unknown_fields`
/// list the fields of its section.
pub(super) fn known_keys() -> &'static [String] {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = Vec::new();
        for top in fields_of("") {
            match fields_of(top) {
                [] => keys.push(top.to_string()),
                sub => keys.extend(sub.iter().map(|k| format!("{top}.{k}"))),
            }
        }
        keys
    })
}

/// The fields of the section `section` (`""` = top level); empty for a key that is not a section.
pub(super) fn fields_of(section: &str) -> &'static [&'static str] {
    const PROBE: &str = "\u{1}";
    let (key, depth) = if section.is_empty() {
        (PROBE.to_string(), 1)
    } else {
        (format!("{section}.{PROBE}"), 2)
    };
    match Figment::from(Serialized::default(&key, 0)).extract::<Config>() {
        Err(e) if e.path.len() == depth => match e.kind {
            Kind::UnknownField(_, fields) => fields,
            _ => &[],
        },
        _ => &[],
    }
}

/// An error from a provider (not from a value), e.g. a TOML string that does not parse.
pub(super) fn provider_error(e: figment::Error) -> ConfigError {
    let file = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => source.to_string(),
            None => m.name.to_string(),
        })
        .unwrap_or_else(|| "(unknown source)".into());
    ConfigError::File {
        file,
        message: one_line(&e.kind.to_string()),
    }
}

/// A TOML syntax error as `not valid TOML at line N, column M (in `key`): reason`, from the
/// parser's message and the byte range it points at. The line's text is not shown: it may hold a secret.
pub(super) fn toml_syntax(
    text: &str,
    message: &str,
    span: Option<std::ops::Range<usize>>,
) -> String {
    let reason = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let reason = reason.trim_end_matches('.');
    let Some(span) = span else {
        return format!("is not valid TOML: {reason}");
    };
    let bytes = text.as_bytes();
    let start = span.start.min(bytes.len());
    let line_start = bytes[..start]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = bytes[..start].iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&bytes[line_start..start])
        .chars()
        .count()
        + 1;
    let line_text = String::from_utf8_lossy(&bytes[line_start..]);
    let line_text = line_text.lines().next().unwrap_or_default();
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.len() <= 60
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.\"' ".contains(c))
        });
    let near = key.map(|k| format!(" (in `{k}`)")).unwrap_or_default();
    format!("not valid TOML at line {line}, column {column}{near}: {reason}")
}
