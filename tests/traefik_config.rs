//! Traefik is not packaged here, so its shipped example is checked by parsing: the
//! forwardAuth middleware must point at our verify endpoint and copy our identity headers.

use dingtalk_auth_proxy::config::{Config, HeadersConfig};

/// deploy/traefik/dynamic.toml's forwardAuth address and authResponseHeaders match the
/// proxy's endpoint and default header names (the assertion header last); the router for /_auth/ goes to the sidecar.
#[test]
fn forward_auth_matches_our_endpoint_and_headers() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/traefik/dynamic.toml");
    let text = std::fs::read_to_string(&path).expect("deploy/traefik/dynamic.toml");
    let doc: toml::Value = toml::from_str(&text).expect("valid TOML");
    let http = &doc["http"];
    let fa = &http["middlewares"]["dingtalk-auth"]["forwardAuth"];
    let address = url::Url::parse(fa["address"].as_str().unwrap()).unwrap();
    let defaults = Config::default();
    assert_eq!(address.path(), format!("{}/verify", defaults.auth_prefix));
    let headers: Vec<&str> = fa["authResponseHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let ours = HeadersConfig::default();
    let mut ours: Vec<&str> = ours.named().into_iter().map(|(_, n)| n).collect();
    ours.push(&defaults.assertion.header);
    assert_eq!(headers, ours);

    let sidecar = http["services"]["dingtalk-auth-proxy"]["loadBalancer"]["servers"][0]["url"]
        .as_str()
        .unwrap();
    let sidecar = url::Url::parse(sidecar).unwrap();
    assert_eq!(sidecar.host_str(), address.host_str());
    assert_eq!(sidecar.port(), address.port());
    let auth_router = &http["routers"]["dingtalk-auth"];
    assert!(auth_router["rule"]
        .as_str()
        .unwrap()
        .contains("PathPrefix(`/_auth/`)"));
    assert_eq!(auth_router["service"].as_str(), Some("dingtalk-auth-proxy"));
    let app = &http["routers"]["app"];
    let mw: Vec<&str> = app["middlewares"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(mw.contains(&"dingtalk-auth"), "{mw:?}");
    // The strip middleware runs first and removes every `_` spelling of our headers and the
    // URI header Traefik does not set.
    assert_eq!(mw.first(), Some(&"dingtalk-strip"), "{mw:?}");
    let strip = http["middlewares"]["dingtalk-strip"]["headers"]["customRequestHeaders"]
        .as_table()
        .expect("dingtalk-strip removes headers");
    let removed: Vec<String> = strip
        .iter()
        .filter(|(_, v)| v.as_str() == Some(""))
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    assert!(
        removed.contains(&"x-original-uri".to_string()),
        "{removed:?}"
    );
    for name in &ours {
        let parts: Vec<&str> = name.split('-').collect();
        // Every mix of `-` and `_` between the parts, except the all-`-` name itself.
        let gaps = parts.len() - 1;
        for mask in 1..(1u32 << gaps) {
            let mut spelled = parts[0].to_string();
            for (i, part) in parts[1..].iter().enumerate() {
                spelled.push(if mask & (1 << i) != 0 { '_' } else { '-' });
                spelled.push_str(part);
            }
            let spelled = spelled.to_ascii_lowercase();
            assert!(
                removed.contains(&spelled),
                "{spelled} not removed: {removed:?}"
            );
        }
    }
    let login = &http["middlewares"]["dingtalk-login"]["errors"];
    assert!(login["query"]
        .as_str()
        .unwrap()
        .starts_with("/_auth/login?rd="));
}
