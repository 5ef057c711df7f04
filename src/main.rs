//! The `quarantine` binary: command line, logging, and the process edge (exit codes,
//! signals). Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quarantine::config::{Config, ConfigError};

/// Exit code for a bad configuration or command line (`EX_USAGE`).
const EX_USAGE: u8 = 64;

/// A Kafka sidecar proxy that finds poison records on the wire, writes them to a
/// dead-letter topic and hides them from the consumer group that cannot process them.
#[derive(Parser)]
#[command(name = "quarantine", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        /// YAML config file; without it, defaults plus QUARANTINE__* variables.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Bootstrap listener address (overrides proxy.listen).
        #[arg(long)]
        listen: Option<String>,
        /// Upstream bootstrap servers, comma-separated (overrides upstream.bootstrap_servers).
        #[arg(long)]
        upstream: Option<String>,
        /// Admin HTTP address (overrides admin.listen).
        #[arg(long)]
        admin_listen: Option<String>,
        /// Log format, text or json (overrides log.format).
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Validate a config file and exit: 0 when valid, 64 with the offending key otherwise.
    CheckConfig {
        /// YAML config file.
        file: PathBuf,
    },
    /// Inspect, replay and count dead-letter topics (talks to the cluster directly).
    Dlq(Box<quarantine::cli::dlq::DlqArgs>),
    /// Show the poison searches under way, as a sidecar's admin API reports them.
    Searches(quarantine::cli::searches::SearchesArgs),
    /// Show or re-arm the deploy guards of a running proxy (through its admin API).
    Guard(quarantine::cli::guard::GuardArgs),
    /// Add the quarantine sidecar to Kubernetes workloads (YAML from files or stdin).
    Inject(quarantine::cli::inject::InjectArgs),
    /// List, release or add the quarantine decisions of a running proxy (its admin API).
    State(quarantine::cli::state::StateArgs),
}

fn main() -> ExitCode {
    // A bad command line exits 64 (EX_USAGE) like a bad config, naming the flag; --help
    // and --version print and exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return if usage {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Dlq(args) => quarantine::cli::dlq::run_cli(*args),
        Command::Searches(args) => quarantine::cli::searches::run_cli(args),
        Command::Guard(args) => quarantine::cli::guard::run_cli(args),
        Command::Inject(args) => quarantine::cli::inject::run_cli(args),
        Command::State(args) => quarantine::cli::state::run_cli(args),
        Command::CheckConfig { file } => match Config::load(Some(&file), std::env::vars()) {
            Ok(_) => {
                use std::io::Write;
                // A closed stdout (`| head -0`) must not turn a valid config into a panic.
                let _ = writeln!(std::io::stdout(), "{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => config_error(e),
        },
        Command::Run {
            config,
            listen,
            upstream,
            admin_listen,
            log_format,
        } => {
            let flags: Vec<(&str, &str, String)> = [
                ("--listen", "proxy.listen", listen),
                ("--upstream", "upstream.bootstrap_servers", upstream),
                ("--admin-listen", "admin.listen", admin_listen),
                ("--log-format", "log.format", log_format),
            ]
            .into_iter()
            .filter_map(|(flag, key, value)| value.map(|v| (flag, key, v)))
            .collect();
            let config = match Config::load_with_flags(config.as_deref(), std::env::vars(), flags) {
                Ok(c) => c,
                Err(e) => return config_error(e),
            };
            init_logging(&config);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    quarantine::ops::logging::stderr_line(&format!(
                        "quarantine: cannot start the runtime: {e}"
                    ));
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(run(config))
        }
    }
}

fn config_error(e: ConfigError) -> ExitCode {
    quarantine::ops::logging::stderr_line(&format!("quarantine: {e}"));
    ExitCode::from(EX_USAGE)
}

fn init_logging(config: &Config) {
    quarantine::ops::logging::init(&config.log.format, &config.log.level);
}

async fn run(config: Config) -> ExitCode {
    // Listen for signals before any port opens, so a SIGTERM right after start is a clean
    // shutdown too.
    let signals = Signals::install();
    match quarantine::app::start(config).await {
        Ok(app) => {
            let shutdown = app.proxy.shutdown.clone();
            tokio::spawn(async move {
                signals.wait().await;
                tracing::info!("shutting down: no new connections, draining in-flight requests");
                shutdown.cancel();
            });
            app.wait().await;
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(quarantine::app::StartError::Config(e)) => config_error(e),
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM and SIGINT handlers.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn wait(mut self) {
        match (&mut self.term, &mut self.int) {
            (Some(term), Some(int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
}
