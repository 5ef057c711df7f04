//! Streaming reads of a DLQ topic: one bounded fetch at a time, taking turns across the
//! selected partitions so `--limit` is shared fairly and memory stays flat whatever the
//! DLQ's size. Each partition is read in offset order.

use std::collections::BTreeMap;

use super::{DlqEntry, Scope, ToolError};
use crate::cluster::{Cluster, ClusterError, OffsetSpec};
use crate::dead_letter::parse_origin;

/// Bytes asked for per fetch (the broker returns at least one batch whatever this says).
const FETCH_BYTES: i32 = 256 * 1024;
/// Most selected records handed out per turn.
pub const CHUNK: usize = 500;

/// Where one partition's read stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCursor {
    /// DLQ partition.
    pub partition: i32,
    /// Next offset to read.
    pub next: i64,
    /// Read no record at or after this offset (the end when the scan started, or
    /// `--to-offset` + 1).
    pub end: Option<i64>,
    /// Nothing left to read.
    pub done: bool,
}

/// One turn's records of one partition, in offset order.
pub struct Chunk<C> {
    /// DLQ partition.
    pub partition: i32,
    /// Every record looked at, with what the caller's classifier said.
    pub items: Vec<(DlqEntry, C)>,
    /// Where the partition's read continues.
    pub next: i64,
}

/// A streaming read of a DLQ topic.
pub struct Scan {
    topic: String,
    parts: Vec<PartCursor>,
    turn: usize,
    left: Option<u64>,
    /// Most selected records per turn (default [`CHUNK`]).
    pub chunk: usize,
    /// Records looked at so far.
    pub looked_at: u64,
}

/// The partition numbers of `topic` the scope selects; a partition that does not exist is
/// a usage error naming `--partition`.
pub async fn partitions(
    cluster: &Cluster,
    topic: &str,
    scope: &Scope,
) -> Result<Vec<i32>, ToolError> {
    let md = cluster.metadata(&[topic]).await?;
    let count = md
        .partition_count(topic)
        .ok_or_else(|| ClusterError::UnknownTopic(topic.to_string()))?;
    if scope.partition.is_empty() {
        return Ok((0..count).collect());
    }
    let mut out = Vec::new();
    for p in &scope.partition {
        if !(0..count).contains(p) {
            return Err(ToolError::Usage(format!(
                "--partition {p}: {topic} has {count} partition(s) (0..{})",
                count - 1
            )));
        }
        if !out.contains(p) {
            out.push(*p);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The end of a partition (the offset after its last record). The high watermark is only
/// a starting point: the pinned tansu reports the last batch's base offset + 1, so the
/// partition is read on from just before it until a fetch comes back empty (normally one
/// fetch). Never more than the true end, so it is safe as a lower bound too.
pub async fn end_offset(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
) -> Result<i64, ClusterError> {
    let earliest = cluster
        .list_offsets(topic, partition, OffsetSpec::Earliest)
        .await?;
    let latest = cluster
        .list_offsets(topic, partition, OffsetSpec::Latest)
        .await?;
    let mut at = (latest - 1).max(earliest);
    loop {
        let f = match cluster.fetch(topic, partition, at, 64 * 1024).await {
            Err(ClusterError::OffsetOutOfRange { .. }) => break,
            other => other?,
        };
        let next = f
            .records
            .last()
            .map_or(f.next_offset, |r| (r.offset + 1).max(f.next_offset));
        if next <= at {
            break;
        }
        at = next;
    }
    Ok(at.max(earliest))
}

impl Scan {
    /// Opens a scan of `topic`. `from` overrides the start per partition (a resumed task's
    /// cursor); `ends` fixes the end per partition (a task's bound); with `bounded` and no
    /// `ends`, each partition's current end is the bound, so records diverted while the
    /// scan runs (a replayed record failing again) are not part of it.
    pub async fn open(
        cluster: &Cluster,
        topic: &str,
        scope: &Scope,
        from: Option<&BTreeMap<i32, i64>>,
        ends: Option<&BTreeMap<i32, i64>>,
        bounded: bool,
    ) -> Result<Scan, ToolError> {
        let mut parts = Vec::new();
        for partition in partitions(cluster, topic, scope).await? {
            let earliest = cluster
                .list_offsets(topic, partition, OffsetSpec::Earliest)
                .await?;
            let start = from
                .and_then(|f| f.get(&partition).copied())
                .or(scope.from_offset)
                .unwrap_or(earliest)
                .max(earliest);
            let mut end = match ends.and_then(|e| e.get(&partition).copied()) {
                Some(e) => Some(e),
                None if bounded => Some(end_offset(cluster, topic, partition).await?),
                None => None,
            };
            if let Some(t) = scope.to_offset {
                end = Some(end.map_or(t + 1, |e| e.min(t + 1)));
            }
            parts.push(PartCursor {
                partition,
                next: start,
                done: end.is_some_and(|e| start >= e),
                end,
            });
        }
        Ok(Scan {
            topic: topic.to_string(),
            parts,
            turn: 0,
            left: scope.limit,
            chunk: CHUNK,
            looked_at: 0,
        })
    }

    /// Where every partition's read stands.
    pub fn cursors(&self) -> &[PartCursor] {
        &self.parts
    }

    /// Records left to look at, when every partition has an end.
    pub fn remaining(&self) -> Option<u64> {
        self.parts.iter().try_fold(0u64, |n, p| {
            let end = p.end?;
            Some(
                n + if p.done {
                    0
                } else {
                    (end - p.next).max(0) as u64
                },
            )
        })
    }

    /// Whether the scan has nothing left (every partition read, or the limit reached).
    pub fn finished(&self) -> bool {
        self.left == Some(0) || self.parts.iter().all(|p| p.done)
    }

    /// The next partition's records, up to [`CHUNK`] selected ones (fewer when `--limit`
    /// is to be shared by several partitions). `classify` says what a record is and
    /// whether it counts as selected. `None` when the scan is finished.
    pub async fn next<C>(
        &mut self,
        cluster: &Cluster,
        mut classify: impl FnMut(&DlqEntry) -> (C, bool),
    ) -> Result<Option<Chunk<C>>, ToolError> {
        if self.finished() {
            return Ok(None);
        }
        let n = self.parts.len();
        let active = self.parts.iter().filter(|p| !p.done).count().max(1) as u64;
        let i = (0..n)
            .map(|k| (self.turn + k) % n)
            .find(|i| !self.parts[*i].done)
            .expect("a partition is not done");
        self.turn = (i + 1) % n;
        let quota = match self.left {
            Some(left) => (left.div_ceil(active) as usize).clamp(1, self.chunk),
            None => self.chunk,
        };
        let part = &mut self.parts[i];
        let fetched = match cluster
            .fetch(&self.topic, part.partition, part.next, FETCH_BYTES)
            .await
        {
            Err(ClusterError::OffsetOutOfRange { .. }) => {
                // Deleted by retention under us: continue at the earliest offset left.
                let earliest = cluster
                    .list_offsets(&self.topic, part.partition, OffsetSpec::Earliest)
                    .await?;
                if earliest > part.next {
                    part.next = earliest;
                } else {
                    part.done = true;
                }
                return Ok(Some(Chunk {
                    partition: part.partition,
                    items: Vec::new(),
                    next: part.next,
                }));
            }
            other => other?,
        };
        let mut items = Vec::new();
        let mut selected = 0usize;
        let mut cut = false;
        if fetched.records.is_empty() && fetched.next_offset <= part.next {
            part.done = true;
        }
        for record in fetched.records {
            if part.end.is_some_and(|e| record.offset >= e) {
                part.done = true;
                cut = true;
                break;
            }
            let entry = DlqEntry {
                partition: part.partition,
                info: parse_origin(&record),
                record,
            };
            let (class, counts) = classify(&entry);
            part.next = entry.record.offset + 1;
            self.looked_at += 1;
            items.push((entry, class));
            if counts {
                selected += 1;
                if selected == quota {
                    cut = true;
                    break;
                }
            }
        }
        if !cut {
            part.next = part.next.max(fetched.next_offset);
        }
        if part.end.is_some_and(|e| part.next >= e) {
            part.done = true;
        }
        if let Some(left) = &mut self.left {
            *left = left.saturating_sub(selected as u64);
        }
        Ok(Some(Chunk {
            partition: part.partition,
            items,
            next: part.next,
        }))
    }
}
