//! `quarantine dlq discard` (mark records handled without replaying them) and
//! `quarantine dlq tasks` (the replay tasks a ledger knows).

use clap::Args;
use serde_json::json;

use super::clock::format_ms;
use super::ledger::{self, Entry, Ledger};
use super::out::Out;
use super::scan::Scan;
use super::{Scope, ToolError};
use crate::cluster::Cluster;

/// Options of `quarantine dlq discard`.
#[derive(Debug, Clone, Args)]
pub struct DiscardOptions {
    /// Why, recorded in the ledger and shown by inspect.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Discard every open record of the DLQ (without it, some scope flag is required).
    #[arg(long)]
    pub all: bool,
    /// Count what would be discarded; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The ledger topic (default: `<dlq>.ledger`).
    #[arg(long, value_name = "TOPIC")]
    pub ledger: Option<String>,
    /// Who discards, for the ledger (default: $USER@$HOSTNAME).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

/// Marks the open records of `dlq` in `scope` as discarded; returns the exit code.
pub async fn discard(
    cluster: &Cluster,
    dlq: &str,
    scope: &Scope,
    options: &DiscardOptions,
    out: &mut Out,
) -> Result<u8, ToolError> {
    scope.validate().map_err(ToolError::Usage)?;
    if !scope.narrowed() && !options.all {
        return Err(ToolError::Usage(
            "discard needs a scope (--group, --origin-partition, --from-offset, --key, ...) or --all".into(),
        ));
    }
    let ledger_topic = options
        .ledger
        .clone()
        .unwrap_or_else(|| ledger::ledger_topic(dlq));
    let book = Ledger::read(cluster, &ledger_topic).await?;
    let mut scan = Scan::open(cluster, dlq, scope, None, None, true).await?;
    let id = ledger::new_id("discard");
    let by = ledger::who(options.by.as_deref());
    if !options.dry_run {
        ledger::ensure_topic(cluster, &ledger_topic).await?;
    }
    let (mut discarded, mut handled) = (0u64, 0u64);
    loop {
        let chunk = scan
            .next(cluster, |e| {
                let open = book.lookup(e.partition, e.record.offset).is_none();
                let selected = scope.matches(e) && open;
                (selected, selected)
            })
            .await?;
        let Some(chunk) = chunk else { break };
        let mut offsets = Vec::new();
        for (e, selected) in &chunk.items {
            if *selected {
                offsets.push(e.record.offset);
            } else if scope.matches(e) {
                handled += 1;
            }
        }
        discarded += offsets.len() as u64;
        if !options.dry_run && !offsets.is_empty() {
            let entry = Entry::Discard {
                id: id.clone(),
                by: by.clone(),
                at: ledger::now_ms(),
                note: options.note.clone(),
                partition: chunk.partition,
                ranges: ledger::to_ranges(&offsets),
            };
            ledger::append(cluster, &ledger_topic, &id, &entry).await?;
        }
    }
    let verb = if options.dry_run {
        "would discard"
    } else {
        "discarded"
    };
    if options.json {
        out.line(
            &json!({"id": (!options.dry_run).then_some(&id), "dlq": dlq, "dry_run": options.dry_run,
                    "discarded": discarded, "already_handled": handled, "looked_at": scan.looked_at})
            .to_string(),
        )?;
    } else {
        out.line(&format!(
            "{verb} {discarded} record(s) of {dlq}; {handled} in scope were already replayed or discarded"
        ))?;
        if !options.dry_run && discarded > 0 {
            out.line(&format!("recorded in {ledger_topic} as {id}"))?;
        }
    }
    out.flush()?;
    Ok(0)
}

/// Prints the tasks of a ledger.
pub fn tasks(book: &Ledger, dlq: &str, json: bool, out: &mut Out) -> Result<(), ToolError> {
    if json {
        for (id, t) in &book.tasks {
            let Some(ledger::TaskStart {
                scope,
                max_replays: max,
                to,
                ends,
            }) = &t.start
            else {
                continue;
            };
            out.line(
                &json!({"task": id, "dlq": dlq, "by": t.by, "started": t.started,
                        "state": t.state.as_deref().unwrap_or("running"),
                        "replayed": t.replayed, "cursors": t.cursors, "ends": ends,
                        "scope": scope, "max_replays": max, "to": to,
                        "in_doubt": t.pending.is_some()})
                .to_string(),
            )?;
        }
        return Ok(());
    }
    if book.tasks.is_empty() {
        return out.line(&format!("no replay task recorded for {dlq}"));
    }
    out.line(&format!(
        "{:<32} {:<12} {:>9}  {:<24} {:<20} POSITION",
        "TASK", "STATE", "REPLAYED", "STARTED", "BY"
    ))?;
    for (id, t) in &book.tasks {
        let Some(start) = &t.start else {
            continue;
        };
        let ends = &start.ends;
        let position: Vec<String> = ends
            .iter()
            .map(|(p, e)| {
                let at = t.cursors.get(p).copied().unwrap_or(0);
                format!("{p}:{}/{e}", at.min(*e))
            })
            .collect();
        let state = match (&t.state, &t.pending) {
            (_, Some(_)) => "in-doubt",
            (Some(s), None) => s.as_str(),
            (None, None) => "running",
        };
        out.line(&format!(
            "{id:<32} {state:<12} {:>9}  {:<24} {:<20} {}",
            t.replayed,
            format_ms(t.started),
            t.by,
            position.join(" ")
        ))?;
    }
    Ok(())
}
