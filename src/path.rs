//! Canonical paths: the one spelling of a path that every common app server reads the same
//! way. `skip_auth` applies only to such paths, and route prefixes must be one.

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
