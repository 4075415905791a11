//! Runs the fake DingTalk alone: `cargo run --example fake_dingtalk [-- --port N]`.
//! Prints one line, `fake dingtalk listening on http://127.0.0.1:PORT`, then serves until killed.

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
    println!("fake dingtalk listening on {}", fake.base_url());
    println!(
        "app_key={} corp_id={} users: zhangsan lisi inactive nomobile; mint a code: {}/_fake/mint?userid=zhangsan",
        fake.app_key(),
        fake.corp_id(),
        fake.base_url()
    );
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
}
