//! Who may speak for the client (`trusted_proxies`): only a peer in that list may tell us the
//! client's address (`X-Forwarded-For`) or the URI it asked for (`X-Original-URI`,
//! `X-Forwarded-Uri`, read by `verify`). From any other peer those headers are the client's
//! own words: `X-Forwarded-For` is replaced by the peer's address, and URI headers are ignored.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

/// The configured `trusted_proxies`.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trusts exactly these networks.
    pub fn new(nets: &[IpNet]) -> TrustedProxies {
        TrustedProxies {
            nets: nets.to_vec(),
        }
    }

    /// True when `ip` is a trusted proxy. IPv4-mapped IPv6 peers (`::ffff:127.0.0.1`, from a
    /// dual-stack listener) are judged by their IPv4 address.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: the peer, or — when the peer is a trusted proxy — the nearest
    /// address in `X-Forwarded-For` that is not itself a trusted proxy (read from the right,
    /// where the trusted hops appended theirs). Garbage in the header ends the walk.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer.ip());
        if !self.trusts(client) {
            return client;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }

    /// The `X-Forwarded-For` to send upstream: a trusted peer's list with the peer appended;
    /// from anyone else, the peer's address alone (a client cannot plant addresses).
    pub fn forwarded_for(&self, peer: SocketAddr, headers: &HeaderMap) -> HeaderValue {
        let ip = canonical(peer.ip());
        let prior = if self.trusts(peer.ip()) {
            let all: Vec<&str> = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect();
            all.join(", ")
        } else {
            String::new()
        };
        if prior.is_empty() {
            return ip_value(ip);
        }
        HeaderValue::from_str(&format!("{prior}, {ip}"))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
    }
}

/// `ip` as a header value. The text of the last address this thread wrote is kept: a
/// connection (and a front server's pool of them) sends many requests from one address.
fn ip_value(ip: IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((seen, v)) if *seen == ip => v.clone(),
            _ => {
                let v = HeaderValue::from_str(&ip.to_string())
                    .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
                *last = Some((ip, v.clone()));
                v
            }
        }
    })
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> TrustedProxies {
        let nets: Vec<IpNet> = ["127.0.0.0/8", "10.0.0.0/8"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        TrustedProxies::new(&nets)
    }

    fn xff(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static(v));
        h
    }

    /// An untrusted peer's X-Forwarded-For is replaced; a trusted one's is appended to.
    #[test]
    fn forwarded_for() {
        let t = trusted();
        let outsider: SocketAddr = "192.0.2.9:5000".parse().unwrap();
        let nginx: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(t.forwarded_for(outsider, &xff("6.6.6.6")), "192.0.2.9");
        assert_eq!(
            t.forwarded_for(nginx, &xff("192.0.2.9")),
            "192.0.2.9, 127.0.0.1"
        );
        assert_eq!(t.forwarded_for(nginx, &HeaderMap::new()), "127.0.0.1");
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:1".parse().unwrap();
        assert!(t.trusts(mapped.ip()));
    }

    /// The client IP is the nearest untrusted hop, never what an outsider claims.
    #[test]
    fn client_ip() {
        let t = trusted();
        let outsider: SocketAddr = "192.0.2.9:5000".parse().unwrap();
        let nginx: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(t.client_ip(outsider, &xff("6.6.6.6")), ip("192.0.2.9"));
        assert_eq!(
            t.client_ip(nginx, &xff("6.6.6.6, 192.0.2.9, 10.1.1.1")),
            ip("192.0.2.9")
        );
        assert_eq!(
            t.client_ip(nginx, &xff("garbage, 10.1.1.1")),
            ip("10.1.1.1")
        );
        assert_eq!(t.client_ip(nginx, &HeaderMap::new()), ip("127.0.0.1"));
    }
}
