//! `quarantine dlq ...`: operator tools for dead-letter topics, talking to the cluster
//! directly (not through a proxy). `inspect` shows records with their status, origin and
//! reason, `stats` counts them by status, reason, origin and group, `replay` writes them
//! back to their origin partition as a resumable task checkpointed in the DLQ's ledger
//! ([`ledger`]), `discard` marks them handled, `tasks` lists replay tasks. Every tool
//! streams the DLQ ([`Scan`]) and selects with the same [`Scope`].
//!
//! The functions here are the library side, usable from tests; [`run_cli`] is the
//! command-line edge.

mod clock;
mod discard;
pub mod ledger;
mod out;
mod redrive;
mod release;
mod scan;
mod scope;
mod show;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::cluster::{Cluster, ClusterError};
use crate::config::{split_host_port, Config, ConfigError};
use crate::dead_letter::DeadLetterInfo;
use crate::protocol::record::Record;

pub use discard::DiscardOptions;
pub use out::{Out, ProgressMode};
pub use redrive::{replay, ReplayOptions, ReplayReport, Stop};
pub use scan::Scan;
pub use scope::Scope;
pub use show::{entry_json, entry_text, format_ms, stats, Stats};

/// Exit code for a bad command line or config (`EX_USAGE`).
const EX_USAGE: u8 = 64;

/// Why a DLQ tool failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Talking to the cluster failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The config file is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The command line does not make sense.
    #[error("{0}")]
    Usage(String),
    /// The work was only partly done.
    #[error("{0}")]
    Failed(String),
    /// Whoever read the output went away (`| head`): end quietly.
    #[error("output closed")]
    Closed,
}

/// How to reach the cluster.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Bootstrap servers of the cluster, HOST:PORT[,HOST:PORT...]. TLS and SASL come from
    /// QUARANTINE__UPSTREAM__* variables (e.g. QUARANTINE__UPSTREAM__SASL__MECHANISM).
    #[arg(long, value_name = "HOST:PORT", global = true)]
    pub bootstrap: Option<String>,
    /// The proxy's YAML config file; its `upstream` section says how to reach the cluster.
    #[arg(long, short, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

/// Lifecycle statuses `--status` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Status {
    /// Neither replayed nor discarded.
    Open,
    /// Written back by a replay task.
    Replayed,
    /// Marked handled by `dlq discard`.
    Discarded,
}

impl Status {
    fn of(mark: Option<&ledger::Mark>) -> Status {
        match mark.map(ledger::Mark::status) {
            Some("replayed") => Status::Replayed,
            Some(_) => Status::Discarded,
            None => Status::Open,
        }
    }
}

/// `quarantine dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Print each DLQ record's status, origin, reason, counts and headers (payloads
    /// hidden unless asked for).
    Inspect {
        /// The DLQ topic.
        topic: String,
        #[command(flatten)]
        scope: Scope,
        /// Only records in this lifecycle status.
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// One JSON object per line instead of text (values as JSON when they are JSON,
        /// base64 otherwise; nothing cut).
        #[arg(long)]
        json: bool,
        /// Also print keys and values.
        #[arg(long)]
        show_payload: bool,
        /// The ledger topic (default: `<dlq>.ledger`).
        #[arg(long, value_name = "TOPIC")]
        ledger: Option<String>,
    },
    /// Write DLQ records back to their origin topic and partition, as a resumable task
    /// checkpointed in the DLQ's ledger: no record is ever written twice.
    Replay {
        /// The DLQ topic.
        topic: String,
        #[command(flatten)]
        scope: Scope,
        #[command(flatten)]
        options: ReplayOptions,
    },
    /// Count DLQ records by status, reason, origin partition and group.
    Stats {
        /// The DLQ topic.
        topic: String,
        #[command(flatten)]
        scope: Scope,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The ledger topic (default: `<dlq>.ledger`).
        #[arg(long, value_name = "TOPIC")]
        ledger: Option<String>,
    },
    /// Mark DLQ records handled without replaying them (recorded in the ledger).
    Discard {
        /// The DLQ topic.
        topic: String,
        #[command(flatten)]
        scope: Scope,
        #[command(flatten)]
        options: DiscardOptions,
    },
    /// List the replay tasks of a DLQ topic and how far each got.
    Tasks {
        /// The DLQ topic.
        topic: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The ledger topic (default: `<dlq>.ledger`).
        #[arg(long, value_name = "TOPIC")]
        ledger: Option<String>,
    },
}

/// One record of a DLQ topic with what its headers say.
#[derive(Debug, Clone)]
pub struct DlqEntry {
    /// DLQ partition it was read from.
    pub partition: i32,
    /// The record (its offset is the DLQ offset).
    pub record: Record,
    /// Origin and diagnosis, when the headers name one.
    pub info: Option<DeadLetterInfo>,
}

/// Builds the cluster client from `--bootstrap` or `--config`. Either way the
/// `QUARANTINE__UPSTREAM__*` variables apply, so `upstream.tls` and `upstream.sasl` can be
/// given without a file.
pub fn connect(args: &ClusterArgs) -> Result<Cluster, ToolError> {
    match (&args.bootstrap, &args.config) {
        (Some(_), Some(_)) => Err(ToolError::Usage(
            "give either --bootstrap or --config, not both".into(),
        )),
        (None, None) => Err(ToolError::Usage(
            "give --bootstrap HOST:PORT or --config FILE to reach the cluster".into(),
        )),
        (Some(list), None) => {
            let mut servers = Vec::new();
            for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                servers.push(split_host_port(s).ok_or_else(|| {
                    ToolError::Usage(format!("--bootstrap: `{s}` is not HOST:PORT"))
                })?);
            }
            if servers.is_empty() {
                return Err(ToolError::Usage("--bootstrap is empty".into()));
            }
            // Defaults plus QUARANTINE__* variables (TLS, SASL), as the proxy would read them.
            let mut config = Config::load(None, std::env::vars())?;
            config.upstream.bootstrap_servers = servers
                .iter()
                .map(|(host, port)| format!("{host}:{port}"))
                .collect();
            Ok(Cluster::from_config(&config.upstream, "quarantine-dlq")?)
        }
        (None, Some(file)) => {
            let config = Config::load(Some(file), std::env::vars())?;
            Ok(Cluster::from_config(&config.upstream, "quarantine-dlq")?)
        }
    }
}

/// Reads the records of a DLQ topic that `scope` selects into memory, partitions taking
/// turns. For tests and small reads: the commands stream with [`Scan`].
pub async fn read_dlq(
    cluster: &Cluster,
    topic: &str,
    scope: &Scope,
) -> Result<Vec<DlqEntry>, ToolError> {
    scope.validate().map_err(ToolError::Usage)?;
    let mut scan = Scan::open(cluster, topic, scope, None, None, false).await?;
    let mut out = Vec::new();
    while let Some(chunk) = scan.next(cluster, |e| ((), scope.matches(e))).await? {
        out.extend(
            chunk
                .items
                .into_iter()
                .map(|(e, ())| e)
                .filter(|e| scope.matches(e)),
        );
    }
    Ok(out)
}

/// Runs `quarantine dlq ...` and returns the process exit code.
pub fn run_cli(args: DlqArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUARANTINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quarantine dlq: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(ToolError::Closed) => ExitCode::SUCCESS,
        Err(e @ (ToolError::Usage(_) | ToolError::Config(_))) => {
            eprintln!("quarantine dlq: {e}");
            ExitCode::from(EX_USAGE)
        }
        Err(e) => {
            eprintln!("quarantine dlq: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: DlqArgs) -> Result<u8, ToolError> {
    let cluster = connect(&args.cluster)?;
    let mut out = Out::default();
    let ledger_of =
        |topic: &str, l: &Option<String>| l.clone().unwrap_or_else(|| ledger::ledger_topic(topic));
    match args.command {
        DlqCommand::Inspect {
            topic,
            scope,
            status,
            json,
            show_payload,
            ledger,
        } => {
            scope.validate().map_err(ToolError::Usage)?;
            let book = ledger::Ledger::read(&cluster, &ledger_of(&topic, &ledger)).await?;
            let mut scan = Scan::open(&cluster, &topic, &scope, None, None, false).await?;
            let mut shown = 0u64;
            let selects = |e: &DlqEntry| {
                let mark = book.lookup(e.partition, e.record.offset);
                scope.matches(e) && status.is_none_or(|s| s == Status::of(mark))
            };
            while let Some(chunk) = scan.next(&cluster, |e| ((), selects(e))).await? {
                for (e, ()) in &chunk.items {
                    if !selects(e) {
                        continue;
                    }
                    shown += 1;
                    let mark = book.lookup(e.partition, e.record.offset);
                    if json {
                        out.line(&entry_json(&topic, e, show_payload, mark).to_string())?;
                    } else {
                        out.line(&entry_text(&topic, e, show_payload, mark))?;
                    }
                }
            }
            if !json {
                out.line(&format!("{shown} record(s)"))?;
            }
            out.flush()?;
            Ok(0)
        }
        DlqCommand::Replay {
            topic,
            scope,
            options,
        } => {
            let stop = Stop::on_signals();
            let mut report = replay(&cluster, &topic, &scope, &options, &mut out, &stop).await?;
            if options.release && report.state == "done" {
                let admin = crate::cli::admin::AdminArgs {
                    admin: options.admin.clone(),
                    token: std::env::var("QUARANTINE__ADMIN__TOKEN").ok(),
                    config: args.cluster.config.clone(),
                };
                let book = ledger::Ledger::read(&cluster, &report.ledger).await?;
                report.released =
                    Some(release::release_replayed(&admin, &cluster, &topic, &book).await?);
            }
            if options.json {
                out.line(&report.to_json().to_string())?;
            } else {
                out.text(&report.render())?;
            }
            out.flush()?;
            Ok(report.exit_code())
        }
        DlqCommand::Stats {
            topic,
            scope,
            json,
            ledger,
        } => {
            scope.validate().map_err(ToolError::Usage)?;
            let book = ledger::Ledger::read(&cluster, &ledger_of(&topic, &ledger)).await?;
            let mut scan = Scan::open(&cluster, &topic, &scope, None, None, false).await?;
            let mut s = Stats::default();
            let mut seen = 0u64;
            while let Some(chunk) = scan.next(&cluster, |e| ((), scope.matches(e))).await? {
                for (e, ()) in &chunk.items {
                    seen += 1;
                    if scope.matches(e) {
                        s.add(e, book.lookup(e.partition, e.record.offset));
                    }
                }
            }
            if seen > 0 && s.no_origin as u64 == seen {
                return Err(ToolError::Failed(format!(
                    "{topic} is not a dead-letter topic: none of the {seen} record(s) read carries dead-letter headers"
                )));
            }
            if json {
                out.line(&s.to_json().to_string())?;
            } else {
                out.text(&s.render(&topic))?;
            }
            out.flush()?;
            Ok(0)
        }
        DlqCommand::Discard {
            topic,
            scope,
            options,
        } => discard::discard(&cluster, &topic, &scope, &options, &mut out).await,
        DlqCommand::Tasks {
            topic,
            json,
            ledger,
        } => {
            let ledger_topic = ledger_of(&topic, &ledger);
            let book = ledger::Ledger::read(&cluster, &ledger_topic).await?;
            discard::tasks(&book, &topic, json, &mut out)?;
            out.flush()?;
            Ok(0)
        }
    }
}
