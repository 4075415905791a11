//! Real `redis-server` processes for the Redis session store's tests: a standalone server and
//! a three-node Redis Cluster, each on free loopback ports, in a temporary directory, stopped
//! (with everything they started) when dropped. A missing redis-server fails the test.

use std::time::{Duration, Instant};

use super::{free_port, require_binary, spawn_guarded, wait_for_port, ChildGuard};

/// A running redis-server.
pub struct RedisServer {
    pub port: u16,
    pub guard: ChildGuard,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn stall(&self) {
        signal(self.guard.id(), libc::SIGSTOP);
    }

    /// Lets a stalled server go on (SIGCONT).
    pub fn resume(&self) {
        signal(self.guard.id(), libc::SIGCONT);
    }
}

fn signal(pid: u32, sig: i32) {
    let pid = i32::try_from(pid).expect("pid fits");
    // SAFETY: kill(2) with a pid we started; no memory is shared.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

fn server_binary() -> std::path::PathBuf {
    require_binary("redis-server", &["/usr/bin/redis-server"])
}

async fn spawn(extra: &[&str]) -> RedisServer {
    let bin = server_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
    ])
    .arg(dir.path())
    .args(extra)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let guard = spawn_guarded(&mut cmd).expect("redis-server starts");
    assert!(
        wait_for_port(port, Duration::from_secs(10)).await,
        "redis-server did not listen on {port}"
    );
    RedisServer {
        port,
        guard,
        _dir: dir,
    }
}

/// A standalone redis-server.
pub async fn standalone() -> RedisServer {
    spawn(&[]).await
}

/// Three cluster-enabled servers joined into one Redis Cluster (no replicas), ready.
pub async fn cluster() -> Vec<RedisServer> {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(spawn(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]).await);
    }
    let cli = require_binary("redis-cli", &["/usr/bin/redis-cli"]);
    let mut create = std::process::Command::new(&cli);
    create.arg("--cluster").arg("create");
    for n in &nodes {
        create.arg(format!("127.0.0.1:{}", n.port));
    }
    create.args(["--cluster-replicas", "0", "--cluster-yes"]);
    let out = create.output().expect("redis-cli runs");
    assert!(
        out.status.success(),
        "cluster create failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Bounded wait until every node says the cluster is ok.
    let end = Instant::now() + Duration::from_secs(20);
    for n in &nodes {
        loop {
            let info = std::process::Command::new(&cli)
                .args(["-p", &n.port.to_string(), "cluster", "info"])
                .output()
                .expect("redis-cli runs");
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(
                Instant::now() < end,
                "cluster on {} never became ok",
                n.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    nodes
}

/// A Redis Sentinel (the redis-server binary in sentinel mode) watching `master` as `name`,
/// ready once it reports the master.
pub async fn sentinel(master: &RedisServer, name: &str) -> RedisServer {
    let bin = server_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {name} 127.0.0.1 {} 1\n",
            dir.path().display(),
            master.port
        ),
    )
    .expect("sentinel.conf");
    let mut cmd = std::process::Command::new(bin);
    cmd.arg(&conf)
        .arg("--sentinel")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let guard = spawn_guarded(&mut cmd).expect("sentinel starts");
    assert!(
        wait_for_port(port, Duration::from_secs(10)).await,
        "sentinel did not listen on {port}"
    );
    let cli = require_binary("redis-cli", &["/usr/bin/redis-cli"]);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let out = std::process::Command::new(&cli)
            .args([
                "-p",
                &port.to_string(),
                "sentinel",
                "get-master-addr-by-name",
                name,
            ])
            .output()
            .expect("redis-cli runs");
        if String::from_utf8_lossy(&out.stdout).contains(&master.port.to_string()) {
            break;
        }
        assert!(Instant::now() < end, "sentinel never reported {name}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    RedisServer {
        port,
        guard,
        _dir: dir,
    }
}
