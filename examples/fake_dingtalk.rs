//! Runs the fake DingTalk alone: `cargo run --example fake_dingtalk [-- --port N]`.
//! Its first line is `fake dingtalk listening on http://127.0.0.1:PORT`; then its app key,
//! secret, corp id and users, and the `export DAP_…=…` lines that point your own proxy at it
//! (the same as on its index page, `GET /`). Serves until killed.
//!
//! To see what `dingtalk-auth-proxy doctor` says about a console mistake, play one:
//! `--deny member-read|contact-user-read|mobile` (an API permission not granted; repeatable)
//! and `--ip-whitelist IP` (the app's server IP whitelist; repeatable; 127.0.0.1 not in it =
//! errcode 60020).

use std::io::Write;

use dingtalk_auth_proxy::fake::{FakeDingTalk, Permission};

#[tokio::main]
async fn main() {
    let usage = || -> ! {
        eprintln!(
            "usage: fake_dingtalk [--port N] [--deny member-read|contact-user-read|mobile]... [--ip-whitelist IP]..."
        );
        std::process::exit(2);
    };
    let mut port: u16 = 0;
    let mut denied = Vec::new();
    let mut whitelist: Option<Vec<std::net::IpAddr>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let Some(value) = args.next() else { usage() };
        match arg.as_str() {
            "--port" => port = value.parse().unwrap_or_else(|_| usage()),
            "--deny" => denied.push(match value.as_str() {
                "member-read" => Permission::MemberRead,
                "contact-user-read" => Permission::ContactUserRead,
                "mobile" => Permission::Mobile,
                _ => usage(),
            }),
            "--ip-whitelist" => whitelist
                .get_or_insert_with(Vec::new)
                .push(value.parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake_dingtalk: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    let mut fake = FakeDingTalk::new();
    for p in &denied {
        fake = fake.deny(*p);
    }
    if let Some(ips) = &whitelist {
        fake = fake.ip_whitelist(ips);
    }
    let fake = fake.serve(listener).await;
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
    for p in &denied {
        println!(
            "denied:      the API permission {} (as if not granted in the console)",
            p.code()
        );
    }
    if let Some(ips) = &whitelist {
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        println!(
            "whitelist:   only {} may call (others get 60020)",
            ips.join(", ")
        );
    }
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
