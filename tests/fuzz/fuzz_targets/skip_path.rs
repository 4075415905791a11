//! `skip_auth`: a path that skips login reads the same to Tomcat/Spring and nginx as to us —
//! both normalisations equal the percent-decoded raw path and still start with `/public/`.
//! The normalisations are copied from tests/properties.rs.
#![no_main]

use std::sync::OnceLock;

use dingtalk_auth_proxy::access::{is_canonical, Access};
use dingtalk_auth_proxy::config::AccessConfig;
use libfuzzer_sys::fuzz_target;

/// Percent-decodes every valid `%XX` (as Tomcat, nginx and Express do once).
fn decode(path: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(path).collect()
}

/// Resolves `.`/`..` segments and merges empty ones, on decoded bytes.
fn resolve(path: &[u8]) -> Vec<u8> {
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
fn tomcat(path: &str) -> Vec<u8> {
    let cut: Vec<&str> = path
        .split('/')
        .map(|seg| seg.split(';').next().unwrap_or_default())
        .collect();
    resolve(&decode(&cut.join("/")))
}

/// nginx: decode, `\` is an ordinary byte, merge slashes, resolve dot segments.
fn nginx(path: &str) -> Vec<u8> {
    resolve(&decode(path))
}

fn access() -> &'static Access {
    static ACCESS: OnceLock<Access> = OnceLock::new();
    ACCESS.get_or_init(|| {
        Access::new(&AccessConfig {
            skip_auth: vec!["^/public/".into()],
            ..Default::default()
        })
        .expect("a valid rule")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let canonical = is_canonical(path);
    if !access().skips(path) {
        return;
    }
    assert!(canonical, "{path:?} skips login but is not canonical");
    let raw = decode(path);
    let t = tomcat(path);
    let n = nginx(path);
    assert_eq!(
        t,
        raw,
        "tomcat reads {path:?} as {:?}",
        String::from_utf8_lossy(&t)
    );
    assert_eq!(
        n,
        raw,
        "nginx reads {path:?} as {:?}",
        String::from_utf8_lossy(&n)
    );
    assert!(t.starts_with(b"/public/"), "tomcat: {path:?} leaves /public/");
    assert!(n.starts_with(b"/public/"), "nginx: {path:?} leaves /public/");
});
