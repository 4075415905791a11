//! `cargo run --example demo`: fake DingTalk + a demo app + the proxy in front of it, with no
//! DingTalk account and no config. Prints the URL to open.
//!
//! Options: `--port N` for the proxy (default 8080; 0 picks a free one).

use std::net::SocketAddr;

#[tokio::main]
async fn main() {
    dingtalk_auth_proxy::init_logging(dingtalk_auth_proxy::config::LogFormat::Text);
    let mut port: u16 = 8080;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().map(|p| p.parse::<u16>())) {
            ("--port", Some(Ok(p))) => port = p,
            _ => {
                eprintln!("usage: demo [--port N]");
                std::process::exit(2);
            }
        }
    }
    let demo =
        match dingtalk_auth_proxy::demo::start(SocketAddr::from(([127, 0, 0, 1], port))).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("demo: cannot start: {e} (try --port 0)");
                std::process::exit(1);
            }
        };
    let url = format!("http://{}/", demo.proxy.addr);
    println!("fake DingTalk:  {}", demo.dingtalk.base_url());
    println!(
        "                (a stand-in, not DingTalk; its page lists its users, app key and secret)"
    );
    println!(
        "demo app:       http://{} (behind the proxy)",
        demo.upstream
    );
    println!();
    println!("Desktop browser: open {url} — you land on the fake DingTalk login page; pick a user and approve.");
    println!("In-app (免登):   send a User-Agent containing \"DingTalk\" (e.g. Chrome DevTools > Network conditions);");
    println!("                 the fake JSAPI logs you in as zhangsan without a click.");
    println!("Users: zhangsan, lisi, nomobile (no mobile), inactive (cannot log in).");
    println!();
    println!("demo proxy listening on {url}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    demo.proxy.shutdown().await;
}
