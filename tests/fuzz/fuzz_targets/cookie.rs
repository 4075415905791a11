//! `Cookie` header bytes: never open as a sealed session or login state (AES-GCM is
//! authenticated), `cookie_pairs` never panics, and `strip_cookie` leaves none of our cookies
//! (`dap_session`, `dap_session_state`, `dap_session_state_{tag}`) while keeping every other
//! pair as it was.
#![no_main]

use std::sync::OnceLock;

use dingtalk_auth_proxy::config::{Config, Secret};
use dingtalk_auth_proxy::proxy::strip_cookie;
use dingtalk_auth_proxy::session::{cookie_pairs, find_cookies, CookieCodec};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NAME: &str = "dap_session";
const STATE: &str = "dap_session_state";

fn codec() -> &'static CookieCodec {
    static CODEC: OnceLock<CookieCodec> = OnceLock::new();
    CODEC.get_or_init(|| {
        let mut config = Config::default();
        config.session.secret = Secret::new("fuzz-secret-0123456789abcdef0123456789");
        assert_eq!(config.session.cookie_name, NAME);
        CookieCodec::new(&config).expect("a valid secret")
    })
}

/// Our cookies: the session, and the login states (`dap_session_state`, and one
/// `dap_session_state_{tag}` per login in progress).
fn is_ours(k: &[u8]) -> bool {
    k == NAME.as_bytes()
        || k.strip_prefix(STATE.as_bytes())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"_"))
}

fn pairs_of(h: &HeaderMap) -> Vec<(Vec<u8>, Vec<u8>)> {
    h.get_all(COOKIE)
        .iter()
        .flat_map(|v| cookie_pairs(v.as_bytes()))
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let codec = codec();
    let shown = String::from_utf8_lossy(data);

    // Raw bytes, whatever they are: never panics, and every pair is a trimmed, `;`-free piece.
    for (k, v) in cookie_pairs(data) {
        assert!(!k.contains(&b';') && !v.contains(&b';'));
        assert!(!k.contains(&b'='));
    }

    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut h = HeaderMap::new();
    h.insert(COOKIE, value);

    assert!(codec.session(&h).is_none(), "random bytes opened as a session: {shown:?}");
    // Login states live in `dap_session_state_{tag}` cookies, looked up by the `state` sent
    // back; try a fixed state and every tag the header names.
    let mut states = vec!["abcdefghijklmnop".to_string()];
    for (k, _) in cookie_pairs(data) {
        if let Some(tag) = k.strip_prefix(b"dap_session_state_") {
            states.push(String::from_utf8_lossy(tag).into_owned());
        }
    }
    for state in &states {
        assert!(
            codec.login_state(&h, state).is_none(),
            "random bytes opened as the login state {state:?}: {shown:?}"
        );
    }
    for (name, state) in codec.pending_logins(&h) {
        assert!(state.is_none(), "random bytes opened as pending login {name:?}: {shown:?}");
    }
    let _ = codec.prune_pending_logins(&h);
    let _ = codec.clear_all_login_states(&h);
    let _ = find_cookies(&h, NAME).count();
    let _ = find_cookies(&h, STATE).count();

    let before = pairs_of(&h);
    let mut stripped = h.clone();
    strip_cookie(&mut stripped, NAME);
    let after = pairs_of(&stripped);

    for (k, _) in &after {
        assert!(!is_ours(k), "{:?} survived strip_cookie of {shown:?}", String::from_utf8_lossy(k));
    }
    assert_eq!(find_cookies(&stripped, NAME).count(), 0);
    assert_eq!(find_cookies(&stripped, STATE).count(), 0);
    // Everything else is kept, in order (a bare `=` piece, no name and no value, may go).
    let blank = |(k, v): &(Vec<u8>, Vec<u8>)| k.is_empty() && v.is_empty();
    let kept: Vec<_> = before
        .into_iter()
        .filter(|p| !is_ours(&p.0) && !blank(p))
        .collect();
    let after: Vec<_> = after.into_iter().filter(|p| !blank(p)).collect();
    assert_eq!(after, kept, "strip_cookie changed other cookies in {shown:?}");
});
