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
    Dlq(Box<quarantine::dlq_tools::DlqArgs>),
    /// Show the poison searches under way, as a sidecar's admin API reports them.
    Searches {
        /// The sidecar's admin address.
        #[arg(long, default_value = "http://127.0.0.1:9644")]
        admin: String,
        /// The admin token, when one is configured.
        #[arg(long, env = "QUARANTINE_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show or re-arm the deploy guards of a running proxy (through its admin API).
    Guard(quarantine::guard_cli::GuardArgs),
    /// List, release or add the quarantine decisions of a running proxy (its admin API).
    State(quarantine::state_cli::StateArgs),
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
        Command::Dlq(args) => quarantine::dlq_tools::run_cli(*args),
        Command::Searches { admin, token, json } => searches(&admin, token.as_deref(), json),
        Command::Guard(args) => quarantine::guard_cli::run_cli(args),
        Command::State(args) => quarantine::state_cli::run_cli(args),
        Command::CheckConfig { file } => match Config::load(Some(&file), std::env::vars()) {
            Ok(_) => {
                println!("{}: ok", file.display());
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
            let mut env: Vec<(String, String)> = std::env::vars().collect();
            for (key, value) in [
                ("PROXY__LISTEN", listen),
                ("UPSTREAM__BOOTSTRAP_SERVERS", upstream),
                ("ADMIN__LISTEN", admin_listen),
                ("LOG__FORMAT", log_format),
            ] {
                if let Some(v) = value {
                    env.push((format!("{}{key}", quarantine::config::ENV_PREFIX), v));
                }
            }
            let config = match Config::load(config.as_deref(), env) {
                Ok(c) => c,
                Err(e) => return config_error(e),
            };
            init_logging(&config);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("quarantine: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(run(config))
        }
    }
}

fn config_error(e: ConfigError) -> ExitCode {
    eprintln!("quarantine: {e}");
    ExitCode::from(EX_USAGE)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUARANTINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
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

/// `quarantine searches`: the searches under way, as a table or JSON.
fn searches(admin: &str, token: Option<&str>, json: bool) -> ExitCode {
    use quarantine::watch::searches;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(searches::fetch(admin, token)) {
        Ok(rows) => {
            let text = if json {
                serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n"
            } else {
                searches::table(&rows)
            };
            use std::io::Write;
            // A closed pipe (`| head`) ends the output quietly.
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
