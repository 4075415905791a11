//! A test run leaves no process of its own behind: every kind of external process the tests
//! start, through the same helpers the tests use (nginx and Caddy from `common::fronts`, Tomcat
//! and hypercorn from `common::appservers`, the demo example), runs in a process group of its
//! own; once its guard is dropped, no process of that group is alive (checked in `/proc`,
//! polled, bounded) and nothing listens on its port any more. nginx's group must hold the
//! master and its worker first, so an orphaned worker would fail this.
//! Missing servers fail (never skip), like everywhere else.
#![cfg(feature = "fake")]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{appservers, fronts, group_members};

/// From the drop of a guard until its group and port must be gone: the guard's own bounded
/// stop (SIGTERM, then SIGKILL) plus slack for a loaded machine.
const GONE_LIMIT: Duration = Duration::from_secs(20);
/// How long a started server may take to fork its helpers (nginx's worker).
const MEMBERS_LIMIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);

/// A running server's process group, as seen before its guard is dropped.
struct Watched {
    what: &'static str,
    pgid: u32,
    members: Vec<u32>,
    port: u16,
}

/// Waits (bounded) until the group `pgid` holds at least `at_least` live processes, and records
/// them.
async fn watch(what: &'static str, pgid: u32, at_least: usize, port: u16) -> Watched {
    let end = Instant::now() + MEMBERS_LIMIT;
    let members = loop {
        let members = group_members(pgid);
        if members.len() >= at_least {
            break members;
        }
        assert!(
            Instant::now() < end,
            "{what}: its process group {pgid} holds {members:?}, expected at least {at_least} \
             processes within {MEMBERS_LIMIT:?}"
        );
        tokio::time::sleep(POLL).await;
    };
    assert!(
        members.contains(&pgid),
        "{what}: the spawned process {pgid} leads its own group: {members:?}"
    );
    Watched {
        what,
        pgid,
        members,
        port,
    }
}

/// Whether something accepts connections on 127.0.0.1:`port`.
fn listening(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Drops `guard` (the server's stop) and asserts that, within [`GONE_LIMIT`] of the drop, no
/// process of `w`'s group is alive and its port is closed.
fn assert_stopped_clean(w: Watched, guard: impl Sized) {
    assert!(
        listening(w.port),
        "{}: not listening before the stop",
        w.what
    );
    let dropped = Instant::now();
    drop(guard);
    let stop_took = dropped.elapsed();
    let end = dropped + GONE_LIMIT;
    loop {
        // Every live process whose group is still `pgid`: the recorded ones (a pid reused by
        // someone else is in another group) and any forked since.
        let left = group_members(w.pgid);
        let port_open = listening(w.port);
        if left.is_empty() && !port_open {
            eprintln!(
                "{}: group {} ({} processes) gone; the stop took {stop_took:?}",
                w.what,
                w.pgid,
                w.members.len()
            );
            return;
        }
        assert!(
            Instant::now() < end,
            "{}: {GONE_LIMIT:?} after its guard was dropped (the stop took {stop_took:?}), \
             processes of its group {} are still alive: {left:?} (of {:?}); port {} still \
             open: {port_open}",
            w.what,
            w.pgid,
            w.members,
            w.port
        );
        std::thread::sleep(POLL);
    }
}

/// nginx: the master and its worker (`worker_processes 1`) are both gone after the drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_leaves_no_worker_behind() {
    let h = common::start_with(|c| c.upstream = None).await;
    let port = fronts::front_port();
    let front = fronts::start_nginx(port, h.proxy.addr, &h.upstream.to_string()).await;
    let w = watch("nginx", front.pid(), 2, port).await;
    assert_stopped_clean(w, front);
}

/// Caddy is gone after the drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_leaves_nothing_behind() {
    let h = common::start_with(|c| c.upstream = None).await;
    let port = fronts::front_port();
    let front = fronts::start_caddy(port, h.proxy.addr, &h.upstream.to_string()).await;
    let w = watch("caddy", front.pid(), 1, port).await;
    assert_stopped_clean(w, front);
}

/// Tomcat (`catalina.sh run`, which execs the JVM) is gone after the drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tomcat_leaves_nothing_behind() {
    let tomcat = appservers::start_tomcat().await;
    let w = watch("tomcat", tomcat.pid(), 1, tomcat.port).await;
    assert_stopped_clean(w, tomcat);
}

/// hypercorn is gone after the drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypercorn_leaves_nothing_behind() {
    let app = appservers::start_h2c_app().await;
    let w = watch("hypercorn", app.pid(), 1, app.port).await;
    assert_stopped_clean(w, app);
}

/// The demo example binary is gone after the drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_leaves_nothing_behind() {
    let demo = common::start_demo();
    let port = url::Url::parse(&demo.proxy)
        .ok()
        .and_then(|u| u.port())
        .unwrap_or_else(|| panic!("the demo's URL has a port: {}", demo.proxy));
    let w = watch("demo", demo.pid(), 1, port).await;
    assert_stopped_clean(w, demo);
}
