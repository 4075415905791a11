//! Thread per core, the nginx model: the binary runs one single-threaded tokio runtime per
//! core, each with its own listening socket on the proxy's address (`SO_REUSEPORT`, so the
//! kernel spreads new connections over them) and — through the per-thread pools of
//! [`proxy`](crate::proxy) — its own upstream connections. A request is read, decided,
//! forwarded and answered on one thread: no task migrates, no other thread is woken.
//!
//! What is per process stays per process and is shared by every thread: the session store,
//! the DingTalk client with its one app token, metrics, the audit writer.

use std::net::SocketAddr;

use tokio::sync::oneshot;

use crate::app::App;
use crate::server;

/// How many threads the binary serves on: one per core the process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The first listening socket on `addr`, which the other threads' sockets then share
/// (`SO_REUSEPORT`). Must be called inside a tokio runtime.
///
/// A plain bind comes first: it fails, as it always did, when anything already listens on the
/// address — another copy of this proxy included, which `SO_REUSEPORT` alone would let share
/// (and silently split) the traffic. It also turns port 0 into the port the others bind.
pub fn listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let addr = std::net::TcpListener::bind(addr)?.local_addr()?;
    tokio::net::TcpListener::from_std(std_listener(addr)?)
}

fn std_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// One more serving thread: its own listener on the shared address, its own runtime.
pub struct Worker {
    stop: Option<oneshot::Sender<()>>,
    done: oneshot::Receiver<()>,
}

impl Worker {
    /// Binds another listener on `addr` (already bound by the first one) and serves `app` on
    /// it from a new thread until [`stop`](Worker::stop).
    pub fn spawn(index: usize, addr: SocketAddr, app: App) -> std::io::Result<Worker> {
        let std = std_listener(addr)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (finished, done) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("dap-worker-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(std) {
                        Ok(listener) => {
                            server::serve(listener, app, async {
                                let _ = stopped.await;
                            })
                            .await
                        }
                        Err(e) => tracing::error!(error = %e, "worker cannot listen"),
                    }
                });
                let _ = finished.send(());
            })?;
        Ok(Worker {
            stop: Some(stop),
            done,
        })
    }

    /// Stops accepting on this thread; its connections drain.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until the thread has drained its connections and ended.
    pub async fn join(self) {
        let _ = self.done.await;
    }
}
