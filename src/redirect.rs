//! The `rd` (return-to) parameter: treated as hostile, honoured only as a same-origin path.
//!
//! Browsers read `//host`, `/\host`, `\\host` and paths with tabs or newlines stripped out as
//! other origins; the rules below refuse all of them and fall back to `/`.

use url::Url;

/// `rd` if it is a safe same-origin relative path (`/x?y`), else `/`.
pub fn safe_rd(rd: Option<&str>) -> String {
    match rd {
        Some(rd) if is_safe(rd) => rd.to_string(),
        _ => "/".to_string(),
    }
}

/// At most 2048 bytes, and none that browsers rewrite: backslashes become slashes,
/// whitespace and controls are dropped. The first test for any `rd`, relative or absolute.
pub(crate) fn is_plain(rd: &str) -> bool {
    rd.len() <= 2048 && !rd.bytes().any(|b| b == b'\\' || b <= b' ' || b == 0x7f)
}

fn is_safe(rd: &str) -> bool {
    let bytes = rd.as_bytes();
    if bytes.first() != Some(&b'/') || !is_plain(rd) {
        return false;
    }
    if matches!(bytes.get(1), Some(b'/' | b'\\')) {
        return false;
    }
    // Final word from a real URL parser: resolved against an origin, it must stay there.
    let Ok(base) = Url::parse("http://rd.invalid/") else {
        return false;
    };
    match base.join(rd) {
        Ok(u) => u.origin() == base.origin(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Open-redirect attempts land on `/`; ordinary paths pass unchanged.
    /// Up to 2048 bytes of `rd` are kept (long queries of real apps); longer ones go to `/`.
    #[test]
    fn length_limit() {
        let at_limit = format!("/{}", "a".repeat(2047));
        assert_eq!(safe_rd(Some(&at_limit)), at_limit);
        let over = format!("/{}", "a".repeat(2048));
        assert_eq!(safe_rd(Some(&over)), "/");
    }

    #[test]
    fn open_redirects_are_refused() {
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "https://evil.com",
            "%2F%2Fevil.com",
            "/\t/evil.com",
            "/ /evil.com",
            "javascript:alert(1)",
            "evil.com",
            "",
        ] {
            assert_eq!(safe_rd(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_rd(None), "/");
        assert_eq!(
            safe_rd(Some("/app/page?x=1&y=%2F%2F")),
            "/app/page?x=1&y=%2F%2F"
        );
        assert_eq!(safe_rd(Some("/a#frag")), "/a#frag");
    }
}
