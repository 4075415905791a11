//! Runs the fake DingTalk alone: `cargo run --example fake_dingtalk [-- --port N]`.
//! Its first line is `fake dingtalk listening on http://127.0.0.1:PORT`; then its app key,
//! secret, corp id and users, and the `export DAP_…=…` lines that point your own proxy at it
//! (the same as on its index page, `GET /`). Serves until killed.

use std::io::Write;

#[tokio::main]
async fn main() {
    let mut port: u16 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().map(|p| p.parse::<u16>())) {
            ("--port", Some(Ok(p))) => port = p,
            _ => {
                eprintln!("usage: fake_dingtalk [--port N]");
                std::process::exit(2);
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake_dingtalk: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    let fake = dingtalk_auth_proxy::fake::FakeDingTalk::new()
        .serve(listener)
        .await;
    let base = fake.base_url();
    println!("fake dingtalk listening on {base}");
    println!(
        "A stand-in for DingTalk for tests and the demo (not DingTalk); {base}/ shows all of this."
    );
    println!();
    println!("app key:     {}", fake.app_key());
    println!("app secret:  {}", fake.app_secret());
    println!("corp id:     {}", fake.corp_id());
    println!("users:       zhangsan (the in-app JSAPI user), lisi, nomobile (no mobile), inactive (cannot log in)");
    println!("mint a code: {base}/_fake/mint?userid=zhangsan");
    println!();
    println!("# Point your own dingtalk-auth-proxy at it:");
    for (key, value) in [
        ("DAP_DINGTALK__APP_KEY", fake.app_key()),
        ("DAP_DINGTALK__APP_SECRET", fake.app_secret()),
        ("DAP_DINGTALK__CORP_ID", fake.corp_id()),
        ("DAP_DINGTALK__API_BASE", base.clone()),
        ("DAP_DINGTALK__NEW_API_BASE", base.clone()),
        ("DAP_DINGTALK__LOGIN_BASE", base.clone()),
        ("DAP_DINGTALK__JSAPI_URL", fake.jsapi_url()),
    ] {
        println!("export {key}={value}");
    }
    println!("# plus a session secret and your app, then run the proxy (cargo run):");
    println!("export DAP_SESSION__SECRET=\"$(head -c 32 /dev/urandom | base64)\"");
    println!("export DAP_UPSTREAM=http://127.0.0.1:3000");
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
}
