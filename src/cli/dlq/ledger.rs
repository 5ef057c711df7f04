//! The DLQ ledger: a topic beside each DLQ (`<dlq>.ledger` by default, one partition,
//! kept forever) where replay tasks checkpoint their progress and `dlq discard` records
//! what was handled without replaying. It is what makes a replay idempotent and
//! resumable, and what `inspect`/`stats` read to show each record as open, replayed or
//! discarded.
//!
//! A replay task writes, as JSON values keyed by the task id:
//! 1. `start`: scope, options and the DLQ end offsets the task is bounded by;
//! 2. per chunk of one DLQ partition: `intent` (target partitions and where their end
//!    was before writing), then the records, then `progress` (DLQ offsets replayed,
//!    where they went, the partition's cursor);
//! 3. `end`: done, interrupted or failed.
//!
//! Every replayed record carries `__quarantine.replay.source` (`<dlq>/<partition>/<offset>`),
//! so an `intent` without its `progress` (the tool was killed between the write and the
//! checkpoint) is settled by reading the target partitions from where the intent says and
//! marking the records found there: nothing is ever written twice.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Scope, ToolError};
use crate::cluster::{Cluster, ClusterError, OffsetSpec};
use crate::protocol::record::Record;

/// Header naming the DLQ record a replayed record was written from.
pub const SOURCE_HEADER: &str = "__quarantine.replay.source";
/// Header naming the replay task that wrote a record.
pub const TASK_HEADER: &str = "__quarantine.replay.task";

/// The default ledger topic of a DLQ topic.
pub fn ledger_topic(dlq: &str) -> String {
    format!("{dlq}.ledger")
}

/// The value of [`SOURCE_HEADER`] for a DLQ record.
pub fn source_value(dlq: &str, partition: i32, offset: i64) -> String {
    format!("{dlq}/{partition}/{offset}")
}

/// Reads a [`SOURCE_HEADER`] value back: DLQ partition and offset, when it names `dlq`.
pub fn parse_source(value: &[u8], dlq: &str) -> Option<(i32, i64)> {
    let s = std::str::from_utf8(value).ok()?;
    let rest = s.strip_prefix(dlq)?.strip_prefix('/')?;
    let (p, o) = rest.split_once('/')?;
    Some((p.parse().ok()?, o.parse().ok()?))
}

/// A target partition and where its end was before a task wrote to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetMark {
    /// Target topic.
    pub topic: String,
    /// Target partition.
    pub partition: i32,
    /// Records of the task can only be at or after this offset.
    pub from: i64,
}

/// Records written to one target partition by one chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// Target topic.
    pub topic: String,
    /// Target partition.
    pub partition: i32,
    /// Offset of the first record written.
    pub first: i64,
    /// Offset of the last record written.
    pub last: i64,
    /// Records written.
    pub count: u64,
}

/// One ledger record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A replay task began.
    Start {
        /// Task id.
        task: String,
        /// DLQ topic.
        dlq: String,
        /// Who ran it.
        by: String,
        /// When (unix ms).
        at: i64,
        /// What it replays.
        scope: Box<Scope>,
        /// `--max-replays`.
        max_replays: u32,
        /// `--to`.
        #[serde(default)]
        to: Option<String>,
        /// The DLQ end offsets it is bounded by, per partition.
        #[serde(with = "pairs")]
        ends: BTreeMap<i32, i64>,
    },
    /// A task is about to write one chunk of a DLQ partition.
    Intent {
        /// Task id.
        task: String,
        /// DLQ partition of the chunk.
        partition: i32,
        /// Where the chunk's records go.
        targets: Vec<TargetMark>,
    },
    /// A chunk is written (or was found written after an interruption).
    Progress {
        /// Task id.
        task: String,
        /// When (unix ms).
        at: i64,
        /// DLQ partition.
        partition: i32,
        /// Where the task continues in that partition (`None` for a settled intent).
        #[serde(default)]
        cursor: Option<i64>,
        /// DLQ offsets replayed, as inclusive ranges.
        replayed: Vec<[i64; 2]>,
        /// Where they went.
        writes: Vec<Written>,
    },
    /// A task stopped.
    End {
        /// Task id.
        task: String,
        /// When (unix ms).
        at: i64,
        /// `done`, `interrupted` or `failed`.
        state: String,
        /// Why, when it failed.
        #[serde(default)]
        error: Option<String>,
    },
    /// Records marked handled without replaying.
    Discard {
        /// Id of the discard.
        id: String,
        /// Who.
        by: String,
        /// When (unix ms).
        at: i64,
        /// Why, in the operator's words.
        #[serde(default)]
        note: Option<String>,
        /// DLQ partition.
        partition: i32,
        /// DLQ offsets, as inclusive ranges.
        ranges: Vec<[i64; 2]>,
    },
}

/// A partition map as a list of pairs (JSON maps inside tagged enums cannot have
/// number keys).
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(m: &BTreeMap<i32, i64>, s: S) -> Result<S::Ok, S::Error> {
        m.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<i32, i64>, D::Error> {
        Ok(Vec::<(i32, i64)>::deserialize(d)?.into_iter().collect())
    }
}

/// How a task was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStart {
    /// What it replays.
    pub scope: Scope,
    /// `--max-replays`.
    pub max_replays: u32,
    /// `--to`.
    pub to: Option<String>,
    /// The DLQ end offsets it is bounded by.
    pub ends: BTreeMap<i32, i64>,
}

/// How a DLQ record was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Written back by a replay task.
    Replayed {
        /// The task.
        task: String,
    },
    /// Marked handled without replaying.
    Discarded {
        /// The discard's id.
        id: String,
        /// Why.
        note: Option<String>,
    },
}

/// Who handled records, how and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// How.
    pub how: Handled,
    /// Who.
    pub by: String,
    /// When (unix ms).
    pub at: i64,
}

impl Mark {
    /// `open`, `replayed` or `discarded`.
    pub fn status(&self) -> &'static str {
        match self.how {
            Handled::Replayed { .. } => "replayed",
            Handled::Discarded { .. } => "discarded",
        }
    }
}

/// What the ledger says of one task.
#[derive(Debug, Clone, Default)]
pub struct TaskView {
    /// Who started it.
    pub by: String,
    /// When it started.
    pub started: i64,
    /// Its scope and options, from `start`.
    pub start: Option<TaskStart>,
    /// Cursor per DLQ partition.
    pub cursors: BTreeMap<i32, i64>,
    /// End of each target partition after the task's last write there.
    pub target_ends: BTreeMap<(String, i32), i64>,
    /// An intent not followed by its progress.
    pub pending: Option<(i32, Vec<TargetMark>)>,
    /// Last `end` state, if any.
    pub state: Option<String>,
    /// Records it replayed.
    pub replayed: u64,
}

/// Everything read from a ledger topic, kept small: handled records as offset ranges.
#[derive(Debug, Default)]
pub struct Ledger {
    marks: Vec<Mark>,
    ranges: BTreeMap<i32, BTreeMap<i64, (i64, usize)>>,
    /// Tasks by id.
    pub tasks: BTreeMap<String, TaskView>,
    /// Ledger records read.
    pub entries: u64,
}

/// Turns sorted offsets into inclusive ranges.
pub fn to_ranges(offsets: &[i64]) -> Vec<[i64; 2]> {
    let mut out: Vec<[i64; 2]> = Vec::new();
    for &o in offsets {
        match out.last_mut() {
            Some(r) if r[1] + 1 == o => r[1] = o,
            _ => out.push([o, o]),
        }
    }
    out
}

impl Ledger {
    /// How the record at `partition`/`offset` was handled, if it was.
    pub fn lookup(&self, partition: i32, offset: i64) -> Option<&Mark> {
        let (_, (to, mark)) = self.ranges.get(&partition)?.range(..=offset).next_back()?;
        (*to >= offset).then(|| &self.marks[*mark])
    }

    fn mark(&mut self, partition: i32, ranges: &[[i64; 2]], mark: Mark) {
        if ranges.is_empty() {
            return;
        }
        self.marks.push(mark);
        let idx = self.marks.len() - 1;
        let map = self.ranges.entry(partition).or_default();
        for [from, to] in ranges {
            map.insert(*from, (*to, idx));
        }
    }

    /// Takes one ledger record into account.
    pub fn apply(&mut self, entry: Entry) {
        self.entries += 1;
        match entry {
            Entry::Start {
                task,
                by,
                at,
                scope,
                max_replays,
                to,
                ends,
                ..
            } => {
                let t = self.tasks.entry(task).or_default();
                t.by = by;
                t.started = at;
                t.start = Some(TaskStart {
                    scope: *scope,
                    max_replays,
                    to,
                    ends,
                });
            }
            Entry::Intent {
                task,
                partition,
                targets,
            } => {
                self.tasks.entry(task).or_default().pending = Some((partition, targets));
            }
            Entry::Progress {
                task,
                at,
                partition,
                cursor,
                replayed,
                writes,
            } => {
                let t = self.tasks.entry(task.clone()).or_default();
                t.pending = None;
                if let Some(c) = cursor {
                    let e = t.cursors.entry(partition).or_insert(c);
                    *e = (*e).max(c);
                }
                for w in &writes {
                    t.replayed += w.count;
                    let e = t
                        .target_ends
                        .entry((w.topic.clone(), w.partition))
                        .or_insert(w.last + 1);
                    *e = (*e).max(w.last + 1);
                }
                let by = t.by.clone();
                self.mark(
                    partition,
                    &replayed,
                    Mark {
                        how: Handled::Replayed { task },
                        by,
                        at,
                    },
                );
            }
            Entry::End { task, state, .. } => {
                self.tasks.entry(task).or_default().state = Some(state);
            }
            Entry::Discard {
                id,
                by,
                at,
                note,
                partition,
                ranges,
            } => self.mark(
                partition,
                &ranges,
                Mark {
                    how: Handled::Discarded { id, note },
                    by,
                    at,
                },
            ),
        }
    }

    /// Reads the whole ledger topic; an absent topic is an empty ledger.
    pub async fn read(cluster: &Cluster, topic: &str) -> Result<Ledger, ToolError> {
        let mut ledger = Ledger::default();
        let md = cluster.metadata(&[topic]).await?;
        if md.partition_count(topic).is_none() {
            return Ok(ledger);
        }
        let mut offset = cluster.list_offsets(topic, 0, OffsetSpec::Earliest).await?;
        loop {
            let f = match cluster.fetch(topic, 0, offset, 1024 * 1024).await {
                Err(ClusterError::OffsetOutOfRange { .. }) => break,
                other => other?,
            };
            if f.records.is_empty() && f.next_offset <= offset {
                break;
            }
            offset = f.next_offset.max(offset);
            for r in f.records {
                let Some(v) = r.value.as_deref() else {
                    continue;
                };
                match serde_json::from_slice::<Entry>(v) {
                    Ok(e) => ledger.apply(e),
                    Err(e) => {
                        tracing::warn!(topic, offset = r.offset, error = %e, "ledger record skipped")
                    }
                }
            }
        }
        Ok(ledger)
    }
}

/// Creates the ledger topic when missing: one partition, records kept forever.
pub async fn ensure_topic(cluster: &Cluster, topic: &str) -> Result<(), ToolError> {
    cluster
        .create_topic_if_missing(topic, 1, 3, &[("retention.ms", "-1")])
        .await?;
    Ok(())
}

/// Appends one record to the ledger and waits for it to be acknowledged.
pub async fn append(
    cluster: &Cluster,
    topic: &str,
    key: &str,
    entry: &Entry,
) -> Result<(), ToolError> {
    let value = serde_json::to_vec(entry).map_err(|e| ToolError::Failed(e.to_string()))?;
    let record = Record {
        offset: 0,
        timestamp: now_ms(),
        key: Some(Bytes::from(key.to_string())),
        value: Some(Bytes::from(value)),
        headers: Vec::new(),
    };
    cluster
        .produce(topic, 0, &[record], -1, Duration::from_secs(30))
        .await?;
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Who runs the tool: `--by`, else `$USER@$HOSTNAME`.
pub fn who(by: Option<&str>) -> String {
    if let Some(b) = by {
        return b.to_string();
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    match std::env::var("HOSTNAME") {
        Ok(h) if !h.is_empty() => format!("{user}@{h}"),
        _ => user,
    }
}

/// A new id such as `replay-20261206T070102Z-3fa9`.
pub fn new_id(prefix: &str) -> String {
    let mut r = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r);
    let t = super::clock::format_ms(now_ms());
    let compact: String = t
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .take(15)
        .collect();
    format!("{prefix}-{compact}Z-{:02x}{:02x}", r[0], r[1])
}

/// Reads `topic[partition]` from `from` to its current end and returns the DLQ records
/// (of `dlq`) that were replayed into it, by DLQ partition, with where they landed.
pub async fn find_replayed(
    cluster: &Cluster,
    dlq: &str,
    target: &TargetMark,
) -> Result<Vec<(i32, i64, i64)>, ToolError> {
    let mut found = Vec::new();
    let mut offset = target.from;
    loop {
        let f = match cluster
            .fetch(&target.topic, target.partition, offset, 1024 * 1024)
            .await
        {
            Err(ClusterError::OffsetOutOfRange { .. }) => break,
            other => other?,
        };
        if f.records.is_empty() && f.next_offset <= offset {
            break;
        }
        offset = f.next_offset.max(offset);
        for r in &f.records {
            for h in r.headers.iter().filter(|h| h.key == SOURCE_HEADER) {
                if let Some((p, o)) = h.value.as_deref().and_then(|v| parse_source(v, dlq)) {
                    found.push((p, o, r.offset));
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lookups() {
        assert_eq!(
            to_ranges(&[1, 2, 3, 7, 9, 10]),
            vec![[1, 3], [7, 7], [9, 10]]
        );
        let mut l = Ledger::default();
        l.apply(Entry::Progress {
            task: "t".into(),
            at: 5,
            partition: 0,
            cursor: Some(11),
            replayed: vec![[1, 3], [9, 10]],
            writes: vec![Written {
                topic: "orders".into(),
                partition: 0,
                first: 100,
                last: 104,
                count: 5,
            }],
        });
        l.apply(Entry::Discard {
            id: "d".into(),
            by: "me".into(),
            at: 6,
            note: Some("bad data".into()),
            partition: 0,
            ranges: vec![[5, 5]],
        });
        assert_eq!(l.lookup(0, 2).unwrap().status(), "replayed");
        assert!(l.lookup(0, 4).is_none());
        assert_eq!(l.lookup(0, 5).unwrap().status(), "discarded");
        assert_eq!(l.lookup(0, 10).unwrap().status(), "replayed");
        assert!(l.lookup(0, 11).is_none());
        assert!(l.lookup(1, 2).is_none());
        let t = &l.tasks["t"];
        assert_eq!(t.cursors[&0], 11);
        assert_eq!(t.target_ends[&("orders".to_string(), 0)], 105);
        assert_eq!(t.replayed, 5);
    }

    #[test]
    fn an_intent_stays_pending_until_its_progress() {
        let mut l = Ledger::default();
        let targets = vec![TargetMark {
            topic: "orders".into(),
            partition: 1,
            from: 40,
        }];
        l.apply(Entry::Intent {
            task: "t".into(),
            partition: 1,
            targets: targets.clone(),
        });
        assert_eq!(l.tasks["t"].pending, Some((1, targets)));
        l.apply(Entry::Progress {
            task: "t".into(),
            at: 1,
            partition: 1,
            cursor: None,
            replayed: vec![],
            writes: vec![],
        });
        assert!(l.tasks["t"].pending.is_none());
    }

    #[test]
    fn entries_round_trip_as_json() {
        let e = Entry::Start {
            task: "t".into(),
            dlq: "orders.dlq".into(),
            by: "me".into(),
            at: 1,
            scope: Box::new(Scope {
                group: Some("g".into()),
                ..Scope::default()
            }),
            max_replays: 1,
            to: None,
            ends: BTreeMap::from([(0, 10), (2, 4)]),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains("\"kind\":\"start\""), "{text}");
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), e);
        assert_eq!(
            parse_source(source_value("a.dlq", 2, 9).as_bytes(), "a.dlq"),
            Some((2, 9))
        );
        assert_eq!(parse_source(b"b.dlq/2/9", "a.dlq"), None);
        assert_eq!(parse_source(b"a.dlq.x/2/9", "a.dlq"), None);
    }
}
