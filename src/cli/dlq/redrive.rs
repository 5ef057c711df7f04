//! `quarantine dlq replay`: a redrive task. It writes the selected DLQ records back to
//! their origin topic and partition (key, value, timestamp and headers, error headers
//! removed, `__quarantine.replay.count` one higher) and checkpoints every chunk in the
//! DLQ's ledger (see [`super::ledger`]), so that:
//! - re-running, resuming (`--resume TASK`) or running another task over the same records
//!   never writes a record twice;
//! - SIGINT/SIGTERM stop after the chunk under way, print where the task stopped and how
//!   to resume, and exit 130;
//! - a record is replayed at most `--max-replays` times in all: the count travels with the
//!   record through the source topic and back into the DLQ.
//!
//! The DLQ is read one fetch at a time, taking turns across partitions, so memory stays
//! flat; records of one DLQ partition are written in offset order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use indexmap::IndexMap;
use serde_json::{json, Value};

use super::ledger::{self, Entry, Handled, Ledger, TargetMark, Written};
use super::out::{Out, Progress, ProgressMode};
use super::scan::{Scan, CHUNK};
use super::{DlqEntry, Scope, ToolError};
use crate::cluster::Cluster;
use crate::dead_letter::{dlq_partition, replay_record};
use crate::protocol::record::{Header, Record};

/// Options of `quarantine dlq replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayOptions {
    /// Write to this topic instead of each record's origin topic.
    #[arg(long = "to", value_name = "TOPIC")]
    pub to: Option<String>,
    /// Say what would be replayed (a summary; add --list for each record); write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Refuse records already replayed this many times (a record that fails again after a
    /// replay comes back to the DLQ with its count).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub max_replays: u32,
    /// Write at most this many records per second.
    #[arg(long, value_name = "RECORDS_PER_SEC", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,
    /// Continue an interrupted task (its scope and options come from the ledger).
    #[arg(long, value_name = "TASK")]
    pub resume: Option<String>,
    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print one line per record looked at (one JSON object with --json).
    #[arg(long)]
    pub list: bool,
    /// Progress on stderr: a bar on a terminal, plain lines otherwise.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// The ledger topic (default: `<dlq>.ledger`).
    #[arg(long, value_name = "TOPIC")]
    pub ledger: Option<String>,
    /// Who runs it, for the ledger (default: $USER@$HOSTNAME).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// After the task is done, wait until each record's group has committed past the
    /// records replayed to it (exit 1 if it has not within --wait-timeout).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub wait_timeout: u64,
    /// After the task is done, release the quarantine entries of the replayed records whose
    /// group has committed past the original offset (through the proxy's admin API).
    #[arg(long)]
    pub release: bool,
    /// The proxy's admin API for --release (default: from --config, else
    /// http://127.0.0.1:9644); the token comes from QUARANTINE__ADMIN__TOKEN or the config.
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
}

/// What a record looked at is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Class {
    NoOrigin,
    Filtered,
    Replayed(String),
    Discarded,
    Refused(u32),
    Selected,
}

/// Per target partition: what went (or would go) there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSum {
    /// Records.
    pub count: u64,
    /// First DLQ record (partition, offset).
    pub first_dlq: (i32, i64),
    /// Last DLQ record.
    pub last_dlq: (i32, i64),
    /// First offset written (not in a dry run).
    pub first_offset: Option<i64>,
    /// Last offset written.
    pub last_offset: Option<i64>,
}

/// The result of a replay run.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Task id (none in a dry run).
    pub task: Option<String>,
    /// DLQ topic.
    pub dlq: String,
    /// Ledger topic.
    pub ledger: String,
    /// `done`, `interrupted`, `failed` or `dry-run`.
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Records looked at.
    pub looked_at: u64,
    /// Records written (or that would be).
    pub replayed: u64,
    /// Records skipped: replayed before.
    pub already_replayed: u64,
    /// Records skipped: discarded.
    pub discarded: u64,
    /// Records refused by `--max-replays`.
    pub refused: u64,
    /// Records left out by the filters.
    pub filtered: u64,
    /// The `--max-replays` in force.
    pub max_replays: u32,
    /// Records without dead-letter headers.
    pub no_origin: u64,
    /// Further copies of a dead letter replayed before (same group, origin and replay
    /// count: a DLQ write that timed out, was written again, and landed anyway).
    pub duplicates: u64,
    /// Per target partition.
    pub targets: BTreeMap<(String, i32), TargetSum>,
    /// Where each DLQ partition's read stopped.
    pub cursors: BTreeMap<i32, i64>,
    /// Records the ledger found written by an earlier interrupted run and marked.
    pub settled: u64,
    /// Seconds taken.
    pub seconds: f64,
    /// Per (group, topic, partition), the offset after the last record replayed there.
    pub group_ends: BTreeMap<(String, String, i32), i64>,
    /// With --wait: what is still not committed past when the wait ended (empty: all).
    pub wait_pending: Option<Vec<(String, String, i32, i64)>>,
    /// With --release: what was released.
    pub released: Option<super::release::Released>,
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl ReplayReport {
    /// The exit code this report calls for.
    pub fn exit_code(&self) -> u8 {
        if self.wait_pending.as_ref().is_some_and(|p| !p.is_empty()) {
            return 1;
        }
        match self.state.as_str() {
            "interrupted" => 130,
            "failed" => 1,
            _ => 0,
        }
    }

    /// The command that continues the task.
    pub fn resume_command(&self) -> Option<String> {
        let task = self.task.as_ref()?;
        (self.state != "done")
            .then(|| format!("quarantine dlq replay {} --resume {task}", self.dlq))
    }

    /// Readable report.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let dry = self.state == "dry-run";
        if let Some(t) = &self.task {
            let _ = writeln!(s, "task {t}: {} after {:.1} s", self.state, self.seconds);
        }
        let topics: std::collections::BTreeSet<&str> =
            self.targets.keys().map(|(t, _)| t.as_str()).collect();
        let _ = writeln!(
            s,
            "{} {} record(s) to {} partition(s) of {}",
            if dry { "would replay" } else { "replayed" },
            thousands(self.replayed),
            self.targets.len(),
            if topics.is_empty() {
                "-".to_string()
            } else {
                topics.into_iter().collect::<Vec<_>>().join(", ")
            }
        );
        for ((topic, p), t) in &self.targets {
            let _ = write!(
                s,
                "  {topic}[{p}]: {} record(s), DLQ {}[{}]@{} .. [{}]@{}",
                thousands(t.count),
                self.dlq,
                t.first_dlq.0,
                t.first_dlq.1,
                t.last_dlq.0,
                t.last_dlq.1
            );
            if let (Some(a), Some(b)) = (t.first_offset, t.last_offset) {
                let _ = write!(s, " -> offsets {a} .. {b}");
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "looked at {}; skipped {} already replayed, {} discarded, {} refused (--max-replays {}), {} filtered out, {} without dead-letter headers, {} duplicate copies",
            thousands(self.looked_at),
            self.already_replayed,
            self.discarded,
            self.refused,
            self.max_replays,
            self.filtered,
            self.no_origin,
            self.duplicates
        );
        if self.settled > 0 {
            let _ = writeln!(
                s,
                "settled {} record(s) an interrupted run had written before its checkpoint",
                self.settled
            );
        }
        if dry {
            s.push_str("dry run: nothing was written\n");
        }
        if self.state != "done" && !dry {
            let at: Vec<String> = self
                .cursors
                .iter()
                .map(|(p, o)| format!("partition {p} at offset {o}"))
                .collect();
            let _ = writeln!(s, "stopped at DLQ {}", at.join(", "));
        }
        match &self.wait_pending {
            Some(p) if p.is_empty() => {
                let _ = writeln!(
                    s,
                    "confirmed: every group has committed past the records replayed to it"
                );
            }
            Some(p) => {
                for (g, t, part, end) in p {
                    let _ = writeln!(
                        s,
                        "not confirmed: group {g} has not committed {t}[{part}] up to {end}"
                    );
                }
            }
            None => {}
        }
        if let Some(r) = &self.released {
            let _ = writeln!(
                s,
                "released {} quarantine entr(ies) of replayed records; kept {} whose group has not committed past the original",
                r.released, r.kept
            );
        }
        if let Some(e) = &self.error {
            let _ = writeln!(s, "error: {e}");
        }
        if let Some(cmd) = self.resume_command() {
            let _ = writeln!(s, "resume with: {cmd}");
        }
        s
    }

    /// JSON form.
    pub fn to_json(&self) -> Value {
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|((topic, p), t)| {
                json!({
                    "topic": topic, "partition": p, "count": t.count,
                    "first_dlq": {"partition": t.first_dlq.0, "offset": t.first_dlq.1},
                    "last_dlq": {"partition": t.last_dlq.0, "offset": t.last_dlq.1},
                    "first_offset": t.first_offset, "last_offset": t.last_offset,
                })
            })
            .collect();
        json!({
            "task": self.task,
            "dlq": self.dlq,
            "ledger": self.ledger,
            "state": self.state,
            "error": self.error,
            "looked_at": self.looked_at,
            "replayed": self.replayed,
            "skipped": {
                "already_replayed": self.already_replayed,
                "discarded": self.discarded,
                "refused": self.refused,
                "max_replays": self.max_replays,
                "filtered": self.filtered,
                "no_origin": self.no_origin,
                "duplicates": self.duplicates,
            },
            "settled": self.settled,
            "targets": targets,
            "cursors": self.cursors,
            "seconds": self.seconds,
            "resume": self.resume_command(),
            "release": self.released.as_ref().map(super::release::Released::to_json),
            "wait": self.wait_pending.as_ref().map(|p| json!({
                "confirmed": p.is_empty(),
                "pending": p.iter().map(|(g, t, part, end)| json!({
                    "group": g, "topic": t, "partition": part, "commit_wanted": end,
                })).collect::<Vec<_>>(),
            })),
        })
    }
}

/// Set by SIGINT or SIGTERM: stop after the chunk under way.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>, Arc<tokio::sync::Notify>);

impl Stop {
    /// Listens for SIGINT and SIGTERM; a second signal ends the process at once (the next
    /// run settles what was written without a checkpoint).
    pub fn on_signals() -> Stop {
        let stop = Stop::default();
        let s = stop.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            for n in 0.. {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if n > 0 {
                    eprintln!(
                        "quarantine dlq: stopped at once; the next run settles what was in flight"
                    );
                    std::process::exit(130);
                }
                eprintln!("quarantine dlq: stopping after the chunk under way (signal again to stop at once)");
                s.0.store(true, Ordering::SeqCst);
                s.1.notify_waiters();
            }
        });
        stop
    }

    /// Whether a stop was asked for.
    pub fn asked(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sleeps, or returns early when a stop is asked for.
    async fn sleep(&self, d: Duration) {
        if self.asked() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.1.notified() => {}
        }
    }
}

/// Settles intents without progress (a run killed between writing and checkpointing): the
/// records found in the target partitions are marked replayed. In a dry run only the
/// ledger in memory is updated.
async fn settle(
    cluster: &Cluster,
    dlq: &str,
    ledger_topic: &str,
    ledger: &mut Ledger,
    write: bool,
) -> Result<u64, ToolError> {
    let pending: Vec<(String, i32, Vec<TargetMark>)> = ledger
        .tasks
        .iter()
        .filter_map(|(id, t)| {
            t.pending
                .as_ref()
                .map(|(p, marks)| (id.clone(), *p, marks.clone()))
        })
        .collect();
    let mut settled = 0;
    for (task, partition, marks) in pending {
        let mut offsets = Vec::new();
        let mut writes = Vec::new();
        for m in &marks {
            let found = ledger::find_replayed(cluster, dlq, m).await?;
            let mine: Vec<_> = found
                .into_iter()
                .filter(|(p, ..)| *p == partition)
                .collect();
            if let (Some(first), Some(last)) = (mine.first(), mine.last()) {
                writes.push(Written {
                    topic: m.topic.clone(),
                    partition: m.partition,
                    first: first.2,
                    last: last.2,
                    count: mine.len() as u64,
                });
            }
            offsets.extend(mine.iter().map(|(_, o, _)| *o));
        }
        offsets.sort_unstable();
        offsets.dedup();
        settled += offsets.len() as u64;
        let entry = Entry::Progress {
            task: task.clone(),
            at: ledger::now_ms(),
            partition,
            cursor: None,
            replayed: ledger::to_ranges(&offsets),
            writes,
        };
        if write {
            ledger::append(cluster, ledger_topic, &task, &entry).await?;
        }
        ledger.apply(entry);
    }
    Ok(settled)
}

/// Runs a replay task (or a dry run) over DLQ topic `dlq`.
pub async fn replay(
    cluster: &Cluster,
    dlq: &str,
    cli_scope: &Scope,
    options: &ReplayOptions,
    out: &mut Out,
    stop: &Stop,
) -> Result<ReplayReport, ToolError> {
    cli_scope.validate().map_err(ToolError::Usage)?;
    let ledger_topic = options
        .ledger
        .clone()
        .unwrap_or_else(|| ledger::ledger_topic(dlq));
    // The DLQ must exist before anything else happens.
    super::scan::partitions(cluster, dlq, &Scope::default()).await?;
    let write = !options.dry_run;
    let mut ledger = Ledger::read(cluster, &ledger_topic).await?;
    let mut report = ReplayReport {
        dlq: dlq.to_string(),
        ledger: ledger_topic.clone(),
        ..ReplayReport::default()
    };
    report.settled = settle(cluster, dlq, &ledger_topic, &mut ledger, write).await?;

    // The task: a new one, or one to resume with its stored scope.
    let (task, scope, max_replays, to, cursors, ends) = match &options.resume {
        Some(id) => {
            if cli_scope.narrowed() || options.to.is_some() {
                return Err(ToolError::Usage(
                    "--resume continues a task with the scope it was started with; leave out the scope flags and --to".into(),
                ));
            }
            let t = ledger.tasks.get(id).ok_or_else(|| {
                ToolError::Usage(format!(
                    "--resume {id}: no such task in {ledger_topic} (`quarantine dlq tasks {dlq}` lists them)"
                ))
            })?;
            let Some(ledger::TaskStart {
                scope,
                max_replays: max,
                to,
                ends,
            }) = t.start.clone()
            else {
                return Err(ToolError::Failed(format!(
                    "task {id} has no start record in {ledger_topic}"
                )));
            };
            (
                id.clone(),
                scope,
                max,
                to,
                Some(t.cursors.clone()),
                Some(ends),
            )
        }
        None => (
            ledger::new_id("replay"),
            cli_scope.clone(),
            options.max_replays,
            options.to.clone(),
            None,
            None,
        ),
    };
    report.max_replays = max_replays;
    let mut scan = Scan::open(cluster, dlq, &scope, cursors.as_ref(), ends.as_ref(), true).await?;
    if let Some(rate) = options.rate {
        scan.chunk = (rate as usize).clamp(1, CHUNK);
    }
    if write {
        report.task = Some(task.clone());
        ledger::ensure_topic(cluster, &ledger_topic).await?;
        if options.resume.is_none() {
            let ends: BTreeMap<i32, i64> = scan
                .cursors()
                .iter()
                .filter_map(|c| c.end.map(|e| (c.partition, e)))
                .collect();
            let entry = Entry::Start {
                task: task.clone(),
                dlq: dlq.to_string(),
                by: ledger::who(options.by.as_deref()),
                at: ledger::now_ms(),
                scope: Box::new(scope.clone()),
                max_replays,
                to: to.clone(),
                ends,
            };
            ledger::append(cluster, &ledger_topic, &task, &entry).await?;
            ledger.apply(entry);
        }
    }
    let mut progress = Progress::new(options.progress);
    let total = scan.remaining();
    let mut partition_counts: BTreeMap<String, i32> = BTreeMap::new();
    let result = run_chunks(
        cluster,
        &mut Chunks {
            seen: Default::default(),
            dlq,
            ledger_topic: &ledger_topic,
            task: &task,
            scope: &scope,
            max_replays,
            to: to.as_deref(),
            write,
            options,
        },
        &mut scan,
        &mut ledger,
        &mut report,
        &mut partition_counts,
        out,
        stop,
        &mut progress,
        total,
    )
    .await;
    progress.finish();
    report.looked_at = scan.looked_at;
    report.cursors = scan
        .cursors()
        .iter()
        .map(|c| (c.partition, c.next))
        .collect();
    report.seconds = progress.elapsed().as_secs_f64();
    report.state = match &result {
        Err(ToolError::Closed) => return Err(ToolError::Closed),
        Err(e) => {
            report.error = Some(e.to_string());
            "failed".into()
        }
        Ok(()) if !write => "dry-run".into(),
        Ok(()) if stop.asked() && !scan.finished() => "interrupted".into(),
        Ok(()) => "done".into(),
    };
    if write {
        let entry = Entry::End {
            task: task.clone(),
            at: ledger::now_ms(),
            state: report.state.clone(),
            error: report.error.clone(),
        };
        if let Err(e) = ledger::append(cluster, &ledger_topic, &task, &entry).await {
            tracing::warn!(error = %e, "could not record the end of the task");
        }
    }
    if options.wait && report.state == "done" {
        report.wait_pending = Some(
            wait_for_commits(
                cluster,
                &report.group_ends,
                Duration::from_secs(options.wait_timeout),
                stop,
            )
            .await?,
        );
    }
    Ok(report)
}

/// Waits until every group has committed at least the given end on each partition; returns
/// what is still short when `timeout` passes or a stop is asked for.
async fn wait_for_commits(
    cluster: &Cluster,
    ends: &BTreeMap<(String, String, i32), i64>,
    timeout: Duration,
    stop: &Stop,
) -> Result<Vec<(String, String, i32, i64)>, ToolError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut pending = Vec::new();
        let mut by_group: BTreeMap<(&str, &str), Vec<(i32, i64)>> = BTreeMap::new();
        for ((g, t, p), end) in ends {
            by_group.entry((g, t)).or_default().push((*p, *end));
        }
        for ((g, t), parts) in by_group {
            let ps: Vec<i32> = parts.iter().map(|(p, _)| *p).collect();
            let committed = cluster.committed_offsets(g, t, &ps).await?;
            for (p, end) in parts {
                if committed.get(&p).is_none_or(|c| *c < end) {
                    pending.push((g.to_string(), t.to_string(), p, end));
                }
            }
        }
        if pending.is_empty() || stop.asked() || tokio::time::Instant::now() >= deadline {
            return Ok(pending);
        }
        stop.sleep(Duration::from_secs(1)).await;
    }
}

/// A record to write: its DLQ offset, the record, and the group it was diverted for.
type Pending = (i64, Record, String);

/// What makes two DLQ records copies of one dead letter: group, origin topic, partition and
/// offset, and replay count.
type DeadLetterKey = (String, String, i32, i64, u32);

struct Chunks<'a> {
    /// The dead letters replayed (by this task or an earlier one) seen so far.
    seen: std::collections::HashSet<DeadLetterKey>,
    dlq: &'a str,
    ledger_topic: &'a str,
    task: &'a str,
    scope: &'a Scope,
    max_replays: u32,
    to: Option<&'a str>,
    write: bool,
    options: &'a ReplayOptions,
}

#[allow(clippy::too_many_arguments)]
async fn run_chunks(
    cluster: &Cluster,
    c: &mut Chunks<'_>,
    scan: &mut Scan,
    ledger: &mut Ledger,
    report: &mut ReplayReport,
    partition_counts: &mut BTreeMap<String, i32>,
    out: &mut Out,
    stop: &Stop,
    progress: &mut Progress,
    total: Option<u64>,
) -> Result<(), ToolError> {
    let started = std::time::Instant::now();
    while !stop.asked() {
        let chunk = {
            let ledger = &*ledger;
            let scope = c.scope;
            let max = c.max_replays;
            scan.next(cluster, |e: &DlqEntry| {
                let class = match &e.info {
                    None => Class::NoOrigin,
                    Some(_) if !scope.matches(e) => Class::Filtered,
                    Some(i) => match ledger.lookup(e.partition, e.record.offset) {
                        Some(m) => match &m.how {
                            Handled::Replayed { task } => Class::Replayed(task.clone()),
                            Handled::Discarded { .. } => Class::Discarded,
                        },
                        None if i.replay_count >= max => Class::Refused(i.replay_count),
                        None => Class::Selected,
                    },
                };
                let selected = class == Class::Selected;
                (class, selected)
            })
            .await?
        };
        let Some(chunk) = chunk else { break };
        // Group the selected records by target partition, in DLQ order.
        let mut groups: IndexMap<(String, i32), Vec<Pending>> = IndexMap::new();
        for (e, class) in &chunk.items {
            let at = format!("{}[{}]@{}", c.dlq, e.partition, e.record.offset);
            let key = e.info.as_ref().map(|i| {
                (
                    i.origin.group.clone(),
                    i.origin.topic.clone(),
                    i.origin.partition,
                    i.origin.offset,
                    i.replay_count,
                )
            });
            let copy = match (class, key) {
                (Class::Replayed(_), Some(k)) => {
                    c.seen.insert(k);
                    false
                }
                (Class::Selected, Some(k)) => !c.seen.insert(k),
                _ => false,
            };
            if copy {
                report.duplicates += 1;
                if c.options.list {
                    let line = format!("skipped {at}: a copy of a dead letter replayed before (same group, origin and replay count)");
                    if c.options.json {
                        out.line(&json!({"dlq_partition": e.partition, "dlq_offset": e.record.offset, "outcome": line}).to_string())?;
                    } else {
                        out.line(&line)?;
                    }
                }
                continue;
            }
            let line = match class {
                Class::NoOrigin => {
                    report.no_origin += 1;
                    format!("skipped {at}: no dead-letter headers")
                }
                Class::Filtered => {
                    report.filtered += 1;
                    format!("skipped {at}: filtered out")
                }
                Class::Replayed(task) => {
                    report.already_replayed += 1;
                    format!("skipped {at}: already replayed by {task}")
                }
                Class::Discarded => {
                    report.discarded += 1;
                    format!("skipped {at}: discarded")
                }
                Class::Refused(n) => {
                    report.refused += 1;
                    format!(
                        "refused {at}: already replayed {n} time(s) (--max-replays {})",
                        c.max_replays
                    )
                }
                Class::Selected => {
                    let info = e.info.as_ref().expect("selected records have an origin");
                    let topic = c.to.unwrap_or(&info.origin.topic).to_string();
                    let n = match partition_counts.get(&topic) {
                        Some(n) => *n,
                        None => {
                            let md = cluster.metadata(&[topic.as_str()]).await?;
                            let n = md.partition_count(&topic).ok_or_else(|| {
                                ToolError::Failed(format!(
                                    "target topic `{topic}` does not exist; create it or pass --to TOPIC"
                                ))
                            })?;
                            partition_counts.insert(topic.clone(), n);
                            n
                        }
                    };
                    let partition =
                        dlq_partition(info.origin.partition, e.record.key.as_deref(), n);
                    let mut record = replay_record(&e.record);
                    record.headers.push(Header::new(
                        ledger::SOURCE_HEADER,
                        ledger::source_value(c.dlq, e.partition, e.record.offset),
                    ));
                    record
                        .headers
                        .push(Header::new(ledger::TASK_HEADER, c.task.to_string()));
                    let replay = crate::dead_letter::replay_count(&record);
                    groups.entry((topic.clone(), partition)).or_default().push((
                        e.record.offset,
                        record,
                        info.origin.group.clone(),
                    ));
                    let verb = if c.write { "replaying" } else { "would replay" };
                    format!("{verb} {at} -> {topic}[{partition}] (replay {replay})")
                }
            };
            if c.options.list && !(c.write && *class == Class::Selected) {
                if c.options.json {
                    out.line(&json!({"dlq_partition": e.partition, "dlq_offset": e.record.offset, "outcome": line}).to_string())?;
                } else {
                    out.line(&line)?;
                }
            }
        }
        let dlq_partition = chunk.partition;
        let mut replayed_offsets: Vec<i64> = Vec::new();
        let mut writes = Vec::new();
        if c.write && !groups.is_empty() {
            let task_view = ledger.tasks.get(c.task).cloned().unwrap_or_default();
            let mut targets = Vec::new();
            for (topic, p) in groups.keys() {
                let from = match task_view.target_ends.get(&(topic.clone(), *p)) {
                    Some(e) => *e,
                    None => super::scan::end_offset(cluster, topic, *p).await?,
                };
                targets.push(TargetMark {
                    topic: topic.clone(),
                    partition: *p,
                    from,
                });
            }
            let intent = Entry::Intent {
                task: c.task.to_string(),
                partition: dlq_partition,
                targets,
            };
            ledger::append(cluster, c.ledger_topic, c.task, &intent).await?;
            ledger.apply(intent);
            for ((topic, p), records) in &groups {
                let batch: Vec<Record> = records.iter().map(|(_, r, _)| r.clone()).collect();
                let base = cluster
                    .produce(topic, *p, &batch, -1, Duration::from_secs(30))
                    .await?;
                for (i, (dlq_offset, _, group)) in records.iter().enumerate() {
                    replayed_offsets.push(*dlq_offset);
                    if !group.is_empty() {
                        let end = report
                            .group_ends
                            .entry((group.clone(), topic.clone(), *p))
                            .or_insert(0);
                        *end = (*end).max(base + i as i64 + 1);
                    }
                    if c.options.list {
                        let at = format!("{}[{}]@{}", c.dlq, dlq_partition, dlq_offset);
                        let o = base + i as i64;
                        if c.options.json {
                            out.line(&json!({"dlq_partition": dlq_partition, "dlq_offset": dlq_offset, "outcome": "replayed", "topic": topic, "partition": p, "offset": o}).to_string())?;
                        } else {
                            out.line(&format!("replayed {at} -> {topic}[{p}]@{o}"))?;
                        }
                    }
                }
                writes.push(Written {
                    topic: topic.clone(),
                    partition: *p,
                    first: base,
                    last: base + batch.len() as i64 - 1,
                    count: batch.len() as u64,
                });
            }
        }
        if c.write && !chunk.items.is_empty() {
            replayed_offsets.sort_unstable();
            let entry = Entry::Progress {
                task: c.task.to_string(),
                at: ledger::now_ms(),
                partition: dlq_partition,
                cursor: Some(chunk.next),
                replayed: ledger::to_ranges(&replayed_offsets),
                writes: writes.clone(),
            };
            ledger::append(cluster, c.ledger_topic, c.task, &entry).await?;
            ledger.apply(entry);
        }
        // Totals per target partition.
        let mut w = writes.iter();
        for ((topic, p), records) in &groups {
            let written = if c.write { w.next() } else { None };
            let (first, last) = (records[0].0, records[records.len() - 1].0);
            let sum = report
                .targets
                .entry((topic.clone(), *p))
                .or_insert(TargetSum {
                    count: 0,
                    first_dlq: (dlq_partition, first),
                    last_dlq: (dlq_partition, last),
                    first_offset: written.map(|w| w.first),
                    last_offset: None,
                });
            sum.count += records.len() as u64;
            sum.last_dlq = (dlq_partition, last);
            if let Some(w) = written {
                sum.last_offset = Some(w.last);
            }
            report.replayed += records.len() as u64;
        }
        progress.update(
            if c.write { "replayed" } else { "would replay" },
            scan.looked_at,
            total,
            report.replayed,
        );
        if let (Some(rate), true) = (c.options.rate, c.write) {
            let due = Duration::from_secs_f64(report.replayed as f64 / f64::from(rate));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                stop.sleep(wait).await;
            }
        }
    }
    out.flush()
}
