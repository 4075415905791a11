//! `rd` (return-to): whatever the input, the redirect target is `/` or the input itself, and
//! resolved against our origin it stays there. Same for `login_rd` on a whole query string.
#![no_main]

use dingtalk_auth_proxy::login::{login_rd, query_param};
use dingtalk_auth_proxy::redirect::safe_rd;
use libfuzzer_sys::fuzz_target;
use url::Url;

fn assert_same_origin(input: &str, out: &str) {
    let base = Url::parse("https://app.example.com/").unwrap();
    let joined = base
        .join(out)
        .unwrap_or_else(|e| panic!("{input:?} -> {out:?} does not resolve: {e}"));
    assert_eq!(
        joined.origin(),
        base.origin(),
        "{input:?} -> {out:?} leaves the origin: {joined}"
    );
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let input: &str = &input;

    let out = safe_rd(Some(input));
    assert!(out == "/" || out == input, "{input:?} -> {out:?}");
    assert_same_origin(input, &out);

    // As a login query: `rd=/raw…` is taken raw, anything else through form decoding.
    let out = login_rd(Some(input));
    let expected = match input.strip_prefix("rd=") {
        Some(raw) if raw.starts_with('/') => Some(raw.to_string()),
        _ => query_param(Some(input), "rd"),
    };
    assert!(
        out == "/" || Some(&out) == expected.as_ref(),
        "query {input:?} -> {out:?} (rd was {expected:?})"
    );
    assert_same_origin(input, &out);
});
