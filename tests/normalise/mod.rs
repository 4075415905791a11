//! How common app servers read a request path, for the property tests and the `skip_path`
//! fuzz target (one copy, included by both with `#[path]`).
#![allow(dead_code)]

/// Percent-decodes every valid `%XX` (as Tomcat, nginx and Express do once).
pub fn decode(path: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(path).collect()
}

/// Resolves `.`/`..` segments and merges empty ones, on decoded bytes.
pub fn resolve(path: &[u8]) -> Vec<u8> {
    let mut out: Vec<&[u8]> = Vec::new();
    let segs: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    let last = segs.len().saturating_sub(1);
    for (i, seg) in segs.iter().enumerate() {
        match *seg {
            b"." => {}
            b".." => {
                out.pop();
            }
            b"" if i != last => {}
            s => out.push(s),
        }
    }
    let mut joined = Vec::new();
    for s in out {
        joined.push(b'/');
        joined.extend_from_slice(s);
    }
    if joined.is_empty() {
        joined.push(b'/');
    }
    joined
}

/// Tomcat/Spring: cut `;params` out of every segment, decode, resolve dot segments.
pub fn tomcat(path: &str) -> Vec<u8> {
    let cut: Vec<&str> = path
        .split('/')
        .map(|seg| seg.split(';').next().unwrap_or_default())
        .collect();
    resolve(&decode(&cut.join("/")))
}

/// nginx: decode, `\` is an ordinary byte, merge slashes, resolve dot segments.
pub fn nginx(path: &str) -> Vec<u8> {
    resolve(&decode(path))
}
