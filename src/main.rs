//! The `dingtalk-auth-proxy` binary: `run` (the default), `check-config`, `sessions`,
//! `doctor` and `init`. Thin: parses the arguments, calls into the library, maps the outcome
//! to an exit code.

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
    /// Check the DingTalk app's settings against DingTalk: a ✓/✗ checklist with the fix for
    /// each ✗; exit 0 when all pass, 1 when one fails, 2 for a bad config.
    Doctor {
        /// Also check every user API the logins need, for this userid of your organisation.
        #[arg(long)]
        userid: Option<String>,
    },
    /// Write a first config file: commented, mode 0600, with a new session secret.
    Init(InitArgs),
}

#[derive(clap::Args)]
struct InitArgs {
    /// Take the answers from the flags below instead of asking.
    #[arg(long)]
    non_interactive: bool,
    /// The app's Client ID (AppKey).
    #[arg(long)]
    app_key: Option<String>,
    /// The app's Client Secret (AppSecret).
    #[arg(long)]
    app_secret: Option<String>,
    /// The organisation's CorpId (ding…).
    #[arg(long)]
    corp_id: Option<String>,
    /// The origin users open, e.g. https://app.example.com.
    #[arg(long)]
    public_url: Option<String>,
    /// The app behind the proxy, e.g. http://127.0.0.1:3000 (unset: auth-only mode).
    #[arg(long)]
    upstream: Option<String>,
    /// The file to write (default: --config, else dingtalk-auth-proxy.toml).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,
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
    let config_file = cli.config;
    let load = || {
        Config::load(config_file.as_deref()).map_err(|e| {
            // One line per problem, every problem of this run, key first.
            for line in e.lines() {
                eprintln!("dingtalk-auth-proxy: invalid config: {line}");
            }
            ExitCode::from(2)
        })
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => match load() {
            Ok(config) => {
                print!("{}", config.redacted_toml());
                print!("{}", dingtalk_auth_proxy::route::table(&config));
                println!("# config ok");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run => match load() {
            Ok(config) => run(config, config_file),
            Err(code) => code,
        },
        Command::Sessions { action } => match load() {
            Ok(config) => sessions(config, action),
            Err(code) => code,
        },
        Command::Doctor { userid } => doctor(config_file.as_deref(), userid),
        Command::Init(args) => init(args, config_file),
    }
}

/// `doctor`: the checklist on stdout; exit 0 all passed, 1 a check failed, 2 a bad config.
fn doctor(config_file: Option<&std::path::Path>, userid: Option<String>) -> ExitCode {
    use dingtalk_auth_proxy::doctor;
    let config = match Config::load(config_file) {
        Ok(c) => c,
        Err(e) => {
            print!("{}", doctor::render(&doctor::config_invalid(&e.lines())));
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let checks = runtime.block_on(doctor::run(&config, &doctor::Options { userid }));
    print!("{}", doctor::render(&checks));
    ExitCode::from(doctor::exit_code(&checks))
}

/// `init`: asks (or takes the flags), writes the file, then suggests (or offers) `doctor`.
fn init(args: InitArgs, config_file: Option<PathBuf>) -> ExitCode {
    use dingtalk_auth_proxy::init::{self, InitError, Prompter};
    use std::io::IsTerminal;
    let fail = |e: InitError| {
        eprintln!("dingtalk-auth-proxy init: {e}");
        ExitCode::from(e.exit_code())
    };
    let output = match args.output.or(config_file) {
        Some(o) => o,
        None if args.non_interactive => {
            return fail(InitError::Invalid {
                key: "--output",
                message: "is required with --non-interactive: the file to write".into(),
            })
        }
        None => PathBuf::from("dingtalk-auth-proxy.toml"),
    };
    // Refused before any question is asked (`write` refuses again, atomically).
    if !args.force && output.exists() {
        return fail(InitError::Exists(output.display().to_string()));
    }
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    let mut prompter = Prompter::new(&mut input, &mut out, terminal);
    let answers = if args.non_interactive {
        init::Answers::from_flags(
            args.app_key.as_deref(),
            args.app_secret.as_deref(),
            args.corp_id.as_deref(),
            args.public_url.as_deref(),
            args.upstream.as_deref(),
        )
    } else {
        init::prompt_answers(&mut prompter)
    };
    let written = answers
        .and_then(|a| init::render(&a, &init::generate_secret()))
        .and_then(|text| init::write(&output, &text, args.force));
    if let Err(e) = written {
        return fail(e);
    }
    prompter.say(&init::written_message(&output));
    if !args.non_interactive && prompter.confirm("Run doctor now? [Y/n] ", true) {
        return doctor(Some(&output), None);
    }
    ExitCode::SUCCESS
}

/// `sessions list` / `sessions revoke`: straight to the store the config names.
fn sessions(config: Config, action: SessionsAction) -> ExitCode {
    use dingtalk_auth_proxy::admin::{self, AdminError};
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
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

fn run(config: Config, config_file: Option<PathBuf>) -> ExitCode {
    dingtalk_auth_proxy::init_logging(config.log_format);
    // Thread per core (see `workers`): this thread serves one listener and runs the signal
    // handling and background tasks; one more thread per further core serves its own.
    let threads = dingtalk_auth_proxy::workers::default_threads();
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        raise_file_limit();
        let mode = match (&config.upstream, config.routes.len()) {
            (_, n) if n > 0 => format!("reverse proxy, {n} route(s)"),
            (Some(u), _) => format!("reverse proxy to {u}"),
            (None, _) => "auth-only (verify endpoint for nginx auth_request)".to_string(),
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
        serve_until_shutdown(&running, config_file.as_deref()).await;
        tracing::info!("shutting down");
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// A single-threaded runtime (every command's; `run` adds its worker threads itself), or the
/// exit code after saying why there is none.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("dingtalk-auth-proxy: cannot start the runtime: {e}");
            ExitCode::FAILURE
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

/// Waits for the shutdown signal; meanwhile each SIGHUP reloads the config file and the
/// environment. A valid config serves new requests (requests and WebSockets already open
/// finish on the old one); an invalid one is refused, one line per problem, and the running
/// config keeps serving.
async fn serve_until_shutdown(
    running: &dingtalk_auth_proxy::Running,
    file: Option<&std::path::Path>,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reloading is off");
            return shutdown_signal().await;
        };
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = hup.recv() => reload(running, file),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        shutdown_signal().await;
    }
}

/// One reload: the file and environment read again, checked, and taken or refused.
fn reload(running: &dingtalk_auth_proxy::Running, file: Option<&std::path::Path>) {
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            for line in e.lines() {
                tracing::error!(
                    "reload refused, the running config keeps serving: invalid config: {line}"
                );
            }
            return;
        }
    };
    match running.app.reload(config) {
        Ok(ignored) => {
            for line in ignored {
                tracing::warn!("reload: {line}");
            }
            tracing::info!("config reloaded");
        }
        Err(e) => tracing::error!("reload refused, the running config keeps serving: {e}"),
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
