//! `quarantine searches`: the poison searches under way, as a sidecar's admin API reports
//! them (`GET /quarantine/searches`), as a table or JSON.

use std::process::ExitCode;

use clap::Args;
use hyper::Method;

use super::admin::{call, run_blocking, AdminArgs, AdminError};
use crate::watch::searches::SearchView;

/// `quarantine searches`.
#[derive(Debug, Args)]
pub struct SearchesArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `quarantine searches`.
pub fn run_cli(args: SearchesArgs) -> ExitCode {
    run_blocking("quarantine searches", run(args))
}

async fn run(args: SearchesArgs) -> Result<String, AdminError> {
    let body = call(&args.admin, Method::GET, "/quarantine/searches").await?;
    let rows: Vec<SearchView> = serde_json::from_str(&body).map_err(|e| AdminError::Status {
        url: "/quarantine/searches".into(),
        status: 200,
        body: format!("not a list of searches: {e}"),
    })?;
    if args.json {
        return Ok(serde_json::to_string_pretty(&rows).unwrap_or_default());
    }
    Ok(table(&rows).trim_end().to_string())
}

/// The searches as a table for a terminal.
fn table(rows: &[SearchView]) -> String {
    if rows.is_empty() {
        return "no poison search under way\n".to_string();
    }
    let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let mut lines = vec![[
        "GROUP",
        "TOPIC",
        "PART",
        "PHASE",
        "COMMITTED",
        "SUSPECTS",
        "WINDOW",
        "FAILURES",
        "CANDIDATE",
        "PROBING",
        "HOLDER",
    ]
    .map(String::from)
    .to_vec()];
    for r in rows {
        let suspects = match (r.good_to, r.range_end) {
            (Some(g), Some(e)) => format!("{}..={e}", g.saturating_add(1)),
            _ => "-".to_string(),
        };
        let candidate = match (r.diverting, r.candidate) {
            (Some(d), _) => format!("{d} (diverting)"),
            (None, Some(c)) => format!("{c} ({} alone)", r.confirmations),
            _ => "-".to_string(),
        };
        lines.push(vec![
            r.group.clone(),
            r.topic.clone(),
            r.partition.to_string(),
            r.phase.clone(),
            opt(r.committed),
            suspects,
            opt(r.window_end),
            format!("{} ({} open)", r.failures, r.open_failures),
            candidate,
            if r.probing { "yes" } else { "no" }.to_string(),
            r.holder.clone(),
        ]);
    }
    super::admin::columns(&lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_the_search() {
        let row = SearchView {
            group: "orders-svc".into(),
            topic: "orders".into(),
            partition: 2,
            phase: "isolating".into(),
            committed: Some(180),
            open_failures: 3,
            good_to: Some(186),
            window_end: Some(187),
            range_end: Some(187),
            failures: 2,
            candidate: Some(187),
            confirmations: 0,
            diverting: None,
            probing: true,
            holder: "pod-1".into(),
        };
        let t = table(&[row]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(lines[0].starts_with("GROUP"));
        for cell in [
            "orders-svc",
            "isolating",
            "187..=187",
            "187 (0 alone)",
            "yes",
            "pod-1",
        ] {
            assert!(lines[1].contains(cell), "{cell} missing: {t}");
        }
        assert_eq!(table(&[]), "no poison search under way\n");
    }
}
