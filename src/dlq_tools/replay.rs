//! `quarantine dlq replay`: writes DLQ records back to their origin topic and partition
//! with their original key, value, timestamp and headers (error headers removed) and
//! `__quarantine.replay.count` one higher. Records already replayed `--max-replays` times
//! are refused, so a record that keeps failing cannot loop between topic and DLQ forever.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::time::Duration;

use clap::Args;

use super::{read_dlq, DlqEntry, Selection, ToolError};
use crate::cluster::{Cluster, ClusterError};
use crate::dead_letter::{dlq_partition, replay_record};
use crate::record::Record;

/// Records per produce request.
const BATCH: usize = 500;

/// Options of `quarantine dlq replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayOptions {
    /// Write to this topic instead of each record's origin topic.
    #[arg(long = "to", value_name = "TOPIC")]
    pub to: Option<String>,
    /// Print what would happen; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Refuse records already replayed this many times.
    #[arg(long, default_value_t = 3)]
    pub max_replays: u32,
    /// Only records diverted for this reason (crash-loop, seek-back, stalled, redelivery,
    /// manual, check).
    #[arg(long, value_name = "REASON")]
    pub filter_reason: Option<String>,
    /// Only records diverted for this consumer group (`__quarantine.group`).
    #[arg(long, value_name = "GROUP")]
    pub filter_group: Option<String>,
    /// Only records diverted at or after this time (`__quarantine.diverted.ms`, unix ms).
    #[arg(long, value_name = "UNIX_MS")]
    pub diverted_from: Option<i64>,
    /// Only records diverted at or before this time (unix ms).
    #[arg(long, value_name = "UNIX_MS")]
    pub diverted_to: Option<i64>,
}

impl ReplayOptions {
    /// Whether a record's origin and diagnosis pass the filters.
    fn selects(&self, i: &crate::dead_letter::DeadLetterInfo) -> bool {
        let reason = self
            .filter_reason
            .as_ref()
            .is_none_or(|r| i.reason_text.as_ref() == Some(r));
        let group = self
            .filter_group
            .as_ref()
            .is_none_or(|g| &i.origin.group == g);
        let from = self
            .diverted_from
            .is_none_or(|f| i.diverted_ms.is_some_and(|d| d >= f));
        let to = self
            .diverted_to
            .is_none_or(|t| i.diverted_ms.is_some_and(|d| d <= t));
        reason && group && from && to
    }
}

/// What happened to one DLQ record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written back.
    Replayed {
        /// Target topic.
        topic: String,
        /// Target partition.
        partition: i32,
        /// Its new offset there.
        offset: i64,
        /// The replay count it now carries.
        replay: u32,
    },
    /// Would be written back (dry run).
    WouldReplay {
        /// Target topic.
        topic: String,
        /// Target partition.
        partition: i32,
        /// The replay count it would carry.
        replay: u32,
    },
    /// Already replayed `max_replays` times.
    Refused {
        /// Replays so far.
        replays: u32,
    },
    /// Left out by `--filter-reason`, `--filter-group` or the diversion time.
    Filtered,
    /// No dead-letter headers name its origin.
    NoOrigin,
    /// Another copy of the same dead letter (same group, origin and replay count: a DLQ
    /// write that timed out and landed anyway, then was retried) is replayed instead.
    Duplicate {
        /// DLQ partition of the copy replayed.
        partition: i32,
        /// DLQ offset of the copy replayed.
        offset: i64,
    },
}

/// One DLQ record and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayAction {
    /// DLQ partition.
    pub partition: i32,
    /// DLQ offset.
    pub offset: i64,
    /// What happened.
    pub outcome: Outcome,
}

/// The result of a replay run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Every record looked at, in DLQ order.
    pub actions: Vec<ReplayAction>,
    /// Per DLQ partition, the offset after the last record looked at (where a later run
    /// would continue with `--from-offset`).
    pub next_offsets: BTreeMap<i32, i64>,
    /// Set when a write failed: the records still marked `WouldReplay` were not written.
    pub write_error: Option<String>,
}

impl ReplayReport {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.actions.iter().filter(|a| f(&a.outcome)).count()
    }

    /// Records written back (or that would be, in a dry run).
    pub fn replayed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Replayed { .. } | Outcome::WouldReplay { .. }))
    }

    /// Records refused by the replay limit.
    pub fn refused(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Refused { .. }))
    }

    /// Records left out by the reason filter.
    pub fn filtered(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Filtered))
    }

    /// Records without origin headers.
    pub fn no_origin(&self) -> usize {
        self.count(|o| matches!(o, Outcome::NoOrigin))
    }

    /// Further copies of a dead letter already replayed in this run.
    pub fn duplicates(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Duplicate { .. }))
    }

    /// A readable report, one line per record then totals.
    pub fn render(&self, dlq: &str, dry_run: bool) -> String {
        let mut s = String::new();
        for a in &self.actions {
            let at = format!("{dlq}[{}]@{}", a.partition, a.offset);
            let _ = match &a.outcome {
                Outcome::Replayed {
                    topic,
                    partition,
                    offset,
                    replay,
                } => writeln!(
                    s,
                    "replayed {at} -> {topic}[{partition}]@{offset} (replay {replay})"
                ),
                Outcome::WouldReplay {
                    topic,
                    partition,
                    replay,
                } if dry_run => writeln!(
                    s,
                    "would replay {at} -> {topic}[{partition}] (replay {replay})"
                ),
                Outcome::WouldReplay {
                    topic, partition, ..
                } => writeln!(s, "NOT replayed {at} -> {topic}[{partition}]: write failed"),
                Outcome::Refused { replays } => writeln!(
                    s,
                    "refused {at}: already replayed {replays} time(s); it keeps failing"
                ),
                Outcome::Filtered => writeln!(s, "skipped {at}: filtered out"),
                Outcome::NoOrigin => writeln!(s, "skipped {at}: no origin headers"),
                Outcome::Duplicate { partition, offset } => writeln!(
                    s,
                    "skipped {at}: a copy of {dlq}[{partition}]@{offset} (same origin and group)"
                ),
            };
        }
        let verb = if dry_run { "would replay" } else { "replayed" };
        let _ = writeln!(
            s,
            "{verb} {}, refused {} (replay limit), skipped {} (filters), {} without origin, {} duplicate copies",
            self.replayed(),
            self.refused(),
            self.filtered(),
            self.no_origin(),
            self.duplicates()
        );
        for (p, next) in &self.next_offsets {
            let _ = writeln!(s, "continue partition {p} with --from-offset {next}");
        }
        if dry_run {
            s.push_str("dry run: nothing was written\n");
        }
        if let Some(e) = &self.write_error {
            let _ = writeln!(s, "replay stopped: {e}");
        }
        s
    }
}

/// Where one record goes.
/// What makes two DLQ records copies of one dead letter: group, source topic, partition,
/// offset, and replay count.
type DeadLetterKey = (String, String, i32, i64, u32);

struct Planned {
    topic: String,
    partition: i32,
    record: Record,
    action: usize,
}

/// Replays the selected records of DLQ topic `dlq`. Checks every target topic exists
/// before writing anything; records keep their DLQ order within each target partition.
pub async fn replay(
    cluster: &Cluster,
    dlq: &str,
    selection: &Selection,
    options: &ReplayOptions,
) -> Result<ReplayReport, ToolError> {
    let entries = read_dlq(cluster, dlq, selection).await?;
    let mut report = ReplayReport::default();
    let mut planned: Vec<(DlqEntry, String)> = Vec::new();
    // The DLQ position of the first copy of each dead letter.
    let mut first_copy: HashMap<DeadLetterKey, (i32, i64)> = HashMap::new();
    for e in entries {
        report.next_offsets.insert(e.partition, e.record.offset + 1);
        let outcome = match &e.info {
            None => Some(Outcome::NoOrigin),
            Some(i) if !options.selects(i) => Some(Outcome::Filtered),
            Some(i) if i.replay_count >= options.max_replays => Some(Outcome::Refused {
                replays: i.replay_count,
            }),
            Some(i) => {
                let o = &i.origin;
                let key = (
                    o.group.clone(),
                    o.topic.clone(),
                    o.partition,
                    o.offset,
                    i.replay_count,
                );
                match first_copy.entry(key) {
                    Entry::Occupied(first) => {
                        let (partition, offset) = *first.get();
                        Some(Outcome::Duplicate { partition, offset })
                    }
                    Entry::Vacant(v) => {
                        v.insert((e.partition, e.record.offset));
                        None
                    }
                }
            }
        };
        match (outcome, &e.info) {
            (Some(o), _) => report.actions.push(ReplayAction {
                partition: e.partition,
                offset: e.record.offset,
                outcome: o,
            }),
            (None, Some(i)) => {
                let target = options.to.clone().unwrap_or_else(|| i.origin.topic.clone());
                planned.push((e, target));
            }
            (None, None) => {}
        }
    }
    let targets: BTreeSet<&str> = planned.iter().map(|(_, t)| t.as_str()).collect();
    let mut counts = BTreeMap::new();
    if !targets.is_empty() {
        let md = cluster
            .metadata(&targets.iter().copied().collect::<Vec<_>>())
            .await?;
        for t in &targets {
            let n = md.partition_count(t).ok_or_else(|| {
                ToolError::Usage(format!(
                    "target topic `{t}` does not exist; create it or pass --to TOPIC"
                ))
            })?;
            counts.insert(t.to_string(), n);
        }
    }
    let mut writes = Vec::new();
    for (e, topic) in planned {
        let Some(info) = &e.info else { continue };
        let n = counts.get(&topic).copied().unwrap_or(1);
        let partition = dlq_partition(info.origin.partition, e.record.key.as_deref(), n);
        let record = replay_record(&e.record);
        let replay = info.replay_count.saturating_add(1);
        report.actions.push(ReplayAction {
            partition: e.partition,
            offset: e.record.offset,
            outcome: Outcome::WouldReplay {
                topic: topic.clone(),
                partition,
                replay,
            },
        });
        writes.push(Planned {
            topic,
            partition,
            record,
            action: report.actions.len() - 1,
        });
    }
    if !options.dry_run {
        if let Err(e) = write_all(cluster, &writes, &mut report).await {
            report.write_error = Some(e.to_string());
        }
    }
    report.actions.sort_by_key(|a| (a.partition, a.offset));
    Ok(report)
}

/// Produces the planned records in runs of the same target partition, in order.
async fn write_all(
    cluster: &Cluster,
    writes: &[Planned],
    report: &mut ReplayReport,
) -> Result<(), ClusterError> {
    let mut start = 0;
    while start < writes.len() {
        let first = &writes[start];
        let mut end = start + 1;
        while end < writes.len()
            && end - start < BATCH
            && writes[end].topic == first.topic
            && writes[end].partition == first.partition
        {
            end += 1;
        }
        let run = &writes[start..end];
        let records: Vec<Record> = run.iter().map(|w| w.record.clone()).collect();
        let base = cluster
            .produce(
                &first.topic,
                first.partition,
                &records,
                -1,
                Duration::from_secs(30),
            )
            .await?;
        for (i, w) in run.iter().enumerate() {
            if let Outcome::WouldReplay {
                topic,
                partition,
                replay,
            } = &report.actions[w.action].outcome
            {
                report.actions[w.action].outcome = Outcome::Replayed {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: base + i as i64,
                    replay: *replay,
                };
            }
        }
        start = end;
    }
    Ok(())
}
