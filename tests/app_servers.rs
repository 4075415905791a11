#![cfg(feature = "fake")]
//! Self-test of the real app servers in `common::appservers`: talked to DIRECTLY (no proxy),
//! they show the attack classes the proxy must defend against.

mod common;

use common::appservers::{
    h2c_smuggle, raw_get, start_h2c_app, start_tomcat, TOMCAT_PUBLIC_BODY, TOMCAT_SECRET_BODY,
};

/// Tomcat serves both files directly, and drops `;…` before resolving `..`, so
/// `/public/..;/admin/secret.txt` reaches the admin file (the path-parameter bypass class);
/// it does not upgrade to h2c.
#[tokio::test]
async fn tomcat_resolves_dot_dot_semicolon_into_admin() {
    let tomcat = start_tomcat().await;
    println!(
        "tomcat started in {:?} on {}",
        tomcat.startup,
        tomcat.addr()
    );
    let addr = tomcat.addr();

    let (status, body) = raw_get(&addr, "/public/hello.txt", &[]).await;
    assert_eq!((status, body.as_str()), (200, TOMCAT_PUBLIC_BODY));

    let (status, body) = raw_get(&addr, "/admin/secret.txt", &[]).await;
    assert_eq!((status, body.as_str()), (200, TOMCAT_SECRET_BODY));

    let (status, body) = raw_get(&addr, "/public/..;/admin/secret.txt", &[("Host", "x")]).await;
    println!("GET /public/..;/admin/secret.txt -> {status} {body:?}");
    assert_eq!(status, 200, "log:\n{}", tomcat.log_text());
    assert!(body.contains("TOP SECRET"), "body: {body}");

    // Tomcat has no h2c here: the smuggling client sees a plain answer and stops.
    let outcome = h2c_smuggle(
        &addr,
        "/public/hello.txt",
        Some("a=b"),
        "/admin/secret.txt",
        &[],
    )
    .await
    .expect("an answer to the upgrade request");
    assert_eq!(outcome.first_status, 200, "{}", outcome.first_head);
    assert!(!outcome.upgraded);
    assert_eq!(outcome.smuggled_status, None);
}

/// hypercorn answers `Upgrade: h2c` with 101 and then serves a second request smuggled over
/// HTTP/2 on the same socket: `/admin` with `x-user-id: admin` reaches the app.
#[tokio::test]
async fn hypercorn_accepts_h2c_smuggled_request() {
    let app = start_h2c_app().await;
    println!("hypercorn started in {:?} on {}", app.startup, app.addr());
    let addr = app.addr();

    let (status, body) = raw_get(&addr, "/plain", &[("X-User-Id", "wangwu")]).await;
    assert_eq!(status, 200);
    let echo: serde_json::Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(echo["path"], "/plain");
    assert_eq!(echo["http_version"], "1.1");
    assert_eq!(echo["headers"]["x-user-id"][0], "wangwu");

    let outcome = h2c_smuggle(&addr, "/", None, "/admin", &[("x-user-id", "admin")])
        .await
        .expect("an answer to the upgrade request");
    println!("{outcome:#?}");
    assert_eq!(outcome.first_status, 101, "{}", outcome.first_head);
    assert!(outcome.upgraded);
    assert_eq!(
        outcome.smuggled_status,
        Some(200),
        "error: {:?}; log:\n{}",
        outcome.smuggle_error,
        app.log_text()
    );
    let body = outcome.smuggled_body.expect("smuggled body");
    let echo: serde_json::Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(echo["path"], "/admin");
    assert_eq!(echo["http_version"], "2");
    assert_eq!(echo["headers"]["x-user-id"], serde_json::json!(["admin"]));
}
