//! `quarantine guard ...`: the deploy guards of a running proxy, through its admin API
//! (`GET /quarantine/guards`, `POST /quarantine/guards/{group}/rearm`). The address and
//! token come from `--admin` and `--token` (or `QUARANTINE__ADMIN__TOKEN`, the variable the
//! proxy itself reads), or from the proxy's config file (`--config`: `admin.listen`,
//! `admin.token`), so it works inside the sidecar with the sidecar's own config.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use hyper::Method;

use super::admin::{call, percent_encode, run_blocking, AdminArgs, AdminError};

/// `quarantine guard`.
#[derive(Debug, Args)]
pub struct GuardArgs {
    #[command(subcommand)]
    command: GuardCommand,
}

#[derive(Debug, Subcommand)]
enum GuardCommand {
    /// Show every group's deploy guard: tripped or not, why, what was diverted before the
    /// trip, and the command that replays it.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Re-arm a tripped guard: quarantine diverts poison records of the group again.
    Rearm {
        /// The consumer group.
        #[arg(long)]
        group: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Runs `quarantine guard ...`.
pub fn run_cli(args: GuardArgs) -> ExitCode {
    run_blocking("quarantine guard", run(args))
}

async fn run(args: GuardArgs) -> Result<String, AdminError> {
    match args.command {
        GuardCommand::Status { admin } => call(&admin, Method::GET, "/quarantine/guards").await,
        GuardCommand::Rearm { group, admin } => {
            if group.is_empty() {
                return Err(AdminError::Usage("--group must not be empty".into()));
            }
            let path = format!("/quarantine/guards/{}/rearm", percent_encode(&group));
            call(&admin, Method::POST, &path).await
        }
    }
}
