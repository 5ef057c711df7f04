//! `quarantine dlq ...`: operator tools for dead-letter topics, talking to the cluster
//! directly (not through a proxy). `inspect` shows records with their origin and reason,
//! `replay` writes them back to their origin partition with a loop guard, `stats` counts
//! them by reason, origin and group.
//!
//! The functions here are the library side, usable from tests; [`run_cli`] is the
//! command-line edge.

mod replay;
mod show;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::cluster::{Cluster, ClusterError, OffsetSpec};
use crate::config::{split_host_port, Config, ConfigError};
use crate::dead_letter::{parse_origin, DeadLetterInfo};
use crate::protocol::record::Record;

pub use replay::{replay, Outcome, ReplayAction, ReplayOptions, ReplayReport};
pub use show::{entry_json, entry_text, stats, Stats};

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

/// Which records of a DLQ topic to look at.
#[derive(Debug, Clone, Default, Args)]
pub struct Selection {
    /// Only this partition of the DLQ topic.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Start at this offset in every selected partition (default: the earliest).
    #[arg(long)]
    pub from_offset: Option<i64>,
    /// At most this many records in all.
    #[arg(long)]
    pub limit: Option<usize>,
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
    /// Print each DLQ record's origin, reason, counts and headers (payloads hidden).
    Inspect {
        /// The DLQ topic.
        topic: String,
        #[command(flatten)]
        selection: Selection,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        /// Also print keys and values.
        #[arg(long)]
        show_payload: bool,
    },
    /// Write DLQ records back to their origin topic and partition.
    Replay {
        /// The DLQ topic.
        topic: String,
        #[command(flatten)]
        selection: Selection,
        #[command(flatten)]
        options: ReplayOptions,
    },
    /// Count DLQ records by reason, origin partition and group.
    Stats {
        /// The DLQ topic.
        topic: String,
        #[command(flatten)]
        selection: Selection,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
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

/// Reads the selected records of a DLQ topic, partition by partition in offset order.
pub async fn read_dlq(
    cluster: &Cluster,
    topic: &str,
    selection: &Selection,
) -> Result<Vec<DlqEntry>, ToolError> {
    let md = cluster.metadata(&[topic]).await?;
    let count = md
        .partition_count(topic)
        .ok_or_else(|| ClusterError::UnknownTopic(topic.to_string()))?;
    let partitions: Vec<i32> = match selection.partition {
        Some(p) if (0..count).contains(&p) => vec![p],
        Some(p) => {
            return Err(ToolError::Usage(format!(
                "{topic} has {count} partitions; there is no partition {p}"
            )))
        }
        None => (0..count).collect(),
    };
    let mut left = selection.limit.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for partition in partitions {
        if left == 0 {
            break;
        }
        let earliest = cluster
            .list_offsets(topic, partition, OffsetSpec::Earliest)
            .await?;
        let from = selection.from_offset.unwrap_or(earliest).max(earliest);
        let records = match cluster.read(topic, partition, from, left).await {
            Err(ClusterError::OffsetOutOfRange { .. }) => Vec::new(),
            other => other?,
        };
        left -= records.len();
        out.extend(records.into_iter().map(|record| DlqEntry {
            partition,
            info: parse_origin(&record),
            record,
        }));
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
        Ok(()) => ExitCode::SUCCESS,
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

async fn run(args: DlqArgs) -> Result<(), ToolError> {
    let cluster = connect(&args.cluster)?;
    match args.command {
        DlqCommand::Inspect {
            topic,
            selection,
            json,
            show_payload,
        } => {
            let entries = read_dlq(&cluster, &topic, &selection).await?;
            for e in &entries {
                if json {
                    println!("{}", entry_json(&topic, e, show_payload));
                } else {
                    println!("{}", entry_text(&topic, e, show_payload));
                }
            }
            if !json {
                println!("{} record(s)", entries.len());
            }
        }
        DlqCommand::Replay {
            topic,
            selection,
            options,
        } => {
            let report = replay(&cluster, &topic, &selection, &options).await?;
            print!("{}", report.render(&topic, options.dry_run));
            if let Some(e) = report.write_error {
                return Err(ToolError::Failed(format!("replay incomplete: {e}")));
            }
        }
        DlqCommand::Stats {
            topic,
            selection,
            json,
        } => {
            let entries = read_dlq(&cluster, &topic, &selection).await?;
            let s = stats(&entries);
            if json {
                println!("{}", s.to_json());
            } else {
                print!("{}", s.render(&topic));
            }
        }
    }
    Ok(())
}
