//! `skip_auth`: a path that skips login reads the same to Tomcat/Spring and nginx as to us —
//! both normalisations equal the percent-decoded raw path and still start with `/public/`.
//! The normalisations are tests/normalise/mod.rs, shared with tests/properties.rs.
#![no_main]

use std::sync::OnceLock;

use dingtalk_auth_proxy::access::{is_canonical, Access};
use dingtalk_auth_proxy::config::AccessConfig;
use libfuzzer_sys::fuzz_target;

#[path = "../../normalise/mod.rs"]
mod normalise;
use normalise::{decode, nginx, tomcat};

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
