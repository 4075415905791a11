//! Real front servers with the shipped configs (only addresses substituted): nginx with
//! `deploy/nginx/auth_request.conf` and Caddy with `deploy/caddy/Caddyfile`, each in front of
//! any app, asking our proxy (auth-only mode) through `auth_request` / `forward_auth`.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{
    deploy_file, free_port, replace_required, require_binary, spawn_guarded, wait_for_port,
    ChildGuard,
};

/// A front server running (stopped on drop: SIGTERM to its whole process group, see
/// [`ChildGuard`]).
pub struct Front {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `127.0.0.1:PORT`
    pub addr: SocketAddr,
    _guard: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Front {
    /// The server's pid (nginx's master), which is also its process group's id.
    pub fn pid(&self) -> u32 {
        self._guard.id()
    }
}

/// A port for a front server, chosen before the proxy starts (its `public_url` needs it).
pub fn front_port() -> u16 {
    free_port()
}

/// nginx on `port` with the shipped auth_request site: `proxy` answers verify, `app` serves.
pub async fn start_nginx(port: u16, proxy: SocketAddr, app: &str) -> Front {
    let site = deploy_file("deploy/nginx/auth_request.conf");
    let site = replace_required(&site, "server 127.0.0.1:8080;", &format!("server {proxy};"));
    let site = replace_required(&site, "server 127.0.0.1:3000;", &format!("server {app};"));
    let site = replace_required(&site, "listen 80;", &format!("listen 127.0.0.1:{port};"));
    let (guard, dir) = run_nginx(&site, &[port]).await;
    Front {
        base: format!("http://127.0.0.1:{port}"),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _guard: guard,
        _dir: dir,
    }
}

/// Runs nginx (as a child, in the foreground) with `site` included inside `http { }`, in a
/// fresh directory; returns once every port of `ports` listens (bounded), with the directory
/// that holds its files.
pub async fn run_nginx(site: &str, ports: &[u16]) -> (ChildGuard, tempfile::TempDir) {
    let nginx_bin = require_binary("nginx", &["/usr/sbin/nginx"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    std::fs::write(dir.path().join("site.conf"), site).expect("site.conf");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    // The main file a distribution ships, reduced to what runs in a temporary directory.
    let conf = format!(
        "{user}worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
events {{ worker_connections 256; }}\n\
http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
  include {d}/site.conf;\n}}\n",
        user = if root { "user root;\n" } else { "" },
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).expect("nginx.conf");
    // In the foreground, so the master is our child; SIGTERM to its group (the master and its
    // workers) is nginx's fast shutdown.
    let guard = spawn_guarded(
        Command::new(nginx_bin)
            .args([
                "-p",
                &d.to_string(),
                "-c",
                &format!("{d}/nginx.conf"),
                "-g",
                "daemon off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )
    .expect("nginx starts");
    for port in ports {
        assert!(
            wait_for_port(*port, Duration::from_secs(10)).await,
            "nginx did not listen on {port}: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
    }
    (guard, dir)
}

/// Caddy on `port` with the shipped Caddyfile: `proxy` answers forward_auth, `app` serves.
pub async fn start_caddy(port: u16, proxy: SocketAddr, app: &str) -> Front {
    let caddy_bin = require_binary("caddy", &["/usr/bin/caddy"]);
    let base = format!("http://127.0.0.1:{port}");
    let file = deploy_file("deploy/caddy/Caddyfile");
    let file = replace_required(&file, "http://app.example.com {", &format!("{base} {{"));
    let file = replace_required(&file, "127.0.0.1:8080", &proxy.to_string());
    let file = replace_required(&file, "127.0.0.1:3000", app);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, file).expect("Caddyfile");
    let log = std::fs::File::create(dir.path().join("caddy.log")).expect("caddy.log");
    let guard = spawn_guarded(
        Command::new(caddy_bin)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&path)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdout(Stdio::null())
            .stderr(log),
    )
    .expect("caddy starts");
    assert!(
        wait_for_port(port, Duration::from_secs(15)).await,
        "caddy did not listen on {port}: {}",
        std::fs::read_to_string(dir.path().join("caddy.log")).unwrap_or_default()
    );
    Front {
        base,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _guard: guard,
        _dir: dir,
    }
}
