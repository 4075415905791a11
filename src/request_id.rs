//! Request ids: every request carries an `X-Request-Id` — the client's (or front server's)
//! when it is a sane token (1–128 characters of `[A-Za-z0-9._-]`), else a new random one. It is
//! forwarded upstream, returned in the response, on every log line about the request (the
//! `request` span) and in its audit events.

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, set in `headers` (the one sent if sane and alone, else a new one).
pub fn ensure(headers: &mut HeaderMap) -> HeaderValue {
    let mut sent = headers.get_all(&X_REQUEST_ID).iter();
    if let (Some(v), None) = (sent.next(), sent.next()) {
        if is_sane(v.as_bytes()) {
            return v.clone();
        }
    }
    let id = generate();
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

/// 1–128 characters of `[A-Za-z0-9._-]`.
pub fn is_sane(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A new id: 128 bits, base64url (22 characters, all sane) — 64 random bits drawn once per
/// thread, then a counter, so ids never repeat within a process and are unguessable across
/// processes without paying for 128 fresh random bits on every request. (A request id names a
/// request in logs; it grants nothing.)
fn generate() -> HeaderValue {
    thread_local! {
        static NEXT: std::cell::Cell<(u64, u64)> = std::cell::Cell::new((rand::random(), 0));
    }
    let (prefix, n) = NEXT.with(|c| {
        let (prefix, n) = c.get();
        c.set((prefix, n.wrapping_add(1)));
        (prefix, n)
    });
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&prefix.to_be_bytes());
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    let mut text = [0u8; 22];
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_slice(bytes, &mut text) {
        Ok(_) => HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("-")),
        Err(_) => HeaderValue::from_static("-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_and_replaces_others() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123_x.y"));
        assert_eq!(ensure(&mut h), "abc-123_x.y");
        for bad in ["", "a b", "x\u{7f}", "é"] {
            let mut h = HeaderMap::new();
            h.insert(
                &X_REQUEST_ID,
                HeaderValue::from_bytes(bad.as_bytes()).unwrap_or(HeaderValue::from_static("")),
            );
            let id = ensure(&mut h);
            assert_eq!(id.len(), 22, "{bad:?}");
            assert_eq!(h[&X_REQUEST_ID], id);
        }
        let long = "a".repeat(129);
        let mut h = HeaderMap::new();
        h.insert(
            &X_REQUEST_ID,
            HeaderValue::from_str(&long).unwrap_or(HeaderValue::from_static("")),
        );
        assert_ne!(ensure(&mut h), long.as_str());
        let mut h = HeaderMap::new();
        h.append(&X_REQUEST_ID, HeaderValue::from_static("one"));
        h.append(&X_REQUEST_ID, HeaderValue::from_static("two"));
        let id = ensure(&mut h);
        assert_eq!(h.get_all(&X_REQUEST_ID).iter().count(), 1);
        assert_eq!(id.len(), 22);
    }

    /// Generated ids are sane and never repeat.
    #[test]
    fn generated_ids_differ() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| generate()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 22 && is_sane(id.as_bytes())));
    }
}
