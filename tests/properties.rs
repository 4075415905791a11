//! Property tests (proptest) for the rules an attacker probes: the canonical-path rule behind
//! `skip_auth`, `rd` validation, identity-header stripping and cookie decoding.

use dingtalk_auth_proxy::access::{is_canonical, Access};
use dingtalk_auth_proxy::config::{AccessConfig, Config, HeadersConfig, Secret};
use dingtalk_auth_proxy::identity::IdentityHeaders;
use dingtalk_auth_proxy::redirect::safe_rd;
use dingtalk_auth_proxy::session::CookieCodec;
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

#[path = "normalise/mod.rs"]
mod normalise;
use normalise::{decode, nginx, tomcat};

fn path_strategy() -> impl Strategy<Value = String> {
    let seg = prop::sample::select(vec![
        "public",
        "admin",
        "static",
        "x.css",
        "..",
        ".",
        "",
        "..;",
        ".;",
        ";x=1",
        "a;b",
        "%2e",
        "%2E%2e",
        "%2f",
        "%5c",
        "\\",
        "a%20b",
        "%E4%B8%AD",
        "%25",
        "%252e",
        "%41",
        "..%2f",
        "~u",
        "a+b",
        "%3b",
        "...",
        "%00",
        "%zz",
    ]);
    prop::collection::vec(seg, 1..6).prop_map(|segs| format!("/{}", segs.join("/")))
}

fn access() -> Access {
    Access::new(&AccessConfig {
        skip_auth: vec!["^/public/".into(), "^/static/[^/]*\\.css$".into()],
        ..Default::default()
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A path that skips login reads the same to Tomcat, nginx and us: both normalisations
    /// equal the decoded raw path, and every skip rule that matched still matches them.
    #[test]
    fn skipped_paths_read_alike(path in path_strategy()) {
        let a = access();
        if a.skips(&path) {
            prop_assert!(is_canonical(&path));
            let raw = decode(&path);
            let t = tomcat(&path);
            let n = nginx(&path);
            prop_assert_eq!(&t, &raw, "tomcat reads {} differently", path);
            prop_assert_eq!(&n, &raw, "nginx reads {} differently", path);
            let t = String::from_utf8_lossy(&t).into_owned();
            prop_assert!(a.skips(&t) || !is_canonical(&t), "{} -> {}", path, t);
        }
    }

    /// Whatever `rd` is, the redirect target stays on our origin after a browser's parsing.
    #[test]
    fn rd_stays_same_origin(
        prefix in prop::sample::select(vec![
            "/", "//", "/\\", "\\\\", "http:", "https://evil.com", "/%2f", "/\t/", "/ /",
            "%2F%2F", "javascript:", "/.", "/..//", "", "/\r\n/", "\\/", "/\u{3000}",
        ]),
        rest in "[ -~\u{80}-\u{10ffff}]{0,24}",
    ) {
        let rd = format!("{prefix}{rest}");
        let out = safe_rd(Some(&rd));
        let base = url::Url::parse("https://app.example.com/").unwrap();
        let joined = base.join(&out);
        prop_assert!(joined.is_ok(), "{:?} -> {:?}", rd, out);
        prop_assert_eq!(joined.unwrap().origin(), base.origin(), "{:?} -> {:?}", rd, out);
        prop_assert!(out == "/" || out == rd);
    }

    /// No case or `-`/`_` mix of a configured identity header survives stripping.
    #[test]
    fn identity_spellings_are_stripped(
        which in prop::sample::select(vec!["x-user-id", "x-user-mobile"]),
        flips in prop::collection::vec(any::<(bool, bool)>(), 16),
    ) {
        let name: String = which
            .chars()
            .zip(flips.iter().cycle())
            .map(|(c, (upper, underscore))| match c {
                '-' if *underscore => '_',
                c if *upper => c.to_ascii_uppercase(),
                c => c,
            })
            .collect();
        let ids = IdentityHeaders::new(&HeadersConfig::default()).unwrap();
        let mut h = HeaderMap::new();
        h.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("evil"));
        h.insert("x-other", HeaderValue::from_static("ok"));
        ids.strip(&mut h);
        prop_assert_eq!(h.len(), 1, "{} survived", name);
    }

    /// Arbitrary bytes in `Cookie` never panic and never decode to a session.
    #[test]
    fn cookie_bytes_never_make_a_session(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        named in any::<bool>(),
    ) {
        let mut config = Config::default();
        config.session.secret = Secret::new("property-test-secret-0123456789abcdef");
        let codec = CookieCodec::new(&config, dingtalk_auth_proxy::clock::Clock::system()).unwrap();
        let mut value = if named {
            b"dap_session=".to_vec()
        } else {
            b"dap_session_state_AAAAAAAAAAAA=".to_vec()
        };
        value.extend(bytes.iter().copied().filter(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f)));
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            h.insert(http::header::COOKIE, v);
        }
        prop_assert!(codec.session(&h).is_none());
        prop_assert!(codec.login_state(&h, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").is_none());
        prop_assert!(codec.pending_logins(&h).iter().all(|(_, s)| s.is_none()));
        let mut stripped = h.clone();
        dingtalk_auth_proxy::proxy::strip_cookie(&mut stripped, "dap_session");
    }
}
