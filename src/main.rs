//! The `dingtalk-auth-proxy` binary: `run` (the default) and `check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dingtalk_auth_proxy::Config;

/// DingTalk (钉钉) login in front of any intranet web app.
#[derive(Parser)]
#[command(name = "dingtalk-auth-proxy", version, about)]
struct Cli {
    /// TOML config file (environment variables DAP_* override it).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Run,
    /// Print the effective config with secrets redacted; exit 2 if it is invalid.
    CheckConfig,
    /// List or end server-side sessions (needs `session.store = "redis"`).
    Sessions {
        #[command(subcommand)]
        action: SessionsAction,
    },
}

#[derive(Subcommand)]
enum SessionsAction {
    /// One line per live session: userid, name, issued, expires, short id hash.
    List {
        /// Only this user's sessions.
        #[arg(long)]
        userid: Option<String>,
    },
    /// End every session of a user on every replica at once; prints how many ended.
    Revoke {
        /// The user whose sessions end.
        #[arg(long)]
        userid: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            // One line per problem, every problem of this run, key first.
            for line in e.lines() {
                eprintln!("dingtalk-auth-proxy: invalid config: {line}");
            }
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            print!("{}", config.redacted_toml());
            println!("# config ok");
            ExitCode::SUCCESS
        }
        Command::Run => run(config),
        Command::Sessions { action } => sessions(config, action),
    }
}

/// `sessions list` / `sessions revoke`: straight to the store the config names.
fn sessions(config: Config, action: SessionsAction) -> ExitCode {
    use dingtalk_auth_proxy::admin::{self, AdminError};
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dingtalk-auth-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match action {
            SessionsAction::List { userid } => admin::list(&config, userid.as_deref()).await,
            SessionsAction::Revoke { userid } => admin::revoke(&config, &userid).await,
        }
    });
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e @ AdminError::NeedsRedis) => {
            eprintln!("dingtalk-auth-proxy: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("dingtalk-auth-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> ExitCode {
    dingtalk_auth_proxy::init_logging(config.log_format);
    // Thread per core (see `workers`): this thread serves one listener and runs the signal
    // handling and background tasks; one more thread per further core serves its own.
    let threads = dingtalk_auth_proxy::workers::default_threads();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dingtalk-auth-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        raise_file_limit();
        let mode = match &config.upstream {
            Some(u) => format!("reverse proxy to {u}"),
            None => "auth-only (verify endpoint for nginx auth_request)".to_string(),
        };
        let started = dingtalk_auth_proxy::start_threads(config, threads).await;
        let running = match started {
            Ok(r) => r,
            Err(e) => {
                eprintln!("dingtalk-auth-proxy: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(addr = %running.addr, mode = %mode, threads, "listening");
        if let Some(admin) = running.admin_addr {
            tracing::info!(addr = %admin, "admin listening (/metrics /healthz /readyz)");
        }
        shutdown_signal().await;
        tracing::info!("shutting down");
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// Raises the soft limit on open files to the hard one, as nginx (`worker_rlimit_nofile`) and
/// Go programs do: every connection is a file, and a soft limit of 1024 (systemd's default)
/// lets one slow client hold them all.
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// Ctrl-C, or SIGTERM (Kubernetes sends this to start a graceful shutdown).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
