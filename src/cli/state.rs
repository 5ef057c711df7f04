//! `quarantine state list|release|quarantine`: the live quarantine decisions of a running
//! proxy, through its admin API (`GET /quarantine`, `DELETE /quarantine/{group}/{topic}/
//! {partition}/{offset}`, `POST /quarantine`), with the admin token, as tables or JSON.
//! The address and token are found as for `quarantine guard` (`--admin`, `--token` or
//! `QUARANTINE__ADMIN__TOKEN`, or the proxy's `--config`).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use super::admin::AdminArgs;

use super::admin::EX_USAGE;

/// `quarantine state`.
#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(subcommand)]
    command: StateCommand,
}

/// One record of one group.
#[derive(Debug, Clone, Args)]
pub struct RecordRef {
    /// The consumer group.
    #[arg(long)]
    pub group: String,
    /// The source topic.
    #[arg(long)]
    pub topic: String,
    /// The source partition.
    #[arg(long)]
    pub partition: i32,
    /// The source offset.
    #[arg(long)]
    pub offset: i64,
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// The records hidden from their groups, with reason and DLQ copy.
    List {
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
        /// Only this source topic.
        #[arg(long)]
        topic: Option<String>,
        /// JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Stop hiding a record from its group (it is delivered again if the group reads it).
    Release {
        #[command(flatten)]
        record: RecordRef,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Quarantine a record by hand: copy it to the DLQ and hide it from the group.
    Quarantine {
        #[command(flatten)]
        record: RecordRef,
        /// Why, in your words (goes into the DLQ headers).
        #[arg(long)]
        reason: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Why a state command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

impl From<super::admin::AdminError> for StateError {
    fn from(e: super::admin::AdminError) -> Self {
        use super::admin::AdminError as G;
        match e {
            G::Usage(_) | G::Config(_) => StateError::Usage(e.to_string()),
            other => StateError::Failed(other.to_string()),
        }
    }
}

/// Runs `quarantine state ...`.
pub fn run_cli(args: StateArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            crate::ops::logging::stderr_line(&format!(
                "quarantine state: cannot start the runtime: {e}"
            ));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(text) => {
            use std::io::Write;
            // A closed pipe (`| head`) ends the output quietly.
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e @ StateError::Usage(_)) => {
            crate::ops::logging::stderr_line(&format!("quarantine state: {e}"));
            ExitCode::from(EX_USAGE)
        }
        Err(e) => {
            crate::ops::logging::stderr_line(&format!("quarantine state: {e}"));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: StateArgs) -> Result<String, StateError> {
    match args.command {
        StateCommand::List {
            group,
            topic,
            json,
            admin,
        } => {
            let body = call(&admin, Method::GET, "/quarantine", None).await?;
            let rows: Vec<Value> = serde_json::from_str(&body)
                .map_err(|e| StateError::Failed(format!("admin API answered no list: {e}")))?;
            let rows: Vec<Value> = rows
                .into_iter()
                .filter(|r| group.as_ref().is_none_or(|g| r["group"] == json!(g)))
                .filter(|r| topic.as_ref().is_none_or(|t| r["topic"] == json!(t)))
                .collect();
            Ok(if json {
                serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n"
            } else {
                table(&rows)
            })
        }
        StateCommand::Release {
            record,
            json,
            admin,
        } => {
            check(&record)?;
            let path = format!(
                "/quarantine/{}/{}/{}/{}",
                super::admin::percent_encode(&record.group),
                super::admin::percent_encode(&record.topic),
                record.partition,
                record.offset
            );
            let body = call(&admin, Method::DELETE, &path, None).await?;
            let v: Value = serde_json::from_str(&body).unwrap_or(json!({"answer": body}));
            Ok(if json {
                format!("{v}\n")
            } else if v["released"] == json!(true) {
                format!(
                    "released {}[{}]@{} for group {}\n",
                    record.topic, record.partition, record.offset, record.group
                )
            } else {
                format!(
                    "{}[{}]@{} was not quarantined for group {}: nothing to release\n",
                    record.topic, record.partition, record.offset, record.group
                )
            })
        }
        StateCommand::Quarantine {
            record,
            reason,
            json,
            admin,
        } => {
            check(&record)?;
            let body = json!({
                "group": record.group, "topic": record.topic,
                "partition": record.partition, "offset": record.offset, "reason": reason,
            });
            let answer = call(&admin, Method::POST, "/quarantine", Some(body)).await?;
            let v: Value = serde_json::from_str(&answer).unwrap_or(json!({"answer": answer}));
            Ok(if json {
                format!("{v}\n")
            } else {
                let dlq = match &v["dlq"] {
                    Value::Array(a) if a.len() == 3 => format!(
                        ", copied to {}[{}]@{}",
                        a[0].as_str().unwrap_or("?"),
                        a[1],
                        a[2]
                    ),
                    _ => String::new(),
                };
                format!(
                    "quarantined {}[{}]@{} for group {}{dlq}\n",
                    record.topic, record.partition, record.offset, record.group
                )
            })
        }
    }
}

fn check(r: &RecordRef) -> Result<(), StateError> {
    if r.group.is_empty() || r.topic.is_empty() {
        return Err(StateError::Usage(
            "--group and --topic must not be empty".into(),
        ));
    }
    if r.partition < 0 {
        return Err(StateError::Usage("--partition must be 0 or more".into()));
    }
    if r.offset < 0 {
        return Err(StateError::Usage("--offset must be 0 or more".into()));
    }
    Ok(())
}

/// The list as a table.
fn table(rows: &[Value]) -> String {
    if rows.is_empty() {
        return "no record is quarantined\n".into();
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut lines = vec![[
        "GROUP", "TOPIC", "PART", "OFFSET", "REASON", "DLQ", "WHEN", "BY",
    ]
    .map(String::from)
    .to_vec()];
    for r in rows {
        let dlq = match &r["dlq"] {
            Value::Array(a) if a.len() == 3 => format!("{}[{}]@{}", text(&a[0]), a[1], a[2]),
            _ => "-".into(),
        };
        let when = r["at_ms"]
            .as_i64()
            .map_or("-".into(), crate::cli::dlq::format_ms);
        lines.push(vec![
            text(&r["group"]),
            text(&r["topic"]),
            text(&r["partition"]),
            text(&r["offset"]),
            text(&r["reason"]),
            dlq,
            when,
            text(&r["instance"]),
        ]);
    }
    super::admin::columns(&lines)
}

/// One admin API call with an optional JSON body; returns the answer's text.
pub(crate) async fn call(
    admin: &AdminArgs,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<String, StateError> {
    Ok(super::admin::call_with(admin, method, path, body).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_every_decision() {
        let rows = vec![json!({
            "group": "billing", "topic": "orders", "partition": 2, "offset": 17,
            "reason": "crash-loop", "dlq": ["orders.dlq", 2, 5], "deliveries": 4,
            "at_ms": 1_700_000_000_123_i64, "instance": "pod-a",
        })];
        let t = table(&rows);
        assert!(t.starts_with("GROUP"), "{t}");
        assert!(t.contains("orders.dlq[2]@5"), "{t}");
        assert!(t.contains("2023-11-14T22:13:20.123Z"), "{t}");
        assert_eq!(table(&[]), "no record is quarantined\n");
    }
}
