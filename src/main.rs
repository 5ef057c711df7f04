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
    Dlq(quarantine::dlq_tools::DlqArgs),
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
    /// Add the quarantine sidecar to Kubernetes workloads (YAML from files or stdin).
    Inject(quarantine::inject::InjectArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Dlq(args) => quarantine::dlq_tools::run_cli(args),
        Command::Searches { admin, token, json } => searches(&admin, token.as_deref(), json),
        Command::Guard(args) => quarantine::guard_cli::run_cli(args),
        Command::Inject(args) => quarantine::inject::run_cli(args),
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
                    quarantine::logging::stderr_line(&format!(
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
    quarantine::logging::stderr_line(&format!("quarantine: {e}"));
    ExitCode::from(EX_USAGE)
}

fn init_logging(config: &Config) {
    quarantine::logging::init(&config.log.format, &config.log.level);
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
            quarantine::logging::stderr_line(&format!("error: {e}"));
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
            quarantine::logging::stderr_line(&format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}
